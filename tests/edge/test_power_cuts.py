"""What a Pi meets after a power cut or without a clock: a damaged or foreign log, another
program holding the log's lock, a second run on the same log, a wall clock that steps,
and a clock far ahead. Real files, a real broker, real clocks (libfaketime)."""

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_frames, run_cli
from mqtt_helpers import Broker, Recorder, make_visits_video
from test_live_source import MJPEGServer

pytestmark = [pytest.mark.slow]

FER_EDGE = str(Path(sys.executable).parent / "fer-edge")
SESSION_FLAGS = ["--session-min", "0.5", "--session-gap", "0.5", "--exit-seconds", "0.5", "--quiet"]
FAKETIME_LIBS = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]


@pytest.fixture(scope="module")
def visits_video(photos, tmp_path_factory):
    return make_visits_video(photos, tmp_path_factory.mktemp("video"))


def sessions_in(db):
    return sqlite3.connect(db).execute("SELECT id, duration, ended_by, clock_step FROM sessions").fetchall()


def run_with_broker(tmp_path, db, video, model_path, visits=4):
    """`fer-edge run` into `db` with a real broker; returns the run and the visits the broker got."""
    broker = Broker(tmp_path).start()
    recorder = Recorder(broker.port)
    try:
        result = run_cli("fer-edge", "run", "--source", video, "--model", model_path, "--db", db,
                         "--mqtt", f"127.0.0.1:{broker.port}", "--device-id", "kiosk", *SESSION_FLAGS)
        assert result.returncode == 0, result.stderr
        assert recorder.wait_for(lambda: len(recorder.json_on("/session")) >= visits, 10), result.stderr
        return result, recorder.json_on("/session")
    finally:
        recorder.close()
        broker.stop()


@contextlib.contextmanager
def realtime_run_with_broker(tmp_path, db, video, model_path, *flags):
    """A `fer-edge run --realtime` with a real broker, while the block does something to the
    device; afterwards `outcome` holds the run's stderr and the visit ids the broker got."""
    broker = Broker(tmp_path).start()
    recorder = Recorder(broker.port)
    outcome = {}
    try:
        run = subprocess.Popen([FER_EDGE, "run", "--source", video, "--model", model_path, "--db", db, "--realtime",
                                "--mqtt", f"127.0.0.1:{broker.port}", "--device-id", "kiosk", *flags, *SESSION_FLAGS],
                               stderr=subprocess.PIPE, text=True)
        yield outcome
        _, outcome["stderr"] = run.communicate(timeout=60)
        assert run.returncode == 0, outcome["stderr"]
        recorder.wait_for(lambda: len({s["id"] for s in recorder.json_on("/session")}) >= 4, 10)
        outcome["sent"] = {s["id"] for s in recorder.json_on("/session")}
    finally:
        recorder.close()
        broker.stop()


