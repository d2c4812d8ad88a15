"""The device service: config validation, sd_notify over a real socket, the systemd unit."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from fer_edge.settings import ConfigError, read_file

UNIT = ROOT / "systemd" / "fer-edge.service"
EXAMPLE = ROOT / "systemd" / "config.example.toml"


def test_threads_default_to_auto(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[model]\nthreads = "auto"\n')
    assert read_file(path)["model_threads"] == "auto"
    shown = run_cli("fer-edge", "config", "show")
    assert 'threads = "auto"' in shown.stdout


def test_example_config_is_valid():
    settings = read_file(EXAMPLE)
    assert settings["source_camera"] == "0" and settings["model_threads"] == "auto" and settings["log_quiet"] is True


@pytest.mark.parametrize("text, message", [
    ("[source]\ncamra = 0\n", "[source] camra: unknown key; allowed: camera"),
    ("[model]\nthreads = 0\n", "[model] threads: expected an integer in 1..64 or \"auto\", got 0"),
    ("[model]\ndelegate = \"gpu\"\n", "[model] delegate: expected one of cpu, edgetpu"),
    ("[detector]\ntype = \"yolo\"\n", "[detector] type: expected one of auto, haar"),
    ("[source]\ncamera = \"front\"\n", "[source] camera: expected a camera index"),
    ("[source]\ncamera = 0\npath = \"a.mp4\"\n", "give camera or path, not both"),
    ("[cloud]\nhost = \"x\"\n", "[cloud]: unknown section"),
    ("[sessions.valence]\n\"Big Smile\" = 1.0\n", "'Big Smile' is not a label name"),
    ("[mqtt]\nhots = \"x\"\n", "[mqtt] hots: unknown key"),
    ("[log\n", "not valid TOML"),
    ("[model]\nmargin = 10\n", "[model] margin: expected a number in 0..1, got 10"),
    ("[model]\nmargin = nan\n", "[model] margin: expected a number in 0..1, got nan"),
    ("[model]\nthreads = 100000\n", "[model] threads: expected an integer in 1..64"),
    ("[model]\nthreads = \"many\"\n", "[model] threads: expected an integer in 1..64 or \"auto\", got 'many'"),
    ("[mqtt]\nhost = \"127.0.0.1:notaport\"\n", "[mqtt] host: port 'notaport' is not a number in 1..65535"),
    ("[mqtt]\nhost = \"broker:99999\"\n", "[mqtt] host: port '99999' is not a number in 1..65535"),
    ("[mqtt]\nhost = \"\"\n", "[mqtt] host: expected a host name or address"),
    ("[web]\nlisten = \"nonsense\"\n", "[web] listen: expected HOST:PORT"),
    ("[log]\ninterval = inf\n", "[log] interval: expected a number in 0..3600"),
    ("[deploy]\npublic_key = \"/no/such/fer-edge-deploy.pub\"\n", "[deploy] public_key: no such file"),
    ("[deploy]\npublic_key = 1\n", "[deploy] public_key: expected a path, got 1"),
    ("[deploy]\ngroup = \"\"\n", "[deploy] group: expected a non-empty string"),
    ("[deploy]\nkey = \"x\"\n", "[deploy] key: unknown key; allowed: public_key, dir, group"),
])
def test_bad_configs_name_the_key(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as error:
        read_file(path)
    assert message in str(error.value)
    result = run_cli("fer-edge", "config", "check", path)
    assert result.returncode == 1 and message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


@pytest.mark.parametrize("flag, value, message", [
    ("--margin", "10", "expected a number in 0..1"),
    ("--threads", "100000", "expected an integer in 1..64"),
    ("--mqtt", "127.0.0.1:notaport", "port 'notaport' is not a number in 1..65535"),
    ("--web", "nonsense", "expected HOST:PORT"),
    ("--log-interval", "nan", "expected a number in 0..3600"),
])
def test_flags_obey_the_same_rules_as_the_file(flag, value, message):
    result = run_cli("fer-edge", "run", "--source", "x.mp4", flag, value)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_deploy_key_is_checked_by_config_check_and_at_start(tmp_path):
    from fer_edge.deploy.order import make_keys

    key_path, pub_path = make_keys(str(tmp_path / "keys"))
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[deploy]\npublic_key = "{pub_path}"\ndir = "{tmp_path / "models"}"\ngroup = "lobby"\n')
    result = run_cli("fer-edge", "config", "check", config)
    assert result.returncode == 0 and "ok (3 settings)" in result.stdout, result.stderr
    shown = run_cli("fer-edge", "config", "show", "--config", config).stdout
    assert f'[deploy]\npublic_key = "{pub_path}"' in shown and 'group = "lobby"' in shown
    for wrong, message in [(key_path, "a private key; a device takes the public key (fer-edge-deploy.pub)"),
                           (garbage, "not a readable PEM public key")]:
        config.write_text(f'[deploy]\npublic_key = "{wrong}"\n')
        for command in (["config", "check", config], ["run", "--config", config, "--source", "x.mp4"]):
            result = run_cli("fer-edge", *command)
            assert result.returncode == 1 and f"{config}: [deploy] public_key: {message}" in result.stderr, result.stderr
            assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
        result = run_cli("fer-edge", "run", "--source", "x.mp4", "--deploy-key", wrong)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[device]\nid = \"caf\xe9\"\n")
    result = run_cli("fer-edge", "config", "check", path)
    assert result.returncode == 1 and f"{path}: not UTF-8 text" in result.stderr


def test_the_config_reference_is_generated_from_the_settings():
    from fer_edge.settings import markdown_reference

    page = (ROOT / "docs" / "config.md").read_text()
    assert markdown_reference() in page, "docs/config.md is stale: python -m fer_edge.settings > the table"


def test_flags_override_the_config(tmp_path, photos, model_path):
    path = tmp_path / "config.toml"
    db = tmp_path / "from-config.db"
    path.write_text(f'[source]\npath = "{photos / "single_face.mp4"}"\nmax_frames = 5\n'
                    f'[model]\npath = "{model_path}"\n[log]\ndb = "{db}"\nquiet = true\n')
    result = run_cli("fer-edge", "run", "--config", path, "--max-frames", "3")
    assert result.returncode == 0, result.stderr
    assert "3 frames" in result.stderr and db.exists()
    shown = run_cli("fer-edge", "config", "show", "--config", path)
    assert "max_frames = 5" in shown.stdout and 'type = "auto"' in shown.stdout


def test_systemd_unit_verifies_and_is_hardened():
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze missing (systemd is installed on these machines)")
    executable = Path("/usr/local/bin/fer-edge")
    if not executable.exists():
        message = "the unit's ExecStart (/usr/local/bin/fer-edge) is not installed here; .ci/run links it"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    verify = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True, text=True)
    line = [text for text in security.stdout.splitlines() if "Overall exposure level" in text][0]
    exposure = float(line.split(":")[1].split()[0])
    print(line)
    assert exposure <= 2.5


class NotifySocket:
    """A real unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            for field in data.decode().split("\n"):
                self.messages.append((time.monotonic(), field))

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()

    def times(self, prefix):
        return [t for t, field in self.messages if field.startswith(prefix)]


