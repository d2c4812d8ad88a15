"""fer-edge serve: the API with real requests, the access rules, and the page in a real
headless Chromium (live view, today's chart, a photo upload), with screenshots saved."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from conftest import free_port, run_cli
from web_helpers import SCREENSHOTS, WIDEST, Server, at_width, chromium
from fer_edge.core.labels import LABELS
from fer_edge.core.records import Visit
from fer_edge.outputs.sinks import SQLiteLog

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.slow


def seeded_db(path, n=3):
    """A log with n of today's sessions (what `fer-edge run` writes)."""
    log = SQLiteLog(str(path))
    now = time.time()
    for i in range(n):
        shares = {label: (1.0 if label == "happy" else 0.0) for label in LABELS}
        log.session(Visit(id=f"today-{i}", device="kiosk-1", start=now - 60 * (i + 1), end=now - 60 * i,
                           duration=50.0, frames=500, dominant="happy", exit_emotion="happy",
                           satisfaction=80.0, shares=shares, exit_probs=shares))
    log.close()
    return path


def multipart(name, filename, data, content_type):
    boundary = "fer-edge-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def video_server(photos, model_path, db, device_id):
    """`fer-edge serve` on a looping real video, in real time, with the log `db`."""
    s = Server("--source", photos / "WolfgangLanger_Pexels.mp4", "--realtime", "--loop", "--model", model_path,
               "--db", db, "--quiet", "--device-id", device_id)
    yield s
    err = s.stop()
    assert "Traceback" not in err


@pytest.fixture()
def server(tmp_path, photos, model_path):
    yield from video_server(photos, model_path, seeded_db(tmp_path / "log.db"), "kiosk-1")


def test_api(server, photos):
    time.sleep(1.5)
    status, body = server.request("/api/status")
    st = json.loads(body)
    assert status == 200 and st["frames"] > 0 and st["device"] == "kiosk-1" and st["tracks"]
    assert st["state"] == "running" and st["people"] >= 1 and 0 <= st["last_frame_seconds"] < 2
    status, body = server.request("/api/visits?limit=2")
    assert status == 200 and [v["satisfaction"] for v in json.loads(body)["visits"]] == [80.0, 80.0]
    assert server.request("/api/visits?limit=0")[0] == 400
    status, body = server.request("/api/report?since=today&by=hour")
    assert status == 200 and json.loads(body)["total"]["sessions"] == 3
    data, headers = multipart("photo", "two.jpg", (photos / "two_people.jpg").read_bytes(), "image/jpeg")
    status, body = server.request("/api/analyze", data, headers)
    result = json.loads(body)
    assert status == 200 and len(result["faces"]) == 2 and set(result["faces"][0]["probs"]) == set(LABELS)
    raw = (photos / "astronaut.png").read_bytes()
    status, body = server.request("/api/analyze", raw, {"Content-Type": "image/png"})
    assert status == 200 and len(json.loads(body)["faces"]) == 1
    spec = json.loads(server.request("/openapi.json")[1])
    assert {"/api/status", "/api/report", "/api/analyze", "/healthz"} <= set(spec["paths"])


def test_bad_uploads_get_clear_errors_and_the_server_keeps_serving(server, photos, tmp_path):
    cases = [
        (multipart("photo", "notes.jpg", b"this is not an image", "image/jpeg"), 400, "not a JPEG or PNG"),
        (multipart("photo", "cut.jpg", (photos / "single_face.jpg").read_bytes()[:600], "image/jpeg"), 400, "JPEG"),
        (multipart("photo", "photo.gif", gif_bytes(), "image/jpeg"), 400, "not a JPEG or PNG"),
        (multipart("photo", "photo.bmp", encoded(".bmp"), "image/png"), 400, "not a JPEG or PNG"),
        (multipart("photo", "huge.jpg", os.urandom(50 * 1024 * 1024), "image/jpeg"), 413, "too large"),
        (multipart("photo", "empty.png", b"", "image/png"), 400, "empty file"),
        (multipart("photo", "photo.jpg", (photos / "single_face.jpg").read_bytes(), "text/plain"), 415, "content type"),
        ((b"x", {"Content-Type": "application/octet-stream"}), 415, "content type"),
    ]
    for (data, headers), code, message in cases:
        status, body = server.request("/api/analyze", data, headers)
        assert status == code and message in json.loads(body)["error"], (code, body[:200])
        assert server.request("/healthz")[0] == 200


def encoded(suffix, image=None):
    import cv2
    import numpy as np

    ok, data = cv2.imencode(suffix, np.full((64, 64, 3), 128, np.uint8) if image is None else image)
    return data.tobytes()


def gif_bytes():
    """A 1x1 GIF (OpenCV >= 4.7 decodes GIF, which the page does not accept)."""
    return bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


