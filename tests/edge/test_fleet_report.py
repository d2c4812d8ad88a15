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
