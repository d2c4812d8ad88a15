"""What every training loop here shares, on any Keras backend: the learning-rate schedule,
class weights, and the run folder's per-epoch records (checkpoints, history, state)."""

import csv
import json
import math
import os
import shutil
import subprocess
import time
from typing import Optional

import keras
import numpy as np
from keras import layers

from fer_edge.core.hardware import describe
from fer_edge.core.labels import LABELS
from fer_edge.model.datasets import PARTS, SPLIT_RECORD

from ..networks.arch import multiply_adds

# How far augmentation moves a face: faces are registered, so the moves are small.
ROTATION_TURNS = 0.04  # of a full turn: about +-15 degrees
MAX_ZOOM = 0.12
MAX_SHIFT = 0.10  # of the face's size
# Random erasing (occlusion by hands, glasses, hair): how often, and how much of the face.
ERASE_PROBABILITY = 0.25
ERASE_AREA = (0.02, 0.2)


def geometry_layers(seed: int) -> list:
    """Keras's chain of flip, rotation, zoom and shift; each layer resamples the face."""
    return [
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(ROTATION_TURNS, fill_mode="reflect", seed=seed + 1),
        layers.RandomZoom(MAX_ZOOM, fill_mode="reflect", seed=seed + 2),
        layers.RandomTranslation(MAX_SHIFT, MAX_SHIFT, fill_mode="reflect", seed=seed + 3),
    ]


def photometric_layers(seed: int) -> list:
    """Brightness and contrast changes of a 0..255 face."""
    return [
        layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 4),
        layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 5),
    ]


def class_weights(labels: np.ndarray, power: float = 0.5, n_classes: int = len(LABELS)) -> np.ndarray:
    """Inverse-frequency weights softened by `power` (0: none, 1: fully balanced), mean 1."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.max() / np.maximum(counts, 1)) ** power, 0.0)
    return weights / (weights[labels].mean() if len(labels) else 1.0)


def lr_at(epoch_float: float, epochs: int, peak: float, warmup: float = 1.0) -> float:
    """Linear warm-up then cosine decay to zero, as a function of fractional epoch."""
    if epoch_float < warmup:
        return peak * max(epoch_float, 0.05) / warmup
    progress = min(1.0, (epoch_float - warmup) / max(1e-9, epochs - warmup))
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class RunRecorder(keras.callbacks.Callback):
    """Sets the learning rate per batch and writes checkpoints, history and state per epoch.

    `network` is the model the checkpoints hold when the model being fitted wraps it (a
    student trained beside its teachers); by default the fitted model itself. Without
    `sets_lr` the optimizer carries its own schedule (on JAX, a variable set from a
    callback between compiled steps does not reach them).
    """

    def __init__(self, out: str, config: dict, steps_per_epoch: int, state: dict, network: Optional[keras.Model] = None,
                 sets_lr: bool = True):
        super().__init__()
        self.out, self.config, self.steps, self.state = out, config, steps_per_epoch, state
        self.network, self.sets_lr = network, sets_lr
        self.epoch = 0
        self.started = time.time()

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self.epoch = epoch
        self.epoch_started = time.time()

    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None) -> None:
        if not self.sets_lr:
            return
        lr = lr_at(self.epoch + batch / self.steps, self.config["epochs"], self.config["lr"])
        self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = dict(logs or {})
        saved = self.network or self.model
        row = {"epoch": epoch + 1, "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
               "seconds": round(time.time() - self.epoch_started, 1)}
        row.update({k: round(float(v), 5) for k, v in logs.items()})
        history = os.path.join(self.out, "history.csv")
        new = not os.path.exists(history)
        with open(history, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())
        val = float(logs.get("val_accuracy", 0.0))
        if val > self.state["best_val_accuracy"]:
            self.state.update(best_val_accuracy=val, best_epoch=epoch + 1)
            atomic_save(saved, os.path.join(self.out, "best.keras"))
        atomic_save(saved, os.path.join(self.out, "last.keras"))
        saved.save_weights(epoch_weights_path(self.out, epoch + 1))
        self.state["epoch"] = epoch + 1
        self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + row["seconds"]
        write_json(os.path.join(self.out, "state.json"), self.state)
        patience = self.config["patience"]
        if patience and epoch + 1 - self.state["best_epoch"] >= patience:
            print(f"early stop: PublicTest accuracy has not improved for {patience} epochs", flush=True)
            self.model.stop_training = True


def epoch_weights_path(out: str, epoch: int) -> str:
    return os.path.join(out, "epochs", f"epoch-{epoch:03d}.weights.h5")


def atomic_save(model: keras.Model, path: str) -> None:
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def clear_run(out: str) -> None:
    """Remove what an earlier run left in `out`, so that a new run's records are all its own."""
    for name in ("history.csv", "state.json", "last.keras", "best.keras", "teacher-probabilities.npy"):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    shutil.rmtree(os.path.join(out, "epochs"), ignore_errors=True)
    os.makedirs(os.path.join(out, "epochs"))


def keep_split(out: str, state: dict, folder: Optional[dict]) -> None:
    """A folder dataset's split record, kept with the run: which file went where in
    OUT/split.json (what fer-convert and fer-edge eval read), how it was read in the state's `data`."""
    if folder:
        state["data"] = {k: v for k, v in folder.items() if k not in PARTS}
        write_json(os.path.join(out, SPLIT_RECORD), folder)


def new_run_state(config: dict, command: Optional[str], model: keras.Model, data: dict) -> dict:
    """The state.json of a run that has not trained an epoch yet."""
    return {"config": config, "epoch": 0, "best_epoch": 0, "best_val_accuracy": -1.0, "train_seconds": 0.0,
            "command": command, "commit": git_commit(), "hardware": describe(),
            "params": int(model.count_params()), "multiply_adds": multiply_adds(model),
            "n_train": int(len(data["train"].labels)), "n_val": int(len(data["val"].labels))}
