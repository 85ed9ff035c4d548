"""Tests of altheory.solvers.convex and altheory.solvers.problems against hand-solvable instances (C4, C3).

Tolerances: solver results are compared to closed forms with atol 1e-6 (Clarabel's gap
tolerance is 1e-9, the map from its residuals to the weights loses a few digits).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altheory.solvers.convex import ConvexResult, group_lasso, solve_with_fallback
from altheory.solvers.dispatch import per_layer
from altheory.errors import SolverError
from altheory.floats import assert_close, assert_leq
from altheory.solvers.problems import (TwoLayerFixedSupport, balanced_factors, factors_to_U,
                               two_layer_network)

TOL = 1e-6


def _soft(c, lam):
    return np.sign(c) * max(abs(c) - lam, 0.0)


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.5, 3.0])
def test_C4_one_dimensional_soft_threshold(lam):
    # d = 1, one gate always on: min 1/(2n)||x u - y||^2 + lam |u|  ->  soft threshold
    rng = np.random.default_rng(1)
    x = rng.standard_normal(30)
    y = 2.0 * x + 0.1 * rng.standard_normal(30)
    n = x.size
    a, c = x @ x / n, x @ y / n
    u_star = _soft(c, lam) / a
    r = group_lasso(x[:, None], np.ones((n, 1), bool), y, lam)
    assert r.status == "optimal" and r.verified
    assert r.U.shape == (1, 1)
    assert abs(r.U[0, 0] - u_star) < TOL
    F_star = 0.5 * np.sum((x * u_star - y) ** 2) / n + lam * abs(u_star)
    assert abs(r.objective - F_star) < 1e-8


@pytest.mark.parametrize("lam", [0.0, 0.05, 0.4, 10.0])
def test_C4_orthogonal_X_group_soft_threshold(lam):
    # X^T X / n = I, one gate on for all samples: u = c * max(0, 1 - lam/||c||), c = X^T y / n
    rng = np.random.default_rng(2)
    n, d = 40, 3
    Q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    X = Q * np.sqrt(n)
    y = rng.standard_normal(n)
    c = X.T @ y / n
    u = c * max(0.0, 1 - lam / np.linalg.norm(c))
    r = group_lasso(X, np.ones((n, 1), bool), y, lam)
    assert r.status == "optimal"
    np.testing.assert_allclose(r.U[0], u, atol=TOL)


def test_C4_disjoint_gates_decouple():
    # gates on disjoint sample sets: each block is its own 1-D least squares problem
    x = np.array([1.0, 2.0, -1.0, 3.0])
    y = np.array([2.0, 4.0, 1.0, -3.0])
    G = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
    r = group_lasso(x[:, None], G, y, 0.0)
    np.testing.assert_allclose(r.U.ravel(), [2.0, -1.0], atol=TOL)
    assert r.objective < 1e-10


@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge"])
@pytest.mark.parametrize("solver", ["clarabel", "scs"])
def test_C4_objective_matches_solver_value_and_balanced_factors(loss, solver):
    rng = np.random.default_rng(3)
    n, d, p = 25, 3, 5
    X = rng.standard_normal((n, d))
    G = X @ rng.standard_normal((d, p)) > 0
    y = rng.standard_normal(n)
    if loss != "squared":
        y = np.where(y > 0, 1.0, -1.0)
    r = group_lasso(X, G, y, 0.1, loss=loss, solver=solver)
    assert r.verified, r.attempts
    assert abs(r.objective - r.solver_value) <= 1e-5 * max(1.0, abs(r.objective))
    P = TwoLayerFixedSupport(X, G, y, loss, 0.1)
    W1, w2 = balanced_factors(r.U)
    assert_close(P.objective_factors(W1, w2), r.objective, scale=P.zero_objective(),
                 what="the balanced factors keep the objective")


def test_C4_clarabel_and_scs_agree():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 4))
    G = X @ rng.standard_normal((4, 6)) > 0
    y = rng.standard_normal(30)
    a = group_lasso(X, G, y, 0.05, solver="clarabel")
    b = group_lasso(X, G, y, 0.05, solver="scs")
    assert a.solver == "clarabel" and b.solver == "scs"
    assert abs(a.objective - b.objective) < 1e-5 * a.objective


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.integers(1, 6), d=st.integers(1, 4),
       lam=st.floats(0.0, 2.0))
def test_C4_balanced_map_keeps_objective(seed, p, d, lam):
    rng = np.random.default_rng(seed)
    n = 12
    X = rng.standard_normal((n, d))
    G = rng.random((n, p)) > 0.5
    y = rng.standard_normal(n)
    U = rng.standard_normal((p, d)) * (rng.random((p, 1)) > 0.3)
    P = TwoLayerFixedSupport(X, G, y, "squared", lam)
    W1, w2 = balanced_factors(U)
    assert_close(factors_to_U(W1, w2), U, what="U from its balanced factors")
    assert_close(P.objective_factors(W1, w2), P.objective(U), scale=P.zero_objective(),
                 what="the balanced factors keep the objective")
    # any other factorisation of U pays at least as much regulariser (AM-GM)
    c = np.exp(rng.standard_normal(p))
    assert_leq(P.objective(U), P.objective_factors(W1 * c[:, None], w2 / c),
               scale=P.zero_objective(), what="AM-GM")


def test_predict_matches_design_and_network():
    import torch

    rng = np.random.default_rng(5)
    X = rng.standard_normal((9, 3))
    W1 = rng.standard_normal((4, 3))
    w2 = rng.standard_normal(4)
    net = two_layer_network(W1, w2)
    y = rng.standard_normal(9)
    P = TwoLayerFixedSupport.from_network(net, X, y)
    np.testing.assert_array_equal(P.G, X @ W1.T > 0)
    U = factors_to_U(W1, w2)
    out = net(torch.from_numpy(X)).detach().numpy().ravel()
    terms = float((np.abs(X @ W1.T) @ np.abs(w2)).max())   # the sums' terms, before cancelling
    assert_close(P.predict(U), out, scale=terms, what="predict")
    assert_close(P.design() @ U.ravel(), out, scale=terms, what="design @ U")


# ---------------------------------------------------------------- solver-status handling

def _infeasible():
    x = cp.Variable()
    return cp.Problem(cp.Minimize(x), [x >= 1, x <= 0]), {"x": x}


def _unbounded():
    x = cp.Variable()
    return cp.Problem(cp.Minimize(x), [x <= 0]), {"x": x}


@pytest.mark.parametrize("build,status", [(_infeasible, "infeasible"), (_unbounded, "unbounded")])
def test_non_optimal_status_is_retried_and_reported(build, status):
    r = solve_with_fallback(build)
    assert isinstance(r, ConvexResult)
    assert [a[0] for a in r.attempts] == ["clarabel", "scs"]  # retried with the other solver
    assert r.status.startswith(status) and not r.verified
    assert r.weights == {}
    with pytest.raises(SolverError):
        r.raise_for_status()


def test_optimal_first_try_is_not_retried():
    r = solve_with_fallback(lambda: (lambda x: (cp.Problem(cp.Minimize(cp.square(x - 2))), {"x": x}))(cp.Variable()),
                            solver="scs")
    assert r.verified and len(r.attempts) == 1 and r.solver == "scs"
    assert abs(float(r.weights["x"]) - 2) < 1e-5


def test_C3_per_layer_least_squares_closed_form():
    rng = np.random.default_rng(6)
    Phi = rng.standard_normal((20, 4))
    off = rng.standard_normal(20)
    Y = rng.standard_normal(20)
    r = per_layer(Phi, off, Y)
    th, *_ = np.linalg.lstsq(Phi, Y - off, rcond=None)
    np.testing.assert_allclose(r.weights["theta"], th, atol=TOL)
    # ridge: (Phi^T Phi / n + lam I) th = Phi^T (Y - off) / n
    lam = 0.3
    r = per_layer(Phi, off, Y, lam=lam)
    th = np.linalg.solve(Phi.T @ Phi / 20 + lam * np.eye(4), Phi.T @ (Y - off) / 20)
    np.testing.assert_allclose(r.weights["theta"], th, atol=TOL)


X0 = np.zeros((3, 2))
G0 = np.ones((3, 2), bool)
y0 = np.zeros(3)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(X=X0, G=G0, y=y0, lam=-1.0), ValueError, "lam must be"),
    (dict(X=X0, G=G0, y=y0, lam="a"), TypeError, "lam must be a real"),
    (dict(X=X0[0], G=G0, y=y0, lam=0.0), ValueError, "X must have 2"),
    (dict(X=X0, G=G0[:2], y=y0, lam=0.0), ValueError, "G must have shape"),
    (dict(X=X0, G=np.full((3, 2), 2), y=y0, lam=0.0), ValueError, "G must be boolean"),
    (dict(X=X0, G=G0, y=np.zeros(4), lam=0.0), ValueError, "y must have shape"),
    (dict(X=X0 + np.nan, G=G0, y=y0, lam=0.0), ValueError, "NaN"),
    (dict(X=X0, G=G0, y=y0, lam=0.0, loss="l1"), ValueError, "loss must be one of"),
    (dict(X=X0, G=G0, y=y0, lam=0.0, loss="softmax"), ValueError, "scalar output"),
    (dict(X=X0, G=G0, y=y0, lam=0.0, loss="hinge"), ValueError, "-1, \\+1"),
    (dict(X=X0, G=G0, y=y0, lam=0.0, solver="mosek"), ValueError, "solver must be one of"),
])
def test_bad_calls(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        group_lasso(**kwargs)


def test_C4_vector_output_nuclear_bound():
    from altheory.solvers.convex import group_nuclear

    rng = np.random.default_rng(8)
    X = rng.standard_normal((20, 3))
    P = TwoLayerFixedSupport.from_gate_vectors(X, rng.standard_normal((4, 3)), rng.standard_normal(20),
                                               lam=0.1)
    a = group_nuclear(X, P.G, P.y[:, None], 0.1)  # k = 1: the group lasso
    b = group_lasso(X, P.G, P.y, 0.1)
    assert a.kind == "lower-bound" and a.verified
    assert abs(a.objective - b.objective) < 1e-6 * b.objective
    Y = rng.standard_normal((20, 2))
    c = group_nuclear(X, P.G, Y, 0.1)
    assert c.verified and c.weights["U"].shape == (4, 2, 3)
    # any network (rank-one U_j) costs at least the bound
    from altheory.descent import MLPObjective, descend

    W1, W2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 4))
    obj = MLPObjective(X, Y, [W1, W2], masks=[P.G], lam=0.1)
    r = descend(obj, obj.theta0(), method="lbfgs", max_iter=300)
    assert r.objective >= c.objective - 1e-7


def test_problem_solve_auto_uses_the_fast_certified_solver_where_it_applies():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    G = X @ rng.standard_normal((3, 6)) > 0
    y = rng.standard_normal(30)
    P = TwoLayerFixedSupport(X, G, y, "squared", 0.05)
    fast, ref = P.solve(), P.solve(solver="clarabel")
    assert fast.solver == "altheory-fast" and fast.status == "optimal" and fast.rel_gap <= 1e-8
    assert ref.status == "optimal"
    assert abs(fast.objective - ref.objective) <= 1e-6 * abs(ref.objective)
    # weak duality: the certified lower bound is never above cvxpy's point (its objective is not
    # compared: both are within their gaps of F*, and either may be the lower)
    assert_leq(fast.dual_objective, ref.objective, scale=P.zero_objective(), what="weak duality")
    P0 = TwoLayerFixedSupport(X, G, y, "squared", 0.0)
    assert P0.solve().solver != "altheory-fast"  # lam = 0: no dual certificate, cvxpy
    with pytest.raises(ValueError, match="solver='fast' needs lam > 0"):
        P0.solve(solver="fast")
    with pytest.raises(ValueError, match="solver must be"):
        P.solve(solver="mosek")
