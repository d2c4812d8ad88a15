"""What the fleet's database says of its devices: which are up, when each was last heard of,
its backlog and frame rate, today's visitors, the model it runs and the fleet's rollouts; what
`report --health` and the fleet page show, and what `fer-edge report` prints."""

import json
import os
import time
from typing import Iterable, List, Optional, Sequence

from .fleet_db import DatabaseError, open_database, reason
from ..core.errors import UserError
from ..core.log import escaped
from ..core.records import CAMERA_LOST, CUT_ENDINGS
from .visit_report import build_report, finite, parse_since, without_nan

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
        models = {row[0]: dict(zip(MODEL_FIELDS, row[1:])) for row in database.rows(
            f"SELECT device, {', '.join(MODEL_FIELDS)} FROM device_models")} if database.columns("device_models") else {}
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
                     "sender": stats.get("sender"), "model": models.get(device)})
    return without_nan(rows)


MODEL_FIELDS = ("name", "version", "sha256", "state", "rollout", "reason", "ts")
ROLLOUT_FIELDS = ("id", "by_whom", "started", "updated", "name", "version", "sha256", "state", "reason", "canaries",
                  "targets")


def rollouts(target: str, password: Optional[str] = None, limit: int = 20) -> List[dict]:
    """The newest rollouts, each with its devices' steps and history (empty before any)."""
    database = open_database(target, password, readonly=True)
    try:
        if not database.columns("rollouts"):
            return []
        rows = database.rows(f"SELECT {', '.join(ROLLOUT_FIELDS)}, record FROM rollouts ORDER BY started DESC LIMIT ?",
                             (limit,))
    except database.errors as exc:
        raise DatabaseError(f"{database.name}: {reason(exc)}") from None
    finally:
        database.close()
    found = []
    for row in rows:
        rollout = dict(zip(ROLLOUT_FIELDS, row))
        record = _stats(row[-1])     # stored checked; read as any stored text
        rollout.update(canaries=_list(rollout["canaries"]), targets=_list(rollout["targets"]),
                       devices=record.get("devices") or {}, history=record.get("history") or [])
        found.append(rollout)
    return without_nan(found)


def _list(text: Optional[str]) -> List[str]:
    try:
        value = json.loads(text) if text else []
    except (ValueError, RecursionError):
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


def describe_model(model: Optional[dict]) -> str:
    """`name vN (state)`, or `-` where the device never said."""
    if not model:
        return "-"
    return f"{model['name']} v{model['version']} ({model['state']})"


def format_rollouts(found: List[dict], now: Optional[float] = None) -> str:
    """Each rollout in two lines at most: what, who, when, which devices, and how it ended and why."""
    now = time.time() if now is None else now
    if not found:
        return "no rollouts yet"
    lines = ["rollouts, newest first:"]
    for r in found:
        ended = f"; {r['state']}: {r['reason']}" if r["reason"] else ""
        lines.append(escaped(f"{r['id']}  {r['state']}  {r['name']} v{r['version']}  by {r['by_whom']}, started "
                               f"{_ago(r['started'], now)}, updated {_ago(r['updated'], now)}; canaries "
                               f"{', '.join(r['canaries']) or '-'}; {len(r['targets'])} devices{ended}"))
        steps = [f"{device} {step.get('state')}" for device, step in sorted(r["devices"].items()) if isinstance(step, dict)]
        if steps:
            lines.append("  " + escaped(", ".join(steps)))
    return "\n".join(lines)


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
             f"{'backlog':>9}{'fps':>8}{'stalls':>8}  model"]
    for r in rows:
        score = "-" if r["satisfaction_today"] is None else f"{r['satisfaction_today']:.0f}"
        backlog = "-" if r["outbox_pending"] is None else str(r["outbox_pending"])
        fps = "-" if r["fps"] is None else f"{r['fps']:.1f}"
        lines.append(f"{escaped(r['device']):<20}{r['status']:<9}{_ago(r['last_seen'], now):>14}{_ago(r['last_visit'], now):>14}"
                     f"{r['visits_today']:>7}{score:>9}{backlog:>9}{fps:>8}{r['camera_lost_today']:>8}"
                     f"  {escaped(describe_model(r.get('model')))}")
    return "\n".join(lines)


def fleet_overview(target: str, password: Optional[str] = None, days: int = 7) -> dict:
    """The fleet page's data: every device's state, and the fleet's visits per day."""
    return {"devices": device_health(target, password),
            "days": build_report(target, parse_since(f"{days}d"), "day", password=password),
            "rollouts": rollouts(target, password)}


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
        if output == "json":
            return json.dumps(rows)
        return format_health(rows) + "\n\n" + format_rollouts(rollouts(db_path, password))
    result = r.build_report(db_path, since_time, by, devices, password)
    if plot_path:
        r.plot(result, plot_path)
    return json.dumps(result) if output == "json" else r.format_csv(result) if output == "csv" else r.format_table(result)
