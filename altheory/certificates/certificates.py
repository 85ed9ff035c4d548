r"""Certificates: how far given weights are from the optimum of their fixed-support problem.

.. math:: \text{gap} = \frac{F(W) - F^*}{F(0)},

with :math:`F^*` the exact optimum where one is known (two layers: group lasso, C4; shared
support, squared loss: reduced-rank regression, C6; one layer: the per-layer program, C3) or a
certified lower bound (deep per-sample support: the path-lifted relaxation, C7), so that the gap
is an upper bound on the true gap.

Path lifting (docs/claims.md C7), :math:`L = 3`, scalar output, no biases: with
:math:`U_{kj} = w_{3k} W_{2,kj} w_{1j} \in \mathbb R^d`,

.. math:: f_S(x_i) = \sum_{k,j} s^2_{ik} s^1_{ij}\, U_{kj}^\top x_i,

linear in :math:`U`. Grouping the paths by their combined pattern :math:`c = s^2_{\cdot k}\odot
s^1_{\cdot j}` (a column over samples), the lifted program is
:math:`\min_{V} \ell(\sum_c D_c X v_c)` — the group-lasso program of C4 with gates the distinct
combined patterns and :math:`\lambda = 0` — and it drops the realisability constraint (for each
``j`` the :math:`U_{kj}` are collinear), so its optimum lower-bounds the network's. It is attained
when each first-layer pattern is carried by at least ``d`` units (replication condition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from altheory.solvers.convex import ConvexResult, group_lasso_problem
from altheory.solvers.losses import normalised_gap
from altheory.solvers.problems import TwoLayerFixedSupport, check_matrix

__all__ = ["Certificate", "certify", "lifted_patterns", "lifted_bound"]


@dataclass
class Certificate:
    """Objective of the given weights against an optimum or a lower bound.

    Attributes
    ----------
    objective : float, :math:`F(W)`.
    bound : float, :math:`F^*` (``kind="optimum"``) or a lower bound (``kind="lower-bound"``).
    kind : ``"optimum"``, ``"layer-optimum"`` (one layer free, the rest fixed) or ``"lower-bound"``.
    gap : float, :math:`(F - F^*)/F(0)` (an upper bound on the true gap for a lower bound).
    status : ``"certified"`` (solver optimal), ``"solver-<status>"`` otherwise.
    result : the underlying ConvexResult.
    """

    objective: float
    bound: float
    kind: str
    gap: float
    status: str
    result: ConvexResult | None = None


def lifted_patterns(masks: list[np.ndarray]) -> np.ndarray:
    r"""Distinct combined path patterns :math:`\prod_l s^l_{\cdot j_l}` of a gated MLP.

    Parameters
    ----------
    masks : list of bool ndarray (n, h_l), l = 1..L-1

    Returns
    -------
    bool ndarray (n, C) of the distinct non-zero combined patterns over all paths.

    Examples
    --------
    >>> s1 = np.array([[1, 0], [1, 1]], bool); s2 = np.array([[1], [0]], bool)
    >>> lifted_patterns([s1, s2]).T.tolist()
    [[True, False]]
    """
    if not masks:
        raise ValueError("masks must hold at least one layer's mask (n, h).")
    P = np.asarray(masks[0], bool)
    P = np.unique(P, axis=1)
    for m in masks[1:]:
        m = np.unique(np.asarray(m, bool), axis=1)
        P = (P[:, :, None] & m[:, None, :]).reshape(P.shape[0], -1)
        P = np.unique(P, axis=1)
    P = P[:, P.any(0)]
    if P.shape[1] == 0:
        P = np.zeros((P.shape[0], 1), bool)
    return P


def lifted_bound(X, masks: list[np.ndarray], y, *, loss: str = "squared",
                 solver: str = "clarabel") -> ConvexResult:
    r"""Certified lower bound of a deep fixed-support, scalar-output, bias-free network at
    :math:`\lambda = 0` (the path-lifted program; ``kind="lower-bound"``).

    Parameters
    ----------
    X : ndarray (n, d); masks : list of bool (n, h_l); y : ndarray (n,)

    Returns
    -------
    ConvexResult with ``weights["U"]`` of shape (C, d) over the distinct combined patterns.
    """
    if not isinstance(masks, (list, tuple)) or not masks:
        raise TypeError(f"masks must be a non-empty list of bool arrays (n, h_l), one per hidden layer; got {type(masks).__name__}. Wrap a single mask as [mask].")
    X = check_matrix(X, "X")
    G = lifted_patterns(masks)
    res = group_lasso_problem(TwoLayerFixedSupport(X, G, y, loss, 0.0), solver=solver)
    res.kind = "lower-bound"
    return res


def certify(problem: Any, weights: Any = None, *, layer: str | int | None = None,
            solver: str = "clarabel") -> Certificate:
    r"""Objective of ``weights`` for ``problem``, the optimum or a lower bound, and the gap.

    Parameters
    ----------
    problem : TwoLayerFixedSupport; MLPObjective (gated, scalar output, no biases,
        :math:`\lambda = 0`: exact for L = 2, lifted lower bound for L >= 3); or
        FixedSupportNetwork with ``layer`` (the optimum of that layer's convex problem, C3,
        ``kind="layer-optimum"``).
    weights : for TwoLayerFixedSupport, ``U`` (p, d) or a pair ``(W1, w2)``; for an
        MLPObjective, the flat ``theta``; ignored for a FixedSupportNetwork (its model's weights).
    layer : module path or index of the layer, for a FixedSupportNetwork.

    Returns
    -------
    Certificate

    Examples
    --------
    >>> P = TwoLayerFixedSupport(np.eye(2), np.ones((2, 1), bool), np.array([1.0, 2.0]), "squared", 0.0)
    >>> c = certify(P, np.array([[1.0, 2.0]]))
    >>> c.kind, c.status, abs(c.gap) < 1e-8
    ('optimum', 'certified', True)
    """
    from altheory.descent.descent import MLPObjective
    from altheory.solvers.problems import FixedSupportNetwork

    if isinstance(problem, FixedSupportNetwork):
        from altheory.solvers.dispatch import per_layer
        from altheory.nets.graph import trace
        from altheory.nets.operators import _find_layer, layer_operator

        if layer is None:
            raise ValueError("certify: a FixedSupportNetwork needs layer= (module path or index) "
                             "to certify the per-layer optimum.")
        F = problem.objective()
        node = _find_layer(trace(problem.model), layer)
        Wl = node.module.weight
        Phi, off = layer_operator(problem.model, problem.S, layer, problem._Xt)
        res = per_layer(Phi, off, problem.Y, loss=problem.loss, lam=problem.lam,
                        n_weight=int(Wl.numel()), solver=solver)
        import torch

        others = sum(float((m.weight.detach() ** 2).sum()) for m in problem.model.modules()
                     if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim >= 2
                     and m is not node.module)
        res.objective += 0.5 * problem.lam * others
        kind = "layer-optimum"
        F0 = problem.zero_objective()
    elif isinstance(problem, TwoLayerFixedSupport):
        if isinstance(weights, tuple) and len(weights) == 2:
            F = problem.objective_factors(*weights)
        else:
            F = problem.objective(weights)
        res = group_lasso_problem(problem, solver=solver)
        kind = "optimum"
        F0 = problem.zero_objective()
    elif isinstance(problem, MLPObjective):
        if problem.masks is None or problem.fixed_b is not None or problem.lam != 0 \
                or problem.Y.ndim != 1:
            raise ValueError("certify: an MLPObjective needs fixed masks, no biases, lam=0 and a "
                             "scalar output for the lifted bound; got masks="
                             f"{problem.masks is not None}, biases={problem.fixed_b is not None}, "
                             f"lam={problem.lam}, Y.ndim={problem.Y.ndim}.")
        F = problem.value(np.asarray(weights, np.float64))
        masks = [m.numpy().astype(bool) for m in problem.masks]
        if problem.L == 2:  # exact: group lasso at lam = 0
            res = group_lasso_problem(TwoLayerFixedSupport(problem.X.numpy(), masks[0],
                                                           problem.Y.numpy(), problem.loss, 0.0),
                                      solver=solver)
            kind = "optimum"
        else:
            res = lifted_bound(problem.X.numpy(), masks, problem.Y.numpy(), loss=problem.loss,
                               solver=solver)
            kind = "lower-bound"
        F0 = problem.zero_objective()
    else:
        raise TypeError(f"certify: problem must be a TwoLayerFixedSupport, an MLPObjective or a "
                        f"FixedSupportNetwork; got {type(problem).__name__}.")
    status = "certified" if res.verified else f"solver-{res.status}"
    gap = normalised_gap(F, res.objective, F0) if res.verified else float("nan")
    return Certificate(float(F), float(res.objective), kind, gap, status, res)

