"""Face detectors: OpenCV's Haar cascade (no extra files) and MediaPipe's BlazeFace, the
implementations behind `detect.py`'s contract and registry (which `--help` reads without
loading OpenCV).

Detection runs on a copy scaled so its longer side is at most `max_side` (faces at a
kiosk are large; small copies are much faster), and boxes are mapped back.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..model.litert import allocate_tensors, make_interpreter
from ..model.preprocess import to_grey
from .detect import NO_BLAZEFACE, Detection, Detector, DetectorError, find_blazeface


def _scaled(frame: np.ndarray, max_side: int) -> Tuple[np.ndarray, float]:
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / float(max(h, w)))
    if scale < 1.0:
        frame = cv2.resize(frame, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
    return frame, scale


def keep_usable(boxes: List[Detection], frame_shape: Tuple[int, ...], min_size: int,
                outside: float = 0.25) -> List[Detection]:
    """Drop faces smaller than min_size pixels, or with more than `outside` of the box
    outside the frame (half a face reads as a different expression)."""
    h, w = frame_shape[:2]
    kept = []
    for box in boxes:
        x, y, bw, bh = box[:4]
        if min(bw, bh) < min_size:
            continue
        visible_w = min(x + bw, w) - max(x, 0)
        visible_h = min(y + bh, h) - max(y, 0)
        if visible_w <= 0 or visible_h <= 0 or (visible_w * visible_h) / (bw * bh) < 1 - outside:
            continue
        kept.append(box)
    return kept


class HaarDetector:
    """OpenCV's frontal-face cascade, bundled with opencv-python(-headless) 4.x."""

    name = "haar"

    def __init__(self, max_side: int = 480, min_size: int = 24, min_neighbors: int = 5, scale_factor: float = 1.1,
                 note: Optional[str] = None):
        self.note = note
        path = os.path.join(cv2.data.haarcascades if hasattr(cv2, "data") else "", "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DetectorError(f"Haar cascade not found at {path} (opencv-python-headless 5.x ships none: use <5)")
        self.max_side, self.min_size = max_side, min_size
        self.min_neighbors, self.scale_factor = min_neighbors, scale_factor

    def detect(self, frame: np.ndarray) -> List[Detection]:
        small, scale = _scaled(to_grey(frame), self.max_side)
        min_px = max(12, int(self.min_size * scale))
        found, _, weights = self.cascade.detectMultiScale3(
            small, self.scale_factor, self.min_neighbors, minSize=(min_px, min_px), outputRejectLevels=True)
        if not len(found):
            return []
        boxes = [Detection(float(x) / scale, float(y) / scale, float(w) / scale, float(h) / scale, float(weight))
                 for (x, y, w, h), weight in zip(found, np.asarray(weights).ravel())]
        # The cascade can report one face twice at neighbouring scales: keep the stronger.
        return keep_usable(nms_boxes(boxes, 0.3), frame.shape, self.min_size)


# MediaPipe's SSD anchor settings for its two face detectors (fixed anchor size 1x1).
ANCHOR_LAYOUTS: Dict[int, dict] = {
    896: dict(size=128, strides=(8, 16, 16, 16), per_layer=2),  # short range: faces within ~2 m
    2304: dict(size=192, strides=(4,), per_layer=1),            # full range: smaller, farther faces
}


def blazeface_anchors(size: int = 128, strides: Tuple[int, ...] = (8, 16, 16, 16), per_layer: int = 2) -> np.ndarray:
    """Anchor centres: layers of equal stride share a grid, `per_layer` anchors each
    (short range: 2 per cell at stride 8 + 6 per cell at stride 16 = 896 anchors)."""
    centres = []
    i = 0
    while i < len(strides):
        stride, repeats = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            repeats += per_layer
            i += 1
        cells = int(np.ceil(size / stride))
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> List[int]:
    """Indices kept by greedy non-maximum suppression; boxes are (x0, y0, x1, y1)."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou < iou_threshold]
    return keep


def nms_boxes(boxes: List[Detection], iou_threshold: float) -> List[Detection]:
    """NMS over detections; returns the kept ones, strongest first."""
    if len(boxes) < 2:
        return list(boxes)
    array = np.array([b[:4] for b in boxes], np.float32)
    corners = np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)
    return [boxes[i] for i in nms(corners, np.array([b[4] for b in boxes], np.float32), iou_threshold)]


class BlazeFaceDetector:
    """MediaPipe BlazeFace short-range (128x128 RGB) run by LiteRT; decoding and NMS in numpy."""

    def __init__(self, model_path: Optional[str] = None, score_threshold: float = 0.6, iou_threshold: float = 0.3,
                 min_size: int = 24, threads: int = 1, variant: str = "blazeface", note: Optional[str] = None):
        self.name, self.note = variant, note
        path = model_path or find_blazeface(variant)
        if not path:
            raise DetectorError(NO_BLAZEFACE)
        try:
            with open(path, "rb") as f:
                self.interpreter = make_interpreter(f.read(), threads=threads)
        except (OSError, ValueError) as exc:
            raise DetectorError(f"{path}: cannot load BlazeFace model ({exc})") from None
        self.path = path
        allocate_tensors(self.interpreter)
        self.input = self.interpreter.get_input_details()[0]
        self.size = int(self.input["shape"][1])
        outputs = self.interpreter.get_output_details()
        self.regressors = next(o for o in outputs if o["shape"][-1] == 16)["index"]
        score_output = next(o for o in outputs if o["shape"][-1] == 1)
        self.scores = score_output["index"]
        n_anchors = int(score_output["shape"][1])
        if n_anchors not in ANCHOR_LAYOUTS:
            raise DetectorError(f"{path}: {n_anchors} anchors is not a known BlazeFace layout")
        self.anchors = blazeface_anchors(**ANCHOR_LAYOUTS[n_anchors])
        self.score_threshold, self.iou_threshold, self.min_size = score_threshold, iou_threshold, min_size

    def detect(self, frame: np.ndarray) -> List[Detection]:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        h, w = frame.shape[:2]
        side = max(h, w)
        # Letterbox to a square (as MediaPipe does) so faces keep their shape.
        square = np.zeros((side, side, 3), np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = frame
        small = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA)
        x = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 127.5 - 1.0
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.regressors)[0]
        logits = self.interpreter.get_tensor(self.scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
        hit = scores >= self.score_threshold
        if not hit.any():
            return []
        raw, scores, anchors = raw[hit], scores[hit], self.anchors[hit]
        cx = raw[:, 0] / self.size + anchors[:, 0]
        cy = raw[:, 1] / self.size + anchors[:, 1]
        bw, bh = raw[:, 2] / self.size, raw[:, 3] / self.size
        corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * side
        corners -= np.array([left, top, left, top], np.float32)
        # Keypoints 0 and 1 are the eyes (MediaPipe: right eye, left eye of the person).
        eyes = (raw[:, 4:8].reshape(-1, 2, 2) / self.size + anchors[:, None, :]) * side - np.array([left, top], np.float32)
        boxes = [Detection(float(x0), float(y0), float(x1 - x0), float(y1 - y0), float(scores[i]),
                           ((float(eyes[i][0][0]), float(eyes[i][0][1])), (float(eyes[i][1][0]), float(eyes[i][1][1]))))
                 for i in nms(corners, scores, self.iou_threshold) for x0, y0, x1, y1 in [corners[i]]]
        return keep_usable(boxes, frame.shape, self.min_size)


class FusedDetector:
    """Short- and full-range BlazeFace together, merged by NMS: the short-range model finds
    large, close faces (a kiosk, a face crop) that the full-range one misses, and the
    full-range model finds the smaller faces of a group photo that the short-range one misses."""

    name = "blazeface-both"

    def __init__(self, iou_threshold: float = 0.3, note: Optional[str] = None, **options: Any):
        self.note = note
        self.parts = [BlazeFaceDetector(variant="blazeface", **options), BlazeFaceDetector(variant="blazeface-full", **options)]
        self.iou_threshold = iou_threshold

    def detect(self, frame: np.ndarray) -> List[Detection]:
        return nms_boxes([b for part in self.parts for b in part.detect(frame)], self.iou_threshold)


class BorderRetry:
    """For still photos: BlazeFace misses most faces that fill the whole picture (a portrait
    cropped to the face), so when it finds none it looks again with a black border around
    the photo, the face then being the size it was trained on. Such a photo often cuts the
    face at its sides, so on this second look a face may hang further over the photo's edge."""

    def __init__(self, detector: Detector, min_size: int, border: float = 0.5, outside: float = 0.5):
        self.detector, self.min_size, self.border, self.outside = detector, min_size, border, outside
        self.name, self.note = detector.name, detector.note

    def detect(self, frame: np.ndarray) -> List[Detection]:
        found = self.detector.detect(frame)
        if found:
            return found
        pad = int(round(max(frame.shape[:2]) * self.border))
        framed = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        return keep_usable([d.shifted(-pad, -pad) for d in self.detector.detect(framed)], frame.shape, self.min_size,
                           outside=self.outside)
