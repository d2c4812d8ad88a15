"""`fer-edge deploy` on a real mosquitto, with the ACL docs/fleet.md gives, a real collector,
and devices played by a small stand-in that speaks the deployment's topics as a device does:
it says which model it runs (retained), reads its own release topic, checks each order with
the fleet's public key (deploy/order.read_order) and answers received, trial, then kept or
rolled back. (The real device processes are tested end to end elsewhere.)"""

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from conftest import run_cli
from mqtt_helpers import Broker, Recorder, collector_login, start_collector
from test_fleet import broker_acl, stop

pytest.importorskip("paho.mqtt")
pytest.importorskip("cryptography")
pytestmark = [pytest.mark.needs_broker, pytest.mark.slow]

PASSWORD = "device-password"
DEPLOYER = "fer-edge-deployer"


class StandIn:
    """A device as the deployment sees it. `verdict`: what its health gate says after a trial
    ("kept", "rolled back", or None: it takes the model and never says); `delay`: how long
    its trial takes."""

    def __init__(self, port, device, public_key, verdict="kept", delay=0.3, group=None, model_path=None,
                 reason="faces per frame fell by 80% (at most 50%)"):
        import paho.mqtt.client as mqtt

        from fer_edge.model.metadata import read_metadata

        data = Path(model_path).read_bytes()
        self.device, self.public_key, self.verdict, self.delay, self.group = device, public_key, verdict, delay, group
        self.reason = reason
        self.model = {"name": Path(model_path).name, "version": 1, "sha256": hashlib.sha256(data).hexdigest(),
                      "labels": list(read_metadata(data)["labels"])}
        self.previous = None
        self.orders = []              # (time, action, rollout, gate) of every order that checked
        self.refusals = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"stand-in-{device}", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(device, PASSWORD)
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.on_connect, self.client.on_message = self._on_connect, self._on_message
        self.port = port

    def topic(self, kind):
        return f"fer-edge/{self.device}/{kind}"

    def start(self):
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert Recorder.wait_for(self.client.is_connected, 10)
        return self

    def go_offline(self):
        """Gone as a device that loses power: its retained model state stays, its will says offline."""
        self.client.publish(self.topic("availability"), "offline", qos=1, retain=True).wait_for_publish(10)
        self.client.loop_stop()
        self.client.disconnect()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        self.say("running")
        client.subscribe(self.topic("release"), qos=1)

    def say(self, state, rollout=None, release=None, reason=None):
        message = {"msg_id": f"{time.time_ns():x}{self.device.encode().hex()}"[:32], "device": self.device,
                   "ts": time.time(), "group": self.group, "model": self.model,
                   "previous": self.previous and {k: self.previous[k] for k in ("name", "version", "sha256")},
                   "state": state, "rollout": rollout, "release": release, "reason": reason, "before": None, "after": None}
        self.client.publish(self.topic("model"), json.dumps(message), qos=1, retain=True)

    def _on_message(self, client, userdata, message):
        from fer_edge.deploy.order import OrderRefused, read_order

        if not message.payload:
            return                                        # the order cleared
        self.raw = bytes(message.payload)
        try:
            order = read_order(message.payload, self.public_key)
        except OrderRefused as refused:
            self.refusals.append(str(refused))
            header = refused.header or {}
            self.say("refused", header.get("rollout"), None, str(refused))
            return
        self.orders.append((time.time(), order.action, order.rollout, order.gate))
        if order.action == "rollback":
            if self.model["sha256"] != order.from_sha256:
                self.say("refused", order.rollout, None, "refused: not running that model")
                return
            self.model, self.previous = self.previous, None
            self.say("rolled back", order.rollout, None, f"rolled back by {order.by}")
            return
        if order.model["sha256"] == self.model["sha256"]:
            return                                        # running it already (a restart reads the order again)
        release = order.release()
        self.say("received", order.rollout, release)
        new = dict(release, labels=order.model["labels"])
        self.previous, self.model = self.model, new
        self.say("trial", order.rollout, release)
        if self.verdict is not None:
            threading.Timer(self.delay, self._judge, (order.rollout, release)).start()

    def _judge(self, rollout, release):
        if self.verdict == "kept":
            self.say("kept", rollout, release)
        elif self.verdict != "rolled back":           # a hostile device's word
            self.say(self.verdict, rollout, release, self.reason)
        else:
            self.model, self.previous = self.previous, None
            self.say("rolled back", rollout, release, self.reason)