def damage(db, how):
    if how == "cut in half":
        os.truncate(db, os.path.getsize(db) // 2)
    elif how == "garbage":
        db.write_bytes(os.urandom(40_000))
    else:  # a foreign shape: the same table names, other columns
        db.unlink()
        foreign = sqlite3.connect(db)
        foreign.executescript("CREATE TABLE emotions (id INTEGER PRIMARY KEY, when_seen TEXT, mood TEXT);"
                              "CREATE TABLE outbox (n INTEGER PRIMARY KEY, body BLOB);")
        foreign.commit()
        foreign.close()


@pytest.mark.needs_broker
@pytest.mark.parametrize("how", ["cut in half", "garbage", "foreign shape"])
def test_a_damaged_or_foreign_log_is_kept_aside_and_the_sensor_runs(how, tmp_path, model_path, visits_video):
    db = tmp_path / "log.db"
    first = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", db, *SESSION_FLAGS)
    assert first.returncode == 0, first.stderr
    before = len(sessions_in(db))
    assert before == 4
    damage(db, how)
    again, sent = run_with_broker(tmp_path, db, visits_video, model_path)
    kept = [line for line in again.stderr.splitlines() if "kept aside as" in line]
    assert len(kept) == 1 and "Traceback" not in again.stderr, again.stderr
    aside = Path(kept[0].split("kept aside as ")[1].split(" and ")[0])
    assert aside.exists() and aside.parent == tmp_path
    stored = {row[0] for row in sessions_in(db)}
    assert len(sent) == 4 and {s["id"] for s in sent} <= stored, "this run's visits are logged and sent"
    print(f"{how}: {again.stderr.splitlines()[0]}")


def test_readable_visits_of_a_damaged_log_are_copied_over(tmp_path, model_path, visits_video):
    """A log damaged past its visits (a garbage tail): the visits come over to the fresh log."""
    db = tmp_path / "log.db"
    first = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", db, *SESSION_FLAGS,
                    "--log-interval", "0")
    assert first.returncode == 0, first.stderr
    visits = {row[0] for row in sessions_in(db)}
    # Damage the emotion table's pages only: overwrite the last quarter of the file with garbage.
    size = os.path.getsize(db)
    with open(db, "r+b") as f:
        f.seek(size * 3 // 4)
        f.write(os.urandom(size - size * 3 // 4))
    again = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", db, *SESSION_FLAGS)
    assert again.returncode == 0, again.stderr
    assert "kept aside as" in again.stderr, again.stderr
    now = {row[0] for row in sessions_in(db)}
    copied = visits & now
    print(f"copied over: {len(copied)} of {len(visits)} visits; {again.stderr.splitlines()[0]}")
    assert "visits copied over" in again.stderr and copied, again.stderr


def test_a_second_run_on_the_same_log_refuses_in_one_line(tmp_path, model_path, visits_video):
    db = tmp_path / "log.db"
    first = subprocess.Popen([FER_EDGE, "run", "--source", visits_video, "--model", model_path, "--db", db,
                              "--realtime", "--quiet"], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
        second = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", db, "--quiet")
    finally:
        first.terminate()
        first.wait(20)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1] == (
        f"Error: {db} is in use by another fer-edge run; give each run its own --db"), second.stderr


@pytest.mark.parametrize("kind", ["folder", "pipe"])
def test_a_log_path_that_is_a_folder_or_a_pipe_is_refused_and_left_alone(kind, tmp_path, model_path, visits_video):
    """A damaged log is kept aside by renaming it: a folder given as --db must not be renamed."""
    target = tmp_path / "kiosk"
    if kind == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("kept")
    else:
        os.mkfifo(target)
    result = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", target, "--quiet",
                     "--max-frames", "5", timeout=60)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        f"Error: {target}: not a file the log can be kept in (a folder, a device or a pipe); give a file's path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kiosk"]   # not renamed, nothing beside it
    assert kind == "pipe" or (target / "notes.txt").read_text() == "kept"


@pytest.mark.needs_broker
def test_a_lock_held_by_another_program_loses_nothing(tmp_path, model_path, visits_video):
    """An operator's sqlite3 holds the write lock in the middle of the run: every visit still
    reaches the log and the broker."""
    db = tmp_path / "log.db"
    with realtime_run_with_broker(tmp_path, db, visits_video, model_path) as outcome:
        deadline = time.monotonic() + 20
        while not (db.exists() and sqlite3.connect(db).execute(
                "SELECT name FROM sqlite_master WHERE name='runs'").fetchone()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        operator = sqlite3.connect(db, isolation_level=None)
        operator.execute("BEGIN IMMEDIATE")   # held while visits 2 and 3 happen
        time.sleep(6.0)
        operator.execute("ROLLBACK")
        operator.close()
    stderr, sent = outcome["stderr"], outcome["sent"]
    assert "Traceback" not in stderr and "log locked by another program" in stderr, stderr
    assert "held rows written" in stderr, stderr
    stored = {row[0] for row in sessions_in(db)}
    assert len(stored) == 4 and stored == sent, (stored, sent, stderr)


def faketime_env(control):
    lib = next((p for p in FAKETIME_LIBS if os.path.exists(p)), None)
    if lib is None:
        message = "libfaketime is not installed (.ci/setup installs Debian's faketime)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    control.write_text("+0\n")
    return {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(control), "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


class PacedVisits:
    """A live MJPEG camera on loopback at 25 frames/s: a face for `face_seconds`, then an empty
    scene for `empty_seconds`, `visits` times."""

    def __init__(self, photos, face_seconds=4.0, empty_seconds=4.0, visits=2):
        import cv2
        import numpy as np

        frames = read_frames(photos / "single_face.mp4")
        empty = np.full_like(frames[0], 40)
        fps = 25
        sequence = []
        for _ in range(visits):
            sequence += [frames[i % len(frames)] for i in range(int(face_seconds * fps))]
            sequence += [empty] * int(empty_seconds * fps)
        self.face_seconds, self.fps = face_seconds, fps
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in sequence]
        self.server = MJPEGServer(self.jpegs, per_connection=len(self.jpegs), frame_seconds=1.0 / fps,
                                  stall_after=True)
        self.url = f"http://127.0.0.1:{self.server.port}/"
        self.seconds = len(self.jpegs) / fps

    def stop(self):
        self.server.stop()


def test_a_clock_stepped_during_visits_keeps_every_duration(tmp_path, photos, model_path):
    """NTP steps the clock back an hour during the first visit and forward an hour during the
    second: each stored duration stays within 1 s of the face's real time on camera."""
    control = tmp_path / "faketime"
    env = faketime_env(control)
    camera = PacedVisits(photos)
    db = tmp_path / "log.db"
    try:
        run = subprocess.Popen([FER_EDGE, "run", "--source", camera.url, "--model", model_path, "--db", db,
                                "--session-min", "1", "--session-gap", "2", "--exit-seconds", "1", "--quiet"],
                               stderr=subprocess.PIPE, text=True, env=dict(os.environ, **env))
        time.sleep(3.0)   # the first face is on camera: step back
        control.write_text("-1h\n")
        time.sleep(8.0)   # the second face: step forward again (+0 after -1h)
        control.write_text("+0\n")
        time.sleep(camera.seconds - 11.0 + 3.0)
        run.terminate()
        _, stderr = run.communicate(timeout=30)
    finally:
        camera.stop()
    assert run.returncode == 0, stderr
    assert stderr.count("the wall clock stepped") == 2, stderr
    stored = sessions_in(db)
    durations = [round(d, 2) for _, d, _, _ in stored]
    print(f"visits after clock steps of -1 h and +1 h: durations {durations} s, clock_step "
          f"{[s for *_, s in stored]}, truth {camera.face_seconds} s each")
    assert len(stored) == 2, stored
    assert all(abs(d - camera.face_seconds) <= 1.0 for d in durations), durations
    assert sorted(s for *_, s in stored) == [-3600.0, 3600.0], "each visit is marked with the step it spans"


def test_a_clock_far_ahead_deletes_nothing(tmp_path, model_path, visits_video):
    """A dead RTC battery or a bad NTP answer: the clock is 100 days ahead at start and
    keep_days is 90. Retention must not delete today's rows."""
    db = tmp_path / "log.db"
    first = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", db, "--quiet",
                    "--log-interval", "0")
    assert first.returncode == 0, first.stderr
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM emotions").fetchone()[0]
    assert rows > 100
    control = tmp_path / "faketime"
    env = faketime_env(control)
    control.write_text("+100d\n")
    ahead = run_cli("fer-edge", "run", "--keep-days", "90", "--source", visits_video, "--model", model_path,
                    "--db", db, "--quiet", extra_env=env)
    assert ahead.returncode == 0, ahead.stderr
    assert "retention paused" in ahead.stderr, ahead.stderr
    kept = sqlite3.connect(db).execute("SELECT COUNT(*) FROM emotions WHERE ts < ?", (time.time() + 86400,)).fetchone()[0]
    assert kept == rows, (kept, rows)
    print(ahead.stderr.splitlines()[0])


@pytest.mark.needs_broker
def test_a_bad_outbox_row_is_set_aside_and_the_rest_flows(tmp_path, model_path, visits_video):
    db = tmp_path / "log.db"
    first = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", db, "--quiet",
                    "--max-frames", "1")
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(db) as raw:  # a row no broker takes: a wildcard in its topic
        raw.execute("INSERT INTO outbox (msg_id, kind, topic, payload, qos, retain, created) "
                    "VALUES ('bad', 'session', 'fer-edge/kiosk/#', '{}', 1, 0, 0)")
    run, sent = run_with_broker(tmp_path, db, visits_video, model_path)
    assert len(sent) == 4
    assert "Traceback" not in run.stderr and "set aside" in run.stderr, run.stderr
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT msg_id, reason FROM outbox_aside").fetchall()[0][0] == "bad"
    assert raw.execute("SELECT value FROM counters WHERE name = 'set_aside'").fetchone()[0] == 1
    assert raw.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


