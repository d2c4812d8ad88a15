"""Shared fixtures: real data from ../shared/data (fail under CI when missing, else skip)."""

import csv
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FER_EDGE_DATA", ROOT.parent / "shared" / "data"))
FER_CSV = DATA / "fer2013" / "fer2013.csv.gz"
FERPLUS_CSV = DATA / "fer2013" / "fer2013new.csv"
PHOTOS = DATA / "photos"
WILD = DATA / "wild" / "wild.tar.gz"
PORTRAITS = DATA / "portraits" / "portraits-dev.tar.gz"


def need(path):
    """The path, or a failure under CI / a skip elsewhere when the shared data is missing."""
    if not Path(path).exists():
        message = f"shared test data missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return Path(path)


@pytest.fixture(scope="session")
def fer_csv():
    return need(FER_CSV)


@pytest.fixture(scope="session")
def ferplus_csv():
    return need(FERPLUS_CSV)


@pytest.fixture(scope="session")
def photos():
    return need(PHOTOS)


@pytest.fixture(scope="session")
def wild():
    return need(WILD)


@pytest.fixture(scope="session")
def portraits():
    return need(PORTRAITS)


@pytest.fixture(scope="session")
def public_test(fer_csv):
    from fer_edge.model.datasets import read_fer2013
    return read_fer2013(str(fer_csv), usage="PublicTest")


SMALL_QUOTA = {"Training": 600, "PublicTest": 300, "PrivateTest": 300}


def _small_rows(fer_csv):
    """Data-row indices of the first 600 Training, 300 PublicTest and 300 PrivateTest rows."""
    quota, chosen = dict(SMALL_QUOTA), []
    with gzip.open(fer_csv, "rt", newline="") as src:
        reader = csv.reader(src)
        next(reader)
        for index, row in enumerate(reader):
            if quota.get(row[2], 0) > 0:
                quota[row[2]] -= 1
                chosen.append(index)
            if not any(quota.values()):
                break
    return chosen


def _write_rows(source, path, rows):
    """Copy the header and the data rows at `rows` of a CSV (plain or .gz) to `path` (same kind)."""
    opener = gzip.open if str(source).endswith(".gz") else open
    wanted = set(rows)
    with opener(source, "rt", newline="") as src, opener(path, "wt", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for index, row in enumerate(reader):
            if index in wanted:
                writer.writerow(row)
            if index >= rows[-1]:
                break


@pytest.fixture(scope="session")
def small_rows(fer_csv):
    return _small_rows(fer_csv)


@pytest.fixture(scope="session")
def small_csv(fer_csv, small_rows, tmp_path_factory):
    """A real FER2013 subset (first 600 Training, 300 PublicTest, 300 PrivateTest rows) as .csv.gz."""
    path = tmp_path_factory.mktemp("data") / "fer_small.csv.gz"
    _write_rows(fer_csv, path, small_rows)
    return path


def run_cli(*args, timeout=600, env_path=None, extra_env=None, **kwargs):
    """Run one of the installed console scripts; returns the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **(extra_env or {}))
    if env_path is not None:
        env["PATH"] = env_path
    return subprocess.run([str(Path(sys.executable).parent / args[0]), *map(str, args[1:])],
                          capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


@pytest.fixture(scope="session")
def small_ferplus(ferplus_csv, small_rows, tmp_path_factory):
    """The real FER+ votes of exactly small_csv's rows, aligned with it row by row."""
    path = tmp_path_factory.mktemp("data") / "ferplus_small.csv"
    _write_rows(ferplus_csv, path, small_rows)
    return path


@pytest.fixture(scope="session")
def tiny_run(small_csv, tmp_path_factory):
    """A real (tiny) training run: 1 epoch on 600 real FER2013 rows; returns the run folder."""
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("run") / "tiny"
    result = run_cli("fer-train", "fit", "--data", small_csv, "--epochs", "1", "--batch-size", "64", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_run, small_csv):
    """The tiny run converted to int8 (with float32 beside it) by fer-convert."""
    output = tiny_run / "tiny-int8.tflite"
    result = run_cli("fer-convert", tiny_run / "best.keras", "--data", small_csv, "--int8", "--float32",
                     "--calib", "200", "--allow-loss", "-o", output)
    assert result.returncode == 0, result.stderr[-2000:]
    return output


@pytest.fixture(scope="session")
def model_path(request):
    """The shipped int8 model (the real thing the device runs); a tiny trained one if not shipped yet."""
    from fer_edge.model.classify import default_model_path
    shipped = default_model_path()
    if os.path.exists(shipped):
        return Path(shipped)
    return request.getfixturevalue("tiny_model")


def read_frames(path):
    """Every frame of a real video file, decoded."""
    import cv2
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def jpeg_frames(photos):
    import cv2
    return [cv2.imencode(".jpg", frame)[1].tobytes() for frame in read_frames(photos / "single_face.mp4")]


@pytest.fixture()
def full_tmpfs(tmp_path):
    """A real 3 MB tmpfs, filled to the last byte after `fill()` (needs root to mount)."""
    if os.geteuid() != 0:
        message = "mounting a tmpfs needs root"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)

    def fill():
        fd = os.open(mount / "filler", os.O_CREAT | os.O_WRONLY)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)

    try:
        yield mount, fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


SIX = ("angry", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture(scope="session")
def six_class_model(fer_csv, tmp_path_factory):
    """FER2013 without disgust in Kaggle's folder layout (train/, test/; angry and happy under
    the names other sets use), the shipped model fine-tuned on it with a new head, converted."""
    from folder_helpers import KAGGLE, write_fer2013_folders

    folder = tmp_path_factory.mktemp("kaggle-six")
    write_fer2013_folders(fer_csv, folder, KAGGLE, classes=SIX, names={"angry": "anger", "happy": "happiness"})
    run = folder.parent / "six-run"
    result = run_cli("fer-train", "fit", "--data", folder, "--limit", "3000", "--epochs", "1",
                     "--init-from", ROOT / "models" / "fer-cnn-int8-float32.tflite", "--new-head",
                     "--fer2013", fer_csv, "--out", run, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no label new, the others from fer-cnn-int8-float32.tflite" in result.stdout
    assert re.search(r"FER2013 PrivateTest: accuracy [\d.]+%.*before fine-tuning [\d.]+%", result.stdout), result.stdout
    model = folder.parent / "six" / "six.tflite"
    result = run_cli("fer-convert", run / "best.keras", "--data", folder, "--int8", "--limit", "500", "-o", model)
    assert result.returncode == 0, result.stderr[-3000:]
    return model
