"""Training on any Keras backend: JAX or PyTorch on a GPU machine that has no TensorFlow.

fit.py feeds faces through tf.data and scores teachers with the device runtime, so it
needs TensorFlow and is paced by the CPU. Here the faces stay in memory as numpy,
augmentation runs on the accelerator as Keras layers inside the training graph, and the
teachers are .keras models that score the very augmented batch the student sees. That
is what makes larger teachers, and distilling them into the device network, affordable.
On TensorFlow it runs too (slowly, on a CPU), so every run can be repeated without a GPU.

A run folder has fit.py's files (best.keras, last.keras, epochs/, history.csv,
state.json), so fer-convert, `fer-train average` and `fer-train soup` take it as is.
There is no --resume: a run on a lent machine is short and starts over.
"""

import math
import os
import sys
from typing import Any, Callable, Optional, Tuple

import keras
import numpy as np
from keras import layers, ops

from fer_edge.core.labels import LABELS
from fer_edge.model.provenance import Ancestor, Distillation, Teacher

from ..networks.arch import build
from .recipe import (ERASE_AREA, ERASE_PROBABILITY, RunRecorder, class_weights, clear_run, geometry_layers, keep_split,
                     new_run_state, photometric_layers, write_json)
from ..data.run_folder import BEST, RunRecord, read_run_state


def augmentation(seed: int) -> keras.Sequential:
    """fit.py's usual augmentation as layers (active only while training), with Keras's own
    random erasing in place of fit.py's TensorFlow one."""
    erase = layers.RandomErasing(factor=ERASE_PROBABILITY, scale=ERASE_AREA, value_range=(0, 255), seed=seed + 6)
    chain = [*geometry_layers(seed), *photometric_layers(seed), erase]
    if keras.backend.backend() != "tensorflow":
        # Keras marks its geometric layers as not compilable for TensorFlow's XLA; JAX compiles
        # them, and the whole training step runs many times faster compiled than op by op.
        for layer in chain:
            layer.supports_jit = True
    return keras.Sequential(chain, name="augment")


def distillation_loss(distill_weight: float, smoothing: float, n: int = len(LABELS)) -> Callable:
    """Cross-entropy of the student's logits (the first `n` outputs, one per label) against the
    smoothed label, mixed `distill_weight` with the teachers' mean probabilities (the other n), if any."""
    def loss(y_true: Any, y_pred: Any) -> Any:
        target = y_true * (1.0 - smoothing) + smoothing / n
        if y_pred.shape[-1] > n:
            target = (1.0 - distill_weight) * target + distill_weight * ops.stop_gradient(y_pred[:, n:])
        return keras.losses.categorical_crossentropy(target, y_pred[:, :n], from_logits=True)

    return loss


def top_label_accuracy(n: int) -> Callable:
    """The `accuracy` metric: how often the student's top label (its first `n` outputs) is the true one."""
    def accuracy(y_true: Any, y_pred: Any) -> Any:
        return ops.cast(ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred[:, :n], axis=-1)), "float32")

    return accuracy


def trainer(student: keras.Model, teachers: list, seed: int) -> keras.Model:
    """The model that is fitted: augment, then the student's logits, then (with teachers)
    the teachers' mean probabilities on the same augmented faces."""
    faces = keras.Input((48, 48, 1), name="face")
    seen = augmentation(seed)(faces)
    logits = student(seen)
    if not teachers:
        return keras.Model(faces, logits, name="trainer")
    probabilities = []
    for k, teacher in enumerate(teachers):
        teacher.trainable = False
        named = keras.Model(teacher.input, teacher.output, name=f"teacher{k}")  # two teachers may share a name
        probabilities.append(layers.Softmax(name=f"teacher{k}_softmax")(named(seen, training=False)))
    mean = probabilities[0] if len(probabilities) == 1 else layers.Average(name="teachers")(probabilities)
    return keras.Model(faces, layers.Concatenate(name="student_and_teachers")([logits, mean]), name="trainer")


def _model_file(path: str) -> str:
    """A .keras file, or a run folder's best.keras."""
    return os.path.join(path, "best.keras") if os.path.isdir(path) else path


def _provenance(path: str) -> Ancestor:
    """What a card needs of a .keras model's run: its folder's state.json, where there is one."""
    folder = os.path.dirname(os.path.abspath(_model_file(path)))
    if not os.path.exists(os.path.join(folder, "state.json")):
        return Ancestor(run=path)
    run = RunRecord.from_state(read_run_state(folder, needs=()))
    return run.as_ancestor(path, run.best_epoch or run.epoch)


