"""Strangers on the network cannot starve, flood or read the page: real sockets on loopback
against a real `fer-edge serve` with a token."""

import os
import socket
import time

import pytest

from conftest import free_port, run_cli
from web_helpers import Server

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.slow

TOKEN = "kiosk-token-0123456789abcdef"


@pytest.fixture()
def guarded(tmp_path, model_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    s = Server("--model", model_path, "--no-db", "--web-token-file", token)
    yield s
    s.stop()


def raw(port, data, read=True):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        if read:
            try:
                return sock.recv(4096)
            except OSError:
                return b""
    return b""


def test_malformed_requests_leave_one_short_line_and_never_the_token(guarded):
    for _ in range(100):
        raw(guarded.port, b"GET /api/status?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n\x00\x01bad\r\n\r\n")
        raw(guarded.port, b"\x16\x03\x01garbage that is no HTTP\r\n\r\n")
    assert guarded.request(f"/api/status?token={TOKEN}")[0] == 200
    err = guarded.stop()
    lines = err.splitlines()
    print(f"200 malformed requests -> {len(lines)} log lines, {len(err)} bytes")
    assert TOKEN not in err and "Traceback" not in err, err[-2000:]
    assert len(lines) <= 10, lines


def test_idle_strangers_cannot_starve_the_token_holder(guarded):
    """230 strangers from another address (127.0.0.2), idle or with a wrong token, against a cap of 200."""
    strangers = []
    try:
        for i in range(230):
            sock = socket.create_connection(("127.0.0.1", guarded.port), timeout=5, source_address=("127.0.0.2", 0))
            if i % 2:
                sock.sendall(b"GET /api/status?token=wrong HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            strangers.append(sock)
        time.sleep(0.5)
        answered = [guarded.request(f"/api/status?token={TOKEN}")[0] for _ in range(20)]
    finally:
        for sock in strangers:
            sock.close()
    print(f"token holder among 230 idle strangers: {answered.count(200)} of 20 answered 200")
    assert answered == [200] * 20


def test_guessing_tokens_is_limited(guarded):
    codes = [guarded.request(f"/api/status?token=guess-{i}")[0] for i in range(30)]
    print(f"30 wrong tokens: {codes.count(401)} x 401, {codes.count(429)} x 429")
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    err = guarded.stop()
    assert err.count("wrong token") + err.count("429") <= 4, err


def test_a_slow_upload_is_closed_at_the_body_deadline(guarded):
    sock = socket.create_connection(("127.0.0.1", guarded.port), timeout=40)
    started = time.monotonic()
    sock.sendall(f"POST /api/analyze?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                 f"Content-Length: 100000\r\n\r\n".encode())
    answer = b""
    try:
        while time.monotonic() - started < 35:
            sock.sendall(b"x")
            sock.settimeout(2.0)
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                continue
            answer += chunk
            if not chunk or b"408" in answer:
                break
    except OSError:
        pass
    finally:
        sock.close()
    seconds = time.monotonic() - started
    print(f"a 1 byte / 2 s upload: closed after {seconds:.1f} s: {answer[:40]!r}")
    assert b"408" in answer and seconds < 25


def test_a_short_token_is_refused_and_a_readable_token_file_is_said(tmp_path, model_path):
    short = tmp_path / "short"
    short.write_text("abcd\n")
    refused = run_cli("fer-edge", "serve", "--web", f"0.0.0.0:{free_port()}", "--web-token-file", short, "--no-db",
                      "--model", model_path, timeout=60)
    assert refused.returncode == 1 and "at least 16" in refused.stderr and "Traceback" not in refused.stderr
    readable = tmp_path / "readable"
    readable.write_text(TOKEN + "\n")
    os.chmod(readable, 0o644)
    s = Server("--model", model_path, "--no-db", "--web-token-file", readable)
    err = s.stop()
    assert "readable by other users" in err, err


def test_one_address_cannot_take_every_connection(guarded):
    """Slow uploads with the token from one address fill only that address's share (50)."""
    held = []
    try:
        for _ in range(60):
            sock = socket.create_connection(("127.0.0.1", guarded.port), timeout=5, source_address=("127.0.0.3", 0))
            sock.sendall(f"POST /api/analyze?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\nx".encode())
            held.append(sock)
        time.sleep(0.5)
        refused = 0
        for sock in held[50:]:
            sock.settimeout(2.0)
            try:
                refused += b"503" in sock.recv(200)
            except OSError:
                pass
        answered = [guarded.request(f"/api/status?token={TOKEN}")[0] for _ in range(5)]
    finally:
        for sock in held:
            sock.close()
    print(f"60 slow uploads from one address: {refused} of the last 10 refused; the page answered {answered}")
    assert refused == 10 and answered == [200] * 5


@pytest.mark.parametrize("weak, why", [("a" * 20, "mostly repeated"), ("ab" * 10, "mostly repeated"),
                                       ("abcdefghijklmnopqrst", "a run"), ("0123456789abcdef" * 2, "a run"),
                                       ("qwerty" * 3, "a short part repeated"),
                                       ("a1b2c3d4e5f6a7b8\nc9d0e1f2a3b4c5d6", "line break"),
                                       ("k3Jd9x2Lq8\x1b[2JZm4Pw7Rt6", "control character")])
def test_a_weak_token_is_refused_in_one_line(weak, why, tmp_path, model_path):
    token = tmp_path / "token"
    token.write_bytes(weak.encode() + b"\n")
    token.chmod(0o600)
    refused = run_cli("fer-edge", "serve", "--web", f"0.0.0.0:{free_port()}", "--web-token-file", token, "--no-db",
                      "--model", model_path, timeout=60)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr
    assert lines[0].startswith("Error: the page's token ") and why in lines[0], refused.stderr


def test_a_token_file_that_is_not_text_is_refused_in_one_line(tmp_path, model_path):
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe\x00" + b"k3Jd9x2Lq8Zm4Pw7Rt6")
    token.chmod(0o600)
    refused = run_cli("fer-edge", "serve", "--web", f"0.0.0.0:{free_port()}", "--web-token-file", token, "--no-db",
                      "--model", model_path, timeout=60)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"Error: {token}: the token file is not UTF-8 text"), refused.stderr
