r"""Alternation between the weights and the support (docs/claims.md C8, C9).

.. math::

    S^{t} = S(W^{t}) \quad\text{(support step: a PHT forward pass)},\qquad
    W^{t+1} \in \arg\min_W\ \ell\big(f_{S^t}(X; W), Y\big) + \tfrac\lambda2\sum_l\|W_l\|_F^2
    \quad\text{(weight step)},

for a multi-layer perceptron ``Linear -> PHT -> ... -> Linear`` (``nn.Sequential``, float64;
biases optional, never decayed). The weight step is one of

``"exact"``
    Two layers, scalar output, no biases: the whole fixed-support problem at once, as the group
    lasso :math:`P_c` of C4 (:func:`altheory.solvers.fast.solve_group_lasso`, certified duality
    gap), mapped back by balanced factors — its global optimum (THEOREM, Haeffele & Vidal 2017;
    needs ``lam > 0``). Otherwise a sweep over the layers, each the convex per-layer problem of C3
    solved exactly: closed form (normal equations) for the squared loss, cvxpy (Clarabel, SCS
    fallback) for the other losses.
``"descent"``
    ``descent_steps`` iterations of a local method (``"lbfgs"``, ``"adam"``, ``"gd"``) on the
    fixed-support objective, all layers at once.
``"support-preserving"``
    A sweep over the layers, each a convex program with the consistency constraints of C9 on
    every held layer :math:`m \ge l` (the layers whose pre-activations depend on layer ``l``):
    :math:`z^m_{ij} \ge \tau + \varepsilon` where :math:`s^m_{ij} = 1` and
    :math:`z^m_{ij} \le \tau - \varepsilon'` where :math:`s^m_{ij} = 0`. Pre-activations are affine
    in :math:`\theta_l` (:func:`preactivation_design`), so the program is convex (a QP for the
    squared loss). THEOREM (C9): the current weights are feasible, so the true PHT objective never
    increases. The slacks are :math:`\varepsilon = \min(\text{epsilon}, \mu_{on}/2)` and, for
    :math:`\tau > 0`, :math:`\varepsilon' = \min(\text{epsilon}, \mu_{off}/2)` with
    :math:`\mu_{on}, \mu_{off}` the current margins on each side (so the current point stays
    feasible); for ReLU (:math:`\tau = 0`) :math:`\varepsilon' = 0` suffices because the
    activation is continuous. Restricted to small MLPs: the program has one constraint per
    (sample, unit) of every held layer and a dense design of ``n*k`` rows.

The loop stops when the support stops changing *and* the objective under it stops decreasing
(relative ``tol``), or after ``max_rounds``. Every round logs the true loss and objective, the
fixed-support objective after the weight step, support flips per layer, the margin, whether
the support held during the step is still consistent, data passes and seconds
(:class:`RoundLog`). Top-k PHT is accepted by ``"exact"`` and ``"descent"`` (the support comes
from :func:`altheory.support`) but not by ``"support-preserving"`` (its consistency constraints
are not linear).

Measured behaviour (C9 thorough report, 16 teacher–student instances; reported, not asserted):
the support-preserving step never changes the support (its slack keeps every kept entry above
the threshold, for ReLU too), so it converges to the best weights *inside* the initial support's
region; the ``"exact"`` step moves far and often cycles between supports (period 2 or 3; stop it
with ``stop_on_cycle=True``) with large jumps of the true objective; the ``"descent"`` step
settles more often (it stopped at a stable support in 2 of 16 runs within 24 rounds, and C8's
runs reach one in 7 of 32 within 60).

Data passes ("epochs") are counted as: one per support step; one per layer solved in closed
form or by cvxpy (the design is built in one pass); one per objective or gradient evaluation of
a descent step; one per group-lasso solve (counted once, though the solver touches the data
many times — its seconds are the honest measure).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import numpy as np
import scipy.linalg
import torch
from torch import nn

from altheory.nets.activations import PHT
from altheory.descent.descent import _in_single_thread
from altheory.solvers.losses import check_loss, check_targets, loss_cvxpy, loss_np, loss_torch, zero_loss
from altheory.solvers.problems import check_lam
from altheory.nets.support import MultiLayerSupport, support

__all__ = ["WeightStep", "WEIGHT_STEPS", "RoundLog", "AlternationResult", "mlp", "mlp_parts",
           "preactivation_design", "layer_design", "forward_np", "objective_np",
           "fixed_support_objective", "exact_layer_step", "support_preserving_layer_step",
           "descent_step", "joint_two_layer_step", "alternate", "c8_gaps"]

WeightStep = Literal["exact", "descent", "support-preserving"]
WEIGHT_STEPS: tuple[str, ...] = ("exact", "descent", "support-preserving")
DescentName = Literal["lbfgs", "adam", "gd"]
DESCENT_METHODS: tuple[str, ...] = ("lbfgs", "adam", "gd")

# Largest dense design (entries) a cvxpy per-layer or support-preserving program may build.
MAX_DESIGN_ENTRIES = 20_000_000


# --------------------------------------------------------------------------------------------
# the MLP and its parts
# --------------------------------------------------------------------------------------------

def mlp(d: int, widths: tuple[int, ...], k: int = 1, *, tau: float = 0.0, topk: int | None = None,
        bias: bool = True, seed: int = 0) -> nn.Sequential:
    r"""``Linear(d, h_1) -> PHT -> ... -> Linear(h_{L-1}, k)`` in float64, seeded init.

    Entries :math:`W_l \sim \mathcal N(0, 1/h_{l-1})`, biases zero: the same init for the
    alternation and for the baselines (:mod:`altheory.alternation.baselines`) given the same ``seed``.

    Examples
    --------
    >>> net = mlp(3, (4,), 2, tau=0.1, seed=0)
    >>> [type(m).__name__ for m in net]
    ['Linear', 'PHT', 'Linear']
    """
    for name, v in (("d", d), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {name}={v!r}.")
    widths = tuple(widths)
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in widths):
        raise ValueError(f"widths must be a tuple of positive ints; got {widths!r}.")
    g = torch.Generator().manual_seed(int(seed))
    dims = (int(d), *map(int, widths), int(k))
    layers: list[nn.Module] = []
    for j in range(len(dims) - 1):
        lin = nn.Linear(dims[j], dims[j + 1], bias=bias).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(dims[j + 1], dims[j], generator=g, dtype=torch.float64)
                             / math.sqrt(dims[j]))
            if bias:
                lin.bias.zero_()
        layers.append(lin)
        if j < len(dims) - 2:
            layers.append(PHT(tau, k=topk, dim=1))
    return nn.Sequential(*layers)


@dataclass
class _Parts:
    linears: list[nn.Linear]
    acts: list[nn.Module]
    keys: list[str]          # support keys of the activations, in order
    tau: float
    topk: bool

    @property
    def L(self) -> int:
        return len(self.linears)


def mlp_parts(model: nn.Module) -> _Parts:
    """Validate an MLP ``Linear (-> PHT/ReLU -> Linear)*`` and return its layers and threshold.

    Raises
    ------
    TypeError
        Not an ``nn.Sequential``.
    ValueError
        Other module kinds, wrong alternation, mixed thresholds, or non-float64 weights.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP (Linear, PHT, ..., Linear); got "
                        f"{type(model).__name__}. Build one with altheory.alternation.alternation.mlp().")
    mods = list(model)
    kinds = ["lin" if isinstance(m, nn.Linear) else
             "act" if isinstance(m, (PHT, nn.ReLU)) else type(m).__name__ for m in mods]
    ok = len(mods) % 2 == 1 and all(k == ("lin" if j % 2 == 0 else "act") for j, k in enumerate(kinds))
    if not ok:
        raise ValueError(f"model must alternate Linear and PHT/ReLU, starting and ending with "
                         f"Linear; got {kinds}. Flatten the inputs to (n, d) beforehand.")
    linears = mods[0::2]
    acts = mods[1::2]
    taus = {0.0 if isinstance(a, nn.ReLU) else (a.tau if a.k is None else -1.0) for a in acts}
    topk = any(isinstance(a, PHT) and a.k is not None for a in acts)
    if len(taus) > 1 and not topk:
        raise ValueError(f"every activation must have the same threshold; got {sorted(taus)}.")
    for l, lin in enumerate(linears):
        if lin.weight.dtype != torch.float64:
            raise ValueError(f"layer {l} has dtype {lin.weight.dtype}; the theory checks run in "
                             "float64. Call model.double().")
    tau = 0.0 if topk or not acts else float(taus.pop())
    keys = [str(2 * j + 1) for j in range(len(acts))]
    return _Parts(linears, acts, keys, tau, topk)