@pytest.fixture()
def fleet(tmp_path, model_path):
    """A broker with the documented ACL, a collector, the fleet's keys, and a way to add devices."""
    from fer_edge.deploy.order import load_public_key, make_keys

    users = {f"kiosk-{n}": PASSWORD for n in range(1, 8)}
    users.update({DEPLOYER: "deployer-password", "fer-edge-collector": "collector-password"})
    broker = Broker(tmp_path).with_passwords(users, acl=broker_acl()).start()
    db = tmp_path / "fleet.db"
    collector = start_collector(broker.port, db, "collector", *collector_login(tmp_path, users["fer-edge-collector"]))
    key, pub = make_keys(str(tmp_path / "keys"))
    devices = []

    def add(name, **options):   # each runs the shipped model's dynamic-range twin, as version 1
        running = Path(model_path).with_name(Path(model_path).stem + "-dynamic.tflite")
        devices.append(StandIn(broker.port, name, load_public_key(pub), model_path=running, **options).start())
        return devices[-1]

    login = ("--mqtt", f"127.0.0.1:{broker.port}", *collector_login(tmp_path, users[DEPLOYER], DEPLOYER))
    state = {"broker": broker, "db": db, "key": key, "pub": pub, "add": add, "login": login, "folder": tmp_path}
    yield state
    for device in devices:
        device.client.loop_stop()
    said = stop(collector)
    broker.stop()
    assert "Traceback" not in said, said


def deploy(fleet, *args, timeout=120):
    result = run_cli("fer-edge", "deploy", *args, *fleet["login"], timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def said(result):
    """The command's lines on stderr, without the `fer-edge: ` each starts with."""
    return [line.split(": ", 1)[1] if line.startswith("fer-edge: ") else line for line in result.stderr.splitlines()]


def retained_orders(port):
    """What each release topic holds now (a new subscriber's view): {device: bytes}."""
    import paho.mqtt.client as mqtt

    held = {}
    reader = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="release-reader")
    reader.on_message = lambda c, u, message: held.__setitem__(message.topic.split("/")[1], len(message.payload))
    reader.connect("127.0.0.1", port)
    reader.subscribe("fer-edge/+/release", qos=1)
    reader.loop_start()
    time.sleep(1.0)
    reader.loop_stop()
    reader.disconnect()
    return held


def rows(db, sql):
    return sqlite3.connect(db).execute(sql).fetchall()


