"""Grow a trained network into a deeper one that contains it, keeping its function.

Why: a larger student learns more from the same teachers, but training it from scratch
throws away every CPU-hour already spent. A network that only adds residual blocks to
a parent (`fercnn-d` is `fercnn` with a second block at 6x6) can start as the parent:
every layer the parent has is copied by name, and each new residual block's last
batch-norm starts with gamma = beta = 0, so the block adds nothing and its output is
ReLU(its input) = its input (blocks follow a ReLU). The grown network then computes
the parent's function exactly, in inference and in training mode, and the new block
learns from there (the "zero-init last batch-norm" trick of residual networks).
"""

import numpy as np
from keras import layers
from typing import Any, List


def grow_into(parent: Any, model: Any) -> List[str]:
    """Copy `parent`'s weights into `model` by layer name; new residual blocks start as identity.

    Raises ValueError when `model` does not contain `parent` (a layer missing or of
    another shape) or adds anything but whole residual blocks.
    """
    ours = {layer.name: layer for layer in model.layers}
    for layer in parent.layers:
        target = ours.get(layer.name)
        if target is None or type(target) is not type(layer):
            raise ValueError(f"the network {model.name} has no layer {layer.name} like {parent.name}'s: it cannot grow from it")
        weights = layer.get_weights()
        if [w.shape for w in weights] != [w.shape for w in target.get_weights()]:
            raise ValueError(f"layer {layer.name} has other shapes in {model.name} than in {parent.name}")
        target.set_weights(weights)
    known = {layer.name for layer in parent.layers}
    new_adds = [layer for layer in model.layers if isinstance(layer, layers.Add) and layer.name not in known]
    silenced = set()
    for add in new_adds:
        branch = add.input[1]._keras_history.operation  # the residual branch's last layer
        if not isinstance(branch, layers.BatchNormalization) or branch.name in known:
            raise ValueError(f"{model.name}: new block {add.name} does not end in a new batch-norm")
        gamma, beta, mean, var = branch.get_weights()
        branch.set_weights([np.zeros_like(gamma), np.zeros_like(beta), mean, var])
        silenced.add(add.name.removesuffix("_add"))
    stray = [layer.name for layer in model.layers
             if layer.name not in known and not any(layer.name.startswith(block) for block in silenced)]
    if stray:
        raise ValueError(f"{model.name} adds {', '.join(stray)} outside new residual blocks: it cannot grow from {parent.name}")
    return sorted(silenced)
