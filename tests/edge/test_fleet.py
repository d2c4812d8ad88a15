"""The fleet: simulated and real devices publish through their own MQTT sink to a real
mosquitto, collectors store into a real PostgreSQL (or SQLite), and the reports read it."""

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, run_cli
from mqtt_helpers import Broker, Recorder, collector_login, made_up_visit, make_visits_video, simulated_devices, start_collector
from pg_helpers import PASSWORD, Postgres

pytest.importorskip("paho.mqtt")
pytestmark = [pytest.mark.needs_broker, pytest.mark.slow]

FER_EDGE = str(Path(sys.executable).parent / "fer-edge")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


def count_rows(db, where=""):
    """Rows of the collector's SQLite file (0 before it made its tables)."""
    try:
        return sqlite3.connect(db).execute(f"SELECT COUNT(*) FROM {where or 'sessions'}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def stop(process):
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=60)[1]


def devices(broker, folder, count):
    sinks, connected = simulated_devices(broker.port, folder, range(count), 30)
    assert connected
    return sinks


def grafana_panels():
    """The SQL of the Grafana panels in docs/fleet.md, one statement each."""
    block = re.search(r"```sql\n(.*?)```", DOCS.read_text(), re.S).group(1)
    statements = [" ".join(line for line in part.splitlines() if not line.startswith("--")) for part in block.split(";")]
    return [statement.strip() for statement in statements if statement.strip()]


def test_two_collectors_store_every_visit_once_through_a_kill_and_a_database_restart(tmp_path):
    postgres, broker = Postgres().start(), Broker(tmp_path).start()
    first, second = (start_collector(broker.port, postgres.url, name) for name in ("collector-a", "collector-b"))
    sinks = devices(broker, tmp_path, 20)
    sent, events, started = [], {3.0: "kill", 5.0: "restart", 7.0: "database"}, time.monotonic()
    try:
        for step in range(100):                           # 20 devices, 10 visits/s each, 10 s
            elapsed = time.monotonic() - started
            for at in [at for at in events if elapsed >= at]:
                what = events.pop(at)
                if what == "kill":
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                elif what == "restart":
                    first = start_collector(broker.port, postgres.url, "collector-a")
                else:
                    postgres.restart_after(1.0)
            for sink in sinks:
                v = made_up_visit(sink.device_id, step)
                sink.session(v)
                sent.append(v.id)
            time.sleep(max(0.0, started + (step + 1) * 0.1 - time.monotonic()))
        stored = lambda: postgres.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM sessions")[0]  # noqa: E731
        Recorder.wait_for(lambda: stored()[0] >= len(sent), 90)
        ids = {row[0] for row in postgres.query("SELECT id FROM sessions")}
        count, distinct = stored()
        panels = grafana_panels()
        answers = [postgres.query(sql.replace("$__unixEpochFilter(start)", "start > 0")) for sql in panels]
    finally:
        for sink in sinks:
            sink.close(drain_seconds=0)
        said = [stop(first), stop(second)]
        broker.stop()
        postgres.close()
    print(f"{len(sent)} visits sent by 20 devices; {count} rows, {distinct} distinct; missing {len(set(sent) - ids)}")
    assert ids == set(sent) and count == distinct == len(sent)
    assert len(panels) == 4 and all(answers), "every Grafana panel in docs/fleet.md runs on the collector's tables"
    assert sum(row[2] for row in answers[0]) == len(sent)
    assert "database unavailable" in said[0] + said[1] and "back after" in said[0] + said[1], said
    shares = [int(re.search(r"stopped: (\d+) visits", text).group(1)) for text in said]
    assert all(share > 0 for share in shares), f"the shared subscription splits the visits: {shares}"
    assert "Traceback" not in said[0] + said[1]


@pytest.fixture(scope="module")
def visits_video(photos, tmp_path_factory):
    return make_visits_video(photos, tmp_path_factory.mktemp("video"))


