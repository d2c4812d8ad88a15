"""`fer-edge collect`: every device's visits and state, from the broker into the fleet's database.

The broker does the scaling: collectors of one group share every device message (an MQTT 5
shared subscription, `$share/GROUP/...`), so several can run side by side and each message is
written once. Each keeps a persistent session (a fixed client id, `clean_start` off), and a
message is acknowledged only after its row is committed: a collector killed at any moment, or a
database that goes away, leaves the message with the broker, which delivers it again; when it
does not come back, another collector of the group takes over its session (handover). A visit
is stored once however often it arrives (its `msg_id` is the row's key); at most
RECEIVE_MAXIMUM messages are in flight to a collector, the broker holds the rest."""

import itertools
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from ..core.errors import UserError, one_line
from .fleet_db import (INSERT_VISIT, VISIT_COLUMNS, DatabaseError, FleetDatabase, describe, is_connection_error,
                       is_data_error, is_driver_error, open_database, reason)
from .message_check import Rejected, bounded, shown  # noqa: F401 - Rejected: where the tests and benchmarks find it
from .message_rows import Message, Row, history_topics, rejection, row_for, rows_of, write_order  # noqa: F401 - row_for too
from ..outputs.broker import KEEPALIVE_SECONDS, Broker
from .handover import GONE, UP, Handover, Link, Roster, queue_limit, roster_topic, session_properties, set_will
from ..core.settings_sections import CollectorSection, MqttSection

if TYPE_CHECKING:  # for the hints only
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

Say = Callable[[str], None]

SHARED_KINDS = ("session", "stats", "view", "availability")  # split among the group's collectors
SESSION_EXPIRY_SECONDS = 7 * 86400           # how long the broker keeps a lone stopped collector's messages
SNAPSHOT_SECONDS = 5.0                       # how long after connecting the retained availability is taken
SNAPSHOT_ID = 1                              # the subscription identifier of that snapshot
QUEUE_PROBE = 1001                           # messages a stopped collector's session should hold, at least
RECEIVE_MAXIMUM = 1000                       # messages in flight to this collector, not yet acknowledged
BATCH = 500                                  # rows per transaction at most
PROGRESS_SECONDS = 60.0
HELD_BYTES = 32 * 1024 * 1024                # QoS 0 messages (stats, views) beyond this wait nowhere: dropped


@dataclass
class CollectorSettings:
    """The [mqtt] and [collector] sections as given, and what was made of them: the database
    to use and its password."""

    mqtt: MqttSection                  # the broker, credentials, TLS and the topic prefix
    db: str                            # a SQLite path or postgresql://... ([collector] db, or the default)
    db_password: Optional[str] = None
    collector: CollectorSection = field(default_factory=CollectorSection)   # group, client id, keep_days

    @property
    def group(self) -> str:
        return self.collector.group

    @property
    def client_id(self) -> str:
        return self.collector.client_id or f"fer-edge-collector-{socket.gethostname()}"

    @property
    def keep_days(self) -> float:
        """0: keep every visit."""
        return self.collector.keep_days


