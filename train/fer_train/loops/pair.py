"""`fer-train pair`: two finished models (run folders or shipped float32 twins) as one.

Each member keeps its weights; the pair's run folder records every member's chain of runs
so that the model card can say how each came to be.
"""

import os
import re
from typing import Callable, Optional, Sequence, Tuple, TypeVar

import keras
import numpy as np

from fer_edge.core.hardware import describe
from fer_edge.model.metadata import read_model_metadata
from fer_edge.model.provenance import PairMember, Provenance

from ..data.run_folder import BEST, RunRecord, read_run_state, require_new_out
from ..networks.arch import build, multiply_adds
from ..networks.pair import pair_networks
from .fit import finish
from .recipe import atomic_save, git_commit, write_json

R = TypeVar("R")


def load_member(source: str, share: float, train_images: np.ndarray) -> Tuple[keras.Model, PairMember, Tuple[str, ...]]:
    """A member network, its record and its labels: a run folder's best.keras, or a shipped
    model's float32 twin loaded into its architecture."""
    if source.endswith(".tflite"):
        from ..networks.warmstart import STATISTICS_FACES, load_float_twin

        metadata = read_model_metadata(source)
        provenance = metadata.get("provenance")
        if isinstance(provenance, dict) and provenance.get("members"):
            raise ValueError(f"{source}: a pair cannot be a member of another pair (give its members instead)")
        arch = str(metadata.get("architecture") or "")
        model = build(arch, len(metadata["labels"]))
        load_float_twin(model, source, train_images[:STATISTICS_FACES], arch)
        prov = _readable(source, lambda: Provenance.from_json(metadata.get("provenance")))
        labels = tuple(metadata["labels"])
    else:
        state = read_run_state(source, BEST)
        if state.get("members"):
            raise ValueError(f"{source}: a pair cannot be a member of another pair (give its members instead)")
        record = _readable(source, lambda: RunRecord.from_state(state))
        model = keras.models.load_model(os.path.join(source, "best.keras"), compile=False)
        prov = record.provenance("", "", None, "", "")
        arch, labels = record.arch or "", record.labels
    command, epochs, seconds = _readable(source, prov.lineage)
    return model, PairMember(model=source, share=share, architecture=arch, command=command, commit=prov.train_commit,
                             epochs=epochs, train_seconds=seconds, distilled=prov.distilled,
                             ferplus=prov.ferplus), labels


def _readable(source: str, read: Callable[[], R]) -> R:
    """What `read` makes of a member's records; records of the wrong shape are a one-line ValueError."""
    try:
        return read()
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: its provenance record is malformed ({exc})") from None


def pair_models(sources: Sequence[str], shares: Sequence[float], data: dict, out: str,
                command: Optional[str] = None) -> dict:
    """Join the models at `sources`, weighted by `shares`, into `out`/best.keras and report."""
    if len(sources) < 2 or len(shares) != len(sources) or any(s <= 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise ValueError("give two or more models and one positive share each, summing to 1 "
                         f"(got {len(sources)} models, shares {', '.join(f'{s:g}' for s in shares) or 'none'})")
    require_new_out(out)
    loaded = [load_member(source, share, data["train"].images) for source, share in zip(sources, shares)]
    labels = loaded[0][2]
    for source, (_, _, other) in zip(sources, loaded):
        if other != labels:
            raise ValueError(f"{source}: its labels ({', '.join(other)}) differ from the first model's ({', '.join(labels)})")
    members = [member for _, member, _ in loaded]
    names = [f"member{k}_{re.sub('[^A-Za-z0-9_]', '_', m.architecture or 'net')}" for k, m in enumerate(members)]
    model = pair_networks([network for network, _, _ in loaded], shares, names)
    os.makedirs(out, exist_ok=True)
    atomic_save(model, os.path.join(out, "best.keras"))
    with open(os.path.join(out, "history.csv"), "w") as f:
        f.write("epoch,lr,seconds,accuracy,loss,val_accuracy,val_loss\n")   # a pair trains no epoch
    state = {"config": {"arch": " + ".join(m.architecture or "?" for m in members), "labels": list(labels)},
             "command": command, "commit": git_commit(), "hardware": describe(), "params": int(model.count_params()),
             "multiply_adds": sum(multiply_adds(network) for network, _, _ in loaded), "epoch": 0, "best_epoch": 0,
             "train_seconds": sum(m.train_seconds for m in members), "members": [m.to_json() for m in members]}
    write_json(os.path.join(out, "state.json"), state)
    return finish(out, data, state)
