"""Runs a real Home Assistant core against a broker and reports what it made of fer-edge.

Run it with a Home Assistant venv's Python (Home Assistant needs Python >= 3.13), not
fer-edge's: `tests/ha/test_home_assistant.py` starts it. It sets up HA's MQTT integration
on the given broker, says "watching" on stderr once connected, records every state the
device's entities take until the device goes offline, then runs each discovery payload
through the platform's own schema (reporting keys HA drops). Prints one JSON object.
"""

import argparse
import asyncio
import importlib
import json
import pathlib
import sys
import tempfile
import time
from datetime import timedelta


def storage(config_dir, host, port):
    """An MQTT config entry, as HA's own config flow stores it."""
    entry = {"entry_id": "fer_edge_check", "version": 1, "minor_version": 2, "domain": "mqtt", "title": host,
             "data": {"broker": host, "port": port}, "options": {"discovery": True, "discovery_prefix": "homeassistant"},
             "source": "user", "unique_id": None, "disabled_by": None, "pref_disable_new_entities": False,
             "pref_disable_polling": False}
    path = pathlib.Path(config_dir, ".storage")
    path.mkdir(parents=True)
    (path / "core.config_entries").write_text(json.dumps(
        {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [entry]}}))


def dropped_keys(given, kept, where=""):
    """Keys in what we sent that HA's schema removed (vol.REMOVE_EXTRA drops them silently)."""
    out = []
    for key, value in given.items():
        if key not in kept:
            out.append(where + key)
        elif isinstance(value, dict) and isinstance(kept[key], dict):
            out += dropped_keys(value, kept[key], f"{where}{key}.")
    return out


def check_payloads(payloads):
    from homeassistant.components.mqtt.discovery import TOPIC_MATCHER

    results = []
    for topic, payload in payloads:
        trimmed = topic.replace("homeassistant/", "", 1)
        match = TOPIC_MATCHER.match(trimmed)
        result = {"topic": topic, "topic_ok": bool(match), "error": None, "dropped": []}
        if match:
            platform = importlib.import_module(f"homeassistant.components.mqtt.{match.group('component')}")
            try:
                kept = platform.DISCOVERY_SCHEMA(dict(payload))
                result["dropped"] = dropped_keys(payload, kept)
            except Exception as exc:  # a voluptuous Invalid: the message HA logs
                result["error"] = str(exc)
        results.append(result)
    return results


def is_devices(entity_id, device_prefix):
    """Whether the entity is one of the device's (its object id starts with the prefix)."""
    return entity_id.split(".", 1)[1].startswith(device_prefix)


async def long_term_statistics(hass, device_prefix):
    """What HA's recorder keeps of the device's sensors: which have statistics (and their
    units), what HA's own validation says of them, and the 5-minute statistics compiled
    now over the periods the run fell in (HA compiles them every 5 minutes by itself)."""
    from homeassistant.components.recorder import get_instance
    from homeassistant.components.recorder.statistics import list_statistic_ids, statistics_during_period
    from homeassistant.components.recorder.tasks import StatisticsTask
    from homeassistant.components.sensor.recorder import validate_statistics
    from homeassistant.util import dt as dt_util

    recorder = get_instance(hass)
    await recorder.async_block_till_done()
    now = dt_util.utcnow()
    current = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    for start in (current - timedelta(minutes=10), current - timedelta(minutes=5), current):
        recorder.queue_task(StatisticsTask(start, False))
    await recorder.async_block_till_done()
    ours = lambda entity_id: is_devices(entity_id, device_prefix)  # noqa: E731
    ids = await recorder.async_add_executor_job(list_statistic_ids, hass)
    issues = await recorder.async_add_executor_job(validate_statistics, hass)
    rows = await recorder.async_add_executor_job(
        statistics_during_period, hass, current - timedelta(minutes=10), None, None, "5minute", None,
        {"mean", "min", "max", "state", "sum"})
    return {"ids": {i["statistic_id"]: {"unit": i.get("statistics_unit_of_measurement"), "sum": bool(i.get("has_sum")),
                                        "mean": bool(i.get("mean_type", i.get("has_mean")))}
                    for i in ids if ours(i["statistic_id"])},
            "issues": {k: [str(v) for v in found] for k, found in issues.items() if ours(k)},
            "five_minute": {k: [{key: row.get(key) for key in ("mean", "min", "max", "state", "sum")} for row in found]
                            for k, found in rows.items() if ours(k)}}


async def watch(config_dir, port, device_prefix, seconds):
    from homeassistant import bootstrap, runner
    from homeassistant.components import mqtt
    from homeassistant.const import EVENT_STATE_CHANGED
    from homeassistant.helpers import entity_registry as er

    config = pathlib.Path(config_dir, "configuration.yaml")
    config.write_text(f"homeassistant:\n  name: check\n  time_zone: UTC\nhttp:\n  server_host: 127.0.0.1\n"
                      f"  server_port: {port}\nlogger:\n  default: warning\n"
                      f"recorder:\n  db_url: sqlite:///{config_dir}/home-assistant_v2.db\n  commit_interval: 0\n")
    hass = await bootstrap.async_setup_hass(runner.RuntimeConfig(config_dir=config_dir, skip_pip=True))
    history = {}
    online_seen = offline_after_online = False

    def changed(event):
        nonlocal online_seen, offline_after_online
        state = event.data["new_state"]
        if state is None or not is_devices(state.entity_id, device_prefix):
            return
        history.setdefault(state.entity_id, []).append(
            {"state": state.state, "attributes": {k: v for k, v in state.attributes.items()
                                                  if isinstance(v, (str, int, float, bool, list, dict, type(None)))}})
        if state.entity_id.endswith("_online"):
            online_seen |= state.state == "on"
            offline_after_online |= online_seen and state.state == "off"

    hass.bus.async_listen(EVENT_STATE_CHANGED, changed)
    run = asyncio.create_task(hass.async_run())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not mqtt.is_connected(hass):
        await asyncio.sleep(0.2)
    print("watching", file=sys.stderr, flush=True)
    while time.monotonic() < deadline and not offline_after_online:
        await asyncio.sleep(0.5)
    registry = er.async_get(hass)
    entities = [{"entity_id": e.entity_id, "unique_id": e.unique_id, "platform": e.platform}
                for e in registry.entities.values() if e.platform == "mqtt"]
    statistics = await long_term_statistics(hass, device_prefix)
    await hass.async_stop()
    await run
    log = pathlib.Path(config_dir, "home-assistant.log")
    warnings = [line for line in (log.read_text().splitlines() if log.exists() else [])
                if ("WARNING" in line or "ERROR" in line) and "mqtt" in line.lower()]
    return {"entities": entities, "history": history, "warnings": warnings, "offline_seen": offline_after_online,
            "statistics": statistics}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True, help="host:port of the MQTT broker")
    parser.add_argument("--payloads", required=True, help="JSON file, read once the device went offline: "
                        "[[topic, payload], ...] as the device sent them")
    parser.add_argument("--entity-prefix", required=True, help="object ids of the device's entities start with this")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    from homeassistant.const import __version__

    host, port = args.broker.rsplit(":", 1)
    report = {"version": __version__}
    with tempfile.TemporaryDirectory() as config_dir:
        storage(config_dir, host, int(port))
        report.update(asyncio.run(watch(config_dir, args.http_port, args.entity_prefix, args.seconds)))
    payloads = pathlib.Path(args.payloads)
    deadline = time.monotonic() + 60
    while not payloads.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    report["payloads"] = check_payloads(json.loads(payloads.read_text()))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