def _get_params(parts: _Parts) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    Ws = [l.weight.detach().numpy().copy() for l in parts.linears]
    bs = [None if l.bias is None else l.bias.detach().numpy().copy() for l in parts.linears]
    return Ws, bs


def _set_params(parts: _Parts, Ws, bs) -> None:
    with torch.no_grad():
        for lin, W, b in zip(parts.linears, Ws, bs):
            lin.weight.copy_(torch.from_numpy(np.asarray(W, np.float64)))
            if lin.bias is not None:
                lin.bias.copy_(torch.from_numpy(np.asarray(b, np.float64)))


def _masks(S: MultiLayerSupport, parts: _Parts) -> list[np.ndarray]:
    return [S[key].mask().reshape(S.n, -1) for key in parts.keys]


# --------------------------------------------------------------------------------------------
# numpy forward passes and affine designs
# --------------------------------------------------------------------------------------------

def forward_np(Ws, bs, X: np.ndarray, *, tau: float = 0.0, masks=None):
    r"""Pre-activations and output of the MLP in float64.

    With ``masks`` (list of (n, h_l) bool) the gated network :math:`f_S`; without, the true PHT
    network (threshold ``tau``; top-k needs ``masks``).

    Returns
    -------
    Z : list of the L pre-activations ``z^l`` (n, h_l); ``Z[-1]`` is the output (n, k).
    """
    a = X
    Z = []
    for l, W in enumerate(Ws):
        z = a @ W.T
        if bs[l] is not None:
            z = z + bs[l]
        Z.append(z)
        if l < len(Ws) - 1:
            m = (z > tau) if masks is None else masks[l]
            a = np.where(m, z, 0.0)
    return Z


def _reg(Ws, lam: float) -> float:
    return 0.5 * lam * float(sum(np.sum(W * W) for W in Ws)) if lam > 0 else 0.0


def objective_np(Ws, bs, X, Y, *, loss: str, lam: float = 0.0, tau: float = 0.0,
                 masks=None) -> tuple[float, float]:
    r"""``(loss, objective)`` of the true network (``masks=None``) or the gated one.

    objective = loss + :math:`\tfrac\lambda2\sum_l\|W_l\|_F^2`.
    """
    out = forward_np(Ws, bs, X, tau=tau, masks=masks)[-1]
    val = loss_np(out.reshape(Y.shape), Y, loss)
    return val, val + _reg(Ws, lam)


def fixed_support_objective(model: nn.Module, S: MultiLayerSupport, X, Y, *, loss: str = "squared",
                            lam: float = 0.0) -> float:
    r"""The fixed-support objective :math:`\ell(f_S(X; W), Y) + \tfrac\lambda2\sum_l\|W_l\|^2`."""
    parts = mlp_parts(model)
    Ws, bs = _get_params(parts)
    Xn = _as_np(X)
    return objective_np(Ws, bs, Xn, np.asarray(Y, np.float64), loss=loss, lam=lam,
                        masks=_masks(S, parts))[1]


def _downstream(Ws, masks, l: int, upto: int, n: int) -> np.ndarray:
    r""":math:`P_i = W_{upto} D^{upto-1}_i \cdots W_{l+1} D^l_i`, shape (n, h_upto, h_l).

    ``upto == l`` gives the identity. Layers are 0-based: ``Ws[l]`` is :math:`W_{l+1}`.
    """
    h_up = Ws[upto].shape[0]
    if upto == l:
        return np.broadcast_to(np.eye(h_up), (n, h_up, h_up))
    P = np.broadcast_to(Ws[upto], (n, *Ws[upto].shape)).copy()
    for m in range(upto - 1, l - 1, -1):
        P = P * masks[m][:, None, :]
        if m > l:
            P = P @ Ws[m]
    return P


def _layer_input(Ws, bs, X, masks, l: int) -> np.ndarray:
    if l == 0:
        return X
    Z = forward_np(Ws[:l], bs[:l], X, masks=masks)
    return np.where(masks[l - 1], Z[l - 1], 0.0)