def bomb_png(side):
    """A real PNG of side x side pixels of one colour: about 1 MB that decodes to side**2 * 3 bytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" + b"\0" * side  # filter byte + one grey byte per pixel
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024


def test_a_decompression_bomb_is_refused_before_decoding(server):
    bomb = bomb_png(30000)
    before = peak_rss_mb(server.process.pid)
    status, body = server.request("/api/analyze", bomb, {"Content-Type": "image/png"})
    after = peak_rss_mb(server.process.pid)
    print(f"{len(bomb) / 1024:.0f} KB PNG of 30000x30000: {status}, peak RSS {before:.0f} -> {after:.0f} MB")
    assert status == 413 and "30000x30000 pixels" in json.loads(body)["error"]
    assert after < 500 and server.request("/healthz")[0] == 200


def test_cross_site_and_rebinding_requests_are_refused(server, photos):
    data = (photos / "single_face.jpg").read_bytes()
    status, body = server.request("/api/analyze", data, {"Content-Type": "image/jpeg", "Origin": "http://evil.example"})
    assert status == 403 and "cross-site" in json.loads(body)["error"]
    status, body = server.request("/api/status", headers={"Host": "evil.example:8080"})
    assert status == 403 and "loopback" in json.loads(body)["error"]
    same = f"http://127.0.0.1:{server.port}"
    assert server.request("/api/analyze", data, {"Content-Type": "image/jpeg", "Origin": same})[0] == 200
    assert server.request("/api/status", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_idle_connections_cannot_lock_the_page_out(tmp_path, photos, model_path):
    """1,100 connections that send nothing, against a server limited to 1,024 open files."""
    import resource
    import socket

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))  # this test process holds the 1,100
    limited = subprocess.Popen  # the server gets the systemd default soft limit
    port = free_port()
    process = limited([str(Path(sys.executable).parent / "fer-edge"), "serve", "--web", f"127.0.0.1:{port}",
                       "--model", str(model_path), "--no-db"], stderr=subprocess.PIPE, text=True,
                      preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
    sockets = []
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
        for _ in range(1100):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        started = time.monotonic()
        answered = None
        while time.monotonic() - started < 30:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    answered = response.status
                    break
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.5)
        waited = time.monotonic() - started
        print(f"{len(sockets)} idle connections held; /healthz answered {answered} after {waited:.1f} s")
        assert answered == 200 and waited < 30
    finally:
        for s in sockets:
            s.close()
        process.send_signal(signal.SIGTERM)
        err = process.communicate(timeout=30)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "Too many open files" not in err and len(err) < 10_000, err[-2000:]


def test_stops_promptly_while_a_viewer_watches(server):
    # A live stream never ends by itself; the server used to wait its 10 s join timeout for it
    # on SIGTERM, and that wait was counted in the run's frames/s.
    with urllib.request.urlopen(server.url + "/live.mjpg", timeout=10) as stream:
        assert stream.read(2048).startswith(b"--frame")
        started = time.monotonic()
        err = server.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 5, f"took {stopped_in:.1f} s to stop with a viewer"
    assert "stopped:" in err and "Traceback" not in err


def test_serve_without_flags_listens_on_loopback_8080(model_path):
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("something else listens on 127.0.0.1:8080")
    s = Server("--model", model_path, "--no-db", default_port=True)
    try:
        assert s.request("/healthz")[0] == 200
    finally:
        err = s.stop()
    assert "web page on http://127.0.0.1:8080/" in err and "Traceback" not in err


def test_beyond_loopback_needs_a_token(tmp_path, model_path):
    port = free_port()
    refused = run_cli("fer-edge", "serve", "--web", f"0.0.0.0:{port}", "--model", model_path, "--no-db")
    assert refused.returncode != 0 and "give a token" in refused.stderr and "Traceback" not in refused.stderr
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    s = Server("--model", model_path, "--no-db", "--web-token-file", token)
    try:
        assert s.request("/api/status")[0] == 401
        assert s.request("/api/status?token=wrong")[0] == 401
        assert s.request("/api/status?token=s3cret-token-0123456789")[0] == 200
        assert s.request("/api/status", headers={"Authorization": "Bearer s3cret-token-0123456789"})[0] == 200
        assert s.request("/healthz")[0] == 200
    finally:
        s.stop()


def history_db(path):
    """Today's three visits, one cut by a stop, and visits on two earlier days."""
    seeded_db(path)
    log = SQLiteLog(str(path))
    midnight = time.mktime(time.localtime()[:3] + (0, 0, 0, 0, 0, -1))
    shares = {label: (1.0 if label == "sad" else 0.0) for label in LABELS}
    for i, (days, score, ended_by) in enumerate([(2, 30.0, "left"), (2, 40.0, "left"), (5, 20.0, "left"),
                                                 (0, 50.0, "stopped")]):
        start = midnight - days * 86400 + 11 * 3600 if days else time.time() - 30
        log.session(Visit(id=f"old-{i}", device="kiosk-1", start=start, end=start + 40, duration=40.0,
                     frames=400, dominant="sad", exit_emotion="sad", satisfaction=score, shares=shares,
                     exit_probs=shares, ended_by=ended_by))
    log.close()
    return path


