r"""Training losses, one convention for numpy, torch and cvxpy.

Every loss is a *mean over samples* of a convex per-sample loss of the prediction
:math:`\hat y_i` (scalar or a row of k entries):

=============  ==============================================================  ===============
name           :math:`\ell(\hat Y, Y)`                                          targets
=============  ==============================================================  ===============
``squared``    :math:`\frac{1}{2n}\sum_i \|\hat y_i - y_i\|_2^2`                real, (n,) or (n, k)
``logistic``   :math:`\frac{1}{n}\sum_i \log(1 + e^{-y_i \hat y_i})`            y in {-1, +1}, (n,)
``hinge``      :math:`\frac{1}{n}\sum_i \max(0, 1 - y_i \hat y_i)`              y in {-1, +1}, (n,)
``softmax``    :math:`\frac{1}{n}\sum_i \mathrm{lse}(\hat y_i) - \hat y_{i,y_i}` one-hot (n, k)
=============  ==============================================================  ===============

The training objective of a problem is :math:`F(W) = \ell(f(X; W), Y) + \text{regulariser}`;
the normalised gap of docs/claims.md is :math:`(F - F^*)/F(0)` with :math:`F(0) = \ell(0, Y)`
(see :func:`zero_loss` and :func:`normalised_gap`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["LossName", "LOSSES", "check_loss", "check_targets", "loss_np", "loss_torch",
           "loss_cvxpy", "zero_loss", "normalised_gap"]

LossName = Literal["squared", "logistic", "hinge", "softmax"]
LOSSES: tuple[str, ...] = ("squared", "logistic", "hinge", "softmax")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")
    return loss


def check_targets(Y, loss: str) -> np.ndarray:
    """Validate targets for ``loss``; returns a float64 array. Raises ValueError with the fix."""
    check_loss(loss)
    Y = np.asarray(Y, dtype=np.float64)
    if not np.all(np.isfinite(Y)):
        raise ValueError("targets contain NaN or Inf; remove or impute those samples.")
    if loss in ("logistic", "hinge"):
        if Y.ndim != 1 or not np.all(np.isin(Y, (-1.0, 1.0))):
            raise ValueError(f"loss={loss!r} expects targets of shape (n,) in {{-1, +1}}; got shape "
                             f"{Y.shape} with values {np.unique(Y)[:5]}. Use y = 2*labels - 1.")
    if loss == "softmax":
        if Y.ndim != 2 or not np.all(np.isin(Y, (0.0, 1.0))) or not np.allclose(Y.sum(1), 1):
            raise ValueError(f"loss='softmax' expects one-hot targets of shape (n, k); got shape "
                             f"{Y.shape}. Use np.eye(k)[labels].")
    return Y


def loss_np(Yhat, Y, loss: str) -> float:
    """The loss in numpy (float64)."""
    Yhat = np.asarray(Yhat, dtype=np.float64).reshape(np.shape(Y))
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[0]
    if loss == "squared":
        return float(0.5 * np.sum((Yhat - Y) ** 2) / n)
    if loss == "logistic":
        return float(np.mean(np.logaddexp(0.0, -Y * Yhat)))
    if loss == "hinge":
        return float(np.mean(np.maximum(0.0, 1.0 - Y * Yhat)))
    if loss == "softmax":
        m = Yhat.max(1, keepdims=True)
        lse = (m + np.log(np.exp(Yhat - m).sum(1, keepdims=True))).ravel()
        return float(np.mean(lse - (Yhat * Y).sum(1)))
    raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")


def loss_torch(Yhat, Y, loss: str):
    """The loss in torch (differentiable in ``Yhat``)."""
    import torch

    Yhat = Yhat.reshape(Y.shape)
    n = Y.shape[0]
    if loss == "squared":
        return 0.5 * ((Yhat - Y) ** 2).sum() / n
    if loss == "logistic":
        # log(1 + e^z) exactly: softplus returns z itself above its threshold (20), which drops
        # up to 2e-9 per sample in float64 (log1p(e^-20))
        z = -Y * Yhat
        return torch.logaddexp(torch.zeros_like(z), z).mean()
    if loss == "hinge":
        return torch.clamp(1.0 - Y * Yhat, min=0.0).mean()
    if loss == "softmax":
        return (torch.logsumexp(Yhat, 1) - (Yhat * Y).sum(1)).mean()
    raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")


def loss_cvxpy(Yhat, Y, loss: str):
    """The loss as a cvxpy expression of the affine expression ``Yhat`` (same shape as ``Y``)."""
    import cvxpy as cp

    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[0]
    if loss == "squared":
        return 0.5 * cp.sum_squares(Yhat - Y) / n
    if loss == "logistic":
        return cp.sum(cp.logistic(-cp.multiply(Y, Yhat))) / n
    if loss == "hinge":
        return cp.sum(cp.pos(1 - cp.multiply(Y, Yhat))) / n
    if loss == "softmax":
        return (cp.sum(cp.log_sum_exp(Yhat, axis=1)) - cp.sum(cp.multiply(Yhat, Y))) / n
    raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")


def zero_loss(Y, loss: str) -> float:
    r""":math:`F(0) = \ell(0, Y)`, the objective of the zero predictor (all weights zero)."""
    Y = np.asarray(Y, dtype=np.float64)
    return loss_np(np.zeros_like(Y), Y, loss)


def normalised_gap(F: float, F_star: float, F0: float) -> float:
    r"""docs/claims.md's scale-free gap :math:`(F - F^*)/F(0)`; raises if :math:`F(0) \le 0`."""
    if not F0 > 0:
        raise ValueError(f"F(0) must be > 0 to normalise a gap; got F(0)={F0}. All-zero targets "
                         "with squared loss have nothing to fit.")
    return (float(F) - float(F_star)) / float(F0)
