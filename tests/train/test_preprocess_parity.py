"""Training and the runtime must feed the network the same tensor for the same face."""

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.needs_tf

from fer_edge.datasets import read_class_folders  # noqa: E402
from fer_edge.detect import Detection  # noqa: E402
from fer_edge.preprocess import FER_EYE_DISTANCE, FER_EYE_MIDPOINT, crop_detected, crop_face, to_model_input  # noqa: E402
from fer_train.fit import make_dataset  # noqa: E402


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


def test_an_aligned_crop_of_a_face_framed_like_fer2013_is_that_face(public_test):
    """Eyes where FER2013 has them: the aligned crop is the training face itself."""
    face = public_test.images[5]
    (mx, my), half = FER_EYE_MIDPOINT, FER_EYE_DISTANCE / 2
    detection = Detection(0, 0, 48, 48, 1.0, eyes=((mx - half, my), (mx + half, my)))
    assert np.abs(crop_detected(face, detection).astype(int) - face).max() <= 1


def test_crop_at_the_frame_border_keeps_scale():
    frame = np.tile(np.arange(200, dtype=np.uint8), (100, 1))
    face = crop_face(frame, (-30, -30, 80, 80))
    assert face.shape == (48, 48)
    inside = crop_face(frame, (50, 10, 80, 80))
    assert inside.shape == (48, 48) and not np.array_equal(face, inside)


def test_int8_input_is_pixel_minus_128():
    face = np.arange(48 * 48, dtype=np.int64).reshape(48, 48) % 256
    q = to_model_input(face.astype(np.uint8), np.int8, 1.0, -128)
    assert q.dtype == np.int8 and np.array_equal(q[0, ..., 0].astype(int), face - 128)


def test_a_face_twice_as_big_comes_back_pixel_for_pixel(public_test):
    """One centre-aligned warp, no smoothing: a FER2013 face blown up 2x by repeating pixels,
    in a bigger frame, is cut back to exactly that face (no half-pixel shift)."""
    face = public_test.images[5]
    frame = np.full((200, 240), 90, np.uint8)
    frame[30:126, 70:166] = np.repeat(np.repeat(face, 2, axis=0), 2, axis=1)
    assert np.array_equal(crop_face(frame, (70, 30, 96, 96), margin=0.0), face)
    (mx, my), half = FER_EYE_MIDPOINT, FER_EYE_DISTANCE / 2
    eyes = ((70 + 2 * (mx - half), 30 + 2 * my), (70 + 2 * (mx + half), 30 + 2 * my))
    assert np.array_equal(crop_detected(frame, Detection(70, 30, 96, 96, 1.0, eyes=eyes)), face)
