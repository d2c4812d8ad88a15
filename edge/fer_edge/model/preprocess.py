"""The one preprocessing path: detection (or whole image) -> grey 48x48 -> model input.

Training, evaluation and the runtime all call these functions, so the network sees in
the field what it saw in training (tests/train/test_preprocess_parity.py).
"""

from typing import Any, Optional, Sequence, Tuple

import cv2
import numpy as np

PREPROCESS_NAME = "fer-grey48"
PREPROCESS_VERSION = 1
SIZE = 48

# FER2013 faces are registered with little margin around the face. A detector box is
# widened by this fraction on each side before the crop (chosen on the wild set, see docs/model.md).
DEFAULT_MARGIN = 0.10

# Where FER2013 faces have their eyes, in 48x48 pixels: medians over the PublicTest faces in
# which BlazeFace finds both eyes. A detected face with eyes is framed to match.
FER_EYE_MIDPOINT = (23.94, 18.45)
FER_EYE_DISTANCE = 18.44

# A large, sharp face cropped down to 48x48 keeps detail no FER2013 face has (their originals
# were small), and the network misreads it; a soft face (an upscaled photo) has less and
# needs all it has. So a crop is low-pass filtered before its warp only as far as it takes to
# bring its detail (`detail`) down to FER2013's: at most this upper quartile of the Training
# faces' detail (tests/train/test_preprocess_parity.py measures it again).
DETAIL_CEILING = 0.636
# Gaussian blurs tried in turn, as fractions of 0.5 * (1 / scale - 1), the sigma that
# removes what a downscale by `scale` would alias.
BLUR_STEPS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)

# The framings `crop_views` adds for test-time averaging, in order: (dx, dy) shift in face
# pixels and zoom about the face's centre (above 1: tighter). The plain crop first, then a
# tighter and a looser one, then shifts up, down, left and right: half of the training
# augmentation's range (±10 % shift, ±12 % zoom), so every view is a face like those it learned from.
VIEWS = ((0.0, 0.0, 1.0), (0.0, 0.0, 1.06), (0.0, 0.0, 0.94),
         (0.0, -2.4, 1.0), (0.0, 2.4, 1.0), (-2.4, 0.0, 1.0), (2.4, 0.0, 1.0))


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 grey HxW from grey, BGR or BGRA input."""
    image = np.asarray(image)
    if image.ndim == 2:
        grey = image
    elif image.ndim == 3 and image.shape[2] == 1:
        grey = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        grey = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    else:
        raise ValueError(f"unsupported image shape {image.shape}")
    if grey.dtype != np.uint8:
        grey = np.clip(grey, 0, 255).astype(np.uint8)
    return grey


def square_box(box: Sequence[float], margin: float = DEFAULT_MARGIN) -> Tuple[int, int, int]:
    """A square (x, y, side) around an (x, y, w, h) box, widened by `margin` per side."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), max(1, int(round(side)))


