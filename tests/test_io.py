"""altheory.io: output paths are checked before any work and written atomically.

Each test here kills a mutant of proofs_checks/mutants.py (kind ``tests``): a check that cannot
fail is a defect.
"""

from __future__ import annotations

import os
import socket

import pytest

from altheory.io import OutputPathError, check_output_dir, check_output_path, write_text_atomic


def test_check_output_path_refuses_non_regular_targets(tmp_path):
    """A folder, a FIFO and a socket at the target are refused (never replaced), with their kind."""
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputPathError, match="not a regular file .a directory."):
        check_output_path(tmp_path / "d")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputPathError, match="not a regular file .a FIFO."):
        check_output_path(tmp_path / "fifo")
    with pytest.raises(OutputPathError, match="a FIFO"):
        write_text_atomic(tmp_path / "fifo", "x")
    assert (tmp_path / "fifo").exists() and not (tmp_path / "fifo").is_file()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s"))
        with pytest.raises(OutputPathError, match="a socket"):
            check_output_path(tmp_path / "s")
    finally:
        sock.close()
    assert check_output_path(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    assert (tmp_path / "new").is_dir()


def test_a_file_in_the_parent_path_is_an_output_path_error(tmp_path):
    """A regular file where a folder of the path should be: OutputPathError (expected, got, fix),
    not a raw NotADirectoryError."""
    (tmp_path / "f").write_text("")
    for target in (tmp_path / "f" / "r.json", tmp_path / "f" / "sub" / "r.json"):
        with pytest.raises(OutputPathError) as ei:
            check_output_path(target)
        msg = str(ei.value)
        assert f"expected {tmp_path / 'f'} to be a folder; got a regular file" in msg
        assert "Give a path whose parent folders are folders" in msg
    with pytest.raises(OutputPathError, match="got a regular file"):
        check_output_dir(tmp_path / "f" / "sub")
    with pytest.raises(OutputPathError, match="got a regular file"):
        write_text_atomic(tmp_path / "f" / "r.json", "{}")


def test_atomic_write_replaces_and_removes_its_temp_file_on_error(tmp_path, monkeypatch):
    """The target is replaced whole; when the replace fails, the old content stays and no
    temporary file is left behind."""
    target = tmp_path / "r.json"
    write_text_atomic(target, "old")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["r.json"], "the temporary file was left behind"
