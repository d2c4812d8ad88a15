"""`fer-edge deploy`'s mistakes, each one line and a non-zero exit, never a traceback: a bad
key, a broker that cannot be reached, no devices, an unknown device or rollout; and keygen."""

import os

import pytest

from conftest import free_port, run_cli
from mqtt_helpers import Broker

pytest.importorskip("cryptography")


def one_line(result, words, code=1):
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.stderr


def test_keygen_makes_a_pair_once(tmp_path):
    made = run_cli("fer-edge", "deploy", "keygen", "--out", tmp_path / "keys", timeout=60)
    assert made.returncode == 0 and "fer-edge-deploy.key" in made.stdout and "key id" in made.stdout, made.stderr
    assert os.stat(tmp_path / "keys" / "fer-edge-deploy.key").st_mode & 0o777 == 0o600
    one_line(run_cli("fer-edge", "deploy", "keygen", "--out", tmp_path / "keys", timeout=60), "never overwritten")


def test_a_bad_key_is_said_before_the_broker_is_asked(tmp_path, model_path):
    bad = tmp_path / "not-a-key"
    bad.write_text("hello\n")
    port = free_port()        # nothing listens: the key is checked first
    for key in (bad, tmp_path / "missing.key"):
        one_line(run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, "--mqtt", f"127.0.0.1:{port}",
                         timeout=60), str(key))
    one_line(run_cli("fer-edge", "deploy", "rollback", "r-1", "--key", bad, "--mqtt", f"127.0.0.1:{port}", timeout=60),
             str(bad))


@pytest.mark.needs_broker
def test_no_broker_no_devices_unknown_device_unknown_rollout(tmp_path, model_path):
    key = tmp_path / "keys" / "fer-edge-deploy.key"
    assert run_cli("fer-edge", "deploy", "keygen", "--out", tmp_path / "keys", timeout=60).returncode == 0
    unreachable = f"127.0.0.1:{free_port()}"
    one_line(run_cli("fer-edge", "deploy", "status", "--mqtt", unreachable, timeout=60),
             f"broker {unreachable} unreachable: connection refused")
    one_line(run_cli("fer-edge", "deploy", "status", timeout=60), "no MQTT broker: --mqtt HOST[:PORT] or [mqtt] host")
    broker = Broker(tmp_path).start()
    at = ("--mqtt", f"127.0.0.1:{broker.port}")
    try:
        one_line(run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, *at, timeout=60),
                 "no devices found: none has said which model it runs")
        empty = run_cli("fer-edge", "deploy", "status", *at, timeout=60)
        assert empty.returncode == 0 and empty.stdout == "no rollouts and no devices with deployments on\n", empty
        one_line(run_cli("fer-edge", "deploy", "promote", "r-1", *at, timeout=60), "no rollout 'r-1' on the broker")
        from test_message_rows import model_state
        from test_fleet import publish, publisher
        import json

        client = publisher(broker.port)
        client.publish("fer-edge/kiosk-a/model", json.dumps(model_state("kiosk-a")), qos=1, retain=True).wait_for_publish(10)
        publish(client, "fer-edge/kiosk-b/model", b"\x00not json")   # a device's garbage is ignored, not fatal
        client.loop_stop()
        client.disconnect()
        one_line(run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, "--device", "kiosk-z", *at,
                         timeout=60), "no device 'kiosk-z' has said which model it runs (known: kiosk-a)")
        one_line(run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, "--group", "lobby", *at, timeout=60),
                 "no devices found in group 'lobby'")
        both = run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, "--group", "g", "--device", "kiosk-a",
                       *at, timeout=60)
        assert both.returncode == 2 and "give --group or --device, not both" in both.stderr
        shown = run_cli("fer-edge", "deploy", "status", *at, timeout=60)
        assert shown.returncode == 0 and shown.stdout == "kiosk-a  fer-int8 v1  running\n", shown.stdout + shown.stderr
    finally:
        broker.stop()


@pytest.mark.needs_broker
def test_a_version_the_devices_would_refuse_is_said_before_anything_is_sent(tmp_path, model_path):
    """Not newer than what a target runs (without --allow-older), or past the highest version
    because a device claims it runs that: one line, and no order on any release topic."""
    import json

    from test_fleet import publisher
    from test_message_rows import model_state
    from test_rollout import retained_orders

    key = tmp_path / "keys" / "fer-edge-deploy.key"
    assert run_cli("fer-edge", "deploy", "keygen", "--out", tmp_path / "keys", timeout=60).returncode == 0
    broker = Broker(tmp_path).start()
    at = ("--mqtt", f"127.0.0.1:{broker.port}")
    client = publisher(broker.port)
    try:
        for device, version in (("kiosk-a", 5), ("kiosk-b", 3)):
            client.publish(f"fer-edge/{device}/model", json.dumps(model_state(device, version=version)), qos=1,
                           retain=True).wait_for_publish(10)
        for version in ("5", "2"):
            one_line(run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, "--version", version, *at,
                             timeout=60), f"version {version} is not newer than v5 that kiosk-a runs")
        client.publish("fer-edge/kiosk-a/model", json.dumps(model_state("kiosk-a", version=10 ** 9)), qos=1,
                       retain=True).wait_for_publish(10)
        one_line(run_cli("fer-edge", "deploy", "publish", model_path, "--key", key, *at, timeout=60),
                 "kiosk-a says it runs v1000000000, the highest version there is: give --version")
        assert retained_orders(broker.port) == {}
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()
