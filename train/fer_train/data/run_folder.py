"""Reading a run folder that `fer-train fit` (or average, soup, fit-portable) wrote.

It imports neither Keras nor TensorFlow, so the command line can check a folder before it
loads the faces and the framework.
"""

import dataclasses
import json
import os
from typing import Callable, Optional, Tuple, TypeVar

from fer_edge.core.labels import LABELS
from fer_edge.model.provenance import Ancestor, Averaging, Distillation, FerPlusVotes, PairMember, Provenance

# What each reader takes from a run folder, besides its state.json.
LAST = ("last.keras",)  # warm restarts and `average`: the run's final weights and its epochs
BEST = ("best.keras",)  # `soup` and fit-portable: the weights of the best epoch
R = TypeVar("R")  # a record read back from its JSON form


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """What `fer-train fit` trains with: kept in the run's state.json (`config`), so a resumed
    run goes on exactly as it began."""

    arch: str = "fercnn"
    epochs: int = 45
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    smoothing: float = 0.1
    class_weight_power: float = 0.3
    patience: int = 15
    seed: int = 1
    camera_augment: bool = False
    one_warp: bool = False
    teachers: Tuple[str, ...] = ()   # fer-edge .tflite models (absolute paths) to distil from
    distill_weight: float = 0.5
    temperature: float = 1.0
    live_teachers: bool = False
    ferplus: Optional[str] = None    # the FER+ vote file (absolute path) mixed into the targets
    ferplus_weight: float = 0.3
    labels: Tuple[str, ...] = LABELS   # the model's outputs, in order (the data's class folders)

    def to_json(self) -> dict:
        """The state.json form: teacher and FER+ settings only when they are used."""
        record = dataclasses.asdict(self)
        record["labels"] = list(self.labels)
        if self.teachers:
            record["teachers"] = list(self.teachers)
        else:
            for key in ("teachers", "distill_weight", "temperature", "live_teachers"):
                del record[key]
        if not self.ferplus:
            del record["ferplus"], record["ferplus_weight"]
        return record

    @classmethod
    def from_json(cls, record: dict) -> "FitConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["teachers"] = tuple(values.get("teachers", ()))
        values["labels"] = tuple(values.get("labels", LABELS))
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a run folder's state.json says of the run that made its model; both training
    loops write it and `fer-convert` reads it."""

    arch: Optional[str] = None
    command: Optional[str] = None
    commit: Optional[str] = None
    hardware: Optional[str] = None
    params: Optional[int] = None
    multiply_adds: Optional[int] = None
    epoch: int = 0
    best_epoch: int = 0
    train_seconds: float = 0.0
    init_from: Optional[Ancestor] = None
    distilled: Optional[Distillation] = None
    ferplus: Optional[FerPlusVotes] = None
    averaged: Optional[Averaging] = None
    flip_average: bool = False
    labels: Tuple[str, ...] = LABELS
    data: Optional[dict] = None   # how a folder dataset was read and split (FolderOptions' JSON form)
    members: Tuple[PairMember, ...] = ()   # `fer-train pair`: the networks read as one

    @classmethod
    def from_state(cls, state: dict) -> "RunRecord":
        def optional(from_json: Callable[[dict], R], key: str) -> Optional[R]:
            return from_json(state[key]) if state.get(key) else None

        return cls(arch=state["config"]["arch"], command=state.get("command"), commit=state.get("commit"),
                   hardware=state.get("hardware"), params=state.get("params"), multiply_adds=state.get("multiply_adds"),
                   epoch=state.get("epoch") or 0, best_epoch=state.get("best_epoch") or 0,
                   train_seconds=state.get("train_seconds") or 0.0,
                   init_from=optional(Ancestor.from_json, "init_from"),
                   distilled=optional(Distillation.from_json, "distilled"),
                   ferplus=optional(FerPlusVotes.from_json, "ferplus"), averaged=optional(Averaging.from_json, "averaged"),
                   flip_average=bool(state.get("flip_average")),
                   labels=tuple(state["config"].get("labels") or LABELS), data=state.get("data"),
                   members=tuple(PairMember.from_json(m) for m in state.get("members") or ()))

    def as_ancestor(self, run: str, epochs: int) -> Ancestor:
        """This run as the starting point of another."""
        return Ancestor(run=run, command=self.command, commit=self.commit, epochs=epochs,
                        train_seconds=self.train_seconds, hardware=self.hardware, architecture=self.arch)

    def provenance(self, dataset: str, convert_command: str, calibration_faces: Optional[int],
                   converted_on: str, converted_at: str) -> Provenance:
        """The provenance of the model this run made, once converted."""
        return Provenance(dataset=dataset, train_command=self.command, train_commit=self.commit,
                          train_seconds=self.train_seconds, best_epoch=self.best_epoch, averaging=self.averaged,
                          warm_start=self.init_from, distilled=self.distilled, ferplus=self.ferplus,
                          convert_command=convert_command, calibration_faces=calibration_faces,
                          converted_on=converted_on, converted_at=converted_at, members=self.members)


def read_record(path: str) -> dict:
    """One of the run's JSON records; a file cut short (a full disk) is a one-line ValueError."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None


def read_run_state(folder: str, needs: tuple = LAST) -> dict:
    """The folder's state.json, once the folder is known to hold it and the files in `needs`.

    Raises ValueError with a one-line reason when it is not such a folder."""
    missing = [name for name in ("state.json", *needs) if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ValueError(f"{folder}: not a fer-train run folder (no {' or '.join(missing)})")
    path = os.path.join(folder, "state.json")
    state = read_record(path)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "arch" not in state["config"]:
        raise ValueError(f"{path}: not a fer-train state file (no config.arch)")
    return state


def require_new_out(out: str) -> None:
    """A mixed model's --out must not hold a run already: writing into it would replace that
    run's model and records. Raises ValueError with a one-line reason."""
    held = [name for name in ("state.json", *BEST, *LAST) if os.path.lexists(os.path.join(out, name))]
    if held:
        raise ValueError(f"{out}: already holds a run ({', '.join(held)}); give a new --out")


def parent_labels_of(source: str) -> Tuple[str, ...]:
    """The labels of a model a run may start from: a run folder's, or a float32 twin's
    metadata. Raises ValueError with a one-line reason when it cannot be read."""
    if source.endswith(".tflite"):
        from fer_edge.model.metadata import ModelError, read_model_metadata

        try:
            return tuple(read_model_metadata(source)["labels"])
        except ModelError as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
    return RunRecord.from_state(read_run_state(source, LAST)).labels
