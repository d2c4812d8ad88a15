"""The fleet at scale, measured as it will run: K kiosks send what a kiosk sends to a real
mosquitto, and collectors sharing the subscription store it in a real PostgreSQL (a throw-away
cluster). A kiosk announces itself online (retained), then repeats: someone in view for
--in-view seconds (a view each second, QoS 0), a visit when they leave (QoS 1, retained, as a
device sends it), nobody for --away seconds; a stats message each minute (QoS 0). Kiosks start
at random points of that cycle.

Prints what was sent and stored (visits missing or stored twice, a visit's publish-to-row
latency), each collector's messages
stored, rows/s and CPU seconds, mosquitto's and PostgreSQL's CPU seconds, and from those how
many such kiosks one CPU core carries for each. With --backlog N, N visits are then published
while the database is stopped, and the rate at which the collectors store them once it is back
is the most one collector writes.

    python tests/benchmarks/fleet_bench.py [--kiosks 1000] [--seconds 60] [--collectors 2] [--backlog 20000]

The publishers run in --publishers processes, each one MQTT connection speaking for its share
of the kiosks (a real kiosk holds a connection of its own: the broker's per-connection cost is
not measured here).
"""

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mqtt_helpers import Broker, Recorder, made_up_visit, start_collector  # noqa: E402
from pg_helpers import Postgres  # noqa: E402

PREFIX = "fer-edge"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU seconds of these processes so far (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError):
            pass
    return total


