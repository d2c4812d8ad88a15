"""The contract a deployed model meets before it runs: the real shipped models pass; a
truncated file, a file that is no model, a detector dressed as a classifier, labels other
than the order's and a model whose answer is not finite are each refused with one line."""

import hashlib

import numpy as np
import pytest

from conftest import ROOT
from fer_edge.deploy.contract import check_model
from fer_edge.deploy.order import OrderRefused
from fer_edge.model.metadata import embed_metadata, model_metadata, read_model_metadata, strip_metadata
from fer_edge.vision.detector_files import find

SEVEN = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def header_model(path, labels=None):
    data = path.read_bytes()
    return {"name": "candidate.tflite", "version": 2, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "labels": labels or read_model_metadata(str(path))["labels"], "card": {}}


def refused(path, model):
    with pytest.raises(OrderRefused) as caught:
        check_model(str(path), model)
    reason = str(caught.value)
    assert reason.startswith("contract: ") and "\n" not in reason and str(path) not in reason, reason
    return reason


@pytest.mark.parametrize("name", ["fer-cnn-int8.tflite", "fer-cnn-int8-float32.tflite", "fer-cnn-int8-dynamic.tflite"])
def test_the_shipped_models_pass_and_classify(name):
    path = ROOT / "models" / name
    classifier = check_model(str(path), header_model(path), mirror=False)
    assert list(classifier.labels) == SEVEN
    probabilities = classifier.predict(np.full((3, 48, 48), 90, np.uint8))
    assert probabilities.shape == (3, 7) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


def test_a_truncated_model_is_refused(tmp_path, model_path):
    data = model_path.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 2])
    assert "has no fer-edge metadata" in refused(cut, header_model(model_path))
    bare = strip_metadata(data)
    cut.write_bytes(bare[: len(bare) // 2] + data[len(bare):])     # its own metadata kept: the weights' sha256 differs
    assert "do not match the sha256 in its metadata" in refused(cut, header_model(model_path))
    cut.write_bytes(embed_metadata(bare[: len(bare) // 2], read_model_metadata(str(model_path))))
    assert refused(cut, header_model(model_path)).startswith("contract: candidate.tflite: the runtime cannot")


def test_a_file_that_is_no_model_is_refused(tmp_path, model_path):
    card = ROOT / "models" / "fer-cnn-int8.md"
    assert "not a TFLite model" in refused(card, header_model(model_path))
    png = ROOT / "models" / "fer-cnn-int8-curves.png"
    assert "not a TFLite model" in refused(png, header_model(model_path))
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert "not a TFLite model" in refused(empty, header_model(model_path))


def test_labels_other_than_the_orders_are_refused(tmp_path, model_path):
    reason = refused(model_path, header_model(model_path, labels=["angry", "fear", "happy", "sad", "surprise", "neutral"]))
    assert reason == ("contract: candidate.tflite: its labels (angry, disgust, fear, happy, sad, surprise, neutral) are not "
                      "the order's (angry, fear, happy, sad, surprise, neutral)")
    renamed = tmp_path / "renamed.tflite"
    others = ["calm", "tense", "glad", "low", "startled", "bored", "still"]
    renamed.write_bytes(embed_metadata(model_path.read_bytes(), dict(read_model_metadata(str(model_path)), labels=others)))
    assert "are not the order's" in refused(renamed, header_model(model_path, labels=SEVEN))
    assert list(check_model(str(renamed), header_model(renamed)).labels) == others   # the same model, its labels as ordered


def test_metadata_that_names_fewer_labels_than_outputs_is_refused(tmp_path, model_path):
    six = tmp_path / "six.tflite"
    labels = ["angry", "fear", "happy", "sad", "surprise", "neutral"]
    six.write_bytes(embed_metadata(model_path.read_bytes(), dict(read_model_metadata(str(model_path)), labels=labels)))
    assert "the model has 7 outputs but its metadata names 6 labels" in refused(six, header_model(six))


def test_a_model_whose_answer_is_not_finite_is_refused(tmp_path, model_path):
    broken = tmp_path / "zero-temperature.tflite"
    metadata = read_model_metadata(str(model_path))
    broken.write_bytes(embed_metadata(model_path.read_bytes(), dict(metadata, calibration=dict(metadata["calibration"], temperature=0.0))))
    assert refused(broken, header_model(broken)) == "contract: candidate.tflite: a run on a grey face gives no finite probability per label"


def test_a_face_detector_dressed_as_a_classifier_is_refused(tmp_path):
    detector = find("blazeface")
    if detector is None:
        pytest.skip("no BlazeFace file here (fer-edge detector fetch)")
    dressed = tmp_path / "blazeface.tflite"
    with open(detector, "rb") as f:
        dressed.write_bytes(embed_metadata(f.read(), model_metadata("int8", labels=SEVEN)))
    reason = refused(dressed, header_model(dressed))
    assert "outputs but its metadata names 7 labels" in reason or "is not the 48x48x1 grey face" in reason, reason


MAKE_MODELS = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
inp = tf.keras.Input((64, 64, 1))
x = tf.keras.layers.Flatten()(tf.keras.layers.AveragePooling2D(8)(inp))
wide = tf.keras.Model(inp, tf.keras.layers.Dense(7)(x))
open(os.path.join(sys.argv[1], "wide.tflite"), "wb").write(tf.lite.TFLiteConverter.from_keras_model(wide).convert())

class Flex(tf.Module):       # cumprod is no LiteRT builtin: it needs TensorFlow's own kernel (the Flex delegate)
    @tf.function(input_signature=[tf.TensorSpec([1, 48, 48, 1], tf.float32)])
    def __call__(self, x):
        return tf.math.cumprod(tf.reshape(tf.keras.layers.AveragePooling2D(8)(x), [1, 36])[:, :7], axis=1)

flex = Flex()
converter = tf.lite.TFLiteConverter.from_concrete_functions([flex.__call__.get_concrete_function()], flex)
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
open(os.path.join(sys.argv[1], "flex.tflite"), "wb").write(converter.convert())
"""


@pytest.mark.needs_tf
@pytest.mark.slow
def test_a_model_of_another_input_or_of_ops_this_runtime_lacks_is_refused(tmp_path):
    """Real models made by TensorFlow's converter, with fer-edge metadata that claims the usual
    48x48 input: the contract looks at the model itself."""
    import subprocess
    import sys
    from importlib.util import find_spec

    if find_spec("tensorflow") is None:
        pytest.skip("TensorFlow (the train extra) makes these models")
    made = subprocess.run([sys.executable, "-c", MAKE_MODELS, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    for name, expected in [("wide", "contract: candidate.tflite: input 64x64x1 is not the 48x48x1 grey face the device gives"),
                           ("flex", "contract: candidate.tflite: the runtime cannot run it (Select TensorFlow op")]:
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(embed_metadata(path.read_bytes(), model_metadata("float32", labels=SEVEN)))
        assert refused(path, header_model(path)).startswith(expected)
