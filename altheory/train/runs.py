r"""Reload a finished (or stopped) training run for analysis: :func:`load_run`.

A run folder (``out_dir`` of :func:`altheory.train.train`) holds ``checkpoint.pt`` (the last
state, plain data read with ``weights_only=True``), ``config.toml``, ``preprocessing.json``
(how inputs were made from raw images), ``metrics.csv`` (one row an epoch), ``steps.csv``
(every ``log_every`` steps) and ``summary.json``. :func:`load_run` rebuilds the model from the
checkpoint's config, loads its weights and puts it in eval mode (batch norm uses its running
statistics, so each sample's support depends on that sample alone).

Only the last checkpoint is kept (it is written every epoch and on a stop), so the model is the
run's last state, not its best epoch.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from altheory.train.checkpoint import load_checkpoint
from altheory.train.config import TrainConfig, config_from_dict

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    r"""A training run loaded by :func:`load_run`.

    Attributes
    ----------
    model : nn.Module in eval mode, on the CPU, in the run's dtype, weights of the last checkpoint.
    config : TrainConfig of the run.
    metrics : list of dicts, one per finished epoch (the checkpoint's history, as in metrics.csv).
    preprocessing : dict: dataset, data_dir, num_classes, in_channels, image_size, per-channel
        ``mean`` / ``std`` and the ``formula`` that maps raw uint8 images to the model's inputs.
    step : optimizer steps taken; steps_budget : the step budget of ``config``.
    summary : summary.json (empty when the run was stopped before writing it).
    run_dir : the folder.
    """

    model: nn.Module
    config: TrainConfig
    metrics: list
    preprocessing: dict
    step: int
    summary: dict = field(default_factory=dict)
    run_dir: Path = Path(".")

    def preprocess(self, images) -> torch.Tensor:
        """Raw uint8 images (n, C, H, W) -> the model's inputs, as at train time (no augmentation;
        in-memory datasets only)."""
        if self.preprocessing.get("kind") != "tensor":
            raise ValueError("preprocess() handles in-memory datasets (uint8 tensors); this run used "
                             f"{self.preprocessing.get('kind')!r} data: apply its transforms "
                             f"({self.preprocessing.get('formula')}).")
        x = torch.as_tensor(images)
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (n, C, H, W); got {x.dtype} {tuple(x.shape)}.")
        dtype = next(self.model.parameters()).dtype
        mean = torch.tensor(self.preprocessing["mean"], dtype=dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.preprocessing["std"], dtype=dtype).view(1, -1, 1, 1)
        return (x.to(dtype) / 255.0 - mean) / std


def load_run(run_dir) -> Run:
    r"""The model (weights loaded, eval mode), config, metrics and preprocessing of a run.

    Parameters
    ----------
    run_dir : the run's ``out_dir``.

    Returns
    -------
    Run

    Raises
    ------
    FileNotFoundError
        No such folder, or no ``checkpoint.pt`` in it.
    ValueError
        A truncated or foreign checkpoint (one line naming the file), or weights that do not fit
        the architecture of its config.

    Examples
    --------
    >>> run = load_run("runs/fmnist_smoke")        # doctest: +SKIP
    >>> run.model(run.preprocess(images)).argmax(1)  # doctest: +SKIP
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"run folder not found: {d}; give the out_dir of a training run.")
    ckpt_path = d / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"no checkpoint.pt in {d}: not a training run folder, or the run was "
                                "started with checkpoint=false.")
    ck = load_checkpoint(ckpt_path)
    cfg = config_from_dict(ck["config"], where=str(ckpt_path))
    pre_path = d / "preprocessing.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
    if "num_classes" not in pre:
        pre.update(_infer_shapes(ck["model"], cfg))
    from altheory.train.models import build_model

    model = build_model(cfg.arch, num_classes=pre["num_classes"], in_channels=pre["in_channels"],
                        image_size=pre["image_size"], width=cfg.width, activation=cfg.activation,
                        tau=cfg.tau, topk=cfg.topk)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    model = model.to(dtype)
    state = _strip_sync_bn(ck["model"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"{ckpt_path}: the weights do not fit {cfg.arch} (width={cfg.width}, "
                         f"{pre['num_classes']} classes): {' '.join(first[1:3])[:200]}") from None
    model.eval()
    summ_path = d / "summary.json"
    summary = json.loads(summ_path.read_text()) if summ_path.is_file() else {}
    return Run(model, cfg, list(ck["history"]), pre, int(ck["step"]),
               summary, d)


def _strip_sync_bn(state: dict) -> dict:
    """State-dict keys are those of the bare model (DDP wraps only the forward; SyncBatchNorm and
    GlobalBatchNorm2d keep BatchNorm's keys), so nothing to strip but a ``module.`` prefix."""
    if all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _infer_shapes(state: dict, cfg: TrainConfig) -> dict:
    """num_classes / in_channels / image_size from the weights (runs written before
    preprocessing.json existed)."""
    stem = state.get("conv1.weight")
    head = state.get("fc.weight")
    if stem is None or head is None:
        raise ValueError("cannot infer the data shapes of this run (no preprocessing.json and no "
                         "conv1/fc weights); rerun it with this version of altheory.")
    return {"num_classes": int(head.shape[0]), "in_channels": int(stem.shape[1]),
            "image_size": cfg.image_size, "dataset": cfg.dataset}


def read_csv(path) -> list[dict]:
    """Rows of a metrics.csv / steps.csv with numbers parsed (empty cells -> None)."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            out = {}
            for k, v in r.items():
                if v in ("", None):
                    out[k] = None
                    continue
                try:
                    out[k] = float(v) if any(c in v for c in ".eEn") else int(v)
                except ValueError:
                    out[k] = v
            rows.append(out)
    return rows
