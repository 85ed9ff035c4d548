"""Alternation (C9) and its weight steps: designs against the reference operator, exactness of
the per-layer steps (C3), the joint two-layer step (C4), monotonicity of the support-preserving
step (C9), and a table of bad calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from altheory import PHT, layer_operator, support
from altheory.alternation.alternation import (_get_params, _masks, alternate, c8_gaps, exact_layer_step,
                                  forward_np, joint_two_layer_step, layer_design, mlp, mlp_parts,
                                  objective_np, preactivation_design)
from altheory.data import teacher_student
from altheory.floats import assert_close, assert_leq

RTOL = 1e-10


def _setup(seed, widths, bias=True, tau=0.1, n=12, d=3, k=2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    net = mlp(d, widths, k, tau=tau, bias=bias, seed=seed)
    if bias:
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    m.bias.copy_(torch.from_numpy(0.3 * rng.standard_normal(m.bias.shape)))
    parts = mlp_parts(net)
    S = support(net, torch.from_numpy(X))
    Ws, bs = _get_params(parts)
    return net, X, S, Ws, bs, _masks(S, parts)


@pytest.mark.parametrize("seed,widths,bias", [(0, (5,), True), (1, (4, 3), True), (2, (4, 3), False),
                                              (3, (3, 4, 2), True)])
def test_C3_layer_design_matches_reference_layer_operator(seed, widths, bias):
    net, X, S, Ws, bs, masks = _setup(seed, widths, bias)
    for l in range(len(Ws)):
        Phi, o = layer_design(Ws, bs, X, masks, l)
        Phi_ref, o_ref = layer_operator(net, S, l, torch.from_numpy(X))
        scale = max(1.0, np.abs(Phi_ref).max())
        assert np.abs(Phi - Phi_ref).max() <= RTOL * scale
        assert np.abs(o - o_ref).max() <= RTOL * max(1.0, np.abs(o_ref).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_C9_preactivation_design_is_affine_in_theta(seed):
    net, X, S, Ws, bs, masks = _setup(seed, (4, 3, 3))
    rng = np.random.default_rng(seed + 10)
    for l in range(3):
        for m in range(l, 3):
            Psi, q = preactivation_design(Ws, bs, X, masks, l, m)
            W2 = [w.copy() for w in Ws]
            b2 = [b.copy() for b in bs]
            W2[l] = W2[l] + rng.standard_normal(W2[l].shape)
            b2[l] = b2[l] + rng.standard_normal(b2[l].shape)
            theta = np.concatenate([W2[l].ravel(), b2[l]])
            z = forward_np(W2, b2, X, masks=masks)[m].reshape(-1)
            assert np.allclose(Psi @ theta + q, z, rtol=1e-10, atol=1e-10)


def test_C3_exact_layer_step_matches_cvxpy_per_layer():
    from altheory.solvers.dispatch import per_layer

    net, X, S, Ws, bs, masks = _setup(4, (5,), n=20)
    Y = np.random.default_rng(0).standard_normal((20, 2))
    for l in range(2):
        W2, b2, info = exact_layer_step(Ws, bs, X, Y, masks, l, lam=1e-2)
        assert info.status == "optimal"
        F = objective_np(W2, b2, X, Y, loss="squared", lam=1e-2, masks=masks)[1]
        Phi, o = layer_design(Ws, bs, X, masks, l)
        r = per_layer(Phi, o, Y, loss="squared", lam=1e-2, n_weight=Ws[l].size)
        assert r.verified
        Fref = r.objective + 0.5 * 1e-2 * sum(float((W ** 2).sum()) for j, W in enumerate(Ws) if j != l)
        assert abs(F - Fref) <= 1e-7 * max(1.0, abs(Fref))


def test_C3_exact_step_never_above_the_current_fixed_support_objective():
    net, X, S, Ws, bs, masks = _setup(5, (4, 3), n=25, k=1)
    Y = np.random.default_rng(1).standard_normal(25)
    F_prev = objective_np(Ws, bs, X, Y, loss="squared", masks=masks)[1]
    scale = 0.5 * float(np.mean(Y ** 2))   # F at zero output: the terms the fit cancels
    for l in reversed(range(3)):
        Ws, bs, info = exact_layer_step(Ws, bs, X, Y, masks, l)
        F = objective_np(Ws, bs, X, Y, loss="squared", masks=masks)[1]
        assert info.status == "optimal"
        assert_leq(F, F_prev, scale=max(scale, F_prev), what=f"exact step on layer {l}")
        F_prev = F


def test_C4_joint_step_is_the_group_lasso_optimum():
    ts = teacher_student(40, 3, widths=(4,), tau=0.1, seed=0)
    X = np.hstack([ts.X, np.ones((40, 1))])
    y = ts.Y.ravel()
    net = mlp(4, (6,), 1, tau=0.1, bias=False, seed=0)
    parts = mlp_parts(net)
    S = support(net, torch.from_numpy(X))
    Ws, bs = _get_params(parts)
    W2, b2, info = joint_two_layer_step(Ws, bs, X, y, _masks(S, parts), lam=1e-2)
    assert info.status == "optimal"
    from altheory.solvers.convex import group_lasso

    r = group_lasso(X, _masks(S, parts)[0], y, 1e-2)
    F = objective_np(W2, b2, X, y, loss="squared", lam=1e-2, masks=_masks(S, parts))[1]
    assert r.verified and abs(F - r.objective) <= 1e-6 * 0.5 * np.mean(y ** 2)


@pytest.mark.parametrize("tau,widths", [(0.1, (6,)), (0.0, (5,)), (0.2, (4, 3))])
def test_C9_support_preserving_alternation_is_monotone(tau, widths):
    ts = teacher_student(30, 3, widths=(4,), tau=tau, seed=3)
    res = alternate(mlp(3, widths, 1, tau=tau, seed=3), ts.X, ts.Y.ravel(),
                    weight_step="support-preserving", max_rounds=3, epsilon=1e-3)
    statuses = {s for r in res.rounds[1:] for s in r.statuses}
    assert statuses == {"optimal"}
    assert res.is_monotone(1e-9)
    assert res.rounds[-1].objective < res.rounds[0].objective
    if tau > 0:  # the constraints keep z off the threshold: the support cannot move
        assert all(sum(r.flips.values()) == 0 for r in res.rounds)


def test_is_monotone_detects_an_increase():
    ts = teacher_student(30, 3, widths=(4,), tau=0.1, seed=0)
    res = alternate(mlp(3, (5,), 1, tau=0.1, seed=0), ts.X, ts.Y.ravel(), max_rounds=2)
    res.rounds[-1].step_objectives[-1] = res.rounds[0].objective * 2
    assert not res.is_monotone()


@pytest.mark.parametrize("step", ["exact", "descent"])
def test_alternation_logs_every_round(step):
    ts = teacher_student(30, 3, widths=(4,), tau=0.1, seed=1)
    res = alternate(mlp(3, (5,), 1, tau=0.1, seed=1), ts.X, ts.Y.ravel(), weight_step=step,
                    max_rounds=3, descent_steps=10, evaluate=lambda m: {"x": 1.0})
    assert 2 <= len(res.rounds) <= 4
    r = res.rounds[-1]
    assert r.passes > res.rounds[0].passes and r.seconds >= res.rounds[0].seconds
    assert set(r.flips) == {"1"} and r.metrics == {"x": 1.0}
    # the logged true objective is the network's own
    out = res.model(torch.from_numpy(ts.X)).detach().numpy().ravel()
    assert_close(0.5 * np.mean((out - ts.Y.ravel()) ** 2), r.loss,
                 scale=0.5 * float(np.mean(out ** 2 + ts.Y ** 2)), what="the logged loss")
    assert res.stopped in ("max-rounds", "support-stable") or res.stopped.startswith("cycle")


def test_C8_gaps_zero_after_an_exact_layer_step():
    ts = teacher_student(30, 3, widths=(4,), tau=0.1, seed=2)
    res = alternate(mlp(3, (5,), 1, tau=0.1, seed=2), ts.X, ts.Y.ravel(), max_rounds=1)
    g = c8_gaps(res.model, ts.X, ts.Y.ravel())
    assert set(g["layer_status"].values()) == {"optimal"}
    assert all(v >= -1e-9 for v in g["layer_gaps"].values())
    assert g["joint_gap"] is None  # biases present: no group-lasso form


def test_cycle_detection_stops_a_repeating_exact_alternation():
    ts = teacher_student(40, 3, widths=(4,), tau=0.1, seed=0)
    X = np.hstack([ts.X, np.ones((40, 1))])
    res = alternate(mlp(4, (8,), 1, tau=0.1, bias=False, seed=0), X, ts.Y.ravel(), lam=1e-2,
                    max_rounds=30, stop_on_cycle=True)
    assert res.stopped.startswith("cycle-") or res.stopped == "support-stable"


def test_support_digest_sees_every_part_of_the_support():
    """Two supports that differ only in the upper region of a three-state activation (an entry
    moved from the lower to the upper constant) are different supports for the cycle test."""
    import copy
    import dataclasses

    from altheory.alternation.alternation import _support_digest

    net = nn.Sequential(nn.Linear(3, 8), nn.Hardtanh(), nn.Linear(8, 1)).double()
    x = 3.0 * torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    S = support(net, x)
    key, layer = next(iter(S.layers.items()))
    lower = ~layer.mask() & ~layer.upper_mask()                          # (n, 8)
    i, j = np.argwhere(lower)[0]
    up = layer.upper_mask().copy()
    up[i, j] = True
    moved = dataclasses.replace(layer, upper=np.packbits(up.reshape(up.shape[0], -1), axis=-1))
    S2 = copy.copy(S)
    S2.layers = {**S.layers, key: moved}
    assert _support_digest(S) == _support_digest(copy.copy(S))
    assert _support_digest(S2) != _support_digest(S)


X0 = np.zeros((4, 3))
Y0 = np.zeros(4)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: alternate(nn.Linear(3, 1), X0, Y0), TypeError, "nn.Sequential"),
    (lambda: alternate(nn.Sequential(nn.Linear(3, 2).double(), nn.Linear(2, 1).double()), X0, Y0),
     ValueError, "alternate Linear"),
    (lambda: alternate(mlp(3, (2,), 1), X0, Y0, weight_step="newton"), ValueError, "weight_step"),
    (lambda: alternate(mlp(3, (2,), 1, topk=1), X0, Y0, weight_step="support-preserving"),
     ValueError, "top-k"),
    (lambda: alternate(mlp(3, (2,), 1), X0, Y0, max_rounds=0), ValueError, "max_rounds"),
    (lambda: alternate(mlp(3, (2,), 1), X0, Y0, epsilon=-1.0), ValueError, "epsilon"),
    (lambda: alternate(mlp(3, (2,), 1), X0, np.zeros((4, 2))), ValueError, "outputs"),
    (lambda: alternate(mlp(3, (2,), 1), X0, np.zeros(5)), ValueError, "rows"),
    (lambda: alternate(mlp(3, (2,), 1), X0[:, :, None], Y0), ValueError, "shape"),
    (lambda: alternate(mlp(3, (2,), 1).float(), X0, Y0), ValueError, "float64"),
    (lambda: alternate(mlp(3, (2,), 1), X0, Y0, descent_method="bfgs"), ValueError, "descent_method"),
    (lambda: alternate(mlp(3, (2,), 1), X0, Y0, loss="mse"), ValueError, "loss"),
    (lambda: mlp(3, (0,), 1), ValueError, "widths"),
])
def test_bad_calls(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
