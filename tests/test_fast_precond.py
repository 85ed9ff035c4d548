"""The Newton inner solve of altheory.solvers.fast against dense, obviously correct references.

The sample-space (Woodbury) preconditioner, the preconditioned CG and the projected Newton line
search are fast paths: each is compared here with the explicit (kd, kd) matrices it stands for
(numpy, float64), and the solver that uses them with the solver that does not (block-Jacobi only)
and with Clarabel (cvxpy). Tolerances (stated once): preconditioner and CG against the dense
solve, 1e-6 relative (float32 factor) or 1e-10 (float64); solutions, the certified gap
``rel_gap <= 1e-8`` and objectives within the larger certified gap. Values equal or ordered in
exact arithmetic are compared by :mod:`altheory.floats` at the scale of F(0) (objectives).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from altheory.floats import assert_close, assert_leq
from altheory.solvers import fast
from altheory.solvers.convex import group_lasso
from altheory.solvers.fast import MaskedDesign, group_lasso_certificate, solve_group_lasso

TOL = 1e-8         # the certified relative gap asked of the solver
F32 = 1e-6         # a float32 preconditioner against its dense float64 formula, relative
F64 = 1e-10        # the same in float64


def _F0(y, loss) -> float:
    """F(0): the objective at U = 0, the scale of the objectives' rounding."""
    return float(fast._loss(torch.zeros(len(y), dtype=torch.float64), torch.as_tensor(y), loss))


