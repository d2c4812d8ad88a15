"""MODEL STATE and ROLLOUT RECORD messages into the fleet's database: stored once however
many collectors read them (they are retained, and every collector reads them), the newest
winning; hostile forms rejected with their reason on a real mosquitto and collector, and the
good messages behind them stored."""

import json
import time
import uuid

import pytest

from fer_edge.fleet.message_rows import Message, rows_of
from fer_edge.fleet.fleet_db import open_database
from mqtt_helpers import Broker, Recorder, start_collector
from test_fleet import fleet_store, nested, publish, publisher, stop  # noqa: F401 - fleet_store: a fixture

SHA_A, SHA_B = "a" * 64, "b" * 64
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def model_state(device, state="running", version=1, sha=SHA_A, **changes):
    """A MODEL STATE as DEPLOY.md writes it."""
    figures = {"seconds": 30.0, "frames": 90, "fps": 3.0, "faces": 80, "faces_per_frame": 0.9, "errors": 0,
               "confidence_mean": 0.7, "confidence_spread": 0.1, "emotions": {"happy": 0.6, "neutral": 0.4}}
    message = {"msg_id": uuid.uuid4().hex, "device": device, "ts": time.time(), "group": None,
               "model": {"name": "fer-int8", "version": version, "sha256": sha, "labels": LABELS},
               "previous": None, "state": state, "rollout": "r-1" if state != "running" else None,
               "release": {"name": "fer-int8", "version": 2, "sha256": SHA_B} if state != "running" else None,
               "reason": None, "before": figures if state in ("trial", "kept") else None,
               "after": figures if state == "kept" else None}
    return dict(message, **changes)


def rollout_record(rollout="r-1", state="canary", **changes):
    """A ROLLOUT RECORD as DEPLOY.md writes it."""
    now = time.time()
    record = {"msg_id": uuid.uuid4().hex, "rollout": rollout, "by": "ops@laptop", "started": now - 60, "updated": now,
              "model": {"name": "fer-int8", "version": 2, "sha256": SHA_B, "labels": LABELS},
              "canaries": ["kiosk-a"], "targets": ["kiosk-a", "kiosk-b"], "state": state, "reason": None,
              "devices": {"kiosk-a": {"state": "trial", "at": now, "reason": None}},
              "history": [{"at": now - 60, "event": "published", "by": "ops@laptop", "detail": None}]}
    return dict(record, **changes)


def as_message(topic, payload):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(topic, body, 1, 1, time.time(), 1)


def store(database, topic, payload):
    for row in rows_of(as_message(topic, payload)):
        database.execute(row.statement, row.args)
    database.commit()


def test_stored_once_by_two_collectors_and_the_newest_wins(fleet_store):  # noqa: F811 - the fixture
    target, query, _ = fleet_store
    first, second = (open_database(str(target), create=True) for _ in range(2))
    trial = model_state("kiosk-a", "trial", version=1, sha=SHA_A)
    kept = model_state("kiosk-a", "kept", version=2, sha=SHA_B, ts=trial["ts"] + 10)
    older, newer = rollout_record(updated=100.0), rollout_record(state="promoted", updated=200.0)
    for database in (first, second, first):           # every collector reads every retained message
        store(database, "fer-edge/kiosk-a/model", kept)
        store(database, "fer-edge/kiosk-a/model", trial)    # older, arriving later: the event only
        store(database, "fer-edge-rollouts/r-1", newer)
        store(database, "fer-edge-rollouts/r-1", older)
    for database in (first, second):
        database.close()
    assert query("SELECT device, name, version, sha256, state, rollout FROM device_models") == [
        ("kiosk-a", "fer-int8", 2, SHA_B, "kept", "r-1")]
    events = query("SELECT msg_id, state, version, release_version, after FROM model_events ORDER BY ts")
    assert [(e[1], e[2], e[3]) for e in events] == [("trial", 1, 2), ("kept", 2, 2)]
    assert events[0][4] is None and json.loads(events[1][4])["fps"] == 3.0
    [(state, canaries, targets, record)] = query("SELECT state, canaries, targets, record FROM rollouts")
    assert state == "promoted" and json.loads(canaries) == ["kiosk-a"] and json.loads(targets) == ["kiosk-a", "kiosk-b"]
    assert json.loads(record) == newer