class Collector:
    """Subscribes, and writes what arrives in batches from one writer thread."""

    def __init__(self, settings: CollectorSettings, say: Say, stop: Optional[threading.Event] = None):
        import paho.mqtt.client as mqtt

        self.s, self.say = settings, say
        if any(character in settings.client_id + settings.group for character in "/+#"):
            raise UserError(f"--client-id {settings.client_id!r} and --group {settings.group!r} may not hold /, + or #: "
                            "both name MQTT topics")
        self.database: Optional[FleetDatabase] = open_database(settings.db, settings.db_password, create=True)
        self.server = Broker.from_section(settings.mqtt)
        self.broker = self.server.address
        self.inbox: "queue.Queue[Message]" = queue.Queue()
        self.stop_event = stop or threading.Event()   # set by a signal: store what arrived, then stop
        self.counts: Counter = Counter()
        self.database_down_since: Optional[float] = None
        self.next_prune = 0.0
        self.failure: Optional[str] = None   # why the writer stopped, if it did: the collector stops with it
        self.held, self.held_lock = 0, threading.Lock()   # bytes of messages in the inbox
        client = self.server.client(settings.client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect, client.on_disconnect, client.on_message = self._on_connect, self._on_disconnect, self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        self.roster_topic = roster_topic(settings.mqtt.prefix, settings.group, settings.client_id)
        set_will(client, self.roster_topic)
        self.link = Link(client)
        self.roster = Roster(settings.client_id, self._take_over)
        self.handovers: List[Handover] = []
        self.snapshot_until: Optional[float] = None
        self.first_connection = True
        self.subscribed: Tuple[Optional[int], str] = (None, "")   # the shared subscription's mid; the line said once granted
        self.in_hand = 0                     # messages taken from the inbox, not yet stored
        self.unreachable_said = 0.0
        self.client = client
        self.writer = threading.Thread(target=self._write_loop, name="collector-writer", daemon=True)

    def run(self) -> None:
        """Collect until the stop event is set; says where it stores, and what it stored every minute."""
        properties = session_properties(SESSION_EXPIRY_SECONDS, RECEIVE_MAXIMUM)
        self.say(f"collecting {self.s.mqtt.prefix}/+/{{{','.join(SHARED_KINDS + ('model',))}}} and "
                 f"{self.s.mqtt.prefix}-rollouts/+ from {self.broker} "
                 f"(group {self.s.group}, client id {self.s.client_id}) into {describe(self.s.db)}")
        self.writer.start()
        self.client.connect_async(self.server.host, self.server.port, keepalive=KEEPALIVE_SECONDS,
                                  clean_start=False, properties=properties)
        self.client.loop_start()
        last = time.monotonic()
        while not self.stop_event.wait(1.0):
            if self.snapshot_until is not None and time.monotonic() >= self.snapshot_until:
                self.snapshot_until = None
                self.client.unsubscribe(f"{self.s.mqtt.prefix}/+/availability")
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                self.say(self.progress())
        self.writer.join(30)   # what arrived is stored and acknowledged before the goodbye
        for handover in self.handovers:
            handover.join(5)
        # Gone: a live collector of the group takes over this session (one that stays alone keeps it).
        try:
            self.client.publish(self.roster_topic, GONE, qos=1, retain=True).wait_for_publish(5)
        except (RuntimeError, ValueError):
            pass   # the broker is away: its will says it instead
        self.client.disconnect()
        self.client.loop_stop()
        if self.database is not None:
            self.database.close()
        if self.failure is not None:   # never half alive: a non-zero exit, and systemd starts it again
            raise UserError(f"collector stopped: {self.failure}; what was not stored stays with the broker "
                            f"({self.progress()})")
        self.say(f"stopped: {self.progress()}")

    def progress(self) -> str:
        c = self.counts
        dropped = f"; {c['dropped']} stats or views dropped while the database was away" if c["dropped"] else ""
        return (f"{c['session']} visits, {c['stats']} stats, {c['view']} views, {c['availability']} availability "
                f"messages stored; {c['model']} model states, {c['rollout']} rollout records stored; "
                f"{c['rejected']} rejected; {self.inbox.qsize() + self.in_hand} waiting{dropped}")

    def _on_connect(self, client: "Client", userdata: Any, flags: "ConnectFlags", reason_code: "ReasonCode",
                    properties: Optional["Properties"]) -> None:
        if reason_code.is_failure:
            self.say(f"broker {self.broker} refused the collector: {reason_code}")
            return
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.link.connection += 1
        prefix = self.s.mqtt.prefix
        _, shared_mid = client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self._shared_topics()])
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in history_topics(prefix)])   # retained: every collector
        client.subscribe(roster_topic(prefix, self.s.group), options=SubscribeOptions(qos=0))
        # Retained availability never reaches a shared subscription: read once, on a subscription of its own.
        snapshot = Properties(PacketTypes.SUBSCRIBE)
        snapshot.SubscriptionIdentifier = SNAPSHOT_ID
        client.subscribe(f"{prefix}/+/availability", options=SubscribeOptions(qos=0), properties=snapshot)
        self.snapshot_until = time.monotonic() + SNAPSHOT_SECONDS
        client.publish(self.roster_topic, UP, qos=1, retain=True)
        kept = " (the broker kept this collector's session)" if flags.session_present else ""
        self.subscribed = (shared_mid, f"connected to {self.broker}{kept}")   # said once granted: nothing is missed after
        if self.first_connection:
            self.first_connection = False
            self._check_broker(properties)
            threading.Thread(target=self._check_queue, name="queue-check", daemon=True).start()

    def _shared_topics(self) -> List[str]:
        return [f"$share/{self.s.group}/{self.s.mqtt.prefix}/+/{kind}" for kind in SHARED_KINDS]

    def _check_broker(self, properties: Optional["Properties"]) -> None:
        """What the broker says of itself that breaks a promise, in one line each."""
        shared = getattr(properties, "SharedSubscriptionAvailable", 1)
        if shared == 0:
            self.say(f"broker {self.broker} offers no shared subscriptions: run one collector only")
        expiry = getattr(properties, "SessionExpiryInterval", SESSION_EXPIRY_SECONDS)
        if expiry < SESSION_EXPIRY_SECONDS:
            self.say(f"broker {self.broker} keeps a stopped collector's session {expiry} s only (asked for "
                     f"{SESSION_EXPIRY_SECONDS} s): a lone collector stopped longer loses what arrives meanwhile")

    def _check_queue(self) -> None:
        """One line when the broker keeps too little for a stopped collector (mosquitto's default)."""
        topic = roster_topic(self.s.mqtt.prefix, self.s.group, self.s.client_id) + "/queue-check"
        try:
            kept = queue_limit(self.server, f"{self.s.client_id}-queue-check", topic, QUEUE_PROBE)
        except (OSError, RuntimeError, ValueError) as exc:
            self.say(f"could not check how much broker {self.broker} keeps for a stopped collector: {exc}")
            return
        if kept == 0:
            self.say(f"could not check how much broker {self.broker} keeps for a stopped collector: "
                     f"may this login write {topic}?")
        elif kept < QUEUE_PROBE:
            self.say(f"broker {self.broker} keeps at most {kept} messages for a stopped collector and drops the "
                     "rest: raise mosquitto's max_queued_messages (or EMQX's mqtt.max_mqueue_len) to 100000")

    def _on_subscribe(self, client: "Client", userdata: Any, mid: int, reason_codes: List["ReasonCode"],
                      properties: Optional["Properties"]) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            self.say(f"broker {self.broker} refused a subscription ({refused[0]}): check its ACL for "
                     f"{self.s.mqtt.prefix}/+/... and {roster_topic(self.s.mqtt.prefix, self.s.group)}")
        elif mid == self.subscribed[0]:
            self.say(self.subscribed[1])

    def _take_over(self, client_id: str) -> None:
        """A collector of the group is gone: store what the broker kept for it (handover)."""
        self.say(f"collector {client_id} is gone: taking over its session")
        handover = Handover(self.server, self.s.mqtt.prefix, self.s.group, client_id,
                            self._shared_topics() + history_topics(self.s.mqtt.prefix)
                            + [f"{self.s.mqtt.prefix}/+/availability", roster_topic(self.s.mqtt.prefix, self.s.group)],
                            self._deliver, self.say,
                            self.roster.done, self.stop_event, RECEIVE_MAXIMUM, SESSION_EXPIRY_SECONDS)
        self.handovers = [h for h in self.handovers if h.is_alive()] + [handover]
        handover.start()

    def _on_connect_fail(self, client: "Client", userdata: Any) -> None:
        """Said once a minute while it lasts, with the reason (paho retries by itself)."""
        if time.monotonic() - self.unreachable_said >= PROGRESS_SECONDS:
            self.unreachable_said = time.monotonic()
            self.say(f"broker {self.broker} unreachable: {self.server.diagnose()}; "
                     "trying again")

    def _on_disconnect(self, client: "Client", userdata: Any, flags: "DisconnectFlags", reason_code: "ReasonCode",
                       properties: Optional["Properties"]) -> None:
        if not self.stop_event.is_set():
            self.say(f"broker {self.broker} lost ({reason_code}); reconnecting, nothing unstored is acknowledged")

    def _on_message(self, client: "Client", userdata: Any, message: "MQTTMessage") -> None:
        self._deliver(message, self.link)

    def _deliver(self, message: "MQTTMessage", link: Link) -> None:
        """A roster message to the roster; a device's message to the inbox (once)."""
        if message.topic.startswith(roster_topic(self.s.mqtt.prefix, self.s.group, "")):
            self.roster.heard(message.topic, message.payload)
            return
        snapshot = SNAPSHOT_ID in (getattr(message.properties, "SubscriptionIdentifier", None) or [])
        if snapshot and not message.retain:
            return   # said live: the shared subscription brings it too
        self.receive(message, link)

    def receive(self, message: "MQTTMessage", link: Link) -> None:
        """Into the inbox, cut to what the checks need (a bigger message is rejected, never held whole).
        QoS 1 messages in flight are bounded by RECEIVE_MAXIMUM; QoS 0 ones (stats, views, each
        superseded by the next) are dropped while HELD_BYTES wait."""
        payload = bounded(message.payload)
        with self.held_lock:
            if message.qos == 0 and self.held >= HELD_BYTES:
                self.counts["dropped"] += 1
                return
            self.held += len(payload)
        link.received(message.qos)
        self.inbox.put(Message(message.topic, payload, message.mid, message.qos, time.time(), link.connection, link))

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
        with self.held_lock:
            self.held -= sum(len(message.payload) for message in batch)
        return batch

    def _write_loop(self) -> None:
        try:
            while not (self.stop_event.is_set() and self.inbox.empty()):
                batch = self._next_batch()
                self.in_hand = len(batch)
                if batch and self._store(batch):
                    for message in batch:
                        (message.link or self.link).ack(message.mid, message.qos, message.connection)
                    self.in_hand = 0
                elif batch:
                    break   # stopping while the database is away: what was received stays with the broker
                self._prune()
        except BaseException as exc:  # noqa: BLE001 - said in one line; the whole collector stops with it
            self.failure = f"{describe(self.s.db)}: {reason(exc)}" if is_driver_error(exc) else one_line(exc)
            self.stop_event.set()

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
            except Exception as exc:  # noqa: BLE001 - the database away: keep the messages, try again
                if not is_connection_error(exc):
                    raise
                self._lost_database(exc)
            if self.stop_event.wait(delay):
                return False
            delay = min(delay * 2, 10.0)

    def _write(self, batch: List[Message]) -> None:
        if self.database is None:
            self.database = open_database(self.s.db, self.s.db_password, create=True)
        rows = self._without_conflicts([row for message in batch for row in rows_of(message, self.s.mqtt.prefix)])
        try:
            self._execute(rows)
            self.database.commit()
        except Exception as exc:  # noqa: BLE001 - one row's values refused: the others still go in
            if not is_data_error(exc):
                raise
            self.database.rollback()
            rows = self._one_by_one(rows)
        self.counts.update(row.kind for row in rows)

    def _execute(self, rows: List[Row]) -> None:
        """The batch in the one order every collector keeps (message_rows.write_order), so two
        batches never wait on each other in a circle: one executemany for each run of the same
        statement, pipelined on PostgreSQL (no round trip a row)."""
        database = self.database
        assert database is not None
        order = sorted(rows, key=write_order)
        with database.pipelined():
            for statement, run in itertools.groupby(order, key=lambda row: row.statement):
                database.executemany(statement, [row.args for row in run])

    def _one_by_one(self, rows: List[Row]) -> List[Row]:
        """Each row in its own transaction; one the database refuses goes to `rejected` instead."""
        assert self.database is not None
        written = []
        for row in rows:
            try:
                self._execute([row])
                self.database.commit()
            except Exception as exc:  # noqa: BLE001 - that row's fault: kept with the reason
                if not is_data_error(exc):
                    raise
                self.database.rollback()
                row = rejection(row.message, f"the database refused it: {reason(exc)}")
                self._execute([row])
                self.database.commit()
            written.append(row)
        return written

    def _without_conflicts(self, rows: List[Row]) -> List[Row]:
        """A visit whose id is stored already (or comes earlier in the batch) with other content
        goes to `rejected`; the same visit again is a quiet duplicate (its insert does nothing)."""
        assert self.database is not None
        width = len(VISIT_COLUMNS) - 1          # every column but `stored`
        visits = [row for row in rows if row.statement == INSERT_VISIT]
        if not visits:
            return rows
        ids = sorted({row.args[0] for row in visits})
        columns = ", ".join(f'"{name}"' for name in VISIT_COLUMNS[:width])
        known = {stored[0]: tuple(stored) for stored in self.database.rows(
            f"SELECT {columns} FROM sessions WHERE id IN ({', '.join('?' * len(ids))})", ids)}
        checked = []
        for row in rows:
            if row.statement == INSERT_VISIT:
                content = row.args[:width]
                first = known.setdefault(content[0], content)
                if first != content:
                    row = rejection(row.message, f"conflicting duplicate: visit {shown(content[0])} is stored "
                                                 "already with other content")
            checked.append(row)
        return checked

    def _lost_database(self, exc: BaseException) -> None:
        if self.database is not None:
            self.database.rollback()
            self.database.close()
            self.database = None
        if self.database_down_since is None:
            self.database_down_since = time.monotonic()
            why = str(exc) if isinstance(exc, DatabaseError) else f"{describe(self.s.db)}: {reason(exc)}"
            self.say(f"database unavailable: {why}; messages stay with the broker until it is back")

    def _prune(self) -> None:
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
