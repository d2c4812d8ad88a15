"""`fer-edge collect`: every device's visits and state, from the broker into the fleet's database.

The broker does the scaling: collectors of one group share the visits, stats and views
(an MQTT 5 shared subscription, `$share/GROUP/...`), so several can run side by side. Each
keeps a persistent session (a fixed client id, `clean_start` off), and a message is
acknowledged only after its row is committed: a collector killed at any moment, or a
database that goes away, leaves the message with the broker, which delivers it again. A
visit is stored once however often it arrives (its `msg_id` is the row's key).
"""

import json
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from ..outputs.fleet_db import (INSERT_REJECTED, INSERT_VISIT, UPSERT, VISIT_COLUMNS, DatabaseError, FleetDatabase, describe,
                       is_driver_error, open_database, reason)
from ..outputs.mqtt import KEEPALIVE_SECONDS, Broker
from ..core.settings_sections import MqttSection
from ..core.records import Visit

Say = Callable[[str], None]

SHARED_KINDS = ("session", "stats", "view")  # split among the group's collectors
SESSION_EXPIRY_SECONDS = 7 * 86400           # how long the broker keeps a stopped collector's messages
RECEIVE_MAXIMUM = 1000                       # messages in flight to this collector, not yet acknowledged
BATCH = 500                                  # rows per transaction at most
PROGRESS_SECONDS = 60.0


@dataclass
class CollectorSettings:
    mqtt: MqttSection                  # the [mqtt] section: broker, credentials, TLS and the topic prefix
    db: str                            # a SQLite path or postgresql://...
    db_password: Optional[str] = None
    group: str = "fer-edge-collectors"
    client_id: str = field(default_factory=lambda: f"fer-edge-collector-{socket.gethostname()}")
    keep_days: float = 0.0             # 0: keep every visit


@dataclass
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float
    connection: int                    # which broker connection delivered it (its mid is only valid there)


class Rejected(ValueError):
    """A message that cannot be read; it is kept in `rejected`, not retried."""


def row_for(message: Message) -> Tuple[str, tuple]:
    """(statement, arguments) that store one message."""
    levels = message.topic.split("/")
    kind, device = levels[-1], levels[-2]
    if kind == "availability":
        text = message.payload.decode("utf-8", "replace").strip()
        if text not in ("online", "offline"):
            raise Rejected(f"availability {text[:40]!r} is neither online nor offline")
        online = text == "online"
        return UPSERT["availability"], (device, int(online), message.received, message.received if online else None)
    try:
        payload = json.loads(message.payload)
    except (UnicodeDecodeError, ValueError):
        raise Rejected("not JSON") from None
    if not isinstance(payload, dict):
        raise Rejected("not a JSON object")
    if kind == "session":
        try:
            row = Visit.from_json(payload).row()
        except KeyError as exc:
            raise Rejected(f"a visit without {exc.args[0]!r}") from None
        row["stored"] = time.time()
        return INSERT_VISIT, tuple(row[c] for c in VISIT_COLUMNS)
    at = payload.get("ts")
    if not isinstance(at, (int, float)):
        raise Rejected(f"a {kind} message without a time (ts)")
    return UPSERT[kind], (device, json.dumps(payload), at, message.received)


