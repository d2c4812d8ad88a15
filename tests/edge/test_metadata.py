"""The runtime refuses models it cannot trust, with one line and a non-zero exit."""


import pytest

from conftest import run_cli
from fer_edge.model.classify import EmotionClassifier
from fer_edge.model.metadata import ModelError, embed_metadata, read_metadata, strip_metadata


def test_metadata_round_trip(model_path):
    data = model_path.read_bytes()
    meta = read_metadata(data)
    again = embed_metadata(data, dict(meta, note="re-embedded"))
    assert read_metadata(again)["note"] == "re-embedded"
    assert strip_metadata(again) == strip_metadata(data)  # old archive replaced, not stacked


def _variant(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_refusals(model_path, tmp_path):
    data = model_path.read_bytes()
    meta = read_metadata(data)
    cases = {
        "bare.tflite": (strip_metadata(data), "no fer-edge metadata"),
        "six.tflite": (embed_metadata(data, dict(meta, labels=meta["labels"][:6])), "7 outputs but its metadata names 6"),
        "names.tflite": (embed_metadata(data, dict(meta, labels=["Happy Face", *meta["labels"][1:]])),
                         "not a lowercase name"),
        "twice.tflite": (embed_metadata(data, dict(meta, labels=["happy", *meta["labels"][1:]])), "repeat a name"),
        "one.tflite": (embed_metadata(data, dict(meta, labels=["happy"])), "2..32 labels"),
        "prep.tflite": (embed_metadata(data, dict(meta, preprocess={"name": "rgb224", "version": 1})), "preprocessing"),
        "future.tflite": (embed_metadata(data, dict(meta, format_version=99)), "newer than this fer-edge"),
        "text.tflite": (b"hello, not a model at all", "not a TFLite model"),
    }
    for name, (blob, reason) in cases.items():
        path = _variant(tmp_path, name, blob)
        with pytest.raises(ModelError, match=reason):
            EmotionClassifier(str(path))
        result = run_cli("fer-edge", "eval", "--model", path, "--data", tmp_path)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert reason in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr


def test_a_model_of_its_own_labels_is_read_in_them(model_path, tmp_path):
    """Labels name the outputs: the same network with renamed labels reads the same faces under those names."""
    import numpy as np

    data = model_path.read_bytes()
    meta = read_metadata(data)
    renamed = ["anger", "yuck", "afraid", "joy", "sorrow", "wow", "calm"]
    path = _variant(tmp_path, "renamed.tflite", embed_metadata(data, dict(meta, labels=renamed)))
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    ours, theirs = EmotionClassifier(str(model_path)), EmotionClassifier(str(path))
    assert theirs.labels == tuple(renamed)
    assert np.array_equal(ours.predict(faces), theirs.predict(faces))


def test_a_damaged_copy_of_the_shipped_model_is_refused(tmp_path):
    from fer_edge.model.classify import default_model_path

    data = bytearray(open(default_model_path(), "rb").read())
    assert read_metadata(bytes(data))["weights_sha256"]
    refused = 0
    for i, offset in enumerate(range(1000, len(strip_metadata(bytes(data))), 20000)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x5A
        path = _variant(tmp_path, f"damaged-{i}.tflite", bytes(damaged))
        with pytest.raises(ModelError, match="do not match the sha256"):
            EmotionClassifier(str(path))
        refused += 1
    assert refused >= 10


def test_truncated_model_is_refused(model_path, tmp_path):
    data = model_path.read_bytes()
    path = _variant(tmp_path, "cut.tflite", data[: len(data) // 3])
    with pytest.raises(ModelError):
        EmotionClassifier(str(path))


def test_missing_model_is_one_line(tmp_path):
    result = run_cli("fer-edge", "eval", "--model", tmp_path / "nope.tflite", "--data", tmp_path, "--json")
    assert result.returncode != 0 and "cannot read model" in result.stderr and "Traceback" not in result.stderr
