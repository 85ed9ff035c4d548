"""Solver checks need evidence too (docs/claims.md, "When a verdict means something").

A certified solver that breaks turns its instances into ``solver-<status>`` or falls back to
another solver: the claim must then be UNVERIFIED (``altheory verify`` exits 1), never PASS on
its other checks, and every fallback is recorded per instance and counted. Each test breaks a
solver by monkeypatching it on a tiny plan, beside the unbroken control that passes.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console

import altheory.claims.c3_per_layer as c3
import altheory.claims.c4_two_layer_fixed_support as c4
import altheory.claims.c5_relu_convex_program as c5
import altheory.claims.c6_shared_support as c6
import altheory.claims.c7_deep_lower_bound as c7
import altheory.claims.c8_global_given_support as c8
import altheory.solvers.fast as fast
import altheory.solvers.pilanci_ergen as pe
from altheory.claims import ClaimReport, Instance
from altheory.claims._solver import (SOLVER_EVIDENCE, fallback_of, require_solver_checks,
                                     solver_minimum)
from altheory.claims.report import exit_code, run_claims

TINY = {
    c3: [(12, [2, 4, 2], 0.1, "squared", 0.0, [0, 1], [("lbfgs", 1, 200)])],
    c4: [(12, 2, 4, 1e-2, "squared", [("lbfgs", 1, 300)], 0)],
    c5: [(8, 2, 1e-2, "squared", "exact", (1.0,), 1, 200),
         (10, 2, 1e-2, "squared", "exact", (1.0,), 1, 200)],
    c6: [(20, 3, 2, [4], [2], "squared", [("lbfgs", 1, 300)])],
    c7: [(30, 2, 4, 3, True, [("lbfgs", 1, 300)])],
}
# the first C8 case of each threshold group reaches the premise at seed 0
C8_CASES = ([(3, 60, 4, 0.1), (1, 60, 4, 0.0)], 25)


def _solver_evidence(report, group):
    evs = [e for e in report.evidence if e.group == group]
    assert len(evs) == 1, report.evidence
    assert evs[0].kind == SOLVER_EVIDENCE
    return evs[0]


def _status(new_status):
    """Wrap a solver so that it reports ``new_status`` (its answer otherwise unchanged)."""
    def make(orig):
        def f(*a, **k):
            return replace(orig(*a, **k), status=new_status)
        return f
    return make


def _failed_first_attempt(orig):
    """Wrap a solve: a first attempt that failed, then the real one (a fallback to it)."""
    def f(*a, **k):
        r = orig(*a, **k)
        return replace(r, attempts=[("scs", "solver_error", 0.0)]
                       + (list(r.attempts) or [(r.solver, r.status, 0.0)]))
    return f


# ---- the rule -----------------------------------------------------------------------------

def test_solver_minimum_counts_every_instance_below_ten_and_nine_in_ten_from_there():
    assert [solver_minimum(a) for a in (0, 1, 2, 9, 10, 19, 20, 54)] == [1, 1, 2, 9, 9, 18, 18, 49]
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="attempted must be an int >= 0"):
            solver_minimum(bad)


def test_fallback_of_names_the_solvers_tried_in_order():
    assert fallback_of([("altheory-pe", "max_iter", 0.1), ("clarabel", "solver_error", 0.1),
                        ("scs", "optimal", 0.2)]) == "altheory-pe->clarabel->scs"
    assert fallback_of(["clarabel", "scs"]) == "clarabel->scs"
    assert fallback_of([("clarabel", "optimal", 0.1)]) is None
    assert fallback_of([]) is None and fallback_of(None) is None
    # the fast solvers' own results carry no attempts: one solver answered
    res = fast.solve_layer(np.eye(2), np.zeros(2), np.array([1.0, -1.0]))
    assert not hasattr(res, "attempts") and fallback_of(res) is None


@pytest.mark.parametrize("recorded, counted, planned, met", [
    (10, 9, 10, True),    # one in ten lost: met
    (10, 8, 10, False),   # two in ten lost: not met
    (3, 3, 3, True),
    (3, 2, 3, False),     # below ten, every instance counts
    (0, 0, 2, False),     # planned but never recorded (a path that skips the check)
    (2, 2, 4, False),     # fewer recorded than planned: the plan decides
])
def test_require_solver_checks_states_the_minimum_per_kind(recorded, counted, planned, met):
    r = ClaimReport("CX", "t", True, "gap")
    for j in range(recorded):
        r.add(Instance(j, {"check": "k"}, "pass" if j < counted else "solver-max_iter", 0.0, 1.0))
    r.add(Instance(99, {"check": "other"}, "pass", 0.0, 1.0))
    require_solver_checks(r, {"k": planned})
    ev = _solver_evidence(r, "k")
    assert (ev.counted, ev.runs, ev.met) == (counted, max(recorded, planned), met)
    assert r.verdict == ("PASS" if met else "UNVERIFIED")
    assert f"k {counted}/{max(recorded, planned)} (>= {ev.required})" in r.notes[-1]
    assert "solver fallbacks: none" in r.notes[-1]


def test_require_solver_checks_with_a_predicate_and_a_fallback_in_the_note():
    r = ClaimReport("CX", "t", True, "gap")
    r.add(Instance(0, {}, "saddle", 0.0, 1.0, {"solver_status": "optimal"}))
    r.add(Instance(1, {}, "pass", 0.0, 1.0, {"solver_status": "optimal", "fallback": "clarabel->scs"}))
    r.add(Instance(2, {}, "not-applicable", None, 1.0))
    require_solver_checks(r, {"joint": 1}, kind_of=lambda i: "joint" if "solver_status" in i.detail else None,
                          counted=lambda i: i.detail["solver_status"] == "optimal")
    ev = _solver_evidence(r, "joint")
    assert (ev.counted, ev.runs, ev.required, ev.met) == (2, 2, 2, True)
    assert "solver fallbacks: clarabel->scs on 1 instance." in r.notes[-1]


# ---- C3 and C4: the fast solver against cvxpy -----------------------------------------------

def test_C3_fast_solver_that_never_certifies_leaves_the_claim_unverified(monkeypatch):
    monkeypatch.setattr(c3, "_plan", lambda profile: TINY[c3])
    control = c3.check("quick", 0)
    assert control.verdict == "PASS" and _solver_evidence(control, "fast-vs-cvxpy").met
    monkeypatch.setattr(fast, "solve_layer", _status("max_iter")(fast.solve_layer))
    report = c3.check("quick", 0)
    ev = _solver_evidence(report, "fast-vs-cvxpy")
    assert (ev.counted, ev.required, ev.met) == (0, 2, False)
    # the descent evidence alone would have passed: the solver evidence decides
    assert all(e.met for e in report.evidence if e.kind != SOLVER_EVIDENCE)
    assert report.n_fail == 0 and report.verdict == "UNVERIFIED" and exit_code([report]) == 1
    assert {i.status for i in report.instances if i.sizes["check"] == "fast-vs-cvxpy"} == {"solver-max_iter"}


def test_C4_fast_solver_that_never_certifies_leaves_the_claim_unverified(monkeypatch):
    monkeypatch.setattr(c4, "_plan", lambda profile: TINY[c4])
    control = c4.check("quick", 0)
    assert control.verdict == "PASS"
    monkeypatch.setattr(fast, "solve_problem", _status("max_iter")(fast.solve_problem))
    report = c4.check("quick", 0)
    ev = _solver_evidence(report, "fast-vs-cvxpy")
    assert (ev.counted, ev.required, ev.met) == (0, 1, False)
    assert _solver_evidence(report, "balanced-map").met
    assert report.verdict == "UNVERIFIED" and exit_code([report]) == 1


@pytest.mark.parametrize("mod, target", [(c3, "per_layer"), (c4, "group_lasso_problem")],
                         ids=["C3", "C4"])
def test_C3_C4_reference_fallback_is_recorded_on_every_instance_resting_on_it(mod, target, monkeypatch):
    monkeypatch.setattr(mod, "_plan", lambda profile: TINY[mod])
    monkeypatch.setattr(mod, target, _failed_first_attempt(getattr(mod, target)))
    report = mod.check("quick", 0)
    resting = [i for i in report.instances if i.sizes["check"] != "true-network"]
    assert resting and all(i.detail.get("fallback") == "scs->clarabel" for i in resting)
    assert report.fallbacks == {"scs->clarabel": len(resting)}
    assert report.to_dict()["fallbacks"] == {"scs->clarabel": len(resting)}
    assert "solver fallbacks: scs->clarabel on" in " ".join(report.notes)
    # a fallback that answered optimal is counted (and named), not a failure
    assert report.verdict == "PASS"


# ---- C5: the certified Pilanci-Ergen solver -------------------------------------------------

def test_C5_certified_solver_falling_back_is_counted_and_leaves_the_claim_unverified(monkeypatch):
    monkeypatch.setattr(c5, "_plan", lambda profile: TINY[c5])
    out = io.StringIO()
    control = run_claims(["C5"], console=Console(file=out, width=300))[0]
    assert control.verdict == "PASS" and not control.fallbacks
    assert "solver fallbacks: none." in out.getvalue() and "->" not in out.getvalue()
    monkeypatch.setattr(pe, "solve_pilanci_ergen", _status("max_iter")(pe.solve_pilanci_ergen))
    out = io.StringIO()
    report = run_claims(["C5"], console=Console(file=out, width=300))[0]
    for check in ("certificate", "cross-check"):
        insts = [i for i in report.instances if i.sizes["check"] == check]
        assert [i.status for i in insts] == ["solver-max_iter"] * 2, check
        assert all(i.detail["fallback"] == "altheory-pe->clarabel" for i in insts)
        ev = _solver_evidence(report, check)
        assert (ev.counted, ev.required, ev.met) == (0, 2, False)
    assert _solver_evidence(report, "map").met  # Clarabel's optimum still maps to a network
    n_resting = sum(1 for i in report.instances if i.sizes["check"] != "arrangement")
    assert report.fallbacks == {"altheory-pe->clarabel": n_resting}
    assert report.verdict == "UNVERIFIED" and exit_code([report]) == 1
    text = out.getvalue()
    assert f"solver fallbacks: altheory-pe->clarabel on {n_resting} instances" in text
    assert "minimum evidence not met: certificate: 0 solver instances counted < 2 required" in text
    d = json.loads(json.dumps(report.to_dict(), default=str))
    assert d["fallbacks"] == {"altheory-pe->clarabel": n_resting}
    assert {e["group"]: e["kind"] for e in d["evidence"]}["certificate"] == SOLVER_EVIDENCE


def test_C5_one_broken_path_of_two_is_enough_to_leave_it_unverified(monkeypatch):
    """The certified solver fails on one row only (n = 10): 1 of 2 certificates counted."""
    real = pe.solve_pilanci_ergen

    def broken_on_n10(X, *a, **k):
        r = real(X, *a, **k)
        return replace(r, status="max_iter") if X.shape[0] == 10 else r

    monkeypatch.setattr(c5, "_plan", lambda profile: TINY[c5])
    monkeypatch.setattr(pe, "solve_pilanci_ergen", broken_on_n10)
    report = c5.check("quick", 0)
    ev = _solver_evidence(report, "certificate")
    assert (ev.counted, ev.runs, ev.required) == (1, 2, 2)
    assert report.verdict == "UNVERIFIED"
    assert report.fallbacks["altheory-pe->clarabel"] >= 3


def test_C5_certified_solver_not_run_is_recorded_not_skipped(monkeypatch):
    """relu_program answered by cvxpy alone where the certified solver applies: the certificate
    and cross-check are ``solver-not-run``."""
    real = c5.relu_program
    monkeypatch.setattr(c5, "relu_program", lambda X, y, lam, P, **k: real(X, y, lam, P, solver="clarabel"))
    monkeypatch.setattr(c5, "_plan", lambda profile: TINY[c5][:1])
    report = c5.check("quick", 0)
    assert {i.status for i in report.instances
            if i.sizes["check"] in ("certificate", "cross-check")} == {"solver-not-run"}
    assert report.verdict == "UNVERIFIED"


# ---- C6, C7: fallbacks recorded -------------------------------------------------------------

@pytest.mark.parametrize("mod, target", [(c6, "linear_optimum"), (c7, "lifted_bound")],
                         ids=["C6", "C7"])
def test_C6_C7_fallback_is_recorded(mod, target, monkeypatch):
    monkeypatch.setattr(mod, "_plan", lambda profile: TINY[mod])
    monkeypatch.setattr(mod, target, _failed_first_attempt(getattr(mod, target)))
    report = mod.check("quick", 0)
    solvers = {i.detail["solver"] for i in report.instances}
    assert len(solvers) == 1
    assert report.fallbacks == {f"scs->{solvers.pop()}": len(report.instances)}


# ---- C8: the joint optimum ------------------------------------------------------------------

def _c8_gaps_patched(monkeypatch, change):
    import altheory.alternation.alternation as alt

    real = alt.c8_gaps

    def f(*a, **k):
        g = real(*a, **k)
        change(g)
        return g

    monkeypatch.setattr(alt, "c8_gaps", f)


def test_C8_joint_solver_that_never_answers_leaves_the_claim_unverified(monkeypatch):
    monkeypatch.setattr(c8, "_cases", lambda profile: C8_CASES)
    control = c8.check("quick", 0)
    assert control.verdict == "PASS" and _solver_evidence(control, c8.JOINT).counted == 2
    _c8_gaps_patched(monkeypatch, lambda g: g.update(joint_status="solver_error", joint_gap=None))
    report = c8.check("quick", 0)
    ev = _solver_evidence(report, c8.JOINT)
    assert ev.counted == 0 and ev.runs >= 2 and not ev.met
    assert report.verdict == "UNVERIFIED"


def test_C8_joint_fallback_is_recorded(monkeypatch):
    monkeypatch.setattr(c8, "_cases", lambda profile: C8_CASES)
    _c8_gaps_patched(monkeypatch, lambda g: g.update(joint_attempts=["clarabel", "scs"]))
    report = c8.check("quick", 0)
    assert report.fallbacks == {"clarabel->scs": 2} and report.verdict == "PASS"


def test_C8_joint_attempts_come_from_the_solve():
    from altheory.alternation.alternation import c8_gaps, mlp

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    g = c8_gaps(mlp(3, (3,), 1, tau=0.0, bias=False, seed=0), X, Y, lam=1e-3)
    assert g["joint_status"] == "optimal" and g["joint_attempts"] == ["clarabel"]


# ---- the dispatcher's fast -> cvxpy fallback --------------------------------------------------

def test_per_layer_fallback_from_the_fast_solver_is_in_the_attempts(monkeypatch):
    from altheory.solvers.dispatch import per_layer

    rng = np.random.default_rng(1)
    Phi, Y = rng.standard_normal((12, 3)), rng.standard_normal(12)
    assert fallback_of(per_layer(Phi, np.zeros(12), Y)) is None  # the fast solver certified
    monkeypatch.setattr(fast, "solve_layer", _status("max_iter")(fast.solve_layer))
    r = per_layer(Phi, np.zeros(12), Y)
    assert r.status == "optimal" and r.attempts[0][:2] == ("altheory-fast", "max_iter")
    assert fallback_of(r) == "altheory-fast->clarabel"
    assert per_layer(Phi, np.zeros(12), Y, solver="fast").status == "max_iter"  # forced: no fallback

    def too_wide(*a, **k):
        raise ValueError("too wide")

    monkeypatch.setattr(fast, "solve_layer", too_wide)
    r = per_layer(Phi, np.zeros(12), Y)
    assert r.attempts[0][:2] == ("altheory-fast", "too-wide") and r.status == "optimal"
    with pytest.raises(ValueError, match="too wide"):
        per_layer(Phi, np.zeros(12), Y, solver="fast")


# ---- the thorough profile meets the minima (from the committed thorough reports) ---------------

def _committed(cid):
    from pathlib import Path

    d = json.loads((Path(__file__).resolve().parents[1] / "figures" / "data" / "claims"
                    / f"{cid}.json").read_text(encoding="utf-8"))
    r = ClaimReport(cid, d["title"], True, d["metric"])
    for i in d["instances"]:
        r.add(Instance(i["seed"], i["sizes"], i["status"], i["value"], i["tol"], i["detail"]))
    return r


@pytest.mark.parametrize("mod, cid", [(c3, "C3"), (c4, "C4"), (c5, "C5"), (c8, "C8")],
                         ids=["C3", "C4", "C5", "C8"])
def test_thorough_plan_meets_the_solver_minima_on_the_committed_reports(mod, cid):
    """Reasoned from the instance counts of the committed thorough reports (seed 0): the plan's
    solver checks were counted often enough (C3 loses 2 of 54 fast-vs-cvxpy instances to
    ``max_iter`` of the logistic fast solver; 49 are required)."""
    r = _committed(cid)
    if mod is c8:
        mod.require_joint_solves(r, mod._cases("thorough")[0])
    else:
        planned = mod.solver_checks_planned(mod._plan("thorough"))
        assert all(n >= 10 for n in planned.values()), planned
        require_solver_checks(r, planned)
    assert r.evidence and all(e.met for e in r.evidence), r.evidence