def preactivation_design(Ws, bs, X, masks, l: int, upto: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Node ``upto``'s pre-activation as an affine function of :math:`\theta_l`.

    .. math:: z^{upto}_i = \Psi_i\,\theta_l + q_i,\qquad
              \Psi_i = P_i\,(I_{h_l} \otimes \tilde a_i^\top),\quad
              P_i = W_{upto} D^{upto-1}_i \cdots W_{l+1} D^l_i,

    with :math:`\tilde a_i` the gated input of layer ``l`` and :math:`\theta_l =
    (\mathrm{vec}(W_l), b_l)` (row-major ``W.ravel()``, then the bias when it exists) — the
    layout of :func:`altheory.layer_operator`. ``upto = L-1`` (0-based last layer) is the output,
    and then this is the per-layer design of C3; ``upto = l`` is the layer's own pre-activation.
    MLP-specific and batched (one pass over the samples); tested against
    :func:`altheory.layer_operator`.

    Parameters
    ----------
    Ws, bs : lists of the weights (h_l, h_{l-1}) and biases (h_l,) or None, float64.
    X : ndarray of shape (n, d)
    masks : list of L-1 bool ndarrays of shape (n, h_l), the fixed support.
    l, upto : 0-based layer indices, ``l <= upto``.

    Returns
    -------
    Psi : ndarray of shape (n*h_upto, q), rows sample-major.
    q0 : ndarray of shape (n*h_upto,)
    """
    if not 0 <= l <= upto < len(Ws):
        raise ValueError(f"need 0 <= l <= upto < L={len(Ws)}; got l={l}, upto={upto}.")
    n = X.shape[0]
    a = _layer_input(Ws, bs, X, masks, l)
    P = _downstream(Ws, masks, l, upto, n)                       # (n, h_up, h_l)
    h_up, h_l = P.shape[1:]
    Psi = (P[:, :, :, None] * a[:, None, None, :]).reshape(n * h_up, h_l * a.shape[1])
    if bs[l] is not None:
        Psi = np.hstack([Psi, P.reshape(n * h_up, h_l)])
    theta = _theta(Ws, bs, l)
    z = forward_np(Ws, bs, X, masks=masks)[upto].reshape(-1)
    return Psi, z - Psi @ theta


def layer_design(Ws, bs, X, masks, l: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The per-layer design of C3, :math:`f_S(x_i) = \Phi_i\theta_l + o_i` (rows sample-major)."""
    return preactivation_design(Ws, bs, X, masks, l, len(Ws) - 1)


def _theta(Ws, bs, l: int) -> np.ndarray:
    return Ws[l].ravel() if bs[l] is None else np.concatenate([Ws[l].ravel(), bs[l]])


def _unpack(theta, Ws, bs, l: int):
    Ws = list(Ws)
    bs = list(bs)
    nw = Ws[l].size
    Ws[l] = np.asarray(theta[:nw]).reshape(Ws[l].shape).copy()
    if bs[l] is not None:
        bs[l] = np.asarray(theta[nw:]).copy()
    return Ws, bs


# --------------------------------------------------------------------------------------------
# weight steps
# --------------------------------------------------------------------------------------------

@dataclass
class StepInfo:
    """What one layer's (or one joint) weight step did."""

    layer: int | str
    status: str          # "optimal", a cvxpy/fast-solver status, or "descent"
    seconds: float
    passes: int
    detail: dict = field(default_factory=dict)


def _normal_equations(Ws, bs, X, Y, masks, l: int, lam: float):
    """(H, g) of the squared-loss per-layer problem in the (r, c~) layout, built without Phi."""
    n = X.shape[0]
    L = len(Ws)
    a = _layer_input(Ws, bs, X, masks, l)
    if bs[l] is not None:
        a = np.hstack([a, np.ones((n, 1))])
    c = a.shape[1]
    R = _downstream(Ws, masks, l, L - 1, n)                      # (n, k, h)
    h = R.shape[2]
    out = forward_np(Ws, bs, X, masks=masks)[-1]
    # offset o_i = out_i - R_i z^l_i
    zl = a @ np.hstack([Ws[l], bs[l][:, None]]).T if bs[l] is not None else a @ Ws[l].T
    o = out - np.einsum("ikh,ih->ik", R, zl)
    Yk = Y.reshape(n, -1)
    G = np.einsum("ikr,iks->irs", R, R).reshape(n, h * h)
    AA = (a[:, :, None] * a[:, None, :]).reshape(n, c * c)
    H = (G.T @ AA).reshape(h, h, c, c).transpose(0, 2, 1, 3).reshape(h * c, h * c) / n
    rhs = np.einsum("ikr,ik->ir", R, Yk - o)
    g = (rhs.T @ a).reshape(h * c) / n
    if lam > 0:
        reg = np.zeros((h, c))
        reg[:, : Ws[l].shape[1]] = 1.0
        H[np.diag_indices_from(H)] += lam * reg.ravel()
    return H, g, h, c


def exact_layer_step(Ws, bs, X, Y, masks, l: int, *, loss: str = "squared", lam: float = 0.0,
                     solver: str = "clarabel"):
    r"""Solve the convex per-layer problem of C3 exactly for layer ``l`` (0-based).

    .. math:: \min_{\theta_l}\ \ell(\Phi\theta_l + o, Y) + \tfrac\lambda2\|W_l\|_F^2

    Squared loss: closed form from the normal equations (never forming :math:`\Phi`), solved by
    Cholesky, or by a symmetric eigendecomposition (minimum-norm solution) when that fails or
    leaves a relative residual above 1e-10; status ``"optimal"``
    when the relative residual of the normal equations is <= 1e-8, ``"inaccurate"`` otherwise.
    Other losses: :func:`altheory.solvers.convex.per_layer` (cvxpy) on the dense design.

    Returns
    -------
    Ws, bs : the updated lists (unchanged when the solve is not optimal)
    info : StepInfo
    """
    t0 = time.perf_counter()
    if loss == "squared":
        H, g, h, c = _normal_equations(Ws, bs, X, Y, masks, l, lam)
        th, res = None, math.inf
        try:  # positive definite (the usual case): Cholesky, ~10x faster than eigh
            th = scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, check_finite=False), g)
            res = float(np.linalg.norm(H @ th - g) / max(np.linalg.norm(g), 1e-300))
        except np.linalg.LinAlgError:
            pass
        if not res <= 1e-10:  # singular or ill-conditioned: minimum-norm solution by eigh
            e, V = np.linalg.eigh(H)
            cut = max(float(e.max()), 0.0) * H.shape[0] * np.finfo(np.float64).eps
            einv = np.where(e > cut, 1.0 / np.where(e > cut, e, 1.0), 0.0)
            th = V @ (einv * (V.T @ g))
            res = float(np.linalg.norm(H @ th - g) / max(np.linalg.norm(g), 1e-300))
        status = "optimal" if res <= 1e-8 else "inaccurate"
        M = th.reshape(h, c)
        W = M[:, : Ws[l].shape[1]]
        theta = W.ravel() if bs[l] is None else np.concatenate([W.ravel(), M[:, -1]])
        detail = {"residual": res}
    else:
        from altheory.solvers.dispatch import per_layer

        Phi, o = layer_design(Ws, bs, X, masks, l)
        _check_design_size(Phi, "the per-layer cvxpy program")
        r = per_layer(Phi, o, Y, loss=loss, lam=lam, n_weight=Ws[l].size, solver=solver)
        status = r.status
        theta = r.weights.get("theta") if r.verified else None
        detail = {"solver": r.solver, "objective": r.objective}
    if status == "optimal" and theta is not None:
        Ws, bs = _unpack(theta, Ws, bs, l)
    return Ws, bs, StepInfo(l, status, time.perf_counter() - t0, 1, detail)


def _check_design_size(Phi: np.ndarray, what: str) -> None:
    if Phi.size > MAX_DESIGN_ENTRIES:
        raise ValueError(f"{what} would use a dense design of {Phi.shape[0]} x {Phi.shape[1]} "
                         f"entries (> {MAX_DESIGN_ENTRIES}); expected a small MLP. Use "
                         "weight_step='exact' with loss='squared' or weight_step='descent' for "
                         "large problems, or fewer samples.")


