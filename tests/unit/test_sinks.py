"""The device's own outputs on real files and pipes: the SQLite emotion log (rows, visits,
runs, retention, another program's lock) and the stdout log (lines, JSON, a reader gone)."""

import io
import json
import os
import sqlite3
import time

from mqtt_helpers import made_up_visit
from fer_edge.core.records import Box, TrackUpdate
from fer_edge.outputs.sinks import SQLiteLog, StdoutLog


def face(ts, frame=1, probs=None):
    probs = probs or {"happy": 0.7, "neutral": 0.3}
    return TrackUpdate(ts, "kiosk", frame, 1, max(probs, key=probs.get), max(probs.values()), probs, Box(10, 20, 30, 40))


def rows(path, sql):
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_faces_a_visit_and_the_run_are_written(tmp_path):
    path = tmp_path / "fer-edge.db"
    log = SQLiteLog(str(path))
    log.start_run("kiosk", "camera 0", "fer-cnn-int8.tflite", "blazeface")
    log.update(face(time.time()))
    log.update(face(time.time(), 2, {"happy": 0.5, "contempt": 0.5}))   # a label of another model
    log.session(made_up_visit("kiosk", 1))
    assert log.health() == {"log": "ok", "log_dropped": 0, "log_held": 0, "sessions_today": 1}
    log.close({"frames": 10, "faces": 2, "updates": 2})
    assert rows(path, "SELECT frame, label, p_happy, x, other_probs FROM emotions") == [
        (1, "happy", 0.7, 10.0, None), (2, "happy", 0.5, 10.0, '{"contempt": 0.5}')]
    assert rows(path, "SELECT id FROM sessions") == [("kiosk-1",)]
    [(ended, frames, detector)] = rows(path, "SELECT ended, frames, detector FROM runs")
    assert ended and frames == 10 and detector == "blazeface"


def test_a_model_change_starts_a_run_row_naming_the_new_model(tmp_path):
    path = tmp_path / "fer-edge.db"
    log = SQLiteLog(str(path))
    log.start_run("kiosk", "camera 0", "fer-cnn-int8.tflite", "blazeface")
    log.update(face(time.time()))
    log.update(face(time.time(), 2))
    log.model_changed("six.tflite v2", ["angry", "fear", "happy", "sad", "surprise", "neutral"])
    log.update(face(time.time(), 3))
    log.close({"frames": 10, "faces": 3, "updates": 3})
    runs = rows(path, "SELECT model, source, detector, frames, faces, updates, ended IS NOT NULL FROM runs ORDER BY id")
    assert runs == [("fer-cnn-int8.tflite", "camera 0", "blazeface", None, None, 2, 1),
                    ("six.tflite v2", "camera 0", "blazeface", None, None, 1, 1)], "frames are the process's, no row's"


def test_retention_removes_old_rows_and_pauses_on_rows_from_the_future(tmp_path):
    path = tmp_path / "fer-edge.db"
    log = SQLiteLog(str(path), keep_days=1)
    now = time.time()
    for n, ts in enumerate((now - 3 * 86400, now - 2 * 86400, now - 60)):
        log.update(face(ts, n))
    assert log.prune() == 2 and rows(path, "SELECT frame FROM emotions") == [(2,)]
    log.update(face(now + 5 * 86400, 9))   # the clock stepped back: this row is "from the future"
    said = []
    log.say = said.append
    assert log.prune() == 0 and "retention paused" in said[0]
    log.close()
    assert rows(path, "SELECT COUNT(*) FROM emotions") == [(2,)]


def test_a_lock_held_by_another_program_holds_rows_in_order_until_it_lets_go(tmp_path):
    path = tmp_path / "fer-edge.db"
    said = []
    log = SQLiteLog(str(path), say=said.append)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    log.update(face(time.time(), 1))
    log.session(made_up_visit("kiosk", 1))
    assert log.health()["log"] == "locked" and log.health()["log_held"] == 2
    assert "log locked by another program" in said[0]
    other.execute("COMMIT")
    other.close()
    log.retry_at = 0.0   # as if HOLD_RETRY_SECONDS had passed
    log.update(face(time.time(), 2))
    assert log.health()["log"] == "ok" and "2 held rows written" in said[-1]
    log.close()
    assert rows(path, "SELECT frame FROM emotions ORDER BY id") == [(1,), (2,)]
    assert rows(path, "SELECT id FROM sessions") == [("kiosk-1",)]


def test_the_stdout_log_writes_lines_or_json():
    readable, as_json = io.StringIO(), io.StringIO()
    for stream, json_lines in ((readable, False), (as_json, True)):
        log = StdoutLog(as_json=json_lines, stream=stream)
        log.update(face(1.7e9, 12))
        log.session(made_up_visit("kiosk", 1, 70.0))
        log.close()
    first, second = readable.getvalue().splitlines()
    assert "frame     12 face #1   happy" in first and "70.0%" in first
    assert second == "session kiosk-1: 4 s, mostly happy, left neutral, satisfaction 70"
    update, visit = (json.loads(line) for line in as_json.getvalue().splitlines())
    assert update["label"] == "happy" and visit["session"]["id"] == "kiosk-1"


def test_a_reader_that_goes_away_stops_the_stdout_log_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)
    stopped = []
    log = StdoutLog(stream=os.fdopen(write_end, "w"), on_closed=lambda: stopped.append(True))
    log.update(face(1.7e9))
    log.update(face(1.7e9))
    log.close()
    assert log.closed and stopped == [True]
