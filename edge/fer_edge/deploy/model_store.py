"""The device's deployed models, kept so that a power cut at any moment leaves a model to run.

Each model is FOLDER/<sha256>.tflite, and FOLDER/active.json says which runs (`active`),
which ran before it (`previous`, None: the configured model) and whether the active one is
on trial. Every file is written whole and on disk (fsync, rename, fsync the folder) before the
pointer names it, and the pointer is written the same way, so the pointer always names files
that are whole; a file damaged since is caught by its sha256 at start and the previous model
runs. A model on trial that kills its process cannot boot-loop the device: the second restart
in one trial goes back to the previous model by itself.
"""

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..core.atomic import sha256_of, write_atomically
from ..core.errors import UserError
from ..core.labels import label_problem
from .order import MAX_NAME, Order, is_text, is_unix_time

POINTER = "active.json"
FORMAT = 1
MAX_TRIAL_STARTS = 2      # the restart in a trial that rolls it back
MAX_REJECTED = 50
MODEL_FILE = re.compile(r"[0-9a-f]{64}\.tflite")
PART_FILE = re.compile(r"tmp[a-z0-9_]{8}")   # what tempfile names a write a crash cut short


@dataclass(frozen=True)
class Installed:
    """A model in the store, whole on disk at `path`."""

    name: str
    version: int
    sha256: str
    labels: Tuple[str, ...]
    path: str

    def entry(self) -> dict:
        """How the pointer (and MODEL STATE) names it."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "labels": list(self.labels)}

    def release(self) -> dict:
        """{name, version, sha256}: MODEL STATE's `previous` and `release`."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


