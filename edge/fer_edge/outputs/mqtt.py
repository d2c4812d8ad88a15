"""MQTT publishing (paho-mqtt 2.x) with Frigate/Home Assistant-style topics.

    <prefix>/<device>/availability  online/offline, retained, last will
    <prefix>/<device>/emotion       smoothed per-track updates, rate-limited, QoS 0
    <prefix>/<device>/view          who is in view: the count and the main (largest) face, QoS 0
    <prefix>/<device>/session       one per finished visitor session, QoS 1, via the outbox
    <prefix>/<device>/stats         fps, latencies, faces, sessions, uptime, every 60 s
    <prefix>/<device>/presence      this process's token, retained: a second device on the same id is said
    homeassistant/<component>/fer-edge-<device>/<what>/config   discovery, retained, re-sent on
                                                  homeassistant/status = online

The camera loop never waits for the network: it writes to the outbox (or drops a QoS-0
emotion update while offline, counted); a background thread sends, paho reconnects with
backoff (1 s doubling to 60 s). A broker that cannot be reached is said in one line naming
it and the reason, then every `REMIND_SECONDS` while it lasts, and every change of state
is said once; the state and the backlog show in `health()`.
"""

import json
import os
import re
import sqlite3
import threading
import time
import unicodedata
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .outbox import Outbox, OutboxSender, Transport
from ..core.errors import UserError
from ..core.events import EventSink
from ..core.labels import LABELS
from ..core.log import say
from ..core.records import RunStats, TrackUpdate, View, Visit
from ..core.network import split_host_port
from ..core.settings_sections import MqttSection
from .store import Spill, is_disk_full, is_locked


KEEPALIVE_SECONDS = 30
WINDOW = 20            # messages in flight to the broker at once


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to reach it: [mqtt] with the port parsed and the password read."""

    host: str
    port: int
    username: Optional[str] = None
    password: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None

    @classmethod
    def from_section(cls, mqtt: MqttSection) -> "Broker":
        if not mqtt.host:
            raise UserError("no MQTT broker: --mqtt HOST[:PORT] or [mqtt] host")
        host, port = parse_host(mqtt.host)
        return cls(host, port, mqtt.username, read_password(mqtt.password_file), mqtt.tls_ca, mqtt.tls_cert, mqtt.tls_key)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, client_id: str, **options: Any) -> Any:
        """A paho client for this broker, its credentials and TLS set."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **options)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls_ca or self.tls_cert:
            client.tls_set(ca_certs=self.tls_ca, certfile=self.tls_cert, keyfile=self.tls_key)
        return client

    def diagnose(self) -> str:
        return diagnose(self.host, self.port, self.tls_ca, self.tls_cert, self.tls_key)


ANSWER_SECONDS = 8.0   # a broker that has not answered the connection by then is said, with the reason


def diagnose(host: str, port: int, tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
             tls_key: Optional[str] = None, timeout: float = 3.0) -> str:
    """Why a connection to the broker fails, in words: the TCP and TLS steps tried here
    directly, since paho reports only that it failed."""
    import socket
    import ssl

    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return "connection refused (nothing listens on that port)"
    except socket.timeout:
        return "no answer (timed out: a firewall, or the wrong address?)"
    except OSError as exc:
        return f"cannot connect ({exc.strerror or exc})"
    with sock:
        if tls_ca or tls_cert:
            context = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                context.load_cert_chain(tls_cert, tls_key)
            try:
                context.wrap_socket(sock, server_hostname=host).close()
            except ssl.SSLCertVerificationError as exc:
                message = exc.verify_message or str(exc)
                if "hostname" in message.lower() or "ip address mismatch" in message.lower():
                    return f"TLS: the broker's certificate is not for {host} ({message})"
                return f"TLS: the broker's certificate is not trusted by {tls_ca} ({message})"
            except ssl.SSLError as exc:
                if "WRONG_VERSION_NUMBER" in str(exc) or "record layer" in str(exc).lower():
                    return "TLS: the port does not speak TLS (a plain MQTT port?)"
                return f"TLS: the handshake fails ({exc.reason or exc})"
            except (socket.timeout, OSError):
                return "TLS: the port does not speak TLS (no answer to the handshake: a plain MQTT port?)"
            return "the TCP and TLS steps work, but the broker gives no MQTT answer"
        if _speaks_tls(host, port, timeout):
            return "the port speaks TLS: give the broker's CA certificate (--mqtt-tls-ca)"
        return "the port accepts connections but gives no MQTT answer (not an MQTT broker?)"


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    import socket
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            context.wrap_socket(sock).close()
        return True
    except (OSError, ssl.SSLError):
        return False


