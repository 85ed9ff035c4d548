r"""The convex program of two-layer ReLU networks (Pilanci & Ergen 2020; docs/claims.md C5),
solved with a certificate.

.. math::

    \min_{V, W}\ f\Big(\sum_i D_iX(v_i - w_i)\Big) + \lambda\sum_i\|v_i\| + \|w_i\|
    \ \ \text{s.t.}\ \ (2D_i - I)Xv_i\ge 0,\ (2D_i - I)Xw_i\ge 0,

by a working set over patterns (:func:`solve_pilanci_ergen`): each restricted program one conic
solve built directly for Clarabel, each cone given by its facets (:class:`_PeFlipFacets`), and
certified on every pattern by the dual
:math:`\max -f^*(\theta)` s.t. :math:`\sigma_{K_i}(\pm X^\top D_i\theta)\le\lambda`, the cone
support functions bounded from above (batched greedy bounds, then exact projections: active
sets of each cone's facet rows, many cones at once, else checked non-negative least squares,
:mod:`altheory.solvers.nnls`; numpy, float64). The dual value and the losses'
conjugates are those of the two-layer solver, :mod:`altheory.solvers.fast`.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from altheory.solvers.fast import (SOLVER_NAME, FastLoss, _Certified, _dual_on_ray, _grad,
                                   _group_inputs, _loss, _TINY)

__all__ = ["PilanciErgenResult", "solve_pilanci_ergen"]


@dataclass
class PilanciErgenResult(_Certified):
    r"""The outcome of :func:`solve_pilanci_ergen`.

    ``objective`` is :math:`F(V, W)` at the returned point (its blocks projected onto their
    cones); ``dual_objective`` a certified lower bound on the optimum over *all* patterns;
    ``kkt_residual`` the relative cone infeasibility left after projection (rounding), also in
    ``kkt`` with the counts of Clarabel's statuses. ``status`` is ``"optimal"`` only when
    ``kkt_residual <= tol`` and ``rel_gap <= tol``.
    """

    V: np.ndarray
    W: np.ndarray
    objective: float
    dual_objective: float
    gap: float
    rel_gap: float
    kkt_residual: float
    kkt: dict[str, float]
    status: str
    iterations: dict[str, int]
    solve_time: float
    solver: str = SOLVER_NAME

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return {"V": self.V, "W": self.W}


# --------------------------------------------------------------------------------------------
# public: Pilanci–Ergen constrained program (C5): working set over patterns, cone certificate
# --------------------------------------------------------------------------------------------

def _pe_cone_mu(C: np.ndarray, x: np.ndarray) -> np.ndarray:
    r""":math:`\mu^* = \arg\min_{\mu\ge0}\|x + C^\top\mu\|` (checked NNLS,
    :mod:`altheory.solvers.nnls`), clipped at 0: the multipliers of :func:`_pe_cone_bound`."""
    from altheory.solvers.nnls import solve_checked

    return np.maximum(solve_checked(np.ascontiguousarray(C.T), -x), 0.0)


def _pe_cone_bound(C: np.ndarray, x: np.ndarray, mu: np.ndarray | None = None) -> float:
    r"""Upper bound on :math:`\sigma_K(x) = \max\{x^\top v : Cv\ge 0,\ \|v\|\le 1\}`.

    For every :math:`\mu\ge 0` and :math:`v\in K`, :math:`x^\top v \le (x + C^\top\mu)^\top v`
    (as :math:`\mu^\top Cv\ge 0`), so :math:`\sigma_K(x)\le\|x + C^\top\mu\|`: a bound whatever
    :math:`\mu\ge 0` is; the non-negative least squares :math:`\mu` (default,
    :func:`_pe_cone_mu`) makes it exact (:math:`= \|\Pi_K x\|`, Moreau). Recomputed here from
    the clipped :math:`\mu`."""
    if mu is None:
        mu = _pe_cone_mu(C, x)
    return float(np.linalg.norm(x + C.T @ np.maximum(mu, 0.0)))


def _pe_cone_bounds_batched(X: np.ndarray, B: np.ndarray, x: np.ndarray, *,
                            steps: int = 6,
                            facet_rows: np.ndarray | None = None,
                            mask: np.ndarray | None = None) -> np.ndarray:
    r"""Upper bounds on :math:`\sigma_{K_m}(x_m)` for many cones at once (the rows of ``x``).

    :math:`K_m = \{v : c_{m,r}^\top v\ge0\ \forall r\}`, :math:`c_{m,r} = B_{m,r}x_r` (``B``
    (m, n) of signs, ``X`` (n, d)). As in :func:`_pe_cone_bound`,
    :math:`\sigma_{K_m}(x_m)\le\|x_m + \sum_r\mu_rc_{m,r}\|` for *every* :math:`\mu\ge0`: here
    ``steps`` greedy steps, each adding the multiple of the most violated :math:`c_{m,r}` that
    projects the current point onto its hyperplane (increments >= 0, so every point visited
    is a certified bound; the smallest norm is kept, never above :math:`\|x_m\|`).
    ``facet_rows`` (m, f), ``mask``:
    the greedy steps use only these rows of each cone (its facets, :class:`_PeFlipFacets`;
    any subset keeps the bound valid). Not tighter on every cone (a point near the polar cone
    can zig-zag between two facets), but at the certificate's points it leaves fewer cones to
    refine: (60, 3), λ = 1e-3, 2.73 -> 2.35 s a solve (with the exact bounds then one NNLS
    each). All cones in one (m, n) array: ~15 ms for 7000 cones of (60, 3); callers compute
    exact bounds only for the cones whose bound stays above lambda."""
    best = np.linalg.norm(x, axis=1)
    xn = (X * X).sum(1)
    if x.shape[0] == 0 or not bool((xn > 0).all()):
        return best
    if facet_rows is not None:  # facet rows only
        return _pe_greedy_bounds(_pe_unit_rows(X, np.take_along_axis(B, facet_rows, axis=1)
                                               * mask, facet_rows), x, steps)
    inv = 1.0 / np.sqrt(xn)
    rows = np.arange(x.shape[0])
    cur = x.copy()
    for _ in range(steps):
        v = (cur @ X.T) * B                        # (m, n): c_{m,r} . cur
        r = np.argmin(v * inv, axis=1)
        vm = v[rows, r]
        mu = np.where(vm < 0, -vm / xn[r], 0.0)    # >= 0
        cur = cur + (mu * B[rows, r])[:, None] * X[r]
        best = np.minimum(best, np.linalg.norm(cur, axis=1))
    return best


def _pe_unit_rows(X: np.ndarray, signs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    r"""The unit rows :math:`u_{m,j} = c_{m,j}/\|c_{m,j}\|`, :math:`c_{m,j} = s_{m,j}x_{r_{m,j}}`,
    of many cones (``rows`` (m, f) row indices, ``signs`` (m, f) in {-1, 0, 1}; 0 marks
    padding): an (m, f, d) array, zero where the sign or the row is zero."""
    C = signs[:, :, None] * X[rows]
    cn = np.linalg.norm(C, axis=2, keepdims=True)
    return C / np.where(cn > 0, cn, np.inf)


def _pe_greedy_bounds(U: np.ndarray, x: np.ndarray, steps: int) -> np.ndarray:
    r"""The greedy bounds of :func:`_pe_cone_bounds_batched` on given unit rows ``U`` (m, f, d)
    (zero rows are padding): each step adds :math:`\mu = \max(0, -u_r^\top p)` times the most
    violated :math:`u_r`, so every point visited is :math:`x + \sum_r\mu_ru_r`,
    :math:`\mu\ge0`: an upper bound on :math:`\sigma_K(x)`. Unit rows: no norms to divide by;
    a loop over the d coordinates (12 steps on (7084, 8, 3): 12.2-12.5 ms, 13.5-14.1 ms by
    einsum)."""
    m, f, d = U.shape
    best = np.linalg.norm(x, axis=1)
    if m == 0 or f == 0:
        return best
    pad = np.where((U != 0).any(axis=2), 0.0, np.inf)                   # (m, f)
    m_idx = np.arange(m)
    cur = x.copy()
    for _ in range(steps):
        v = U[:, :, 0] * cur[:, 0, None]
        for j in range(1, d):
            v += U[:, :, j] * cur[:, j, None]
        r = np.argmin(v + pad, axis=1)
        mu = np.maximum(-v[m_idx, r], 0.0)                               # >= 0
        cur = cur + mu[:, None] * U[m_idx, r]
        best = np.minimum(best, np.linalg.norm(cur, axis=1))
    return best


def _pe_project(C: np.ndarray, v: np.ndarray) -> np.ndarray:
    r""":math:`\Pi_K(v) = v + C^\top\mu^*`, :math:`\mu^* = \arg\min_{\mu\ge0}\|v + C^\top\mu\|`
    (Moreau's decomposition; the polar of :math:`\{Cv\ge0\}` is :math:`\{-C^\top\mu\}`)."""
    from altheory.solvers.nnls import solve_checked

    if (C @ v).min() >= 0:
        return v
    mu = solve_checked(np.ascontiguousarray(C.T), -v)
    return v + C.T @ np.maximum(mu, 0.0)


def _pe_exact_mu(C: np.ndarray, x: np.ndarray, rows) -> np.ndarray:
    r"""The multipliers of :math:`\Pi_K(x)` (:func:`_pe_cone_mu`), found on the facet rows
    ``rows`` (an array, or None for all) when that is exact: the point
    :math:`p = x + C_F^\top\mu_F` is :math:`\Pi_{K_F}(x)`; if it also satisfies every row it is
    :math:`\Pi_K(x)` (Moreau: :math:`p\in K`, :math:`x - p\in K_F^\circ\subseteq K^\circ`,
    :math:`p\perp x - p`), else all rows are used. Returned scattered to all n rows."""
    if rows is not None and 0 < len(rows) < C.shape[0]:
        CF = C[rows]
        muF = _pe_cone_mu(CF, x)
        p = x + CF.T @ muF
        # exact up to rounding (a point just outside K still gives a valid, tight bound)
        if (C @ p).min() >= -1e-9 * float(np.abs(C).max()) * float(np.linalg.norm(x)):
            mu = np.zeros(C.shape[0])
            mu[rows] = muF
            return mu
    return _pe_cone_mu(C, x)


_PE_CHUNK = 128  # exact scores computed at once (_pe_certificate)
_PE_ENUM_MAX = 1024  # active sets a cone may be enumerated over; above, one NNLS per cone


@lru_cache(maxsize=None)
def _pe_active_sets(f: int, k: int) -> np.ndarray:
    """Every set of k of f rows, a (K, k) index array (lexicographic)."""
    return np.array(list(itertools.combinations(range(f), k)), dtype=int).reshape(-1, k)


def _small_spd_solve(A: np.ndarray, r: np.ndarray):
    r"""Solve :math:`A\mu = r` for a batch of k x k symmetric matrices, k <= 3, in closed form
    (84 000 systems: 7-13 ms for k = 2 and 21-32 ms for k = 3, against 24-26 and 34-35 ms by
    ``numpy.linalg.solve``, which also raises on the first singular one). Returns
    (mu, valid): ``valid`` where :math:`|\det A| > 10^{-10}\prod_jA_{jj}` (rows of :math:`C_A`
    in general position; a smaller determinant is a degenerate set, left to the fallback)."""
    k = A.shape[-1]
    diag = np.prod(np.einsum("...kk->...k", A), axis=-1)
    if k == 1:
        det = A[..., 0, 0]
        mu = r / np.where(det > 0, det, 1.0)[..., None]
    elif k == 2:
        a, b, c = A[..., 0, 0], A[..., 0, 1], A[..., 1, 1]
        det = a * c - b * b
        s = np.where(np.abs(det) > 0, det, 1.0)
        mu = np.stack([c * r[..., 0] - b * r[..., 1], a * r[..., 1] - b * r[..., 0]], -1) / s[..., None]
    elif k == 3:  # A^{-1} = [a1 x a2, a2 x a0, a0 x a1] / det, a_j the rows (A symmetric)
        a0, a1, a2 = A[..., 0, :], A[..., 1, :], A[..., 2, :]
        c12, c20, c01 = np.cross(a1, a2), np.cross(a2, a0), np.cross(a0, a1)
        det = (a0 * c12).sum(-1)
        s = np.where(np.abs(det) > 0, det, 1.0)
        mu = (r[..., 0, None] * c12 + r[..., 1, None] * c20 + r[..., 2, None] * c01) / s[..., None]
    else:  # pragma: no cover - callers stop at 3
        raise ValueError(f"expected k <= 3 rows; got k={k}.")
    return mu, np.abs(det) > 1e-10 * diag


def _pe_project_batched(U: np.ndarray, x: np.ndarray):
    r""":math:`\Pi_{K_m}(x_m)` onto many cones :math:`K_m = \{v : U_mv\ge0\}` at once, by
    enumerating active sets of their unit rows ``U`` (m, f, d) (zero rows are padding;
    :func:`_pe_unit_rows`).

    :math:`\mu^*` minimises :math:`\|x + U^\top\mu\|` over :math:`\mu\ge0` (Moreau:
    :math:`\Pi_K(x) = x + U^\top\mu^*`), and some minimiser is basic: supported on a set
    :math:`A` of linearly independent rows (:math:`|A|\le d`), with :math:`U_Ap = 0` at
    :math:`p = x + U_A^\top\mu_A`, i.e.

    .. math:: \mu_A = -(U_AU_A^\top)^{-1}U_Ax,\qquad \|p\|^2 = \|x\|^2 + \mu_A^\top U_Ax .

    Every set :math:`A` of at most :math:`\min(d, 3)` rows gives a candidate, all from the
    rows' Gram matrix (:func:`_small_spd_solve`); the KKT conditions (:math:`\mu_A\ge0`,
    :math:`Up\ge0`; :math:`\mu^\top Up = 0` by construction) are sufficient, so a candidate
    that meets them is the projection (ties, :math:`x` on a lower-dimensional face, give the
    same point; the smallest norm is taken). The chosen :math:`\mu_A` gets one step of
    iterative refinement from the rows themselves (the Gram matrix squares a thin cone's
    condition number), and is clipped at 0, so ``p`` is :math:`x + U^\top\mu` with
    :math:`\mu\ge0` whatever rounding did: :math:`\|p\|` bounds :math:`\sigma_K(x)` from
    above in every case. Returns (p (m, d), found (m,)): where not found (rows in degenerate
    position; d > 3 with more than 3 active rows; more than ``_PE_ENUM_MAX`` sets), ``p`` is
    ``x``. Callers check ``p`` against the rows the cone has beyond ``U``
    (:func:`_pe_certificate`). (60, 3): up to 8 facets, 93 sets a cone."""
    m, f, d = U.shape
    kmax = min(d, 3, f)
    p = x.copy()
    found = np.zeros(m, bool)
    if m == 0 or sum(math.comb(f, k) for k in range(kmax + 1)) > _PE_ENUM_MAX:
        return p, found
    gram = np.einsum("mfd,mgd->mfg", U, U)                                # (m, f, f)
    ux = np.einsum("mfd,md->mf", U, x)
    real = (U != 0).any(axis=2)
    xn = np.linalg.norm(x, axis=1)
    ftol = 1e-9 * xn[:, None]                                             # unit rows
    found = (ux >= -ftol).all(1)                                          # A empty: x in K
    for k in range(1, kmax + 1):
        todo = np.flatnonzero(~found)
        if todo.size == 0:
            break
        S = _pe_active_sets(f, k)                                         # (K, k)
        Gt, uxt = gram[todo], ux[todo]
        GA = Gt[:, S[:, :, None], S[:, None, :]]                          # (t, K, k, k)
        uxA = uxt[:, S]                                                   # (t, K, k)
        mu, valid = _small_spd_solve(GA, -uxA)
        valid &= real[todo][:, S].all(2)
        up = uxt[:, None, :] + mu[:, :, 0, None] * Gt[:, S[:, 0], :]      # U p, every row
        for j in range(1, k):
            up += mu[:, :, j, None] * Gt[:, S[:, j], :]
        # mu >= 0 up to rounding only (clipping a larger negative part would loosen the bound)
        good = valid & (mu >= -1e-12 * xn[todo, None, None]).all(2) \
            & (up >= -ftol[todo][:, None, :]).all(2)
        hit = np.flatnonzero(good.any(1))
        if hit.size == 0:
            continue
        pick = np.argmin(np.where(good, (mu * uxA).sum(2), np.inf)[hit], axis=1)  # |p|^2 - |x|^2
        mu_h, A_h = mu[hit, pick], S[pick]                                # (h, k)
        rows_h = todo[hit]
        U_h = U[rows_h[:, None], A_h]                                     # (h, k, d)
        res = np.einsum("hkd,hd->hk", U_h, x[rows_h] + np.einsum("hk,hkd->hd", mu_h, U_h))
        mu_h = np.maximum(mu_h - _small_spd_solve(GA[hit, pick], res)[0], 0.0)  # refined
        p[rows_h] = x[rows_h] + np.einsum("hk,hkd->hd", mu_h, U_h)
        found[rows_h] = True
    return p, found


def _pe_certificate(X, G, y, V, W, lam, loss, *, check=None, ws=None, k_min=None, theta=None,
                    facets=None):
    r"""Primal value, certified dual bound and per-pattern dual scores of a feasible (V, W).

    Dual of the program (Lagrangian over the cones :math:`K_i = \{(2D_i - I)Xv\ge0\}`):

    .. math:: D(\theta) = -f^*(\theta)\ \ \text{s.t.}\ \
        \sigma_{K_i}(\pm X^\top D_i\theta)\le\lambda\ \ \forall i,

    since :math:`\theta^\top D_iXv_i\ge-\sigma_{K_i}(-X^\top D_i\theta)\|v_i\|` on :math:`K_i`
    (and the same for :math:`-w_i`). At :math:`\theta` (``theta``, the restricted solver's dual
    point, when given; else :math:`\nabla f(z)`) the scores
    :math:`s_i = \max_\pm\sigma_{K_i}(\pm X^\top D_i\theta)/\lambda` are bounded by
    :func:`_pe_cone_bound` (by :math:`\|X^\top D_i\theta\|` when that is already
    :math:`\le\lambda`), and :func:`_dual_on_ray` takes the best feasible multiple of
    :math:`\theta`: a valid lower bound whatever :math:`\theta` is. ``facets``
    (:class:`_PeFlipFacets`) only makes the bounds cheaper: any rows and any multipliers
    :math:`\ge0` give upper bounds. ``check`` (pattern indices) limits the exact bounds to those
    patterns, the rest keep the crude norm (still an upper bound: the certificate stays valid).

    Cost: the crude norms, then batched greedy bounds for all patterns above 1
    (:func:`_pe_cone_bounds_batched`), then exact ones lazily, largest bound first, until the
    maximum and the ``k_min`` worst violators outside ``ws`` (default: as many as
    :func:`_pe_next_set` takes) are exact; every other score stays an upper bound. The dual value
    and the next working set equal those of refining every pattern
    (``tests/test_fast_pe_certificate.py``). With ``facets`` the exact bounds come
    ``_PE_CHUNK`` patterns at a time from :func:`_pe_project_batched` (the next largest
    inexact bounds ride along: an extra exact score costs little there), else one checked NNLS
    each. (60, 3), λ = 1e-3, the 9 certificates of one solve, replayed: 1.49-1.53 s with one
    NNLS per cone, 0.41-0.42 s batched, the same dual values. Once the exact bounds were
    batched, warm-starting the greedy bounds from the last round's multipliers no longer paid
    (0.79 s without, 1.02-1.17 s with, an earlier version) and was dropped."""
    import heapq

    B = 2.0 * G - 1.0
    z = ((X @ (V - W).T) * G).sum(1)
    yt = torch.as_tensor(y)
    g = _grad(torch.as_tensor(z), yt, loss) if theta is None else torch.as_tensor(theta)
    gn = g.numpy()
    a = G.T @ (gn[:, None] * X)                     # (P, d): X^T D_i theta
    scores = np.linalg.norm(a, axis=1) / lam         # crude bound (mu = 0), both signs
    idx = np.flatnonzero(scores > 1.0) if check is None else np.asarray(check, dtype=int)
    idx = idx[scores[idx] > 1.0]
    batched = facets is not None and facets.pad is not None
    U = facets.unit_rows(X) if batched else None
    if idx.size:  # batched greedy bounds (both signs) first
        x2 = np.concatenate([a[idx], -a[idx]])
        if batched:  # on the facet rows: (60, 3), λ = 1e-3: 6 -> 12 steps, 2.7 -> 2.4 s a solve
            ub = _pe_greedy_bounds(np.concatenate([U[idx]] * 2), x2, 12)
        else:
            Bi = B[:, idx].T
            ub = _pe_cone_bounds_batched(X, np.concatenate([Bi, Bi]), x2)
        scores[idx] = np.minimum(scores[idx], np.maximum(ub[:idx.size], ub[idx.size:]) / lam)
        idx = idx[scores[idx] > 1.0]
    xnorm = np.sqrt((X * X).sum(1))

    def refine(pats: list) -> None:
        """Exact scores of the patterns ``pats`` (both signs), pushed back as exact."""
        todo = pats
        if batched:  # all at once; the cones it leaves, one NNLS each
            cones = np.array(pats * 2)
            xs = np.concatenate([a[pats], -a[pats]])
            p, ok = _pe_project_batched(U[cones], xs)
            # the projection onto the facet cone is the one onto K_i when it satisfies every
            # row of K_i (Moreau, as in _pe_exact_mu); else a facet is missing
            c_all = (p @ X.T) * B[:, cones].T
            ok &= (c_all >= -1e-9 * xnorm[None, :] * np.linalg.norm(xs, axis=1)[:, None]).all(1)
            bound = np.linalg.norm(p, axis=1) / lam
            h = len(pats)
            both = ok[:h] & ok[h:]
            sel = np.array(pats)[both]
            scores[sel] = np.minimum(scores[sel], np.maximum(bound[:h], bound[h:])[both])
            for i in sel.tolist():
                heapq.heappush(heap, (-float(scores[i]), i, True))
            todo = np.array(pats)[~both].tolist()
        for i in todo:
            C = B[:, i, None] * X
            F = facets.usable(i) if facets is not None else None
            mp, mm = _pe_exact_mu(C, a[i], F), _pe_exact_mu(C, -a[i], F)
            scores[i] = min(scores[i],
                            max(_pe_cone_bound(C, a[i], mp), _pe_cone_bound(C, -a[i], mm)) / lam)
            heapq.heappush(heap, (-float(scores[i]), i, True))

    # exact bounds, lazily: the pattern of largest current bound is refined (with the next
    # largest inexact ones, up to `chunk`), until the largest is an exact one k_min times (then
    # the k_min worst violators, which the next working set takes, are known exactly, and so is
    # the maximum: every score is an upper bound) or it is exact and <= 1 (no violator left).
    # (60, 3), 3542 patterns: 55 000 NNLS per solve when every pattern was refined.
    if k_min is None:  # as many as _pe_next_set takes
        k_min = _pe_n_add(V, W)
    chunk = _PE_CHUNK if batched else 1
    heap = [(-float(scores[i]), int(i), False) for i in idx]
    heapq.heapify(heap)
    confirmed = 0
    while heap:
        neg, i, exact = heapq.heappop(heap)
        if not exact:
            pats, held = [i], []
            while heap and len(pats) < chunk:
                e = heapq.heappop(heap)
                (held if e[2] else pats).append(e if e[2] else e[1])
            for e in held:
                heapq.heappush(heap, e)
            refine(pats)
            continue
        if -neg <= 1.0:
            break
        confirmed += ws is None or not ws[i]  # violators outside the working set count
        if confirmed >= k_min:
            break
    primal = float(_loss(torch.as_tensor(z), yt, loss)) + lam * float(
        np.linalg.norm(V, axis=1).sum() + np.linalg.norm(W, axis=1).sum())
    dual = _dual_on_ray(g, float(scores.max(initial=0.0)), yt, loss)
    return primal, dual, scores


class _PeFlipFacets:
    r"""Candidate facets of every pattern cone from the pattern set alone (no geometry).

    Two cells of the arrangement :math:`\{x_r^\top v = 0\}` whose sign patterns differ in the
    single row :math:`r` are separated by that hyperplane only, so :math:`r` is a facet of
    both; conversely a facet of a cell leads to the cell across it. So, when the patterns are
    every cell (an exact enumeration), the facets of pattern :math:`i` are the rows :math:`r`
    with :math:`i\oplus e_r` also a pattern, found by hashing (random 64-bit codes per row,
    XOR-ed): 20 ms for all 3542 patterns of (60, 3), where the geometry
    (Qhull on the cone's normalised rows) took 0.27 ms *each*. When the set is incomplete some
    facets are missed: the rows found still hold on :math:`K_i`, so :math:`K_F\supseteq K_i` — an upper
    bound on :math:`\sigma_{K_i}` stays an upper bound, and the callers check points against
    every row before trusting them (:func:`_pe_certificate`, :func:`solve_pilanci_ergen`)."""

    def __init__(self, G: np.ndarray, rank: int | None = None, seed: int = 0):
        n = G.shape[0]
        self.rank = rank  # of X: a pointed cell of a rank-r arrangement has >= r facets
        h = np.random.default_rng(seed).integers(0, 2 ** 63, size=n, dtype=np.int64).astype(np.uint64)
        self.h = h
        self.codes = np.bitwise_xor.reduce(np.where(G.astype(bool), h[:, None], np.uint64(0)),
                                           axis=0)
        self.index = {int(c): i for i, c in enumerate(self.codes)}
        self.extra: dict[int, set] = {}  # rows added after a point violated them
        self.memo: dict[int, np.ndarray] = {}  # pattern -> its rows (a solve asks thousands
        # of times: (60, 3), λ = 1e-3, 14 000 calls, 0.24 s of a 2.5 s solve without it)
        self.pad = self.mask = self.signs = None
        self._unit = self._unit_of = None
        self.complete = True  # until a cell with fewer than `rank` facets is seen
        if n * G.shape[1] <= 4_000_000:  # every pattern at once, padded (P, f_max)
            adj = np.isin(self.codes[None, :] ^ h[:, None], self.codes).T     # (P, n)
            f = max(int(adj.sum(1).max(initial=0)), 1)
            order = np.argsort(~adj, axis=1, kind="stable")[:, :f]
            self.mask = np.take_along_axis(adj, order, axis=1)
            self.pad = np.where(self.mask, order, 0)
            self.signs = (2.0 * G[self.pad, np.arange(G.shape[1])[:, None]] - 1.0) * self.mask
            if rank is not None and int(adj.sum(1).min(initial=rank)) < rank:
                # cells with too few facets found: an incomplete set (sampled patterns), whose
                # facet rows bound loosely and miss constraints: every row is used instead
                # ((30, 4), 176 sampled patterns: one conic solve instead of two, 0.24 -> 0.12 s)
                self.pad = self.mask = self.signs = None
                self.complete = False

    def unit_rows(self, X: np.ndarray) -> np.ndarray:
        """The unit facet rows of every pattern for this ``X``, (P, f, d)
        (:func:`_pe_unit_rows`; computed once per ``X``, the solver's rounds share it)."""
        if self._unit_of is not X:
            self._unit, self._unit_of = _pe_unit_rows(X, self.signs, self.pad), X
        return self._unit

    def usable(self, i: int):
        """The facet rows of pattern ``i`` when they can describe its cone (at least ``rank``
        of them), else None (use every row)."""
        if not self.complete:
            return None
        rows = self(i)
        return rows if self.rank is None or len(rows) >= self.rank else None

    def __call__(self, i: int) -> np.ndarray:
        got = self.memo.get(i)
        if got is None:
            flips = self.codes[i] ^ self.h
            rows = {r for r, c in enumerate(flips.tolist()) if c in self.index}
            rows |= self.extra.get(i, set())
            got = self.memo[i] = np.array(sorted(rows), dtype=int)
        return got

    def add(self, i: int, rows) -> None:
        self.extra.setdefault(i, set()).update(int(r) for r in rows)
        self.memo.pop(i, None)


def _pe_restricted_squared(X, G, y, lam, *, tight: bool, facets=None):
    r"""The program on the patterns ``G`` (n, k), squared loss, as one Clarabel conic problem.

    Variables ``[V (k d), W (k d), t_V (k), t_W (k), e (n)]``; minimise
    :math:`\tfrac1{2n}\|e\|^2 + \lambda\sum t` with :math:`e = \sum_i D_iX(v_i - w_i) - y`
    (zero cone), :math:`(2D_i - I)Xv_i\ge0` (non-negative cone) and
    :math:`(t_i, v_i)\in\mathrm{SOC}` — the same program cvxpy builds, without its
    canonicalisation. ``facets`` (a list of k row-index arrays, :class:`_PeFlipFacets`) keeps only the
    inequality rows that define each cone (the same cones, fewer rows); default every row.
    Returns (V, W, Clarabel status)."""
    import clarabel
    import scipy.sparse as sp

    n, d = X.shape
    k = G.shape[1]
    if facets is None:
        facets = [np.arange(n)] * k
    nv = k * d
    off_t, off_e = 2 * nv, 2 * nv + 2 * k
    N = off_e + n
    Pm = sp.csc_matrix((np.full(n, 1.0 / n), (np.arange(off_e, N), np.arange(off_e, N))),
                       shape=(N, N))
    q = np.zeros(N)
    q[off_t:off_e] = lam
    # zero cone: e - M v + M w = -y, with M[r, (i, :)] = G[r, i] X[r, :]
    M = sp.csr_matrix((G[:, :, None] * X[:, None, :]).reshape(n, nv))
    A_eq = sp.hstack([-M, M, sp.csr_matrix((n, 2 * k)), sp.identity(n, format="csr")])
    # non-negative cone: -(B_i X) v_i + s = 0, s >= 0; block-diagonal over patterns
    B = 2.0 * G - 1.0
    # row (side, i, r), column side * nv + i * d + c, value -B[r, i] X[r, c], r in facets[i]
    pat = np.concatenate([np.full(len(R), i) for i, R in enumerate(facets)]).astype(int)
    obs = np.concatenate(facets).astype(int)
    m = obs.size
    vals = -(B[obs, pat][:, None] * X[obs])                          # (m, d)
    rr = np.arange(m)[:, None].repeat(d, 1)
    cc = pat[:, None] * d + np.arange(d)[None, :]
    A_nn = sp.csr_matrix((np.concatenate([vals.ravel(), vals.ravel()]),
                          (np.concatenate([rr.ravel(), rr.ravel() + m]),
                           np.concatenate([cc.ravel(), cc.ravel() + nv]))), shape=(2 * m, N))
    # second-order cones: (t_i, v_i) for V then W
    rows, cols = [], []
    r = 0
    for side in range(2):
        for i in range(k):
            rows.append(r)
            cols.append(off_t + side * k + i)
            rows.extend(range(r + 1, r + 1 + d))
            cols.extend(range(side * nv + i * d, side * nv + (i + 1) * d))
            r += d + 1
    A_soc = sp.csr_matrix((-np.ones(len(rows)), (rows, cols)), shape=(r, N))
    A = sp.vstack([A_eq, A_nn, A_soc], format="csc")
    b = np.concatenate([-y, np.zeros(2 * m + r)])
    cones = ([clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(2 * m)]
             + [clarabel.SecondOrderConeT(d + 1)] * (2 * k))
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.max_iter = 200
    if tight:  # True: 1e-12; a float: that tolerance
        t = 1e-12 if tight is True else float(tight)
        settings.tol_gap_abs = settings.tol_gap_rel = t
        settings.tol_feas = t
    sol = clarabel.DefaultSolver(sp.triu(Pm, format="csc"), q, A, b, cones, settings).solve()
    x = np.asarray(sol.x)
    theta = -np.asarray(sol.z)[:n]  # KKT in e: e / n + z_eq = 0, so -z_eq is the dual theta
    return x[:nv].reshape(k, d), x[nv:2 * nv].reshape(k, d), str(sol.status), theta


def _pe_restricted_facets(X, G, B, y, lam, S, facets: _PeFlipFacets, *, tight: bool,
                          max_cuts: int = 3):
    r""":func:`_pe_restricted_squared` on the patterns ``S`` with only their facet rows
    (``facets``), checked against *every* row. A pattern with fewer facet rows than the rank of
    ``X`` cannot be its cone's full description (an incomplete pattern set,
    :class:`_PeFlipFacets`): it takes all its rows at once. A block that violates a row left
    out has that row added to its pattern and the program is solved again; after ``max_cuts``
    such rounds with violations left, the full program (every row of every pattern) is solved
    instead. Returns (V, W, status, theta) for the patterns ``S``."""
    n = X.shape[0]
    full = {int(i) for i in S if facets.usable(int(i)) is None}
    for _ in range(max_cuts + 1):
        rows = [np.arange(n) if int(i) in full else facets(int(i)) for i in S]
        VS, WS, st, theta = _pe_restricted_squared(X, G[:, S], y, lam, tight=tight, facets=rows)
        top = max(np.linalg.norm(VS, axis=1).max(initial=0.0),
                  np.linalg.norm(WS, axis=1).max(initial=0.0), _TINY)
        left_out = np.ones((len(S), n), bool)
        for j, R in enumerate(rows):
            left_out[j, R] = False
        offenders = False
        for M in (VS, WS):
            # (k, n): row r of pattern S[j]. A missing facet shows as a violation of a row left
            # out; the solver's absolute tolerance as up to ~1e-5 relative on blocks below
            # 1e-6 of the largest, on the facet rows too (left to the projection of _pe_feasible)
            c = (M @ X.T) * B[:, S].T
            tol = 1e-6 * np.abs(c).max(axis=1, keepdims=True)
            big = np.linalg.norm(M, axis=1) > 1e-6 * top
            viol = (c < -tol) & left_out
            for j in np.flatnonzero(big & viol.any(axis=1)):
                facets.add(int(S[j]), np.flatnonzero(viol[j]))
                offenders = True
        if not offenders:
            return VS, WS, st, theta
    return _pe_restricted_squared(X, G[:, S], y, lam, tight=tight)


def _pe_restricted_cvxpy(X, G, y, lam, loss):
    """The program on the patterns ``G`` by cvxpy/Clarabel (the logistic loss needs
    exponential cones; cvxpy builds them). Returns (V, W, status)."""
    import cvxpy as cp

    from altheory.solvers.losses import loss_cvxpy

    n, d = X.shape
    k = G.shape[1]
    V, W = cp.Variable((k, d)), cp.Variable((k, d))
    z = cp.sum(cp.multiply(G, X @ (V - W).T), axis=1)
    B = 2.0 * G - 1.0
    prob = cp.Problem(cp.Minimize(loss_cvxpy(z, y, loss) + lam * (
        cp.sum(cp.norm(V, 2, axis=1)) + cp.sum(cp.norm(W, 2, axis=1)))),
        [cp.multiply(B, X @ V.T) >= 0, cp.multiply(B, X @ W.T) >= 0])
    try:
        prob.solve(solver="CLARABEL", max_iter=500)
    except cp.error.SolverError:
        return np.zeros((k, d)), np.zeros((k, d)), "solver_error"
    if V.value is None:
        return np.zeros((k, d)), np.zeros((k, d)), str(prob.status)
    return np.asarray(V.value), np.asarray(W.value), str(prob.status)


def _pe_feasible(X, G, V, W, *, rtol=1e-12, steps=4):
    """Zero the negligible blocks and make the others feasible for their cones (exactly, up to
    rounding); returns (V, W, relative infeasibility left).

    An interior-point solution violates its cones by the solver's tolerance only, mostly on one
    or two rows: a few greedy steps, all blocks at once (each projects a block onto the
    hyperplane of its most violated row), make it feasible; a block still violating by more
    than rounding (1e-15 of its largest row value) is projected exactly. From
    ``_PE_FEAS_BATCH`` such blocks on, the projections are batched
    (:func:`_pe_project_batched` over the ``_PE_FEAS_ROWS`` rows nearest to active at the block,
    kept where the result satisfies every row: then it is the projection onto the whole cone,
    by Moreau's conditions); the others take one NNLS each (:func:`_pe_project`). (16, 5), 61
    patterns: 119 NNLS projections per solve before the greedy steps, about 4 ms of a 30 ms
    solve; 65 after them, 11 with the batch. Interleaved against one NNLS each, 3-7 runs: 2-9%
    faster a solve at (16, 5), (24, 3) and (40, 3), equal at (12, 2) (below the batch size)."""
    B = 2.0 * G - 1.0
    V, W = V.copy(), W.copy()
    top = max(np.linalg.norm(V, axis=1).max(initial=0.0), np.linalg.norm(W, axis=1).max(initial=0.0))
    xn = (X * X).sum(1)
    worst, scale = 0.0, _TINY
    for M in (V, W):
        M[np.linalg.norm(M, axis=1) <= rtol * top] = 0.0
        idx = np.flatnonzero(np.linalg.norm(M, axis=1) > 0)
        if idx.size == 0:
            continue
        Bi = B[:, idx].T                                   # (k, n) signs of each block's cone
        cur = M[idx].copy()
        rows = np.arange(idx.size)
        usable = bool((xn > 0).all())
        for _ in range(steps if usable else 0):
            c = (cur @ X.T) * Bi
            r = np.argmin(c / np.sqrt(xn), axis=1)
            cm = c[rows, r]
            if not (cm < 0).any():
                break
            cur += (np.where(cm < 0, -cm / xn[r], 0.0) * Bi[rows, r])[:, None] * X[r]
        c = (cur @ X.T) * Bi
        bad = np.flatnonzero(c.min(axis=1) < -1e-15 * np.abs(c).max(axis=1))
        if bad.size >= _PE_FEAS_BATCH:  # exact projections, batched; NNLS where that fails
            x = M[idx[bad]]
            # the rows nearest to active at x (the candidates of the projection's active set)
            near = np.argsort(((x @ X.T) * Bi[bad]) / np.sqrt(np.where(xn > 0, xn, 1.0)),
                              axis=1)[:, :_PE_FEAS_ROWS]
            p, found = _pe_project_batched(
                _pe_unit_rows(X, np.take_along_axis(Bi[bad], near, axis=1), near), x)
            pc = (p @ X.T) * Bi[bad]
            ok = found & (pc.min(axis=1) >= -1e-15 * np.abs(pc).max(axis=1))
            cur[bad[ok]] = p[ok]
            bad = bad[~ok]
        for j in bad:
            cur[j] = _pe_project(Bi[j][:, None] * X, M[idx[j]])
        M[idx] = cur
        c = (cur @ X.T) * Bi
        worst = max(worst, float(np.maximum(-c, 0).max()))
        scale = max(scale, float(np.abs(c).max()))
    return V, W, worst / scale


_PE_FEAS_ROWS = 6  # rows of a cone the batched projection of _pe_feasible enumerates over
_PE_FEAS_BATCH = 8  # infeasible blocks from which _pe_feasible batches their projections
_ONE_SHOT_TOL = 1e-10  # Clarabel's tolerances for the one-solve path (see working_set)


_PE_GROW = 3


def _pe_n_add(V, W) -> int:
    """How many violators a round adds: ``_PE_GROW * max(16, #non-zero blocks)`` (celer adds
    ``max(16, #non-zero)``). Measured, squared loss, λ in {0.01, 1e-3}, the benchmark's
    (40, 3), (60, 3), (80, 3) (exact patterns), total of the 6 solves: 11.4-13.0 s at 1x,
    9.5-13.3 s at 1.5x, 10.6-13.2 s at 2x, 8.5-9.2 s at 3x, 14-18 s at 4x (its last sets 2x
    larger); on other instances ((50, 3), (60, 3) twice, (70, 3), other seeds): 16.1-18.3 s at
    1x, 13.0-13.6 s at 2x, 12.3-12.9 s at 3x. The rounds drop from 7-14 to 5-7."""
    active = int(((np.abs(V).sum(1) > 0) | (np.abs(W).sum(1) > 0)).sum())
    return _PE_GROW * max(16, active)


def _pe_next_set(ws, scores, V, W, *, keep: bool):
    """The non-zero blocks plus the worst violators outside (scores > 1), at most
    :func:`_pe_n_add` of them. Dropping the zero blocks cannot cycle in
    exact arithmetic (the previous point stays feasible, and a violator strictly lowers the
    restricted optimum); with ``keep`` (after 15 rounds: a safeguard against inexact restricted
    solves) the set only grows. Keeping from round 8 instead made the sets 2x larger: (80, 3),
    6322 patterns, λ = 1e-3, 1243 -> 606 patterns and 6.1 -> 3.7 s. None when nothing outside
    is violated.

    A pattern brings both its blocks, also when only one side's dual constraint is violated.
    Sets of blocks instead ((pattern, side), only the violated side added; Clarabel's problems
    half as large) were measured and dropped: at λ = 0.01 faster ((60, 3): 1.65 -> 1.07 s),
    at λ = 1e-3 the other side of the added patterns turned violated in later rounds, 8 -> 12
    rounds at (60, 3), 9 -> 15 at (80, 3), and 13.7 -> 19.9-23.1 s over the benchmark's six
    largest solves ((40, 3) to (80, 3), two λ; three round sizes tried)."""
    active = (np.linalg.norm(V, axis=1) > 0) | (np.linalg.norm(W, axis=1) > 0)
    viol = np.flatnonzero((scores > 1.0) & ~ws)
    if viol.size == 0:
        return None
    add = viol[np.argsort(-scores[viol])[:_pe_n_add(V, W)]]
    nxt = ws.copy() if keep else active.copy()
    nxt[add] = True
    return nxt


def solve_pilanci_ergen(X, patterns, y, lam, *, loss: FastLoss = "squared", tol: float = 1e-8,
                        max_rounds: int = 30, time_limit: float = math.inf,
                        working_set: bool | None = None, device=None) -> PilanciErgenResult:
    r"""The convex program of two-layer ReLU networks (Pilanci & Ergen 2020; docs/claims.md C5).

    .. math::

        \min_{V, W}\ \ell\Big(\sum_i D_iX(v_i - w_i),\ y\Big) + \lambda\sum_i(\|v_i\| + \|w_i\|)
        \ \ \text{s.t.}\ \ (2D_i - I)Xv_i \ge 0,\ (2D_i - I)Xw_i \ge 0

    Working set over patterns: solve the program on a set :math:`S` of patterns (squared loss:
    one Clarabel conic problem built directly, :func:`_pe_restricted_squared`, with each cone
    given by its facets only — about 4 of n = 60 rows in :math:`\mathbb R^3`,
    :class:`_PeFlipFacets`, checked against every row by :func:`_pe_restricted_facets`;
    logistic: cvxpy), make the blocks exactly feasible (projection onto their cones), certify on
    *all* patterns (:func:`_pe_certificate`), add the patterns whose dual constraint is violated,
    repeat. The optimum has at most :math:`n + 1` non-zero blocks (Pilanci & Ergen), so
    :math:`S` stays small where the number of patterns :math:`P` is large.

    Certificate: ``gap = F(V, W) - D(theta)`` with :math:`\theta` a feasible multiple of the
    interior-point solver's dual point (squared loss; :math:`\nabla f(z)` otherwise) — a
    certified bound on :math:`F(V, W) - F^*` (weak duality; the cone support functions are
    bounded from above, never estimated). The solver's dual is accurate to its tolerance, where
    :math:`\nabla f(z)` of a primal point accurate to :math:`\epsilon` in value is only
    accurate to :math:`\sqrt\epsilon`: at (60, 3), λ = 1e-3 the gradient's certificate stalled
    at 8e-8, the dual's reaches 3e-13. ``status == "optimal"`` only when ``rel_gap <= tol`` and
    the blocks' relative infeasibility ``<= tol``.

    Parameters
    ----------
    X : array of shape (n, d)
    patterns : bool array of shape (n, P), column i is :math:`\mathrm{diag}(D_i)`.
    y : array of shape (n,)
    lam : float > 0
    loss : {"squared", "logistic"}
    tol : float, default 1e-8
    max_rounds : int, working-set rounds.
    time_limit : float, seconds
    working_set : bool, optional
        Default: when ``P > max(256, 25 n)`` (else every pattern from the start: one conic
        solve, with Clarabel's tolerances at 1e-10, tightened to 1e-12 only if the certificate
        falls short). Measured (2 cores): (24, 3), 554 patterns, 0.15-0.17 s in one solve
        against 0.13-0.25 s by working set; (30, 4), 176 sampled patterns, 0.12-0.15 s against
        0.16-0.34 s; (40, 3), 1562 patterns, 0.76-0.90 s against 0.28-0.60 s.
    device : ignored (CPU, float64); kept for the signature of the other solvers.

    Returns
    -------
    PilanciErgenResult
        ``kkt`` holds ``infeasibility`` (relative, after projection) and ``clarabel`` status
        counts; ``iterations = {"rounds": ..., "working_set": final size}``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((30, 2)); y = np.maximum(X @ [1.0, -1.0], 0)
    >>> D = X @ rng.standard_normal((2, 6)) >= 0
    >>> r = solve_pilanci_ergen(X, D, y, 0.05)
    >>> r.status, r.rel_gap <= 1e-8
    ('optimal', True)
    """
    t0 = time.perf_counter()
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a float > 0; got tol={tol!r}.")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, (int, np.integer)) \
            or max_rounds < 1:
        raise ValueError(f"max_rounds must be an int >= 1; got {max_rounds!r}.")
    Xt, Gt, yt, lam, loss, _ = _group_inputs(X, patterns, y, lam, loss, "cpu")
    Xn, Gn, yn = Xt.numpy(), Gt.numpy().astype(np.float64), yt.numpy()
    n, d = Xn.shape
    P = Gn.shape[1]
    deadline = t0 + float(time_limit)
    if working_set is None:
        working_set = P > max(256, 25 * n)
    V = np.zeros((P, d))
    W = np.zeros((P, d))
    ws = np.zeros(P, bool)
    facets = _PeFlipFacets(Gn, rank=int(np.linalg.matrix_rank(Xn)))
    if working_set:
        # the first set: the patterns whose dual constraint is most violated at V = W = 0
        primal, dual, scores = _pe_certificate(Xn, Gn, yn, V, W, lam, loss, k_min=max(16, n),
                                               facets=facets)
        ws[np.argsort(-scores)[:min(P, max(16, n))]] = True
    else:  # every pattern: no scores needed ((16, 5), 61 patterns: 3.5 ms of a 40 ms solve)
        primal = float(_loss(torch.zeros(n, dtype=torch.float64), yt, loss))
        dual = -math.inf
        ws[:] = True
    statuses: dict[str, int] = {}
    rounds, infeas, tight = 0, 0.0, (True if working_set else _ONE_SHOT_TOL)
    Bn = 2.0 * Gn - 1.0

    rel = (primal - dual) / max(abs(primal), _TINY)
    while rounds < max_rounds and time.perf_counter() < deadline:
        rounds += 1
        S = np.flatnonzero(ws)
        if loss == "squared":
            VS, WS, st, theta = _pe_restricted_facets(Xn, Gn, Bn, yn, lam, S, facets, tight=tight)
        else:
            VS, WS, st = _pe_restricted_cvxpy(Xn, Gn[:, S], yn, lam, loss)
            theta = None
        statuses[st] = statuses.get(st, 0) + 1
        V = np.zeros((P, d))
        W = np.zeros((P, d))
        V[S], W[S] = VS, WS
        V, W, infeas = _pe_feasible(Xn, Gn, V, W)
        primal, dual, scores = _pe_certificate(Xn, Gn, yn, V, W, lam, loss, ws=ws, theta=theta,
                                               facets=facets)
        rel = (primal - dual) / max(abs(primal), _TINY)
        if rel <= tol and infeas <= tol:
            break
        nxt = _pe_next_set(ws, scores, V, W, keep=rounds >= 15)
        if nxt is None:  # no violator: the restricted solve itself is short of tol
            if tight is True or loss != "squared":
                break
            tight = True
        else:
            ws = nxt
    status = "optimal" if (rel <= tol and infeas <= tol) else (
        "time_limit" if time.perf_counter() >= deadline else "max_iter")
    return PilanciErgenResult(V=V, W=W, objective=primal, dual_objective=dual,
                              gap=primal - dual, rel_gap=rel, kkt_residual=infeas,
                              kkt={"infeasibility": infeas, **{f"clarabel_{k}": float(v)
                                                               for k, v in statuses.items()}},
                              status=status,
                              iterations={"rounds": rounds, "working_set": int(ws.sum())},
                              solve_time=time.perf_counter() - t0)
