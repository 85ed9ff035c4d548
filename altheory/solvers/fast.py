r"""Fast certified solvers for the fixed-support convex programs (C3, C4, C5), in torch.

Two-layer fixed support (docs/claims.md C4), with :math:`A u = \sum_j D_j X u_j` the masked design:

.. math::

    P_c:\ \min_U\ F(U) = f(AU) + \lambda\sum_j\|u_j\|_2,
    \qquad
    D(\theta) = -f^*(\theta)\ \ \text{s.t.}\ \ \|X^\top D_j\theta\|_2\le\lambda\ \ \forall j,

where :math:`f(\hat y) = \ell(\hat y, y)` is the loss of :mod:`altheory.solvers.losses` (mean over
samples). Weak duality :math:`D(\theta)\le F^*\le F(U)` makes ``gap = F(U) - D(theta)`` a
certified bound on the true suboptimality :math:`F(U) - F^*`.
The dual point is the best feasible multiple of the loss gradient,
:math:`\theta = \alpha\nabla f(AU)`, :math:`|\alpha|\le 1/s`,
:math:`s = \max_j\|X^\top D_j\nabla f\|/\lambda` (:func:`_dual_on_ray`; never worse than the
classical :math:`\alpha = 1/\max(1, s)`); it is optimal at the optimum, so the gap goes to zero
with the solver's error. That error is first order in the stationarity error of ``U``: for a
first-order point at small λ the gap can exceed the true suboptimality 1e4-1e6 times;
:func:`group_lasso_certificate` with ``refine=True`` takes the dual point of a solve started
there instead (a gap within a few percent of the suboptimality in the tests).
Conjugates: squared :math:`f^*(\theta) = \tfrac n2\|\theta\|^2 + \theta^\top y`; logistic
:math:`f^*(\theta) = \tfrac1n\sum_i t_i\log t_i + (1-t_i)\log(1-t_i)` with
:math:`t_i = -n y_i\theta_i\in[0,1]` (scaling by :math:`1/s\ge 1` keeps :math:`t` in range).

Algorithm (:func:`solve_group_lasso`)
-------------------------------------
1. *Working set* of groups (when ``p > 64``): solve on it, then one full gradient
   :math:`A^\top\nabla f` (in the working precision until the gap nears ``tol``) tells which
   groups outside violate :math:`\|X^\top D_j\theta\|\le\lambda`; the next set is the non-zero
   groups plus the worst violators (at most as many as non-zero groups, at least 32), as in
   celer. Groups outside the working set cost nothing in the inner iterations. While the last
   check found violators, a round is a *screening* pass (FISTA alone, ``_SCREEN_MAX``
   iterations unless the gap falls below its target first, no hand-off on a stable support:
   a support stable for 30 iterations of a screening pass was still four groups off at
   (2000, 30, 100), λ = 0.01 λ_max, seed 1; in float32 whatever ``dtype`` while the gap is
   above float32's floor: its point only chooses the next set and starts the next round);
   once none is found the set is
   *polished* (step 3, to ``tol/2``), from the screening point without a second first-order
   pass.
2. *Accelerated proximal gradient* (FISTA with backtracking on the Lipschitz estimate and
   O'Donoghue–Candès gradient restart) in the working precision (float32 allowed), to detect
   the non-zero groups; the first pass hands over to Newton as soon as they stop changing
   (four checks, 40 iterations), not when the gap is small: at small λ the gap of a
   first-order point is far above its suboptimality (610 -> 130 FISTA iterations on
   (2000, 30, 100), λ = 1e-3). Rounds whose gap is below float32's rounding floor (1e-4) run
   in float64.
3. *Active-set Newton polish* in float64: on the non-zero groups :math:`F` is smooth, with
   Hessian :math:`A_a^\top\mathrm{diag}(f'')A_a + \lambda\,\mathrm{blkdiag}
   ((I - \hat u_j\hat u_j^\top)/\|u_j\|)`; each step is a proximal-gradient step (which fixes the
   support) followed by inexact Newton on the non-zero groups: CG preconditioned by the (d, d)
   diagonal blocks of the Hessian (Cholesky, cached for the squared loss) or, when the non-zero
   groups have at least as many coordinates as there are samples (``k d >= n``, where
   :math:`A^\top WA` is singular) or block-Jacobi CG runs past its cost, by the sample-space
   Woodbury preconditioner :class:`_SampleSpacePrecond` (one (n, n) Cholesky, ``n <= 4096``;
   (2000, 30, 100), λ = 1e-3: 34 CG iterations in all instead of 961); Hessian products in the
   working precision, gradient and Armijo line search on :math:`F` in float64, groups the step
   carries through zero set to zero (per-group orthant projection, checked by the same Armijo
   test). Converges quadratically once the support is found; while it is not (three steps in a
   row of line-search length 1/8 or less, ``_SHORT_STEPS``) it hands back to step 2.
4. *Certificate* in float64: ``gap`` and ``rel_gap = gap / max(|F|, tiny)``; the status is
   ``"optimal"`` only when ``rel_gap <= tol`` — never otherwise.

The design is never materialised: :math:`AU = \mathrm{colsum}(X^\top\odot(U^\top G^\top))` and
:math:`A^\top r = ((X^\top\odot r^\top)G)^\top` are single GEMMs with the gate matrix stored
transposed, (p, n) (:class:`MaskedDesign`); with ``max_bytes`` the gates stay boolean and are
expanded in row blocks.

Per-layer problem (C3, :func:`solve_layer`):
:math:`\min_\theta f(\Phi\theta + o) + \tfrac\lambda2\|\theta_W\|^2`, dual
:math:`D(\alpha) = -f^*(\alpha) + \alpha^\top o - \|\Phi_W^\top\alpha\|^2/(2\lambda)` on
:math:`\{\Phi_b^\top\alpha = 0\}` (the unregularised columns, all of them when λ = 0); damped
Newton with an explicit (q, q) Hessian, the dual point the loss gradient projected onto that
subspace.

Pilanci–Ergen (C5): :mod:`altheory.solvers.pilanci_ergen`, on the same certificate machinery
(:func:`_dual_on_ray`, the losses' conjugates).

These are numerical methods; what they certify is the duality gap they return. The tests
(``tests/test_fast_solver.py``) check it against cvxpy/Clarabel: objectives agree to 1e-7
relative, or within Clarabel's own certified gap where that is larger (Clarabel's "optimal" was
seen 1e-6 off when :math:`F^*` is small).

Threads (:func:`solver_threads`): one CPU thread below 1e6 flops per product, else one or all,
whichever ran the product pair faster in a probe at the start of the solve (~10-40 ms); the
dense factorisations of the Newton phase take every thread while no other process runs
(:class:`_blas3_threads`). ``OMP_WAIT_POLICY=PASSIVE`` (set by :mod:`altheory.threads` when
altheory is imported before torch) is advised on a shared machine.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from altheory.solvers.losses import check_targets, loss_torch
from altheory.solvers.problems import TwoLayerFixedSupport, check_gates, check_lam, check_matrix

__all__ = ["FastResult", "LayerResult", "MaskedDesign", "FastLoss", "FAST_LOSSES", "lambda_max",
           "group_lasso_certificate", "solve_group_lasso", "solve_problem", "solve_layer",
           "solver_threads"]

FastLoss = Literal["squared", "logistic"]
FAST_LOSSES: tuple[str, ...] = ("squared", "logistic")
SOLVER_NAME = "altheory-fast"
_TINY = 1e-300
_HANDOFF = True
_CG_MAX = 500  # CG iterations per Newton step, at most
# ... and with a freshly built sample-space factor, whose spectrum bound promises a handful: past
# this many it has met float32's floor or a nearly singular Hessian (k d >> n), and the CG
# iterate, a descent direction, is taken ((2000, 30, 300), squared, λ = 1e-3: one such CG ran
# 500 iterations, 5.7 s of an 18 s solve, for a step that moved the point 2e-3)
_CG_FRESH_MAX = 60
# a Newton polish whose last _SHORT_STEPS steps were all at most _SHORT_STEP long hands back to
# the first-order pass (whose prox step drops groups wholesale): with k d >> n the Newton
# direction is unbounded along the û_j and each step drops or re-adds a few groups at a
# line-search length of 1/16 to 1/1000 ((600, 10, 200), squared, λ = 1e-3: 19 362 Newton steps
# and max_iter after 385 s; handing back: 30 steps, optimal in 0.9 s)
_SHORT_STEP = 1.0 / 8
_SHORT_STEPS = 3
_WB_MAX_N = 4096  # the sample-space (Woodbury) preconditioner factors an (n, n) matrix: n at most
_WB_BLAS3 = 4.0  # dense factorisation / GEMM flops per second over those of the design products
_WB_STALE = 0.25  # a kept factor whose CG took this share of a build's time: rebuilt next step
_WB_C = 1e-2  # curvature along u_j/||u_j|| in the preconditioner, relative to A's (see below)
_SCREEN_MAX = 60  # FISTA iterations of a screening round of the working set, at most
_SCREEN_F32 = True  # screening rounds in float32 also when dtype=float64 (their point is not returned)
_SCREEN_FLOOR = 1e-4  # below this relative gap the float32 screening is rounding noise
_WS_START = 32  # groups of the first working set (the top scores at the start)
_HESS_F32 = True  # the CG's Hessian products in float32 also in a float64 solve (see _newton)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

class _Certified:
    """``verified`` for every result below: only a certified ``status == "optimal"`` counts."""

    status: str

    @property
    def verified(self) -> bool:
        """True only for ``status == "optimal"`` (the certificate met its tolerance)."""
        return self.status == "optimal"


@dataclass
class FastResult(_Certified):
    r"""The outcome of :func:`solve_group_lasso`.

    Attributes
    ----------
    U : ndarray of shape (p, d), float64
    objective : float
        :math:`F(U)`, evaluated in float64.
    dual_objective : float
        :math:`D(\theta)` at the scaled dual point (a certified lower bound on :math:`F^*`).
    gap, rel_gap : float
        ``objective - dual_objective`` and ``gap / max(|objective|, tiny)``.
    status : str
        ``"optimal"`` (``rel_gap <= tol``), ``"max_iter"`` or ``"time_limit"``.
    iterations : dict
        ``{"fista": ..., "newton": ..., "cg": ..., "working_set_rounds": ...}``.
    solve_time : float
        Wall seconds (CUDA synchronised).
    solver : str
        ``"altheory-fast"``.
    active : int
        Number of non-zero groups.
    """

    U: np.ndarray
    objective: float
    dual_objective: float
    gap: float
    rel_gap: float
    status: str
    iterations: dict[str, int]
    solve_time: float
    solver: str = SOLVER_NAME
    active: int = 0
    tol: float = 1e-8
    device: str = "cpu"
    dtype: str = "float64"
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """``{"U": U}``, the field name of :class:`altheory.solvers.convex.ConvexResult`."""
        return {"U": self.U}


@dataclass
class LayerResult(_Certified):
    """The outcome of :func:`solve_layer` (fields as :class:`FastResult`, ``theta`` for ``U``)."""

    theta: np.ndarray
    objective: float
    dual_objective: float
    gap: float
    rel_gap: float
    status: str
    iterations: int
    solve_time: float
    solver: str = SOLVER_NAME

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return {"theta": self.theta}


# --------------------------------------------------------------------------------------------
# the masked design, matrix-free
# --------------------------------------------------------------------------------------------

class MaskedDesign:
    r"""The (n, p*d) design :math:`A_{i,(j,:)} = G_{ij}x_i^\top`, never materialised.

    ``matvec(U) = (U.T @ G.T * X.T).sum(0)`` (shape (n,)) and
    ``rmatvec(r) = ((X.T * r) @ G).T`` (shape (p, d)): one GEMM each, O(n p d) flops and O(n d)
    extra memory, with ``G.T`` and ``X.T`` stored contiguous (the (d, n) products run 30-40%
    faster than the (n, d) ones). ``G`` is a view of ``GT``. When the gates as a float matrix
    would exceed ``max_bytes`` they are kept boolean, (n, p), and expanded in row blocks.

    Parameters
    ----------
    X : Tensor of shape (n, d)
    G : bool Tensor of shape (n, p), same device as ``X``
    max_bytes : int, default 2**31
        Budget for the float copy of ``G``.

    Examples
    --------
    >>> X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    >>> G = torch.tensor([[True, False], [True, True]])
    >>> A = MaskedDesign(X, G)
    >>> A.matvec(torch.ones(2, 2, dtype=torch.float64)).tolist()
    [3.0, 14.0]
    """

    def __init__(self, X: torch.Tensor, G: torch.Tensor, *, max_bytes: int = 2 ** 31,
                 ids: torch.Tensor | None = None, cache: dict | None = None):
        self.ids = ids if ids is not None else torch.arange(G.shape[1], device=G.device)
        # (dtype, group id) -> (d, d) Gram block, shared by every subset (squared loss)
        self.cache = cache if cache is not None else {}
        self.X = X
        self.n, self.d = X.shape
        self.p = G.shape[1]
        self.dtype = X.dtype
        itemsize = torch.finfo(X.dtype).bits // 8
        self.chunk = None
        if self.n * self.p * itemsize <= max_bytes:
            # stored transposed, (p, n) and (d, n): the products then run as (d, n) x (n, p)
            # GEMMs, whose long side is n, 30-40% faster than (n, p) x (p, d) with MKL at
            # (2000, 100, 30), one or two threads, float32 and float64
            self.GT = (G != 0).T.to(X.dtype).contiguous() if G.dtype != torch.bool \
                else G.T.to(X.dtype).contiguous()
            self.G = self.GT.T
            self.XT = X.T.contiguous()
        else:  # row blocks of at most max_bytes // 4 as floats
            self.G = G.to(torch.bool) if G.dtype == torch.bool else G != 0
            self.GT = self.XT = None
            self.chunk = max(1, int(max_bytes // 4 // (self.p * itemsize)))

    def _blocks(self):
        for s in range(0, self.n, self.chunk):
            yield s, min(self.n, s + self.chunk)

    def matvec(self, U: torch.Tensor) -> torch.Tensor:
        # in place on the fresh (d, n) product: no second temporary (25% faster at
        # (2000, 94, 30), one thread)
        if self.chunk is None:
            return (U.T @ self.GT).mul_(self.XT).sum(0)
        out = torch.empty(self.n, dtype=self.dtype, device=self.X.device)
        for a, b in self._blocks():
            out[a:b] = (self.G[a:b].to(self.dtype) @ U).mul_(self.X[a:b]).sum(1)
        return out

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        if self.chunk is None:
            return ((self.XT * r) @ self.G).T.contiguous()
        out = torch.zeros(self.p, self.d, dtype=self.dtype, device=self.X.device)
        for a, b in self._blocks():
            out += self.G[a:b].to(self.dtype).T @ (r[a:b, None] * self.X[a:b])
        return out

    def rmatvec_sq(self, w: torch.Tensor) -> torch.Tensor:
        r"""Diagonal of :math:`A^\top\mathrm{diag}(w)A`, shape (p, d): ``G.T @ (w * X**2)``."""
        if self.chunk is None:
            return ((self.XT ** 2 * w) @ self.G).T.contiguous()
        out = torch.zeros(self.p, self.d, dtype=self.dtype, device=self.X.device)
        for a, b in self._blocks():
            out += self.G[a:b].to(self.dtype).T @ (w[a:b, None] * self.X[a:b] ** 2)
        return out

    def gram_blocks(self, w: torch.Tensor, *, block_rows: int = 4096,
                    constant: bool = False, max_rows: int | None = None) -> torch.Tensor:
        r"""Diagonal blocks :math:`X^\top D_j\mathrm{diag}(w)D_jX`, shape (p, d, d), O(n p d^2).

        With ``constant=True`` (the same ``w`` on every call, as for the squared loss) blocks are
        kept in a cache shared by every :meth:`subset`, and only missing groups are computed.
        With ``max_rows`` (for a preconditioner) an evenly strided subset of at most that many
        rows is used, scaled by ``n / rows``."""
        if max_rows is not None and self.n > max_rows:
            step = -(-self.n // max_rows)
            rows = torch.arange(0, self.n, step, device=self.X.device)
            sub = MaskedDesign(self.X[rows], (self.G[rows] != 0) if self.G.dtype != torch.bool
                               else self.G[rows], ids=self.ids, cache=self.cache)
            return sub.gram_blocks(w[rows] * (self.n / rows.numel()), block_rows=block_rows,
                                   constant=constant)
        if constant:
            key = str(self.dtype)
            ids = self.ids.tolist()
            missing = [k for k, j in enumerate(ids) if (key, j) not in self.cache]
            if missing:
                idx = torch.tensor(missing, device=self.X.device)
                new = self.subset(idx).gram_blocks(w, block_rows=block_rows)
                for k, blk in zip(missing, new):
                    self.cache[(key, ids[k])] = blk
            return torch.stack([self.cache[(key, j)] for j in ids])
        out = torch.zeros(self.p, self.d * self.d, dtype=self.dtype, device=self.X.device)
        for a in range(0, self.n, block_rows):
            b = min(self.n, a + block_rows)
            Xa = self.X[a:b]
            XX = (Xa[:, :, None] * Xa[:, None, :]).reshape(b - a, -1)
            Ga = self.G[a:b].to(self.dtype) if self.G.dtype == torch.bool else self.G[a:b]
            out += (Ga * w[a:b, None]).T @ XX
        return out.reshape(self.p, self.d, self.d)

    def subset(self, idx: torch.Tensor, *, dtype: torch.dtype | None = None,
               max_bytes: int = 2 ** 31) -> "MaskedDesign":
        """The design restricted to the groups ``idx`` (optionally in another dtype)."""
        dtype = dtype or self.dtype
        G = self.G[:, idx] if self.GT is None else self.GT[idx].T  # a row gather of (p, n)
        return MaskedDesign(self.X.to(dtype), G, max_bytes=max_bytes, ids=self.ids[idx],
                            cache=self.cache)

    def norm_sq(self, iters: int = 30, seed: int = 0) -> float:
        r"""Estimate of :math:`\|A\|_2^2` by power iteration (from below; callers backtrack)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn(self.p, self.d, generator=gen, dtype=torch.float64)
        v = v.to(self.X.device, self.dtype)
        v /= v.norm()
        est = 0.0
        for _ in range(iters):
            w = self.rmatvec(self.matvec(v))
            new = float(w.norm())
            if new == 0.0:
                return 0.0
            v = w / new
            if abs(new - est) <= 1e-3 * new:
                est = new
                break
            est = new
        return est


