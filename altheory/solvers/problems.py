r"""Fixed-support training problems: the data, the support, the loss and the regulariser.

Two-layer fixed support (docs/claims.md C4), gates :math:`G \in \{0,1\}^{n\times p}`,
:math:`D_j = \mathrm{diag}(G_{:,j})`:

.. math::

    P_{nc}:\ \min_{W_1, w_2}\ \ell\Big(\sum_j D_j X w_{1j} w_{2j},\ y\Big)
            + \tfrac{\lambda}{2}\big(\|W_1\|_F^2 + \|w_2\|^2\big),
    \qquad
    P_c:\ \min_{U}\ \ell\Big(\sum_j D_j X u_j,\ y\Big) + \lambda \sum_j \|u_j\|_2 .

The prediction is ``yhat = ((X @ U.T) * G).sum(1)`` with ``U`` of shape (p, d) (row ``j`` is
:math:`u_j`); the factor form uses ``W1`` (p, d) and ``w2`` (p,). The balanced map
:math:`u_j = w_{2j} w_{1j}` is onto, and its right inverse
:math:`w_{1j} = u_j/\sqrt{\|u_j\|},\ w_{2j} = \sqrt{\|u_j\|}` attains
:math:`\tfrac12(\|w_{1j}\|^2 + w_{2j}^2) = \|u_j\|` (AM–GM), so both problems share their optimal
value (a theorem: Haeffele & Vidal 2017; checked numerically by C4 to 1e-8 relative).

:class:`FixedSupportNetwork` wraps a deeper network with a fixed multi-layer support ``S``
(:func:`altheory.support`), for the per-layer problems of C3 and the lifted bound of C7.

The loss is always the one of :mod:`altheory.solvers.losses` (mean over samples).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np

from altheory.solvers.losses import LOSSES, check_loss, check_targets, loss_np, zero_loss

__all__ = ["TwoLayerFixedSupport", "FixedSupportNetwork", "balanced_factors", "factors_to_U",
           "check_matrix", "check_lam", "two_layer_network"]


# The solvers sit above the problem definitions and register their dispatch here on import
# (altheory.solvers.dispatch), so that this module imports no solver.
_SOLVE = None


def _register_solve(fn) -> None:
    global _SOLVE
    _SOLVE = fn


# --------------------------------------------------------------------------------------------
# validation helpers (public: the other modules of this package use them)
# --------------------------------------------------------------------------------------------

def check_matrix(A, name: str, *, ndim: int = 2, dtype=np.float64) -> np.ndarray:
    """Return ``A`` as a C-contiguous float64 (or ``dtype``) array of ``ndim`` dims, all finite.

    Raises TypeError for a non-array-like, ValueError for a wrong number of dims or NaN/Inf.
    """
    if A is None or isinstance(A, (str, bytes, dict)):
        raise TypeError(f"{name} must be an array; got {type(A).__name__}.")
    try:
        import torch

        if isinstance(A, torch.Tensor):
            A = A.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    A = np.ascontiguousarray(np.asarray(A, dtype=dtype))
    if A.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {A.shape}.")
    if dtype is np.float64 and not np.all(np.isfinite(A)):
        raise ValueError(f"{name} contains NaN or Inf; remove or impute those entries.")
    return A


def check_lam(lam) -> float:
    """Validate a weight-decay coefficient :math:`\\lambda \\ge 0`."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.integer, np.floating)):
        raise TypeError(f"lam must be a real number; got {type(lam).__name__}.")
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0; got lam={lam}. Use lam=0 for no "
                         "weight decay.")
    return lam


def check_gates(G, n: int) -> np.ndarray:
    if G is None:
        raise TypeError("G must be a boolean array of shape (n, p); got None.")
    G = np.asarray(G)
    if G.ndim != 2 or G.shape[0] != n:
        raise ValueError(f"G must have shape (n, p) = ({n}, p); got shape {G.shape}.")
    if G.dtype != bool:
        if not np.all(np.isin(G, (0, 1))):
            raise ValueError("G must be boolean (or 0/1); got other values. Use G = (X @ V.T > 0).")
        G = G.astype(bool)
    if G.shape[1] == 0:
        raise ValueError("G must have at least one gate column (p >= 1); got p=0.")
    return np.ascontiguousarray(G)