def test_canaries_first_then_every_device_and_an_offline_one_when_it_returns(fleet, model_path):
    canaries = [fleet["add"]("kiosk-1"), fleet["add"]("kiosk-2", delay=1.0)]
    rest = [fleet["add"](f"kiosk-{n}") for n in (3, 4, 5)]
    offline = fleet["add"]("kiosk-6")
    time.sleep(0.5)
    offline.go_offline()
    result = deploy(fleet, "publish", model_path, "--key", fleet["key"], "--canary", "kiosk-1", "--canary", "kiosk-2",
                    "--gate-seconds", "2", "--gate-min-faces", "3", "--wait", "15")
    lines = said(result)
    assert result.returncode == 0, (result.stderr, [(d.device, d.orders, d.refusals) for d in canaries])
    assert lines[0].startswith("rollout fer-cnn-int8-v2-") and "to 6 devices, canaries kiosk-1, kiosk-2" in lines[0]
    assert "offline now: kiosk-6" in lines[0], lines[0]
    for step in ("received", "trial", "kept"):
        assert f"kiosk-1: {step}" in lines and f"kiosk-2: {step}" in lines, lines
    assert "promoted: sent to kiosk-3, kiosk-4, kiosk-5, kiosk-6" in lines, lines
    assert "no answer yet from kiosk-6 (offline?): each gets the model when it returns" in lines, lines
    assert lines[-1] == "promoted: every canary kept it", lines
    kept_at = max(c.orders[0][0] for c in canaries) + 1.0
    assert all(d.orders and d.orders[0][0] >= kept_at - 0.05 for d in rest), "the rest only after both canaries kept it"
    assert all(d.orders[0][3]["seconds"] == 2 and d.orders[0][3]["min_faces"] == 3 for d in canaries + rest)
    assert {d.model["version"] for d in canaries + rest} == {2}
    rid = lines[0].split()[1].rstrip(":")
    returned = fleet["add"]("kiosk-6")     # back: it reads its retained order
    assert Recorder.wait_for(lambda: returned.model["version"] == 2, 10), returned.orders
    db = fleet["db"]
    assert Recorder.wait_for(lambda: rows(db, "SELECT COUNT(*) FROM device_models WHERE version = 2 AND state = 'kept'")
                             == [(6,)], 15), rows(db, "SELECT device, version, state FROM device_models")
    [(state, by, canary_list, record)] = rows(db, f"SELECT state, by_whom, canaries, record FROM rollouts WHERE id = '{rid}'")
    assert state == "promoted" and json.loads(canary_list) == ["kiosk-1", "kiosk-2"] and "@" in by
    events = [entry["event"] for entry in json.loads(record)["history"]]
    assert events[0] == "published" and "promoted" in events, events
    health = run_cli("fer-edge", "report", "--db", db, "--health", timeout=60).stdout
    assert "fer-cnn-int8.tflite v2 (kept)" in health and f"{rid}  promoted  fer-cnn-int8.tflite v2" in health, health
    shown = deploy(fleet, "status")
    assert shown.returncode == 0 and shown.stdout.startswith(f"{rid}  promoted"), shown.stdout
    assert "kiosk-6  fer-cnn-int8.tflite v2  kept" in shown.stdout, shown.stdout


def test_a_canary_that_rolls_back_rolls_the_rollout_back_and_no_other_device_gets_it(fleet, model_path):
    good = fleet["add"]("kiosk-1", delay=0.2)
    bad = fleet["add"]("kiosk-2", verdict="rolled back", delay=1.5)
    rest = [fleet["add"](f"kiosk-{n}") for n in (3, 4, 5)]
    result = deploy(fleet, "publish", model_path, "--key", fleet["key"], "--canary", "kiosk-1", "--canary", "kiosk-2",
                    "--wait", "15")
    lines = said(result)
    assert result.returncode == 1, result.stderr
    steps = ["kiosk-1: received", "kiosk-1: trial", "kiosk-2: received", "kiosk-2: trial", "kiosk-1: kept"]
    assert sorted(lines[1:6]) == sorted(steps) and lines.index("kiosk-1: received") < lines.index("kiosk-1: trial"), lines
    assert "kiosk-2: rolled back: faces per frame fell by 80% (at most 50%)" in lines, lines
    assert any(line.startswith("rolled back: canary kiosk-2 rolled back: faces per frame fell by 80%")
               and "rollback orders sent to kiosk-1," in line for line in lines), lines
    assert "kiosk-1: back on fer-cnn-int8-dynamic.tflite v1" in lines, lines
    assert [o[1] for o in good.orders] == ["install", "rollback"], "kiosk-1 got a signed rollback order"
    assert good.model["version"] == 1 and bad.model["version"] == 1
    assert all(d.orders == [] for d in rest), "no other device ever got the model"
    assert retained_orders(fleet["broker"].port) == {}, "every install and rollback order cleared"
    rid = lines[0].split()[1].rstrip(":")
    db = fleet["db"]
    assert Recorder.wait_for(lambda: rows(db, f"SELECT state FROM rollouts WHERE id = '{rid}'") == [("rolled back",)], 10)
    [(reason,)] = rows(db, f"SELECT reason FROM rollouts WHERE id = '{rid}'")
    assert reason.startswith("canary kiosk-2 rolled back: faces per frame fell"), reason
    health = run_cli("fer-edge", "report", "--db", db, "--health", timeout=60).stdout
    assert f"{rid}  rolled back" in health and "rolled back: canary kiosk-2 rolled back" in health, health


