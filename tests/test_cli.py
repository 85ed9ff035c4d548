"""The command line: one parser, verify's table/JSON/exit status, progress and quiet modes,
``--version``, ``python -m altheory``, every subcommand's help and exit statuses."""

import json
import subprocess
import sys

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


@pytest.fixture
def unverified_claim():
    @register("C97", "never counted")
    def none(profile="quick", seed=0):
        r = ClaimReport("C97", "never counted", True, "gap")
        r.add(Instance(seed, {}, "solver-infeasible", None, 1e-6, {"solver_status": "infeasible"}))
        return r

    yield
    _REGISTRY.pop("C97")


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
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_verify_is_strict_by_default(unverified_claim, tmp_path, capsys):
    reports = run_claims(["C97"])
    assert reports[0].verdict == "UNVERIFIED"
    assert exit_code(reports, strict=False) == 0 and exit_code(reports, strict=True) == 1
    assert cli.main(["verify", "--claims", "C97", "--json", str(tmp_path / "v.json")]) == 1
    assert cli.main(["verify", "--claims", "C97", "--json", str(tmp_path / "v.json"),
                     "--allow-unverified"]) == 0


def test_verify_json_to_stdout_and_quiet(fake_claims, tmp_path, capsys):
    rc = cli.main(["verify", "--claims", "C98,C99", "--json", "-"])
    assert rc == 1
    cap = capsys.readouterr()
    data = json.loads(cap.out)  # only the JSON on stdout
    assert set(data) == {"C98", "C99"}
    assert "altheory verify" in cap.err and "FAIL" in cap.err  # the table went to stderr
    rc = cli.main(["verify", "--claims", "C98", "--json", str(tmp_path / "q.json"), "-q"])
    cap = capsys.readouterr()
    assert rc == 0 and "always holds" not in cap.out  # no per-claim line
    assert "altheory verify" in cap.out  # the summary table stays
    assert "reports:" not in cap.out


def test_verify_refuses_before_work(fake_claims, tmp_path, capsys):
    calls = []

    @register("C96", "counts calls")
    def counted(profile="quick", seed=0):
        calls.append(1)
        r = ClaimReport("C96", "counts calls", True, "gap")
        r.add(Instance(seed, {}, "pass", 0.0, 1e-6))
        return r

    try:
        assert cli.main(["verify", "--claims", "C96,C42", "--json", str(tmp_path / "v.json")]) == 2
        assert cli.main(["verify", "--claims", "C96", "--json", "/dev/null"]) == 2
        assert cli.main(["verify", "--claims", "C96", "--json", str(tmp_path)]) == 2
        assert calls == []
        err = capsys.readouterr().err
        assert "unknown claim 'C42'" in err and "not a regular file" in err
    finally:
        _REGISTRY.pop("C96")


def test_list_help_and_version(capsys):
    assert cli.main(["verify", "--list"]) == 0
    assert "C1" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status" in out and "usage error" in out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("altheory ")


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_documents_exit_statuses(command, capsys):
    if command == "certify":  # its options are the certifier's; the parser's epilog has them
        sub = cli.build_parser()._subparsers._group_actions[0].choices["certify"]
        assert "exit status" in sub.format_help()
        return
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status" in out and "usage error" in out and "-q, --quiet" in out


def test_unknown_command_suggests(capsys):
    assert cli.main(["verfy"]) == 2
    assert "Did you mean 'verify'" in capsys.readouterr().err


def test_sweep_names_match_the_sweep_functions():
    from altheory.cli.sweep import NAMES
    from altheory.experiments.sweeps import SWEEPS

    assert tuple(sorted(SWEEPS)) == NAMES


def test_train_overrides_accept_both_forms():
    from altheory.cli.train import normalise_overrides

    assert normalise_overrides(["--lr", "0.05", "--data-dir=/d", "--compile", "--tau", "-1"]) == [
        "--lr=0.05", "--data_dir=/d", "--compile=true", "--tau=-1"]


def test_train_print_config_through_the_wrapper(capsys):
    assert cli.main(["train", "--print-config", "--method", "alt", "--tau", "0.1", "--data-dir=x"]) == 0
    out = capsys.readouterr().out
    assert 'method = "alt"' in out and "tau = 0.1" in out and 'data_dir = "x"' in out


@pytest.mark.parametrize("module", ["altheory", "altheory.cli"])
def test_python_dash_m(module):
    r = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("altheory "), r.stderr
