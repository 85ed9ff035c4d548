r"""The stated conditions of claims C4–C7, each reported with the numbers that decide it.

========  ===================================================================================
claim     conditions (docs/claims.md)
========  ===================================================================================
C4        two layers, scalar output, fixed support, :math:`\lambda \ge 0`, convex loss
C5        :math:`\tau = 0`, scalar output, :math:`\lambda > 0`; width :math:`m \ge m^*`
          (non-zero blocks of the convex optimum, :math:`m^* \le n + 1`); patterns exact
          (enumerated) or sampled (upper bound only)
C6        shared support (:math:`D^l_i = D^l`); Kawaguchi (2016): squared loss,
          :math:`X^\top X` and :math:`X^\top Y` full rank, :math:`k \le d`, distinct eigenvalues
          of :math:`\Sigma = Y^\top P_X Y`; Laurent & von Brecht (2018): every effective width
          :math:`r_l \ge \min(d, k)`, convex differentiable loss
C7        :math:`L \ge 3`, per-sample support; replication: each first-layer support pattern
          carried by at least ``d`` units
all       support consistency :math:`S = S(W)` and margin :math:`\mu > 0`
========  ===================================================================================

Every function returns a list of :class:`altheory.claims.Condition` (name, holds, value,
detail). Numerical rank uses the tolerance ``max(n, d) * eps * sigma_max`` (numpy's default);
eigenvalues count as distinct when consecutive ones differ by more than ``1e-8 * max(|ev|)``.
These are numerical checks of hypotheses, not proofs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from altheory.solvers.problems import check_matrix

__all__ = ["Condition", "rank", "shared_support_conditions", "two_layer_conditions", "relu_program_conditions",
           "deep_support_conditions", "support_consistency", "check_problem"]


@dataclass
class Condition:
    """One stated condition of a claim, with the numbers that decide it."""

    name: str
    holds: bool | None
    value: Any = None
    detail: str = ""


def rank(A) -> int:
    """Numerical rank (numpy's default tolerance)."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    return int(np.linalg.matrix_rank(A)) if A.size else 0


def _min_rel_gap(ev: np.ndarray) -> float:
    ev = np.sort(np.asarray(ev, np.float64))
    if ev.size < 2:
        return float("inf")
    scale = max(float(np.abs(ev).max()), 1e-300)
    return float(np.diff(ev).min() / scale)


def shared_support_conditions(X, Y, widths: Sequence[int], *, loss: str = "squared",
                              masks: Sequence[np.ndarray] | None = None) -> list[Condition]:
    r"""Conditions of C6 for a network with effective hidden widths ``widths`` (= :math:`|s^l|`).

    Parameters
    ----------
    X : ndarray (n, d); Y : ndarray (n,) or (n, k)
    widths : effective widths :math:`r_l` of the hidden layers
    loss : the training loss (Kawaguchi's result is for ``squared``)
    masks : optional per-sample masks (n, h_l) to verify the support is shared

    Returns
    -------
    list of Condition: ``shared support``, ``rank X``, ``rank X^T Y``, ``k <= d``,
    ``distinct eigenvalues``, ``Kawaguchi``, ``Laurent-von Brecht``, ``rank bound r``.

    Examples
    --------
    >>> cs = shared_support_conditions(np.eye(3), np.eye(3)[:, :2], [2])
    >>> [c.name for c in cs if c.holds][:3]
    ['rank X full', 'rank X^T Y full', 'k <= d']
    """
    X = check_matrix(X, "X")
    Y = np.asarray(Y, np.float64)
    Y2 = Y.reshape(-1, 1) if Y.ndim == 1 else Y
    n, d = X.shape
    k = Y2.shape[1]
    out: list[Condition] = []
    if masks is not None:
        shared = all(bool((np.asarray(m) == np.asarray(m)[:1]).all()) for m in masks)
        out.append(Condition("shared support", shared, [int(np.asarray(m)[0].sum()) for m in masks],
                             "D^l_i = D^l for every sample i (effective widths listed)"))
    rX = rank(X)
    rXY = rank(X.T @ Y2)
    out.append(Condition("rank X full", rX == min(n, d), rX, f"min(n, d) = {min(n, d)}"))
    out.append(Condition("rank X^T Y full", rXY == min(d, k), rXY, f"min(d, k) = {min(d, k)}"))
    out.append(Condition("k <= d", k <= d, {"k": k, "d": d}))
    Sigma = Y2.T @ X @ np.linalg.pinv(X.T @ X) @ X.T @ Y2
    gap = _min_rel_gap(np.linalg.eigvalsh(0.5 * (Sigma + Sigma.T)))
    distinct = gap > 1e-8
    out.append(Condition("distinct eigenvalues of Y^T P_X Y", distinct, gap,
                         "smallest gap between consecutive eigenvalues / largest |eigenvalue|"))
    kaw = loss == "squared" and rX == d and rXY == min(d, k) and k <= d and distinct
    out.append(Condition("Kawaguchi (2016)", kaw, None,
                         "squared loss, X^T X invertible, X^T Y full rank, k <= d, distinct eigenvalues"))
    widths = [int(w) for w in widths]
    lvb = all(w >= min(d, k) for w in widths)
    out.append(Condition("Laurent-von Brecht (2018)", lvb, {"widths": widths, "min(d, k)": min(d, k)},
                         "every hidden effective width >= min(d, k), convex differentiable loss"))
    r = min(widths + [d, k])
    out.append(Condition("rank bound r = min(r_l, d, k)", True, r))
    return out


def two_layer_conditions(problem) -> list[Condition]:
    """Conditions of C4 for a :class:`altheory.solvers.problems.TwoLayerFixedSupport`."""
    G = problem.G
    return [
        Condition("L=2, scalar output", True, {"n": problem.n, "d": problem.d, "p": problem.p}),
        Condition("lam >= 0", problem.lam >= 0, problem.lam),
        Condition("convex loss", problem.loss in ("squared", "logistic", "hinge"), problem.loss),
        Condition("differentiable loss (end-point classification)", problem.loss != "hinge",
                  problem.loss),
        Condition("rank X", None, rank(problem.X), f"d = {problem.d}"),
        Condition("distinct gate patterns", None, int(np.unique(G, axis=1).shape[1]),
                  f"of p = {problem.p} columns"),
    ]


def relu_program_conditions(*, tau: float, lam: float, m: int, m_star: int | None, n: int,
                            exact_patterns: bool, n_patterns: int) -> list[Condition]:
    """Conditions of C5 with their numbers."""
    return [
        Condition("tau = 0 (ReLU)", tau == 0, tau, "PHT with tau > 0 is not positively homogeneous"),
        Condition("lam > 0", lam > 0, lam),
        Condition("m >= m*", None if m_star is None else m >= m_star, {"m": m, "m*": m_star},
                  "width of the ReLU net vs non-zero blocks of the convex optimum"),
        Condition("m* <= n + 1", None if m_star is None else m_star <= n + 1, {"m*": m_star, "n": n}),
        Condition("patterns enumerated exactly", exact_patterns, n_patterns,
                  "exact hyperplane arrangement (global) vs sampled (upper bound only)"),
    ]


def deep_support_conditions(masks1: np.ndarray, d: int) -> list[Condition]:
    r"""The replication condition of C7: each distinct first-layer support pattern (a column of
    the (n, h_1) mask, i.e. which samples unit j is on for) carried by at least ``d`` units."""
    M = np.asarray(masks1, bool)
    _, counts = np.unique(M.T, axis=0, return_counts=True)
    ok = bool(counts.min() >= d) if counts.size else False
    return [Condition("replication (each first-layer pattern on >= d units)", ok,
                      {"patterns": int(counts.size), "min units per pattern": int(counts.min()),
                       "d": d})]


def support_consistency(model, S, X) -> list[Condition]:
    r"""Whether :math:`S = S(W, X)` and its margin :math:`\mu`."""
    from altheory.nets.support import support

    S_now = support(model, X)
    flips = S.hamming(S_now)
    mu = S_now.margin
    return [Condition("support consistent", flips == 0, flips, "entries where S differs from S(W)"),
            Condition("margin > 0", mu > 0, mu, "min |z - tau| over layers, samples, units")]


def check_problem(problem) -> list[Condition]:
    """All conditions that apply to ``problem`` (dispatch by type)."""
    from altheory.solvers.problems import TwoLayerFixedSupport

    if isinstance(problem, TwoLayerFixedSupport):
        return two_layer_conditions(problem)
    else:
        raise TypeError(f"check_problem: no condition set for {type(problem).__name__}; expected "
                        "TwoLayerFixedSupport (use shared_support_conditions, "
                        "relu_program_conditions or deep_support_conditions directly).")
