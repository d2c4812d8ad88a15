"""How a model came to be: the records that a training run keeps and a model's metadata carries.

Both training loops write them into state.json, `fer-convert` turns a run's record into the
model's `provenance`, and the model card reads that. Each record has one JSON form; the
readers take fields, so a new maintainer learns what a run holds from here.
"""

import dataclasses

from typing import Any, Optional, Tuple


def _compact(record: Any) -> dict:
    """A record's JSON form without the fields it does not have."""
    return {k: v for k, v in dataclasses.asdict(record).items() if v is not None}


def _known(cls: Any, values: dict) -> dict:
    """The entries of `values` that are fields of `cls` (older or newer files may hold more)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


@dataclasses.dataclass(frozen=True)
class Ancestor:
    """A model a run began from (a warm start), as the card tells it."""

    run: str
    command: Optional[str] = None
    commit: Optional[str] = None
    epochs: int = 0
    train_seconds: float = 0.0
    hardware: Optional[str] = None
    architecture: Optional[str] = None
    grown_from: Optional[str] = None     # a shallower architecture whose weights were grown into this one
    new_blocks: Tuple[str, ...] = ()
    labels: Optional[Tuple[str, ...]] = None   # its labels, where they differ from the run's (a new head)

    def to_json(self) -> dict:
        record = _compact(self)
        if self.labels:
            record["labels"] = list(self.labels)
        if self.new_blocks:
            record["new_blocks"] = list(self.new_blocks)
        else:
            del record["new_blocks"]
        return record

    @classmethod
    def from_json(cls, record: dict) -> "Ancestor":
        values = _known(cls, record)
        values["new_blocks"] = tuple(values.get("new_blocks") or ())
        values["labels"] = tuple(values["labels"]) if values.get("labels") else None
        values["epochs"] = values.get("epochs") or 0
        values["train_seconds"] = values.get("train_seconds") or 0.0
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Teacher:
    """One model distilled into a run: ours with its measured accuracy, or a third party's with its source."""

    model: str
    quantization: Optional[str] = None
    architecture: Optional[str] = None
    flip_average: bool = False
    private_test_accuracy: Optional[float] = None
    train_command: Optional[str] = None
    source: Optional[str] = None

    def to_json(self) -> dict:
        record = dataclasses.asdict(self)
        if self.source is None:
            del record["source"]
        return record

    @classmethod
    def from_json(cls, record: dict) -> "Teacher":
        return cls(**_known(cls, record))


@dataclasses.dataclass(frozen=True)
class Distillation:
    """What the teachers added to each training face's target."""

    teachers: Tuple[Teacher, ...]
    weight: float
    temperature: float = 1.0
    live: bool = False   # the teachers saw the same augmented face as the student, every epoch

    def to_json(self) -> dict:
        return {"teachers": [t.to_json() for t in self.teachers], "weight": self.weight,
                "temperature": self.temperature, "live": self.live}

    @classmethod
    def from_json(cls, record: dict) -> "Distillation":
        values = _known(cls, record)
        values["teachers"] = tuple(Teacher.from_json(t) for t in record.get("teachers", ()))
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class FerPlusVotes:
    """The FER+ vote shares mixed into the training targets."""

    file: str
    weight: float
    faces_with_votes: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "FerPlusVotes":
        return cls(**_known(cls, record))


@dataclasses.dataclass(frozen=True)
class SoupShare:
    """One model of a weight soup and its share of the mean."""

    model: str
    share: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Averaging:
    """Weights averaged after training: a run's last epochs, or a soup of several models."""

    command: Optional[str] = None
    run: Optional[str] = None
    epochs: Tuple[int, ...] = ()
    soup: Tuple[SoupShare, ...] = ()

    def to_json(self) -> dict:
        record: dict = {"command": self.command}
        if self.soup:
            record["soup"] = [s.to_json() for s in self.soup]
        else:
            record.update(run=self.run, epochs=list(self.epochs))
        return record

    @classmethod
    def from_json(cls, record: dict) -> "Averaging":
        return cls(command=record.get("command"), run=record.get("run"), epochs=tuple(record.get("epochs") or ()),
                   soup=tuple(SoupShare(s["model"], s["share"]) for s in record.get("soup") or ()))


