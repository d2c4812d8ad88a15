"""Compact CNNs for 48x48 grey faces, sized for a Raspberry Pi.

Both take raw grey levels 0..255 and rescale in-graph, so the int8 input is simply
pixel - 128.

`ferdsnet` is a residual depthwise-separable network (Xception/MobileNet style): the
fewest multiply-adds, but depthwise convolutions use a CPU badly, both in training and
in int8 inference. `fercnn` spends its multiply-adds on full 3x3 convolutions at 24x24
and 12x12, where CPUs run them several times faster per multiply-add, and switches to
depthwise-separable blocks at 6x6, where full convolutions would cost most of the
parameters (the model file). docs/model.md compares their speed.
"""

import keras
from keras import layers
from typing import List, Optional, Sequence, Tuple

from fer_edge.core.labels import LABELS


def _ds_conv(x: keras.KerasTensor, channels: int, stride: int = 1, relu: bool = True,
             name: Optional[str] = None) -> keras.KerasTensor:
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_dwbn")(x)
    x = layers.ReLU(name=f"{name}_dwrelu")(x)
    x = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_pwbn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual(x: keras.KerasTensor, channels: int, name: str) -> keras.KerasTensor:
    shortcut = x
    x = _ds_conv(x, channels, name=f"{name}a")
    x = _ds_conv(x, channels, relu=False, name=f"{name}b")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, x]))


def _conv(x: keras.KerasTensor, channels: int, stride: int = 1, name: Optional[str] = None) -> keras.KerasTensor:
    x = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _stem(size: int, channels: int) -> Tuple[keras.KerasTensor, keras.KerasTensor]:
    """The 0..255 grey input, rescaled in-graph, and a full 3x3 convolution at full resolution."""
    inputs = keras.Input((size, size, 1), name="face")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    return inputs, _conv(x, channels, name="stem")


def _head(inputs: keras.KerasTensor, x: keras.KerasTensor, dropout: float, name: str) -> keras.Model:
    """Global average pooling, dropout, one logit per label."""
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, layers.Dense(len(LABELS), name="logits")(x), name=name)


def ferdsnet(widths: Sequence[int] = (32, 64, 128, 256), blocks: Sequence[int] = (0, 1, 1, 1), dropout: float = 0.3,
             size: int = 48) -> keras.Model:
    """Stem at full resolution, then one stage per width, each halving the resolution."""
    inputs, x = _stem(size, widths[0])
    for stage, (width, n_blocks) in enumerate(zip(widths, blocks)):
        x = _ds_conv(x, width, stride=1 if stage == 0 else 2, name=f"s{stage}t")
        for b in range(n_blocks):
            x = _residual(x, width, name=f"s{stage}b{b}")
    return _head(inputs, x, dropout, "ferdsnet")


def fercnn(stem: int = 32, full: Sequence[Tuple[int, int]] = ((48, 2), (96, 2)), separable: Tuple[int, int] = (192, 1),
           dropout: float = 0.3, size: int = 48) -> keras.Model:
    """Full convolutions at 48/24/12 pixels, residual depthwise-separable blocks at 6."""
    inputs, x = _stem(size, stem)
    for stage, (width, n_convs) in enumerate(full):
        for k in range(n_convs):
            x = _conv(x, width, stride=2 if k == 0 else 1, name=f"c{stage}_{k}")
    width, n_blocks = separable
    x = _ds_conv(x, width, stride=2, name="s0t")
    for b in range(n_blocks):
        x = _residual(x, width, name=f"s0b{b}")
    return _head(inputs, x, dropout, "fercnn")


def _basic_block(x: keras.KerasTensor, channels: int, stride: int, name: str) -> keras.KerasTensor:
    """Two full 3x3 convolutions with a shortcut (ResNet's basic block)."""
    shortcut = x
    y = _conv(x, channels, stride=stride, name=f"{name}a")
    y = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}b")(y)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}b_bn")(y)
    if stride != 1 or x.shape[-1] != channels:
        shortcut = layers.Conv2D(channels, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def ferresnet(widths: Sequence[int] = (64, 128, 256), blocks: Sequence[int] = (2, 2, 2), dropout: float = 0.4,
              size: int = 48) -> keras.Model:
    """A teacher, not a device model: residual full convolutions at 24, 12 and 6 pixels,
    several times the device network's work, trained where an accelerator is lent
    (portable.py) and distilled into fercnn."""
    inputs, x = _stem(size, widths[0])
    for stage, (width, n_blocks) in enumerate(zip(widths, blocks)):
        for b in range(n_blocks):
            x = _basic_block(x, width, stride=2 if b == 0 else 1, name=f"r{stage}b{b}")
    return _head(inputs, x, dropout, "ferresnet")


ARCHITECTURES = {
    "fercnn": fercnn,
    "fercnn-l": lambda: fercnn(full=((48, 2), (96, 3)), separable=(192, 2)),
    # fercnn plus a second residual block at 6x6 (343 k parameters, 398 KB int8): it can
    # grow from a trained fercnn (grow.py) and costs the device little (6x6 pixels, +2.8 M
    # multiply-adds). Measured: no more accurate than fercnn (docs/model.md), so not shipped.
    "fercnn-d": lambda: fercnn(separable=(192, 2)),
    "ferdsnet": ferdsnet,
    "ferdsnet-s": lambda: ferdsnet(widths=(16, 32, 64, 128), blocks=(0, 1, 1, 1)),
    "ferdsnet-l": lambda: ferdsnet(widths=(32, 64, 128, 256), blocks=(0, 2, 2, 2)),
    "ferresnet": ferresnet,
}


def build(name: str, n_classes: int = len(LABELS)) -> keras.Model:
    """Architecture `name` with one logit per class."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    model = ARCHITECTURES[name]()
    return model if n_classes == len(LABELS) else with_head(model, n_classes)


def with_head(model: keras.Model, n_classes: int) -> keras.Model:
    """The same network (its layers shared) with a fresh `logits` layer of `n_classes` outputs."""
    features = model.get_layer("dropout").output
    return keras.Model(model.input, layers.Dense(n_classes, name="logits")(features), name=model.name)


def transfer(source: keras.Model, target: keras.Model, source_labels: Sequence[str],
             target_labels: Sequence[str]) -> List[str]:
    """Copy `source`'s weights into `target`, a copy of its network with another label set:
    every layer but the head whole, and the head's weights of each label they share. The
    labels that `source` does not know start from the fresh head; they are returned."""
    for layer in target.layers:
        if layer.name != "logits" and layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    old_kernel, old_bias = source.get_layer("logits").get_weights()
    kernel, bias = target.get_layer("logits").get_weights()
    new = []
    for j, label in enumerate(target_labels):
        if label in source_labels:
            i = list(source_labels).index(label)
            kernel[:, j], bias[j] = old_kernel[:, i], old_bias[i]
        else:
            new.append(label)
    target.get_layer("logits").set_weights([kernel, bias])
    return new


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one forward pass, counted over the conv and dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            out = layer.output.shape
            positions = 1
            for d in out[1:-1]:
                positions *= d
            kernel = layer.kernel.shape  # conv: (kh, kw, in, out); depthwise: (kh, kw, in, mult)
            if isinstance(layer, layers.DepthwiseConv2D):
                total += positions * kernel[0] * kernel[1] * kernel[2] * kernel[3]
            elif isinstance(layer, layers.Conv2D):
                total += positions * kernel[0] * kernel[1] * kernel[2] * kernel[3]
            else:
                total += kernel[0] * kernel[1]
    return int(total)
