"""What the fleet's database says of its devices: which are up, when each was last heard of,
its backlog and frame rate, and today's visitors; what `report --health` and the fleet page show,
and what `fer-edge report` prints."""

import json
import os
import time
from typing import Iterable, List, Optional, Sequence

from .fleet_db import DatabaseError, open_database, reason
from ..core.errors import UserError
from ..core.records import CAMERA_LOST, CUT_ENDINGS
from .visit_report import build_report, finite, parse_since, printable, without_nan

SILENT_SECONDS = 180.0   # online, but nothing heard for this long (three missed stats messages): stale
FINITE = 1e300           # a satisfaction outside +-this (NaN, infinity) is left out of the mean


def device_health(target: str, password: Optional[str] = None, devices: Iterable[str] = (),
                  now: Optional[float] = None) -> List[dict]:
    """One dict per device: online, last seen, outbox backlog, frames/s, camera stalls, visits today."""
    now = time.time() if now is None else now
    today = parse_since("today", now)
    database = open_database(target, password, readonly=True)
    try:
        if not database.columns("devices"):
            raise DatabaseError(f"{database.name}: not a collector's database (no devices table)")
        state = database.rows("SELECT device, online, availability_at, stats, last_seen FROM devices ORDER BY device")
        # Today's visits, camera stalls and mean satisfaction (visits cut short left out, as in reports).
        cut = ", ".join("?" * len(CUT_ENDINGS))
        today_of = {row[0]: row[1:] for row in database.rows(
            f"SELECT device, COUNT(*), SUM(CASE WHEN ended_by = ? THEN 1 ELSE 0 END), "
            f"AVG(CASE WHEN ended_by NOT IN ({cut}) AND satisfaction BETWEEN ? AND ? THEN satisfaction END) "
            f"FROM sessions WHERE start >= ? GROUP BY device",
            (CAMERA_LOST, *CUT_ENDINGS, -FINITE, FINITE, today))}
        last_visit = dict(database.rows("SELECT device, MAX(\"end\") FROM sessions GROUP BY device"))
    except database.errors as exc:
        raise DatabaseError(f"{database.name}: {reason(exc)}") from None
    finally:
        database.close()
    wanted = set(devices)
    rows = []
    for device, online, changed, stats, last_seen in state:
        if wanted and device not in wanted:
            continue
        stats = _stats(stats)
        count, stalls, satisfaction = today_of.get(device, (0, 0, None))
        last_seen, satisfaction = finite(last_seen), finite(satisfaction)
        status = "offline" if not online else "stale" if last_seen is None or now - last_seen > SILENT_SECONDS else "online"
        rows.append({"device": device, "status": status, "since": finite(changed), "last_seen": last_seen,
                     "last_visit": finite(last_visit.get(device)), "visits_today": count or 0,
                     "satisfaction_today": None if satisfaction is None else round(float(satisfaction), 1),
                     "camera_lost_today": stalls or 0, "outbox_pending": finite(stats.get("outbox_pending")),
                     "fps": finite(stats.get("fps")), "camera_lost": finite(stats.get("camera_lost")),
                     "sender": stats.get("sender")})
    return without_nan(rows)


def _stats(text: Optional[str]) -> dict:
    """A device's last stats message ({} when there is none or it cannot be read)."""
    try:
        stats = json.loads(text) if text else {}
    except (ValueError, RecursionError):   # an old row, stored before messages were checked
        return {}
    return stats if isinstance(stats, dict) else {}


def _ago(then: Optional[float], now: float) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, now - then)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def format_health(rows: List[dict], now: Optional[float] = None) -> str:
    now = time.time() if now is None else now
    if not rows:
        return "no devices heard of yet"
    lines = [f"{'device':<20}{'status':<9}{'last seen':>14}{'last visit':>14}{'today':>7}{'satisf.':>9}"
             f"{'backlog':>9}{'fps':>8}{'stalls':>8}"]
    for r in rows:
        score = "-" if r["satisfaction_today"] is None else f"{r['satisfaction_today']:.0f}"
        backlog = "-" if r["outbox_pending"] is None else str(r["outbox_pending"])
        fps = "-" if r["fps"] is None else f"{r['fps']:.1f}"
        lines.append(f"{printable(r['device']):<20}{r['status']:<9}{_ago(r['last_seen'], now):>14}{_ago(r['last_visit'], now):>14}"
                     f"{r['visits_today']:>7}{score:>9}{backlog:>9}{fps:>8}{r['camera_lost_today']:>8}")
    return "\n".join(lines)


def fleet_overview(target: str, password: Optional[str] = None, days: int = 7) -> dict:
    """The fleet page's data: every device's state, and the fleet's visits per day."""
    return {"devices": device_health(target, password),
            "days": build_report(target, parse_since(f"{days}d"), "day", password=password)}


def report(db_path: str, password_file: Optional[str], since: str, by: str, devices: Sequence[str], health: bool,
           output: str, plot_path: Optional[str]) -> str:
    """What `fer-edge report` prints for a device's log, the collector's SQLite file or
    PostgreSQL: the visits per period (`output` text, json or csv; a chart at `plot_path`),
    or with `health` the fleet's devices. The user's mistakes are said before any database opens."""
    from . import visit_report as r
    from .fleet_db import is_postgres
    from ..core.network import read_db_password

    since_time = r.parse_since(since)
    if plot_path:
        r.check_plot_path(plot_path)
    if not is_postgres(db_path) and not os.path.exists(db_path):
        raise UserError(f"{db_path}: no such database (run fer-edge run first, or pass --db)")
    password = read_db_password(password_file)
    if health:
        rows = device_health(db_path, password, devices)
        return json.dumps(rows) if output == "json" else format_health(rows)
    result = r.build_report(db_path, since_time, by, devices, password)
    if plot_path:
        r.plot(result, plot_path)
    return json.dumps(result) if output == "json" else r.format_csv(result) if output == "csv" else r.format_table(result)