# --------------------------------------------------------------------------------------------
# balanced factors
# --------------------------------------------------------------------------------------------

def balanced_factors(U) -> tuple[np.ndarray, np.ndarray]:
    r"""Right inverse of :math:`u_j = w_{2j} w_{1j}` that attains the regulariser.

    :math:`w_{1j} = u_j/\sqrt{\|u_j\|}`, :math:`w_{2j} = \sqrt{\|u_j\|}` (zero rows map to zero).

    Parameters
    ----------
    U : ndarray of shape (p, d)

    Returns
    -------
    W1 : ndarray of shape (p, d)
    w2 : ndarray of shape (p,)

    Examples
    --------
    >>> W1, w2 = balanced_factors(np.array([[3.0, 4.0]]))
    >>> w2.tolist(), np.allclose(w2[:, None] * W1, [[3.0, 4.0]])
    ([2.23606797749979], True)
    """
    U = check_matrix(U, "U")
    norms = np.linalg.norm(U, axis=1)
    w2 = np.sqrt(norms)
    W1 = np.zeros_like(U)
    nz = norms > 0
    W1[nz] = U[nz] / w2[nz, None]
    return W1, w2


def factors_to_U(W1, w2) -> np.ndarray:
    r""":math:`u_j = w_{2j} w_{1j}`: ``U = w2[:, None] * W1`` (shapes (p, d), (p,) -> (p, d))."""
    W1 = check_matrix(W1, "W1")
    w2 = check_matrix(w2, "w2", ndim=1)
    if w2.shape[0] != W1.shape[0]:
        raise ValueError(f"w2 must have shape (p,) = ({W1.shape[0]},); got {w2.shape}.")
    return w2[:, None] * W1


# --------------------------------------------------------------------------------------------
# the two-layer fixed-support problem
# --------------------------------------------------------------------------------------------

