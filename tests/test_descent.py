"""Tests of altheory.descent and altheory.descent.endpoints (C4 end points, descent vs convex optimum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from altheory.descent import MLPObjective, descend, multi_start
from altheory.descent.endpoints import (EndPoint, classify, classify_endpoint, hessian_extreme_eigs,
                                judge_endpoint)
from altheory.floats import assert_close, assert_leq
from altheory.solvers.losses import normalised_gap
from altheory.solvers.problems import TwoLayerFixedSupport, factors_to_U, two_layer_network


def _instance(seed, n=15, d=2, p=5, lam=0.01, loss="squared"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    G = X @ rng.standard_normal((p, d)).T > 0
    y = rng.standard_normal(n)
    if loss == "logistic":
        y = np.where(y > 0, 1.0, -1.0)
    P = TwoLayerFixedSupport(X, G, y, loss, lam)
    obj = MLPObjective(X, y, [np.zeros((p, d)), np.zeros(p)], masks=[G], loss=loss, lam=lam)
    return P, obj


def _terms(X, W1, w2) -> float:
    """The largest sum of |terms| of a two-layer output: the scale of its rounding."""
    return float((np.abs(X @ W1.T) @ np.abs(w2)).max())


def test_gated_objective_matches_problem_and_true_network_matches_torch():
    P, obj = _instance(0)
    th = obj.init(3)
    W1 = th[:10].numpy().reshape(5, 2)
    w2 = th[10:].numpy()
    assert_close(obj.value(th), P.objective_factors(W1, w2), scale=P.zero_objective(),
                 what="gated objective")
    true = MLPObjective(P.X, P.y, [W1, w2], masks=None, tau=0.0)
    net = two_layer_network(W1, w2)
    out = net(torch.from_numpy(P.X)).detach().numpy().ravel()
    assert_close(true.output(true.theta0()).numpy(), out, scale=_terms(P.X, W1, w2),
                 what="true network output")


def test_linear_regression_all_methods_decrease_and_lbfgs_solves():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(30)
    obj = MLPObjective(X, y, [np.zeros((1, 3))])  # L = 1: f(x) = W x, convex
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    F_star = 0.5 * np.sum((X @ w - y) ** 2) / 30
    th0 = obj.init(0)
    for m in ("gd", "sgd", "adam", "lbfgs"):
        r = descend(obj, th0, method=m, max_iter=200, tol_grad=1e-10)
        assert r.objective < obj.value(th0), m
        assert_leq(F_star, r.objective, scale=0.5 * np.mean(y ** 2), what=f"{m} above F*")
    r = descend(obj, th0, method="lbfgs", max_iter=200, tol_grad=1e-10)
    np.testing.assert_allclose(r.theta, w, atol=1e-8)
    assert r.stopped == "tol"


def test_C4_origin_is_a_saddle_and_lbfgs_end_is_a_global_local_min():
    P, obj = _instance(2, lam=0.0)
    F0 = P.zero_objective()
    ep0 = classify_endpoint(obj, np.zeros(obj.dim), F0=F0)
    # gradient vanishes at zero; the Hessian there is [[0, B], [B^T, 0]] with B != 0
    assert ep0.grad_norm == 0.0 and ep0.kind == "saddle" and ep0.min_eig < 0
    P, obj = _instance(2, lam=0.02)
    res = P.solve()
    r = descend(obj, obj.init(0), method="lbfgs", max_iter=1000, tol_grad=1e-11)
    ep = classify_endpoint(obj, r.theta, F0=P.zero_objective())
    assert ep.kind == "local-min"
    status, gap, _ = judge_endpoint(ep, r.objective, res.objective, P.zero_objective())
    assert status == "pass" and abs(gap) <= 1e-6


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lam=st.sampled_from([0.0, 0.01, 0.1]),
       method=st.sampled_from(["gd", "adam", "lbfgs"]), loss=st.sampled_from(["squared", "logistic"]))
def test_C4_convex_optimum_never_exceeds_descent(seed, lam, method, loss):
    P, obj = _instance(seed % 1000, n=12, p=4, lam=lam, loss=loss)
    res = P.solve()
    if not res.verified:  # logistic, lam = 0, separable: no attained optimum; nothing to compare
        return
    r = descend(obj, obj.init(seed), method=method, max_iter=60)
    assert normalised_gap(r.objective, res.objective, P.zero_objective()) >= -1e-7


def test_hessian_lanczos_matches_dense():
    P, obj = _instance(4, n=20, d=3, p=8, lam=0.05)
    th = obj.init(1).numpy()
    lo_d, hi_d = hessian_extreme_eigs(obj, th)
    lo_l, hi_l = hessian_extreme_eigs(obj, th, dense_max=4)
    assert abs(lo_d - lo_l) < 1e-7 * max(1, abs(hi_d)) and abs(hi_d - hi_l) < 1e-7 * max(1, abs(hi_d))


def test_hessian_of_quadratic():
    A = np.diag([3.0, -1.0, 0.5])
    f = lambda t: 0.5 * t @ torch.from_numpy(A) @ t  # noqa: E731
    assert_close(np.array(hessian_extreme_eigs(f, np.ones(3))), [-1.0, 3.0], what="eigenvalues")


def test_classify_table():
    assert classify(1e-9, 1.0, tol_g=1e-8, tol_h=1e-6) == "local-min"
    assert classify(1e-9, -1e-7, tol_g=1e-8, tol_h=1e-6) == "local-min"
    assert classify(1e-9, -1e-3, tol_g=1e-8, tol_h=1e-6) == "saddle"
    assert classify(1e-3, 1.0, tol_g=1e-8, tol_h=1e-6) == "not-converged"
    assert classify(float("nan"), 1.0, tol_g=1e-8, tol_h=1e-6) == "not-converged"


def test_judge_endpoint_statuses():
    lm = EndPoint("local-min", 1.0, 0.0, 0.0, 1.0, 1e-7, 1e-6)
    assert judge_endpoint(lm, 1.5, 1.0, 1.0)[0] == "fail"          # spurious local minimum
    assert judge_endpoint(lm, 0.5, 1.0, 1.0)[0] == "fail"          # below the optimum
    assert judge_endpoint(lm, 1.0, 1.0, 1.0, star_status="infeasible")[0] == "solver-infeasible"
    assert judge_endpoint(lm, 1.5, 1.0, 1.0, star_kind="lower-bound")[0] == "reported"
    sad = EndPoint("saddle", 1.0, 0.0, -1.0, 1.0, 1e-7, 1e-6)
    assert judge_endpoint(sad, 1.5, 1.0, 1.0)[0] == "saddle"


def test_multi_start_is_seeded():
    _, obj = _instance(5)
    a = multi_start(obj, methods=("gd",), seeds=(0,), max_iter=20)
    b = multi_start(obj, methods=("gd",), seeds=(0,), max_iter=20)
    np.testing.assert_array_equal(a[0].theta, b[0].theta)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(method="newton"), ValueError, "method must be one of"),
    (dict(theta0=np.zeros(3)), ValueError, "theta0 must have shape"),
    (dict(max_iter=-1), ValueError, "max_iter"),
    (dict(tol_grad=0.0), ValueError, "tol_grad"),
])
def test_descend_bad_calls(kwargs, exc, match):
    _, obj = _instance(6)
    with pytest.raises(exc, match=match):
        descend(obj, **kwargs)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(weights=np.zeros((2, 2))), TypeError, "weights must be"),
    (dict(weights=[np.zeros((3, 2)), np.zeros((1, 4))]), ValueError, "columns"),
    (dict(masks=[np.ones((4, 3), bool)]), ValueError, "masks\\[0\\] must have shape"),
    (dict(masks=[np.full((5, 3), 0.7)]), ValueError, "masks\\[0\\] must be a support"),
    (dict(masks=[np.array([["a"] * 3] * 5)]), ValueError, "masks\\[0\\] must be a support"),
    (dict(masks=[np.full((5, 3), np.nan)]), ValueError, "masks\\[0\\] must be a support"),
    (dict(trainable=[5]), ValueError, "trainable"),
    (dict(tau=-1.0), ValueError, "tau"),
])
def test_objective_bad_calls(kwargs, exc, match):
    base = dict(weights=[np.zeros((3, 2)), np.zeros(3)], masks=None)
    base.update(kwargs)
    X = np.zeros((5, 2))
    with pytest.raises(exc, match=match):
        MLPObjective(X, np.zeros(5), base.pop("weights"), **base)


def test_factor_map_consistency():
    P, obj = _instance(7)
    th = obj.init(0).numpy()
    U = factors_to_U(th[:10].reshape(5, 2), th[10:])
    assert_close(P.predict(U), obj.output(th).numpy(), scale=_terms(P.X, th[:10].reshape(5, 2), th[10:]),
                 what="predictions")


@pytest.mark.parametrize("loss,k", [("squared", 2), ("squared", 1), ("logistic", 1), ("hinge", 1),
                                    ("softmax", 3)])
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("trainable", [None, [1], [0, 2]])
def test_numpy_gradient_matches_torch_reference(loss, k, gated, with_bias, trainable):
    rng = np.random.default_rng(9)
    n, d = 15, 3
    X = rng.standard_normal((n, d))
    Y = {"squared": rng.standard_normal((n, k)) if k > 1 else rng.standard_normal(n),
         "logistic": np.sign(rng.standard_normal(n)), "hinge": np.sign(rng.standard_normal(n)),
         "softmax": np.eye(3)[rng.integers(0, 3, n)]}[loss]
    Ws = [rng.standard_normal((4, d)), rng.standard_normal((5, 4)), rng.standard_normal((k, 5))]
    M = [rng.random((n, 4)) > 0.5, rng.random((n, 5)) > 0.5] if gated else None
    B = [rng.standard_normal(4), rng.standard_normal(5), rng.standard_normal(k)] if with_bias else None
    obj = MLPObjective(X, Y, Ws, masks=M, biases=B, loss=loss, lam=0.1, trainable=trainable, tau=0.2)
    th = obj.init(1) + 0.3
    for idx in (None, torch.tensor([0, 3, 5])):
        x = th.clone().requires_grad_(True)
        f = obj(x) if idx is None else obj(x, idx)
        (g,) = torch.autograd.grad(f, x)
        f2, g2 = obj.value_and_grad(th, idx)
        assert_close(f.item(), f2, what=f"objective, {loss}")
        assert_close(g2, g.numpy(), what=f"gradient, {loss}")


# ---- polish: balancing and saddle-free Newton --------------------------------------------------

def _two_layer(lam, seed=0):
    from altheory.descent.descent import MLPObjective

    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((15, 3)), rng.standard_normal(15)
    G = X @ rng.standard_normal((5, 3)).T > 0
    return MLPObjective(X, y, [np.zeros((5, 3)), np.zeros(5)], masks=[G], lam=lam)


def test_balance_keeps_the_function_and_never_raises_the_objective():
    from altheory.descent.descent import balance

    for lam in (0.0, 1e-2):
        obj = _two_layer(lam)
        th = obj.init(3).numpy()
        th[:15] *= 7.0  # unbalance: large incoming, small outgoing weights
        tb = balance(obj, th)
        out = obj.output(th).detach().numpy()
        assert_close(obj.output(tb).detach().numpy(), out,
                     scale=_terms(obj.X.numpy(), th[:15].reshape(5, 3), th[15:]), what="output kept")
        assert_leq(obj.value(tb), obj.value(th), what="balancing never raises the objective")
        W1, w2 = tb[:15].reshape(5, 3), tb[15:]
        assert_close(np.linalg.norm(W1, axis=1), np.abs(w2), what="balanced")


def test_balanced_representative_only_when_the_objective_is_unchanged():
    from altheory.descent.descent import balanced_representative

    th = _two_layer(1e-2).init(3).numpy()
    th[:15] *= 7.0
    assert np.array_equal(balanced_representative(_two_layer(1e-2), th), th)  # lam > 0: another point
    assert not np.array_equal(balanced_representative(_two_layer(0.0), th), th)  # lam = 0: same point


def test_newton_polish_reaches_a_stationary_point_and_escapes_a_saddle():
    from altheory.descent.descent import newton_polish, polish
    from altheory.descent.endpoints import classify_endpoint

    obj = _two_layer(1e-2)
    r = newton_polish(obj, obj.init(0).numpy() * 0.3, max_iter=100)
    assert np.isfinite(r.objective) and r.stopped in ("tol", "max_iter", "line-search")
    p = polish(obj, obj.init(1).numpy())
    ep = classify_endpoint(obj, p.theta, F0=obj.zero_objective())
    assert ep.kind == "local-min" and p.method == "lbfgs+newton" and "Newton" in p.message
    # zero is a saddle of the two-layer objective (lam small): the polish leaves it
    q = polish(obj, np.full(obj.dim, 1e-3))
    assert q.objective < obj.value(np.full(obj.dim, 1e-3)) - 1e-6
