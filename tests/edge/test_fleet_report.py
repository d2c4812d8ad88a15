"""`fer-edge report` and `report --health` over a collector's database whose stored text is
hostile: device ids and labels with terminal escape sequences reach the terminal written out."""

import json
import socket
import time

from conftest import run_cli
from mqtt_helpers import made_up_visit
from pg_helpers import fill_fleet_database
from fer_edge.core.records import Visit

HOSTILE = "kiosk\x1b[2J\x1b]0;owned\x07\r\x9b31m\u202e"   # clear screen, set title, bell, CR, CSI, RTL override


def test_report_writes_control_characters_out(tmp_path):
    db = tmp_path / "fleet.db"
    visit = made_up_visit(HOSTILE, 1, 70.0).to_json()
    visit["shares"] = {"happy": 0.5, "\x1b[31mred": 0.5}
    visit["exit_emotion"] = "\x1b[31mred"
    fill_fleet_database(db, [Visit.from_json(visit), made_up_visit("kiosk-b", 1, 50.0)],
                        [(HOSTILE, True, json.dumps({"fps": 5.0}))])
    for flags in ([], ["--health"], ["--csv"], ["--by", "day"]):
        shown = run_cli("fer-edge", "report", "--db", db, "--since", "all", *flags, timeout=60)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        bad = [c for c in shown.stdout if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f or c == "\u202e"]
        assert not bad, (flags, shown.stdout)
        if flags != ["--csv"]:
            assert "kiosk\\x1b[2J\\x1b]0;owned\\x07\\x0d\\x9b31m\\u202e" in shown.stdout, (flags, shown.stdout)
    as_json = run_cli("fer-edge", "report", "--db", db, "--since", "all", "--json", timeout=60)
    assert HOSTILE in [d["device"] for d in json.loads(as_json.stdout)["devices"]]   # JSON keeps it, escaped


def test_a_database_that_accepts_and_never_answers_is_one_line_within_seconds():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"postgresql://fleet:s3cret@127.0.0.1:{silent.getsockname()[1]}/postgres"
        started = time.monotonic()
        said = run_cli("fer-edge", "report", "--health", "--db", address, timeout=60)
        took = time.monotonic() - started
    assert said.returncode == 1 and said.stderr.count("\n") == 1 and "timeout" in said.stderr, said.stderr
    assert "s3cret" not in said.stderr and took < 15, (took, said.stderr)


def deployed_fleet(path):
    """A collector's database holding two devices, the model each runs, and two rollouts (one
    promoted, one rolled back by a canary's gate), stored from the messages as a collector stores them."""
    import json as json_module

    from fer_edge.fleet.fleet_db import open_database
    from fer_edge.fleet.message_rows import Message, rows_of
    from test_message_rows import SHA_B, model_state, rollout_record

    fill_fleet_database(path, [made_up_visit("kiosk-a", 1, 70.0)], [("kiosk-a", True, json.dumps({"fps": 5.0})),
                                                                     ("kiosk-b", False, json.dumps({"fps": 4.0}))])
    now = time.time()
    messages = [("fer-edge/kiosk-a/model", model_state("kiosk-a", "kept", version=2, sha=SHA_B, rollout="r-good")),
                ("fer-edge/kiosk-b/model", model_state("kiosk-b", "rolled back", version=1, rollout="r-bad",
                                                        reason="faces per frame fell by 80% (at most 50%)")),
                ("fer-edge-rollouts/r-good", rollout_record("r-good", "done", started=now - 7200, canaries=["kiosk-a"],
                                                            reason="every canary kept it")),
                ("fer-edge-rollouts/r-bad", rollout_record("r-bad", "rolled back", started=now - 600, canaries=["kiosk-b"],
                                                           reason="kiosk-b rolled back: faces per frame fell by 80%",
                                                           devices={"kiosk-b": {"state": "rolled back", "at": now,
                                                                                "reason": "faces fell"}}))]
    database = open_database(str(path), create=True)
    for topic, payload in messages:
        for row in rows_of(Message(topic, json_module.dumps(payload).encode(), 0, 1, now, 0)):
            database.execute(row.statement, row.args)
    database.commit()
    database.close()
    return path


def test_health_shows_each_devices_model_and_the_rollouts(tmp_path):
    db = deployed_fleet(tmp_path / "fleet.db")
    shown = run_cli("fer-edge", "report", "--db", db, "--health", timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].endswith("model")
    assert next(line for line in lines if line.startswith("kiosk-a")).endswith("fer-int8 v2 (kept)"), shown.stdout
    assert next(line for line in lines if line.startswith("kiosk-b")).endswith("fer-int8 v1 (rolled back)"), shown.stdout
    bad = lines.index("rollouts, newest first:") + 1
    assert lines[bad].startswith("r-bad  rolled back  fer-int8 v2  by ops@laptop, started 10 min ago"), shown.stdout
    assert "canaries kiosk-b; 2 devices; rolled back: kiosk-b rolled back: faces per frame fell by 80%" in lines[bad]
    assert lines[bad + 1] == "  kiosk-b rolled back" and lines[bad + 2].startswith("r-good  done"), shown.stdout
    as_json = json.loads(run_cli("fer-edge", "report", "--db", db, "--health", "--json", timeout=60).stdout)
    assert [(d["device"], d["model"]["version"], d["model"]["state"]) for d in as_json] == [
        ("kiosk-a", 2, "kept"), ("kiosk-b", 1, "rolled back")]


def test_health_of_a_database_from_before_deployments_shows_no_model(tmp_path):
    from fer_edge.fleet.fleet_db import open_database

    db = fill_fleet_database(tmp_path / "fleet.db", [], [("kiosk-a", True, json.dumps({"fps": 5.0}))])
    database = open_database(str(db))
    for table in ("device_models", "model_events", "rollouts"):
        database.execute(f"DROP TABLE {table}")
    database.commit()
    database.close()
    shown = run_cli("fer-edge", "report", "--db", db, "--health", timeout=60)
    assert shown.returncode == 0 and shown.stdout.splitlines()[1].endswith("  -"), shown.stdout + shown.stderr
    assert shown.stdout.strip().endswith("no rollouts yet"), shown.stdout
