"""MQTT publishing (paho-mqtt 2.x) with Frigate/Home Assistant-style topics.

    <prefix>/<device>/availability  online/offline, retained, last will
    <prefix>/<device>/emotion       smoothed per-track updates, rate-limited, QoS 0
    <prefix>/<device>/view          who is in view: the count and the main (largest) face, QoS 0
    <prefix>/<device>/session       one per finished visitor session, QoS 1, via the outbox
    <prefix>/<device>/stats         fps, latencies, faces, sessions, uptime, every 60 s
    <prefix>/<device>/presence      this process's token, retained: a second device on the same id is said
    <prefix>/<device>/model         the model it runs and what became of a deployment, retained, via the outbox
    <prefix>/<device>/release       (in) a signed deployment order, heard only when `listen` asks for it
    homeassistant/<component>/fer-edge-<device>/<what>/config   discovery (ha_discovery), retained,
                                                  re-sent on homeassistant/status = online

The camera loop never waits for the network: it writes to the outbox (or drops a QoS-0
emotion update while offline, counted); a background thread sends, paho reconnects with
backoff (1 s doubling to 60 s). A broker that cannot be reached is said in one line naming
it and the reason (broker.diagnose), then every `REMIND_SECONDS` while it lasts, and every
change of state is said once; the state and the backlog show in `health()`.
"""

import json
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from .broker import KEEPALIVE_SECONDS, Broker, topic_id
from .ha_discovery import discovery_id, discovery_messages, installed_version
from .outbox import Outbox, OutboxSender, Transport
from ..core.events import EventSink
from ..core.labels import LABELS
from ..core.log import say
from ..core.records import RunStats, TrackUpdate, View, Visit
from ..core.settings_sections import MqttSection
from .store import Spill, is_disk_full, is_locked

if TYPE_CHECKING:  # for the hints only: paho loads when the sink starts
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

WINDOW = 20            # messages in flight to the broker at once
ANSWER_SECONDS = 8.0   # a broker that has not answered the connection by then is said, with the reason


