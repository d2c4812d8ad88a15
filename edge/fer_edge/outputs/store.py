"""The device's one SQLite file: the emotion log, the visits, the runs and the MQTT outbox.

One schema with a version (`PRAGMA user_version`) and its migrations live here, and so
does what a device needs after a power cut: a file that is damaged (cut short, garbage) or
of a shape this version does not know is kept aside under a timestamped name, a fresh
file takes its place, and the old file's visits and waiting messages are copied over
where they can still be read. One process writes a file at a time (a lock file beside
it). `Spill` keeps visits on a full disk in space reserved beforehand, so a stop never
leaves them only in memory.
"""

import fcntl
import json
import os
import sqlite3
import time
from typing import Any, Dict, List, Optional, Tuple

from ..core.errors import UserError
from ..core.labels import LABELS
from ..core.log import Say

SCHEMA_VERSION = 3

# Every table: its columns in order, with their declarations. The shape check reads these.
TABLES: Dict[str, List[Tuple[str, str]]] = {
    "emotions": [("id", "INTEGER PRIMARY KEY"), ("ts", "REAL NOT NULL"), ("device", "TEXT NOT NULL"),
                 ("frame", "INTEGER NOT NULL"), ("track", "INTEGER NOT NULL"), ("label", "TEXT NOT NULL"),
                 ("confidence", "REAL NOT NULL"), *((f"p_{label}", "REAL") for label in LABELS),
                 ("x", "REAL"), ("y", "REAL"), ("w", "REAL"), ("h", "REAL"),
                 ("other_probs", "TEXT")],  # JSON: a model's labels that have no p_ column
    "sessions": [("id", "TEXT PRIMARY KEY"), ("device", "TEXT NOT NULL"), ("start", "REAL NOT NULL"),
                 ('"end"', "REAL NOT NULL"), ("duration", "REAL NOT NULL"), ("frames", "INTEGER NOT NULL"),
                 ("dominant", "TEXT NOT NULL"), ("exit_emotion", "TEXT NOT NULL"), ("satisfaction", "REAL NOT NULL"),
                 ("shares", "TEXT NOT NULL"), ("exit_probs", "TEXT NOT NULL"),
                 ("ended_by", "TEXT NOT NULL DEFAULT 'left'"), ("clock_step", "REAL NOT NULL DEFAULT 0")],
    "runs": [("id", "INTEGER PRIMARY KEY"), ("started", "REAL"), ("ended", "REAL"), ("device", "TEXT"),
             ("source", "TEXT"), ("model", "TEXT"), ("detector", "TEXT"), ("frames", "INTEGER"),
             ("faces", "INTEGER"), ("updates", "INTEGER")],
    "outbox": [("seq", "INTEGER PRIMARY KEY AUTOINCREMENT"), ("msg_id", "TEXT NOT NULL UNIQUE"),
               ("kind", "TEXT NOT NULL"), ("topic", "TEXT NOT NULL"), ("payload", "TEXT NOT NULL"),
               ("qos", "INTEGER NOT NULL"), ("retain", "INTEGER NOT NULL"), ("created", "REAL NOT NULL")],
    "outbox_aside": [("seq", "INTEGER PRIMARY KEY"), ("msg_id", "TEXT"), ("kind", "TEXT"), ("topic", "TEXT"),
                     ("payload", "TEXT"), ("qos", "INTEGER"), ("retain", "INTEGER"), ("created", "REAL"),
                     ("reason", "TEXT NOT NULL")],
    "counters": [("name", "TEXT PRIMARY KEY"), ("value", "INTEGER NOT NULL")],
}
INDEXES = ["CREATE INDEX IF NOT EXISTS emotions_ts ON emotions (ts)",
           "CREATE INDEX IF NOT EXISTS sessions_start ON sessions (start)"]
# Columns added after their table first shipped: a file without them is migrated, not foreign.
ADDED_COLUMNS = {("sessions", "ended_by"), ("sessions", "clock_step"), ("emotions", "other_probs")}
# What is copied out of a kept-aside file: the visits and the messages not yet delivered.
RECOVERED_TABLES = ("sessions", "outbox")

BUSY_SECONDS = 2.0   # how long a statement waits for another program's lock before the caller holds its rows


def column_names(table: str) -> List[str]:
    return [name.strip('"') for name, _ in TABLES[table]]


def insert_sql(table: str, names: List[str], verb: str = "INSERT OR IGNORE") -> str:
    """An insert of `names` (quoted: "end" is a keyword) into `table`, one ? per column."""
    return f"{verb} INTO {table} ({', '.join(f'{chr(34)}{n}{chr(34)}' for n in names)}) VALUES ({', '.join('?' * len(names))})"


