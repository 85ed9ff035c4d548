"""The losses agree across their three forms (numpy, torch, cvxpy) in float64, also far out in
the tails where a library shortcut (softplus' linear branch above 20) would drop digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from altheory.floats import assert_close
from altheory.solvers.losses import LOSSES, loss_cvxpy, loss_np, loss_torch


def _targets(loss, n, rng):
    if loss in ("logistic", "hinge"):
        return rng.choice([-1.0, 1.0], size=(n, 1))
    if loss == "softmax":
        return np.eye(3)[rng.integers(0, 3, n)]
    return rng.standard_normal((n, 1))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("scale", [1.0, 30.0, 300.0])
def test_loss_numpy_torch_and_cvxpy_agree_in_the_tails(loss, scale):
    rng = np.random.default_rng(7)
    Y = _targets(loss, 12, rng)
    Yhat = scale * rng.standard_normal(Y.shape)
    ref = loss_np(Yhat, Y, loss)
    got = float(loss_torch(torch.from_numpy(Yhat), torch.from_numpy(Y), loss))
    assert_close(got, ref, scale=abs(ref) + scale, what=f"{loss} torch vs numpy at scale {scale}")
    import cvxpy as cp

    v = cp.Variable(Y.shape)
    expr = loss_cvxpy(v, Y, loss)
    v.value = Yhat
    assert_close(float(expr.value), ref, scale=abs(ref) + scale,
                 what=f"{loss} cvxpy vs numpy at scale {scale}")


def test_logistic_torch_is_exact_where_softplus_would_drop_digits():
    """z = 25: log(1 + e^25) = 25 + 1.4e-11; softplus' shortcut returns 25 exactly."""
    Y = torch.tensor([[1.0]], dtype=torch.float64)
    Yhat = torch.tensor([[-25.0]], dtype=torch.float64)
    got = float(loss_torch(Yhat, Y, "logistic"))
    assert got - 25.0 == pytest.approx(np.log1p(np.exp(-25.0)), rel=1e-6)
