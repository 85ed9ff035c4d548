r"""Exact convex programs of fixed-support training, solved with cvxpy (Clarabel, SCS fallback).

Two-layer fixed support as group lasso (docs/claims.md C4):

.. math:: P_c:\ \min_U\ \ell\Big(\sum_j D_j X u_j,\ y\Big) + \lambda\sum_j \|u_j\|_2,

with ``U`` of shape (p, d) and the prediction ``((X @ U.T) * G).sum(1)``
(:class:`altheory.solvers.problems.TwoLayerFixedSupport`). The per-layer program of C3 is
:func:`per_layer`; the Pilanci–Ergen program of C5 lives in :mod:`altheory.solvers.arrangements`; the
lifted bound of C7 in :mod:`altheory.certificates`.

Solver policy
-------------
Open solvers only, float64. Every solve goes through :func:`solve_with_fallback`: the chosen
solver first (Clarabel by default); any status other than ``"optimal"`` (``optimal_inaccurate``,
``infeasible``, ``unbounded``, an exception) is retried with the other solver (SCS); if that
also fails the result carries the failing status, ``verified`` is False, and callers report it as
``solver-<status>`` — never as a pass. Only ``status == "optimal"`` is counted as verified.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from altheory.errors import SolverError
from altheory.solvers.losses import check_loss, loss_cvxpy
from altheory.solvers.problems import TwoLayerFixedSupport, check_lam, check_matrix

__all__ = ["ConvexResult", "SolverName", "SOLVERS", "solve_with_fallback", "group_lasso",
           "per_layer_cvxpy", "solver_options", "reduced_rank_regression", "group_lasso_problem",
           "group_nuclear"]

SolverName = Literal["clarabel", "scs"]
SOLVERS: tuple[str, ...] = ("clarabel", "scs")
ResultKind = Literal["global", "upper-bound", "lower-bound"]


def solver_options(solver: str) -> dict[str, Any]:
    """cvxpy keyword arguments for ``solver``: Clarabel at 1e-8 (gap, feasibility), SCS at 1e-7."""
    if solver == "clarabel":
        # Clarabel's defaults: gap and feasibility tolerances 1e-8 (tighter ones end in
        # "optimal_inaccurate" on well-posed problems more often than they gain digits)
        return {"solver": "CLARABEL", "max_iter": 500}
    elif solver == "scs":
        return {"solver": "SCS", "eps_abs": 1e-7, "eps_rel": 1e-7, "max_iters": 100_000}
    else:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}.")


def _check_solver(solver) -> str:
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a str; got {type(solver).__name__}.")
    s = solver.lower()
    if s not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}.")
    return s


def _check_bool(v, name: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {type(v).__name__} {v!r}.")
    return bool(v)


@dataclass
class ConvexResult:
    r"""The outcome of a convex solve.

    Attributes
    ----------
    objective : float
        Objective at the returned weights (recomputed in numpy when the problem provides it,
        otherwise the solver's value); ``nan`` when no solution came back.
    status : str
        cvxpy status of the last attempt (``"optimal"`` is the only verified one).
    solver : str
        The solver that produced ``status``.
    solve_time : float
        Wall seconds over all attempts (canonicalisation included).
    weights : dict of ndarray
        The solution (e.g. ``{"U": (p, d)}``).
    kind : {"global", "upper-bound", "lower-bound"}
        What the value certifies: the exact optimum of the stated problem, an upper bound (a
        sampled restriction) or a lower bound (a relaxation).
    solver_value : float
        The solver's own objective value.
    attempts : list of (solver, status, seconds)
    """

    objective: float
    status: str
    solver: str
    solve_time: float
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "global"
    solver_value: float = float("nan")
    attempts: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """True only for ``status == "optimal"``."""
        return self.status == "optimal"

    @property
    def U(self) -> np.ndarray:
        return self.weights["U"]

    def raise_for_status(self) -> "ConvexResult":
        """Raise :class:`SolverError` unless the status is optimal; returns self otherwise."""
        if not self.verified:
            raise SolverError(f"convex solve ended with status {self.status!r} after attempts "
                              f"{[(s, st) for s, st, _ in self.attempts]}.")
        return self


def solve_with_fallback(build: Callable[[], tuple[Any, dict[str, Any]]], *,
                        solver: str = "clarabel",
                        objective: Callable[[dict[str, np.ndarray]], float] | None = None,
                        kind: str = "global", fallback: bool = True) -> ConvexResult:
    r"""Solve a cvxpy problem with ``solver``, retrying with the other solver unless optimal.

    Parameters
    ----------
    build : callable returning ``(problem, variables)``
        Builds a fresh ``cvxpy.Problem`` and a dict name -> ``cvxpy.Variable`` (or a callable
        mapping the solved variables to an ndarray). Called once per attempt.
    solver : {"clarabel", "scs"}
        Tried first; the other is the fallback.
    objective : callable, optional
        Recomputes the objective from the weights (numpy, float64).
    kind : {"global", "upper-bound", "lower-bound"}
    fallback : bool, default True
        Retry with the other solver unless optimal (False: one attempt, e.g. for benchmarks).

    Returns
    -------
    ConvexResult
        ``status`` is the first optimal status, else the status of the last attempt.

    Examples
    --------
    >>> import cvxpy as cp
    >>> def build():
    ...     x = cp.Variable()
    ...     return cp.Problem(cp.Minimize(cp.square(x - 1))), {"x": x}
    >>> r = solve_with_fallback(build)
    >>> r.status, round(float(r.weights["x"]), 6)
    ('optimal', 1.0)
    """
    import cvxpy as cp

    first = _check_solver(solver)
    _check_bool(fallback, "fallback")
    if kind not in ("global", "upper-bound", "lower-bound"):
        raise ValueError(f"kind must be 'global', 'upper-bound' or 'lower-bound'; got {kind!r}.")
    order = [first] + ([s for s in SOLVERS if s != first] if fallback else [])
    attempts: list[tuple[str, str, float]] = []
    total = 0.0
    result = None
    for s in order:
        t0 = time.perf_counter()
        prob, variables = build()
        try:
            with warnings.catch_warnings():  # the status is recorded; the warning adds nothing
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(**solver_options(s))
            status = str(prob.status)
        except cp.error.SolverError as e:  # solver crashed or refused the problem
            status = "solver_error"
            _ = e
        except (ValueError, ArithmeticError) as e:  # numerical failure inside the interface
            status = "solver_error"
            _ = e
        dt = time.perf_counter() - t0
        total += dt
        attempts.append((s, status, dt))
        weights = {}
        if status in ("optimal", "optimal_inaccurate"):
            for name, v in variables.items():
                val = v() if callable(v) else v.value
                weights[name] = None if val is None else np.asarray(val, dtype=np.float64)
        sval = float(prob.value) if (prob.value is not None and status != "solver_error") else float("nan")
        obj = sval
        if weights and objective is not None and all(w is not None for w in weights.values()):
            obj = float(objective(weights))
        result = ConvexResult(obj, status, s, total, weights, kind, sval, attempts)
        if status == "optimal":
            break
    result.solve_time = total
    return result


# --------------------------------------------------------------------------------------------
# two-layer fixed support: group lasso (C4)
# --------------------------------------------------------------------------------------------

def group_lasso(X, G, y, lam, *, loss: str = "squared", solver: str = "clarabel",
                fallback: bool = True) -> ConvexResult:
    r"""Exact optimum of the two-layer fixed-support program :math:`P_c` (group lasso).

    .. math:: \min_U\ \ell\big(((XU^\top) \odot G)\mathbf 1,\ y\big) + \lambda\sum_j\|u_j\|_2

    Parameters
    ----------
    X : ndarray of shape (n, d)
    G : bool ndarray of shape (n, p)
    y : ndarray of shape (n,)
    lam : float >= 0
    loss : {"squared", "logistic", "hinge"}
    solver : {"clarabel", "scs"}, the first solver tried (the other is the fallback).
    fallback : bool, default True, retry with the other solver unless optimal.

    Returns
    -------
    ConvexResult
        ``weights["U"]`` of shape (p, d); ``objective`` recomputed in numpy at ``U``.

    Raises
    ------
    TypeError, ValueError
        Invalid inputs (shapes, NaN, ``lam < 0``, unknown loss or solver).

    Notes
    -----
    With ``lam = 0`` and the logistic loss on separable data the infimum (0) is not attained;
    the solver then reports a non-optimal status, which is returned as is.

    Examples
    --------
    >>> X = np.array([[1.0], [2.0]]); y = np.array([1.0, 2.0])
    >>> r = group_lasso(X, np.ones((2, 1), bool), y, 0.0)
    >>> r.status, bool(np.allclose(r.U, [[1.0]], atol=1e-6))
    ('optimal', True)
    """
    problem = TwoLayerFixedSupport(X, G, y, loss, lam)
    return group_lasso_problem(problem, solver=solver, fallback=fallback)


def group_lasso_problem(problem: TwoLayerFixedSupport, *, solver: str = "clarabel",
                        fallback: bool = True) -> ConvexResult:
    """:func:`group_lasso` for a validated :class:`TwoLayerFixedSupport`."""
    import cvxpy as cp

    if not isinstance(problem, TwoLayerFixedSupport):
        raise TypeError(f"problem must be a TwoLayerFixedSupport; got {type(problem).__name__}.")
    _check_solver(solver)
    A = problem.design()
    p, d, lam = problem.p, problem.d, problem.lam

    def build():
        u = cp.Variable(p * d)
        Umat = cp.reshape(u, (p, d), order="C")
        obj = loss_cvxpy(A @ u, problem.y, problem.loss)
        if lam > 0:
            obj = obj + lam * cp.sum(cp.norm(Umat, 2, axis=1))
        return cp.Problem(cp.Minimize(obj)), {"U": lambda: np.asarray(u.value).reshape(p, d)}

    return solve_with_fallback(build, solver=solver, fallback=fallback,
                               objective=lambda w: problem.objective(w["U"]))


# --------------------------------------------------------------------------------------------
# per-layer program (C3)
# --------------------------------------------------------------------------------------------

def per_layer_cvxpy(Phi, offset, Y, *, loss: str = "squared", lam: float = 0.0,
                    n_weight: int | None = None, solver: str = "clarabel") -> ConvexResult:
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
        Weight decay on the first ``n_weight`` entries of :math:`\theta` (the weights, not the
        bias); all of them when ``n_weight`` is None.
    solver : {"clarabel", "scs"}
        The first cvxpy solver tried (the other is the fallback). The fast certified solver and
        the ``"auto"`` rule are in :func:`altheory.solvers.per_layer`.

    Returns
    -------
    ConvexResult with ``weights["theta"]`` of shape (q,).

    Examples
    --------
    >>> Phi = np.eye(2); r = per_layer_cvxpy(Phi, np.zeros(2), np.array([1.0, -1.0]))
    >>> r.status, np.round(r.weights["theta"], 6).tolist()
    ('optimal', [1.0, -1.0])
    """
    import cvxpy as cp

    from altheory.solvers.losses import check_targets, loss_np

    Phi = check_matrix(Phi, "Phi")
    offset = check_matrix(offset, "offset", ndim=1)
    check_loss(loss)
    Y = check_targets(Y, loss)
    lam = check_lam(lam)
    if Phi.shape[0] != Y.size or offset.shape[0] != Y.size:
        raise ValueError(f"Phi must have n*k = {Y.size} rows and offset n*k entries; got Phi "
                         f"{Phi.shape}, offset {offset.shape}.")
    q = Phi.shape[1]
    nw = q if n_weight is None else int(n_weight)
    if not 0 <= nw <= q:
        raise ValueError(f"n_weight must be in [0, {q}]; got {n_weight}.")
    solver = _check_solver(solver)

    def build():
        th = cp.Variable(q)
        pred = cp.reshape(Phi @ th + offset, Y.shape, order="C") if Y.ndim == 2 else Phi @ th + offset
        obj = loss_cvxpy(pred, Y, loss)
        if lam > 0 and nw > 0:
            obj = obj + 0.5 * lam * cp.sum_squares(th[:nw])
        return cp.Problem(cp.Minimize(obj)), {"theta": th}

    def objective(w):
        th = w["theta"]
        return loss_np((Phi @ th + offset).reshape(Y.shape), Y, loss) + 0.5 * lam * float(th[:nw] @ th[:nw])

    return solve_with_fallback(build, solver=solver, objective=objective)


# --------------------------------------------------------------------------------------------
# shared support: reduced-rank regression in closed form (C6)
# --------------------------------------------------------------------------------------------

def reduced_rank_regression(X, Y, r: int) -> ConvexResult:
    r"""Global optimum of :math:`\min_{\mathrm{rank}(B) \le r} \tfrac1{2n}\|XB - Y\|_F^2` (closed form).

    The fitted values :math:`XB` range over the rank-:math:`\le r` matrices in the column space
    of :math:`X`; the best one is the truncated SVD of :math:`P_X Y` (Eckart–Young), reached by
    :math:`B = X^+ (P_X Y)_r`. No solver is involved: ``status`` is ``"optimal"`` and ``solver``
    ``"closed-form"``. This is the global optimum of a deep linear network whose narrowest
    effective width is ``r`` (docs/claims.md C6).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Y : ndarray of shape (n,) or (n, k)
    r : int >= 0, the rank bound (``min(r_l, d, k)`` for a network).

    Returns
    -------
    ConvexResult with ``weights["B"]`` of shape (d, k) and ``objective`` the squared loss.

    Examples
    --------
    >>> X = np.eye(3); Y = np.diag([3.0, 2.0, 1.0])
    >>> round(reduced_rank_regression(X, Y, 2).objective, 12)  # drops the smallest direction
    0.166666666667
    """
    t0 = time.perf_counter()
    X = check_matrix(X, "X")
    Y = np.asarray(Y, dtype=np.float64)
    Y2 = Y.reshape(-1, 1) if Y.ndim == 1 else check_matrix(Y, "Y")
    if Y2.shape[0] != X.shape[0]:
        raise ValueError(f"Y must have n={X.shape[0]} rows; got shape {Y.shape}.")
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
        raise ValueError(f"r must be an int >= 0; got {r!r}.")
    n = X.shape[0]
    Xp = np.linalg.pinv(X)
    fit = X @ (Xp @ Y2)  # P_X Y
    U, s, Vt = np.linalg.svd(fit, full_matrices=False)
    r_eff = min(int(r), s.size)
    fit_r = (U[:, :r_eff] * s[:r_eff]) @ Vt[:r_eff]
    B = Xp @ fit_r
    obj = 0.5 * float(np.sum((X @ B - Y2) ** 2)) / n
    dt = time.perf_counter() - t0
    return ConvexResult(obj, "optimal", "closed-form", dt, {"B": B}, "global", obj,
                        [("closed-form", "optimal", dt)])


# --------------------------------------------------------------------------------------------
# two-layer fixed support, vector output: sum of nuclear norms (lower bound, C4)
# --------------------------------------------------------------------------------------------

def group_nuclear(X, G, Y, lam, *, loss: str = "squared", solver: str = "clarabel") -> ConvexResult:
    r"""Lower bound for the vector-output two-layer fixed-support problem (docs/claims.md C4).

    .. math:: \min_{U_j \in \mathbb R^{k\times d}}\ \ell\Big(\sum_j D_j X U_j^\top,\ Y\Big)
              + \lambda \sum_j \|U_j\|_*

    Unit ``j`` of the network contributes :math:`U_j = w_{2j} w_{1j}^\top` (rank one) and pays
    :math:`\tfrac\lambda2(\|w_{1j}\|^2 + \|w_{2j}\|^2) \ge \lambda\|U_j\|_*`; dropping the rank
    constraint makes this a relaxation (``kind="lower-bound"``), exact when each support pattern
    is carried by at least ``k`` units. For ``k = 1`` it is :func:`group_lasso`.

    Parameters
    ----------
    X : (n, d); G : bool (n, p); Y : (n, k) (one-hot for softmax); lam : float >= 0

    Returns
    -------
    ConvexResult with ``weights["U"]`` of shape (p, k, d).
    """
    import cvxpy as cp

    from altheory.solvers.losses import check_targets, loss_np

    X = check_matrix(X, "X")
    n, d = X.shape
    from altheory.solvers.problems import check_gates

    G = check_gates(G, n)
    check_loss(loss)
    Y = check_targets(Y, loss)
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"Y must have shape (n, k) = ({n}, k); got {Y.shape}. Use Y[:, None] for k=1.")
    lam = check_lam(lam)
    _check_solver(solver)
    p, k = G.shape[1], Y.shape[1]

    def build():
        Us = [cp.Variable((k, d)) for _ in range(p)]
        pred = sum(cp.multiply(G[:, [j]] * np.ones((1, k)), X @ Us[j].T) for j in range(p))
        obj = loss_cvxpy(pred, Y, loss)
        if lam > 0:
            obj = obj + lam * sum(cp.normNuc(U) for U in Us)
        return cp.Problem(cp.Minimize(obj)), {"U": lambda: np.stack([U.value for U in Us])}

    def objective(w):
        U = w["U"]
        pred = np.einsum("nj,jkd,nd->nk", G.astype(float), U, X)
        return loss_np(pred, Y, loss) + lam * float(sum(np.linalg.svd(Uj, compute_uv=False).sum()
                                                        for Uj in U))

    return solve_with_fallback(build, solver=solver, objective=objective, kind="lower-bound")