@pytest.mark.slow
def test_watchdog_is_fed_only_while_frames_progress(tmp_path, model_path, jpeg_frames):
    from test_live_source import MJPEGServer

    notify = NotifySocket(tmp_path / "notify.sock")
    server = MJPEGServer(jpeg_frames, per_connection=60, stall_after=True)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "fer-edge"), "run", "--source", f"http://127.0.0.1:{server.port}/s.mjpg",
         "--model", str(model_path), "--no-db", "--quiet"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not server.stalled.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.stalled.is_set(), "the stream delivered its frames"
        stalled_at = time.monotonic()
        time.sleep(2.5)  # longer than WatchdogSec (1 s)
        process.terminate()
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        server.stop()
        notify.close()
    assert notify.times("READY=1") and notify.times("STATUS=")
    pings = notify.times("WATCHDOG=1")
    assert len(pings) >= 2, "fed while frames flowed"
    # The last frame left the server at stalled_at; allow the last ping for frames in flight.
    assert not [t for t in pings if t > stalled_at + 1.0], "a stalled camera must starve the watchdog"
    assert notify.times("STOPPING=1")
    assert process.returncode == 0 and "Traceback" not in err


def as_journal(command):
    """Run `command` with stderr as systemd's journal stream ($JOURNAL_STREAM names it): (process, stdout, stderr)."""
    read_end, write_end = os.pipe()
    info = os.fstat(write_end)
    env = dict(os.environ, JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}")
    process = subprocess.Popen([str(Path(sys.executable).parent / "fer-edge"), *map(str, command)],
                               stdout=subprocess.PIPE, stderr=write_end, env=env, text=True)
    os.close(write_end)
    out, _ = process.communicate(timeout=120)
    with os.fdopen(read_end) as stderr:
        return process, out, stderr.read()


def test_under_systemd_every_line_carries_its_journal_priority(photos, model_path):
    """stderr is the journal's stream: lines start with <6>, not `fer-edge: `, the error that stops
    a command with <3>, and stdout keeps the JSON lines alone."""
    process, out, said = as_journal(["run", "--source", photos / "single_face.mp4", "--model", model_path, "--no-db",
                                     "--json", "--max-frames", "10"])
    lines = said.splitlines()
    assert process.returncode == 0 and lines and all(line.startswith("<6>") for line in lines), lines
    assert any("done: 10 frames" in line for line in lines)
    assert all(json.loads(line) for line in out.splitlines())
    failed, _, said = as_journal(["report", "--db", "/no/such.db"])
    assert failed.returncode == 1 and said.startswith("<3>Error: /no/such.db: no such database")