# --------------------------------------------------------------------------------------------
# losses: value (altheory.solvers.losses), gradient, curvature, conjugate
# --------------------------------------------------------------------------------------------

def _loss(z, y, loss):
    return loss_torch(z, y, loss)


def _grad(z, y, loss):
    n = y.shape[0]
    if loss == "squared":
        return (z - y) / n
    elif loss == "logistic":
        return -y * torch.sigmoid(-y * z) / n
    else:
        raise ValueError(f"loss must be one of {FAST_LOSSES}; got {loss!r}.")


def _curv(z, y, loss):
    n = y.shape[0]
    if loss == "squared":
        return torch.full_like(z, 1.0 / n)
    elif loss == "logistic":
        s = torch.sigmoid(y * z)
        return s * (1 - s) / n
    else:
        raise ValueError(f"loss must be one of {FAST_LOSSES}; got {loss!r}.")


def _conj(theta, y, loss):
    r""":math:`f^*(\theta)`; ``+inf`` outside the domain (logistic: t outside [0, 1])."""
    n = y.shape[0]
    if loss == "squared":
        return 0.5 * n * (theta * theta).sum() + (theta * y).sum()
    elif loss == "logistic":
        t = -n * y * theta
        if bool((t < 0).any()) or bool((t > 1).any()):
            return torch.tensor(math.inf, dtype=theta.dtype, device=theta.device)
        return (torch.special.xlogy(t, t) + torch.special.xlogy(1 - t, 1 - t)).sum() / n
    else:
        raise ValueError(f"loss must be one of {FAST_LOSSES}; got {loss!r}.")


def _check_fast_loss(loss) -> str:
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a str; got {type(loss).__name__}.")
    if loss not in FAST_LOSSES:
        raise ValueError(f"loss must be one of {FAST_LOSSES} for the fast solver; got {loss!r}. "
                         "Use altheory.solvers.convex (cvxpy) for the others.")
    return loss


def _resolve_device(device, *arrays) -> torch.device:
    if device is None:
        for a in arrays:
            if isinstance(a, torch.Tensor):
                return a.device
        return torch.device("cpu")
    if isinstance(device, (str, torch.device)):
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available; use device='cpu'.")
        return dev
    raise TypeError(f"device must be None, a str or a torch.device; got {type(device).__name__}.")


