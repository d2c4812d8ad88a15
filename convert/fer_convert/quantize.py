"""Keras -> TFLite: float32, dynamic-range and full-integer int8 (int8 input and output)."""

import os
from typing import Any, Iterator, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fer_edge.core.errors import UserError  # noqa: E402
from fer_edge.model.preprocess import to_model_input  # noqa: E402
from fer_train.networks.tflite import to_tflite  # noqa: E402

MODES = ("float32", "dynamic", "int8")


def calibration_faces(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A class-stratified random sample of n training faces for int8 calibration."""
    if not len(labels):
        raise UserError("no training faces to calibrate the int8 model on (the data's training part is empty, "
                        "or all its faces are blank)")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, n // len(classes))
    picks: list = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        picks.extend(rng.choice(members, size=min(per_class, len(members)), replace=False))
    rng.shuffle(picks)
    return images[np.array(picks[:n])]


def with_flip_averaging(model: Any) -> Any:
    """The model averaged with itself on the mirrored face (test-time augmentation in the
    graph): one call, about twice the multiply-adds, usually a point or so of accuracy."""
    import keras

    face = keras.Input(model.inputs[0].shape[1:], name="face")
    mirrored = keras.layers.Lambda(lambda t: tf.reverse(t, axis=[2]), name="mirror")(face)
    logits = keras.layers.Average(name="flip_average")([model(face), model(mirrored)])
    return keras.Model(face, logits, name=f"{model.name}_flip")


def convert(model: Any, mode: str, calibration: Optional[np.ndarray] = None) -> bytes:
    """Bytes of a TFLite flatbuffer for `mode`; int8 needs uint8 calibration faces (N,48,48)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    return to_tflite(model, lambda converter: _configure(converter, mode, calibration))


def _configure(converter: tf.lite.TFLiteConverter, mode: str, calibration: Optional[np.ndarray]) -> tf.lite.TFLiteConverter:
    if mode in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 conversion needs calibration faces")

        def representative() -> Iterator[List[np.ndarray]]:
            for face in calibration:
                yield [to_model_input(face)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter
