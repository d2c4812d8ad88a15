"""`fer-edge report`: what the visitors' sessions in the local database say, per hour or day."""

import csv
import io
import json
import math
import os
import re
import time
from collections import Counter
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .fleet_db import DatabaseError, describe, open_database, reason
from ..outputs.store import is_disk_full
from ..core.atomic import write_atomically
from ..core.clock import start_of_today
from ..core.errors import UserError
from ..core.labels import LABELS, colour, pleasant_first
from ..core.log import escaped
from ..core.records import CUT_ENDINGS

PERIODS = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d"}
HOURLY_UP_TO = 2 * 86400   # "auto": a span up to two days is drawn in hours, a longer one in days
PLOT_FORMATS = (".png", ".svg", ".pdf")
# A visit as the report reads it: (satisfaction, exit emotion, shares per emotion, dominant, ended by)
Item = Tuple[Optional[float], Any, Dict[str, float], Any, Any]


def finite(value: Any) -> Optional[float]:
    """A number as stored, or None where it is not one (NaN, infinity, text): a report's means
    and the page's JSON hold numbers only."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:   # a whole number past any float (an old row's)
        return None


def without_nan(value: Any) -> Any:
    """`value` with every NaN or infinity in it (at any depth) replaced by None: valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(item) for item in value]
    return value


def _shares_of(text: Any) -> Dict[str, float]:
    """A visit's stored shares per emotion, the numbers only ({} when they cannot be read)."""
    try:
        shares = json.loads(text)
    except (TypeError, ValueError):
        return {}
    if not isinstance(shares, dict):
        return {}
    return {str(k): v for k, v in shares.items() if finite(v) is not None}


