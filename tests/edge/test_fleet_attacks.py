"""The fleet attacked where its own machinery crosses a trust boundary: the collectors' roster
on the broker, and database passwords in addresses and error texts. Real mosquitto, with the
ACL docs/fleet.md gives."""

import signal
import sqlite3
import time

import pytest

from fer_edge.fleet.handover import roster_topic
from conftest import run_cli
from mqtt_helpers import Broker, Recorder, collector_login, start_collector
from test_fleet import broker_acl, publish, publisher, stop, visit_json

pytest.importorskip("paho.mqtt")


def stored_visits(db):
    try:
        return sqlite3.connect(db).execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM sessions").fetchone()
    except sqlite3.OperationalError:
        return (0, 0)


@pytest.mark.needs_broker
@pytest.mark.slow
def test_a_device_cannot_forge_the_roster_and_stop_the_takeover(tmp_path):
    """A device whose login is `_collectors` writes a retained `up` for a client id below every
    collector's: had it reached the roster, no collector would take over a dead one's session."""
    db = tmp_path / "fleet.db"
    users = {"kiosk-a": "kiosk-a-password", "_collectors": "device-password", "fer-edge-collector": "collector-password"}
    broker = Broker(tmp_path).with_passwords(users, acl=broker_acl()).start()
    login = collector_login(tmp_path, users["fer-edge-collector"])
    first, second = (start_collector(broker.port, db, name, *login) for name in ("collector-a", "collector-b"))
    kiosk, forger = publisher(broker.port, "kiosk-a", users["kiosk-a"]), publisher(broker.port, "_collectors",
                                                                                   users["_collectors"])
    try:
        forged = forger.publish(roster_topic("fer-edge", "fer-edge-collectors", "!"), "up", qos=1, retain=True)
        forged.wait_for_publish(10)
        Recorder.wait_for(lambda: forged.mid in forger.answers, 5)
        for number in range(200):
            if number == 100:
                second.send_signal(signal.SIGKILL)
                second.wait(10)
            publish(kiosk, "fer-edge/kiosk-a/session", visit_json("kiosk-a", number))
        all_stored = Recorder.wait_for(lambda: stored_visits(db) == (200, 200), 30)
        count = stored_visits(db)
    finally:
        for client in (kiosk, forger):
            client.loop_stop()
            client.disconnect()
        said = stop(first)
        broker.stop()
    assert forger.answers[forged.mid] == "Not authorized"
    assert all_stored, f"{count} of 200 visits stored; collector-a said: {said}"
    assert "collector collector-b is gone: taking over its session" in said


ODD_PASSWORD = "p@ss%/?wd 9"     # every character an address treats specially, and a space


@pytest.mark.slow
def test_a_password_with_odd_characters_is_never_shown_written_raw_or_encoded(tmp_path):
    """Written percent-encoded it connects to a real PostgreSQL; written raw (as an operator
    might), every command says one line that shows none of it, libpq's quotes included."""
    from urllib.parse import quote

    from mqtt_helpers import made_up_visit
    from pg_helpers import Postgres, fill_fleet_database

    postgres = Postgres().start()
    try:
        import psycopg

        with psycopg.connect(postgres.url, autocommit=True) as connection:
            connection.execute(f"CREATE ROLE odd LOGIN SUPERUSER PASSWORD '{ODD_PASSWORD}'")
        where = f"127.0.0.1:{postgres.port}/postgres"
        fill_fleet_database(postgres.url, [made_up_visit("kiosk-a", 1)])
        encoded = run_cli("fer-edge", "report", "--db", f"postgresql://odd:{quote(ODD_PASSWORD, safe='')}@{where}",
                          "--since", "all", "--json", timeout=60)
        raw = [f"postgresql://odd:{ODD_PASSWORD.replace(' ', '')}@{where}", f"postgresql://odd:{ODD_PASSWORD}@{where}",
               f"postgresql://odd:p%zz{where}".replace("%zz", "%zzsecret@"),
               f"postgresql://odd@{where}?password=se%zzcret", f"postgresql://odd:pa/ss@{where}"]
        said = [(address, run_cli("fer-edge", *command, "--db", address, timeout=60))
                for address in raw for command in (("report", "--since", "all"),
                                                   ("collect", "--mqtt", "127.0.0.1:1", "--client-id", "c"))]
    finally:
        postgres.close()
    assert encoded.returncode == 0, encoded.stderr
    for address, result in said:
        words = result.stdout + result.stderr
        assert result.returncode == 1 and len(words.strip().splitlines()) == 1, (address, words)
        for secret in ("ss%", "?wd", "wd 9", "zzsecret", "zzcret", "pa/ss", "ss@"):
            assert secret not in words, (address, words)


def test_an_at_sign_in_a_password_is_masked_in_any_text():
    from fer_edge.core.network import without_password

    assert without_password("database postgresql://fleet:p@ss@db:5432/fleet away: 'a@b'") == \
        "database postgresql://fleet:***@db:5432/fleet away: 'a@b'"


