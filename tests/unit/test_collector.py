"""The collector's reading of messages, and the fleet database's upserts, in a real SQLite file.
Each hostile message is judged alone: rejected with its reason, never retried, never blocking
the good ones written with it."""

import json
import time

import pytest

from fer_edge.fleet.collector import Collector, CollectorSettings, Message, Rejected, row_for
from fer_edge.fleet.message_check import MAX_BYTES, MAX_DEPTH
from fer_edge.core.settings_sections import MqttSection
from fer_edge.fleet.fleet_db import open_database

VISIT = {"id": "v1", "device": "kiosk", "start": 10.0, "end": 14.0, "duration": 4.0, "frames": 40,
         "dominant": "happy", "exit_emotion": "happy", "satisfaction": 80.0, "shares": {"happy": 1.0},
         "exit_probs": {"happy": 1.0}, "msg_id": "v1", "event_type": "visit"}


def message(device, kind, payload, received=100.0):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"fer-edge/{device}/{kind}", body, 1, 1, received, 1)


def store(database, device, kind, payload, received=100.0):
    database.execute(*row_for(message(device, kind, payload, received)))
    database.commit()


def visit(**changes):
    return json.dumps(dict(VISIT, **changes)).encode()


def test_a_visit_is_stored_once_and_the_newest_state_wins(tmp_path):
    database = open_database(str(tmp_path / "fleet.db"), create=True)
    for _ in range(3):                                    # redelivered twice
        store(database, "kiosk", "session", VISIT)
    assert database.rows("SELECT id, ended_by, clock_step FROM sessions") == [("v1", "left", 0.0)]
    store(database, "kiosk", "stats", {"ts": 200.0, "fps": 6.0})
    store(database, "kiosk", "stats", {"ts": 150.0, "fps": 1.0})   # older, from the other collector: ignored
    store(database, "kiosk", "availability", b"offline", received=300.0)
    [(stats, online, last_seen)] = database.rows("SELECT stats, online, last_seen FROM devices")
    assert json.loads(stats)["fps"] == 6.0 and online == 0 and last_seen == 100.0
    database.close()


HOSTILE = [
    # what the attacker sent, and the reason each is rejected with
    ("session", b"not json", "not JSON"),
    ("session", b"[1, 2]", "not a JSON object"),
    ("session", b'{"id": "v2", "device": "kiosk"}', "a visit without 'start'"),
    ("session", visit()[:-1] + b', "x": "\x00"}', "a NUL byte"),
    ("session", visit(dominant="ha\u0000ppy"), "a NUL character"),
    ("session", visit(start="yesterday"), "'start' is 'yesterday', not a number"),
    ("session", visit(end=None), "'end' is None, not a number"),
    ("session", visit(device=None), "'device' is None, not a text"),
    ("session", visit(duration={"s": 4}), "'duration' is {'s': 4}, not a number"),
    ("session", visit(frames=1e20), "'frames' is 1e\\+20, not a whole number"),
    ("session", visit(frames=10**30), "a whole number too large"),
    ("session", visit(frames=True), "'frames' is True, not a whole number"),
    ("session", visit(satisfaction=float("nan")), "NaN is not a number"),
    ("session", visit()[:-1] + b', "x": -Infinity}', "-Infinity is not a number"),
    ("session", visit()[:-1] + b', "x": 1e999}', "a number too large"),
    ("session", visit(satisfaction=101), "'satisfaction' is 101, not a number from 0 to 100"),
    ("session", visit(shares={"happy": "all"}), "'shares'"),
    ("session", visit(ended_by=None), "'ended_by' is None"),
    ("session", visit(id="x" * 8000), "a text of 8,000 characters"),
    ("session", visit(device="kiosk-b"), "names device 'kiosk-b' but came on the topic of device 'kiosk'"),
    ("session", b'{"s": "\\ud800"}', "not valid Unicode"),
    ("session", b"[" * 200_000 + b"]" * 200_000, f"over {MAX_BYTES:,} bytes"),
    ("session", b'{"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", f"nested more than {MAX_DEPTH} deep"),
    ("session", b"x" * (MAX_BYTES + 1), "over"),
    ("stats", b'{"fps": 6}', "a stats message without 'ts'"),
    ("stats", b'{"ts": 5, "fps": "fast"}', "'fps' is 'fast'"),
    ("stats", b'{"ts": 5, "outbox_pending": 1e20}', "'outbox_pending'"),
    ("stats", b'{"ts": NaN}', "NaN is not a number"),
    ("view", b'{"ts": 5, "people": -1}', "'people' is -1"),
    ("view", b'{"ts": 5, "device": "other"}', "names device 'other'"),
    ("availability", b"maybe", "neither online nor offline"),
    ("presence", b'{"ts": 5}', "an unknown kind"),
]


@pytest.mark.parametrize("kind, payload, reason", HOSTILE, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(HOSTILE)])
def test_hostile_messages_are_rejected_with_a_reason(kind, payload, reason):
    with pytest.raises(Rejected, match=reason):
        row_for(message("kiosk", kind, payload))


