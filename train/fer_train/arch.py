"""Compact CNNs for 48x48 grey faces, sized for a Raspberry Pi.

`ferdsnet` is a residual depthwise-separable network (Xception/MobileNet style): full
3x3 convolutions would cost 10x the multiply-adds at this resolution. It takes raw grey
levels 0..255 and rescales in-graph, so the int8 input is simply pixel - 128.
"""

import keras
from keras import layers

from fer_edge.labels import LABELS


def _ds_conv(x, channels, stride=1, relu=True, name=None):
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_dwbn")(x)
    x = layers.ReLU(name=f"{name}_dwrelu")(x)
    x = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_pwbn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual(x, channels, name):
    shortcut = x
    x = _ds_conv(x, channels, name=f"{name}a")
    x = _ds_conv(x, channels, relu=False, name=f"{name}b")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, x]))


def ferdsnet(widths=(32, 64, 128, 256), blocks=(0, 1, 1, 1), dropout=0.3, size=48):
    """Stem at full resolution, then one stage per width, each halving the resolution."""
    inputs = keras.Input((size, size, 1), name="face")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, (width, n_blocks) in enumerate(zip(widths, blocks)):
        x = _ds_conv(x, width, stride=1 if stage == 0 else 2, name=f"s{stage}t")
        for b in range(n_blocks):
            x = _residual(x, width, name=f"s{stage}b{b}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(len(LABELS), name="logits")(x)
    return keras.Model(inputs, outputs, name="ferdsnet")


ARCHITECTURES = {
    "ferdsnet": ferdsnet,
    "ferdsnet-s": lambda: ferdsnet(widths=(16, 32, 64, 128), blocks=(0, 1, 1, 1)),
    "ferdsnet-l": lambda: ferdsnet(widths=(32, 64, 128, 256), blocks=(0, 2, 2, 2)),
}


def build(name):
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]()


def multiply_adds(model):
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