def _check_dtype(dtype) -> torch.dtype:
    if dtype in (torch.float64, torch.float32):
        return dtype
    raise ValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}.")


_PROBE_MIN_WORK = 1e6    # flops per product below which one thread is used without measuring
_PROBE_WORK = 1e7        # flops per product of the probe (a row subset of the design)
_PROBE_GAIN = 0.75       # all threads only when they take at most this fraction of one's time
_LARGE_WORK = 1e8        # flops per product above which an idle machine gets every thread unprobed
_PROBE_TTL = 10.0        # seconds a probe's choice is reused (same design shape, same background)
_probe_memo: dict[tuple, tuple[float, int]] = {}


def _busy_cpus(samples: int = 5, pause: float = 0.002) -> int:
    """Runnable threads of *other* processes now: ``/proc/loadavg``'s running count minus this
    process's running threads, the least of ``samples`` reads ``pause`` s apart (a 1-minute load
    average lags by a minute, and counts this process's own past work). Off Linux: the 1-minute
    load average, rounded down. Reported by the benchmark beside every time."""
    try:
        best = None
        for k in range(samples):
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
            own = 0
            for task in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{task}/stat") as fh:
                        own += fh.read().rsplit(")", 1)[1].split()[0] == "R"
                except OSError:
                    continue
            others = max(0, running - max(own, 1))
            best = others if best is None else min(best, others)
            if k + 1 < samples:
                time.sleep(pause)
        return int(best)
    except (OSError, ValueError, IndexError):
        try:
            return int(os.getloadavg()[0])
        except OSError:
            return 0


def _probe(X: torch.Tensor, G: torch.Tensor, most: int) -> int:
    """1 or ``most``: whichever runs the solver's product pair faster *now*.

    The pair ``A^T (A u)`` on a row subset of the design (about ``_PROBE_WORK`` flops), timed
    in the order 1, most, 1, most, two pairs each (the best of each count kept): about 10-40 ms."""
    n, d = X.shape
    p = G.shape[1]
    m = max(16, min(n, int(_PROBE_WORK / max(p * d, 1))))
    A = MaskedDesign(X[:m], G[:m])
    u = torch.ones(p, d, dtype=X.dtype, device=X.device)
    best = {1: math.inf, most: math.inf}
    saved = torch.get_num_threads()
    try:
        for k in (1, most, 1, most):
            torch.set_num_threads(k)
            A.rmatvec(A.matvec(u))  # wakes the pool
            t0 = time.perf_counter()
            for _ in range(2):
                A.rmatvec(A.matvec(u))
            best[k] = min(best[k], time.perf_counter() - t0)
    finally:
        torch.set_num_threads(saved)
    return most if best[most] <= _PROBE_GAIN * best[1] else 1


def solver_threads(work: float, dev: torch.device | str = "cpu", *, X=None, G=None) -> int:
    r"""CPU threads for one solve: one for small products, else the faster of 1 and all, measured.

    .. math:: t = \begin{cases}1 & w < 10^6\\
        t_{\max} & w \ge 10^8 \text{ and no other process is running}\\
        t_{\max} & \text{the probe's } T(t_{\max}) \le 0.75\,T(1)\\
        1 & \text{otherwise}\end{cases}

    with :math:`w` the flops of one product with the full design (``n p d``) and :math:`T(k)`
    the time of the solver's product pair :math:`A^\top(Au)` on :math:`k` threads, on a row
    subset of ``(X, G)`` (:func:`_probe`, ~10-40 ms; its choice is reused for ``_PROBE_TTL`` s
    by solves of the same shape while the background stays the same, :func:`_probed`). Why
    measure: whether a second thread pays depends on the machine *now*, and no fixed rule was
    right on the 2-core machine this was written on: with OpenMP's spinning wait policy two
    threads were 6x slower than one beside other jobs (11.0 s against 1.7-2.0 s,
    (2000, 30, 100), load 4); with ``OMP_WAIT_POLICY=PASSIVE`` one thread won at load 4
    (0.37-0.42 s against 0.63-0.78 s) and lost at load 8 (0.93 s against 0.29 s).
    ``paper_repro/bench_fast_solver.py`` measures the rule against one and all threads on an
    idle machine and beside two busy processes (``threads`` rows; goal: never above 1.5x the
    better of the two). Without ``X, G`` (or off
    the CPU's float64 design) the rule falls back to the idle cores
    (:math:`\max(1, \mathrm{cpus} - b)`, :math:`b` the runnable threads of other processes).
    Why large products skip the probe on an idle machine: the probe times one product pair, and
    inside a solve its ratio drifted from 0.5 to 0.85 between two solves of one (20000, 50, 200)
    instance, while the whole solve ran 1.5x faster on two threads than on one (2.1 s against
    3.2 s, idle 2-core machine): the Newton phase gains more from threads than the probe's pair.

    ``ALTHEORY_SOLVER_THREADS=<int>`` fixes the count (``auto``, the default, applies the rule).
    Devices other than the CPU keep torch's setting.

    Examples
    --------
    >>> solver_threads(1e5)
    1
    """
    dev = torch.device(dev)
    most = torch.get_num_threads()
    if dev.type != "cpu":
        return most
    env = os.environ.get("ALTHEORY_SOLVER_THREADS", "auto").strip().lower()
    if env not in ("", "auto"):
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"ALTHEORY_SOLVER_THREADS must be 'auto' or an int >= 1; got {env!r}.")
        return int(env)
    if work < _PROBE_MIN_WORK or most == 1:
        return 1
    if work >= _LARGE_WORK and _busy_cpus() == 0:
        return most
    if X is not None and G is not None:
        return _probed(X, G, most)
    return max(1, min(most, (os.cpu_count() or 1) - _busy_cpus()))


def _probed(X: torch.Tensor, G: torch.Tensor, most: int) -> int:
    """:func:`_probe`'s choice, reused for ``_PROBE_TTL`` seconds by the solves of a design of
    the same shape, dtype and device while the number of other running processes (capped at
    ``most``; :func:`_busy_cpus`, ~2 ms) stays the same; a change of either probes again.

    Why: the probe cost 14-22 ms of a 0.2-0.3 s solve ((2000, 30, 100), squared, 0.1 λ_max,
    idle 2-core machine), paid again by every solve of a λ path or a benchmark's repeats, and
    its choice flipped between repeated solves of one instance (ratios 0.71-1.35 in 15 probes)
    where one and two threads ran the whole solve equally fast: a reused choice makes repeated
    solves alike, and a background that changes is still seen."""
    key = (tuple(X.shape), int(G.shape[1]), X.dtype, str(X.device), most,
           min(_busy_cpus(samples=3, pause=0.0005), most))
    now = time.monotonic()
    hit = _probe_memo.get(key)
    if hit is not None and now - hit[0] <= _PROBE_TTL:
        return hit[1]
    k = _probe(X, G, most)
    if len(_probe_memo) >= 64:  # a long session of many shapes: forget the old choices
        _probe_memo.clear()
    _probe_memo[key] = (now, k)
    return k


class _threads:
    """Run one solve on :func:`solver_threads` CPU threads; torch's count is restored after.

    ``_threads.pool`` is the count torch had before the solve (what :class:`_blas3_threads`
    may widen to); ``None`` outside a solve and when ``ALTHEORY_SOLVER_THREADS`` fixes the
    count (then every part of the solve keeps it)."""

    pool: int | None = None

    def __init__(self, work: float, dev: torch.device, *, X=None, G=None):
        self.n = solver_threads(work, dev, X=X, G=G)
        self.fixed = os.environ.get("ALTHEORY_SOLVER_THREADS", "auto").strip().lower() \
            not in ("", "auto")

    def __enter__(self):
        self.saved = torch.get_num_threads()
        self.outer = _threads.pool
        _threads.pool = None if self.fixed else (self.saved if self.outer is None else self.outer)
        if self.n != self.saved:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        _threads.pool = self.outer
        if torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)
        return False


_BLAS3_MIN_FLOPS = 3e8  # a dense block below this runs on the solve's own thread count


class _blas3_threads:
    r"""Every thread of the pool for one large dense (BLAS-3) block inside a solve, when no other
    process is running now; the solve's own count otherwise, and restored after.

    Why: :func:`solver_threads` decides from the design products (GEMMs with one side of length
    ``d``), which gain little from a second thread, while a factorisation gains nearly twofold:
    an (n, n) Cholesky with n = 2000 took 62 ms on one thread and 30 ms on two (float32, idle
    2-core machine), and the Woodbury build of the Newton phase (:class:`_SampleSpacePrecond`)
    is most of a small-λ solve. The check is one read of the running count (about 0.1 ms, no
    sleep: :func:`_busy_cpus` with one sample), so that beside busy processes the block stays
    on the solve's count."""

    def __init__(self, flops: float):
        self.flops = flops

    def __enter__(self):
        self.saved = torch.get_num_threads()
        pool = _threads.pool
        if pool is not None and pool > self.saved and self.flops >= _BLAS3_MIN_FLOPS \
                and _busy_cpus(samples=1) == 0:
            torch.set_num_threads(pool)
        return self

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)
        return False


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _group_inputs(X, G, y, lam, loss, device):
    """Validate (X, G, y, lam, loss); returns float64/bool tensors on ``device``."""
    loss = _check_fast_loss(loss)
    Xn = check_matrix(X, "X")
    n = Xn.shape[0]
    if n == 0:
        raise ValueError("X must have at least one sample; got n=0.")
    Gn = check_gates(G.detach().cpu().numpy() if isinstance(G, torch.Tensor) else G, n)
    yn = check_targets(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y, loss)
    if yn.shape != (n,):
        raise ValueError(f"y must have shape (n,) = ({n},); got {yn.shape}.")
    lam = check_lam(lam)
    if lam == 0:
        raise ValueError("lam must be > 0 for the fast solver: with lam=0 the dual has no "
                         "finite certificate. Use altheory.solvers.convex.group_lasso for lam=0.")
    dev = _resolve_device(device, X, G, y)
    return (torch.as_tensor(Xn, device=dev), torch.as_tensor(Gn, device=dev),
            torch.as_tensor(yn, device=dev), lam, loss, dev)


# --------------------------------------------------------------------------------------------
# certificate
# --------------------------------------------------------------------------------------------

