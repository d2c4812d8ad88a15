"""Where events go. Every sink implements `EventSink` (core.events): a track update, a finished visit, a
stats message, and the end of the run; `health` says how the sink is doing.

`SQLiteLog` is the local log (WAL, every row committed: a power cut loses nothing already
shown, and no write transaction is left open to block the MQTT outbox, which shares the
file; readers such as `fer-edge report` never block the camera). It prunes itself (days
and megabytes) and survives a full disk, at start too: the camera loop goes on, the log says once that
it is full, holds rows in memory meanwhile (visits also go to the store's spill, which
outlasts a stop) and writes them once there is room; while another program holds the
file's lock it holds rows the same way.
Retention never ages rows by a clock the log disagrees with. Face pixels are never written
here. `StdoutLog` prints JSON lines or a readable line.
"""

import json
import sqlite3
import sys
import time
from collections import deque
from typing import Callable, Deque, Optional, Sequence, TextIO, Tuple

from ..core.clock import start_of_today
from ..core.events import EventSink
from ..core.labels import LABELS
from ..core.records import LEFT, TrackUpdate, Visit
from .store import BUSY_SECONDS, StoreFile, column_names, connect, insert_sql, is_disk_full, is_locked, migrate


class SQLiteLog(EventSink):
    RETRY_SECONDS = 5.0        # after a full disk, how long to wait before writing again
    HOLD_RETRY_SECONDS = 2.0   # while another program holds the lock, how often to try again
    HOLD_MAX = 50_000          # rows held in memory meanwhile; past it the oldest emotion rows go
    PRUNE_SECONDS = 3600.0     # how often retention runs
    FUTURE_SECONDS = 3600.0    # a row this far ahead of the clock means the clock stepped back
    CLOSE_WAIT_SECONDS = 10.0  # at a stop, how long to wait for another program's lock

    def __init__(self, path: str, keep_days: float = 0.0, max_mb: float = 0.0,
                 say: Callable[[str], None] = lambda message: None, store: Optional[StoreFile] = None):
        self.path, self.keep_days, self.max_mb, self.say = path, keep_days, max_mb, say
        self.owns_store = store is None
        self.store = store or StoreFile(path, say)
        self.full_since: Optional[float] = None
        self.retry_at = 0.0
        self.dropped = 0
        self.held: Deque[Tuple[str, tuple]] = deque()  # (sql, values) waiting for another program's lock
        self.locked_since: Optional[float] = None
        self.db: Optional[sqlite3.Connection] = None
        self.clock_doubt: Optional[str] = None
        self._open()
        self.columns = column_names("emotions")[1:]
        self.insert = insert_sql("emotions", self.columns, "INSERT")
        self.run_id: Optional[int] = None
        self.run_of: Optional[Tuple[str, str, str]] = None   # (device, source, detector) of the run
        self.run_updates = 0      # updates logged since the run row began
        self.split = False        # a model change split the run: the process's totals are no row's
        self.next_prune = 0.0
        self.prune()

    def _open(self) -> bool:
        """Open the log, make its tables (a start on a full disk could not) and judge the
        clock; on a full disk run without it for now (said once, retried)."""
        db = None
        try:
            db = connect(self.path)
            migrate(db)
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                if db is not None:
                    db.close()
                if not is_disk_full(exc):
                    raise
                self.db = None
                self._full(exc)
                return False
        self.db = db
        self.clock_doubt = self._clock_doubt()
        if self.clock_doubt and self.keep_days:
            self.say(f"retention paused: {self.clock_doubt}; nothing is deleted by age until the clock and the log agree")
        return True

    def _full(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.full_since is None:
            self.full_since = now
            self.say(f"log full: {self.path} cannot be written ({exc}); the camera, sessions and MQTT go on, "
                     f"log rows are held in memory (up to {self.HOLD_MAX}; visits also in the spill) and written "
                     f"once there is room, retried every {self.RETRY_SECONDS:.0f} s")
        self.retry_at = now + self.RETRY_SECONDS

    def _clock_doubt(self) -> Optional[str]:
        """Why the wall clock cannot be trusted to age rows by, or None: the log's newest row
        is in the future (the clock stepped back) or further behind than retention keeps (a
        clock far ahead would delete everything)."""
        if self.db is None:
            return None
        try:
            newest = self.db.execute("SELECT MAX(ts) FROM emotions").fetchone()[0]
        except sqlite3.OperationalError:
            return None
        if newest is None:
            return None
        now = time.time()
        stamp = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t))  # noqa: E731
        if newest > now + self.FUTURE_SECONDS:
            return f"the clock says {stamp(now)} but the log has rows from {stamp(newest)}"
        if self.keep_days and now - newest > self.keep_days * 86400:
            return (f"the clock says {stamp(now)}, {(now - newest) / 86400:.0f} days after the log's newest row "
                    f"({stamp(newest)}), past keep_days {self.keep_days:g}")
        return None

    def _locked(self) -> None:
        if self.locked_since is None:
            self.locked_since = time.monotonic()
            self.say(f"log locked by another program ({self.path}); rows are held in memory "
                     f"(up to {self.HOLD_MAX}) and written once it lets go")
            if self.db is not None:
                self.db.execute("PRAGMA busy_timeout = 20")  # meanwhile a retry must not stall the camera
        self.retry_at = time.monotonic() + self.HOLD_RETRY_SECONDS

    def _hold(self, sql: str, values: tuple, spill_row: Optional[dict] = None) -> None:
        """Keep a row until the file can take it; on a full disk a visit goes to the spill as
        well (it outlasts a stop). Past HOLD_MAX the oldest emotion row goes."""
        if spill_row is not None and self.full_since is not None:
            self.store.spill.add("sessions", spill_row)
        if len(self.held) >= self.HOLD_MAX:
            oldest_update = next((i for i, (q, _) in enumerate(self.held) if q == self.insert), 0)
            del self.held[oldest_update]
            self.dropped += 1
        self.held.append((sql, values))

    def _flush_held(self) -> bool:
        """Write the held rows in order, in one transaction; False while still locked or full."""
        if self.db is None and not self._open():
            return False
        assert self.db is not None
        try:
            with self.db:
                for sql, values in self.held:
                    self.db.execute(sql, values)
        except sqlite3.OperationalError as exc:
            if is_locked(exc):
                self._locked()
                return False
            if not is_disk_full(exc):
                raise
            self._full(exc)
            return False
        self._writable_again(len(self.held))
        self.held.clear()
        return True

    def _writable_again(self, written: int) -> None:
        now = time.monotonic()
        if self.locked_since is not None:
            self.say(f"log unlocked after {now - self.locked_since:.0f} s; {written} held rows written")
            if self.db is not None:
                self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
            self.locked_since = None
        if self.full_since is not None:
            lost = f", {self.dropped} dropped" if self.dropped else ""
            self.say(f"log writable again after {now - self.full_since:.0f} s; {written} held rows written{lost}")
            self.full_since = None

    def _write(self, sql: str, values: tuple, spill_row: Optional[dict] = None) -> Optional[sqlite3.Cursor]:
        """Run and commit one write, returning its cursor. While the disk is full or another
        program holds the lock, say so once, hold the row (in order, behind those already
        held), return None and go on."""
        now = time.monotonic()
        if self.held:
            if now < self.retry_at or not self._flush_held():
                self._hold(sql, values, spill_row)
                return None
        elif self.full_since is not None and now < self.retry_at:
            self._hold(sql, values, spill_row)
            return None
        if self.db is None and not self._open():
            self._hold(sql, values, spill_row)
            return None
        assert self.db is not None
        try:
            cursor = self.db.execute(sql, values)
            self.db.commit()
        except sqlite3.OperationalError as exc:
            self.db.rollback()
            if is_locked(exc):
                self._locked()
            elif is_disk_full(exc):
                self._full(exc)
            else:
                raise
            self._hold(sql, values, spill_row)
            return None
        self._writable_again(0)
        return cursor

    def prune(self) -> int:
        """Apply the retention policy to the emotion log (visits and runs are small and kept)."""
        self.next_prune = time.monotonic() + self.PRUNE_SECONDS
        if self.db is None or self.held or self.full_since is not None:
            return 0
        try:
            return self._prune()
        except sqlite3.OperationalError as exc:   # a read on a full disk (no room for its -shm file)
            if is_disk_full(exc):
                self._full(exc)
            elif not is_locked(exc):
                raise
            return 0

    def _prune(self) -> int:
        assert self.db is not None
        removed = 0
        if self.keep_days and not self.clock_doubt:
            newest = self.db.execute("SELECT MAX(ts) FROM emotions").fetchone()[0]
            if newest is not None and newest > time.time() + self.FUTURE_SECONDS:
                self.clock_doubt = "the log has rows from the future (the clock stepped back)"
                self.say(f"retention paused: {self.clock_doubt}")
            else:
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
        assert self.db is not None
        pages = self.db.execute("PRAGMA page_count").fetchone()[0] - self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * self.db.execute("PRAGMA page_size").fetchone()[0]

    def start_run(self, device: str, source: str, model: str, detector: str) -> None:
        self.run_of, self.run_updates = (device, source, detector), 0
        done = self._write("INSERT INTO runs (started, device, source, model, detector) VALUES (?, ?, ?, ?, ?)",
                           (time.time(), device, source, model, detector))
        self.run_id = done.lastrowid if done else None

    def model_changed(self, name: str, labels: Sequence[str]) -> None:
        """A deployed model runs from now on: the run row so far ends, a new one names the model
        (so a report says which model saw which visits)."""
        if self.run_of is None:
            return
        self.split = True
        self._end_run({})
        device, source, detector = self.run_of
        self.start_run(device, source, name, detector)

    def _end_run(self, summary: dict) -> None:
        """The run row's end; once a model change split the run, frames and faces are left
        unknown (NULL: the log does not count frames) and updates are the row's own."""
        if self.run_id is None:
            return
        frames, faces = (None, None) if self.split else (summary.get("frames", 0), summary.get("faces", 0))
        updates = self.run_updates if self.split else summary.get("updates", 0)
        self._write("UPDATE runs SET ended=?, frames=?, faces=?, updates=? WHERE id=?",
                    (time.time(), frames, faces, updates, self.run_id))

    def update(self, update: TrackUpdate) -> None:
        box, probs = update.box, update.probs
        self.run_updates += 1
        other = {label: p for label, p in probs.items() if label not in LABELS}
        self._write(self.insert, (update.ts, update.device, update.frame, update.track, update.label, update.confidence,
                                  *(probs.get(label) for label in LABELS), box.x, box.y, box.w, box.h,
                                  json.dumps(other) if other else None))
        if time.monotonic() >= self.next_prune:
            self.prune()

    def session(self, visit: Visit) -> None:
        row = visit.row()
        self._write(insert_sql("sessions", list(row), "INSERT OR REPLACE"), tuple(row.values()), spill_row=row)

    def sessions_since(self, start: Optional[float]) -> Optional[int]:
        if self.db is None:
            return None
        try:
            return self.db.execute("SELECT COUNT(*) FROM sessions WHERE start >= ?", (start,)).fetchone()[0]
        except sqlite3.OperationalError:
            return None

    def health(self) -> dict:
        state = "full" if self.full_since is not None else "locked" if self.held else "ok"
        return {"log": state, "log_dropped": self.dropped, "log_held": len(self.held),
                "sessions_today": self.sessions_since(start_of_today())}

    def close(self, summary: Optional[dict] = None) -> None:
        summary = summary or {}
        if self.held:
            if self.db is not None:
                self.db.execute(f"PRAGMA busy_timeout = {int(self.CLOSE_WAIT_SECONDS * 1000)}")
            self.retry_at = 0.0
            if not self._flush_held():
                spilled = self.full_since is not None and self.store.spill.used
                self.say(f"log still {'full' if self.full_since is not None else 'locked'} at the stop: "
                         f"{len(self.held)} held rows lost ({sum(1 for q, _ in self.held if 'sessions' in q)} of them "
                         f"visits{', kept in the spill for the next start' if spilled else ''})")
        if self.run_id is not None and not self.held:
            self.full_since = None  # one last try
            self._end_run(summary)
        if self.db is not None:
            self.db.close()
        if self.owns_store:
            self.store.close()


