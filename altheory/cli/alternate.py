r"""``altheory alternate``: alternation (C9) against SGD / momentum / Adam on real data.

The experiment lives in :mod:`altheory.experiments.comparison` (configuration, runs, summary,
figure export); this module is its command line. Every finished run is appended to
``<out>/runs.csv`` as it finishes; ``--resume`` continues a killed run from there (same options
required), with the same results as an uninterrupted run.

Example (the default comparison; the committed figure data also extends two baseline sweeps,
see ``figures/README.md``; about 25 min on a loaded 2-core machine)::

    altheory alternate --data fashion-mnist --export
    altheory alternate --data fashion-mnist --export --resume     # after an interruption
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from altheory.cli._common import EXIT_STATUSES, UsageError, add_quiet, hidden_alias

__all__ = ["add_parser", "run"]


def _typed(kind: type, name: str):
    def conv(s: str):
        try:
            return kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}; "
                                             f"got {s!r}") from None
    conv.__name__ = kind.__name__
    return conv


def add_parser(subparsers) -> argparse.ArgumentParser:
    from altheory.experiments.comparison import DATASETS, Config, config_help

    p = subparsers.add_parser(
        "alternate", help="alternation vs SGD/momentum/Adam baselines (resumable)",
        description="Alternation (C9) vs SGD/momentum/Adam on real data; C8 gaps at the end. "
                    "Writes <out>/config.json, runs.csv (as it goes), runs.json, summary.json.",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)
    helps = config_help()
    for f in fields(Config):
        kind = type(f.default)
        flag = f"--{f.name.replace('_', '-')}"
        if kind is bool:
            p.add_argument(flag, dest=f.name, default=f.default, action=argparse.BooleanOptionalAction,
                           help=helps.get(f.name))
        elif f.name == "data":
            p.add_argument(flag, dest=f.name, default=f.default, choices=DATASETS,
                           help=f"{helps.get(f.name, '')} (default: %(default)s)")
        else:
            p.add_argument(flag, dest=f.name, type=_typed(kind, f.name) if kind in (int, float) else kind,
                           default=f.default, help=f"{helps.get(f.name, '')} (default: %(default)s)")
        if "_" in f.name and kind is not bool:  # the underscore spelling, hidden
            hidden_alias(p, f"--{f.name}", f.name, type=_typed(kind, f.name) if kind in (int, float) else kind)
    p.add_argument("--out", default=None, help="output folder (default results/alternation/<data>)")
    p.add_argument("--export", nargs="?", const="auto", default=None, metavar="PATH",
                   help="also write the figures' data (default figures/data/alternation_<data>.json)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (same options): finished runs are reused")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in an --out folder that holds a previous run's results")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 300 samples, 2 seeds, 3 rounds, few epochs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    hidden_alias(p, "--no_progress", "no_progress", action="store_true")
    p.add_argument("--from-runs", default=None, metavar="RUNS_JSON[,RUNS_JSON...]",
                   help="summarise (and --export) saved runs.json files (merged) instead of running")
    hidden_alias(p, "--from_runs", "from_runs")
    add_quiet(p)
    p.set_defaults(run=run)
    return p


def _export_path(args, data: str):
    from pathlib import Path

    return Path(f"figures/data/alternation_{data}.json" if args.export == "auto" else args.export)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from altheory.experiments import comparison as C
    from altheory.cli._common import output_dir as check_output_dir
    from altheory.cli._common import output_file as check_output_path

    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; give one.")
    if args.from_runs is not None:
        if args.resume or args.overwrite:
            raise UsageError("--from-runs re-summarises saved runs; --resume/--overwrite do not apply.")
        paths = [f for f in args.from_runs.split(",") if f.strip()]
        if not paths:
            raise UsageError("--from-runs is empty; expected RUNS_JSON[,RUNS_JSON...].")
        try:
            runs = C.load_runs(paths)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"--from-runs: {exc}") from None
        export = _export_path(args, runs["config"]["data"]) if args.export else None
        if export is not None:
            check_output_path(export)
        summary = C.summarise(runs)
        C.print_summary(summary)
        if export is not None:
            C.export(runs, summary, export)
            print(f"figure data: {export}")
        return 0
    cfg = C.Config(**{f.name: getattr(args, f.name) for f in fields(C.Config)})
    if args.quick:
        cfg.n_train, cfg.n_test, cfg.seeds, cfg.rounds = 300, 100, 2, 3
        cfg.epochs_mini, cfg.epochs_full, cfg.lr_points = 3, 20, 2
    try:
        cfg.validate()
    except ValueError as exc:  # names the field: --n-train is the option of n_train
        raise UsageError(str(exc)) from None
    out = check_output_dir(Path(args.out or f"results/alternation/{cfg.data}"), create=False)
    export = _export_path(args, cfg.data) if args.export else None
    if export is not None:
        check_output_path(export, create_parent=False)
    C.check_resume(out, cfg, resume=args.resume, overwrite=args.overwrite)
    try:
        data = C.prepare_data(cfg)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise UsageError(f"--data {cfg.data}: {exc}") from None
    n = int(data["Xtr"].shape[0])
    if "mini" in C.Config._list(cfg.batches) and C.Config._list(cfg.methods) and cfg.batch_size > n:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the training data ({n} "
                         f"samples of {cfg.data}); use --batch-size <= {n} or --batches full.")
    if not args.quiet:
        print("config: " + json.dumps(asdict(cfg)))
    runs = C.run_comparison(cfg, data, progress=not (args.quiet or args.no_progress), out=out,
                            resume=args.resume, overwrite=args.overwrite)
    summary = C.summarise(runs)
    C.print_summary(summary)
    if not args.quiet:
        print(f"results: {out}/runs.csv, {out}/runs.json, {out}/summary.json")
    if export is not None:
        C.export(runs, summary, export)
        print(f"figure data: {export}")
    return 0
