"""face-api.js's expression network as a teacher: fetched from the real npm registry and
checked, rebuilt by our code, and equal to an independent numpy forward pass of the same
weights on faces from real photos."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from conftest import run_cli
from fer_train.teachers import faceapi


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    return faceapi.fetch(str(tmp_path_factory.mktemp("face-api")))


def test_fetch_checks_the_pinned_files(teacher_files):
    manifest, weights = teacher_files
    for path in teacher_files:
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == faceapi.FILE_SHA256[path.rsplit("/", 1)[1]]
    arrays = faceapi.read_tfjs_weights(manifest, weights)
    assert sum(a.size for a in arrays.values()) == 323_687
    # uint8 weights read back as q * scale + min: check one value by hand.
    spec = json.load(open(manifest))[0]["weights"][0]
    q = np.frombuffer(open(weights, "rb").read(), np.uint8, 1)[0]
    assert arrays[spec["name"]].flat[0] == pytest.approx(q * spec["quantization"]["scale"] + spec["quantization"]["min"])


def test_a_wrong_hash_stores_nothing(tmp_path):
    with pytest.raises(faceapi.TeacherFetchError, match="is not the pinned"):
        faceapi.fetch(str(tmp_path / "t"), tarball_sha256="0" * 64)
    assert not (tmp_path / "t").exists()


def test_offline_is_one_line(tmp_path):
    done = run_cli("fer-train", "faceapi-teacher", "-o", tmp_path / "t.tflite",
                   extra_env={"npm_config_registry": "http://127.0.0.1:9", "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot download @vladmandic/face-api" in errors[0], done.stderr
    assert not (tmp_path / "t.tflite").exists()


# An independent forward pass: plain numpy, TensorFlow's "same" padding written out.

def _pad_same(x, stride):
    size = x.shape[0]
    total = max((-(-size // stride) - 1) * stride + 3 - size, 0)
    before = total // 2
    return np.pad(x, ((before, total - before), (before, total - before), (0, 0)))


def _windows(x, stride):
    """(H', W', 3, 3, C) 3x3 windows of a 'same'-padded (H, W, C) map."""
    padded = _pad_same(x, stride)
    out = -(-x.shape[0] // stride)
    view = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))  # (H, W, C, 3, 3)
    return view[: out * stride : stride, : out * stride : stride].transpose(0, 1, 3, 4, 2)


def _conv(x, kernel, bias, stride):
    return np.einsum("hwijc,ijco->hwo", _windows(x, stride), kernel) + bias


def _separable(x, depthwise, pointwise, bias, stride):
    spatial = np.einsum("hwijc,ijc->hwc", _windows(x, stride), depthwise[..., 0])
    return spatial @ pointwise[0, 0] + bias


def reference_logits(w, rgb):
    """Logits of one (112,112,3) RGB image in face-api.js's label order."""
    x = (rgb.astype(np.float64) - np.array(faceapi.MEAN_RGB)) / 255.0
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    for block in faceapi.BLOCKS:
        outs = []
        for i in range(4):
            name, stride = f"{block}/conv{i}", 2 if i == 0 else 1
            seen = x if i == 0 else outs[0] if i == 1 else relu(sum(outs))
            if f"{name}/filters" in w:
                out = _conv(seen, w[f"{name}/filters"], w[f"{name}/bias"], stride)
            else:
                out = _separable(seen, w[f"{name}/depthwise_filter"], w[f"{name}/pointwise_filter"], w[f"{name}/bias"], stride)
            outs.append(relu(out) if i == 0 else out)
        x = relu(sum(outs))
    return x.mean(axis=(0, 1)) @ w["fc/weights"] + w["fc/bias"]


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _photo_faces(photos):
    """Face boxes of real photos, padded square with black and resized to 112 as face-api.js does."""
    from fer_edge.vision.detect import make_detector
    from fer_edge.vision.running_mode import RunningMode

    detector = make_detector("auto", min_size=16, mode=RunningMode.STILLS)
    faces = []
    for name in ("astronaut.png", "single_face.jpg", "multi_face.jpg", "two_people.jpg"):
        image = cv2.imread(str(photos / name))
        for d in detector.detect(image):
            x, y, bw, bh = (int(round(v)) for v in d[:4])
            box = image[max(y, 0): y + bh, max(x, 0): x + bw, ::-1]
            side = max(box.shape[:2])
            square = np.zeros((side, side, 3), np.uint8)
            top, left = (side - box.shape[0]) // 2, (side - box.shape[1]) // 2
            square[top: top + box.shape[0], left: left + box.shape[1]] = box
            faces.append(cv2.resize(square, (112, 112), interpolation=cv2.INTER_LINEAR))
    return np.stack(faces)


def test_keras_network_matches_a_numpy_forward_pass(teacher_files, photos):
    w = faceapi.read_tfjs_weights(*teacher_files)
    faces = _photo_faces(photos)
    assert len(faces) >= 8
    expected = _softmax(np.stack([reference_logits(w, face) for face in faces]))
    got = _softmax(faceapi.build_expression_net(w).predict(faces.astype(np.float32), verbose=0))
    assert np.abs(got - expected).max() < 1e-4
    assert len(set(expected.argmax(axis=1))) >= 2  # real faces, more than one expression read


def test_teacher_model_runs_as_a_fer_edge_model(teacher_files, photos, tmp_path):
    """The written .tflite, run by the device runtime on 48x48 grey faces, is the same
    network: upscaled grey in R, G and B, outputs in our label order."""
    from fer_edge.model.classify import EmotionClassifier

    path = faceapi.write_teacher(str(tmp_path / "teacher.tflite"), target=str(teacher_files[0].rsplit("/", 1)[0]))
    grey = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
                     for f in _photo_faces(photos)])
    got = EmotionClassifier(path, mirror=False).predict(grey)
    w = faceapi.read_tfjs_weights(*teacher_files)
    upscaled = [cv2.resize(g.astype(np.float32), (112, 112), interpolation=cv2.INTER_LINEAR) for g in grey]
    expected = _softmax(np.stack([reference_logits(w, np.repeat(u[..., None], 3, axis=2)) for u in upscaled]))
    assert np.abs(got - expected[:, faceapi.fer_order()]).max() < 1e-4
