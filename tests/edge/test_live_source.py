"""A live stream (MJPEG over HTTP on 127.0.0.1) that dies mid-stream and comes back:
fer-edge must reconnect with backoff, keep its log, and never crash."""

import pytest
import http.server
import os
import signal
import socket
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

FER_EDGE = str(Path(sys.executable).parent / "fer-edge")



class MJPEGServer:
    """Serves real video frames as multipart JPEG; each connection ends after `per_connection` frames."""

    def __init__(self, frames, per_connection, port=0, stall_after=False, frame_seconds=0.01):
        self.frames, self.per_connection, self.frame_seconds = frames, per_connection, frame_seconds
        self.stall_after = stall_after      # hold the connection open, silent, like a hung camera
        self.stalled = threading.Event()
        self.closing = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i in range(server.per_connection):
                        jpg = server.frames[i % len(server.frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                        self.wfile.write(jpg + b"\r\n")
                        time.sleep(server.frame_seconds)
                    if server.stall_after:
                        server.stalled.set()
                        server.closing.wait(30)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        socketserver.TCPServer.allow_reuse_address = True
        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_stream_that_drops_is_reopened(jpeg_frames, model_path, tmp_path):
    server = MJPEGServer(jpeg_frames, per_connection=40)
    db = tmp_path / "log.db"
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "fer-edge"), "run", "--source",
             f"http://viewer:cam-secret@127.0.0.1:{server.port}/stream.mjpg",
             "--model", str(model_path), "--db", str(db), "--quiet", "--max-frames", "100", "--log-interval", "0"],
            capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("reconnecting") >= 2 and "reopened" in result.stderr
    assert "100 frames" in result.stderr and "Traceback" not in result.stderr
    log = sqlite3.connect(db)
    assert log.execute("SELECT COUNT(*) FROM emotions").fetchone()[0] >= 95
    sources = [row[0] for row in log.execute("SELECT source FROM runs")]
    assert sources == [f"http://viewer:***@127.0.0.1:{server.port}/stream.mjpg"], "the log keeps no stream password"
    assert "cam-secret" not in result.stderr


@pytest.mark.slow
def test_stream_gone_for_a_while_backs_off_then_resumes(jpeg_frames, model_path, tmp_path):
    server = MJPEGServer(jpeg_frames, per_connection=30)
    port = server.port
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "fer-edge"), "run", "--source", f"http://127.0.0.1:{port}/stream.mjpg",
         "--model", str(model_path), "--no-db", "--json", "--log-interval", "0", "--max-frames", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.readline()   # the stream works
    server.stop()               # ...and now the camera is unplugged
    time.sleep(3)
    assert process.poll() is None, "a lost live source must not end the run"
    back = MJPEGServer(jpeg_frames, per_connection=100, port=port)  # plugged in again, same address
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        back.stop()
    assert process.returncode == 0, err
    assert "reconnecting" in err and "reopened" in err and "60 frames" in err


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_dead_stream_ends_a_bounded_run_in_one_line_without_ffmpeg_lines(scheme, model_path):
    url = f"{scheme}://127.0.0.1:{closed_port()}/x"
    started = time.monotonic()
    result = subprocess.run([FER_EDGE, "run", "--source", url, "--model", str(model_path), "--no-db", "--max-frames", "3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and time.monotonic() - started < 60, result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith("[")], result.stderr   # no `[tcp @ 0x...]` from FFmpeg
    assert lines[-1].startswith(f"Error: {url}: no answer from the stream (connection refused") and "gave up" in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_stream_address_with_a_password_is_shown_masked(model_path):
    """An IP camera's rtsp://user:password@ address: the journal gets the address, never the password."""
    url = f"rtsp://admin:hunter2-secret@127.0.0.1:{closed_port()}/stream"
    result = subprocess.run([FER_EDGE, "run", "--source", url, "--model", str(model_path), "--no-db", "--max-frames", "3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "hunter2-secret" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: rtsp://admin:***@127.0.0.1:"), result.stderr


def test_a_named_pipe_is_opened_once_and_sigterm_stops_it(photos, model_path, tmp_path):
    fifo = tmp_path / "camera.pipe"
    os.mkfifo(fifo)
    clip = (photos / "WolfgangLanger_Pexels.mp4").read_bytes()   # faststart: readable from a pipe
    run = subprocess.Popen([FER_EDGE, "run", "--source", str(fifo), "--model", str(model_path), "--no-db", "--json",
                            "--log-interval", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)   # waiting for a writer: still stoppable, see below
        writer = os.open(fifo, os.O_WRONLY)   # one writer that sends part of the clip and stays open
        os.write(writer, clip[:len(clip) // 2])
        assert run.stdout.readline().startswith("{"), "faces are read from the pipe"
        time.sleep(1.0)   # the pipe is silent now: FFmpeg blocks on it
        stopped = time.monotonic()
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=20)
        assert time.monotonic() - stopped < 5, err
        os.close(writer)
    finally:
        run.kill()
    assert run.returncode == 0 and "stopped:" in err and "Traceback" not in err, err


def test_a_pipe_that_sends_no_video_ends_the_run_in_one_line(model_path, tmp_path):
    """What FFmpeg refuses must not make OpenCV open the pipe again and wait for a writer that has gone."""
    fifo = tmp_path / "camera.pipe"
    os.mkfifo(fifo)
    run = subprocess.Popen([FER_EDGE, "run", "--source", str(fifo), "--model", str(model_path), "--no-db"],
                           stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, "wb") as writer:
            writer.write(os.urandom(200_000))
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 1 and err.splitlines()[-1].startswith("Error: ") and "cannot open as video" in err, err
    assert "Traceback" not in err


def test_sigterm_stops_a_run_waiting_for_a_pipe_writer(model_path, tmp_path):
    fifo = tmp_path / "camera.pipe"
    os.mkfifo(fifo)
    run = subprocess.Popen([FER_EDGE, "run", "--source", str(fifo), "--model", str(model_path), "--no-db"],
                           stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)
        stopped = time.monotonic()
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=20)
        assert time.monotonic() - stopped < 5, err
    finally:
        run.kill()
    assert run.returncode == 0 and "stopped:" in err, err
