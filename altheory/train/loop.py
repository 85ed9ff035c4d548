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

Per epoch: validation accuracy and loss, optional exact head solve (C8), one CSV row, TensorBoard
scalars, an atomic checkpoint. Timing covers the training steps only (CUDA events on GPU,
``perf_counter`` on CPU); evaluation, head solves and checkpoints are not counted.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from altheory.train import distributed as dist
from altheory.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from altheory.train.config import TrainConfig, config_diff
from altheory.train.head import head_gap
from altheory.train.methods import Gating, wrap_activations
from altheory.train.models import build_model, final_linear
from altheory.train.pipeline import build_data, steps_total

__all__ = ["train", "Stepper", "make_optimizer", "make_schedule"]

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


@torch.no_grad()
def evaluate(model: nn.Module, data, info, amp) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on the validation set, summed over ranks."""
    was = model.training
    model.eval()
    tot = torch.zeros(3, dtype=torch.float64, device=info.device)
    for x, y in data.eval_batches("val"):
        with amp():
            logits = _upcast(model(x))
        tot[0] += F.cross_entropy(logits, y, reduction="sum").double()
        tot[1] += (logits.argmax(1) == y).sum()
        tot[2] += y.shape[0]
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


def train(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False) -> dict:
    r"""Train with ``cfg``; returns the summary dict (also written to ``out_dir/summary.json``).

    Parameters
    ----------
    cfg : TrainConfig (validated).
    resume : continue from ``out_dir/checkpoint.pt``; its config must equal ``cfg`` except for
        the run-control fields (``stop_step``, ``progress``, ``tensorboard``, ``workers``,
        ``log_every``, ``out_dir``).
    quiet : print nothing (tests).

    Raises
    ------
    ValueError
        A resume whose checkpoint was written with a different config (the keys are listed).
    """
    info = dist.init(cfg.device)
    try:
        return _train(cfg, info, resume, quiet)
    finally:
        dist.cleanup(info)


def _train(cfg: TrainConfig, info, resume: bool, quiet: bool) -> dict:
    say = (lambda *a: None) if (quiet or not info.is_main) else (lambda *a: print(*a, flush=True))
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoint.pt"
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        diff = config_diff(ckpt["config"], cfg.to_dict())
        if diff:
            raise ValueError(f"--resume: the checkpoint {ckpt_path} was written with a different config: "
                             + ", ".join(f"{k}: {a!r} (checkpoint) vs {b!r} (now)" for k, (a, b) in diff.items())
                             + ". Resume with the same config, or start a new out_dir.")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(cfg.dumps())
    say("resolved config:\n" + cfg.dumps())

    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    use_amp = info.device.type == "cuda" and cfg.amp == "bf16" and dtype == torch.float32
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    data = build_data(cfg, info, dtype)
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

    spe = data.steps_per_epoch
    total = steps_total(cfg, spe)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg, total)
    step, history, timer = 0, [], _Timer(info.device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if gating is not None:
            gating.gate.load_state_dict(ckpt["gate"])
            gating.refreshes = ckpt["gate_refreshes"]
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step, history, timer.total = ckpt["step"], ckpt["history"], ckpt["train_seconds"]
        set_rng_state(ckpt["rng"])
        say(f"resumed from {ckpt_path} at step {step}")
    stop = min(cfg.stop_step or total, total)

    def checkpoint():
        if cfg.checkpoint and info.is_main:
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "gate": None if gating is None else gating.gate.state_dict(),
                "gate_refreshes": 0 if gating is None else gating.refreshes,
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                "config": cfg.to_dict(), "history": history, "train_seconds": timer.total,
                "rng": rng_state()})
        dist.barrier(info)

    stepper = Stepper(model, fwd, opt, sched, method=cfg.method, gating=gating,
                      alt_every=cfg.alt_every or spe, inner_steps=cfg.inner_steps, amp=amp,
                      track_flips=cfg.track_flips)
    batches = data.train_batches(stepper.batch_index(step))

    writer = None
    if cfg.tensorboard and info.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tb"))
        except ImportError:
            say("tensorboard is not installed: no TensorBoard logs (CSV only).")
    bar = None
    if cfg.progress and info.is_main and not quiet:
        try:
            from tqdm import tqdm
            bar = tqdm(total=stop, initial=step, desc=f"{cfg.method} {cfg.arch}", dynamic_ncols=True)
        except ImportError:
            pass

    terminated = []
    prev = None
    if sys.platform != "win32":
        try:
            prev = signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
        except ValueError:  # not the main thread
            prev = None

    model.train()
    acc = torch.zeros(3, dtype=torch.float64, device=info.device)
    steps_in_window = 0
    stop_now = False  # SIGTERM seen (by any rank, agreed at the same step under DDP)
    try:
        timer.start()
        while step < stop and not stop_now:
            loss_sum, correct, n = stepper.step(step, batches)
            acc[0] += loss_sum.double()
            acc[1] += correct
            acc[2] += n
            step += 1
            steps_in_window += 1
            if bar is not None and (step % cfg.log_every == 0 or step == stop):
                bar.update(step - bar.n)
            if step % spe == 0:
                seconds = timer.stop()
                row = _end_of_epoch(step, spe, acc, seconds, steps_in_window, cfg, info, model,
                                    data, amp, opt, stepper, history)
                say(_fmt_row(row))
                if writer is not None:
                    for k, v in row.items():
                        if isinstance(v, (int, float)) and v is not None and k not in ("epoch", "step"):
                            writer.add_scalar(k, v, row["step"])
                    writer.flush()
                acc.zero_()
                steps_in_window = 0
                checkpoint()
                timer.start()
            if not info.active:
                stop_now = bool(terminated)
            elif step % cfg.log_every == 0 or step % spe == 0:
                # ranks must stop at the same step: agree every log_every steps (one tiny
                # all-reduce; a per-step one would add a host sync to every step)
                flag = dist.all_reduce_sum(torch.tensor([float(bool(terminated))], device=info.device), info)
                stop_now = bool(flag.item() > 0)
        timer.stop()
        if step % spe != 0 or stop_now:  # stopped inside an epoch (stop_step or SIGTERM)
            checkpoint()
            say(f"stopped at step {step} ({'SIGTERM' if stop_now else 'stop_step'}); checkpoint {ckpt_path}")
    finally:
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()

    summary = _summary(cfg, info, history, step, total, timer.total, stop_now and step < total)
    if info.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        say(json.dumps({k: v for k, v in summary.items() if k not in ("config", "history")}, indent=2))
    return summary


def _end_of_epoch(step, spe, acc, seconds, steps_in_window, cfg, info, model, data, amp, opt,
                  stepper, history) -> dict:
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
            row["val_loss"], row["val_acc_before_head"] = evaluate(model, data, info, amp)
            res = _solve_head(model, data, cfg, info, amp)
            row.update(head_gap=res["gap"], head_gap_certified=res["gap_certified"],
                       head_status=res["solver_status"], head_grad_norm=res["solver_grad_norm"])
        row["val_loss"], row["val_acc"] = evaluate(model, data, info, amp)
    history.append(row)
    if info.is_main:
        path = Path(cfg.out_dir) / "metrics.csv"
        new = not path.exists() or epoch == 1
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