def create_statements() -> List[str]:
    tables = [f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{n} {d}' for n, d in columns)})"
              for table, columns in TABLES.items()]
    return tables + INDEXES


def is_disk_full(exc: BaseException) -> bool:
    """SQLite cannot write: the disk is full (or, on a full tmpfs, its shared memory cannot grow)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk i/o error" in text)


def is_locked(exc: BaseException) -> bool:
    """Another program holds the file's write lock (an operator's sqlite3, a backup)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _create_private(path: str) -> None:
    """Create the file readable by its owner only (0600) if it does not exist yet; SQLite
    gives its -wal and -shm files the same mode."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def connect(path: str, timeout: float = BUSY_SECONDS, **options: Any) -> sqlite3.Connection:
    """A connection to the store: private, WAL (readers never block the camera) and
    synchronous=NORMAL (a commit is cheap). Tables are made by `StoreFile`, not here."""
    _create_private(path)
    db = sqlite3.connect(path, timeout=timeout, **options)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError as exc:
        if not (is_disk_full(exc) or is_locked(exc)):
            db.close()
            raise
    return db


def _shape_problem(db: sqlite3.Connection) -> Optional[str]:
    """Why the file cannot be used as it is, or None. Raises sqlite3.DatabaseError when damaged."""
    check = db.execute("PRAGMA quick_check(1)").fetchone()
    if not check or check[0] != "ok":
        raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        return f"written by a newer fer-edge (schema {version}, this one knows {SCHEMA_VERSION})"
    for table in TABLES:
        found = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not found:
            continue
        expected = set(column_names(table))
        unknown = sorted(found - expected)
        missing = sorted(c for c in expected - found if (table, c) not in ADDED_COLUMNS)
        if unknown or missing:
            return f"table {table} has other columns ({', '.join(unknown + missing)})"
    return None


def migrate(db: sqlite3.Connection) -> None:
    """Make every table and add the columns an older file lacks; record the version."""
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION and all(
            {row[1] for row in db.execute(f"PRAGMA table_info({t})")} for t in TABLES):
        return  # nothing to write: a file another program holds open still starts
    with db:
        for statement in create_statements():
            db.execute(statement)
        for table, column in sorted(ADDED_COLUMNS):
            if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                declaration = dict((n.strip('"'), d) for n, d in TABLES[table])[column]
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def keep_aside(path: str) -> str:
    """Rename a damaged file (and its WAL) out of the way; returns the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.damaged-{stamp}-{n}"
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            if suffix == "-wal" and os.path.getsize(path + suffix):
                os.replace(path + suffix, aside + suffix)
            else:
                os.unlink(path + suffix)
    return aside


def recover(aside: str, db: sqlite3.Connection) -> Dict[str, int]:
    """Copy what can still be read of the kept-aside file's visits and waiting messages."""
    copied: Dict[str, int] = {}
    try:
        old = sqlite3.connect(aside, timeout=0.1)
    except sqlite3.Error:
        return copied
    try:
        for table in RECOVERED_TABLES:
            copied[table] = _copy_rows(old, db, table)
    finally:
        old.close()
    return copied


def _copy_rows(old: sqlite3.Connection, db: sqlite3.Connection, table: str) -> int:
    """The rows of `table` readable before the damage starts, in the columns both files have."""
    try:
        found = [row[1] for row in old.execute(f"PRAGMA table_info({table})")]
    except sqlite3.Error:
        return 0
    keep = [c for c in column_names(table) if c in found and c != "seq"]
    if not keep:
        return 0
    rows = []
    try:
        for row in old.execute(f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in keep)} FROM {table}"):
            rows.append(row)
    except sqlite3.Error:
        pass  # the damage starts here: keep what came before it
    with db:
        before = db.total_changes
        db.executemany(insert_sql(table, keep), rows)
        return db.total_changes - before


class StoreInUse(UserError):
    pass


