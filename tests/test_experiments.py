"""altheory.experiments: the alternation comparison resumes from its store with identical results;
sweeps and claim checks run on a 2-worker Dask LocalCluster with the serial results."""

from __future__ import annotations

import csv
import json

import pytest

from altheory.experiments import comparison as C
from altheory.experiments.store import ResultStore, instance_key, read_rows
from altheory.experiments.sweeps import SWEEPS, run_sweep

TIMING = {"seconds", "wall", "time", "solve_time", "wall_time"}


def _strip(o):
    """``o`` without timings (they differ between any two runs)."""
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k not in TIMING}
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def tiny_config(**kw) -> C.Config:
    base = dict(data="teacher-student", n_train=40, n_test=20, pca=3, width=3, seeds=2, relu=False,
                steps="exact", methods="sgd,adam", rounds=2, descent_steps=3, lr_points=1,
                epochs_mini=2, epochs_full=3, batch_size=10)
    base.update(kw)
    return C.Config(**base)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("alt") / "full"
    runs = C.run_comparison(tiny_config(), progress=False, out=out)
    return out, runs


def test_comparison_writes_every_run_as_it_goes(full_run):
    out, runs = full_run
    cfg = tiny_config()
    _, rows = read_rows(out / "runs.csv")
    assert len(rows) == len(C.units(cfg)) == len(runs["alternation"]) + len(runs["baselines"])
    assert json.loads((out / "config.json").read_text()) == runs["config"]
    assert {"runs.json", "summary.json", "runs.csv", "config.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_resume_after_a_kill_gives_the_same_runs(full_run, tmp_path):
    out, runs = full_run
    part = tmp_path / "killed"
    part.mkdir()
    (part / "config.json").write_text((out / "config.json").read_text())
    text = (out / "runs.csv").read_text()
    lines = text.splitlines(keepends=True)
    keep = 1 + int(0.78 * (len(lines) - 1))  # killed at 78%, in the middle of a row
    (part / "runs.csv").write_text("".join(lines[:keep]) + lines[keep][:40])
    assert C.check_resume(part, tiny_config(), resume=True) == keep - 1
    resumed = C.run_comparison(tiny_config(), progress=False, out=part, resume=True)
    assert _strip(resumed) == _strip(runs)
    assert len(read_rows(part / "runs.csv")[1]) == len(C.units(tiny_config()))
    # the reused rows were not recomputed: their timings are those of the first run
    first = {r["key"]: json.loads(r["run"]) for r in read_rows(out / "runs.csv")[1]}
    again = {r["key"]: json.loads(r["run"]) for r in read_rows(part / "runs.csv")[1]}
    reused = list(first)[: keep - 1]
    assert all(first[k] == again[k] for k in reused)


def test_resume_refusals(full_run, tmp_path):
    out, _ = full_run
    with pytest.raises(C.ResumeError, match="nothing to resume"):
        C.check_resume(tmp_path / "none", tiny_config(), resume=True)
    with pytest.raises(C.ResumeError, match=r"configuration differs .*seeds: saved 2, now 3"):
        C.check_resume(out, tiny_config(seeds=3), resume=True)
    with pytest.raises(C.ResumeError, match="pass --resume to continue"):
        C.check_resume(out, tiny_config(), resume=False)
    assert C.check_resume(out, tiny_config(threads=2), resume=True) > 0  # run control only


def test_alternate_cli_resume_end_to_end(tmp_path, capsys):
    from altheory.cli.main import main

    args = ["alternate", "--data", "teacher-student", "--n-train", "40", "--n-test", "20", "--pca", "3",
            "--width", "3", "--seeds", "1", "--no-relu", "--steps", "exact", "--methods", "adam",
            "--rounds", "2", "--descent-steps", "3", "--lr-points", "1", "--epochs-mini", "2",
            "--epochs-full", "3", "--batch-size", "10", "--out", str(tmp_path / "o"), "-q"]
    assert main(args) == 0
    assert main(args) == 2 and "pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert main(args[:-3] + ["--seeds", "2", "--out", str(tmp_path / "o"), "--resume"]) == 2
    assert "seeds: saved 1, now 2" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_store_rows_round_trip_exactly(tmp_path):
    store = ResultStore(tmp_path / "s.csv")
    row = {"a": 1, "key": instance_key({"a": 1}), "status": "ok",
           "run": {"x": [0.1, 1 / 3, float("nan")], "s": ["p", "q"]}}
    store.append(row)
    got = ResultStore(tmp_path / "s.csv").rows(decode=("run",))[row["key"]]["run"]
    assert got["x"][:2] == [0.1, 1 / 3] and got["x"][2] != got["x"][2] and got["s"] == ["p", "q"]
    with (tmp_path / "s.csv").open() as fh:
        assert next(csv.reader(fh)) == ["a", "key", "status", "run"]


# --------------------------------------------------------------------------------------------
# Dask: a 2-worker LocalCluster gives the serial results
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed", reason="dask[distributed] is not installed (the dask extra)")
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


C7_GRID = {"n": [30], "d": [2], "h1": [4], "h2": [3], "replicate": [True], "seed": [0, 1, 2, 3]}


def _first_difference(a, b, path="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {a!r} != {b!r}"


def _rows(df):
    cols = [c for c in df.columns if c not in TIMING]
    return sorted(json.dumps({c: r[c] for c in cols}, sort_keys=True, default=str)
                  for r in df.to_dict("records"))


def test_sweep_on_a_local_dask_cluster_matches_serial(client, tmp_path):
    serial = run_sweep(SWEEPS["c7"], C7_GRID, tmp_path / "serial.csv", progress=False)
    on_dask = run_sweep(SWEEPS["c7"], C7_GRID, tmp_path / "dask.csv", backend="dask", progress=False)
    assert len(serial) == 4 and set(serial["status"]) == {"pass"}
    assert _rows(on_dask) == _rows(serial)
    # the workers did the work (not this process)
    assert len(client.scheduler_info()["workers"]) == 2


def test_claims_on_a_local_dask_cluster_match_serial(client):
    from rich.console import Console

    from altheory.claims.report import run_claims
    from altheory.experiments.cluster import run_claims_on_cluster

    ids = ["C7", "C8"]
    serial = run_claims(ids, profile="quick", seed=0, console=Console(quiet=True))
    seen = []
    on_dask = run_claims_on_cluster(client, ids, profile="quick", seed=0,
                                    on_done=lambda r, text: seen.append((r.claim, text)))
    assert [r.claim for r in on_dask] == ids and sorted(c for c, _ in seen) == ids
    assert all(cid in text for cid, text in seen)
    a = [_strip(r.to_dict()) for r in on_dask]
    b = [_strip(r.to_dict()) for r in serial]
    assert a == b, _first_difference(a, b)


def test_sweep_cli_on_a_local_cluster(tmp_path, capsys):
    pytest.importorskip("distributed")
    from altheory.cli.main import main

    out = tmp_path / "c7.csv"
    rc = main(["sweep", "c7", "n=30", "d=2", "h1=4", "h2=3", "replicate=true", "seed=0:2",
               "--out", str(out), "--scheduler", "local:2", "-q"])
    assert rc == 0 and "2 rows" in capsys.readouterr().out


def test_verify_cli_on_a_local_cluster(tmp_path, capsys):
    pytest.importorskip("distributed")
    from altheory.cli.main import main

    rc = main(["verify", "--claims", "C6,C7", "--json", str(tmp_path / "v.json"), "--scheduler", "local:2"])
    out = capsys.readouterr().out
    assert rc == 0 and "C6" in out and "C7" in out
    data = json.loads((tmp_path / "v.json").read_text())
    assert list(data) == ["C6", "C7"] and {d["verdict"] for d in data.values()} == {"PASS"}
    assert (tmp_path / "claims" / "C7.json").is_file()