def _instance(seed, n, d, p, loss="squared"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    G = X @ rng.standard_normal((d, p)) > 0
    y = np.maximum(X @ rng.standard_normal(d), 0) + 0.1 * rng.standard_normal(n)
    if loss == "logistic":
        y = np.where(y > np.median(y), 1.0, -1.0)
    return X, G, y


def _dense_design(X, G):
    """The (n, p d) design: column block j is D_j X."""
    n, d = X.shape
    return (G[:, :, None] * X[:, None, :]).reshape(n, -1).astype(np.float64)


def _point(seed, n, d, k, loss):
    """A random non-zero point on k groups, its design, curvature w, r_j and unit directions."""
    X, G, y = _instance(seed, n, d, k, loss)
    rng = np.random.default_rng(seed + 1)
    u = rng.standard_normal((k, d))
    A = MaskedDesign(torch.as_tensor(X), torch.as_tensor(G))
    z = A.matvec(torch.as_tensor(u))
    w = fast._curv(z, torch.as_tensor(y), loss)
    lam = 0.05
    nrm = np.linalg.norm(u, axis=1)
    return X, G, y, A, torch.as_tensor(u), w, lam, torch.as_tensor(lam / nrm), \
        torch.as_tensor(u / nrm[:, None])


def _dense_hessian(X, G, w, r, uh, c=None):
    """H = A^T W A + blkdiag(r_j (I - uh uh^T)) (+ c_j uh uh^T when c is given: M)."""
    Ad = _dense_design(X, G)
    k, d = uh.shape
    H = Ad.T @ (np.asarray(w)[:, None] * Ad)
    for j in range(k):
        P = np.outer(uh[j], uh[j])
        H[j * d:(j + 1) * d, j * d:(j + 1) * d] += r[j] * (np.eye(d) - P)
        if c is not None:
            H[j * d:(j + 1) * d, j * d:(j + 1) * d] += c[j] * P
    return H


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("n, d, k", [(40, 3, 20), (30, 4, 6), (25, 2, 30)])
def test_sample_space_preconditioner_is_the_inverse_of_its_matrix(loss, n, d, k):
    """M^{-1} v by Woodbury in sample space equals the dense solve with M = A^T W A + R~."""
    X, G, y, A, u, w, lam, r, uh = _point(3, n, d, k, loss)
    pre = fast._SampleSpacePrecond(A, w, r, uh)
    assert pre.ok
    c = 1.0 / (pre.dc.numpy() + 1.0 / r.numpy())  # the c_j it chose (1/c - 1/r stored)
    M = _dense_hessian(X, G, w.numpy(), r.numpy(), uh.numpy(), c)
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.standard_normal((k, d))
        got = pre(torch.as_tensor(v)).numpy().ravel()
        want = np.linalg.solve(M, v.ravel())
        tol = F32 if pre.dtype == torch.float32 else F64
        assert np.linalg.norm(got - want) <= tol * 1e3 * np.linalg.norm(want), (
            pre.dtype, np.linalg.norm(got - want) / np.linalg.norm(want))
    # M - H is c_j uh uh^T on each block, c_j a small fraction of A's curvature along uh_j
    Ad = _dense_design(X, G)
    curv = np.array([float(np.sum(w.numpy() * (Ad[:, j * d:(j + 1) * d] @ uh[j].numpy()) ** 2))
                     for j in range(k)])
    assert_leq(c, fast._WB_C * curv + fast._WB_C * float(r.min()), what="c_j of the preconditioner")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cholesky_pair_of_triangular_solves_equals_cholesky_solve(dtype):
    """fast._chol_solve (two triangular solves, the fast path) against torch.cholesky_solve."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(300, 300, generator=g, dtype=torch.float64)
    K = (A @ A.T / 300 + torch.eye(300, dtype=torch.float64)).to(dtype)
    L = torch.linalg.cholesky(K)
    b = torch.randn(300, 3, generator=g, dtype=torch.float64).to(dtype)
    got = fast._chol_solve(L, b)
    # rounding of triangular solves of n = 300 rows (cond K ~ 5) in the dtype: kappa 4 n
    npd = np.float32 if dtype == torch.float32 else np.float64
    assert_close(got.double().numpy(), torch.cholesky_solve(b, L).double().numpy(), dtype=npd,
                 kappa=1200, what="two triangular solves")
    terms = float((K.abs() @ got.abs()).max())             # the residual's terms
    assert_close((K @ got).double().numpy(), b.double().numpy(), dtype=npd, kappa=1200,
                 scale=terms, what="K x = b")


def test_sample_space_preconditioner_falls_back_to_float64_when_float32_is_too_coarse():
    """Curvature / r_j above ~1e4 leaves float32 fewer than three digits: the factor is float64."""
    X, G, y, A, u, w, lam, r, uh = _point(5, 30, 3, 8, "squared")
    assert fast._SampleSpacePrecond(A, w, r, uh).dtype == torch.float32
    tiny = r * 1e-9  # lambda / ||u_j|| tiny: huge curvature ratios
    pre = fast._SampleSpacePrecond(A, w, tiny, uh)
    assert pre.dtype == torch.float64


def test_restricted_preconditioner_is_a_principal_block_of_the_inverse():
    X, G, y, A, u, w, lam, r, uh = _point(7, 30, 3, 10, "squared")
    pre = fast._SampleSpacePrecond(A, w, r, uh)
    pos = torch.tensor([0, 2, 3, 7, 9])
    sub = fast._Restricted(pre, pos)
    c = 1.0 / (pre.dc.numpy() + 1.0 / r.numpy())
    Minv = np.linalg.inv(_dense_hessian(X, G, w.numpy(), r.numpy(), uh.numpy(), c))
    cols = np.concatenate([np.arange(j * 3, j * 3 + 3) for j in pos.tolist()])
    v = np.random.default_rng(1).standard_normal((5, 3))
    got = sub(torch.as_tensor(v)).numpy().ravel()
    want = Minv[np.ix_(cols, cols)] @ v.ravel()
    assert np.linalg.norm(got - want) <= F32 * 1e3 * np.linalg.norm(want)


@pytest.mark.parametrize("precond", ["none", "block-jacobi", "sample-space"])
def test_pcg_solves_the_newton_system_and_reports_convergence_honestly(precond):
    """_pcg's x matches the dense solve to its tolerance; 'converged' only when the true
    residual is within it (and False when the iteration budget ran out first)."""
    X, G, y, A, u, w, lam, r, uh = _point(11, 40, 3, 20, "squared")   # k d = 60 > n = 40
    H = _dense_hessian(X, G, w.numpy(), r.numpy(), uh.numpy())
    k, d = uh.shape

    def hv(v):
        return torch.as_tensor((H @ v.numpy().ravel()).reshape(k, d))

    if precond == "none":
        Minv = lambda v: v.clone()  # noqa: E731
    elif precond == "block-jacobi":
        blocks = np.stack([H[j * d:(j + 1) * d, j * d:(j + 1) * d] for j in range(k)])
        inv = torch.as_tensor(np.linalg.inv(blocks))
        Minv = lambda v: (inv @ v[:, :, None])[:, :, 0]  # noqa: E731
    else:
        Minv = fast._SampleSpacePrecond(A, w, r, uh)
    b = torch.as_tensor(np.random.default_rng(2).standard_normal((k, d)))
    x, it, ok = fast._pcg(hv, b, Minv, tol=1e-8, max_iter=2000)
    res = np.linalg.norm(b.numpy().ravel() - H @ x.numpy().ravel()) / np.linalg.norm(b.numpy())
    # the residual recomputed from x: its rounding is eps |H| |x| / |b|
    rnd = np.linalg.norm(H, 2) * np.linalg.norm(x.numpy()) / np.linalg.norm(b.numpy())
    assert ok
    assert_leq(res, 1e-8, scale=rnd, what=f"CG residual after {it} iterations")
    assert np.allclose(x.numpy().ravel(), np.linalg.solve(H, b.numpy().ravel()),
                       rtol=1e-5, atol=1e-8 * np.abs(x.numpy()).max())
    # one iteration is not enough for this system: the budget runs out, and it says so
    x1, it1, ok1 = fast._pcg(hv, b, lambda v: v.clone(), tol=1e-8, max_iter=1)
    res1 = np.linalg.norm(b.numpy().ravel() - H @ x1.numpy().ravel()) / np.linalg.norm(b.numpy())
    assert it1 == 1 and not ok1 and res1 > 1e-8
    if precond == "sample-space":  # a few iterations where block-Jacobi needs many
        assert it <= 20


def _spy(monkeypatch, name):
    calls = []
    orig = getattr(fast, name)

    if isinstance(orig, type):
        class Spy(orig):
            def __init__(self, *a, **k):
                calls.append(1)
                super().__init__(*a, **k)
        monkeypatch.setattr(fast, name, Spy)
    else:
        def spy(*a, **k):
            calls.append(1)
            return orig(*a, **k)
        monkeypatch.setattr(fast, name, spy)
    return calls


@pytest.mark.parametrize("loss, frac", [("squared", 1e-3), ("squared", 0.02), ("logistic", 0.02)])
def test_sample_space_path_matches_block_jacobi_and_clarabel(monkeypatch, loss, frac):
    """k d >= n (the regime of the sample-space preconditioner): the same certified optimum with
    it (used: spied) and without it (``_WB_MAX_N = 0``), and Clarabel's objective within the
    certified gaps."""
    X, G, y = _instance(21, 60, 4, 40, loss)
    lam = frac * fast.lambda_max(X, G, y, loss=loss)
    built = _spy(monkeypatch, "_SampleSpacePrecond")
    r = solve_group_lasso(X, G, y, lam, loss=loss, tol=TOL)
    assert built, "the sample-space preconditioner was not used on this instance"
    monkeypatch.setattr(fast, "_WB_MAX_N", 0)
    n_built = len(built)
    b = solve_group_lasso(X, G, y, lam, loss=loss, tol=TOL)
    assert len(built) == n_built  # not used
    for res in (r, b):
        assert res.status == "optimal" and res.rel_gap <= TOL, (res.status, res.rel_gap)
    scale, F0 = abs(r.objective), _F0(y, loss)
    assert_leq(abs(r.objective - b.objective), max(r.gap, b.gap), scale=F0, what="same optimum")
    c = group_lasso(X, G, y, lam, loss=loss, solver="clarabel")
    if c.verified:
        cvx_gap = group_lasso_certificate(X, G, y, c.U, lam, loss=loss)["gap"]
        assert_leq(r.dual_objective, c.objective, scale=F0, what="weak duality")
        assert abs(r.objective - c.objective) <= max(1e-7 * scale, cvx_gap * (1 + 1e-6))


def test_newton_step_is_a_descent_step_and_its_objective_is_exact():
    """From points whose Newton step carries groups through zero (the projected line search),
    the step never raises F, and the F it returns is F at the u it returns."""
    seen_projection = 0
    for seed in range(12):
        X, G, y, A, u, w, lam, r, uh = _point(100 + seed, 50, 3, 12, "squared")
        lam = 0.2 * fast.lambda_max(X, G, y)
        yt = torch.as_tensor(y)
        # a rough point: random directions, small norms (some groups should vanish)
        u = u * 0.05
        z = A.matvec(u)
        F = float(fast._loss(z, yt, "squared")) + lam * float(u.norm(dim=1).sum())
        un, zn, Fn, k, ok = fast._newton_step(A, A, yt, lam, "squared", u, z, F)
        F_true = float(fast._loss(A.matvec(un), yt, "squared")) + lam * float(un.norm(dim=1).sum())
        F0 = _F0(y, "squared")
        assert_close(Fn, F_true, scale=F0, what="the F it returns is F at its u")
        assert_leq(Fn, F, scale=F0, what="the step never raises F")
        if ok:
            assert Fn < F
        seen_projection += int((un.norm(dim=1) == 0).sum())
    assert seen_projection > 0  # the projection was exercised


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("screen_f32", [True, False])
def test_screening_rounds_and_full_set_agree(monkeypatch, loss, screen_f32):
    """p > 64 (working set, screening rounds first, in float32 or float64) and
    working_set=False: the same certified optimum, the returned U float64-certified."""
    monkeypatch.setattr(fast, "_SCREEN_F32", screen_f32)
    X, G, y = _instance(31, 150, 5, 90, loss)
    for frac in (0.01, 0.1):
        lam = frac * fast.lambda_max(X, G, y, loss=loss)
        a = solve_group_lasso(X, G, y, lam, loss=loss, tol=TOL)
        b = solve_group_lasso(X, G, y, lam, loss=loss, tol=TOL, working_set=False)
        assert a.status == b.status == "optimal"
        assert a.iterations["working_set_rounds"] >= 2
        F0 = _F0(y, loss)
        assert_leq(abs(a.objective - b.objective), max(a.gap, b.gap), scale=F0, what="same optimum")
        again = group_lasso_certificate(X, G, y, a.U, lam, loss=loss)
        # rel_gap = gap / F, the gap's rounding of the size of F(0)
        assert_leq(again["rel_gap"], TOL, scale=F0 / abs(a.objective), what="float64-certified")
        assert a.U.dtype == np.float64


def test_sample_space_path_cuts_cg_iterations_where_block_jacobi_struggles(monkeypatch):
    """(150, 6, 70), λ = 1e-3: the non-zero groups have k d > n coordinates. With the
    sample-space preconditioner (and its kept factors rebuilt when stale) the Newton CG takes
    under a quarter of block-Jacobi's iterations (825 against 9689 when written); the optimum is
    the same. Iteration counts, not times: deterministic on one machine."""
    # the benchmark's instance (paper_repro/bench_fast_solver.py: make_instance(150, 6, 70, 0))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 6))
    G = X @ rng.standard_normal((6, 70)) > 0
    Wp = rng.standard_normal((5, 6)) / np.sqrt(6)
    y = np.maximum(X @ Wp.T, 0).sum(1) + 0.1 * rng.standard_normal(150)
    a = solve_group_lasso(X, G, y, 1e-3, tol=TOL)
    monkeypatch.setattr(fast, "_WB_MAX_N", 0)
    b = solve_group_lasso(X, G, y, 1e-3, tol=TOL)
    assert a.status == b.status == "optimal"
    assert_leq(abs(a.objective - b.objective), max(a.gap, b.gap), scale=_F0(y, "squared"),
               what="same optimum")
    assert a.iterations["cg"] * 4 <= b.iterations["cg"], (a.iterations, b.iterations)


from _instances import teacher as _teacher  # noqa: E402


@pytest.mark.parametrize("size, most_newton", [((400, 10, 100), 25), ((600, 10, 200), 80)])
def test_newton_hands_back_when_its_steps_stay_short(size, most_newton):
    """k d >> n at small λ: the Newton direction is unbounded along the û_j and each step drops a
    few groups at a line-search length of 1/16 or less; the polish hands back to the first-order
    pass after _SHORT_STEPS such steps. Without it (400, 10, 100) took 41 Newton steps against 11,
    and (600, 10, 200) ran 19 362 Newton steps to max_iter (385 s) where it now certifies in 30."""
    X, G, y = _teacher(*size)
    r = solve_group_lasso(X, G, y, 1e-3, time_limit=60)
    assert r.status == "optimal" and r.rel_gap <= TOL
    assert r.iterations["newton"] <= most_newton, r.iterations
