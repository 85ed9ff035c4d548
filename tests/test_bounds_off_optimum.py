r"""Every lower bound and certificate of the package, tested *away* from the optimum.

At a converged point a wrong bound can still look right (a dual value scaled by 1.01 is off by
nothing when the point is optimal and the certificate is never asked elsewhere), so each
property below draws points at, near and far from the optimum — the zero point, random points
of several scales, the reference optimum perturbed by 1e-8 to 1e-2, the solvers' iterates after
0, 1 and a few steps (their ``max_iter`` / ``max_rounds`` options), and dual points feasible,
infeasible and on their constraints' boundary — and asserts against an *independent* reference
optimum :math:`F^*` (a closed form, or cvxpy with Clarabel at tight tolerances, its status
checked: any other status skips the example through ``hypothesis.assume``):

* lower bound :math:`\le F^* \le` primal value;
* reported gap :math:`\ge` true gap (primal :math:`- F^*`);
* infeasible dual points get :math:`-\infty` or are scaled to feasibility, as each docstring says;
* a bound is not trivially loose: at a converged point it is within the solver's tolerance of
  :math:`F^*`.

Tolerances (stated once). Comparisons that hold in exact arithmetic use the project's one rule,
:mod:`altheory.floats`, at the scale :func:`fscale` (:math:`|F^*|`, or
:math:`\sqrt{F\,F(0)}` near interpolation). The reference :math:`F^*` is never the solver's
reported value: it is the objective recomputed here, in numpy, at the reference's point (made
exactly feasible where the program has cones), hence an upper bound on the optimum, so
"lower bound :math:`\le F^*`" and "gap :math:`\ge` primal :math:`- F^*`" need no tolerance at
all. Only the checks that need the reference to be *close* to the optimum ("the primal value
is not below :math:`F^*`", "the bound is not loose") add ``REF_TOL``, the reference's accuracy
(Clarabel at gap and feasibility tolerances 1e-10: up to 5e-11 above the optimum seen,
1.8e-9 of :math:`F^* = 0.027`), and the checks of the package's own cvxpy solves (the lifted
bound, ``certify``, ``group_nuclear``, Clarabel at its 1e-8 defaults: up to 2.1e-9
:math:`F(0)` off the reference seen) add ``PKG_TOL``. The package's logistic loss is torch's
softplus, which drops :math:`\log(1 + e^{-x})` above :math:`x = 20`; its objectives are compared
with that cut made explicit (:func:`softplus`).

Each property has explicit ``@example`` cases that kill the mutants of block §2 of
``proofs_checks/mutants.py`` on their own (so a kill never rests on the derandomized draw).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy.special import expit

from altheory.floats import assert_close, assert_leq

# --------------------------------------------------------------------------------------------
# tolerances, examples and the reference solver
# --------------------------------------------------------------------------------------------

REF_TOL = 1e-8      # accuracy of the Clarabel reference, relative to max(|F*|, F(0))
PKG_TOL = 1e-7      # accuracy of the package's own cvxpy solves (Clarabel, 1e-8 defaults), x F(0)
CLARABEL = dict(solver="CLARABEL", max_iter=500, tol_gap_abs=1e-10, tol_gap_rel=1e-10,
                tol_feas=1e-10)
_THOROUGH = os.environ.get("ALTHEORY_HYPOTHESIS", "quick") == "thorough"


def examples(quick: int) -> int:
    """Examples of a property: ``quick`` under the quick profile (CI), 20x under thorough."""
    return 20 * quick if _THOROUGH else quick


def _solve_ref(problem):
    """Solve a cvxpy problem with the tight Clarabel settings; examples whose status is not
    optimal are skipped (they can neither confirm nor refute a bound)."""
    import cvxpy as cp

    try:
        with warnings.catch_warnings():  # "inaccurate" is a status, skipped below
            warnings.simplefilter("ignore", UserWarning)
            problem.solve(**CLARABEL)
    except cp.error.SolverError:
        assume(False)
    assume(problem.status == "optimal")


def fscale(F_star: float, F0: float, F: float = 0.0) -> float:
    r"""The scale of :mod:`altheory.floats` for objective values near :math:`F^*` and ``F`` (the
    value at the point certified): :math:`|F^*|`, or :math:`\sqrt{|F|F(0)}` where the values are
    small, as near interpolation — a squared residual :math:`r` is computed from terms of the
    size of the targets, so two computations of it differ by about :math:`\varepsilon|r|\|y\|
    \approx\varepsilon\sqrt{F F(0)}`, not :math:`\varepsilon F` — and never below
    :math:`10^{-12}F(0)`."""
    return max(abs(F_star), math.sqrt(abs(F) * abs(F0)), 1e-12 * abs(F0))


def ref_tol(F_star: float, F0: float) -> float:
    """The reference's accuracy in objective units (``REF_TOL`` of the larger of the two)."""
    return REF_TOL * max(abs(F_star), abs(F0))


def check_bracket(lower, F_star, upper, *, F0, what):
    r"""lower :math:`\le F^*` (rounding only: ``F_star`` is an upper bound on the optimum) and
    upper :math:`\ge F^* -` the reference's accuracy."""
    assert_leq(lower, F_star, scale=fscale(F_star, F0, upper), what=f"{what}: lower bound <= F*")
    assert_leq(F_star - ref_tol(F_star, F0), upper, scale=fscale(F_star, F0, upper),
               what=f"{what}: F* <= primal value")


def check_gap(gap, primal, F_star, *, F0, what):
    """The reported gap bounds the true gap ``primal - F*`` (F* an upper bound on the optimum)."""
    assert_leq(primal - F_star, gap, scale=max(fscale(F_star, F0, primal), abs(primal)),
               what=f"{what}: reported gap >= true gap")


def check_tight(lower, F_star, tol_abs, *, F0, what):
    """At a converged point the bound is within the solver's tolerance (plus the reference's)
    of F*: a bound that returns -1e300 fails here."""
    assert_leq(F_star - tol_abs - ref_tol(F_star, F0), lower, scale=fscale(F_star, F0),
               what=f"{what}: bound within the solver's tolerance of F*")


def check_stopped_solver(lower, upper, gap, rel_gap, status, F_star, *, tol, must_close, F0,
                         what):
    """A solver's answer, converged or stopped early: the bracket and the gap as above; status
    "optimal" exactly when ``rel_gap <= tol``; ``must_close`` (a budget that suffices) demands
    "optimal"; once optimal, the bound is tight (:func:`check_tight`)."""
    check_bracket(lower, F_star, upper, F0=F0, what=what)
    check_gap(gap, upper, F_star, F0=F0, what=what)
    assert (status == "optimal") == (rel_gap <= tol), what
    assert status == "optimal" or not must_close, what + ": a bound that never closes"
    if status == "optimal":
        check_tight(lower, F_star, tol * abs(upper), F0=F0, what=what)


# --------------------------------------------------------------------------------------------
# C4: the two-layer fixed-support group lasso (altheory.solvers.fast)
# --------------------------------------------------------------------------------------------

def _gl_data(seed, n, d, p, loss):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    G = X @ rng.standard_normal((d, p)) > 0
    G[:, 0] = True  # at least one gate open everywhere: F is not flat in every group
    y = rng.standard_normal(n)
    if loss == "logistic":
        y = np.where(y > 0, 1.0, -1.0)
    return X, G, y


def softplus(x, *, as_torch=False):
    r""":math:`\log(1 + e^x)`; ``as_torch``: as the package computes it, by torch's softplus,
    which returns :math:`x` for :math:`x > 20` (its threshold), below the exact value by
    :math:`\log(1 + e^{-x})\le 2.1\cdot10^{-9}` (a finding of this file: seed 111,
    (n, d, p) = (9, 2, 5), a point 0.3 from the optimum, F = 9.96 off by 1.9e-12)."""
    exact = np.logaddexp(0.0, x)
    return np.where(x > 20.0, x, exact) if as_torch else exact


