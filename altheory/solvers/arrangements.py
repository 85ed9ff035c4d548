r"""Activation patterns of a two-layer ReLU network and the Pilanci–Ergen convex program (C5).

The patterns of the data are :math:`D(u) = \mathrm{diag}(\mathbb 1[Xu \ge 0])` over
:math:`u \in \mathbb R^d`: the chambers of the central hyperplane arrangement
:math:`\{u : x_i^\top u = 0\}`. Pilanci & Ergen (2020) show that, for :math:`\lambda > 0` and
width :math:`m \ge m^*`,

.. math::

    \min_{W_1, w_2}\ \ell\Big(\sum_j (X w_{1j})_+ w_{2j}\Big)
        + \tfrac\lambda2(\|W_1\|_F^2 + \|w_2\|^2)
    = \min_{v_i, w_i}\ \ell\Big(\sum_i D_i X (v_i - w_i)\Big) + \lambda\sum_i(\|v_i\| + \|w_i\|)
    \ \text{s.t.}\ (2D_i - I) X v_i \ge 0,\ (2D_i - I) X w_i \ge 0,

over *all* patterns :math:`D_i` (a theorem). :func:`enumerate_patterns` lists them exactly for data
in general position (small ``d``): every chamber of an essential arrangement has a vertex ray
:math:`w` (the null vector of ``d - 1`` rows), and around it the ``d - 1`` signs of those rows
take all :math:`2^{d-1}` values; each pattern is produced from an explicit point
:math:`u = w + \epsilon\,X_I^+ \sigma` and is therefore realisable, and their number is checked
against Cover's count :math:`2\sum_{k<d}\binom{n-1}{k}`. Data not in general position (a vertex
on more than ``d - 1`` hyperplanes) is detected and the result flagged ``exact=False``.
:func:`sample_patterns` draws patterns from Gaussian ``u`` — a restriction, so the program over
sampled patterns gives an *upper bound*, never a certified global optimum.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import comb

import numpy as np

from altheory.solvers.convex import ConvexResult, _check_solver, solve_with_fallback
from altheory.solvers.losses import check_loss, check_targets, loss_cvxpy, loss_np
from altheory.solvers.problems import check_lam, check_matrix

__all__ = ["Patterns", "enumerate_patterns", "sample_patterns", "cover_count", "relu_program",
           "relu_objective", "program_to_network", "prune_blocks"]


@dataclass
class Patterns:
    """Activation patterns of the data: ``G[:, i]`` is ``diag(D_i)``.

    Attributes
    ----------
    G : bool ndarray of shape (n, P)
    exact : bool, every pattern of the data is present (certified by construction and count).
    method : ``"enumerated"`` or ``"sampled"``.
    expected : int or None, Cover's count for data in general position.
    """

    G: np.ndarray
    exact: bool
    method: str
    expected: int | None = None

    @property
    def P(self) -> int:
        return int(self.G.shape[1])


def cover_count(n: int, r: int) -> int:
    r"""Chambers of ``n`` central hyperplanes in general position in :math:`\mathbb R^r`:
    :math:`2\sum_{k=0}^{r-1}\binom{n-1}{k}` (Cover 1965)."""
    if n == 0:
        return 1
    return 2 * sum(comb(n - 1, k) for k in range(r))


def _unique_cols(G: np.ndarray) -> np.ndarray:
    if G.shape[1] == 0:
        return G
    return np.unique(G, axis=1)


def enumerate_patterns(X, *, max_candidates: int = 2_000_000) -> Patterns:
    r"""All activation patterns :math:`\mathbb 1[Xu \ge 0]` of the rows of ``X`` (exact).

    Parameters
    ----------
    X : ndarray of shape (n, d); rows in general position for ``exact=True``.
    max_candidates : int, refuse arrangements with more vertex candidates than this.

    Returns
    -------
    Patterns with ``G`` (n, P), ``P`` = number of chambers; ``exact`` is False when the data is
    not in general position (the count then differs from Cover's, and the set may miss patterns).

    Raises
    ------
    ValueError
        When the enumeration would exceed ``max_candidates`` (use :func:`sample_patterns`).

    Examples
    --------
    >>> pat = enumerate_patterns(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    >>> pat.P, pat.exact
    (6, True)
    """
    X = check_matrix(X, "X")
    n, d = X.shape
    # reduce to the row space (the arrangement is a product with the kernel of X)
    U_, s, Vt = np.linalg.svd(X, full_matrices=False)
    r = int((s > max(n, d) * np.finfo(float).eps * (s[0] if s.size else 0)).sum())
    if r == 0:
        return Patterns(np.ones((n, 1), bool), True, "enumerated", 1)
    Z = X @ Vt[:r].T  # (n, r), same patterns as X
    n_sub = comb(n, r - 1)
    if n_sub * 2 ** r > max_candidates:
        raise ValueError(f"enumerate_patterns: C(n, r-1) * 2^r = {n_sub * 2 ** r} candidates for "
                         f"n={n}, rank r={r} exceeds max_candidates={max_candidates}; use "
                         "sample_patterns (an upper bound) or fewer samples.")
    scale = float(np.abs(Z).max())
    tol = 1e-10 * scale
    general = True
    cols = []
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=r - 1)), dtype=np.float64)
    for I in itertools.combinations(range(n), r - 1):
        I = list(I)
        ZI = Z[I]
        if r == 1:
            w = np.ones(1)
        else:
            _, sv, vt = np.linalg.svd(ZI)
            if sv.size and sv[-1] <= 1e-10 * scale:
                general = False
                continue
            w = vt[-1]
        rest = np.ones(n, bool)
        rest[I] = False
        for sgn_w in (1.0, -1.0):
            ww = sgn_w * w
            zr = Z[rest] @ ww
            if zr.size and np.abs(zr).min() <= tol:
                general = False  # another hyperplane through this vertex
            if r == 1:
                u = ww[None, :]
            else:
                delta = np.linalg.pinv(ZI) @ signs.T  # (r, 2^{r-1})
                big = np.abs(Z[rest] @ delta).max() if rest.any() else 1.0
                small = np.abs(zr).min() if zr.size else 1.0
                eps = 0.5 * small / max(big, 1e-300)
                u = (ww[:, None] + eps * delta).T  # (2^{r-1}, r)
            cols.append(Z @ u.T > 0)
    G = _unique_cols(np.concatenate(cols, axis=1)) if cols else np.ones((n, 1), bool)
    expected = cover_count(n, r)
    # zero rows of X give x_i^T u = 0 for every u: "on" under the >= convention of D(u)
    zero_rows = np.abs(Z).max(axis=1) <= tol
    if zero_rows.any():
        G[zero_rows] = True
        G = _unique_cols(G)
        general = False
    exact = general and G.shape[1] == expected
    return Patterns(G, exact, "enumerated", expected)


def sample_patterns(X, n_samples: int, *, seed: int = 0) -> Patterns:
    r"""Patterns :math:`\mathbb 1[Xu \ge 0]` for ``n_samples`` Gaussian ``u`` (deduplicated).

    A subset of the patterns: the program over them is an **upper bound** (``exact=False``).

    Examples
    --------
    >>> sample_patterns(np.eye(2), 50).exact
    False
    """
    X = check_matrix(X, "X")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((X.shape[1], int(n_samples)))
    return Patterns(_unique_cols(X @ U >= 0), False, "sampled", None)


def relu_program(X, y, lam: float, patterns: Patterns, *, loss: str = "squared",
                 solver: str = "auto", tol: float = 1e-8) -> ConvexResult:
    r"""The Pilanci–Ergen constrained program over ``patterns`` (module docstring).

    Parameters
    ----------
    X : ndarray of shape (n, d); y : ndarray of shape (n,)
    lam : float >= 0
    patterns : Patterns
    loss : {"squared", "logistic", "hinge"}
    solver : {"auto", "fast", "clarabel", "scs"}
        ``"auto"`` (default): squared loss with ``lam > 0`` goes to the certified working-set
        solver :func:`altheory.solvers.pilanci_ergen.solve_pilanci_ergen` (``solver="altheory-pe"``,
        status ``"optimal"`` only with a duality gap ``<= tol`` relative, checked on every
        pattern); when it does not certify, and for the other losses, cvxpy (Clarabel, SCS
        fallback), whose ``"optimal"`` is its own solver status. ``"fast"`` forces the certified
        solver (its status is returned as is); ``"clarabel"``/``"scs"`` force cvxpy.
    tol : float, the relative gap the certified solver must reach.

    Returns
    -------
    ConvexResult with ``weights["V"]``, ``weights["W"]`` of shape (P, d); ``kind`` is
    ``"global"`` for exactly enumerated patterns and ``"upper-bound"`` for sampled ones.
    With the certified solver, ``solver_value`` is its dual bound (``objective - solver_value``
    is the certified gap) and ``attempts`` records every try.

    Examples
    --------
    >>> X = np.array([[1.0], [-1.0]]); y = np.array([1.0, 1.0])
    >>> r = relu_program(X, y, 0.01, enumerate_patterns(X))
    >>> r.status, r.kind
    ('optimal', 'global')
    """
    import cvxpy as cp

    X = check_matrix(X, "X")
    check_loss(loss)
    if loss == "softmax":
        raise ValueError("relu_program has a scalar output; use 'squared', 'logistic' or 'hinge'.")
    y = check_targets(y, loss)
    lam = check_lam(lam)
    if solver not in ("auto", "fast"):
        _check_solver(solver)
    if not isinstance(patterns, Patterns):
        raise TypeError(f"patterns must be a Patterns (enumerate_patterns / sample_patterns); got "
                        f"{type(patterns).__name__}.")
    n, d = X.shape
    G = patterns.G
    if G.shape[0] != n or y.shape != (n,):
        raise ValueError(f"patterns.G must have n={n} rows and y shape ({n},); got {G.shape}, {y.shape}.")
    kind = "global" if patterns.exact else "upper-bound"
    fast_ok = loss == "squared" and lam > 0
    if solver == "fast" and not fast_ok:
        raise ValueError(f"solver='fast' needs loss='squared' and lam > 0 (the certified solver "
                         f"solves its restricted programs exactly only there); got loss={loss!r}, "
                         f"lam={lam}. Use solver='auto' or 'clarabel'.")
    attempts: list[tuple[str, str, float]] = []
    if solver in ("auto", "fast") and fast_ok:
        from altheory.solvers.pilanci_ergen import solve_pilanci_ergen

        pe = solve_pilanci_ergen(X, G, y, lam, loss="squared", tol=tol)
        attempts.append(("altheory-pe", pe.status, pe.solve_time))
        if pe.status == "optimal" or solver == "fast":
            return ConvexResult(objective=pe.objective, status=pe.status, solver="altheory-pe",
                                solve_time=pe.solve_time, weights={"V": pe.V, "W": pe.W},
                                kind=kind, solver_value=pe.dual_objective, attempts=attempts)
    P = G.shape[1]
    A = (G[:, :, None] * X[:, None, :]).reshape(n, P * d)
    S2 = (2.0 * G - 1.0)  # (n, P)

    def build():
        V = cp.Variable((P, d))
        W = cp.Variable((P, d))
        pred = A @ cp.vec(V - W, order="C")
        obj = loss_cvxpy(pred, y, loss) + lam * (cp.sum(cp.norm(V, 2, axis=1))
                                                 + cp.sum(cp.norm(W, 2, axis=1)))
        cons = [cp.multiply(S2, X @ V.T) >= 0, cp.multiply(S2, X @ W.T) >= 0]
        return cp.Problem(cp.Minimize(obj), cons), {"V": V, "W": W}

    def objective(w):
        Vv, Wv = w["V"], w["W"]
        pred = ((X @ (Vv - Wv).T) * G).sum(1)
        return loss_np(pred, y, loss) + lam * float(np.linalg.norm(Vv, axis=1).sum()
                                                    + np.linalg.norm(Wv, axis=1).sum())

    res = solve_with_fallback(build, solver="clarabel" if solver in ("auto", "fast") else solver,
                              objective=objective, kind=kind)
    if attempts:  # the certified solver ran first and did not certify
        res.attempts = attempts + list(res.attempts)
        res.solve_time += sum(t for _, _, t in attempts)
    return res


def prune_blocks(X, G, V, W, *, rtol: float = 1e-7, max_steps: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    r"""Remove blocks of a solution while keeping the prediction and not increasing the penalty.

    The contributions :math:`a_i = D_i X v_i` (and :math:`-D_i X w_i`) of the non-zero blocks are
    vectors in :math:`\mathbb R^n`. While they are linearly dependent, :math:`\sum_i \beta_i a_i = 0`,
    scale block ``i`` by :math:`1 - t\beta_i \ge 0` (sign of :math:`\beta` chosen so that
    :math:`\sum_i \beta_i\|v_i\| \ge 0`): the prediction is unchanged, the penalty does not grow,
    the constraints hold (non-negative scaling), and the first factor to reach zero removes a block.
    The result has at most ``n`` non-zero blocks — the constructive side of
    :math:`m^* \le n + 1` (Pilanci & Ergen 2020). An interior-point solution of a problem with
    several optima is typically *not* sparse, so this step is what makes :math:`m^*` meaningful.

    Parameters
    ----------
    X : array of shape (n, d)
    G : bool array of shape (n, P), the patterns the blocks belong to (``Patterns.G``)
    V, W : arrays of shape (P, d), a feasible solution (``relu_program``'s weights)
    rtol : float in (0, 1), blocks below ``rtol`` times the largest norm are zeroed first
    max_steps : int >= 0, optional (default ``2 P``)

    Returns
    -------
    (V, W) pruned copies, shape (P, d) each.

    Raises
    ------
    ValueError
        On shapes that do not fit together, non-0/1 patterns, or ``rtol``/``max_steps`` out of
        range (the pruning would otherwise mix blocks and patterns silently).

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> G = np.array([[True, True], [False, False], [True, True]])
    >>> V = np.array([[1.0, -1.0], [2.0, -2.0]]); W = np.zeros((2, 2))
    >>> Vp, Wp = prune_blocks(X, G, V, W)
    >>> int((np.linalg.norm(Vp, axis=1) > 0).sum())
    1
    """
    X = check_matrix(X, "X")
    V = check_matrix(V, "V").copy()
    W = check_matrix(W, "W").copy()
    G_in = np.asarray(G)
    if G_in.ndim != 2 or G_in.shape != (X.shape[0], V.shape[0]):
        raise ValueError(f"prune_blocks: G must have shape (n, P) = ({X.shape[0]}, {V.shape[0]}) "
                         f"(the rows of X, the blocks of V); got {G_in.shape}. Pass Patterns.G "
                         "of the patterns the solution was computed on.")
    if G_in.dtype != bool and not np.isin(G_in, (0, 1)).all():
        raise ValueError("prune_blocks: G must hold patterns (bool or 0/1); got other values. "
                         "Pass Patterns.G.")
    if V.shape != W.shape or V.shape[1] != X.shape[1]:
        raise ValueError(f"prune_blocks: V and W must both have shape (P, d) = ({V.shape[0]}, "
                         f"{X.shape[1]}); got {V.shape} and {W.shape}. Pass relu_program's "
                         "weights['V'] and weights['W'].")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 < rtol < 1:
        raise ValueError(f"prune_blocks: rtol must be a float in (0, 1); got {rtol!r}.")
    if max_steps is not None and (isinstance(max_steps, bool)
                                  or not isinstance(max_steps, (int, np.integer))
                                  or max_steps < 0):
        raise ValueError(f"prune_blocks: max_steps must be an int >= 0 or None; got "
                         f"{max_steps!r}.")
    G = G_in.astype(bool)
    P = V.shape[0]
    top = max(float(np.linalg.norm(V, axis=1).max(initial=0)),
              float(np.linalg.norm(W, axis=1).max(initial=0)))
    if top == 0:
        return V, W
    thr = rtol * top
    for M in (V, W):
        M[np.linalg.norm(M, axis=1) <= thr] = 0.0
    steps = 2 * P if max_steps is None else int(max_steps)
    for _ in range(steps):
        nv = np.linalg.norm(V, axis=1)
        nw = np.linalg.norm(W, axis=1)
        act = [(0, i) for i in np.flatnonzero(nv > 0)] + [(1, i) for i in np.flatnonzero(nw > 0)]
        if len(act) <= 1:
            break
        A = np.stack([(G[:, i] * (X @ (V[i] if k == 0 else -W[i]))) for k, i in act], axis=1)
        norms = np.array([nv[i] if k == 0 else nw[i] for k, i in act])
        # scale columns to unit penalty so the rank test is relative
        An = A / norms
        _, sv, vt = np.linalg.svd(An, full_matrices=True)
        tol = max(An.shape) * np.finfo(float).eps * (sv[0] if sv.size else 0.0) * 1e3
        rank = int((sv > tol).sum())
        if rank == len(act):
            break
        beta = vt[-1] / norms  # sum beta_i a_i = 0 (in An's scaling: vt[-1])
        if beta @ norms < 0:
            beta = -beta
        pos = beta > 0
        if not pos.any():
            break
        t = float((1.0 / beta[pos]).min())
        scale = np.clip(1.0 - t * beta, 0.0, None)
        scale[np.argmin(np.where(pos, 1.0 / np.where(pos, beta, 1.0), np.inf))] = 0.0
        for (k, i), c in zip(act, scale):
            if k == 0:
                V[i] *= c
            else:
                W[i] *= c
    return V, W


def program_to_network(V, W, *, rtol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    r"""ReLU network of width :math:`m^*` from a solution: each non-zero block is one neuron,
    :math:`w_{1} = v/\sqrt{\|v\|},\ w_2 = +\sqrt{\|v\|}` (and :math:`-\sqrt{\|w\|}` for ``W``).

    Blocks with norm ``<= rtol * max norm`` are dropped (interior-point solutions are never
    exactly zero). Returns ``(W1 (m*, d), w2 (m*,))``.
    """
    if np.ndim(V) != 2 or np.ndim(W) != 2 or np.shape(V)[1] != np.shape(W)[1]:
        raise ValueError(f"V and W must be arrays of shape (p, d) with the same d; got shapes "
                         f"{np.shape(V)} and {np.shape(W)}. Pass the blocks of relu_program.")
    V = check_matrix(V, "V")
    W = check_matrix(W, "W")
    nv = np.linalg.norm(V, axis=1)
    nw = np.linalg.norm(W, axis=1)
    top = max(float(nv.max(initial=0)), float(nw.max(initial=0)))
    rows, outs = [], []
    for M, nm, sgn in ((V, nv, 1.0), (W, nw, -1.0)):
        keep = nm > rtol * top
        rows.append(M[keep] / np.sqrt(nm[keep])[:, None])
        outs.append(sgn * np.sqrt(nm[keep]))
    return np.concatenate(rows), np.concatenate(outs)


def relu_objective(X, y, W1, w2, lam: float, *, loss: str = "squared") -> float:
    r"""Objective of the two-layer ReLU net :math:`\ell(\sum_j (Xw_{1j})_+ w_{2j})
    + \tfrac\lambda2(\|W_1\|_F^2 + \|w_2\|^2)` (numpy, float64)."""
    if (np.ndim(X) != 2 or np.ndim(W1) != 2 or np.shape(W1)[1] != np.shape(X)[1]
            or np.shape(w2) != np.shape(W1)[:1]):
        raise ValueError(f"relu_objective expects X (n, d), W1 (p, d) and w2 (p,); got shapes "
                         f"{np.shape(X)}, {np.shape(W1)} and {np.shape(w2)}.")
    lam = check_lam(lam)
    X = check_matrix(X, "X")
    pred = np.maximum(X @ np.asarray(W1, np.float64).T, 0.0) @ np.asarray(w2, np.float64)
    return loss_np(pred, np.asarray(y, np.float64), loss) + 0.5 * lam * float(
        np.sum(np.asarray(W1) ** 2) + np.sum(np.asarray(w2) ** 2))
