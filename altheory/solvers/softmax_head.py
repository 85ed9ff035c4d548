r"""The classifier head of a network with its support fixed: multinomial logistic regression,
solved in float64 with a duality-gap certificate (docs/claims.md C3, C8).

With the support and every other layer fixed, the features :math:`\phi_i\in\mathbb{R}^p`
entering the last linear layer are fixed, and the head problem

.. math::

    P:\ \min_{W, b}\ F(W, b) = \frac1n\sum_{i=1}^n \ell(W\phi_i + b,\ y_i)
        + \frac\lambda2\|W\|_F^2 + \frac{\lambda_b}2\|b\|^2,
    \qquad \ell(z, y) = \mathrm{lse}(z) - z_y

(softmax cross-entropy) is convex; it is :math:`\lambda`-strongly convex in :math:`W`. The bias
is *not* penalised by default (:math:`\lambda_b = 0`), as in the trainer, whose weight decay
applies to conv/linear weights only; then :math:`b` is determined up to a common shift (the
softmax is shift invariant), and a minimiser exists when every class occurs in the data.

Dual. The conjugate of :math:`\ell(\cdot, y)` is the negative entropy on the simplex,
:math:`\ell^*(u; y) = \sum_c \alpha_c\log\alpha_c` with :math:`\alpha = u + e_y\in\Delta_k`. With
:math:`A\in\mathbb{R}^{n\times k}` the rows :math:`\alpha_i\in\Delta_k` and :math:`Y` the one-hot
labels,

.. math::

    D(A) = \frac1n\sum_i H(\alpha_i) - \frac{1}{2\lambda}\Big\|\tfrac1n (A - Y)^\top\Phi\Big\|_F^2
           - \frac{1}{2\lambda_b}\Big\|\tfrac1n (A - Y)^\top\mathbf 1\Big\|^2,

:math:`H(\alpha) = -\sum_c\alpha_c\log\alpha_c`; with :math:`\lambda_b = 0` the last term is
replaced by the constraint :math:`\frac1n\sum_i\alpha_i = \bar y` (the class frequencies). Weak
duality :math:`D(A)\le F^*\le F(W, b)` makes ``gap = F(W, b) - D(A)`` a certified upper bound on
the suboptimality of :math:`(W, b)` (a theorem: Fenchel duality; computed in float64, the
constraint held to rounding). Near the optimum the computed :math:`D` may exceed the computed
:math:`F` by rounding (3e-16 seen at :math:`F\approx 0.1`): the reported lower bound is then
:math:`\min(D, F)`, still a bound on :math:`F^*` up to that rounding, so no gap is ever negative;
an excess beyond the rounding slack of :mod:`altheory.floats` (scale :math:`\log k`, which bounds
the entropy term) is no rounding and raises :class:`~altheory.errors.SolverError`
(:func:`_certified_bracket`).

Dual point (:func:`dual_point`). :math:`\alpha_i = \mathrm{softmax}(W\phi_i + b)`, which is the
dual optimum at the primal optimum. It lies in the simplex; with :math:`\lambda_b = 0` its mean
:math:`\bar p` must also equal :math:`\bar y`, which holds only at the optimum in :math:`b`, so it
is rescaled towards a fixed distribution :math:`q`: :math:`\alpha_i' = (1-\theta)\alpha_i +
\theta q` with the smallest :math:`\theta\in[0,1]` for which
:math:`q = (\bar y - (1-\theta)\bar p)/\theta\ge 0`, i.e.
:math:`\theta = \max(0, 1 - \min_c \bar y_c/\bar p_c)`. Then :math:`\bar\alpha' = \bar y`
exactly, and :math:`\theta\to 0` as the primal converges, so the gap goes to zero with the
solver's error.

Solver (:func:`solve_softmax_head`): Newton-CG in float64 (exact Hessian-vector products,
Jacobi-preconditioned CG, Armijo backtracking), which scales to ResNet-50 features and 1000
classes because no Hessian is formed; it stops when the relative gap
``(F - D) / F <= tol``, and the status is ``"optimal"`` only then.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from altheory.errors import SolverError
from altheory.floats import leq, slack

__all__ = ["SoftmaxHeadResult", "softmax_head_objective", "softmax_head_dual", "dual_point",
           "head_certificate", "solve_softmax_head"]


@dataclass
class SoftmaxHeadResult:
    r"""Result of :func:`solve_softmax_head`.

    Attributes
    ----------
    W : ndarray of shape (k, p), float64; b : ndarray of shape (k,), float64
    primal : :math:`F(W, b)` at the returned point.
    dual : :math:`\min(D(A), F(W, b))` at the dual point of the returned point: a certified lower
        bound on :math:`F^*` (:func:`_certified_bracket`).
    gap : ``primal - dual`` (>= 0); rel_gap : ``gap / primal`` (>= 0).
    grad_norm : Frobenius norm of the gradient at the returned point.
    iters : Newton iterations; cg_iters : CG iterations in all.
    status : ``"optimal"`` (``rel_gap <= tol``) or ``"not-converged"``.
    seconds : wall time of the solve.
    """

    W: np.ndarray
    b: np.ndarray
    primal: float
    dual: float
    gap: float
    rel_gap: float
    grad_norm: float
    iters: int
    cg_iters: int
    status: str
    seconds: float

    def summary(self) -> dict:
        """The scalar fields (no W, b), JSON-ready."""
        return {k: getattr(self, k) for k in ("primal", "dual", "gap", "rel_gap", "grad_norm",
                                              "iters", "cg_iters", "status", "seconds")}


def _check(Phi, y, num_classes: int | None, lam: float, lam_b: float):
    if isinstance(Phi, np.ndarray):
        Phi = torch.from_numpy(Phi)
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(Phi, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"Phi and y must be torch Tensors or numpy arrays; got {type(Phi).__name__} "
                        f"and {type(y).__name__}.")
    if Phi.ndim != 2 or y.ndim != 1 or Phi.shape[0] != y.shape[0] or Phi.shape[0] == 0:
        raise ValueError(f"expected Phi of shape (n, p) and y of shape (n,) with n >= 1; got "
                         f"{tuple(Phi.shape)} and {tuple(y.shape)}.")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels; got dtype {y.dtype}.")
    if not torch.isfinite(Phi).all():
        raise ValueError(f"Phi has {int((~torch.isfinite(Phi)).sum())} NaN or Inf entries; the "
                         "features must be finite.")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise ValueError(f"labels must be in 0..{k - 1}; got range {int(y.min())}..{int(y.max())}.")
    if k < 2:
        raise ValueError(f"num_classes must be >= 2; got {k}.")
    if not (isinstance(lam, (int, float)) and lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number > 0 (the dual needs a strongly convex W-part); "
                         f"got lam={lam!r}. The trainer's weight_decay is the usual choice.")
    if not (isinstance(lam_b, (int, float)) and lam_b >= 0 and math.isfinite(lam_b)):
        raise ValueError(f"lam_b must be a finite number >= 0 (0 = bias not penalised); got {lam_b!r}.")
    return Phi.double(), y.long().to(Phi.device), k


def _certified_bracket(primal: float, dual: float, *, scale: float) -> tuple[float, float]:
    r"""The certified lower bound :math:`\min(D, F)` and the gap :math:`F - \min(D, F)\ge 0`.

    Weak duality (a theorem) gives :math:`D\le F^*\le F`; in float64 :math:`D` may exceed
    :math:`F` by rounding when both are :math:`F^*` to rounding, and then :math:`F` is a lower
    bound on :math:`F^*` to the same rounding. ``scale`` is the magnitude of the terms of
    :math:`D` and :math:`F` (:math:`\log k` bounds the entropy term; :func:`altheory.floats.slack`).

    Raises
    ------
    SolverError
        :math:`D > F` beyond that slack, or a NaN: not rounding, a broken certificate.
    """
    if not leq(dual, primal, scale=scale):
        raise SolverError(f"the dual bound exceeds the primal value beyond rounding: expected "
                          f"D <= F up to {slack(dual, primal, scale=scale):.3g}; got D={dual!r}, "
                          f"F={primal!r} (D - F = {dual - primal:.3g}). Weak duality is a theorem: "
                          "the dual point or the objective is computed wrong.")
    lower = min(dual, primal)
    return lower, primal - lower


def _logits(Phi, W, b):
    return Phi @ W.T + b


def _primal(Phi, Y, W, b, lam, lam_b) -> torch.Tensor:
    Z = _logits(Phi, W, b)
    loss = (torch.logsumexp(Z, 1) - (Z * Y).sum(1)).mean()
    return loss + 0.5 * lam * (W * W).sum() + 0.5 * lam_b * (b * b).sum()


def _as_params(W, b, k, p, device):
    W = torch.as_tensor(np.asarray(W) if not isinstance(W, torch.Tensor) else W).double().to(device)
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).double().to(device)
    if W.shape != (k, p) or b.shape != (k,):
        raise ValueError(f"expected W of shape {(k, p)} and b of shape {(k,)}; got {tuple(W.shape)} "
                         f"and {tuple(b.shape)}.")
    return W, b


def softmax_head_objective(Phi, y, W, b, lam: float, *, lam_b: float = 0.0,
                           num_classes: int | None = None) -> float:
    r""":math:`F(W, b)` of the module docstring, in float64.

    Examples
    --------
    >>> Phi = np.zeros((3, 2)); y = np.array([0, 1, 1])
    >>> round(softmax_head_objective(Phi, y, np.zeros((2, 2)), np.zeros(2), 0.1), 12) == round(math.log(2), 12)
    True
    """
    Phi, y, k = _check(Phi, y, num_classes if num_classes is not None else np.shape(W)[0], lam, lam_b)
    W, b = _as_params(W, b, k, Phi.shape[1], Phi.device)
    Y = torch.nn.functional.one_hot(y, k).double()
    return float(_primal(Phi, Y, W, b, lam, lam_b))


def _dual(Phi, Y, A, lam, lam_b) -> float:
    n = Phi.shape[0]
    H = -torch.special.xlogy(A, A).sum() / n
    R = A - Y
    GW = R.T @ Phi / n
    gb = R.sum(0) / n
    D = H - (GW * GW).sum() / (2 * lam)
    if lam_b > 0:
        D = D - (gb * gb).sum() / (2 * lam_b)
    else:
        # the unpenalised bias makes sum_i (alpha_i - y_i) = 0 a constraint; rounding only
        viol = float(gb.abs().max())
        if viol > 1e-12:
            return -math.inf
    return float(D)


def softmax_head_dual(Phi, y, A, lam: float, *, lam_b: float = 0.0, num_classes: int | None = None) -> float:
    r""":math:`D(A)` of the module docstring (``-inf`` outside the dual's domain).

    Parameters
    ----------
    A : array of shape (n, k); every row a probability vector. With ``lam_b = 0`` its column
        means must equal the class frequencies (to 1e-12), else ``D = -inf``.

    Raises
    ------
    ValueError
        A row of ``A`` is not in the simplex (entries < -1e-12 or row sums off by > 1e-9).
    """
    k = np.shape(A)[1] if num_classes is None else num_classes
    Phi, y, k = _check(Phi, y, k, lam, lam_b)
    A = torch.as_tensor(np.asarray(A) if not isinstance(A, torch.Tensor) else A).double().to(Phi.device)
    if A.shape != (Phi.shape[0], k):
        raise ValueError(f"expected A of shape {(Phi.shape[0], k)}; got {tuple(A.shape)}.")
    if float(A.min()) < -1e-12 or float((A.sum(1) - 1).abs().max()) > 1e-9:
        raise ValueError("every row of A must be a probability vector (entries >= 0, sum 1); "
                         f"got min entry {float(A.min()):.3g}, max |row sum - 1| "
                         f"{float((A.sum(1) - 1).abs().max()):.3g}.")
    Y = torch.nn.functional.one_hot(y, k).double()
    return _dual(Phi, Y, A.clamp_min(0), lam, lam_b)


def _dual_point(Phi, Y, W, b, lam_b) -> torch.Tensor:
    A = torch.softmax(_logits(Phi, W, b), 1)
    if lam_b > 0:
        return A
    pbar, ybar = A.mean(0), Y.mean(0)
    ratio = torch.where(pbar > 0, ybar / pbar, torch.full_like(pbar, math.inf))
    theta = max(0.0, 1.0 - float(ratio.min()))
    if theta <= 0.0:
        # pbar == ybar to rounding already: subtract the residual mean from the largest entries
        return A
    q = ((ybar - (1 - theta) * pbar) / theta).clamp_min(0)
    q = q / q.sum()
    return (1 - theta) * A + theta * q


def dual_point(Phi, y, W, b, *, lam_b: float = 0.0, lam: float = 1.0,
               num_classes: int | None = None) -> np.ndarray:
    r"""The dual point of :math:`(W, b)`: softmax probabilities, rescaled to be feasible when the
    bias is not penalised (module docstring). Returns an (n, k) float64 array."""
    Phi, y, k = _check(Phi, y, np.shape(W)[0] if num_classes is None else num_classes, lam, lam_b)
    W, b = _as_params(W, b, k, Phi.shape[1], Phi.device)
    Y = torch.nn.functional.one_hot(y, k).double()
    return _dual_point(Phi, Y, W, b, lam_b).cpu().numpy()


def head_certificate(Phi, y, W, b, lam: float, *, lam_b: float = 0.0,
                     num_classes: int | None = None) -> dict:
    r"""Certify a given head: ``primal`` :math:`F(W, b)`, ``dual`` :math:`\min(D(A(W, b)), F)\le F^*`
    and ``gap = primal - dual >= 0``, an upper bound on :math:`F(W, b) - F^*`
    (:func:`_certified_bracket`).

    Examples
    --------
    >>> rng = np.random.default_rng(0); Phi = rng.normal(size=(40, 3)); y = rng.integers(0, 3, 40)
    >>> c = head_certificate(Phi, y, np.zeros((3, 3)), np.zeros(3), 0.1)
    >>> c["gap"] >= 0
    True
    """
    Phi, y, k = _check(Phi, y, np.shape(W)[0] if num_classes is None else num_classes, lam, lam_b)
    W, b = _as_params(W, b, k, Phi.shape[1], Phi.device)
    Y = torch.nn.functional.one_hot(y, k).double()
    P = float(_primal(Phi, Y, W, b, lam, lam_b))
    D = _dual(Phi, Y, _dual_point(Phi, Y, W, b, lam_b), lam, lam_b)
    D, gap = _certified_bracket(P, D, scale=math.log(k))
    return {"primal": P, "dual": D, "gap": gap}


@torch.no_grad()
def solve_softmax_head(Phi, y, num_classes: int | None = None, *, lam: float, lam_b: float = 0.0,
                       tol: float = 1e-10, max_iter: int = 100, max_cg: int = 500,
                       W0=None, b0=None) -> SoftmaxHeadResult:
    r"""Minimise :math:`F(W, b)` (module docstring) by Newton-CG in float64, with a certificate.

    Parameters
    ----------
    Phi : array of shape (n, p) (ndarray or Tensor; the solve runs on its device)
    y : int array of shape (n,), labels in ``0..num_classes-1``
    num_classes : k (default ``max(y) + 1``)
    lam : float > 0, the ridge on W (the trainer's ``weight_decay``)
    lam_b : float >= 0, the ridge on b (default 0: not penalised, as in the trainer)
    tol : the status is ``"optimal"`` when ``(F - D) / F <= tol``
    max_iter, max_cg : Newton iterations; CG iterations per Newton step
    W0, b0 : warm start (default zero)

    Returns
    -------
    SoftmaxHeadResult

    Raises
    ------
    ValueError, TypeError
        Bad shapes, labels, non-finite features, ``lam <= 0`` or ``lam_b < 0``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Phi = rng.normal(size=(60, 4)); y = rng.integers(0, 3, 60)
    >>> r = solve_softmax_head(Phi, y, 3, lam=1e-2)
    >>> r.status, r.gap <= 1e-10 * r.primal
    ('optimal', True)
    """
    t0 = time.perf_counter()
    Phi, y, k = _check(Phi, y, num_classes, lam, lam_b)
    n, p = Phi.shape
    dev = Phi.device
    Y = torch.nn.functional.one_hot(y, k).double()
    W = torch.zeros(k, p, dtype=torch.float64, device=dev)
    b = torch.zeros(k, dtype=torch.float64, device=dev)
    if W0 is not None or b0 is not None:
        W, b = _as_params(W if W0 is None else W0, b if b0 is None else b0, k, p, dev)
    Phi2 = Phi * Phi

    def grad(W, b):
        P = torch.softmax(_logits(Phi, W, b), 1)
        R = (P - Y) / n
        return P, R.T @ Phi + lam * W, R.sum(0) + lam_b * b

    def certificate(W, b):
        F = float(_primal(Phi, Y, W, b, lam, lam_b))
        D = _dual(Phi, Y, _dual_point(Phi, Y, W, b, lam_b), lam, lam_b)
        return F, D

    F, D = certificate(W, b)
    P, gW, gb = grad(W, b)
    it = cg_total = 0
    while (F - D) > tol * abs(F) and it < max_iter:
        it += 1
        # Hessian-vector product: (1/n) sum_i (diag(p_i) - p_i p_i^T) (V phi_i + v) phi~_i^T + reg
        def hvp(VW, vb):
            Aa = _logits(Phi, VW, vb)                     # (n, k)
            PA = P * Aa
            B = (PA - P * PA.sum(1, keepdim=True)) / n
            return B.T @ Phi + lam * VW, B.sum(0) + lam_b * vb

        S = P * (1 - P) / n                                # Jacobi preconditioner (diagonal of H)
        MW = (S.T @ Phi2 + lam).reciprocal()
        Mb = (S.sum(0) + lam_b).clamp_min(1e-300).reciprocal()
        gnorm = math.sqrt(float((gW * gW).sum() + (gb * gb).sum()))
        dW, db = torch.zeros_like(W), torch.zeros_like(b)
        rW, rb = -gW, -gb
        zW, zb = MW * rW, Mb * rb
        qW, qb = zW.clone(), zb.clone()
        rz = float((rW * zW).sum() + (rb * zb).sum())
        stop = min(0.1, math.sqrt(gnorm)) * gnorm
        for _ in range(max_cg):
            HW, Hb = hvp(qW, qb)
            curv = float((qW * HW).sum() + (qb * Hb).sum())
            if curv <= 0:
                break
            a = rz / curv
            dW, db = dW + a * qW, db + a * qb
            rW, rb = rW - a * HW, rb - a * Hb
            cg_total += 1
            if math.sqrt(float((rW * rW).sum() + (rb * rb).sum())) <= stop:
                break
            zW, zb = MW * rW, Mb * rb
            rz_new = float((rW * zW).sum() + (rb * zb).sum())
            qW, qb = zW + (rz_new / rz) * qW, zb + (rz_new / rz) * qb
            rz = rz_new
        if not (dW.abs().sum() + db.abs().sum()) > 0:
            dW, db = -gW, -gb
        slope = float((gW * dW).sum() + (gb * db).sum())
        Fc = float(_primal(Phi, Y, W, b, lam, lam_b))
        t = 1.0
        while t >= 1e-12:
            F_new = float(_primal(Phi, Y, W + t * dW, b + t * db, lam, lam_b))
            if F_new <= Fc + 1e-4 * t * slope:
                break
            t *= 0.5
        if t < 1e-12:
            break
        W, b = W + t * dW, b + t * db
        if lam_b == 0:
            b = b - b.mean()  # the common shift of b changes nothing; keep it bounded
        P, gW, gb = grad(W, b)
        F, D = certificate(W, b)
    gnorm = math.sqrt(float((gW * gW).sum() + (gb * gb).sum()))
    D, gap = _certified_bracket(F, D, scale=math.log(k))
    rel = gap / max(abs(F), 1e-300)
    return SoftmaxHeadResult(W.cpu().numpy(), b.cpu().numpy(), F, D, gap, rel, gnorm, it, cg_total,
                             "optimal" if rel <= tol else "not-converged", time.perf_counter() - t0)