def _side_margins(Z, masks, tau: float) -> tuple[float, float]:
    """(min z - tau over kept entries, min tau - z over dropped entries) of the held layers."""
    on, off = math.inf, math.inf
    for z, m in zip(Z, masks):
        if m.any():
            on = min(on, float((z[m] - tau).min()))
        if (~m).any():
            off = min(off, float((tau - z[~m]).min()))
    return on, off


def _preserving_slacks(Zs_held, masks_held, tau: float, epsilon: float) -> tuple[float, float]:
    r"""The slacks :math:`(\varepsilon, \varepsilon')` of the module docstring: ``epsilon`` capped
    at half the current margin on each side, so the current weights stay feasible; no slack on
    the dropped side for ReLU (``tau = 0``)."""
    on, off = _side_margins(Zs_held, masks_held, tau)
    eps_on = min(float(epsilon), 0.5 * on) if math.isfinite(on) else float(epsilon)
    eps_on = max(eps_on, 0.0)
    eps_off = 0.0
    if tau > 0:
        eps_off = max(min(float(epsilon), 0.5 * off), 0.0) if math.isfinite(off) else float(epsilon)
    return eps_on, eps_off


def _consistency_constraints(Ws, bs, X, masks, l: int, held: list[int], tau: float, eps_on: float,
                             eps_off: float) -> list[tuple[np.ndarray, np.ndarray]]:
    r"""The consistency constraints of C9 on :math:`\theta_l`, one ``(C_m, d_m)`` per held layer
    ``m``, read ``C_m @ theta >= d_m``: :math:`z^m \ge \tau + \varepsilon` on kept entries and
    :math:`-z^m \ge -(\tau - \varepsilon')` on dropped ones (pre-activations from
    :func:`preactivation_design`)."""
    cons_parts = []
    for m in held:
        Psi, q0 = preactivation_design(Ws, bs, X, masks, l, m)
        s = masks[m].reshape(-1)
        # sign * (Psi theta + q0) >= bound, with sign +1 on kept entries and -1 on dropped ones
        sign = np.where(s, 1.0, -1.0)
        bound = np.where(s, tau + eps_on, -(tau - eps_off))
        cons_parts.append((sign[:, None] * Psi, bound - sign * q0))
    return cons_parts


def support_preserving_layer_step(Ws, bs, X, Y, masks, l: int, *, tau: float, loss: str = "squared",
                                  lam: float = 0.0, epsilon: float = 1e-3,
                                  solver: str = "clarabel"):
    r"""Per-layer convex solve with the consistency constraints of C9 (support preserved).

    .. math::

        \min_{\theta_l}\ \ell(\Phi\theta_l + o, Y) + \tfrac\lambda2\|W_l\|^2\ \ \text{s.t.}\
        \Psi^m\theta_l + q^m \ge \tau + \varepsilon\ (s^m = 1),\
        \Psi^m\theta_l + q^m \le \tau - \varepsilon'\ (s^m = 0),\ \ m = l, \dots, L-1,

    with the slacks of the module docstring. ``masks`` must be the support the current weights
    produce (consistent), so the current :math:`\theta_l` is feasible.

    Returns
    -------
    Ws, bs, info : the updated weights when cvxpy's status is optimal (else unchanged), and a
        :class:`StepInfo` whose ``detail`` holds the slacks used.
    """
    import cvxpy as cp

    from altheory.solvers.convex import solve_with_fallback

    t0 = time.perf_counter()
    L = len(Ws)
    Phi, o = layer_design(Ws, bs, X, masks, l)
    held = list(range(l, L - 1))
    Zs = forward_np(Ws, bs, X, masks=masks)
    eps_on, eps_off = _preserving_slacks([Zs[m] for m in held], [masks[m] for m in held], tau,
                                         epsilon)
    cons_parts = _consistency_constraints(Ws, bs, X, masks, l, held, tau, eps_on, eps_off)
    Y = np.asarray(Y, np.float64)
    total = Phi.size + sum(C.size for C, _ in cons_parts)
    if total > MAX_DESIGN_ENTRIES:
        _check_design_size(np.empty((total, 1)), "the support-preserving program")
    C = np.vstack([c for c, _ in cons_parts]) if cons_parts else None
    d_ = np.concatenate([d for _, d in cons_parts]) if cons_parts else None
    q = Phi.shape[1]
    nw = Ws[l].size
    th_old = _theta(Ws, bs, l)

    def build():
        th = cp.Variable(q)
        th.value = th_old
        pred = Phi @ th + o
        pred = cp.reshape(pred, Y.shape, order="C") if Y.ndim == 2 else pred
        obj = loss_cvxpy(pred, Y, loss)
        if lam > 0:
            obj = obj + 0.5 * lam * cp.sum_squares(th[:nw])
        cons = [C @ th >= d_] if C is not None else []
        return cp.Problem(cp.Minimize(obj), cons), {"theta": th}

    r = solve_with_fallback(build, solver=solver)
    detail = {"eps_on": eps_on, "eps_off": eps_off, "constraints": 0 if C is None else C.shape[0],
              "solver": r.solver, "active": 0}
    if r.verified and C is not None:
        detail["active"] = _active_constraints(C, d_, r.weights["theta"])
    if r.verified:
        Ws, bs = _unpack(r.weights["theta"], Ws, bs, l)
    return Ws, bs, StepInfo(l, r.status, time.perf_counter() - t0, 1, detail)


def _active_constraints(C: np.ndarray, d_: np.ndarray, theta) -> int:
    """How many of ``C @ theta >= d_`` bind: slack within ``1e-7`` of the bounds' scale."""
    slack = C @ np.asarray(theta, np.float64) - d_
    scale = max(1.0, float(np.abs(d_).max()))
    return int((slack <= 1e-7 * scale).sum())


def _torch_forward(params, X: torch.Tensor, *, tau: float, masks=None) -> torch.Tensor:
    L = len(params) // 2
    a = X
    for l in range(L):
        W, b = params[2 * l], params[2 * l + 1]
        z = a @ W.T
        if b is not None:
            z = z + b
        if l < L - 1:
            m = (z > tau).detach() if masks is None else masks[l]
            a = torch.where(m, z, torch.zeros((), dtype=z.dtype))
        else:
            a = z
    return a


def _leaf_params(Ws, bs) -> list[torch.Tensor | None]:
    """``[W_1, b_1, W_2, b_2, ...]`` as torch leaves that require grad (None for a missing bias)."""
    params = []
    for W, b in zip(Ws, bs):
        params.append(torch.tensor(W, requires_grad=True))
        params.append(None if b is None else torch.tensor(b, requires_grad=True))
    return params


