"""The training loop: resumable, checkpointed every epoch, early stopping on PublicTest.

A run folder holds `last.keras` (model + optimizer, for --resume), `best.keras` (best
PublicTest accuracy), `epochs/epoch-NNN.weights.h5` (every epoch's weights, for
`fer-train average`), `history.csv` (appended and flushed every epoch), `state.json`,
and at the end `metrics.json`, `confusion.png` and `curves.png`.
"""

import dataclasses
import math
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from fer_edge.core.labels import LABELS
from fer_edge.model.metrics import classification_report
from fer_edge.model.provenance import Ancestor, Distillation, FerPlusVotes, Provenance

from ..networks.arch import ARCHITECTURES, build, transfer
from .augment import make_augmenter
from .camera import make_camera_augmenter
from ..networks.grow import grow_into
from .recipe import RunRecorder, class_weights, clear_run, keep_split, new_run_state, write_json
from ..data.run_folder import LAST, FitConfig, RunRecord, parent_labels_of, read_run_state


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, augment: Optional[Callable] = None,
                 weights: Optional[np.ndarray] = None, shuffle: bool = False, smoothing: float = 0.0,
                 mixes: Sequence[Tuple[np.ndarray, float]] = (), live: Optional[Tuple[Callable, float]] = None,
                 n_classes: int = len(LABELS)) -> Any:
    """tf.data pipeline of (float32 N,48,48,1 in 0..255, targets[, sample weights]).

    Targets are the one-hot labels, smoothed, then mixed in turn with each `(probabilities
    (N,7), weight)` of `mixes` (teachers, then human votes): `weight` is that source's
    share of the target so far. A row whose probabilities are all zero (a face nobody
    voted on) keeps its target. `live` (`(teachers, weight)`, distill.Teachers) mixes
    in the teachers' probabilities over each augmented batch instead, after augmentation.
    """
    targets = keras.utils.to_categorical(labels, n_classes).astype(np.float32)
    if smoothing:
        targets = targets * (1.0 - smoothing) + smoothing / n_classes
    for probabilities, weight in mixes:
        known = (probabilities.sum(axis=1) > 0)[:, None]
        targets = np.where(known, (1.0 - weight) * targets + weight * probabilities, targets).astype(np.float32)
    parts = (images[..., None], targets) if weights is None else (images[..., None], targets, weights[labels].astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, *rest: (augment(tf.cast(x, tf.float32)), *rest), num_parallel_calls=1)
    else:
        ds = ds.map(lambda x, *rest: (tf.cast(x, tf.float32), *rest))
    if live is not None:
        teachers, weight = live

        def consult(x: tf.Tensor, targets: tf.Tensor, *rest: tf.Tensor) -> Tuple[tf.Tensor, ...]:
            seen = tf.numpy_function(teachers, [x], tf.float32, stateful=False)
            seen.set_shape(targets.shape)
            return (x, (1.0 - weight) * targets + weight * seen, *rest)

        ds = ds.map(consult, num_parallel_calls=1)
    return ds.prefetch(2)


