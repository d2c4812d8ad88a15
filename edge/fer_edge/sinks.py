"""Where events go. Every sink implements `EventSink`: a track update, a finished visit, a
stats message, and the end of the run; `health` says how the sink is doing.

`SQLiteLog` is the local log (WAL, every row committed: a power cut loses nothing already
shown, and no write transaction is left open to block the MQTT outbox, which shares the
file; readers such as `fer-edge report` never block the camera). It prunes itself (days
and megabytes) and survives a full disk: the camera loop goes on, the log says once that
it is full, drops rows meanwhile (counted) and writes again once there is room. Face
pixels are never written here. `StdoutLog` prints JSON lines or a readable line.
"""

import json
import os
import sqlite3
import sys
import time
from typing import Callable, Optional

from .labels import LABELS

SCHEMA = """
CREATE TABLE IF NOT EXISTS emotions (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,            -- unix time of the frame
    device TEXT NOT NULL,
    frame INTEGER NOT NULL,
    track INTEGER NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    {probs},
    x REAL, y REAL, w REAL, h REAL
);
CREATE INDEX IF NOT EXISTS emotions_ts ON emotions (ts);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
    duration REAL NOT NULL, frames INTEGER NOT NULL, dominant TEXT NOT NULL, exit_emotion TEXT NOT NULL,
    satisfaction REAL NOT NULL, shares TEXT NOT NULL, exit_probs TEXT NOT NULL, ended_by TEXT NOT NULL DEFAULT 'left'
);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions (start);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL, ended REAL, device TEXT, source TEXT,
    model TEXT, detector TEXT, frames INTEGER, faces INTEGER, updates INTEGER
);
""".format(probs=",\n    ".join(f"p_{label} REAL" for label in LABELS))

# Columns added after a table first shipped: (table, column, declaration) for older files.
MIGRATIONS = [("sessions", "ended_by", "TEXT NOT NULL DEFAULT 'left'")]


def _create_private(path):
    """Create the file readable by its owner only (0600) if it does not exist yet; SQLite
    gives its -wal and -shm files the same mode."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def open_wal(path, schema, **options):
    """Our SQLite files (the log and the outbox share one): private, WAL, so readers never
    block the camera, and synchronous=NORMAL, so a commit is cheap; `schema` is applied."""
    _create_private(path)
    db = sqlite3.connect(path, **options)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        db.executescript(schema)
    except sqlite3.OperationalError as exc:
        if not is_disk_full(exc):
            raise
        # A full disk: the tables exist already (or nothing can be written anyway); go on.
    return db


def is_disk_full(exc: BaseException) -> bool:
    """SQLite cannot write: the disk is full (or, on a full tmpfs, its shared memory cannot grow)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk i/o error" in text)


def event(track, device_id, frame_index, timestamp):
    """The event dict of one track update: what may leave the device (no pixels)."""
    x, y, w, h = (round(v, 1) for v in track.box)
    return {"ts": round(timestamp, 3), "device": device_id, "frame": frame_index, "track": track.id,
            "label": track.label, "confidence": round(track.confidence, 4),
            "probs": {label: round(float(p), 4) for label, p in zip(LABELS, track.probs)},
            "box": {"x": x, "y": y, "w": w, "h": h}}


def view(tracks, visits, device_id, timestamp):
    """Who is in view: how many faces, the main one's emotion (the largest face: the visitor
    nearest the kiosk) and the visits in progress. A sensor reading this follows one face
    instead of alternating between faces."""
    main = max(tracks, key=lambda t: t.box[2] * t.box[3], default=None)
    return {"ts": round(timestamp, 3), "device": device_id, "people": len(tracks),
            "label": main.label if main else None,
            "confidence": round(main.confidence, 4) if main else None,
            "probs": {label: round(float(p), 4) for label, p in zip(LABELS, main.probs)} if main else {},
            "track": main.id if main else None, "visits": visits}


class EventSink:
    """Where the pipeline's events go; every method may be left as it is here."""

    def update(self, ev: dict) -> None:
        """One track update (rate-limited per face)."""

    def session(self, session: dict) -> None:
        """One finished visit."""

    def view(self, payload: dict) -> None:
        """Who is in view now (see `view`): when the count changes, else once per log interval."""

    def stats(self, payload: dict) -> None:
        """The periodic stats message."""

    def health(self) -> dict:
        """What the status page, the stats message and the run's summary show of this sink."""
        return {}

    def close(self, summary: dict) -> None:
        """The run ends; `summary` has frames, faces and updates."""


