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
