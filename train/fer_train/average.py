"""Weight averaging of a run's last epochs (SWA-style), with batch-norm statistics redone.

The weights of the last K epochs of a cosine schedule lie around one minimum; their mean
usually sits nearer its centre than any single epoch and generalises a little better, at
no cost on the device (same network, same size). The averaged batch-norm running means
and variances do not belong to the averaged weights, so they are measured again over the
Training faces (no augmentation), as SWA does.
"""

import glob
import json
import os
import re
import shutil

import keras
import numpy as np

from .fit import _atomic_save, _write_json, epoch_weights_path, finish


def saved_epochs(run):
    """Epoch numbers with a weights file in run/epochs, ascending."""
    names = glob.glob(os.path.join(run, "epochs", "epoch-*.weights.h5"))
    return sorted(int(re.search(r"epoch-(\d+)", os.path.basename(n)).group(1)) for n in names)


def average_weights(model, paths):
    """Load each weights file into `model` and leave their element-wise mean in it."""
    total = None
    for path in paths:
        model.load_weights(path)
        weights = model.get_weights()
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    model.set_weights([t / len(paths) for t in total])


def recompute_batchnorm(model, images, batch_size=256):
    """Set every BatchNormalization's running statistics to their mean over `images`.

    A momentum of (k-1)/k at the k-th batch makes the running value the plain mean of the
    k batch statistics. Runs eagerly so the changed momentum is read at every call.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    for k, start in enumerate(range(0, len(images), batch_size), start=1):
        for layer in norms:
            layer.momentum = (k - 1) / k
        model(images[start:start + batch_size, ..., None].astype(np.float32), training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum


def average_run(run, data, last, out, command=None):
    """Average the weights of `run`'s last `last` epochs into `out`/best.keras and report."""
    epochs = saved_epochs(run)
    if len(epochs) < last:
        raise ValueError(f"{run}: {len(epochs)} epoch weight files, {last} asked for")
    chosen = epochs[-last:]
    with open(os.path.join(run, "state.json")) as f:
        state = json.load(f)
    model = keras.models.load_model(os.path.join(run, "last.keras"), compile=False)
    average_weights(model, [epoch_weights_path(run, e) for e in chosen])
    recompute_batchnorm(model, data["train"].images)
    os.makedirs(out, exist_ok=True)
    _atomic_save(model, os.path.join(out, "best.keras"))
    state = dict(state, averaged={"run": run, "epochs": chosen, "command": command})
    if os.path.exists(os.path.join(run, "history.csv")):  # the curves of the run it came from
        shutil.copyfile(os.path.join(run, "history.csv"), os.path.join(out, "history.csv"))
    _write_json(os.path.join(out, "state.json"), state)
    return finish(out, data, state)
