"""Collectors of one group on a real mosquitto 2 (its default configuration) and a real
PostgreSQL: one stops or dies and never returns, and the other stores its share; availability
is written once; the broker, not the collector, holds what waits for the database."""

import json
import re
import signal
import time

import pytest

from fer_edge.fleet.handover import IDLE_SECONDS
from mqtt_helpers import Broker, Recorder, made_up_visit, simulated_devices, start_collector
from pg_helpers import Postgres

pytest.importorskip("paho.mqtt")
pytestmark = [pytest.mark.needs_broker, pytest.mark.slow]


def default_broker(folder):
    """mosquitto as installed: no persistence, max_queued_messages 1000, nothing changed."""
    broker = Broker(folder)
    broker.config.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n")
    return broker.start()


def stop(process):
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=60)[1]


def visits_stored(postgres):
    return postgres.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM sessions")[0]


def send(sinks, numbers, seconds, at=None, action=None):
    """Each device sends a visit per number, spread over `seconds`; `action` runs once `at` s in."""
    sent, started = [], time.monotonic()
    for step, number in enumerate(numbers):
        if action and time.monotonic() - started >= at:
            action()
            action = None
        for sink in sinks:
            visit = made_up_visit(sink.device_id, number)
            sink.session(visit)
            sent.append(visit.id)
        time.sleep(max(0.0, started + (step + 1) * seconds / len(numbers) - time.monotonic()))
    return sent


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_collector_that_never_returns_leaves_its_share_to_the_other(tmp_path, how):
    postgres, broker = Postgres().start(), default_broker(tmp_path)
    first, second = (start_collector(broker.port, postgres.url, name) for name in ("collector-a", "collector-b"))
    sinks, connected = simulated_devices(broker.port, tmp_path, range(20), 30)
    assert connected
    stopped = {}

    def stop_first():
        first.send_signal(getattr(signal, how))
        stopped["at"] = time.monotonic()

    try:
        sent = send(sinks, range(50), 5.0, at=2.0, action=stop_first)     # 1,000 visits in 5 s
        all_stored = Recorder.wait_for(lambda: visits_stored(postgres)[0] >= len(sent), 30)
        took = time.monotonic() - stopped["at"]
        count, distinct = visits_stored(postgres)
        ids = {row[0] for row in postgres.query("SELECT id FROM sessions")}
        time.sleep(IDLE_SECONDS + 2)     # the handover ends the session it took once that is empty
    finally:
        for sink in sinks:
            sink.close(drain_seconds=0)
        first_said = first.communicate(timeout=60)[1]
        second_said = stop(second)
        broker.stop()
        postgres.close()
    print(f"{how}: {len(sent)} visits, {distinct} stored {took:.1f} s after the stop; the other said: "
          f"{second_said.strip().splitlines()[-2:]}")
    assert all_stored and ids == set(sent) and count == distinct == 1000, (len(sent), count, distinct)
    assert took <= 30
    taken = re.search(r"took over collector collector-a: stored the (\d+) messages", second_said)
    assert taken, second_said
    assert "keeps at most 1000 messages for a stopped collector" in second_said, "mosquitto's default queue limit is said"
    if how == "SIGTERM":
        assert "stopped:" in first_said and "Traceback" not in first_said
    assert "Traceback" not in second_said


