r"""Atomic checkpoints of plain data, read back with ``torch.load(..., weights_only=True)``.

A checkpoint holds everything a resume needs to continue *exactly*: model (and gate copy)
parameters and buffers, optimizer and scheduler state, the step, the resolved config (a dict of
plain values), the per-epoch history, the accumulated training seconds, the running sums of the
epoch in progress, and the RNG states (torch CPU and CUDA, numpy, python) — all tensors, numbers,
strings, lists and dicts. So it is read with ``weights_only=True``: unpickling a crafted file can
run no code, and a file that holds anything else is refused with one line. The data stream needs
no state: batch ``b`` is a function of ``(seed, b)`` (:mod:`altheory.train.pipeline`).

Writes go to a unique temporary file in the same folder, are fsynced and moved onto the target
with ``os.replace`` (:func:`altheory.io.write_bytes_atomic`'s recipe): a reader never sees a
half-written file, and a crash leaves the previous checkpoint in place.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from altheory.io import write_bytes_atomic

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "CHECKPOINT_KEYS"]

# the keys every training checkpoint holds
CHECKPOINT_KEYS = ("model", "gate", "gate_refreshes", "optimizer", "scheduler", "step", "config",
                   "history", "train_seconds", "rng")


def rng_state() -> dict:
    """The RNG states of torch (CPU, every CUDA device), numpy and python, as plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    s = state["numpy"]
    np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"],
                         s["cached_gaussian"]))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (plain data and tensors) to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return write_bytes_atomic(path, buf.getvalue())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``path`` (the message says how to start a fresh run).
    ValueError
        One line naming the file and what is wrong: truncated or not a torch file, a file that
        holds objects other than tensors and plain data (refused, never unpickled), or a torch
        file that is not a training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; run without --resume to start fresh, or "
                                "set out_dir to the folder of the run to resume.")
    size = path.stat().st_size
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"checkpoint {path} holds objects other than tensors and plain data; refused "
                         f"to unpickle it (weights_only=True: {_first_line(exc)[:160]}). Only load "
                         "checkpoints written by altheory train (those written before it stored plain "
                         "data, with a numpy RNG state, are refused too: start a new out_dir).") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {path} ({size} bytes) is truncated or not a torch checkpoint "
                         f"({type(exc).__name__}: {_first_line(exc)[:160]}). Resume from an intact "
                         "checkpoint or start a new out_dir.") from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        got = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is a torch file but not a checkpoint of altheory train: expected the "
                         f"keys {list(CHECKPOINT_KEYS)}; got {got}.")
    return state