def _lbfgs_steps(leaves, F, *, steps: int, lr: float | None, tol_grad: float) -> None:
    """torch L-BFGS with strong Wolfe line search: ``steps`` iterations at most (lr 1.0)."""
    opt = torch.optim.LBFGS(leaves, lr=1.0 if lr is None else lr, max_iter=steps,
                            max_eval=int(steps * 1.25) + 1, tolerance_grad=tol_grad,
                            tolerance_change=0.0, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v = F()
        v.backward()
        return v

    opt.step(closure)


def _adam_steps(leaves, F, *, steps: int, lr: float | None) -> None:
    """``steps`` full-batch Adam steps (lr 1e-2 by default)."""
    opt = torch.optim.Adam(leaves, lr=1e-2 if lr is None else lr)
    for _ in range(steps):
        opt.zero_grad()
        F().backward()
        opt.step()


def _gd_steps(leaves, F, *, steps: int, lr: float | None, tol_grad: float) -> None:
    """``steps`` full-batch gradient steps with Armijo backtracking (first trial step ``lr``,
    default 1.0, doubled after each accepted step); stops early when the gradient norm is at
    most ``tol_grad``."""
    step = 1.0 if lr is None else lr
    for _ in range(steps):
        for p in leaves:
            p.grad = None
        f = F()
        f.backward()
        gn2 = float(sum((p.grad ** 2).sum() for p in leaves))
        if math.sqrt(gn2) <= tol_grad:
            break
        old = [p.detach().clone() for p in leaves]
        while step > 1e-20:
            with torch.no_grad():
                for p, o_ in zip(leaves, old):
                    p.copy_(o_ - step * p.grad)
                fc = float(F())
            if fc <= float(f) - 0.5 * step * gn2:
                break
            step *= 0.5
        step *= 2.0


@_in_single_thread
def descent_step(Ws, bs, X, Y, masks, *, loss: str = "squared", lam: float = 0.0,
                 steps: int = 50, method: str = "lbfgs", lr: float | None = None,
                 tol_grad: float = 1e-10):
    r"""``steps`` iterations of a local method on the fixed-support objective (all layers).

    ``lbfgs``: torch L-BFGS with strong Wolfe line search (lr 1.0); ``adam``: full-batch Adam
    (lr 1e-2 by default); ``gd``: full-batch gradient descent with Armijo backtracking.

    Returns
    -------
    Ws, bs, info : ``info.detail`` has the final gradient norm; ``info.passes`` the number of
        full-batch objective/gradient evaluations.
    """
    if method not in DESCENT_METHODS:
        raise ValueError(f"descent method must be one of {DESCENT_METHODS}; got {method!r}.")
    t0 = time.perf_counter()
    Xt = torch.from_numpy(X)
    Yt = torch.from_numpy(np.asarray(Y, np.float64))
    Mt = [torch.from_numpy(m) for m in masks]
    params = _leaf_params(Ws, bs)
    leaves = [p for p in params if p is not None]
    evals = [0]

    def F():
        evals[0] += 1
        out = _torch_forward(params, Xt, tau=0.0, masks=Mt)
        val = loss_torch(out.reshape(Yt.shape), Yt, loss)
        if lam > 0:
            val = val + 0.5 * lam * sum((params[2 * l] ** 2).sum() for l in range(len(Ws)))
        return val

    if method == "lbfgs":
        _lbfgs_steps(leaves, F, steps=steps, lr=lr, tol_grad=tol_grad)
    elif method == "adam":
        _adam_steps(leaves, F, steps=steps, lr=lr)
    elif method == "gd":
        _gd_steps(leaves, F, steps=steps, lr=lr, tol_grad=tol_grad)
    else:  # pragma: no cover  (validated above)
        raise ValueError(f"descent method must be one of {DESCENT_METHODS}; got {method!r}.")
    for p in leaves:
        p.grad = None
    f = F()
    grads = torch.autograd.grad(f, leaves)
    gn = float(torch.sqrt(sum((g ** 2).sum() for g in grads)))
    Ws = [params[2 * l].detach().numpy().copy() for l in range(len(Ws))]
    bs = [None if params[2 * l + 1] is None else params[2 * l + 1].detach().numpy().copy()
          for l in range(len(Ws))]
    return Ws, bs, StepInfo("all", "descent", time.perf_counter() - t0, evals[0],
                            {"grad_norm": gn, "method": method})


def joint_two_layer_step(Ws, bs, X, Y, masks, *, loss: str = "squared", lam: float = 1e-3,
                         tol: float = 1e-10):
    r"""Exact optimum of the two-layer fixed-support problem via the group lasso :math:`P_c` (C4).

    .. math:: \min_U \ell\Big(\sum_j D_j X u_j\Big) + \lambda\sum_j\|u_j\|,\qquad
              w_{1j} = u_j/\sqrt{\|u_j\|},\ w_{2j} = \sqrt{\|u_j\|}.

    Needs two bias-free layers, scalar output and ``lam > 0``; solved by
    :func:`altheory.solvers.fast.solve_group_lasso` (status ``"optimal"`` only with a certified
    relative duality gap <= ``tol``). Warm-started from the current weights.
    """
    from altheory.solvers.fast import solve_group_lasso
    from altheory.solvers.problems import balanced_factors

    t0 = time.perf_counter()
    G = masks[0]
    U0 = Ws[1].reshape(-1)[:, None] * Ws[0]
    r = solve_group_lasso(X, G, np.asarray(Y, np.float64).reshape(-1), lam, loss=loss, tol=tol,
                          U0=U0)
    if r.verified:
        W1, w2 = balanced_factors(r.U)
        Ws = [W1, w2[None, :]]
    return Ws, bs, StepInfo("joint", r.status, time.perf_counter() - t0, 1,
                            {"rel_gap": r.rel_gap, "objective": r.objective, "solver": r.solver})


def _is_joint_two_layer(Ws, bs, Y, loss: str, lam: float) -> bool:
    return (len(Ws) == 2 and all(b is None for b in bs) and Ws[1].shape[0] == 1 and lam > 0
            and loss in ("squared", "logistic"))


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------

@dataclass
class RoundLog:
    r"""One round: a support step followed by a weight step.

    Attributes
    ----------
    round : int (0 is the initial point, before any weight step)
    loss, objective : true PHT loss and objective (loss + decay) after the round's weight step
    fixed_objective : objective under the support held during the weight step
    step_objectives : true objective after each sub-step (layer) of the weight step
    flips : dict layer key -> support entries that changed between the held support and the
        support of the new weights (the next support step)
    margin : margin :math:`\mu` of the new weights' support
    consistent : whether the held support is still the support of the new weights
    statuses : solver status of each sub-step
    passes, seconds : cumulative data passes and wall seconds (support and weight steps only;
        evaluation excluded)
    metrics : extra per-round measurements (e.g. train/test accuracy) from ``evaluate``
    step_flips : for ``"support-preserving"``, the support entries that differ between the held
        support and the support recomputed after each sub-step (layer) — the invariant of C9 is
        that every entry is 0 (empty for the other weight steps)
    step_active : for ``"support-preserving"``, per sub-step, the consistency constraints that
        bind at the solution (slack within ``1e-7`` of its bound, relative to the scale of ``z``)
    step_margins : for ``"support-preserving"``, per sub-step, the held layers' margins on each
        side, :math:`\min(z - \tau)` over kept and :math:`\min(\tau - z)` over dropped entries,
        before and after the step (``on_before``, ``off_before``, ``on_after``, ``off_after``)
    """

    round: int
    loss: float
    objective: float
    fixed_objective: float
    step_objectives: list[float]
    flips: dict[str, int]
    margin: float
    consistent: bool
    statuses: list[str]
    passes: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    step_flips: list[int] = field(default_factory=list)
    step_active: list[int] = field(default_factory=list)
    step_margins: list[dict] = field(default_factory=list)


@dataclass
class AlternationResult:
    """The trained model, the per-round log, why it stopped, and the final support."""

    model: nn.Module
    rounds: list[RoundLog]
    stopped: str  # "support-stable", "max-rounds", "time-budget", "cycle-<period>", "solver-<status>"
    support: MultiLayerSupport
    config: dict

    @property
    def n_rounds(self) -> int:
        """Weight steps taken (rounds after the initial point)."""
        return len(self.rounds) - 1

    def total_flips(self) -> list[int]:
        return [int(sum(r.flips.values())) for r in self.rounds]

    def is_monotone(self, rtol: float = 1e-9) -> bool:
        r"""Whether the true objective never increased over every sub-step (tolerance
        ``rtol * F(0)``, recorded in ``config["F0"]``)."""
        seq = [self.rounds[0].objective]
        for r in self.rounds[1:]:
            seq.extend(r.step_objectives)
        tol = rtol * self.config["F0"]
        return all(b <= a + tol for a, b in zip(seq, seq[1:]))

    def to_dict(self) -> dict:
        return {"config": self.config, "stopped": self.stopped,
                "rounds": [asdict(r) for r in self.rounds]}


def _support_digest(S: MultiLayerSupport) -> str:
    """A hash of the whole support (layer keys, masks or argmax indices, and the upper region of
    a three-state activation): equal digests mean the same support (the cycle test)."""
    import hashlib

    h = hashlib.sha1()
    for key, layer in S.layers.items():
        h.update(key.encode())
        h.update((layer.packed if layer.packed is not None else layer.indices).tobytes())
        if layer.upper is not None:  # a three-state activation: its upper region is support too
            h.update(b"upper")
            h.update(layer.upper.tobytes())
    return h.hexdigest()


def _as_np(X) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d); got {X.shape}. Flatten images with "
                         "X.reshape(len(X), -1).")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or Inf; remove or impute those samples.")
    return np.ascontiguousarray(X)


