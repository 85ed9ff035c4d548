r"""The exact head: the final linear layer solved for the current features (docs/claims.md C8, C3).

With every support fixed (here: the network in eval mode, so batch norm uses its running
statistics and each sample's support depends on that sample alone), the features
:math:`\phi_i \in \mathbb{R}^p` entering the last layer are fixed, and the head problem

.. math:: F(W, b) = \frac{1}{n}\sum_i \big(\mathrm{lse}(W\phi_i + b) - (W\phi_i + b)_{y_i}\big)
          + \frac{\lambda}{2}\big(\|W\|_F^2 + \|b\|^2\big)

is softmax regression: smooth and :math:`\lambda`-strongly convex, so it has one minimiser
:math:`\theta^*` (the loss is :func:`altheory.solvers.losses.loss_torch` with ``"softmax"``). It is
solved in float64 by Newton-CG (exact Hessian-vector products, no Hessian is formed, so it
scales to ResNet-50 features and 1000 classes) with an Armijo line search. Strong convexity
certifies the optimum from the gradient: :math:`F^* \ge F(\theta) - \|\nabla F(\theta)\|^2 /
(2\lambda)`, so the reported gap of the SGD-trained head,
:math:`(F(\theta_{sgd}) - F^*) / F(0)` with :math:`F(0) = \log k`, comes with a certified upper
bound. The solver's status is ``"optimal"`` only when :math:`\|\nabla F\| \le` ``tol``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from altheory.solvers.losses import loss_torch

__all__ = ["HeadSolution", "head_objective", "solve_head", "head_gap"]


@dataclass
class HeadSolution:
    """Result of :func:`solve_head`.

    Attributes
    ----------
    W : float64 Tensor (k, p); b : float64 Tensor (k,)
    F : objective at the solution; F_lower : certified lower bound on F*.
    grad_norm : ||grad F|| at the solution; iters : Newton iterations; cg_iters : total CG iterations.
    status : ``"optimal"`` (grad_norm <= tol) or ``"not-converged"``.
    """

    W: torch.Tensor
    b: torch.Tensor
    F: float
    F_lower: float
    grad_norm: float
    iters: int
    cg_iters: int
    status: str

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("W"), d.pop("b")
        return d


def _theta_obj_grad(Phi1: torch.Tensor, Y: torch.Tensor, theta: torch.Tensor, l2: float):
    logits = Phi1 @ theta.T
    F = loss_torch(logits, Y, "softmax") + 0.5 * l2 * (theta ** 2).sum()
    P = torch.softmax(logits, dim=1)
    G = (P - Y).T @ Phi1 / Phi1.shape[0] + l2 * theta
    return F, G, P


def head_objective(Phi: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
                   l2: float) -> float:
    r""":math:`F(W, b)` of the module docstring, in float64.

    Parameters
    ----------
    Phi : Tensor (n, p) of features; y : int Tensor (n,) of labels; W : (k, p); b : (k,)

    Examples
    --------
    >>> Phi = torch.zeros(3, 2, dtype=torch.float64); y = torch.tensor([0, 1, 1])
    >>> round(head_objective(Phi, y, torch.zeros(2, 2), torch.zeros(2), 0.1), 6) == round(math.log(2), 6)
    True
    """
    Phi = Phi.double()
    k = W.shape[0]
    Y = nn.functional.one_hot(y.long(), k).double()
    theta = torch.cat([W.double(), b.double()[:, None]], 1).to(Phi.device)
    Phi1 = torch.cat([Phi, torch.ones(Phi.shape[0], 1, dtype=Phi.dtype, device=Phi.device)], 1)
    return float(_theta_obj_grad(Phi1, Y.to(Phi.device), theta, l2)[0])


@torch.no_grad()
def solve_head(Phi: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float,
               tol: float = 1e-8, max_iter: int = 50, max_cg: int = 200,
               W0: torch.Tensor | None = None, b0: torch.Tensor | None = None) -> HeadSolution:
    r"""Minimise the head objective by Newton-CG (float64, on ``Phi``'s device).

    Parameters
    ----------
    Phi : Tensor of shape (n, p); y : int Tensor of shape (n,), labels in 0..k-1
    num_classes : k
    l2 : lambda > 0
    tol : gradient-norm tolerance for status ``"optimal"``.
    max_iter, max_cg : Newton iterations; CG iterations per Newton step.
    W0, b0 : warm start (default zero).

    Returns
    -------
    HeadSolution

    Raises
    ------
    ValueError
        ``l2 <= 0`` or shapes that disagree.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> Phi = torch.randn(50, 3, generator=g, dtype=torch.float64); y = (Phi[:, 0] > 0).long()
    >>> sol = solve_head(Phi, y, 2, l2=1e-2)
    >>> sol.status, sol.F - sol.F_lower < 1e-12
    ('optimal', True)
    """
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0 (strong convexity certifies the optimum); got l2={l2}.")
    if Phi.ndim != 2 or y.ndim != 1 or Phi.shape[0] != y.shape[0]:
        raise ValueError(f"expected Phi of shape (n, p) and y of shape (n,); got {tuple(Phi.shape)} "
                         f"and {tuple(y.shape)}.")
    Phi = Phi.double()
    n, p = Phi.shape
    Phi1 = torch.cat([Phi, torch.ones(n, 1, dtype=Phi.dtype, device=Phi.device)], 1)
    Y = nn.functional.one_hot(y.long().to(Phi.device), num_classes).double()
    theta = torch.zeros(num_classes, p + 1, dtype=torch.float64, device=Phi.device)
    if W0 is not None:
        theta[:, :p] = W0.double().to(Phi.device)
    if b0 is not None:
        theta[:, p] = b0.double().to(Phi.device)

    def hvp(P, V):
        A = Phi1 @ V.T                                   # (n, k)
        PA = P * A
        B = PA - P * PA.sum(1, keepdim=True)             # (diag(p) - p p^T) a, per sample
        return B.T @ Phi1 / n + l2 * V

    F, G, P = _theta_obj_grad(Phi1, Y, theta, l2)
    it = cg_total = 0
    while it < max_iter and float(G.norm()) > tol:
        it += 1
        gnorm = float(G.norm())
        # truncated CG on H d = -G (forcing term min(0.5, sqrt(|g|)) |g|)
        d = torch.zeros_like(theta)
        r = -G.clone()
        q = r.clone()
        rr = float((r * r).sum())
        stop = min(0.5, math.sqrt(gnorm)) * gnorm
        for _ in range(max_cg):
            Hq = hvp(P, q)
            alpha = rr / float((q * Hq).sum())
            d += alpha * q
            r -= alpha * Hq
            cg_total += 1
            rr_new = float((r * r).sum())
            if math.sqrt(rr_new) <= stop:
                break
            q = r + (rr_new / rr) * q
            rr = rr_new
        slope = float((G * d).sum())
        t = 1.0
        while True:
            F_new, G_new, P_new = _theta_obj_grad(Phi1, Y, theta + t * d, l2)
            if float(F_new) <= float(F) + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        if t < 1e-10:
            break
        theta = theta + t * d
        F, G, P = F_new, G_new, P_new
    gnorm = float(G.norm())
    F = float(F)
    return HeadSolution(theta[:, :p].clone(), theta[:, p].clone(), F, F - gnorm ** 2 / (2 * l2),
                        gnorm, it, cg_total, "optimal" if gnorm <= tol else "not-converged")


def head_gap(Phi: torch.Tensor, y: torch.Tensor, head: nn.Linear, *, l2: float, tol: float = 1e-8) -> dict:
    r"""Gap of ``head`` (SGD-trained) to the exact head for features ``Phi``; and the solution.

    Returns a dict with ``F_sgd``, ``F_star`` (the smaller of the solver's and the SGD head's
    objective: both bound :math:`F^*` from above), ``F_lower`` (certified, clamped to ``F_star``
    where rounding puts it above: :func:`altheory.solvers.softmax_head._certified_bracket`),
    ``F0`` (= log k), ``gap`` = (F_sgd - F_star)/F0 >= 0, ``gap_certified`` = (F_sgd - F_lower)/F0
    >= ``gap``, the solver fields, and ``solution`` (a :class:`HeadSolution`).
    """
    from altheory.solvers.softmax_head import _certified_bracket

    k = head.out_features
    W = head.weight.detach().double().to(Phi.device)
    b = (head.bias.detach().double() if head.bias is not None
         else torch.zeros(k, dtype=torch.float64)).to(Phi.device)
    F_sgd = head_objective(Phi, y, W, b, l2)
    sol = solve_head(Phi, y, k, l2=l2, tol=tol, W0=W, b0=b)
    F0 = math.log(k)
    F_star = min(sol.F, F_sgd)
    F_lower, _ = _certified_bracket(F_star, sol.F_lower, scale=F0)
    return {"F_sgd": F_sgd, "F_star": F_star, "F_lower": F_lower, "F0": F0,
            "gap": (F_sgd - F_star) / F0, "gap_certified": (F_sgd - F_lower) / F0,
            **{f"solver_{k_}": v for k_, v in sol.summary().items() if k_ not in ("F", "F_lower")},
            "solution": sol}