class StoreFile:
    """The store claimed by one run: locked against a second writer, checked, migrated, its
    spill replayed. Create it before any connection writes; `close` releases the lock."""

    def __init__(self, path: str, say: Say):
        self.path, self.say = path, say
        self.kept_aside: Optional[str] = None
        _create_private(path)
        if not os.path.isfile(path):   # a damaged file is kept aside by renaming it: never a folder or a device
            raise UserError(f"{path}: not a file the log can be kept in (a folder, a device or a pipe); give a file's path")
        self.lock: Optional[int] = _claim(path)
        try:
            self._check()
            self.spill = Spill(path + ".spill")
            replayed = self.spill.replay(path)
            if replayed:
                say(f"{replayed} visit records kept in {self.spill.path} while the disk was full are back in the log")
        except BaseException:
            self.close()
            raise

    def _check(self) -> None:
        db = None
        try:
            db = connect(self.path)
            problem = _shape_problem(db)
            if problem is None:
                migrate(db)
                return
            reason = problem
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc) or is_locked(exc):
                return  # nothing can be checked or written now; the writers say why and retry
            reason = str(exc)
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
        finally:
            if db is not None:
                db.close()
        self.kept_aside = keep_aside(self.path)
        db = connect(self.path)
        try:
            migrate(db)
            copied = recover(self.kept_aside, db)
        finally:
            db.close()
        saved = ", ".join(f"{n} {'visits' if t == 'sessions' else 'waiting messages'}" for t, n in copied.items() if n)
        self.say(f"{self.path}: {reason}; kept aside as {self.kept_aside} and a fresh log started"
            + (f" ({saved} copied over)" if saved else ""))

    def close(self) -> None:
        spill = getattr(self, "spill", None)
        if spill is not None:
            spill.close()
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


def _claim(path: str) -> int:
    """An exclusive lock on `path`.lock for this process's lifetime (two writers duplicate rows)."""
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInUse(f"{path} is in use by another fer-edge run; give each run its own --db") from None
    return fd


class Spill:
    """Room reserved beside the store for the visits that arrive while the disk is full:
    written once at start, then overwritten in place (an overwrite needs no new blocks), one
    JSON line per row, and copied into the store at the next start. The reserve takes at
    most a quarter of the free space, so on a small disk it never fills what the log needs."""

    SIZE = 256 * 1024
    SHARE_OF_FREE = 4   # the reserve takes at most 1/SHARE_OF_FREE of the free space

    def __init__(self, path: str):
        self.path = path
        self.used = 0
        self.size = 0
        self.fd: Optional[int] = None
        try:
            self.fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            have = os.fstat(self.fd).st_size
            if have < self.SIZE:
                disk = os.statvfs(os.path.dirname(os.path.abspath(path)))
                want = min(self.SIZE, have + disk.f_bavail * disk.f_frsize // self.SHARE_OF_FREE)
                if want > have:
                    self._reserve(have, want)
            self.size = min(os.fstat(self.fd).st_size, self.SIZE)
            self.used = self._content_length()
        except OSError:
            self._close_fd()  # no room even for the reserve: nothing can be spilled

    def _reserve(self, have: int, want: int) -> None:
        """Write zeros from `have` to `want`; on a disk that fills meanwhile, keep what was written."""
        assert self.fd is not None
        try:
            os.pwrite(self.fd, b"\0" * (want - have), have)
        except OSError:
            pass
        os.fsync(self.fd)

    def _content_length(self) -> int:
        assert self.fd is not None
        data = os.pread(self.fd, self.size, 0)
        end = data.find(b"\0")
        return len(data) if end < 0 else end

    def _close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def add(self, table: str, row: dict) -> bool:
        """Keep one row for `table`; False when there is no room left (the caller counts the loss)."""
        line = (json.dumps({"table": table, "row": row}) + "\n").encode()
        if self.fd is None or self.used + len(line) > self.size:
            return False
        try:
            os.pwrite(self.fd, line, self.used)
            os.fsync(self.fd)
        except OSError:
            return False
        self.used += len(line)
        return True

    def records(self) -> List[dict]:
        if self.fd is None or not self.used:
            return []
        lines = os.pread(self.fd, self.used, 0).decode(errors="replace").splitlines()
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a power cut
            if record.get("table") in RECOVERED_TABLES and isinstance(record.get("row"), dict):
                records.append(record)
        return records

    def replay(self, path: str) -> int:
        """Copy the kept rows into the store and clear the reserve; the rows stay when the
        store cannot take them yet."""
        records = self.records()
        if not records:
            return 0
        db = connect(path)
        try:
            with db:
                for record in records:
                    table, row = record["table"], record["row"]
                    names = [c for c in column_names(table) if c in row and c != "seq"]
                    db.execute(insert_sql(table, names), [row[c] for c in names])
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()
        if self.fd is not None:
            os.pwrite(self.fd, b"\0" * self.used, 0)
            os.fsync(self.fd)
        self.used = 0
        return len(records)

    def close(self) -> None:
        self._close_fd()
