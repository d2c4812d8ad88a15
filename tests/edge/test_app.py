"""The composition root: where a run's log goes, and a whole run built from settings over a
real video with the shipped model, its visits in a real SQLite log."""

import signal
import sqlite3
import time

import pytest

from fer_edge import app
from fer_edge.settings import Settings


@pytest.fixture()
def signals_restored():
    """app.run takes SIGINT, SIGTERM and SIGHUP for itself; give them back to pytest."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_run_on_a_file_logs_into_the_kiosks_log_only_where_told(tmp_path, monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    clip = {"source_path": "clip.mp4"}
    assert app.log_path(Settings(clip)) is None
    assert "a file is not logged into the kiosk's log" in app.describe_log(Settings(clip), None)
    assert app.log_path(Settings({**clip, "log_db": "/data/x.db"})) == "/data/x.db"
    kiosk_log = str(tmp_path / "state" / "fer-edge" / "fer-edge.db")
    assert app.log_path(Settings({**clip, "mqtt_host": "127.0.0.1"})) == kiosk_log   # the outbox lives in the log
    assert app.log_path(Settings({"source_camera": "0"})) == kiosk_log
    assert app.log_path(Settings({"source_camera": "0", "log_enabled": False})) is None
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "service"))
    assert app.log_path(Settings(clip)) == str(tmp_path / "service" / "fer-edge.db")
    assert app.on_a_file(Settings(clip)) and not app.on_a_file(Settings({"source_path": "rtsp://cam/1"}))


def test_a_run_over_a_real_video_logs_its_visit_and_says_how_it_went(photos, model_path, tmp_path, signals_restored):
    db = tmp_path / "fer-edge.db"
    settings = Settings({"source_path": str(photos / "single_face.mp4"), "model_path": str(model_path),
                         "log_db": str(db), "device_id": "kiosk-test"})
    said = []
    app.run(settings, said.append, time.monotonic())
    assert any(line.startswith(f"model {model_path.name}") and f"log {db}" in line for line in said), said
    with sqlite3.connect(db) as log:
        visits = log.execute("SELECT device, ended_by FROM sessions").fetchall()
        faces = log.execute("SELECT COUNT(*) FROM emotions").fetchone()[0]
        [(ended,)] = log.execute("SELECT ended FROM runs").fetchall()
    assert visits and all(device == "kiosk-test" for device, _ in visits) and visits[-1][1] == "source ended"
    assert faces >= 2 and ended   # one row a second ([log] interval)


def test_a_source_that_is_not_there_fails_before_anything_is_loaded(tmp_path, signals_restored):
    from fer_edge.core.errors import UserError

    settings = Settings({"source_path": str(tmp_path / "absent.mp4"), "log_db": str(tmp_path / "log.db")})
    with pytest.raises(UserError):
        app.run(settings, lambda line: None, time.monotonic())
    assert not (tmp_path / "log.db").exists()
