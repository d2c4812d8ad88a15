"""What a full disk, a closed SSH session, a missing camera and bad files do to a run."""

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_frames, run_cli

FER_EDGE = str(Path(sys.executable).parent / "fer-edge")


def test_a_restart_on_a_full_disk_runs_and_says_the_log_is_full(full_tmpfs, photos, model_path):
    mount, fill = full_tmpfs
    db = mount / "fer-edge.db"
    first = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--db", db, "--quiet")
    assert first.returncode == 0, first.stderr
    kept = sqlite3.connect(db).execute("SELECT COUNT(*) FROM emotions").fetchone()[0]
    fill()
    again = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--db", db,
                    "--quiet", "--log-interval", "0")
    assert again.returncode == 0, again.stderr
    assert "log full" in again.stderr and "72 frames" in again.stderr and "rows dropped" in again.stderr
    assert "Traceback" not in again.stderr
    (mount / "filler").unlink()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM emotions").fetchone()[0] == kept, "nothing recorded is lost"


@pytest.mark.slow
def test_sighup_ends_a_run_like_sigterm_and_keeps_the_visit(photos, model_path, tmp_path):
    db = tmp_path / "log.db"
    process = subprocess.Popen([FER_EDGE, "run", "--source", str(photos / "single_face.mp4"), "--model", str(model_path),
                                "--db", str(db), "--quiet", "--realtime", "--loop", "--session-min", "0.5"],
                               stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # a visit in progress (the face never leaves)
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped:" in err and "1 sessions" in err
    ended_by, = sqlite3.connect(db).execute("SELECT ended_by FROM sessions").fetchone()
    assert ended_by == "stopped"
    assert sqlite3.connect(db).execute("SELECT ended FROM runs").fetchone()[0] is not None


def test_a_camera_that_cannot_be_opened_is_one_line(tmp_path):
    missing = next(i for i in range(10, 64) if not os.path.exists(f"/dev/video{i}"))
    started = time.monotonic()
    result = run_cli("fer-edge", "run", "--camera", str(missing), "--no-db", timeout=30)
    assert result.returncode == 1 and time.monotonic() - started < 15
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Error: camera {missing}: cannot open (no camera there, or another program is using it; "
                     "`ls /dev/video*` lists cameras)"], result.stderr


@pytest.mark.slow
def test_a_service_waits_for_its_camera_saying_why(tmp_path):
    missing = next(i for i in range(10, 64) if not os.path.exists(f"/dev/video{i}"))
    process = subprocess.Popen([FER_EDGE, "run", "--camera", str(missing), "--no-db"], stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, INVOCATION_ID="test"))
    time.sleep(5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"camera {missing}: cannot open" in err and "still cannot open; trying every 2 s" in err
    assert "can't open camera by index" not in err, "OpenCV's own warnings stay quiet"


def test_unreadable_files_are_counted_and_named(photos, model_path, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((photos / "single_face.jpg").read_bytes())
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    (folder / "c.png").write_bytes((photos / "astronaut.png").read_bytes()[:100])
    result = run_cli("fer-edge", "run", "--source", folder, "--model", model_path, "--no-db", "--quiet")
    assert result.returncode == 0 and "2 unreadable: b.jpg, c.png" in result.stderr, result.stderr
    for name in ("a.jpg",):
        (folder / name).unlink()
    result = run_cli("fer-edge", "run", "--source", folder, "--model", model_path, "--no-db", "--quiet")
    assert result.returncode == 1 and "none of its 2 images could be read" in result.stderr


def test_a_video_cut_short_says_so(photos, model_path, tmp_path):
    import cv2

    frames = read_frames(photos / "single_face.mp4")
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # the header still announces every frame
    result = run_cli("fer-edge", "run", "--source", cut, "--model", model_path, "--no-db", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"of the {len(frames)} frames its header announces" in result.stderr


@pytest.mark.slow
def test_an_mpeg_ts_cut_in_half_is_read_up_to_the_cut(photos, model_path, tmp_path):
    """A transport stream (as a recorder or a camera writes it) cut by a power cut: what is there is read."""
    import cv2

    frames = read_frames(photos / "WolfgangLanger_Pexels.mp4")
    whole = tmp_path / "whole.ts"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mpg2"), 24, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    data = whole.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    result = run_cli("fer-edge", "run", "--source", cut, "--model", model_path, "--no-db", "--quiet", "--every-frame")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    done = next(line for line in result.stderr.splitlines() if "done:" in line)
    read = int(done.split("done: ")[1].split(" frames")[0])
    print(f"a {len(frames)}-frame MPEG-TS cut in half: {read} frames read")
    assert read >= len(frames) // 3


def test_the_log_is_private_and_pruned(photos, model_path, tmp_path):
    db = tmp_path / "log.db"
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--db", db, "--quiet")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with sqlite3.connect(db) as con:
        con.execute("UPDATE emotions SET ts = ts - 40 * 86400 WHERE id = (SELECT MIN(id) FROM emotions)")
        before = con.execute("SELECT COUNT(*) FROM emotions").fetchone()[0]
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--db", db,
                     "--quiet", "--keep-days", "30")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as con:
        after = con.execute("SELECT COUNT(*) FROM emotions").fetchone()[0]
        oldest = con.execute("SELECT MIN(ts) FROM emotions").fetchone()[0]
    assert oldest > time.time() - 31 * 86400 and after == before - 1 + 3