def test_availability_is_written_once_by_a_group_and_a_restart_rewrites_nothing(tmp_path):
    postgres, broker = Postgres().start(), default_broker(tmp_path)
    collectors = [start_collector(broker.port, postgres.url, name) for name in ("collector-a", "collector-b")]
    try:
        sinks, connected = simulated_devices(broker.port, tmp_path, range(3), 30)
        assert connected
        online = lambda: postgres.query("SELECT COUNT(*) FROM devices WHERE online = 1")[0][0]  # noqa: E731
        assert Recorder.wait_for(lambda: online() == 3, 10)
        sinks[0].close(drain_seconds=0)                 # says offline
        assert Recorder.wait_for(lambda: online() == 2, 10)
        before = postgres.query("SELECT device, online, availability_at, last_seen FROM devices ORDER BY device")
        said = [stop(c) for c in collectors]
        # Restarted, a collector reads every device's retained state again: nothing changes.
        collectors = [start_collector(broker.port, postgres.url, "collector-a")]
        time.sleep(3)
        after = postgres.query("SELECT device, online, availability_at, last_seen FROM devices ORDER BY device")
        # A group that starts on an empty database learns each device's state from what the broker retained.
        said.append(stop(collectors.pop()))
        postgres.query("DELETE FROM devices RETURNING device")
        collectors = [start_collector(broker.port, postgres.url, "collector-b")]
        states = lambda: postgres.query("SELECT device, online FROM devices ORDER BY device")  # noqa: E731
        learned = Recorder.wait_for(lambda: len(states()) == 3, 10)
        known = states()
        for sink in sinks[1:]:
            sink.close(drain_seconds=0)
    finally:
        said_last = [stop(c) for c in collectors]
        broker.stop()
        postgres.close()
    written = [int(re.search(r"(\d+) availability messages stored", text).group(1)) for text in said]
    print(f"availability messages stored by each collector: {written}")
    assert sum(written[:2]) == 4, said    # three onlines and one offline, each by one collector
    assert after == before
    assert learned and known == [("dev-000", 0), ("dev-001", 1), ("dev-002", 1)], known
    assert "Traceback" not in "".join(said + said_last)


def test_while_the_database_is_away_the_broker_holds_the_messages(tmp_path):
    """Flow control: no more than the receive maximum waits in the collector; the rest waits in
    the broker (persistent session) and is stored once the database is back."""
    import paho.mqtt.client as mqtt

    from fer_edge.fleet.collector import RECEIVE_MAXIMUM

    postgres, broker = Postgres().start(), Broker(tmp_path).start()    # max_queued_messages 100000
    collector = start_collector(broker.port, postgres.url, "collector")
    postgres.stop()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="publisher")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        infos = []
        for number in range(5000):
            visit = made_up_visit(f"kiosk-{number % 50}", number)
            payload = json.dumps(dict(visit.to_json(), msg_id=visit.id))
            infos.append(publisher.publish(f"fer-edge/{visit.device}/session", payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
        time.sleep(3)
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{collector.pid}/status").read()).group(1)) // 1024
        said = stop(collector)
        waiting = int(re.search(r"(\d+) waiting", said).group(1))
        postgres.start()
        collector = start_collector(broker.port, postgres.url, "collector")
        assert Recorder.wait_for(lambda: visits_stored(postgres)[1] >= 5000, 60), visits_stored(postgres)
    finally:
        publisher.loop_stop()
        stop(collector)
        broker.stop()
        postgres.close()
    print(f"database away: {waiting} messages waited in the collector ({rss} MB), the rest in the broker")
    assert waiting <= RECEIVE_MAXIMUM and rss < 200
    assert "keeps at most" not in said, "max_queued_messages 100000 is enough"





def test_a_collector_back_after_it_was_taken_over_stores_its_share_again_and_nothing_twice(tmp_path):
    postgres, broker = Postgres().start(), default_broker(tmp_path)
    first, second = (start_collector(broker.port, postgres.url, name) for name in ("collector-a", "collector-b"))
    sinks, connected = simulated_devices(broker.port, tmp_path, range(20), 30)
    assert connected

    def kill():
        first.send_signal(signal.SIGKILL)
        first.wait(30)

    try:
        sent = send(sinks, range(25), 2.5, at=1.0, action=kill)
        time.sleep(5.5 + IDLE_SECONDS)                    # the will says gone: collector-b takes over
        first = start_collector(broker.port, postgres.url, "collector-a")   # collector-a comes back
        sent += send(sinks, range(25, 50), 2.5)
        stored = Recorder.wait_for(lambda: visits_stored(postgres)[0] >= len(sent), 30)
        count, distinct = visits_stored(postgres)
        ids = {row[0] for row in postgres.query("SELECT id FROM sessions")}
    finally:
        for sink in sinks:
            sink.close(drain_seconds=0)
        said_a, said_b = stop(first), stop(second)
        broker.stop()
        postgres.close()
    print(f"{len(sent)} visits, {count} rows, {distinct} distinct; collector-a: {said_a.strip().splitlines()[-1:]}")
    assert stored and ids == set(sent) and count == distinct == 1000
    assert "took over collector collector-a" in said_b
    assert int(re.search(r"stopped: (\d+) visits", said_a).group(1)) > 0, "back, it takes its share again"
    assert "Traceback" not in said_a + said_b