def report_json(db, *flags):
    result = run_cli("fer-edge", "report", "--db", db, "--since", "all", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_fleet_report_matches_each_devices_own(tmp_path, model_path, visits_video):
    broker = Broker(tmp_path).start()
    fleet_db = tmp_path / "fleet.db"
    collector = start_collector(broker.port, fleet_db, "collector")
    logs = {name: tmp_path / f"{name}.db" for name in ("kiosk-a", "kiosk-b")}
    try:
        runs = [subprocess.Popen([FER_EDGE, "run", "--source", visits_video, "--model", model_path, "--db", db,
                                  "--mqtt", f"127.0.0.1:{broker.port}", "--device-id", name, "--session-min", "0.5",
                                  "--session-gap", "0.5", "--exit-seconds", "0.5", "--quiet", "--stats-interval", "1"],
                                 stderr=subprocess.PIPE, text=True) for name, db in logs.items()]
        for run in runs:
            assert run.wait(180) == 0, run.stderr.read()
        local = {name: report_json(db) for name, db in logs.items()}
        expected = sum(r["total"]["sessions"] for r in local.values())
        Recorder.wait_for(lambda: count_rows(fleet_db) >= expected, 30)
    finally:
        said = stop(collector)
        broker.stop()
    assert expected >= 6, local
    fleet = report_json(fleet_db)
    assert [d["device"] for d in fleet["devices"]] == ["kiosk-a", "kiosk-b"]
    for name, own in local.items():
        mine = report_json(fleet_db, "--device", name)
        assert mine["periods"] == own["periods"] and mine["total"] == own["total"], name
        assert next(d for d in fleet["devices"] if d["device"] == name)["sessions"] == own["total"]["sessions"]
    table = run_cli("fer-edge", "report", "--db", fleet_db, "--since", "all").stdout
    for name, own in local.items():
        assert any(line.startswith(name) and f" {own['total']['sessions']} " in line for line in table.splitlines()), table
    health = run_cli("fer-edge", "report", "--db", fleet_db, "--health", "--json")
    rows = {row["device"]: row for row in json.loads(health.stdout)}
    assert set(rows) == set(logs) and all(row["status"] == "offline" for row in rows.values()), rows
    assert all(row["fps"] and row["outbox_pending"] == 0 for row in rows.values()), rows
    print(f"{expected} visits from two devices; the collector said: {said.strip().splitlines()[-1]}")


def test_database_mistakes_are_one_line_and_the_broker_keeps_the_messages(tmp_path):
    postgres, broker = Postgres().start(), Broker(tmp_path).start()
    wrong_password = postgres.url.replace(PASSWORD, "not-the-password")
    cases = [(wrong_password, "password authentication failed"),
             (f"postgresql://fleet@127.0.0.1:{postgres.port + 1}/postgres", "refused"),
             ("postgresql://fleet@127.0.0.1:notaport/postgres", 'invalid integer value "notaport"'),
             (str(tmp_path / "no" / "such" / "fleet.db"), "does not exist|no such database")]
    try:
        for db, words in cases:
            for command in (["collect", "--mqtt", f"127.0.0.1:{broker.port}", "--db", db], ["report", "--db", db]):
                result = run_cli("fer-edge", *command, timeout=60)
                lines = result.stderr.strip().splitlines()
                assert result.returncode != 0 and len(lines) == 1 and re.search(words, lines[0]), (command, result.stderr)
                assert "not-the-password" not in result.stderr
        # The database goes away while the collector runs: nothing is lost, nothing acknowledged early.
        collector = start_collector(broker.port, postgres.url, "collector")
        postgres.stop()
        sinks = devices(broker, tmp_path, 3)
        sent = []
        for number in range(5):
            for sink in sinks:
                sink.session(made_up_visit(sink.device_id, number))
                sent.append(f"{sink.device_id}-{number}")
        time.sleep(3)
        said_stop = stop(collector)          # stopped while the database is still away
        postgres.start()
        collector = start_collector(broker.port, postgres.url, "collector")
        assert Recorder.wait_for(lambda: postgres.query("SELECT COUNT(*) FROM sessions")[0][0] >= len(sent), 30)
        assert {r[0] for r in postgres.query("SELECT id FROM sessions")} == set(sent)
        for sink in sinks:
            sink.close(drain_seconds=0)
        stop(collector)
    finally:
        broker.stop()
        postgres.close()
    assert "database unavailable" in said_stop and "Traceback" not in said_stop


def test_a_site_broker_bridged_to_the_centre_as_the_docs_say(tmp_path):
    """The bridge block in docs/fleet.md, as written, carries a site's visits to the central broker."""
    block = re.search(r"```\n(connection fer-edge-central\n.*?)```", DOCS.read_text(), re.S).group(1)
    (tmp_path / "central").mkdir()
    (tmp_path / "site").mkdir()
    central = Broker(tmp_path / "central").start()
    site = Broker(tmp_path / "site")
    with open(site.config, "a") as config:
        config.write(block.replace("central.example.com:1883", f"127.0.0.1:{central.port}"))
    site.start()
    db = tmp_path / "fleet.db"
    collector = start_collector(central.port, db, "collector")
    try:
        sinks = devices(site, tmp_path, 2)
        for sink in sinks:
            for number in range(3):
                sink.session(made_up_visit(sink.device_id, number))
        assert Recorder.wait_for(lambda: count_rows(db) == 6, 30), count_rows(db)
        for sink in sinks:
            sink.close(drain_seconds=0)
        assert Recorder.wait_for(lambda: count_rows(db, "devices WHERE online = 0") == 2, 10)
    finally:
        stop(collector)
        site.stop()
        central.stop()


def fleet_db(path):
    """Two devices (one online, heard of now; one offline) and their visits today and earlier this week."""
    from fer_edge.fleet.collector import Message, row_for
    from fer_edge.fleet.fleet_db import open_database

    database = open_database(str(path), create=True)
    now = time.time()
    messages = [("kiosk-a", "availability", b"online"), ("kiosk-b", "availability", b"offline"),
                ("kiosk-a", "stats", json.dumps({"ts": now, "fps": 6.0, "outbox_pending": 0}).encode())]
    for device, days, number, score in [("kiosk-a", 0, 0, 80.0), ("kiosk-a", 0, 1, 60.0), ("kiosk-b", 0, 0, 20.0),
                                        ("kiosk-b", 2, 1, 40.0), ("kiosk-a", 5, 2, 90.0)]:
        messages.append((device, "session", json.dumps(made_up_visit(device, f"{days}-{number}", score, days).to_json()).encode()))
    for device, kind, payload in messages:
        database.execute(*row_for(Message(f"fer-edge/{device}/{kind}", payload, 0, 1, now, 0)))
    database.commit()
    database.close()
    return path


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_the_fleet_page_in_a_real_browser(tmp_path, width):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from web_helpers import SCREENSHOTS, WIDEST, Server, at_width, chromium

    server = Server("--fleet", "--db", fleet_db(tmp_path / "fleet.db"))
    browser = chromium()
    try:
        at_width(browser, width, 1600)
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#devices tbody tr")) == 2)
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in browser.find_elements(By.CSS_SELECTOR, "#devices tbody tr")]
        cells = lambda row: [line.split("\n")[-1] for line in row]  # noqa: E731 - a phone shows "label\nvalue"
        a, b = cells(rows[0]), cells(rows[1])
        assert a[:2] == ["kiosk-a", "online"] and a[2].endswith("s ago") and a[3:5] == ["2", "70"], rows
        assert b[:2] == ["kiosk-b", "offline"] and b[3:5] == ["1", "20"], rows
        summary = browser.find_element(By.ID, "summary").text
        assert summary.startswith("1 of 2 devices online") and "5 visits in 7 days" in summary, summary
        days = browser.find_elements(By.CSS_SELECTOR, "#days .day")
        assert len(days) == 7 and days[-1].find_element(By.TAG_NAME, "small").text.startswith("3"), [d.text for d in days]
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "undefined" not in text and "NaN" not in text and "cannot read" not in text
        widest = browser.execute_script(WIDEST)
        assert widest <= width, f"an element reaches {widest} px on a {width} px screen"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"fleet-{width}.png"))
    finally:
        browser.quit()
        server.stop()