class Collector:
    """Subscribes, and writes what arrives in batches from one writer thread."""

    def __init__(self, settings: CollectorSettings, say: Say, stop: Optional[threading.Event] = None):
        import paho.mqtt.client as mqtt

        self.s, self.say = settings, say
        self.database: Optional[FleetDatabase] = open_database(settings.db, settings.db_password, create=True)
        self.server = Broker.from_section(settings.mqtt)
        self.broker = self.server.address
        self.inbox: "queue.Queue[Message]" = queue.Queue()
        self.stop_event = stop or threading.Event()   # set by a signal: store what arrived, then stop
        self.connection = 0
        self.counts: Counter = Counter()
        self.database_down_since: Optional[float] = None
        self.next_prune = 0.0
        client = self.server.client(settings.client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect, client.on_disconnect, client.on_message = self._on_connect, self._on_disconnect, self._on_message
        client.on_connect_fail = self._on_connect_fail
        self.unreachable_said = 0.0
        self.client = client
        self.writer = threading.Thread(target=self._write_loop, name="collector-writer", daemon=True)

    def run(self) -> None:
        """Collect until the stop event is set; says where it stores, and what it stored every minute."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self.say(f"collecting {self.s.mqtt.prefix}/+/{{{','.join(SHARED_KINDS)},availability}} from {self.broker} "
                 f"(group {self.s.group}, client id {self.s.client_id}) into {describe(self.s.db)}")
        self.writer.start()
        self.client.connect_async(self.server.host, self.server.port, keepalive=KEEPALIVE_SECONDS,
                                  clean_start=False, properties=properties)
        self.client.loop_start()
        last = time.monotonic()
        while not self.stop_event.wait(1.0):
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                self.say(self.progress())
        self.writer.join(30)   # what arrived is stored and acknowledged before the goodbye
        self.client.disconnect()
        self.client.loop_stop()
        if self.database is not None:
            self.database.close()
        self.say(f"stopped: {self.progress()}")

    def progress(self) -> str:
        c = self.counts
        return (f"{c['session']} visits, {c['stats']} stats, {c['view']} views, {c['availability']} availability "
                f"messages stored; {c['rejected']} rejected; {self.inbox.qsize()} waiting")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.say(f"broker {self.broker} refused the collector: {reason_code}")
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.connection += 1
        prefix, once = self.s.mqtt.prefix, SubscribeOptions(qos=1)
        topics = [(f"$share/{self.s.group}/{prefix}/+/{kind}", once) for kind in SHARED_KINDS]
        # Retained availability never reaches a shared subscription: every collector takes it.
        topics.append((f"{prefix}/+/availability", once))
        client.subscribe(topics)
        kept = " (the broker kept this collector's session)" if flags.session_present else ""
        self.say(f"connected to {self.broker}{kept}")

    def _on_connect_fail(self, client, userdata):
        """Said once a minute while it lasts, with the reason (paho retries by itself)."""
        if time.monotonic() - self.unreachable_said >= PROGRESS_SECONDS:
            self.unreachable_said = time.monotonic()
            self.say(f"broker {self.broker} unreachable: {self.server.diagnose()}; "
                     "trying again")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self.stop_event.is_set():
            self.say(f"broker {self.broker} lost ({reason_code}); reconnecting, nothing unstored is acknowledged")

    def _on_message(self, client, userdata, message):
        self.inbox.put(Message(message.topic, message.payload, message.mid, message.qos, time.time(), self.connection))

    def _next_batch(self) -> List[Message]:
        try:
            batch = [self.inbox.get(timeout=0.5)]
        except queue.Empty:
            return []
        while len(batch) < BATCH:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_loop(self):
        while not (self.stop_event.is_set() and self.inbox.empty()):
            batch = self._next_batch()
            if batch and self._store(batch):
                for message in batch:
                    # A mid names a message only on the connection that delivered it; after a
                    # reconnect the broker delivers the message again, and that copy is acknowledged.
                    if message.qos and message.connection == self.connection:
                        self.client.ack(message.mid, message.qos)
            self._prune()

    def _store(self, batch: List[Message]) -> bool:
        """Commit the batch, retrying while the database is away (unless stopping); True once committed."""
        delay = 0.5
        while True:
            try:
                self._write(batch)
                if self.database_down_since is not None:
                    self.say(f"database {describe(self.s.db)} back after {time.monotonic() - self.database_down_since:.0f} s")
                    self.database_down_since = None
                return True
            except Exception as exc:  # noqa: BLE001 - any driver error: keep the messages, try again
                if not (is_driver_error(exc) or isinstance(exc, DatabaseError)):
                    raise
                self._lost_database(exc)
            if self.stop_event.wait(delay):
                return False
            delay = min(delay * 2, 10.0)

    def _write(self, batch: List[Message]):
        if self.database is None:
            self.database = open_database(self.s.db, self.s.db_password, create=True)
        kinds: Counter = Counter()
        for message in batch:
            try:
                statement, args = row_for(message)
                kinds[message.topic.rsplit("/", 1)[-1]] += 1
            except Rejected as exc:
                statement = INSERT_REJECTED
                args = (message.topic, message.payload.decode("utf-8", "replace")[:10000], str(exc), message.received)
                kinds["rejected"] += 1
            self.database.execute(statement, args)
        self.database.commit()
        self.counts.update(kinds)

    def _lost_database(self, exc: BaseException):
        if self.database is not None:
            self.database.rollback()
            self.database.close()
            self.database = None
        if self.database_down_since is None:
            self.database_down_since = time.monotonic()
            why = str(exc) if isinstance(exc, DatabaseError) else f"{describe(self.s.db)}: {reason(exc)}"
            self.say(f"database unavailable: {why}; messages stay with the broker until it is back")

    def _prune(self):
        """Visits older than keep_days go, once an hour."""
        if not self.s.keep_days or time.monotonic() < self.next_prune or self.database is None:
            return
        self.next_prune = time.monotonic() + 3600
        try:
            self.database.execute("DELETE FROM sessions WHERE start < ?", (time.time() - self.s.keep_days * 86400,))
            self.database.commit()
        except Exception as exc:  # noqa: BLE001 - retention waits for the next hour
            if not is_driver_error(exc):
                raise
            self.database.rollback()