def test_the_topic_names_the_device():
    long_id = "k" * 8000
    with pytest.raises(Rejected, match="a device id of 8000 characters in the topic"):
        row_for(message(long_id, "session", visit(device=long_id)))
    with pytest.raises(Rejected, match="a device id of 0 characters"):
        row_for(message("", "availability", b"online"))
    with pytest.raises(Rejected, match=r"a device id with control characters in the topic \('kiosk\\x1b\[2J'\)"):
        row_for(message("kiosk\x1b[2J", "availability", b"online"))
    with pytest.raises(Rejected, match="'dominant' is 'happy\\\\u202e', not a text of 1 to 128 printable"):
        row_for(message("kiosk", "session", visit(dominant="happy\u202e")))
    # The device's sink writes an id with '/' as '_' in its topic: the same device.
    statement, args = row_for(message("site_kiosk", "session", visit(device="site/kiosk")))
    assert args[1] == "site_kiosk"


def collector(tmp_path):
    """A collector writing into a real SQLite file; its broker is never reached (not needed to write)."""
    settings = CollectorSettings(mqtt=MqttSection(host="127.0.0.1:1"), db=str(tmp_path / "fleet.db"))
    return Collector(settings, say=lambda line: None)


def test_bad_messages_never_block_the_good_ones_written_with_them(tmp_path):
    c = collector(tmp_path)
    batch = [message("kiosk", "session", visit(id="good-1")), message("kiosk", "session", visit(end=None)),
             message("kiosk", "session", visit(satisfaction=float("nan"))), message("kiosk", "session", b"x" * 10_000_000),
             message("kiosk", "session", visit(id="good-2"))]
    c._write(batch)
    assert [r[0] for r in c.database.rows("SELECT id FROM sessions ORDER BY id")] == ["good-1", "good-2"]
    rejected = c.database.rows("SELECT payload, reason FROM rejected")
    assert [why for _, why in rejected] == ["a visit whose 'end' is None, not a number from 0 to 1e+10",
                                            "NaN is not a number a database can hold", "over 65,536 bytes"]
    assert max(len(payload) for payload, _ in rejected) <= 2000, "a bounded copy, never the whole message"
    assert c.counts["session"] == 2 and c.counts["rejected"] == 3


def test_a_row_the_database_refuses_goes_to_rejected_and_the_rest_of_its_batch_is_stored(tmp_path):
    c = collector(tmp_path)
    # A rule the collector does not know of, as an operator could add it.
    c.database.execute("CREATE TRIGGER low BEFORE INSERT ON sessions WHEN NEW.satisfaction < 10 "
                       "BEGIN SELECT RAISE(ABORT, 'satisfaction below 10'); END")
    c._write([message("kiosk", "session", visit(id=f"v{n}", satisfaction=5.0 if n == 1 else 50.0)) for n in range(4)])
    assert [r[0] for r in c.database.rows("SELECT id FROM sessions ORDER BY id")] == ["v0", "v2", "v3"]
    [(payload, why)] = c.database.rows("SELECT payload, reason FROM rejected")
    assert json.loads(payload)["id"] == "v1" and why == "the database refused it: satisfaction below 10"


def test_a_conflicting_duplicate_is_recorded_an_identical_one_is_quiet(tmp_path):
    c = collector(tmp_path)
    c._write([message("kiosk", "session", visit(id="a"))])
    c._write([message("kiosk", "session", visit(id="a")),                      # redelivered: quiet
              message("kiosk", "session", visit(id="a", satisfaction=1.0)),    # same id, other content
              message("kiosk", "session", visit(id="b")),
              message("kiosk", "session", visit(id="b", frames=41))])          # within one batch
    assert c.database.rows("SELECT id, satisfaction, frames FROM sessions ORDER BY id") == [("a", 80.0, 40), ("b", 80.0, 40)]
    reasons = [r[0] for r in c.database.rows("SELECT reason FROM rejected")]
    assert reasons == ["conflicting duplicate: visit 'a' is stored already with other content",
                       "conflicting duplicate: visit 'b' is stored already with other content"]


def test_hostile_texts_are_kept_as_text_any_database_takes(tmp_path):
    c = collector(tmp_path)
    c._write([message("kiosk", "session", b'{"id": "\x00\xff\x1b[2J"}')])
    [(payload, why)] = c.database.rows("SELECT payload, reason FROM rejected")
    assert "\x00" not in payload and why == "a NUL byte in the message"


def test_checking_is_quick_on_the_largest_message():
    started = time.perf_counter()
    for payload in (b"[" * MAX_BYTES, b'"' + b"\\\"" * (MAX_BYTES // 2 - 1) + b'"', b'{"a": "' + b"x" * (MAX_BYTES - 9) + b'"}'):
        with pytest.raises(Rejected):
            row_for(message("kiosk", "session", payload))
    assert time.perf_counter() - started < 1.0