class ModelStore:
    """The models of one device in `folder` (made if missing). One thread uses it.

    `events` lists what `start` did by itself (a damaged file, a trial rolled back), each
    {"state", "reason", "release", "rollout"}, for the agent to log and report."""

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise UserError(f"deploy folder {folder}: cannot make it ({exc.strerror or exc}); "
                            "set another ([deploy] dir, --deploy-dir)") from None
        self.events: List[Dict[str, Any]] = []
        self._pointer = self._read_pointer()

    # -- what runs ------------------------------------------------------------------------

    @property
    def active(self) -> Optional[Installed]:
        return self._installed(self._pointer["active"])

    @property
    def previous(self) -> Optional[Installed]:
        return self._installed(self._pointer["previous"])

    @property
    def state(self) -> str:
        """"running", or "trial" while the active model is being judged."""
        return str(self._pointer["state"])

    @property
    def rollout(self) -> Optional[str]:
        return self._pointer["rollout"]

    @property
    def followed(self) -> float:
        """When the last install order this device followed was issued (0: none): an order
        issued before it is an old one sent again, not to be followed."""
        return float(self._pointer["issued"])

    @property
    def trial(self) -> Optional[dict]:
        """{started, attempts, before, gate} of the trial under way, else None."""
        return self._pointer["trial"]

    def start(self) -> Optional[Installed]:
        """The model to run at boot, None for the configured one. A missing or damaged active
        file gives the previous model (or None); the second restart within a trial rolls it back."""
        pointer = self._pointer
        active = self.active
        try:
            if active is not None and not self._whole(active):
                self._fall_back(f"{active.name} v{active.version}: file missing or damaged (sha256), back to the previous model",
                                active, reject=False)
            elif pointer["state"] == "trial":
                attempts = int(pointer["trial"].get("attempts", 0)) + 1
                if attempts >= MAX_TRIAL_STARTS:
                    self._fall_back(f"{active.name if active else 'model'} v{active.version if active else 0}: its trial was "
                                    f"cut short by {attempts} restarts, back to the previous model", active, reject=True)
                else:
                    self._write(dict(pointer, trial=dict(pointer["trial"], attempts=attempts)))
        except OSError as exc:   # a full or read-only disk: no reason not to run, but a trial's restarts cannot be counted
            previous = self.previous if self.previous is not None and self._whole(self.previous) else None
            self._pointer = dict(pointer, active=previous.entry() if previous else None, previous=None, state="running",
                                 rollout=None, trial=None)
            self.events.append({"state": "rolled back", "rollout": pointer["rollout"],
                                "release": active.release() if active else None,
                                "reason": f"cannot write {POINTER} ({exc.strerror or exc}): the previous model runs"})
            return self.active
        self._prune()
        return self.active

    # -- changes --------------------------------------------------------------------------

    def put(self, order: Order) -> Installed:
        """Write an install order's model into the store (on disk, whole); what runs is unchanged."""
        model = order.model
        path = self._path(model["sha256"])
        self._prune(keep=model["sha256"])
        if not (os.path.isfile(path) and sha256_of(path) == model["sha256"]):
            write_atomically(path, order.model_bytes, mode=0o644, durable=True)
        return Installed(model["name"], int(model["version"]), model["sha256"], tuple(model["labels"]), path)

    def begin_trial(self, new: Installed, before: Optional[dict], rollout: Optional[str], gate: dict,
                    issued: float = 0.0) -> None:
        """Make `new` (put already) the active model, on trial; the one running becomes previous.
        `issued`: its order's time (the store keeps the latest, see `followed`)."""
        if self.state == "trial":
            raise RuntimeError("a trial is under way: keep or roll back first")
        self._write(dict(self._pointer, active=new.entry(), previous=self._pointer["active"], state="trial",
                         rollout=rollout, trial={"started": time.time(), "attempts": 0, "before": before, "gate": gate},
                         issued=max(self.followed, issued)))
        self._prune()

    def keep(self) -> None:
        """The model on trial passed: it runs from now on (the previous one is kept for a rollback)."""
        self._write(dict(self._pointer, state="running", trial=None))

    def roll_back(self, reason: str) -> Optional[Installed]:
        """Leave the active model (rejected from now on) for the previous one; returns what runs
        now (None: the configured model)."""
        self._fall_back(reason, self.active, reject=True)
        self._prune()
        return self.active

    def rejected(self, sha256: str) -> bool:
        """Whether a model was rolled back or refused here (its retained order is not followed again)."""
        return sha256 in self._pointer["rejected"]

    def reject(self, sha256: str) -> None:
        if not self.rejected(sha256):
            self._write(dict(self._pointer, rejected=(self._pointer["rejected"] + [sha256])[-MAX_REJECTED:]))

    # -- the pointer ----------------------------------------------------------------------

    def _fall_back(self, reason: str, left: Optional[Installed], reject: bool) -> None:
        previous = self.previous
        if previous is not None and not self._whole(previous):
            reason += f"; {previous.name} v{previous.version} damaged too, the configured model runs"
            previous = None
        rejected = self._pointer["rejected"]
        if reject and left is not None and left.sha256 not in rejected:
            rejected = (rejected + [left.sha256])[-MAX_REJECTED:]
        rollout = self._pointer["rollout"]
        self._write(dict(self._pointer, active=previous.entry() if previous else None, previous=None, state="running",
                         rollout=None, trial=None, rejected=rejected))
        self.events.append({"state": "rolled back", "reason": reason, "rollout": rollout,
                            "release": left.release() if left else None})

    def _read_pointer(self) -> dict:
        empty: Dict[str, Any] = {"format": FORMAT, "active": None, "previous": None, "state": "running", "rollout": None, "trial": None,
                 "rejected": [], "issued": 0.0}
        try:
            with open(os.path.join(self.folder, POINTER), "rb") as f:
                pointer = json.loads(f.read(1 << 20))
        except FileNotFoundError:
            return empty
        except (OSError, ValueError, RecursionError) as exc:
            self.events.append({"state": "rolled back", "rollout": None, "release": None,
                                "reason": f"{POINTER} unreadable ({type(exc).__name__}): the configured model runs"})
            return empty
        problem = pointer_problem(pointer)
        if problem:
            self.events.append({"state": "rolled back", "rollout": None, "release": None,
                                "reason": f"{POINTER} damaged ({problem}): the configured model runs"})
            return empty
        return dict(empty, **pointer)

    def _write(self, pointer: dict) -> None:
        data = json.dumps(pointer, sort_keys=True, indent=1, allow_nan=False).encode()
        write_atomically(os.path.join(self.folder, POINTER), data, mode=0o644, durable=True)
        self._pointer = pointer

    def _installed(self, entry: Optional[dict]) -> Optional[Installed]:
        if not entry:
            return None
        return Installed(entry["name"], int(entry["version"]), entry["sha256"], tuple(entry["labels"]),
                         self._path(entry["sha256"]))

    def _path(self, sha256: str) -> str:
        return os.path.join(self.folder, f"{sha256}.tflite")

    @staticmethod
    def _whole(installed: Installed) -> bool:
        try:
            return sha256_of(installed.path) == installed.sha256
        except OSError:
            return False

    def _prune(self, keep: Optional[str] = None) -> None:
        """Delete the model files the pointer no longer names (at most active, previous and
        `keep` stay) and the parts of writes a crash cut short."""
        named = {entry["sha256"] for entry in (self._pointer["active"], self._pointer["previous"]) if entry}
        named |= {keep} if keep else set()
        for name in os.listdir(self.folder):
            stale = (MODEL_FILE.fullmatch(name) and name[:64] not in named) or PART_FILE.fullmatch(name)
            if stale:
                try:
                    os.unlink(os.path.join(self.folder, name))
                except OSError:
                    pass


def pointer_problem(pointer: Any) -> Optional[str]:
    """Why a pointer read from disk cannot be followed, or None."""
    if not isinstance(pointer, dict) or pointer.get("format") != FORMAT:
        return "not a pointer of format 1"
    for key in ("active", "previous"):
        entry = pointer.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not is_text(entry.get("name"), MAX_NAME) or not isinstance(entry.get("sha256"), str) \
                or not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) or isinstance(entry.get("version"), bool) \
                or not isinstance(entry.get("version"), int) or label_problem(entry.get("labels")):
            return f"its {key} entry"
    if pointer.get("state") not in ("running", "trial"):
        return "its state"
    trial = pointer.get("trial")
    if pointer["state"] == "trial" and (not isinstance(trial, dict) or pointer.get("active") is None
                                        or isinstance(trial.get("attempts"), bool) or not isinstance(trial.get("attempts"), int)):
        return "its trial"
    rejected = pointer.get("rejected", [])
    if not isinstance(rejected, list) or not all(isinstance(sha, str) for sha in rejected):
        return "its rejected list"
    if pointer.get("rollout") is not None and not isinstance(pointer.get("rollout"), str):
        return "its rollout"
    if not is_unix_time(pointer.get("issued", 0.0)):
        return "its issued"
    return None