def crop_face(image: np.ndarray, box: Optional[Sequence[float]] = None, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """uint8 48x48 grey face from an image and an optional (x, y, w, h) box.

    Without a box the whole image is taken (centre square), which is what a FER2013 row or
    a pre-cropped face photo is. Parts of the square outside the image are filled by
    replicating the border, so faces at the frame edge keep their scale.
    """
    return _warp(*_box_frame(image, box, margin))


def align_face(image: np.ndarray, eyes: Sequence[Sequence[float]]) -> np.ndarray:
    """uint8 48x48 grey face framed from its eyes as FER2013 frames a face: scaled so the
    eyes are FER_EYE_DISTANCE apart, their midpoint at FER_EYE_MIDPOINT. The head keeps its
    tilt, as FER2013's faces do. `eyes` are the two eye centres in image pixels."""
    return _warp(*_eye_frame(image, eyes))


# A frame: the grey image, and the warp that cuts the 48x48 face from it (scale, source, target).
Frame = Tuple[np.ndarray, float, Tuple[float, float], Tuple[float, float]]


def _box_frame(image: np.ndarray, box: Optional[Sequence[float]], margin: float) -> Frame:
    grey = to_grey(image)
    h, w = grey.shape
    if box is None:
        side = min(h, w)
        x0, y0 = (w - side) // 2, (h - side) // 2
    else:
        x0, y0, side = square_box(box, margin)
    return grey, SIZE / side, (x0 + side / 2.0, y0 + side / 2.0), (SIZE / 2.0, SIZE / 2.0)


def _eye_frame(image: np.ndarray, eyes: Sequence[Sequence[float]]) -> Frame:
    (x0, y0), (x1, y1) = eyes
    distance = max(float(np.hypot(x1 - x0, y1 - y0)), 1.0)
    return to_grey(image), FER_EYE_DISTANCE / distance, ((x0 + x1) / 2.0, (y0 + y1) / 2.0), FER_EYE_MIDPOINT


def detail(face: np.ndarray) -> float:
    """How much fine detail a 48x48 face holds: the mean absolute Laplacian over its
    contrast (inner 44x44, so the border replication of a crop at the frame edge is left out)."""
    inner = np.asarray(face, np.float32)
    laplacian = cv2.Laplacian(inner, cv2.CV_32F, ksize=1)[2:-2, 2:-2]
    return float(np.abs(laplacian).mean() / (inner[2:-2, 2:-2].std() + 1.0))


def _warp(grey: np.ndarray, scale: float, source: Tuple[float, float], target: Tuple[float, float]) -> np.ndarray:
    """The 48x48 face, with no more detail than FER2013's faces have (DETAIL_CEILING): the
    plain warp, or, for a sharp face taken from many more pixels, the warp of a blurred copy
    of the region it covers, with the least blur of BLUR_STEPS that is enough."""
    face = _plain_warp(grey, scale, source, target)
    if scale >= 1.0 or detail(face) <= DETAIL_CEILING:
        return face
    unit = 0.5 * (1.0 / scale - 1.0)
    pad = int(np.ceil(3 * unit * BLUR_STEPS[-1])) + 2
    height, width = grey.shape
    x0 = max(int(np.floor(source[0] - target[0] / scale)) - pad, 0)
    y0 = max(int(np.floor(source[1] - target[1] / scale)) - pad, 0)
    x1 = min(int(np.ceil(source[0] + (SIZE - target[0]) / scale)) + pad, width)
    y1 = min(int(np.ceil(source[1] + (SIZE - target[1]) / scale)) + pad, height)
    if x1 <= x0 or y1 <= y0:
        return face
    region, inside = grey[y0:y1, x0:x1], (source[0] - x0, source[1] - y0)
    for step in BLUR_STEPS:
        face = _plain_warp(cv2.GaussianBlur(region, (0, 0), step * unit), scale, inside, target)
        if detail(face) <= DETAIL_CEILING:
            break
    return face


def _plain_warp(grey: np.ndarray, scale: float, source: Tuple[float, float],
                target: Tuple[float, float]) -> np.ndarray:
    """The 48x48 face in one bilinear warp: `source` (image pixels) lands on `target` (face
    pixels), scaled by `scale`. One resampling, as the training augmentation resamples a face;
    averaging every face down (INTER_AREA) softens the soft ones too, and they read worse
    (docs/model.md). Pixel centres are aligned, so a 48-pixel square is copied exactly."""
    # Pixel centres sit at +0.5: map centre to centre so that no half-pixel shift creeps in.
    shift_x = (target[0] - 0.5) - scale * (source[0] - 0.5)
    shift_y = (target[1] - 0.5) - scale * (source[1] - 0.5)
    matrix = np.array([[scale, 0.0, shift_x], [0.0, scale, shift_y]])
    return cv2.warpAffine(grey, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_detected(image: np.ndarray, detection: Any, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The 48x48 face of one detection: aligned from its eyes when the detector gave them
    (BlazeFace), else the box widened by `margin` (Haar)."""
    return crop_views(image, detection, margin, 1)[0]


def crop_views(image: np.ndarray, detection: Any = None, margin: float = DEFAULT_MARGIN, count: int = 1) -> np.ndarray:
    """(count, 48, 48): the face of `detection` (or the whole image, for a face already
    cropped) framed as `crop_detected` frames it, then as VIEWS' first `count` variations
    of that frame. The first is the plain crop. Averaging the network's answers over
    slightly different framings evens out its sensitivity to where the frame falls."""
    eyes = getattr(detection, "eyes", None)
    if eyes is not None:
        grey, scale, source, target = _eye_frame(image, eyes)
    else:
        grey, scale, source, target = _box_frame(image, None if detection is None else detection[:4], margin)
    centre = SIZE / 2.0
    return np.stack([_warp(grey, scale * zoom, source, (target[0] + (zoom - 1.0) * (target[0] - centre) + dx,
                                                         target[1] + (zoom - 1.0) * (target[1] - centre) + dy))
                     for dx, dy, zoom in VIEWS[:max(1, count)]])


def to_model_input(faces: np.ndarray, dtype: Any = np.float32, scale: Optional[float] = None,
                   zero_point: int = 0) -> np.ndarray:
    """Batch (N,48,48,1) for the model from uint8 faces (N,48,48) or one face (48,48).

    The network takes raw grey levels 0..255 and rescales inside its graph; an int8 model
    takes them quantized with its input (scale, zero_point), which for our models is
    (1.0, -128), so int8 input is exactly pixel - 128 and nothing is lost.
    """
    faces = np.asarray(faces)
    if faces.ndim == 2:
        faces = faces[None]
    x = faces.astype(np.float32)[..., None]
    if scale is None:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)
