"""The certified Pilanci–Ergen solver (C5) against cvxpy/Clarabel, and relu_program's dispatch.

Tolerances (stated once): the certified solver is asked for a relative duality gap ``TOL``; its
objective must match Clarabel's to ``MATCH`` relative (Clarabel's own accuracy at its default
1e-8 tolerances), never be above Clarabel's by more than its own gap, and its dual bound must
stay below Clarabel's objective (weak duality).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altheory.floats import assert_close, assert_leq
from altheory.solvers import fast
from altheory.solvers import pilanci_ergen as pe
from altheory.solvers.arrangements import (enumerate_patterns, program_to_network, prune_blocks,
                                           relu_objective, relu_program, sample_patterns)
from altheory.solvers.pilanci_ergen import solve_pilanci_ergen

TOL = 1e-8
MATCH = 1e-6


def _data(seed, n, d, loss="squared"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    if loss == "logistic":
        y = np.where(y > 0, 1.0, -1.0)
    return X, y


def _check(X, y, lam, P, loss="squared", working_set=None):
    r = solve_pilanci_ergen(X, P.G, y, lam, loss=loss, tol=TOL, working_set=working_set)
    c = relu_program(X, y, lam, P, loss=loss, solver="clarabel")
    assert c.status == "optimal"
    assert r.status == "optimal", (r.rel_gap, r.kkt, r.iterations)
    assert r.rel_gap <= TOL and r.kkt["infeasibility"] <= TOL
    scale = abs(c.objective)
    F0 = 0.5 * float(np.mean(y ** 2))                   # F at 0: the terms the fit cancels
    assert_leq(r.dual_objective, c.objective, scale=F0, what="weak duality")
    assert_leq(r.objective - c.objective, r.gap, scale=F0, what="the gap bounds the excess")
    assert abs(r.objective - c.objective) <= MATCH * scale
    # the blocks satisfy their cone constraints (exactly, up to rounding)
    B = 2.0 * P.G - 1.0
    for M in (r.V, r.W):
        C = B * (X @ M.T)
        assert_leq(0.0, C, scale=np.abs(X).max() * np.abs(M).max() * X.shape[1],
                   what="cone constraints of the blocks")
    # the objective reported is the objective of the returned blocks
    pred = ((X @ (r.V - r.W).T) * P.G).sum(1)
    F = 0.5 * np.mean((pred - y) ** 2) + lam * (np.linalg.norm(r.V, axis=1).sum()
                                                 + np.linalg.norm(r.W, axis=1).sum())
    assert_close(F, r.objective, scale=F0, what="the objective of the returned blocks")
    return r, c


# C5 quick sizes (altheory/claims/c5_relu_convex_program.py) and the thorough ones with d = 3
@pytest.mark.parametrize("n,d,pats,lam", [(12, 2, "exact", 1e-2), (16, 5, 64, 1e-2),
                                          (8, 2, "exact", 1e-3), (16, 3, "exact", 1e-1),
                                          (24, 3, "exact", 1e-2)])
@pytest.mark.parametrize("working_set", [None, True])
def test_c5_pe_matches_clarabel(n, d, pats, lam, working_set):
    """Both paths: the default (one conic solve below max(256, 25 n) patterns) and the working
    set forced."""
    X, y = _data(n * 100 + d, n, d)
    P = enumerate_patterns(X) if pats == "exact" else sample_patterns(X, pats, seed=1)
    r, _ = _check(X, y, lam, P, working_set=working_set)
    if working_set and P.P > 64:
        assert r.iterations["working_set"] < P.P   # the working set was used, and paid


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 14), d=st.integers(1, 3),
       lam=st.sampled_from([1e-3, 1e-2, 0.3]))
def test_c5_property_pe_equals_clarabel(seed, n, d, lam):
    X, y = _data(seed, n, d)
    _check(X, y, lam, enumerate_patterns(X))


def test_pe_gap_bounds_the_excess_of_worse_feasible_points():
    """The certificate of any feasible point bounds its excess over F*: blocks scaled by
    1 + eps stay in their cones (the constraints are homogeneous)."""
    X, y = _data(3, 12, 2)
    P = enumerate_patterns(X)
    lam = 1e-2
    ref = solve_pilanci_ergen(X, P.G, y, lam, tol=1e-11)
    assert ref.status == "optimal"
    Gf = P.G.astype(float)
    for eps in (1e-3, 0.1, -0.5):
        V, W = (1 + eps) * ref.V, (1 + eps) * ref.W
        primal, dual, _ = pe._pe_certificate(X, Gf, y, V, W, lam, "squared")
        F0 = 0.5 * float(np.mean(y ** 2))
        assert_leq(dual, ref.objective, scale=F0, what="a lower bound on F*")
        assert_leq(primal - ref.objective, primal - dual, scale=max(F0, primal),
                   what="the gap bounds the excess")
        assert primal - ref.objective > 0


def test_cone_bound_is_the_support_function():
    """_pe_cone_bound equals max{x.v : Cv >= 0, |v| <= 1} (cvxpy reference), never below it."""
    import cvxpy as cp

    rng = np.random.default_rng(2)
    X = rng.standard_normal((10, 3))
    u = rng.standard_normal(3)
    C = np.where(X @ u >= 0, 1.0, -1.0)[:, None] * X
    for _ in range(5):
        x = rng.standard_normal(3)
        v = cp.Variable(3)
        prob = cp.Problem(cp.Maximize(x @ v), [C @ v >= 0, cp.norm(v) <= 1])
        prob.solve(solver="CLARABEL")
        bound = pe._pe_cone_bound(C, x)
        assert bound >= prob.value - 1e-7
        assert bound <= prob.value + 1e-6


def test_projection_lands_in_the_cone_and_is_nearest():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((15, 3))
    C = np.where(X @ rng.standard_normal(3) >= 0, 1.0, -1.0)[:, None] * X
    for _ in range(5):
        v = rng.standard_normal(3)
        p = pe._pe_project(C, v)
        # in K up to the rounding of p = v + C^T mu (terms of the size of |C| |v| d)
        assert_leq(0.0, C @ p, scale=np.abs(C).max() * np.abs(v).sum(), what="C p >= 0")
        # nearest: no feasible sample is closer
        S = rng.standard_normal((2000, 3))
        S = S[(S @ C.T).min(1) >= 0]
        if S.size:
            assert_leq(np.linalg.norm(p - v), np.linalg.norm(S - v, axis=1).min(),
                       scale=np.linalg.norm(v), what="nearest")


def test_relu_program_auto_uses_the_certified_solver_and_maps_to_a_network():
    X = np.array([[1.0], [-1.0]])
    y = np.array([1.0, 1.0])
    lam = 0.1
    r = relu_program(X, y, lam, enumerate_patterns(X))
    assert r.solver == "altheory-pe" and r.status == "optimal" and r.kind == "global"
    assert r.objective == pytest.approx(2 * lam - 2 * lam ** 2, abs=1e-10)
    assert r.objective - r.solver_value <= TOL * r.objective     # the certified gap
    W1, w2 = program_to_network(*prune_blocks(X, enumerate_patterns(X).G, r.weights["V"],
                                              r.weights["W"]))
    assert_close(relu_objective(X, y, W1, w2, lam), r.objective, scale=0.5 * float(np.mean(y ** 2)),
                 what="the network's objective is the program's")


def test_relu_program_auto_falls_back_to_cvxpy_when_not_certified(monkeypatch):
    X, y = _data(5, 10, 2)
    P = enumerate_patterns(X)
    real = pe.solve_pilanci_ergen

    def uncertified(*a, **kw):
        from dataclasses import replace
        return replace(real(*a, **kw), status="max_iter")

    monkeypatch.setattr(pe, "solve_pilanci_ergen", uncertified)
    r = relu_program(X, y, 1e-2, P)
    assert r.solver == "clarabel" and r.status == "optimal"
    assert r.attempts[0][:2] == ("altheory-pe", "max_iter")
    forced = relu_program(X, y, 1e-2, P, solver="fast")
    assert forced.solver == "altheory-pe" and forced.status == "max_iter" and not forced.verified


def test_relu_program_logistic_goes_to_cvxpy_and_fast_refuses_it():
    X, y = _data(6, 10, 2, "logistic")
    P = enumerate_patterns(X)
    r = relu_program(X, y, 1e-2, P, loss="logistic")
    assert r.solver in ("clarabel", "scs")
    with pytest.raises(ValueError, match="solver='fast' needs loss='squared'"):
        relu_program(X, y, 1e-2, P, loss="logistic", solver="fast")


def test_pe_bad_calls():
    X, y = _data(0, 6, 2)
    G = np.ones((6, 2), bool)
    with pytest.raises(ValueError, match="tol must be"):
        solve_pilanci_ergen(X, G, y, 0.1, tol=0.0)
    with pytest.raises(ValueError, match="max_rounds must be"):
        solve_pilanci_ergen(X, G, y, 0.1, max_rounds=0)
    with pytest.raises(ValueError, match="lam must be > 0"):
        solve_pilanci_ergen(X, G, y, 0.0)


def test_pe_status_is_optimal_exactly_when_the_certificate_meets_tol():
    """One working-set round on an instance that needs several: the gap is above tol and the
    status must say so; with the rounds it needs, the status is optimal."""
    X, y = _data(24 * 100 + 3, 24, 3)
    P = enumerate_patterns(X)
    short = solve_pilanci_ergen(X, P.G, y, 1e-3, max_rounds=1, working_set=True)
    assert short.rel_gap > TOL and short.status == "max_iter" and not short.verified
    full = solve_pilanci_ergen(X, P.G, y, 1e-3, working_set=True)
    assert full.status == "optimal" and full.rel_gap <= TOL
    assert_leq(short.dual_objective, full.objective, scale=0.5 * float(np.mean(y ** 2)),
               what="weak duality")
