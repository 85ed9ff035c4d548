r"""Classify a descent end point: local minimum, saddle, or not converged (docs/claims.md "End points").

.. math::

    \text{local-min} \iff \|\nabla F(\theta)\| \le \text{tol}_g \ \wedge\
        \lambda_{\min}(\nabla^2 F(\theta)) \ge -\text{tol}_h,\qquad
    \text{saddle} \iff \|\nabla F\| \le \text{tol}_g \ \wedge\ \lambda_{\min} < -\text{tol}_h,

and *not converged* otherwise. Tolerances are relative to the scale of the problem:
:math:`\text{tol}_g = \text{rtol}_g \cdot F(0)` (the objective of the zero predictor, so the
gradient is measured in units of the objective per unit weight) and
:math:`\text{tol}_h = \text{rtol}_h \cdot \max(|\lambda_{\max}|, F(0))` (the largest curvature).
Defaults: ``rtol_g = 1e-7``, ``rtol_h = 1e-6``.

The smallest Hessian eigenvalue comes from Hessian-vector products (double backward in torch):
a dense Hessian built column by column and ``numpy.linalg.eigvalsh`` for ``dim <= 400``,
``scipy.sparse.linalg.eigsh`` (Lanczos) on a ``LinearOperator`` of HVPs above that. These are
numerical measurements, not proofs: "local-min" means second-order stationary to the stated
tolerances.

Robustness (:func:`symmetric_extreme_eigs`): a point with a non-finite objective, gradient or
Hessian (a diverged run) is *not converged*, with NaN curvature, and no eigensolver is called;
a finite Hessian is scaled to unit max-norm, and when LAPACK's divide-and-conquer ``syevd``
does not converge (it can fail on badly scaled matrices), the QR-iteration driver ``syev`` and
then a general eigensolver are tried; Lanczos that does not converge falls back to the dense
path up to ``dim = 2000``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch

from altheory.descent.descent import _in_single_thread

__all__ = ["EndPoint", "EndPointKind", "hessian_extreme_eigs", "symmetric_extreme_eigs", "classify",
           "classify_endpoint", "tolerances", "judge_endpoint"]

EndPointKind = Literal["local-min", "saddle", "not-converged"]
_DT = torch.float64


@dataclass
class EndPoint:
    """Where a run ended, and what kind of point it is."""

    kind: str
    objective: float
    grad_norm: float
    min_eig: float
    max_eig: float
    tol_g: float
    tol_h: float


def _hvp_fn(f: Callable, theta: np.ndarray):
    """``(f(theta), gradient, hvp)``: ``hvp(v)`` is the Hessian-vector product (double backward).

    A zero Hessian is returned as zeros, whichever way autograd says it: a gradient that does
    not depend on ``theta`` (``f`` affine in ``theta``, e.g. a hinge loss of one layer without
    weight decay: the gradient has no graph; or ``theta`` unused in the gradient's graph) or a
    zero tensor (``f`` piecewise linear, e.g. ``|t|``).
    """
    th = torch.as_tensor(np.asarray(theta), dtype=_DT).detach().clone().requires_grad_(True)
    val = f(th)
    (g,) = torch.autograd.grad(val, th, create_graph=True)
    val = val.detach()

    def hvp(v):
        if not g.requires_grad:  # the gradient is constant: f is affine in theta
            return np.zeros(th.numel())
        v = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1))
        (hv,) = torch.autograd.grad(g, th, grad_outputs=v, retain_graph=True, allow_unused=True)
        # force=True: a ZeroTensor (a piecewise-linear f) refuses a plain numpy() view
        return np.zeros(th.numel()) if hv is None else hv.detach().numpy(force=True).copy()

    return float(val), g.detach().numpy().copy(), hvp


def symmetric_extreme_eigs(H: np.ndarray) -> tuple[float, float]:
    r"""Smallest and largest eigenvalue of a symmetric matrix, with fallbacks (module docstring).

    Returns ``(nan, nan)`` for a matrix with a non-finite entry (never raises on one).

    Examples
    --------
    >>> symmetric_extreme_eigs(np.diag([3.0, -1.0]))
    (-1.0, 3.0)
    >>> symmetric_extreme_eigs(np.array([[np.nan]]))
    (nan, nan)
    """
    import scipy.linalg

    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix; got shape {H.shape}.")
    if not np.all(np.isfinite(H)):
        return math.nan, math.nan
    scale = float(np.abs(H).max()) if H.size else 0.0
    if scale == 0.0:
        return 0.0, 0.0
    Hs = 0.5 * (H + H.T) / scale
    attempts = (lambda: np.linalg.eigvalsh(Hs),
                lambda: scipy.linalg.eigh(Hs, eigvals_only=True, driver="ev", check_finite=False),
                lambda: np.sort(np.linalg.eigvals(Hs).real))
    last: Exception | None = None
    for attempt in attempts:
        try:
            ev = attempt()
        except (np.linalg.LinAlgError, ValueError) as exc:
            last = exc
            continue
        if np.all(np.isfinite(ev)):
            return float(ev[0]) * scale, float(ev[-1]) * scale
    raise np.linalg.LinAlgError(f"no eigensolver converged on a finite {H.shape} Hessian "
                                f"(max |H| = {scale:.3e}); last error: {last}")


@_in_single_thread
def hessian_extreme_eigs(f: Callable, theta, *, dense_max: int = 400, seed: int = 0
                         ) -> tuple[float, float]:
    r"""Smallest and largest eigenvalue of :math:`\nabla^2 f(\theta)` from Hessian-vector products.

    Parameters
    ----------
    f : callable, torch float64 vector (dim,) -> scalar tensor (twice differentiable a.e.)
    theta : ndarray of shape (dim,)
    dense_max : int, build the dense Hessian (``dim`` HVPs) up to this dimension; Lanczos above.

    Returns
    -------
    (min_eig, max_eig) : floats

    Examples
    --------
    >>> f = lambda t: t[0] ** 2 - 3 * t[1] ** 2
    >>> hessian_extreme_eigs(f, np.zeros(2))
    (-6.0, 2.0)
    """
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(theta)):
        return math.nan, math.nan
    _, _, hvp = _hvp_fn(f, theta)
    dim = theta.size

    def dense():
        H = np.stack([hvp(e) for e in np.eye(dim)], axis=1)
        return symmetric_extreme_eigs(H)

    if dim <= dense_max:
        return dense()
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

    op = LinearOperator((dim, dim), matvec=hvp, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(dim)
    try:
        lo = eigsh(op, k=1, which="SA", v0=v0, tol=1e-10, maxiter=20 * dim, return_eigenvectors=False)
        hi = eigsh(op, k=1, which="LA", v0=v0, tol=1e-8, maxiter=20 * dim, return_eigenvectors=False)
    except (ArpackNoConvergence, ArpackError, ValueError):
        if dim <= 2000:
            return dense()
        return math.nan, math.nan
    if not (np.isfinite(lo[0]) and np.isfinite(hi[0])):
        return math.nan, math.nan
    return float(lo[0]), float(hi[0])


def tolerances(F0: float, max_eig: float, *, rtol_g: float = 1e-7, rtol_h: float = 1e-6
               ) -> tuple[float, float]:
    """``(tol_g, tol_h)`` relative to the scale of the problem (see the module docstring)."""
    if not F0 > 0:
        raise ValueError(f"F0 must be > 0 to set relative tolerances; got F0={F0}.")
    curv = abs(max_eig) if math.isfinite(max_eig) else 0.0
    return rtol_g * F0, rtol_h * max(curv, F0)


def classify(grad_norm: float, min_eig: float, *, tol_g: float, tol_h: float) -> str:
    """``"local-min"``, ``"saddle"`` or ``"not-converged"`` from the gradient norm and curvature.

    Examples
    --------
    >>> classify(1e-12, -1.0, tol_g=1e-8, tol_h=1e-6), classify(1e-3, 1.0, tol_g=1e-8, tol_h=1e-6)
    ('saddle', 'not-converged')
    """
    if not (math.isfinite(grad_norm) and math.isfinite(min_eig)):
        return "not-converged"
    if grad_norm > tol_g:
        return "not-converged"
    return "local-min" if min_eig >= -tol_h else "saddle"


@_in_single_thread
def classify_endpoint(f: Callable, theta, *, F0: float, rtol_g: float = 1e-7, rtol_h: float = 1e-6,
                      dense_max: int = 400) -> EndPoint:
    r"""Gradient norm, extreme Hessian eigenvalues and the class of the point ``theta`` of ``f``.

    Parameters
    ----------
    f : callable, torch float64 vector -> scalar (e.g. :class:`altheory.descent.descent.MLPObjective`)
    theta : ndarray of shape (dim,)
    F0 : float > 0, the objective of the zero predictor (problem scale).

    Returns
    -------
    EndPoint

    Examples
    --------
    >>> ep = classify_endpoint(lambda t: (t ** 2).sum(), np.zeros(3), F0=1.0)
    >>> ep.kind, ep.min_eig
    ('local-min', 2.0)
    """
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(theta)):
        tol_g, tol_h = tolerances(F0, math.nan, rtol_g=rtol_g, rtol_h=rtol_h)
        return EndPoint("not-converged", math.nan, math.nan, math.nan, math.nan, tol_g, tol_h)
    val, g, _ = _hvp_fn(f, theta)
    gn = float(np.linalg.norm(g))
    if not (math.isfinite(val) and math.isfinite(gn)):
        tol_g, tol_h = tolerances(F0, math.nan, rtol_g=rtol_g, rtol_h=rtol_h)
        return EndPoint("not-converged", val, gn, math.nan, math.nan, tol_g, tol_h)
    lo, hi = hessian_extreme_eigs(f, theta, dense_max=dense_max)
    tol_g, tol_h = tolerances(F0, hi, rtol_g=rtol_g, rtol_h=rtol_h)
    return EndPoint(classify(gn, lo, tol_g=tol_g, tol_h=tol_h), val, gn, lo, hi, tol_g, tol_h)


def judge_endpoint(ep: EndPoint, F: float, F_star: float, F0: float, *, star_status: str = "optimal",
                   tol_gap: float = 1e-6, tol_bound: float = 1e-7, star_kind: str = "global"
                   ) -> tuple[str, float, str]:
    r"""The claim-check status of one descent end point against an exact optimum or bound.

    Parameters
    ----------
    ep : EndPoint of the run.
    F : float, the run's final objective.
    F_star : float, the convex optimum (``star_kind="global"``) or lower bound (``"lower-bound"``).
    F0 : float, the zero-predictor objective.
    star_status : the solver status behind ``F_star``; anything but ``"optimal"`` gives
        ``"solver-<status>"`` (never counted).
    tol_gap : float, the asserted gap of a local minimum (docs/claims.md: 1e-6), only for ``global``.
    tol_bound : float, slack of "the optimum never exceeds a descent result" for the solver's own
        accuracy (Clarabel: 1e-8 relative gap), in normalised-gap units.

    Returns
    -------
    (status, gap, reason)
        ``status`` in {"pass", "fail", "saddle", "not-converged", "reported", "solver-<s>"};
        ``fail`` when the bound is violated (gap < -tol_bound) or a certified local minimum of a
        ``global`` problem has gap > tol_gap; for a ``lower-bound`` a local minimum above the
        bound is "reported" (its certified gap), not a failure.

    Examples
    --------
    >>> ep = EndPoint("local-min", 1.0, 0.0, 0.0, 1.0, 1e-7, 1e-6)
    >>> judge_endpoint(ep, 1.0, 1.0, 2.0)[:2]
    ('pass', 0.0)
    """
    from altheory.solvers.losses import normalised_gap

    if star_status != "optimal":
        return f"solver-{star_status}", float("nan"), "the convex solve is not optimal"
    gap = normalised_gap(F, F_star, F0)
    if gap < -tol_bound:
        return "fail", gap, (f"descent ({F:.10g}) is below the convex {star_kind} ({F_star:.10g}) by "
                             f"{-gap:.2e} x F(0) > {tol_bound:g}")
    if star_kind == "lower-bound":
        return "reported", gap, f"certified gap of a {ep.kind} end point"
    if ep.kind == "saddle":
        return "saddle", gap, "gradient small, negative curvature"
    if ep.kind == "not-converged":
        return "not-converged", gap, "gradient above tolerance"
    if gap <= tol_gap:
        return "pass", gap, "local minimum at the global optimum"
    return "fail", gap, f"certified local minimum with gap {gap:.2e} > {tol_gap:g}"
