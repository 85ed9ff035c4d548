r"""Run the registered claim checks and report them: ``altheory verify``.

One line per claim as it finishes (measured worst value against its tolerance), then a summary
table (claim, conditions, instances, pass rate, worst, solver statuses, time). Each claim's report
is written to JSON as soon as it is done, so an interrupted run keeps what it measured.
Exit status (:func:`exit_code`): 1 when an asserted claim failed, when a check raised (verdict
``ERROR``; the other claims still run and the traceback is in the report), or — strict, the
default — when an asserted claim is UNVERIFIED (no counted instance, or below its minimum
evidence); 0 otherwise. ``strict=False`` is the explicit opt-out (``--allow-unverified``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterable

from rich.console import Console
from rich.table import Table

from altheory.claims import ClaimReport, Profile, error_report, get_claim, registry, resolve_claim_ids

__all__ = ["run_claims", "summary_table", "fallback_line", "exit_code", "write_summary",
           "script_main", "resolve_claim_ids"]

def make_console() -> Console:
    """A rich console; 160 columns wide when the output is not a terminal (logs, CI, pipes)."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


_STYLE = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold magenta", "UNVERIFIED": "yellow",
          "REPORTED": "cyan"}


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.2e}"


def _tol(report: ClaimReport) -> str:
    tols = {i.tol for i in report.instances if i.tol is not None}
    return "—" if not tols else ", ".join(f"{t:.0e}" for t in sorted(tols))


def run_claims(claim_ids: Iterable[str] | None = None, *, profile: Profile = "quick", seed: int = 0,
               out_dir: str | Path | None = None, console: Console | None = None) -> list[ClaimReport]:
    """Run the named claims (all registered ones when None); write ``<out_dir>/<id>.json``.

    The selection is validated before any work (:func:`altheory.claims.resolve_claim_ids`: an
    empty selection or an unknown id raises ``ValueError``). A check that raises is recorded as
    an ``ERROR`` report (traceback in its JSON, instance status ``error``) and the remaining
    claims still run.
    """
    console = console or make_console()
    if claim_ids is None:
        claims = registry()
    else:
        claims = {c: get_claim(c) for c in resolve_claim_ids(claim_ids)}
    if profile not in ("quick", "thorough"):
        raise ValueError(f"profile must be 'quick' or 'thorough'; got {profile!r}.")
    reports = []
    for cid, claim in claims.items():
        t0 = time.perf_counter()
        try:
            report = claim.run(profile=profile, seed=seed)
        except Exception as exc:  # noqa: BLE001 - recorded as ERROR, never swallowed
            report = error_report(claim, exc, seed)
        report.wall_time = time.perf_counter() - t0
        reports.append(report)
        v = report.verdict
        console.print(f"[{_STYLE[v]}]{v:<10}[/] {cid:<3} {claim.title:<48} "
                      f"{report.metric}: worst {_fmt(report.worst)} (tol {_tol(report)}), "
                      f"{report.n_pass}/{report.n_pass + report.n_fail} counted, "
                      f"{len(report.instances)} instances, {report.wall_time:.1f}s")
        for ev in report.evidence:
            if not ev.met:
                console.print(f"           [yellow]minimum evidence not met: {ev.group}: "
                              f"{ev.counted} {ev.kind} < {ev.required} required[/]")
        if report.fallbacks:
            console.print(f"           [yellow]{fallback_line(report)}[/]")
        for note in report.notes:
            console.print(f"           {note}", style="dim", markup=False)
        if out_dir is not None:
            report.write_json(Path(out_dir) / f"{cid}.json")
    return reports


def fallback_line(report: ClaimReport) -> str:
    """``solver fallbacks: <path> on <k> instances; ...`` (``none`` when no solve fell back)."""
    fb = report.fallbacks
    return "solver fallbacks: " + ("; ".join(f"{path} on {k} instance{'s' if k != 1 else ''}"
                                             for path, k in sorted(fb.items())) or "none")


