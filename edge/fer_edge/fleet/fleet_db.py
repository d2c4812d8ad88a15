"""The fleet's database: every device's visits and last known state, in SQLite (a file, for a
few devices) or PostgreSQL (`postgresql://...`, for a fleet).

One set of statements serves both: they are written in the SQL the two share (`ON CONFLICT`
upserts, `DOUBLE PRECISION`), with `?` placeholders that are turned into psycopg's `%s`.
The `sessions` table has the columns of a device's own log plus `stored` (when the row was
committed), so `fer-edge report` reads a device's log and the fleet's database alike.
"""

import contextlib
import os
import re
import sqlite3
from typing import TYPE_CHECKING, Any, ContextManager, Iterable, List, Optional, Sequence, Tuple, Type, Union
from urllib.parse import quote

from ..core.errors import UserError
from ..core.network import MASK, without_password
from ..outputs.store import TABLES, column_names, insert_sql, is_disk_full, is_locked

if TYPE_CHECKING:  # for the hints only: psycopg loads for a postgresql:// address
    import psycopg

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
CONNECT_SECONDS = 5
READ_SECONDS = 30        # a report's or the fleet page's statement is cancelled after this
SCHEMA_LOCK = 7_466_772   # a PostgreSQL advisory lock: collectors starting together create the tables once

VISIT_COLUMNS = column_names("sessions") + ["stored"]
TABLE_STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS sessions (" + ", ".join(
        [f"{name} {kind.replace('REAL', 'DOUBLE PRECISION')}" for name, kind in TABLES["sessions"]]
        + ["stored DOUBLE PRECISION NOT NULL"]) + ")",
    "CREATE INDEX IF NOT EXISTS sessions_device_start ON sessions (device, start)",
    "CREATE INDEX IF NOT EXISTS sessions_start ON sessions (start)",
    # The last state each device said of itself: online or not, its stats and its view.
    "CREATE TABLE IF NOT EXISTS devices (device TEXT PRIMARY KEY, online INTEGER, availability_at DOUBLE PRECISION, "
    "stats TEXT, stats_at DOUBLE PRECISION, view TEXT, view_at DOUBLE PRECISION, last_seen DOUBLE PRECISION)",
    # Messages that could not be read (not JSON, a field missing), kept for a look instead of lost.
    "CREATE TABLE IF NOT EXISTS rejected (topic TEXT NOT NULL, payload TEXT, reason TEXT NOT NULL, "
    "received DOUBLE PRECISION NOT NULL)",
    # Deployed models: which one each device runs, every step each device reported, every rollout.
    "CREATE TABLE IF NOT EXISTS device_models (device TEXT PRIMARY KEY, name TEXT, version INTEGER, sha256 TEXT, "
    "labels TEXT, state TEXT, rollout TEXT, reason TEXT, ts DOUBLE PRECISION, stored DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS model_events (msg_id TEXT PRIMARY KEY, device TEXT NOT NULL, ts DOUBLE PRECISION, "
    "state TEXT, rollout TEXT, name TEXT, version INTEGER, sha256 TEXT, release_version INTEGER, reason TEXT, "
    "before TEXT, after TEXT, stored DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS model_events_device_ts ON model_events (device, ts)",
    "CREATE TABLE IF NOT EXISTS rollouts (id TEXT PRIMARY KEY, by_whom TEXT, started DOUBLE PRECISION, "
    "updated DOUBLE PRECISION, name TEXT, version INTEGER, sha256 TEXT, state TEXT, reason TEXT, canaries TEXT, "
    "targets TEXT, record TEXT, stored DOUBLE PRECISION)",
]
INSERT_VISIT = insert_sql("sessions", VISIT_COLUMNS, verb="INSERT") + " ON CONFLICT (id) DO NOTHING"
# The newest report wins, whichever collector stores it last.
UPSERT = {
    "availability": "INSERT INTO devices (device, online, availability_at, last_seen) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (device) DO UPDATE SET online = excluded.online, "
                    "availability_at = excluded.availability_at, last_seen = COALESCE(excluded.last_seen, devices.last_seen) "
                    # A state said again (a retained one read at a collector's start) changes nothing.
                    "WHERE devices.online IS NULL OR devices.online <> excluded.online",
    "stats": "INSERT INTO devices (device, stats, stats_at, last_seen) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (device) DO UPDATE SET stats = excluded.stats, stats_at = excluded.stats_at, "
             "last_seen = GREATEST_LAST_SEEN WHERE devices.stats_at IS NULL OR excluded.stats_at >= devices.stats_at",
    "view": "INSERT INTO devices (device, view, view_at, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device) DO UPDATE SET view = excluded.view, view_at = excluded.view_at, "
            "last_seen = GREATEST_LAST_SEEN WHERE devices.view_at IS NULL OR excluded.view_at >= devices.view_at",
}
INSERT_REJECTED = "INSERT INTO rejected (topic, payload, reason, received) VALUES (?, ?, ?, ?)"
MODEL_COLUMNS = ["device", "name", "version", "sha256", "labels", "state", "rollout", "reason", "ts", "stored"]
EVENT_COLUMNS = ["msg_id", "device", "ts", "state", "rollout", "name", "version", "sha256", "release_version", "reason",
                 "before", "after", "stored"]