class MQTTSink(EventSink, Transport):
    """Owns the paho client; the camera loop calls the EventSink methods; an OutboxSender
    sends the outbox through it (it is that sender's Transport)."""

    REMIND_SECONDS = 60.0

    HOLD_MAX = 10_000        # messages held in memory while the outbox is locked
    HOLD_SAY_SECONDS = 5.0   # a lock held longer than this is said (short ones are this process's own)

    def __init__(self, settings: MqttSection, device_id: str, db_path: str, on_event: Callable[[str], None] = say,
                 model_name: str = "fer-edge", spill: Optional[Spill] = None, configuration_url: Optional[str] = None,
                 labels: Sequence[str] = LABELS):
        """`settings`: the [mqtt] section; `configuration_url`: the device page, for Home Assistant;
        `labels`: the model's, which the emotion sensor takes."""
        self.s, self.device_id, self.on_event, self.model_name = settings, device_id, on_event, model_name
        self.labels = tuple(labels)
        self.configuration_url = configuration_url
        self.server = Broker.from_section(settings)
        self.broker = self.server.address
        self.state: str = "connecting"
        self.reason: Optional[str] = None
        self.closing = False                 # our own disconnect at the end of a run is no failure
        self.state_lock = threading.Lock()
        self.last_said = 0.0
        self.base = f"{settings.prefix}/{topic_id(device_id)}"
        # Who holds this device id on the broker: a retained token per process. Another
        # process's token there means two devices share an id and would take turns.
        self.token = uuid.uuid4().hex[:12]
        self.duplicate_said = False
        self.sw_version = installed_version()
        try:
            self.outbox: Optional[Outbox] = Outbox(db_path)   # the camera thread's connection
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self.outbox = None
            on_event(f"MQTT outbox unavailable ({exc}): messages go to the broker from memory until a restart")
        self.spill = spill
        self.waiting: Deque[Tuple[str, str, dict, bool]] = deque()   # (kind, topic, payload, retain) the outbox could not take yet
        self.waiting_since: Optional[float] = None
        self.waiting_said = False
        self.memory_only = 0            # messages given to paho alone (no outbox, no spill)
        self.connected = threading.Event()
        self.dropped_offline = 0
        self.last_view: Optional[dict] = None
        self.db_path = db_path
        self.listeners: Dict[str, Callable[[bytes], None]] = {}   # topic -> what hears its payloads
        self.on_connected: List[Callable[[], None]] = []
        self.states: Optional[Outbox] = None    # the MODEL STATE writer's own connection (another thread's)
        self.states_lock = threading.Lock()
        client = self.server.client(f"fer-edge-{discovery_id(device_id)}-{self.token}", clean_session=True)
        client.will_set(f"{self.base}/availability", "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 60)
        client.max_inflight_messages_set(WINDOW)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish, client.on_message = self._on_publish, self._on_message
        self.client = client
        self.sender = (OutboxSender(db_path, self, WINDOW, name="mqtt-outbox", say=on_event)
                       if self.outbox else None)
        client.connect_async(self.server.host, self.server.port, keepalive=KEEPALIVE_SECONDS)
        client.loop_start()
        self.answer_timer = threading.Timer(ANSWER_SECONDS, self._no_answer_yet)
        self.answer_timer.daemon = True
        self.answer_timer.start()

    def _diagnose(self) -> str:
        return self.server.diagnose()

    def _no_answer_yet(self) -> None:
        """Still no answer ANSWER_SECONDS after start: say why, whatever paho is waiting for.
        A broker that answered with a refusal has said why already."""
        if not self.connected.is_set() and self.state in ("connecting", "unreachable"):
            self._set_state("not answering", self._diagnose())

    def _set_state(self, state: str, reason: Optional[str] = None) -> None:
        """Say a change of state once, and a lasting failure again every REMIND_SECONDS."""
        now = time.monotonic()
        with self.state_lock:
            changed = (state, reason) != (self.state, self.reason)
            remind = state not in ("connected", "connecting") and now - self.last_said >= self.REMIND_SECONDS
            self.state, self.reason = state, reason
            if not (changed or remind):
                return
            self.last_said = now
        if state == "connected":
            self.on_event(f"MQTT connected to {self.broker}")
        else:
            self.on_event(f"MQTT broker {self.broker} {state}: {reason}; messages wait in the outbox, "
                          "retrying with backoff")

    # paho callbacks (its network thread)
    def _on_connect(self, client: "Client", userdata: Any, flags: "ConnectFlags", reason_code: "ReasonCode",
                    properties: Optional["Properties"]) -> None:
        if reason_code.is_failure:
            self._set_state("refused the connection", str(reason_code))
            return
        client.publish(f"{self.base}/availability", "online", qos=1, retain=True)
        client.subscribe(f"{self.base}/presence", qos=1)
        client.publish(f"{self.base}/presence", json.dumps({"token": self.token, "pid": os.getpid()}), qos=1, retain=True)
        if self.s.discovery:
            client.subscribe(f"{self.s.discovery_prefix}/status", qos=1)
            self._send_discovery()
        if self.last_view is not None:
            client.publish(f"{self.base}/view", json.dumps(self.last_view), qos=0)
        for topic in list(self.listeners):
            client.subscribe(topic, qos=1)
        self._set_state("connected")
        self.connected.set()
        for callback in self.on_connected:
            callback()
        self._nudge()

    def _on_connect_fail(self, client: "Client", userdata: Any) -> None:
        self._set_state("unreachable", self._diagnose())

    def _on_disconnect(self, client: "Client", userdata: Any, flags: "DisconnectFlags", reason_code: "ReasonCode",
                       properties: Optional["Properties"]) -> None:
        if self.connected.is_set() and not self.closing:
            self._set_state("disconnected", str(reason_code))
        self.connected.clear()
        self._nudge()

    def _on_publish(self, client: "Client", userdata: Any, mid: int, reason_code: "ReasonCode", properties: "Properties") -> None:
        if self.sender:
            self.sender.acknowledge(mid)

    def _on_message(self, client: "Client", userdata: Any, message: "MQTTMessage") -> None:
        listener = self.listeners.get(message.topic)
        if listener is not None:
            listener(bytes(message.payload))
        elif message.topic == f"{self.s.discovery_prefix}/status" and message.payload == b"online":
            self._send_discovery()
        elif message.topic == f"{self.base}/presence":
            try:
                token = json.loads(message.payload).get("token")
            except (ValueError, AttributeError):
                return
            if token and token != self.token and not self.duplicate_said:
                self.duplicate_said = True
                self.on_event(f"another fer-edge uses the device id {self.device_id!r} on {self.broker}: "
                              "give each device its own [device] id (--device-id); their messages mix meanwhile")

    def _send_discovery(self) -> None:
        for topic, payload in discovery_messages(self.s, self.device_id, self.configuration_url, self.model_name,
                                                 self.sw_version, labels=self.labels):
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)

    def listen(self, kind: str, callback: Callable[[bytes], None],
               when_connected: Optional[Callable[[], None]] = None) -> None:
        """Hear `<prefix>/<device>/<kind>` (retained ones too) on every connection: `callback`
        gets each payload in paho's thread, so it must only queue; `when_connected` is called
        there on each connection (re-sending what the fleet should know)."""
        topic = f"{self.base}/{kind}"
        self.listeners[topic] = callback
        if when_connected is not None:
            self.on_connected.append(when_connected)
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)
            if when_connected is not None:
                when_connected()

    def model_state(self, payload: dict) -> None:
        """MODEL STATE, retained, through the outbox (it outlasts an outage and a restart), from
        the deploy agent's thread; a locked or full file sends it from memory instead."""
        topic = f"{self.base}/model"
        with self.states_lock:
            try:
                if self.states is None:
                    self.states = Outbox(self.db_path, timeout=5.0, check_same_thread=False)
                self.states.put("model", topic, payload, qos=1, retain=True, created=time.time())
            except sqlite3.OperationalError:
                self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
        self._nudge()

    def model_changed(self, name: str, labels: Sequence[str]) -> None:
        """Home Assistant hears the new model's name and its labels (the emotion sensor's options)."""
        self.model_name, self.labels = name, tuple(labels)
        if self.s.discovery and self.connected.is_set():
            self._send_discovery()

    # the outbox's Transport (called from the sender's thread)
    def ready(self) -> bool:
        return self.connected.is_set()

    def send(self, topic: str, payload: str, qos: int, retain: bool) -> Tuple[bool, Optional[int]]:
        import paho.mqtt.client as mqtt

        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False, None  # not queued by paho: try this row again later
        return True, (info.mid if qos else None)  # sent, or queued by paho for the next connection

    def _nudge(self) -> None:
        if self.sender:
            self.sender.nudge()

    # the camera loop's side: never blocks on the network
    def _store(self, kind: str, payload: dict) -> None:
        """Into the outbox. Sessions are retained: Home Assistant shows the last visit again
        after a restart. While another program holds the file's lock the message waits in
        memory (bounded) and goes in with the next one; on a full disk it goes to paho's
        memory and, for a visit, to the store's spill as well, so a stop cannot lose it."""
        payload.setdefault("msg_id", uuid.uuid4().hex)
        if len(self.waiting) >= self.HOLD_MAX:
            self.waiting.popleft()
            self.dropped_offline += 1
        self.waiting.append((kind, f"{self.base}/{kind}", payload, kind == "session"))
        self._flush_waiting()

    def _flush_waiting(self) -> None:
        while self.waiting:
            kind, topic, payload, retain = self.waiting[0]
            try:
                if self.outbox is None:
                    raise sqlite3.OperationalError("database or disk is full")
                self.outbox.put(kind, topic, payload, qos=1, retain=retain, created=time.time())
            except sqlite3.OperationalError as exc:
                if is_locked(exc):
                    self._still_waiting()
                    return
                if not is_disk_full(exc):
                    raise
                self._from_memory(kind, topic, payload, retain)
            self.waiting.popleft()
        if self.waiting_since is not None and self.waiting_said:
            self.on_event(f"MQTT outbox writable again after {time.monotonic() - self.waiting_since:.0f} s")
        self.waiting_since, self.waiting_said = None, False
        self._nudge()

    def _still_waiting(self) -> None:
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        elif not self.waiting_said and now - self.waiting_since >= self.HOLD_SAY_SECONDS:
            self.waiting_said = True
            self.on_event(f"MQTT outbox locked by another program; {len(self.waiting)} messages wait in memory "
                          f"(up to {self.HOLD_MAX}) until it lets go")

    def _from_memory(self, kind: str, topic: str, payload: dict, retain: bool) -> None:
        """A full disk: hand the message to paho (kept in memory until sent); keep a visit in the spill."""
        if kind == "session" and self.spill is not None:
            kept = self.spill.add("outbox", {"msg_id": payload["msg_id"], "kind": kind, "topic": topic,
                                             "payload": json.dumps(payload), "qos": 1, "retain": int(retain),
                                             "created": time.time()})
        else:
            kept = False
        if not kept and kind == "session":
            self.memory_only += 1
        self.client.publish(topic, json.dumps(payload), qos=1, retain=retain)

    def session(self, visit: Visit) -> None:
        self._store("session", dict(visit.to_json(), msg_id=visit.id, event_type="visit"))

    def update(self, update: TrackUpdate) -> None:
        if self.s.durable_emotions:
            self._store("emotion", update.to_json())
        elif self.connected.is_set():
            self.client.publish(f"{self.base}/emotion", json.dumps(update.to_json()), qos=0)
        else:
            self.dropped_offline += 1

    def view(self, view: View) -> None:
        if self.waiting:
            self._flush_waiting()
        self.last_view = view.to_json()  # said again on (re)connection: the count is right from the start
        if self.connected.is_set():
            self.client.publish(f"{self.base}/view", json.dumps(self.last_view), qos=0)

    def stats(self, stats: RunStats) -> None:
        if self.waiting:
            self._flush_waiting()
        if self.connected.is_set():
            self.client.publish(f"{self.base}/stats", json.dumps(stats.to_json()), qos=0)

    def health(self) -> dict:
        with self.state_lock:
            state = self.state
        health = {"mqtt": state, "outbox_pending": 0, "outbox_waiting": len(self.waiting)}
        if self.sender is not None:
            health["sender"] = "ok" if self.sender.alive() and not self.sender.problem else (
                self.sender.problem or "stopped")
            health["outbox_set_aside"] = self.sender.set_aside_count
        counters = {}
        if self.outbox is not None:
            try:
                health["outbox_pending"], counters = self.outbox.count(), self.outbox.counters()
            except sqlite3.OperationalError:
                health["outbox_pending"] = None
        health["dropped"] = dict(counters, emotion_offline=self.dropped_offline)
        return health

    def alive(self) -> bool:
        """The sender thread and paho's network thread both still run."""
        network = getattr(self.client, "_thread", None)
        return (self.sender is None or self.sender.alive()) and (network is None or network.is_alive())

    def close(self, summary: Optional[dict] = None, drain_seconds: float = 2.0) -> None:
        """Give the outbox a moment to drain, say offline, and stop; say what could not be kept."""
        if self.waiting and self.outbox is not None:
            self.outbox.db.execute("PRAGMA busy_timeout = 10000")  # a last, patient try
            self._flush_waiting()
        deadline = time.monotonic() + drain_seconds
        while self.connected.is_set() and self.outbox and self.outbox.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.connected.is_set():
            self.client.publish(f"{self.base}/availability", "offline", qos=1, retain=True).wait_for_publish(1.0)
        self.answer_timer.cancel()
        if self.sender:
            self.sender.stop()
        lost_waiting = sum(1 for kind, *_ in self.waiting if kind == "session")
        if lost_waiting or self.memory_only:
            self.on_event(f"MQTT: {lost_waiting + self.memory_only} visits could be kept neither in the outbox "
                          "nor in the spill and may not have reached the broker")
        if self.spill is not None and self.spill.used:
            self.on_event(f"MQTT: visits kept in {self.spill.path} while the disk was full are sent at the next start")
        self.closing = True
        self.client.disconnect()
        self.client.loop_stop()
        if self.outbox:
            self.outbox.close()
        with self.states_lock:
            if self.states is not None:
                self.states.close()
                self.states = None