def _dual_on_ray(g, smax: float, y, loss: str) -> float:
    r"""The best dual value on the feasible segment of the ray through the loss gradient.

    .. math:: \max_{0\le\alpha\le\alpha_{\max}}\ -f^*(\alpha g),\qquad
        \alpha_{\max} = 1/s_{\max}\ \ (s_{\max} = \max_j\|X^\top D_j g\|/\lambda)

    Every :math:`\alpha g` on the segment is dual feasible, so the value is a certified lower
    bound, and it is never below the classical choice :math:`\alpha = 1/\max(1, s_{\max})`
    (computed too, the larger is returned). Squared loss: :math:`-f^*(\alpha g) =
    -\tfrac n2\alpha^2\|g\|^2 - \alpha g^\top y`, maximised at
    :math:`\alpha = -g^\top y/(n\|g\|^2)`, clipped (the feasible set is symmetric, so
    :math:`|\alpha|\le\alpha_{\max}`). Logistic: :math:`\sigma_i = -n y_i g_i\in(0, 1)`,
    :math:`\tfrac{d}{d\alpha}(-f^*) = -\tfrac1n\sum_i\sigma_i\,\mathrm{logit}(\alpha\sigma_i)` is
    decreasing: its root by bisection, clipped to :math:`[0, \min(\alpha_{\max}, 1/\max\sigma)]`.
    At the optimum of a small-λ problem the classical scaling loses a term of the order of the
    stationarity error, the optimal one recovers the part of it along the ray.
    """
    base = -float(_conj(g / max(1.0, smax), y, loss))
    amax = 1.0 / smax if smax > 0 else math.inf
    n = y.shape[0]
    if loss == "squared":
        gg = float((g * g).sum())
        if gg == 0.0:
            return base
        a = -float((g * y).sum()) / (n * gg)
        a = min(max(a, -amax), amax)
    elif loss == "logistic":
        sig = -n * y * g
        top = float(sig.max())
        if not top > 0:
            return base
        hi = min(amax, 1.0 / top)

        def slope(al):
            t = torch.clamp(al * sig, min=_TINY, max=1.0)
            return -float((sig * (torch.log(t) - torch.log1p(-t))).sum())

        if slope(hi) >= 0 or not math.isfinite(hi):
            a = hi if math.isfinite(hi) else 1.0 / top
        else:
            lo_, hi_ = 0.0, hi
            for _ in range(60):
                mid = 0.5 * (lo_ + hi_)
                if slope(mid) > 0:
                    lo_ = mid
                else:
                    hi_ = mid
            a = lo_
    else:
        raise ValueError(f"loss must be one of {FAST_LOSSES}; got {loss!r}.")
    return max(base, -float(_conj(a * g, y, loss)))


def _certificate(A: MaskedDesign, y, z, U_norm_sum: float, lam: float, loss: str):
    """(primal, dual, gap, scores) at prediction ``z``; ``scores = ||A_j^T grad||/lam``."""
    g = _grad(z, y, loss)
    scores = A.rmatvec(g).norm(dim=1) / lam
    primal = float(_loss(z, y, loss)) + lam * U_norm_sum
    dual = _dual_on_ray(g, float(scores.max()), y, loss)
    return primal, dual, primal - dual, scores


def _predict(A: MaskedDesign, U):
    """``A.matvec(U)`` over the non-zero groups only (a subset product when they are few)."""
    nz = torch.nonzero(U.norm(dim=1) > 0).flatten()
    if nz.numel() == 0:
        return torch.zeros(A.n, dtype=A.dtype, device=A.X.device)
    if 2 * nz.numel() > A.p:
        return A.matvec(U.to(A.dtype))
    return A.subset(nz).matvec(U[nz].to(A.dtype))


def group_lasso_certificate(X, G, y, U, lam, *, loss: str = "squared", refine: bool = False,
                            time_limit: float = 60.0) -> dict[str, float]:
    r"""Primal value, dual bound and duality gap of any ``U`` for :math:`P_c` (float64).

    .. math:: F(U) - F^* \le \mathrm{gap} = F(U) - D(\theta),\qquad
        \|X^\top D_j\theta\|\le\lambda\ \forall j

    Plain (``refine=False``): :math:`\theta` is the best point of the ray through
    :math:`\nabla f(AU)` inside the dual feasible set (:func:`_dual_on_ray`). Its error is of the
    order of the *stationarity* error of ``U``, so a point close to the optimum in value can get
    a much larger gap: at small λ, where every group is active and the dual constraints are
    tight, a point 1e-9 (relative) above the optimum of (2000, 30, 100), λ = 1e-3, has a plain
    gap of 8e-4. With ``refine=True`` :math:`\theta` is also taken from a solve warm-started at
    ``U`` (:func:`solve_group_lasso`, tol 1e-13, at most ``time_limit`` seconds), and the larger
    dual value is used: any dual feasible point bounds :math:`F^*` from below, so the gap stays
    certified, and it then exceeds :math:`F(U) - F^*` only by that solve's own gap.

    Parameters
    ----------
    X : array of shape (n, d); G : bool array of shape (n, p); y : array of shape (n,)
    U : array of shape (p, d)
    lam : float > 0
    loss : {"squared", "logistic"}
    refine : bool, default False
        Also take the dual point of a solve started at ``U`` (tight gaps for first-order points).
    time_limit : float, seconds, for that solve.

    Returns
    -------
    dict with ``objective``, ``dual_objective``, ``gap`` (>= F(U) - F*, up to rounding),
    ``rel_gap``.

    Examples
    --------
    >>> X = np.eye(2); G = np.ones((2, 1), bool); y = np.array([1.0, 0.0])
    >>> c = group_lasso_certificate(X, G, y, np.zeros((1, 2)), lam=1.0)
    >>> c["gap"]  # lam >= lam_max: U = 0 is optimal and the gap is exactly 0
    0.0
    """
    Xt, Gt, yt, lam, loss, dev = _group_inputs(X, G, y, lam, loss, "cpu")
    Un = check_matrix(U, "U")
    if Un.shape != (Gt.shape[1], Xt.shape[1]):
        raise ValueError(f"U must have shape (p, d) = ({Gt.shape[1]}, {Xt.shape[1]}); "
                         f"got {Un.shape}.")
    A = MaskedDesign(Xt, Gt)
    Ut = torch.as_tensor(Un)
    primal, dual, gap, _ = _certificate(A, yt, A.matvec(Ut), float(Ut.norm(dim=1).sum()), lam, loss)
    if refine:
        polished = solve_group_lasso(Xt, Gt, yt, lam, loss=loss, tol=1e-13, U0=Un,
                                     time_limit=time_limit, max_iter=5_000)
        dual = max(dual, polished.dual_objective)
        gap = primal - dual
    return {"objective": primal, "dual_objective": dual, "gap": gap,
            "rel_gap": gap / max(abs(primal), _TINY)}


def lambda_max(X, G, y, *, loss: str = "squared") -> float:
    r""":math:`\lambda_{\max} = \max_j\|X^\top D_j\nabla f(0)\|`: every group is zero iff λ ≥ it.

    Examples
    --------
    >>> lambda_max(np.eye(2), np.ones((2, 1), bool), np.array([1.0, 0.0]))
    0.5
    """
    Xt, Gt, yt, _, loss, _ = _group_inputs(X, G, y, 1.0, loss, "cpu")
    A = MaskedDesign(Xt, Gt)
    return float(A.rmatvec(_grad(torch.zeros_like(yt), yt, loss)).norm(dim=1).max())


# --------------------------------------------------------------------------------------------
# inner solvers on a fixed set of groups
# --------------------------------------------------------------------------------------------

def _prox(V, t):
    """Group soft-thresholding: rows of V shrunk by t in norm."""
    nrm = V.norm(dim=1, keepdim=True)
    return V * torch.clamp(1 - t / torch.clamp(nrm, min=_TINY), min=0)


def _fista(A: MaskedDesign, y, lam, loss, U, L, *, max_iter, rel_tol, check_every=10,
           deadline=math.inf, handoff=False):
    """FISTA with backtracking and gradient restart; stops at rel_gap <= rel_tol (on A).

    With ``handoff`` it also stops once the non-zero groups have not changed over four checks:
    the gap of a first-order point can be orders of magnitude above its suboptimality at small
    λ (its dual point is off by the stationarity error), while the Newton polish needs only the
    support."""
    x = U
    zx = A.matvec(x)
    yk, zy, t = x, zx, 1.0
    it = 0
    rel = math.inf
    last_active = None
    stable = 0
    slack = 16 * torch.finfo(A.dtype).eps  # rounding of the loss in the working precision
    while it < max_iter:
        it += 1
        fy = float(_loss(zy, y, loss))
        gy = A.rmatvec(_grad(zy, y, loss))
        while True:
            xn = _prox(yk - gy / L, lam / L)
            zxn = A.matvec(xn)
            diff = xn - yk
            q = fy + float((gy * diff).sum()) + 0.5 * L * float((diff * diff).sum())
            if float(_loss(zxn, y, loss)) <= q + slack * abs(fy) or L > 1e300:
                break
            L *= 2.0
        if not L <= 1e300 or not bool(torch.isfinite(xn).all()):
            break  # no step decreases the loss in this precision: its rounding floor
        tn = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        if float(((yk - xn) * (xn - x)).sum()) > 0:  # gradient restart
            yk, zy, t = xn, zxn, 1.0
        else:
            beta = (t - 1) / tn
            yk = xn + beta * (xn - x)
            zy = zxn + beta * (zxn - zx)
            t = tn
        x, zx = xn, zxn
        if it % check_every == 0 or it == max_iter:
            primal, dual, gap, _ = _certificate(A, y, zx, float(x.norm(dim=1).sum()), lam, loss)
            rel = gap / max(abs(primal), _TINY)
            active = (x.norm(dim=1) > 0)
            if last_active is not None and bool((active == last_active).all()):
                stable += 1
            else:
                stable = 0
            last_active = active
            if ((stable >= 3 and (rel <= rel_tol or handoff)) or rel <= 1e-2 * rel_tol
                    or time.perf_counter() > deadline):
                break
        L *= 0.95  # let the step grow back (backtracking raises it when needed)
    return x, L, it, rel