def test_an_order_signed_with_another_key_is_refused_and_rolled_back(fleet, model_path):
    from fer_edge.deploy.order import make_keys

    other, _ = make_keys(str(fleet["folder"] / "other-keys"))
    device = fleet["add"]("kiosk-1")
    fleet["add"]("kiosk-2")
    result = deploy(fleet, "publish", model_path, "--key", other, "--canary", "kiosk-1", "--wait", "10")
    assert result.returncode == 1, result.stderr
    assert device.refusals and device.refusals[0].startswith("not signed by this fleet's key"), device.refusals
    assert any(line.startswith("kiosk-1: refused: not signed by this fleet's key") for line in said(result))
    assert retained_orders(fleet["broker"].port) == {}


def test_manual_promote_and_rollback_and_a_silent_canary(fleet, model_path):
    silent = fleet["add"]("kiosk-1", verdict=None)
    rest = [fleet["add"](f"kiosk-{n}") for n in (2, 3)]
    result = deploy(fleet, "publish", model_path, "--key", fleet["key"], "--canary", "kiosk-1", "--wait", "3")
    assert result.returncode == 3, result.stderr
    rid = said(result)[0].split()[1].rstrip(":")
    assert f"stopped: no word from canary kiosk-1 within 3 s; `fer-edge deploy promote {rid}`" in result.stderr
    assert all(d.orders == [] for d in rest)
    promoted = deploy(fleet, "promote", rid, "--wait", "10")
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted: sent to kiosk-2, kiosk-3" in promoted.stderr and all(d.model["version"] == 2 for d in rest)
    again = deploy(fleet, "promote", rid)
    assert again.returncode == 1 and again.stderr == f"Error: rollout {rid} is done: only a rollout on its canaries " \
        "is promoted\n", again.stderr
    back = deploy(fleet, "rollback", rid, "--key", fleet["key"])
    assert back.returncode == 0, back.stderr
    assert "rollback orders sent to kiosk-1, kiosk-2, kiosk-3" in back.stderr, back.stderr
    assert all(d.model["version"] == 1 for d in [silent, *rest]) and [o[1] for o in rest[0].orders] == ["install", "rollback"]
    assert retained_orders(fleet["broker"].port) == {}
    shown = deploy(fleet, "status")
    assert shown.stdout.startswith(f"{rid}  rolled back") and "by hand" in shown.stdout.splitlines()[0], shown.stdout
    missing = deploy(fleet, "rollback", "no-such-rollout", "--key", fleet["key"])
    assert missing.returncode == 1 and missing.stderr == \
        "Error: no rollout 'no-such-rollout' on the broker (fer-edge deploy status lists them)\n", missing.stderr


def test_what_a_canary_says_reaches_the_record_as_one_clean_line(fleet, model_path):
    """A device's reason is its own text: control characters and a length past what the
    collector stores do not cost the rollout its record."""
    fleet["add"]("kiosk-1", verdict="rolled back", reason="\x1b[2Jcleared\nscreen " + "x" * 2000)
    fleet["add"]("kiosk-2")
    result = deploy(fleet, "publish", model_path, "--key", fleet["key"], "--canary", "kiosk-1", "--wait", "10")
    assert result.returncode == 1 and "\x1b" not in result.stderr, result.stderr
    rid = said(result)[0].split()[1].rstrip(":")
    db = fleet["db"]
    assert Recorder.wait_for(lambda: rows(db, f"SELECT state FROM rollouts WHERE id = '{rid}'") == [("rolled back",)], 10)
    [(reason,)] = rows(db, f"SELECT reason FROM rollouts WHERE id = '{rid}'")
    assert reason.startswith("canary kiosk-1 rolled back: [2Jcleared screen xxx") and len(reason) <= 500, reason
    assert rows(db, "SELECT reason FROM rejected WHERE topic LIKE 'fer-edge-rollouts/%'") == []



