"""fer-edge report on a known database."""

import csv
import io
import json
import time

import pytest

from conftest import run_cli
from fer_edge.core.labels import LABELS
from fer_edge.core.records import Visit
from fer_edge.outputs.sinks import SQLiteLog


def shares(label):
    return {other: (1.0 if other == label else 0.0) for other in LABELS}


@pytest.fixture()
def known_db(tmp_path):
    db = tmp_path / "known.db"
    log = SQLiteLog(str(db))
    base = time.mktime(time.strptime("2026-11-20 10:05", "%Y-%m-%d %H:%M"))
    visits = [(0, "happy", "happy", 90.0), (600, "neutral", "happy", 70.0), (3700, "sad", "sad", 20.0),
              (86400 + 60, "angry", "neutral", 40.0)]
    for i, (offset, dominant, exit_emotion, score) in enumerate(visits):
        log.session(Visit(id=f"s{i}", device="kiosk-1", start=base + offset, end=base + offset + 30,
                           duration=30.0, frames=300, dominant=dominant, exit_emotion=exit_emotion,
                           satisfaction=score, shares=shares(dominant), exit_probs=shares(exit_emotion)))
    log.close()
    return db


def test_report_by_hour_json(known_db):
    result = run_cli("fer-edge", "report", "--db", known_db, "--since", "all", "--by", "hour", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [p["period"] for p in report["periods"]] == ["2026-11-20 10:00", "2026-11-20 11:00", "2026-11-21 10:00"]
    first = report["periods"][0]
    assert first["sessions"] == 2 and first["mean_satisfaction"] == 80.0
    assert first["exit_mix"]["happy"] == 1.0 and first["emotion_mix"]["neutral"] == 0.5
    assert report["total"]["sessions"] == 4 and report["total"]["mean_satisfaction"] == 55.0
    assert report["total"]["exit_mix"]["happy"] == 0.5


def test_report_by_day_table_csv_and_plot(known_db, tmp_path):
    table = run_cli("fer-edge", "report", "--db", known_db, "--since", "all", "--by", "day")
    assert "2026-11-20" in table.stdout and "total: 4 sessions, mean satisfaction 55.0/100" in table.stdout
    rows = list(csv.DictReader(io.StringIO(run_cli("fer-edge", "report", "--db", known_db, "--since", "all",
                                                   "--by", "day", "--csv").stdout)))
    assert [r["sessions"] for r in rows] == ["3", "1"] and rows[0]["mean_satisfaction"] == "60.0"
    png = tmp_path / "day.png"
    result = run_cli("fer-edge", "report", "--db", known_db, "--since", "all", "--plot", png)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_plot_has_a_real_time_axis(known_db):
    """Hours without visits keep their place: 10h, 11h and the next day's 10h are 1 and 23
    hours apart on the axis, not neighbours; satisfaction is on a 0-100 scale."""
    pytest.importorskip("matplotlib")
    from fer_edge.fleet.visit_report import build_report, figure

    fig = figure(build_report(known_db, None, "hour"))
    top, bottom = fig.axes[0], fig.axes[1]
    centres = [bar.get_x() + bar.get_width() / 2 for bar in top.patches]
    gaps = [round((b - a) * 24, 3) for a, b in zip(centres, centres[1:])]
    assert gaps == [1.0, 23.0]
    assert top.containers[0].datavalues.tolist() == [2, 1, 1]
    satisfaction = fig.axes[2]
    assert satisfaction.get_ylim()[0] == 0 and satisfaction.get_ylim()[1] >= 100
    assert [t.get_text() for t in satisfaction.texts] == ["80", "20", "40"]
    assert top.get_legend() is not None and bottom.get_legend() is not None


@pytest.mark.parametrize("by", ["hour", "day"])
def test_one_visit_reads_right(tmp_path, by):
    """One visit in one hour: every tick names another hour (or day), the title says "1 visit"."""
    pytest.importorskip("matplotlib")
    from fer_edge.fleet.visit_report import build_report, figure

    db = tmp_path / "one.db"
    log = SQLiteLog(str(db))
    start = time.mktime(time.strptime("2026-12-02 20:10", "%Y-%m-%d %H:%M"))
    log.session(Visit(id="only", device="kiosk-1", start=start, end=start + 30, duration=30.0, frames=300,
                 dominant="happy", exit_emotion="happy", satisfaction=80.0, shares=shares("happy"),
                 exit_probs=shares("happy")))
    log.close()
    fig = figure(build_report(db, None, by))
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels() if t.get_text()]
    assert len(ticks) >= 2 and len(set(ticks)) == len(ticks), ticks
    assert ("02 Dec 20:00" if by == "hour" else "Wed 02 Dec") in ticks, ticks
    assert "1 visit," in fig.axes[0].get_title(), fig.axes[0].get_title()


def test_report_errors_are_one_line(tmp_path, known_db):
    missing = run_cli("fer-edge", "report", "--db", tmp_path / "none.db")
    assert missing.returncode != 0 and "no such database" in missing.stderr
    bad = run_cli("fer-edge", "report", "--db", known_db, "--since", "yesterday")
    assert bad.returncode != 0 and "expected a span" in bad.stderr and "Traceback" not in bad.stderr
    recent = run_cli("fer-edge", "report", "--db", known_db, "--since", "1h")
    assert recent.returncode == 0 and "no sessions" in recent.stdout


@pytest.mark.parametrize("name", ["kiosk#2.db", "kiosk?2.db", "kiosk%41.db"])
def test_a_log_whose_name_holds_uri_characters_is_read_and_nothing_is_made(known_db, name):
    """The read-only URI must carry the whole name: cut at # or ?, it opened (and made) another file read-write."""
    odd = known_db.with_name(name)
    known_db.rename(odd)
    before = {p.name for p in odd.parent.iterdir()}
    result = run_cli("fer-edge", "report", "--db", odd, "--since", "all", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"]["sessions"] == 4
    assert {p.name for p in odd.parent.iterdir() if not p.name.startswith(name)} == before - {name}


def test_a_log_on_a_full_disk_is_said_to_be_on_a_full_disk(full_tmpfs, known_db):
    """Not 'not a fer-edge database': an operator who reads that may delete the log."""
    mount, fill = full_tmpfs
    log = mount / "log.db"
    log.write_bytes(known_db.read_bytes())
    fill()
    result = run_cli("fer-edge", "report", "--db", log, "--since", "all")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {log}: cannot be read while its disk is full"), result.stderr


def test_a_chart_on_a_full_disk_is_one_line_and_keeps_the_last_chart(full_tmpfs, known_db):
    mount, fill = full_tmpfs
    chart = mount / "week.png"
    chart.write_bytes(b"last week's chart")
    fill()
    result = run_cli("fer-edge", "report", "--db", known_db, "--since", "all", "--plot", chart)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines == [f"Error: --plot {chart}: cannot write (No space left on device)"], \
        result.stderr
    assert chart.read_bytes() == b"last week's chart"
    assert sorted(p.name for p in mount.iterdir()) == ["filler", "week.png"]   # no half-written temporary file