@dataclass
class TwoLayerFixedSupport:
    r"""Two-layer, scalar-output network with a fixed support (docs/claims.md C4).

    Parameters
    ----------
    X : ndarray of shape (n, d), float64
    G : bool ndarray of shape (n, p); ``G[i, j]`` says whether unit ``j`` is on for sample ``i``.
    y : ndarray of shape (n,); in {-1, +1} for ``logistic`` and ``hinge``.
    loss : {"squared", "logistic", "hinge"}
        Scalar output, so ``softmax`` is rejected.
    lam : float >= 0, weight decay :math:`\lambda`.

    Examples
    --------
    >>> X = np.array([[1.0], [2.0]]); G = np.ones((2, 1), bool); y = np.array([1.0, 2.0])
    >>> P = TwoLayerFixedSupport(X, G, y, "squared", 0.0)
    >>> P.objective(np.array([[1.0]]))
    0.0
    """

    X: np.ndarray
    G: np.ndarray
    y: np.ndarray
    loss: str = "squared"
    lam: float = 0.0

    def __post_init__(self):
        self.X = check_matrix(self.X, "X")
        n = self.X.shape[0]
        if n == 0:
            raise ValueError("X must have at least one sample; got n=0.")
        self.G = check_gates(self.G, n)
        check_loss(self.loss)
        if self.loss == "softmax":
            raise ValueError("TwoLayerFixedSupport has a scalar output; loss='softmax' needs k "
                             f"outputs. Use one of {tuple(l for l in LOSSES if l != 'softmax')}.")
        self.y = check_targets(self.y, self.loss)
        if self.y.shape != (n,):
            raise ValueError(f"y must have shape (n,) = ({n},); got {self.y.shape}.")
        self.lam = check_lam(self.lam)

    # sizes ------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def p(self) -> int:
        return self.G.shape[1]

    @property
    def sizes(self) -> dict[str, Any]:
        return {"n": self.n, "d": self.d, "p": self.p, "loss": self.loss, "lam": self.lam}

    # maps ------------------------------------------------------------------------------
    def design(self) -> np.ndarray:
        r"""The (n, p*d) matrix :math:`A` with ``A @ U.ravel() == predict(U)``:
        :math:`A_{i,(j,:)} = G_{ij} x_i`."""
        return (self.G[:, :, None] * self.X[:, None, :]).reshape(self.n, self.p * self.d)

    def _check_U(self, U) -> np.ndarray:
        U = check_matrix(U, "U")
        if U.shape != (self.p, self.d):
            raise ValueError(f"U must have shape (p, d) = ({self.p}, {self.d}); got {U.shape}.")
        return U

    def predict(self, U) -> np.ndarray:
        """``((X @ U.T) * G).sum(1)``, shape (n,)."""
        U = self._check_U(U)
        return ((self.X @ U.T) * self.G).sum(1)

    def objective(self, U) -> float:
        r"""Convex objective :math:`\ell(\hat y, y) + \lambda\sum_j\|u_j\|_2`."""
        U = self._check_U(U)
        return loss_np(self.predict(U), self.y, self.loss) + self.lam * float(
            np.linalg.norm(U, axis=1).sum())

    def objective_factors(self, W1, w2) -> float:
        r"""Non-convex objective :math:`\ell + \tfrac\lambda2(\|W_1\|_F^2 + \|w_2\|^2)`."""
        U = factors_to_U(W1, w2)
        U = self._check_U(U)
        W1 = np.asarray(W1, np.float64)
        w2 = np.asarray(w2, np.float64)
        return loss_np(self.predict(U), self.y, self.loss) + 0.5 * self.lam * float(
            np.sum(W1 ** 2) + np.sum(w2 ** 2))

    def zero_objective(self) -> float:
        """:math:`F(0)`, the objective of all-zero weights (the normaliser of the gap)."""
        return zero_loss(self.y, self.loss)

    # solving ---------------------------------------------------------------------------
    def solve(self, *, solver: str = "auto", **kwargs):
        """The exact optimum of :math:`P_c`: :func:`altheory.solvers.solve` on this problem.

        ``solver="auto"`` (default) uses the fast certified solver where it applies (``lam > 0``
        and squared or logistic loss) and cvxpy with Clarabel (SCS fallback) otherwise;
        ``"fast"``, ``"clarabel"`` and ``"scs"`` pick one. Keyword arguments go to the solver.
        """
        if _SOLVE is None:  # only reachable when this module is loaded outside its package
            raise RuntimeError("no solver registered; import altheory.solvers first.")
        return _SOLVE(self, solver=solver, **kwargs)

    # construction ----------------------------------------------------------------------
    @classmethod
    def from_network(cls, model, X, y, *, loss: str = "squared", lam: float = 0.0
                     ) -> "TwoLayerFixedSupport":
        r"""The gates of a two-layer PHT network ``Linear(d, p) -> PHT -> Linear(p, 1)`` on ``X``.

        ``G = S(W, X)`` is the support the network itself produces (so the fixed-support
        problem at the network's own weights has the network's own loss). The network must have
        no biases (append a column of ones to ``X`` to model one).

        Returns
        -------
        TwoLayerFixedSupport with ``G`` of shape (n, p).
        """
        import torch
        from torch import nn

        from altheory.nets.support import support

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}. Build "
                            "one with two_layer_network(W1, w2, tau=...).")
        lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if len(lins) != 2 or lins[1].out_features != 1:
            raise ValueError("from_network expects Linear(d, p) -> PHT/ReLU -> Linear(p, 1); got "
                             f"{len(lins)} Linear layers. Use FixedSupportNetwork for deeper nets.")
        if any(l.bias is not None for l in lins):
            raise ValueError("from_network expects Linear layers without bias (bias=False); append "
                             "a column of ones to X to model a first-layer bias.")
        Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
        S = support(model.double(), Xt)
        if len(S) != 1:
            raise ValueError(f"from_network expects one activation layer; got {len(S)}.")
        G = next(iter(S.layers.values())).mask().reshape(Xt.shape[0], -1)
        return cls(Xt.numpy(), G, y, loss, lam)

    @classmethod
    def from_gate_vectors(cls, X, V, y, *, loss: str = "squared", lam: float = 0.0
                          ) -> "TwoLayerFixedSupport":
        r"""Gates from gate vectors: ``G = X @ V.T > 0`` (V of shape (p, d)), the support of a
        ReLU layer with weights ``V``."""
        X = check_matrix(X, "X")
        V = check_matrix(V, "V")
        if V.shape[1] != X.shape[1]:
            raise ValueError(f"V must have shape (p, d) with d = {X.shape[1]}; got {V.shape}.")
        return cls(X, X @ V.T > 0, y, loss, lam)

    def factors_of(self, model) -> tuple[np.ndarray, np.ndarray]:
        """``(W1, w2)`` of a two-layer network (as built by :func:`two_layer_network`)."""
        from torch import nn

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if len(lins) != 2 or lins[0].out_features != self.p or lins[0].in_features != self.d \
                or lins[1].out_features != 1:
            raise ValueError(f"factors_of expects Linear({self.d}, {self.p}) -> PHT -> "
                             f"Linear({self.p}, 1); got Linear layers "
                             f"{[(l.in_features, l.out_features) for l in lins]}.")
        return (lins[0].weight.detach().double().numpy().copy(),
                lins[1].weight.detach().double().numpy().ravel().copy())