def _pcg(hv, b, Minv, tol, max_iter, time_budget=math.inf, min_iter=4):
    r"""Preconditioned CG for :math:`Hx = b` from :math:`x = 0`, to :math:`\|b - Hx\|\le`
    ``tol`` :math:`\|b\|` (the true residual is tracked by recursion). The direction update is
    the flexible one, :math:`\beta = z_{k+1}^\top(r_{k+1} - r_k)/z_k^\top r_k` (Notay's FCG(1);
    equal to Fletcher–Reeves in exact arithmetic), so a preconditioner applied in float32 (not
    exactly symmetric) does not stall it. It also stops, unconverged, past ``time_budget``
    seconds once ``min_iter`` iterations are done. Returns (x, iterations, converged)."""
    t0 = time.perf_counter()
    x = torch.zeros_like(b)
    r = b.clone()
    zr = Minv(r)
    pd = zr.clone()
    rz = float((r * zr).sum())
    bn = float(b.norm())
    k = 0
    if not bn > 0:
        return x, 0, True
    if not rz > 0:  # the preconditioner is not positive here: no CG step can be trusted
        return x, 0, False
    for k in range(1, max_iter + 1):
        Ap = hv(pd)
        pAp = float((pd * Ap).sum())
        if not pAp > 0:
            return x, k, False
        a = rz / pAp
        x += a * pd
        r_old = r.clone()
        r -= a * Ap
        if float(r.norm()) <= tol * bn:
            return x, k, True
        if k >= min_iter and time.perf_counter() - t0 > time_budget:
            return x, k, False
        zr = Minv(r)
        rz_new = float((r * zr).sum())
        if not rz_new > 0:
            return x, k, False
        pd = zr + (float((zr * (r - r_old)).sum()) / rz) * pd
        rz = rz_new
    return x, k, False


class _SampleSpacePrecond:
    r"""Woodbury preconditioner for the Newton Hessian on the non-zero groups, when ``k d >~ n``.

    .. math::

        H = A^\top WA + R,\qquad R = \mathrm{blkdiag}_j\big(r_j(I - \hat u_j\hat u_j^\top)\big),
        \qquad r_j = \lambda/\|u_j\|,\ \hat u_j = u_j/\|u_j\|,

    with :math:`W = \mathrm{diag}(f'')`. When the non-zero groups have more coordinates than
    there are samples, :math:`A^\top WA` is singular and the (d, d) diagonal blocks of
    :math:`H` (the block-Jacobi preconditioner) miss the :math:`kd - n` directions where only
    :math:`R` curves: CG then takes hundreds of iterations per Newton step ((2000, 30, 100),
    λ = 1e-3: 86-229). This preconditioner is

    .. math::

        M = A^\top WA + \tilde R,\quad \tilde R = \mathrm{blkdiag}_j\big(r_j(I - \hat u_j
        \hat u_j^\top) + c_j\hat u_j\hat u_j^\top\big),\quad
        M^{-1} = \tilde R^{-1} - \tilde R^{-1}A^\top W^{1/2}S^{-1}W^{1/2}A\tilde R^{-1},

    (Woodbury) with :math:`S = I_n + W^{1/2}A\tilde R^{-1}A^\top W^{1/2}` (eigenvalues
    :math:`\ge 1`, factored by Cholesky) and, because :math:`A u = \sum_j D_jXu_j`,

    .. math:: A\tilde R^{-1}A^\top = (XX^\top)\odot\big(G\,\mathrm{diag}(1/r)\,G^\top\big)
        + Z\,\mathrm{diag}(1/c - 1/r)\,Z^\top,\qquad Z = G\odot(X\hat U^\top)\ \ (n, k):

    two (n, k, n) products and an (n, n) Cholesky, O(n^2 k + n^3), nothing of size kd x kd.
    :math:`M - H = \mathrm{blkdiag}(c_j\hat u_j\hat u_j^\top)` with :math:`c_j` =
    ``_WB_C`` times :math:`A`'s curvature along :math:`\hat u_j` (so the eigenvalues of
    :math:`M^{-1}H` lie in [~1/(1 + _WB_C), 1] and the cancellation in :math:`M^{-1}` loses at
    most ~1/_WB_C of the working precision's digits): CG converges in a few iterations (3-14 to
    1e-6 on that instance at the three λ of the benchmark, against 59-358 block-Jacobi).

    float32 (a preconditioner needs few digits) unless the largest ratio of :math:`A`'s
    curvature to :math:`r_j` would leave fewer than three of its digits; then float64. ``ok`` is
    False when the factorisation failed (the caller keeps block-Jacobi)."""

    def __init__(self, sub: MaskedDesign, w: torch.Tensor, r: torch.Tensor, uh: torch.Tensor):
        Gb = sub.G if sub.G.dtype == torch.bool else sub.G != 0
        X64 = sub.X.to(torch.float64)
        # A's curvature along u_j: ||W^{1/2} D_j X u_j||^2, and its largest diagonal entry per group
        Z64 = Gb.to(torch.float64) * (X64 @ uh.T)
        curv_u = (w[:, None] * Z64 * Z64).sum(0)
        diag = sub.rmatvec_sq(w.to(sub.dtype)).to(torch.float64).max(dim=1).values
        c = torch.clamp(_WB_C * curv_u, min=_WB_C * float(r.min()))
        spread = float((torch.maximum(diag, curv_u) / torch.minimum(r, c)).max())
        dtype = torch.float32 if spread * torch.finfo(torch.float32).eps <= 1e-3 else torch.float64
        X = sub.X.to(dtype)
        n, k = Gb.shape
        with _blas3_threads(n * n * (n / 3 + 4 * k)):
            key = ("XXt", str(dtype), sub.n)
            XX = sub.cache.get(key)  # shared by every subset of the design: X is the same
            if XX is None:
                XX = X @ X.T
                sub.cache[key] = XX
            Gf = Gb.to(dtype)
            K = (Gf * (1.0 / r).to(dtype)) @ Gf.T
            K.mul_(XX)
            Z = Z64.to(dtype)
            K.addmm_(Z * (1.0 / c - 1.0 / r).to(dtype), Z.T)
            sw = w.sqrt().to(dtype)
            K.mul_(sw[:, None]).mul_(sw[None, :])
            K.diagonal().add_(1.0)
            L, info = torch.linalg.cholesky_ex(K)
        self.ok = int(info) == 0 and bool(torch.isfinite(L.diagonal()).all())
        self.L, self.sw, self.dtype = L, sw, dtype
        self.A = sub if sub.dtype == dtype else sub.subset(
            torch.arange(sub.p, device=sub.X.device), dtype=dtype)
        self.inv_r, self.dc, self.uh = 1.0 / r, 1.0 / c - 1.0 / r, uh

    @property
    def ids(self):
        return self.A.ids

    def _rinv(self, V):
        return V * self.inv_r[:, None] + self.uh * ((self.uh * V).sum(1) * self.dc)[:, None]

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        t = self._rinv(v)
        s = self.sw * self.A.matvec(t.to(self.dtype))
        s = _chol_solve(self.L, s[:, None])[:, 0]
        return t - self._rinv(self.A.rmatvec(self.sw * s).to(t.dtype))

    @staticmethod
    def break_even(n: int, k: int, d: int) -> float:
        r"""Block-Jacobi CG iterations that cost as much as building this preconditioner:
        :math:`(n^3/3 + 4n^2k)/\mathrm{\_WB\_BLAS3}` over :math:`4nkd` (one Hessian product)."""
        return (n ** 3 / 3 + 4.0 * n * n * k) / _WB_BLAS3 / (4.0 * n * k * d)


