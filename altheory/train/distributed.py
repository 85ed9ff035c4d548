r"""DDP from torchrun's environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``.

``torchrun --nproc_per_node=G -m altheory.cli train ...`` (or ``altheory train`` under torchrun)
starts G processes; each calls :func:`init` and gets its rank, its device (``cuda:LOCAL_RANK``)
and the backend (NCCL on CUDA, gloo on CPU). Without those variables the run is one process and
nothing is initialised. The global batch is split evenly across ranks, and gradients are
averaged by DDP, so with ``sync_bn`` the update equals the one-process update on the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init", "cleanup", "all_reduce_sum", "barrier", "GlobalBatchNorm2d",
           "convert_sync_bn"]


@dataclass
class DistInfo:
    """rank, world size, local rank, the process's device, and whether DDP is active."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    active: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _resolve_device(pref: str, local_rank: int) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch.cuda.is_available() is False; use device=cpu.")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if pref == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {pref!r}.")


def init(device: str = "auto") -> DistInfo:
    """Initialise DDP when torchrun's variables are set; otherwise a one-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _resolve_device(device, local_rank)
    active = world > 1
    if active and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev, active)


def cleanup(info: DistInfo, *, wait: bool = True) -> None:
    """Tear the process group down; with ``wait`` (a normal end) after a barrier, so that no rank
    destroys its group while another still writes its last files or talks to it (a rank that
    left early has been seen to abort at exit in gloo's teardown). A rank that failed does not
    wait: the others may never reach the barrier."""
    if info.active and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks (in place; returns it). No-op for one process."""
    if info.active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


class GlobalBatchNorm2d(nn.BatchNorm2d):
    r"""BatchNorm2d whose training-mode statistics are those of the global batch, on any backend.

    ``nn.SyncBatchNorm`` runs on GPUs only; this one sums :math:`(\sum x, \sum x^2, n)` over ranks
    with the differentiable ``torch.distributed.nn.functional.all_reduce`` (gloo on CPU), so a
    DDP run on CPU computes the same batch statistics as one process on the whole batch (up to
    rounding: the variance is :math:`E[x^2] - E[x]^2` here). Used on CPU; CUDA uses SyncBatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training or not self.track_running_stats) or not dist.is_initialized():
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, 2, 3]
        n_local = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), n_local]))
        C = x.shape[1]
        N = stats[-1].detach()
        mean = stats[:C] / N
        var = stats[C:2 * C] / N - mean * mean
        if self.training and self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * N / (N - 1))
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> SyncBatchNorm on CUDA, BatchNorm2d -> :class:`GlobalBatchNorm2d` on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(device=child.weight.device, dtype=child.weight.dtype)
            setattr(model, name, new)
        else:
            convert_sync_bn(child, device)
    return model