def _gl_loss(z, y, loss, *, as_torch=False):
    if loss == "squared":
        return 0.5 * float(np.sum((z - y) ** 2)) / len(y)
    return float(np.mean(softplus(-y * z, as_torch=as_torch)))


def gl_objective(X, G, y, U, lam, loss, *, as_torch=False):
    r""":math:`F(U) = \ell(\sum_j D_jXu_j) + \lambda\sum_j\|u_j\|` in numpy (``as_torch``: the
    logistic loss as the package's torch computes it, :func:`softplus`)."""
    z = np.einsum("nj,jd,nd->n", G.astype(float), U, X)
    return _gl_loss(z, y, loss, as_torch=as_torch) + lam * float(np.linalg.norm(U, axis=1).sum())


def ref_group_lasso(X, G, y, lam, loss):
    """(F*, U*): Clarabel's point of the group lasso, F* recomputed at it (an upper bound)."""
    import cvxpy as cp

    n, d = X.shape
    U = cp.Variable((G.shape[1], d))
    z = cp.sum(cp.multiply(G.astype(float), X @ U.T), axis=1)
    f = cp.sum_squares(z - y) / (2 * n) if loss == "squared" else \
        cp.sum(cp.logistic(-cp.multiply(y, z))) / n
    _solve_ref(cp.Problem(cp.Minimize(f + lam * cp.sum(cp.norm(U, 2, axis=1)))))
    Us = np.asarray(U.value)
    return gl_objective(X, G, y, Us, lam, loss), Us


def _point(kind, ref, rng, scale):
    """A primal point of ``kind``: zero, random of a given scale, the reference optimum, or the
    reference optimum perturbed by ``scale``."""
    if kind == "zero":
        return np.zeros_like(ref)
    elif kind == "random":
        return scale * rng.standard_normal(ref.shape)
    elif kind == "optimum":
        return ref.copy()
    elif kind == "near":
        return ref + scale * max(1.0, np.abs(ref).max()) * rng.standard_normal(ref.shape)
    else:
        raise ValueError(f"kind must be zero, random, optimum or near; got {kind!r}.")


POINTS = st.sampled_from(["zero", "random", "optimum", "near"])
SCALES = st.sampled_from([1e-8, 1e-5, 1e-2, 0.3, 3.0])
LOSSES2 = st.sampled_from(["squared", "logistic"])


@settings(max_examples=examples(12))
@given(seed=st.integers(0, 10_000), n=st.integers(6, 24), d=st.integers(1, 3),
       p=st.integers(1, 5), loss=LOSSES2, frac=st.sampled_from([0.01, 0.1, 0.5, 1.5]),
       kind=POINTS, scale=SCALES, refine=st.booleans())
@example(seed=1, n=12, d=2, p=3, loss="squared", frac=0.1, kind="near", scale=1e-5, refine=False)
@example(seed=1, n=12, d=2, p=3, loss="logistic", frac=0.1, kind="random", scale=0.3, refine=True)
def test_C4_group_lasso_dual_bound_off_optimum(seed, n, d, p, loss, frac, kind, scale, refine):
    """group_lasso_certificate at any U: D(theta) <= F* <= F(U), gap >= F(U) - F*, objective the
    reference's F(U); with ``refine`` (a dual point from a solve started at U, tol 1e-13) the
    bound is tight at every point; lam >= lam_max (frac 1.5) makes U = 0 optimal."""
    from altheory.solvers.fast import group_lasso_certificate, lambda_max

    X, G, y = _gl_data(seed, n, d, p, loss)
    lam = frac * lambda_max(X, G, y, loss=loss)
    assume(lam > 0)
    F_star, U_star = ref_group_lasso(X, G, y, lam, loss)
    F0 = _gl_loss(np.zeros(n), y, loss)
    U = _point(kind, U_star, np.random.default_rng(seed + 1), scale)
    c = group_lasso_certificate(X, G, y, U, lam, loss=loss, refine=refine)
    what = f"group lasso {loss}, lam={lam:.3g}, {kind} {scale:g}, refine={refine}"
    S = fscale(F_star, F0, c["objective"])
    assert_close(c["objective"], gl_objective(X, G, y, U, lam, loss, as_torch=True), scale=S,
                 what=what)
    assert_close(c["gap"], c["objective"] - c["dual_objective"], scale=S, what=what)
    check_bracket(c["dual_objective"], F_star, c["objective"], F0=F0, what=what)
    check_gap(c["gap"], c["objective"], F_star, F0=F0, what=what)
    if refine:  # the dual point of a solve at tol 1e-13: tight wherever U is
        check_tight(c["dual_objective"], F_star, 1e-13 * abs(c["objective"]), F0=F0, what=what)


def _conj_np(theta, y, loss):
    r""":math:`f^*(\theta)` of the mean loss, in numpy (``inf`` outside its domain)."""
    n = len(y)
    if loss == "squared":
        return 0.5 * n * float(theta @ theta) + float(theta @ y)
    t = -n * y * theta
    if (t < 0).any() or (t > 1).any():
        return math.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = np.where(t > 0, t * np.log(t), 0.0) + np.where(t < 1, (1 - t) * np.log1p(-t), 0.0)
    return float(ent.sum()) / n


@settings(max_examples=examples(20))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 24), d=st.integers(1, 3),
       p=st.integers(1, 5), loss=LOSSES2, frac=st.sampled_from([0.01, 0.2, 0.9]),
       where=st.sampled_from(["feasible", "boundary", "infeasible", "gradient", "signed"]),
       size=st.sampled_from([1e-3, 0.5, 1.0, 4.0, 1e3]))