def test_the_fleet_page_keeps_the_device_pages_token_rule(tmp_path):
    from web_helpers import Server

    db = fleet_db(tmp_path / "fleet.db")
    refused = run_cli("fer-edge", "serve", "--fleet", "--db", db, "--web", f"0.0.0.0:{free_port()}", timeout=30)
    assert refused.returncode != 0 and "give a token" in refused.stderr and "Traceback" not in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text("a-long-enough-fleet-token\n")
    token_file.chmod(0o600)
    server = Server("--fleet", "--db", db, "--web-token-file", token_file)
    try:
        assert server.request("/api/fleet")[0] == 401
        status, body = server.request("/api/fleet?token=a-long-enough-fleet-token")
        assert status == 200 and [d["device"] for d in json.loads(body)["devices"]] == ["kiosk-a", "kiosk-b"]
    finally:
        server.stop()
    missing = run_cli("fer-edge", "serve", "--fleet", "--db", tmp_path / "none.db", timeout=30)
    assert missing.returncode != 0 and "no such database" in missing.stderr and "Traceback" not in missing.stderr


def test_a_broker_that_cannot_be_reached_is_said_with_its_reason(tmp_path):
    from conftest import free_port

    process = subprocess.Popen([FER_EDGE, "collect", "--mqtt", f"127.0.0.1:{free_port()}", "--db", str(tmp_path / "f.db"),
                                "--client-id", "collector"], stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "unreachable" in line:
            break
    said = stop(process)
    assert "refused" in lines[-1] and "Traceback" not in "".join(lines) + said, lines


# --- Hostile messages: each judged alone, none blocks the ones behind it -----------------------

def publisher(port, username=None, password=None):
    """A raw MQTT client that publishes what fer-edge's own sink never would."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{username or 'anonymous'}",
                         protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    client.answers = {}                  # the broker's PUBACK reason code per message id
    client.on_publish = lambda c, userdata, mid, reason_code, properties: client.answers.__setitem__(mid, str(reason_code))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert Recorder.wait_for(client.is_connected, 10)
    return client


def publish(client, topic, payload, qos=1):
    """Published and acknowledged by the broker; what the broker answered."""
    info = client.publish(topic, payload, qos=qos)
    info.wait_for_publish(60)
    Recorder.wait_for(lambda: info.mid in client.answers, 5)
    return client.answers.get(info.mid)


def visit_json(sender, number, **changes):
    visit = dict(made_up_visit(sender, number).to_json(), msg_id=f"{sender}-{number}", event_type="visit")
    return json.dumps(dict(visit, **changes)).encode()


def nested(size):
    half = b"[" * (size // 2)
    return half + b"]" * len(half)


# (topic's device, payload, what the reason says); each is followed by a good visit
POISON = [
    ("kiosk-a", visit_json("kiosk-a", "p1")[:-1] + b', "note": "\x00"}', "a NUL byte"),
    ("kiosk-a", visit_json("kiosk-a", "p2", start="yesterday"), "'start' is 'yesterday'"),
    ("kiosk-a", visit_json("kiosk-a", "p3", end=None), "'end' is None"),
    ("kiosk-a", visit_json("kiosk-a", "p4", device=None), "'device' is None"),
    ("kiosk-a", visit_json("kiosk-a", "p5", duration={"seconds": 4}), "'duration' is {'seconds': 4}"),
    ("kiosk-a", visit_json("kiosk-a", "p6", frames=1e20), "'frames' is 1e+20"),
    ("kiosk-a", visit_json("kiosk-a", "p7", dominant="happy\u0000"), "a NUL character"),
    ("k" * 8000, visit_json("k" * 8000, "p8"), "a device id of 8000 characters"),
    ("kiosk-a", nested(200_000), "over 65,536 bytes"),
    ("kiosk-a", nested(60_000), "nested more than"),
    ("kiosk-a", b"{" + b" " * 10_000_000 + b"}", "over 65,536 bytes"),
    ("kiosk-a", visit_json("kiosk-a", "p9", satisfaction=float("nan")), "NaN is not a number"),
    ("attacker", visit_json("kiosk-a", "forged", satisfaction=1.0), "names device 'kiosk-a' but came on the topic "
                                                                    "of device 'attacker'"),
    ("kiosk-a", visit_json("kiosk-a", "good-0", satisfaction=2.0), "conflicting duplicate"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet_store(request, tmp_path):
    """(the collector's --db, a function that runs SQL on it, the PostgreSQL cluster or None)."""
    if request.param == "sqlite":
        db = tmp_path / "fleet.db"

        def query(sql):
            try:
                with sqlite3.connect(db) as connection:
                    return connection.execute(sql).fetchall()
            except sqlite3.OperationalError:   # before the collector made its tables
                return []
        yield db, query, None
    else:
        postgres = Postgres().start()
        yield postgres.url, postgres.query, postgres
        postgres.close()


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_hostile_messages_are_rejected_and_never_block_the_good_ones(tmp_path, fleet_store):
    db, query, _ = fleet_store
    broker = Broker(tmp_path).start()
    collector = start_collector(broker.port, db, "collector")
    client = publisher(broker.port)
    took = []
    try:
        first = visit_json("kiosk-a", "good-0")
        publish(client, "fer-edge/kiosk-a/session", first)
        for number, (device, payload, words) in enumerate(POISON, 1):
            started = time.monotonic()
            publish(client, f"fer-edge/{device}/session", payload)
            publish(client, "fer-edge/kiosk-a/session", visit_json("kiosk-a", f"good-{number}"))
            sql = f"SELECT COUNT(*) FROM sessions WHERE id = 'kiosk-a-good-{number}'"
            stored = Recorder.wait_for(lambda sql=sql: query(sql) == [(1,)], 10)
            took.append(time.monotonic() - started)
            reasons = [row[0] for row in query("SELECT reason FROM rejected")]
            assert stored, f"the good visit after {words!r} was not stored within 10 s; rejected: {reasons}"
            assert len(reasons) == number and words in reasons[-1], (words, reasons)
        # A redelivered visit (same id, same content) is a quiet duplicate.
        publish(client, "fer-edge/kiosk-a/session", first)
        publish(client, "fer-edge/kiosk-a/stats", json.dumps({"ts": time.time(), "fps": float("nan")}).encode())
        publish(client, "fer-edge/kiosk-a/stats", json.dumps({"ts": time.time(), "fps": "fast"}).encode())
        publish(client, "fer-edge/kiosk-a/stats", json.dumps({"ts": time.time(), "fps": 6.0, "outbox_pending": 0}).encode())
        assert Recorder.wait_for(lambda: query("SELECT stats FROM devices WHERE device = 'kiosk-a'") != [], 10)
        assert Recorder.wait_for(lambda: len(query("SELECT reason FROM rejected")) == len(POISON) + 2, 10)
        assert collector.poll() is None, "the collector is still up"
        memory = rss_mb(collector.pid)
        sessions = query("SELECT id, device, satisfaction FROM sessions ORDER BY id")
        rejected = query("SELECT topic, payload, reason FROM rejected")
    finally:
        client.loop_stop()
        client.disconnect()
        said = stop(collector)
        broker.stop()
    print(f"{len(POISON)} poison messages; each good visit after one stored in at most {max(took):.2f} s; "
          f"collector RSS {memory:.0f} MB")
    assert [row[0] for row in sessions] == sorted(f"kiosk-a-good-{n}" for n in range(len(POISON) + 1))
    assert {row[1] for row in sessions} == {"kiosk-a"} and {row[2] for row in sessions} == {60.0}, "no forged figures"
    assert max(len(payload) for _, payload, _ in rejected) <= 2000 and all(len(topic) <= 300 for topic, _, _ in rejected)
    assert memory < 200, f"collector RSS {memory:.0f} MB"
    assert "Traceback" not in said and "16 rejected" in said, said
    report = run_cli("fer-edge", "report", "--db", db, "--since", "all", "--json")
    assert report.returncode == 0 and "NaN" not in report.stdout and json.loads(report.stdout)["total"]["sessions"] == 15


def test_big_messages_while_the_database_is_away_keep_the_collector_small(tmp_path, fleet_store):
    """10 MB messages pile up while the database is away (PostgreSQL stopped, or SQLite's file
    locked by another program); the collector holds each only as far as it needs to reject it."""
    db, query, postgres = fleet_store
    broker = Broker(tmp_path)
    broker.config.write_text(broker.config.read_text().replace("persistence true", "persistence false"))
    broker.start()
    collector = start_collector(broker.port, db, "collector")
    client = publisher(broker.port)
    lock = None
    try:
        publish(client, "fer-edge/kiosk-a/session", visit_json("kiosk-a", "before"))
        assert Recorder.wait_for(lambda: query("SELECT COUNT(*) FROM sessions") == [(1,)], 10)
        if postgres:
            postgres.stop()
        else:
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
        big, peak = b'{"ts": 1, "pad": "' + b"x" * 10_000_000 + b'"}', 0.0
        for number in range(25):
            publish(client, f"fer-edge/kiosk-a/{('session', 'stats')[number % 2]}", big)
            peak = max(peak, rss_mb(collector.pid))
        publish(client, "fer-edge/kiosk-a/session", visit_json("kiosk-a", "after"))
        for _ in range(20):
            time.sleep(0.25)
            peak = max(peak, rss_mb(collector.pid))
        if postgres:
            postgres.start()
        else:
            lock.rollback()
            lock.close()
        returned = time.monotonic()
        assert Recorder.wait_for(lambda: query("SELECT COUNT(*) FROM sessions") == [(2,)], 30)
        waited = time.monotonic() - returned
        assert Recorder.wait_for(lambda: query("SELECT COUNT(*) FROM rejected") == [(25,)], 10)
        reasons = {row[0] for row in query("SELECT reason FROM rejected")}
        assert collector.poll() is None
    finally:
        client.loop_stop()
        client.disconnect()
        said = stop(collector)
        broker.stop()
    print(f"25 messages of 10 MB while the database was away: collector RSS at most {peak:.0f} MB; "
          f"the visit after them stored {waited:.1f} s after the database came back")
    assert peak < 200, f"collector RSS {peak:.0f} MB"
    assert reasons == {"over 65,536 bytes"} and "Traceback" not in said


def test_a_writer_that_dies_stops_the_collector_and_a_restart_stores_what_waited(tmp_path):
    """A database that refuses every write for good (here: its tables dropped under the running
    collector) stops the process with one line and status 1, so systemd starts it again; nothing
    unstored was acknowledged, and the new process stores it."""
    broker, db = Broker(tmp_path).start(), tmp_path / "fleet.db"
    collector = start_collector(broker.port, db, "collector")
    client = publisher(broker.port)
    try:
        publish(client, "fer-edge/kiosk-a/session", visit_json("kiosk-a", 1))
        assert Recorder.wait_for(lambda: count_rows(db) == 1, 10)
        with sqlite3.connect(db) as connection:
            connection.execute("DROP TABLE sessions")
        publish(client, "fer-edge/kiosk-a/session", visit_json("kiosk-a", 2))
        status = collector.wait(30)
        said = collector.stderr.read()
        collector = start_collector(broker.port, db, "collector")
        assert Recorder.wait_for(lambda: count_rows(db) == 1, 10), "the visit that waited is stored after the restart"
    finally:
        client.loop_stop()
        client.disconnect()
        stop(collector)
        broker.stop()
    lines = said.strip().splitlines()
    assert status == 1 and "no such table: sessions" in lines[-1] and "Traceback" not in said, said


def broker_acl():
    """The mosquitto ACL docs/fleet.md gives, as written."""
    return re.search(r"```\n(# each device writes only.*?)```", DOCS.read_text(), re.S).group(1)


def test_the_broker_acl_ties_a_device_to_its_topic_and_a_forged_payload_is_rejected(tmp_path):
    db = tmp_path / "fleet.db"
    users = {"kiosk-a": "kiosk-a-password", "attacker": "attacker-password", "fer-edge-collector": "collector-password"}
    broker = Broker(tmp_path).with_passwords(users, acl=broker_acl()).start()
    collector = start_collector(broker.port, db, "collector", *collector_login(tmp_path, users["fer-edge-collector"]))
    device, attacker = publisher(broker.port, "kiosk-a", users["kiosk-a"]), publisher(broker.port, "attacker", users["attacker"])
    try:
        refused = publish(attacker, "fer-edge/kiosk-a/session", visit_json("kiosk-a", "forged-1", satisfaction=1.0))
        publish(attacker, "fer-edge/attacker/session", visit_json("kiosk-a", "forged-2", satisfaction=1.0))
        publish(device, "fer-edge/kiosk-a/session", visit_json("kiosk-a", "real"))
        publish(device, "fer-edge/kiosk-a/availability", b"online")
        assert Recorder.wait_for(lambda: count_rows(db) == 1 and count_rows(db, "rejected") == 1, 10)
        time.sleep(1)
        with sqlite3.connect(db) as connection:
            sessions = connection.execute("SELECT id, device, satisfaction FROM sessions").fetchall()
            rejected = connection.execute("SELECT topic, reason FROM rejected").fetchall()
            devices = connection.execute("SELECT device, online FROM devices").fetchall()
    finally:
        for client in (device, attacker):
            client.loop_stop()
            client.disconnect()
        said = stop(collector)
        broker.stop()
    assert sessions == [("kiosk-a-real", "kiosk-a", 60.0)], sessions
    assert rejected == [("fer-edge/attacker/session", "names device 'kiosk-a' but came on the topic of device 'attacker'")]
    assert devices == [("kiosk-a", 1)] and "Traceback" not in said
    assert refused == "Not authorized", refused


def test_a_row_the_database_refuses_is_rejected_and_the_rest_of_its_batch_stored(tmp_path, fleet_store):
    """A rule of the operator's own on the table (a CHECK in PostgreSQL, a trigger in SQLite)
    refuses one visit of a burst: that one goes to `rejected` with the database's words."""
    db, query, postgres = fleet_store
    broker = Broker(tmp_path).start()
    collector = start_collector(broker.port, db, "collector")
    client = publisher(broker.port)
    try:
        publish(client, "fer-edge/kiosk-a/session", visit_json("kiosk-a", "first"))
        assert Recorder.wait_for(lambda: query("SELECT COUNT(*) FROM sessions") == [(1,)], 10)
        if postgres:
            with psycopg_connection(postgres) as connection:
                connection.execute("ALTER TABLE sessions ADD CONSTRAINT lowest CHECK (satisfaction >= 10)")
        else:
            with sqlite3.connect(db) as connection:
                connection.execute("CREATE TRIGGER lowest BEFORE INSERT ON sessions WHEN NEW.satisfaction < 10 "
                                   "BEGIN SELECT RAISE(ABORT, 'satisfaction below 10'); END")
        for number in range(40):   # a burst: the collector writes it in few batches
            client.publish("fer-edge/kiosk-a/session", visit_json("kiosk-a", number, satisfaction=5.0 if number == 20 else 50.0),
                           qos=1)
        stored = Recorder.wait_for(lambda: query("SELECT COUNT(*) FROM sessions") == [(40,)], 10)
        rejected = query("SELECT payload, reason FROM rejected")
        assert collector.poll() is None
    finally:
        client.loop_stop()
        client.disconnect()
        said = stop(collector)
        broker.stop()
    assert stored and len(rejected) == 1 and json.loads(rejected[0][0])["id"] == "kiosk-a-20", rejected
    assert rejected[0][1].startswith("the database refused it: ") and ("lowest" in rejected[0][1] or "below 10" in rejected[0][1])
    assert "Traceback" not in said and "database unavailable" not in said


def psycopg_connection(postgres):
    import psycopg

    return psycopg.connect(postgres.url, autocommit=True)
