"""The deployer's connection to the broker: what the fleet says (each device's retained MODEL
STATE and availability, the rollouts' records, the orders on the release topics), and what it
is sent (retained, QoS 1, each acknowledged; a refusal by the broker's ACL is one line).
What a device says of itself is read as untrusted: a message that is not a JSON object of
bounded size is ignored."""

import json
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..core.errors import UserError
from ..core.log import unprintable
from ..outputs.broker import KEEPALIVE_SECONDS, Broker

Say = Callable[[str], None]

SETTLE_SECONDS = 0.5           # quiet this long after subscribing: every retained message has come
READ_SECONDS = 5.0             # reading the retained messages takes at most this
CONNECT_SECONDS = 10.0
SEND_SECONDS = 60.0            # a message waits this long for the broker (restarting) to take it
MAX_PAYLOAD = 65_536           # a model state or a record
STEPS = ("received", "trial", "kept", "rolled back", "refused", "unjudged")   # a device's steps in a rollout


def read_json(payload: bytes) -> Optional[Dict[str, Any]]:
    """A device's message as a dict, or None: what a device says of itself is read, never trusted to be well formed."""
    if not payload or len(payload) > MAX_PAYLOAD:
        return None
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def usable_record(record: Dict[str, Any], rollout: str) -> bool:
    """A rollout record of the shape the deployer writes, on its own topic: a broker without
    the ACL lets anyone write the rollouts' topics."""
    def is_time(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e10

    def is_names(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(name, str) for name in value)

    devices = record.get("devices")
    return (record.get("rollout") == rollout and isinstance(record.get("model"), dict) and isinstance(record.get("state"), str)
            and is_time(record.get("started")) and is_time(record.get("updated")) and is_names(record.get("canaries"))
            and is_names(record.get("targets")) and isinstance(record.get("history"), list)
            and isinstance(devices, dict) and all(isinstance(step, dict) for step in devices.values()))


def text(value: Any, longest: int = 500) -> Optional[str]:
    """A text a device sent as one printable line of at most `longest` characters (what a
    record carries, and the collector stores); None where it is not a text."""
    if not isinstance(value, str):
        return None
    flat = " ".join("".join(" " if unprintable(c) else c for c in value).split())
    return flat if len(flat) <= longest else flat[:longest - 3] + "..."


def usable_id(device: str) -> bool:
    """A device id a record may name (the collector refuses others)."""
    return 0 < len(device) <= 128 and not any(unprintable(c) for c in device)


@dataclass
class Device:
    """What a device last said on its model topic."""

    id: str                                   # its topic's level (topic_id of its device id)
    state: Dict[str, Any] = field(default_factory=dict)
    online: Optional[bool] = None
    live: bool = True                         # said now, not a retained state read again (on a reconnection)

    @property
    def group(self) -> Optional[str]:
        return text(self.state.get("group"))

    @property
    def model(self) -> Dict[str, Any]:
        model = self.state.get("model")
        return model if isinstance(model, dict) else {}

    def step(self, rollout: str) -> Optional[str]:
        """Its state, if it speaks of this rollout, else None. An order whose signature fails
        names no rollout the device may trust: a refusal that names none, said live after this
        rollout's order went to the device, is taken as this one's (read again from the broker,
        it may be older than the order)."""
        state = self.state.get("state")
        if state not in STEPS:
            return None
        if self.state.get("rollout") == rollout or (state == "refused" and self.state.get("rollout") is None and self.live):
            return state
        return None

    def runs_now(self) -> str:
        """`name vN` of the model it says it runs, as one printable line."""
        version = self.model.get("version")
        return f"{text(self.model.get('name')) or '?'} v{version if isinstance(version, int) else '?'}"

    def runs(self, sha256: str) -> bool:
        return self.model.get("sha256") == sha256


class Link:
    """The deployer's connection: what the broker holds (retained), what arrives, what is sent."""

    def __init__(self, broker: Broker, prefix: str, say: Say):
        import paho.mqtt.client as mqtt

        self.broker, self.prefix, self.say = broker, prefix, say
        self.devices: Dict[str, Device] = {}
        self.records: Dict[str, Dict[str, Any]] = {}
        self.orders: Dict[str, bytes] = {}
        self.heard: "queue.Queue[Device]" = queue.Queue()   # every model state, in the order it came
        self.lock = threading.Lock()
        self.last_message = time.monotonic()
        self.connected = threading.Event()
        self.refused: Optional[str] = None
        self.answers: Dict[int, str] = {}
        self.topics: List[str] = []     # subscribed to; again on each reconnection (a restarted broker forgets them)
        client = broker.client(f"fer-edge-deploy-{socket.gethostname()}-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        client.on_connect, client.on_message, client.on_publish = self._on_connect, self._on_message, self._on_publish
        client.reconnect_delay_set(1, 5)    # a restarted broker is found again within seconds
        self.client = client

    def open(self) -> "Link":
        """Connect and read what the broker holds of the fleet; a broker that cannot be reached
        or refuses the login is one line."""
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=KEEPALIVE_SECONDS)
        except OSError:
            raise UserError(f"broker {self.broker.address} unreachable: {self.broker.diagnose()}") from None
        self.client.loop_start()
        if not self.connected.wait(CONNECT_SECONDS) or self.refused:
            self.close()
            raise UserError(f"broker {self.broker.address} refused the deployer: {self.refused or 'no answer'}")
        p = self.prefix
        return self.read([f"{p}/+/model", f"{p}/+/availability", f"{p}-rollouts/+"])

    def read(self, topics: Sequence[str]) -> "Link":
        """Subscribe to `topics` and wait for their retained messages (the broker sends them
        right after granting; quiet for SETTLE_SECONDS means all have come)."""
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.topics += [topic for topic in topics if topic not in self.topics]
        self.client.subscribe([(topic, 1) for topic in topics])
        started = time.monotonic()
        subscribed.wait(READ_SECONDS)
        granted = time.monotonic()
        while time.monotonic() - max(self.last_message, granted) < SETTLE_SECONDS and time.monotonic() - started < READ_SECONDS:
            time.sleep(0.05)
        while not self.heard.empty():     # what was held is read; `wait` gives what comes from now on
            self.heard.get_nowait()
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
        elif self.topics:
            client.subscribe([(topic, 1) for topic in self.topics])
        self.connected.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self.answers[mid] = "" if not reason_code.is_failure else str(reason_code)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.last_message = time.monotonic()
        levels = message.topic.split("/")
        with self.lock:
            if message.topic.startswith(f"{self.prefix}-rollouts/"):
                record = read_json(message.payload)
                if record is not None and usable_record(record, levels[-1]):
                    self.records[levels[-1]] = record
                else:
                    self.records.pop(levels[-1], None)
            elif levels[-1] == "release":
                self.orders[levels[-2]] = bytes(message.payload)
            elif levels[-1] == "availability":
                self.devices.setdefault(levels[-2], Device(levels[-2])).online = message.payload == b"online"
            elif levels[-1] == "model":
                state = read_json(message.payload)
                if state is None:
                    return
                device = self.devices.setdefault(levels[-2], Device(levels[-2]))
                device.state = state
                self.heard.put(Device(device.id, state, device.online, live=not message.retain))

    def known(self) -> Dict[str, Device]:
        """The devices that said which model they run (those with deployments on)."""
        with self.lock:
            return {d.id: Device(d.id, dict(d.state), d.online) for d in self.devices.values()
                    if d.state and usable_id(d.id)}

    def send(self, topic: str, payload: bytes) -> None:
        """Retained, QoS 1, acknowledged by the broker; refused (its ACL) is one line. While the
        broker is away paho keeps the message and sends it on reconnecting: it is waited for."""
        info = self.client.publish(topic, payload, qos=1, retain=True)
        if not self.client.is_connected():
            self.say(f"broker {self.broker.address} away: waiting up to {SEND_SECONDS:.0f} s for it to send {topic}")
        deadline = time.monotonic() + SEND_SECONDS
        while info.mid not in self.answers and time.monotonic() < deadline:
            time.sleep(0.01)
        if info.mid not in self.answers:
            raise UserError(f"broker {self.broker.address}: could not send to {topic} within {SEND_SECONDS:.0f} s "
                            f"({self.broker.diagnose()})")
        if self.answers.get(info.mid):
            raise UserError(f"broker {self.broker.address} refused {topic} ({self.answers[info.mid]}): "
                            "may the deployer's login write it (docs/fleet.md)?")

    def release_topic(self, device: str) -> str:
        return f"{self.prefix}/{device}/release"

    def wait(self, seconds: float) -> Optional[Device]:
        """The next model state a device said, or None after `seconds`."""
        try:
            return self.heard.get(timeout=max(0.0, seconds))
        except queue.Empty:
            return None
