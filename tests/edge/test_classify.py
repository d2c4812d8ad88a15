"""The emotion classifier on real faces with the shipped models: mirror averaging, batches,
probabilities, the shipped model of each size, and models that are not models refused in one line."""

import os

import numpy as np
import pytest

from fer_edge.core.hardware import model_size
from fer_edge.model.classify import SHIPPED_MODELS, EmotionClassifier, choose_variant, default_model_path
from fer_edge.model.metadata import ModelError


def test_mirror_averaging_is_the_mean_of_the_face_and_its_mirror_image(public_test, model_path):
    faces = public_test.images[:64]
    plain = EmotionClassifier(str(model_path), mirror=False)
    both = EmotionClassifier(str(model_path), mirror=True)
    expected = (plain.predict(faces) + plain.predict(faces[:, :, ::-1])) / 2
    assert np.abs(both.predict(faces) - expected).max() < 1e-5


def test_batches_answer_as_single_faces_and_probabilities_sum_to_one(public_test, model_path):
    classifier = EmotionClassifier(str(model_path))
    faces = public_test.images[:37]
    batched = classifier.predict(faces, max_batch=16)
    singles = np.concatenate([classifier.predict(face) for face in faces])
    assert batched.shape == (37, len(classifier.labels)) and np.abs(batched - singles).max() < 1e-5
    assert np.allclose(batched.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mirror", [True, False])
def test_no_faces_give_no_probabilities(model_path, mirror):
    classifier = EmotionClassifier(str(model_path), mirror=mirror)
    assert classifier.predict(np.zeros((0, 48, 48), np.uint8)).shape == (0, len(classifier.labels))


def test_the_shipped_model_reads_real_faces_better_than_chance(public_test):
    classifier = EmotionClassifier()   # the model shipped in models/
    predicted = classifier.predict(public_test.images[:500]).argmax(axis=1)
    assert classifier.name == "fer-cnn-int8.tflite" and len(classifier.labels) == 7
    assert (predicted == public_test.labels[:500]).mean() > 0.5


@pytest.mark.parametrize("size", ["small", "large"])
def test_each_shipped_size_reads_real_faces_better_than_chance(public_test, size):
    path, _, why = choose_variant(None, "int8", size=size)
    assert os.path.basename(path) == SHIPPED_MODELS[size] and why == f"{size} as set; int8 as set"
    classifier = EmotionClassifier(path)
    assert classifier.labels == EmotionClassifier().labels
    assert (classifier.predict(public_test.images[:500]).argmax(axis=1) == public_test.labels[:500]).mean() > 0.5


def test_auto_size_follows_the_cpu_and_a_set_path_wins():
    expected, reason = model_size()
    path, _, why = choose_variant(None, "int8")
    assert path == default_model_path(expected) and why == f"{reason}; int8 as set"
    assert choose_variant(default_model_path("small"), "int8", size="large")[0] == default_model_path("small")


def test_files_that_are_not_models_are_one_line(tmp_path, model_path):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(model_path.read_bytes()[:5000])
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 4096)
    for path, reason in ((tmp_path / "absent.tflite", "cannot read model"), (tmp_path, "cannot read model"),
                         (cut, str(cut)), (garbage, str(garbage))):
        with pytest.raises(ModelError, match=reason) as raised:
            EmotionClassifier(str(path))
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("mirror", [True, False])
def test_views_of_each_face_are_read_in_one_batch_and_averaged(public_test, model_path, mirror):
    classifier = EmotionClassifier(str(model_path), mirror=mirror)
    views = np.stack([public_test.images[:6], public_test.images[:6, ::-1], public_test.images[:6, :, ::-1]], axis=1)
    averaged = classifier.predict(views)
    assert classifier.batch == 6 * 3 * (2 if mirror else 1)
    expected = np.mean([classifier.predict(views[:, k]) for k in range(3)], axis=0)
    assert averaged.shape == (6, len(classifier.labels)) and np.abs(averaged - expected).max() < 1e-5