@pytest.mark.needs_broker
@pytest.mark.slow
def test_a_device_that_joins_the_collectors_group_loses_nothing_when_the_group_is_secret(tmp_path):
    """mosquitto's ACL file never refuses a subscription: a device that joins the collectors'
    shared group is dealt its share of other devices' visits, may not read them, and the broker
    drops them. With the group named as docs/fleet.md says (known to the collectors only) the
    device cannot join it."""
    users = {"kiosk-a": "kiosk-a-password", "kiosk-b": "kiosk-b-password", "fer-edge-collector": "collector-password"}
    broker = Broker(tmp_path).with_passwords(users, acl=broker_acl()).start()
    login = collector_login(tmp_path, users["fer-edge-collector"])
    thief = publisher(broker.port, "kiosk-a", users["kiosk-a"])
    thief.subscribe([("$share/fer-edge-collectors/fer-edge/+/session", 1), ("$share/fer-edge-collectors/#", 1)])
    kiosk = publisher(broker.port, "kiosk-b", users["kiosk-b"])
    stored = {}
    try:
        for group in ("fer-edge-collectors", "fer-edge-collectors-5d1f7c0a93e2"):
            db = tmp_path / f"{group}.db"
            collector = start_collector(broker.port, db, f"collector-{len(stored)}", "--group", group, *login)
            for number in range(60):
                publish(kiosk, "fer-edge/kiosk-b/session", visit_json("kiosk-b", f"{group}-{number}"))
            Recorder.wait_for(lambda db=db: stored_visits(db)[0] == 60, 10)
            stored[group] = stored_visits(db)[0]
            stop(collector)
    finally:
        for client in (kiosk, thief):
            client.loop_stop()
            client.disconnect()
        broker.stop()
    assert stored["fer-edge-collectors"] < 60, "the hazard docs/fleet.md warns of is real on this mosquitto"
    assert stored["fer-edge-collectors-5d1f7c0a93e2"] == 60, stored


def test_old_stats_rows_past_any_float_or_nested_deep_leave_the_page_and_health_report_up(tmp_path):
    """Rows a collector stored before messages were checked: a whole number past any float took
    /api/fleet down for every device (OverflowError) and report --health with it."""
    import json

    from fer_edge.fleet.fleet_report import fleet_overview
    from mqtt_helpers import made_up_visit
    from pg_helpers import fill_fleet_database

    db = fill_fleet_database(tmp_path / "fleet.db", [made_up_visit("kiosk-a", 1)], [
        ("kiosk-a", True, json.dumps({"fps": 5.0, "outbox_pending": 2})),
        ("kiosk-b", True, '{"outbox_pending": ' + "9" * 400 + ', "fps": -' + "9" * 400 + '}'),
        ("kiosk-c", True, "[" * 5000 + "]" * 5000)])
    overview = fleet_overview(str(db))
    health = run_cli("fer-edge", "report", "--db", db, "--health", timeout=60)
    assert [d["outbox_pending"] for d in overview["devices"]] == [2, None, None]
    json.dumps(overview, allow_nan=False)
    assert health.returncode == 0 and all(f"kiosk-{x}" in health.stdout for x in "abc"), health.stdout + health.stderr


@pytest.mark.needs_broker
@pytest.mark.slow
def test_a_device_that_connects_with_a_collectors_client_id_makes_the_broker_drop_its_share(tmp_path):
    """Why docs/fleet.md asks for client ids only the collectors know: with the documented ACL,
    a device's login may take a collector's session by its client id, and what the broker deals
    that session while the device holds it is withheld from the device and dropped."""
    import paho.mqtt.client as mqtt

    db = tmp_path / "fleet.db"
    users = {"kiosk-a": "kiosk-a-password", "kiosk-b": "kiosk-b-password", "fer-edge-collector": "collector-password"}
    broker = Broker(tmp_path).with_passwords(users, acl=broker_acl()).start()
    login = collector_login(tmp_path, users["fer-edge-collector"])
    first, second = (start_collector(broker.port, db, name, *login) for name in ("collector-a", "collector-b"))
    kiosk = publisher(broker.port, "kiosk-b", users["kiosk-b"])
    thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="collector-b", protocol=mqtt.MQTTv5)
    thief.username_pw_set("kiosk-a", users["kiosk-a"])
    try:
        for number in range(100):
            if number % 25 == 0:      # the device takes collector-b's session; collector-b takes it back
                thief.connect("127.0.0.1", broker.port, clean_start=False)
                thief.loop_start()
            publish(kiosk, "fer-edge/kiosk-b/session", visit_json("kiosk-b", number))
            time.sleep(0.04)
            if number % 25 == 24:
                thief.loop_stop()
        Recorder.wait_for(lambda: stored_visits(db)[0] == 100, 10)
        count = stored_visits(db)[0]
    finally:
        kiosk.loop_stop()
        kiosk.disconnect()
        stop(first), stop(second)
        broker.stop()
    print(f"a device holding collector-b's session 4 times: {100 - count} of 100 visits dropped by the broker")
    assert count < 100, "the hazard docs/fleet.md warns of is real on this mosquitto"
