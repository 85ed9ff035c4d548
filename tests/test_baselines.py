"""Baselines (SGD, momentum, Adam): same objective and init as the alternation, sweeps, best
step size, and a table of bad calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from altheory.alternation import mlp, objective_np
from altheory.floats import assert_close
from altheory.alternation.baselines import Curve, accuracy, best_per_method, sweep, train_baseline


def _data(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, np.tanh(X @ rng.standard_normal((d, 2)))


@pytest.mark.parametrize("method,lr", [("sgd", 0.1), ("momentum", 0.02), ("adam", 0.01)])
@pytest.mark.parametrize("batch", [None, 8])
def test_baseline_decreases_and_logs_the_true_objective(method, lr, batch):
    X, Y = _data()
    model, c = train_baseline(mlp(3, (8,), 2, tau=0.1, seed=0), X, Y, method=method, lr=lr,
                              epochs=15, batch_size=batch, lam=1e-3)
    assert len(c.objective) == 16 and c.batch == ("full" if batch is None else "mini")
    assert c.objective[-1] < c.objective[0]
    assert c.seconds == sorted(c.seconds) and c.epochs == list(range(16))
    Ws = [model[0].weight.detach().numpy(), model[2].weight.detach().numpy()]
    bs = [model[0].bias.detach().numpy(), model[2].bias.detach().numpy()]
    F0 = 0.5 * float(np.mean(Y ** 2))                  # the squared loss at zero output
    assert_close(objective_np(Ws, bs, X, Y, loss="squared", lam=1e-3, tau=0.1)[1], c.objective[-1],
                 scale=F0, what="the logged objective is the network's")


def test_same_seed_same_start_as_the_alternation():
    X, Y = _data()
    _, c = train_baseline(mlp(3, (8,), 2, seed=3), X, Y, epochs=1)
    net = mlp(3, (8,), 2, seed=3)
    Ws = [net[0].weight.detach().numpy(), net[2].weight.detach().numpy()]
    bs = [net[0].bias.detach().numpy(), net[2].bias.detach().numpy()]
    assert_close(c.objective[0], objective_np(Ws, bs, X, Y, loss="squared")[1],
                 scale=0.5 * float(np.mean(Y ** 2)), what="the same start")


def test_divergence_is_flagged_and_ranked_last():
    X, Y = _data()
    _, bad = train_baseline(mlp(3, (8,), 2, seed=0), X * 1e3, Y, method="sgd", lr=10.0, epochs=20)
    assert bad.diverged and bad.final == math.inf
    good = Curve("sgd", 0.01, "full", 0, 0.0, objective=[1.0, 0.5])
    assert best_per_method([bad, good]) == {("sgd", "full", 0.0): 0.01}


def test_sweep_covers_the_grid_and_best_uses_the_median():
    X, Y = _data(n=20)
    curves = sweep(lambda s: mlp(3, (4,), 2, seed=s), X, Y, methods=("adam",),
                   lrs={"adam": (1e-4, 1e-2)}, batch_sizes=(None, 5), epochs={"full": 5, "mini": 2},
                   seeds=(0, 1))
    assert len(curves) == 2 * 2 * 2
    assert {(c.batch, len(c.objective)) for c in curves} == {("full", 6), ("mini", 3)}
    best = best_per_method(curves)
    for (m, b, t), lr in best.items():
        meds = {c.lr: np.median([d.final for d in curves if d.batch == b and d.lr == c.lr])
                for c in curves if c.batch == b}
        assert meds[lr] == min(meds.values())


def test_accuracy_argmax_and_sign():
    assert accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.eye(2)[[1, 1]], "squared") == 0.5
    assert accuracy(np.array([0.3, -2.0]), np.array([1.0, 1.0]), "logistic") == 0.5


@pytest.mark.parametrize("kw,exc,match", [
    ({"method": "rmsprop"}, ValueError, "method"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"loss": "l1"}, ValueError, "loss"),
    ({"lam": -1.0}, ValueError, "lam"),
])
def test_bad_calls(kw, exc, match):
    X, Y = _data(n=8)
    with pytest.raises(exc, match=match):
        train_baseline(mlp(3, (4,), 2), X, Y, **kw)


def test_not_an_mlp():
    with pytest.raises(TypeError, match="nn.Sequential"):
        train_baseline(torch.nn.Linear(3, 2), *_data(n=8))
