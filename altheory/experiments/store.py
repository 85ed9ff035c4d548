r"""The resumable result store shared by ``altheory sweep`` and ``altheory alternate``.

A store is one CSV table, one row per finished *instance*; an instance is named by its *key*, the
canonical JSON of its parameters (:func:`instance_key`). Rows are appended, flushed and fsynced
one at a time as results arrive, so a crash loses at most the instances in flight; a rerun reads
the keys already present and skips them. A row torn by a crash (no key) is dropped when the store
is reopened. Lists and dicts in a row are stored as JSON text (exact float round trip).

Two runs must not write one store at the same time: :func:`folder_lock` takes an exclusive
advisory lock (``fcntl.flock``) on a lock file in the folder (``.altheory.lock``, or
``.<table>.lock`` for one sweep table) for the duration of a run and
refuses a second run with :class:`StoreBusyError` instead of letting both append.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from altheory.errors import AltheoryError
from altheory.io import check_output_path

__all__ = ["ResultStore", "StoreBusyError", "folder_lock", "instance_key", "read_rows"]

# a row may hold whole training curves as JSON (tens of kB); the csv module's default is 128 kB
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class StoreBusyError(AltheoryError, RuntimeError):
    """Another run holds the lock of the output folder."""


def _plain(v):
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def instance_key(params: Mapping[str, Any]) -> str:
    """Canonical JSON of the parameters (sorted keys): the identity of an instance.

    Examples
    --------
    >>> instance_key({"b": 1, "a": 2.0})
    '{"a": 2.0, "b": 1}'
    """
    return json.dumps({k: _plain(v) for k, v in params.items()}, sort_keys=True)


def read_rows(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """``(header, rows)`` of a store. A last row torn by a crash is dropped: every complete row
    ends with a line break, and a row missing a column or its key is not counted."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return [], []
    with path.open(newline="") as fh:
        text = fh.read()
    if not text.endswith("\n"):  # the last write did not finish
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [r for r in reader if r.get("key") and None not in r.values() and None not in r]
    return list(reader.fieldnames or []), rows


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, name: str = ".altheory.lock", what: str = "results"
                ) -> Iterator[Path]:
    """Hold an exclusive lock ``folder/name`` (folder created if missing) for the ``with`` block.

    Raises
    ------
    StoreBusyError
        Another process holds the lock (another run is writing this folder).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before
        yield folder
        return
    fh = open(lock, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise StoreBusyError(f"{folder} is being written by another altheory run ({holder}); "
                                 f"wait for it to finish or write {what} to another folder.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield folder
    finally:
        fh.close()  # releases the lock


class ResultStore:
    """Append-only CSV of instance rows with a header that grows when new columns appear.

    ``done`` maps every key in the table to its recorded status; :meth:`rows` gives the parsed
    rows (JSON cells decoded when ``decode`` names them).
    """

    def __init__(self, path: str | Path):
        self.path = check_output_path(path)
        self.header, rows = read_rows(self.path)
        self.done = {r["key"]: r.get("status", "") for r in rows}
        if rows:  # rewrite once to drop a torn last line left by a crash
            self._rewrite(self.header, rows)

    def _rewrite(self, header: list[str], rows: list[dict]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
                w.writeheader()
                for r in rows:
                    w.writerow(r)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row (its ``key`` names the instance), flushed and fsynced."""
        row = {k: (json.dumps(_plain(v)) if isinstance(v, (list, tuple, dict)) else _plain(v))
               for k, v in row.items()}
        if "key" not in row:
            raise ValueError(f"a store row needs a 'key'; got columns {sorted(row)}.")
        new = [k for k in row if k not in self.header]
        if new or not self.path.exists():
            header = self.header + new
            _, rows = read_rows(self.path)
            self._rewrite(header, rows)
            self.header = header
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.header, extrasaction="ignore").writerow(row)
            fh.flush()
            os.fsync(fh.fileno())
        self.done[row["key"]] = row.get("status", "")

    def rows(self, decode: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """``key -> row`` (the last row of a key wins); columns in ``decode`` parsed as JSON."""
        _, rows = read_rows(self.path)
        out = {}
        for r in rows:
            for c in decode:
                if r.get(c):
                    r[c] = json.loads(r[c])
            out[r["key"]] = r
        return out
