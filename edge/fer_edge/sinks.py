"""Where track updates go: a SQLite log (WAL), JSON lines or a human line on stdout.

The SQLite log commits every row: with WAL and synchronous=NORMAL a commit is cheap, a power
cut loses nothing already shown, and no write transaction is left open to block the MQTT
outbox, which shares the file. WAL keeps readers (`fer-edge report`) from blocking the camera.
Face pixels are never written here.
"""

import json
import os
import sqlite3
import sys
import time

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
    satisfaction REAL NOT NULL, shares TEXT NOT NULL, exit_probs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions (start);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL, ended REAL, device TEXT, source TEXT,
    model TEXT, detector TEXT, frames INTEGER, faces INTEGER, updates INTEGER
);
""".format(probs=",\n    ".join(f"p_{label} REAL" for label in LABELS))


def open_wal(path, schema, **options):
    """Our SQLite files (the log and the outbox share one): WAL, so readers never block the
    camera, and synchronous=NORMAL, so a commit is cheap; `schema` is applied."""
    db = sqlite3.connect(path, **options)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


def event(track, device_id, frame_index, timestamp):
    """The event dict of one track update: what may leave the device (no pixels)."""
    x, y, w, h = (round(v, 1) for v in track.box)
    return {"ts": round(timestamp, 3), "device": device_id, "frame": frame_index, "track": track.id,
            "label": track.label, "confidence": round(track.confidence, 4),
            "probs": {label: round(float(p), 4) for label, p in zip(LABELS, track.probs)},
            "box": {"x": x, "y": y, "w": w, "h": h}}


class SQLiteLog:
    def __init__(self, path):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.path = path
        self.db = open_wal(path, SCHEMA, timeout=10)
        self.columns = ["ts", "device", "frame", "track", "label", "confidence",
                        *(f"p_{label}" for label in LABELS), "x", "y", "w", "h"]
        self.insert = f"INSERT INTO emotions ({', '.join(self.columns)}) VALUES ({', '.join('?' * len(self.columns))})"
        self.run_id = None

    def start_run(self, device, source, model, detector):
        cur = self.db.execute("INSERT INTO runs (started, device, source, model, detector) VALUES (?, ?, ?, ?, ?)",
                              (time.time(), device, source, model, detector))
        self.run_id = cur.lastrowid
        self.db.commit()

    def write(self, ev):
        self.db.execute(self.insert, (ev["ts"], ev["device"], ev["frame"], ev["track"], ev["label"], ev["confidence"],
                                      *(ev["probs"][label] for label in LABELS), *ev["box"].values()))
        self.db.commit()

    def write_session(self, session):
        self.db.execute('INSERT OR REPLACE INTO sessions (id, device, start, "end", duration, frames, dominant, '
                        'exit_emotion, satisfaction, shares, exit_probs) VALUES (?,?,?,?,?,?,?,?,?,?,?)',
                        (session["id"], session["device"], session["start"], session["end"], session["duration"],
                         session["frames"], session["dominant"], session["exit_emotion"], session["satisfaction"],
                         json.dumps(session["shares"]), json.dumps(session["exit_probs"])))
        self.db.commit()

    def sessions_since(self, start):
        return self.db.execute("SELECT COUNT(*) FROM sessions WHERE start >= ?", (start,)).fetchone()[0]

    def close(self, frames=0, faces=0, updates=0):
        if self.run_id is not None:
            self.db.execute("UPDATE runs SET ended=?, frames=?, faces=?, updates=? WHERE id=?",
                            (time.time(), frames, faces, updates, self.run_id))
        self.db.commit()
        self.db.close()


class StdoutLog:
    """JSON lines (--json) or one readable line per update."""

    def __init__(self, as_json=False, stream=None):
        self.as_json, self.stream = as_json, stream or sys.stdout

    def write(self, ev):
        if self.as_json:
            line = json.dumps(ev)
        else:
            line = (f"{time.strftime('%H:%M:%S', time.localtime(ev['ts']))} frame {ev['frame']:>6} "
                    f"face #{ev['track']:<3} {ev['label']:<8} {ev['confidence'] * 100:5.1f}%")
        self.stream.write(line + "\n")
        self.stream.flush()

    def write_session(self, session):
        if self.as_json:
            self.stream.write(json.dumps({"session": session}) + "\n")
        else:
            self.stream.write(f"session {session['id'][:8]}: {session['duration']:.0f} s, mostly {session['dominant']}, "
                              f"left {session['exit_emotion']}, satisfaction {session['satisfaction']:.0f}\n")
        self.stream.flush()

    def close(self, **_):
        self.stream.flush()
