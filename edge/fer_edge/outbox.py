"""A durable outbox in SQLite: messages wait here until the broker acknowledges them.

The camera loop only inserts (a local write, never the network); the MQTT thread sends in
insertion order and deletes a row when its PUBACK arrives. After an outage or a restart
everything still here is sent again, in order; every payload carries a `msg_id`, so a
consumer can drop the duplicates an unacknowledged resend may cause.

Bounded at `max_messages`: past it the oldest *emotion updates* go first, then the oldest
of anything; each drop is counted in the `counters` table (`dropped_<kind>`).
"""

import json
import uuid

from .sinks import open_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
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
