r"""Branch coverage of the verdict paths: ``altheory/claims/`` and ``altheory/descent/endpoints.py``.

A verdict (PASS, FAIL, ERROR, UNVERIFIED, REPORTED) is only as good as the code that forms it,
so every branch of that code is taken by a test. This script measures it with coverage.py in
branch mode over the tests that exercise the claims, and writes what it measured; run it from
the repository root::

    python paper_repro/coverage_verdicts.py            # the tests below, quick profile
    python paper_repro/coverage_verdicts.py -- -x      # extra pytest arguments after --

The tests: ``tests/test_verdict_paths.py`` and ``tests/test_solver_evidence.py`` (hand-built
reports, every branch of the verdict and evidence code), ``tests/test_verdicts.py``, the claim
tests ``tests/test_c<digit>*_*.py``, ``tests/test_descent.py``, ``tests/test_cli.py`` and
``tests/test_bad_inputs*.py``. Writes ``paper_repro/results/coverage_verdicts.json``: per file
its statements, missed statements, branches, partial branches and percent (coverage.py's:
covered statements and branches over all of them), the missed lines; the total; the pytest
summary, wall seconds, load, date and command. Prints the table. Exit status 0 only when pytest
passed and the total reaches ``TARGET`` percent.

Needs the ``test`` extra (``coverage>=7``). The modules are selected with ``--include`` (file
paths): ``--source`` with package names made numpy load twice in one process here.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "paper_repro" / "results" / "coverage_verdicts.json"
INCLUDE = ("altheory/claims/*", "altheory/descent/endpoints.py")
TARGET = 95.0  # percent of statements and branches, over INCLUDE together


def test_files() -> list[str]:
    """The test files that exercise the claims (module docstring), sorted, relative to ROOT."""
    tests = ROOT / "tests"
    names = {"test_verdict_paths.py", "test_solver_evidence.py", "test_verdicts.py",
             "test_descent.py", "test_cli.py"}
    picked = [p for p in tests.glob("test_*.py")
              if p.name in names or re.fullmatch(r"test_c\d\w*_\w+\.py", p.name)
              or p.name.startswith("test_bad_inputs")]
    return sorted(str(p.relative_to(ROOT)) for p in picked)


def _row(name: str, s: dict) -> dict:
    return {"statements": s["num_statements"], "missed": s["missing_lines"],
            "branches": s["num_branches"], "partial": s["num_partial_branches"],
            "missed_branches": s["missing_branches"],
            "percent": round(s["percent_covered"], 2)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    files = test_files()
    with tempfile.TemporaryDirectory() as tmp:
        data, report = Path(tmp) / ".coverage", Path(tmp) / "coverage.json"
        run = [sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}",
               f"--include={','.join(INCLUDE)}", "-m", "pytest", "-q", "-p", "no:cacheprovider",
               *files, *extra]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        subprocess.run([sys.executable, "-m", "coverage", "json", f"--data-file={data}",
                        "-o", str(report), "-q"], cwd=ROOT, check=True)
        cov = json.loads(report.read_text(encoding="utf-8"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = next((ln.strip("= ") for ln in reversed(lines)
                    if re.search(r"\d+ (passed|failed|error)", ln)), "")
    per_file = {name: {**_row(name, f["summary"]), "missing_lines": f["missing_lines"],
                       "missing_branches": f["missing_branches"]}
                for name, f in sorted(cov["files"].items())}
    for row in per_file.values():  # counts, not the lists, in the summary fields
        row["missed"] = len(row["missing_lines"])
        row["missed_branches"] = len(row["missing_branches"])
    t = cov["totals"]
    total = {"statements": t["num_statements"], "missed": t["missing_lines"],
             "branches": t["num_branches"], "partial": t["num_partial_branches"],
             "missed_branches": t["missing_branches"], "percent": round(t["percent_covered"], 2)}
    rec = {"command": "python paper_repro/coverage_verdicts.py"
                      + (" -- " + " ".join(extra) if extra else ""),
           "coverage_command": "coverage run --branch --include=" + ",".join(INCLUDE)
                               + " -m pytest -q " + " ".join(files + extra),
           "tests": files, "include": list(INCLUDE), "target_percent": TARGET,
           "files": per_file, "total": total, "pytest_summary": summary,
           "pytest_exit_status": proc.returncode, "wall_s": round(wall, 1),
           "load1_before": round(load0, 2), "load1_after": round(os.getloadavg()[0], 2),
           "cores": os.cpu_count(), "python": platform.python_version(),
           "coverage_version": cov["meta"]["version"],
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    head = f"{'file':<46} {'stmts':>6} {'miss':>5} {'branch':>6} {'part':>5} {'cover':>7}"
    print(head)
    print("-" * len(head))
    for name, r in per_file.items():
        print(f"{name:<46} {r['statements']:>6} {r['missed']:>5} {r['branches']:>6} "
              f"{r['partial']:>5} {r['percent']:>6.2f}%")
    print("-" * len(head))
    print(f"{'TOTAL':<46} {total['statements']:>6} {total['missed']:>5} {total['branches']:>6} "
          f"{total['partial']:>5} {total['percent']:>6.2f}%   (target {TARGET:g}%)")
    print(f"pytest: {summary} (exit {proc.returncode}), {rec['wall_s']} s; written to "
          f"{OUT.relative_to(ROOT)}")
    if proc.returncode != 0:
        print("\n".join(lines[-30:]), file=sys.stderr)
    return 0 if proc.returncode == 0 and total["percent"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
