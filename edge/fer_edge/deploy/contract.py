"""The contract a deployed model must meet before the camera loop gets it: the runtime loads
it (so its ops are ones this device runs), its input is the 48x48 grey face the device
preprocesses, its labels are the ones its signed order names, and one run on a grey face
gives a finite answer per label. The checks of the model's own metadata and outputs are
EmotionClassifier's; this adds what an order promises."""

import time
from typing import List, Optional

import numpy as np

from ..core.errors import UserError
from ..model.classify import EmotionClassifier
from ..model.preprocess import SIZE
from .order import OrderRefused

INPUT_TYPES = (np.float32, np.int8, np.uint8)


def check_model(path: str, header_model: dict, threads: int = 1, delegate: Optional[str] = None,
                mirror: bool = True) -> EmotionClassifier:
    """The classifier of the model at `path` (as the device's [model] settings make it), or
    OrderRefused with one line naming the model by its order's name."""
    name = str(header_model.get("name", path))

    def refuse(reason: str) -> OrderRefused:
        return OrderRefused(f"contract: {reason.replace(path, name)}")

    try:
        classifier = EmotionClassifier(path, threads=threads, delegate=delegate, mirror=mirror)
    except UserError as exc:
        raise refuse(str(exc)) from None
    except (RuntimeError, ValueError) as exc:   # an op or a tensor the runtime cannot allocate
        raise refuse(f"{name}: the runtime cannot run it ({_first_line(exc)})") from None
    shape = [int(n) for n in classifier.input["shape"]]
    if shape[1:] != [SIZE, SIZE, 1]:
        raise refuse(f"{name}: input {'x'.join(map(str, shape[1:]))} is not the {SIZE}x{SIZE}x1 grey face the device gives")
    if classifier.input_dtype not in INPUT_TYPES:
        raise refuse(f"{name}: input type {np.dtype(classifier.input_dtype).name} is not float32, int8 or uint8")
    ordered = list(header_model.get("labels") or [])
    if list(classifier.labels) != ordered:
        raise refuse(f"{name}: its labels ({', '.join(classifier.labels)}) are not the order's ({', '.join(map(str, ordered))})")
    try:
        with np.errstate(all="ignore"):   # a broken answer is refused below, not warned about
            answer = classifier.predict(np.full((SIZE, SIZE), 128, np.uint8))
    except (RuntimeError, ValueError) as exc:
        raise refuse(f"{name}: a run on a grey face failed ({_first_line(exc)})") from None
    if answer.shape != (1, len(ordered)) or not np.all(np.isfinite(answer)):
        raise refuse(f"{name}: a run on a grey face gives no finite probability per label")
    return classifier


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def self_test(classifier: EmotionClassifier, faces: List[np.ndarray]) -> str:
    """Run the new model on the last real faces this camera saw (kept in memory only): finite
    probabilities, one per label, that sum to 1. What it found, or OrderRefused."""
    if not faces:
        return "self-test: no face seen yet to try it on"
    started = time.perf_counter()
    try:
        probabilities = classifier.predict(np.stack(faces))
    except Exception as exc:
        raise OrderRefused(f"self-test failed on {len(faces)} faces this camera saw: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    took = (time.perf_counter() - started) * 1000 / len(faces)
    if (probabilities.shape != (len(faces), len(classifier.labels)) or not np.all(np.isfinite(probabilities))
            or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)):
        raise OrderRefused(f"self-test: the model's answers on {len(faces)} faces this camera saw are not "
                           "probabilities, one per label")
    return f"self-test on {len(faces)} faces this camera saw ok ({took:.1f} ms a face)"
