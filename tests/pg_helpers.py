"""A real, throw-away PostgreSQL cluster on 127.0.0.1 for the tests: `initdb` in a temporary
folder, password authentication (scram-sha-256), stopped and removed afterwards."""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port

USER, PASSWORD = "fleet", "fleet-password-1"


def _binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    return os.path.dirname(found[-1]) if found else None


class Postgres:
    """`initdb`, `postgres` and `pg_ctl` from Debian's postgresql package, as its `postgres`
    user when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self):
        self.bin = _binaries()
        if not self.bin:
            message = "PostgreSQL is not installed (.ci/setup installs it from Debian's packages)"
            pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
        # Its own folder outside pytest's (those are private to root, and postgres must enter it).
        self.folder = Path(tempfile.mkdtemp(prefix="fer-edge-postgres-"))
        self.data, self.port = self.folder / "data", free_port()
        self.running = False
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD + "\n")
        if self.as_user:
            shutil.chown(self.folder, "postgres")
            shutil.chown(password_file, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}", "--auth=scram-sha-256",
                  "--no-sync")
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"
        self.url_without_password = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool, *args):
        subprocess.run([*self.as_user, os.path.join(self.bin, tool), *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd=self.folder)

    def start(self):
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "start", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=50")
        self.running = True
        return self

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self):
        """Stop it if it runs, and remove its folder."""
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def restart_after(self, seconds):
        self.stop()
        time.sleep(seconds)
        self.start()

    def query(self, sql):
        import psycopg

        with psycopg.connect(self.url) as connection:
            return connection.execute(sql).fetchall()


def fill_fleet_database(target, visits, states=()):
    """A collector's database (SQLite file or PostgreSQL URL) holding `visits` (Visit records)
    and `states`, (device, online, stats JSON text) each, heard of now: written with the
    collector's own statements, so it holds what a collector would have stored, old rows
    with NaN in them included."""
    from fer_edge.fleet.fleet_db import INSERT_VISIT, UPSERT, VISIT_COLUMNS, open_database

    database = open_database(str(target), create=True)
    now = time.time()
    for visit in visits:
        row = dict(visit.row(), stored=now)
        database.execute(INSERT_VISIT, [row[c] for c in VISIT_COLUMNS])
    for device, online, stats in states:
        database.execute(UPSERT["availability"], (device, int(online), now, now if online else None))
        database.execute(UPSERT["stats"], (device, stats, now, now))
    database.commit()
    database.close()
    return target
