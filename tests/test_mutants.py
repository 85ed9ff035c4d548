"""The mutation suite (proofs_checks/mutants.py): a quick subset, in process.

Each mutant is a realistic bug in the code under test. Kind ``verify``: ``altheory verify`` on the
claims it touches (quick profile, strict exit status) must kill it; kind ``tests``: one of the
pytest node ids it names must fail with it applied (guards that verify does not exercise). The
subset holds the four mutants that once survived verify (max-pool margin x4, C7 bound halved,
no slack at tau > 0), the fast solver stopped at a 1e-3 gap, and three fast test-killed mutants.
The full suite: ``python proofs_checks/mutants.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "proofs_checks" / "mutants.py"
_spec = importlib.util.spec_from_file_location("altheory_mutants", _PATH)
mutants = importlib.util.module_from_spec(_spec)
sys.modules["altheory_mutants"] = mutants  # dataclasses look their module up there
_spec.loader.exec_module(mutants)


def test_registry_covers_every_claim_and_the_fast_certificate():
    from altheory.claims import registry

    names = [m.name for m in mutants.MUTANTS]
    assert len(names) >= 30 and len(set(names)) == len(names)
    touched = {c for m in mutants.MUTANTS for c in m.claims}
    assert touched == set(registry())
    for survivor in ("maxpool-margin-x4", "lifted-bound-halved", "support-preserving-no-slack",
                     "c4-local-min-gap-1e-3-strict-tol", "fast-group-lasso-stops-1e-3"):
        assert survivor in names
    assert set(mutants.QUICK_SUBSET) <= set(names)


def test_applied_restores_the_originals():
    import altheory.claims.c7_deep_lower_bound as c7
    import altheory.certificates.certificates as cert

    before = (cert.lifted_bound, c7.lifted_bound)
    m = next(m for m in mutants.MUTANTS if m.name == "lifted-bound-halved")
    with mutants.applied(m):
        assert cert.lifted_bound is not before[0] and c7.lifted_bound is cert.lifted_bound
    assert (cert.lifted_bound, c7.lifted_bound) == before


@pytest.mark.parametrize("name", mutants.QUICK_SUBSET)
def test_quick_subset_is_killed(name):
    m = next(m for m in mutants.MUTANTS if m.name == name)
    if m.kind == "verify":
        r = mutants.run_mutant(m)
        assert r["killed"], f"mutant {name} SURVIVED altheory verify: {r['verdicts']}"
    else:  # pytest runs in a forked child, so the test modules are imported with the patch on
        r = mutants.run_in_child(name)
        assert r["killed"] and r["error"] is None, f"mutant {name} not killed by its tests: {r}"
        assert r["killer"].split("[")[0] in {t.split("[")[0] for t in m.killed_by_tests}


def test_test_killed_mutants_name_existing_tests_and_every_area():
    ms = [m for m in mutants.MUTANTS if m.kind == "tests"]
    assert len(ms) >= 25 and all(not m.claims for m in ms)
    files = {t.split("::")[0] for m in ms for t in m.killed_by_tests}
    assert {"tests/test_operators.py", "tests/test_bad_inputs.py", "tests/test_support.py",
            "tests/test_certify_run.py", "tests/test_io.py"} <= files
    root = mutants._REPO
    for m in ms:
        for t in m.killed_by_tests:
            path, _, name = t.partition("::")
            assert (root / path).is_file(), t
            assert f"def {name.split('[')[0]}(" in (root / path).read_text(), t


def test_patches_reach_a_test_module_imported_before_the_patch():
    """A test module that did ``from altheory.nets.operators import maxpool_adjoint`` before the
    mutant was applied still sees the mutant (its globals are walked), and gets the original back."""
    import altheory.nets.operators as ops

    spec = importlib.util.spec_from_file_location("probe_test_operators",
                                                  mutants._REPO / "tests" / "test_operators.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    sys.modules["probe_test_operators"] = probe
    try:
        orig = probe.maxpool_adjoint
        assert orig is ops.maxpool_adjoint
        m = next(m for m in mutants.MUTANTS if m.name == "maxpool-adjoint-scatter-tested")
        with mutants.applied(m):
            assert probe.maxpool_adjoint is not orig and probe.maxpool_adjoint is ops.maxpool_adjoint
        assert probe.maxpool_adjoint is orig is ops.maxpool_adjoint
    finally:
        del sys.modules["probe_test_operators"]


def test_a_collection_error_is_an_error_not_a_kill():
    """pytest exit 2+ (here: a node id that does not exist) must not count as a kill."""
    m = mutants.Mutant("probe-no-such-test", (), "a mutant whose test does not exist",
                       [("func", "altheory.io.write_bytes_atomic", lambda orig: orig)],
                       killed_by_tests=("tests/test_io.py::test_no_such_test",))
    mutants.MUTANTS.append(m)
    try:
        r = mutants.run_in_child(m.name)
    finally:
        mutants.MUTANTS.remove(m)
    assert not r["killed"] and r["error"] is not None and r["exit_code"] >= 2, r


def test_cli_refuses_unknown_mutants(capsys):
    assert mutants.main(["--only", "no-such-mutant"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert mutants.main(["--list"]) == 0
    assert mutants.main(["--kind", "verify", "--only", "atomic-write-leaves-temp"]) == 2