def _chol_solve(L: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`(LL^\top)^{-1}b` by two triangular solves. ``torch.cholesky_solve`` does the same
    but took 3.7 ms against 0.55 ms (float32) and 7.5 against 1.3 ms (float64) for one
    2000 x 2000 factor and one vector on this 2-core machine, one thread: the sample-space
    preconditioner applies it at every CG iteration. Equal results (max difference 0)."""
    return torch.linalg.solve_triangular(L.mT, torch.linalg.solve_triangular(L, b, upper=False),
                                         upper=True)


class _Restricted:
    """A sample-space preconditioner built on a superset of the groups, used on a subset:
    :math:`[M^{-1}]_{S'S'}` (a principal block of an SPD matrix: SPD)."""

    def __init__(self, pre, pos):
        self.pre, self.pos = pre, pos
        self.ok = True

    def __call__(self, v):
        V = torch.zeros(self.pre.inv_r.numel(), v.shape[1], dtype=v.dtype, device=v.device)
        V[self.pos] = v
        return self.pre(V)[self.pos]


def _newton_step(sub: MaskedDesign, subw: MaskedDesign, y, lam, loss, u, z, F, state=None):
    """One inexact Newton step on the non-zero groups ``u`` (prediction ``z``, objective ``F``).

    The gradient, the objective and the line search are float64 (``sub``); the Hessian products
    of the CG solve may use the working precision (``subw``): an inexact Newton direction only
    needs a few correct digits. The CG is preconditioned by the (d, d) diagonal blocks of the
    Hessian (block-Jacobi); when that CG runs past the cost of building the sample-space
    preconditioner (:class:`_SampleSpacePrecond`, ``n <= _WB_MAX_N``) it is built and the CG goes
    on with it (ski rental: about twice the better of the two at worst), and directly when
    ``k d >= n`` (where block-Jacobi cannot do well). The cost of a build is the wall time the
    last one took (``state["wb_cost"]``, carried across sets of groups), before the first build
    the flop model :meth:`_SampleSpacePrecond.break_even` in CG iterations: a measured budget
    adapts to threads and machine, so the iterates may differ between two runs (the
    certificate does not). ``state`` (one dict per set of non-zero groups, kept across
    working-set rounds by :func:`_newton`) keeps the factor for the next steps; a kept factor
    gets the same rental budget and is rebuilt past it, and rebuilt at the next step when its
    CG took more than ``_WB_STALE`` of a build. Line search: Armijo on :math:`F`
    (float64), over the plain point and the point with the groups the step carries through zero
    set to zero, the lower passing one taken. Returns (u, z, F, cg iterations, accepted)."""
    state = {} if state is None else state
    nrm = u.norm(dim=1, keepdim=True)
    g = sub.rmatvec(_grad(z, y, loss)) + lam * u / nrm
    gn = float(g.norm())
    w = _curv(z, y, loss)
    uh = u / nrm
    damp = 1e-12 * float(w.sum()) * float((sub.X ** 2).sum(1).max())
    wd = w.to(subw.dtype)

    def hv(v):
        hw = subw.rmatvec(wd * subw.matvec(v.to(subw.dtype))).to(torch.float64)
        return hw + lam * (v - uh * (uh * v).sum(1, keepdim=True)) / nrm + damp * v

    k_groups, d = u.shape
    cg_tol = min(0.1, math.sqrt(gn))
    cg_max = max(50, min(_CG_MAX, u.numel()))
    wb_allowed = sub.n <= _WB_MAX_N and sub.chunk is None
    be = _SampleSpacePrecond.break_even(sub.n, k_groups, d) if wb_allowed else math.inf

    def woodbury():
        t0 = time.perf_counter()
        pre = _SampleSpacePrecond(sub, w, lam / nrm[:, 0], uh)
        # its measured cost: what a stale factor may spend in CG before it is rebuilt
        state["wb_cost"] = time.perf_counter() - t0
        state["wb"] = pre if pre.ok else None
        state["wb_fresh"] = True
        state["wb_failed"] = not pre.ok  # then block-Jacobi alone on this set
        return state["wb"]

    pre = state.get("wb")
    can_build = wb_allowed and not state.get("wb_failed", False)
    if pre is not None and state.get("wb_slow", False):
        pre = woodbury()  # the kept factor has gone stale: rebuild at this point
    elif pre is None and can_build and u.numel() >= sub.n:
        pre = woodbury()  # k d >= n: A^T W A is singular here, block-Jacobi cannot do well
    k = 0
    step = None
    if pre is None:  # block-Jacobi, with a budget when the sample-space one can be built
        # the blocks only precondition: the working precision is enough
        # (on at most 20000 evenly strided rows: a preconditioner needs no more)
        blocks = subw.gram_blocks(wd, constant=(loss == "squared"),
                                  max_rows=20_000).to(torch.float64)
        eye = torch.eye(d, dtype=u.dtype, device=u.device)
        B = blocks + (lam / nrm)[:, :, None] * (eye - uh[:, :, None] * uh[:, None, :]) + damp * eye
        chol, info = torch.linalg.cholesky_ex(B)
        if bool((info != 0).any()):  # fall back to the diagonal
            diag = torch.clamp(torch.diagonal(B, dim1=1, dim2=2), min=_TINY)
            Minv = lambda r: r / diag  # noqa: E731
        else:
            Minv = lambda r: torch.cholesky_solve(r[:, :, None], chol)[:, :, 0]  # noqa: E731
        can_build = wb_allowed and not state.get("wb_failed", False)
        # the rental budget: the measured cost of the last build when there is one (the cost
        # model counts flops; a CG iteration here also pays its (d, d) solves and overheads)
        cost = state.get("wb_cost") if can_build else None
        budget = cg_max if not can_build else (cg_max if cost is not None
                                               else int(min(cg_max, max(10, be))))
        step, k, done = _pcg(hv, -g, Minv, tol=cg_tol, max_iter=budget,
                             time_budget=math.inf if cost is None else cost)
        if not done and can_build and (budget < cg_max or cost is not None):
            pre = woodbury()
    if pre is not None:
        fresh = state.pop("wb_fresh", False)
        # a kept factor (built at an earlier point, or on more groups: _Restricted) gets the
        # time its rebuild took (measured; else the iterations of the cost model); past it, it
        # is rebuilt here and the CG goes on ((2000, 30, 100), λ = 0.01 λ_max, seed 1: the model
        # let a stale factor run 47 iterations, about 5x the measured 55 ms of a rebuild)
        cost = None if fresh else state.get("wb_cost")
        rent = min(cg_max, _CG_FRESH_MAX) if fresh else (
            cg_max if cost is not None else int(min(cg_max, max(10, be))))
        t_rent = time.perf_counter()
        if step is None:
            step, k1, done = _pcg(hv, -g, pre, tol=cg_tol, max_iter=rent,
                                  time_budget=math.inf if cost is None else cost)
        else:  # go on from the block-Jacobi iterate: solve for the correction
            res = -g - hv(step)
            corr, k1, done = _pcg(hv, res, pre, tol=cg_tol * gn / max(float(res.norm()), _TINY),
                                  max_iter=rent, time_budget=math.inf if cost is None else cost)
            step = step + corr
        t_rent = time.perf_counter() - t_rent
        k += k1
        if not done and not fresh:
            pre = woodbury()
            if pre is not None:
                res = -g - hv(step)
                corr, k2, done = _pcg(hv, res, pre,
                                      tol=cg_tol * gn / max(float(res.norm()), _TINY),
                                      max_iter=min(cg_max, _CG_FRESH_MAX))
                step = step + corr
                k += k2
                k1 = k2
                fresh = True
        # a fresh factor converges in a handful of iterations; rebuild at the next step when
        # the kept one's CG took more than _WB_STALE of a rebuild's cost
        state["wb_slow"] = (not fresh) and (k1 > max(8.0, be / 4) if cost is None
                                            else k1 > 4 and t_rent > _WB_STALE * cost)
    slope = float((g * step).sum())
    if not slope < 0:
        return u, z, F, k, False
    Az = sub.matvec(step)
    a = 1.0
    while a > 1e-12:
        un = u + a * step
        # a group the step carries through zero is set to zero (the orthant projection of
        # OWL-QN, per group): else its kink caps the step length at the first crossing, and
        # groups that should vanish shrink by halved steps ((2000, 30, 100), λ = 0.01 λ_max,
        # all groups: 25 Newton steps with steps down to 2^-11, against 6)
        # Of the two points, the lower objective that passes the Armijo test is taken (a group
        # whose direction the step turns by more than 90 degrees need not vanish: zeroing it
        # alone made (400, 10, 100), λ = 1e-3, cycle between 97 and 100 groups).
        zn = z + a * Az
        Fn = float(_loss(zn, y, loss)) + lam * float(un.norm(dim=1).sum())
        cross = (un * u).sum(1) <= 0
        if bool(cross.any()):
            uc = torch.where(cross[:, None], torch.zeros_like(un), un)
            zc = sub.matvec(uc)
            Fc = float(_loss(zc, y, loss)) + lam * float(uc.norm(dim=1).sum())
            if Fc <= F + 1e-4 * a * slope and not Fn < Fc:
                state["step_length"] = a
                return uc, zc, Fc, k, True
        if Fn <= F + 1e-4 * a * slope:
            state["step_length"] = a
            return un, zn, Fn, k, True
        a *= 0.5
    return u, z, F, k, False


def _newton(A: MaskedDesign, Aw: MaskedDesign, y, lam, loss, U, L, *, tol, max_newton=60,
            deadline=math.inf, counters=None, precond=None):
    """Prox-gradient step (identifies the non-zero groups) + Newton step on them, repeated;
    stops at ``rel_gap <= tol``, or after ``_SHORT_STEPS`` Newton steps in a row no longer than
    ``_SHORT_STEP`` (the caller's first-order pass takes over: the support is still moving).

    ``precond`` (a dict, kept by the caller across working-set rounds) holds the
    preconditioner state of the last set of non-zero groups, by their group ids.

    The gradient, the line search and the gap are float64. The Hessian products of the CG run
    in ``Aw``'s precision, and in float32 when ``Aw`` is float64 (``_HESS_F32``): an inexact
    Newton direction needs a few correct digits, and the products cost about half
    ((2000, 30, 100), squared, seeds 0-2, one thread, interleaved: 0.17-0.22 s against
    0.15-0.18 s at 0.1 λ_max, 4.3 s against 3.9 s over the nine solves at three λ). A float32
    step that the line search rejects (a design whose conditioning float32 cannot carry) is
    retried with float64 products, which the rest of the call keeps.
    Returns (U, L, rel_gap at the returned U)."""
    sub = subw = None
    sub_idx = None
    hess32 = _HESS_F32 and Aw.dtype == torch.float64  # float32 products until one step fails
    state: dict = {}
    precond = {} if precond is None else precond
    rel = math.inf
    short = 0
    for it in range(max_newton + 1):
        z = A.matvec(U)
        gl = _grad(z, y, loss)
        gf = A.rmatvec(gl)
        f = float(_loss(z, y, loss))
        F = f + lam * float(U.norm(dim=1).sum())
        dual = _dual_on_ray(gl, float(gf.norm(dim=1).max()) / lam, y, loss)
        rel = (F - dual) / max(abs(F), _TINY)
        if rel <= tol or it == max_newton or time.perf_counter() > deadline:
            break
        while True:  # proximal-gradient step with backtracking
            Up = _prox(U - gf / L, lam / L)
            zp = A.matvec(Up)
            diff = Up - U
            q = f + float((gf * diff).sum()) + 0.5 * L * float((diff * diff).sum())
            if float(_loss(zp, y, loss)) <= q + 1e-13 * abs(f) or L > 1e300:
                break
            L *= 2.0
        act = torch.nonzero(Up.norm(dim=1) > 0).flatten()
        if act.numel() == 0:
            U = Up
            continue
        if sub_idx is None or act.numel() != sub_idx.numel() or bool((act != sub_idx).any()):
            sub = A if act.numel() == A.p else A.subset(act)
            if Aw.dtype != sub.dtype:
                subw = Aw if act.numel() == Aw.p else Aw.subset(act)
            elif hess32:
                subw = sub.subset(torch.arange(sub.p, device=sub.X.device), dtype=torch.float32)
            else:
                subw = sub
            sub_idx = act
            ids = sub.ids
            same = precond.get("ids")
            if same is not None and same.numel() == ids.numel() and bool((same == ids).all()):
                state = precond["state"]  # the same groups as in an earlier round
            else:
                old = precond.get("state", {}).get("wb")
                cost = precond.get("state", {}).get("wb_cost")
                state = {} if cost is None else {"wb_cost": cost}
                if isinstance(old, _Restricted):
                    old = old.pre
                if old is not None:
                    # fewer groups than the kept preconditioner's: use it on them (zero padded)
                    pos = torch.searchsorted(old.ids, ids)
                    if bool((pos < old.ids.numel()).all()) and bool((old.ids[pos.clamp(max=old.ids.numel() - 1)] == ids).all()):
                        state["wb"] = _Restricted(old, pos)
                precond.update(ids=ids, state=state)
        u = Up[act]
        Fp = float(_loss(zp, y, loss)) + lam * float(u.norm(dim=1).sum())
        u, _, Fn, k, ok = _newton_step(sub, subw, y, lam, loss, u, zp, Fp, state)
        if counters is not None:
            counters["newton"] += 1
            counters["cg"] += k
        U = torch.zeros_like(U)
        U[act] = u
        if not ok and hess32:
            hess32 = False  # float32 products misled the step: float64 from here on
            subw = sub
            if counters is not None:
                counters["hess64_fallbacks"] = counters.get("hess64_fallbacks", 0) + 1
            continue
        if not ok and Fp >= F:
            break  # no progress from either step: numerical floor
        short = short + 1 if state.get("step_length", 1.0) <= _SHORT_STEP else 0
        if short >= _SHORT_STEPS:
            break
    return U, L, rel


def _solve_on(A64: MaskedDesign, Aw: MaskedDesign, y64, yw, lam, loss, U, *, tol, max_iter,
              deadline, counters, L=None, polish=True, first_order=True, precond=None):
    """FISTA (working precision) + prox-Newton (float64) on the groups of A, to rel_gap <= tol.

    ``polish=False``: only the first FISTA pass (to a stable support; a screening round of the
    working set). ``first_order=False``: no first FISTA pass (``U`` is already the end point of
    one on these groups)."""
    if L is None:  # later rounds start from the last estimate (backtracking raises it)
        L = max(A64.norm_sq(iters=15) * float(_curv(torch.zeros_like(y64), y64, loss).max())
                * 1.05, _TINY)
    switch = 1e-3 if Aw.dtype == torch.float64 else 1e-2
    fista_budget = 200
    handoff = _HANDOFF  # the first pass hands over to Newton once the support is stable
    rel = math.inf
    while True:
        if first_order:
            Uw, L, it, rel = _fista(Aw, yw, lam, loss, U.to(Aw.dtype), L,
                                    max_iter=max(1, min(fista_budget if polish else _SCREEN_MAX, max_iter
                                                        - counters["fista"] - counters["newton"])),
                                    rel_tol=max(tol, switch), deadline=deadline,
                                    handoff=handoff and polish)  # screening: full length
            counters["fista"] += it
            if bool(torch.isfinite(Uw).all()):
                U = Uw.to(torch.float64)
        first_order = True
        if not polish:
            return U, L, rel
        budget = max_iter - counters["fista"] - counters["newton"]
        U, L, rel = _newton(A64, Aw, y64, lam, loss, U, L, tol=tol, deadline=deadline,
                            counters=counters, max_newton=max(0, min(60, budget)),
                            precond=precond)
        if rel <= tol or counters["fista"] + counters["newton"] >= max_iter \
                or time.perf_counter() > deadline:
            return U, L, rel
        switch = max(tol, min(switch, rel) * 1e-2)
        fista_budget *= 2
        handoff = False  # Newton did not finish: the support needs a gap-driven pass
        # the Newton point is float64-accurate: later first-order passes stay in float64
        Aw, yw = A64, y64


# --------------------------------------------------------------------------------------------
# public: group lasso (C4)
# --------------------------------------------------------------------------------------------

def solve_group_lasso(X, G, y, lam, *, loss: FastLoss = "squared", tol: float = 1e-8,
                      max_iter: int = 20_000, time_limit: float = math.inf, device=None,
                      dtype: torch.dtype = torch.float64, working_set: bool | None = None,
                      max_bytes: int = 2 ** 31, U0=None) -> FastResult:
    r"""Certified solution of the two-layer fixed-support group lasso :math:`P_c` (C4).

    .. math:: \min_U\ \ell\big(((XU^\top)\odot G)\mathbf 1,\ y\big) + \lambda\sum_j\|u_j\|_2

    Parameters
    ----------
    X : array or Tensor of shape (n, d)
    G : bool array or Tensor of shape (n, p)
    y : array or Tensor of shape (n,); in {-1, +1} for ``logistic``.
    lam : float > 0
    loss : {"squared", "logistic"}
    tol : float, default 1e-8
        Stop when the certified ``rel_gap <= tol``.
    max_iter : int
        Budget of iterations (proximal-gradient and Newton steps) over all working-set rounds.
    time_limit : float, seconds
    device : None, str or torch.device
        Where to compute (default: the device of ``X`` when it is a Tensor, else CPU).
    dtype : torch.float64 or torch.float32
        Precision of the first-order phase; the Newton polish (its gradient and line search;
        its CG's Hessian products run in float32 either way) and the certificate always run in
        float64. (The screening rounds of the working set run in float32 either way: their
        point is never returned.)
    working_set : bool, optional
        Solve on a growing working set of groups (default: when ``p > 64``).
    max_bytes : int
        Memory budget for the float copy of the gates (above it, row blocks).
    U0 : array of shape (p, d), optional warm start.

    Returns
    -------
    FastResult
        ``status == "optimal"`` only when the certified ``rel_gap <= tol``.

    Raises
    ------
    TypeError, ValueError
        Invalid inputs (shapes, NaN, lam <= 0, unknown loss, dtype or device).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 3)); G = X @ rng.standard_normal((3, 4)) > 0
    >>> y = X @ np.ones(3)
    >>> r = solve_group_lasso(X, G, y, 0.01)
    >>> r.status, r.rel_gap <= 1e-8
    ('optimal', True)
    """
    t_start = time.perf_counter()
    dtype = _check_dtype(dtype)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a float > 0; got tol={tol!r}. The default is 1e-8.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1; got {max_iter!r}.")
    Xt, Gt, yt, lam, loss, dev = _group_inputs(X, G, y, lam, loss, device)
    n, d = Xt.shape
    p = Gt.shape[1]
    if U0 is None:
        U = torch.zeros(p, d, dtype=torch.float64, device=dev)
    else:
        U0n = check_matrix(U0, "U0")
        if U0n.shape != (p, d):
            raise ValueError(f"U0 must have shape (p, d) = ({p}, {d}); got {U0n.shape}.")
        U = torch.as_tensor(U0n, device=dev)
    with _threads(float(n) * p * d, dev, X=Xt, G=Gt):
        return _solve_group_lasso(Xt, Gt, yt, lam, loss, dev, U, tol=tol, max_iter=max_iter,
                                  deadline=t_start + float(time_limit), dtype=dtype,
                                  working_set=working_set, max_bytes=max_bytes, t_start=t_start)


def _solve_group_lasso(Xt, Gt, yt, lam, loss, dev, U, *, tol, max_iter, deadline, dtype,
                       working_set, max_bytes, t_start) -> FastResult:
    p = Gt.shape[1]
    dtype_asked = dtype
    A64 = MaskedDesign(Xt, Gt, max_bytes=max_bytes)
    yw = yt.to(dtype)
    counters = {"fista": 0, "newton": 0, "cg": 0, "working_set_rounds": 0}
    history: list[dict[str, float]] = []
    L = None  # Lipschitz estimate, carried across working-set rounds
    # scores of every group at the start
    z = _predict(A64, U)
    primal, dual, gap, scores = _certificate(A64, yt, z, float(U.norm(dim=1).sum()), lam, loss)
    rel = gap / max(abs(primal), _TINY)
    if working_set is None:
        # also at small λ, where nearly every group ends non-zero: without the set, FISTA's
        # early support there is wrong and Newton takes 3-5x more steps (logistic, (2000, 30,
        # 100), λ = 1e-3: 61 Newton steps and 24 s against 19 and 4.5 s, load 6-9)
        working_set = p > 64
    # float32 copy of the full design for the per-round screening (the final check is float64)
    Aw_full = None if dtype == torch.float64 or not working_set else MaskedDesign(
        Xt.to(dtype), Gt, max_bytes=max_bytes)
    exact = True
    if working_set:
        ws = torch.zeros(p, dtype=torch.bool, device=dev)
        ws |= U.norm(dim=1) > 0
        k0 = min(p, max(_WS_START, int(ws.sum())))
        ws[torch.topk(scores, k0).indices] = True
    else:
        ws = torch.ones(p, dtype=torch.bool, device=dev)
    def spent():
        return counters["fista"] + counters["newton"] >= max_iter

    # Newton only on a set believed complete: while the last certificate found violators
    # outside the working set, a round is a first-order screening pass (its point only chooses
    # the next set; a Newton polish there is thrown away when the set grows: (2000, 30, 100),
    # λ = 0.01 λ_max, 9 of 15 Newton steps were on a set of 64 groups that grew to 98)
    polish = not working_set
    screened = False  # the last round was a screening pass on the set of this round
    precond: dict = {}  # the Newton preconditioner of the last non-zero groups (_newton)
    screens = 0
    while rel > tol and not spent() and time.perf_counter() < deadline:
        counters["working_set_rounds"] += 1
        idx = torch.nonzero(ws).flatten()
        if idx.numel() == p:
            sub64, idx = A64, None
        else:
            sub64 = A64.subset(idx, max_bytes=max_bytes)
        if rel <= _SCREEN_FLOOR:  # below float32's floor: the rounds left work in float64
            dtype, yw = torch.float64, yt
        subw = sub64 if dtype == torch.float64 else sub64.subset(
            torch.arange(sub64.p, device=dev), dtype=dtype, max_bytes=max_bytes)
        Usub = U if idx is None else U[idx]
        # a polished subproblem is solved to tol/2 (its set is believed complete, so that the
        # full gap can meet tol; Newton converges quadratically, the last digits are cheap)
        do_polish = polish or idx is None or screens >= 8
        screens += not do_polish
        yw_r = yw
        if not do_polish and _SCREEN_F32 and subw.dtype == torch.float64 and rel > _SCREEN_FLOOR:
            # a screening pass in float32 whatever dtype: its point only chooses the next set
            # (and starts the next round); products at half the cost ((2000, 30, 100),
            # λ = 0.01 λ_max: 0.73 -> 0.49 s, the same rounds and iterations)
            subw = sub64.subset(torch.arange(sub64.p, device=dev), dtype=torch.float32,
                                max_bytes=max_bytes)
            yw_r = yt.to(torch.float32)
        Usub, L, rel_sub = _solve_on(sub64, subw, yt, yw_r, lam, loss, Usub, tol=0.5 * tol,
                                     max_iter=max_iter, deadline=deadline, counters=counters,
                                     L=L, polish=do_polish, first_order=not screened,
                                     precond=precond)
        screened = False
        if idx is None:
            U = Usub
        else:
            U = torch.zeros_like(U)
            U[idx] = Usub
        unorm = float(U.norm(dim=1).sum())
        exact = Aw_full is None or dtype == torch.float64
        if not exact:  # screen in the working precision; float64 near its rounding floor
            primal, dual, gap, scores = _certificate(Aw_full, yw, _predict(Aw_full, U), unorm,
                                                     lam, loss)
            rel = gap / max(abs(primal), _TINY)
            # a float32 gap cannot fall below ~1e-6 (rounding of the loss), and float32 scores
            # cannot see violations that small: below _SCREEN_FLOOR, or with no violator seen,
            # only the float64 certificate decides (else the rounds repeat until max_iter)
            exact = rel <= max(100 * tol, _SCREEN_FLOOR) or not bool(((scores > 1.0) & ~ws).any())
        if exact:
            primal, dual, gap, scores = _certificate(A64, yt, _predict(A64, U), unorm, lam, loss)
            rel = gap / max(abs(primal), _TINY)
        history.append({"round": counters["working_set_rounds"], "working_set": int(ws.sum()),
                        "rel_gap_sub": rel_sub, "rel_gap": rel,
                        "time": time.perf_counter() - t_start})
        if rel <= tol or not working_set:
            if not working_set and rel > tol and not spent() \
                    and time.perf_counter() < deadline:
                continue  # numerical stall: _solve_on stopped early; try again from here
            break
        viol = (scores > 1.0) & ~ws
        if not bool(viol.any()):
            # no violator outside: the working-set problem itself is not yet solved to tol;
            # polish it (after a screening pass, from its end point: no second FISTA pass)
            screened = not do_polish
            polish = True
            continue
        # next working set (as celer): the non-zero groups plus the worst violators, at most
        # max(32, #non-zero) of them; zero groups that do not violate are dropped
        act = U.norm(dim=1) > 0
        k_add = min(int(viol.sum()), max(32, int(act.sum())))
        cand = torch.where(viol, scores, torch.full_like(scores, -1.0))
        ws = act.clone()
        ws[torch.topk(cand, k_add).indices] = True
    if not exact:  # the reported certificate is always float64
        primal, dual, gap, scores = _certificate(A64, yt, _predict(A64, U),
                                                 float(U.norm(dim=1).sum()), lam, loss)
        rel = gap / max(abs(primal), _TINY)
    _sync(dev)
    if rel <= tol:
        status = "optimal"
    elif time.perf_counter() >= deadline:
        status = "time_limit"
    else:
        status = "max_iter"
    return FastResult(U=U.cpu().numpy(), objective=primal, dual_objective=dual, gap=gap,
                      rel_gap=rel, status=status, iterations=counters,
                      solve_time=time.perf_counter() - t_start,
                      active=int((U.norm(dim=1) > 0).sum()), tol=float(tol), device=str(dev),
                      dtype=str(dtype_asked).replace("torch.", ""), history=history)


def solve_problem(problem: TwoLayerFixedSupport, **kwargs) -> FastResult:
    """:func:`solve_group_lasso` for a :class:`altheory.solvers.problems.TwoLayerFixedSupport`.

    Examples
    --------
    >>> P = TwoLayerFixedSupport(np.eye(2), np.ones((2, 1), bool), np.array([1.0, 0.0]),
    ...                          "squared", 0.1)
    >>> solve_problem(P).status
    'optimal'
    """
    if not isinstance(problem, TwoLayerFixedSupport):
        raise TypeError(f"problem must be a TwoLayerFixedSupport; got {type(problem).__name__}.")
    return solve_group_lasso(problem.X, problem.G, problem.y, problem.lam, loss=problem.loss,
                             **kwargs)


# --------------------------------------------------------------------------------------------
# public: per-layer problem (C3)
# --------------------------------------------------------------------------------------------

def solve_layer(Phi, offset, Y, lam: float = 0.0, *, loss: FastLoss = "squared",
                n_weight: int | None = None, tol: float = 1e-8, max_iter: int = 100, device=None,
                dtype: torch.dtype = torch.float64, max_bytes: int = 2 ** 31) -> LayerResult:
    r"""Certified solution of the per-layer problem of C3.

    .. math:: \min_\theta\ \ell(\Phi\theta + o,\ Y) + \tfrac\lambda2\|\theta_{:n_w}\|^2

    Damped Newton with the explicit (q, q) Hessian :math:`\Phi^\top\mathrm{diag}(f'')\Phi
    + \lambda I_W` (pseudo-inverse by ``eigh``, so rank-deficient :math:`\Phi` and λ = 0 are
    fine) and an Armijo line search. Certificate: the dual
    :math:`D(\alpha) = -f^*(\alpha) + \alpha^\top o - \|\Phi_W^\top\alpha\|^2/(2\lambda)` on
    :math:`\{\Phi_b^\top\alpha = 0\}` (:math:`\Phi_b` the unregularised columns, all of them when
    λ = 0), at :math:`\alpha` = the loss gradient projected onto that subspace.

    Parameters
    ----------
    Phi : array of shape (n*k, q)
        From :func:`altheory.layer_operator` (rows sample-major).
    offset : array of shape (n*k,)
    Y : array of shape (n,) or (n, k) (``logistic``: (n,) in {-1, +1})
    lam : float >= 0
    loss : {"squared", "logistic"}
    n_weight : int, optional
        The first ``n_weight`` entries of θ are decayed (the weights, not the bias); all when None.
    tol : float
        ``status == "optimal"`` only when the certified ``rel_gap <= tol``.
    max_iter : int, Newton steps.
    device, dtype : as :func:`solve_group_lasso` (the certificate is float64).
    max_bytes : int
        Memory allowed for the (q, q) Hessian; wider layers raise ValueError.

    Returns
    -------
    LayerResult
        ``rel_gap = gap / max(|F|, 1e-12 |F(0)|)``: relative to the objective, or to the
        objective at θ = 0 when the optimum is (near) zero, as under interpolation.

    Examples
    --------
    >>> r = solve_layer(np.eye(2), np.zeros(2), np.array([1.0, -1.0]))
    >>> r.status, np.round(r.theta, 6).tolist()
    ('optimal', [1.0, -1.0])
    """
    t0 = time.perf_counter()
    loss = _check_fast_loss(loss)
    dtype = _check_dtype(dtype)
    Phin = check_matrix(Phi, "Phi")
    on = check_matrix(offset, "offset", ndim=1)
    Yn = check_targets(Y.detach().cpu().numpy() if isinstance(Y, torch.Tensor) else Y, loss)
    lam = check_lam(lam)
    if Phin.shape[0] != Yn.size or on.shape[0] != Yn.size:
        raise ValueError(f"Phi must have n*k = {Yn.size} rows and offset n*k entries; got Phi "
                         f"{Phin.shape}, offset {on.shape}.")
    q = Phin.shape[1]
    nw = q if n_weight is None else n_weight
    if isinstance(nw, bool) or not isinstance(nw, (int, np.integer)) or not 0 <= nw <= q:
        raise ValueError(f"n_weight must be an int in [0, {q}]; got {n_weight!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1; got {max_iter!r}.")
    if q * q * 8 > max_bytes:
        raise ValueError(f"solve_layer forms the (q, q) Hessian: q={q} needs "
                         f"{q * q * 8 / 2**30:.1f} GiB > max_bytes={max_bytes / 2**30:.1f} GiB. "
                         "Raise max_bytes, or use altheory.solvers.convex.per_layer for layers this wide.")
    dev = _resolve_device(device, Phi, offset, Y)
    n = Yn.shape[0]
    P = torch.as_tensor(Phin, device=dev)
    o = torch.as_tensor(on, device=dev)
    y = torch.as_tensor(Yn.reshape(-1), device=dev)
    reg = torch.zeros(q, dtype=torch.float64, device=dev)
    if lam > 0:
        reg[:nw] = 1.0
    # orthonormal basis of the unregularised columns, for the dual projection
    free = torch.nonzero(reg == 0).flatten()
    Q = None
    if free.numel():
        Uf, Sf, _ = torch.linalg.svd(P[:, free], full_matrices=False)
        eps = torch.finfo(torch.float64).eps
        keep = Sf > Sf.max() * max(P.shape) * eps if Sf.numel() else Sf > 0
        Q = Uf[:, keep]

    def fval(zz, th):
        return float(loss_torch(zz.reshape(Yn.shape), y.reshape(Yn.shape), loss)) \
            + 0.5 * lam * float((reg * th * th).sum())

    # _grad/_curv use len(y) = n*k; the loss is a mean over the n samples: rescale by k
    scale = y.shape[0] / n

    def certificate(zz, th):
        F = fval(zz, th)
        a = _grad(zz, y, loss) * scale
        if Q is not None:
            a = a - Q @ (Q.T @ a)
        if loss == "squared":
            conj = 0.5 * n * float((a * a).sum()) + float(a @ y)
        else:
            conj = float(_conj(a, y, loss))
        Dv = -conj + float(a @ o)
        if lam > 0 and nw > 0:
            Dv -= float(((P[:, :nw].T @ a) ** 2).sum()) / (2 * lam)
        return F, Dv

    F0 = abs(fval(o, torch.zeros(q, dtype=torch.float64, device=dev)))

    def rel_of(F, Dv):  # relative to |F|, or to 1e-12 F(0) when the optimum is ~0 (interpolation)
        return (F - Dv) / max(abs(F), 1e-12 * F0, _TINY)

    theta = torch.zeros(q, dtype=dtype, device=dev)
    Pw, ow, yw = P.to(dtype), o.to(dtype), y.to(dtype)
    it = 0
    with _threads(float(P.numel()) * q, dev):
        for it in range(1, max_iter + 1):
            z = Pw @ theta + ow
            gz = _grad(z, yw, loss) * scale
            g = Pw.T @ gz + lam * reg.to(dtype) * theta
            w = _curv(z, yw, loss) * scale
            H = Pw.T @ (w[:, None] * Pw) + lam * torch.diag(reg.to(dtype))
            e, V = torch.linalg.eigh(H)
            cut = float(e.max()) * q * torch.finfo(dtype).eps if e.numel() else 0.0
            einv = torch.where(e > cut, 1.0 / torch.clamp(e, min=_TINY), torch.zeros_like(e))
            step = -(V @ (einv * (V.T @ g)))
            slope = float(g @ step)
            F = fval(z.to(torch.float64), theta.to(torch.float64))
            if not slope < 0:
                break
            Az = Pw @ step
            a = 1.0
            while a > 1e-12:
                Fn = fval((z + a * Az).to(torch.float64), (theta + a * step).to(torch.float64))
                if Fn <= F + 1e-4 * a * slope:
                    break
                a *= 0.5
            if Fn > F:
                break
            theta = theta + a * step
            th64 = theta.to(torch.float64)
            Fp, Dp = certificate(P @ th64 + o, th64)
            if rel_of(Fp, Dp) <= tol:
                break
    th64 = theta.to(torch.float64)
    F, Dv = certificate(P @ th64 + o, th64)
    gap = F - Dv
    rel = rel_of(F, Dv)
    _sync(dev)
    return LayerResult(theta=th64.cpu().numpy(), objective=F, dual_objective=Dv, gap=gap,
                       rel_gap=rel, status="optimal" if rel <= tol else "max_iter",
                       iterations=it, solve_time=time.perf_counter() - t0)