def postgres_pids(postgres):
    """The postmaster and its children (the collectors' backends among them)."""
    main = int((postgres.data / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == main:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return [main, *children]


def view(device, people, at):
    from fer_edge.core.records import View, VisitInProgress

    visits = [VisitInProgress(at - 3, 3.0, "happy")] if people else []
    probs = {"happy": 0.7, "neutral": 0.2, "surprise": 0.1} if people else {}
    return View(round(at, 3), device, people, "happy" if people else None, 0.7 if people else None, probs,
                1 if people else None, visits).to_json()


def stats(device, at, started):
    from fer_edge.core.records import RunStats

    return RunStats(device, at, at - started, int((at - started) * 6), 6.0, 1, 1, 8.5, 2.1, 0, 0,
                    {"mqtt": "connected", "outbox_pending": 0, "outbox_waiting": 0}).to_json()


def client(port, name):
    import paho.mqtt.client as mqtt

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(100)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    return publisher


def kiosks(port, numbers, seconds, in_view, away, start_at, results, seed):
    """One process's share of the kiosks, one connection: a second at a time, what each would send."""
    publisher, rng = client(port, f"kiosks-{numbers[0]}"), random.Random(seed)
    devices = [f"kiosk-{n:05d}" for n in numbers]
    cycle = in_view + away
    phase = {d: rng.randrange(cycle) for d in devices}
    minute = {d: rng.randrange(60) for d in devices}
    pending, sent = [], {"session": 0, "view": 0, "stats": 0, "availability": 0}
    for device in devices:
        pending.append(publisher.publish(f"{PREFIX}/{device}/availability", "online", qos=1, retain=True))
        sent["availability"] += 1
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    for tick in range(int(seconds)):
        time.sleep(max(0.0, started + tick - time.time()))
        now = time.time()
        for device in devices:
            at = (tick + phase[device]) % cycle
            if at < in_view:
                publisher.publish(f"{PREFIX}/{device}/view", json.dumps(view(device, 1, now)), qos=0)
                sent["view"] += 1
            elif at == in_view:
                publisher.publish(f"{PREFIX}/{device}/view", json.dumps(view(device, 0, now)), qos=0)
                visit = made_up_visit(device, f"{seed}-{tick}")
                payload = dict(visit.to_json(), msg_id=visit.id, event_type="visit")
                pending.append(publisher.publish(f"{PREFIX}/{device}/session", json.dumps(payload), qos=1, retain=True))
                sent["view"] += 1
                sent["session"] += 1
            if (tick + minute[device]) % 60 == 0:
                publisher.publish(f"{PREFIX}/{device}/stats", json.dumps(stats(device, now, started)), qos=0)
                sent["stats"] += 1
    for info in pending:
        info.wait_for_publish(60)
    publisher.disconnect()
    publisher.loop_stop()
    results.put(sent)


def backlog(port, count, results):
    """`count` visits from one connection as fast as the broker takes them."""
    publisher = client(port, "backlog")
    infos = []
    for number in range(count):
        visit = made_up_visit(f"kiosk-{number % 1000:05d}", f"backlog-{number}")
        infos.append(publisher.publish(f"{PREFIX}/{visit.device}/session",
                                       json.dumps(dict(visit.to_json(), msg_id=visit.id)), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    publisher.disconnect()
    publisher.loop_stop()
    results.put(count)


def stored_counts(line):
    """{'session': n, 'stats': n, 'view': n, 'availability': n} from a collector's last line."""
    found = re.search(r"(\d+) visits, (\d+) stats, (\d+) views, (\d+) availability", line)
    return dict(zip(("session", "stats", "view", "availability"), map(int, found.groups()))) if found else {}


def main():
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiosks", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--in-view", type=int, default=30, help="seconds someone is in view (a view each second)")
    parser.add_argument("--away", type=int, default=30, help="seconds nobody is in view after a visit")
    parser.add_argument("--collectors", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=2, help="processes publishing for the kiosks")
    parser.add_argument("--backlog", type=int, default=0, help="visits published while the database is stopped")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fer-edge-fleet-bench-"))
    postgres, broker = Postgres().start(), Broker(folder).start()
    collectors = [start_collector(broker.port, postgres.url, f"collector-{i}") for i in range(args.collectors)]
    pids = {"collectors": [c.pid for c in collectors], "mosquitto": [broker.process.pid]}
    results = multiprocessing.Queue()
    start_at = time.time() + 3
    shares = [list(range(args.kiosks))[i::args.publishers] for i in range(args.publishers)]
    workers = [multiprocessing.Process(target=kiosks, args=(broker.port, share, args.seconds, args.in_view, args.away,
                                                            start_at, results, i)) for i, share in enumerate(shares) if share]
    for worker in workers:
        worker.start()
    print(f"{args.kiosks} kiosks ({args.in_view} s in view, {args.away} s away, a stats message a minute) for "
          f"{args.seconds} s; {args.collectors} collectors; {os.cpu_count()} CPUs", flush=True)
    time.sleep(max(0.0, start_at - time.time()))
    pids["postgres"] = postgres_pids(postgres)
    before = {name: cpu_seconds(p) for name, p in pids.items()}
    per_collector_before = [cpu_seconds([pid]) for pid in pids["collectors"]]
    started = time.monotonic()
    sent = {}
    for _ in workers:
        for kind, n in results.get(timeout=args.seconds + 300).items():
            sent[kind] = sent.get(kind, 0) + n
    visits = lambda: postgres.query("SELECT COUNT(*) FROM sessions")[0][0]  # noqa: E731
    Recorder.wait_for(lambda: visits() >= sent["session"], 120)
    time.sleep(2)   # the last views and stats
    elapsed = time.monotonic() - started
    pids["postgres"] = postgres_pids(postgres)
    used = {name: cpu_seconds(p) - before[name] for name, p in pids.items()}
    per_collector = [cpu_seconds([pid]) - b for pid, b in zip(pids["collectors"], per_collector_before)]
    rows, distinct = postgres.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM sessions")[0]
    latencies = [r[0] for r in postgres.query('SELECT stored - "end" FROM sessions ORDER BY 1')]
    messages = sum(sent.values())
    print(f"sent {sent['session']} visits, {sent['view']} views, {sent['stats']} stats, {sent['availability']} "
          f"availability ({messages / args.seconds:.0f} messages/s); stored {distinct} visits "
          f"({rows - distinct} twice, {sent['session'] - distinct} missing) in {elapsed:.0f} s")
    at = lambda q: 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * q))]  # noqa: E731
    print(f"a visit from publish to row: p50 {at(0.5):.0f} ms, p99 {at(0.99):.0f} ms")

    drained = None
    if args.backlog:
        postgres.stop()
        job = multiprocessing.Process(target=backlog, args=(broker.port, args.backlog, results))
        job.start()
        results.get(timeout=600)
        job.join()
        cpu_drain = [cpu_seconds([pid]) for pid in pids["collectors"]]
        postgres.start()
        Recorder.wait_for(lambda: visits() >= distinct + args.backlog, 600)
        first, last, count = postgres.query("SELECT MIN(stored), MAX(stored), COUNT(*) FROM sessions "
                                            "WHERE id LIKE 'kiosk-%-backlog-%'")[0]
        drain_cpu = [cpu_seconds([pid]) - b for pid, b in zip(pids["collectors"], cpu_drain)]
        # The collectors come back at different moments (each retries with its own backoff): the
        # busiest second says how fast they write.
        peak = max(n for _, n in postgres.query("SELECT floor(stored), COUNT(*) FROM sessions "
                                                "WHERE id LIKE 'kiosk-%-backlog-%' GROUP BY 1"))
        drained = (count, last - first, drain_cpu, peak)

    said = []
    for process in collectors:
        process.send_signal(signal.SIGTERM)
        said.append(process.communicate(timeout=120)[1].strip().splitlines()[-1])
    for worker in workers:
        worker.join(30)
    broker.stop()
    postgres.close()

    kiosk_seconds = args.kiosks * elapsed
    for number, (line, cpu) in enumerate(zip(said, per_collector)):
        print(f"  collector-{number}: {line}")
        if drained:
            print(f"    {cpu:.1f} CPU s while the kiosks sent")
        else:
            total = sum(stored_counts(line).values())
            print(f"    {total / elapsed:.0f} messages/s stored, {cpu:.1f} CPU s "
                  f"({1000 * cpu / max(total, 1):.2f} CPU ms a message)")
    for name in ("collectors", "mosquitto", "postgres"):
        share = used[name] / kiosk_seconds
        print(f"{name}: {used[name]:.1f} CPU s in {elapsed:.0f} s; one core carries about "
              f"{1 / share if share else float('inf'):,.0f} such kiosks")
    if drained:
        count, span, cpu, peak = drained
        print(f"backlog: {count} visits stored in {span:.1f} s once the database was back ({count / span:.0f} rows/s; "
              f"{peak} in the busiest second) by {args.collectors} collectors ({', '.join(f'{c:.1f}' for c in cpu)} CPU s)")


if __name__ == "__main__":
    main()
