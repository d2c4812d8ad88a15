"""A tiny real run end to end: fer-train -> fer-convert --int8 -> fer-edge eval."""

import csv
import json

import numpy as np
import pytest

from conftest import run_cli
from fer_edge.classify import EmotionClassifier
from fer_edge.labels import LABELS

pytest.importorskip("tensorflow")


def test_training_run_writes_its_records(tiny_run):
    for name in ("best.keras", "last.keras", "history.csv", "metrics.json", "confusion.png", "curves.png", "state.json"):
        assert (tiny_run / name).exists(), name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["multiply_adds"] <= 25_000_000
    assert metrics["test"]["n"] == 300 and 0 <= metrics["test"]["accuracy"] <= 1


def test_resume_continues_after_the_last_epoch(tiny_run, small_csv):
    result = run_cli("fer-train", "fit", "--data", small_csv, "--epochs", "2", "--batch-size", "64",
                     "--out", tiny_run, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming" in result.stdout and "after epoch 1" in result.stdout
    with open(tiny_run / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [1, 2]


def test_int8_model_is_full_integer_with_metadata(tiny_model):
    classifier = EmotionClassifier(str(tiny_model))
    assert classifier.input["dtype"] == np.int8 and classifier.output["dtype"] == np.int8
    meta = classifier.metadata
    assert meta["labels"] == list(LABELS) and meta["quantization"] == "int8"
    assert meta["provenance"]["train_command"].startswith("fer-train fit")
    assert set(meta["accuracy"]) == {"PublicTest", "PrivateTest"}
    float_model = EmotionClassifier(str(tiny_model).replace("int8.tflite", "int8-float32.tflite"))
    assert float_model.input["dtype"] == np.float32


def test_eval_json_reproduces_the_converter_measurement(tiny_model, small_csv):
    result = run_cli("fer-edge", "eval", "--model", tiny_model, "--data", small_csv, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"accuracy", "macro_f1", "per_class_recall", "confusion", "n"} <= set(report)
    assert report["n"] == 300 and set(report["per_class_recall"]) == set(LABELS)
    assert np.array(report["confusion"]).sum() == 300
    stored = EmotionClassifier(str(tiny_model)).metadata["accuracy"]["PrivateTest"]["accuracy"]
    assert report["accuracy"] == pytest.approx(stored)


def test_convert_refuses_an_int8_model_that_loses_too_much(tiny_run, small_csv, tmp_path):
    output = tmp_path / "refused.tflite"
    # A negative limit can never be met: the gate must refuse and write nothing.
    result = run_cli("fer-convert", tiny_run / "best.keras", "--data", small_csv, "--int8", "--calib", "50",
                     "--limit", "100", "--max-loss", "-50", "-o", output)
    assert result.returncode != 0
    assert "refused" in result.stderr and "Traceback" not in result.stderr
    assert not output.exists()


def test_edgetpu_without_compiler_explains(tiny_run, small_csv, tmp_path):
    result = run_cli("fer-convert", tiny_run / "best.keras", "--data", small_csv, "--int8", "--calib", "50",
                     "--limit", "50", "--allow-loss", "--edgetpu", "-o", tmp_path / "m.tflite",
                     env_path="/usr/bin:/bin")
    assert result.returncode != 0
    assert "edgetpu_compiler is not on PATH" in result.stderr and "Traceback" not in result.stderr
    assert "Edge TPU check: compatible" in result.stdout


def test_bad_keras_file_is_one_line(tmp_path, small_csv):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a model")
    result = run_cli("fer-convert", bad, "--data", small_csv, "-o", tmp_path / "x.tflite")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "cannot load Keras model" in result.stderr