@example(seed=1, n=12, d=2, p=3, loss="squared", frac=0.2, where="boundary", size=1.0)
@example(seed=1, n=12, d=2, p=3, loss="squared", frac=0.2, where="gradient", size=1e-3)
def test_C4_group_lasso_dual_bound_at_any_dual_point(seed, n, d, p, loss, frac, where, size):
    r"""The dual value on the ray through any point theta (``_dual_on_ray``, the certificate's
    core) is a lower bound on F*: theta strictly feasible, on the boundary
    (:math:`\max_j\|X^\top D_j\theta\| = \lambda`), infeasible (scaled back to the feasible set
    along the ray, as documented), the loss gradient at a random prediction, or with signs that
    put it outside the logistic conjugate's domain (every :math:`\alpha > 0` then gives
    :math:`-\infty`, :math:`\alpha = 0` gives 0). It is never below the classical scaling
    :math:`\theta/\max(1, s)`; for the squared loss it is the ray's optimum clipped to
    :math:`|\alpha|\le 1/s_{\max}`, for the logistic loss at least the value of every point of
    the feasible segment in the domain."""
    from altheory.solvers.fast import _dual_on_ray, lambda_max

    X, G, y = _gl_data(seed, n, d, p, loss)
    lam = frac * lambda_max(X, G, y, loss=loss)
    assume(lam > 0)
    F_star, _ = ref_group_lasso(X, G, y, lam, loss)
    F0 = _gl_loss(np.zeros(n), y, loss)
    rng = np.random.default_rng(seed + 2)
    if where == "gradient":  # the loss gradient at a random prediction of size `size`
        z = size * rng.standard_normal(n)
        g = (z - y) / n if loss == "squared" else -y * expit(-y * z) / n
    elif loss == "logistic" and where != "signed":  # in the conjugate's domain: -n y g in (0, 1)
        g = -y * rng.uniform(0.05, 1.0, n) / n
    else:
        g = rng.standard_normal(n) / n
    scores = np.linalg.norm(G.T.astype(float) @ (g[:, None] * X), axis=1) / lam  # ||X^T D_j g||/lam
    smax = float(scores.max())
    assume(smax > 0)
    target = {"feasible": 0.5, "boundary": 1.0, "infeasible": 4.0 * max(size, 1.0)}.get(where)
    if target is not None:  # theta scaled so that max_j ||X^T D_j theta|| / lam = target
        g, smax = g * (target / smax), target
    value = _dual_on_ray(torch.as_tensor(g), smax, torch.as_tensor(y), loss)
    what = f"dual on the ray, {loss}, {where} (s_max={smax:.3g})"
    assert_leq(value, F_star, scale=fscale(F_star, F0), what=what)
    classic = -_conj_np(g / max(1.0, smax), y, loss)
    assert_leq(classic, value, scale=fscale(F_star, F0),
               what=what + ": never below the classical scaling")
    if loss == "logistic":
        sig = -n * y * g
        if (sig < 0).any():  # every alpha > 0 leaves the conjugate's domain: -inf; alpha = 0: 0
            assert value in (-math.inf, 0.0), what + ": outside the conjugate's domain"
        else:  # the segment [0, min(1/s_max, 1/max sigma)] is feasible and in the domain
            hi = min(1.0 / smax, 1.0 / float(sig.max()))
            for a in (0.5 * hi, hi):
                assert_leq(-_conj_np(a * g, y, loss), value, scale=fscale(F_star, F0),
                           what=what + f": the best point of the segment (alpha={a:.3g})")
    else:  # the ray's optimum alpha* = -g.y/(n|g|^2), clipped to the feasible |alpha| <= 1/s_max
        a_star = -float(g @ y) / (n * float(g @ g))
        best = -_conj_np(float(np.clip(a_star, -1.0 / smax, 1.0 / smax)) * g, y, loss)
        assert_close(value, max(best, classic), scale=fscale(F_star, F0),
                     what=what + ": the clipped optimum of the ray")


@settings(max_examples=examples(10))
@given(seed=st.integers(0, 10_000), n=st.integers(6, 24), d=st.integers(1, 3),
       p=st.integers(1, 6), loss=LOSSES2, frac=st.sampled_from([0.01, 0.1, 0.5]),
       max_iter=st.sampled_from([1, 2, 5, 20, 20_000]), warm=st.booleans())
@example(seed=1, n=12, d=2, p=3, loss="logistic", frac=0.1, max_iter=2, warm=True)
def test_C4_group_lasso_solver_bounds_after_few_steps(seed, n, d, p, loss, frac, max_iter, warm):
    """solve_group_lasso stopped after 1, 2, 5, 20 steps (or converged), from zero or from a
    random warm start: dual <= F* <= objective, gap >= objective - F*, the objective the
    reference's F(U) at the returned U; status "optimal" only with rel_gap <= tol, and then the
    dual bound is within tol of F*."""
    from altheory.solvers.fast import lambda_max, solve_group_lasso

    X, G, y = _gl_data(seed, n, d, p, loss)
    lam = frac * lambda_max(X, G, y, loss=loss)
    assume(lam > 0)
    F_star, U_star = ref_group_lasso(X, G, y, lam, loss)
    F0 = _gl_loss(np.zeros(n), y, loss)
    U0 = np.random.default_rng(seed + 3).standard_normal(U_star.shape) if warm else None
    tol = 1e-10
    r = solve_group_lasso(X, G, y, lam, loss=loss, tol=tol, max_iter=max_iter, U0=U0)
    what = f"solve_group_lasso {loss}, lam={lam:.3g}, max_iter={max_iter}, warm={warm}: {r.status}"
    assert_close(r.objective, gl_objective(X, G, y, r.U, lam, loss, as_torch=True),
                 scale=fscale(F_star, F0, r.objective), what=what)
    check_stopped_solver(r.dual_objective, r.objective, r.gap, r.rel_gap, r.status, F_star,
                         tol=tol, must_close=max_iter >= 20_000, F0=F0, what=what)


# --------------------------------------------------------------------------------------------
# C3: the per-layer program (altheory.solvers.fast.solve_layer, altheory.solvers.per_layer)
# --------------------------------------------------------------------------------------------

def _layer_data(seed, n, q, k, loss):
    """Phi (n*k, q), offset, Y. Logistic: q pairs of equal rows with opposite labels (q <= n/2)
    make the data inseparable in every direction that moves a prediction, so the optimum is
    attained also where no weight is decayed (lam = 0, or n_weight = 0)."""
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((n * k, q))
    if q > 1 and rng.random() < 0.3:  # rank deficient: a repeated column
        Phi[:, -1] = Phi[:, 0]
    off = 0.3 * rng.standard_normal(n * k)
    if loss == "squared":
        Y = rng.standard_normal((n, k)) if k > 1 else rng.standard_normal(n)
        return Phi, off, Y
    y = np.where(rng.standard_normal(n) > 0, 1.0, -1.0)
    if 2 * q > n:
        raise ValueError(f"logistic data needs q <= n/2 for its pairs; got q={q}, n={n}.")
    Phi[q:2 * q], off[q:2 * q], y[q:2 * q] = Phi[:q], off[:q], -y[:q]
    return Phi, off, y


def layer_objective(Phi, off, Y, theta, lam, nw, loss, *, as_torch=False):
    z = (Phi @ theta + off).reshape(np.shape(Y))
    n = np.shape(Y)[0]
    f = 0.5 * float(np.sum((z - Y) ** 2)) / n if loss == "squared" else \
        float(np.mean(softplus(-Y * z, as_torch=as_torch)))
    return f + 0.5 * lam * float(theta[:nw] @ theta[:nw])


def ref_layer(Phi, off, Y, lam, nw, loss):
    """F* of the per-layer program: squared loss in closed form (least squares of the stacked
    system), logistic by Clarabel; recomputed at the point."""
    n = np.shape(Y)[0]
    q = Phi.shape[1]
    if loss == "squared":
        E = np.zeros((nw, q))
        E[:, :nw] = np.sqrt(lam) * np.eye(nw)
        A = np.vstack([Phi / np.sqrt(n), E])
        b = np.concatenate([(np.ravel(Y) - off) / np.sqrt(n), np.zeros(nw)])
        theta = np.linalg.lstsq(A, b, rcond=None)[0]
    else:
        import cvxpy as cp

        th = cp.Variable(q)
        obj = cp.sum(cp.logistic(-cp.multiply(Y, Phi @ th + off))) / n
        if lam > 0 and nw > 0:
            obj = obj + 0.5 * lam * cp.sum_squares(th[:nw])
        _solve_ref(cp.Problem(cp.Minimize(obj)))
        theta = np.asarray(th.value)
    return layer_objective(Phi, off, Y, theta, lam, nw, loss), theta


@settings(max_examples=examples(12))
@given(seed=st.integers(0, 10_000), n=st.integers(6, 24), q=st.integers(1, 6),
       k=st.integers(1, 2), loss=LOSSES2, lam=st.sampled_from([0.0, 1e-3, 0.1]),
       nw_frac=st.sampled_from([0.0, 0.5, 1.0]), max_iter=st.sampled_from([1, 2, 3, 100]),
       f32=st.booleans())
