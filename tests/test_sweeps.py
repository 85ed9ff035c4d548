"""Tests of altheory.experiments.sweeps: grid expansion, resumable CSV table, parallel runs, errors."""

from __future__ import annotations

import csv

import pytest

from altheory.experiments.sweeps import SWEEPS, expand_grid, instance_key, read_table, run_sweep

CALLS: list[dict] = []


def square(x, seed=0):
    return {"y": x * x, "tag": f"s{seed}"}


def counted(x):
    CALLS.append({"x": x})
    return {"y": 2 * x}


def flaky(x):
    if x == 2:
        raise RuntimeError("boom")
    return {"y": x}


def widening(x):
    return {"a": x} if x == 1 else {"a": x, "b": -x}


def test_expand_grid_and_keys():
    g = expand_grid({"n": [1, 2], "tau": [0.0, 0.1]})
    assert g == [{"n": 1, "tau": 0.0}, {"n": 1, "tau": 0.1}, {"n": 2, "tau": 0.0}, {"n": 2, "tau": 0.1}]
    assert instance_key({"b": 1, "a": 2}) == instance_key({"a": 2, "b": 1})
    with pytest.raises(TypeError, match="Wrap a single value"):
        expand_grid({"n": 3})
    with pytest.raises(ValueError, match="empty"):
        expand_grid({"n": []})


def test_resume_skips_done_instances(tmp_path):
    out = tmp_path / "t.csv"
    CALLS.clear()
    df = run_sweep(counted, {"x": [1, 2]}, out, progress=False)
    assert sorted(df["y"]) == [2, 4] and len(CALLS) == 2
    df = run_sweep(counted, {"x": [1, 2, 3]}, out, progress=False)
    assert len(CALLS) == 3 and sorted(df["x"]) == [1, 2, 3]  # only x = 3 ran again


def test_crash_loses_at_most_the_torn_row(tmp_path):
    out = tmp_path / "t.csv"
    run_sweep(square, {"x": [1, 2, 3]}, out, progress=False)
    text = out.read_text()
    out.write_text(text[: len(text) - 15])  # simulate a crash in the middle of the last write
    df = run_sweep(square, {"x": [1, 2, 3]}, out, progress=False)
    assert sorted(df["x"]) == [1, 2, 3] and len(df) == 3


def test_errors_recorded_and_retried(tmp_path):
    out = tmp_path / "t.csv"
    df = run_sweep(flaky, {"x": [1, 2]}, out, progress=False)
    row = df[df["x"] == 2].iloc[0]
    assert row["status"] == "error" and "boom" in row["error"]
    df = run_sweep(flaky, {"x": [1, 2]}, out, progress=False)
    assert len(df) == 2  # not retried by default
    df = run_sweep(flaky, {"x": [1, 2]}, out, progress=False, retry_errors=True)
    assert (df["status"] == "error").sum() == 2  # retried (and failed again), appended


def test_new_columns_extend_the_header(tmp_path):
    out = tmp_path / "t.csv"
    run_sweep(widening, {"x": [1, 2]}, out, progress=False)
    with out.open() as fh:
        header = next(csv.reader(fh))
    assert "b" in header
    df = read_table(out)
    assert df.loc[df["x"] == 2, "b"].item() == -2


def test_parallel_joblib_threads(tmp_path):
    out = tmp_path / "t.csv"
    df = run_sweep(square, {"x": [1, 2, 3, 4], "seed": [0]}, out, n_jobs=2, backend="threading",
                   progress=False)
    assert sorted(df["y"]) == [1, 4, 9, 16]


@pytest.mark.slow
def test_parallel_joblib_processes(tmp_path):
    # loky worker start-up imports torch: ~10 s on the 2-core machine
    out = tmp_path / "t.csv"
    df = run_sweep(square, {"x": [1, 2, 3, 4], "seed": [0]}, out, n_jobs=2, progress=False)
    assert sorted(df["y"]) == [1, 4, 9, 16]


