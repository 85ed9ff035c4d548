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
:mod:`altheory.floats` (scale :math:`|F^*|`). The reference :math:`F^*` is never Clarabel's
reported value: it is the objective recomputed here, in numpy, at Clarabel's point (made exactly
feasible where the program has constraints), hence an upper bound on the true optimum, so
"lower bound :math:`\le F^*`" is checked with no tolerance at all. Only the checks that need the
reference to be *close* to the optimum ("the bound is not loose", "the primal value is not below
the optimum") add ``REF_TOL``, the reference's own accuracy (Clarabel at gap and feasibility
tolerances 1e-10: within 3e-11 absolute of the certified optima of these sizes, objectives of
order 0.1-1).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from altheory.floats import assert_close, assert_leq

# --------------------------------------------------------------------------------------------
# tolerances, examples and the reference solver
# --------------------------------------------------------------------------------------------

REF_TOL = 1e-9      # accuracy of the Clarabel reference, relative to max(|F*|, F(0))
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


def ref_tol(F_star: float, F0: float) -> float:
    """The reference's accuracy in objective units (``REF_TOL`` of the larger of the two)."""
    return REF_TOL * max(abs(F_star), abs(F0))


def check_bracket(lower, F_star, upper, *, F0, what):
    r"""lower :math:`\le F^*` (rounding only: ``F_star`` is an upper bound on the optimum) and
    upper :math:`\ge F^* -` the reference's accuracy."""
    assert_leq(lower, F_star, scale=abs(F_star), what=f"{what}: lower bound <= F*")
    assert_leq(F_star - ref_tol(F_star, F0), upper, scale=abs(F_star),
               what=f"{what}: F* <= primal value")


def check_gap(gap, primal, F_star, *, what):
    """The reported gap bounds the true gap ``primal - F*`` (F* an upper bound on the optimum)."""
    assert_leq(primal - F_star, gap, scale=max(abs(F_star), abs(primal)),
               what=f"{what}: reported gap >= true gap")


def check_tight(lower, F_star, tol_abs, *, F0, what):
    """At a converged point the bound is within the solver's tolerance (plus the reference's)
    of F*: a bound that returns -1e300 fails here."""
    assert_leq(F_star - tol_abs - ref_tol(F_star, F0), lower, scale=abs(F_star),
               what=f"{what}: bound within the solver's tolerance of F*")


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


def _gl_loss(z, y, loss):
    if loss == "squared":
        return 0.5 * float(np.sum((z - y) ** 2)) / len(y)
    return float(np.mean(np.logaddexp(0.0, -y * z)))


def gl_objective(X, G, y, U, lam, loss):
    r""":math:`F(U) = \ell(\sum_j D_jXu_j) + \lambda\sum_j\|u_j\|` in numpy (the reference's)."""
    z = np.einsum("nj,jd,nd->n", G.astype(float), U, X)
    return _gl_loss(z, y, loss) + lam * float(np.linalg.norm(U, axis=1).sum())


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
    assert_close(c["objective"], gl_objective(X, G, y, U, lam, loss), scale=abs(F_star), what=what)
    assert_close(c["gap"], c["objective"] - c["dual_objective"], scale=abs(F_star), what=what)
    check_bracket(c["dual_objective"], F_star, c["objective"], F0=F0, what=what)
    check_gap(c["gap"], c["objective"], F_star, what=what)
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


@settings(max_examples=examples(12))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 24), d=st.integers(1, 3),
       p=st.integers(1, 5), loss=LOSSES2, frac=st.sampled_from([0.01, 0.2, 0.9]),
       where=st.sampled_from(["feasible", "boundary", "infeasible", "gradient", "signed"]),
       size=st.sampled_from([1e-3, 0.5, 1.0, 4.0, 1e3]))
