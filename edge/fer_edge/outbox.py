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

from .sinks import open_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,         -- the address the output sends to
    payload TEXT NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    """One per thread: each holds its own SQLite connection to the same file."""

    def __init__(self, path, max_messages=100_000):
        self.path, self.max_messages = path, max_messages
        self.db = open_wal(path, SCHEMA, timeout=30, isolation_level=None)  # autocommit: every put is durable

    def put(self, kind, topic, payload, qos=1, retain=False, created=0.0):
        """Store a message; `payload` (a dict) gets its `msg_id`. Returns the msg_id."""
        msg_id = payload.setdefault("msg_id", uuid.uuid4().hex)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO outbox (msg_id, kind, topic, payload, qos, retain, created) VALUES (?,?,?,?,?,?,?)",
                            (msg_id, kind, topic, json.dumps(payload), qos, int(retain), created))
            excess = self.count() - self.max_messages
            if excess > 0:
                self._drop(excess)
        return msg_id

    def _drop(self, n):
        for where in ("kind = 'emotion'", "1"):
            rows = self.db.execute(f"SELECT seq, kind FROM outbox WHERE {where} ORDER BY seq LIMIT ?", (n,)).fetchall()
            for seq, kind in rows:
                self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self.db.execute("INSERT INTO counters (name, value) VALUES (?, 1) "
                                "ON CONFLICT(name) DO UPDATE SET value = value + 1", (f"dropped_{kind}",))
            n -= len(rows)
            if n <= 0:
                return

    def pending(self, after_seq=0, limit=100):
        """(seq, topic, payload, qos, retain) waiting to be sent, oldest first."""
        return self.db.execute("SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                               (after_seq, limit)).fetchall()

    def acknowledged(self, seqs):
        if seqs:
            with self.db:
                self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def count(self):
        return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def counters(self):
        return dict(self.db.execute("SELECT name, value FROM counters").fetchall())

    def close(self):
        self.db.close()


class Transport:
    """What an `OutboxSender` needs from a network output (MQTT today; a webhook could be one)."""

    def ready(self) -> bool:
        """Connected: rows may be handed over now."""
        raise NotImplementedError

    def send(self, address: str, payload: str, qos: int, retain: bool):
        """Hand one message over. Returns (queued, handle): `queued` False means try this row
        again later; `handle` is what the transport later passes to `acknowledge`, or None
        when the message needs no acknowledgement (done once handed over)."""
        raise NotImplementedError


class OutboxSender:
    """The thread that empties an outbox through a transport, in order, at most `window`
    messages unacknowledged. It owns its own connection to the outbox file; rows are deleted
    only once the transport acknowledges them."""

    def __init__(self, path, transport: Transport, window=20, name="outbox"):
        self.path, self.transport, self.window = path, transport, window
        self.wake, self.stop_event, self.lock = threading.Event(), threading.Event(), threading.Lock()
        self.acked, self.inflight = [], {}
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def nudge(self):
        """Something changed (a new row, a connection): look again now."""
        self.wake.set()

    def acknowledge(self, handle):
        """Called by the transport (from any thread) when a message is safely delivered."""
        with self.lock:
            seq = self.inflight.pop(handle, None)
            if seq is not None:
                self.acked.append(seq)
        self.wake.set()

    def _run(self):
        """After a reconnect the transport itself retransmits what was in flight (MQTT keeps
        the same message ids, in order) and this thread carries on after the last row it
        handed over: resending from the start here would put old rows after newer ones."""
        outbox = Outbox(self.path)
        last_seq = 0
        while not self.stop_event.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            with self.lock:
                acked, self.acked = self.acked, []
            outbox.acknowledged(acked)
            if not self.transport.ready():
                continue
            room = self.window - len(self.inflight)
            for seq, address, payload, qos, retain in outbox.pending(last_seq, max(0, room)):
                queued, handle = self.transport.send(address, payload, qos, bool(retain))
                if not queued:
                    break  # try this row again later
                with self.lock:
                    if handle is None:
                        self.acked.append(seq)
                    else:
                        self.inflight[handle] = seq
                last_seq = seq
        outbox.close()

    def stop(self, timeout=5.0):
        self.stop_event.set()
        self.wake.set()
        self.thread.join(timeout=timeout)
