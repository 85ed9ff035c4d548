r"""Non-negative least squares that can be trusted: :math:`\min_{x\ge0}\|Ax - b\|`.

SciPy's ``scipy.optimize.nnls`` (re-implemented in 1.12 and again in 1.15) returns, on some
small well-conditioned problems, a point that is not the minimiser *and* a residual norm
that belongs to no point (reported upstream for 1.15, a 2-column example; here with SciPy
1.17.1 a 3 x 3 cone projection reports 0.97 for a point whose residual is 1.52, worse than
x = 0's 1.26: ``tests/test_nnls.py``). Every use in this
package decides something from the answer (a cone projection, a certified bound), so this
module checks SciPy's answer against the optimality conditions below (one mat-vec) and, when
they fail, solves again with its own Lawson–Hanson active set (:func:`lawson_hanson`, about
9x slower than SciPy on a 3 x 60 problem); the residual returned is always *recomputed* from
the point returned. On random 3 x 3 cone projections of a point on an edge of the cone,
SciPy 1.17.1 fails 483 times in 20 000.

The optimality conditions it stops on (and :func:`nnls_kkt` measures) are

.. math:: x\ge0,\quad w = A^\top(b - Ax)\le \epsilon,\quad |w_j|\le\epsilon\ \text{where}\ x_j>0,

with :math:`\epsilon = 10\max(m, n)\,\mathrm{eps}\,\|A\|_1\|b\|_\infty` as in Lawson & Hanson
(1974, ch. 23); SciPy's answer is kept when they hold to ``1e-9`` relative.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nnls", "nnls_kkt", "lawson_hanson"]

_KKT_RTOL = 1e-9  # relative violation of the optimality conditions accepted


def _tol(A: np.ndarray, b: np.ndarray) -> float:
    m, n = A.shape
    scale = float(np.abs(A).sum(0).max(initial=0.0)) * float(np.abs(b).max(initial=0.0))
    return 10.0 * max(m, n) * np.finfo(float).eps * max(scale, np.finfo(float).tiny)


def nnls_kkt(A, b, x) -> float:
    r"""Largest violation of the NNLS optimality conditions at ``x``, relative to
    :math:`m\max|A|\,\|b\|_\infty` (an upper bound on :math:`\|A\|_1\|b\|_\infty`, one
    reduction cheaper): :math:`\max(-\min x,\ \max w,\ \max_{x_j>0}|w_j|)` with
    :math:`w = A^\top(b - Ax)`. Zero (up to rounding) exactly at the minimiser."""
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    return _kkt(A, b, x)


def _kkt(A: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    if x.size == 0:
        return 0.0
    w = A.T @ (b - A @ x)
    worst = float(np.concatenate((-x, w, np.abs(w[x > 0]))).max())
    scale = A.shape[0] * float(np.abs(A).max()) * float(np.abs(b).max(initial=0.0))
    return worst / max(scale, np.finfo(float).tiny)


def nnls(A, b) -> tuple[np.ndarray, float]:
    r""":math:`\min_{x\ge0}\|Ax - b\|`: SciPy's solver, kept only when :func:`nnls_kkt` confirms
    it (relative violation ``<= 1e-9``), else :func:`lawson_hanson`.

    Returns ``(x, rnorm)`` with ``rnorm = ||A x - b||`` recomputed from ``x``.

    Examples
    --------
    >>> x, r = nnls(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([2.0, -1.0]))
    >>> x.tolist(), round(r, 12)
    ([2.0, 0.0], 1.0)
    """
    A, b = _check(A, b)
    x = solve_checked(A, b)
    return x, float(np.linalg.norm(A @ x - b))


def solve_checked(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`nnls`'s point without the argument checks: for callers that pass float64
    arrays of matching shapes, finite (the cone bounds of the Pilanci–Ergen solver, called
    thousands of times a solve)."""
    from scipy.optimize import nnls as scipy_nnls

    if 0 in A.shape:  # SciPy crashes on an empty A (scipy/scipy#24861): x = 0 is the answer
        return np.zeros(A.shape[1])
    try:
        x, _ = scipy_nnls(A, b, maxiter=50 * max(A.shape[1], 1))
    except RuntimeError:  # SciPy's iteration limit
        x = None
    if x is None or _kkt(A, b, x) > _KKT_RTOL:
        x, _ = lawson_hanson(A, b)
    return x


def _check(A, b):
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if A.ndim != 2 or b.shape != (A.shape[0],):
        raise ValueError(f"nnls: expected A of shape (m, n) and b of shape (m,); got A "
                         f"{A.shape} and b {b.shape}.")
    if not (np.isfinite(A).all() and np.isfinite(b).all()):
        raise ValueError("nnls: A and b must be finite; got NaN or inf. Fix: check the inputs.")
    return A, b


def lawson_hanson(A, b, *, max_iter: int | None = None) -> tuple[np.ndarray, float]:
    r"""Lawson–Hanson active set for :math:`\min_{x\ge0}\|Ax - b\|` (A of shape (m, n)).

    Returns ``(x, rnorm)`` with ``rnorm = ||A x - b||`` computed from the returned ``x``.
    Meant for the small problems of this package (m, n up to a few hundred): each step is a
    least-squares solve on the passive set.

    Raises
    ------
    ValueError
        When the shapes do not match or an entry is not finite.
    RuntimeError
        When ``max_iter`` (default ``3 n``) outer steps do not reach the optimality conditions.

    Examples
    --------
    >>> x, r = lawson_hanson(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([2.0, -1.0]))
    >>> x.tolist(), round(r, 12)
    ([2.0, 0.0], 1.0)
    """
    A, b = _check(A, b)
    m, n = A.shape
    x = np.zeros(n)
    if n == 0:
        return x, float(np.linalg.norm(b))
    tol = _tol(A, b)
    passive = np.zeros(n, bool)
    blocked = np.zeros(n, bool)  # entered and left at once (rounding): not retried until x moves
    max_iter = 3 * n if max_iter is None else int(max_iter)
    w = A.T @ b
    for _ in range(max_iter):
        cand = np.flatnonzero(~passive & ~blocked & (w > tol))
        if cand.size == 0:
            break
        j = cand[np.argmax(w[cand])]
        passive[j] = True
        moved = False
        while True:  # least squares on the passive set, kept feasible by a step back
            idx = np.flatnonzero(passive)
            s = np.zeros(n)
            if idx.size:
                s[idx] = np.linalg.lstsq(A[:, idx], b, rcond=None)[0]
            if (s[idx] > 0).all():
                break
            neg = idx[s[idx] <= 0]
            alpha = float(np.min(x[neg] / (x[neg] - s[neg])))
            x = x + alpha * (s - x)
            moved |= alpha > 0
            passive &= x > 0
            x[~passive] = 0.0
        if not moved and not passive[j]:
            blocked[j] = True
            continue
        x = s
        blocked[:] = False
        w = A.T @ (b - A @ x)
    if nnls_kkt(A, b, x) <= _KKT_RTOL:
        return x, float(np.linalg.norm(A @ x - b))
    raise RuntimeError(f"nnls: {max_iter} Lawson-Hanson steps did not reach the optimality "
                       f"conditions (violation {nnls_kkt(A, b, x):.1e}); expected a small, "
                       "well-scaled problem. Fix: rescale A and b or raise max_iter.")
