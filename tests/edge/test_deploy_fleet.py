"""A model rolled out to a fleet, end to end and all real: mosquitto, a collector, six
`fer-edge run` devices on a looping real video, `fer-edge deploy publish` as an operator types it.
A good model reaches the canaries, passes their health gate and reaches every device (one of
them offline meanwhile); a model that reads every face as neutral is rolled back on the
canaries by the gate alone and never reaches the others; devices killed while taking a model
start again on a working one; an order signed with another key is refused and reported."""

import json
import sqlite3
import subprocess
import time

import pytest

from conftest import run_cli
from deploy_helpers import FER_EDGE, V1, V2, Fleet, neutral_model
from mqtt_helpers import Recorder

pytestmark = [pytest.mark.needs_broker, pytest.mark.slow]

CANARIES = ("kiosk-1", "kiosk-2")
REST = ("kiosk-3", "kiosk-4", "kiosk-5", "kiosk-6")
GATE = ("--gate-seconds", "4", "--gate-max-seconds", "40", "--gate-min-faces", "5")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, photos):
    fleet = Fleet(tmp_path_factory.mktemp("fleet"), photos / "single_face.mp4", devices=6)
    yield fleet
    fleet.close()


def fleet_rows(fleet, sql, *args):
    with sqlite3.connect(fleet.fleet_db) as db:
        return db.execute(sql, args).fetchall()


def first_state(fleet, device, state, version):
    """When `device`'s first MODEL STATE `state` about `version` reached the broker's subscriber."""
    for at, payload in fleet.recorder.on(f"fer-edge/{device}/model"):
        message = json.loads(payload)
        if message["state"] == state and (message.get("release") or {}).get("version") == version:
            return at
    return None


def longest_gap(fleet, device, around, seconds=3.0):
    """The longest silence between `device`'s emotion updates within `seconds` of `around`."""
    times = [at for at, _ in fleet.recorder.on(f"fer-edge/{device}/emotion") if abs(at - around) <= seconds]
    return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


def test_a_good_model_reaches_the_canaries_then_every_device(fleet):
    offline = fleet.devices["kiosk-6"]
    offline.stop()                      # away while the model is published: it gets it when it returns
    result = fleet.deploy("publish", V2, "--key", fleet.key, "--version", "1", "--canary", CANARIES[0],
                          "--canary", CANARIES[1], *GATE, "--wait", "30")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kiosk-6" in result.stderr   # named: it gets the model when it returns

    for name in CANARIES + REST[:-1]:
        device = fleet.devices[name]
        device.wait_for("deploy: swapped to fer-cnn-int8-dynamic.tflite v1")
        device.wait_for("deploy: kept")
        swapped = first_state(fleet, name, "trial", 1)
        # The swap happens between two frames: the face's updates go on as before (one a second).
        assert longest_gap(fleet, name, swapped) < 2.5, name
    canaries_kept = max(first_state(fleet, name, "kept", 1) for name in CANARIES)
    assert all(first_state(fleet, name, "trial", 1) > canaries_kept for name in REST[:-1])

    offline.start()
    offline.wait_for("deploy: swapped to fer-cnn-int8-dynamic.tflite v1", timeout=90)
    offline.wait_for("deploy: kept", timeout=90)

    assert Recorder.wait_for(lambda: len(fleet_rows(fleet, "SELECT device FROM device_models WHERE version = 1")) == 6, 30)
    health = run_cli("fer-edge", "report", "--health", "--db", fleet.fleet_db)
    assert health.returncode == 0, health.stderr
    for name in CANARIES + REST:
        assert name in health.stdout
    assert "fer-cnn-int8-dynamic.tflite" in health.stdout


def test_a_model_that_reads_every_face_as_neutral_is_rolled_back_on_the_canaries(fleet, tiny_run, small_csv, tmp_path):
    bad = neutral_model(tiny_run, small_csv, tmp_path / "neutral-int8.tflite")
    result = fleet.deploy("publish", bad, "--key", fleet.key, "--version", "2", "--canary", CANARIES[0],
                          "--canary", CANARIES[1], *GATE, "--wait", "60")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "rolled back" in result.stderr

    for name in CANARIES:
        line = fleet.devices[name].wait_for("deploy: rolled back neutral-int8.tflite v2")
        assert "emotion" in line or "spread" in line, line
        assert Recorder.wait_for(lambda device=name: fleet.states(device)[-1]["model"]["version"] == 1, 30)
    time.sleep(2)
    for name in REST:
        assert not fleet.devices[name].holding("neutral-int8.tflite"), name
        assert fleet.states(name)[-1]["model"]["version"] == 1
    assert Recorder.wait_for(lambda: fleet_rows(fleet, "SELECT state FROM rollouts WHERE version = 2") == [("rolled back",)], 30)


def test_a_device_killed_while_taking_a_model_starts_on_a_working_one(fleet):
    device = fleet.devices["kiosk-3"]
    publish = subprocess.Popen([FER_EDGE, "deploy", "publish", str(V1), "--key", str(fleet.key), "--version", "3",
                                "--device", "kiosk-3", "--canary", "kiosk-3", *GATE, "--wait", "120",
                                "--mqtt", f"127.0.0.1:{fleet.port}"], stderr=subprocess.PIPE, text=True)
    try:
        # Killed as the order has arrived (the model is being written; its trial may have begun by the
        # time the kill lands), then as it is swapped in: each restart on the old model or the new, whole.
        either = ("fer-cnn-int8-dynamic.tflite v1", "fer-cnn-int8.tflite v3")
        for moment in ("deploy: received fer-cnn-int8.tflite v3", "deploy: swapped to fer-cnn-int8.tflite v3"):
            seen = len(device.holding(moment))
            device.wait_for(moment, count=seen + 1, timeout=90)
            device.kill()
            device.lines.clear()
            device.start()
            start = device.wait_for("deploy: ")
            assert start.startswith("fer-edge: deploy: starting on deployed ") and any(m in start for m in either), start
            device.wait_for("MQTT connected")
            if either[1] in start:
                break   # killed in its trial: it goes on with it (a second kill there would roll it back)
        device.wait_for("deploy: kept fer-cnn-int8.tflite v3", timeout=90)
        assert publish.wait(120) == 0, publish.stderr.read()[-3000:]
    finally:
        if publish.poll() is None:
            publish.kill()


def test_an_order_signed_with_another_key_is_refused_and_reported(fleet, tmp_path):
    other = run_cli("fer-edge", "deploy", "keygen", "--out", tmp_path / "other")
    assert other.returncode == 0, other.stderr
    result = fleet.deploy("publish", V2, "--key", tmp_path / "other" / "fer-edge-deploy.key", "--version", "9",
                          "--device", "kiosk-4", "--canary", "kiosk-4", *GATE, "--wait", "30")
    assert result.returncode == 1, result.stderr[-3000:]
    line = fleet.devices["kiosk-4"].wait_for("deploy: refused")
    assert "key" in line and "\n" not in line
    assert Recorder.wait_for(lambda: fleet_rows(fleet, "SELECT state FROM model_events WHERE device = 'kiosk-4' "
                                                       "AND state = 'refused'"), 30)
