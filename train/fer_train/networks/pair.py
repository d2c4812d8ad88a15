"""Two trained networks read as one model: the share-weighted mean of their log-probabilities.

Why: networks of different shapes, trained on different recipes, err on different faces, so
their normalised geometric mean (what `fer-edge eval --model A --model B` measures) reads
faces better than either. In one graph the pair converts, calibrates, deploys and is measured
like any single model, and the device needs no code of its own for it.
"""

from typing import Sequence

import keras
from keras import layers


def pair_networks(members: Sequence[keras.Model], shares: Sequence[float], names: Sequence[str]) -> keras.Model:
    """One model whose logits are sum(share * log_softmax(member logits)): each member keeps
    its own weights, under its own name (the members may share layer names)."""
    size = members[0].input.shape[1]
    inputs = keras.Input((size, size, 1), name="face")
    terms = []
    for member, share, name in zip(members, shares, names):
        own = keras.Model(member.input, member.output, name=name)
        log_probs = layers.Activation("log_softmax", name=f"{name}_log_probs")(own(inputs))
        terms.append(layers.Rescaling(share, name=f"{name}_share")(log_probs))
    return keras.Model(inputs, layers.Add(name="logits")(terms), name="pair")
