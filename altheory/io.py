r"""Safe output files: check a target before any work, then write it atomically.

Every writer of the package goes through these three functions, so that

* a target that is not a regular file (a device node, a folder, a FIFO) is refused instead of
  replaced;
* an unwritable target is refused *before* minutes of computation, not after
  (:func:`check_output_path`, called by the command line as it parses its arguments);
* a reader never sees a half-written file: the bytes go to a uniquely named temporary file in the
  target's folder (two concurrent runs never share one), are flushed and fsynced, and
  ``os.replace`` moves them onto the target; the temporary file is removed on any error.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_text_atomic(d / "a" / "r.json", "{}")
PosixPath('...r.json')
>>> (d / "a" / "r.json").read_text()
'{}'
>>> check_output_path("/dev/null")
Traceback (most recent call last):
...
altheory.io.OutputPathError: output path /dev/null exists and is not a regular file (a character device); ...
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from altheory.errors import AltheoryError

__all__ = ["OutputPathError", "check_output_path", "check_output_dir", "write_bytes_atomic",
           "write_text_atomic"]


class OutputPathError(AltheoryError, ValueError):
    """An output path that cannot be written safely (not a regular file, or not writable)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _not_a_folder(p: Path, blocker: Path) -> OutputPathError:
    """The error for an output path below something that exists and is not a folder."""
    return OutputPathError(f"output path {p} cannot be created: expected {blocker} to be a folder; "
                           f"got {_kind_of(blocker)}. Give a path whose parent folders are folders "
                           f"(or remove or rename {blocker}).")


def _kind_of(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a path that cannot be read"
    return "a regular file" if stat.S_ISREG(mode) else _kind(mode)


def check_output_dir(path: str | os.PathLike, *, create: bool = True) -> Path:
    """Check that ``path`` is (or can be created as) a writable directory; create it if asked.

    Raises
    ------
    OutputPathError
        ``path`` exists and is not a directory, a component of it is a regular file (or another
        non-folder), or it (or its nearest existing parent) is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"output folder {p} exists and is not a directory; "
                              "give a folder path (it is created if missing).")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if probe != p and not probe.is_dir():
        raise _not_a_folder(p, probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"output folder {p} is not writable (no write permission on "
                              f"{probe}); choose another folder.")
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


def check_output_path(path: str | os.PathLike, *, create_parent: bool = True) -> Path:
    """Check that ``path`` can be written as a regular file, before any work is done.

    Returns the path. Creates the parent folder when ``create_parent``.

    Raises
    ------
    OutputPathError
        ``path`` exists and is not a regular file, a component of its folder is a regular file
        (or another non-folder), or its folder is not writable.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:  # a component of the parent path is a regular file (or another non-folder)
        probe = p.parent
        while not probe.exists():  # Path.exists is False below a file; the first that exists blocks
            probe = probe.parent
        raise _not_a_folder(p, probe) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"output path {p} exists and is not a regular file "
                              f"({_kind(st.st_mode)}); give the path of a file to write.")
    if st is not None and not os.access(p, os.W_OK):
        raise OutputPathError(f"output file {p} is not writable; choose another path.")
    check_output_dir(p.parent if str(p.parent) else Path("."), create=create_parent)
    return p


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (unique temp file in the same folder, fsync,
    ``os.replace``). Refuses a target that exists and is not a regular file."""
    p = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """:func:`write_bytes_atomic` for text."""
    return write_bytes_atomic(path, text.encode(encoding))