@example(seed=1, n=12, q=3, k=1, loss="logistic", lam=0.0, nw_frac=0.0, max_iter=1, f32=False)
def test_C3_per_layer_dual_bound_off_optimum(seed, n, q, k, loss, lam, nw_frac, max_iter, f32):
    r"""solve_layer stopped after 1, 2, 3 Newton steps (logistic), or in float32 (squared: one
    Newton step is exact in float64, float32 stops near the optimum): its dual bound
    :math:`D(\alpha)`, with :math:`\alpha` projected onto :math:`\{\Phi_b^\top\alpha = 0\}`
    (the unregularised columns, every column at lam = 0), is <= F* <= objective; the gap bounds
    the true gap; "optimal" means within tol. per_layer (the dispatch) returns an objective
    >= F*, and a certified dual <= F* when it took the fast solver."""
    from altheory.solvers.dispatch import per_layer
    from altheory.solvers.fast import solve_layer

    if loss == "logistic":
        k, q = 1, min(q, n // 2)
    nw = int(round(nw_frac * q))
    Phi, off, Y = _layer_data(seed, n, q, k, loss)
    F_star, _ = ref_layer(Phi, off, Y, lam, nw, loss)
    F0 = layer_objective(Phi, off, Y, np.zeros(q), lam, nw, loss)
    tol = 1e-10
    r = solve_layer(Phi, off, Y, lam, loss=loss, n_weight=nw, tol=tol, max_iter=max_iter,
                    dtype=torch.float32 if f32 else torch.float64)
    what = (f"solve_layer {loss}, k={k}, lam={lam}, n_weight={nw}/{q}, max_iter={max_iter}, "
            f"float32={f32}: {r.status}")
    assert_close(r.objective, layer_objective(Phi, off, Y, r.theta, lam, nw, loss, as_torch=True),
                 scale=fscale(F_star, F0, r.objective), what=what)
    check_bracket(r.dual_objective, F_star, r.objective, F0=F0, what=what)
    check_gap(r.gap, r.objective, F_star, F0=F0, what=what)
    assert (r.status == "optimal") == (r.rel_gap <= tol), what
    assert r.status == "optimal" or max_iter < 100 or f32, what + ": a bound that never closes"
    if r.status == "optimal":
        check_tight(r.dual_objective, F_star, tol * max(abs(r.objective), 1e-12 * F0), F0=F0,
                    what=what)
    d = per_layer(Phi, off, Y, loss=loss, lam=lam, n_weight=nw)
    assert d.status == "optimal", what
    check_bracket(getattr(d, "dual_objective", -math.inf), F_star, d.objective, F0=F0,
                  what="per_layer " + what)


# --------------------------------------------------------------------------------------------
# C5: the Pilanci-Ergen program (altheory.solvers.pilanci_ergen)
# --------------------------------------------------------------------------------------------

def _pe_data(seed, n, d, loss):
    from altheory.solvers.arrangements import enumerate_patterns

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.maximum(X @ rng.standard_normal(d), 0) + 0.3 * rng.standard_normal(n)
    if loss == "logistic":
        y = np.where(y > np.median(y), 1.0, -1.0)
    P = enumerate_patterns(X)
    assume(P.exact)
    return X, P.G, y


def project_cones(X, G, M):
    r"""Each row ``m_i`` projected onto its cone :math:`\{v : (2D_i - I)Xv\ge0\}` (scipy's NNLS on
    the polar cone, Moreau: :math:`\Pi_K(v) = v + C^\top\mu^*`), then every row still short of
    its cone by rounding scaled to zero where it is negligible. Independent of the package's."""
    from scipy.optimize import nnls

    B = 2.0 * G - 1.0
    out = M.copy()
    for i in range(M.shape[0]):
        C = B[:, i, None] * X
        if (C @ out[i]).min() < 0:
            mu = nnls(C.T, -out[i])[0]
            out[i] = out[i] + C.T @ mu
    return out


def pe_objective(X, G, y, V, W, lam, loss, *, as_torch=False):
    z = ((X @ (V - W).T) * G).sum(1)
    return _gl_loss(z, y, loss, as_torch=as_torch) + lam * float(np.linalg.norm(V, axis=1).sum()
                                              + np.linalg.norm(W, axis=1).sum())


def pe_infeasibility(X, G, V, W):
    """The largest cone violation of the blocks, relative to the largest row value."""
    B = 2.0 * G - 1.0
    c = np.concatenate([((V @ X.T) * B.T).ravel(), ((W @ X.T) * B.T).ravel()])
    top = max(float(np.abs(c).max(initial=0.0)), 1e-300)
    return float(np.maximum(-c, 0).max(initial=0.0)) / top


def ref_pe(X, G, y, lam, loss):
    """(F*, V*, W*) of the program over every pattern: Clarabel's point projected exactly onto
    the cones (:func:`project_cones`), F* recomputed there (an upper bound on the optimum)."""
    import cvxpy as cp

    n, d = X.shape
    P = G.shape[1]
    Gf = G.astype(float)
    V, W = cp.Variable((P, d)), cp.Variable((P, d))
    z = cp.sum(cp.multiply(Gf, X @ (V - W).T), axis=1)
    f = cp.sum_squares(z - y) / (2 * n) if loss == "squared" else \
        cp.sum(cp.logistic(-cp.multiply(y, z))) / n
    B = 2.0 * Gf - 1.0
    _solve_ref(cp.Problem(cp.Minimize(f + lam * (cp.sum(cp.norm(V, 2, axis=1))
                                                 + cp.sum(cp.norm(W, 2, axis=1)))),
                          [cp.multiply(B, X @ V.T) >= 0, cp.multiply(B, X @ W.T) >= 0]))
    Vs, Ws = project_cones(X, Gf, np.asarray(V.value)), project_cones(X, Gf, np.asarray(W.value))
    return pe_objective(X, Gf, y, Vs, Ws, lam, loss), Vs, Ws


@settings(max_examples=examples(8))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 12), d=st.integers(1, 3), loss=LOSSES2,
       lam=st.sampled_from([1e-3, 1e-2, 0.1]), kind=POINTS, scale=SCALES,
       dual=st.sampled_from(["gradient", "reference", "random"]))
@example(seed=2, n=8, d=2, loss="squared", lam=1e-3, kind="zero", scale=1e-8, dual="gradient")
def test_C5_pilanci_ergen_dual_bound_off_optimum(seed, n, d, loss, lam, kind, scale, dual):
    r"""_pe_certificate at feasible points zero, random, optimal and near the optimum (projected
    onto their cones), with the dual point the loss gradient there, the reference's
    :math:`\nabla f(z^*)` or a random vector (any theta is scaled into the dual feasible set by
    the cone scores, bounded from above): dual <= F* <= primal, primal - dual >= primal - F*."""
    from altheory.solvers.pilanci_ergen import _pe_certificate

    X, G, y = _pe_data(seed, n, d, loss)
    Gf = G.astype(float)
    F_star, V_star, W_star = ref_pe(X, G, y, lam, loss)
    F0 = _gl_loss(np.zeros(n), y, loss)
    rng = np.random.default_rng(seed + 4)
    V = project_cones(X, Gf, _point(kind, V_star, rng, scale))
    W = project_cones(X, Gf, _point(kind, W_star, rng, scale))
    if dual == "gradient":
        theta = None
    elif dual == "reference":
        z = ((X @ (V_star - W_star).T) * Gf).sum(1)
        theta = (z - y) / n if loss == "squared" else -y * expit(-y * z) / n
    else:
        theta = (rng.standard_normal(n) if loss == "squared"
                 else -y * rng.uniform(0.05, 1.0, n)) / n
    primal, lower, scores = _pe_certificate(X, Gf, y, V, W, lam, loss, theta=theta)
    what = f"PE certificate {loss}, lam={lam}, {kind} {scale:g}, dual point {dual}"
    assert_close(primal, pe_objective(X, Gf, y, V, W, lam, loss, as_torch=True),
                 scale=fscale(F_star, F0, primal),
                 what=what)
    check_bracket(lower, F_star, primal, F0=F0, what=what)
    check_gap(primal - lower, primal, F_star, F0=F0, what=what)


