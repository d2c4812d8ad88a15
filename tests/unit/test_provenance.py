"""The provenance records read what shipped models carry, and write it back unchanged."""

import glob
import os

import pytest

from fer_edge.model.classify import EmotionClassifier
from fer_edge.model.provenance import Ancestor, Averaging, Provenance, SoupShare

MODELS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "models", "*.tflite")))


@pytest.mark.parametrize("path", MODELS, ids=os.path.basename)
def test_a_shipped_models_provenance_round_trips(path):
    written = EmotionClassifier(path).metadata["provenance"]
    provenance = Provenance.from_json(written)
    assert provenance.to_json() == written
    chains = [(m.command, m.distilled) for m in provenance.members] or [
        (provenance.warm_start and provenance.warm_start.command, provenance.distilled)]
    for command, distilled in chains:   # each network: a chain of fit runs, the last distilled with face-api.js
        assert command and command.startswith("fer-train fit")
        assert distilled and distilled.teachers[0].model == "face-api.tflite"


def test_lineage_joins_the_chain_of_runs():
    provenance = Provenance(train_command="fer-train fit B", train_seconds=100.0, best_epoch=4,
                            averaging=Averaging("fer-train average", run="runs/b", epochs=(5, 6, 7)),
                            warm_start=Ancestor(run="runs/a", command="fer-train fit A", epochs=30, train_seconds=900.0))
    assert provenance.lineage() == ("fer-train fit A, then fer-train fit B, then fer-train average", 37, 1000.0)


def test_a_soup_keeps_its_shares():
    soup = Averaging("fer-train soup", soup=(SoupShare("runs/a", 0.25), SoupShare("runs/b", 0.75)))
    written = Provenance(averaging=soup).to_json()
    assert written["soup"][1] == {"model": "runs/b", "share": 0.75} and written["averaged_epochs"] is None
    assert Provenance.from_json(written).averaging == soup
