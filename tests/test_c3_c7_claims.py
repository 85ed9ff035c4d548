"""Tests of the claim checks C3–C7: tiny plans run end to end, reports are complete, and a
planted error is caught (a check that cannot fail is a defect)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from altheory.claims import get_claim, registry
import altheory.claims.c3_per_layer as c3
import altheory.claims.c4_two_layer_fixed_support as c4
import altheory.claims.c5_relu_convex_program as c5
import altheory.claims.c6_shared_support as c6
import altheory.claims.c7_deep_lower_bound as c7

VALID = {"pass", "fail", "reported", "not-converged", "saddle", "not-applicable"}

TINY = {
    c3: [(12, [2, 4, 2], 0.1, "squared", 0.0, [0, 1], [("lbfgs", 1, 200)])],
    c4: [(12, 2, 4, 1e-2, "squared", [("lbfgs", 1, 300)], 1)],
    c5: [(8, 2, 1e-2, "squared", "exact", (1.0,), 1, 200)],
    c6: [(20, 3, 2, [4], [2], "squared", [("lbfgs", 1, 300)])],
    c7: [(30, 2, 4, 3, True, [("lbfgs", 1, 300)])],
}


def _valid(report):
    d = json.loads(json.dumps(report.to_dict(), default=str))
    assert d["claim"] == report.claim and d["instances"]
    for inst in report.instances:
        assert inst.status in VALID or inst.status.startswith("solver-"), inst.status
        assert isinstance(inst.seed, int) and inst.sizes
    assert report.conditions
    return d


def test_registered():
    ids = set(registry())
    assert {"C3", "C4", "C5", "C6", "C7"} <= ids
    assert get_claim("c4").title == c4.TITLE


@pytest.mark.parametrize("mod", [c3, c4, c5, c6, c7], ids=lambda m: m.__name__.split(".")[-1])
def test_tiny_plan_passes(mod, monkeypatch):
    monkeypatch.setattr(mod, "_plan", lambda profile: TINY[mod])
    report = mod.check("quick", 0)
    _valid(report)
    assert report.verdict in ("PASS", "UNVERIFIED"), [(i.status, i.detail.get("why")) for i in report.instances]
    assert report.n_fail == 0


@pytest.mark.parametrize("mod", [c3, c4, c5, c6, c7], ids=lambda m: m.__name__.split(".")[-1])
def test_unknown_profile(mod):
    with pytest.raises(ValueError, match="profile"):
        mod._plan("fast")


def test_C4_planted_wrong_optimum_is_a_failure(monkeypatch):
    # if the "optimum" were higher than a certified local minimum, the check must say fail
    real = c4.group_lasso_problem

    def too_high(P, **kw):
        r = real(P, **kw)
        return replace(r, objective=r.objective + 0.1 * P.zero_objective())

    monkeypatch.setattr(c4, "group_lasso_problem", too_high)
    monkeypatch.setattr(c4, "_plan", lambda profile: [(12, 2, 4, 1e-2, "squared", [("lbfgs", 1, 300)], 0)])
    report = c4.check("quick", 0)
    assert report.verdict == "FAIL"


def test_C7_planted_bound_above_descent_is_a_failure(monkeypatch):
    real = c7.lifted_bound

    def too_high(X, masks, y, **kw):
        r = real(X, masks, y, **kw)
        return replace(r, objective=r.objective + 1.0)

    monkeypatch.setattr(c7, "lifted_bound", too_high)
    monkeypatch.setattr(c7, "_plan", lambda profile: TINY[c7])
    assert c7.check("quick", 0).verdict == "FAIL"


def test_C5_non_optimal_solver_is_never_counted(monkeypatch):
    real = c5.relu_program

    def broken(*a, **kw):
        r = real(*a, **kw)
        return replace(r, status="optimal_inaccurate", weights={})

    monkeypatch.setattr(c5, "relu_program", broken)
    monkeypatch.setattr(c5, "_plan", lambda profile: TINY[c5])
    report = c5.check("quick", 0)
    statuses = {i.status for i in report.instances if i.sizes.get("check") == "map"}
    assert statuses == {"solver-optimal_inaccurate"}
    assert report.solver_statuses.get("optimal_inaccurate", 0) >= 1


@pytest.mark.parametrize("shift, dual_shift, status", [
    (0.0, 0.0, "pass"),               # the certified optimum as solved
    (1e-3, 1e-3, "fail"),             # a consistent certificate of a wrong optimum (too high)
    (0.0, 1e-3, "fail"),              # a dual bound above cvxpy's feasible value
    (-1e-3, -1e-3, "fail"),           # an optimum below cvxpy's (and below any feasible point)
])
def test_C5_cross_check_against_cvxpy_can_fail(shift, dual_shift, status):
    """The cross-check holds the certified solver's (objective, dual bound) against Clarabel's
    objective: planted shifts (relative to F(0)) beyond the certified gap must fail."""
    from altheory.solvers.arrangements import enumerate_patterns
    from altheory.solvers.losses import zero_loss

    X, y = c5._draw(3, 12, 2, "squared")
    P = enumerate_patterns(X)
    res = c5.relu_program(X, y, 1e-2, P)
    assert res.solver == "altheory-pe" and res.status == "optimal"
    F0 = zero_loss(y, "squared")
    res = replace(res, objective=res.objective + shift * F0,
                  solver_value=res.solver_value + dual_shift * F0)
    sizes = {"n": 12, "d": 2, "lam": 1e-2, "loss": "squared", "patterns": "exact"}
    inst = c5._cross_check(X, y, P, res, 3, sizes, {}, F0)
    assert inst.status == status, inst.detail
    if status == "fail":
        assert inst.value > c5.TOL_CROSS


@pytest.mark.slow
@pytest.mark.parametrize("cid", ["C3", "C4", "C5", "C6", "C7"])
def test_quick_profile_passes(cid):
    report = get_claim(cid).run("quick", 0)
    _valid(report)
    assert report.verdict == "PASS"
    assert not math.isnan(report.pass_rate)
