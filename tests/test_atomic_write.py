"""pycmlt.atomic_write, the one helper behind every file pycmlt writes: complete files only, the old
file kept on failure, no temporary file left behind, fsync of the data and the folder when durable,
and the permissions any other new file of the process would get."""
import json
import os
import stat

import pytest

from pycmlt.atomic_write import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2]} and target.read_text().endswith("\n")
    atomic_write_text(target, "ünïcode")
    assert target.read_text(encoding="utf-8") == "ünïcode"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(target.parent) == ["out.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.pt"]


def test_durable_writes_fsync_the_data_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert synced == [False, True]  # the file before the rename, the folder after it
    synced.clear()
    atomic_write_text(tmp_path / "b.txt", "x", durable=False)
    assert synced == []


def test_new_files_get_the_usual_permissions(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
