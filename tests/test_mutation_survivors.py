"""Survivors of the generated mutants (paper_repro/mutation_tool.py, mutmut 3), each killed here.

Every test below is named after the check it sharpens and the mutant family it kills (the
mutant names are in paper_repro/mutation_triage.toml, with ``verdict = "killed by <this test>"``).
The first tests check the tool's own bookkeeping (triage merge, stale digests, the score): they
need neither mutmut nor a run.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from altheory.floats import assert_close, slack

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "paper_repro" / "mutation_tool.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_tool", mod)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- the tool itself

_DIFF = "--- a.py\n+++ a.py\n@@ -1 +1 @@\n-    return x <= tol\n+    return x < tol\n"


def test_triage_goes_stale_when_the_mutant_changes():
    t = _tool()
    d = t.digest(_DIFF)
    triage = {"m__mutmut_1": {"digest": d, "verdict": "equivalent", "why": "never equal"}}
    assert t.merge_triage({"m__mutmut_1": _DIFF}, triage)["m__mutmut_1"]["verdict"] == "equivalent"
    changed = _DIFF.replace("x < tol", "x > tol")
    got = t.merge_triage({"m__mutmut_1": changed}, triage)["m__mutmut_1"]
    assert got["verdict"] == "untriaged" and "stale" in got["why"]
    assert t.merge_triage({"m__mutmut_2": _DIFF}, triage)["m__mutmut_2"]["verdict"] == "untriaged"
    # the file header (a path) is not part of the digest: moving the checkout keeps the triage
    assert t.digest(_DIFF.replace("a.py", "/elsewhere/a.py")) == d


def test_triage_file_refuses_a_verdict_it_does_not_know(tmp_path):
    t = _tool()
    p = tmp_path / "t.toml"
    p.write_text('[mutant."m__mutmut_1"]\ndigest = "abc"\nverdict = "probably fine"\nwhy = "x"\n')
    with pytest.raises(ValueError, match="equivalent"):
        t.load_triage(p)
    p.write_text('[mutant."m__mutmut_1"]\ndigest = "abc"\nverdict = "killed by tests/x.py::t"\n')
    with pytest.raises(ValueError, match="why"):
        t.load_triage(p)


def test_committed_triage_parses_and_names_tests_that_exist():
    t = _tool()
    for name, tri in t.load_triage().items():
        if tri["verdict"].startswith("killed by "):
            node = tri["verdict"].removeprefix("killed by ")
            path, _, func = node.partition("::")
            assert (ROOT / path).exists(), f"{name}: {path} does not exist"
            assert f"def {func.split('[')[0]}(" in (ROOT / path).read_text(), f"{name}: no {func}"


def test_score_leaves_out_equivalent_and_unchecked_mutants():
    t = _tool()
    c = {k: 0 for k in t.COLUMNS} | {"killed": 8, "timeout": 1, "survived": 3, "not_checked": 5}
    assert t.score(c, equivalent=2) == pytest.approx(9 / 10)
    assert t.score({k: 0 for k in t.COLUMNS} | {"not_checked": 4}, equivalent=0) is None
    assert t.status_of(None) == "not_checked" and t.status_of(1) == "killed"
    assert t.status_of(-24) == "timeout" and t.status_of(0) == "survived"


# --------------------------------------------------------------------------- end points

def _ep(kind="local-min"):
    from altheory.descent.endpoints import EndPoint

    return EndPoint(kind, 1.0, 0.0, 0.0, 1.0, 1e-7, 1e-6)


def test_C4_judge_endpoint_boundaries_are_the_documented_ones():
    """docs/claims.md: a local minimum passes at gap <= tol_gap, and the bound is violated only
    at gap < -tol_bound. Gaps exactly on both boundaries (F0 = 1, F* = 0: gap = F exactly)."""
    from altheory.descent.endpoints import judge_endpoint

    assert judge_endpoint(_ep(), 1e-6, 0.0, 1.0, tol_gap=1e-6)[0] == "pass"
    assert judge_endpoint(_ep(), 2e-6, 0.0, 1.0, tol_gap=1e-6)[0] == "fail"
    assert judge_endpoint(_ep(), -1e-7, 0.0, 1.0, tol_bound=1e-7)[0] == "pass"
    assert judge_endpoint(_ep(), -2e-7, 0.0, 1.0, tol_bound=1e-7)[0] == "fail"


def test_C4_tolerances_of_a_diverged_point_scale_with_F0_alone():
    """A non-finite max eigenvalue (diverged run) contributes no curvature: tol_h = rtol_h F0,
    also when F0 < 1 (a curvature of 1 would dominate there)."""
    from altheory.descent.endpoints import tolerances

    assert tolerances(0.25, math.nan) == (1e-7 * 0.25, 1e-6 * 0.25)
    assert tolerances(0.25, math.inf) == (1e-7 * 0.25, 1e-6 * 0.25)
    assert tolerances(0.25, -3.0) == (1e-7 * 0.25, 1e-6 * 3.0)


def test_C4_hessian_vector_product_takes_a_column_as_linear_operators_pass_it():
    """scipy's LinearOperator hands matvec an (N,) or an (N, 1) array (its default matmat passes
    columns): the Hessian-vector product must flatten it and give the same product."""
    import torch

    from altheory.descent.endpoints import _hvp_fn

    f = lambda t: (t[0] ** 2) * t[1] + t[1] ** 3  # noqa: E731
    val, g, hvp = _hvp_fn(f, np.array([1.0, 2.0]))
    H = np.array([[2 * 2.0, 2 * 1.0], [2 * 1.0, 6 * 2.0]])
    v = np.array([0.5, -1.0])
    assert np.array_equal(hvp(v), H @ v)
    assert np.array_equal(hvp(v.reshape(-1, 1)), H @ v)
    assert val == 1.0 * 2.0 + 8.0 and np.array_equal(g, [2 * 1.0 * 2.0, 1.0 + 3 * 4.0])
    assert isinstance(torch.as_tensor(hvp(v)), torch.Tensor)


def test_C4_extreme_eigenvalues_are_computed_in_float64_whatever_the_input_dtype():
    """A float32 Hessian is promoted: its eigenvalues 1 +- 1e-8 are told apart (float32 arithmetic
    rounds both to 1: its spacing at 1 is 1.2e-7)."""
    from altheory.descent.endpoints import symmetric_extreme_eigs

    H32 = np.array([[1.0, 1e-8], [1e-8, 1.0]], dtype=np.float32)
    lo, hi = symmetric_extreme_eigs(H32)
    assert (lo, hi) == symmetric_extreme_eigs(H32.astype(np.float64))
    assert lo < 1.0 < hi


def _fails(*a, **k):
    raise np.linalg.LinAlgError("did not converge")


def test_C4_each_eigensolver_of_the_fallback_chain_delivers_alone(monkeypatch):
    """The module docstring's chain: LAPACK syevd (eigvalsh), then the QR-iteration driver syev
    (scipy eigh, driver "ev"), then the general solver. Each one, the others failing, gives the
    extreme eigenvalues; the second is asked for driver "ev"."""
    import scipy.linalg

    from altheory.descent.endpoints import symmetric_extreme_eigs

    H = np.array([[2.0, 1.0], [1.0, 2.0]])
    eigh, eigvalsh, eigvals = scipy.linalg.eigh, np.linalg.eigvalsh, np.linalg.eigvals
    drivers = []

    def eigh_recorded(*a, **k):
        drivers.append(k.get("driver"))
        return eigh(*a, **k)

    with monkeypatch.context() as m:  # syevd alone
        m.setattr(scipy.linalg, "eigh", _fails)
        m.setattr(np.linalg, "eigvals", _fails)
        assert symmetric_extreme_eigs(H) == pytest.approx((1.0, 3.0), rel=1e-14)
    with monkeypatch.context() as m:  # syev alone
        m.setattr(np.linalg, "eigvalsh", _fails)
        m.setattr(np.linalg, "eigvals", _fails)
        m.setattr(scipy.linalg, "eigh", eigh_recorded)
        assert symmetric_extreme_eigs(H) == pytest.approx((1.0, 3.0), rel=1e-14)
        assert drivers == ["ev"]
    with monkeypatch.context() as m:  # the general solver alone
        m.setattr(np.linalg, "eigvalsh", _fails)
        m.setattr(scipy.linalg, "eigh", _fails)
        assert symmetric_extreme_eigs(H) == pytest.approx((1.0, 3.0), rel=1e-14)
    assert (scipy.linalg.eigh, np.linalg.eigvalsh, np.linalg.eigvals) == (eigh, eigvalsh, eigvals)


# --------------------------------------------------------------------------- the exact head

def _head_data(seed=0, n=40, p=3, k=3):
    import torch

    g = torch.Generator().manual_seed(seed)
    Phi = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return Phi, y


def test_C8_head_gap_by_default_solves_to_the_documented_tolerance():
    """head_gap's default tol is solve_head's (1e-8): an all-zero head, far from the optimum,
    gets its gap against the exact head, not against a solve stopped at once."""
    import torch
    from torch import nn

    from altheory.train.head import head_gap, solve_head

    Phi, y = _head_data()
    head = nn.Linear(3, 3).double()
    with torch.no_grad():
        head.weight.zero_(), head.bias.zero_()
    r = head_gap(Phi, y, head, l2=1e-2)
    ref = solve_head(Phi, y, 3, l2=1e-2, tol=1e-12)
    assert r["solver_status"] == "optimal" and r["solver_grad_norm"] <= 1e-8
    assert r["gap"] > 1e-3
    # strong convexity: F - F* <= |grad F|^2 / (2 l2) at both solves (tolerance of the check)
    assert abs(r["F_star"] - ref.F) <= 1e-8 ** 2 / (2 * 1e-2) + slack(ref.F, scale=math.log(3))


def test_C8_head_gap_of_a_head_without_bias():
    """A bias-free linear head is a head with b = 0 (the bias of the exact head stays free)."""
    import torch
    from torch import nn

    from altheory.train.head import head_gap, head_objective

    Phi, y = _head_data(1)
    head = nn.Linear(3, 3, bias=False).double()
    r = head_gap(Phi, y, head, l2=1e-2)
    F = head_objective(Phi, y, head.weight.detach(), torch.zeros(3, dtype=torch.float64), 1e-2)
    assert r["F_sgd"] == F and r["gap"] >= 0.0 and r["gap_certified"] >= r["gap"]


def test_C8_head_gap_warm_starts_at_the_given_head_and_passes_tol_on():
    """The exact head of the features, given back to head_gap, needs no Newton step (the solve
    starts at W, b) and its gap is exactly 0; a loose tol given to head_gap reaches the solver
    (an all-zero head whose gradient norm is below it takes no step)."""
    import torch
    from torch import nn

    from altheory.train.head import head_gap, solve_head

    Phi, y = _head_data(2)
    sol = solve_head(Phi, y, 3, l2=1e-2, tol=1e-12)
    head = nn.Linear(3, 3).double()
    with torch.no_grad():
        head.weight.copy_(sol.W), head.bias.copy_(sol.b)
    r = head_gap(Phi, y, head, l2=1e-2)
    assert r["solver_iters"] == 0 and r["gap"] == 0.0 and r["F_star"] == r["F_sgd"]
    with torch.no_grad():
        head.weight.zero_(), head.bias.zero_()
    r = head_gap(Phi, y, head, l2=1e-2, tol=10.0)
    assert r["solver_iters"] == 0 and r["solver_status"] == "optimal"


def test_C8_head_gap_reports_its_documented_fields():
    """head_gap's docstring: F_lower <= F_star <= F_sgd, F0 = log k, gap = (F_sgd - F_star)/F0,
    gap_certified = (F_sgd - F_lower)/F0 >= gap, and F_lower from the solver's certified bound."""
    from torch import nn

    from altheory.train.head import head_gap

    Phi, y = _head_data(3)
    head = nn.Linear(3, 3).double()
    r = head_gap(Phi, y, head, l2=1e-2)
    assert r["F0"] == math.log(3)
    assert r["F_lower"] <= r["F_star"] <= r["F_sgd"]
    assert r["gap"] == (r["F_sgd"] - r["F_star"]) / r["F0"] > 0
    assert r["gap_certified"] == (r["F_sgd"] - r["F_lower"]) / r["F0"] >= r["gap"]
    assert r["F_lower"] == min(r["solution"].F_lower, r["F_star"])


