"""The fleet's database on real SQLite files (the same statements serve PostgreSQL, which
tests/edge/test_fleet.py runs): addresses and driver messages said without their passwords,
tables made once, a visit stored once and the newest state winning, a reader that cannot
write, one-line failures, and which failures are worth trying again."""

import sqlite3

import pytest

from fer_edge.fleet.fleet_db import (INSERT_VISIT, UPSERT, VISIT_COLUMNS, DatabaseError, describe, is_connection_error,
                                     is_data_error, is_postgres, open_database, reason)

VISIT = {"id": "v1", "device": "kiosk", "start": 100.0, "end": 104.0, "duration": 4.0, "frames": 40,
         "dominant": "happy", "exit_emotion": "neutral", "satisfaction": 80.0, "shares": "{}", "exit_probs": "{}",
         "ended_by": "left", "clock_step": 0.0, "stored": 105.0}


def test_addresses_are_said_without_their_passwords():
    assert is_postgres("postgresql://fer@db.example/fleet") and not is_postgres("/var/lib/fer-edge/fleet.db")
    said = describe("postgresql://fer:s3cret-pass@db.example/fleet")
    assert "s3cret-pass" not in said and "db.example" in said


def test_a_collector_creates_its_tables_in_a_new_sqlite_file(tmp_path):
    database = open_database(str(tmp_path / "fleet.db"), create=True)
    try:
        assert {"id", "device", "satisfaction"} <= database.columns("sessions")
    finally:
        database.close()


def test_a_missing_folder_or_file_is_one_line(tmp_path):
    with pytest.raises(DatabaseError, match="does not exist"):
        open_database(str(tmp_path / "no-folder" / "fleet.db"), create=True)
    with pytest.raises(DatabaseError):
        open_database(str(tmp_path / "absent.db"), readonly=True)


def test_a_visit_is_stored_once_and_the_newest_state_wins(tmp_path):
    database = open_database(str(tmp_path / "fleet.db"), create=True)
    database.create_tables()                                   # a second collector's start changes nothing
    for _ in range(2):
        database.execute(INSERT_VISIT, [VISIT[c] for c in VISIT_COLUMNS])
    database.execute(UPSERT["stats"], ("kiosk", '{"fps": 6}', 200.0, 200.0))
    database.execute(UPSERT["stats"], ("kiosk", '{"fps": 1}', 150.0, 150.0))   # older: ignored
    database.execute(UPSERT["availability"], ("kiosk", 0, 300.0, None))
    database.commit()
    assert database.rows("SELECT id FROM sessions") == [("v1",)]
    assert database.rows("SELECT stats, online, last_seen FROM devices") == [('{"fps": 6}', 0, 200.0)]
    assert {"id", "stored", "ended_by"} <= database.columns("sessions") and database.columns("absent") == set()
    database.close()


def test_a_reader_cannot_write_and_a_missing_database_is_not_made(tmp_path):
    path = tmp_path / "fleet #1?.db"          # URI characters in the name
    open_database(str(path), create=True).close()
    reader = open_database(str(path), readonly=True)
    assert reader.rows("SELECT COUNT(*) FROM sessions") == [(0,)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute(INSERT_VISIT, [VISIT[c] for c in VISIT_COLUMNS])
    reader.close()
    with pytest.raises(DatabaseError, match="no such database"):
        open_database(str(tmp_path / "absent.db"), readonly=True)
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(DatabaseError, match="the folder .* does not exist"):
        open_database(str(tmp_path / "no" / "fleet.db"), create=True)


def test_a_file_that_is_no_database_is_one_line(tmp_path):
    garbage = tmp_path / "fleet.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DatabaseError, match=f"{garbage}: file is not a database"):
        open_database(str(garbage), create=True)


def test_driver_messages_and_a_raw_at_in_the_password_never_show_it():
    assert describe("postgresql://fleet:s3cret@db:5432/fleet") == "postgresql://fleet:***@db:5432/fleet"
    assert describe("postgresql://fleet:p@ss@db/fleet") == "postgresql://fleet:***@db/fleet"
    assert reason(Exception('connection to server at "db" failed: password=s3cret refused')) == "password=*** refused"
    with pytest.raises(DatabaseError, match="write an @ or / in the user name or password as %40 or %2F") as raised:
        open_database("postgresql://fleet:p@ss@127.0.0.1:1/fleet")
    assert "p@ss" not in str(raised.value)


def test_which_failures_are_worth_trying_again():
    assert is_connection_error(sqlite3.OperationalError("database is locked"))
    assert is_connection_error(DatabaseError("db: down"))
    assert not is_connection_error(sqlite3.IntegrityError("NOT NULL constraint failed"))
    assert is_data_error(sqlite3.IntegrityError("NOT NULL constraint failed")) and is_data_error(OverflowError())
    assert not is_data_error(sqlite3.OperationalError("database is locked"))