class SQLiteLog(EventSink):
    RETRY_SECONDS = 30.0       # after a full disk, how long to wait before writing again
    PRUNE_SECONDS = 3600.0     # how often retention runs

    def __init__(self, path: str, keep_days: float = 0.0, max_mb: float = 0.0,
                 say: Callable[[str], None] = lambda message: None):
        self.path, self.keep_days, self.max_mb, self.say = path, keep_days, max_mb, say
        self.full_since: Optional[float] = None
        self.retry_at = 0.0
        self.dropped = 0
        self.db = None
        self._open()
        self.columns = ["ts", "device", "frame", "track", "label", "confidence",
                        *(f"p_{label}" for label in LABELS), "x", "y", "w", "h"]
        self.insert = f"INSERT INTO emotions ({', '.join(self.columns)}) VALUES ({', '.join('?' * len(self.columns))})"
        self.run_id = None
        self.next_prune = 0.0
        self.prune()

    def _open(self) -> bool:
        """Open the log; on a full disk run without it for now (said once, retried)."""
        try:
            self.db = open_wal(self.path, SCHEMA, timeout=10)
            self._migrate()
            return True
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            if self.db is not None:
                self.db.close()
            self.db = None
            self._full(exc)
            return False

    def _full(self, exc):
        now = time.monotonic()
        if self.full_since is None:
            self.full_since = now
            self.say(f"log full: {self.path} cannot be written ({exc}); the camera, sessions and MQTT go on, "
                     f"log rows are dropped and counted, writing is retried every {self.RETRY_SECONDS:.0f} s")
        self.retry_at = now + self.RETRY_SECONDS

    def _migrate(self):
        for table, column, declaration in MIGRATIONS:
            columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._write(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}", ())

    def _write(self, sql, values) -> Optional[sqlite3.Cursor]:
        """Run and commit one write, returning its cursor; on a full disk say so once, count
        the loss, return None and go on."""
        now = time.monotonic()
        if self.full_since is not None and now < self.retry_at:
            self.dropped += 1
            return None
        if self.db is None and not self._open():
            self.dropped += 1
            return None
        try:
            cursor = self.db.execute(sql, values)
            self.db.commit()
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self.db.rollback()
            self.dropped += 1
            self._full(exc)
            return None
        if self.full_since is not None:
            self.say(f"log writable again after {now - self.full_since:.0f} s; {self.dropped} rows were dropped")
            self.full_since = None
        return cursor

    def prune(self) -> int:
        """Apply the retention policy to the emotion log (visits and runs are small and kept)."""
        self.next_prune = time.monotonic() + self.PRUNE_SECONDS
        removed = 0
        if self.db is None:
            return 0
        if self.keep_days:
            done = self._write("DELETE FROM emotions WHERE ts < ?", (time.time() - self.keep_days * 86400,))
            removed += done.rowcount if done else 0
        if self.max_mb:
            limit = self.max_mb * 1024 * 1024
            while self.used_bytes() > limit:
                oldest = self.db.execute("SELECT id FROM emotions ORDER BY id LIMIT 1 OFFSET 1000").fetchone()
                done = oldest and self._write("DELETE FROM emotions WHERE id < ?", (oldest[0],))
                if not done:
                    break
                removed += done.rowcount
        return removed

    def used_bytes(self) -> int:
        """Bytes of the log in use (free pages are reused before the file grows)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0] - self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * self.db.execute("PRAGMA page_size").fetchone()[0]

    def start_run(self, device, source, model, detector):
        done = self._write("INSERT INTO runs (started, device, source, model, detector) VALUES (?, ?, ?, ?, ?)",
                           (time.time(), device, source, model, detector))
        self.run_id = done.lastrowid if done else None

    def update(self, ev):
        self._write(self.insert, (ev["ts"], ev["device"], ev["frame"], ev["track"], ev["label"], ev["confidence"],
                                  *(ev["probs"][label] for label in LABELS), *ev["box"].values()))
        if time.monotonic() >= self.next_prune:
            self.prune()

    def session(self, session):
        self._write('INSERT OR REPLACE INTO sessions (id, device, start, "end", duration, frames, dominant, '
                    'exit_emotion, satisfaction, shares, exit_probs, ended_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
                    (session["id"], session["device"], session["start"], session["end"], session["duration"],
                     session["frames"], session["dominant"], session["exit_emotion"], session["satisfaction"],
                     json.dumps(session["shares"]), json.dumps(session["exit_probs"]),
                     session.get("ended_by", "left")))

    def sessions_since(self, start):
        if self.db is None:
            return None
        return self.db.execute("SELECT COUNT(*) FROM sessions WHERE start >= ?", (start,)).fetchone()[0]

    def health(self):
        from .visit_report import parse_since

        return {"log": "full" if self.full_since is not None else "ok", "log_dropped": self.dropped,
                "sessions_today": self.sessions_since(parse_since("today"))}

    def close(self, summary=None):
        summary = summary or {}
        if self.run_id is not None:
            self.full_since = None  # one last try
            self._write("UPDATE runs SET ended=?, frames=?, faces=?, updates=? WHERE id=?",
                        (time.time(), summary.get("frames", 0), summary.get("faces", 0), summary.get("updates", 0),
                         self.run_id))
        if self.db is not None:
            self.db.close()


class StdoutLog(EventSink):
    """JSON lines (--json) or one readable line per update."""

    def __init__(self, as_json=False, stream=None):
        self.as_json, self.stream = as_json, stream or sys.stdout

    def update(self, ev):
        if self.as_json:
            line = json.dumps(ev)
        else:
            line = (f"{time.strftime('%H:%M:%S', time.localtime(ev['ts']))} frame {ev['frame']:>6} "
                    f"face #{ev['track']:<3} {ev['label']:<8} {ev['confidence'] * 100:5.1f}%")
        self.stream.write(line + "\n")
        self.stream.flush()

    def session(self, session):
        if self.as_json:
            self.stream.write(json.dumps({"session": session}) + "\n")
        else:
            cut = "" if session.get("ended_by", "left") == "left" else f" (cut: {session['ended_by']})"
            self.stream.write(f"session {session['id'][:8]}: {session['duration']:.0f} s, mostly {session['dominant']}, "
                              f"left {session['exit_emotion']}, satisfaction {session['satisfaction']:.0f}{cut}\n")
        self.stream.flush()

    def close(self, summary=None):
        self.stream.flush()