def test_C8_head_gap_keys_are_the_documented_ones():
    """The solver's F and F_lower are not repeated as solver_F/solver_F_lower (F_star and the
    clamped F_lower are the head's); the other solver fields are."""
    from torch import nn

    from altheory.train.head import head_gap

    Phi, y = _head_data(4)
    r = head_gap(Phi, y, nn.Linear(3, 3).double(), l2=1e-2)
    assert set(r) == {"F_sgd", "F_star", "F_lower", "F0", "gap", "gap_certified", "solution",
                      "solver_grad_norm", "solver_iters", "solver_cg_iters", "solver_status"}


def test_C8_head_objective_with_a_class_absent_from_the_labels():
    """k comes from W, not from the labels: a batch without the last class is still k-class
    softmax (one_hot(y) alone would drop a column)."""
    import torch

    from altheory.train.head import head_objective

    Phi = torch.zeros(4, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    F = head_objective(Phi, y, torch.zeros(3, 2, dtype=torch.float64),
                       torch.zeros(3, dtype=torch.float64), 0.0)
    assert_close(F, math.log(3), what="F(0) of 3-class softmax")


# --------------------------------------------------------------------------- softmax head (C8)

def _sh_data():
    """Labels without the last of k = 3 classes; a 3-class head."""
    rng = np.random.default_rng(5)
    Phi = rng.standard_normal((6, 2))
    y = np.array([0, 1, 1, 0, 1, 0])
    return Phi, y, rng.standard_normal((3, 2)), rng.standard_normal(3)


@pytest.mark.parametrize("fn", ["objective", "dual_point", "dual", "certificate"])
def test_C8_softmax_head_takes_k_from_the_head_not_from_the_labels(fn):
    """k is W's (or A's) row count, or num_classes when given, never max(y) + 1: with labels that
    miss the last class, the three entry points still see k = 3, and a num_classes that
    disagrees with W is refused."""
    from altheory.solvers.softmax_head import (dual_point, head_certificate, softmax_head_dual,
                                               softmax_head_objective)

    Phi, y, W, b = _sh_data()
    A = dual_point(Phi, y, W, b, lam_b=1.0)
    call = {"objective": lambda **kw: softmax_head_objective(Phi, y, W, b, 0.1, lam_b=1.0, **kw),
            "dual_point": lambda **kw: dual_point(Phi, y, W, b, lam_b=1.0, **kw),
            "dual": lambda **kw: softmax_head_dual(Phi, y, A, 0.1, lam_b=1.0, **kw),
            "certificate": lambda **kw: np.array(list(head_certificate(Phi, y, W, b, 0.1,
                                                                       **kw).values()))}[fn]
    got, got3 = call(), call(num_classes=3)
    assert np.array_equal(got, got3)
    assert A.shape == (6, 3) and np.isfinite(got).all()
    with pytest.raises(ValueError, match="expected"):
        call(num_classes=4)
    # the unpenalised bias: the dual point is rescaled with the class frequencies (of k = 3)
    A0 = dual_point(Phi, y, W, b)
    assert A0.shape == (6, 3) and np.isfinite(softmax_head_dual(Phi, y, A0, 0.1))


def test_C8_softmax_head_objective_leaves_the_bias_unpenalised_by_default():
    """lam_b defaults to 0: F(W, b) = mean(lse - z_y) + lam/2 |W|^2, whatever b; the
    certificate of a head takes the same default."""
    import torch

    from altheory.solvers.softmax_head import head_certificate, softmax_head_objective

    Phi, y, W, b = _sh_data()
    Z = torch.from_numpy(Phi @ W.T + b)
    ref = float((torch.logsumexp(Z, 1) - Z[torch.arange(6), torch.from_numpy(y)]).mean()
                + 0.05 * (W * W).sum())
    assert_close(softmax_head_objective(Phi, y, W, b, 0.1), ref, what="F without a bias penalty")
    assert softmax_head_objective(Phi, y, W, 10 * b, 0.1) != softmax_head_objective(
        Phi, y, W, 10 * b, 0.1, lam_b=1.0)
    assert head_certificate(Phi, y, W, b, 0.1)["primal"] == softmax_head_objective(Phi, y, W, b, 0.1)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_C8_softmax_head_dual_simplex_check_at_its_documented_edges():
    """Raises: entries < -1e-12 or row sums off by > 1e-9. A one-hot A (zeros) and an entry of
    exactly -1e-12 are in; an entry of -0.25 is out. A tensor that requires grad is read as is."""
    import torch

    from altheory.solvers.softmax_head import softmax_head_dual

    Phi, y, _, _ = _sh_data()
    onehot = np.eye(3)[y]
    assert math.isfinite(softmax_head_dual(Phi, y, onehot, 0.1, lam_b=1.0))
    edge = onehot.copy()
    edge[0] = [1.0, -1e-12, 1e-12]
    assert math.isfinite(softmax_head_dual(Phi, y, edge, 0.1, lam_b=1.0))
    bad = onehot.copy()
    bad[0] = [1.25, -0.25, 0.0]
    with pytest.raises(ValueError, match="probability vector"):
        softmax_head_dual(Phi, y, bad, 0.1, lam_b=1.0)
    At = torch.from_numpy(onehot).requires_grad_(True)
    assert softmax_head_dual(Phi, y, At, 0.1, lam_b=1.0) == softmax_head_dual(Phi, y, onehot, 0.1,
                                                                               lam_b=1.0)


def test_C8_unpenalised_bias_dual_domain_is_closed_at_its_documented_1e_12():
    """softmax_head_dual: with lam_b = 0 the column means must equal the class frequencies to
    1e-12; a violation of exactly 1e-12 (one sample, A = [1e-12, 1, 0], y = 1) is inside."""
    from altheory.solvers.softmax_head import softmax_head_dual

    Phi = np.array([[0.5, -1.0]])
    y = np.array([1])
    D = softmax_head_dual(Phi, y, np.array([[1e-12, 1.0, 0.0]]), 0.1, num_classes=3)
    assert math.isfinite(D)
    assert softmax_head_dual(Phi, y, np.array([[2e-12, 1.0, 0.0]]), 0.1, num_classes=3) == -math.inf


def test_C8_dual_point_of_a_head_that_rules_out_an_absent_class():
    """A class absent from the labels whose probability underflows to exactly 0 (bias -1000):
    the rescaling of the dual point ignores it (ratio inf, not 0/0) and the dual is finite."""
    from altheory.solvers.softmax_head import dual_point, softmax_head_dual

    Phi, y, W, b = _sh_data()
    b = b.copy()
    b[2] = -1000.0
    A = dual_point(Phi, y, W, b)
    assert A[:, 2].max() == 0.0
    assert math.isfinite(softmax_head_dual(Phi, y, A, 0.1))


# --------------------------------------------------------------------------- fast solver's certificate

def test_C4_group_lasso_certificate_names_U_when_it_refuses_it():
    from altheory.solvers.fast import group_lasso_certificate

    X, G, y = np.eye(2), np.ones((2, 1), bool), np.array([1.0, 0.0])
    with pytest.raises(ValueError, match=r"^U contains NaN or Inf"):
        group_lasso_certificate(X, G, y, np.full((1, 2), np.nan), lam=1.0)
    with pytest.raises(ValueError, match=r"^U must have 2 dimension"):
        group_lasso_certificate(X, G, y, np.zeros(2), lam=1.0)


def test_C4_refined_certificate_is_as_tight_as_a_1e_13_solve():
    """refine=True takes the dual point of a solve to tol 1e-13 started at U: the certified gap
    of a point stopped at tol 1e-4 then exceeds its true excess F(U) - F* by at most that
    solve's own relative gap (1e-13), not by the default tol's 1e-8."""
    from altheory.solvers.fast import group_lasso_certificate, solve_group_lasso

    rng = np.random.default_rng(7)
    X = rng.standard_normal((40, 5))
    G = rng.random((40, 6)) < 0.5
    y = rng.standard_normal(40)
    lam = 0.05
    rough = solve_group_lasso(X, G, y, lam, tol=1e-4)
    best = solve_group_lasso(X, G, y, lam, tol=1e-14, max_iter=50_000)
    c = group_lasso_certificate(X, G, y, rough.U, lam, refine=True)
    excess = c["objective"] - best.dual_objective  # >= F(U) - F*, certified
    assert c["gap"] <= excess + 2e-13 * abs(c["objective"]), (c, best.dual_objective)
    assert c["gap"] >= 0.0


def test_C4_refine_asks_its_solve_for_the_documented_accuracy_start_and_budget(monkeypatch):
    """group_lasso_certificate(refine=True): "a solve warm-started at U (solve_group_lasso,
    tol 1e-13, at most time_limit seconds)". The solve it starts is asked for exactly that."""
    import altheory.solvers.fast as fast

    calls = []
    real = fast.solve_group_lasso

    def spy(*a, **k):
        calls.append(k)
        return real(*a, **k)

    monkeypatch.setattr(fast, "solve_group_lasso", spy)
    X, G, y = np.eye(3)[:, :2] + 0.1, np.ones((3, 2), bool), np.array([1.0, -0.5, 0.25])
    U = np.full((2, 2), 0.1)
    fast.group_lasso_certificate(X, G, y, U, lam=0.01, refine=True, time_limit=7.5)
    (k,) = calls
    assert k["tol"] == 1e-13 and k["time_limit"] == 7.5 and np.array_equal(k["U0"], U)
    assert k["max_iter"] >= 1000


def test_C4_certificate_rel_gap_is_the_gap_over_the_objective():
    """Returns: rel_gap = gap / max(|F|, tiny)."""
    from altheory.solvers.fast import group_lasso_certificate

    X, G, y = np.eye(3)[:, :2] + 0.1, np.ones((3, 2), bool), np.array([3.0, -0.5, 0.25])
    c = group_lasso_certificate(X, G, y, np.full((2, 2), 0.1), lam=0.01)
    assert c["gap"] > 0 and abs(c["objective"]) > 1
    assert c["rel_gap"] == c["gap"] / abs(c["objective"])


def test_C4_certificate_dual_is_a_lower_bound_at_an_overshooting_point():
    """Weak duality at a point whose predictions overshoot (z = 2y): X = I, one all-on group,
    y = (1, 0), lam = 1 >= lam_max = 0.5, so U = 0 is optimal and F* = |y|^2 / (2n) = 1/4. The
    dual value of U = (2, 0) is at most F* (the conjugate there is positive: a sign slip in the
    classical dual point gives 3/4)."""
    from altheory.solvers.fast import group_lasso_certificate, lambda_max

    X, G, y = np.eye(2), np.ones((2, 1), bool), np.array([1.0, 0.0])
    assert lambda_max(X, G, y) == 0.5
    c = group_lasso_certificate(X, G, y, np.array([[2.0, 0.0]]), lam=1.0)
    assert c["dual_objective"] <= 0.25 and c["objective"] == 0.25 + 2.0
    assert c["gap"] >= c["objective"] - 0.25


def test_C4_certificate_at_an_interpolating_point():
    """z = y exactly (the loss gradient is 0): the dual value on the ray is 0, no division by
    |g|^2 = 0, and the gap is the penalty lam sum_j |u_j|."""
    from altheory.solvers.fast import group_lasso_certificate

    X, G, y = np.eye(2), np.ones((2, 1), bool), np.array([1.0, -2.0])
    c = group_lasso_certificate(X, G, y, y[None, :].copy(), lam=0.1)
    assert c["dual_objective"] == 0.0
    assert_close(c["gap"], 0.1 * math.hypot(1.0, 2.0), what="gap of an interpolating point")


def test_C4_logistic_certificate_where_every_margin_underflows_the_gradient():
    """Margins y z = 1000: sigmoid(-1000) is exactly 0, so the loss gradient is exactly 0 (no
    division by its largest entry) and the certificate is the penalty alone: dual 0."""
    from altheory.solvers.fast import group_lasso_certificate

    X, G, y = np.eye(2), np.ones((2, 1), bool), np.array([1.0, -1.0])
    c = group_lasso_certificate(X, G, y, np.array([[1000.0, -1000.0]]), lam=0.1, loss="logistic")
    assert c["dual_objective"] == 0.0 and math.isfinite(c["gap"]) and c["gap"] > 0


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_C4_dual_on_ray_is_the_best_point_of_its_segment(loss):
    """_dual_on_ray: max over 0 <= alpha <= alpha_max (logistic: also <= 1/max sigma; squared:
    |alpha| <= alpha_max) of -f*(alpha g). No point of a fine grid of the segment is better."""
    import torch

    from altheory.solvers.fast import _conj, _dual_on_ray, _grad

    rng = np.random.default_rng(11)
    n = 30
    y = torch.from_numpy(np.sign(rng.standard_normal(n)) if loss == "logistic"
                         else rng.standard_normal(n))
    z = torch.from_numpy(0.3 * rng.standard_normal(n))
    g = _grad(z, y, loss)
    for smax in (0.5, 3.0):
        got = _dual_on_ray(g, smax, y, loss)
        if loss == "squared":
            grid = np.linspace(-1 / smax, 1 / smax, 4001)
        else:
            top = float((-n * y * g).max())
            grid = np.linspace(0.0, min(1 / smax, 1 / top), 4001)[:-1]
        best = max(-float(_conj(a * g, y, loss)) for a in grid)
        assert got >= best - slack(best, scale=1.0), (smax, got, best)


# --------------------------------------------------------------------------- margins (C2)

def test_C2_topk_margin_counts_kept_entries_per_slice():
    """Selection docstring: a slice that keeps fewer than k entries (fewer positive ones) must
    keep its dropped entries <= 0, so its margin is min(kept min, -max dropped): 0.1 for the
    slice [-0.1, -2, 5, -3] with k = 2, whatever another slice of the batch keeps."""
    import torch

    from altheory.nets.activations import topk_mask
    from altheory.nets.graph import _topk_margin

    z = torch.tensor([[[3.0, 2.0, 1.0, -1.0]], [[-0.1, -2.0, 5.0, -3.0]]], dtype=torch.float64)
    s = topk_mask(z, 2, dim=-1)
    assert s.sum(-1).flatten().tolist() == [2, 1]
    m = _topk_margin(z, s, 2, -1)
    assert m.tolist() == [0.5, 0.1]


@pytest.mark.parametrize("k", [1, 2])
def test_C2_topk_margin_of_a_slice_with_nothing_positive(k):
    """A slice with no positive entry keeps nothing; it stays so while its largest entry stays
    <= 0: margin 0.3 for [-0.3, -1, -2, -4], for every k (not inf)."""
    import torch

    from altheory.nets.activations import topk_mask
    from altheory.nets.graph import _topk_margin

    z = torch.tensor([[[-0.3, -1.0, -2.0, -4.0]]], dtype=torch.float64)
    s = topk_mask(z, k, dim=-1)
    assert not s.any()
    assert _topk_margin(z, s, k, -1).tolist() == [0.3]


def test_C2_maxpool_margin_sees_the_partial_windows_of_ceil_mode():
    """ceil_mode=True pools run their last windows past the input: the margin (half the gap
    between the two largest entries of every window) must include them. Only the windows of the
    last column (partial: 3 x 3 input, 2 x 2 windows, stride 2) hold a near-tie (gap 0.02:
    margin 0.01); every other window has a gap >= 10."""
    import torch
    from torch import nn

    from altheory.nets.graph import _maxpool_margin

    pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
    x = torch.arange(9, dtype=torch.float64).reshape(1, 1, 3, 3) * 10.0
    x[0, 0, :, 2] = torch.tensor([500.0, 500.02, 900.0], dtype=torch.float64)
    out_hw = tuple(pool(x).shape[2:])
    assert out_hw == (2, 2)
    m = _maxpool_margin(x, pool, out_hw)
    assert m.shape == (1,)
    assert_close(float(m[0]), 0.01, scale=500.0, what="margin of the last column's windows")


def _maxpool_margin_reference(x, k, s, p, d, out_hw):
    """Half the gap between the two largest entries of every window, window by window."""
    n, c, h, w = x.shape
    best = np.full(n, np.inf)
    for i in range(n):
        for ch in range(c):
            for oh in range(out_hw[0]):
                for ow in range(out_hw[1]):
                    vals = [float(x[i, ch, ih, iw])
                            for ih in (oh * s[0] - p[0] + a * d[0] for a in range(k[0]))
                            for iw in (ow * s[1] - p[1] + b * d[1] for b in range(k[1]))
                            if 0 <= ih < h and 0 <= iw < w]
                    if len(vals) >= 2:
                        top = sorted(vals)[-2:]
                        best[i] = min(best[i], (top[1] - top[0]) / 2)
    return best


@pytest.mark.parametrize("k,s,p,d,ceil,hw", [
    ((2, 2), (2, 2), (0, 0), (1, 1), True, (5, 3)),
    ((2, 2), (2, 2), (0, 0), (1, 1), True, (3, 5)),
    ((3, 3), (2, 2), (1, 1), (1, 1), True, (4, 4)),
    ((3, 2), (2, 1), (1, 0), (1, 1), True, (6, 5)),
    ((2, 3), (1, 2), (0, 1), (1, 1), True, (5, 6)),
    ((2, 2), (2, 2), (1, 0), (2, 1), True, (7, 6)),
    ((3, 3), (3, 3), (1, 1), (1, 1), False, (7, 8)),
])
def test_C2_maxpool_margin_matches_a_window_by_window_reference(k, s, p, d, ceil, hw):
    """Every window of the pool, padding, dilation and ceil_mode's partial windows included,
    against a loop over the windows (distinct random entries: the same subtractions)."""
    import torch
    from torch import nn

    from altheory.nets.graph import _maxpool_margin

    pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    x = torch.from_numpy(np.random.default_rng(sum(hw)).permutation(2 * 2 * hw[0] * hw[1])
                         .reshape(2, 2, *hw) * 10.0)
    out_hw = tuple(pool(x).shape[2:])
    # a near-tie (gap 0.02) in the last window with two entries: ceil_mode's partial windows
    for oh, ow in ((a, b) for a in reversed(range(out_hw[0])) for b in reversed(range(out_hw[1]))):
        cells = [(ih, iw) for ih in (oh * s[0] - p[0] + a * d[0] for a in range(k[0]))
                 for iw in (ow * s[1] - p[1] + b * d[1] for b in range(k[1]))
                 if 0 <= ih < hw[0] and 0 <= iw < hw[1]]
        if len(cells) >= 2:
            (h1, w1), (h2, w2) = cells[-2:]
            x[1, 1, h1, w1], x[1, 1, h2, w2] = 1e4, 1e4 + 0.02
            break
    ref = _maxpool_margin_reference(x.numpy(), k, s, p, d, out_hw)
    assert_close(ref[1], 0.01, scale=1e4, what="the planted near-tie is the smallest gap")
    got = _maxpool_margin(x, pool, out_hw)
    assert got.tolist() == ref.tolist()


@pytest.mark.parametrize("kernel", [1, (1, 2)])
def test_C2_maxpool_margin_of_one_and_two_entry_windows(kernel):
    """A one-entry window has no tie to break: margin inf, one float64 per sample. A two-entry
    window (kernel (1, 2)) has one: half the gap of its two entries."""
    import torch
    from torch import nn

    from altheory.nets.graph import _maxpool_margin

    pool = nn.MaxPool2d(kernel)
    x = torch.tensor([[[[1.0, 1.5, 4.0, 7.0]]], [[[2.0, 6.0, 0.0, 0.25]]]], dtype=torch.float64)
    m = _maxpool_margin(x, pool, tuple(pool(x).shape[2:]))
    assert m.dtype == torch.float64 and m.shape == (2,)
    assert m.tolist() == ([math.inf, math.inf] if kernel == 1 else [0.25, 0.125])


def test_C2_support_of_a_topk_network_records_the_topk_margin():
    """A PHT(k) layer's recorded margin is the top-k margin (half the gap between the k-th and
    the (k+1)-th entry, or the distance to 0 below k positives), not the threshold's min |z|."""
    import torch
    from torch import nn

    from altheory.nets.activations import PHT, topk_mask
    from altheory.nets.graph import _topk_margin
    from altheory.nets.support import support

    torch.manual_seed(0)
    lin = nn.Linear(3, 5).double()
    model = nn.Sequential(lin, PHT(k=2, dim=1)).eval()
    x = torch.randn(6, 3, dtype=torch.float64)
    S = support(model, x)
    (margin,) = S.margins().values()
    z = lin(x).detach()
    ref = _topk_margin(z, topk_mask(z, 2, dim=1), 2, 1).numpy()
    assert np.array_equal(margin, ref)
    assert not np.array_equal(margin, z.abs().amin(1).numpy())


def test_C2_support_at_the_threshold_is_off():
    """PHT's support is 1[z > tau]: an entry exactly at tau is off (PHT outputs 0 there), in
    the recorded support as in the module."""
    import torch
    from torch import nn

    from altheory.nets.activations import PHT
    from altheory.nets.support import support

    lin = nn.Linear(2, 3).double()
    with torch.no_grad():
        lin.weight.zero_(), lin.bias.copy_(torch.tensor([0.5, 0.75, 0.25], dtype=torch.float64))
    model = nn.Sequential(lin, PHT(tau=0.5)).eval()
    S = support(model, torch.ones(2, 2, dtype=torch.float64))
    (layer,) = S.layers.values()
    assert layer.mask().tolist() == [[False, True, False], [False, True, False]]
    assert model(torch.ones(1, 2, dtype=torch.float64)).tolist() == [[0.0, 0.75, 0.0]]


def test_C2_topk_mask_takes_reversed_views_and_keeps_no_zero():
    """topk_mask copies a numpy input (a view with a negative stride, which torch.from_numpy
    refuses, works) and keeps strictly positive entries only, also when k is the whole width."""
    from altheory.nets.activations import topk_mask

    z = np.array([3.0, -1.0, 0.0, 2.0])
    assert topk_mask(z[::-1], 2).tolist() == [True, False, False, True]
    assert isinstance(topk_mask(z, 2), np.ndarray)  # numpy in, numpy out
    assert topk_mask(np.array([0.0, 1.0, -1.0]), 3).tolist() == [False, True, False]
    assert topk_mask(np.array([[0.0, 1.0], [2.0, 0.0]]), 2, dim=1).tolist() == [[False, True],
                                                                                 [True, False]]


def test_C2_topk_mask_breaks_ties_by_index_in_wide_slices():
    """Ties keep the lower index (topk_mask's docstring), also where torch's default sort is not
    stable (wide slices: 200 equal entries, k = 50 keeps the first 50)."""
    import torch

    from altheory.nets.activations import topk_mask

    z = torch.ones(3, 200, dtype=torch.float64)
    s = topk_mask(z, 50, dim=1)
    assert s[:, :50].all() and not s[:, 50:].any()


def test_C2_pht_mask_default_threshold_is_zero():
    """pht_mask(z) is ReLU's support 1[z > 0] (tau defaults to 0)."""
    from altheory.nets.activations import pht_mask

    assert pht_mask(np.array([0.5, 0.0, -1.0])).tolist() == [True, False, False]


# --------------------------------------------------------------------------- certify (C4, C7)

def test_C4_certify_an_unverified_solve_is_not_certified(monkeypatch):
    """A solve that is not optimal gives status "solver-<status>" and no gap (NaN), never
    "certified" with the gap of an unverified bound."""
    import altheory.certificates.certificates as cert
    from altheory.solvers.convex import ConvexResult
    from altheory.solvers.problems import TwoLayerFixedSupport

    problem = TwoLayerFixedSupport(np.eye(2), np.ones((2, 1), bool), np.array([1.0, 0.0]),
                                   "squared", 0.1)
    monkeypatch.setattr(cert, "group_lasso_problem", lambda p, solver="clarabel":
                        ConvexResult(objective=0.01, status="optimal_inaccurate", solver="X",
                                     solve_time=0.0))
    c = cert.certify(problem, np.zeros((1, 2)))
    assert c.status == "solver-optimal_inaccurate" and math.isnan(c.gap)


def test_C7_lifted_bound_names_X_when_it_refuses_it():
    from altheory.certificates.certificates import lifted_bound

    X = np.ones((3, 2))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^X contains NaN or Inf"):
        lifted_bound(X, [np.ones((3, 2), bool), np.ones((3, 2), bool)], np.ones(3))


def test_C7_lifted_patterns_read_any_mask_dtype_as_on_off():
    """Masks given as 0/1 floats (or ints) are read as booleans, the first layer's too."""
    from altheory.certificates.certificates import lifted_patterns

    m1 = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    m2 = np.array([[1, 0], [1, 1]])
    ref = lifted_patterns([m1.astype(bool), m2.astype(bool)])
    got = lifted_patterns([m1, m2])
    assert got.dtype == bool and np.array_equal(got, ref)


def test_C7_lifted_patterns_of_masks_that_never_fire():
    """No unit ever on: one all-off pattern (n, 1), so the lifted problem still has a column."""
    from altheory.certificates.certificates import lifted_patterns

    P = lifted_patterns([np.zeros((3, 2), bool), np.ones((3, 4), bool)])
    assert P.dtype == bool and P.shape == (3, 1) and not P.any()
