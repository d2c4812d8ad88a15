"""Failover for a group of collectors: when one stops, a live one takes over what the broker kept for it.

mosquitto 2 deals a shared subscription's messages round robin to every member's session,
connected or not. A stopped collector's persistent session goes on receiving its share, and
when that session ends (it expires, or closes) the messages in it, queued or in flight, are
dropped, not passed to another member. So each collector says it is `up` (retained, on
PREFIX-collectors/GROUP/CLIENT_ID) with a will that says `gone`. When one is gone, the live
collector with the lowest client id connects under the gone one's client id, takes its
session, leaves the shared subscriptions (no new share goes there), stores and acknowledges
what the session held, clears the `gone` and ends the session. A collector that never returns
leaves nothing waiting for it; one that returns meanwhile takes its session back, and what
was not yet acknowledged goes to it again.
"""

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Union

if TYPE_CHECKING:  # for the hints only: paho loads when a handover starts
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

UP, GONE = "up", "gone"
WILL_DELAY_SECONDS = 5        # a collector back within this (a restart) is not taken over
IDLE_SECONDS = 3.0            # nothing more from a taken-over session for this long: it is empty


@dataclass
class Link:
    """A broker connection that delivers messages; a message's mid is valid only while it lasts."""

    client: Any
    connection: int = 0                # bumped at each (re)connection
    unacknowledged: int = 0            # QoS 1 messages received, not yet acknowledged
    last_message: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, qos: int) -> None:
        with self.lock:
            self.last_message = time.monotonic()
            self.unacknowledged += bool(qos)

    def ack(self, mid: int, qos: int, connection: int) -> None:
        """Acknowledge a stored message, if the connection that delivered it still stands; after a
        reconnection the broker delivers it again, and that copy is acknowledged."""
        if not qos:
            return
        with self.lock:
            self.unacknowledged = max(0, self.unacknowledged - 1)
        if connection == self.connection:
            self.client.ack(mid, qos)

    def idle(self) -> bool:
        with self.lock:
            return self.unacknowledged == 0 and time.monotonic() - self.last_message >= IDLE_SECONDS


def roster_topic(prefix: str, group: str, client_id: str = "+") -> str:
    """Beside the devices' topics, never under PREFIX/: no device's login (`pattern write
    fer-edge/%u/#`) and no bridged site (`topic fer-edge/# out`) can write the roster, where one
    forged retained `up` under a low client id would stop every takeover."""
    return f"{prefix}-collectors/{group}/{client_id}"


def session_properties(expiry: int, receive_maximum: int) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = expiry
    properties.ReceiveMaximum = receive_maximum
    return properties


def set_will(client: Any, topic: str) -> None:
    """`gone`, retained, published by the broker WILL_DELAY_SECONDS after the connection is lost."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.WILLMESSAGE)
    properties.WillDelayInterval = WILL_DELAY_SECONDS
    client.will_set(topic, GONE, qos=1, retain=True, properties=properties)


class Roster:
    """The group's collectors as their retained messages say; picks who takes over whom."""

    def __init__(self, me: str, take_over: Callable[[str], None]):
        self.me, self.take_over = me, take_over
        self.states: Dict[str, str] = {}
        self.taking: Set[str] = set()          # client ids this collector is taking over now
        self.lock = threading.Lock()

    def heard(self, topic: str, payload: Union[bytes, bytearray]) -> None:
        """One retained roster message: `up`, `gone`, or empty (cleared)."""
        client_id, state = topic.rsplit("/", 1)[-1], payload.decode("utf-8", "replace")
        with self.lock:
            if client_id == self.me:
                return
            if state in (UP, GONE):
                self.states[client_id] = state
            else:
                self.states.pop(client_id, None)
            chosen = self._mine()
            self.taking.update(chosen)
        for client_id in chosen:
            self.take_over(client_id)

    def done(self, client_id: str) -> None:
        with self.lock:
            self.taking.discard(client_id)

    def _mine(self) -> List[str]:
        """The gone collectors this one takes over: those for which it is the lowest live client id."""
        live = sorted({c for c, s in self.states.items() if s == UP} | {self.me})
        if live[0] != self.me:
            return []
        return [c for c, s in self.states.items() if s == GONE and c not in self.taking]


