"""The mutation suite (proofs_checks/mutants.py): a quick subset, in process.

Each mutant is a realistic bug in the code under test; ``altheory verify`` on the claims it
touches (quick profile, strict exit status) must kill it. The subset holds the four mutants that
survived before issue 13 (max-pool margin x4, C7 bound halved, no slack at tau > 0) and the fast
solver stopped at a 1e-3 gap. The full suite: ``python proofs_checks/mutants.py``.
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
    r = mutants.run_mutant(m)
    assert r["killed"], f"mutant {name} SURVIVED altheory verify: {r['verdicts']}"


def test_cli_refuses_unknown_mutants(capsys):
    assert mutants.main(["--only", "no-such-mutant"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert mutants.main(["--list"]) == 0