@settings(max_examples=examples(8))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 12), d=st.integers(1, 3), loss=LOSSES2,
       lam=st.sampled_from([1e-3, 1e-2, 0.1]), max_rounds=st.sampled_from([1, 2, 30]),
       tol=st.sampled_from([1e-2, 1e-8]), working_set=st.sampled_from([None, True]))
@example(seed=1, n=10, d=2, loss="squared", lam=1e-3, max_rounds=1, tol=1e-8, working_set=True)
def test_C5_pilanci_ergen_solver_bounds_after_few_rounds(seed, n, d, loss, lam, max_rounds, tol,
                                                         working_set):
    """solve_pilanci_ergen stopped after 1 or 2 working-set rounds, or at a loose tol: its blocks
    lie in their cones (to the reported kkt_residual), dual <= F* <= objective, gap >= the true
    gap, "optimal" only within tol and then tight. relu_program over sampled patterns (a
    restriction) is an upper bound on the exact F*."""
    from altheory.solvers.arrangements import Patterns, relu_program
    from altheory.solvers.pilanci_ergen import solve_pilanci_ergen

    X, G, y = _pe_data(seed, n, d, loss)
    Gf = G.astype(float)
    F_star, _, _ = ref_pe(X, G, y, lam, loss)
    F0 = _gl_loss(np.zeros(n), y, loss)
    r = solve_pilanci_ergen(X, G, y, lam, loss=loss, tol=tol, max_rounds=max_rounds,
                            working_set=working_set)
    what = (f"solve_pilanci_ergen {loss}, lam={lam}, max_rounds={max_rounds}, tol={tol}, "
            f"working_set={working_set}: {r.status}")
    assert pe_infeasibility(X, Gf, r.V, r.W) <= max(r.kkt_residual, 1e-15), what
    assert_close(r.objective, pe_objective(X, Gf, y, r.V, r.W, lam, loss, as_torch=True),
                 scale=fscale(F_star, F0, r.objective),
                 what=what)
    check_bracket(r.dual_objective, F_star, r.objective, F0=F0, what=what)
    check_gap(r.gap, r.objective, F_star, F0=F0, what=what)
    assert (r.status == "optimal") == (r.rel_gap <= tol and r.kkt_residual <= tol), what
    assert r.status == "optimal" or max_rounds < 30 or loss != "squared", \
        what + ": a bound that never closes"
    if r.status == "optimal":
        check_tight(r.dual_objective, F_star, tol * abs(r.objective), F0=F0, what=what)
    keep = np.random.default_rng(seed).random(G.shape[1]) < 0.5
    keep[0] = True
    sub = relu_program(X, y, lam, Patterns(G[:, keep], False, "sampled"), loss=loss)
    if sub.status == "optimal":
        assert sub.kind == "upper-bound", what
        assert_leq(F_star - ref_tol(F_star, F0), sub.objective,
                   scale=fscale(F_star, F0, sub.objective),
                   what="sampled relu_program is an upper bound: " + what)


# --------------------------------------------------------------------------------------------
# C7: the path-lifted lower bound of a deep fixed-support network (altheory.certificates)
# --------------------------------------------------------------------------------------------

def net3_objective(X, y, masks, W1, W2, w3):
    r""":math:`\tfrac1{2n}\|f_S(X) - y\|^2` of the gated three-layer network, in numpy."""
    s1, s2 = masks
    out = (((X @ W1.T) * s1) @ W2.T * s2) @ w3
    return 0.5 * float(np.sum((out - y) ** 2)) / len(y)


def ref_lifted(X, y, masks):
    r"""The lifted optimum in closed form: least squares over *every* path block
    :math:`(s^2_{\cdot k}\odot s^1_{\cdot j})X` (not the distinct patterns the package groups
    them into; the column space is the same)."""
    s1, s2 = masks
    blocks = [(s2[:, k] & s1[:, j])[:, None] * X
              for k in range(s2.shape[1]) for j in range(s1.shape[1])]
    A = np.hstack(blocks)
    v = np.linalg.lstsq(A, y, rcond=None)[0]
    return 0.5 * float(np.sum((A @ v - y) ** 2)) / len(y)


@settings(max_examples=examples(8))
@given(seed=st.integers(0, 10_000), n=st.integers(6, 20), d=st.integers(1, 3),
       units=st.integers(1, 3), h2=st.integers(1, 4), replicate=st.booleans(),
       method=st.sampled_from(["lbfgs", "gd"]), steps=st.sampled_from([0, 1, 5, 400]))
@example(seed=1, n=12, d=2, units=2, h2=3, replicate=True, method="lbfgs", steps=400)
def test_C7_lifted_lower_bound_off_optimum(seed, n, d, units, h2, replicate, method, steps):
    r"""The lifted bound (``lifted_bound``, and ``certify`` of a three-layer gated MLPObjective)
    equals the closed-form lifted optimum and lies below the gated network's objective at
    random weights, after 0, 1, 5 descent steps and at a descent end point; ``certify``'s gap
    is :math:`(F(\theta) - \text{bound})/F(0)`. Under replication the bound is attained: the
    network built from the lifted solution has the bound's objective (two-sided)."""
    from altheory.certificates.certificates import certify, lifted_bound
    from altheory.claims.c7_deep_lower_bound import lifted_to_network, make_instance
    from altheory.descent.descent import MLPObjective, descend

    h1 = units * d
    X, y, masks = make_instance(seed, n, d, h1, h2, replicate)
    F0 = 0.5 * float(y @ y) / n
    res = lifted_bound(X, masks, y)
    assume(res.verified)
    bound = res.objective
    F_lift = ref_lifted(X, y, masks)
    what = f"lifted bound n={n}, d={d}, h=({h1}, {h2}), replicate={replicate}, {method} x{steps}"
    assert res.kind == "lower-bound", what
    assert_leq(F_lift, bound, scale=F0, what=what + ": the lifted program's value at its point")
    assert_leq(bound, F_lift + PKG_TOL * F0, scale=F0, what=what + ": the bound is the optimum")
    obj = MLPObjective(X, y, [np.zeros((h1, d)), np.zeros((h2, h1)), np.zeros(h2)], masks=masks)
    theta = obj.init(seed).numpy()
    if steps:
        theta = descend(obj, theta, method=method, max_iter=steps, tol_grad=1e-12 * F0,
                        seed=seed).theta
    W1, W2, w3 = (w.numpy() for w in obj.weights(theta))
    F_net = net3_objective(X, y, masks, W1, W2, w3.ravel())
    assert_close(obj.value(theta), F_net, scale=F0, what=what)
    assert_leq(bound - PKG_TOL * F0, F_net, scale=F0, what=what + ": bound <= network objective")
    c = certify(obj, theta)
    assert c.kind == "lower-bound" and c.status == "certified", what
    assert_close(c.bound, bound, scale=F0, what=what)
    assert_close(c.gap, (F_net - c.bound) / F0, scale=1.0, what=what + ": certify's gap")
    assert_leq(-PKG_TOL, c.gap, scale=1.0, what=what + ": certify's gap >= the true gap >= 0")
    if replicate:  # attained: a network with the bound's objective
        N1, N2, n3 = lifted_to_network(masks, res.U, d)
        assert_close(net3_objective(X, y, masks, N1, N2, n3), bound, scale=F0,
                     what=what + ": attained under replication")