class Handover(threading.Thread):
    """Takes over one gone collector's session: its messages go to `receive` (stored and
    acknowledged like this collector's own), then the session ends."""

    def __init__(self, server: Any, prefix: str, group: str, client_id: str, shared: List[str],
                 receive: Callable[[Any, Link], None], say: Callable[[str], None], done: Callable[[str], None],
                 stop: threading.Event, receive_maximum: int, expiry: int):
        super().__init__(name=f"handover-{client_id}", daemon=True)
        import paho.mqtt.client as mqtt

        self.gone, self.shared, self.say, self.done, self.stop = client_id, shared, say, done, stop
        self.topic = roster_topic(prefix, group, client_id)
        self.properties = session_properties(expiry, receive_maximum)
        client = server.client(client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        set_will(client, self.topic)    # if this collector dies too, the next one takes over
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_message = self._on_message
        client.on_unsubscribe = self._on_unsubscribe
        self.server, self.client, self.link, self.receive = server, client, Link(client), receive
        self.state = "connecting"       # connecting, draining, done, lost, refused
        self.left_subscriptions = False
        self.taken = 0

    def run(self) -> None:
        try:
            self.client.connect(self.server.host, self.server.port, clean_start=False, properties=self.properties)
            while self.state in ("connecting", "draining") and not self.stop.is_set():
                self.client.loop(0.2)
                if self.state == "draining" and self.left_subscriptions and self.link.idle():
                    self._finish()
                    return
            self.client.disconnect()    # stopping or lost: the session stays, and so does the `gone`
        except OSError as exc:
            self.say(f"could not take over collector {self.gone}: {exc}")
        finally:
            self.done(self.gone)

    def _finish(self) -> None:
        """Clear the `gone` and end the session: nothing is left in it."""
        cleared = self.client.publish(self.topic, b"", qos=1, retain=True)
        while not cleared.is_published() and self.state == "draining":
            self.client.loop(0.2)
        self.state = "done"
        self.client.disconnect(properties=_ending())
        self.client.loop(0.2)
        self.say(f"took over collector {self.gone}: stored the {self.taken} messages the broker kept for it")

    def _on_connect(self, client: "Client", userdata: Any, flags: "ConnectFlags", reason_code: "ReasonCode",
                    properties: Optional["Properties"]) -> None:
        if reason_code.is_failure:
            self.say(f"could not take over collector {self.gone}: {reason_code}")
            self.state = "refused"
            return
        self.link.connection += 1
        self.state = "draining"
        client.unsubscribe(self.shared)

    def _on_message(self, client: "Client", userdata: Any, message: "MQTTMessage") -> None:
        self.taken += 1
        self.receive(message, self.link)

    def _on_unsubscribe(self, client: "Client", userdata: Any, mid: int, reason_codes: List["ReasonCode"],
                        properties: Optional["Properties"]) -> None:
        self.left_subscriptions = True
        self.link.received(0)   # the idle wait starts now

    def _on_disconnect(self, client: "Client", userdata: Any, flags: "DisconnectFlags", reason_code: "ReasonCode",
                       properties: Optional["Properties"]) -> None:
        if self.state == "draining":
            self.link.connection += 1
            self.state = "lost"   # taken back by its owner, or the broker went: what is unacknowledged stays there


def queue_limit(server: Any, client_id: str, topic: str, probe: int = 1001, wait: float = 5.0) -> int:
    """How many QoS 1 messages the broker keeps for a stopped session (at most `probe`), tried
    with a throw-away session: the broker says nothing of its queue limit, and past it (1,000 by
    mosquitto's default) it drops what arrives for a stopped collector without a word."""
    import paho.mqtt.client as mqtt

    got: List[int] = []
    listener = server.client(client_id, protocol=mqtt.MQTTv5)
    listener.on_message = lambda c, u, message: got.append(1)
    subscribed = threading.Event()
    listener.on_subscribe = lambda *args: subscribed.set()
    for clean in (True, False):
        listener.connect(server.host, server.port, clean_start=clean, properties=session_properties(60, 65535))
        if clean:
            listener.subscribe(topic, qos=1)
            deadline = time.monotonic() + wait
            while not subscribed.is_set() and time.monotonic() < deadline:
                listener.loop(0.1)
            listener.disconnect()
            sender = server.client(f"{client_id}-sender", protocol=mqtt.MQTTv5)
            sender.connect(server.host, server.port)
            sender.loop_start()
            infos = [sender.publish(topic, b"", qos=1) for _ in range(probe)]
            for info in infos:
                info.wait_for_publish(wait)
            sender.disconnect()
            sender.loop_stop()
    deadline = time.monotonic() + wait
    quiet = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet < 1.0:
        before = len(got)
        listener.loop(0.1)
        if len(got) != before:
            quiet = time.monotonic()
    listener.disconnect(properties=_ending())
    return len(got)


def _ending() -> Any:
    """DISCONNECT properties that end the session now."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    ending = Properties(PacketTypes.DISCONNECT)
    ending.SessionExpiryInterval = 0
    return ending
