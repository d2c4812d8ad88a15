"""Whole files or none: a write that fails leaves the old file and no stray part behind."""

import hashlib
import os

import pytest

from fer_edge.core.atomic import sha256_of, write_atomically


def test_a_file_is_replaced_whole_with_its_mode_and_known_by_its_sha256(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")
    data = os.urandom(3 << 20)   # over the 1 MiB read block
    write_atomically(str(path), data, mode=0o600)
    assert path.read_bytes() == data and (path.stat().st_mode & 0o777) == 0o600
    assert sha256_of(str(path)) == hashlib.sha256(data).hexdigest()
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_a_write_that_fails_leaves_the_old_file_and_no_part(full_tmpfs):
    disk, fill = full_tmpfs
    path = disk / "detector.tflite"
    path.write_bytes(b"the old detector")
    fill()
    with pytest.raises(OSError):
        write_atomically(str(path), os.urandom(4 << 20))
    assert path.read_bytes() == b"the old detector"
    assert sorted(p.name for p in disk.iterdir() if p.name != "filler") == ["detector.tflite"]


def test_a_path_in_a_missing_folder_is_refused_without_a_trace(tmp_path):
    with pytest.raises(OSError):
        write_atomically(str(tmp_path / "no" / "such" / "file"), b"x")
    assert os.listdir(tmp_path) == []


def test_a_durable_write_replaces_the_file_whole_and_leaves_no_part(tmp_path):
    path = tmp_path / "active.json"
    path.write_bytes(b"old pointer")
    write_atomically(str(path), b'{"new": 1}', mode=0o600, durable=True)
    assert path.read_bytes() == b'{"new": 1}' and (path.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["active.json"]


def test_a_durable_write_that_fails_leaves_the_old_file_and_no_part(full_tmpfs):
    disk, fill = full_tmpfs
    path = disk / "model.tflite"
    path.write_bytes(b"the old model")
    fill()
    with pytest.raises(OSError):
        write_atomically(str(path), os.urandom(4 << 20), durable=True)
    assert path.read_bytes() == b"the old model"
    assert sorted(p.name for p in disk.iterdir() if p.name != "filler") == ["model.tflite"]
