"""detect -> crop -> classify, written once: real photos through the real detector and the
shipped model give faces whose crops, labels and JSON agree with the parts run by hand."""

import json

import cv2
import numpy as np

from fer_edge.model.classify import EmotionClassifier
from fer_edge.model.preprocess import crop_detected
from fer_edge.vision.analyzer import FaceAnalyzer, largest_faces
from fer_edge.vision.detect import make_detector
from fer_edge.vision.running_mode import RunningMode


def analyzer(model_path):
    return FaceAnalyzer(make_detector("auto", mode=RunningMode.STILLS), EmotionClassifier(str(model_path)))


def test_each_face_is_the_crop_and_answer_of_its_detection(photos, model_path):
    faces_of = analyzer(model_path)
    image = cv2.imread(str(photos / "two_people.jpg"))
    faces = faces_of.analyze(image)
    assert len(faces) == 2
    for face in faces:
        crop = crop_detected(image, face.detection, faces_of.margin)
        assert np.array_equal(face.crop, crop) and face.crop.shape == (48, 48)
        assert np.allclose(face.probabilities, faces_of.classifier.predict(crop)[0], atol=1e-5)
        described = json.loads(json.dumps(face.describe()))
        assert described["label"] == face.label in faces_of.labels
        assert set(described["box"]) == set("xywh") and abs(sum(described["probs"].values()) - 1) < 0.01


def test_a_smaller_copy_is_searched_and_boxes_come_back_in_frame_pixels(photos, model_path):
    faces_of = analyzer(model_path)
    image = cv2.imread(str(photos / "single_face.jpg"))
    [full] = faces_of.detect(image)
    [half] = faces_of.detect(image, cv2.resize(image, None, fx=0.5, fy=0.5), detect_scale=2.0)
    assert abs(half.x - full.x) < 0.1 * full.w and abs(half.w - full.w) < 0.15 * full.w


def test_no_face_is_no_answer(model_path):
    faces_of = analyzer(model_path)
    assert faces_of.analyze(np.full((240, 320, 3), 128, np.uint8)) == []
    assert faces_of.classify(np.zeros((10, 10, 3), np.uint8), []) == []


def test_the_largest_face_of_each_photo_or_zeros(photos):
    images = [cv2.imread(str(photos / name)) for name in ("multi_face.jpg", "single_face.jpg")]
    images.append(np.full((200, 200, 3), 128, np.uint8))
    seen = []
    crops, found = largest_faces(images, make_detector("auto", mode=RunningMode.STILLS), 0.2,
                                 progress=lambda items: (seen.append(1) or item for item in items))
    assert crops.shape == (3, 48, 48) and found.tolist() == [True, True, False] and len(seen) == 3
    assert not crops[2].any() and crops[0].any()
    empty, none = largest_faces([], make_detector("haar"), 0.2)
    assert empty.shape == (0, 48, 48) and none.shape == (0,)
