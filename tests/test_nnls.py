"""Non-negative least squares (:mod:`altheory.solvers.nnls`) against slow, obviously correct
references: cvxpy's QP, and brute force over the supports for tiny problems.

The Pilanci–Ergen solver projects onto pattern cones and bounds their support functions with
NNLS; SciPy's solver returns a wrong point with a wrong residual on some of these (a point on an
edge of a 3 x 3 cone, found by the search below), so the package's answer must be checked.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from altheory.floats import assert_close, assert_leq
from altheory.solvers.nnls import lawson_hanson, nnls, nnls_kkt


def _brute_force(A, b):
    """min ||Ax - b||, x >= 0, by least squares on every support (tiny n only)."""
    n = A.shape[1]
    best, best_x = np.linalg.norm(b), np.zeros(n)
    for k in range(1, n + 1):
        for S in itertools.combinations(range(n), k):
            xs = np.linalg.lstsq(A[:, S], b, rcond=None)[0]
            if (xs >= 0).all():
                x = np.zeros(n)
                x[list(S)] = xs
                r = np.linalg.norm(A @ x - b)
                if r < best:
                    best, best_x = r, x
    return best_x, best


def _edge_projections(count):
    """Projections onto 3 x 3 cones {Cv >= 0} of a point on one of their edges, as
    nnls(C.T, -v): the case where SciPy fails."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        C = rng.standard_normal((3, 3))
        v = np.cross(C[0], C[1])
        if C[2] @ v < 0:
            v = -v
        yield C.T, -v


def test_scipy_failure_case_is_solved():
    """The first edge case where SciPy 1.17.1 is wrong (the 14th draw): ours is optimal, with
    its true residual; the projection of a point of the cone is the point itself."""
    cases = list(_edge_projections(14))
    A, b = cases[13]
    x, r = nnls(A, b)
    assert nnls_kkt(A, b, x) <= 1e-12
    assert_close(r, np.linalg.norm(A @ x - b), scale=np.linalg.norm(b), what="its true residual")
    assert r == pytest.approx(np.linalg.norm(b), rel=1e-9)     # v is in the cone: Pi(v) = v
    xs, rs = scipy_nnls(A, b)
    # SciPy, for the record: when it is wrong, our check must be what caught it
    if nnls_kkt(A, b, xs) > 1e-9:
        assert np.linalg.norm(A @ xs - b) > r * (1 + 1e-6) or abs(rs - np.linalg.norm(A @ xs - b)) > 1e-6


def test_every_edge_projection_is_optimal():
    for A, b in _edge_projections(400):
        x, r = nnls(A, b)
        assert nnls_kkt(A, b, x) <= 1e-9
        assert r == pytest.approx(np.linalg.norm(b), rel=1e-9)


@pytest.mark.parametrize("solver", [nnls, lawson_hanson])
@pytest.mark.parametrize("seed", range(40))
def test_equals_brute_force(solver, seed):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 6)), int(rng.integers(1, 7))
    A = rng.standard_normal((m, n))
    if seed % 3 == 0:
        A[:, n // 2:] = A[:, :1]           # repeated columns: a degenerate problem
    b = rng.standard_normal(m) * 10.0 ** int(rng.integers(-3, 4))
    x, r = solver(A, b)
    _, best = _brute_force(A, b)
    assert (x >= 0).all()
    # residual norms: rounding of the size of |b| (and of the terms |A| |x| that cancel it)
    scale = max(np.linalg.norm(b), np.linalg.norm(np.abs(A) @ np.abs(x)))
    assert_close(r, np.linalg.norm(A @ x - b), scale=scale, what="the residual returned")
    assert_leq(r, best, scale=scale, what="optimal: no subset does better")


@pytest.mark.parametrize("seed", range(5))
def test_lawson_hanson_equals_cvxpy_on_cone_sized_problems(seed):
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(100 + seed)
    A = rng.standard_normal((3, 60))
    b = rng.standard_normal(3)
    x, r = lawson_hanson(A, b)
    v = cp.Variable(60, nonneg=True)
    cp.Problem(cp.Minimize(cp.sum_squares(A @ v - b))).solve(solver="CLARABEL")
    assert r <= np.linalg.norm(A @ v.value - b) + 1e-7
    assert nnls_kkt(A, b, x) <= 1e-9


def test_kkt_measures_a_wrong_point():
    A = np.eye(2)
    b = np.array([2.0, -1.0])
    assert nnls_kkt(A, b, np.array([2.0, 0.0])) == 0.0
    assert nnls_kkt(A, b, np.array([1.0, 0.0])) > 0.1        # not stationary
    assert nnls_kkt(A, b, np.array([2.0, -1.0])) > 0.1       # infeasible


@pytest.mark.parametrize("A, b, match", [
    (np.ones((2, 2)), np.ones(3), "shape"),
    (np.ones(2), np.ones(2), "shape"),
    (np.array([[np.nan, 1.0]]), np.ones(1), "finite"),
    (np.ones((1, 2)), np.array([np.inf]), "finite"),
])
def test_bad_inputs_are_refused(A, b, match):
    for solver in (nnls, lawson_hanson):
        with pytest.raises(ValueError, match=match):
            solver(A, b)


def test_empty_problem():
    x, r = nnls(np.zeros((2, 0)), np.array([3.0, 4.0]))
    assert x.shape == (0,) and r == 5.0
