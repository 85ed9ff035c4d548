r"""The ``altheory`` command line: one argparse parser, one module per subcommand.

``altheory verify``      run the claim checks (docs/claims.md C1–C9) and print the summary table.
``altheory sweep``       resumable parameter sweeps of the claim measurements (C3–C7), to CSV.
``altheory alternate``   weight/support alternation against SGD/Adam baselines on real data.
``altheory figures``     regenerate the figures from cached results.
``altheory train``       the torch trainer (PHT ResNets, CIFAR/ImageNet, methods sgd/alt/alt-inner).
``altheory certify``     certificates of a trained network (:mod:`altheory.train.certify`).

Each subcommand module in this package has ``add_parser(subparsers)`` and ``run(args) -> int``
and imports torch, cvxpy and the rest inside ``run``, so ``altheory --help`` starts fast.
``python -m altheory`` and ``python -m altheory.cli`` are the same command.

Every bad value is refused before any work with one line on stderr and exit status 2 (argparse's
style); :data:`altheory.cli._common.EXIT_STATUSES` lists the statuses.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import sys

from altheory.cli import alternate, certify, figures, sweep, train, verify
from altheory.cli._common import EXIT_STATUSES, UsageError

__all__ = ["main", "build_parser", "COMMANDS"]

# order of `altheory --help`; `train` and `certify` pass unknown --key value options on
COMMANDS = {"verify": verify, "sweep": sweep, "alternate": alternate, "figures": figures,
            "train": train, "certify": certify}
PASS_THROUGH = ("train", "certify")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("altheory")
    except PackageNotFoundError:  # a source checkout that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="altheory", allow_abbrev=False,
        description="Numerical checks of training neural networks through their support "
                    "(docs/claims.md C1-C9). `altheory <command> --help` for a command's options.",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(subparsers)
    return parser


def _configure_threads() -> None:
    """The package's thread policy (``altheory.threads``, when that module exists)."""
    if importlib.util.find_spec("altheory.threads") is not None:
        from altheory.threads import configure_threads

        configure_threads()


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean a bad input, found before any work: one line and exit status 2."""
    from altheory.experiments.comparison import ResumeError
    from altheory.experiments.store import StoreBusyError
    from altheory.io import OutputPathError

    return (UsageError, OutputPathError, StoreBusyError, ResumeError)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``altheory``; returns the exit status (see ``altheory --help``)."""
    _configure_threads()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = next((a for a in argv if not a.startswith("-")), None)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if first is not None and first not in COMMANDS and argv[0] == first:
        close = difflib.get_close_matches(first, list(COMMANDS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        parser.print_usage(sys.stderr)
        print(f"altheory: error: unknown command {first!r}; expected one of {list(COMMANDS)}.{hint}",
              file=sys.stderr)
        return 2
    try:
        args, extra = parser.parse_known_args(argv)
        if args.command is None:
            parser.error(f"unrecognized arguments: {' '.join(extra)}" if extra else
                         f"no command given; expected one of {list(COMMANDS)}.")
        if extra and args.command not in PASS_THROUGH:
            sub = parser._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    args.extra = extra
    try:
        return int(args.run(args) or 0)
    except Exception as exc:
        if not isinstance(exc, _usage_errors()):
            raise
        print(f"altheory {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"altheory {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
