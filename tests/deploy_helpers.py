"""A fleet for the deployment tests and the rollout benchmark, all real: mosquitto, a collector,
`fer-edge run` devices on a looping real video with deployments on, and the models they get,
made by this repo's own code (a deliberately bad one reads every face as neutral)."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import run_cli
from mqtt_helpers import Broker, Recorder, start_collector

ROOT = Path(__file__).resolve().parents[1]
V1 = ROOT / "models" / "fer-cnn-int8.tflite"
V2 = ROOT / "models" / "fer-cnn-int8-dynamic.tflite"   # the same network quantized otherwise: a good new model
FER_EDGE = str(Path(sys.executable).parent / "fer-edge")

# Loads a run's model, silences its last layer so that every face gets the same logits with
# "neutral" far ahead, and saves it: a model that converts, loads and runs like any other.
_SILENCE = """
import sys, numpy as np, keras
from fer_edge.core.labels import LABELS
model = keras.models.load_model(sys.argv[1], compile=False)
kernel, bias = model.get_layer("logits").get_weights()
bias = np.zeros_like(bias)
bias[list(LABELS).index("neutral")] = 6.0
model.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
model.save(sys.argv[2])
"""


def neutral_model(run_folder: Path, data: Path, out: Path) -> Path:
    """`run_folder`'s best model made to read every face as neutral, converted to int8 by fer-convert."""
    keras_path = out.with_suffix(".keras")
    made = subprocess.run([sys.executable, "-c", _SILENCE, str(run_folder / "best.keras"), str(keras_path)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    converted = run_cli("fer-convert", keras_path, "--data", data, "--int8", "--calib", "200", "--allow-loss", "-o", out)
    assert converted.returncode == 0, converted.stderr[-2000:]
    return out


class Device:
    """`fer-edge run` on a looping video with deployments on; its stderr lines kept as they come."""

    def __init__(self, folder: Path, port: int, video: Path, pub_path: Path, name: str, model: Path = V1,
                 fps: int = 10, realtime: bool = True, extra=()):
        """`realtime`: the video at its own pace (as a camera gives it), else as fast as `fps` allows."""
        self.folder, self.port, self.video, self.pub_path, self.name = folder, port, video, pub_path, name
        self.model, self.fps, self.realtime, self.extra = model, fps, realtime, list(extra)
        self.lines, self.process = [], None
        self.start()

    def start(self) -> None:
        command = [FER_EDGE, "run", "--source", str(self.video), "--loop", *(["--realtime"] if self.realtime else []),
                   "--fps", str(self.fps),
                   "--model", str(self.model), "--db", str(self.folder / f"{self.name}.db"),
                   "--mqtt", f"127.0.0.1:{self.port}", "--device-id", self.name, "--deploy-key", str(self.pub_path),
                   "--deploy-dir", str(self.folder / f"{self.name}-models"), "--quiet", "--stats-interval", "3600",
                   *self.extra]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60.0, count: int = 1) -> str:
        """The `count`th line holding `text`; AssertionError with the log's tail when it does not come."""
        if not Recorder.wait_for(lambda: len(self.holding(text)) >= count, timeout):
            raise AssertionError(f"no {text!r} (x{count}) from {self.name} in {timeout} s:\n" + "\n".join(self.lines[-40:]))
        return self.holding(text)[count - 1]

    def holding(self, text: str):
        return [line for line in list(self.lines) if text in line]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


class Fleet:
    """mosquitto, one collector into an SQLite fleet database, a deploy key pair, and devices
    `kiosk-1` ... `kiosk-N` on the video; `deploy(...)` runs `fer-edge deploy publish`."""

    def __init__(self, folder: Path, video: Path, devices: int = 6, fps: int = 10):
        self.folder, self.video, self.fps = folder, video, fps
        self.broker = Broker(folder).start()
        self.port = self.broker.port
        self.fleet_db = folder / "fleet.db"
        self.collector = start_collector(self.port, self.fleet_db, "collector-1")
        keys = run_cli("fer-edge", "deploy", "keygen", "--out", folder / "keys")
        assert keys.returncode == 0, keys.stderr
        self.key, self.pub = folder / "keys" / "fer-edge-deploy.key", folder / "keys" / "fer-edge-deploy.pub"
        self.recorder = Recorder(self.port, topics=("fer-edge/+/model", "fer-edge/+/emotion", "fer-edge-rollouts/+"),
                                 client_id="deploy-recorder")
        self.devices = {}
        for i in range(1, devices + 1):
            self.add(f"kiosk-{i}")
        for device in self.devices.values():
            device.wait_for("MQTT connected")

    def add(self, name: str, **options) -> Device:
        self.devices[name] = Device(self.folder, self.port, self.video, self.pub, name, fps=self.fps, **options)
        return self.devices[name]

    def deploy(self, *args, timeout: float = 600) -> subprocess.CompletedProcess:
        return run_cli("fer-edge", "deploy", *map(str, args), "--mqtt", f"127.0.0.1:{self.port}", timeout=timeout)

    def states(self, device: str):
        return self.recorder.json_on(f"fer-edge/{device}/model")

    def close(self) -> None:
        for device in self.devices.values():
            device.stop()
        self.recorder.close()
        if self.collector.poll() is None:
            self.collector.send_signal(signal.SIGTERM)
            self.collector.wait(30)
        self.broker.stop()
