"""Weight averaging, with batch-norm statistics redone: of a run's last epochs (SWA-style),
or of models fine-tuned from one another (a "weight soup").

The weights of the last K epochs of a cosine schedule lie around one minimum; their mean
usually sits nearer its centre than any single epoch and generalises a little better, at
no cost on the device (same network, same size). A model and the run fine-tuned from it
lie in one basin too, so a weighted mean of the two mixes what each reads best. The
averaged batch-norm running means and variances do not belong to the averaged weights,
so they are measured again over the Training faces (no augmentation), as SWA does.
"""

import functools
import glob
import os
import re
import shutil
from typing import List, Optional, Sequence

import keras
import numpy as np

from fer_edge.model.provenance import Averaging, SoupShare

from ..networks.arch import build
from .fit import finish
from .recipe import atomic_save, epoch_weights_path, write_json
from ..data.run_folder import BEST, LAST, read_run_state, require_new_out


def saved_epochs(run: str) -> List[int]:
    """Epoch numbers with a weights file in run/epochs, ascending."""
    names = glob.glob(os.path.join(run, "epochs", "epoch-*.weights.h5"))
    return sorted(int(re.findall(r"epoch-(\d+)", os.path.basename(n))[0]) for n in names)


def average_weights(model: keras.Model, paths: Sequence[str]) -> None:
    """Load each weights file into `model` and leave their element-wise mean in it."""
    ingredients = []
    for path in paths:
        model.load_weights(path)
        ingredients.append(model.get_weights())
    model.set_weights(weighted_mean(ingredients, [1 / len(paths)] * len(paths)))


def weighted_mean(ingredients: Sequence[Sequence[np.ndarray]], shares: Sequence[float]) -> List[np.ndarray]:
    """Element-wise sum of share x weights over lists of weight arrays of one network."""
    return [functools.reduce(np.add, (share * weights[k] for share, weights in zip(shares, ingredients)))
            for k in range(len(ingredients[0]))]


def recompute_batchnorm(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> None:
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


def average_run(run: str, data: dict, last: int, out: str, command: Optional[str] = None) -> dict:
    """Average the weights of `run`'s last `last` epochs into `out`/best.keras and report."""
    require_new_out(out)
    epochs = saved_epochs(run)
    if len(epochs) < last:
        raise ValueError(f"{run}: {len(epochs)} epoch weight files, {last} asked for")
    chosen = epochs[-last:]
    state = read_run_state(run, LAST)
    model = keras.models.load_model(os.path.join(run, "last.keras"), compile=False)
    average_weights(model, [epoch_weights_path(run, e) for e in chosen])
    return _finish_averaged(model, data, run, out, dict(state, averaged=Averaging(command, run, tuple(chosen)).to_json()))


def _finish_averaged(model: keras.Model, data: dict, run: str, out: str, state: dict) -> dict:
    """Re-measure batch-norm, save into `out` with the state and curves of `run`, and report."""
    recompute_batchnorm(model, data["train"].images)
    os.makedirs(out, exist_ok=True)
    atomic_save(model, os.path.join(out, "best.keras"))
    if os.path.exists(os.path.join(run, "history.csv")):  # the curves of the run it came from
        shutil.copyfile(os.path.join(run, "history.csv"), os.path.join(out, "history.csv"))
    write_json(os.path.join(out, "state.json"), state)
    return finish(out, data, state)


def _ingredient_weights(source: str, arch: str, model: keras.Model, train_images: np.ndarray) -> List[np.ndarray]:
    """The weights of a run folder's best.keras (checked by soup_models), or of a float32 twin
    loaded into `model`."""
    if source.endswith(".tflite"):
        from ..networks.warmstart import STATISTICS_FACES, load_float_twin

        load_float_twin(model, source, train_images[:STATISTICS_FACES], arch)
        return model.get_weights()
    trained = keras.models.load_model(os.path.join(source, "best.keras"), compile=False)
    if [w.shape for w in trained.get_weights()] != [w.shape for w in model.get_weights()]:
        raise ValueError(f"{source} is not a {arch} model like the first run folder")
    return trained.get_weights()


def soup_models(sources: Sequence[str], shares: Sequence[float], data: dict, out: str,
                command: Optional[str] = None) -> dict:
    """Mix models fine-tuned from one another: `shares`-weighted mean of their weights, into `out`.

    The first run folder among `sources` gives the network and the provenance; the
    batch-norm statistics are measured again over the Training faces.
    """
    require_new_out(out)
    if len(shares) != len(sources) or any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise ValueError(f"give one share per model, none negative, summing to 1 (got {', '.join(f'{s:g}' for s in shares)})")
    runs = [s for s in sources if not s.endswith(".tflite")]
    if not runs:
        raise ValueError("a soup needs at least one run folder (it gives the network and the provenance)")
    state = read_run_state(runs[0], BEST)
    for run in runs[1:]:
        read_run_state(run, BEST)  # every folder is checked before any weights load
    arch = state["config"]["arch"]
    model = build(arch)
    ingredients = [_ingredient_weights(s, arch, model, data["train"].images) for s in sources]
    model.set_weights(weighted_mean(ingredients, shares))
    soup = tuple(SoupShare(s, share) for s, share in zip(sources, shares))
    return _finish_averaged(model, data, runs[0], out, dict(state, averaged=Averaging(command, soup=soup).to_json()))
