"""A durable outbox in SQLite: messages wait here until the receiver acknowledges them.

Any network output can use it: the camera loop only inserts (a local write, never the
network) with the address the output understands (an MQTT topic); an `OutboxSender`
thread sends in insertion order through the output's `Transport` and deletes a row when
its acknowledgement (an MQTT PUBACK) arrives. After an outage or a restart
everything still here is sent again, in order; every payload carries a `msg_id`, so a
consumer can drop the duplicates an unacknowledged resend may cause.

Bounded at `max_messages`: past it the oldest *emotion updates* go first, then the oldest
of anything; each drop is counted in the `counters` table (`dropped_<kind>`).
"""

import json
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from .store import connect, is_disk_full, is_locked, migrate

PUT_WAIT_SECONDS = 0.2   # the camera thread's put waits this long for a lock, then the caller holds the row


class Outbox:
    """One per thread: each holds its own SQLite connection to the same file."""

    def __init__(self, path: str, max_messages: int = 100_000, timeout: float = PUT_WAIT_SECONDS, **options: Any):
        """`options`: sqlite3.connect's (check_same_thread=False for a connection one lock guards)."""
        self.path, self.max_messages = path, max_messages
        self.db = connect(path, timeout=timeout, isolation_level=None, **options)  # autocommit: every put is durable
        try:
            migrate(self.db)
        except Exception as exc:
            if not (is_disk_full(exc) or is_locked(exc)):
                self.db.close()
                raise

    def put(self, kind: str, topic: str, payload: dict, qos: int = 1, retain: bool = False, created: float = 0.0) -> str:
        """Store a message; `payload` (a dict) gets its `msg_id`. Returns the msg_id."""
        msg_id = payload.setdefault("msg_id", uuid.uuid4().hex)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO outbox (msg_id, kind, topic, payload, qos, retain, created) "
                            "VALUES (?,?,?,?,?,?,?)", (msg_id, kind, topic, json.dumps(payload), qos, int(retain), created))
            excess = self.count() - self.max_messages
            if excess > 0:
                self._drop(excess)
        return msg_id

    def _count(self, name: str, n: int = 1) -> None:
        self.db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = value + ?", (name, n, n))

    def _drop(self, n: int) -> None:
        for where in ("kind = 'emotion'", "1"):
            rows = self.db.execute(f"SELECT seq, kind FROM outbox WHERE {where} ORDER BY seq LIMIT ?", (n,)).fetchall()
            for seq, kind in rows:
                self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._count(f"dropped_{kind}")
            n -= len(rows)
            if n <= 0:
                return

    def pending(self, after_seq: int = 0, limit: int = 100) -> List[tuple]:
        """(seq, topic, payload, qos, retain) waiting to be sent, oldest first."""
        return self.db.execute("SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                               (after_seq, limit)).fetchall()

    def acknowledged(self, seqs: List[int]) -> None:
        if seqs:
            with self.db:
                self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def set_aside(self, seq: int, reason: str) -> None:
        """Move a row the transport refuses (a topic with wildcards, say) out of the way, counted."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO outbox_aside (seq, msg_id, kind, topic, payload, qos, retain, "
                            "created, reason) SELECT seq, msg_id, kind, topic, payload, qos, retain, created, ? "
                            "FROM outbox WHERE seq = ?", (reason, seq))
            self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._count("set_aside")

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def counters(self) -> Dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters").fetchall())

    def close(self) -> None:
        self.db.close()


class Transport:
    """What an `OutboxSender` needs from a network output (MQTT today; a webhook could be one)."""

    def ready(self) -> bool:
        """Connected: rows may be handed over now."""
        raise NotImplementedError

    def send(self, address: str, payload: str, qos: int, retain: bool) -> Tuple[bool, Optional[int]]:
        """Hand one message over. Returns (queued, handle): `queued` False means try this row
        again later; `handle` is what the transport later passes to `acknowledge`, or None
        when the message needs no acknowledgement (done once handed over)."""
        raise NotImplementedError


class OutboxSender:
    """The thread that empties an outbox through a transport, in order, at most `window`
    messages unacknowledged. It owns its own connection to the outbox file; rows are deleted
    only once the transport acknowledges them. It never dies of an error: a row the
    transport refuses is set aside (counted), anything else (a full disk, a lock, a file
    that went away) is said once, shown in `problem`, and retried with backoff."""

    RETRY_FIRST, RETRY_CAP = 1.0, 30.0

    def __init__(self, path: str, transport: Transport, window: int = 20, name: str = "outbox",
                 say: Callable[[str], None] = lambda message: None):
        self.path, self.transport, self.window, self.say = path, transport, window, say
        self.wake, self.stop_event, self.lock = threading.Event(), threading.Event(), threading.Lock()
        self.acked: List[int] = []
        self.inflight: Dict[int, int] = {}   # transport handle -> outbox row
        # Handles acknowledged before send() returned them (a broker on loopback can answer
        # before the handle is registered); without this the row would stay and its place
        # in the window would be lost for good.
        self.early: set = set()
        self.problem: Optional[str] = None   # why sending is held up now, or None
        self.set_aside_count = 0
        self.last_seq = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def nudge(self) -> None:
        """Something changed (a new row, a connection): look again now."""
        self.wake.set()

    def acknowledge(self, handle: int) -> None:
        """Called by the transport (from any thread) when a message is safely delivered."""
        with self.lock:
            seq = self.inflight.pop(handle, None)
            if seq is not None:
                self.acked.append(seq)
            else:
                self.early.add(handle)   # perhaps one of ours still being handed over, or not ours
        self.wake.set()

    def _run(self) -> None:
        """After a reconnect the transport itself retransmits what was in flight (MQTT keeps
        the same message ids, in order) and this thread carries on after the last row it
        handed over: resending from the start here would put old rows after newer ones."""
        outbox, delay = None, self.RETRY_FIRST
        while not self.stop_event.is_set():
            self.wake.wait(delay if self.problem else 0.5)
            self.wake.clear()
            try:
                if outbox is None:
                    outbox = Outbox(self.path, timeout=5.0)
                self._step(outbox)
            except Exception as exc:  # noqa: BLE001 - this thread must outlive every error
                text = f"{type(exc).__name__}: {exc}"
                if text != self.problem:
                    self.say(f"outbox sender: {text}; retrying every {self.RETRY_CAP:.0f} s at most, "
                             "nothing is deleted before the broker has it")
                self.problem = text
                delay = min(self.RETRY_CAP, delay * 2)
                continue
            if self.problem:
                self.say(f"outbox sender: going again after '{self.problem}'")
                self.problem, delay = None, self.RETRY_FIRST
        if outbox is not None:
            outbox.close()

    def _step(self, outbox: Outbox) -> None:
        with self.lock:
            acked, self.acked = self.acked, []
            self.early.clear()   # what was early for an earlier step is not this step's
        try:
            outbox.acknowledged(acked)
        except Exception:
            with self.lock:
                self.acked = acked + self.acked  # deleted on the next try
            raise
        if not self.transport.ready():
            return
        room = self.window - len(self.inflight)
        for seq, address, payload, qos, retain in outbox.pending(self.last_seq, max(0, room)):
            try:
                queued, handle = self.transport.send(address, payload, qos, bool(retain))
            except (ValueError, TypeError) as exc:  # the transport will never take this row
                outbox.set_aside(seq, str(exc))
                self.set_aside_count += 1
                self.say(f"outbox: message {seq} to {address!r} set aside ({exc}); the rest goes on")
                self.last_seq = seq
                continue
            if not queued:
                break  # try this row again later
            with self.lock:
                if handle is None or handle in self.early:
                    self.early.discard(handle)
                    self.acked.append(seq)
                else:
                    self.inflight[handle] = seq
            self.last_seq = seq

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.wake.set()
        self.thread.join(timeout=timeout)
