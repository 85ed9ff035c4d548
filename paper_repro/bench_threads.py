r"""Thread policies on a CPU machine: wall time of the quick ``altheory verify`` and trainer images/s.

Each policy runs in a fresh subprocess (the OpenMP wait policy is read once, when torch is
loaded), the policies interleaved round-robin ``--repeats`` times so that a change of load hits
them all alike. Beside every time the script records the 1-minute load average before and after
the run (``os.getloadavg``, what ``uptime`` prints) and the number of cores, because the answer
depends on it: on an idle machine the policies differ little, on a busy one spinning OpenMP
threads compete with the working thread for the cores.

Policies (environment of the subprocess):

``native``          ``ALTHEORY_THREADS=native``, no ``OMP_WAIT_POLICY``: OpenMP's defaults.
``passive``         ``ALTHEORY_THREADS=passive`` (altheory's default): ``OMP_WAIT_POLICY=PASSIVE``.
``native-1thread``  ``native`` with ``OMP_NUM_THREADS=1``.
``passive-1thread`` ``passive`` with ``OMP_NUM_THREADS=1``.

Usage::

    python paper_repro/bench_threads.py                       # verify x 3 repeats x 4 policies, trainer
    python paper_repro/bench_threads.py --repeats 1 --no-train
    python paper_repro/bench_threads.py --label quiet --append # add a run taken on a quiet machine

Writes (appends a run to) ``paper_repro/results/bench_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

POLICIES = {
    "native": {"ALTHEORY_THREADS": "native"},
    "passive": {"ALTHEORY_THREADS": "passive"},
    "native-1thread": {"ALTHEORY_THREADS": "native", "OMP_NUM_THREADS": "1"},
    "passive-1thread": {"ALTHEORY_THREADS": "passive", "OMP_NUM_THREADS": "1"},
}
OUT = Path(__file__).resolve().parent / "results" / "bench_threads.json"
TRAIN_ARGS = ["--dataset=synthetic", "--arch=resnet8", "--width=8", "--image_size=16",
              "--synthetic_n=1024", "--batch_size=64", "--epochs=1", "--device=cpu",
              "--progress=false", "--tensorboard=false", "--checkpoint=false", "--augment=false"]


def _env(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS", "ALTHEORY_THREADS")}
    env.update(POLICIES[policy])
    return env


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def run_verify(policy: str, tmp: Path) -> dict:
    cmd = [sys.executable, "-m", "altheory", "verify", "--json", str(tmp / policy / "verify.json")]
    load0, up0 = os.getloadavg()[0], _uptime()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(policy), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    return {"policy": policy, "wall_s": round(wall, 2), "exit_status": proc.returncode,
            "load1_before": round(load0, 2), "load1_after": round(os.getloadavg()[0], 2),
            "uptime_before": up0,
            **({"output_tail": (proc.stdout + proc.stderr)[-600:]} if proc.returncode else {})}


def run_train(policy: str, tmp: Path) -> dict:
    out = tmp / ("train-" + policy)
    cmd = [sys.executable, "-m", "altheory", "train", *TRAIN_ARGS, f"--out_dir={out}"]
    load0, up0 = os.getloadavg()[0], _uptime()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(policy), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    ips = None
    if proc.returncode == 0 and (out / "summary.json").exists():
        ips = json.loads((out / "summary.json").read_text()).get("images_per_s")
    return {"policy": policy, "images_per_s": None if ips is None else round(ips, 1),
            "wall_s": round(wall, 2), "exit_status": proc.returncode,
            "load1_before": round(load0, 2), "load1_after": round(os.getloadavg()[0], 2),
            "uptime_before": up0, **({"stderr_tail": proc.stderr[-400:]} if proc.returncode else {})}


def _summary(rows: list[dict], key: str) -> dict:
    out = {}
    for pol in POLICIES:
        vals = [r[key] for r in rows if r["policy"] == pol and r.get(key) is not None]
        if vals:
            out[pol] = {"median": round(statistics.median(vals), 2), "min": min(vals),
                        "max": max(vals), "runs": len(vals),
                        "load1_median": round(statistics.median(
                            r["load1_before"] for r in rows if r["policy"] == pol), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds over the policies (default 3)")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset")
    p.add_argument("--no-train", action="store_true", help="skip the trainer images/s measurement")
    p.add_argument("--label", default="as-found", help="what the load was, e.g. 'loaded' or 'quiet'")
    p.add_argument("--append", action="store_true", help="add this run to the existing JSON")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    policies = [s for s in args.policies.split(",") if s]
    for s in policies:
        if s not in POLICIES:
            p.error(f"unknown policy {s!r}; choose from {', '.join(POLICIES)}")
    verify_rows, train_rows = [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for r in range(args.repeats):
            for pol in policies:
                row = run_verify(pol, tmp)
                verify_rows.append(row)
                print(f"verify  round {r} {pol:<16} {row['wall_s']:7.1f} s   exit {row['exit_status']}"
                      f"   {row['uptime_before']}", flush=True)
                if not args.no_train:
                    row = run_train(pol, tmp)
                    train_rows.append(row)
                    print(f"train   round {r} {pol:<16} {row['images_per_s']} images/s"
                          f"   {row['uptime_before']}", flush=True)
    run = {"label": args.label, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
           "cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "python": platform.python_version(), "repeats": args.repeats,
           "verify_command": "altheory verify (quick suite)",
           "train_command": "altheory train " + " ".join(TRAIN_ARGS),
           "verify": verify_rows, "verify_summary": _summary(verify_rows, "wall_s"),
           "train": train_rows, "train_summary": _summary(train_rows, "images_per_s")}
    runs = []
    if args.append and args.out.exists():
        runs = json.loads(args.out.read_text()).get("runs", [])
    runs.append(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(json.dumps({"verify": run["verify_summary"], "train": run["train_summary"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