@dataclasses.dataclass(frozen=True)
class PairMember:
    """One network of a pair (`fer-train pair`): its share of the mean, the chain of runs
    that made it, and the teachers its last run learnt from."""

    model: str
    share: float
    architecture: Optional[str] = None
    command: Optional[str] = None
    commit: Optional[str] = None
    epochs: int = 0
    train_seconds: float = 0.0
    distilled: Optional[Distillation] = None
    ferplus: Optional[FerPlusVotes] = None

    def to_json(self) -> dict:
        record = _compact(self)
        for key, value in (("distilled", self.distilled), ("ferplus", self.ferplus)):
            if value:
                record[key] = value.to_json()
        return record

    @classmethod
    def from_json(cls, record: dict) -> "PairMember":
        values = _known(cls, record)
        values["distilled"] = Distillation.from_json(record["distilled"]) if record.get("distilled") else None
        values["ferplus"] = FerPlusVotes.from_json(record["ferplus"]) if record.get("ferplus") else None
        return cls(**values)


def _optional(cls: Any, record: Optional[dict]) -> Any:
    return cls.from_json(record) if record else None


@dataclasses.dataclass(frozen=True)
class Provenance:
    """The `provenance` in a model's metadata: its data, its runs and its conversion."""

    dataset: Optional[str] = None
    train_command: Optional[str] = None
    train_commit: Optional[str] = None
    train_seconds: Optional[float] = None
    best_epoch: Optional[int] = None
    averaging: Optional[Averaging] = None
    warm_start: Optional[Ancestor] = None
    distilled: Optional[Distillation] = None
    ferplus: Optional[FerPlusVotes] = None
    convert_command: Optional[str] = None
    calibration_faces: Optional[int] = None
    converted_on: Optional[str] = None
    converted_at: Optional[str] = None
    teacher_source: Optional[str] = None  # a third-party teacher: where its weights came from
    members: Tuple[PairMember, ...] = ()  # a pair of networks read as one: each network's chain

    def to_json(self) -> dict:
        averaging = self.averaging
        record = {
            "dataset": self.dataset, "train_command": self.train_command, "train_commit": self.train_commit,
            "train_seconds": self.train_seconds, "best_epoch": self.best_epoch,
            "averaged_epochs": list(averaging.epochs) if averaging and averaging.epochs else None,
            "average_command": averaging.command if averaging else None,
            "soup": [s.to_json() for s in averaging.soup] if averaging and averaging.soup else None,
            "warm_start": self.warm_start.to_json() if self.warm_start else None,
            "distilled": self.distilled.to_json() if self.distilled else None,
            "ferplus": self.ferplus.to_json() if self.ferplus else None,
            "convert_command": self.convert_command, "calibration_faces": self.calibration_faces,
            "converted_on": self.converted_on, "converted_at": self.converted_at,
        }
        if self.teacher_source:
            record["teacher_source"] = self.teacher_source
        if self.members:
            record["members"] = [m.to_json() for m in self.members]
        return record

    @classmethod
    def from_json(cls, record: Optional[dict]) -> "Provenance":
        record = record or {}
        averaging = None
        if record.get("average_command") or record.get("averaged_epochs") or record.get("soup"):
            averaging = Averaging.from_json({"command": record.get("average_command"),
                                             "epochs": record.get("averaged_epochs"), "soup": record.get("soup")})
        plain = {k: record.get(k) for k in ("dataset", "train_command", "train_commit", "train_seconds", "best_epoch",
                                            "convert_command", "calibration_faces", "converted_on", "converted_at",
                                            "teacher_source")}
        return cls(**plain, averaging=averaging, warm_start=_optional(Ancestor, record.get("warm_start")),
                   distilled=_optional(Distillation, record.get("distilled")),
                   ferplus=_optional(FerPlusVotes, record.get("ferplus")),
                   members=tuple(PairMember.from_json(m) for m in record.get("members") or ()))

    def lineage(self) -> Tuple[Optional[str], int, float]:
        """The command, epochs and seconds of the whole chain of runs that made the model."""
        averaging = self.averaging
        epochs = (averaging.epochs[-1] if averaging and averaging.epochs else None) or self.best_epoch or 0
        command = self.train_command
        if averaging and averaging.command:
            command = f"{command}, then {averaging.command}"
        seconds = self.train_seconds or 0.0
        if self.warm_start:  # the model itself came from a warm restart: keep the whole chain
            command = f"{self.warm_start.command}, then {command}"
            epochs += self.warm_start.epochs
            seconds += self.warm_start.train_seconds
        return command, epochs, seconds
