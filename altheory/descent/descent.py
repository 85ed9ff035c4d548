r"""Local descent on the non-convex parametrisation (torch, float64): GD, SGD, Adam, L-BFGS.

The objective is a multi-layer perceptron without biases, gated by a fixed support or run as
the true PHT network:

.. math::

    F(W) = \ell\big(W_L D^{L-1}_i W_{L-1} \cdots D^1_i W_1 x_i,\ y_i\big)
           + \tfrac{\lambda}{2}\sum_l \|W_l\|_F^2,

with :math:`D^l_i` either fixed (``masks`` given: the gated network :math:`f_S` of docs/claims.md) or
:math:`\mathrm{diag}(\mathbb 1[z^l_i > \tau])` recomputed at every evaluation (``masks=None``:
the true PHT/ReLU network; its gradient treats the mask as constant, the derivative almost
everywhere). Any subset of the layers can be trained, the others held at their values (C3).

:func:`descend` runs one method from one start and returns a :class:`DescentResult`: final
objective, full-batch gradient norm, iterations, seconds and the weights. Classification of the
end point (local minimum / saddle / not converged) is :mod:`altheory.descent.endpoints`. Descent results
are measurements, not theorems: nothing here asserts optimality.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch

from altheory.solvers.losses import check_loss, check_targets, loss_torch, zero_loss
from altheory.solvers.problems import check_lam, check_matrix

__all__ = ["MLPObjective", "DescentResult", "descend", "newton_polish", "balance", "balanced_representative", "polish", "METHODS", "MethodName",
           "multi_start", "STOP_REASONS"]

# Why a run stopped (DescentResult.stopped); the optimizer's own words are in ``message``.
STOP_REASONS: tuple[str, ...] = (
    "tol",          # full-batch gradient norm <= tol_grad
    "max_iter",     # iteration (epoch) budget spent
    "max_fun",      # L-BFGS: function-evaluation budget spent
    "stalled",      # L-BFGS: no relative decrease of F (ftol = 0: F did not change at all)
    "line-search",  # no step satisfied the line-search conditions
    "diverged",     # SGD: the step was halved 30 times after non-finite / exploding objectives
    "nan",          # the objective or the gradient is not finite
)

MethodName = Literal["gd", "sgd", "adam", "lbfgs"]
METHODS: tuple[str, ...] = ("gd", "sgd", "adam", "lbfgs")
_DT = torch.float64


def _check_mask(m, l: int, shape: tuple[int, int]) -> np.ndarray:
    """``masks[l]`` as an array of shape ``(n, h_{l+1})`` holding a support: bool, or 0/1 numbers."""
    m = np.asarray(m)
    if m.shape != shape:
        raise ValueError(f"masks[{l}] must have shape (n, h_{l + 1}) = {shape}; got {m.shape}.")
    if m.dtype != bool and not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
        bad = (np.unique(m[~np.isin(m, (0, 1))])[:3] if np.issubdtype(m.dtype, np.number)
               else f"dtype {m.dtype}")
        raise ValueError(f"masks[{l}] must be a support: bool, or the numbers 0 and 1 only; got "
                         f"{bad} (a pre-activation instead of its mask?). Pass the mask: (z > tau).")
    return m


class MLPObjective:
    r"""Objective of a bias-free MLP as a function of a flat vector of its trainable weights.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Y : ndarray of shape (n,) or (n, k)
    weights : list of ndarray
        ``W_1`` (h_1, d), ..., ``W_L`` (k, h_{L-1}) — initial values of the trained layers and
        the values of the fixed ones. A 1-D last entry of shape (h_{L-1},) is read as (1, h).
    masks : list of bool ndarray of shape (n, h_l), l = 1..L-1, or None
        The fixed support (gated network); None runs the true PHT network with threshold ``tau``.
    tau : float >= 0, the PHT threshold (only when ``masks`` is None).
    loss : one of :data:`altheory.solvers.losses.LOSSES`
    lam : float >= 0, weight decay on every layer.
    trainable : sequence of int or None
        Indices of the trained layers (default: all).
    biases : list of ndarray (h_l,) or None
        Biases of every layer (``z^l = W_l a^{l-1} + b_l``); None for a bias-free network.
        A trained layer trains its bias too: its block of ``theta`` is ``(W_l.ravel(), b_l)``,
        the ordering of :func:`altheory.layer_operator`. Biases are not decayed.

    Examples
    --------
    >>> X = np.eye(2); W = [np.eye(2), np.ones(2)]
    >>> f = MLPObjective(X, np.array([1.0, 1.0]), W, masks=[np.ones((2, 2), bool)])
    >>> float(f(f.theta0()))
    0.0
    """

    def __init__(self, X, Y, weights: Sequence, *, masks=None, tau: float = 0.0,
                 loss: str = "squared", lam: float = 0.0, trainable: Sequence[int] | None = None,
                 biases: Sequence | None = None):
        self.X = torch.from_numpy(check_matrix(X, "X"))
        check_loss(loss)
        self.loss = loss
        Yn = check_targets(Y, loss)
        if Yn.shape[0] != self.X.shape[0]:
            raise ValueError(f"Y must have n={self.X.shape[0]} rows; got shape {Yn.shape}.")
        self.Y = torch.from_numpy(Yn)
        self.lam = check_lam(lam)
        if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)) or not weights:
            raise TypeError("weights must be a non-empty list of arrays [W_1, ..., W_L].")
        Ws = []
        for l, W in enumerate(weights):
            W = np.asarray(W, np.float64)
            if W.ndim == 1 and l == len(weights) - 1:
                W = W[None, :]
            Ws.append(check_matrix(W, f"weights[{l}]"))
        prev = self.X.shape[1]
        for l, W in enumerate(Ws):
            if W.shape[1] != prev:
                raise ValueError(f"weights[{l}] must have {prev} columns; got shape {W.shape}.")
            prev = W.shape[0]
        self.shapes = [W.shape for W in Ws]
        self.L = len(Ws)
        self.fixed = [torch.from_numpy(W.copy()) for W in Ws]
        if masks is not None:
            if len(masks) != self.L - 1:
                raise ValueError(f"masks must have L-1 = {self.L - 1} entries; got {len(masks)}.")
            ms = []
            for l, m in enumerate(masks):
                m = _check_mask(m, l, (self.X.shape[0], self.shapes[l][0]))
                ms.append(torch.from_numpy(m.astype(np.float64)))
            self.masks = ms
        else:
            self.masks = None
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or tau < 0:
            raise ValueError(f"tau must be a number >= 0; got {tau!r}. Use tau=0 for ReLU.")
        self.tau = float(tau)
        tr = list(range(self.L)) if trainable is None else [int(t) for t in trainable]
        if not tr or any(not 0 <= t < self.L for t in tr) or len(set(tr)) != len(tr):
            raise ValueError(f"trainable must be distinct layer indices in [0, {self.L}); got {trainable}.")
        self.trainable = sorted(tr)
        if biases is not None:
            if len(biases) != self.L:
                raise ValueError(f"biases must have L = {self.L} entries; got {len(biases)}.")
            bs = []
            for l, b in enumerate(biases):
                b = check_matrix(np.asarray(b, np.float64).reshape(-1), f"biases[{l}]", ndim=1)
                if b.shape != (self.shapes[l][0],):
                    raise ValueError(f"biases[{l}] must have shape ({self.shapes[l][0]},); got {b.shape}.")
                bs.append(torch.from_numpy(b.copy()))
            self.fixed_b = bs
        else:
            self.fixed_b = None
        has_b = self.fixed_b is not None
        self.sizes = [int(np.prod(self.shapes[t])) + (self.shapes[t][0] if has_b else 0)
                      for t in self.trainable]
        self.dim = int(sum(self.sizes))
        self.n = int(self.X.shape[0])

    # ------------------------------------------------------------------------------------
    def theta0(self) -> torch.Tensor:
        """The trainable weights (and biases) given at construction, flattened (float64)."""
        parts = []
        for t in self.trainable:
            parts.append(self.fixed[t].reshape(-1))
            if self.fixed_b is not None:
                parts.append(self.fixed_b[t])
        return torch.cat(parts).clone()

    def init(self, seed: int, *, scale: float | None = None) -> torch.Tensor:
        r"""A seeded random start: entries :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma` = ``scale``
        or :math:`1/\sqrt{\text{fan-in}}` per layer."""
        g = torch.Generator().manual_seed(int(seed))
        parts = []
        for t in self.trainable:
            h, fan_in = self.shapes[t]
            s = scale if scale is not None else 1.0 / math.sqrt(fan_in)
            parts.append(torch.randn(h * fan_in, generator=g, dtype=_DT) * s)
            if self.fixed_b is not None:
                parts.append(torch.zeros(h, dtype=_DT))
        return torch.cat(parts)

    def weights(self, theta) -> list[torch.Tensor]:
        """All layers' weights, with the trainable ones taken from ``theta``."""
        return self.params(theta)[0]

    def params(self, theta) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """``(weights, biases)`` of every layer, the trainable ones taken from ``theta``."""
        theta = torch.as_tensor(theta, dtype=_DT)
        Ws = list(self.fixed)
        bs = None if self.fixed_b is None else list(self.fixed_b)
        off = 0
        for t in self.trainable:
            sz = int(np.prod(self.shapes[t]))
            Ws[t] = theta[off:off + sz].reshape(self.shapes[t])
            off += sz
            if bs is not None:
                h = self.shapes[t][0]
                bs[t] = theta[off:off + h]
                off += h
        return Ws, bs

    def output(self, theta, idx=None) -> torch.Tensor:
        Ws, bs = self.params(theta)
        a = self.X if idx is None else self.X[idx]
        for l in range(self.L - 1):
            z = a @ Ws[l].T
            if bs is not None:
                z = z + bs[l]
            if self.masks is not None:
                m = self.masks[l] if idx is None else self.masks[l][idx]
            else:
                m = (z > self.tau).to(_DT).detach()
            a = z * m
        out = a @ Ws[-1].T
        if bs is not None:
            out = out + bs[-1]
        return out.reshape(-1) if self.Y.ndim == 1 else out

    def __call__(self, theta, idx=None) -> torch.Tensor:
        Y = self.Y if idx is None else self.Y[idx]
        val = loss_torch(self.output(theta, idx), Y, self.loss)
        if self.lam > 0:
            val = val + 0.5 * self.lam * sum((W ** 2).sum() for W in self.weights(theta))
        return val

    def weight_decay(self, theta) -> float:
        r""":math:`\tfrac\lambda2\sum_l\|W_l\|_F^2` (all layers, trained or fixed)."""
        with torch.no_grad():
            return float(0.5 * self.lam * sum((W ** 2).sum() for W in self.weights(theta)))

    def value(self, theta) -> float:
        """:math:`F(\theta)` (numpy forward pass)."""
        return self.value_and_grad(theta, need_grad=False)[0]

    def value_and_grad(self, theta, idx=None, *, need_grad: bool = True
                       ) -> tuple[float, np.ndarray | None]:
        r""":math:`F(\theta)` and :math:`\nabla F(\theta)` by a hand-written backward pass in numpy.

        The same function as ``self(theta, idx)`` (torch autograd, the reference it is tested
        against to 1e-12), about 10x cheaper per call on these small problems, where torch's
        per-operation overhead dominates. For ``hinge`` the gradient is the subgradient with
        0 at the kink; for the true network (``masks=None``) the mask is held constant.
        """
        th = theta.detach().cpu().numpy() if isinstance(theta, torch.Tensor) else np.asarray(theta)
        th = th.astype(np.float64, copy=False)
        if th.shape != (self.dim,):
            raise ValueError(f"theta must have shape ({self.dim},); got {th.shape}.")
        np_ = self._np_cache()
        Ws, bs = self._np_params(th, np_)
        idx_np = None if idx is None else np.asarray(idx.cpu().numpy() if isinstance(idx, torch.Tensor) else idx)
        X = np_["X"] if idx_np is None else np_["X"][idx_np]
        Y = np_["Y"] if idx_np is None else np_["Y"][idx_np]
        out, acts, gates = self._np_forward(X, Ws, bs, np_["M"], idx_np)
        f, g = self._np_loss(out, Y)
        if self.lam > 0:
            f += 0.5 * self.lam * float(sum(np.sum(W * W) for W in Ws))
        if not need_grad:
            return f, None
        return f, self._np_backward(g, Ws, bs, acts, gates)

    def _np_params(self, th: np.ndarray, np_: dict) -> tuple[list, list | None]:
        """Every layer's weights (and biases) as numpy arrays: the trained ones read from ``th``
        (views, no copy), the fixed ones from the cache."""
        Ws = list(np_["W"])
        bs = None if np_["b"] is None else list(np_["b"])
        off = 0
        for t in self.trainable:
            sz = int(np.prod(self.shapes[t]))
            Ws[t] = th[off:off + sz].reshape(self.shapes[t])
            off += sz
            if bs is not None:
                h = self.shapes[t][0]
                bs[t] = th[off:off + h]
                off += h
        return Ws, bs

    def _np_forward(self, X, Ws, bs, M, idx_np) -> tuple[np.ndarray, list, list]:
        """The forward pass in numpy: the output, every layer's input (``acts``, ``X`` first) and
        every hidden layer's gate (the fixed mask ``M`` rows ``idx_np``, or ``1[z > tau]``)."""
        acts, gates = [X], []
        a = X
        for l in range(self.L - 1):
            z = a @ Ws[l].T
            if bs is not None:
                z = z + bs[l]
            if M is not None:
                m = M[l] if idx_np is None else M[l][idx_np]
            else:
                m = (z > self.tau).astype(np.float64)
            a = z * m
            acts.append(a)
            gates.append(m)
        out = a @ Ws[-1].T
        if bs is not None:
            out = out + bs[-1]
        return out, acts, gates

    def _np_loss(self, out: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
        """The mean loss of ``out`` against ``Y`` and its gradient with respect to ``out`` (numpy;
        for ``hinge`` the subgradient with 0 at the kink)."""
        n = Y.shape[0]
        Y2 = Y.reshape(n, -1)
        if self.loss == "squared":
            r = out - Y2
            f = 0.5 * float(np.sum(r * r)) / n
            g = r / n
        elif self.loss == "logistic":
            mrg = -Y2 * out
            f = float(np.mean(np.logaddexp(0.0, mrg)))
            g = -Y2 * (0.5 * (1.0 + np.tanh(0.5 * mrg))) / n  # sigmoid, overflow-free
        elif self.loss == "hinge":
            mrg = 1.0 - Y2 * out
            f = float(np.mean(np.maximum(0.0, mrg)))
            g = -Y2 * (mrg > 0) / n
        elif self.loss == "softmax":
            mx = out.max(1, keepdims=True)
            e = np.exp(out - mx)
            se = e.sum(1, keepdims=True)
            f = float(np.mean((mx + np.log(se)).ravel() - (out * Y2).sum(1)))
            g = (e / se - Y2) / n
        else:  # pragma: no cover  (validated in __init__)
            raise ValueError(f"loss must be one of squared, logistic, hinge, softmax; got {self.loss!r}.")
        return f, g

    def _np_backward(self, g, Ws, bs, acts, gates) -> np.ndarray:
        """The backward pass in numpy from ``g`` (the loss gradient with respect to the output):
        the gradient of the trained layers (weight decay included), flattened as ``theta``."""
        gW: list = [None] * self.L
        gb: list = [None] * self.L
        delta = g
        lowest = min(self.trainable)
        for l in range(self.L - 1, lowest - 1, -1):
            gW[l] = delta.T @ acts[l]
            if bs is not None:
                gb[l] = delta.sum(0)
            if l > lowest:
                delta = (delta @ Ws[l]) * gates[l - 1]
        parts = []
        for t in self.trainable:
            gw = gW[t] + (self.lam * Ws[t] if self.lam > 0 else 0.0)
            parts.append(np.asarray(gw).ravel())
            if bs is not None:
                parts.append(gb[t])
        return np.concatenate(parts)

    def _np_cache(self) -> dict:
        c = getattr(self, "_np", None)
        if c is None:
            c = {"X": self.X.numpy(), "Y": self.Y.numpy(), "W": [W.numpy() for W in self.fixed],
                 "b": None if self.fixed_b is None else [b.numpy() for b in self.fixed_b],
                 "M": None if self.masks is None else [m.numpy() for m in self.masks]}
            self._np = c
        return c

    def grad(self, theta) -> tuple[float, np.ndarray]:
        th = torch.as_tensor(theta, dtype=_DT).detach().clone().requires_grad_(True)
        f = self(th)
        (g,) = torch.autograd.grad(f, th)
        return float(f.detach()), g.numpy()

    def zero_objective(self) -> float:
        """:math:`F(0) = \\ell(0, Y)` (the normaliser of the gap)."""
        return zero_loss(self.Y.numpy(), self.loss)


@dataclass
class DescentResult:
    """One descent run: where it ended and what it cost."""

    method: str
    seed: int
    objective: float
    grad_norm: float
    n_iter: int
    seconds: float
    theta: np.ndarray
    history: list[float] = field(default_factory=list)
    stopped: str = ""  # one of STOP_REASONS
    message: str = ""  # the optimizer's own stop message (scipy's for L-BFGS), or a summary


@contextlib.contextmanager
def single_thread():
    """Run torch and BLAS (numpy/scipy) on one thread inside the block (restored after).

    The problems here are tiny: on a shared 2-core machine torch's intra-op threads cost
    ~10x (10 ms vs 0.7 ms per gradient of a 20 x 12 two-layer net, measured), and OpenBLAS
    threads ~5x inside scipy's L-BFGS-B.
    """
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(old)


def _check_method(method) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    return method


def _in_single_thread(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_thread():
            return fn(*args, **kwargs)
    return wrapper


@_in_single_thread
def descend(obj: MLPObjective, theta0=None, *, method: str = "lbfgs", max_iter: int = 2000,
            lr: float | None = None, tol_grad: float = 1e-9, batch_size: int | None = None,
            seed: int = 0, record_every: int = 0) -> DescentResult:
    r"""Run one local method from ``theta0`` on ``obj``.

    Parameters
    ----------
    obj : MLPObjective (or any callable ``f(theta, idx=None)`` with ``.n`` and ``.grad``)
    theta0 : Tensor or ndarray of shape (dim,), default ``obj.init(seed)``
    method : {"gd", "sgd", "adam", "lbfgs"}
        ``gd``: full-batch gradient descent with Armijo backtracking (step grows x2 after an
        accepted step); ``sgd``: mini-batch SGD, heavy-ball momentum 0.9, cosine-decayed step,
        with a divergence guard (an epoch that ends with a non-finite objective or one above
        10x the starting one is undone, the step halved and the momentum reset; after 30
        halvings the run stops as ``"diverged"``); ``adam``: full-batch Adam (0.9, 0.999),
        cosine-decayed step; ``lbfgs``: scipy's L-BFGS-B without bounds (memory 50,
        Moré–Thuente line search) on torch gradients. First-order methods rarely reach a
        certifiable gradient within their budget: :func:`newton_polish` finishes them.
    max_iter : int, iterations (epochs for ``sgd``).
    lr : float, initial step (defaults: gd 1.0, sgd 0.05, adam 0.01, lbfgs 1.0).
    tol_grad : float, stop when the full-batch gradient norm is at or below it.
    batch_size : int, for ``sgd`` (default ``max(1, n // 8)``).
    seed : int, seeds the init and the mini-batch order.
    record_every : int, record the objective every this many iterations (0: never).

    Returns
    -------
    DescentResult with the full-batch objective and gradient norm at the end point, and why it
    stopped (``stopped``, one of :data:`STOP_REASONS`; ``message``, the optimizer's words).

    Examples
    --------
    >>> f = MLPObjective(np.eye(2), np.array([1.0, 2.0]), [np.ones((1, 2))])
    >>> r = descend(f, method="lbfgs")
    >>> r.objective < 1e-12
    True
    """
    _check_descend_args(obj, method, lr, batch_size, seed, max_iter, tol_grad)
    th = _start_point(obj, theta0, seed)
    history: list[float] = []
    t0 = time.perf_counter()
    full_grad = _full_grad_fn(obj)
    if method == "gd":
        th, it, stopped, message = _run_gd(obj, th, full_grad, lr=lr, max_iter=max_iter,
                                           tol_grad=tol_grad, record_every=record_every,
                                           history=history)
    elif method in ("sgd", "adam"):
        th, it, stopped, message = _run_sgd_adam(obj, th, full_grad, method=method, lr=lr,
                                                 max_iter=max_iter, tol_grad=tol_grad,
                                                 batch_size=batch_size, seed=seed,
                                                 record_every=record_every, history=history)
    elif method == "lbfgs":
        th, it, stopped, message = _run_lbfgs(obj, th, full_grad, max_iter=max_iter,
                                              tol_grad=tol_grad)
    else:  # pragma: no cover  (guarded by _check_method)
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")

    f, g = full_grad(th)
    gn = float(g.norm())
    stopped = _final_stop(stopped, float(f), gn, tol_grad)
    return DescentResult(method, int(seed), float(f), gn, int(it), time.perf_counter() - t0,
                         th.numpy().copy(), history, stopped, message)


def _check_descend_args(obj, method, lr, batch_size, seed, max_iter, tol_grad) -> None:
    """Validate the arguments of :func:`descend` (raise ``TypeError``/``ValueError`` on a bad one)."""
    if not callable(obj) or not all(hasattr(obj, a) for a in ("n", "dim")):
        raise TypeError(f"obj must be an MLPObjective (or a callable with .n and .dim); got {type(obj).__name__}.")
    _check_method(method)
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) or not 0 < lr < np.inf):
        raise ValueError(f"lr must be a finite number > 0 (or None for the method's default); got lr={lr!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1 (or None for max(1, n // 8)); got batch_size={batch_size!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0; got {max_iter!r}.")
    if not tol_grad > 0:
        raise ValueError(f"tol_grad must be > 0; got {tol_grad}.")


def _start_point(obj, theta0, seed: int) -> torch.Tensor:
    """The start of :func:`descend` as a float64 tensor of shape (dim,) (``obj.init(seed)`` if None)."""
    if theta0 is None:
        theta0 = obj.init(seed)
    th = torch.as_tensor(np.asarray(theta0) if not isinstance(theta0, torch.Tensor) else theta0,
                         dtype=_DT).detach().clone()
    if th.shape != (obj.dim,):
        raise ValueError(f"theta0 must have shape ({obj.dim},); got {tuple(th.shape)}.")
    return th


def _full_grad_fn(obj):
    """``full_grad(x, idx=None) -> (f, g)`` as tensors: ``obj.value_and_grad`` when the objective
    has it (numpy backward pass), torch autograd on ``obj(x, idx)`` otherwise."""
    fast = getattr(obj, "value_and_grad", None)

    def full_grad(x, idx=None):
        if fast is not None:
            f, g = fast(x, idx)
            return torch.tensor(f, dtype=_DT), torch.from_numpy(g)
        x = x.detach().clone().requires_grad_(True)
        f = obj(x) if idx is None else obj(x, idx)
        (g,) = torch.autograd.grad(f, x)
        return f.detach(), g

    return full_grad


def _run_gd(obj, th, full_grad, *, lr, max_iter, tol_grad, record_every, history):
    """Full-batch GD with Armijo backtracking (step x2 after an accepted step).

    Returns ``(theta, iterations, stopped, message)``; appends to ``history``.
    """
    stopped, it = "max_iter", 0
    step = 1.0 if lr is None else float(lr)
    f, g = full_grad(th)
    for it in range(1, max_iter + 1):
        gn2 = float(g @ g)
        if math.sqrt(gn2) <= tol_grad:
            stopped = "tol"
            break
        while True:
            cand = th - step * g
            fc = obj.value(cand) if hasattr(obj, "value") else float(obj(cand))
            if fc <= float(f) - 0.5 * step * gn2:
                break
            step *= 0.5
            if step < 1e-20:
                stopped = "line-search"
                break
        if stopped == "line-search":
            break
        th = cand
        f, g = full_grad(th)
        step *= 2.0
        if record_every and it % record_every == 0:
            history.append(float(f))
    return th, it, stopped, ""


def _run_sgd_adam(obj, th, full_grad, *, method, lr, max_iter, tol_grad, batch_size, seed,
                  record_every, history):
    """Mini-batch SGD (momentum 0.9, divergence guard) or full-batch Adam, cosine-decayed step.

    Written out (not torch.optim): constructing a torch optimizer imports torch._dynamo, ~7 s on
    this machine, more than a whole quick claim check may take. Returns ``(theta, iterations,
    stopped, message)``; appends to ``history`` (SGD only, at the end).
    """
    stopped, message, it = "max_iter", "", 0
    base = (0.05 if method == "sgd" else 0.01) if lr is None else float(lr)
    gen = np.random.default_rng(seed)
    n = obj.n
    bs = max(1, n // 8) if batch_size is None else int(batch_size)
    x = th.clone()
    m1 = torch.zeros_like(x)
    m2 = torch.zeros_like(x)
    b1, b2, eps = 0.9, 0.999, 1e-12
    t_adam = 0
    halvings = 0
    f_start = obj.value(x) if hasattr(obj, "value") else float(obj(x))
    for it in range(1, max_iter + 1):
        step = base * 0.5 * (1 + math.cos(math.pi * (it - 1) / max(1, max_iter)))
        if method == "sgd":
            perm = gen.permutation(n)
            x_epoch, m_epoch = x.clone(), m1.clone()
            with np.errstate(over="ignore", invalid="ignore"):  # the guard below handles it
                for s0 in range(0, n, bs):
                    idx = torch.from_numpy(perm[s0:s0 + bs])
                    _, g = full_grad(x, idx)
                    m1 = 0.9 * m1 + g
                    x = x - step * (0.5 ** halvings) * m1
                f_epoch = obj.value(x) if hasattr(obj, "value") else float(obj(x))
            if not (math.isfinite(f_epoch) and f_epoch <= 10.0 * f_start + 1e-300):
                # the epoch exploded: undo it, halve the step, reset the momentum
                x, m1 = x_epoch, torch.zeros_like(m_epoch)
                halvings += 1
                if halvings > 30:
                    stopped = "diverged"
                    break
                continue
            if it % 10 == 0 or it == max_iter:
                _, g = full_grad(x)
                if float(g.norm()) <= tol_grad:
                    stopped = "tol"
                    break
        else:
            _, g = full_grad(x)
            if float(g.norm()) <= tol_grad:
                stopped = "tol"
                break
            t_adam += 1
            m1 = b1 * m1 + (1 - b1) * g
            m2 = b2 * m2 + (1 - b2) * g * g
            mh = m1 / (1 - b1 ** t_adam)
            vh = m2 / (1 - b2 ** t_adam)
            x = x - step * mh / (vh.sqrt() + eps)
        if not torch.isfinite(x).all():
            stopped = "nan"
            break
    if method == "sgd":
        message = f"step halved {halvings} times by the divergence guard"
        if record_every and it % record_every == 0:
            history.append(obj.value(x))
    return x.detach(), it, stopped, message


def _run_lbfgs(obj, th, full_grad, *, max_iter, tol_grad):
    """scipy's L-BFGS-B (no bounds), memory 50, on ``full_grad``.

    Its stopping rule max|g_i| <= gtol is set to tol_grad / sqrt(dim) so that it implies
    ||g||_2 <= tol_grad. Returns ``(theta, iterations, stopped, message)``, ``stopped`` read
    from scipy's message.
    """
    from scipy.optimize import minimize

    stopped, message, it = "max_iter", "", 0

    def fun(v):
        f, g = full_grad(torch.from_numpy(v))
        return float(f), g.numpy().astype(np.float64)

    if max_iter > 0:
        out = minimize(fun, th.numpy().copy(), jac=True, method="L-BFGS-B",
                       options={"maxiter": int(max_iter), "maxfun": int(2 * max_iter + 20),
                                "maxcor": 50, "ftol": 0.0,
                                "gtol": tol_grad / math.sqrt(max(1, obj.dim))})
        th = torch.from_numpy(np.asarray(out.x, dtype=np.float64))
        it = int(out.nit)
        message = str(out.message)
        msg = message.upper()
        if "ABNORMAL" in msg:
            stopped = "line-search"
        elif "PGTOL" in msg or "PROJECTED GRADIENT" in msg:
            stopped = "tol"
        elif "REDUCTION" in msg:
            stopped = "stalled"
        elif "EVALUATIONS" in msg:
            stopped = "max_fun"
        else:
            stopped = "max_iter"
    return th, it, stopped, message


def _final_stop(stopped: str, f: float, gn: float, tol_grad: float) -> str:
    """The stop reason of :func:`descend` once the full-batch objective ``f`` and gradient norm
    ``gn`` at the end point are known (they override the method's own verdict)."""
    if not (math.isfinite(f) and math.isfinite(gn)) and stopped != "diverged":
        return "nan"
    if gn <= tol_grad:
        return "tol"
    if stopped == "tol":  # scipy's max-norm test passed but the 2-norm one did not
        return "stalled"
    return stopped


def balance(obj: MLPObjective, theta) -> np.ndarray:
    r"""Rescale every hidden unit so its incoming and outgoing weights have equal norms.

    For a gated network (fixed ``masks``) without biases and with every layer trained, the map
    :math:`(w^{in}_j, w^{out}_j) \mapsto (c\,w^{in}_j, w^{out}_j / c)`, :math:`c > 0`, leaves
    every output unchanged, and the balanced choice minimises the weight decay (AM–GM): the
    objective never increases. At :math:`\lambda = 0` this removes the badly conditioned
    rescaling valleys of docs/claims.md C4 before a Newton polish. Returns ``theta`` unchanged
    when the symmetry does not hold (biases, frozen layers, the true PHT network).
    """
    th = np.asarray(theta, dtype=np.float64).reshape(-1).copy()
    if (obj.masks is None or obj.fixed_b is not None or obj.trainable != list(range(obj.L))
            or not np.all(np.isfinite(th))):
        return th
    Ws, off = [], 0
    for shp in obj.shapes:
        sz = int(np.prod(shp))
        Ws.append(th[off:off + sz].reshape(shp).copy())
        off += sz
    for l in range(obj.L - 1):
        a = np.linalg.norm(Ws[l], axis=1)          # incoming to hidden layer l units
        b = np.linalg.norm(Ws[l + 1], axis=0)      # outgoing
        ok = (a > 0) & (b > 0)
        c = np.ones_like(a)
        c[ok] = np.sqrt(b[ok] / a[ok])
        Ws[l] *= c[:, None]
        Ws[l + 1] /= c[None, :]
    return np.concatenate([W.ravel() for W in Ws])


def _dense_hessian(obj, theta: torch.Tensor) -> np.ndarray:
    """The (dim, dim) Hessian by ``dim`` Hessian-vector products (double backward, no vmap:
    ``torch.autograd.functional.hessian(vectorize=True)`` costs seconds to set up here)."""
    th = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(obj(th), th, create_graph=True)
    eye = torch.eye(th.numel(), dtype=_DT)
    rows = []
    for k in range(th.numel()):
        (hk,) = torch.autograd.grad(g, th, grad_outputs=eye[k], retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(th) if hk is None else hk.detach())
    return torch.stack(rows).numpy()


@_in_single_thread
def newton_polish(obj: MLPObjective, theta, *, max_iter: int = 40, tol_grad: float | None = None
                  ) -> DescentResult:
    r"""Finish a run with damped Newton on the same objective (second order, dense Hessian).

    .. math:: 	heta \leftarrow 	heta - a\,V(\Lambda + \sigma I)^{-1}V^	op
abla F,\qquad
              \sigma = \max(0, -\lambda_{\min}) + 10^{-12}\max(1, |\lambda|_{\max}),

    with :math:`
