r"""Run the registered claim checks and report them: ``altheory verify``.

One line per claim as it finishes (measured worst value against its tolerance), then a summary
table (claim, conditions, instances, pass rate, worst, solver statuses, time). Each claim's report
is written to JSON as soon as it is done, so an interrupted run keeps what it measured.
Exit status: 0 when no asserted claim failed, 1 when one did (and 1 for an unverified asserted
claim under ``strict=True``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterable

from rich.console import Console
from rich.table import Table

from altheory.claims import ClaimReport, Profile, get_claim, registry

__all__ = ["run_claims", "summary_table", "exit_code", "script_main"]

def make_console() -> Console:
    """A rich console; 160 columns wide when the output is not a terminal (logs, CI, pipes)."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


_STYLE = {"PASS": "green", "FAIL": "bold red", "UNVERIFIED": "yellow", "REPORTED": "cyan"}


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.2e}"


def _tol(report: ClaimReport) -> str:
    tols = {i.tol for i in report.instances if i.tol is not None}
    return "—" if not tols else ", ".join(f"{t:.0e}" for t in sorted(tols))


def run_claims(claim_ids: Iterable[str] | None = None, *, profile: Profile = "quick", seed: int = 0,
               out_dir: str | Path | None = None, console: Console | None = None) -> list[ClaimReport]:
    """Run the named claims (all registered ones when None); write ``<out_dir>/<id>.json``."""
    console = console or make_console()
    claims = registry() if claim_ids is None else {c: get_claim(c) for c in claim_ids}
    claims = {c.id: c for c in claims.values()}
    reports = []
    for cid, claim in claims.items():
        t0 = time.perf_counter()
        report = claim.run(profile=profile, seed=seed)
        report.wall_time = time.perf_counter() - t0
        reports.append(report)
        v = report.verdict
        console.print(f"[{_STYLE[v]}]{v:<10}[/] {cid:<3} {claim.title:<48} "
                      f"{report.metric}: worst {_fmt(report.worst)} (tol {_tol(report)}), "
                      f"{report.n_pass}/{report.n_pass + report.n_fail} counted, "
                      f"{len(report.instances)} instances, {report.wall_time:.1f}s")
        for note in report.notes:
            console.print(f"           [dim]{note}[/]")
        if out_dir is not None:
            report.write_json(Path(out_dir) / f"{cid}.json")
    return reports


def summary_table(reports: list[ClaimReport]) -> Table:
    t = Table(title="altheory verify", show_lines=False)
    for col in ("claim", "verdict", "conditions", "instances", "pass rate", "worst", "tol",
                "statuses", "solver", "time (s)"):
        t.add_column(col, justify="right" if col in ("instances", "pass rate", "worst", "time (s)") else "left")
    for r in reports:
        # compact: how many stated conditions hold / fail / were not decidable (names in the JSON)
        held = sum(c.holds is True for c in r.conditions)
        failed = sum(c.holds is False for c in r.conditions)
        unknown = sum(c.holds is None for c in r.conditions)
        conds = " ".join(p for p in (f"{held}✓" if held else "", f"{failed}✗" if failed else "",
                                     f"{unknown}?" if unknown else "") if p) or "—"
        statuses = ", ".join(f"{k}:{v}" for k, v in sorted(r.counts.items()))
        solver = ", ".join(f"{k}:{v}" for k, v in sorted(r.solver_statuses.items())) or "—"
        rate = "—" if math.isnan(r.pass_rate) else f"{100 * r.pass_rate:.0f}%"
        t.add_row(r.claim, f"[{_STYLE[r.verdict]}]{r.verdict}[/]", conds, str(len(r.instances)), rate,
                  _fmt(r.worst), _tol(r), statuses, solver, f"{r.wall_time:.1f}")
    return t


def exit_code(reports: list[ClaimReport], *, strict: bool = False) -> int:
    if any(r.verdict == "FAIL" for r in reports):
        return 1
    if strict and any(r.verdict == "UNVERIFIED" for r in reports):
        return 1
    return 0


def write_summary(reports: list[ClaimReport], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from altheory.claims import _json_default

    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({r.claim: r.to_dict() for r in reports}, indent=2, default=_json_default))
    tmp.replace(path)


def script_main(claim_id: str, argv: list[str] | None = None) -> int:
    """Entry point of the one-claim scripts in ``proofs_checks/``.

    ``python proofs_checks/c1_linearization.py [--thorough] [--seed S] [--json PATH]``.
    """
    import argparse

    claim = get_claim(claim_id)
    p = argparse.ArgumentParser(description=f"Check {claim.id}: {claim.title} (docs/claims.md).")
    p.add_argument("--thorough", action="store_true", help="the thorough profile (more, larger instances)")
    p.add_argument("--seed", type=int, default=0, help="base seed; instance j uses seed + j")
    p.add_argument("--json", default=f"results/claims/{claim.id}.json", help="where to write the report")
    args = p.parse_args(argv)
    console = make_console()
    report = claim.run(profile="thorough" if args.thorough else "quick", seed=args.seed)
    t = Table(title=f"{claim.id} — {claim.title}")
    for col in ("seed", "sizes", "status", report.metric, "tol"):
        t.add_column(col)
    for inst in report.instances:
        sizes = ", ".join(f"{k}={v}" for k, v in inst.sizes.items())
        t.add_row(str(inst.seed), sizes, inst.status, _fmt(inst.value), _fmt(inst.tol))
    console.print(t)
    for c in report.conditions:
        console.print(f"condition {c.name}: {c.holds} ({c.value}) {c.detail}")
    for note in report.notes:
        console.print(note)
    console.print(summary_table([report]))
    report.write_json(args.json)
    console.print(f"report written to {args.json}")
    return exit_code([report])
