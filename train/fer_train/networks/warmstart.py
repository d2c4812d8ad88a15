"""Start training from a shipped model: the float32 twin that `fer-convert --float32` writes.

Why: a run folder (hundreds of MB of checkpoints) is never committed, but the float32
twin of a shipped model is, so any later session can continue training the shipped
network with `fer-train fit --init-from models/NAME-float32.tflite`.

The TFLite converter folded every batch-norm into the convolution before it (kernel
scaled, bias added). We load the folded kernels into the Keras network and make each
batch-norm 'add the folded bias': its moving mean and variance are set to what its
convolution really outputs on Training faces, and gamma/beta undo exactly that. The
network then computes the twin's function in inference, and nearly the same in
training mode, where batch-norm normalises by each batch's own statistics.
"""

import keras
import numpy as np
from keras import layers
from typing import Any, List, Optional, Tuple

from fer_edge.model.litert import allocate_tensors, make_interpreter
from fer_edge.model.metadata import read_metadata

_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
LayerPairs = List[Tuple[keras.layers.Layer, Optional[keras.layers.Layer]]]  # a weighted layer, its batch-norm
STATISTICS_FACES = 4000  # Training faces the batch-norm statistics of a loaded twin are measured on


def _twin_weights(model_bytes: bytes) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """(op name, kernel, bias) of each weighted op of a float32 TFLite model, in graph order."""
    interpreter = make_interpreter(model_bytes)
    allocate_tensors(interpreter)
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    weighted = []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in _WEIGHTED_OPS:
            continue
        kernel_index, bias_index = op["inputs"][1], op["inputs"][2]
        if tensors[kernel_index]["dtype"] != np.float32:
            raise ValueError("--init-from needs the float32 twin (fer-convert --float32), not a quantized model")
        weighted.append((op["op_name"], interpreter.get_tensor(kernel_index).copy(),
                         interpreter.get_tensor(bias_index).copy()))
    return weighted


def _keras_kernel(op_name: str, kernel: np.ndarray) -> np.ndarray:
    """TFLite's kernel layout -> Keras's."""
    if op_name == "CONV_2D":  # (out, kh, kw, in) -> (kh, kw, in, out)
        return kernel.transpose(1, 2, 3, 0)
    if op_name == "DEPTHWISE_CONV_2D":  # (1, kh, kw, channels) -> (kh, kw, channels, 1)
        return kernel[0][..., None]
    return kernel.T  # FULLY_CONNECTED: (out, in) -> (in, out)


def _weighted_layers(model: keras.Model) -> LayerPairs:
    """[(layer, the batch-norm after it or None)] in graph order, as TFLite lists the ops."""
    pairs = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            after = model.layers[i + 1] if i + 1 < len(model.layers) else None
            pairs.append((layer, after if isinstance(after, layers.BatchNormalization) else None))
    return pairs


def load_float_twin(model: Any, path: str, images: np.ndarray, arch: str, batch_size: int = 256) -> dict:
    """Load the float32 twin at `path` into `model`, built as `arch`; return its metadata.

    `images`: uint8 Training faces (N, 48, 48) to measure the batch-norm statistics on.
    """
    with open(path, "rb") as f:
        model_bytes = f.read()
    metadata = read_metadata(model_bytes, path)
    if metadata.get("quantization") != "float32":
        raise ValueError(f"{path}: this needs the float32 twin (fer-convert --float32), this one is {metadata.get('quantization')}")
    if metadata.get("architecture") != arch:
        raise ValueError(f"{path} is a {metadata.get('architecture')} model, not {arch}")
    if metadata.get("flip_average"):
        raise ValueError(f"{path}: a flip-averaged model cannot seed a single network")
    twin, pairs = _twin_weights(model_bytes), _weighted_layers(model)
    if len(twin) != len(pairs):
        raise ValueError(f"{path}: {len(twin)} weighted layers, the network {model.name} has {len(pairs)}")
    for (op_name, kernel, bias), (layer, norm) in zip(twin, pairs):
        kernel = _keras_kernel(op_name, kernel)
        if tuple(kernel.shape) != tuple(layer.kernel.shape):
            raise ValueError(f"{path}: its kernel for {layer.name} is {tuple(kernel.shape)}, the network's is {tuple(layer.kernel.shape)}")
        if norm is None and layer.bias is None:
            raise ValueError(f"{path}: {layer.name} has neither a bias nor a batch-norm to take the twin's bias")
        layer.kernel.assign(kernel)
        if norm is None:
            layer.bias.assign(bias)
        else:  # identity plus bias, before the real statistics are known
            eps = norm.epsilon
            norm.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), np.full_like(bias, 1.0 - eps)])
    _match_batchnorm_statistics(model, pairs, images, batch_size)
    return metadata


def _match_batchnorm_statistics(model: keras.Model, pairs: LayerPairs, images: np.ndarray, batch_size: int) -> None:
    """Give each batch-norm its convolution's real output statistics, keeping its function."""
    normed = [(layer, norm) for layer, norm in pairs if norm is not None]
    probe = keras.Model(model.inputs, [layer.output for layer, _ in normed])
    sums = [np.zeros(layer.output.shape[-1]) for layer, _ in normed]
    squares = [np.zeros(layer.output.shape[-1]) for layer, _ in normed]
    counts = [0] * len(normed)
    for start in range(0, len(images), batch_size):
        outputs = probe([images[start:start + batch_size, ..., None].astype(np.float32)], training=False)
        for k, z in enumerate(outputs):
            z = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
            sums[k] = sums[k] + z.sum(axis=0)
            squares[k] = squares[k] + (z * z).sum(axis=0)
            counts[k] += z.shape[0]
    for k, (_, norm) in enumerate(normed):
        mean = sums[k] / counts[k]
        var = np.maximum(squares[k] / counts[k] - mean * mean, 1e-6)
        bias = norm.beta.numpy()
        # gamma * (z - mean) / sqrt(var + eps) + beta  ==  z + bias
        norm.set_weights([np.sqrt(var + norm.epsilon).astype(np.float32), (bias + mean).astype(np.float32),
                          mean.astype(np.float32), var.astype(np.float32)])