abla^2 F = V\Lambda V^	op` (torch autograd, float64) and ``a`` from Armijo
    backtracking. Used to *polish* end points of first-order methods (and stalled L-BFGS runs)
    so they can be certified; the claim reports say which points were polished. Every iteration
    costs ``dim`` Hessian-vector products: for the small problems of the claim checks only.

    Parameters
    ----------
    obj : MLPObjective (gated: a twice-differentiable objective)
    theta : ndarray of shape (dim,), the start (an end point of another method).
    max_iter : int, Newton iterations.
    tol_grad : float, stop when the gradient norm is at or below it (default ``1e-13 F(0)``).

    Returns
    -------
    DescentResult with ``method="newton"`` and ``stopped`` in {"tol", "max_iter",
    "line-search", "nan"}.

    Examples
    --------
    >>> f = MLPObjective(np.eye(2), np.array([1.0, 2.0]), [np.ones((1, 2))])
    >>> newton_polish(f, np.zeros(2)).grad_norm < 1e-12
    True
    """
    t0 = time.perf_counter()
    th = torch.as_tensor(np.asarray(theta, dtype=np.float64).reshape(-1)).clone()
    if th.shape != (obj.dim,):
        raise ValueError(f"theta must have shape ({obj.dim},); got {tuple(th.shape)}.")
    tol = 1e-13 * obj.zero_objective() if tol_grad is None else float(tol_grad)
    stopped, message, it = "max_iter", "", 0
    for it in range(1, max_iter + 1):
        f, g = obj.value_and_grad(th)
        if not (math.isfinite(f) and np.all(np.isfinite(g))):
            stopped = "nan"
            break
        gn = float(np.linalg.norm(g))
        if gn <= tol:
            stopped, it = "tol", it - 1
            break
        H = _dense_hessian(obj, th)
        if not np.all(np.isfinite(H)):
            stopped = "nan"
            break
        e, V = np.linalg.eigh(0.5 * (H + H.T))
        # saddle-free Newton: |eigenvalues|, so negative curvature is followed downhill
        damp = 1e-10 * max(1e-300, float(np.abs(e).max()))
        step = -(V @ ((V.T @ g) / (np.abs(e) + damp)))
        slope = float(g @ step)
        a = 1.0
        while a > 1e-12 and obj.value(th + a * torch.from_numpy(step)) > f + 1e-4 * a * slope:
            a *= 0.5
        if a <= 1e-12:
            stopped, message = "line-search", "no Armijo step along the shifted Newton direction"
            break
        th = th + a * torch.from_numpy(step)
    f, g = obj.value_and_grad(th)
    gn = float(np.linalg.norm(g))
    if not math.isfinite(f):
        stopped = "nan"
    elif gn <= tol:
        stopped = "tol"
    return DescentResult("newton", 0, float(f), gn, int(it), time.perf_counter() - t0,
                         th.numpy().copy(), [], stopped, message or f"damped Newton, {it} iterations")


def multi_start(obj: MLPObjective, *, methods: Sequence[str] = ("gd", "adam", "lbfgs"),
                seeds: Sequence[int] = (0, 1, 2), scale: float | None = None,
                **kwargs) -> list[DescentResult]:
    """Every method from every seeded random start (same start for every method per seed)."""
    out = []
    for s in seeds:
        th0 = obj.init(s, scale=scale)
        for m in methods:
            out.append(descend(obj, th0, method=_check_method(m), seed=s, **kwargs))
    return out


def balanced_representative(obj: MLPObjective, theta, *, rtol: float = 1e-12) -> np.ndarray:
    r""":func:`balance` (``theta``) when it has the same objective to ``rtol * F(0)``, else ``theta``.

    At :math:`\lambda = 0` each rescaling is a diffeomorphism of the weights that preserves
    :math:`F`, so it maps local minima to local minima, saddles to saddles: classifying the
    balanced representative is classifying the point. It matters numerically: an unbalanced point
    (a huge incoming weight, a tiny outgoing one) hides a saddle's negative curvature
    (:math:`\approx -\|v\|^2/c` with :math:`c` the large curvature) below the relative
    tolerance ``tol_h``. At :math:`\lambda > 0` a local minimum is balanced already, and any
    other point is returned unchanged (balancing would lower :math:`F`: a different point).
    """
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    tb = balance(obj, th)
    if np.array_equal(tb, th) or not np.all(np.isfinite(tb)):
        return th
    fa, fb = obj.value(th), obj.value(tb)
    return tb if abs(fb - fa) <= rtol * obj.zero_objective() else th


def polish(obj: MLPObjective, theta, *, lbfgs_iter: int = 1000, newton_iter: int = 30,
           rounds: int = 3, tol_grad: float | None = None) -> DescentResult:
    r"""Finish an end point so it can be certified: L-BFGS, then :func:`balance`, then Newton.

    The polish of the claim checks (docs/claims.md "End points"): first-order methods (GD, Adam,
    SGD) stop with gradients 10–1e5 times above the certification tolerance; L-BFGS
    (``lbfgs_iter`` iterations) brings them near a stationary point, balancing removes the
    rescaling valleys, and saddle-free Newton (:func:`newton_polish`) converges quadratically
    near a minimum and leaves saddles; up to ``rounds`` rounds until the gradient is at most
    ``tol_grad`` (default ``1e-13 F(0)``). The result is an end point *of the same objective*,
    reported as polished.

    Returns
    -------
    DescentResult with ``method="lbfgs+newton"``; ``n_iter`` counts both phases, ``message``
    says where each stopped.
    """
    F0 = obj.zero_objective()
    tol = 1e-13 * F0 if tol_grad is None else float(tol_grad)
    t0 = time.perf_counter()
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    msgs, n_it, stopped = [], 0, "max_iter"
    for _ in range(rounds):
        first = descend(obj, th, method="lbfgs", max_iter=lbfgs_iter, tol_grad=tol)
        if np.all(np.isfinite(first.theta)):
            th = first.theta
        th_b = balance(obj, th)
        if obj.value(th_b) <= obj.value(th) + 1e-12 * abs(F0):
            th = th_b
        second = newton_polish(obj, th, max_iter=newton_iter, tol_grad=tol)
        th = balanced_representative(obj, second.theta)
        n_it += first.n_iter + second.n_iter
        stopped = second.stopped
        msgs.append(f"L-BFGS {first.n_iter} it. ({first.stopped}), balanced, Newton "
                    f"{second.n_iter} it. ({second.stopped})")
        if stopped in ("tol", "nan"):
            break
    f, g = obj.value_and_grad(th)
    return DescentResult("lbfgs+newton", 0, float(f), float(np.linalg.norm(g)), n_it,
                         time.perf_counter() - t0, th, [], stopped, "; ".join(msgs))

