r"""``altheory sweep``: a resumable sweep of a claim measurement over a grid, appended to a CSV.

``altheory sweep c4 n=20,40 d=2 p=8 lam=0,0.01 seed=0:10 --n-jobs 2`` runs
:data:`altheory.experiments.sweeps.SWEEPS` ``["c4"]`` on every grid point not yet in the table
and appends one row per instance. The grid is checked before anything runs (names, types,
domains, ranges, repeated names); rerunning the same command resumes. ``--scheduler`` runs the
instances on a Dask cluster (:mod:`altheory.experiments.cluster`).
"""

from __future__ import annotations

import argparse

from altheory.cli._common import EXIT_STATUSES, UsageError, add_quiet, hidden_alias, n_jobs, require

__all__ = ["add_parser", "run", "NAMES"]

NAMES = ("c3", "c4", "c5", "c6", "c7")  # altheory.experiments.sweeps.SWEEPS (checked in a test)
BACKENDS = ("loky", "threading", "sequential", "multiprocessing", "dask")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="resumable parameter sweeps of claim measurements (CSV)",
        description="Run a resumable sweep of a claim measurement over a grid; one CSV row per "
                    "instance, appended as it finishes. Rerun the same command to resume.",
        epilog="grid: name=v1,v2 or name=a:b (the integers a..b-1), one entry per name; e.g.\n"
               "  altheory sweep c7 n=30 d=2 h1=4 h2=3 replicate=true seed=0:4\n\n" + EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("name", choices=NAMES, help="which sweep function")
    p.add_argument("grid", nargs="+", help="name=v1,v2 or name=a:b (integer range a..b-1)")
    p.add_argument("--out", default=None, metavar="CSV", help="CSV table (default results/sweeps/<name>.csv)")
    p.add_argument("--n-jobs", type=n_jobs, default=1, help="joblib workers (-1: all cores; default 1)")
    hidden_alias(p, "--n_jobs", "n_jobs", type=n_jobs)
    p.add_argument("--backend", default=None, choices=BACKENDS, help="joblib backend (default loky)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster: tcp://host:8786, 'local' or 'local:N' (implies "
                        "--backend dask; needs the dask extra)")
    p.add_argument("--retry-errors", action="store_true", help="rerun instances recorded as errors")
    hidden_alias(p, "--retry_errors", "retry_errors", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    hidden_alias(p, "--no_progress", "no_progress", action="store_true")
    add_quiet(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from altheory.experiments.sweeps import SWEEPS, parse_grid, run_sweep
    from altheory.cli._common import output_file as check_output_path

    require(("pandas", "joblib"), "sweep", "altheory sweep")
    fn = SWEEPS[args.name]
    try:
        grid = parse_grid(args.grid, fn)
    except ValueError as exc:
        raise UsageError(f"grid: {exc}") from None
    backend = args.backend
    if args.scheduler is not None:
        if backend not in (None, "dask"):
            raise UsageError(f"--scheduler runs on Dask; it cannot be combined with --backend {backend}.")
        from altheory.experiments.cluster import parse_scheduler, require_dask

        try:
            parse_scheduler(args.scheduler)
            require_dask()
        except (ValueError, ImportError) as exc:
            raise UsageError(f"--scheduler: {exc}") from None
        backend = "dask"
    elif backend == "dask":
        raise UsageError("--backend dask needs a cluster: give --scheduler tcp://host:8786 "
                         "(or --scheduler local:N).")
    out = Path(args.out or f"results/sweeps/{args.name}.csv")
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out {out}: expected a .csv file path.")
    check_output_path(out)
    progress = not (args.quiet or args.no_progress)
    if args.scheduler is not None:
        from altheory.experiments.cluster import dask_client

        with dask_client(args.scheduler):
            df = run_sweep(fn, grid, out, n_jobs=args.n_jobs, backend="dask", progress=progress,
                           retry_errors=args.retry_errors)
    else:
        df = run_sweep(fn, grid, out, n_jobs=args.n_jobs, backend=backend, progress=progress,
                       retry_errors=args.retry_errors)
    counts = df["status"].value_counts().to_dict() if "status" in df else {}
    print(f"{len(df)} rows in {out}; statuses {counts}")
    if counts.get("error", 0):
        print(f"altheory sweep: {counts['error']} instance(s) raised; their messages are in the "
              "'error' column (rerun with --retry-errors)", flush=True)
    return 1 if counts.get("fail", 0) or counts.get("error", 0) else 0
