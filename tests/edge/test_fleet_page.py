"""`fer-edge serve --fleet` against a real PostgreSQL: its password is never shown, /healthz
follows the database, a hung database is answered fast, and NaN in old rows never reaches
the page."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, run_cli
from mqtt_helpers import made_up_visit
from pg_helpers import PASSWORD, Postgres, fill_fleet_database
from web_helpers import Server

pytestmark = pytest.mark.slow
FER_EDGE = str(Path(sys.executable).parent / "fer-edge")


@pytest.fixture()
def postgres():
    pytest.importorskip("psycopg")
    server = Postgres().start()
    fill_fleet_database(server.url, [made_up_visit("kiosk-a", 1, 80.0)],
                        [("kiosk-a", True, json.dumps({"fps": 6.0, "outbox_pending": 0}))])
    yield server
    server.close()


def strict_json(body):
    """JSON as a browser reads it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(body, parse_constant=refuse)


def wait_for_status(server, path, status, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = server.request(path)
        if answer[0] == status:
            return answer
        time.sleep(0.2)
    raise AssertionError(f"{path} did not answer {status} within {seconds} s: {answer}")


def in_query(postgres):
    """The test cluster's address with its password in the query instead of the user part."""
    return postgres.url_without_password + f"?password={PASSWORD}&connect_timeout=5"


def test_the_password_is_never_shown_in_logs_answers_or_config_show(postgres, tmp_path):
    server = Server("--fleet", "--db", in_query(postgres))
    try:
        status, body = server.request("/api/fleet")
        assert status == 200 and strict_json(body)["devices"][0]["device"] == "kiosk-a"
        postgres.stop()
        status, body = wait_for_status(server, "/api/fleet", 503)
        assert b"refused" in body.lower() or b"not answer" in body, body
        assert PASSWORD.encode() not in body and b"***" in body, body
        status, body = server.request("/healthz")
        assert status == 503 and PASSWORD.encode() not in body, body
    finally:
        said = server.stop()
    assert "password=***" in said and PASSWORD not in said, said
    for target in (postgres.url, in_query(postgres)):   # user:password@ and ?password=
        config = tmp_path / "collector.toml"
        config.write_text(f'[collector]\ndb = "{target}"\n')
        shown = run_cli("fer-edge", "config", "show", "--config", config, timeout=60)
        assert shown.returncode == 0 and PASSWORD not in shown.stdout and "***" in shown.stdout, shown
        refused = run_cli("fer-edge", "report", "--db", target, timeout=60)   # the database is stopped
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
        assert PASSWORD not in refused.stderr and "***" in refused.stderr, refused.stderr
        collector = subprocess.Popen([FER_EDGE, "collect", "--mqtt", f"127.0.0.1:{free_port()}", "--db", target,
                                      "--client-id", "collector"], stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        collector.send_signal(signal.SIGTERM)
        said = collector.communicate(timeout=60)[1]
        assert said and PASSWORD not in said and "***" in said, said


def test_healthz_follows_the_database(postgres):
    server = Server("--fleet", "--db", postgres.url)
    try:
        assert strict_json(server.request("/healthz")[1]) == {"ok": True, "problems": []}
        postgres.stop()
        status, body = wait_for_status(server, "/healthz", 503)
        assert strict_json(body)["ok"] is False and "refused" in strict_json(body)["problems"][0].lower(), body
        postgres.start()
        wait_for_status(server, "/healthz", 200)
        assert server.request("/api/fleet")[0] == 200
    finally:
        server.stop()


def signal_postgres(postgres, number):
    """SIGSTOP or SIGCONT the postmaster and its children: a hung database server."""
    for pid in postgres_processes(postgres):
        try:
            os.kill(pid, number)
        except ProcessLookupError:  # a backend that ended meanwhile
            pass


def postgres_processes(postgres):
    """The postmaster and its children (backends and workers)."""
    postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return [postmaster, *children]


def test_a_hung_database_answers_fifty_viewers_fast_and_recovers(postgres):
    server = Server("--fleet", "--db", postgres.url)
    try:
        assert server.request("/api/fleet")[0] == 200
        time.sleep(2.5)   # past the page's shared reading: the next request asks the database
        signal_postgres(postgres, signal.SIGSTOP)
        answers = []

        def view():
            started = time.monotonic()
            status = server.request("/api/fleet")[0]
            answers.append((status, time.monotonic() - started))

        viewers = [threading.Thread(target=view) for _ in range(50)]
        for viewer in viewers:
            viewer.start()
        for viewer in viewers:
            viewer.join(60)
        waits = sorted(seconds for _, seconds in answers)
        print(f"50 viewers of a hung database: p50 {waits[25]:.2f} s, max {waits[-1]:.2f} s")
        assert len(answers) == 50 and {status for status, _ in answers} == {503}, answers
        assert waits[25] < 3.0 and waits[-1] < 4.0, f"p50 {waits[25]:.1f} s, max {waits[-1]:.1f} s"
        started = time.monotonic()
        status, body = server.request("/healthz")
        assert status == 503 and b"did not answer" in body and time.monotonic() - started < 3.0, body
    finally:
        signal_postgres(postgres, signal.SIGCONT)
    try:
        wait_for_status(server, "/healthz", 200, seconds=30)
    finally:
        said = server.stop()
    assert "Traceback" not in said, said


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_nan_and_infinity_in_old_rows_never_reach_the_page_or_the_report(backend, tmp_path):
    """The collector refuses them now; rows stored before (or by hand) may hold them still."""
    postgres = None
    if backend == "postgresql":
        pytest.importorskip("psycopg")
        postgres = Postgres().start()
        target = postgres.url
        bad = float("nan")  # PostgreSQL stores NaN; SQLite would store NULL, and refuse it
    else:
        target, bad = str(tmp_path / "fleet.db"), float("inf")
    visits = [made_up_visit("kiosk-a", 1, 80.0), made_up_visit("kiosk-a", 2, bad), made_up_visit("kiosk-b", 1, 40.0)]
    fill_fleet_database(target, visits, [("kiosk-a", True, '{"fps": NaN, "outbox_pending": Infinity}'),
                                         ("kiosk-b", True, '{"fps": "fast"}')])
    try:
        server = Server("--fleet", "--db", target)
        try:
            status, body = server.request("/api/fleet")
            overview = strict_json(body)
            assert status == 200, body
            kiosk_a = overview["devices"][0]
            assert kiosk_a["satisfaction_today"] == 80.0 and kiosk_a["fps"] is None, kiosk_a
            assert overview["days"]["total"]["mean_satisfaction"] == 60.0, overview["days"]["total"]
        finally:
            server.stop()
        for flags in ([], ["--health"], ["--by", "day"]):
            table = run_cli("fer-edge", "report", "--db", target, "--since", "all", *flags, timeout=60)
            assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
            assert "nan" not in table.stdout.lower() and "inf" not in table.stdout.lower(), table.stdout
            as_json = run_cli("fer-edge", "report", "--db", target, "--since", "all", "--json", *flags, timeout=60)
            assert as_json.returncode == 0 and strict_json(as_json.stdout), as_json.stderr
    finally:
        if postgres:
            postgres.close()


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_shows_each_devices_model_and_the_rollouts_in_a_real_browser(tmp_path, width):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_fleet_report import deployed_fleet
    from web_helpers import SCREENSHOTS, WIDEST, at_width, chromium

    server = Server("--fleet", "--db", deployed_fleet(tmp_path / "fleet.db"))
    browser = chromium()
    try:
        at_width(browser, width, 1600)
        browser.get(server.url + "/")
        WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rollouts tbody tr")) == 2)
        last = lambda row: [td.text.split("\n")[-1] for td in row.find_elements(By.TAG_NAME, "td")]  # noqa: E731 - a phone: "label\nvalue"
        devices = [last(tr) for tr in browser.find_elements(By.CSS_SELECTOR, "#devices tbody tr")]
        assert [d[-1] for d in devices] == ["fer-int8 v2 (kept)", "fer-int8 v1 (rolled back)"], devices
        first = browser.find_element(By.CSS_SELECTOR, "#rollouts tbody tr")
        cells = [td.text for td in first.find_elements(By.TAG_NAME, "td")]
        assert cells[0].endswith("r-bad") and cells[1].endswith("rolled back") and cells[2].endswith("fer-int8 v2"), cells
        assert cells[5].endswith("kiosk-b") and "kiosk-b: rolled back" in cells[6], cells
        assert "kiosk-b rolled back: faces per frame fell by 80%" in cells[7], cells
        first.find_element(By.TAG_NAME, "summary").click()
        assert "published (ops@laptop)" in first.find_element(By.TAG_NAME, "ol").text
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "undefined" not in text and "NaN" not in text and "cannot read" not in text
        widest = browser.execute_script(WIDEST)
        assert widest <= width, f"an element reaches {widest} px on a {width} px screen"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"fleet-rollouts-{width}.png"))
    finally:
        browser.quit()
        server.stop()