def two_layer_network(W1, w2, *, tau: float = 0.0):
    r"""``Linear(d, p, bias=False) -> PHT(tau) -> Linear(p, 1, bias=False)`` in float64.

    Examples
    --------
    >>> import torch
    >>> net = two_layer_network(np.eye(2), np.ones(2))
    >>> net(torch.tensor([[1.0, -2.0]], dtype=torch.float64)).detach().item()
    1.0
    """
    import torch
    from torch import nn

    from altheory.nets.activations import PHT

    W1 = check_matrix(W1, "W1")
    w2 = check_matrix(w2, "w2", ndim=1)
    p, d = W1.shape
    if w2.shape != (p,):
        raise ValueError(f"w2 must have shape (p,) = ({p},), one entry per row of W1; got {w2.shape}.")
    net = nn.Sequential(nn.Linear(d, p, bias=False), PHT(tau), nn.Linear(p, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(W1))
        net[2].weight.copy_(torch.from_numpy(w2[None, :]))
    return net


# --------------------------------------------------------------------------------------------
# deeper fixed-support networks
# --------------------------------------------------------------------------------------------

@dataclass
class FixedSupportNetwork:
    r"""A network with a fixed multi-layer support ``S``: :math:`f_S(x_i; W)` (docs/claims.md C3, C7).

    The objective is :math:`F(W) = \ell(f_S(X; W), Y) + \tfrac\lambda2 \sum_l \|W_l\|_F^2`
    (biases are not decayed).

    At construction ``S`` must be the support of ``model`` (its current weights) on ``X``, checked
    by fingerprints as in :func:`altheory.gated_forward`. After that the support is *held*: the
    model's weights are the problem's variable and may change (``S`` is stored as
    ``S.for_any_weights()``), so :meth:`objective` is :math:`F(W)` at the current weights with
    the original support.

    Parameters
    ----------
    model : nn.Module (float64), whose selection layers ``S`` was computed for.
    S : MultiLayerSupport, from :func:`altheory.support` on ``X``.
    X : ndarray or Tensor of shape (n, ...)
    Y : ndarray of shape (n,) or (n, k), with k the model's outputs per sample.
    loss : one of :data:`altheory.solvers.losses.LOSSES`
    lam : float >= 0
    same_weights : bool, keyword-only, default True
        Require ``S`` to have been recorded with the model's current weights; False builds the
        problem of a support held from other weights on purpose.
    same_batch : bool, keyword-only, default True
        Require ``X`` to be the very batch ``S`` was computed on (a hash of its values).

    Raises
    ------
    UnsupportedModuleError
        The model holds a module without an explicit operator (GELU, Softmax, LayerNorm, ...).
    ValueError
        ``S`` from another architecture, other weights or another batch; ``Y`` with another
        number of rows or outputs than the model's; bad ``loss`` or ``lam``.
    """

    model: Any
    S: Any
    X: Any
    Y: Any
    loss: str = "squared"
    lam: float = 0.0
    _Xt: Any = field(default=None, repr=False)
    same_weights: InitVar[bool] = field(default=True, kw_only=True)
    same_batch: InitVar[bool] = field(default=True, kw_only=True)

    def __post_init__(self, same_weights: bool = True, same_batch: bool = True):
        import torch
        from torch import nn

        from altheory.nets.graph import trace
        from altheory.nets.support import (MultiLayerSupport, _check_eval, _digest,
                                           check_support_for, gated_forward)

        if not isinstance(self.model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(self.model).__name__}.")
        if not isinstance(self.S, MultiLayerSupport):
            raise TypeError(f"S must be a MultiLayerSupport (altheory.support); got "
                            f"{type(self.S).__name__}.")
        for name, v in (("same_weights", same_weights), ("same_batch", same_batch)):
            if not isinstance(v, bool):
                raise TypeError(f"FixedSupportNetwork: {name} must be a bool; got {type(v).__name__}.")
        _check_eval(self.model, "FixedSupportNetwork")
        check_support_for(trace(self.model), self.S, "FixedSupportNetwork",
                          same_weights=same_weights)
        X = self.X.detach().cpu().numpy() if isinstance(self.X, torch.Tensor) else self.X
        X = np.asarray(X, dtype=np.float64)
        if X.ndim < 2 or X.shape[0] != self.S.n or tuple(X.shape[1:]) != self.S.input_shape:
            raise ValueError(f"X must be the batch S was computed on, shape "
                             f"{(self.S.n, *self.S.input_shape)}; got {X.shape}.")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or Inf; supports are only defined for finite inputs.")
        if same_batch and self.S.input_digest not in ("subset", _digest(torch.from_numpy(X))):
            raise ValueError(f"FixedSupportNetwork: X is not the batch S was computed on (same shape "
                             f"{X.shape}, different values). Recompute support(model, X), or pass "
                             "same_batch=False to hold this support on other inputs on purpose.")
        self.X = X
        check_loss(self.loss)
        self.Y = check_targets(self.Y, self.loss)
        if self.Y.shape[0] != X.shape[0]:
            raise ValueError(f"Y must have n={X.shape[0]} rows; got shape {self.Y.shape}.")
        self.lam = check_lam(self.lam)
        self.S = self.S.for_any_weights()  # held from here on: the weights are the variable
        self._Xt = torch.from_numpy(X)
        with torch.no_grad():
            out = gated_forward(self.model, self.S, self._Xt.to(_param_dtype(self.model)))
        k_model = int(np.prod(out.shape[1:])) if out.ndim > 1 else 1
        k_y = int(np.prod(self.Y.shape[1:])) if self.Y.ndim > 1 else 1
        if k_model != k_y:
            raise ValueError(f"Y has {k_y} output(s) per sample but the model has {k_model}; give Y "
                             f"of shape (n,) for k=1 or (n, {k_model}).")

    def output(self):
        """The gated output :math:`f_S(X; W)` as a torch tensor shaped like ``Y``."""
        from altheory.nets.support import gated_forward

        return gated_forward(self.model, self.S, self._Xt.to(_param_dtype(self.model))
                             ).reshape(self.Y.shape)

    def objective_torch(self):
        import torch

        from altheory.solvers.losses import loss_torch

        out = self.output()
        reg = sum((m.weight ** 2).sum() for m in self.model.modules()
                  if hasattr(m, "weight") and isinstance(getattr(m, "weight"), torch.Tensor)
                  and m.weight is not None and m.weight.ndim >= 2)
        return loss_torch(out, torch.from_numpy(self.Y), self.loss) + 0.5 * self.lam * reg

    def objective(self) -> float:
        import torch

        with torch.no_grad():
            return float(self.objective_torch())

    def zero_objective(self) -> float:
        return zero_loss(self.Y, self.loss)


def _param_dtype(model):
    """The dtype of the model's first floating parameter (float64 for a model without one)."""
    import torch

    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float64)
