r"""Baselines for the alternation (C9): SGD, SGD with momentum and Adam, fairly tuned.

Every baseline minimises the same objective as :func:`altheory.alternation.alternation.alternate`,

.. math:: F(W) = \ell\big(f(X; W), Y\big) + \tfrac\lambda2\sum_l\|W_l\|_F^2,

on the *true* network (PHT with threshold ``tau``, or ReLU when ``tau = 0``), whose gradient
treats the mask :math:`\mathbb 1[z > \tau]` as constant (the derivative almost everywhere), from
the same initial weights (:func:`altheory.alternation.alternation.mlp` with the same seed). Full-batch
(``batch_size=None``) or mini-batch (samples reshuffled every epoch, seeded), constant step size.

A *sweep* runs each method over a small grid of step sizes and seeds; :func:`best_per_method`
picks, per (method, batch mode, network), the step size with the lowest median final objective over the
seeds — the sweep itself is kept, so a figure can show it. These are measurements, never
assertions.

Cost accounting matches the alternation's: one epoch is one pass over the training data;
``seconds`` counts the optimisation only (evaluation excluded), on the CPU threads torch has.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from altheory.alternation.alternation import mlp_parts
from altheory.solvers.losses import check_loss, check_targets, loss_torch
from altheory.solvers.problems import check_lam

__all__ = ["OptimizerName", "OPTIMIZERS", "Curve", "train_baseline", "sweep", "best_per_method",
           "accuracy", "DEFAULT_LRS"]

OptimizerName = Literal["sgd", "momentum", "adam"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam")
# Step-size grids (log-spaced, a factor ~3 apart) per method, for inputs scaled to unit variance.
DEFAULT_LRS: dict[str, tuple[float, ...]] = {
    "sgd": (0.03, 0.1, 0.3, 1.0),
    "momentum": (0.01, 0.03, 0.1, 0.3),
    "adam": (0.003, 0.01, 0.03, 0.1),
}


@dataclass
class Curve:
    """One optimisation run, evaluated after every epoch (index 0 is the initial point)."""

    method: str
    lr: float
    batch: str                  # "full" or "mini"
    seed: int
    tau: float
    epochs: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False

    @property
    def final(self) -> float:
        """Final objective (``inf`` when the run diverged)."""
        return math.inf if self.diverged or not self.objective else self.objective[-1]

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(out: np.ndarray, Y: np.ndarray, loss: str) -> float:
    """Share of correct predictions: argmax against the one-hot/argmax of ``Y`` for k > 1,
    sign against ``Y`` for k = 1 (labels in {-1, +1})."""
    out = np.asarray(out, np.float64)
    Y = np.asarray(Y, np.float64)
    if Y.ndim == 2 and Y.shape[1] > 1:
        return float(np.mean(out.reshape(Y.shape).argmax(1) == Y.argmax(1)))
    return float(np.mean(np.sign(out.reshape(-1)) == np.sign(Y.reshape(-1))))


def _params(parts) -> list[torch.Tensor]:
    ps = []
    for lin in parts.linears:
        ps.append(lin.weight)
        if lin.bias is not None:
            ps.append(lin.bias)
    return ps


def _optimizer(method: str, params, lr: float) -> torch.optim.Optimizer:
    if method == "sgd":
        return torch.optim.SGD(params, lr=lr)
    elif method == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    elif method == "adam":
        return torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"method must be one of {OPTIMIZERS}; got {method!r}.")


def train_baseline(model: nn.Module, X, Y, *, method: str = "adam", lr: float = 1e-3,
                   epochs: int = 20, batch_size: int | None = None, loss: str = "squared",
                   lam: float = 0.0, seed: int = 0,
                   evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                   inplace: bool = False) -> tuple[nn.Module, Curve]:
    r"""Train ``model`` (an MLP of :func:`altheory.alternation.alternation.mlp`) with one optimiser.

    Parameters
    ----------
    model : nn.Sequential MLP, float64. Copied unless ``inplace``.
    X : ndarray of shape (n, d); Y : ndarray of shape (n,) or (n, k).
    method : {"sgd", "momentum", "adam"}
        Plain SGD, SGD with momentum 0.9, Adam (betas 0.9, 0.999).
    lr : float > 0, constant step size.
    epochs : int >= 1, passes over the data.
    batch_size : int or None (full batch).
    loss, lam : as :func:`altheory.alternation.alternation.alternate`.
    seed : int, seeds the mini-batch order.
    evaluate : callable ``model -> dict`` of extra metrics (e.g. test accuracy), not timed.

    Returns
    -------
    model, Curve
        A run whose objective becomes non-finite stops and is marked ``diverged``.

    Examples
    --------
    >>> from altheory.alternation import mlp
    >>> X = np.random.default_rng(0).standard_normal((32, 3)); Y = X[:, :1] ** 2
    >>> _, c = train_baseline(mlp(3, (8,), 1, seed=0), X, Y, method="adam", lr=1e-2, epochs=5)
    >>> len(c.objective), c.objective[-1] < c.objective[0]
    (6, True)
    """
    if method not in OPTIMIZERS:
        raise ValueError(f"method must be one of {OPTIMIZERS}; got {method!r}.")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite float > 0; got lr={lr!r}.")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1; got {epochs!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None (full batch); got {batch_size!r}.")
    check_loss(loss)
    lam = check_lam(lam)
    model = model if inplace else copy.deepcopy(model)
    parts = mlp_parts(model)
    Xt = torch.from_numpy(np.ascontiguousarray(np.asarray(X, np.float64)))
    Yn = check_targets(Y, loss)
    Yt = torch.from_numpy(Yn)
    n = Xt.shape[0]
    bs = n if batch_size is None else min(int(batch_size), n)
    params = _params(parts)
    weights = [lin.weight for lin in parts.linears]
    opt = _optimizer(method, params, float(lr))
    gen = np.random.default_rng(seed)
    curve = Curve(method, float(lr), "full" if bs == n else "mini", int(seed), parts.tau)

    def F(idx=None):
        out = model(Xt if idx is None else Xt[idx])
        yy = Yt if idx is None else Yt[idx]
        val = loss_torch(out.reshape(yy.shape), yy, loss)
        reg = 0.5 * lam * sum((W ** 2).sum() for W in weights) if lam > 0 else 0.0
        return val, val + reg

    def record(epoch: float, secs: float) -> bool:
        with torch.no_grad():
            lo, ob = F()
            out = model(Xt).numpy()
        curve.epochs.append(epoch)
        curve.seconds.append(secs)
        curve.loss.append(float(lo))
        curve.objective.append(float(ob))
        extra = {"train_acc": accuracy(out, Yn, loss)}
        if evaluate is not None:
            extra.update(evaluate(model))
        for k, v in extra.items():
            curve.metrics.setdefault(k, []).append(float(v))
        return math.isfinite(float(ob))

    secs = 0.0
    record(0, 0.0)
    for ep in range(1, int(epochs) + 1):
        t0 = time.perf_counter()
        perm = torch.from_numpy(gen.permutation(n)) if bs < n else None
        for s in range(0, n, bs):
            idx = None if perm is None else perm[s:s + bs]
            opt.zero_grad(set_to_none=True)
            F(idx)[1].backward()
            opt.step()
        secs += time.perf_counter() - t0
        if not record(ep, secs):
            curve.diverged = True
            break
    return model, curve


def sweep(make_model: Callable[[int], nn.Module], X, Y, *, methods: Sequence[str] = OPTIMIZERS,
          lrs: dict[str, Sequence[float]] | None = None, batch_sizes: Sequence[int | None] = (None,),
          epochs: dict[str, int] | int = 20, seeds: Sequence[int] = (0,), loss: str = "squared",
          lam: float = 0.0, evaluate=None, progress=None) -> list[Curve]:
    """Every (method, step size, batch size, seed): ``make_model(seed)`` gives the start.

    ``epochs`` may be a dict ``{"full": 200, "mini": 20}`` (full batch takes more, cheaper epochs).
    """
    lrs = DEFAULT_LRS if lrs is None else lrs
    curves = []
    for method in methods:
        if method not in OPTIMIZERS:
            raise ValueError(f"method must be one of {OPTIMIZERS}; got {method!r}.")
        for bsz in batch_sizes:
            mode = "full" if bsz is None else "mini"
            ep = epochs[mode] if isinstance(epochs, dict) else epochs
            for lr in lrs[method]:
                for seed in seeds:
                    _, c = train_baseline(make_model(seed), X, Y, method=method, lr=lr, epochs=ep,
                                          batch_size=bsz, loss=loss, lam=lam, seed=seed,
                                          evaluate=evaluate)
                    curves.append(c)
                    if progress is not None:
                        progress.update(1)
    return curves


def best_per_method(curves: Sequence[Curve]) -> dict[tuple[str, str, float], float]:
    """Per (method, batch mode, tau), the step size with the lowest median final objective over
    seeds. Diverged runs count as ``inf``; ties go to the smaller step size.

    Examples
    --------
    >>> cs = [Curve("adam", lr, "full", 0, 0.0, objective=[1.0, f]) for lr, f in ((0.1, 0.5), (0.01, 0.2))]
    >>> best_per_method(cs)
    {('adam', 'full', 0.0): 0.01}
    """
    groups: dict[tuple[str, str, float, float], list[float]] = {}
    for c in curves:
        groups.setdefault((c.method, c.batch, c.tau, c.lr), []).append(c.final)
    best: dict[tuple[str, str, float], tuple[float, float]] = {}
    for (m, b, tau, lr), finals in sorted(groups.items()):
        med = float(np.median(finals))
        if (m, b, tau) not in best or med < best[(m, b, tau)][1]:
            best[(m, b, tau)] = (lr, med)
    return {k: v[0] for k, v in best.items()}
