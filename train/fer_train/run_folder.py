"""Reading a run folder that `fer-train fit` (or average, soup, fit-portable) wrote.

It imports neither Keras nor TensorFlow, so the command line can check a folder before it
loads the faces and the framework.
"""

import dataclasses
import json
import os
from typing import Optional, Tuple

# What each reader takes from a run folder, besides its state.json.
LAST = ("last.keras",)  # warm restarts and `average`: the run's final weights and its epochs
BEST = ("best.keras",)  # `soup` and fit-portable: the weights of the best epoch


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

    def to_json(self) -> dict:
        """The state.json form: teacher and FER+ settings only when they are used."""
        record = dataclasses.asdict(self)
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
        return cls(**values)


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
