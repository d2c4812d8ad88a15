"""fer-edge as a real Home Assistant core sees it: its own MQTT discovery, schemas and entities.

Home Assistant needs Python >= 3.13, so it runs from its own venv (see docs/kiosk.md):
set FER_EDGE_HA_PYTHON to that venv's python, or make `.ha-venv` at the repository root.
Without one this test is skipped.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from mqtt_helpers import Broker, Recorder, make_visits_video

HA_PYTHON = Path(os.environ.get("FER_EDGE_HA_PYTHON") or ROOT / ".ha-venv" / "bin" / "python")
pytestmark = [pytest.mark.slow, pytest.mark.needs_broker, pytest.mark.home_assistant]


def ha_version():
    if not HA_PYTHON.exists():
        pytest.skip(f"no Home Assistant venv at {HA_PYTHON} (docs/kiosk.md says how to make one)")
    found = subprocess.run([str(HA_PYTHON), "-c", "from homeassistant.const import __version__ as v; print(v)"],
                           capture_output=True, text=True)
    if found.returncode:
        pytest.skip(f"{HA_PYTHON} has no Home Assistant: {found.stderr.strip().splitlines()[-1:]}")
    return tuple(int(part) for part in found.stdout.strip().split(".")[:2])


@pytest.mark.parametrize("device_id, model", [("Kiosk 1.lan", "model_path"), ("café", "model_path"),
                                              ("six classes", "six_class_model")])
def test_home_assistant_accepts_and_follows_the_device(request, tmp_path, photos, device_id, model):
    """The shipped model under two awkward device ids, and a six-class model of its own labels."""
    from fer_edge.model.classify import EmotionClassifier
    from fer_edge.outputs.ha_discovery import entity_slug

    version = ha_version()
    model_path = request.getfixturevalue(model)
    labels = EmotionClassifier(str(model_path)).labels
    slug = f"fer_edge_{entity_slug(device_id)}"
    broker = Broker(tmp_path).start()
    recorder = Recorder(broker.port, topics=("homeassistant/#",))
    log = (tmp_path / "ha.log").open("w")
    ha = subprocess.Popen([str(HA_PYTHON), str(ROOT / "tests" / "ha" / "home_assistant_check.py"),
                           "--broker", f"127.0.0.1:{broker.port}", "--payloads", str(tmp_path / "payloads.json"),
                           "--entity-prefix", slug, "--http-port", str(free_port()),
                           "--seconds", "240"], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        deadline = time.monotonic() + 180
        while "watching" not in (tmp_path / "ha.log").read_text():
            assert ha.poll() is None and time.monotonic() < deadline, (tmp_path / "ha.log").read_text()[-3000:]
            time.sleep(0.5)
        video = make_visits_video(photos, tmp_path)
        run = subprocess.run([str(Path(sys.executable).parent / "fer-edge"), "run", "--source", str(video), "--realtime",
                              "--model", str(model_path), "--db", str(tmp_path / "log.db"), "--mqtt",
                              f"127.0.0.1:{broker.port}", "--device-id", device_id, "--session-min", "0.5",
                              "--session-gap", "0.5", "--exit-seconds", "0.5", "--quiet"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        configs = {topic: json.loads(payload) for _, topic, payload, _ in recorder.messages if topic.endswith("/config")}
        (tmp_path / "payloads.json").write_text(json.dumps(list(configs.items())))
        out, _ = ha.communicate(timeout=120)
    finally:
        if ha.poll() is None:
            ha.kill()
        recorder.close()
        broker.stop()
    report = json.loads(out)
    print(json.dumps(report["statistics"], indent=1))
    print(json.dumps(report, indent=1)[:6000])
    # Every discovery topic fits HA's pattern, every payload passes its platform's schema,
    # and HA keeps every key (default_entity_id is known from 2025.10 on).
    assert len(report["payloads"]) == 8
    for checked in report["payloads"]:
        assert checked["topic_ok"] and checked["error"] is None, checked
        newer = {"default_entity_id"} if version < (2025, 10) else set()
        assert set(checked["dropped"]) <= newer, checked
    assert not report["warnings"], report["warnings"]
    # Each entity exists under the id the device asked for (HA from 2025.10 honours
    # default_entity_id; older ones name it from the entity's name).
    by_key = {e["unique_id"].removeprefix(f"fer-edge-{device_id}-"): e["entity_id"] for e in report["entities"]}
    assert set(by_key) == {"emotion", "people", "satisfaction", "sessions_today", "fps", "outbox", "visit", "online"}
    if version >= (2025, 10):
        assert all(entity.endswith(f".{slug}_{key}") for key, entity in by_key.items()), by_key
    history = report["history"]
    states = lambda key: [h["state"] for h in history.get(by_key[key], [])]  # noqa: E731
    numbers = lambda key: [float(s) for s in states(key) if s not in ("unknown", "unavailable")]  # noqa: E731
    # The emotion sensor follows the visitor, and the people count goes up and back to 0.
    emotions = set(states("emotion")) - {"unknown", "unavailable"}
    assert emotions and emotions <= set(labels), states("emotion")
    assert history[by_key["emotion"]][-1]["attributes"].get("options") == list(labels)
    assert "1" in states("people") and "0" in states("people"), states("people")
    # Each finished visit sets the satisfaction (0-100, with its attributes) and fires the event.
    scores = numbers("satisfaction")
    assert scores and all(0 <= s <= 100 for s in scores)
    last = [h for h in history[by_key["satisfaction"]] if h["state"] not in ("unknown", "unavailable")][-1]
    assert {"exit_emotion", "dominant", "duration", "ended_by", "exit_probs"} <= set(last["attributes"])
    fired = [h for h in history[by_key["visit"]] if h["attributes"].get("event_type") == "visit"]
    assert len(fired) >= 3 and fired[-1]["attributes"]["exit_emotion"] in labels
    assert states("online")[-1] == "off" and report["offline_seen"]
    # HA's recorder keeps long-term statistics of the numeric sensors, with their units, its
    # own validation finds nothing to repair, and the 5-minute statistics hold what happened.
    statistics = report["statistics"]
    kept = {key: statistics["ids"].get(entity) for key, entity in by_key.items()}
    assert kept["satisfaction"] == {"unit": "%", "mean": True, "sum": False}, kept
    assert kept["people"] == {"unit": None, "mean": True, "sum": False}, kept
    assert kept["fps"]["unit"] == "fps" and kept["outbox"]["unit"] == "messages", kept
    assert kept["sessions_today"]["sum"] and kept["emotion"] is None, kept
    assert not statistics["issues"], statistics["issues"]
    rows = lambda key: statistics["five_minute"].get(by_key[key], [])  # noqa: E731
    assert max(r["max"] for r in rows("people")) == 1 and min(r["min"] for r in rows("people")) == 0, rows("people")
    assert rows("satisfaction") and all(0 <= r["min"] <= r["max"] <= 100 for r in rows("satisfaction"))
    assert max(r["max"] for r in rows("satisfaction")) == max(scores), (rows("satisfaction"), scores)
    counted = numbers("sessions_today")
    assert rows("sessions_today")[-1]["state"] == counted[-1] >= 3, (rows("sessions_today"), counted)
