r"""What every subcommand shares: exit statuses, argument types that refuse bad values at parse
time, the ``-q/--quiet`` option and the usage error raised after parsing."""

from __future__ import annotations

import argparse
import math

__all__ = ["EXIT_STATUSES", "UsageError", "add_quiet", "positive_int", "nonneg_int", "nonneg_float",
           "n_jobs", "claim_list", "hidden_alias"]

EXIT_STATUSES = """exit status:
  0  success (verify: every asserted claim passed)
  1  verify: a claim failed or raised, or an asserted claim had no verified instance (see
     --allow-unverified); sweep: an instance failed or raised; figures: a figure could not be
     made; certify: the head was not certified optimal
  2  usage error: a bad option or value, a missing or unreadable input, an output that cannot be
     written, a folder another run is writing; refused before any work, one line on stderr
  130 interrupted (Ctrl-C); train: 143 stopped by SIGTERM (checkpoint written)"""


class UsageError(Exception):
    """A bad value found after parsing (before any work): one line on stderr, exit status 2."""


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the summary and errors (no progress, no per-item lines)")


def _int(s: str, what: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}; got {s!r}") from None


def positive_int(s: str) -> int:
    v = _int(s, "an integer >= 1")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {v}")
    return v


def nonneg_int(s: str) -> int:
    v = _int(s, "an integer >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {v}")
    return v


def nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0; got {s!r}")
    return v


def n_jobs(s: str) -> int:
    v = _int(s, "a number of workers (an integer >= 1, or -1 for all cores)")
    if v == 0 or v < -1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, or -1 for all cores; got {v}")
    return v


def claim_list(s: str) -> list[str]:
    """``"C1,c4"`` -> ``["C1", "C4"]`` (checked against the registry later); empty is refused."""
    ids = [c.strip().upper() for c in s.split(",")]
    if not any(ids):
        raise argparse.ArgumentTypeError("empty claim list; expected ids like C1,C4 (see "
                                         "`altheory verify --list`), or leave --claims out for all")
    if "" in ids:
        raise argparse.ArgumentTypeError(f"an empty entry in {s!r}; expected ids like C1,C4")
    return ids


def hidden_alias(p: argparse.ArgumentParser, old: str, dest: str, **kw) -> None:
    """Accept an old spelling (``--n_jobs``) without showing it in ``--help``."""
    p.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw)


def output_file(path, *, create_parent: bool = True):
    """:func:`altheory.io.check_output_path`, with an OS error (a parent that is a file) turned
    into a one-line usage error."""
    from altheory.io import check_output_path

    try:
        return check_output_path(path, create_parent=create_parent)
    except (NotADirectoryError, PermissionError) as exc:
        raise UsageError(f"output path {path} cannot be written ({exc.strerror}: {exc.filename}); "
                         "give a path inside a writable folder.") from None


def output_dir(path, *, create: bool = True):
    """:func:`altheory.io.check_output_dir`, with OS errors turned into a usage error."""
    from altheory.io import check_output_dir

    try:
        return check_output_dir(path, create=create)
    except (NotADirectoryError, PermissionError, FileExistsError) as exc:
        raise UsageError(f"output folder {path} cannot be created ({exc.strerror}: {exc.filename}); "
                         "give a folder path inside a writable folder.") from None


def require(modules: tuple[str, ...], extra: str, what: str) -> None:
    """UsageError naming the extra to install when one of ``modules`` is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{what} needs {', '.join(missing)}, which is not installed; "
                         f"pip install 'altheory[{extra}]'.")
