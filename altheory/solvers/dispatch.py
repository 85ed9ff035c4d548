r"""One call per fixed-support problem, whichever solver answers it.

``solve(problem, solver="auto")`` is to the solvers of this package what
:func:`scipy.optimize.minimize` is to its methods: the dispatcher imports every backend, and no
backend imports it. ``"auto"`` takes the fast certified solver (:mod:`altheory.solvers.fast`,
status ``"optimal"`` only with a duality gap ``<= tol``) where a dual certificate exists —
``lam > 0`` and squared or logistic loss for the group lasso :math:`P_c`; squared or logistic loss
per layer — and cvxpy (Clarabel, SCS fallback; :mod:`altheory.solvers.convex`) otherwise or
when the fast solver cannot certify.
"""

from __future__ import annotations

import time

from altheory.solvers import convex, fast
from altheory.solvers.problems import TwoLayerFixedSupport, _register_solve

__all__ = ["solve", "per_layer"]

_CHOICES = ("auto", "fast", "clarabel", "scs")


def _check_choice(solver) -> str:
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a str, one of {_CHOICES}; got {type(solver).__name__}.")
    if solver not in _CHOICES:
        raise ValueError(f"solver must be one of {_CHOICES}; got {solver!r}.")
    return solver


def solve(problem: TwoLayerFixedSupport, *, solver: str = "auto", **kwargs):
    r"""The exact optimum of the group lasso :math:`P_c` of a two-layer fixed-support problem.

    .. math:: \min_{u_j} \ell\Big(\sum_j D_j X u_j, y\Big) + \lambda \sum_j \|u_j\|_2

    Parameters
    ----------
    problem : TwoLayerFixedSupport
    solver : {"auto", "fast", "clarabel", "scs"}
        ``"auto"``: ``"fast"`` when ``lam > 0`` and the loss is squared or logistic, else
        ``"clarabel"``.
    **kwargs
        Passed to :func:`altheory.solvers.fast.solve_problem` or
        :func:`altheory.solvers.convex.group_lasso`.

    Returns
    -------
    FastResult or ConvexResult, both with ``status``, ``objective`` and ``weights["U"]``.
    """
    if not isinstance(problem, TwoLayerFixedSupport):
        raise TypeError(f"problem must be a TwoLayerFixedSupport; got {type(problem).__name__}. "
                        "Build one with TwoLayerFixedSupport(X, G, y, loss, lam).")
    _check_choice(solver)
    fast_ok = problem.lam > 0 and problem.loss in ("squared", "logistic")
    if solver == "auto":
        solver = "fast" if fast_ok else "clarabel"
    if solver == "fast":
        if not fast_ok:
            raise ValueError(f"solver='fast' needs lam > 0 and loss 'squared' or 'logistic' (a dual "
                             f"certificate exists there); got lam={problem.lam}, "
                             f"loss={problem.loss!r}. Use solver='clarabel'.")
        return fast.solve_problem(problem, **kwargs)
    return convex.group_lasso(problem.X, problem.G, problem.y, problem.lam, loss=problem.loss,
                              solver=solver, **kwargs)


def per_layer(Phi, offset, Y, *, loss: str = "squared", lam: float = 0.0,
              n_weight: int | None = None, solver: str = "auto"):
    r"""The convex per-layer problem of C3: :math:`\min_\theta \ell(\Phi\theta + o, Y)
    + \tfrac\lambda2\|\theta_W\|^2`.

    Parameters
    ----------
    Phi : ndarray of shape (n*k, q)
        From :func:`altheory.layer_operator` (rows sample-major).
    offset : ndarray of shape (n*k,)
    Y : ndarray of shape (n,) or (n, k)
    loss : one of :data:`altheory.solvers.losses.LOSSES`
    lam : float >= 0
        Weight decay on the first ``n_weight`` entries of :math:`\theta` (all when None).
    solver : {"auto", "fast", "clarabel", "scs"}
        ``"auto"`` (default): the fast certified solver
        (:func:`altheory.solvers.fast.solve_layer`, optimal only with a duality gap <= 1e-8) for
        squared and logistic loss, cvxpy (Clarabel, SCS fallback) otherwise or when the fast
        solver cannot certify; ``"fast"`` forces it; ``"clarabel"``/``"scs"`` force cvxpy.

    Returns
    -------
    LayerResult (fast) or ConvexResult (cvxpy), both with ``weights["theta"]`` of shape (q,).
    A cvxpy result after the fast solver did not certify lists that attempt first in its
    ``attempts`` (``("altheory-fast", status, seconds)``; status ``"too-wide"`` when the layer
    was too wide for it).

    Examples
    --------
    >>> import numpy as np
    >>> r = per_layer(np.eye(2), np.zeros(2), np.array([1.0, -1.0]))
    >>> r.status, np.round(r.weights["theta"], 6).tolist()
    ('optimal', [1.0, -1.0])
    """
    _check_choice(solver)
    tried = []  # the fast solver's attempt when it did not certify: the fallback is recorded
    if solver in ("auto", "fast"):
        fast_ok = loss in ("squared", "logistic")
        if solver == "fast" and not fast_ok:
            raise ValueError(f"solver='fast' covers squared and logistic loss; got loss={loss!r}. "
                             "Use solver='clarabel'.")
        if fast_ok:
            t0 = time.perf_counter()
            try:
                res = fast.solve_layer(Phi, offset, Y, lam, loss=loss, n_weight=n_weight)
            except ValueError:  # a layer too wide for its explicit Hessian: cvxpy below
                if solver == "fast":
                    raise
                tried.append((fast.SOLVER_NAME, "too-wide", time.perf_counter() - t0))
            else:
                if res.status == "optimal" or solver == "fast":
                    return res
                tried.append((fast.SOLVER_NAME, res.status, res.solve_time))
        solver = "clarabel"
    out = convex.per_layer_cvxpy(Phi, offset, Y, loss=loss, lam=lam, n_weight=n_weight,
                                 solver=solver)
    if tried:  # the result's attempts name the fallback (fast -> cvxpy), never silent
        out.attempts = tried + list(out.attempts)
        out.solve_time += sum(t for _, _, t in tried)
    return out


_register_solve(solve)