def predict_labels(model: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    logits = model.predict(images[..., None].astype(np.float32), batch_size=batch_size, verbose=0)
    return logits.argmax(axis=1)


def fit(data: dict, out: str, config: FitConfig, resume: bool = False, command: Optional[str] = None,
        init_from: Optional[str] = None, ferplus_votes: Optional[np.ndarray] = None,
        folder: Optional[dict] = None) -> dict:
    """Train on data['train'], select on data['val'] (PublicTest), report on data['test'].

    `init_from` (a finished run folder, or a shipped model's float32 twin `*-float32.tflite`)
    starts from those weights with a fresh warm-up and cosine cycle: a warm restart (SGDR),
    which lets a finished run be extended by a second cycle whose peak learning rate is
    chosen anew. The new run records its parent.

    `config.teachers` (fer-edge .tflite models) turn the targets into a mix of label and
    teacher probabilities, `distill_weight` of the latter (see distill.py): computed once over
    the clean faces, or with `live_teachers` over every augmented batch (mixed in last).

    `config.ferplus` names the FER+ vote file; `ferplus_votes`, its (N,7) vote shares for
    data['train'], are then mixed into each face's target at `ferplus_weight`.

    `camera_augment` adds the effects of a detector and a camera (camera.py) after the
    usual augmentation; `one_warp` does its geometry in one resampling (augment.py);
    `class_weight_power` weighs rare classes up (0: not at all, 1: fully balanced).

    The model has one output per `config.labels`; a parent with other labels gives all its
    weights but the head's, and the head's of the labels both share. `folder` (a folder
    dataset's split record) is kept in the run folder as split.json.
    """
    os.makedirs(out, exist_ok=True)
    state_path = os.path.join(out, "state.json")
    config = dataclasses.replace(config, teachers=tuple(os.path.abspath(t) for t in config.teachers),
                                 ferplus=os.path.abspath(config.ferplus) if config.ferplus else None)
    keras.utils.set_random_seed(config.seed)
    if resume and os.path.exists(state_path) and os.path.exists(os.path.join(out, "last.keras")):
        state = read_run_state(out, LAST)
        # The run keeps its own settings; only --epochs may change, to extend a finished run.
        config = dataclasses.replace(FitConfig.from_json(state["config"]), epochs=config.epochs)
        state["config"] = config.to_json()
        model = keras.models.load_model(os.path.join(out, "last.keras"))
        initial_epoch = state["epoch"]
        keras.utils.set_random_seed(config.seed + initial_epoch)  # a fresh, reproducible shuffle after resume
        print(f"resuming {out} after epoch {initial_epoch} "
              f"(best PublicTest {state['best_val_accuracy'] * 100:.2f}% at epoch {state['best_epoch']})", flush=True)
    else:
        if resume:
            print(f"nothing to resume in {out}; starting a new run", flush=True)
        clear_run(out)
        model = build(config.arch, len(config.labels))
        parent = _load_parent(init_from, config.arch, model, data["train"].images, config.labels) if init_from else None
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=config.lr, weight_decay=config.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        initial_epoch = 0
        state = new_run_state(config.to_json(), command, model, data)
        keep_split(out, state, folder)
        if parent:
            state["init_from"] = parent.to_json()
            state["before"] = _measure_before(model, data, config.labels)
        if config.teachers:
            from ..teachers.distill import describe_teachers
            state["distilled"] = Distillation(describe_teachers(config.teachers, config.labels), config.distill_weight,
                                              config.temperature, config.live_teachers).to_json()
        if config.ferplus and ferplus_votes is not None:
            state["ferplus"] = FerPlusVotes(os.path.basename(config.ferplus), config.ferplus_weight,
                                            int((ferplus_votes.sum(axis=1) > 0).sum())).to_json()
        write_json(state_path, state)
    train, val = data["train"], data["val"]
    weights = class_weights(train.labels, config.class_weight_power, len(config.labels))
    mixes = []
    live = None
    if config.teachers and config.live_teachers:
        from ..teachers.distill import Teachers
        live = (Teachers(config.teachers, config.temperature), config.distill_weight)
    elif config.teachers:
        from ..teachers.distill import cached_teacher_targets
        mixes.append((cached_teacher_targets(out, config.teachers, train.images, config.temperature),
                      config.distill_weight))
    if config.ferplus:
        if ferplus_votes is None:
            raise ValueError(f"{out} was trained with --ferplus {config.ferplus}; give it again to resume")
        mixes.append((ferplus_votes, config.ferplus_weight))
    usual = make_augmenter(config.seed, one_warp=config.one_warp)
    if config.camera_augment:
        camera = make_camera_augmenter(config.seed)
        augment = lambda images: camera(usual(images))  # noqa: E731
    else:
        augment = usual
    train_ds = make_dataset(train.images, train.labels, config.batch_size, config.seed,
                            augment=augment, weights=weights, shuffle=True,
                            smoothing=config.smoothing, mixes=mixes, live=live, n_classes=len(config.labels))
    val_ds = make_dataset(val.images, val.labels, 512, config.seed, n_classes=len(config.labels))
    steps = math.ceil(len(train.labels) / config.batch_size)
    os.makedirs(os.path.join(out, "epochs"), exist_ok=True)
    recorder = RunRecorder(out, state["config"], steps, state)
    if initial_epoch < config.epochs and state["epoch"] - state["best_epoch"] < (config.patience or 10**9):
        # shuffle=False: the dataset shuffles itself (make_dataset); Keras would only warn that it ignores it.
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch, shuffle=False,
                  callbacks=[recorder], verbose=1 if sys.stdout.isatty() else 2)
    return finish(out, data, state)


