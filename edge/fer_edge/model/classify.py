"""The emotion classifier: one LiteRT interpreter for the whole run, faces in batches."""

import os
from typing import Optional, Tuple
from importlib import resources

import numpy as np

from .litert import allocate_tensors, make_interpreter
from .metadata import ModelError, read_metadata, read_model_metadata
from .preprocess import DEFAULT_MARGIN, to_model_input

# The shipped models, by size: the small one for every Pi, the large one for Pi 4/5-class CPUs.
SHIPPED_MODELS = {"small": "fer-cnn-int8.tflite", "large": "fer-cnn-l-int8.tflite"}
DEFAULT_MODEL_NAME = SHIPPED_MODELS["small"]


def default_model_path(size: str = "small") -> str:
    """The model of `size` shipped inside the installed package (models/ in the repo)."""
    return str(resources.files("fer_edge.models").joinpath(SHIPPED_MODELS[size]))


def shipped_model(size: str = "auto") -> Tuple[str, str]:
    """(path, why) of the shipped model of `size`; auto: the one this CPU carries."""
    from ..core.hardware import model_size

    if size != "auto":
        return default_model_path(size), f"{size} as set"
    chosen, why = model_size()
    return default_model_path(chosen), why


def configured_model(path: Optional[str], size: str = "auto") -> str:
    """The model file the settings name: `[model] path`, else the shipped one of `[model] size`."""
    return path or shipped_model(size)[0]


def float32_twin(path: str) -> str:
    """Where fer-convert writes a model's float32 twin: NAME-float32.tflite beside NAME.tflite."""
    return path[: -len(".tflite")] + "-float32.tflite" if path.endswith(".tflite") else path + "-float32"


def choose_variant(path: Optional[str], variant: str = "auto", delegate: Optional[str] = None,
                   size: str = "auto") -> Tuple[str, Optional[float], str]:
    """(model file, temperature or None, why) for `variant`: the int8 model (`path`, else the
    shipped one of `size`), or its float32 twin where that is faster (x86 without VNNI) or
    asked for. The twin keeps the int8 model's calibration, which its metadata lacks."""
    size_why = ""
    if path is None:
        path, size_why = shipped_model(size)
        size_why = f"{size_why}; "
    file, temperature, why = _int8_or_twin(path, variant, delegate)
    return file, temperature, size_why + why