def test_the_broker_killed_in_the_canary_wait_and_restarted_the_rollout_goes_on(fleet, model_path):
    """mosquitto SIGKILLed while the canary is on trial: the deployer reconnects, reads the
    fleet again, hears the canary keep the model and promotes it."""
    import signal
    import subprocess
    import sys

    canary = fleet["add"]("kiosk-1", delay=8.0)
    other = fleet["add"]("kiosk-2")
    command = [str(Path(sys.executable).parent / "fer-edge"), "deploy", "publish", str(model_path), "--key",
               str(fleet["key"]), "--canary", "kiosk-1", "--wait", "60", *map(str, fleet["login"])]
    controller = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert Recorder.wait_for(lambda: canary.orders, 30), "the canary got its order"
        broker = fleet["broker"]
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
        time.sleep(1.0)
        broker.start()
        stderr = controller.communicate(timeout=120)[1]
    finally:
        if controller.poll() is None:
            controller.kill()
    assert "Traceback" not in stderr, stderr
    assert controller.returncode == 0, stderr
    assert "kiosk-1: kept" in stderr and other.model["version"] == 2, stderr


def test_a_fleet_too_big_for_one_record_is_one_line_and_long_reasons_never_cost_the_record(tmp_path, model_path):
    """A record is one retained message that the collectors and `deploy status` read (at most
    64 KB): 10,000 devices are refused in one line before anything is sent; the devices' long
    reasons in a record of hundreds are left out of it (each device's own MODEL STATE keeps
    its reason), and the record is stored and read back."""
    from fer_edge.deploy.fleet_link import Link
    from fer_edge.deploy.order import make_keys
    from fer_edge.deploy.rollout import Rollout, new_record, status
    from fer_edge.outputs.broker import Broker as Address
    from test_fleet import publisher
    from test_message_rows import model_state

    key, _ = make_keys(str(tmp_path / "keys"))
    broker = Broker(tmp_path).start()
    db = tmp_path / "fleet.db"
    collector = start_collector(broker.port, db, "collector")
    client = publisher(broker.port)
    try:
        infos = [client.publish(f"fer-edge/kiosk-{n:05d}/model", json.dumps(model_state(f"kiosk-{n:05d}")), qos=1,
                                retain=True) for n in range(10_000)]
        for info in infos:
            info.wait_for_publish(30)
        result = run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, "--mqtt", f"127.0.0.1:{broker.port}",
                         timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("Error: 10000 devices: too many for one rollout's record") \
            and len(result.stderr.splitlines()) == 1, result.stderr
        assert retained_orders(broker.port) == {}

        link = Link(Address("127.0.0.1", broker.port), "fer-edge", print).open()
        try:
            targets = [f"kiosk-{n:05d}" for n in range(300)]
            header = {"model": {"name": "m.tflite", "version": 2, "sha256": "b" * 64, "labels": ["a", "b"]}}
            rollout = Rollout(link, new_record("r-big", header, "ops@laptop", targets[:2], targets), print, by="ops@x")
            for device in targets:
                rollout.mark(device, "rolled back", "y" * 500)
            rollout.publish()
            assert Recorder.wait_for(lambda: "r-big" in link.records, 10), "the deployer reads its record back"
            assert "r-big  canary  m.tflite v2" in status(link)
        finally:
            link.close()
        assert Recorder.wait_for(lambda: rows(db, "SELECT state FROM rollouts WHERE id = 'r-big'") == [("canary",)], 20), \
            rows(db, "SELECT reason FROM rejected")
    finally:
        client.loop_stop()
        client.disconnect()
        said = stop(collector)
        broker.stop()
    assert "Traceback" not in said, said


