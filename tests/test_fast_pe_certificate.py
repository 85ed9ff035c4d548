"""The Pilanci–Ergen certificate's fast path (batched cone bounds, lazy exact refinement) against
the slow one it replaced (one NNLS per pattern and sign, docs/claims.md C5).

Every score of :func:`altheory.solvers.fast._pe_certificate` must be an upper bound on the cone
support function (else the dual bound is not certified), the dual value must equal the one of
the all-exact certificate (the lazy refinement stops only once the maximum is exact), and so must
the violators the next working set takes. Tolerances: 1e-12 relative (the same NNLS numbers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from altheory.solvers import fast
from altheory.solvers.arrangements import enumerate_patterns, sample_patterns

ROUND = 1e-12


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
        scores[i] = max(fast._pe_cone_bound(C, a[i]), fast._pe_cone_bound(C, -a[i])) / lam
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
    ub = fast._pe_cone_bounds_batched(X, B, x)
    for m in range(40):
        exact = fast._pe_cone_bound(B[m][:, None] * X, x[m])
        assert ub[m] >= exact * (1 - ROUND) - ROUND, (m, ub[m], exact)
        assert ub[m] <= np.linalg.norm(x[m]) * (1 + ROUND)
    # it does work: most cones here get a bound below the norm
    assert np.mean(ub < np.linalg.norm(x, axis=1) * (1 - 1e-6)) > 0.5


@pytest.mark.parametrize("n, d, pats, lam", [(24, 3, "exact", 1e-2), (40, 3, "exact", 1e-3),
                                             (16, 5, 64, 1e-2)])
def test_lazy_certificate_equals_the_all_exact_one(n, d, pats, lam):
    """At V = W = 0, at a mid-way point and at the optimum: the same dual bound, scores that are
    upper bounds on the exact ones, and the same top violators outside the working set."""
    X, y = _data(n * 100 + d, n, d)
    P = enumerate_patterns(X) if pats == "exact" else sample_patterns(X, pats, seed=1)
    Gf = P.G.astype(float)
    ref = fast.solve_pilanci_ergen(X, P.G, y, lam)   # its point, whatever its status
    zero = np.zeros_like(ref.V)
    ws = np.zeros(P.P, bool)
    ws[np.flatnonzero((np.abs(ref.V).sum(1) > 0) | (np.abs(ref.W).sum(1) > 0))[::2]] = True
    for V, W in ((zero, zero), (0.5 * ref.V, 0.5 * ref.W), (ref.V, ref.W)):
        primal, dual, scores = fast._pe_certificate(X, Gf, y, V, W, lam, "squared", ws=ws)
        dual_ref, scores_ref = _reference_certificate(X, Gf, y, V, W, lam)
        assert abs(dual - dual_ref) <= ROUND * max(1.0, abs(dual_ref))
        assert np.all(scores >= scores_ref * (1 - ROUND) - ROUND)
        assert scores.max() == pytest.approx(scores_ref.max(), rel=ROUND)
        # the violators the next set takes (fast._pe_next_set) are the same patterns
        nxt = fast._pe_next_set(ws, scores, V, W, keep=False)
        nxt_ref = fast._pe_next_set(ws, scores_ref, V, W, keep=False)
        assert (nxt is None) == (nxt_ref is None)
        if nxt is not None:
            assert np.array_equal(nxt, nxt_ref)