def test_C4_group_lasso_dual_bound_at_any_dual_point(seed, n, d, p, loss, frac, where, size):
    r"""The dual value on the ray through any point theta (``_dual_on_ray``, the certificate's
    core) is a lower bound on F*: theta strictly feasible, on the boundary
    (:math:`\max_j\|X^\top D_j\theta\| = \lambda`), infeasible (scaled back to the feasible set
    along the ray, as documented), the loss gradient of a random point, or with signs that put
    it outside the logistic conjugate's domain (then the bound is :math:`-\infty`). It is never
    below the classical scaling :math:`\theta/\max(1, s)`, and equals it at the boundary when
    the ray's optimum lies beyond it."""
    from altheory.solvers.fast import _dual_on_ray, lambda_max

    X, G, y = _gl_data(seed, n, d, p, loss)
    lam = frac * lambda_max(X, G, y, loss=loss)
    assume(lam > 0)
    F_star, _ = ref_group_lasso(X, G, y, lam, loss)
    rng = np.random.default_rng(seed + 2)
    if where == "gradient":  # the loss gradient at a random prediction
        z = rng.standard_normal(n)
        g = (z - y) / n if loss == "squared" else -y / (1 + np.exp(y * z)) / n
    elif loss == "logistic" and where != "signed":  # inside the conjugate's domain: -n y g in (0, 1)
        g = -y * rng.uniform(0.05, 1.0, n) / n
    else:
        g = rng.standard_normal(n) / n
    scores = np.linalg.norm(G.T.astype(float) @ (g[:, None] * X), axis=1) / lam  # ||X^T D_j g||/lam
    smax = float(scores.max())
    assume(smax > 0)
    target = {"feasible": 0.5, "boundary": 1.0, "infeasible": 4.0}.get(where)
    if target is not None:
        g = g * (target / smax) * (size if where == "infeasible" else 1.0)
        smax = smax * (target / smax) * (size if where == "infeasible" else 1.0)
    value = _dual_on_ray(torch.as_tensor(g), smax, torch.as_tensor(y), loss)
    what = f"dual on the ray, {loss}, {where} (s_max={smax:.3g})"
    assert_leq(value, F_star, scale=abs(F_star), what=what)
    classic = -_conj_np(g / max(1.0, smax), y, loss)
    assert_leq(classic, value, scale=abs(F_star), what=what + ": never below the classical scaling")
    if loss == "logistic":
        sig = -n * y * g
        if (sig < 0).any():  # outside the conjugate's domain for every alpha > 0
            assert value == -math.inf, what + ": outside the conjugate's domain the bound is -inf"
        else:  # the segment [0, min(1/s_max, 1/max sigma)] is feasible and in the domain
            hi = min(1.0 / smax, 1.0 / float(sig.max()))
            for a in (0.5 * hi, hi):
                assert_leq(-_conj_np(a * g, y, loss), value, scale=abs(F_star),
                           what=what + f": the best point of the segment (alpha={a:.3g})")
    elif where == "boundary":  # the ray's optimum alpha* = -g.y/(n|g|^2), clipped to |alpha| <= 1
        a_star = -float(g @ y) / (n * float(g @ g))
        best = -_conj_np(float(np.clip(a_star, -1.0, 1.0)) * g, y, loss)
        assert_close(value, best, scale=abs(F_star), what=what + ": the clipped optimum of the ray")


@settings(max_examples=examples(10))
@given(seed=st.integers(0, 10_000), n=st.integers(6, 24), d=st.integers(1, 3),
       p=st.integers(1, 6), loss=LOSSES2, frac=st.sampled_from([0.01, 0.1, 0.5]),
       max_iter=st.sampled_from([1, 2, 5, 20, 20_000]), warm=st.booleans())
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
    assert_close(r.objective, gl_objective(X, G, y, r.U, lam, loss), scale=abs(F_star), what=what)
    check_bracket(r.dual_objective, F_star, r.objective, F0=F0, what=what)
    check_gap(r.gap, r.objective, F_star, what=what)
    assert (r.status == "optimal") == (r.rel_gap <= tol), what
    if r.status == "optimal":
        check_tight(r.dual_objective, F_star, tol * abs(r.objective), F0=F0, what=what)


# --------------------------------------------------------------------------------------------
# C3: the per-layer program (altheory.solvers.fast.solve_layer, altheory.solvers.per_layer)
# --------------------------------------------------------------------------------------------