@pytest.fixture()
def history_server(tmp_path, photos, model_path):
    yield from video_server(photos, model_path, history_db(tmp_path / "log.db"), "Kiosk 1.lan")


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_page_in_a_real_browser(history_server, photos, width):
    """What an operator sees on a desktop and on a phone: the live view and who is there,
    today by hour on a 0-23 axis, the last 7 days, the recent visits and a photo, with
    nothing wider than the screen."""
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = history_server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    try:
        at_width(browser, width, 2600)
        browser.get(server.url + "/")
        assert browser.execute_script("return window.innerWidth") == width
        wait = WebDriverWait(browser, 30)
        # Now: the MJPEG image has frames, the status keeps counting, the visitor is in view.
        wait.until(lambda b: b.execute_script("const i = document.getElementById('live'); return i.complete && i.naturalWidth > 0"))
        first = int(wait.until(lambda b: b.find_element(By.ID, "live-status").get_attribute("data-frames")))
        wait.until(lambda b: int(b.find_element(By.ID, "live-status").get_attribute("data-frames") or 0) > first + 10)
        assert browser.execute_script("return document.getElementById('live').naturalWidth") == 640
        wait.until(lambda b: b.find_element(By.ID, "now-people").text not in ("", "–", "0"))
        assert "Kiosk 1.lan" in browser.find_element(By.ID, "device").text
        # Today: the three finished visits (the one cut by a stop counts as a visit, not in the score),
        # on an axis of all 24 hours, with the satisfaction of each hour labelled.
        wait.until(lambda b: b.find_element(By.ID, "today-sessions").text == "4")
        bars = browser.find_elements(By.CSS_SELECTOR, "#today-chart rect.hour-bar")
        assert sum(int(bar.get_attribute("data-sessions")) for bar in bars) == 4
        ticks = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#today-chart text.tick")]
        assert ticks[0] == "00h" and (ticks[-1] in ("21h", "22h", "23h")), ticks
        assert {float(d.get_attribute("data-score")) for d in browser.find_elements(By.CSS_SELECTOR, "#today-chart circle.score-dot")} == {80.0}
        assert "pleased" in browser.find_element(By.ID, "today-legend").text
        # The last 7 days: seven places, the earlier days' visits in theirs; the recent visits listed.
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#week-chart rect.hour-bar")) == 3)
        week = {bar.get_attribute("data-slot"): int(bar.get_attribute("data-sessions"))
                for bar in browser.find_elements(By.CSS_SELECTOR, "#week-chart rect.hour-bar")}
        assert sorted(week.values()) == [1, 2, 4]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#week-chart text.tick")) >= 4
        rows = browser.find_elements(By.CSS_SELECTOR, "#recent-visits tr.visit-row")
        assert len(rows) == 7 and rows[0].find_elements(By.TAG_NAME, "td")[4].text == "–", "the visit cut by a stop"
        # Try a photo: an upload shows its five faces.
        browser.find_element(By.ID, "photo-input").send_keys(str(photos / "multi_face.jpg"))
        browser.find_element(By.CSS_SELECTOR, "#photo-form button").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#photo-faces tr.face-row")) == 5)
        assert browser.find_element(By.ID, "photo-message").text == "5 faces found"
        wait.until(lambda b: b.execute_script("return document.getElementById('photo-canvas').width") > 0)
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "undefined" not in text and "NaN" not in text
        widest = browser.execute_script(WIDEST)
        assert widest <= width, f"an element reaches {widest} px on a {width} px screen"
        height = browser.execute_script("return document.documentElement.scrollHeight")
        at_width(browser, width, height)
        browser.save_screenshot(str(SCREENSHOTS / f"page-{width}.png"))
        # A bad upload shows its error on the page.
        bad = SCREENSHOTS / "not-an-image.png"
        bad.write_bytes(b"not really a png")
        browser.find_element(By.ID, "photo-input").send_keys(str(bad))
        browser.find_element(By.CSS_SELECTOR, "#photo-form button").click()
        wait.until(lambda b: "not a JPEG or PNG" in b.find_element(By.ID, "photo-message").text)
        bad.unlink()
        # The service stops: the page says so instead of showing a frozen picture.
        server.stop()
        wait.until(lambda b: "not answering" in b.find_element(By.ID, "notice").text)
    finally:
        browser.quit()
    assert (SCREENSHOTS / f"page-{width}.png").stat().st_size > 20000