def test_an_empty_retained_message_clears_and_stores_nothing():
    assert rows_of(as_message("fer-edge/kiosk-a/model", b"")) == []
    assert rows_of(as_message("fer-edge-rollouts/r-1", b"")) == []


# (topic, payload, what the reason says); each is followed by a good model state
HOSTILE = [
    ("fer-edge/kiosk-a/model", b"not json", "not JSON"),
    ("fer-edge/kiosk-a/model", nested(60_000), "nested more than"),
    ("fer-edge/kiosk-a/model", b"{" + b" " * 200_000 + b"}", "over 65,536 bytes"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", state="exploded"), "'state' is 'exploded', not one of running"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-b"), "names device 'kiosk-b' but came on the topic of device 'kiosk-a'"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", ts="now"), "'ts' is 'now'"),
    ("fer-edge/kiosk-a/model", json.dumps(model_state("kiosk-a", ts=float("nan"))).encode(), "NaN is not a number"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", model={"name": "m", "version": 2**40, "sha256": SHA_A}),
     "model state's model whose 'version' is 1099511627776"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", model={"name": "m", "version": 1, "sha256": "../etc"}),
     "'sha256' is '../etc', not 64 hex digits"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", model="fer"), "'model' is 'fer', not an object"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", reason="x" * 501), "'reason' is 'xxx"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", reason="ok\x1b[2J"), "not a text of 1 to 500 printable"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", rollout="../../x"), "'rollout' is '../../x'"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", "kept", after={"fps": "fast"}), "'after' is"),
    ("fer-edge/kiosk-a/model", model_state("kiosk-a", msg_id=None), "'msg_id' is None"),
    ("fer-edge-rollouts/r-1", rollout_record("r-2"), "names rollout 'r-2' but came on the topic of rollout 'r-1'"),
    ("fer-edge-rollouts/r-1", rollout_record(state="maybe"), "'state' is 'maybe', not one of canary"),
    ("fer-edge-rollouts/r-1", rollout_record(targets="all"), "'targets' is 'all', not a list of up to 1,000"),
    ("fer-edge-rollouts/r-1", rollout_record(history=[{"at": 1.0, "event": "x", "by": "y", "detail": None}] * 201),
     "'history' is"),
    ("fer-edge-rollouts/r-1", rollout_record(devices={"kiosk-a": {"state": 5}}), "'devices' is"),
    ("fer-edge-rollouts/r-1", rollout_record(updated=1e300), "'updated' is 1e+300"),
    ("fer-edge-rollouts/bad id", rollout_record("bad id"), "a rollout id 'bad id' in the topic"),
]


@pytest.mark.parametrize("topic, payload, words", HOSTILE, ids=[words[:30] for _, _, words in HOSTILE])
def test_a_hostile_message_is_rejected_with_its_reason(topic, payload, words):
    [row] = rows_of(as_message(topic, payload))
    assert row.kind == "rejected" and words in row.args[2], row.args[2]


@pytest.mark.needs_broker
@pytest.mark.slow
def test_hostile_model_states_and_rollouts_on_a_real_broker_are_rejected_and_block_nothing(tmp_path, fleet_store):  # noqa: F811
    db, query, _ = fleet_store
    broker = Broker(tmp_path).start()
    collector = start_collector(broker.port, db, "collector")
    client = publisher(broker.port)
    try:
        for number, (topic, payload, words) in enumerate(HOSTILE, 1):
            publish(client, topic, payload if isinstance(payload, bytes) else json.dumps(payload).encode())
            good = model_state("kiosk-a", "kept", version=number)
            publish(client, "fer-edge/kiosk-a/model", json.dumps(good).encode())
            sql = f"SELECT COUNT(*) FROM model_events WHERE msg_id = '{good['msg_id']}'"
            stored = Recorder.wait_for(lambda sql=sql: query(sql) == [(1,)], 10)
            reasons = [row[0] for row in query("SELECT reason FROM rejected")]
            assert stored, f"the good model state after {words!r} was not stored within 10 s; rejected: {reasons}"
            assert len(reasons) == number and any(words in reason for reason in reasons), (words, reasons)
        publish(client, "fer-edge-rollouts/r-1", json.dumps(rollout_record()).encode())
        assert Recorder.wait_for(lambda: query("SELECT state FROM rollouts") == [("canary",)], 10)
        versions = query("SELECT version FROM device_models")
        assert collector.poll() is None, "the collector is still up"
    finally:
        client.loop_stop()
        client.disconnect()
        said = stop(collector)
        broker.stop()
    assert versions == [(len(HOSTILE),)]
    assert "Traceback" not in said and f"{len(HOSTILE)} rejected" in said, said


