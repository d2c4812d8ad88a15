"""Training on a GPU machine without TensorFlow: the face pack and `fer-train fit-portable`.

Here they run on the TensorFlow backend (the CPU); on a lent GPU machine the same code
runs on JAX (docs/development.md).
"""

import json

import numpy as np
import pytest

from fer_edge.model.datasets import read_fer2013
from conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.needs_tf]


def test_a_pack_holds_every_face_exactly(small_csv, tmp_path):
    from fer_train.data.pack import read_pack

    pack = tmp_path / "faces.npz"
    result = run_cli("fer-train", "pack", "--data", small_csv, "--out", pack)
    assert result.returncode == 0, result.stderr[-2000:]
    faces, packed = read_fer2013(small_csv), read_pack(str(pack))
    assert np.array_equal(packed.images, faces.images)
    assert np.array_equal(packed.labels, faces.labels) and np.array_equal(packed.rows, faces.rows)
    assert list(packed.usage) == list(faces.usage)
    assert pack.stat().st_size < 0.8 * faces.images.nbytes

    training = tmp_path / "training.npz"
    assert run_cli("fer-train", "pack", "--data", small_csv, "--usage", "Training", "--out", training).returncode == 0
    assert set(read_pack(str(training)).usage) == {"Training"}


def test_a_bad_pack_is_one_line(tmp_path):
    bad = tmp_path / "faces.npz"
    bad.write_bytes(b"not a pack")
    result = run_cli("fer-train", "fit-portable", "--data", bad, "--out", tmp_path / "run")
    assert result.returncode != 0 and "not a fer-train face pack" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def portable_teacher(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("portable") / "teacher"
    result = run_cli("fer-train", "fit-portable", "--data", small_csv, "--arch", "ferresnet", "--epochs", "1",
                     "--batch-size", "64", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_a_student_distilled_from_a_portable_teacher_converts(portable_teacher, tiny_run, small_csv, tmp_path):
    student = tmp_path / "student"
    result = run_cli("fer-train", "fit-portable", "--data", small_csv, "--arch", "fercnn", "--epochs", "2",
                     "--batch-size", "64", "--lr", "5e-4", "--init-from", tiny_run,
                     "--teacher", portable_teacher, "--teacher", portable_teacher / "best.keras", "--out", student)
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads((student / "state.json").read_text())
    assert state["epoch"] == 2 and state["config"]["arch"] == "fercnn"
    assert state["init_from"]["architecture"] == "fercnn" and state["init_from"]["command"].startswith("fer-train fit")
    teachers = state["distilled"]["teachers"]
    assert len(teachers) == 2 and all(t["architecture"] == "ferresnet" for t in teachers)
    assert all((student / "epochs" / f"epoch-00{e}.weights.h5").exists() for e in (1, 2))
    rows = (student / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and float(rows[-1].split(",")[1]) < 1e-6  # the cosine ends at zero

    converted = tmp_path / "student-int8.tflite"
    result = run_cli("fer-convert", student / "best.keras", "--data", small_csv, "--int8", "--calib", "200",
                     "--allow-loss", "-o", converted)
    assert result.returncode == 0, result.stderr[-2000:]
    assert converted.stat().st_size < 400_000


def test_portable_runs_refuse_mismatches_in_one_line(portable_teacher, small_csv, tmp_path):
    result = run_cli("fer-train", "fit-portable", "--data", small_csv, "--arch", "fercnn", "--epochs", "1",
                     "--init-from", portable_teacher, "--out", tmp_path / "a")
    assert result.returncode != 0 and "a ferresnet model, not fercnn" in result.stderr
    assert "Traceback" not in result.stderr
    not_keras = tmp_path / "teacher.tflite"
    not_keras.write_bytes(b"x")
    result = run_cli("fer-train", "fit-portable", "--data", small_csv, "--epochs", "1", "--teacher", not_keras,
                     "--out", tmp_path / "b")
    assert result.returncode != 0 and "must be a .keras file or a run folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_distillation_target_mixes_label_smoothing_and_teachers():
    import keras

    from fer_train.loops.portable import distillation_loss

    label = np.eye(7, dtype=np.float32)[[3]]
    logits = np.array([[0.5, -1.0, 0.2, 2.0, 0.0, -0.3, 1.0]], dtype=np.float32)
    teachers = np.array([[0.1, 0.0, 0.1, 0.5, 0.1, 0.1, 0.1]], dtype=np.float32)
    loss = distillation_loss(0.5, 0.1)(label, np.concatenate([logits, teachers], axis=1))
    target = 0.5 * (label * 0.9 + 0.1 / 7) + 0.5 * teachers
    log_p = logits - np.log(np.exp(logits).sum())
    assert float(keras.ops.convert_to_numpy(loss)[0]) == pytest.approx(float(-(target * log_p).sum()), rel=1e-5)
    alone = distillation_loss(0.5, 0.1)(label, logits)
    assert float(keras.ops.convert_to_numpy(alone)[0]) == pytest.approx(float(-((label * 0.9 + 0.1 / 7) * log_p).sum()), rel=1e-5)


def test_fit_portable_reads_a_folder_dataset_as_fit_does(fer_csv, small_csv, tmp_path):
    from folder_helpers import write_fer2013_folders
    from fer_train.data.folders import FolderOptions, read_folder_dataset

    folder = write_fer2013_folders(fer_csv, tmp_path / "own", {"Training": "."}, classes=("happy", "sad", "neutral"),
                                   limit=400)
    out = tmp_path / "run"
    result = run_cli("fer-train", "fit-portable", "--data", folder, "--epochs", "1", "--batch-size", "64", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "val: accuracy" in result.stdout and "split.json" in result.stdout
    state = json.loads((out / "state.json").read_text())
    assert state["config"]["labels"] == ["happy", "sad", "neutral"] and state["data"]["layout"] == "class folders"
    _, record = read_folder_dataset(str(folder), FolderOptions(), say=lambda line: None)
    assert json.loads((out / "split.json").read_text()) == record   # the split fit makes with the same seed
    import keras

    assert keras.models.load_model(out / "best.keras").output_shape[-1] == 3
    # A model of other labels cannot start or teach it: one line.
    refused = run_cli("fer-train", "fit-portable", "--data", small_csv, "--epochs", "1", "--init-from", out,
                      "--out", tmp_path / "seven")
    assert refused.returncode == 1 and "a model of 3 labels; the data has 7" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
