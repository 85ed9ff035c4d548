r"""``altheory certify``: certificates of a trained network, by :mod:`altheory.train.certify`.

Every argument is passed on to ``altheory.train.certify.main(argv)`` (``altheory certify --help``
shows its options). Where that module is not part of the installed version, the command says
so and exits with status 2; it never pretends to certify.
"""

from __future__ import annotations

import argparse

from altheory.cli._common import EXIT_STATUSES, UsageError

__all__ = ["add_parser", "run", "MODULE"]

MODULE = "altheory.train.certify"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "certify", help="certify a trained network (altheory.train.certify)", add_help=False,
        description=f"Certificates of a trained network; options are those of {MODULE}.",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)
    p.set_defaults(run=run)
    return p


def available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(MODULE) is not None
    except ModuleNotFoundError:
        return False


def run(args: argparse.Namespace) -> int:
    if not available():
        raise UsageError(f"not available in this version: {MODULE} is missing (the trainer's "
                         "certificate module has not landed); update altheory, or use "
                         "`altheory train --exact-head` for the head gap.")
    import importlib

    module = importlib.import_module(MODULE)
    main = getattr(module, "main", None)
    if main is None:
        raise UsageError(f"not available in this version: {MODULE} has no main(argv).")
    try:
        argv = ["--quiet" if a == "-q" else a for a in args.extra]
        return int(main(argv) or 0)
    except SystemExit as exc:  # a delegate's own argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
