"""A real mosquitto broker on 127.0.0.1 for the tests, and a subscriber that records what arrives."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port, read_frames


def make_visits_video(photos, folder):
    """A real face that comes and goes: 1.5 s of single_face.mp4, then 1.2 s of an empty frame, x4."""
    import cv2
    import numpy as np

    frames = read_frames(photos / "single_face.mp4")
    empty = np.full_like(frames[0], 40)
    path = folder / "visits.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (frames[0].shape[1], frames[0].shape[0]))
    for _ in range(4):
        for frame in frames[:45]:
            writer.write(frame)
        for _ in range(36):
            writer.write(empty)
    writer.release()
    return path


def made_up_visit(device, number, satisfaction=60.0, days_ago=0):
    """A finished 4 s visit that ended now (or `days_ago`), as a device would send it."""
    from fer_edge.core.records import Visit

    end = time.time() - days_ago * 86400
    return Visit(id=f"{device}-{number}", device=device, start=end - 4, end=end, duration=4.0, frames=40,
                 dominant="happy", exit_emotion="neutral", satisfaction=satisfaction, shares={"happy": 0.6, "neutral": 0.4},
                 exit_probs={"neutral": 0.7, "happy": 0.3})


def simulated_devices(port, folder, numbers, connect_seconds=60):
    """Devices `dev-NNN` sending through fer-edge's own MQTT sink (each with its outbox in
    `folder`); returns them and whether all connected within `connect_seconds`."""
    from fer_edge.outputs.mqtt import MQTTSink
    from fer_edge.core.settings_sections import MqttSection

    mqtt = MqttSection(host=f"127.0.0.1:{port}", discovery=False)
    sinks = [MQTTSink(mqtt, f"dev-{i:03d}", str(folder / f"dev-{i:03d}.db"), on_event=lambda message: None)
             for i in numbers]
    return sinks, Recorder.wait_for(lambda: all(s.connected.is_set() for s in sinks), connect_seconds)


def collector_login(folder, password, user="fer-edge-collector"):
    """The flags a collector logs in with: its user and a password file only it may read."""
    path = folder / f"{user}-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return ("--mqtt-username", user, "--mqtt-password-file", path)


def start_collector(port, db, client_id, *flags):
    """`fer-edge collect`, once it has subscribed (until its first start, the broker keeps nothing for it)."""
    import sys
    from pathlib import Path

    process = subprocess.Popen([str(Path(sys.executable).parent / "fer-edge"), "collect", "--mqtt", f"127.0.0.1:{port}",
                                "--db", str(db), "--client-id", client_id, *flags], stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "connected to" in line:
            break
    return process


class Broker:
    """mosquitto on 127.0.0.1:port with persistence, so a subscriber's queued messages survive a restart."""

    def __init__(self, folder, port=None):
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if not binary:
            message = "mosquitto is not installed (.ci/setup installs it from Debian's packages)"
            pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
        self.binary, self.folder, self.port = binary, folder, port or free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {folder}/\nautosave_interval 1\nmax_queued_messages 100000\n")
        self.process = None

    def with_passwords(self, users, acl=None, anonymous=False):
        """Logins from mosquitto's own password file (and an ACL); as root, mosquitto keeps root's
        user, since its own user cannot enter pytest's folders."""
        passwords = self.folder / "passwd"
        passwords.write_text("")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
        lines = [f"password_file {passwords}"]
        if acl is not None:
            (self.folder / "acl").write_text(acl)
            lines.append(f"acl_file {self.folder / 'acl'}")
        if os.geteuid() == 0:
            lines.append("user root")
        anonymous_line = f"allow_anonymous {'true' if anonymous else 'false'}"
        self.config.write_text(self.config.read_text().replace("allow_anonymous true", anonymous_line)
                               + "\n".join(lines) + "\n")
        return self

    def start(self):
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Recorder:
    """A persistent QoS-1 subscriber (clean_session=False): it gets what was queued while it was away."""

    def __init__(self, port, topics=("#",), client_id="recorder"):
        import paho.mqtt.client as mqtt

        self.messages, self.lock = [], threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.wait_for(lambda: self.client.is_connected(), 10)

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((time.time(), message.topic, message.payload.decode(), message.retain))

    def on(self, suffix):
        with self.lock:
            return [(t, payload) for t, topic, payload, _ in self.messages if topic.endswith(suffix)]

    def json_on(self, suffix):
        return [json.loads(p) for _, p in self.on(suffix)]

    @staticmethod
    def wait_for(condition, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