@pytest.mark.needs_broker
@pytest.mark.slow
def test_two_collectors_each_read_the_retained_states_and_store_each_once(tmp_path):
    """Retained messages never reach a shared subscription: both collectors read them, and the
    database holds each once; a collector started later reads what was retained before it."""
    import sqlite3

    db = tmp_path / "fleet.db"
    broker = Broker(tmp_path).start()
    client = publisher(broker.port)
    states = [model_state(f"kiosk-{n}", "kept", version=2, sha=SHA_B) for n in range(5)]
    for state in states:
        client.publish(f"fer-edge/{state['device']}/model", json.dumps(state), qos=1, retain=True).wait_for_publish(10)
    client.publish("fer-edge-rollouts/r-1", json.dumps(rollout_record(state="done")), qos=1, retain=True).wait_for_publish(10)
    first = start_collector(broker.port, db, "collector-a")
    second = start_collector(broker.port, db, "collector-b")
    count = lambda sql: sqlite3.connect(db).execute(sql).fetchone()[0]  # noqa: E731
    try:
        assert Recorder.wait_for(lambda: count("SELECT COUNT(*) FROM model_events") == 5
                                 and count("SELECT COUNT(*) FROM rollouts") == 1, 15)
        time.sleep(2)    # the other collector's copies arrive too, and change nothing
    finally:
        client.loop_stop()
        client.disconnect()
        said = [stop(first), stop(second)]
        broker.stop()
    assert count("SELECT COUNT(*) FROM model_events") == 5 and count("SELECT COUNT(*) FROM device_models") == 5
    assert count("SELECT COUNT(*) FROM rejected") == 0
    assert all("5 model states, 1 rollout records stored" in text for text in said), said


@pytest.mark.needs_broker
@pytest.mark.slow
def test_two_collectors_on_postgresql_store_each_model_state_once_with_the_database_away_meanwhile(tmp_path):
    """Two collectors into one PostgreSQL; it is stopped while devices report their steps and
    the deployer its record, then started again: every step is stored once, each device's row
    and the rollout's row are the newest, and nothing is rejected."""
    from pg_helpers import Postgres

    pytest.importorskip("psycopg")
    postgres = Postgres().start()
    broker = Broker(tmp_path).start()
    client = publisher(broker.port)
    first = start_collector(broker.port, postgres.url, "collector-a")
    second = start_collector(broker.port, postgres.url, "collector-b")
    sent = []

    def report(state, version, rollout_state):
        for n in range(20):
            message = model_state(f"kiosk-{n}", state, version=version, sha=SHA_B if version == 2 else SHA_A)
            sent.append(message["msg_id"])
            publish(client, f"fer-edge/kiosk-{n}/model", json.dumps(message).encode())
        publish(client, "fer-edge-rollouts/r-1", json.dumps(rollout_record(state=rollout_state)).encode())

    try:
        report("trial", 2, "canary")
        assert Recorder.wait_for(lambda: postgres.query("SELECT COUNT(*) FROM model_events") == [(20,)], 20)
        postgres.stop()
        report("kept", 2, "done")
        time.sleep(2)
        postgres.start()
        assert Recorder.wait_for(lambda: postgres.query("SELECT COUNT(*) FROM model_events") == [(40,)], 60), \
            postgres.query("SELECT COUNT(*) FROM model_events")
        time.sleep(2)
        stored = {row[0] for row in postgres.query("SELECT msg_id FROM model_events")}
        assert stored == set(sent)
        assert postgres.query("SELECT DISTINCT state, version FROM device_models") == [("kept", 2)]
        assert postgres.query("SELECT state FROM rollouts") == [("done",)]
        assert postgres.query("SELECT COUNT(*) FROM rejected") == [(0,)]
    finally:
        client.loop_stop()
        client.disconnect()
        said = [stop(first), stop(second)]
        broker.stop()
        postgres.close()
    assert all("Traceback" not in text for text in said), said
