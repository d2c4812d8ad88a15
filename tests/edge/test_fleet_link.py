"""The deployer's connection on a real mosquitto: it reads what the broker holds, ignores what a
device sends that is not a model state, and a send the broker's ACL refuses is one line."""

import json
import time

import pytest

from fer_edge.core.errors import UserError
from fer_edge.deploy.fleet_link import Link
from fer_edge.outputs.broker import Broker as Address
from mqtt_helpers import Broker, Recorder
from test_fleet import broker_acl, publisher
from test_message_rows import model_state, rollout_record

pytest.importorskip("paho.mqtt")
pytestmark = pytest.mark.needs_broker


def test_reads_the_fleet_and_ignores_what_is_not_a_model_state(tmp_path):
    broker = Broker(tmp_path).start()
    client = publisher(broker.port)
    retained = {"fer-edge/kiosk-a/model": json.dumps(model_state("kiosk-a")).encode(),
                "fer-edge/kiosk-a/availability": b"online",
                "fer-edge/kiosk-b/model": b"[" * 70_000, "fer-edge/kiosk-c/model": b"{\"a\": NaN",
                "fer-edge/kiosk-d/model": b"[1, 2]", "fer-edge-rollouts/r-1": json.dumps(rollout_record()).encode()}
    for topic, payload in retained.items():
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    link = Link(Address("127.0.0.1", broker.port), "fer-edge", print).open()
    try:
        fleet = link.known()
        assert list(fleet) == ["kiosk-a"] and fleet["kiosk-a"].online and fleet["kiosk-a"].model["version"] == 1
        assert list(link.records) == ["r-1"]
        client.publish("fer-edge/kiosk-a/model", json.dumps(model_state("kiosk-a", "trial", rollout="r-1")), qos=1)
        heard = link.wait(5)
        assert heard is not None and heard.step("r-1") == "trial" and heard.step("r-2") is None
        assert link.wait(0.2) is None
    finally:
        link.close()
        client.loop_stop()
        client.disconnect()
        broker.stop()


def test_a_send_the_acl_refuses_is_one_line(tmp_path):
    users = {"kiosk-a": "kiosk-a-password"}
    broker = Broker(tmp_path).with_passwords(users, acl=broker_acl()).start()
    try:
        link = Link(Address("127.0.0.1", broker.port, "kiosk-a", "kiosk-a-password"), "fer-edge", print).open()
        try:
            with pytest.raises(UserError, match=r"refused fer-edge/kiosk-b/release \(Not authorized\): may the "
                                                r"deployer's login write it"):
                link.send("fer-edge/kiosk-b/release", b"order")
        finally:
            link.close()
        started = time.monotonic()
        with pytest.raises(UserError, match="refused the deployer: Bad user name or password|Not authorized"):
            Link(Address("127.0.0.1", broker.port, "kiosk-a", "wrong"), "fer-edge", print).open()
        assert time.monotonic() - started < 11
    finally:
        broker.stop()


def test_a_send_while_the_broker_restarts_waits_for_it(tmp_path):
    """mosquitto SIGKILLed and back 2 s later: what the deployer sends meanwhile reaches it
    (was 'could not send ... not currently connected' and a rollout left half done)."""
    import signal
    import threading

    broker = Broker(tmp_path).start()
    said = []
    link = Link(Address("127.0.0.1", broker.port), "fer-edge", said.append).open()
    try:
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
        assert Recorder.wait_for(lambda: not link.client.is_connected(), 10)
        threading.Timer(2.0, broker.start).start()
        link.send("fer-edge-rollouts/r-1", json.dumps(rollout_record()).encode())
        assert any("away: waiting up to 60 s" in line for line in said), said
        link.read(["fer-edge-rollouts/+"])
        assert Recorder.wait_for(lambda: "r-1" in link.records, 10), "the record reached the broker"
    finally:
        link.close()
        broker.stop()


def test_a_malformed_rollout_record_is_ignored_and_status_goes_on(tmp_path):
    """What holds the rollouts' topics is the deployer's word, but a broker without the ACL lets
    anyone write there: a record of the wrong shape is ignored, never a crash of `deploy status`,
    `promote` or `rollback` (was ValueError and AttributeError)."""
    from fer_edge.deploy.rollout import status

    broker = Broker(tmp_path).start()
    client = publisher(broker.port)
    hostile = {"r-1": rollout_record("r-1", started="yesterday"), "r-2": rollout_record("r-2", model=[1], devices=[]),
               "r-3": rollout_record("r-3", devices={"kiosk-a": "not a step"}), "r-4": rollout_record("r-4", history="x"),
               "r-5": rollout_record("r-1"), "r-6": rollout_record("r-6", canaries="kiosk-a"),
               "r-7": rollout_record("r-7", updated=None), "r-8": rollout_record("r-8", started=10 ** 400)}
    for rid, record in [*hostile.items(), ("r-ok", rollout_record("r-ok"))]:
        client.publish(f"fer-edge-rollouts/{rid}", json.dumps(record), qos=1, retain=True).wait_for_publish(10)
    link = Link(Address("127.0.0.1", broker.port), "fer-edge", print).open()
    try:
        assert list(link.records) == ["r-ok"], list(link.records)
        assert status(link).startswith("r-ok  canary  fer-int8 v2")
    finally:
        link.close()
        client.loop_stop()
        client.disconnect()
        broker.stop()


def test_under_the_documented_acl_a_device_writes_no_record_and_no_other_devices_topics(tmp_path):
    """A device's login (docs/fleet.md) cannot write a rollout's record, another device's MODEL
    STATE or another device's release topic: the broker drops each, and the deployer never reads them."""
    users = {"kiosk-a": "a-password", "kiosk-b": "b-password", "fer-edge-deployer": "d-password"}
    broker = Broker(tmp_path).with_passwords(users, acl=broker_acl()).start()
    device = publisher(broker.port, "kiosk-a", "a-password")
    try:
        for topic, payload in [("fer-edge-rollouts/r-1", json.dumps(rollout_record())),
                               ("fer-edge/kiosk-b/model", json.dumps(model_state("kiosk-b", version=99))),
                               ("fer-edge/kiosk-b/release", "forged order")]:
            info = device.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(10)
            assert Recorder.wait_for(lambda mid=info.mid: mid in device.answers, 5)
            assert device.answers[info.mid] == "Not authorized", (topic, device.answers[info.mid])
        link = Link(Address("127.0.0.1", broker.port, "fer-edge-deployer", "d-password"), "fer-edge", print).open()
        try:
            link.read(["fer-edge/+/release"])
            assert link.records == {} and link.known() == {} and link.orders == {}
        finally:
            link.close()
    finally:
        device.loop_stop()
        device.disconnect()
        broker.stop()