class StdoutLog(EventSink):
    """JSON lines (--json) or one readable line per update. When the reader goes away
    (`| head -2`), it writes no more and calls `on_closed` (the run stops cleanly: what was
    logged stays logged)."""

    def __init__(self, as_json: bool = False, stream: Optional[TextIO] = None,
                 on_closed: Optional[Callable[[], None]] = None):
        self.as_json, self.stream, self.on_closed = as_json, stream or sys.stdout, on_closed
        self.closed = False

    def _write(self, line: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        from ..core.errors import close_stdout

        self.closed = True
        if self.stream is sys.stdout:
            close_stdout()
        if self.on_closed:
            self.on_closed()

    def update(self, update: TrackUpdate) -> None:
        if self.as_json:
            line = json.dumps(update.to_json())
        else:
            line = (f"{time.strftime('%H:%M:%S', time.localtime(update.ts))} frame {update.frame:>6} "
                    f"face #{update.track:<3} {update.label:<8} {update.confidence * 100:5.1f}%")
        self._write(line)

    def session(self, visit: Visit) -> None:
        if self.as_json:
            self._write(json.dumps({"session": visit.to_json()}))
        else:
            cut = "" if visit.ended_by == LEFT else f" (cut: {visit.ended_by})"
            self._write(f"session {visit.id[:8]}: {visit.duration:.0f} s, mostly {visit.dominant}, "
                        f"left {visit.exit_emotion}, satisfaction {visit.satisfaction:.0f}{cut}")

    def close(self, summary: Optional[dict] = None) -> None:
        if not self.closed:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_gone()
