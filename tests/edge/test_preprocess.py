"""A face as the model knows it: crops framed like FER2013's by the eyes or the box, at the
frame's border, int8 input, and detail brought down to FER2013's, on real faces and photos."""

import cv2
import numpy as np
import pytest

from fer_edge.vision.detect import Detection
from fer_edge.model.preprocess import FER_EYE_DISTANCE, FER_EYE_MIDPOINT, crop_detected, crop_face, to_model_input


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


def test_detail_ceiling_is_fer2013s_upper_quartile(fer_csv):
    """The constant is what FER2013's Training faces measure: 3 in 4 have no more detail."""
    from fer_edge.model.datasets import read_fer2013
    from fer_edge.model.preprocess import DETAIL_CEILING, detail

    faces = read_fer2013(str(fer_csv), usage="Training").images
    assert np.percentile([detail(face) for face in faces], 75) == pytest.approx(DETAIL_CEILING, abs=0.002)


def _large_face(photos):
    from fer_edge.vision.detect import make_detector
    from fer_edge.vision.running_mode import RunningMode

    frame = cv2.imread(str(photos / "single_face.jpg"))
    detections = make_detector("auto", min_size=16, mode=RunningMode.STILLS).detect(frame)
    return frame, max(detections, key=lambda d: d.w * d.h)


def test_a_large_sharp_face_keeps_fer2013s_detail(photos):
    """A face ~200 px wide in a sharp photo: the plain warp keeps more detail than FER2013's
    faces have; the crop brings it down to the ceiling, and it is still the same face."""
    from fer_edge.model.preprocess import DETAIL_CEILING, _plain_warp, detail

    frame, found = _large_face(photos)
    assert found.w > 150 and found.eyes is not None
    (x0, y0), (x1, y1) = found.eyes
    scale = FER_EYE_DISTANCE / np.hypot(x1 - x0, y1 - y0)
    plain = _plain_warp(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), scale, ((x0 + x1) / 2, (y0 + y1) / 2), FER_EYE_MIDPOINT)
    face = crop_detected(frame, found)
    assert detail(plain) > DETAIL_CEILING >= detail(face)
    assert np.corrcoef(plain.ravel(), face.ravel())[0, 1] > 0.97
    assert abs(float(plain.mean()) - float(face.mean())) < 1.0


def test_a_soft_face_is_not_filtered(public_test):
    """A FER2013 face upscaled 4x (soft, like most photos blown up from small originals) is
    cut back by the plain warp alone."""
    from fer_edge.model.preprocess import _plain_warp

    face = public_test.images[5]
    frame = np.full((300, 300), 90, np.uint8)
    frame[50:242, 60:252] = cv2.resize(face, (192, 192), interpolation=cv2.INTER_LINEAR)
    plain = _plain_warp(frame, 0.25, (156.0, 146.0), (24.0, 24.0))
    assert np.array_equal(crop_face(frame, (60, 50, 192, 192), margin=0.0), plain)
    assert np.abs(plain.astype(int) - face).mean() < 6