def _evidence_cell(report: ClaimReport) -> str:
    """Groups whose minimum evidence is met, per kind: ``minima 3/3, solver 2/2`` (— for none)."""
    short = {"certified local minima": "minima", "solver instances counted": "solver"}
    parts = []
    for kind in dict.fromkeys(e.kind for e in report.evidence):
        evs = [e for e in report.evidence if e.kind == kind]
        parts.append(f"{short.get(kind, kind)} {sum(e.met for e in evs)}/{len(evs)}")
    return ", ".join(parts) or "—"


def summary_table(reports: list[ClaimReport]) -> Table:
    t = Table(title="altheory verify", show_lines=False)
    for col in ("claim", "verdict", "conditions", "instances", "pass rate", "worst", "tol",
                "evidence", "statuses", "solver", "time (s)"):
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
        if r.fallbacks:
            solver += "; fallback " + ", ".join(f"{k}:{v}" for k, v in sorted(r.fallbacks.items()))
        rate = "—" if math.isnan(r.pass_rate) else f"{100 * r.pass_rate:.0f}%"
        # minimum evidence, per kind: groups that met their minimum / groups stated
        ev = _evidence_cell(r)
        t.add_row(r.claim, f"[{_STYLE[r.verdict]}]{r.verdict}[/]", conds, str(len(r.instances)), rate,
                  _fmt(r.worst), _tol(r), ev, statuses, solver, f"{r.wall_time:.1f}")
    return t


def exit_code(reports: list[ClaimReport], *, strict: bool = True) -> int:
    """Exit status of a verification run: 0 only when every report is PASS or REPORTED.

    1 when any report is FAIL or ERROR, or (``strict``, the default) UNVERIFIED; 2 when
    ``reports`` is empty (nothing was verified: a usage error, caught before any work by
    :func:`altheory.claims.resolve_claim_ids`). ``strict=False`` tolerates UNVERIFIED claims
    (the CLI's ``--allow-unverified``), never FAIL or ERROR.
    """
    reports = list(reports)
    if not reports:
        return 2
    verdicts = {r.verdict for r in reports}
    if verdicts & {"FAIL", "ERROR"}:
        return 1
    if strict and "UNVERIFIED" in verdicts:
        return 1
    return 0


def write_summary(reports: list[ClaimReport], path: str | Path) -> None:
    """Every report, keyed by claim id, to one JSON file (atomic write)."""
    from altheory.claims import _json_default
    from altheory.io import write_text_atomic

    write_text_atomic(path, json.dumps({r.claim: r.to_dict() for r in reports}, indent=2,
                                       default=_json_default))


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
    p.add_argument("--allow-unverified", action="store_true",
                   help="exit 0 when the claim is UNVERIFIED (default: non-zero)")
    args = p.parse_args(argv)
    console = make_console()
    try:
        report = claim.run(profile="thorough" if args.thorough else "quick", seed=args.seed)
    except Exception as exc:  # noqa: BLE001 - recorded as ERROR
        report = error_report(claim, exc, args.seed)
    t = Table(title=f"{claim.id} — {claim.title}")
    for col in ("seed", "sizes", "status", report.metric, "tol"):
        t.add_column(col)
    for inst in report.instances:
        sizes = ", ".join(f"{k}={v}" for k, v in inst.sizes.items())
        t.add_row(str(inst.seed), sizes, inst.status, _fmt(inst.value), _fmt(inst.tol))
    console.print(t)
    for c in report.conditions:
        console.print(f"condition {c.name}: {c.holds} ({c.value}) {c.detail}")
    for ev in report.evidence:
        console.print(f"evidence {ev.group}: {ev.counted} {ev.kind} / {ev.required} required "
                      f"({ev.runs} runs){'' if ev.met else ' -- NOT MET'}")
    console.print(fallback_line(report), markup=False)
    for note in report.notes:
        console.print(note, markup=False)
    console.print(summary_table([report]))
    report.write_json(args.json)
    console.print(f"report written to {args.json}")
    return exit_code([report], strict=not args.allow_unverified)