def _layer_data(seed, n, q, k, loss, lam):
    """Phi (n*k, q), offset, Y. Logistic at lam = 0: q pairs of equal rows with opposite labels
    make the data inseparable and the loss coercive, so the optimum is attained."""
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((n * k, q))
    if q > 1 and rng.random() < 0.3:  # rank deficient: a repeated column
        Phi[:, -1] = Phi[:, 0]
    off = 0.3 * rng.standard_normal(n * k)
    if loss == "squared":
        Y = rng.standard_normal((n, k)) if k > 1 else rng.standard_normal(n)
        return Phi, off, Y
    y = np.where(rng.standard_normal(n) > 0, 1.0, -1.0)
    if lam == 0:
        m = min(q + 1, n // 2)
        Phi[m:2 * m], off[m:2 * m], y[m:2 * m] = Phi[:m], off[:m], -y[:m]
    return Phi, off, y


def layer_objective(Phi, off, Y, theta, lam, nw, loss):
    z = (Phi @ theta + off).reshape(np.shape(Y))
    n = np.shape(Y)[0]
    f = 0.5 * float(np.sum((z - Y) ** 2)) / n if loss == "squared" else \
        float(np.mean(np.logaddexp(0.0, -Y * z)))
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
        k = 1
    nw = int(round(nw_frac * q))
    Phi, off, Y = _layer_data(seed, n, q, k, loss, lam)
    F_star, _ = ref_layer(Phi, off, Y, lam, nw, loss)
    F0 = layer_objective(Phi, off, Y, np.zeros(q), lam, nw, loss)
    tol = 1e-10
    r = solve_layer(Phi, off, Y, lam, loss=loss, n_weight=nw, tol=tol, max_iter=max_iter,
                    dtype=torch.float32 if f32 else torch.float64)
    what = (f"solve_layer {loss}, k={k}, lam={lam}, n_weight={nw}/{q}, max_iter={max_iter}, "
            f"float32={f32}: {r.status}")
    assert_close(r.objective, layer_objective(Phi, off, Y, r.theta, lam, nw, loss),
                 scale=abs(F_star), what=what)
    check_bracket(r.dual_objective, F_star, r.objective, F0=F0, what=what)
    check_gap(r.gap, r.objective, F_star, what=what)
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


def pe_objective(X, G, y, V, W, lam, loss):
    z = ((X @ (V - W).T) * G).sum(1)
    return _gl_loss(z, y, loss) + lam * float(np.linalg.norm(V, axis=1).sum()
                                              + np.linalg.norm(W, axis=1).sum())


def pe_infeasibility(X, G, V, W):
    """The largest cone violation of the blocks, relative to the largest row value."""
    B = 2.0 * G - 1.0
    c = np.concatenate([((V @ X.T) * B.T).ravel(), ((W @ X.T) * B.T).ravel()])
    return float(np.maximum(-c, 0).max(initial=0.0)) / max(float(np.abs(c).max(initial=0.0)), 1e-300)


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
        theta = (z - y) / n if loss == "squared" else -y / (1 + np.exp(y * z)) / n
    else:
        theta = (rng.standard_normal(n) if loss == "squared"
                 else -y * rng.uniform(0.05, 1.0, n)) / n
    primal, lower, scores = _pe_certificate(X, Gf, y, V, W, lam, loss, theta=theta)
    what = f"PE certificate {loss}, lam={lam}, {kind} {scale:g}, dual point {dual}"
    assert_close(primal, pe_objective(X, Gf, y, V, W, lam, loss), scale=abs(F_star), what=what)
    check_bracket(lower, F_star, primal, F0=F0, what=what)
    check_gap(primal - lower, primal, F_star, what=what)


@settings(max_examples=examples(8))
@given(seed=st.integers(0, 10_000), n=st.integers(4, 12), d=st.integers(1, 3), loss=LOSSES2,
       lam=st.sampled_from([1e-3, 1e-2, 0.1]), max_rounds=st.sampled_from([1, 2, 30]),
       tol=st.sampled_from([1e-2, 1e-8]), working_set=st.sampled_from([None, True]))
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
    assert_close(r.objective, pe_objective(X, Gf, y, r.V, r.W, lam, loss), scale=abs(F_star),
                 what=what)
    check_bracket(r.dual_objective, F_star, r.objective, F0=F0, what=what)
    check_gap(r.gap, r.objective, F_star, what=what)
    assert (r.status == "optimal") == (r.rel_gap <= tol and r.kkt_residual <= tol), what
    if r.status == "optimal":
        check_tight(r.dual_objective, F_star, tol * abs(r.objective), F0=F0, what=what)
    keep = np.random.default_rng(seed).random(G.shape[1]) < 0.5
    keep[0] = True
    sub = relu_program(X, y, lam, Patterns(G[:, keep], False, "sampled"), loss=loss)
    if sub.status == "optimal":
        assert sub.kind == "upper-bound", what
        assert_leq(F_star - ref_tol(F_star, F0), sub.objective, scale=abs(F_star),
                   what="sampled relu_program is an upper bound: " + what)
