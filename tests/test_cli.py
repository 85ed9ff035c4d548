"""The command line: verify's table, JSON and exit status; dispatch and unknown commands."""

import json

import pytest

from altheory.cli import main as cli
from altheory.claims import _REGISTRY, ClaimReport, Instance, register
from altheory.claims.report import exit_code, run_claims


@pytest.fixture
def fake_claims():
    """Two throw-away claims: one that passes, one that fails on an instance."""
    @register("C98", "always holds")
    def ok(profile="quick", seed=0):
        r = ClaimReport("C98", "always holds", True, "gap")
        r.add(Instance(seed, {"n": 1}, "pass", 0.0, 1e-6))
        return r

    @register("C99", "fails once")
    def bad(profile="quick", seed=0):
        r = ClaimReport("C99", "fails once", True, "gap")
        r.add(Instance(seed, {"n": 1}, "pass", 1e-9, 1e-6))
        r.add(Instance(seed + 1, {"n": 2}, "fail", 0.3, 1e-6, {"solver_status": "optimal"}))
        return r

    yield
    _REGISTRY.pop("C98")
    _REGISTRY.pop("C99")


def test_verify_exit_status_and_json(fake_claims, tmp_path, capsys):
    rc = cli.main(["verify", "--claims", "C98", "--json", str(tmp_path / "v.json")])
    assert rc == 0
    rc = cli.main(["verify", "--claims", "C98,C99", "--json", str(tmp_path / "v.json")])
    assert rc == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "C99" in out and "3.00e-01" in out
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["C99"]["verdict"] == "FAIL" and data["C99"]["worst"] == pytest.approx(0.3)
    assert data["C99"]["solver_statuses"] == {"optimal": 1}
    per_claim = json.loads((tmp_path / "claims" / "C99.json").read_text())
    assert per_claim["instances"][1]["seed"] == 1 and per_claim["instances"][1]["sizes"] == {"n": 2}


def test_unverified_claim_fails_only_under_strict(fake_claims):
    @register("C97", "never counted")
    def none(profile="quick", seed=0):
        r = ClaimReport("C97", "never counted", True, "gap")
        r.add(Instance(seed, {}, "solver-infeasible", None, 1e-6, {"solver_status": "infeasible"}))
        return r

    try:
        reports = run_claims(["C97"])
        assert reports[0].verdict == "UNVERIFIED"
        assert exit_code(reports) == 0 and exit_code(reports, strict=True) == 1
    finally:
        _REGISTRY.pop("C97")


def test_list_and_help(capsys):
    assert cli.main(["verify", "--list"]) == 0
    assert "C1" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0


def test_unknown_command_suggests(capsys):
    assert cli.main(["verfy"]) == 2
    assert "Did you mean 'verify'" in capsys.readouterr().err


def test_unknown_claim_is_a_clear_error(capsys):
    assert cli.main(["verify", "--claims", "C42"]) == 2
    assert "unknown claim 'C42'" in capsys.readouterr().out