def test_a_controller_killed_in_the_canary_wait_leaves_promote_rollback_and_status_truthful(fleet, model_path):
    """The deployer SIGKILLed while its canary is on trial, and the canary rolls the model back
    by itself: `deploy promote` refuses to send that model to the rest (the gate said no),
    `deploy rollback` ends the rollout, and `deploy status` says so."""
    import signal
    import subprocess
    import sys

    canary = fleet["add"]("kiosk-1", verdict="rolled back", delay=2.0)
    other = fleet["add"]("kiosk-2")
    command = [str(Path(sys.executable).parent / "fer-edge"), "deploy", "publish", str(model_path), "--key",
               str(fleet["key"]), "--canary", "kiosk-1", "--wait", "60", *map(str, fleet["login"])]
    controller = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert Recorder.wait_for(lambda: canary.orders, 30), "the canary got its order"
    controller.send_signal(signal.SIGKILL)
    controller.wait(10)
    assert Recorder.wait_for(lambda: canary.model["version"] == 1, 10), "the canary rolled back by itself"
    shown = deploy(fleet, "status").stdout
    rid = shown.split()[0]
    assert shown.startswith(f"{rid}  canary") and "; 1 rolled back, 1 waiting" in shown.splitlines()[0], shown
    promoted = deploy(fleet, "promote", rid, "--wait", "5")
    assert promoted.returncode == 1 and other.orders == [], (promoted.stderr, other.orders)
    assert promoted.stderr.startswith(f"Error: canary kiosk-1 rolled back rollout {rid} by itself: "
                                      "faces per frame fell by 80%"), promoted.stderr
    assert len(promoted.stderr.splitlines()) == 1, promoted.stderr
    back = deploy(fleet, "rollback", rid, "--key", fleet["key"])
    assert back.returncode == 0, back.stderr
    shown = deploy(fleet, "status").stdout
    assert shown.startswith(f"{rid}  rolled back") and other.orders == [], shown
    assert retained_orders(fleet["broker"].port) == {}


def test_what_a_hostile_device_says_never_reaches_the_terminal_raw_nor_costs_the_record(fleet, model_path):
    """A device (with the documented ACL) that names its model with terminal escapes, and a
    canary that answers with a state no device says: the deployer's lines are clean, the
    unknown state is not taken as a step, and the collector stores every record."""
    hostile = "\x1b[2J\x1b]0;owned\x07<img src=x onerror=alert(1)>"
    first = fleet["add"]("kiosk-1", delay=0.2)
    first.model["name"] = hostile                      # what it runs before; back on it after the rollback
    fleet["add"]("kiosk-2", verdict="rolled back", delay=1.5)
    result = deploy(fleet, "publish", model_path, "--key", fleet["key"], "--canary", "kiosk-1", "--canary", "kiosk-2",
                    "--wait", "15")
    assert result.returncode == 1 and "kiosk-1: back on [2J ]0;owned <img src=x onerror=alert(1)> v1" in said(result)
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr, result.stderr
    fleet["add"]("kiosk-3", verdict="\x1b[2J" + "x" * 600, delay=0.2)
    result = deploy(fleet, "publish", model_path, "--key", fleet["key"], "--canary", "kiosk-3", "--device", "kiosk-3",
                    "--wait", "4")
    assert result.returncode == 3 and "\x1b" not in result.stderr, result.stderr
    assert "no word from canary kiosk-3" in result.stderr, result.stderr
    rid = said(result)[0].split()[1].rstrip(":")
    db = fleet["db"]
    assert Recorder.wait_for(lambda: rows(db, f"SELECT state FROM rollouts WHERE id = '{rid}'") == [("stopped",)], 10)
    assert rows(db, "SELECT reason FROM rejected WHERE topic LIKE 'fer-edge-rollouts/%'") == []