def _check_alternation_args(model: nn.Module, X, Y, *, loss: str, lam: float, weight_step: str,
                            max_rounds: int, tol: float, descent_method: str,
                            epsilon: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Validate the arguments of :func:`alternate`, in the order it documents its refusals.

    Returns
    -------
    lam : the checked weight decay (float)
    Xn : X as a C-contiguous float64 array of shape (n, d)
    Yn : the checked targets, shape (n,) or (n, k)
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) or not 0 <= tol < np.inf:
        raise ValueError(f"tol must be a finite number >= 0 (relative decrease of the objective); got tol={tol!r}.")
    parts0 = mlp_parts(model)
    if weight_step not in WEIGHT_STEPS:
        raise ValueError(f"weight_step must be one of {WEIGHT_STEPS}; got {weight_step!r}.")
    if weight_step == "support-preserving" and parts0.topk:
        raise ValueError("weight_step='support-preserving' needs threshold PHT (tau); the top-k "
                         "support is not described by linear constraints. Use 'exact' or 'descent'.")
    if descent_method not in DESCENT_METHODS:
        raise ValueError(f"descent_method must be one of {DESCENT_METHODS}; got {descent_method!r}.")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, (int, np.integer)) or max_rounds < 1:
        raise ValueError(f"max_rounds must be an int >= 1; got {max_rounds!r}.")
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0; got epsilon={epsilon}. Use 1e-3 for tau > 0.")
    check_loss(loss)
    lam = check_lam(lam)
    Xn = _as_np(X)
    Yn = check_targets(Y, loss)
    if Yn.shape[0] != Xn.shape[0]:
        raise ValueError(f"Y must have n={Xn.shape[0]} rows; got shape {Yn.shape}.")
    k_out = parts0.linears[-1].out_features
    if (1 if Yn.ndim == 1 else Yn.shape[1]) != k_out:
        raise ValueError(f"Y has {1 if Yn.ndim == 1 else Yn.shape[1]} outputs per sample but the "
                         f"model has {k_out}; give Y of shape (n,) for k=1 or (n, {k_out}).")
    return lam, Xn, Yn


@dataclass
class _Run:
    """The fixed problem and options of one :func:`alternate` call (the model is the one trained).

    The step functions (:func:`descent_step`, :func:`exact_layer_step`,
    :func:`support_preserving_layer_step`) are looked up in this module at every call, never
    stored here, so that a patched module attribute takes effect (``proofs_checks/mutants.py``).
    """

    model: nn.Module
    parts: _Parts
    Xn: np.ndarray
    Yn: np.ndarray
    loss: str
    lam: float
    weight_step: str
    descent_steps: int
    descent_method: str
    lr: float | None
    epsilon: float
    solver: str
    Xt: torch.Tensor = field(init=False)
    F0: float = field(init=False)     # F(0), the objective of the zero output
    joint: bool = field(init=False)   # "exact" on two bias-free layers: the group-lasso step

    def __post_init__(self) -> None:
        self.Xt = torch.from_numpy(self.Xn)
        self.F0 = zero_loss(self.Yn, self.loss)
        Ws, bs = _get_params(self.parts)
        self.joint = (_is_joint_two_layer(Ws, bs, self.Yn, self.loss, self.lam)
                      and self.weight_step == "exact")

    @property
    def tau(self) -> float:
        return self.parts.tau

    def config(self, *, max_rounds: int, tol: float) -> dict:
        """The resolved options and sizes, as :attr:`AlternationResult.config` records them."""
        Ws, _ = _get_params(self.parts)
        return dict(loss=self.loss, lam=self.lam, weight_step=self.weight_step,
                    max_rounds=int(max_rounds), tol=tol, descent_steps=self.descent_steps,
                    descent_method=self.descent_method, lr=self.lr, epsilon=self.epsilon,
                    solver=self.solver, tau=self.tau, n=int(self.Xn.shape[0]),
                    dims=[int(self.Xn.shape[1])] + [int(W.shape[0]) for W in Ws], F0=self.F0,
                    joint=self.joint)

    def true_objective(self, Ws, bs) -> tuple[float, float]:
        """``(loss, objective)`` of the true PHT network with weights ``Ws, bs``.

        For top-k PHT the support comes from :func:`altheory.support`, which needs the weights in
        the model: they are written into it first.
        """
        if self.parts.topk:
            _set_params(self.parts, Ws, bs)
            S_ = support(self.model, self.Xt)
            return objective_np(Ws, bs, self.Xn, self.Yn, loss=self.loss, lam=self.lam,
                                masks=_masks(S_, self.parts))
        return objective_np(Ws, bs, self.Xn, self.Yn, loss=self.loss, lam=self.lam, tau=self.tau)


