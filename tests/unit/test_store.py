"""The device's one SQLite file, on real files: made private and current, claimed by one run,
a damaged, foreign or newer file kept aside with its visits copied over, an older one migrated
in place, and visits spilled on a full disk replayed at the next start."""

import os
import sqlite3

import pytest

from fer_edge.core.errors import UserError
from fer_edge.outputs.store import (SCHEMA_VERSION, TABLES, Spill, StoreFile, StoreInUse, column_names, connect,
                                    insert_sql, migrate)

VISIT = {"id": "visit-1", "device": "kiosk", "start": 1.0e9, "end": 1.0e9 + 4, "duration": 4.0, "frames": 40,
         "dominant": "happy", "exit_emotion": "neutral", "satisfaction": 70.0, "shares": '{"happy": 1.0}',
         "exit_probs": '{"neutral": 1.0}'}


def open_store(path, said=None):
    return StoreFile(str(path), (said if said is not None else []).append)


def rows(path, sql):
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def write_visit(path, version=SCHEMA_VERSION):
    db = connect(str(path))
    migrate(db)
    with db:
        db.execute(insert_sql("sessions", list(VISIT)), list(VISIT.values()))
        db.execute(f"PRAGMA user_version = {version}")
    db.close()


def test_a_new_store_is_private_current_and_has_every_table(tmp_path):
    store = open_store(tmp_path / "state" / "fer-edge.db")
    store.close()
    path = tmp_path / "state" / "fer-edge.db"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert {name for (name,) in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")} >= set(TABLES)
    assert [c for (_, c, *_) in rows(path, "PRAGMA table_info(sessions)")] == column_names("sessions")


def test_a_second_writer_is_refused_in_one_line_until_the_first_closes(tmp_path):
    first = open_store(tmp_path / "fer-edge.db")
    with pytest.raises(StoreInUse, match="in use by another fer-edge run; give each run its own --db"):
        open_store(tmp_path / "fer-edge.db")
    first.close()
    open_store(tmp_path / "fer-edge.db").close()


def test_a_folder_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    with pytest.raises(UserError, match="not a file the log can be kept in"):
        open_store(folder)
    assert folder.is_dir() and os.listdir(tmp_path) == ["logs"]


def test_garbage_is_kept_aside_and_a_fresh_store_starts(tmp_path):
    path = tmp_path / "fer-edge.db"
    path.write_bytes(b"\x00garbage after a power cut" * 200)
    said = []
    store = open_store(path, said)
    store.close()
    assert store.kept_aside and open(store.kept_aside, "rb").read().startswith(b"\x00garbage")
    assert len(said) == 1 and f"kept aside as {store.kept_aside} and a fresh log started" in said[0]
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_newer_file_is_kept_aside_with_its_visits_copied_over(tmp_path):
    path = tmp_path / "fer-edge.db"
    write_visit(path, version=SCHEMA_VERSION + 1)
    said = []
    open_store(path, said).close()
    assert "written by a newer fer-edge" in said[0] and "(1 visits copied over)" in said[0]
    assert rows(path, "SELECT id, satisfaction FROM sessions") == [("visit-1", 70.0)]


def test_a_table_of_another_shape_is_foreign(tmp_path):
    path = tmp_path / "fer-edge.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE sessions (id TEXT, mood TEXT)")
        db.execute("INSERT INTO sessions VALUES ('x', 'meh')")
    said = []
    store = open_store(path, said)
    store.close()
    assert "table sessions has other columns (mood" in said[0] and store.kept_aside
    assert rows(store.kept_aside, "SELECT * FROM sessions") == [("x", "meh")]   # nothing of the user's is lost


def test_an_older_file_is_migrated_in_place(tmp_path):
    path = tmp_path / "fer-edge.db"
    old = [(n, d) for n, d in TABLES["sessions"] if n not in ("ended_by", "clock_step")]
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE sessions ({', '.join(f'{n} {d}' for n, d in old)})")
        db.execute(insert_sql("sessions", list(VISIT)), list(VISIT.values()))
        db.execute("PRAGMA user_version = 1")
    said = []
    store = open_store(path, said)
    store.close()
    assert said == [] and store.kept_aside is None
    assert rows(path, 'SELECT id, ended_by, clock_step FROM sessions') == [("visit-1", "left", 0.0)]


def test_spilled_visits_come_back_at_the_next_start_and_a_cut_line_is_skipped(tmp_path):
    path = tmp_path / "fer-edge.db"
    open_store(path).close()
    spill = Spill(str(path) + ".spill")
    assert spill.size == Spill.SIZE and spill.add("sessions", VISIT)
    assert spill.add("sessions", {**VISIT, "id": "visit-2"})
    os.pwrite(spill.fd, b'{"table": "sessions", "row": {"id": "cut', spill.used)   # a power cut mid-line
    assert not spill.add("sessions", {**VISIT, "id": "x" * Spill.SIZE}), "no room: the caller counts it"
    spill.close()
    said = []
    open_store(path, said).close()
    assert said == [f"2 visit records kept in {path}.spill while the disk was full are back in the log"]
    assert rows(path, "SELECT id FROM sessions ORDER BY id") == [("visit-1",), ("visit-2",)]
    again = Spill(str(path) + ".spill")
    assert again.records() == [] and os.path.getsize(again.path) == Spill.SIZE   # cleared, still reserved
    again.close()
