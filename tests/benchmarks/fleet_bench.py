"""The fleet path end to end: N simulated devices publish visits through fer-edge's own MQTT
sink (durable outbox, QoS 1) to a real mosquitto, and two collectors sharing the subscription
store them in a real PostgreSQL (a throw-away cluster). Prints visits sent and stored, rows
stored more than once, throughput, and publish-to-row latency (p50, p99: the row's commit
time minus the moment the device sent the visit).

    python tests/benchmarks/fleet_bench.py [--devices 200] [--rate 1] [--seconds 60]
"""

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mqtt_helpers import Broker, Recorder, made_up_visit, simulated_devices, start_collector  # noqa: E402
from pg_helpers import Postgres  # noqa: E402

DEVICES_PER_PROCESS = 50   # paho's select() loop cannot watch sockets numbered 1024 and up


def publish(port, folder, first, count, rate, seconds, start_at, results):
    """One process's share of the devices: connect, wait for the common start, publish, drain."""
    sinks, connected = simulated_devices(port, folder, range(first, first + count))
    time.sleep(max(0.0, start_at - time.time()))
    sent, tick, started = 0, 1.0 / rate, time.monotonic()
    for step in range(int(seconds * rate)):
        time.sleep(max(0.0, started + step * tick - time.monotonic()))
        for sink in sinks:
            sink.session(made_up_visit(sink.device_id, step))
            sent += 1
    Recorder.wait_for(lambda: all(s.outbox.count() == 0 for s in sinks), 120)
    waiting = sum(s.outbox.count() for s in sinks)
    for sink in sinks:
        sink.close(drain_seconds=0)
    results.put((sent, waiting, connected))


def main():
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1.0, help="visits per second per device")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fer-edge-fleet-bench-"))
    postgres, broker = Postgres().start(), Broker(folder).start()
    collectors = []
    for name in ("collector-a", "collector-b"):
        collectors.append(start_collector(broker.port, postgres.url, name))
    results, start_at = multiprocessing.Queue(), time.time() + 10 + args.devices / 20
    workers = [multiprocessing.Process(target=publish, args=(broker.port, folder, first,
                                                             min(DEVICES_PER_PROCESS, args.devices - first), args.rate,
                                                             args.seconds, start_at, results))
               for first in range(0, args.devices, DEVICES_PER_PROCESS)]
    for worker in workers:
        worker.start()
    print(f"{args.devices} devices in {len(workers)} processes; publishing {args.rate:g} visits/s each for "
          f"{args.seconds:g} s", flush=True)
    done = [results.get(timeout=args.seconds + 400) for _ in workers]
    sent, waiting = sum(d[0] for d in done), sum(d[1] for d in done)
    assert all(d[2] for d in done), "every device connected"
    count = lambda: postgres.query("SELECT COUNT(*) FROM sessions")[0][0]  # noqa: E731
    Recorder.wait_for(lambda: count() >= sent, 120)
    rows, distinct = postgres.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM sessions")[0]
    first_end, last_stored = postgres.query('SELECT MIN("end"), MAX(stored) FROM sessions')[0]
    latencies = [r[0] for r in postgres.query('SELECT stored - "end" FROM sessions ORDER BY 1')]
    said = []
    for process in collectors:
        process.send_signal(signal.SIGTERM)
        said.append(process.communicate(timeout=60)[1].strip().splitlines()[-1])
    for worker in workers:
        worker.join(30)
    broker.stop()
    postgres.close()
    p = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000 if latencies else float("nan")  # noqa: E731
    span = last_stored - first_end
    print(f"sent {sent} visits; stored {distinct} distinct ({rows - distinct} stored twice, {sent - distinct} missing, "
          f"{waiting} left in the devices' outboxes); {distinct / span:.0f} rows/s from the first visit sent to the "
          f"last row committed ({span:.1f} s)")
    print(f"publish-to-row latency: p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms")
    for line in said:
        print(f"  {line}")


if __name__ == "__main__":
    main()
