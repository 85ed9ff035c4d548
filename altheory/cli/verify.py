r"""``altheory verify``: run the claim checks of docs/claims.md and report them (the main job).

One line per claim as it finishes (measured worst value against its tolerance), a summary table,
the summary JSON (``--json``, ``-`` for standard output) and one report per claim beside it.
Strict by default: an asserted claim with no verified instance (``UNVERIFIED``) makes the exit
status 1, as a failed one does; ``--allow-unverified`` lets it pass.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from altheory.cli._common import EXIT_STATUSES, UsageError, add_quiet, claim_list, nonneg_int

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "verify", help="run the claim checks of docs/claims.md (the main job)",
        description="Run the claim checks of docs/claims.md (C1-C9) and report them: one line per "
                    "claim, a summary table, a summary JSON and one JSON report per claim.",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)
    p.add_argument("--thorough", action="store_true",
                   help="thorough profile: more and larger instances (minutes, not seconds)")
    p.add_argument("--claims", type=claim_list, default=None, metavar="IDS",
                   help="comma-separated claim ids, e.g. C1,C4 (default: every registered claim)")
    p.add_argument("--seed", type=nonneg_int, default=0,
                   help="base seed >= 0; instance j of a claim uses seed + j (default: %(default)s)")
    p.add_argument("--json", default="results/verify.json", metavar="PATH",
                   help="summary JSON; '-' writes it to standard output (and the table to standard "
                        "error) (default: %(default)s)")
    p.add_argument("--reports-dir", default=None, metavar="DIR",
                   help="per-claim reports <DIR>/<claim>.json (default: <json folder>/claims; none "
                        "with --json - unless given)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="exit 0 even when an asserted claim had no verified instance")
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # the old opt-in; now the default
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the claims on a Dask cluster, one claim per task: tcp://host:8786, "
                        "'local' or 'local:N' (needs the dask extra)")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    add_quiet(p)
    p.set_defaults(run=run)
    return p


def _console(stderr: bool):
    from rich.console import Console

    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)


def _list_claims(claims: dict) -> int:
    """``--list``: one line per registered claim (id, asserted or reported, title)."""
    console = _console(stderr=False)
    for cid, c in claims.items():
        console.print(f"{cid:<4} {'asserted' if c.asserted else 'reported':<9} {c.title}")
    return 0


def _claim_ids(args: argparse.Namespace, claims: dict) -> list[str]:
    """The claims to run: ``--claims`` (each registered, none repeated) or every one."""
    ids = list(claims) if args.claims is None else args.claims
    unknown = [c for c in ids if c not in claims]
    if unknown:
        raise UsageError(f"--claims: unknown claim {unknown[0]!r}; registered claims are "
                         f"{list(claims)} (`altheory verify --list`).")
    if len(set(ids)) != len(ids):
        raise UsageError(f"--claims: a claim is repeated in {','.join(ids)}; give each once.")
    return ids


def _cluster_client(scheduler: str | None):
    """The Dask client context of ``--scheduler`` (not yet entered), or None without one."""
    if scheduler is None:
        return None
    from altheory.experiments.cluster import dask_client, parse_scheduler, require_dask

    try:
        parse_scheduler(scheduler)
        require_dask()
    except (ValueError, ImportError) as exc:
        raise UsageError(f"--scheduler: {exc}") from None
    return dask_client(scheduler)


def _outputs(args: argparse.Namespace) -> tuple[bool, Path | None, Path | None]:
    """``(to_stdout, summary path, reports folder)``, checked writable before any work."""
    from altheory.cli._common import output_dir as check_output_dir
    from altheory.cli._common import output_file as check_output_path

    to_stdout = args.json == "-"
    if not args.json:
        raise UsageError("--json is empty; expected a file path, or '-' for standard output.")
    out = None if to_stdout else check_output_path(args.json)
    reports_dir = (Path(args.reports_dir) if args.reports_dir else
                   (None if to_stdout else out.parent / "claims"))
    if reports_dir is not None:
        check_output_dir(reports_dir)
    return to_stdout, out, reports_dir


def _saver(reports_dir: Path | None):
    """``save(report)``: the claim's report to ``<reports_dir>/<claim>.json`` (nothing without
    a folder)."""
    import json

    from altheory.claims import _json_default
    from altheory.io import write_text_atomic

    def save(report):
        if reports_dir is not None:
            write_text_atomic(reports_dir / f"{report.claim}.json",
                              json.dumps(report.to_dict(), indent=2, default=_json_default))

    return save


def _progress(err, show: bool):
    """The transient progress display on standard error (disabled when not shown)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn)

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err, disable=not show,
                    transient=True, redirect_stdout=sys.stdout.isatty(), redirect_stderr=False)


