"""A broker that cannot be used is said in one line, with the real reason, within 15 s:
a silent port, plain MQTT to a TLS port, an untrusted certificate, the wrong host name,
TLS to a plain port. Real mosquitto listeners and real certificates made by openssl."""

import getpass
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port
from mqtt_helpers import Broker, make_visits_video

pytestmark = [pytest.mark.needs_broker, pytest.mark.slow]

FER_EDGE = str(Path(sys.executable).parent / "fer-edge")
SAY_WITHIN_SECONDS = 15.0


@pytest.fixture(scope="module")
def visits_video(photos, tmp_path_factory):
    return make_visits_video(photos, tmp_path_factory.mktemp("video"))


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, a server certificate it signed for 127.0.0.1, one for another host name, and a stranger CA."""
    folder = tmp_path_factory.mktemp("tls")
    for ca in ("ca", "stranger"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / f"{ca}.key",
                "-out", folder / f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}")
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("elsewhere", "DNS:elsewhere.example")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / f"{name}.key", "-out",
                folder / f"{name}.csr", "-subj", f"/CN={name}")
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", folder / f"{name}.csr", "-CA", folder / "ca.crt", "-CAkey", folder / "ca.key",
                "-CAcreateserial", "-out", folder / f"{name}.crt", "-days", "2", "-extfile", folder / f"{name}.ext")
    return folder


class TLSBroker(Broker):
    """mosquitto with one TLS listener, serving `name`.crt (as the user running the tests:
    the certificates lie in pytest's private folder)."""

    def __init__(self, folder, certificates, name="server"):
        super().__init__(folder)
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                               f"cafile {certificates}/ca.crt\ncertfile {certificates}/{name}.crt\n"
                               f"keyfile {certificates}/{name}.key\nuser {getpass.getuser()}\n")


def first_mqtt_line(port, video, tmp_path, *flags):
    """The first line the run says about the broker, and how long after start it came."""
    run = subprocess.Popen([FER_EDGE, "run", "--source", video, "--realtime", "--loop", "--quiet",
                            "--mqtt", f"127.0.0.1:{port}", *map(str, flags)], stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in run.stderr], daemon=True).start()
    started = time.monotonic()
    found = None
    try:
        while time.monotonic() - started < SAY_WITHIN_SECONDS + 5:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if "MQTT broker" in line or "Traceback" in line:
                found = line.strip()
                break
    finally:
        run.terminate()
        run.wait(20)
    return found, time.monotonic() - started


def check(port, video, tmp_path, expected, *flags):
    found, seconds = first_mqtt_line(port, video, tmp_path, "--db", tmp_path / f"log-{port}.db", *flags)
    print(f"{seconds:4.1f} s: {found}")
    assert found and expected in found and "Traceback" not in found, found
    assert seconds <= SAY_WITHIN_SECONDS


def test_a_port_that_accepts_but_never_answers(tmp_path, visits_video):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        check(silent.getsockname()[1], visits_video, tmp_path, "accepts connections but gives no MQTT answer")
    finally:
        silent.close()


def test_plain_mqtt_to_a_tls_port(tmp_path, visits_video, certificates):
    broker = TLSBroker(tmp_path, certificates).start()
    try:
        check(broker.port, visits_video, tmp_path, "the port speaks TLS")
    finally:
        broker.stop()


def test_a_certificate_that_is_not_trusted(tmp_path, visits_video, certificates):
    broker = TLSBroker(tmp_path, certificates).start()
    try:
        check(broker.port, visits_video, tmp_path, "not trusted", "--mqtt-tls-ca", certificates / "stranger.crt")
    finally:
        broker.stop()


def test_a_certificate_for_another_host(tmp_path, visits_video, certificates):
    broker = TLSBroker(tmp_path, certificates, name="elsewhere").start()
    try:
        check(broker.port, visits_video, tmp_path, "not for 127.0.0.1", "--mqtt-tls-ca", certificates / "ca.crt")
    finally:
        broker.stop()


def test_tls_to_a_plain_port(tmp_path, visits_video, certificates):
    broker = Broker(tmp_path).start()
    try:
        check(broker.port, visits_video, tmp_path, "does not speak TLS", "--mqtt-tls-ca", certificates / "ca.crt")
    finally:
        broker.stop()


def test_nothing_listening(tmp_path, visits_video):
    check(free_port(), visits_video, tmp_path, "connection refused")