def parse_host(value: str) -> Tuple[str, int]:
    """'host', 'host:port' or '[v6]:port' -> (host, port)."""
    return split_host_port(value, 1883)


def read_password(password_file: Optional[str] = None, environ: Optional[Mapping[str, str]] = None, credential: str = "mqtt-password",
                  variable: str = "FER_EDGE_MQTT_PASSWORD", what: str = "MQTT password") -> Optional[str]:
    """A password (the MQTT broker's by default): from a file, $FER_EDGE_MQTT_PASSWORD, or
    systemd's $CREDENTIALS_DIRECTORY/mqtt-password (LoadCredential=). Never from the command line."""
    environ = os.environ if environ is None else environ
    candidates = [password_file] if password_file else []
    if environ.get("CREDENTIALS_DIRECTORY"):
        candidates.append(os.path.join(environ["CREDENTIALS_DIRECTORY"], credential))
    for path in candidates:
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            try:
                password = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}: the {what} file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if password:  # an empty credential is systemd's fallback: no password
                return password
            if path == password_file:   # a file the user named holds nothing: not "not found"
                raise UserError(f"{password_file}: the {what} file is empty")
    if password_file:
        raise OSError(f"{password_file}: {what} file not found")
    return environ.get(variable)


def installed_version() -> Optional[str]:
    """fer-edge's version, for Home Assistant's device page (None when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer-edge")
    except PackageNotFoundError:
        return None


def topic_id(device_id: str) -> str:
    """The device id as one MQTT topic level: no '/', '+' or '#' (they would split or match levels)."""
    return re.sub(r"[/+#\x00]", "_", device_id) or "_"


def discovery_id(device_id: str) -> str:
    """The device id as Home Assistant's discovery node id allows it: [a-zA-Z0-9_-]+."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", device_id) or "_"


def entity_slug(device_id: str) -> str:
    """The device id as an entity id part, as Home Assistant would write it: [a-z0-9_],
    accents dropped ('café' -> 'cafe'), no repeated or edge underscores."""
    ascii_id = unicodedata.normalize("NFKD", device_id).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "_", ascii_id).strip("_") or "device"


