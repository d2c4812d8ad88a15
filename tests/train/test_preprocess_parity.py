"""Training and the runtime must feed the network the same tensor for the same face."""

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.needs_tf

from fer_edge.model.datasets import read_class_folders  # noqa: E402
from fer_edge.model.preprocess import crop_face, to_model_input  # noqa: E402
from fer_train.loops.fit import make_dataset  # noqa: E402


def _largest_haar_face(frame):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    boxes = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(40, 40))
    assert len(boxes), "the photo has a face"
    return max(boxes, key=lambda b: b[2] * b[3])


def test_training_pipeline_and_runtime_give_the_same_tensor(photos, tmp_path):
    frame = cv2.imread(str(photos / "single_face.jpg"))
    box = _largest_haar_face(frame)
    runtime_face = crop_face(frame, box)                     # what the device crops
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "face.png"), runtime_face)  # lossless
    faces = read_class_folders(str(tmp_path))                # what training reads
    batch = next(iter(make_dataset(faces.images, faces.labels, batch_size=1, seed=0)))[0].numpy()
    runtime_input = to_model_input(runtime_face)
    assert batch.shape == runtime_input.shape == (1, 48, 48, 1)
    assert batch.dtype == runtime_input.dtype == np.float32
    assert np.array_equal(batch, runtime_input)


def test_fer2013_rows_pass_through_unchanged(public_test):
    face = public_test.images[5]
    assert np.array_equal(crop_face(face), face)
    batch = next(iter(make_dataset(public_test.images[5:6], public_test.labels[5:6], 1, 0)))[0].numpy()
    assert np.array_equal(batch, to_model_input(face))
