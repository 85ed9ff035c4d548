r"""The exact head (claim C8) during training: scikit-learn digits, ResNet-8 (width 8), CPU.

Three runs of ``altheory train`` with one setting, differing only in the method:

* ``sgd + exact head``: SGD; after every epoch the head (the last linear layer) of the network as
  SGD left it is compared with the exact optimum of its convex problem on the features of that
  moment (``head_gap``: the normalised gap), then replaced by it;
* ``alt (alt_every=5) + exact head``: the same with the alternation method;
* ``sgd, no exact head``: the control.

Each run is a subprocess (``python -m altheory train ... --out_dir=<work>/<name>``); the table is
read back from each run's ``summary.json`` (its ``history``: one row per epoch), never typed in.
Writes ``paper_repro/results/train_digits_exact_head_cpu.json`` (``--out``), which
``paper_repro/README.md`` quotes; the runs' own folders are kept under ``--work`` (default: a
temporary folder, deleted) for inspection.

Usage::

    python paper_repro/train_digits_exact_head.py            # ~2-4 min on 2 cores
    python paper_repro/train_digits_exact_head.py --work runs/digits_head
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "paper_repro" / "results" / "train_digits_exact_head_cpu.json"
SETTING = ["--dataset=digits", "--arch=resnet8", "--width=8", "--batch_size=64", "--epochs=6",
           "--lr=0.05", "--crop_pad=1", "--flip=false", "--head_samples=2000", "--device=cpu",
           "--seed=0", "--progress=false", "--tensorboard=false", "--checkpoint=false"]
RUNS = {
    "sgd + exact head": ["--method=sgd", "--exact_head=true"],
    "alt (alt_every=5) + exact head": ["--method=alt", "--alt_every=5", "--exact_head=true"],
    "sgd, no exact head": ["--method=sgd", "--exact_head=false"],
}


def _row(method: str, summary: dict) -> dict:
    """One table row from a run's ``summary.json``."""
    history = summary["history"]
    last = history[-1]
    gaps = [r.get("head_gap") for r in history]
    solved = all(g is not None for g in gaps)
    return {
        "method": method,
        "head_gap": gaps if solved else None,
        "head_gap_certified": [r.get("head_gap_certified") for r in history] if solved else None,
        "head_status": [r.get("head_status") for r in history] if solved else None,
        "val_acc_before_last_solve": last.get("val_acc_before_head") if solved else None,
        "val_acc_after_last_solve": last["val_acc"] if solved else None,
        "final_val_acc": summary["final_val_acc"],
        "train_seconds": last.get("train_seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help="results JSON (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the runs' folders here (default: a temporary folder, deleted)")
    args = ap.parse_args(argv)
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="digits_head_")
        work = Path(tmp.name)
    rows, commands = [], []
    try:
        for i, (method, extra) in enumerate(RUNS.items()):
            cmd = [sys.executable, "-m", "altheory", "train", *SETTING, *extra,
                   f"--out_dir={work / f'run{i}'}"]
            commands.append(shlex.join(["altheory", "train", *SETTING, *extra]))
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            summary = json.loads((work / f"run{i}" / "summary.json").read_text())
            row = _row(method, summary)
            row.update(wall_s=round(wall, 1), load1_before=round(load, 2))
            rows.append(row)
            print(f"{method:32s} final val acc {row['final_val_acc']:.3f}  "
                  f"head gaps {row['head_gap']}  {wall:.0f} s  load {load:.2f}", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    result = {
        "source": "written by paper_repro/train_digits_exact_head.py from each run's summary.json",
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "commands": commands,
        "setting": {"epochs": 6, "batch_size": 64, "lr": 0.05, "head_l2": 5e-4, "seed": 0,
                    "runs_per_row": 1},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