def _load_parent(source: str, arch: str, model: keras.Model, train_images: np.ndarray,
                 labels: Sequence[str]) -> Ancestor:
    """Copy a finished run's last weights (or a shipped float32 twin's) into `model`;
    return what the card needs to know of the parent. A parent with other labels is loaded
    into a model of its own labels first, then transferred (arch.transfer)."""
    parent_labels = parent_labels_of(source)
    staged = model if parent_labels == tuple(labels) else build(arch, len(parent_labels))
    if source.endswith(".tflite"):
        ancestor = _load_twin_parent(source, arch, staged, train_images)
    else:
        parent = RunRecord.from_state(read_run_state(source, LAST))
        trained = keras.models.load_model(os.path.join(source, "last.keras"), compile=False)
        grown = _copy_or_grow(trained, staged, parent.arch, arch, source)
        ancestor = dataclasses.replace(parent.as_ancestor(source, parent.epoch), **grown)
    if staged is not model:
        new = transfer(staged, model, parent_labels, labels)
        print(f"new head for {', '.join(labels)}: {', '.join(new) or 'no label'} new, the others from "
              f"{os.path.basename(os.path.normpath(source))}", flush=True)
    return dataclasses.replace(ancestor, labels=parent_labels if staged is not model else None)


def _measure_before(model: keras.Model, data: dict, labels: Sequence[str]) -> Dict[str, dict]:
    """Accuracy of the starting weights on the held-out faces (and FER2013 PrivateTest, when
    given): what fine-tuning is measured against."""
    before = {}
    for split in ("test", "fer2013"):
        faces = data.get(split)
        if faces is not None and len(faces):
            report = classification_report(faces.labels, predict_labels(model, faces.images), labels)
            before[split] = {k: report[k] for k in ("n", "accuracy", "macro_f1")}
    return before


def _load_twin_parent(path: str, arch: str, model: keras.Model, train_images: np.ndarray) -> Ancestor:
    from fer_edge.model.metadata import ModelError, read_model_metadata

    from ..networks.warmstart import STATISTICS_FACES, load_float_twin

    try:
        parent_arch = _known_arch(read_model_metadata(path).get("architecture"), path)
        parent = model if parent_arch == arch else build(parent_arch)
        meta = load_float_twin(parent, path, train_images[:STATISTICS_FACES], parent_arch)
    except ModelError as exc:
        raise ValueError(str(exc)) from None
    grown = _copy_or_grow(parent, model, parent_arch, arch, path)
    prov = Provenance.from_json(meta.get("provenance"))
    command, epochs, seconds = prov.lineage()
    return Ancestor(run=path, command=command, commit=prov.train_commit, epochs=epochs, train_seconds=seconds,
                    hardware=meta.get("train_hardware"), architecture=parent_arch, **grown)


def _known_arch(name: Optional[str], source: str) -> str:
    if name not in ARCHITECTURES:
        raise ValueError(f"{source}: its architecture {name!r} is not one fer-train builds")
    return name


def _copy_or_grow(parent: keras.Model, model: keras.Model, parent_arch: Optional[str], arch: str,
                  source: str) -> Dict[str, Any]:
    """Put the parent's weights into `model`: all of them, or grown into a deeper `arch` (grow.py)."""
    if parent is model:
        return {}
    if parent_arch == arch:
        model.set_weights(parent.get_weights())
        return {}
    try:
        blocks = grow_into(parent, model)
    except ValueError as exc:
        raise ValueError(f"{source} is a {parent_arch} model, not {arch}, and {exc}") from None
    return {"grown_from": parent_arch, "new_blocks": tuple(blocks)}


def finish(out: str, data: dict, state: dict) -> dict:
    """Evaluate the best checkpoint, write metrics.json and the PNG reports."""
    from .plots import plot_confusion, plot_curves

    best = keras.models.load_model(os.path.join(out, "best.keras"))
    metrics = {"arch": state["config"]["arch"], "params": state["params"], "multiply_adds": state["multiply_adds"],
               "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
               "train_seconds": round(state["train_seconds"], 1), "command": state.get("command"),
               "commit": state.get("commit")}
    if state.get("init_from"):
        metrics["init_from"] = state["init_from"]
    for key, name in (("epochs", "averaged_epochs"), ("soup", "soup")):
        if (state.get("averaged") or {}).get(key):
            metrics[name] = state["averaged"][key]
    labels = FitConfig.from_json(state["config"]).labels
    for split in ("val", "test", "fer2013"):
        faces = data.get(split)
        if faces is not None and len(faces):
            metrics[split] = classification_report(faces.labels, predict_labels(best, faces.images), labels)
            metrics[split]["usage"] = faces.usage[0] if faces.usage is not None and len(faces.usage) else split
    if state.get("before"):
        metrics["before"] = state["before"]
    write_json(os.path.join(out, "metrics.json"), metrics)
    plot_curves(os.path.join(out, "history.csv"), os.path.join(out, "curves.png"))
    report = metrics.get("test") or metrics.get("val")
    if report:
        plot_confusion(report, os.path.join(out, "confusion.png"))
    return metrics
