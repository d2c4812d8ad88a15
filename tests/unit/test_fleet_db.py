"""The fleet's database: addresses said without their passwords, SQLite opened (and refused)
in one line, the collector's tables created on a real file."""

import pytest

from fer_edge.fleet.fleet_db import DatabaseError, describe, is_postgres, open_database


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