def test_claim_sweep_function_runs(tmp_path):
    df = run_sweep(SWEEPS["c7"], {"n": [30], "d": [2], "h1": [4], "h2": [3], "replicate": [True],
                                  "seed": [0]}, tmp_path / "c7.csv", progress=False)
    assert df["status"].item() == "pass" and df["solver_status"].item() == "optimal"


def test_bad_calls(tmp_path):
    with pytest.raises(ValueError, match="backend must be"):
        run_sweep(square, {"x": [1]}, tmp_path / "a.csv", backend="spark")
    with pytest.raises(ValueError, match="n_jobs"):
        run_sweep(square, {"x": [1]}, tmp_path / "a.csv", n_jobs=0)
    with pytest.raises(TypeError, match="callable"):
        run_sweep(3, {"x": [1]}, tmp_path / "a.csv")


def test_parse_grid_and_cli(tmp_path, capsys):
    from altheory.cli.main import main as cli_main
    from altheory.experiments.sweeps import parse_grid

    assert parse_grid(["x=1,2.5,abc", "seed=0:3"], square) == {"x": [1, 2.5, "abc"], "seed": [0, 1, 2]}
    with pytest.raises(ValueError, match="Did you mean 'seed'"):
        parse_grid(["x=1", "sed=0"], square)
    with pytest.raises(ValueError, match="needs values for \\['x'\\]"):
        parse_grid(["seed=0"], square)
    out = tmp_path / "c7.csv"
    rc = cli_main(["sweep", "c7", "n=30", "d=2", "h1=4", "h2=3", "replicate=true", "seed=0:2", "--out", str(out),
               "--no-progress"])
    assert rc == 0 and "2 rows" in capsys.readouterr().out


@pytest.mark.parametrize("items, match", [
    (["x=1", "x=2"], "x is given twice"),
    (["x=1", "seed=a:b"], "a range is a:b"),
    (["x=1", "seed=3:3"], "is empty"),
    (["x=1", "seed=1,1"], "more than once"),
    (["x=1", "seed=0,"], "empty value"),
    (["x="], "has no values"),
])
def test_parse_grid_refuses(items, match):
    from altheory.experiments.sweeps import parse_grid

    with pytest.raises(ValueError, match=match):
        parse_grid(items, square)


@pytest.mark.parametrize("name, item, match", [
    ("c7", "n=abc", "n='abc': expected an integer"),
    ("c4", "lam=-1", "lam=-1: expected a number >= 0"),
    ("c7", "seed=-2:1", "seed=-2: expected an integer >= 0"),
    ("c7", "n=0", "n=0: expected an integer >= 1"),
    ("c7", "replicate=maybe", "replicate='maybe': expected true or false"),
    ("c4", "method=newton", "method='newton': expected one of"),
])
def test_claim_grid_domains(name, item, match):
    import re

    from altheory.experiments.sweeps import SWEEPS, parse_grid

    base = {"c7": {"n": "n=30", "d": "d=2", "h1": "h1=4", "h2": "h2=3", "replicate": "replicate=true",
                   "seed": "seed=0"},
            "c4": {"n": "n=20", "d": "d=2", "p": "p=4", "lam": "lam=0.01", "seed": "seed=0"}}[name]
    base[item.split("=")[0]] = item
    with pytest.raises(ValueError, match=re.escape(match)):
        parse_grid(list(base.values()), SWEEPS[name])


def test_two_runs_on_one_table_do_not_interleave(tmp_path):
    from altheory.experiments.store import StoreBusyError, folder_lock

    out = tmp_path / "t.csv"
    with folder_lock(tmp_path, name=".t.csv.lock"):  # as a concurrent run holds it
        with pytest.raises(StoreBusyError, match="another altheory run"):
            run_sweep(square, {"x": [1]}, out, progress=False)
    assert run_sweep(square, {"x": [1]}, out, progress=False)["y"].tolist() == [1]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
