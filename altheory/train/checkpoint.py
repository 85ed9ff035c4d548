r"""Atomic checkpoints: ``torch.save`` to ``<path>.tmp``, fsync, then ``os.replace(tmp, path)``.

A checkpoint holds everything a resume needs to continue *exactly*: model (and gate copy)
parameters and buffers, optimizer and scheduler state, the step, the resolved config, the
per-epoch history, the accumulated training seconds and the RNG states (torch CPU and CUDA,
numpy, python). The data stream needs no state: batch ``b`` is a function of ``(seed, b)``
(:mod:`altheory.train.pipeline`). A reader never sees a half-written file: ``os.replace`` is
atomic on POSIX file systems, and a crash leaves the previous checkpoint in place.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


def rng_state() -> dict:
    """The RNG states of torch (CPU, every CUDA device), numpy and python."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``path`` (the message says how to start a fresh run).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; run without --resume to start fresh, or "
                                "set out_dir to the folder of the run to resume.")
    return torch.load(path, map_location=map_location, weights_only=False)