@dataclass
class _State:
    """What changes from round to round: the weights, the held support, the log so far."""

    Ws: list[np.ndarray]
    bs: list[np.ndarray | None]
    S: MultiLayerSupport
    rounds: list[RoundLog]
    passes: int          # cumulative data passes (support and weight steps)
    t_used: float        # cumulative seconds of the support and weight steps
    seen: dict[str, int] = field(default_factory=dict)   # support digest -> round it was met


@dataclass
class _SubSteps:
    """The sub-steps (layers, or one joint step) of one weight step, in the order taken."""

    infos: list[StepInfo] = field(default_factory=list)
    objectives: list[float] = field(default_factory=list)   # true objective after each
    flips: list[int] = field(default_factory=list)          # support-preserving only
    active: list[int] = field(default_factory=list)         # support-preserving only
    margins: list[dict] = field(default_factory=list)       # support-preserving only


def _initial_round(run: _Run, evaluate) -> _State:
    """Round 0: the first support step (timed, one data pass) and the log of the initial point."""
    Ws, bs = _get_params(run.parts)
    t0 = time.perf_counter()
    S = support(run.model, run.Xt)
    t_used = time.perf_counter() - t0
    l0, o0 = run.true_objective(Ws, bs)
    first = RoundLog(0, l0, o0, o0, [], {k: 0 for k in run.parts.keys}, S.margin, True, [], 1,
                     t_used, evaluate(run.model) if evaluate else {})
    return _State(Ws, bs, S, [first], 1, t_used, {_support_digest(S): 0})


def _weight_step(run: _Run, Ws, bs, masks) -> tuple[list, list, _SubSteps]:
    """The weight step under the held support ``masks``: one descent or joint step, or a sweep
    over the layers from the last to the first, the true objective measured after each."""
    subs = _SubSteps()
    if run.weight_step == "descent":
        Ws, bs, info = descent_step(Ws, bs, run.Xn, run.Yn, masks, loss=run.loss, lam=run.lam,
                                    steps=run.descent_steps, method=run.descent_method, lr=run.lr)
        subs.infos.append(info)
        subs.objectives.append(run.true_objective(Ws, bs)[1])
    elif run.joint:
        Ws, bs, info = joint_two_layer_step(Ws, bs, run.Xn, run.Yn, masks, loss=run.loss,
                                            lam=run.lam)
        subs.infos.append(info)
        subs.objectives.append(run.true_objective(Ws, bs)[1])
    else:
        for l in reversed(range(run.parts.L)):
            if run.weight_step == "exact":
                Ws, bs, info = exact_layer_step(Ws, bs, run.Xn, run.Yn, masks, l, loss=run.loss,
                                                lam=run.lam, solver=run.solver)
            else:
                Ws, bs, info = _measured_support_preserving_step(run, Ws, bs, masks, l, subs)
            subs.infos.append(info)
            subs.objectives.append(run.true_objective(Ws, bs)[1])
    return Ws, bs, subs


def _measured_support_preserving_step(run: _Run, Ws, bs, masks, l: int, subs: _SubSteps):
    """:func:`support_preserving_layer_step` on layer ``l``, with the invariant of C9 measured
    here (not by the step): flips between the held support and the new weights' own support,
    the binding constraints, and the held layers' margins on each side before and after."""
    tau = run.tau
    held = list(range(l, run.parts.L - 1))
    Zb = forward_np(Ws, bs, run.Xn, masks=masks)
    on_b, off_b = _side_margins([Zb[m] for m in held], [masks[m] for m in held], tau)
    Ws, bs, info = support_preserving_layer_step(
        Ws, bs, run.Xn, run.Yn, masks, l, tau=tau, loss=run.loss, lam=run.lam,
        epsilon=run.epsilon, solver=run.solver)
    Zl = forward_np(Ws, bs, run.Xn, tau=tau)
    subs.flips.append(int(sum(int(((z > tau) != m).sum()) for z, m in zip(Zl[:-1], masks))))
    on_a, off_a = _side_margins([Zl[m] for m in held], [masks[m] for m in held], tau)
    subs.active.append(int(info.detail.get("active", 0)))
    subs.margins.append({"layer": l, "on_before": on_b, "off_before": off_b,
                         "on_after": on_a, "off_after": off_a})
    return Ws, bs, info


def _run_round(run: _Run, state: _State, rnd: int, evaluate, progress) -> float:
    """Round ``rnd``: a weight step under the held support, then the support step of the new
    weights (both timed); appends the round's :class:`RoundLog` and moves ``state`` on.

    Returns the fixed-support objective of the previous round, for the stopping rule.
    """
    t0 = time.perf_counter()
    masks = _masks(state.S, run.parts)
    Ws, bs, subs = _weight_step(run, state.Ws, state.bs, masks)
    state.passes += sum(i.passes for i in subs.infos)
    _set_params(run.parts, Ws, bs)
    fixed = objective_np(Ws, bs, run.Xn, run.Yn, loss=run.loss, lam=run.lam, masks=masks)[1]
    S_new = support(run.model, run.Xt)
    state.passes += 1
    state.t_used += time.perf_counter() - t0
    flips = S_new.flips(state.S)
    lo, ob = run.true_objective(Ws, bs)
    prev_fixed = state.rounds[-1].fixed_objective if rnd > 1 else state.rounds[0].objective
    state.rounds.append(RoundLog(rnd, lo, ob, fixed, subs.objectives, flips, S_new.margin,
                                 sum(flips.values()) == 0, [i.status for i in subs.infos],
                                 state.passes, state.t_used, evaluate(run.model) if evaluate else {},
                                 subs.flips, subs.active, subs.margins))
    if progress is not None:
        progress.update(1)
        progress.set_postfix(loss=f"{lo:.4g}", flips=sum(flips.values()))
    state.Ws, state.bs, state.S = Ws, bs, S_new
    return prev_fixed


def _stop_reason(run: _Run, state: _State, prev_fixed: float, *, tol: float, stop_on_cycle: bool,
                 time_budget: float) -> str | None:
    """Why the loop stops after the last round (``AlternationResult.stopped``), or None to go on.

    In order: a sub-step whose solve failed; a stable support whose fixed-support objective
    decreased by at most ``tol * F(0)``; with ``stop_on_cycle``, a new support met before; the
    time budget spent. Records the new support's digest when the loop goes on past the cycle test.
    """
    last = state.rounds[-1]
    bad = [s for s in last.statuses if s not in ("optimal", "descent")]
    if bad:
        return f"solver-{bad[0]}"
    n_flips = sum(last.flips.values())
    if n_flips == 0 and prev_fixed - last.fixed_objective <= tol * run.F0:
        return "support-stable"
    digest = _support_digest(state.S)
    if stop_on_cycle and n_flips > 0 and digest in state.seen:
        # S_new was already visited (round seen[digest]): a deterministic weight step that
        # depends only on the support would repeat the same cycle forever
        return f"cycle-{last.round - state.seen[digest]}"
    state.seen[digest] = last.round
    if state.t_used > time_budget:
        return "time-budget"
    return None