@pytest.mark.browser
def test_page_without_a_camera(tmp_path, model_path):
    """`fer-edge serve` with no camera: photos and the log only, and the page says so."""
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server("--model", model_path, "--db", seeded_db(tmp_path / "log.db"), "--device-id", "kiosk-1")
    browser = chromium()
    try:
        status, body = server.request("/favicon.ico")
        assert status == 200 and body.startswith(b"<svg")
        at_width(browser, 390, 1600)
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_element(By.ID, "today-sessions").text == "3")
        wait.until(lambda b: b.find_element(By.ID, "no-camera").is_displayed())
        assert not browser.find_element(By.ID, "live").is_displayed()
        assert browser.execute_script("return document.getElementById('live').getAttribute('src')") is None
        header = browser.find_element(By.ID, "device").text
        assert header.startswith("kiosk-1 · ") and "·  ·" not in header and not header.endswith("·")
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "undefined" not in text and "NaN" not in text and "at most 10 MB" in text
        assert browser.execute_script(WIDEST) <= 390
        browser.save_screenshot(str(SCREENSHOTS / "page-no-camera-390.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()
        server.stop()


@pytest.mark.browser
def test_a_viewer_fourteen_hours_ahead_sees_todays_hours(tmp_path, model_path):
    """A device on UTC, a browser in Pacific/Kiritimati (UTC+14): today's visits stand in the
    viewer's own hours, in today's chart and in the week's."""
    pytest.importorskip("selenium")
    from zoneinfo import ZoneInfo

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    db = seeded_db(tmp_path / "log.db")
    starts = [row[0] for row in sqlite3.connect(db).execute("SELECT start FROM sessions")]
    zone = ZoneInfo("Pacific/Kiritimati")
    expected, days = {}, {}
    for start in starts:
        key = datetime.fromtimestamp(start, zone).strftime("%Y-%m-%d %H:00")
        expected[key] = expected.get(key, 0) + 1
        days[key[:10]] = days.get(key[:10], 0) + 1
    server = Server("--model", model_path, "--db", db, "--device-id", "kiosk-1", env={**os.environ, "TZ": "UTC"})
    browser = chromium()
    try:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Pacific/Kiritimati"})
        browser.get(server.url + "/")
        assert browser.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone") == "Pacific/Kiritimati"
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_element(By.ID, "today-sessions").text == "3")
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#today-chart rect.hour-bar"))
        bars = {bar.get_attribute("data-slot"): int(bar.get_attribute("data-sessions"))
                for bar in browser.find_elements(By.CSS_SELECTOR, "#today-chart rect.hour-bar")}
        assert bars == expected, (bars, expected)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#week-chart rect.hour-bar"))
        week = {bar.get_attribute("data-slot"): int(bar.get_attribute("data-sessions"))
                for bar in browser.find_elements(By.CSS_SELECTOR, "#week-chart rect.hour-bar")}
        assert week == days, (week, days)
    finally:
        browser.quit()
        server.stop()


def test_photo_uploads_follow_a_model_deployed_to_the_camera_loop(tmp_path, photos):
    """The page's photos are read by the model the camera loop runs now, not the one it started on."""
    import cv2

    from fer_edge.app import make_analyzer, photo_analyzer
    from fer_edge.model.classify import EmotionClassifier, default_model_path
    from fer_edge.model.metadata import embed_metadata, read_model_metadata
    from fer_edge.settings import resolve
    from fer_edge.vision.running_mode import RunningMode
    from fer_edge.web.device_page import PhotoAnalyzer

    settings = resolve({}, {"model_variant": "int8"})
    camera = make_analyzer(settings, RunningMode.VIDEO, threads=1)
    photos_page = PhotoAnalyzer(photo_analyzer(settings, camera), lambda: camera.classifier.path)
    image = cv2.imread(str(photos / "single_face.jpg"))
    assert photos_page.labels == LABELS and photos_page.analyze(image)["faces"]

    shipped = default_model_path()
    renamed = [f"{label}_x" for label in LABELS]
    deployed = tmp_path / "deployed.tflite"   # the shipped network under other label names
    deployed.write_bytes(embed_metadata(Path(shipped).read_bytes(), dict(read_model_metadata(shipped), labels=renamed)))
    camera.use(EmotionClassifier(str(deployed)))   # what a swap in the camera loop does
    assert photos_page.labels == tuple(renamed)
    faces = photos_page.analyze(image)["faces"]
    assert faces and faces[0]["label"] in renamed and set(faces[0]["probs"]) <= set(renamed)
