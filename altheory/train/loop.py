r"""The training loop: one function, :func:`train`, readable in one sitting.

Every method minimises the same objective, the mean cross-entropy
:math:`\frac1n\sum_i \mathrm{lse}(f(x_i)) - f(x_i)_{y_i}` (``F.cross_entropy``, which is
:func:`altheory.solvers.losses.loss_torch` with ``"softmax"`` and one-hot targets — tested), with the
same data order, augmentation, initialisation, step budget and learning-rate schedule; only the
source of the support differs (:mod:`altheory.train.methods`). An "epoch" is
``n_train // batch_size`` optimizer steps for every method.

Step-size schedules (per method; the defaults are the same for all three so that curves are
comparable): linear warmup for ``warmup_steps`` then cosine (or linear, or constant) decay over
the whole step budget, stepped once per optimizer step. ``alt-inner`` takes ``inner_steps``
steps on one batch; the recipes in ``paper_repro/configs`` keep its peak learning rate equal
to the others' (a smaller one is a one-line override, ``--lr=...``).

Per epoch: validation accuracy and loss (on the first ``eval_subset`` validation samples when set,
with a progress bar), optional exact head solve (C8), one row of ``metrics.csv``, TensorBoard
scalars, an atomic checkpoint. Every ``log_every`` steps (and at epoch ends): one row of
``steps.csv`` and TensorBoard ``step/*`` scalars (mean loss and accuracy of the window, lr,
images/s). Timing covers the training steps only (CUDA events on GPU, ``perf_counter`` on CPU);
evaluation, head solves and checkpoints are not counted.

SIGTERM or SIGINT (Ctrl-C) stops the run after the current step and writes a checkpoint (a second
Ctrl-C stops at once, without one); the checkpoint keeps the running sums of the epoch in
progress, so after a mid-epoch resume the epoch's loss, accuracy and images/s cover all of its
steps. The run folder also gets ``config.toml`` and ``preprocessing.json`` (how inputs are made
from raw images), which :func:`altheory.train.load_run` reads back.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from altheory.train import distributed as dist
from altheory.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from altheory.io import check_output_dir, write_text_atomic
from altheory.train.config import RUN_CONTROL_FIELDS, TrainConfig, config_diff
from altheory.train.head import head_gap
from altheory.train.methods import Gating, wrap_activations
from altheory.train.models import build_model, final_linear
from altheory.train.pipeline import build_data, steps_total

__all__ = ["train", "Stepper", "make_optimizer", "make_schedule", "evaluate", "features", "preprocessing"]

CSV_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
              "val_acc_before_head", "train_seconds", "images_per_s", "flip_frac", "head_gap",
              "head_gap_certified", "head_status", "head_grad_norm")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; weight decay on conv/linear weights (ndim >= 2) only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    elif cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw'; got {cfg.optimizer!r}.")


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int):
    """Per-step multiplier of the peak lr: linear warmup, then cosine / linear / constant."""
    warm = cfg.warmup_steps

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        elif cfg.schedule == "linear":
            return 1.0 - t
        elif cfg.schedule == "constant":
            return 1.0
        else:
            raise ValueError(f"schedule must be cosine, linear or constant; got {cfg.schedule!r}.")

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits (autocast) to float32 for the loss; float32/float64 stay as they are."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


class Stepper:
    r"""One optimizer step of a method, batches pulled from an iterator as the method needs them.

    ``sgd`` and ``alt`` take a new batch every step; ``alt-inner`` every ``inner_steps`` steps.
    ``alt`` refreshes the gate every ``alt_every`` steps; ``alt-inner`` at every new batch.

    Parameters
    ----------
    model : the bare module (activations wrapped for alt/alt-inner); fwd : what is called
        (the DDP wrapper and/or the compiled model, or ``model``).
    opt, sched : optimizer and per-step scheduler.
    method, alt_every, inner_steps : see :class:`TrainConfig`.
    gating : :class:`Gating` for alt/alt-inner, else None.
    amp : a context-manager factory for autocast.
    track_flips : count support flips at refreshes.
    """

    def __init__(self, model, fwd, opt, sched, *, method: str, gating: Gating | None,
                 alt_every: int, inner_steps: int, amp=contextlib.nullcontext, track_flips: bool = True):
        if method not in ("sgd", "alt", "alt-inner"):
            raise ValueError(f"method must be 'sgd', 'alt' or 'alt-inner'; got {method!r}.")
        if method != "sgd" and gating is None:
            raise ValueError(f"method={method!r} needs a Gating.")
        self.model, self.fwd, self.opt, self.sched = model, fwd, opt, sched
        self.method, self.gating, self.amp = method, gating, amp
        self.alt_every, self.K = alt_every, (inner_steps if method == "alt-inner" else 1)
        self.track_flips = track_flips
        self.batch = None
        self.flips = [0, 0]  # since the last reset: flipped entries, entries compared

    def batch_index(self, step: int) -> int:
        return step // self.K

    def _refresh(self, x):
        g = self.gating
        old = g.record(x) if self.track_flips and g.refreshes > 0 else None
        g.refresh()
        new = g.record(x)
        if old is not None:
            d, t = Gating.flips(old, new)
            self.flips[0] += d
            self.flips[1] += t
        g.impose(new)

    def step(self, s: int, batches) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Take optimizer step ``s``; returns (loss sum, correct count, samples) as tensors/int."""
        m = self.method
        fresh = self.batch is None or s % self.K == 0
        if fresh:
            self.batch = next(batches)
        x, y = self.batch
        with self.amp():
            if m == "alt":
                if s % self.alt_every == 0:
                    self._refresh(x)
                else:
                    self.gating.compute(x)
            elif m == "alt-inner":
                if s % self.K == 0:
                    self._refresh(x)
                elif fresh:  # resumed inside a batch: the restored gate gives the same support
                    self.gating.compute(x)
            logits = self.fwd(x)
            loss = F.cross_entropy(_upcast(logits), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        if self.gating is not None:
            self.gating.check_consumed()
            if m == "alt" or (s + 1) % self.K == 0:
                self.gating.release()
        n = y.shape[0]
        with torch.no_grad():
            correct = (logits.argmax(1) == y).sum()
        return loss.detach() * n, correct, n


class _Timer:
    """Training seconds: CUDA events around the steps on GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.total = 0.0
        self._t0 = None

    def start(self):
        if self.cuda:
            self._t0 = torch.cuda.Event(enable_timing=True)
            self._t0.record()
        else:
            self._t0 = time.perf_counter()

    def lap(self) -> float:
        """Seconds so far (synchronises the GPU); the timer keeps running."""
        total = self.stop()
        self.start()
        return total

    def stop(self) -> float:
        if self._t0 is None:
            return self.total
        if self.cuda:
            t1 = torch.cuda.Event(enable_timing=True)
            t1.record()
            t1.synchronize()
            self.total += self._t0.elapsed_time(t1) / 1000.0
        else:
            self.total += time.perf_counter() - self._t0
        self._t0 = None
        return self.total


def _progress(total: int, desc: str, enabled: bool, **kw):
    """A tqdm bar when ``enabled`` and tqdm is installed, else None."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, dynamic_ncols=True, **kw)


@torch.no_grad()
def evaluate(model: nn.Module, data, info, amp, *, limit: int = 0, progress: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on the validation set (its first ``limit`` samples when
    ``limit > 0``), summed over ranks; a progress bar over the batches when ``progress``."""
    was = model.training
    model.eval()
    tot = torch.zeros(3, dtype=torch.float64, device=info.device)
    n_val = min(limit, data.n_val) if limit else data.n_val
    bar = _progress(n_val, "eval", progress and info.is_main, leave=False, unit="img")
    try:
        for x, y in data.eval_batches("val", limit=limit):
            with amp():
                logits = _upcast(model(x))
            tot[0] += F.cross_entropy(logits, y, reduction="sum").double()
            tot[1] += (logits.argmax(1) == y).sum()
            tot[2] += y.shape[0]
            if bar is not None:
                bar.update(y.shape[0] * info.world)
    finally:
        if bar is not None:
            bar.close()
    dist.all_reduce_sum(tot, info)
    model.train(was)
    n = max(float(tot[2]), 1.0)
    return float(tot[0]) / n, float(tot[1]) / n


@torch.no_grad()
def features(model: nn.Module, data, limit: int, amp) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the final linear layer (float64) for ``limit`` un-augmented training samples,
    the network in eval mode (its support fixed per sample), computed whole on every rank."""
    head = final_linear(model)
    store = []
    h = head.register_forward_hook(lambda mod, inp, out: store.append(inp[0].detach().double()))
    was = model.training
    model.eval()
    ys = []
    try:
        for x, y in data.eval_batches("train", limit=limit, shard=False):
            with amp():
                model(x)
            ys.append(y)
    finally:
        h.remove()
        model.train(was)
    return torch.cat(store), torch.cat(ys)


def _solve_head(model, data, cfg, info, amp) -> dict:
    Phi, y = features(model, data, cfg.head_samples, amp)
    res = head_gap(Phi, y, final_linear(model), l2=cfg.head_l2, tol=cfg.head_tol)
    sol = res.pop("solution")
    head = final_linear(model)
    W, b = sol.W.to(head.weight.device), sol.b.to(head.weight.device)
    if info.active:  # identical on every rank in exact arithmetic; rank 0's copy is authoritative
        torch.distributed.broadcast(W, 0)
        torch.distributed.broadcast(b, 0)
    with torch.no_grad():
        head.weight.copy_(W.to(head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(b.to(head.bias.dtype))
    return res


def _epochs_to(history: list[dict], key: str, target: float):
    for row in history:
        if row["val_acc"] >= target:
            return row[key]
    return None


def preprocessing(cfg: TrainConfig, data) -> dict:
    """How the run's inputs were made from the raw images (saved as ``preprocessing.json``)."""
    base = {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "num_classes": int(data.num_classes),
            "in_channels": int(data.in_channels), "image_size": int(data.image_size),
            "n_train": int(data.n_train), "n_val": int(data.n_val), "train_subset": cfg.train_subset,
            "seed": cfg.seed}
    if hasattr(data, "mean"):  # TensorData: per-channel statistics of the training images
        base.update(kind="tensor", mean=[float(v) for v in data.mean.flatten()],
                    std=[float(v) for v in data.std.flatten()],
                    formula="x = (uint8 / 255 - mean[c]) / std[c], per channel c (training-set statistics)",
                    augment=("none" if not cfg.augment else
                             f"random crop (zero padding {cfg.crop_pad}) and horizontal flip={cfg.flip}, "
                             "training batches only"))
    else:
        from altheory.train.pipeline import _IMAGENET_MEAN, _IMAGENET_STD

        base.update(kind="folder", mean=list(_IMAGENET_MEAN), std=list(_IMAGENET_STD),
                    formula=f"resize {int(round(cfg.image_size * 256 / 224))}, center crop "
                            f"{cfg.image_size}, x = (rgb / 255 - mean[c]) / std[c] (evaluation)",
                    augment="RandomResizedCrop + horizontal flip, training batches only"
                    if cfg.augment else "none")
    return base


def train(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False) -> dict:
    r"""Train with ``cfg``; returns the summary dict (also written to ``out_dir/summary.json``).

    Parameters
    ----------
    cfg : TrainConfig (validated).
    resume : continue from ``out_dir/checkpoint.pt``. Its config must equal ``cfg`` except for
        the run-control fields (:data:`altheory.train.config.RUN_CONTROL_FIELDS`) and
        ``epochs``, which may grow: a finished run is extended. With ``schedule="constant"`` the
        extension is exactly the longer run; otherwise the schedule is recomputed for the new
        budget from the current step on (the learning rate is continued, not restarted, but the
        steps already taken followed the shorter schedule).
    quiet : print nothing (tests).

    Every refusal comes before any work, as one line: ``device=cuda`` without CUDA, an
    unwritable ``out_dir``, ``resume`` without a checkpoint or with a truncated / foreign one, a
    config that differs from the checkpoint's, fewer epochs than already done, missing or
    damaged data files, a batch larger than the training set.

    Raises
    ------
    ValueError, FileNotFoundError
        The refusals above (``altheory train`` prints the line and exits with status 2).
    """
    info = dist.init(cfg.device)
    try:
        summary = _train(cfg, info, resume, quiet)
    except BaseException:
        dist.cleanup(info, wait=False)
        raise
    dist.cleanup(info)
    return summary


def _check_resume(ckpt: dict, cfg: TrainConfig, ckpt_path: Path) -> None:
    diff = config_diff(ckpt["config"], cfg.to_dict(), ignore=RUN_CONTROL_FIELDS + ("epochs",))
    if diff:
        raise ValueError(f"--resume: the checkpoint {ckpt_path} was written with a different config: "
                         + ", ".join(f"{k}: {a!r} (checkpoint) vs {b!r} (now)" for k, (a, b) in diff.items())
                         + ". Only run-control fields (" + ", ".join(RUN_CONTROL_FIELDS)
                         + ") and more epochs may change on resume; resume with the same config, or "
                         "start a new out_dir.")


def _trim_csv(path: Path, key: str, last: int) -> None:
    """Drop rows of ``path`` whose ``key`` is past ``last`` (written after the checkpoint we resume)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r.get(key) not in (None, "") and float(r[key]) <= last]
    if len(keep) != len(rows):
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(keep)


def _train(cfg: TrainConfig, info, resume: bool, quiet: bool) -> dict:
    """The body of :func:`train` on one process of ``info``: every refusal first, then the run's
    files, model and optimizer (restored on ``resume``), the steps, and the summary."""
    say = (lambda *a: None) if (quiet or not info.is_main) else (lambda *a: print(*a, flush=True))
    out = Path(cfg.out_dir)
    check_output_dir(out, create=False)
    ckpt_path = out / "checkpoint.pt"
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        _check_resume(ckpt, cfg, ckpt_path)
    dtype, amp = _precision(cfg, info)
    data = build_data(cfg, info, dtype)
    total = steps_total(cfg, data.steps_per_epoch)
    if ckpt is not None:
        _check_epochs_grow(ckpt, cfg, ckpt_path, total, data.steps_per_epoch)
    if info.is_main:
        check_output_dir(out)
        write_text_atomic(out / "config.toml", cfg.dumps())
        write_text_atomic(out / "preprocessing.json", json.dumps(preprocessing(cfg, data), indent=2))
    say("resolved config:\n" + cfg.dumps())

    run = _build_run(cfg, info, data, dtype, amp, total, ckpt_path, say)
    if ckpt is not None:
        _restore(run, ckpt)
    signals, stop_now = _run_steps(run, quiet)

    summary = _summary(cfg, info, run.history, run.step, total, run.timer.total,
                       stop_now and run.step < total)
    summary["signal"] = signals[0] if signals else None
    if info.is_main:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
        say(json.dumps({k: v for k, v in summary.items() if k not in ("config", "history")}, indent=2))
    return summary


def _precision(cfg: TrainConfig, info) -> tuple[torch.dtype, Callable]:
    """The parameter dtype and the autocast factory (bf16 on CUDA when asked for float32 runs);
    on CUDA, also turns on cuDNN autotuning and TF32 matmuls."""
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    use_amp = info.device.type == "cuda" and cfg.amp == "bf16" and dtype == torch.float32
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dtype, amp


def _check_epochs_grow(ckpt: dict, cfg: TrainConfig, ckpt_path: Path, total: int, spe: int) -> None:
    """Refuse a resume whose checkpoint is already past the step budget of ``cfg.epochs``."""
    if ckpt["step"] > total:
        raise ValueError(f"--resume: the checkpoint {ckpt_path} is at step {ckpt['step']} "
                         f"({ckpt['step'] / spe:g} epochs) but epochs={cfg.epochs} is {total} steps; "
                         f"epochs may only grow on resume (use epochs >= {math.ceil(ckpt['step'] / spe)}).")


@dataclass
class _Run:
    """What one training run holds while it steps (built by :func:`_build_run`)."""

    cfg: TrainConfig
    info: dist.DistInfo
    data: object             # the pipeline's data (:func:`altheory.train.pipeline.build_data`)
    amp: Callable            # autocast context-manager factory
    model: nn.Module         # the bare module (what is checkpointed)
    gating: Gating | None    # alt / alt-inner only
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    stepper: Stepper
    total: int               # optimizer steps of the whole budget
    ckpt_path: Path
    say: Callable
    timer: _Timer
    acc: torch.Tensor        # running sums of the epoch in progress: loss sum, correct, samples
    step: int = 0            # optimizer steps taken
    history: list = field(default_factory=list)   # one metrics row per finished epoch
    steps_in_window: int = 0                      # steps of the epoch in progress

    @property
    def spe(self) -> int:
        """Optimizer steps per epoch."""
        return self.data.steps_per_epoch


def _build_model(cfg: TrainConfig, info, data,
                 dtype: torch.dtype) -> tuple[nn.Module, Gating | None, nn.Module]:
    """The seeded model (identical for every method and rank), its gating for alt/alt-inner, and
    what the steps call (the DDP wrapper and/or the compiled model, or the model itself)."""
    torch.manual_seed(cfg.seed)  # model init: identical for every method and rank
    model = build_model(cfg.arch, num_classes=data.num_classes, in_channels=data.in_channels,
                        image_size=data.image_size, width=cfg.width, activation=cfg.activation,
                        tau=cfg.tau, topk=cfg.topk)
    if cfg.method != "sgd":
        wrap_activations(model)
    model = model.to(device=info.device, dtype=dtype)
    if info.device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if info.active and cfg.sync_bn:
        model = dist.convert_sync_bn(model, info.device)
    gating = Gating(model, cfg.gate_bn) if cfg.method != "sgd" else None
    fwd = model
    if info.active:
        fwd = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    if cfg.compile:
        fwd = torch.compile(fwd)
        if gating is not None:
            gating.compile()
    return model, gating, fwd


def _build_run(cfg: TrainConfig, info, data, dtype, amp, total: int, ckpt_path: Path, say) -> _Run:
    """Model, optimizer, schedule and stepper of a fresh run at step 0."""
    model, gating, fwd = _build_model(cfg, info, data, dtype)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg, total)
    stepper = Stepper(model, fwd, opt, sched, method=cfg.method, gating=gating,
                      alt_every=cfg.alt_every or data.steps_per_epoch, inner_steps=cfg.inner_steps,
                      amp=amp, track_flips=cfg.track_flips)
    return _Run(cfg, info, data, amp, model, gating, opt, sched, stepper, total, ckpt_path, say,
                _Timer(info.device), torch.zeros(3, dtype=torch.float64, device=info.device))


def _restore(run: _Run, ckpt: dict) -> None:
    """Continue ``run`` from ``ckpt``: model, gate, optimizer, schedule, step, history, training
    seconds, RNG states and the epoch in progress; a grown budget recomputes the schedule; the
    CSV rows written after the checkpoint are dropped."""
    cfg, info = run.cfg, run.info
    run.model.load_state_dict(ckpt["model"])
    if run.gating is not None:
        run.gating.gate.load_state_dict(ckpt["gate"])
        run.gating.refreshes = ckpt["gate_refreshes"]
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    run.step, run.history, run.timer.total = ckpt["step"], ckpt["history"], ckpt["train_seconds"]
    set_rng_state(ckpt["rng"])
    part = ckpt.get("epoch_partial")
    if part is not None:
        if info.is_main:  # the sums of every rank so far; summed again at the epoch's end
            run.acc.copy_(part["sums"].to(run.acc))
        run.steps_in_window, run.stepper.flips = int(part["steps"]), list(part["flips"])
    if ckpt["config"]["epochs"] != cfg.epochs:
        # more epochs: the schedule of the new budget, continued from this step
        for g, base, fn in zip(run.opt.param_groups, run.sched.base_lrs, run.sched.lr_lambdas):
            g["lr"] = base * fn(run.step)
        run.say(f"extending the run from epochs={ckpt['config']['epochs']} to {cfg.epochs}: the "
                f"{cfg.schedule} schedule is recomputed for {run.total} steps from step {run.step}"
                + ("" if cfg.schedule == "constant" else
                   " (not the trajectory of a fresh run with these epochs; schedule=constant extends exactly)"))
    if info.is_main:
        out = Path(cfg.out_dir)
        _trim_csv(out / "metrics.csv", "step", run.step)
        _trim_csv(out / "steps.csv", "step", run.step)
    run.say(f"resumed from {run.ckpt_path} at step {run.step}")


def _save(run: _Run) -> None:
    """Write the checkpoint (rank 0, when ``cfg.checkpoint``) with the epoch in progress summed
    over ranks; every rank waits for it."""
    cfg, info, gating = run.cfg, run.info, run.gating
    sums = dist.all_reduce_sum(run.acc.detach().clone(), info).cpu()  # the epoch so far, all ranks
    if cfg.checkpoint and info.is_main:
        save_checkpoint(run.ckpt_path, {
            "model": run.model.state_dict(), "gate": None if gating is None else gating.gate.state_dict(),
            "gate_refreshes": 0 if gating is None else gating.refreshes,
            "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(), "step": run.step,
            "config": cfg.to_dict(), "history": run.history, "train_seconds": run.timer.total,
            "epoch_partial": {"sums": sums, "steps": run.steps_in_window,
                              "flips": list(run.stepper.flips)},
            "rng": rng_state()})
    dist.barrier(info)


def _tensorboard_writer(run: _Run):
    """A TensorBoard ``SummaryWriter`` on rank 0 when asked for and installed, else None."""
    if not (run.cfg.tensorboard and run.info.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(Path(run.cfg.out_dir) / "tb"))
    except ImportError:
        run.say("tensorboard is not installed: no TensorBoard logs (CSV only).")
        return None


def _catch_stop_signals(signals: list[str]) -> dict:
    """Record SIGTERM / SIGINT in ``signals`` instead of stopping (a second SIGINT stops at once);
    returns the previous handlers, to put back. Nothing on Windows or off the main thread."""
    prev = {}
    if sys.platform != "win32":
        def on_signal(signum, frame):
            name = signal.Signals(signum).name
            if name == "SIGINT" and "SIGINT" in signals:  # a second Ctrl-C: stop now, no checkpoint
                raise KeyboardInterrupt
            signals.append(name)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                prev[sig] = signal.signal(sig, on_signal)
            except ValueError:  # not the main thread
                pass
    return prev


def _run_steps(run: _Run, quiet: bool) -> tuple[list[str], bool]:
    """Train from ``run.step`` to ``stop_step`` or the budget, or until a stop signal; checkpoint
    when it stops inside an epoch. Returns the stop signals seen and whether one stopped it."""
    cfg, info = run.cfg, run.info
    stop = min(cfg.stop_step or run.total, run.total)
    batches = run.data.train_batches(run.stepper.batch_index(run.step))
    writer = _tensorboard_writer(run)
    bar = _progress(stop, f"{cfg.method} {cfg.arch}", cfg.progress and info.is_main and not quiet,
                    initial=run.step)
    steps_log = _StepLog(Path(cfg.out_dir) / "steps.csv", writer, info.is_main, cfg.batch_size)
    signals: list[str] = []  # names of the stop signals seen (SIGTERM, SIGINT)
    prev = _catch_stop_signals(signals)
    run.model.train()
    stop_now = False  # a stop signal seen (by any rank, agreed at the same step under DDP)
    try:
        stop_now = _step_until(run, stop, batches, signals, steps_log, writer, bar)
        if run.step % run.spe != 0 or stop_now:  # stopped inside an epoch (stop_step or a signal)
            _save(run)
            why = signals[0] if signals else ("a signal on another rank" if stop_now else "stop_step")
            run.say(f"stopped at step {run.step} ({why}); checkpoint {run.ckpt_path}")
    finally:
        for sig, handler in prev.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    return signals, stop_now


def _step_until(run: _Run, stop: int, batches, signals, steps_log, writer, bar) -> bool:
    """The step loop (timed): steps, ``steps.csv`` rows every ``log_every`` steps, the epoch's
    end every ``spe`` steps. Returns whether a stop signal ended it."""
    cfg, spe = run.cfg, run.spe
    stop_now = False
    run.timer.start()
    steps_log.start(run.step, run.timer.total)
    while run.step < stop and not stop_now:
        loss_sum, correct, n = run.stepper.step(run.step, batches)
        run.acc[0] += loss_sum.double()
        run.acc[1] += correct
        run.acc[2] += n
        steps_log.add(loss_sum, correct, n)
        run.step += 1
        run.steps_in_window += 1
        if run.step % cfg.log_every == 0 or run.step == stop or run.step % spe == 0:
            if bar is not None:
                bar.update(run.step - bar.n)
            steps_log.write(run.step, spe, run.opt.param_groups[0]["lr"], run.timer.lap(), run.info)
        if run.step % spe == 0:
            _finish_epoch(run, steps_log, writer, progress=bar is not None)
        stop_now = _stop_agreed(run, signals, stop_now)
    run.timer.stop()
    return stop_now


def _finish_epoch(run: _Run, steps_log, writer, *, progress: bool) -> None:
    """At an epoch's end (timer paused): evaluate, log the row, reset the epoch sums, checkpoint."""
    seconds = run.timer.stop()
    row = _end_of_epoch(run.step, run.spe, run.acc, seconds, run.steps_in_window, run.cfg, run.info,
                        run.model, run.data, run.amp, run.opt, run.stepper, run.history,
                        progress=progress)
    run.say(_fmt_row(row))
    if writer is not None:
        for k, v in row.items():
            if isinstance(v, (int, float)) and v is not None and k not in ("epoch", "step"):
                writer.add_scalar(k, v, row["step"])
        writer.flush()
    run.acc.zero_()
    run.steps_in_window = 0
    _save(run)
    run.timer.start()
    steps_log.start(run.step, run.timer.total)


def _stop_agreed(run: _Run, signals: list[str], stop_now: bool) -> bool:
    """Whether to stop after this step: a signal seen here (one process), or by any rank (DDP),
    agreed every ``log_every`` steps and at epoch ends; otherwise ``stop_now`` unchanged."""
    if not run.info.active:
        return bool(signals)
    if run.step % run.cfg.log_every == 0 or run.step % run.spe == 0:
        # ranks must stop at the same step: agree every log_every steps (one tiny
        # all-reduce; a per-step one would add a host sync to every step)
        flag = dist.all_reduce_sum(torch.tensor([float(bool(signals))], device=run.info.device),
                                   run.info)
        return bool(flag.item() > 0)
    return stop_now


STEP_FIELDS = ("step", "epoch", "lr", "train_loss", "train_acc", "steps", "images_per_s")


class _StepLog:
    """Per-step scalars: every ``log_every`` steps one row of ``steps.csv`` (mean loss and accuracy
    of the steps since the last row, the learning rate, images/s over them) and the same as
    TensorBoard scalars ``step/*``. The sums stay on the device between rows (no host sync)."""

    def __init__(self, path: Path, writer, main: bool, batch_size: int):
        self.path, self.writer, self.main, self.B = path, writer, main, batch_size
        self.sums = None
        self.steps = 0
        self.t0 = 0.0

    def start(self, step: int, seconds: float) -> None:
        self.steps, self.t0, self.sums = 0, seconds, None

    def add(self, loss_sum, correct, n) -> None:
        v = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(n), dtype=torch.float64,
                                                                           device=loss_sum.device)])
        self.sums = v if self.sums is None else self.sums + v
        self.steps += 1

    def write(self, step: int, spe: int, lr: float, seconds: float, info) -> None:
        if self.sums is None:
            return
        s = dist.all_reduce_sum(self.sums.clone(), info).tolist()
        n = max(s[2], 1.0)
        row = {"step": step, "epoch": round(step / spe, 4), "lr": lr, "train_loss": s[0] / n,
               "train_acc": s[1] / n, "steps": self.steps,
               "images_per_s": self.steps * self.B / max(seconds - self.t0, 1e-9)}
        if self.main:
            new = not self.path.exists()
            with open(self.path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=STEP_FIELDS)
                if new:
                    w.writeheader()
                w.writerow(row)
            if self.writer is not None:
                for k in ("lr", "train_loss", "train_acc", "images_per_s"):
                    self.writer.add_scalar(f"step/{k}", row[k], step)
        self.start(step, seconds)


def _end_of_epoch(step, spe, acc, seconds, steps_in_window, cfg, info, model, data, amp, opt,
                  stepper, history, progress=False) -> dict:
    dist.all_reduce_sum(acc, info)
    n = max(float(acc[2]), 1.0)
    row = {k: None for k in CSV_FIELDS}
    prev_seconds = history[-1]["train_seconds"] if history else 0.0
    row.update(epoch=step // spe, step=step, lr=opt.param_groups[0]["lr"],
               train_loss=float(acc[0]) / n, train_acc=float(acc[1]) / n,
               train_seconds=seconds,
               images_per_s=steps_in_window * cfg.batch_size / max(seconds - prev_seconds, 1e-9))
    if stepper.flips[1]:
        row["flip_frac"] = stepper.flips[0] / stepper.flips[1]
    stepper.flips = [0, 0]
    epoch = step // spe
    # the network's own support for evaluation and head features (alt-inner may hold a batch's)
    with (stepper.gating.paused() if stepper.gating is not None else contextlib.nullcontext()):
        if cfg.exact_head and epoch % cfg.head_every == 0:
            row["val_loss"], row["val_acc_before_head"] = evaluate(model, data, info, amp,
                                                                   limit=cfg.eval_subset, progress=progress)
            res = _solve_head(model, data, cfg, info, amp)
            row.update(head_gap=res["gap"], head_gap_certified=res["gap_certified"],
                       head_status=res["solver_status"], head_grad_norm=res["solver_grad_norm"])
        row["val_loss"], row["val_acc"] = evaluate(model, data, info, amp, limit=cfg.eval_subset,
                                                   progress=progress)
    history.append(row)
    if info.is_main:
        path = Path(cfg.out_dir) / "metrics.csv"
        new = not path.exists() or not history[:-1]
        with open(path, "w" if new else "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)
    return row


def _fmt_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:>3}", f"step {row['step']:>7}",
             f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}",
             f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}",
             f"{row['train_seconds']:.1f}s", f"{row['images_per_s']:.0f} img/s"]
    if row.get("flip_frac") is not None:
        parts.append(f"flips {row['flip_frac']:.2e}")
    if row.get("head_gap") is not None:
        parts.append(f"head gap {row['head_gap']:.2e} (certified <= {row['head_gap_certified']:.2e}, "
                     f"{row['head_status']}; val acc before {row['val_acc_before_head']:.4f})")
    return " | ".join(parts)


def _summary(cfg, info, history, step, total, seconds, terminated) -> dict:
    last = history[-1] if history else {}
    dev = info.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    tgt = cfg.target_acc or None
    return {
        "method": cfg.method, "arch": cfg.arch, "dataset": cfg.dataset, "activation": cfg.activation,
        "tau": cfg.tau, "topk": cfg.topk, "steps": step, "steps_budget": total,
        "epochs": len(history), "final_val_acc": last.get("val_acc"),
        "best_val_acc": max((r["val_acc"] for r in history), default=None),
        "final_train_loss": last.get("train_loss"), "target_acc": tgt,
        "epochs_to_target": _epochs_to(history, "epoch", tgt) if tgt else None,
        "seconds_to_target": _epochs_to(history, "train_seconds", tgt) if tgt else None,
        "train_seconds": seconds,
        "images_per_s": (step * cfg.batch_size / seconds) if seconds > 0 else None,
        "device": name, "world_size": info.world, "interrupted": terminated,
        "history": history, "config": cfg.to_dict(),
    }