@pytest.mark.browser
def test_what_devices_and_records_say_is_shown_as_text_never_run_in_a_real_browser(tmp_path):
    """HTML and script in every field a device or a record may fill (device id, model name,
    labels, reason, group, who, history), stored as the collector stores them: shown as text."""
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fer_edge.fleet.fleet_db import open_database
    from fer_edge.fleet.message_rows import Message, rows_of
    from test_message_rows import SHA_B, model_state, rollout_record
    from web_helpers import chromium

    html = "<img src=x onerror=\"window.owned=1\"><script>window.owned=2</script>"
    device = "<svg onload=window.owned=3>"
    db = tmp_path / "fleet.db"
    fill_fleet_database(db, [], [(device, True, json.dumps({"fps": 5.0}))])
    now = time.time()
    step = {"state": html[:100], "at": now, "reason": html}
    messages = [(f"fer-edge/{device}/model", model_state(device, "rolled back", version=2, sha=SHA_B, rollout="r-x",
                                                          group=html[:100], reason=html,
                                                          model={"name": html[:100], "version": 2, "sha256": SHA_B,
                                                                 "labels": [html[:100], "b"]})),
                ("fer-edge-rollouts/r-x", rollout_record("r-x", "rolled back", by=html[:100], reason=html,
                                                         canaries=[device], targets=[device], devices={device: step},
                                                         history=[{"at": now, "event": html[:100], "by": html[:100],
                                                                   "detail": html}]))]
    database = open_database(str(db), create=True)
    for topic, payload in messages:
        for row in rows_of(Message(topic, json.dumps(payload).encode(), 0, 1, now, 0)):
            assert row.kind != "rejected", row.args
            database.execute(row.statement, row.args)
    database.commit()
    database.close()
    server = Server("--fleet", "--db", db)
    browser = chromium()
    try:
        browser.get(server.url + "/")
        WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rollouts tbody tr")) == 1)
        browser.find_element(By.CSS_SELECTOR, "#rollouts summary").click()
        time.sleep(1)
        assert browser.execute_script("return window.owned") is None
        assert browser.find_elements(By.CSS_SELECTOR, "main img, main script, main svg") == []
        text = browser.find_element(By.TAG_NAME, "main").text
        assert device in text and html in text, text
    finally:
        browser.quit()
        server.stop()