@settings(max_examples=examples(8))
@given(seed=st.integers(0, 10_000), n=st.integers(6, 20), d=st.integers(1, 3),
       p=st.integers(1, 4), loss=LOSSES2, lam=st.sampled_from([0.0, 1e-2, 0.1]),
       kind=st.sampled_from(["zero", "random", "optimum", "near", "factors"]), scale=SCALES)
@example(seed=1, n=12, d=2, p=3, loss="squared", lam=1e-2, kind="factors", scale=0.3)
def test_C4_certify_two_layer_gap_off_optimum(seed, n, d, p, loss, lam, kind, scale):
    r"""``certify`` of a TwoLayerFixedSupport at U (zero, random, optimal, near it) or at factors
    (W1, w2) (random): its bound is F* (to the package solve's accuracy), never above the
    objective of the weights, and its gap is (F - bound)/F(0). For factors,
    :math:`\ell + \tfrac\lambda2(\|W_1\|^2 + \|w_2\|^2)\ge F^*` (C4's balanced map). At
    lam = 0 (squared loss) a two-layer gated MLPObjective is certified against the same
    optimum, the least squares over the blocks :math:`D_jX`."""
    from altheory.certificates.certificates import certify
    from altheory.descent.descent import MLPObjective
    from altheory.solvers.problems import TwoLayerFixedSupport

    if loss == "logistic" and lam == 0:
        lam = 1e-2  # the logistic infimum at lam = 0 need not be attained
    X, G, y = _gl_data(seed, n, d, p, loss)
    F_star, U_star = ref_group_lasso(X, G, y, lam, loss)
    F0 = _gl_loss(np.zeros(n), y, loss)
    rng = np.random.default_rng(seed + 5)
    P = TwoLayerFixedSupport(X, G, y, loss, lam)
    if kind == "factors":
        W1, w2 = scale * rng.standard_normal((p, d)), rng.standard_normal(p)
        weights = (W1, w2)
        F = _gl_loss(((X @ W1.T) * G) @ w2, y, loss) + 0.5 * lam * float((W1 ** 2).sum() + w2 @ w2)
    else:
        weights = _point(kind, U_star, rng, scale)
        F = gl_objective(X, G, y, weights, lam, loss)
    c = certify(P, weights)
    assume(c.status == "certified")
    what = f"certify two layers {loss}, lam={lam}, {kind} {scale:g}"
    assert c.kind == "optimum", what
    assert_close(c.objective, F, scale=fscale(F_star, F0, F), what=what)
    assert_leq(F_star - ref_tol(F_star, F0), F, scale=fscale(F_star, F0, F),
               what=what + ": F* <= F(weights)")
    assert_leq(abs(c.bound - F_star), PKG_TOL * F0, scale=F0, what=what + ": the bound is F*")
    assert_close(c.gap, (F - c.bound) / F0, scale=1.0, what=what + ": the gap")
    assert_leq((F - F_star) / F0 - PKG_TOL, c.gap, scale=1.0, what=what + ": gap >= true gap")
    if loss == "squared" and lam == 0 and kind != "factors":
        obj = MLPObjective(X, y, [np.zeros((p, d)), np.zeros(p)], masks=[G])
        theta = np.concatenate([rng.standard_normal(p * d), rng.standard_normal(p)])
        c2 = certify(obj, theta)
        A = (G[:, :, None] * X[:, None, :]).reshape(n, p * d)
        F_ls = 0.5 * float(np.sum((A @ np.linalg.lstsq(A, y, rcond=None)[0] - y) ** 2)) / n
        assert c2.kind == "optimum" and c2.status == "certified", what
        assert_leq(abs(c2.bound - F_ls), PKG_TOL * F0, scale=F0, what=what + ": L = 2 bound")
        assert_leq(c2.bound - PKG_TOL * F0, c2.objective, scale=F0, what=what + ": L = 2")


def _net2_vector_objective(X, G, Y, W1, W2, lam):
    r""":math:`\tfrac1{2n}\|\sum_j D_jXw_{1j}w_{2j}^\top - Y\|^2
    + \tfrac\lambda2(\|W_1\|^2 + \|W_2\|^2)`, in numpy."""
    out = ((X @ W1.T) * G) @ W2.T
    return 0.5 * float(np.sum((out - Y) ** 2)) / len(Y) + 0.5 * lam * float((W1 ** 2).sum()
                                                                            + (W2 ** 2).sum())


@settings(max_examples=examples(6))
@given(seed=st.integers(0, 10_000), n=st.integers(6, 16), d=st.integers(1, 3),
       p=st.integers(1, 3), k=st.integers(2, 3), lam=st.sampled_from([1e-3, 1e-2, 0.1]),
       scale=SCALES, replicate=st.booleans())
@example(seed=1, n=10, d=2, p=2, k=2, lam=1e-2, scale=0.3, replicate=True)
def test_C4_group_nuclear_lower_bound_off_optimum(seed, n, d, p, k, lam, scale, replicate):
    r"""The sum-of-nuclear-norms program (``group_nuclear``, vector outputs) is the reference's
    optimum (to the package solve's accuracy) and lies below the gated two-layer network's
    objective at random weights of every scale; when each pattern is carried by k units it is
    attained (unit r of pattern j: :math:`\sqrt{\sigma_r}` times the singular vectors)."""
    import cvxpy as cp

    from altheory.solvers.convex import group_nuclear

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    base = X @ rng.standard_normal((d, p)) > 0
    Y = rng.standard_normal((n, k))
    F0 = 0.5 * float((Y ** 2).sum()) / n
    Us = [cp.Variable((k, d)) for _ in range(p)]
    pred = sum(cp.multiply(np.repeat(base[:, [j]].astype(float), k, 1), X @ Us[j].T)
               for j in range(p))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(pred - Y) / (2 * n)
                                  + lam * sum(cp.normNuc(U) for U in Us)))
    _solve_ref(prob)
    Uv = np.stack([U.value for U in Us])
    fit = np.einsum("nj,jkd,nd->nk", base.astype(float), Uv, X)
    F_star = 0.5 * float(np.sum((fit - Y) ** 2)) / n \
        + lam * float(sum(np.linalg.svd(U, compute_uv=False).sum() for U in Uv))
    res = group_nuclear(X, base, Y, lam)
    assume(res.verified)
    what = f"group_nuclear n={n}, d={d}, p={p}, k={k}, lam={lam}, scale={scale:g}"
    assert res.kind == "lower-bound", what
    assert_leq(abs(res.objective - F_star), PKG_TOL * F0, scale=F0, what=what + ": the optimum")
    G = np.repeat(base, k, axis=1) if replicate else base
    W1 = scale * rng.standard_normal((G.shape[1], d))
    W2 = rng.standard_normal((k, G.shape[1]))
    assert_leq(res.objective - PKG_TOL * F0, _net2_vector_objective(X, G, Y, W1, W2, lam), scale=F0,
               what=what + ": bound <= network objective")
    if replicate:  # attained: k units per pattern carry its singular triplets
        U = res.weights["U"]
        N1, N2 = np.zeros((p * k, d)), np.zeros((k, p * k))
        for j in range(p):
            a, s, bt = np.linalg.svd(U[j], full_matrices=False)
            for r in range(len(s)):
                N1[j * k + r], N2[:, j * k + r] = np.sqrt(s[r]) * bt[r], np.sqrt(s[r]) * a[:, r]
        assert_close(_net2_vector_objective(X, G, Y, N1, N2, lam), res.objective, scale=F0,
                     what=what + ": attained under replication")


# --------------------------------------------------------------------------------------------
# C8: the softmax head (altheory.solvers.softmax_head, altheory.train.head)
# --------------------------------------------------------------------------------------------

def _head_data(seed, n, p, k):
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((n, p))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class occurs: with an unpenalised bias a minimiser exists
    return Phi, y


