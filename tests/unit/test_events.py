"""The run's outputs as one sink: every event reaches each real sink in order, their health
is merged, and one dead sink makes the whole not alive."""

import io
import json
import sqlite3

from mqtt_helpers import made_up_visit
from fer_edge.core.events import EventSink, Sinks
from fer_edge.outputs.sinks import SQLiteLog, StdoutLog


class Stopped(EventSink):
    """A sink whose thread has died."""

    def alive(self) -> bool:
        return False

    def health(self) -> dict:
        return {"mqtt": "down"}


def test_a_visit_reaches_every_sink_and_health_is_merged(tmp_path):
    stream = io.StringIO()
    log = SQLiteLog(str(tmp_path / "fer-edge.db"))
    sinks = Sinks([log, StdoutLog(as_json=True, stream=stream)])
    assert len(sinks) == 2 and list(sinks)[0] is log
    sinks.session(made_up_visit("kiosk", 1))
    assert sinks.alive()
    health = sinks.health()
    assert health["log"] == "ok" and health["sessions_today"] == 1
    sinks.close({"frames": 0, "faces": 0, "updates": 0})
    assert json.loads(stream.getvalue())["session"]["id"] == "kiosk-1"
    with sqlite3.connect(tmp_path / "fer-edge.db") as db:
        assert db.execute("SELECT id FROM sessions").fetchall() == [("kiosk-1",)]


def test_one_dead_sink_makes_the_whole_not_alive_and_no_sinks_is_alive():
    assert Sinks().alive() and Sinks().health() == {}
    both = Sinks([StdoutLog(stream=io.StringIO()), Stopped()])
    assert not both.alive() and both.health() == {"mqtt": "down"}