@pytest.mark.needs_broker
def test_a_disk_that_fills_with_the_broker_up_delivers_every_visit(full_tmpfs, tmp_path, model_path, visits_video):
    mount, fill = full_tmpfs
    db = mount / "log.db"
    with realtime_run_with_broker(tmp_path, db, visits_video, model_path, "--log-interval", "0") as outcome:
        time.sleep(3.0)
        fill()
        time.sleep(4.0)
        (mount / "filler").unlink()
    stderr = outcome["stderr"]
    assert "Traceback" not in stderr and "log full" in stderr, stderr
    assert len(outcome["sent"]) == 4


@pytest.mark.needs_broker
def test_a_stop_on_a_full_disk_with_the_broker_down_keeps_every_visit(full_tmpfs, tmp_path, model_path,
                                                                       visits_video):
    mount, fill = full_tmpfs
    db = mount / "log.db"
    broker = Broker(tmp_path)   # not started yet: the broker is down
    run = subprocess.Popen([FER_EDGE, "run", "--source", visits_video, "--model", model_path, "--db", db,
                            "--realtime", "--mqtt", f"127.0.0.1:{broker.port}", "--device-id", "kiosk",
                            *SESSION_FLAGS], stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    fill()
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 0 and "Traceback" not in stderr, stderr
    assert "sent at the next start" in stderr, stderr
    (mount / "filler").unlink()
    broker.start()
    recorder = Recorder(broker.port)
    try:
        again = run_cli("fer-edge", "run", "--source", visits_video, "--model", model_path, "--db", db,
                        "--mqtt", f"127.0.0.1:{broker.port}", "--device-id", "kiosk", "--max-frames", "1", "--quiet")
        assert again.returncode == 0, again.stderr
        assert recorder.wait_for(lambda: len({s["id"] for s in recorder.json_on("/session")}) >= 4, 10), again.stderr
    finally:
        recorder.close()
        broker.stop()
    assert "back in the log" in again.stderr, again.stderr
    logged = {row[0] for row in sessions_in(db)}
    assert {s["id"] for s in recorder.json_on("/session")} == logged and len(logged) == 4


def test_a_camera_stall_ends_the_visit_at_the_last_frame_as_camera_lost(tmp_path, photos, model_path):
    """The stream goes silent mid-visit (a hung camera): the visit ends at the last frame the
    face was seen, as "camera lost", and the camera is reopened within a few seconds."""
    camera = PacedVisits(photos, face_seconds=3.0, empty_seconds=0.0, visits=1)
    db = tmp_path / "log.db"
    try:
        run = subprocess.Popen([FER_EDGE, "run", "--source", camera.url, "--model", model_path, "--db", db,
                                "--quiet"], stderr=subprocess.PIPE, text=True)
        time.sleep(16.0)   # 3 s of face, a silent connection until the 5 s read timeout, 3 s of face again
        run.terminate()
        _, stderr = run.communicate(timeout=30)
    finally:
        camera.stop()
    assert run.returncode == 0 and "Traceback" not in stderr, stderr
    stored = sorted(sqlite3.connect(db).execute("SELECT start, duration, ended_by FROM sessions").fetchall())
    print(f"visits around a stall: {[(round(d, 2), e) for _, d, e in stored]}")
    assert [e for *_, e in stored][:1] == ["camera lost"], stored
    assert abs(stored[0][1] - camera.face_seconds) <= 0.5, stored
    assert "reopened" in stderr, stderr


def test_health_says_when_the_camera_is_lost(tmp_path, photos, model_path):
    """/healthz answers 503 with the reason once no frame has come for 10 s."""
    pytest.importorskip("aiohttp")
    from web_helpers import Server

    camera = PacedVisits(photos, face_seconds=10.0, empty_seconds=0.0, visits=1)
    server = Server("--source", camera.url, "--model", model_path, "--db", tmp_path / "log.db", "--quiet")
    try:
        time.sleep(2.0)
        healthy = server.request("/healthz")
        camera.stop()   # the camera is gone
        deadline, lost = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            lost = server.request("/healthz")
            if lost[0] == 503:
                break
            time.sleep(1.0)
    finally:
        err = server.stop()
    print(f"healthz: {healthy} then {lost}")
    assert healthy[0] == 200 and json.loads(healthy[1])["ok"] is True
    assert lost[0] == 503 and "no frame for" in json.loads(lost[1])["problems"][0], lost
    assert "Traceback" not in err


@pytest.fixture()
def full_ext4(tmp_path):
    """A real 8 MB ext4 on a loop device, filled to the last block after `fill()` (needs root to mount)."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        message = "mounting an ext4 loop device needs root and mkfs.ext4 (e2fsprogs)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    image, mount = tmp_path / "ext4.img", tmp_path / "ext4"
    with open(image, "wb") as blank:
        blank.truncate(8 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)

    def fill():
        with open(mount / "filler", "wb") as filler:
            with contextlib.suppress(OSError):
                while filler.write(b"\0" * 4096):
                    filler.flush()

    try:
        yield mount, fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("disk", ["full_tmpfs", "full_ext4"])
def test_a_start_on_a_full_disk_reads_faces_and_writes_everything_once_there_is_room(disk, request, tmp_path, model_path,
                                                                                      visits_video):
    mount, fill = request.getfixturevalue(disk)
    state = mount / "fer-edge"   # the state folder (and its log) made on a disk already full
    fill()
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err:
        run = subprocess.Popen([FER_EDGE, "run", "--source", visits_video, "--model", model_path, "--realtime",
                                "--log-interval", "0", "--device-id", "kiosk", *SESSION_FLAGS],
                               stderr=err, text=True, env={**os.environ, "STATE_DIRECTORY": str(state)})
        time.sleep(3.0)
        assert run.poll() is None, err_path.read_text()   # no exit, no crash loop
        early = err_path.read_text()
        (mount / "filler").unlink()
        run.wait(timeout=60)
    stderr = err_path.read_text()
    assert run.returncode == 0 and "Traceback" not in stderr, stderr
    assert sum("log full" in line for line in early.splitlines()) == 1, early
    assert "log writable again" in stderr, stderr
    db = sqlite3.connect(state / "fer-edge.db")
    updates = int(stderr.split(" updates logged")[0].rsplit(" ", 1)[1])
    assert updates > 0 and db.execute("SELECT COUNT(*) FROM emotions").fetchone()[0] == updates, stderr
    assert len(sessions_in(state / "fer-edge.db")) == 4, stderr