def softmax_objective(Phi, y, W, b, lam, lam_b):
    r""":math:`\tfrac1n\sum_i\mathrm{lse}(W\phi_i + b) - (W\phi_i + b)_{y_i} + \tfrac\lambda2\|W\|^2
    + \tfrac{\lambda_b}2\|b\|^2`, in numpy."""
    Z = Phi @ W.T + b
    m = Z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(Z - m).sum(1, keepdims=True))).ravel()
    return float(np.mean(lse - Z[np.arange(len(y)), y])) + 0.5 * lam * float((W ** 2).sum()) \
        + 0.5 * lam_b * float(b @ b)


def ref_softmax(Phi, y, k, lam, lam_b):
    """(F*, W*, b*) of the head problem by Clarabel, F* recomputed at its point."""
    import cvxpy as cp

    n, p = Phi.shape
    W, b = cp.Variable((k, p)), cp.Variable(k)
    Z = Phi @ W.T + np.ones((n, 1)) @ cp.reshape(b, (1, k), order="C")
    obj = (cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(np.eye(k)[y], Z))) / n \
        + lam / 2 * cp.sum_squares(W) + lam_b / 2 * cp.sum_squares(b)
    _solve_ref(cp.Problem(cp.Minimize(obj)))
    Ws, bs = np.asarray(W.value), np.asarray(b.value)
    return softmax_objective(Phi, y, Ws, bs, lam, lam_b), Ws, bs


HEAD_POINTS = st.sampled_from(["zero", "random", "optimum", "near", "bias"])


def _head_point(kind, W_star, b_star, rng, scale):
    """(W, b) of ``kind`` (:func:`_point`), or ``"bias"``: the optimal W with the bias moved by
    ``scale`` (the bias's share of a certificate is then all of it)."""
    if kind == "bias":
        return W_star.copy(), b_star + max(scale, 0.3) * rng.standard_normal(b_star.shape)
    return _point(kind, W_star, rng, scale), _point(kind, b_star, rng, scale)


@settings(max_examples=examples(10))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 30), p=st.integers(1, 4),
       k=st.integers(2, 3), lam=st.sampled_from([1e-3, 0.05, 1.0]),
       lam_b=st.sampled_from([0.0, 0.0, 0.05, 1.0]), kind=HEAD_POINTS, scale=SCALES,
       max_iter=st.sampled_from([0, 1, 2, 100]))
@example(seed=1, n=20, p=3, k=3, lam=0.05, lam_b=0.05, kind="optimum", scale=0.3, max_iter=1)
def test_C8_softmax_head_dual_bound_off_optimum(seed, n, p, k, lam, lam_b, kind, scale, max_iter):
    r"""``head_certificate`` at (W, b) zero, random, optimal or near it, with and without a bias
    penalty: :math:`D(A(W, b))\le F^*\le F(W, b)`, gap >= F - F*; ``solve_softmax_head``
    warm-started there and stopped after 0, 1, 2 Newton steps (or converged): the same bracket,
    and "optimal" only within tol, then tight."""
    from altheory.solvers.softmax_head import head_certificate, solve_softmax_head

    Phi, y = _head_data(seed, n, p, k)
    F_star, W_star, b_star = ref_softmax(Phi, y, k, lam, lam_b)
    F0 = math.log(k)
    rng = np.random.default_rng(seed + 6)
    W, b = _head_point(kind, W_star, b_star, rng, scale)
    what = f"softmax head k={k}, lam={lam}, lam_b={lam_b}, {kind} {scale:g}"
    c = head_certificate(Phi, y, W, b, lam, lam_b=lam_b, num_classes=k)
    assert_close(c["primal"], softmax_objective(Phi, y, W, b, lam, lam_b), scale=F0, what=what)
    check_bracket(c["dual"], F_star, c["primal"], F0=F0, what=what)
    check_gap(c["gap"], c["primal"], F_star, F0=F0, what=what)
    tol = 1e-10
    r = solve_softmax_head(Phi, y, k, lam=lam, lam_b=lam_b, tol=tol, max_iter=max_iter, W0=W, b0=b)
    what += f", solver max_iter={max_iter}: {r.status}"
    assert_close(r.primal, softmax_objective(Phi, y, r.W, r.b, lam, lam_b), scale=F0, what=what)
    check_stopped_solver(r.dual, r.primal, r.gap, r.rel_gap, r.status, F_star, tol=tol,
                         must_close=max_iter >= 100, F0=F0, what=what)


@settings(max_examples=examples(15))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 30), p=st.integers(1, 4),
       k=st.integers(2, 3), lam=st.sampled_from([1e-3, 0.05, 1.0]),
       lam_b=st.sampled_from([0.0, 0.05, 1.0]),
       where=st.sampled_from(["mixture", "vertex", "softmax", "rescaled", "optimal",
                              "off-simplex"]))
@example(seed=1, n=20, p=3, k=3, lam=0.05, lam_b=0.0, where="softmax")
def test_C8_softmax_head_dual_at_any_dual_point(seed, n, p, k, lam, lam_b, where):
    r"""``softmax_head_dual`` at dual points A: feasible interior ones (mixtures of permuted
    one-hot labels and the class frequencies, whose column means are the frequencies), on the
    boundary (a permutation of the one-hot labels: entries 0 and 1, entropy 0), the softmax of
    random logits (column means off the frequencies: infeasible without a bias penalty, where
    the docstring promises :math:`-\infty`; feasible with one), ``dual_point``'s rescaling of
    them (feasible, as documented), the dual point of the optimum (tight), and rows off the
    simplex (refused with ValueError). Every finite value is <= F*."""
    from altheory.solvers.softmax_head import dual_point, softmax_head_dual, solve_softmax_head

    Phi, y = _head_data(seed, n, p, k)
    F_star, _, _ = ref_softmax(Phi, y, k, lam, lam_b)
    F0 = math.log(k)
    rng = np.random.default_rng(seed + 7)
    Y = np.eye(k)[y]
    ybar = Y.mean(0)
    W, b = 2 * rng.standard_normal((k, p)), rng.standard_normal(k)
    if where == "mixture":
        w = rng.dirichlet(np.ones(4))
        A = sum(w[m] * Y[rng.permutation(n)] for m in range(3)) + w[3] * np.tile(ybar, (n, 1))
    elif where == "vertex":
        A = Y[rng.permutation(n)]
    elif where == "softmax":
        Z = Phi @ W.T + b
        A = np.exp(Z - Z.max(1, keepdims=True))
        A /= A.sum(1, keepdims=True)
    elif where == "rescaled":
        A = dual_point(Phi, y, W, b, lam_b=lam_b, lam=lam, num_classes=k)
    elif where == "optimal":  # the dual point of a head certified to 1e-12
        r = solve_softmax_head(Phi, y, k, lam=lam, lam_b=lam_b, tol=1e-12)
        assume(r.status == "optimal")
        A = dual_point(Phi, y, r.W, r.b, lam_b=lam_b, lam=lam, num_classes=k)
    else:  # rows off the simplex
        A = np.full((n, k), 1.0 / k)
        A[0] *= 1.5
        with pytest.raises(ValueError, match="probability vector"):
            softmax_head_dual(Phi, y, A, lam, lam_b=lam_b, num_classes=k)
        return
    D = softmax_head_dual(Phi, y, A, lam, lam_b=lam_b, num_classes=k)
    what = f"softmax dual k={k}, lam={lam}, lam_b={lam_b}, A {where}"
    off_means = float(np.abs(A.mean(0) - ybar).max())
    if lam_b == 0 and off_means > 1e-12:
        assert D == -math.inf, what + f": column means off by {off_means:.3g} must give -inf"
        return
    assert math.isfinite(D), what + ": a feasible dual point has a finite value"
    assert_leq(D, F_star, scale=fscale(F_star, F0), what=what)
    if where == "optimal":
        check_tight(D, F_star, 1e-12 * abs(r.primal), F0=F0, what=what)