def parse_since(text: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """'24h', '7d', '30m', '2w', 'today' or 'all' -> unix start time (None for all)."""
    now = time.time() if now is None else now
    if text in (None, "", "all"):
        return None
    if text == "today":
        return start_of_today(now)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([mhdw])", text.strip())
    if not match:
        raise UserError(f"--since {text!r}: expected a span such as 30m, 24h, 7d, 2w, 'today' or 'all'")
    value, unit = float(match.group(1)), match.group(2)
    start = now - value * {"m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    return start if start > 0 else None   # from before 1970: everything


def periods_for(since: Optional[float], first: Optional[float], now: float) -> str:
    """`--by auto`: hours for a span of up to two days, days for a longer one (a week's chart
    has seven bars, not 168); the span runs from `since` (else the first visit) to now."""
    start = since if since is not None else first
    return "hour" if start is None or now - start <= HOURLY_UP_TO else "day"


def check_plot_path(path: str) -> None:
    """Refuse a chart file matplotlib cannot write, before the report is built."""
    if not path.lower().endswith(PLOT_FORMATS):
        raise UserError(f"--plot {path}: expected a {', '.join(PLOT_FORMATS[:-1])} or {PLOT_FORMATS[-1]} file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--plot {path}: no such folder {folder}")


def _mix(counter: Mapping[str, float], total: int, labels: Sequence[str]) -> Dict[str, float]:
    return {label: round(counter.get(label, 0) / total, 4) if total else 0.0 for label in labels}


def _labels_of(shares: Iterable[Dict[str, float]]) -> Tuple[str, ...]:
    """The labels the visits were read with, in the models' order: FER2013's seven when
    there are no visits; the union where devices run models with different labels."""
    seen: Dict[str, None] = {}
    for mix in shares:
        seen.update(dict.fromkeys(mix))
    return tuple(seen) or LABELS


def _query(target: str, columns: Sequence[str], tail: str, args: Sequence[Any],
           password: Optional[str] = None) -> List[tuple]:
    """Rows of the sessions table of a device's log or the fleet's database, read-only; a log
    from before `ended_by` reads as 'left'."""
    database = open_database(target, password, readonly=True)
    try:
        known = database.columns("sessions")
        if not known:
            raise DatabaseError(f"{database.name}: not a fer-edge database with sessions")
        names = ", ".join("'left'" if c == "ended_by" and c not in known else c for c in columns)
        return database.rows(f"SELECT {names} FROM sessions {tail}", args)
    except database.errors as exc:
        if is_disk_full(exc):   # SQLite reads a log in WAL mode only with room for its -shm file beside it
            raise DatabaseError(f"{database.name}: cannot be read while its disk is full ({reason(exc)}); "
                                "free some space beside it") from None
        raise DatabaseError(f"{database.name}: not a fer-edge database with sessions ({reason(exc)})") from None
    finally:
        database.close()


def recent_visits(db_path: str, limit: int = 20) -> List[dict]:
    """The newest finished visits, newest first: when, how long, how the visitor looked and left."""
    columns = ("start", "duration", "dominant", "exit_emotion", "satisfaction", "ended_by")
    rows = _query(db_path, columns, "ORDER BY start DESC LIMIT ?", (limit,))
    return [dict(zip(columns, row)) for row in rows]


def build_report(target: str, since: Optional[float] = None, by: str = "hour", devices: Sequence[str] = (),
                 password: Optional[str] = None) -> dict:
    """Visits per period (and per device, where there are several or some are picked); `by`
    "hour", "day" or "auto" (periods_for)."""
    where = "WHERE start >= ?"
    args: List[Any] = [since or 0]
    if devices:
        where += f" AND device IN ({', '.join('?' * len(devices))})"
        args += list(devices)
    rows = _query(target, ("start", "satisfaction", "exit_emotion", "shares", "dominant", "ended_by", "device"),
                  f"{where} ORDER BY start", args, password)
    now = time.time()
    if by == "auto":
        by = periods_for(since, min((r[0] for r in rows if finite(r[0]) is not None), default=None), now)
    groups: Dict[str, list] = {}
    per_device: Dict[str, list] = {}
    for start, score, exit_emotion, shares, dominant, why, device in rows:
        if finite(start) is None:
            continue  # a visit without a time has no period
        key = time.strftime(PERIODS[by], time.localtime(start))
        item = (finite(score), exit_emotion, _shares_of(shares), dominant, why)
        groups.setdefault(key, []).append(item)
        per_device.setdefault(device, []).append(item)
    everything = [item for items in groups.values() for item in items]
    labels = _labels_of(item[2] for item in everything)
    periods = [dict(period=key, **_summarise(items, labels)) for key, items in groups.items()]
    report = {"db": describe(str(target)), "since": since, "until": now, "by": by, "labels": list(labels),
              "periods": periods,
              "total": _summarise(everything, labels)}
    if devices or len(per_device) > 1:
        report["devices"] = [dict(device=name, **_summarise(items, labels)) for name, items in sorted(per_device.items())]
    return without_nan(report)


def empty_report(since: Optional[float] = None, by: str = "hour") -> dict:
    """What build_report says of a log that has no visits yet."""
    return {"db": None, "since": since, "by": by, "labels": list(LABELS), "periods": [], "total": _summarise([], LABELS)}


def _summarise(items: Sequence[Item], labels: Sequence[str]) -> dict:
    """Visits cut by a stop, a restart or a lost camera count as visits, but not in the
    satisfaction: their exit emotion is the moment of the cut, not of leaving."""
    n = len(items)
    emotion: Counter = Counter()   # shares summed per emotion
    for item in items:
        emotion.update(item[2])
    scored = [i[0] for i in items if i[4] not in CUT_ENDINGS and i[0] is not None]
    return {"sessions": n, "cut_by_stop": sum(1 for i in items if i[4] in CUT_ENDINGS),
            "mean_satisfaction": round(sum(scored) / len(scored), 1) if scored else None,
            "exit_mix": _mix(Counter(i[1] for i in items), n, labels),
            "emotion_mix": _mix(emotion, n, labels)}


def format_table(report: dict) -> str:
    lines = [f"{'period':<18}{'sessions':>9}{'satisfaction':>14}  exit emotions"]
    lines += [_row(p["period"], p) for p in report["periods"]]
    t = report["total"]
    if not t["sessions"]:
        return "no sessions in this period"
    mix, exits = _shares(t["emotion_mix"], least=0.005), _shares(t["exit_mix"])
    score = "-" if t["mean_satisfaction"] is None else f"{t['mean_satisfaction']:.1f}/100"
    cut = f" ({t['cut_by_stop']} cut by a stop, left out of the satisfaction)" if t["cut_by_stop"] else ""
    lines += ["", f"total: {t['sessions']} sessions{cut}, mean satisfaction {score}",
              f"how visitors looked: {mix}", f"how they left: {exits}"]
    if report.get("devices"):
        lines += ["", f"{'device':<18}{'sessions':>9}{'satisfaction':>14}  exit emotions"]
        lines += [_row(d["device"], d) for d in report["devices"]]
    return "\n".join(lines)


def _shares(mix: Mapping[str, float], least: float = 1e-9) -> str:
    """'happy 60%, neutral 40%': the emotions of a mix, largest first."""
    return ", ".join(f"{escaped(k)} {v * 100:.0f}%" for k, v in sorted(mix.items(), key=lambda kv: -kv[1]) if v >= least)


def _row(name: str, summary: dict) -> str:
    """One line of the table: a period's or a device's visits, satisfaction and exit emotions."""
    score = "-" if summary["mean_satisfaction"] is None else f"{summary['mean_satisfaction']:.1f}"
    return f"{escaped(name):<18}{summary['sessions']:>9}{score:>14}  {_shares(summary['exit_mix'])}"


def format_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    labels = report["labels"]
    writer.writerow(["period", "sessions", "mean_satisfaction", *(f"exit_{escaped(label)}" for label in labels),
                     *(f"emotion_{escaped(label)}" for label in labels)])
    for p in report["periods"]:
        writer.writerow([p["period"], p["sessions"], p["mean_satisfaction"], *(p["exit_mix"][label] for label in labels),
                         *(p["emotion_mix"][label] for label in labels)])
    return out.getvalue()


def plot(report: dict, out_png: str) -> None:
    """The report's figure as a PNG (or SVG, PDF), written whole or not at all: a chart that
    cannot be written (a full disk) leaves no empty file and the last chart as it was."""
    fig = figure(report)  # first: it says how to install matplotlib when it is missing
    import matplotlib.pyplot as plt

    image = io.BytesIO()
    fig.savefig(image, dpi=100, format=os.path.splitext(out_png)[1][1:].lower())
    plt.close(fig)
    try:
        write_atomically(out_png, image.getvalue())
    except OSError as exc:
        raise UserError(f"--plot {out_png}: cannot write ({exc.strerror or exc})") from None


def figure(report: dict) -> Any:
    """Two panels a shop owner can read, on a real time axis (hours or days without visits
    keep their place, and the axis spans the whole period asked for): visitors and mean
    satisfaction (0-100) per period, and how they left."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise OSError("--plot needs matplotlib: pip install 'fer-edge[report]'") from None
    from datetime import datetime, timedelta

    periods = report["periods"]
    hourly = report["by"] == "hour"
    times = [datetime.strptime(p["period"], PERIODS[report["by"]]) for p in periods]
    asked = [report.get("since"), report.get("until")] if report.get("since") is not None else []
    ends = times + [datetime.strptime(time.strftime(PERIODS[report["by"]], time.localtime(t)), PERIODS[report["by"]])
                    for t in asked if t is not None]
    width = timedelta(hours=0.8) if hourly else timedelta(days=0.8)
    span = (max(ends) - min(ends)) / (timedelta(hours=1) if hourly else timedelta(days=1)) if ends else 0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(16, max(8, 0.3 * span + 5)), 7), sharex=True)
    bars = top.bar(times, [p["sessions"] for p in periods], width=width, color="#90caf9", label="visitors")
    top.bar_label(bars)
    top.set_ylabel("visitors")
    top.yaxis.get_major_locator().set_params(integer=True)
    twin = top.twinx()
    scores = [float("nan") if p["mean_satisfaction"] is None else p["mean_satisfaction"] for p in periods]
    twin.plot(times, scores, "o", color="#e65100", label="mean satisfaction")
    for when, score in zip(times, scores):
        if score == score:
            twin.annotate(f"{score:.0f}", (when, score), textcoords="offset points", xytext=(0, 6), ha="center",
                          fontsize=8, color="#e65100")
    twin.set_ylim(0, 105)
    twin.set_ylabel("mean satisfaction (0-100)", color="#e65100")
    handles = [bars, twin.get_lines()[0]]
    top.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    total = report["total"]
    score = "-" if total["mean_satisfaction"] is None else f"{total['mean_satisfaction']:.0f}/100"
    visits = f"{total['sessions']} visit{'' if total['sessions'] == 1 else 's'}"
    top.set_title(f"Visitors and satisfaction: {visits}, mean satisfaction {score}")
    stacked = [0.0] * len(periods)
    for label in pleasant_first(report["labels"]):
        values = [p["exit_mix"][label] * 100 for p in periods]
        bottom.bar(times, values, bottom=stacked, width=width, label=label, color=colour(label))
        stacked = [a + v for a, v in zip(stacked, values)]
    bottom.set_ylabel("how they left (% of visitors)")
    bottom.set_ylim(0, 100)
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="exit emotion", title_fontsize=8)
    # Whole hours or days only, a period's room on each side: one visit in one hour reads as
    # one labelled tick, not a dozen ticks that all say the same hour.
    if ends:
        bottom.set_xlim(min(ends) - 2 * width, max(ends) + 2 * width)
        step = max(1, -(-int(span + 3) // 12))
        bottom.xaxis.set_major_locator(mdates.HourLocator(interval=step) if hourly else mdates.DayLocator(interval=step))
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %H:00" if hourly else "%a %d %b"))
    bottom.set_xlabel("hour" if hourly else "day")
    plt.setp(bottom.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    return fig
