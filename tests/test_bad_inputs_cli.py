"""Bad input on the command line: every bad value is refused before any work, with one line on
stderr and exit status 2 (argparse's style), never a traceback; outputs are checked first.

Each case is ``(argv, fragment)``: ``altheory <argv>`` must exit 2, print ``fragment`` on stderr
and no traceback. ``{tmp}`` is a fresh folder holding ``file.txt`` (a regular file), ``dir/`` (a
folder), ``runs_bad.json`` (a truncated runs.json) and ``fm/`` (Fashion-MNIST IDX files whose
training images are truncated).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from altheory.cli.main import main

C4 = ["n=20", "d=2", "p=4", "lam=0.01"]
C7 = ["n=30", "d=2", "h1=4", "h2=3", "replicate=true"]
TINY_ALT = ["--data", "teacher-student", "--n-train", "40", "--n-test", "20", "--pca", "3", "--width", "3",
            "--seeds", "1", "--no-relu", "--steps", "exact", "--methods", "adam", "--rounds", "2",
            "--lr-points", "1", "--epochs-mini", "2", "--epochs-full", "3", "--batch-size", "10"]

CASES = [
    # --- altheory ------------------------------------------------------------------------------
    ([], "usage: altheory"),
    (["verfy"], "Did you mean 'verify'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    # --- verify --------------------------------------------------------------------------------
    (["verify", "--claims", ""], "empty claim list"),
    (["verify", "--claims", "C42"], "unknown claim 'C42'"),
    (["verify", "--claims", "C1,,C2"], "an empty entry"),
    (["verify", "--claims", "C1,C1"], "repeated"),
    (["verify", "--seed", "-1"], "expected an integer >= 0; got -1"),
    (["verify", "--seed", "abc"], "expected an integer >= 0; got 'abc'"),
    (["verify", "--json", "/dev/null"], "not a regular file (a character device)"),
    (["verify", "--json", "{tmp}/dir"], "not a regular file (a directory)"),
    (["verify", "--json", "{tmp}/file.txt/v.json"], "to be a folder; got a regular file"),
    (["verify", "--json", ""], "--json is empty"),
    (["verify", "--reports-dir", "{tmp}/file.txt"], "exists and is not a directory"),
    (["verify", "--strict", "--allow-unverified"], "contradict"),
    (["verify", "--scheduler", "local:0"], "N >= 1"),
    (["verify", "--scheduler", ""], "scheduler is empty"),
    (["verify", "--scheduler", "bogus://x"], "unknown address scheme"),
    (["sweep", "c7", *C7, "seed=0", "--scheduler", "tcp://host"], "host:port"),
    (["verify", "--thoroug"], "unrecognized arguments: --thoroug"),
    # --- sweep ---------------------------------------------------------------------------------
    (["sweep", "c4", "n=abc", "d=2", "p=4", "lam=0", "seed=0"], "n='abc': expected an integer"),
    (["sweep", "c4", *C4[:3], "lam=-1", "seed=0"], "lam=-1: expected a number >= 0"),
    (["sweep", "c7", *C7, "seed=a:b"], "a range is a:b with integers"),
    (["sweep", "c7", *C7, "seed=3:3"], "the range a:b is empty"),
    (["sweep", "c7", *C7, "seed=-1"], "seed=-1: expected an integer >= 0"),
    (["sweep", "c7", "n=12", "n=13", *C7[1:], "seed=0"], "n is given twice"),
    (["sweep", "c7", *C7, "seed=0,0"], "given more than once"),
    (["sweep", "c7", *C7, "sed=0"], "Did you mean 'seed'"),
    (["sweep", "c7", *C7], "needs values for ['seed']"),
    (["sweep", "c7", *C7, "seed=0", "--n-jobs", "0"], "expected an integer >= 1, or -1"),
    (["sweep", "c7", *C7, "seed=0", "--n_jobs", "0"], "expected an integer >= 1, or -1"),
    (["sweep", "c9", "n=1"], "invalid choice: 'c9'"),
    (["sweep", "c7", *C7, "seed=0", "--out", "{tmp}/dir"], "expected a .csv file path"),
    (["sweep", "c7", *C7, "seed=0", "--out", "{tmp}/file.txt/t.csv"], "to be a folder; got a regular file"),
    (["sweep", "c7", *C7, "seed=0", "--backend", "dask"], "needs a cluster"),
    (["sweep", "c7", *C7, "seed=0", "--scheduler", "local", "--backend", "loky"], "cannot be combined"),
    # --- alternate -----------------------------------------------------------------------------
    (["alternate", "--data", "mnist"], "invalid choice: 'mnist'"),
    (["alternate", *TINY_ALT, "--seeds", "0"], "seeds must be an integer >= 1; got seeds=0"),
    (["alternate", "--n-train", "abc"], "expected an integer; got 'abc'"),
    (["alternate", *TINY_ALT, "--batch-size", "500"], "larger than the training set"),
    (["alternate", *TINY_ALT, "--tau", "-0.1"], "tau must be a finite number >= 0"),
    (["alternate", *TINY_ALT, "--methods", "sgd,lbfgs"], "each entry must be one of"),
    (["alternate", *TINY_ALT, "--lrs", "adam=x"], "lrs: expected 'method=lr1:lr2'"),
    (["alternate", "--data", "fashion-mnist", "--root", "{tmp}/none", "--out", "{tmp}/o"],
     "dataset-fashion-mnist"),
    (["alternate", "--data", "fashion-mnist", "--root", "{tmp}/fm", "--out", "{tmp}/o"],
     "train-images-idx3-ubyte"),
    (["alternate", *TINY_ALT, "--out", "{tmp}/o", "--resume"], "nothing to resume"),
    (["alternate", *TINY_ALT, "--resume", "--overwrite"], "contradict"),
    (["alternate", *TINY_ALT, "--out", "{tmp}/file.txt"], "exists and is not a directory"),
    (["alternate", *TINY_ALT, "--out", "{tmp}/o", "--export", "/dev/null"], "not a regular file"),
    (["alternate", "--from-runs", "{tmp}/missing.json"], "runs file not found"),
    (["alternate", "--from-runs", "{tmp}/runs_bad.json"], "is it truncated?"),
    # --- figures -------------------------------------------------------------------------------
    (["figures", "--only", "fig9"], "unknown figure(s) ['fig9']"),
    (["figures", "--only", ""], "empty figure list"),
    (["figures", "--figures-dir", "{tmp}/none"], "no figure scripts found"),
    (["figures", "--profile", "slow"], "invalid choice: 'slow'"),
    # --- train ---------------------------------------------------------------------------------
    (["train", "--epochs", "-1", "--print-config"], "epochs must be >= 1; got -1"),
    (["train", "--tau", "-1", "--print-config"], "tau must be >= 0"),
    (["train", "--metod", "alt", "--print-config"], "Did you mean 'method'"),
    (["train", "--lr", "abc", "--print-config"], "lr expects a number; got 'abc'"),
    (["train", "--config", "{tmp}/missing.toml"], "config file not found"),
    (["train", "stray"], "expected a config option --key value"),
    (["train", "--device", "gpu"], "device='gpu' is not one of"),
    # --- certify (altheory.train.certify) ------------------------------------------------------
    (["certify"], "the following arguments are required: run_dir"),
    (["certify", "{tmp}/none"], "run folder not found"),
    (["certify", "{tmp}/none", "--subset", "abc"], "invalid int value: 'abc'"),
]


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "runs_bad.json").write_text('{"config": {"data": "digits"}, "alternation": [')
    sys.path.insert(0, str(Path(__file__).parent))
    from test_data import write_fmnist_fixture

    root = write_fmnist_fixture(tmp_path / "fm", n_train=20, n_test=10, gz=False)
    img = root / "train-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-100])  # truncated: a download cut short
    return tmp_path


def _ids():
    return [" ".join(a)[:60] or "<none>" for a, _ in CASES]


@pytest.mark.parametrize("argv, fragment", CASES, ids=_ids())
def test_bad_call_is_refused_with_one_line(argv, fragment, tmp, capsys):
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    before = sorted(p.name for p in tmp.iterdir())
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 2, (rc, cap.err[-2000:])
    assert fragment.replace("{tmp}", str(tmp)) in cap.err, cap.err[-2000:]
    assert "Traceback" not in cap.err + cap.out
    # the message is one line (after argparse's usage lines)
    msg = [ln for ln in cap.err.splitlines() if "error:" in ln]
    assert len(msg) <= 1, cap.err
    # refused before any work: nothing was created in the folder
    assert sorted(p.name for p in tmp.iterdir()) == before


def test_device_cuda_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["train", "--device", "cuda", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "Traceback" not in err


def test_certify_is_refused_clearly_when_missing(capsys, monkeypatch):
    from altheory.cli import certify

    monkeypatch.setattr(certify, "MODULE", "altheory.train.certify_not_here")
    assert not certify.available()
    assert main(["certify", "--checkpoint", "x.pt"]) == 2
    err = capsys.readouterr().err
    assert "not available in this version" in err and "altheory.train.certify_not_here" in err
    assert "Traceback" not in err


def test_outputs_checked_before_the_claims_run(tmp_path, capsys):
    from altheory.claims import _REGISTRY, ClaimReport, Instance, register

    calls = []

    @register("C95", "counts calls")
    def counted(profile="quick", seed=0):
        calls.append(1)
        r = ClaimReport("C95", "counts calls", True, "gap")
        r.add(Instance(seed, {}, "pass", 0.0, 1e-6))
        return r

    try:
        assert main(["verify", "--claims", "C95", "--json", "/dev/null"]) == 2
        assert main(["verify", "--claims", "C95", "--json", str(tmp_path)]) == 2
        assert calls == [] and Path("/dev/null").is_char_device()
        assert main(["verify", "--claims", "C95", "--json", str(tmp_path / "v.json")]) == 0
        assert calls == [1]
    finally:
        _REGISTRY.pop("C95")


def test_sweep_bad_grid_writes_no_table(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["sweep", "c4", "n=20", "d=2", "p=4", "lam=-1", "seed=0", "--out", str(out)]) == 2
    assert not out.exists()  # was: one status=error row per bad value, exit 0


def test_concurrent_run_on_the_same_table_is_refused(tmp_path, capsys):
    from altheory.experiments.store import folder_lock

    out = tmp_path / "t.csv"
    with folder_lock(tmp_path, name=".t.csv.lock"):
        rc = main(["sweep", "c7", *C7, "seed=0", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "being written by another altheory run" in err and "Traceback" not in err


def test_concurrent_alternate_on_the_same_folder_is_refused(tmp_path, capsys):
    from altheory.experiments.store import folder_lock

    with folder_lock(tmp_path / "o"):
        rc = main(["alternate", *TINY_ALT, "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "being written by another altheory run" in err


@pytest.mark.parametrize("argv, fragment", [
    (["verify", "--seed", "-1"], "expected an integer >= 0"),
    (["sweep", "c7", "n=12", "n=13", "d=2", "h1=4", "h2=3", "replicate=true", "seed=0"], "n is given twice"),
])
def test_python_dash_m_refuses_with_status_2(argv, fragment):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-m", "altheory", *argv], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_enough_bad_calls():
    assert len(CASES) >= 30


def test_concurrent_verify_on_the_same_summary_is_refused(tmp_path, capsys):
    from altheory.experiments.store import folder_lock

    with folder_lock(tmp_path, name=".v.json.lock"):
        rc = main(["verify", "--claims", "C6", "--json", str(tmp_path / "v.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "being written by another altheory run" in err
    assert not (tmp_path / "v.json").exists()
