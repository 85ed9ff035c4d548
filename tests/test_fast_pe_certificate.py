"""The Pilanci–Ergen certificate's fast path (batched cone bounds, lazy exact refinement) against
the slow one it replaced (one NNLS per pattern and sign, docs/claims.md C5).

Every score of :func:`altheory.solvers.pilanci_ergen._pe_certificate` must be an upper bound on
the cone support function (else the dual bound is not certified), the dual value must equal the
one of the all-exact certificate (the lazy refinement stops only once the maximum is exact), and
so must the violators the next working set takes. Tolerances: 1e-12 relative (the same NNLS
numbers; altheory.floats, at the scale of the point or of F(0)). The facets the solver gives each cone (:class:`_PeFlipFacets`) are checked against
linear programs, and its restricted programs against the full ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from altheory.floats import assert_close, assert_leq, close
from altheory.solvers import fast
from altheory.solvers import pilanci_ergen as pe
from altheory.solvers.arrangements import enumerate_patterns, sample_patterns


def _reference_certificate(X, G, y, V, W, lam):
    """The certificate as first written: the exact (NNLS) bound of every pattern whose crude
    bound exceeds 1, both signs."""
    B = 2.0 * G - 1.0
    z = ((X @ (V - W).T) * G).sum(1)
    yt = torch.as_tensor(y)
    g = fast._grad(torch.as_tensor(z), yt, "squared")
    a = G.T @ (g.numpy()[:, None] * X)
    scores = np.linalg.norm(a, axis=1) / lam
    for i in np.flatnonzero(scores > 1.0):
        C = B[:, i, None] * X
        scores[i] = max(pe._pe_cone_bound(C, a[i]), pe._pe_cone_bound(C, -a[i])) / lam
    dual = fast._dual_on_ray(g, float(scores.max(initial=0.0)), yt, "squared")
    return dual, scores


def _data(seed, n, d):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal(n)


@pytest.mark.parametrize("n, d", [(12, 2), (30, 3), (20, 5)])
def test_batched_cone_bounds_are_upper_bounds_and_never_worse_than_the_norm(n, d):
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d))
    B = np.where(X @ rng.standard_normal((d, 40)) >= 0, 1.0, -1.0).T      # (40, n) cones
    x = rng.standard_normal((40, d)) * 3
    ub = pe._pe_cone_bounds_batched(X, B, x)
    for m in range(40):
        exact = pe._pe_cone_bound(B[m][:, None] * X, x[m])
        assert_leq(exact, ub[m], scale=np.linalg.norm(x[m]), what=f"upper bound, cone {m}")
        assert_leq(ub[m], np.linalg.norm(x[m]), what=f"never worse than the norm, cone {m}")
    # it does work: most cones here get a bound below the norm
    assert np.mean(ub < np.linalg.norm(x, axis=1) * (1 - 1e-6)) > 0.5


@pytest.mark.parametrize("n, d", [(12, 2), (30, 3), (20, 5)])
def test_batched_bounds_on_facet_rows_are_upper_bounds(n, d):
    """The greedy on facet rows keeps every bound an upper bound and below the norm."""
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d))
    P = enumerate_patterns(X)
    facets = pe._PeFlipFacets(P.G)
    idx = rng.choice(P.P, size=min(P.P, 40), replace=False)
    B = (2.0 * P.G[:, idx] - 1.0).T
    x = rng.standard_normal((idx.size, d)) * 3
    plain = pe._pe_cone_bounds_batched(X, B, x)
    on_facets = pe._pe_cone_bounds_batched(X, B, x, steps=12, facet_rows=facets.pad[idx],
                                             mask=facets.mask[idx])
    for m in range(idx.size):
        exact = pe._pe_cone_bound(B[m][:, None] * X, x[m])
        for ub in (plain, on_facets):
            assert_leq(exact, ub[m], scale=np.linalg.norm(x[m]), what=f"upper bound, cone {m}")
            assert_leq(ub[m], np.linalg.norm(x[m]), what=f"never worse than the norm, cone {m}")
    # both do work: most cones get a bound below the norm
    for ub in (plain, on_facets):
        assert np.mean(ub < np.linalg.norm(x, axis=1) * (1 - 1e-6)) > 0.5


def _is_facet(C, r):
    """Row r of C is a facet of {Cv >= 0}: dropping it lets c_r . v < 0 (an LP)."""
    from scipy.optimize import linprog

    rest = np.delete(C, r, axis=0)
    res = linprog(C[r], A_ub=-rest, b_ub=np.zeros(len(rest)), bounds=[(-1, 1)] * C.shape[1],
                  method="highs")
    return res.status == 0 and res.fun < -1e-9


@pytest.mark.parametrize("n, d", [(12, 2), (24, 3), (10, 4)])
def test_flip_facets_are_the_geometric_facets_of_a_complete_enumeration(n, d):
    X, _ = _data(n * 100 + d, n, d)
    P = enumerate_patterns(X)
    assert P.exact
    facets = pe._PeFlipFacets(P.G)
    B = 2.0 * P.G - 1.0
    for i in range(0, P.P, max(1, P.P // 30)):
        C = B[:, i, None] * X
        truth = [r for r in range(n) if _is_facet(C, r)]
        assert facets(i).tolist() == truth, i
        assert np.flatnonzero(facets.mask[i]).size == len(truth)
        assert sorted(facets.pad[i][facets.mask[i]].tolist()) == truth


def test_flip_facets_of_an_incomplete_set_are_true_facets():
    """Sampled patterns miss cells: the rows found are facets still (never a row that is not),
    so K_F contains K; some facets are missing."""
    X, _ = _data(1605, 16, 5)
    P = sample_patterns(X, 64, seed=1)
    facets = pe._PeFlipFacets(P.G)
    B = 2.0 * P.G - 1.0
    missing = 0
    for i in range(P.P):
        C = B[:, i, None] * X
        truth = {r for r in range(16) if _is_facet(C, r)}
        found = set(facets(i).tolist())
        assert found <= truth, i
        missing += len(truth - found)
    assert missing > 0


@pytest.mark.parametrize("drop", [False, True])
def test_exact_multipliers_on_facet_rows_equal_the_full_nnls(drop):
    """On the facet rows the projection is the same (Moreau); with a facet dropped the check
    fails and all rows are used: the bound is exact either way."""
    X, _ = _data(2403, 24, 3)
    P = enumerate_patterns(X)
    facets = pe._PeFlipFacets(P.G)
    B = 2.0 * P.G - 1.0
    rng = np.random.default_rng(0)
    for i in range(0, P.P, 25):
        C = B[:, i, None] * X
        rows = facets(i)[1:] if drop else facets(i)
        for x in rng.standard_normal((4, 3)) * 2:
            exact = pe._pe_cone_bound(C, x)
            mu = pe._pe_exact_mu(C, x, rows)
            assert (mu >= 0).all()
            assert pe._pe_cone_bound(C, x, mu) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_restricted_program_adds_the_facets_it_was_not_given():
    """Facet lists with a row removed from every pattern: the check against every row finds the
    violations, adds the rows, and the program solved is the full one on these patterns."""
    X, y = _data(2403, 24, 3)
    P = enumerate_patterns(X)
    G = P.G.astype(float)
    B = 2.0 * G - 1.0
    S = np.arange(0, P.P, 4)
    lam = 1e-3
    full = pe._pe_restricted_squared(X, G[:, S], y, lam, tight=True)

    class Short(pe._PeFlipFacets):
        def __call__(self, i):
            rows = super().__call__(i)
            return rows if i in self.extra else rows[1:]

    short = Short(P.G)
    VS, WS, st, _ = pe._pe_restricted_facets(X, G, B, y, lam, S, short, tight=True)
    assert short.extra, "no row was added: the missing facets went unnoticed"

    def objective(V, W):
        z = ((X @ (V - W).T) * G[:, S]).sum(1)
        return 0.5 * np.mean((z - y) ** 2) + lam * (np.linalg.norm(V, axis=1).sum()
                                                     + np.linalg.norm(W, axis=1).sum())

    assert objective(VS, WS) == pytest.approx(objective(full[0], full[1]), rel=1e-6)
    c = np.concatenate([(VS @ X.T) * B[:, S].T, (WS @ X.T) * B[:, S].T])
    assert c.min() >= -1e-6 * np.abs(c).max()


def test_dual_point_of_the_restricted_solver_certifies_tightly():
    """The interior-point dual as theta: (40, 3), lambda = 1e-3 certifies to 1e-11 (the
    gradient of the primal point stalls near the square root of its accuracy)."""
    X, y = _data(4003, 40, 3)
    P = enumerate_patterns(X)
    r = pe.solve_pilanci_ergen(X, P.G, y, 1e-3, tol=1e-11)
    assert r.status == "optimal", (r.rel_gap, r.iterations)


@pytest.mark.parametrize("n, d, pats, lam", [(24, 3, "exact", 1e-2), (40, 3, "exact", 1e-3),
                                             (16, 5, 64, 1e-2)])
@pytest.mark.parametrize("fast_path", [False, True])
def test_lazy_certificate_equals_the_all_exact_one(n, d, pats, lam, fast_path):
    """At V = W = 0, at a mid-way point and at the optimum: the same dual bound, scores that are
    upper bounds on the exact ones, and the same top violators outside the working set. With
    ``fast_path`` the certificate also has the facet rows (batched greedy bounds and exact
    projections, as in the solver's rounds)."""
    X, y = _data(n * 100 + d, n, d)
    P = enumerate_patterns(X) if pats == "exact" else sample_patterns(X, pats, seed=1)
    Gf = P.G.astype(float)
    ref = pe.solve_pilanci_ergen(X, P.G, y, lam)   # its point, whatever its status
    zero = np.zeros_like(ref.V)
    ws = np.zeros(P.P, bool)
    ws[np.flatnonzero((np.abs(ref.V).sum(1) > 0) | (np.abs(ref.W).sum(1) > 0))[::2]] = True
    extra = {"facets": pe._PeFlipFacets(P.G)} if fast_path else {}
    for V, W in ((zero, zero), (0.5 * ref.V, 0.5 * ref.W), (ref.V, ref.W)):
        primal, dual, scores = pe._pe_certificate(X, Gf, y, V, W, lam, "squared", ws=ws,
                                                    **extra)
        dual_ref, scores_ref = _reference_certificate(X, Gf, y, V, W, lam)
        F0 = 0.5 * float(np.mean(y ** 2))
        assert_close(dual, dual_ref, scale=F0, what="dual bound")
        # exact scores are NNLS solves on cones, some thin: conditioning amplifies the rounding
        # (measured 20.5 eps max|score|), so kappa 512
        assert_leq(scores_ref, scores, kappa=512, what="scores are upper bounds")
        assert_close(scores.max(), scores_ref.max(), what="the largest score is exact")
        # the violators the next set takes (pe._pe_next_set) are the same patterns
        nxt = pe._pe_next_set(ws, scores, V, W, keep=False)
        nxt_ref = pe._pe_next_set(ws, scores_ref, V, W, keep=False)
        assert (nxt is None) == (nxt_ref is None)
        if nxt is not None:
            assert np.array_equal(nxt, nxt_ref)


def test_feasibility_step_makes_every_block_feasible_and_moves_it_little():
    """_pe_feasible: blocks a solver's tolerance outside their cones end inside (up to rounding)
    and move by about that much; blocks far outside end inside too (the exact projection backs
    the greedy steps up); negligible blocks are zeroed, feasible ones kept."""
    X, _ = _data(3003, 30, 3)
    P = enumerate_patterns(X)
    G = P.G.astype(float)
    B = 2.0 * G - 1.0
    rng = np.random.default_rng(1)
    k = 60
    pick = rng.choice(P.P, size=k, replace=False)
    V = np.zeros((P.P, 3))
    W = np.zeros((P.P, 3))
    for i in pick:                                # a feasible, non-negligible block per cone
        C = B[:, i, None] * X
        for M in (V, W):
            while np.linalg.norm(M[i]) < 0.1:
                M[i] = pe._pe_project(C, rng.standard_normal(3))
    far = 3.0 * rng.standard_normal((20, 3))
    # 20 blocks far out: their exact projections batched; 3: one NNLS each
    for n_far in (20, 3):
        near = V.copy()
        near[pick[:20]] += 1e-10 * rng.standard_normal((20, 3))   # a solver's tolerance out
        near[pick[20:20 + n_far]] = far[:n_far]                      # far out
        near[pick[40]] = 1e-14 * near[pick[0]]                       # negligible
        Vf, Wf, infeas = pe._pe_feasible(X, G, near, W)
        assert_leq(infeas, 0.0, scale=1.0, what="relative infeasibility")
        for M in (Vf, Wf):
            c = (M @ X.T) * B.T
            assert_leq(0.0, c, scale=np.abs(c).max(), what="cone constraints")
        assert np.abs(Vf[pick[:20]] - near[pick[:20]]).max() <= 1e-8
        # feasible blocks kept (to the rounding of a greedy step on a row active to rounding)
        assert_close(Vf[pick[41:]], near[pick[41:]], what="feasible V blocks kept")
        assert_close(Wf, W, what="feasible W blocks kept")
        assert not Vf[pick[40]].any()
        # without the greedy steps every block outside is projected exactly: the batched
        # projections (20 blocks) and the NNLS ones (3) both equal the projection onto the cone
        Vx, _, infeas = pe._pe_feasible(X, G, near, W, steps=0)
        assert_leq(infeas, 0.0, scale=1.0, what="relative infeasibility, no greedy steps")
        for i in pick[20:20 + n_far]:
            exact = pe._pe_project(B[:, i, None] * X, near[i])
            np.testing.assert_allclose(Vx[i], exact, rtol=0, atol=1e-10 * np.linalg.norm(near[i]))


def test_flip_facets_remember_their_rows_until_a_row_is_added():
    """_PeFlipFacets keeps each pattern's rows (asked thousands of times a solve); a row added
    after a point violated it shows in the next answer."""
    X, _ = _data(2403, 24, 3)
    P = enumerate_patterns(X)
    facets = pe._PeFlipFacets(P.G)
    first = facets(5)
    assert facets(5) is first                        # kept
    extra = int(np.setdiff1d(np.arange(24), first)[0])
    facets.add(5, [extra])
    again = facets(5)
    assert extra in again.tolist() and set(first.tolist()) <= set(again.tolist())
    assert facets(4).tolist() == sorted(set(facets(4).tolist()))


@pytest.mark.parametrize("n, d", [(12, 2), (24, 3), (10, 4)])
def test_batched_projection_equals_the_nnls_projection(n, d):
    """_pe_project_batched (active sets of the unit facet rows) against the checked NNLS
    projection, one cone at a time: points outside, inside, in the polar cone (projection 0)
    and on a face. Every point it finds is the projection; for d <= 3 it finds every one (d = 4
    may need 4 active rows: those are left to the NNLS), except in thin cones (facet rows
    nearly dependent: 17-258 of 3000-17000 cones in the benchmark's solves, 1-1.5%).

    The points on a face are NNLS projections of points of size ~2: those that land at the
    cone's apex are 0 plus rounding of that size (eps |x_0|, not eps |x|), so the batched
    projection's own test ``U x >= -1e-9 |x|`` may see them just outside K, and for d = 4 the
    apex can need 4 active rows: left to the NNLS (found False, p = x), which is allowed, and
    right (x is the apex to rounding). Every other point on a face is found, and kept."""
    rng = np.random.default_rng(n * d)
    X = rng.standard_normal((n, d))
    P = enumerate_patterns(X)
    facets = pe._PeFlipFacets(P.G)
    U_all = facets.unit_rows(X)
    cones = rng.choice(P.P, size=120)
    U = U_all[cones]
    x = rng.standard_normal((120, d)) * 2
    x[:20] = -np.einsum("mf,mfd->md", np.abs(rng.standard_normal((20, U.shape[1]))), U[:20])
    B = 2.0 * P.G - 1.0
    x0 = x.copy()                                       # the points on a face come from these
    for m in range(20, 30):                                                 # on K's boundary
        x[m] = pe._pe_project(B[:, cones[m], None] * X, x[m])
    p, found = pe._pe_project_batched(U, x)
    for m in range(120):
        C = B[:, cones[m], None] * X
        ref = pe._pe_project(C, x[m])
        if found[m]:
            assert np.linalg.norm(p[m] - ref) <= 1e-9 * max(1.0, np.linalg.norm(x[m])), m
        else:
            assert np.array_equal(p[m], x[m])
    if d <= 3:
        assert found.mean() >= 0.9, np.flatnonzero(~found)
    apex = np.array([close(x[m], 0.0, scale=np.abs(x0[m]).max()) for m in range(20, 30)])
    assert (~apex).sum() >= 5, apex                     # genuine points on a face are tested
    assert found[20:30][~apex].all(), np.flatnonzero(~found[20:30])         # already in K
    for m in range(20, 30):                             # kept: p = x to the rounding of x_0
        assert_close(p[m], x[m], scale=np.abs(x0[m]).max(), what=f"point {m} on a face")
    for m in np.flatnonzero(found[:20]):                # the polar cone projects to 0
        assert_close(p[m], 0.0, scale=np.abs(x[m]).max(), what=f"polar point {m}")


def test_certificate_with_facets_missing_falls_back_to_every_row():
    """Facet lists with one real facet masked out in every pattern: the batched projections
    land on the larger cone, the check against every row rejects them, and the certificate
    is still the all-exact one."""
    X, y = _data(2403, 24, 3)
    P = enumerate_patterns(X)
    Gf = P.G.astype(float)
    ref = pe.solve_pilanci_ergen(X, P.G, y, 1e-3)
    facets = pe._PeFlipFacets(P.G)
    facets.mask = facets.mask.copy()
    facets.mask[:, 0] = False                       # each pattern's first facet row
    facets.signs = facets.signs * facets.mask
    ws = np.zeros(P.P, bool)
    for V, W in ((0.5 * ref.V, 0.5 * ref.W), (ref.V, ref.W)):
        primal, dual, scores = pe._pe_certificate(X, Gf, y, V, W, 1e-3, "squared", ws=ws,
                                                    facets=facets)
        dual_ref, scores_ref = _reference_certificate(X, Gf, y, V, W, 1e-3)
        F0 = 0.5 * float(np.mean(y ** 2))
        assert_close(dual, dual_ref, scale=F0, what="dual bound")
        # exact scores are NNLS solves on cones, some thin: conditioning amplifies the rounding
        # (measured 20.5 eps max|score|), so kappa 512
        assert_leq(scores_ref, scores, kappa=512, what="scores are upper bounds")
        assert_close(scores.max(), scores_ref.max(), what="the largest score is exact")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_small_closed_form_solves_equal_lapack_and_flag_singular_systems(k):
    """_small_spd_solve against numpy.linalg.solve on Gram matrices of random rows; a Gram
    matrix of dependent rows (or a zero row, padding) is flagged, not solved."""
    rng = np.random.default_rng(k)
    M = rng.standard_normal((200, k, 4))
    A = M @ M.transpose(0, 2, 1)
    r = rng.standard_normal((200, k))
    mu, valid = pe._small_spd_solve(A, r)
    assert valid.all()
    np.testing.assert_allclose(mu, np.linalg.solve(A, r[..., None])[..., 0], rtol=1e-9,
                               atol=1e-9)
    M[:50, -1] = 0.0 if k == 1 else M[:50, 0] * 2.0       # a zero row / a dependent row
    A = M @ M.transpose(0, 2, 1)
    _, valid = pe._small_spd_solve(A, r)
    assert not valid[:50].any() and valid[50:].all()