def alternate(model: nn.Module, X, Y, *, loss: str = "squared", lam: float = 0.0,
              weight_step: str = "exact", max_rounds: int = 20, tol: float = 1e-9,
              descent_steps: int = 50, descent_method: str = "lbfgs", lr: float | None = None,
              epsilon: float = 1e-3, solver: str = "clarabel", time_budget: float = math.inf,
              evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
              progress=None, inplace: bool = False, stop_on_cycle: bool = False) -> AlternationResult:
    r"""Alternate support steps and weight steps until the support stops changing.

    Parameters
    ----------
    model : nn.Sequential MLP (float64), e.g. from :func:`mlp`. Copied unless ``inplace``.
    X : ndarray or Tensor of shape (n, d)
    Y : ndarray of shape (n,) or (n, k), targets as :mod:`altheory.solvers.losses` expects.
    loss : one of :data:`altheory.solvers.losses.LOSSES`
    lam : float >= 0, weight decay on every layer's weights (not biases).
    weight_step : {"exact", "descent", "support-preserving"}, see the module docstring.
    max_rounds : int >= 1, budget of weight steps.
    tol : float, stop when the support is unchanged and the objective under it decreased by
        less than ``tol * F(0)`` in the last round.
    descent_steps, descent_method, lr : the ``"descent"`` weight step.
    epsilon : float >= 0, slack of the support-preserving constraints (see module docstring).
    solver : {"clarabel", "scs"}, first cvxpy solver tried.
    time_budget : float, seconds; stop after the round that exceeds it.
    evaluate : callable ``model -> dict``, measured after every round (not timed).
    progress : a ``tqdm`` bar or None; ``update(1)`` per round and ``set_postfix``.
    stop_on_cycle : bool, default False
        Stop (``stopped = "cycle-<period>"``) when the new support equals one met before. With
        the joint ``"exact"`` step the weights are a function of the support alone, so the run
        would repeat the cycle; other steps are warm-started and may leave it.

    Returns
    -------
    AlternationResult

    Raises
    ------
    TypeError, ValueError
        Not an MLP, bad option values, top-k with ``"support-preserving"``.

    Examples
    --------
    >>> from altheory.data import teacher_student
    >>> ts = teacher_student(40, 3, widths=(4,), tau=0.1, seed=0)
    >>> res = alternate(mlp(3, (6,), 1, tau=0.1, seed=1), ts.X, ts.Y, weight_step="exact")
    >>> res.rounds[-1].objective <= res.rounds[0].objective
    True
    """
    lam, Xn, Yn = _check_alternation_args(model, X, Y, loss=loss, lam=lam, weight_step=weight_step,
                                          max_rounds=max_rounds, tol=tol,
                                          descent_method=descent_method, epsilon=epsilon)
    model = model if inplace else copy.deepcopy(model)
    run = _Run(model, mlp_parts(model), Xn, Yn, loss, lam, weight_step, descent_steps,
               descent_method, lr, epsilon, solver)
    config = run.config(max_rounds=max_rounds, tol=tol)
    state = _initial_round(run, evaluate)
    stopped = "max-rounds"
    for rnd in range(1, int(max_rounds) + 1):
        prev_fixed = _run_round(run, state, rnd, evaluate, progress)
        why = _stop_reason(run, state, prev_fixed, tol=tol, stop_on_cycle=stop_on_cycle,
                           time_budget=time_budget)
        if why is not None:
            stopped = why
            break
    return AlternationResult(model, state.rounds, stopped, state.S, config)


# --------------------------------------------------------------------------------------------
# C8: the trained weights against the exact optimum of the final support
# --------------------------------------------------------------------------------------------

def c8_gaps(model: nn.Module, X, Y, *, loss: str = "squared", lam: float = 0.0,
            solver: str = "clarabel", joint: bool = True) -> dict:
    r"""Normalised gaps of the trained weights on the fixed-support problem of their own support.

    With :math:`S^* = S(W)` (consistent by construction) and :math:`F` the fixed-support objective:

    * per layer ``l`` (C3, exact for every depth): :math:`(F(W) - \min_{\theta_l} F)/F(0)` with
      the other layers held, the minimum solved by :func:`exact_layer_step`;
    * jointly, for two bias-free layers with scalar output and ``lam > 0`` (C4): the group lasso
      :math:`P_c` of :math:`S^*` solved by cvxpy (:func:`altheory.solvers.convex.group_lasso`, Clarabel
      with SCS fallback) — an independent solver from the one the ``"exact"`` weight step uses.

    Returns
    -------
    dict with ``F``, ``F0``, ``margin``, ``layer_gaps`` / ``layer_status`` (keyed by the layer
    index as a string), and ``joint_gap`` / ``joint_status`` (None when not applicable), with
    ``joint_attempts``: the cvxpy solvers tried in order (two when Clarabel fell back to SCS).
    A gap whose solve is not optimal is None, with the status recorded.
    """
    parts = mlp_parts(model)
    Xn = _as_np(X)
    Yn = check_targets(Y, loss)
    S = support(model, torch.from_numpy(Xn))
    masks = _masks(S, parts)
    Ws, bs = _get_params(parts)
    F = objective_np(Ws, bs, Xn, Yn, loss=loss, lam=lam, masks=masks)[1]
    F0 = zero_loss(Yn, loss)
    out: dict = {"F": F, "F0": F0, "margin": S.margin, "layer_gaps": {}, "layer_status": {},
                 "joint_gap": None, "joint_status": None, "joint_attempts": []}
    for l in range(parts.L):
        W2, b2, info = exact_layer_step(Ws, bs, Xn, Yn, masks, l, loss=loss, lam=lam, solver=solver)
        out["layer_status"][str(l)] = info.status
        if info.status == "optimal":
            Fl = objective_np(W2, b2, Xn, Yn, loss=loss, lam=lam, masks=masks)[1]
            out["layer_gaps"][str(l)] = (F - Fl) / F0
        else:
            out["layer_gaps"][str(l)] = None
    if joint and _is_joint_two_layer(Ws, bs, Yn, loss, lam):
        from altheory.solvers.convex import group_lasso

        r = group_lasso(Xn, masks[0], Yn.reshape(-1), lam, loss=loss, solver=solver)
        out["joint_status"] = r.status
        out["joint_attempts"] = [a[0] for a in r.attempts]
        out["joint_gap"] = (F - r.objective) / F0 if r.verified else None
    return out