@settings(max_examples=examples(10))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 30), p=st.integers(1, 4),
       k=st.integers(2, 3), l2=st.sampled_from([1e-3, 0.05, 1.0]), kind=HEAD_POINTS,
       scale=SCALES, max_iter=st.sampled_from([0, 1, 2, 50]))
@example(seed=1, n=20, p=3, k=3, l2=0.05, kind="random", scale=0.3, max_iter=0)
@example(seed=1, n=20, p=3, k=3, l2=1.0, kind="bias", scale=3.0, max_iter=0)
def test_C8_head_strong_convexity_bound_off_optimum(seed, n, p, k, l2, kind, scale, max_iter):
    r"""The trainer's exact head (``solve_head``, W and b both decayed by l2) stopped after 0, 1,
    2 Newton steps from zero, random, optimal or nearby starts: its strong-convexity bound
    :math:`F - \|\nabla F\|^2/(2\lambda)\le F^*\le F`; "optimal" (gradient <= tol) makes it
    tight. ``head_gap`` of a head at those weights brackets the true normalised gap:
    ``gap <= (F_sgd - F*)/F(0) <= gap_certified``."""
    from torch import nn

    from altheory.train.head import head_gap, solve_head

    Phi, y = _head_data(seed, n, p, k)
    F_star, W_star, b_star = ref_softmax(Phi, y, k, l2, l2)
    F0 = math.log(k)
    rng = np.random.default_rng(seed + 8)
    W, b = _head_point(kind, W_star, b_star, rng, scale)
    Pt, yt = torch.from_numpy(Phi), torch.from_numpy(y)
    tol = 1e-8
    s = solve_head(Pt, yt, k, l2=l2, tol=tol, max_iter=max_iter, W0=torch.from_numpy(W),
                   b0=torch.from_numpy(b))
    what = f"solve_head k={k}, l2={l2}, {kind} {scale:g}, max_iter={max_iter}: {s.status}"
    assert_close(s.F, softmax_objective(Phi, y, s.W.numpy(), s.b.numpy(), l2, l2), scale=F0,
                 what=what)
    check_bracket(s.F_lower, F_star, s.F, F0=F0, what=what)
    assert (s.status == "optimal") == (s.grad_norm <= tol), what
    assert s.status == "optimal" or max_iter < 50, what + ": a bound that never closes"
    if s.status == "optimal":
        check_tight(s.F_lower, F_star, tol ** 2 / (2 * l2), F0=F0, what=what)
    head = nn.Linear(p, k).double()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(W))
        head.bias.copy_(torch.from_numpy(b))
    g = head_gap(Pt, yt, head, l2=l2)
    F_sgd = softmax_objective(Phi, y, W, b, l2, l2)
    assert_close(g["F_sgd"], F_sgd, scale=F0, what=what)
    true_gap = (F_sgd - F_star) / F0
    assert_leq(g["gap"], true_gap + ref_tol(F_star, F0) / F0, scale=1.0,
               what=what + ": gap <= true")
    assert_leq(true_gap, g["gap_certified"], scale=1.0, what=what + ": gap_certified >= true")


# --------------------------------------------------------------------------------------------
# C8: certify_run's bracket of F* for a trained run (altheory.train.certify)
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny trained run (ResNet-8 of width 4, 32 synthetic 8x8 images, 3 classes, float64)."""
    from _train_helpers import tiny

    from altheory.train import train

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny(tmp_path_factory.mktemp("bounds_run"), epochs=1)
        train(cfg, quiet=True)
    finally:
        torch.set_num_threads(n_threads)
    return cfg


def _run_features(cfg, n):
    """The head's inputs and the labels of the first ``n`` training samples (the certified
    ones), taken here by a hook on the final linear layer of the reloaded float64 model."""
    from altheory.train import load_run
    from altheory.train.distributed import DistInfo
    from altheory.train.models import final_linear
    from altheory.train.pipeline import build_data

    run = load_run(cfg.out_dir)
    model = run.model.double().eval()
    data = build_data(cfg, DistInfo(0, 1, 0, torch.device("cpu"), False), torch.float64)
    head = final_linear(model)
    feats, ys = [], []
    hook = head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].detach()))
    try:
        with torch.no_grad():
            for x, y in data.eval_batches("train", limit=n, shard=False, batch_size=64):
                model(x)
                ys.append(y)
    finally:
        hook.remove()
    W, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    return torch.cat(feats).numpy(), torch.cat(ys).numpy(), W, b


@settings(max_examples=examples(6))
@given(lam=st.sampled_from([None, 1e-3, 0.1]), lam_b=st.sampled_from([0.0, 0.05]),
       subset=st.sampled_from([0, 8, 20]), max_iter=st.sampled_from([0, 1, 3, 100]),
       tol=st.sampled_from([1e-10, 1e-4]))
@example(lam=None, lam_b=0.0, subset=0, max_iter=0, tol=1e-10)
def test_C8_certify_run_bracket_off_optimum(trained_run, lam, lam_b, subset, max_iter, tol):
    r"""``certify_run`` with every option (weight decay or a given lam, a bias penalty, a subset,
    the solver stopped after 0, 1, 3 Newton steps, a loose tol): the bracket
    ``F_star_lower <= F* <= F_star_upper`` holds around the reference optimum of the head problem
    on the same features, ``gap_lower <= (F_trained - F*)/F(0) <= gap_certified`` and
    ``gap_self_certified`` bounds the true gap too; ``F_trained`` is the trained head's
    objective; "optimal" means within tol, and then the bracket is tight."""
    from altheory.train import certify_run

    cfg = trained_run
    rep = certify_run(cfg.out_dir, subset=subset, lam=lam, lam_b=lam_b, tol=tol,
                      max_iter=max_iter, out="")
    lam_used = cfg.weight_decay if lam is None else lam
    n = subset or cfg.synthetic_n
    Phi, y, W, b = _run_features(cfg, n)
    k = W.shape[0]
    assert (rep.n, rep.k, rep.lam, rep.lam_b) == (n, k, lam_used, lam_b)
    assume(len(np.unique(y)) == k or lam_b > 0)  # unpenalised bias: a minimiser needs every class
    F_star, _, _ = ref_softmax(Phi, y, k, lam_used, lam_b)
    F0 = math.log(k)
    what = (f"certify_run lam={lam_used}, lam_b={lam_b}, subset={subset}, max_iter={max_iter}, "
            f"tol={tol}")
    assert_close(rep.F_trained, softmax_objective(Phi, y, W, b, lam_used, lam_b), scale=F0,
                 what=what)
    check_bracket(rep.F_star_lower, F_star, rep.F_star_upper, F0=F0, what=what)
    true_gap = (rep.F_trained - F_star) / F0
    assert_leq(rep.gap_lower, true_gap + ref_tol(F_star, F0) / F0, scale=1.0,
               what=what + ": gap_lower")
    assert_leq(true_gap, rep.gap_certified, scale=1.0, what=what + ": gap_certified")
    assert_leq(true_gap, rep.gap_self_certified, scale=1.0, what=what + ": gap_self_certified")
    assert (rep.status == "optimal") == (rep.solver["rel_gap"] <= tol), what
    assert rep.status == "optimal" or max_iter < 100, what + ": a bound that never closes"
    if rep.status == "optimal":
        check_tight(rep.F_star_lower, F_star, tol * abs(rep.F_star_upper), F0=F0, what=what)