def test_ctrl_c_in_the_canary_wait_leaves_the_rollout_stopped_for_a_decision(fleet, model_path):
    import signal
    import subprocess
    import sys

    canary = fleet["add"]("kiosk-1", verdict=None)
    other = fleet["add"]("kiosk-2")
    command = [str(Path(sys.executable).parent / "fer-edge"), "deploy", "publish", str(model_path), "--key",
               str(fleet["key"]), "--canary", "kiosk-1", "--wait", "60", *map(str, fleet["login"])]
    controller = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert Recorder.wait_for(lambda: canary.orders, 30), "the canary got its order"
    time.sleep(0.5)
    controller.send_signal(signal.SIGINT)
    stderr = controller.communicate(timeout=30)[1]
    assert controller.returncode == 3 and "Traceback" not in stderr and "Aborted" not in stderr, stderr
    rid = stderr.split()[2].rstrip(":")
    assert f"stopped: interrupted in the canary wait; `fer-edge deploy promote {rid}`" in stderr, stderr
    assert deploy(fleet, "status").stdout.startswith(f"{rid}  stopped") and other.orders == []


def test_promote_sends_only_the_order_the_rollout_signed_not_what_a_canary_left_on_its_topic(fleet, model_path):
    """Under the documented ACL a device may write its own release topic: a canary that puts
    there the signed header with other model bytes does not get `deploy promote` to hand every
    other device an order they all refuse."""
    canary = fleet["add"]("kiosk-1", verdict=None)
    other = fleet["add"]("kiosk-2")
    result = deploy(fleet, "publish", model_path, "--key", fleet["key"], "--canary", "kiosk-1", "--wait", "3")
    assert result.returncode == 3, result.stderr
    rid = said(result)[0].split()[1].rstrip(":")
    forged = canary.raw[:-1] + bytes([canary.raw[-1] ^ 1])
    canary.client.unsubscribe(canary.topic("release"))     # a hostile canary says nothing of it
    time.sleep(0.3)
    canary.client.publish(canary.topic("release"), forged, qos=1, retain=True).wait_for_publish(10)
    time.sleep(0.5)
    promoted = deploy(fleet, "promote", rid, "--wait", "5")
    assert promoted.returncode == 1 and other.orders == [] and other.refusals == [], (promoted.stderr, other.refusals)
    assert promoted.stderr == f"Error: the signed order of rollout {rid} is no longer on the broker: publish the " \
        "model again\n", promoted.stderr


def test_an_old_refusal_read_again_after_a_broker_restart_is_not_taken_for_this_rollouts(fleet, model_path):
    """A canary offline with an old refusal retained (an order of another key: it names no
    rollout); the broker restarts in the canary wait and the deployer reads that refusal again:
    it is not this rollout's (was: the rollout rolled back), and the canary stays silent."""
    import signal
    import subprocess
    import sys

    canary = fleet["add"]("kiosk-1")
    fleet["add"]("kiosk-2")
    canary.say("refused", None, None, "not signed by this fleet's key")
    time.sleep(0.3)
    canary.go_offline()
    command = [str(Path(sys.executable).parent / "fer-edge"), "deploy", "publish", str(model_path), "--key",
               str(fleet["key"]), "--canary", "kiosk-1", "--wait", "12", *map(str, fleet["login"])]
    controller = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    broker = fleet["broker"]
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait(10)
    broker.start()
    stderr = controller.communicate(timeout=120)[1]
    assert controller.returncode == 3 and "no word from canary kiosk-1" in stderr, stderr


def test_two_rollouts_of_one_model_in_the_same_second_get_two_ids_the_order_accepts():
    from fer_edge.deploy.order import ROLLOUT_FORM
    from fer_edge.deploy.rollout import rollout_id

    now = time.time()
    ids = {rollout_id("a-very-long-model-name/with odd characters" * 3 + ".tflite", 2**31, now) for _ in range(5)}
    assert len(ids) == 5
    assert all(ROLLOUT_FORM.fullmatch(rid) for rid in ids), ids
    assert rollout_id("-m.tflite", 2, now).startswith("m-v2-") and rollout_id("..", 2, now).startswith("model-v2-")
