"""Tests of conditions, certificates, arrangements (C5) and reduced-rank regression (C6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from altheory.nets.activations import PHT
from altheory.solvers.arrangements import (Patterns, cover_count, enumerate_patterns, program_to_network,
                                   prune_blocks, relu_objective, relu_program, sample_patterns)
from altheory.certificates import certify, lifted_bound, lifted_patterns
from altheory.floats import assert_close, assert_leq
from altheory.certificates.conditions import (check_problem, deep_support_conditions, rank,
                                 shared_support_conditions, support_consistency)
from altheory.solvers.convex import group_lasso, reduced_rank_regression
from altheory.descent import MLPObjective, descend
from altheory.solvers.problems import TwoLayerFixedSupport, balanced_factors


def _by_name(conds):
    return {c.name: c for c in conds}


# ------------------------------------------------------------------ C6 conditions and RRR

def test_C6_conditions_hand_cases():
    X = np.eye(3)
    c = _by_name(shared_support_conditions(X, np.diag([3.0, 2.0, 1.0])[:, :2], [2]))
    assert c["Kawaguchi (2016)"].holds and c["Laurent-von Brecht (2018)"].holds
    assert c["rank bound r = min(r_l, d, k)"].value == 2
    c = _by_name(shared_support_conditions(X, np.eye(3)[:, :2], [1]))
    assert not c["distinct eigenvalues of Y^T P_X Y"].holds  # Sigma = diag(1, 1)
    assert not c["Kawaguchi (2016)"].holds
    assert not c["Laurent-von Brecht (2018)"].holds  # width 1 < min(d, k) = 2
    c = _by_name(shared_support_conditions(np.ones((4, 2)), np.arange(4.0), [3]))
    assert c["rank X full"].value == 1 and not c["rank X full"].holds
    masks = [np.tile([True, False, True], (4, 1)), np.array([[1, 0], [0, 1], [1, 1], [1, 0]], bool)]
    c = _by_name(shared_support_conditions(np.eye(4)[:, :2], np.arange(4.0), [2, 1], masks=masks))
    assert c["shared support"].holds is False


def test_C6_reduced_rank_regression_closed_form():
    X = np.eye(3)
    Y = np.diag([3.0, 2.0, 1.0])
    F0 = 0.5 * np.sum(Y ** 2) / 3                   # F at B = 0: the terms the fit cancels
    assert_close(reduced_rank_regression(X, Y, 2).objective, 1.0 / 6, scale=F0, what="rank 2")
    assert_close(reduced_rank_regression(X, Y, 3).objective, 0.0, scale=F0, what="rank 3")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    Y = rng.standard_normal((30, 3))
    F0 = 0.5 * np.sum(Y ** 2) / 30
    objs = np.array([reduced_rank_regression(X, Y, r).objective for r in range(4)])
    assert_leq(objs[1:], objs[:-1], scale=F0, what="the optimum falls with the rank")
    B, *_ = np.linalg.lstsq(X, Y, rcond=None)
    assert_close(objs[3], 0.5 * np.sum((X @ B - Y) ** 2) / 30, scale=F0, what="full rank")
    r = reduced_rank_regression(X, Y, 1)
    assert np.linalg.matrix_rank(r.weights["B"]) == 1 and r.status == "optimal"


def test_C6_deep_linear_descent_reaches_rrr():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    Y = X @ rng.standard_normal((3, 2)) + 0.1 * rng.standard_normal((30, 2))
    masks = [np.tile(np.array([1, 1, 0, 1], bool), (30, 1))]  # shared, 3 active >= min(d, k)
    obj = MLPObjective(X, Y, [np.zeros((4, 3)), np.zeros((2, 4))], masks=masks)
    run = descend(obj, obj.init(0), method="lbfgs", max_iter=2000, tol_grad=1e-11)
    assert run.objective == pytest.approx(reduced_rank_regression(X, Y, 2).objective, abs=1e-9)


# ------------------------------------------------------------------ C7 replication, lifting

def test_C7_replication_condition_and_lifted_patterns():
    base = np.array([[1, 0], [1, 1], [0, 1]], bool)
    assert deep_support_conditions(np.repeat(base, 2, axis=1), 2)[0].holds
    assert not deep_support_conditions(base, 2)[0].holds
    s1 = np.array([[1, 0], [1, 1], [0, 1]], bool)
    s2 = np.array([[1], [1], [0]], bool)
    P = lifted_patterns([s1, s2])
    assert sorted(map(tuple, P.T.astype(int).tolist())) == [(0, 1, 0), (1, 1, 0)]


def test_C7_lifted_bound_below_descent_and_certify():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 2))
    y = rng.standard_normal(40)
    s1 = X @ rng.standard_normal((4, 2)).T > 0
    s2 = rng.random((40, 3)) > 0.5
    obj = MLPObjective(X, y, [np.zeros((4, 2)), np.zeros((3, 4)), np.zeros(3)], masks=[s1, s2])
    run = descend(obj, obj.init(0), method="lbfgs", max_iter=300)
    c = certify(obj, run.theta)
    assert c.kind == "lower-bound" and c.status == "certified"
    assert c.bound <= c.objective + 1e-9
    assert c.bound == pytest.approx(lifted_bound(X, [s1, s2], y).objective)
    with pytest.raises(ValueError, match="lam=0"):
        certify(MLPObjective(X, y, [np.zeros((4, 2)), np.zeros((3, 4)), np.zeros(3)],
                             masks=[s1, s2], lam=0.1), run.theta)


def test_C4_certify_two_layer():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20, 2))
    G = X @ rng.standard_normal((5, 2)).T > 0
    y = rng.standard_normal(20)
    P = TwoLayerFixedSupport(X, G, y, "squared", 0.05)
    U = group_lasso(X, G, y, 0.05).U
    c = certify(P, balanced_factors(U))
    assert c.kind == "optimum" and abs(c.gap) < 1e-8
    c0 = certify(P, np.zeros((5, 2)))
    assert c0.gap == pytest.approx(1 - c.bound / P.zero_objective())
    with pytest.raises(TypeError, match="TwoLayerFixedSupport, an MLPObjective"):
        certify("problem", U)


def test_condition_checker_dispatch_and_consistency():
    P = TwoLayerFixedSupport(np.eye(2), np.ones((2, 1), bool), np.ones(2), "hinge", 0.1)
    c = _by_name(check_problem(P))
    assert c["differentiable loss (end-point classification)"].holds is False
    with pytest.raises(TypeError):
        check_problem(object())
    from altheory.nets.support import support

    net = nn.Sequential(nn.Linear(2, 3), PHT(0.1), nn.Linear(3, 1)).double()
    X = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    S = support(net, X)
    c = _by_name(support_consistency(net, S, X))
    assert c["support consistent"].holds and c["margin > 0"].value > 0
    with torch.no_grad():
        net[0].bias += 10.0  # every unit on: the old support is no longer the network's
    c = _by_name(support_consistency(net, S, X))
    assert c["support consistent"].holds is False and c["support consistent"].value > 0
    assert rank(np.zeros((2, 2))) == 0


# ------------------------------------------------------------------ C5 arrangements

def test_C5_cover_count_and_small_arrangements():
    assert cover_count(3, 2) == 6 and cover_count(5, 1) == 2 and cover_count(4, 3) == 14
    P = enumerate_patterns(np.array([[1.0], [-2.0], [3.0]]))
    assert P.exact and sorted(map(tuple, P.G.T.astype(int).tolist())) == [(0, 1, 0), (1, 0, 1)]
    assert enumerate_patterns(np.zeros((3, 2))).P == 1
    with pytest.raises(ValueError, match="max_candidates"):
        enumerate_patterns(np.random.default_rng(0).standard_normal((50, 4)), max_candidates=100)


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 12), d=st.integers(1, 3))
def test_C5_enumeration_is_complete_and_exact(seed, n, d):
    X = np.random.default_rng(seed).standard_normal((n, d))
    P = enumerate_patterns(X)
    r = min(n, d)
    assert P.exact and P.P == cover_count(n, r) == P.expected
    known = set(map(bytes, P.G.T.astype(np.uint8)))
    S = sample_patterns(X, 3000, seed=seed)
    assert all(bytes(c) in known for c in S.G.T.astype(np.uint8))
    assert S.exact is False


def test_C5_hand_solved_program():
    # x = +1, -1, y = 1, 1: one neuron per side, a = 1 - 2 lam each, F* = 2 lam - 2 lam^2
    X = np.array([[1.0], [-1.0]])
    y = np.array([1.0, 1.0])
    lam = 0.1
    r = relu_program(X, y, lam, enumerate_patterns(X))
    assert r.status == "optimal" and r.kind == "global"
    assert r.objective == pytest.approx(2 * lam - 2 * lam ** 2, abs=1e-7)
    W1, w2 = program_to_network(r.weights["V"], r.weights["W"])
    assert w2.size == 2
    assert relu_objective(X, y, W1, w2, lam) == pytest.approx(r.objective, abs=1e-7)
    rs = relu_program(X, y, lam, sample_patterns(X, 10))
    assert rs.kind == "upper-bound"


def test_C5_prune_keeps_objective_and_bounds_width():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((10, 2))
    y = rng.standard_normal(10)
    P = enumerate_patterns(X)
    r = relu_program(X, y, 0.01, P)
    V, W = prune_blocks(X, P.G, r.weights["V"], r.weights["W"])
    W1, w2 = program_to_network(V, W)
    assert w2.size <= 10 + 1
    assert abs(relu_objective(X, y, W1, w2, 0.01) - r.objective) < 1e-6 * np.mean(y ** 2)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(loss="softmax"), ValueError, "scalar output"),
    (dict(patterns="all"), TypeError, "patterns must be a Patterns"),
    (dict(lam=-1.0), ValueError, "lam must be"),
    (dict(patterns=Patterns(np.ones((3, 1), bool), True, "enumerated")), ValueError, "n=2 rows"),
])
def test_relu_program_bad_calls(kwargs, exc, match):
    X = np.array([[1.0], [-1.0]])
    args = dict(X=X, y=np.ones(2), lam=0.1, patterns=enumerate_patterns(X))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        relu_program(**args)


def test_reduced_rank_regression_bad_calls():
    with pytest.raises(ValueError, match="r must be"):
        reduced_rank_regression(np.eye(2), np.eye(2), -1)
    with pytest.raises(ValueError, match="rows"):
        reduced_rank_regression(np.eye(2), np.eye(3), 1)


def test_C3_certify_fixed_support_network_layer():
    from altheory.solvers.problems import FixedSupportNetwork
    from altheory.nets.support import support

    g = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 5), PHT(0.0), nn.Linear(5, 2)).double()
    X = torch.randn(15, 2, dtype=torch.float64, generator=g)
    Y = np.random.default_rng(1).standard_normal((15, 2))
    S = support(net, X)
    fsn = FixedSupportNetwork(net, S, X, Y, "squared", 0.01)
    c = certify(fsn, layer="2")
    assert c.kind == "layer-optimum" and c.status == "certified" and c.gap >= -1e-9
    # set the last layer to its optimum: the gap closes
    th = c.result.weights["theta"]
    with torch.no_grad():
        net[2].weight.copy_(torch.from_numpy(th[:10].reshape(2, 5)))
        net[2].bias.copy_(torch.from_numpy(th[10:]))
    assert abs(certify(fsn, layer="2").gap) < 1e-7
    with pytest.raises(ValueError, match="layer="):
        certify(fsn)