def _run_here(ids, claims, profile, seed, progress, total, lines, save) -> list:
    """The claims one after the other in this process, each line printed as it finishes."""
    from altheory.claims.report import run_claims

    reports = []
    for cid in ids:
        # its own line, with its own elapsed time: a thorough claim runs for minutes
        task = progress.add_task(f"  {cid} {claims[cid].title} ({profile})", total=None)
        report = run_claims([cid], profile=profile, seed=seed, console=lines)[0]
        progress.remove_task(task)
        save(report)
        reports.append(report)
        progress.advance(total)
    return reports


def _run_on_cluster(client_cm, ids, claims, profile, seed, progress, total, lines, save) -> list:
    """The claims on the Dask cluster, one claim per task, each line printed as it finishes."""
    from altheory.experiments.cluster import run_claims_on_cluster

    tasks = {cid: progress.add_task(f"  {cid} {claims[cid].title} ({profile}, on the cluster)",
                                    total=None) for cid in ids}

    def done(report, text):
        lines.print(text, end="", markup=False, highlight=False)
        save(report)
        progress.remove_task(tasks[report.claim])
        progress.advance(total)

    with client_cm as client:
        return run_claims_on_cluster(client, ids, profile=profile, seed=seed, on_done=done)


def _write_summary(reports: list, table_console, lines, to_stdout: bool, out: Path | None,
                   reports_dir: Path | None) -> None:
    """The summary table, then the summary JSON (to standard output or ``out``)."""
    import json

    from altheory.claims import _json_default
    from altheory.claims.report import summary_table
    from altheory.io import write_text_atomic

    table_console.print(summary_table(reports))
    text = json.dumps({r.claim: r.to_dict() for r in reports}, indent=2, default=_json_default)
    if to_stdout:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        write_text_atomic(out, text)
        where = f" and {reports_dir}/<claim>.json" if reports_dir is not None else ""
        lines.print(f"reports: {out}{where}")


def run(args: argparse.Namespace) -> int:
    import contextlib

    from rich.console import Console

    from altheory.claims import registry
    from altheory.experiments.store import folder_lock

    claims = registry()
    if args.strict and args.allow_unverified:
        raise UsageError("--strict and --allow-unverified contradict each other; strict is the "
                         "default, give only --allow-unverified to let unverified claims pass.")
    if args.list:
        return _list_claims(claims)
    ids = _claim_ids(args, claims)
    profile = "thorough" if args.thorough else "quick"
    client_cm = _cluster_client(args.scheduler)
    to_stdout, out, reports_dir = _outputs(args)
    table_console = _console(stderr=to_stdout)
    lines = table_console if not args.quiet else Console(quiet=True)
    err = Console(stderr=True)
    show = not (args.quiet or args.no_progress) and err.is_terminal
    save = _saver(reports_dir)
    progress = _progress(err, show)
    with contextlib.ExitStack() as stack:
        # a second verify writing the same JSON or reports folder is refused, not interleaved
        if out is not None:
            stack.enter_context(folder_lock(out.parent, name=f".{out.name}.lock",
                                            what=f"the summary {out.name}"))
        if reports_dir is not None:
            stack.enter_context(folder_lock(reports_dir, what="the claim reports"))
        stack.enter_context(progress)
        total = progress.add_task(f"verify ({profile})", total=len(ids))
        if client_cm is None:
            reports = _run_here(ids, claims, profile, args.seed, progress, total, lines, save)
        else:
            reports = _run_on_cluster(client_cm, ids, claims, profile, args.seed, progress, total,
                                      lines, save)

    from altheory.claims.report import exit_code

    _write_summary(reports, table_console, lines, to_stdout, out, reports_dir)
    return exit_code(reports, strict=not args.allow_unverified)