def _as_teacher(path: str) -> Teacher:
    run = _provenance(path)
    return Teacher(model=os.path.basename(os.path.normpath(path)), architecture=run.architecture,
                   train_command=run.command)


def _load(path: str, what: str, n_labels: int) -> keras.Model:
    if os.path.isdir(path):
        read_run_state(path, BEST)
    elif not (path.endswith(".keras") and os.path.exists(path)):
        raise ValueError(f"{path}: a {what} must be a .keras file or a run folder with best.keras")
    model = keras.models.load_model(_model_file(path), compile=False)
    if model.output_shape[-1] != n_labels:
        raise ValueError(f"{path}: a model of {model.output_shape[-1]} labels; the data has {n_labels}")
    return model


def schedule(peak: float, epochs: int, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """fit.py's schedule (recipe.lr_at) inside the optimizer: a linear warm-up over the first
    epoch from 5 % of the peak, then a cosine decay to zero."""
    warmup = steps_per_epoch if epochs > 1 else 0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * 0.05 if warmup else peak, decay_steps=max(1, (epochs - 1) * steps_per_epoch),
        alpha=0.0, warmup_target=peak if warmup else None, warmup_steps=warmup)


def fit_portable(data: dict, out: str, arch: str = "fercnn", epochs: int = 45, batch_size: int = 128,
                 lr: float = 2e-3, weight_decay: float = 5e-4, smoothing: float = 0.1,
                 class_weight_power: float = 0.3, seed: int = 1, command: Optional[str] = None, init_from: Optional[str] = None,
                 teachers: tuple = (), distill_weight: float = 0.5, labels: Tuple[str, ...] = LABELS,
                 folder: Optional[dict] = None) -> dict:
    """Train `arch` on data['train'] and keep the best epoch by data['val'] (PublicTest).

    `init_from` (a .keras file or run folder of the same architecture) starts from its
    weights; `teachers` (.keras files or run folders) are distilled into the student. The
    model has one output per `labels`; `folder` (a folder dataset's split record) is kept
    as fit keeps it."""
    n = len(labels)
    config = dict(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                  smoothing=smoothing, class_weight_power=class_weight_power, patience=0, seed=seed,
                  backend=keras.backend.backend(), labels=list(labels))
    keras.utils.set_random_seed(seed)
    student = build(arch, n)
    parent = None
    if init_from:
        loaded = _load(init_from, "starting point", n)
        if loaded.name != student.name or len(loaded.weights) != len(student.weights):
            raise ValueError(f"{init_from}: a {loaded.name} model, not {arch}")
        student.set_weights(loaded.get_weights())
        parent = _provenance(init_from).to_json()
    teacher_models = [_load(t, "teacher", n) for t in teachers]
    if teachers:
        config.update(teachers=[os.path.abspath(t) for t in teachers], distill_weight=distill_weight,
                      temperature=1.0, live_teachers=True)
    clear_run(out)
    state = new_run_state(config, command, student, data)
    keep_split(out, state, folder)
    if parent:
        state["init_from"] = parent
    if teachers:
        described = tuple(_as_teacher(t) for t in teachers)
        state["distilled"] = Distillation(described, distill_weight, temperature=1.0, live=True).to_json()
    write_json(os.path.join(out, "state.json"), state)

    train, val = data["train"], data["val"]
    steps = math.ceil(len(train.labels) / batch_size)
    model = trainer(student, teacher_models, seed)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule(lr, epochs, steps), weight_decay=weight_decay),
                  loss=distillation_loss(distill_weight, smoothing, n), metrics=[top_label_accuracy(n)])
    x = train.images[..., None].astype(np.float32)
    y = np.eye(n, dtype=np.float32)[train.labels]
    weights = class_weights(train.labels, class_weight_power, n)[train.labels].astype(np.float32)
    val_xy = (val.images[..., None].astype(np.float32), np.eye(n, dtype=np.float32)[val.labels])
    recorder = RunRecorder(out, config, steps, state, network=student, sets_lr=False)
    model.fit(x, y, sample_weight=weights, batch_size=batch_size, epochs=epochs, shuffle=True,
              validation_data=val_xy, validation_batch_size=512, callbacks=[recorder],
              verbose=1 if sys.stdout.isatty() else 2)
    return state