def _int8_or_twin(path: str, variant: str, delegate: Optional[str]) -> Tuple[str, Optional[float], str]:
    from ..core.hardware import fast_variant
    from .metadata import ModelError

    twin = float32_twin(path)
    if variant == "int8" or delegate == "edgetpu":
        return path, None, "int8 as set" if variant == "int8" else "int8 for the Edge TPU"
    if not os.path.exists(twin):
        if variant == "float32":
            raise ModelError(f"{twin}: no float32 twin beside {os.path.basename(path)} (fer-convert --float32 writes it)")
        return path, None, "no float32 twin beside it"
    if variant == "auto":
        chosen, why = fast_variant()
        if chosen == "int8":
            return path, None, why
    else:
        why = "float32 as set"
    temperature = read_model_metadata(path).get("calibration", {}).get("temperature")
    return twin, temperature, why


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class EmotionClassifier:
    """Wraps one interpreter; `predict` takes uint8 48x48 faces and returns probabilities.

    With `mirror` each face is also classified flipped left-right, in the same batch, and
    the two answers are averaged: an expression reads the same in a mirror, the network's
    errors do not. Probabilities are divided by the temperature the model's metadata
    carries (`fer-edge calibrate`), so that a face called 70 % happy is happy 70 % of the time.
    """

    def __init__(self, model_path: Optional[str] = None, threads: int = 1, delegate: Optional[str] = None,
                 mirror: bool = True, temperature: Optional[float] = None, variant_reason: str = ""):
        self.path = model_path or default_model_path()
        self.name = os.path.basename(self.path)   # a deployed model is named by its order, not its file
        self.threads = threads
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ModelError(f"{self.path}: cannot read model ({exc.strerror or exc})") from None
        self.metadata = read_metadata(data, source=self.path)
        try:
            self.interpreter = make_interpreter(data, threads=threads, delegate=delegate)
        except ValueError as exc:
            raise ModelError(f"{self.path}: the runtime cannot load it ({str(exc).splitlines()[0]})") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.labels: Tuple[str, ...] = tuple(self.metadata["labels"])
        outputs = int(self.output["shape"][-1])
        if outputs != len(self.labels):
            raise ModelError(f"{self.path}: the model has {outputs} outputs but its metadata names "
                             f"{len(self.labels)} labels ({', '.join(self.labels)})")
        # Edge TPU models need their static batch of 1; on the CPU we resize to the batch.
        self.can_batch = delegate != "edgetpu"
        self.batch = int(self.input["shape"][0])
        allocate_tensors(self.interpreter)
        self.input_dtype = self.input["dtype"]
        scale, zero = self.input["quantization"]
        self.input_quant = (scale, zero) if scale else None
        out_scale, out_zero = self.output["quantization"]
        self.output_quant = (out_scale, out_zero) if out_scale else None
        self.output_kind = self.metadata.get("output", {}).get("kind", "logits")
        self.mirror = mirror
        self.variant_reason = variant_reason  # why this file of the model's twins runs (the start line says it)
        self.temperature = float(temperature or self.metadata.get("calibration", {}).get("temperature", 1.0))

    @property
    def margin(self) -> float:
        """The crop margin the model was converted for (chosen on real photos, see docs/model.md)."""
        return float(self.metadata.get("preprocess", {}).get("margin", DEFAULT_MARGIN))

    def _allocate(self, n: int) -> None:
        self.interpreter.resize_tensor_input(self.input["index"], [n, *self.input["shape"][1:]])
        self.interpreter.allocate_tensors()
        self.batch = n

    def _resize(self, n: int) -> None:
        if n == self.batch:
            return
        try:
            self._allocate(n)
        except (RuntimeError, ValueError):
            # Some graphs bake their batch size in (a reshape): go back to one face per call.
            self._allocate(1)
            self.can_batch = False

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"]).astype(np.float32)
        if self.output_quant:
            out = (out - self.output_quant[1]) * self.output_quant[0]
        return out

    def predict(self, faces: np.ndarray, max_batch: int = 64) -> np.ndarray:
        """Probabilities (N, labels) for uint8 faces (N,48,48), one face (48,48), or several
        views of each face (N,views,48,48, `preprocess.crop_views`): every view of every face,
        and its mirror image, in one batch, and each face's answers averaged."""
        faces = np.asarray(faces)
        if faces.ndim == 4:
            count, views = faces.shape[:2]
            flat = probabilities(self.logits(faces.reshape(-1, *faces.shape[2:]), max_batch), self.temperature, self.mirror)
            return flat.reshape(count, views, -1).mean(axis=1)
        return probabilities(self.logits(faces, max_batch), self.temperature, self.mirror)

    def logits(self, faces: np.ndarray, max_batch: int = 64) -> np.ndarray:
        """Log-probabilities up to a constant, before calibration: (N, labels), or (2, N, labels) with
        mirror (the faces, then the same faces flipped)."""
        faces = np.asarray(faces)
        if faces.ndim == 2:
            faces = faces[None]
        if self.mirror:
            return self._logits(np.concatenate([faces, faces[:, :, ::-1]]), max_batch).reshape(2, len(faces), len(self.labels))
        return self._logits(faces, max_batch)

    def _logits(self, faces: np.ndarray, max_batch: int) -> np.ndarray:
        if self.input_quant:
            x = to_model_input(faces, self.input_dtype, *self.input_quant)
        else:
            x = to_model_input(faces, self.input_dtype)
        outputs = []
        step = max_batch if self.can_batch else 1
        start = 0
        while start < len(x):
            chunk = x[start:start + step]
            self._resize(len(chunk))
            if len(chunk) != self.batch:  # batching just turned out impossible
                step, chunk = 1, chunk[:1]
            outputs.append(self._run(chunk))
            start += len(chunk)
        out = np.concatenate(outputs) if outputs else np.zeros((0, len(self.labels)), np.float32)
        return np.log(np.clip(out, 1e-7, None)) if self.output_kind == "probabilities" else out


def probabilities(logits: np.ndarray, temperature: float = 1.0, mirror: bool = False) -> np.ndarray:
    """Calibrated probabilities from `EmotionClassifier.logits`: softmax(logits / T), the
    face and its mirror image averaged."""
    probs = softmax(np.asarray(logits, np.float32).reshape(-1, logits.shape[-1]) / temperature)
    return probs.reshape(logits.shape).mean(axis=0) if mirror else probs
