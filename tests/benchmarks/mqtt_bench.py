"""MQTT benchmarks against a real mosquitto on 127.0.0.1.

1. fleet: N device ids publishing R messages/s each for S seconds through fer-edge's MQTT
   sink (MQTTSink: durable outbox, QoS 1); reports lost messages and publish->receive
   latency p50/p99.
2. outage: `fer-edge run` over a video with a healthy broker and with an unreachable one;
   reports both frames/s (medians of --repeats runs) and their ratio.

    python tests/benchmarks/mqtt_bench.py [--devices 50] [--rate 20] [--seconds 60] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mqtt_helpers import Broker, Recorder, free_port, made_up_visit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VIDEO = ROOT.parent / "shared" / "data" / "photos" / "WolfgangLanger_Pexels.mp4"


def fleet(devices, rate, seconds, folder):
    from fer_edge.outputs.mqtt import MQTTSink
    from fer_edge.core.settings_sections import MqttSection

    broker = Broker(folder).start()
    latencies, received, lock = [], set(), threading.Lock()
    recorder = Recorder(broker.port, topics=("fleet/+/session",), client_id="fleet-recorder")

    def on_message(client, userdata, message):
        payload = json.loads(message.payload)
        with lock:
            if payload["msg_id"] not in received:
                received.add(payload["msg_id"])
                latencies.append(time.time() - payload["end"])   # the visit is sent as it ends

    recorder.client.on_message = on_message
    quiet = lambda message: None  # noqa: E731
    mqtt = MqttSection(host=f"127.0.0.1:{broker.port}", prefix="fleet")
    publishers = [MQTTSink(mqtt, f"dev-{i:02d}", str(folder / f"dev-{i:02d}.db"), on_event=quiet) for i in range(devices)]
    Recorder.wait_for(lambda: all(p.connected.is_set() for p in publishers), 30)
    sent, start, tick = [], time.monotonic(), 1.0 / rate
    for step in range(int(seconds * rate)):
        due = start + step * tick
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for publisher in publishers:
            visit = made_up_visit(publisher.device_id, step)
            publisher.session(visit)
            sent.append(visit.id)
    publish_seconds = time.monotonic() - start
    Recorder.wait_for(lambda: len(received) >= len(sent), 120)
    for publisher in publishers:
        publisher.close(drain_seconds=0)
    recorder.close()
    broker.stop()
    lat = sorted(latencies)
    return {"devices": devices, "rate_per_device": rate, "seconds": seconds, "sent": len(sent),
            "received": len(received), "lost": len(set(sent) - received),
            "achieved_rate": round(len(sent) / publish_seconds, 1),
            "latency_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "latency_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None}


def outage(repeats, folder):
    exe = str(Path(sys.executable).parent / "fer-edge")
    (folder / "broker").mkdir()
    broker = Broker(folder / "broker").start()

    def fps(port):
        db = folder / f"run-{port}-{time.monotonic_ns()}.db"
        result = subprocess.run([exe, "run", "--source", str(VIDEO), "--db", str(db), "--quiet", "--mqtt",
                                 f"127.0.0.1:{port}", "--log-interval", "0.2"], capture_output=True, text=True)
        line = [text for text in result.stderr.splitlines() if "frames/s" in text][-1]
        return float(line.split("(")[1].split(" frames/s")[0])

    dead = free_port()  # nothing listens here: the broker is unreachable
    healthy, unreachable = [], []
    for _ in range(repeats):  # interleaved, so drift hits both alike
        healthy.append(fps(broker.port))
        unreachable.append(fps(dead))
    broker.stop()
    h, u = statistics.median(healthy), statistics.median(unreachable)
    return {"video": VIDEO.name, "fps_healthy_broker": h, "fps_unreachable_broker": u, "ratio": round(u / h, 3),
            "runs": repeats}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["fleet", "outage"], default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "outage"):
            results["outage"] = outage(args.repeats, Path(tmp))
            print("outage:", json.dumps(results["outage"]), flush=True)
        if args.only in (None, "fleet"):
            (Path(tmp) / "fleet").mkdir()
            results["fleet"] = fleet(args.devices, args.rate, args.seconds, Path(tmp) / "fleet")
            print("fleet:", json.dumps(results["fleet"]), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
