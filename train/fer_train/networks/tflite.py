"""A Keras network as TFLite bytes: the one export that training (a teacher) and
`fer-convert` (every mode) both go through, so the two packages never import each other
the wrong way round."""

import os
import tempfile
from typing import Any, Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def _saved_model(model: Any, folder: str, batch: int = 1) -> str:
    """Export a static-shape (batch 1) SavedModel: Edge TPU needs static shapes, and the
    CPU runtime resizes the batch freely. (Keras 3 models do not convert from a bare
    concrete function: their variables are not frozen there.)"""
    spec = tf.TensorSpec([batch, *model.inputs[0].shape[1:]], tf.float32, name="face")
    model.export(folder, format="tf_saved_model", input_signature=[spec], verbose=False)
    return folder


def to_tflite(model: Any, configure: Optional[Callable[[Any], Any]] = None) -> bytes:
    """Bytes of a TFLite flatbuffer of `model`: float32, or whatever `configure` makes of
    the converter (it gets the converter and returns it)."""
    with tempfile.TemporaryDirectory() as folder:
        converter = tf.lite.TFLiteConverter.from_saved_model(_saved_model(model, folder))
        if configure is not None:
            converter = configure(converter)
        return converter.convert()
