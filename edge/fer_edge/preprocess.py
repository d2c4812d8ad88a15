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
    grey = to_grey(image)
    h, w = grey.shape
    if box is None:
        side = min(h, w)
        x0, y0 = (w - side) // 2, (h - side) // 2
    else:
        x0, y0, side = square_box(box, margin)
    return _warp(grey, SIZE / side, (x0 + side / 2.0, y0 + side / 2.0), (SIZE / 2.0, SIZE / 2.0))


def align_face(image: np.ndarray, eyes: Sequence[Sequence[float]]) -> np.ndarray:
    """uint8 48x48 grey face framed from its eyes as FER2013 frames a face: scaled so the
    eyes are FER_EYE_DISTANCE apart, their midpoint at FER_EYE_MIDPOINT. The head keeps its
    tilt, as FER2013's faces do. `eyes` are the two eye centres in image pixels."""
    (x0, y0), (x1, y1) = eyes
    distance = max(float(np.hypot(x1 - x0, y1 - y0)), 1.0)
    return _warp(to_grey(image), FER_EYE_DISTANCE / distance, ((x0 + x1) / 2.0, (y0 + y1) / 2.0), FER_EYE_MIDPOINT)


def _warp(grey, scale, source, target):
    """The 48x48 face in one bilinear warp: `source` (image pixels) lands on `target` (face
    pixels), scaled by `scale`. One resampling and no smoothing, as the training augmentation
    resamples a face: a face averaged down (INTER_AREA) is softer than what the network
    learnt from and reads worse (docs/model.md). Pixel centres are aligned, so a
    48-pixel square is copied exactly."""
    # Pixel centres sit at +0.5: map centre to centre so that no half-pixel shift creeps in.
    shift_x = (target[0] - 0.5) - scale * (source[0] - 0.5)
    shift_y = (target[1] - 0.5) - scale * (source[1] - 0.5)
    matrix = np.array([[scale, 0.0, shift_x], [0.0, scale, shift_y]])
    return cv2.warpAffine(grey, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_detected(image: np.ndarray, detection: Any, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The 48x48 face of one detection: aligned from its eyes when the detector gave them
    (BlazeFace), else the box widened by `margin` (Haar)."""
    eyes = getattr(detection, "eyes", None)
    return align_face(image, eyes) if eyes is not None else crop_face(image, detection[:4], margin)


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