ROLLOUT_COLUMNS = ["id", "by_whom", "started", "updated", "name", "version", "sha256", "state", "reason", "canaries",
                   "targets", "record", "stored"]


def _newest_wins(table: str, columns: List[str], key: str, when: str) -> str:
    """An upsert that keeps the newest report (by `when`), whichever collector stores it last."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return (insert_sql(table, columns, verb="INSERT") + f" ON CONFLICT ({key}) DO UPDATE SET {updates} "
            f"WHERE {table}.{when} IS NULL OR excluded.{when} >= {table}.{when}")


UPSERT_DEVICE_MODEL = _newest_wins("device_models", MODEL_COLUMNS, "device", "ts")
INSERT_MODEL_EVENT = insert_sql("model_events", EVENT_COLUMNS, verb="INSERT") + " ON CONFLICT (msg_id) DO NOTHING"
UPSERT_ROLLOUT = _newest_wins("rollouts", ROLLOUT_COLUMNS, "id", "updated")


class DatabaseError(UserError):
    """The database cannot be reached, or refuses us: one line that says why."""


def is_postgres(target: str) -> bool:
    return os.fspath(target).startswith(POSTGRES_SCHEMES)


def describe(target: str) -> str:
    """The target without its password, for messages (one libpq refuses, with a space in it, too)."""
    target = os.fspath(target)
    user, colon, _ = _userinfo(target).partition(":")
    if is_postgres(target) and colon:
        target = f"{target.split('://', 1)[0]}://{user}:{MASK}@{target.rpartition('@')[2]}"
    return without_password(target)


class FleetDatabase:
    """One connection to the fleet's database. Statements use `?`; `rows`/`execute` run them."""

    def __init__(self, target: str, password: Optional[str] = None, readonly: bool = False):
        target = os.fspath(target)
        self.target, self.name = target, describe(target)
        self.postgres = is_postgres(target)
        if self.postgres:
            self.connection: Union["psycopg.Connection[Any]", sqlite3.Connection] = _connect_postgres(
                target, password, readonly)
            self.errors: Tuple[Type[Exception], ...] = (_psycopg().Error,)
        else:
            path = target[len("sqlite:///"):] if target.startswith("sqlite:///") else target
            if readonly and not os.path.exists(path):
                raise DatabaseError(f"{path}: no such database")
            self.connection = _connect_sqlite(path, readonly)
            self.errors = (sqlite3.Error,)
        self.greatest = "GREATEST(devices.last_seen, excluded.last_seen)" if self.postgres else \
            "MAX(COALESCE(devices.last_seen, 0), excluded.last_seen)"

    def _sql(self, statement: str) -> str:
        statement = statement.replace("GREATEST_LAST_SEEN", self.greatest)
        return statement.replace("?", "%s") if self.postgres else statement

    def pipelined(self) -> ContextManager[Any]:
        """PostgreSQL's pipeline mode around a batch (no round trip a statement); nothing on SQLite."""
        if isinstance(self.connection, sqlite3.Connection):
            return contextlib.nullcontext()
        return self.connection.pipeline()

    def execute(self, statement: str, args: Sequence[Any] = ()) -> None:
        self.connection.execute(self._sql(statement), tuple(args))

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor = self.connection.cursor()
        cursor.executemany(self._sql(statement), [tuple(r) for r in rows])

    def rows(self, statement: str, args: Sequence[Any] = ()) -> List[tuple]:
        cursor = self.connection.execute(self._sql(statement), tuple(args))
        return [tuple(row) for row in cursor.fetchall()]

    def columns(self, table: str) -> set:
        """The table's column names (empty when it does not exist)."""
        if self.postgres:
            return {r[0] for r in self.rows("SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                                            (table,))}
        return {r[1] for r in self.rows(f"PRAGMA table_info({table})")}

    def create_tables(self) -> None:
        if self.postgres:
            self.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
        for statement in TABLE_STATEMENTS:
            self.execute(statement)
        self.commit()

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        try:
            self.connection.rollback()
        except self.errors:
            pass

    def close(self) -> None:
        try:
            self.connection.close()
        except self.errors:
            pass


def open_database(target: str, password: Optional[str] = None, readonly: bool = False,
                  create: bool = False) -> FleetDatabase:
    """Connect (and, for a collector, create the tables); any failure is one DatabaseError line."""
    try:
        database = FleetDatabase(target, password, readonly)
        if create:
            database.create_tables()
        return database
    except DatabaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's errors, said in one line
        if not is_driver_error(exc):
            raise
        raise DatabaseError(f"{describe(target)}: {reason(exc)}") from None


def is_driver_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    psycopg = _psycopg(required=False)
    return psycopg is not None and isinstance(exc, psycopg.Error)


def is_connection_error(exc: BaseException) -> bool:
    """The database is away (down, restarting, locked by another program, its disk failing):
    worth trying again later; the messages wait with the broker meanwhile."""
    if isinstance(exc, DatabaseError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return is_locked(exc) or is_disk_full(exc) or "unable to open" in str(exc).lower()
    psycopg = _psycopg(required=False)
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def is_data_error(exc: BaseException) -> bool:
    """The database refused one row's values (a NUL, a number out of range, a missing value):
    that row's fault, not the database's."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                        OverflowError, UnicodeEncodeError)):
        return True
    psycopg = _psycopg(required=False)
    return psycopg is not None and isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))


def reason(exc: BaseException) -> str:
    """The driver's message, first line, with libpq's "connection to server at ... failed:" cut."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "failed: " in text and text.startswith("connection"):
        text = text.split("failed: ", 1)[1]
    return without_password(text)[:300]


def _psycopg(required: bool = True) -> Any:
    """The psycopg module; None where it is not installed and not `required`."""
    try:
        import psycopg
        return psycopg
    except ImportError:
        if required:
            raise DatabaseError("a postgresql:// database needs psycopg: pip install 'fer-edge[fleet]'") from None
        return None


def _connect_postgres(target: str, password: Optional[str], readonly: bool = False) -> "psycopg.Connection[Any]":
    psycopg = _psycopg()
    from psycopg.conninfo import conninfo_to_dict
    if "@" in _userinfo(target) or "/" in _userinfo(target):   # libpq would cut there and quote the rest as the host
        raise DatabaseError(f"{describe(target)}: write an @ or / in the user name or password as %40 or %2F")
    written = _written_password(target)
    try:
        conninfo_to_dict(target)
    except psycopg.ProgrammingError as exc:   # its words quote what it could not read: the password, maybe
        why = reason(exc).replace(written, MASK) if written else reason(exc)
        raise DatabaseError(f"{describe(target)}: not a PostgreSQL address ({why})") from None
    extra = {"password": password} if password else {}
    if readonly:  # a reader stuck on a lock or a hung server gives its connection back
        extra["options"] = f"-c statement_timeout={READ_SECONDS * 1000}"
    return psycopg.connect(target, connect_timeout=CONNECT_SECONDS, application_name="fer-edge", **extra)


def _connect_sqlite(path: str, readonly: bool) -> sqlite3.Connection:
    if readonly:
        # quoted: a # ? or % in the name would end the file's name in the URI (and drop mode=ro)
        return sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=CONNECT_SECONDS,
                               check_same_thread=False)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DatabaseError(f"{path}: the folder {folder} does not exist")
    connection = sqlite3.connect(path, timeout=CONNECT_SECONDS, check_same_thread=False)  # one user at a time
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _userinfo(target: str) -> str:
    """USER:PASSWORD of a postgresql:// address, as written: up to its last @ (a raw @ or ? in the
    password is the operator's mistake, and still all of it is the password)."""
    return target.split("://", 1)[1].rpartition("@")[0] if "://" in target else ""


def _written_password(target: str) -> str:
    """The password as written in an address (user:PASSWORD@, or password=), not decoded."""
    match = re.search(r"password\s*=\s*([^\s&]+)", target, re.IGNORECASE)
    return match.group(1) if match else _userinfo(target).partition(":")[2]
