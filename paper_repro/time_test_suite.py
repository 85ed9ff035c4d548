r"""Wall time of the whole test suite (``pytest -q``), with the load it ran under.

README.md quotes the time ``make test`` takes from the file this script writes, never from
memory. Run it from the repository root (``make test-time``)::

    python paper_repro/time_test_suite.py            # the quick profile, as `make test` runs it
    python paper_repro/time_test_suite.py -- -x      # extra pytest arguments after --

Writes ``paper_repro/results/test_suite_time.json``: wall seconds, pytest's summary line, the
exit status, the 1-minute load average before and after (``uptime``), cores, Python and date.
The exit status of the script is pytest's.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "paper_repro" / "results" / "test_suite_time.json"


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    up0, load0 = _uptime(), os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = next((ln.strip("= ") for ln in reversed(lines)
                    if re.search(r"\d+ (passed|failed|error)", ln)), "")
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|warnings?)", summary)}
    rec = {"command": "pytest -q" + (" " + " ".join(extra) if extra else ""),
           "wall_s": round(wall, 1), "exit_status": proc.returncode, "summary": summary,
           "counts": counts, "load1_before": round(load0, 2),
           "load1_after": round(os.getloadavg()[0], 2), "uptime_before": up0,
           "uptime_after": _uptime(), "cores": os.cpu_count(),
           "machine": platform.machine(), "python": platform.python_version(),
           "hypothesis_profile": os.environ.get("ALTHEORY_HYPOTHESIS", "quick"),
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rec, indent=2) + "\n")
    print("\n".join(lines[-30:]))
    print(f"\n{rec['wall_s']} s, exit {proc.returncode}, load {rec['load1_before']} -> "
          f"{rec['load1_after']} ({rec['cores']} cores); written to {OUT.relative_to(ROOT)}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
