"""The collector's reading of messages, and the fleet database's upserts, in a real SQLite file."""

import json

import pytest

from fer_edge.fleet.collector import Message, Rejected, row_for
from fer_edge.outputs.fleet_db import open_database


def store(database, device, kind, payload, received=100.0):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    database.execute(*row_for(Message(f"fer-edge/{device}/{kind}", body, 1, 1, received, 1)))
    database.commit()


def test_a_visit_is_stored_once_and_the_newest_state_wins(tmp_path):
    database = open_database(str(tmp_path / "fleet.db"), create=True)
    visit = {"id": "v1", "device": "kiosk", "start": 10.0, "end": 14.0, "duration": 4.0, "frames": 40,
             "dominant": "happy", "exit_emotion": "happy", "satisfaction": 80.0, "shares": {"happy": 1.0},
             "exit_probs": {"happy": 1.0}, "msg_id": "v1", "event_type": "visit"}
    for _ in range(3):                                    # redelivered twice
        store(database, "kiosk", "session", visit)
    assert database.rows("SELECT id, ended_by, clock_step FROM sessions") == [("v1", "left", 0.0)]
    store(database, "kiosk", "stats", {"ts": 200.0, "fps": 6.0})
    store(database, "kiosk", "stats", {"ts": 150.0, "fps": 1.0})   # older, from the other collector: ignored
    store(database, "kiosk", "availability", b"offline", received=300.0)
    [(stats, online, last_seen)] = database.rows("SELECT stats, online, last_seen FROM devices")
    assert json.loads(stats)["fps"] == 6.0 and online == 0 and last_seen == 100.0
    database.close()


@pytest.mark.parametrize("kind, payload, reason", [
    ("session", b"not json", "not JSON"),
    ("session", b"[1, 2]", "not a JSON object"),
    ("session", b'{"id": "v2", "device": "kiosk"}', "a visit without 'start'"),
    ("stats", b'{"fps": 6}', "without a time"),
    ("availability", b"maybe", "neither online nor offline"),
])
def test_unreadable_messages_are_rejected_with_a_reason(kind, payload, reason):
    with pytest.raises(Rejected, match=reason):
        row_for(Message(f"fer-edge/kiosk/{kind}", payload, 1, 1, 0.0, 1))
