"""The pages' per-address limits behind a reverse proxy: with `--trusted-proxies`, the client
that X-Forwarded-For names is the one counted, and only when the peer is a trusted proxy.
Real sockets on loopback (127.0.0.x addresses stand for the proxy and for strangers)."""

import socket
import time

import pytest

from conftest import run_cli
from mqtt_helpers import made_up_visit
from pg_helpers import fill_fleet_database
from web_helpers import Server

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.slow

PROXY, STRANGER = "127.0.0.5", "127.0.0.6"


def held_requests(port, source, forwarded_for, count):
    """`count` kept-alive connections from `source`, each with one GET /healthz, and their status codes."""
    sockets, statuses = [], []
    try:
        for number in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
            sockets.append(sock)
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: {forwarded_for(number)}\r\n"
                         "\r\n".encode())
        for sock in sockets:
            try:
                head = sock.recv(4096)
            except OSError:
                head = b""
            statuses.append(int(head.split()[1]) if head.startswith(b"HTTP/1.1") else None)
    finally:
        for sock in sockets:
            sock.close()
    return statuses


@pytest.fixture()
def fleet_page(tmp_path):
    db = fill_fleet_database(tmp_path / "fleet.db", [made_up_visit("kiosk-a", 1)])
    server = Server("--fleet", "--db", db, "--trusted-proxies", f"{PROXY}, 10.0.0.0/8")
    yield server
    server.stop()


@pytest.fixture()
def device_page(model_path):
    server = Server("--model", model_path, "--no-db", "--trusted-proxies", f"{PROXY}, 10.0.0.0/8")
    yield server
    server.stop()


@pytest.mark.parametrize("page", ["fleet_page", "device_page"])
def test_two_hundred_viewers_behind_a_trusted_proxy_are_all_answered(page, request):
    server = request.getfixturevalue(page)
    statuses = held_requests(server.port, PROXY, lambda n: f"198.51.100.{n % 250 + 1}, 10.1.2.3", 200)
    assert statuses.count(200) == 200, {s: statuses.count(s) for s in set(statuses)}


def test_one_client_behind_the_proxy_still_has_one_share(fleet_page):
    statuses = held_requests(fleet_page.port, PROXY, lambda n: "198.51.100.7", 60)
    assert statuses.count(200) == 50 and statuses.count(503) == 10, statuses


def test_a_forged_header_from_an_untrusted_peer_does_not_lift_the_cap(fleet_page):
    statuses = held_requests(fleet_page.port, STRANGER, lambda n: f"198.51.100.{n + 1}", 60)
    assert statuses.count(200) == 50 and statuses.count(503) == 10, statuses


def test_without_trusted_proxies_the_header_is_ignored(tmp_path):
    db = fill_fleet_database(tmp_path / "fleet.db", [made_up_visit("kiosk-a", 1)])
    server = Server("--fleet", "--db", db)
    try:
        statuses = held_requests(server.port, PROXY, lambda n: f"198.51.100.{n + 1}", 60)
    finally:
        server.stop()
    assert statuses.count(200) == 50 and statuses.count(503) == 10, statuses


def test_a_wrong_trusted_proxy_is_one_line(tmp_path):
    refused = run_cli("fer-edge", "serve", "--fleet", "--db", tmp_path / "none.db", "--trusted-proxies", "10.0.0.0/33",
                      timeout=60)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert "is not an IP address or network" in refused.stderr, refused.stderr
    config = tmp_path / "config.toml"
    config.write_text('[web]\ntrusted_proxies = "proxy.example"\n')
    checked = run_cli("fer-edge", "config", "check", config, timeout=60)
    assert checked.returncode != 0 and "trusted_proxies" in checked.stderr + checked.stdout, checked


def test_wrong_tokens_are_counted_per_client_behind_the_proxy(tmp_path):
    """Ten wrong tokens from one client behind the proxy get it 429; another client still gets in."""
    token = tmp_path / "token"
    token.write_text("fleet-token-0123456789abcdef\n")
    token.chmod(0o600)
    db = fill_fleet_database(tmp_path / "fleet.db", [made_up_visit("kiosk-a", 1)])
    server = Server("--fleet", "--db", db, "--web-token-file", token, "--trusted-proxies", PROXY)
    try:
        def ask(client, given):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(PROXY, 0)) as sock:
                sock.sendall(f"GET /api/fleet?token={given} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             f"X-Forwarded-For: {client}\r\n\r\n".encode())
                return int(sock.recv(4096).split()[1])
        wrong = [ask("198.51.100.1", "guess") for _ in range(11)]
        assert wrong == [401] * 10 + [429], wrong
        assert ask("198.51.100.2", "fleet-token-0123456789abcdef") == 200
        time.sleep(0.1)
    finally:
        server.stop()