def discovery_messages(s: MqttSection, device_id: str, configuration_url: Optional[str] = None,
                       model_name: str = "fer-edge", sw_version: Optional[str] = None,
                       expire_after: int = 30, labels: Sequence[str] = LABELS) -> List[Tuple[str, dict]]:
    """Home Assistant MQTT discovery configs (topic, payload) for this device. The emotion
    sensor is an enum of the model's `labels`; it becomes unavailable `expire_after` seconds
    after the last face left."""
    base = f"{s.prefix}/{topic_id(device_id)}"
    node, slug = discovery_id(device_id), entity_slug(device_id)
    device = {"identifiers": [f"fer-edge-{device_id}"], "name": f"fer-edge {device_id}",
              "manufacturer": "fer-edge", "model": model_name}
    if sw_version:
        device["sw_version"] = sw_version
    if configuration_url:
        device["configuration_url"] = configuration_url
    origin = {"name": "fer-edge", "support_url": "https://github.com/fer-edge/fer-edge"}
    if sw_version:
        origin["sw_version"] = sw_version
    availability = {"availability_topic": f"{base}/availability", "payload_available": "online",
                    "payload_not_available": "offline"}
    diagnostic = {"entity_category": "diagnostic", "state_topic": f"{base}/stats"}
    entities: Dict[Tuple[str, str], dict] = {
        ("sensor", "emotion"): dict(name="Emotion", state_topic=f"{base}/view", device_class="enum",
                                    options=list(labels), value_template="{{ value_json.label }}",
                                    icon="mdi:emoticon-outline",
                                    json_attributes_topic=f"{base}/view",
                                    json_attributes_template="{{ dict(value_json.probs, confidence="
                                                             "value_json.confidence) | tojson }}",
                                    expire_after=expire_after),
        ("sensor", "people"): dict(name="People in view", state_topic=f"{base}/view",
                                   value_template="{{ value_json.people }}", state_class="measurement",
                                   icon="mdi:account-eye", json_attributes_topic=f"{base}/view",
                                   json_attributes_template="{{ {'visits_in_progress': value_json.visits | count}"
                                                            " | tojson }}"),
        ("sensor", "satisfaction"): dict(name="Last visitor satisfaction", state_topic=f"{base}/session",
                                         value_template="{{ value_json.satisfaction }}", unit_of_measurement="%",
                                         state_class="measurement", icon="mdi:emoticon-happy-outline",
                                         json_attributes_topic=f"{base}/session",
                                         json_attributes_template=(
                                             "{{ {'exit_emotion': value_json.exit_emotion, 'dominant': "
                                             "value_json.dominant, 'duration': value_json.duration, "
                                             "'ended_by': value_json.ended_by, 'exit_probs': value_json.exit_probs}"
                                             " | tojson }}")),
        ("sensor", "sessions_today"): dict(name="Visitors today", state_topic=f"{base}/stats",
                                           value_template="{{ value_json.sessions_today }}",
                                           state_class="total_increasing", icon="mdi:account-multiple"),
        ("sensor", "fps"): dict(diagnostic, name="Frames per second", value_template="{{ value_json.fps }}",
                                unit_of_measurement="fps", state_class="measurement", icon="mdi:speedometer"),
        ("sensor", "outbox"): dict(diagnostic, name="Outbox backlog", value_template="{{ value_json.outbox_pending }}",
                                   unit_of_measurement="messages", state_class="measurement", icon="mdi:tray-full"),
        ("event", "visit"): dict(name="Visit", state_topic=f"{base}/session", event_types=["visit"],
                                 icon="mdi:account-arrow-right"),
    }
    prefix = s.discovery_prefix
    messages = []
    for (component, key), entity in entities.items():
        payload = dict(entity, unique_id=f"fer-edge-{device_id}-{key}", default_entity_id=f"{component}.fer_edge_{slug}_{key}",
                       device=device, origin=origin, **availability)
        messages.append((f"{prefix}/{component}/fer-edge-{node}/{key}/config", payload))
    payload = dict(name="Online", state_topic=f"{base}/availability", payload_on="online", payload_off="offline",
                   device_class="connectivity", unique_id=f"fer-edge-{device_id}-online",
                   default_entity_id=f"binary_sensor.fer_edge_{slug}_online", device=device, origin=origin)
    messages.append((f"{prefix}/binary_sensor/fer-edge-{node}/online/config", payload))
    return messages


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
        self.state, self.reason = "connecting", None
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
        self.waiting: deque = deque()   # (kind, topic, payload, retain) the outbox could not take yet
        self.waiting_since: Optional[float] = None
        self.waiting_said = False
        self.memory_only = 0            # messages given to paho alone (no outbox, no spill)
        self.connected = threading.Event()
        self.dropped_offline = 0
        self.last_view: Optional[dict] = None
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

    def _no_answer_yet(self):
        """Still no answer ANSWER_SECONDS after start: say why, whatever paho is waiting for.
        A broker that answered with a refusal has said why already."""
        if not self.connected.is_set() and self.state in ("connecting", "unreachable"):
            self._set_state("not answering", self._diagnose())

    def _set_state(self, state, reason=None):
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
    def _on_connect(self, client, userdata, flags, reason_code, properties):
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
        self._set_state("connected")
        self.connected.set()
        self._nudge()

    def _on_connect_fail(self, client, userdata):
        self._set_state("unreachable", self._diagnose())

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set() and not self.closing:
            self._set_state("disconnected", str(reason_code))
        self.connected.clear()
        self._nudge()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if self.sender:
            self.sender.acknowledge(mid)

    def _on_message(self, client, userdata, message):
        if message.topic == f"{self.s.discovery_prefix}/status" and message.payload == b"online":
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

    def _send_discovery(self):
        for topic, payload in discovery_messages(self.s, self.device_id, self.configuration_url, self.model_name,
                                                 self.sw_version, labels=self.labels):
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)

    # the outbox's Transport (called from the sender's thread)
    def ready(self) -> bool:
        return self.connected.is_set()

    def send(self, topic: str, payload: str, qos: int, retain: bool) -> Tuple[bool, Optional[int]]:
        import paho.mqtt.client as mqtt

        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False, None  # not queued by paho: try this row again later
        return True, (info.mid if qos else None)  # sent, or queued by paho for the next connection

    def _nudge(self):
        if self.sender:
            self.sender.nudge()

    # the camera loop's side: never blocks on the network
    def _store(self, kind, payload):
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

    def _flush_waiting(self):
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

    def _still_waiting(self):
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        elif not self.waiting_said and now - self.waiting_since >= self.HOLD_SAY_SECONDS:
            self.waiting_said = True
            self.on_event(f"MQTT outbox locked by another program; {len(self.waiting)} messages wait in memory "
                          f"(up to {self.HOLD_MAX}) until it lets go")

    def _from_memory(self, kind, topic, payload, retain):
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
