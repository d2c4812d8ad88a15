"""detect -> crop -> classify, written once: real photos through the real detector and the
shipped model give faces whose crops, labels and JSON agree with the parts run by hand;
with `crops`, every framing of every face in one batch, averaged."""

import json

import cv2
import numpy as np
import pytest

from conftest import run_cli
from fer_edge.model.classify import EmotionClassifier
from fer_edge.model.preprocess import VIEWS, crop_detected, crop_views
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


def test_crops_read_each_face_on_n_framings_in_one_batch_and_average_them(photos, model_path):
    image = cv2.imread(str(photos / "two_people.jpg"))
    plain = analyzer(model_path).analyze(image)
    for mirror, per_view in ((True, 2), (False, 1)):
        classifier = EmotionClassifier(str(model_path), mirror=mirror)
        faces_of = FaceAnalyzer(make_detector("auto", mode=RunningMode.STILLS), classifier, crops=5)
        faces = faces_of.analyze(image)
        assert len(faces) == 2
        # one interpreter call for the frame: 2 faces x 5 framings x (face, mirror image)
        assert classifier.batch == 2 * 5 * per_view == classifier.interpreter.get_input_details()[0]["shape"][0]
        for face, alone in zip(faces, plain):
            views = crop_views(image, face.detection, faces_of.margin, 5)
            assert views.shape == (5, 48, 48) and np.array_equal(face.crop, views[0])
            assert np.array_equal(views[0], crop_detected(image, face.detection, faces_of.margin))
            assert all(not np.array_equal(views[0], other) for other in views[1:])
            assert np.allclose(face.probabilities, classifier.predict(views).mean(axis=0), atol=1e-5)
            assert abs(face.probabilities.sum() - 1) < 1e-5
            assert face.labels == alone.labels and face.label == alone.label


def test_largest_faces_with_views_gives_each_photos_framings(photos):
    images = [cv2.imread(str(photos / "single_face.jpg")), np.full((200, 200, 3), 128, np.uint8)]
    detector = make_detector("auto", mode=RunningMode.STILLS)
    crops, found = largest_faces(images, detector, 0.1)
    views, found_too = largest_faces(images, detector, 0.1, views=3)
    assert views.shape == (2, 3, 48, 48) and np.array_equal(views[:, 0], crops)
    assert found.tolist() == found_too.tolist() == [True, False] and not views[1].any()


def test_a_face_already_cropped_is_reframed_the_same_way(public_test):
    face = public_test.images[0]
    views = crop_views(face, None, 0.1, 7)
    assert views.shape == (7, 48, 48) and np.array_equal(views[0], face)


@pytest.mark.parametrize("value", ["0", "8", "2.5"])
def test_a_wrong_number_of_crops_is_one_line_from_the_file_and_the_flag(tmp_path, value):
    config = tmp_path / "config.toml"
    config.write_text(f"[model]\ncrops = {value}\n")
    checked = run_cli("fer-edge", "config", "check", config)
    assert checked.returncode == 1 and checked.stderr.strip() == \
        f"Error: {config}: [model] crops: expected an integer in 1..7, got {value}", checked.stderr
    for command in (("run", "--source", "x.mp4"), ("eval", "--data", "x.csv"), ("bench", "--source", config)):
        flagged = run_cli("fer-edge", *command, "--crops", value)
        assert flagged.returncode == 2 and "Traceback" not in flagged.stderr
        assert flagged.stderr.strip().splitlines()[-1] == \
            f"Error: Invalid value for '--crops': expected an integer in 1..7, got '{value}'", flagged.stderr
    assert len(VIEWS) == 7   # the setting's range is the framings there are


def test_eval_reads_each_face_on_its_crops(small_csv):
    from fer_edge.tools.evaluate import evaluate_sets

    plain, three = (evaluate_sets((), (str(small_csv),), ("PublicTest",), None, False, "auto", None, 1, True, crops)
                    for crops in (1, 3))
    assert (plain["crops"], three["crops"]) == (1, 3)
    [one], [other] = plain["sets"], three["sets"]
    assert one["n"] == other["n"] == 300 and other["accuracy"] > 0.5 and one["ece"] != other["ece"]
