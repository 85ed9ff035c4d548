"""The C8 and C9 claim checks: quick profiles verify, statuses are honest, and the checks can fail."""

from __future__ import annotations

import numpy as np
import pytest

from altheory.claims import get_claim
from altheory.floats import assert_close, assert_leq


@pytest.fixture(scope="module")
def c9():
    return get_claim("C9").run("quick", seed=0)


@pytest.fixture(scope="module")
def c8():
    return get_claim("C8").run("quick", seed=0)


def test_C9_quick_verifies(c9):
    assert c9.verdict == "PASS"
    asserted = [i for i in c9.instances if i.detail.get("variant") == "support-preserving"]
    assert asserted and all(i.status == "pass" and i.value <= i.tol for i in asserted)
    assert all(i.detail["solver_status"] == "optimal" for i in asserted)
    objs = asserted[0].detail["objectives"]
    assert_leq(np.asarray(objs[1:]), np.asarray(objs[:-1]), scale=objs[0],
               what="support-preserving steps never increase the objective")
    reported = [i for i in c9.instances if i.status == "reported"]
    assert reported and all(i.tol is None for i in reported)


def test_C9_increase_metric_can_fail():
    from types import SimpleNamespace

    from altheory.claims.c9_alternation import TOL, _increase

    rounds = [SimpleNamespace(objective=1.0, step_objectives=[]),
              SimpleNamespace(objective=1.1, step_objectives=[0.9, 1.1])]
    res = SimpleNamespace(rounds=rounds, config={"F0": 2.0})
    assert_close(_increase(res), 0.1, scale=1.1 / 2.0, what="(1.1 - 0.9) / F0")
    assert _increase(res) > TOL


def test_C8_quick_verifies(c8):
    assert c8.verdict == "PASS"
    for i in c8.instances:
        assert i.status in ("pass", "not-applicable", "not-converged", "saddle") or i.status.startswith("solver-")
        if i.status == "pass":
            assert i.detail["endpoint"] == "local-min" and i.detail["solver_status"] == "optimal"
            assert i.value <= i.tol and i.detail["stopped"] == "support-stable" and i.detail["margin"] > 0
    assert c8.n_pass >= 1
    d = c8.to_dict()
    assert d["claim"] == "C8" and d["counts"]["pass"] == c8.n_pass


def test_C8_gap_is_large_for_weights_that_are_not_optimal():
    """The measurement behind C8 separates optimal from non-optimal weights."""
    from altheory.alternation import c8_gaps, mlp
    from altheory.claims.c8_global_given_support import LAM, TOL, _data

    X, Y = _data(0, 60, 3, 0.1)
    g = c8_gaps(mlp(4, (4,), 1, tau=0.1, bias=False, seed=0), X, Y, lam=LAM)
    assert g["joint_status"] == "optimal" and g["joint_gap"] > TOL
