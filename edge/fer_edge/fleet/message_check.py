"""Whether one message from a device can be stored, judged alone before it meets the database.

Whatever a broker lets a client publish reaches the collector, so a message is untrusted: its
size and nesting are checked before it is parsed (deep nesting would exhaust Python's
recursion), then its fields: types, ranges, finite numbers, bounded texts without NUL
(PostgreSQL's text cannot hold one). A message that fails is the sender's fault, not the
database's: it is kept in `rejected` with the reason and never retried.

The device is the topic's (`PREFIX/<device>/<kind>`): with the broker's per-device ACL
(`pattern write fer-edge/%u/#`) the topic is what the device proved, so a payload that names
another device is a forgery.
"""

import json
import math
import re
from typing import Any, Callable, Dict, Tuple, Union

from ..core.log import unprintable
from ..core.records import MAX_DEVICE, Visit
from ..outputs.broker import topic_id

MAX_BYTES = 65_536          # a visit is under 1 KB, a stats message or a view a few KB
MAX_DEPTH = 10              # objects and lists inside each other (a device's deepest is 3)
MAX_NAME = 128              # a visit id, an emotion label, how a visit ended
MAX_TEXT = 1_000            # any other text
MAX_LABELS = 64             # entries of an emotion mix
MAX_REASON = 500            # characters of a deployment step's reason (one line)
MAX_DEVICES = 1_000         # device ids a rollout names
MAX_HISTORY = 200           # entries of a rollout's history
KEPT_CHARACTERS = 2_000     # of a rejected message, kept for a look
LARGEST_TIME = 1e10         # seconds since 1970 (the year 2286)
LARGEST_SECONDS = 1e7       # a visit's duration (about four months)
INT4, INT8 = 2**31 - 1, 2**63 - 1   # PostgreSQL's INTEGER, and the largest whole number stored at all

Rule = Tuple[str, Callable[[Any], bool]]   # (what the field must be, for the reason; whether it is)


class Rejected(ValueError):
    """A message that cannot be stored; it is kept in `rejected` with this reason, not retried."""


def shown(value: Any, longest: int = 60) -> str:
    """A value as a reason quotes it: escaped (no control characters reach a terminal) and short."""
    text = ascii(value)
    return text if len(text) <= longest else text[:longest - 3] + "..."


def bounded(payload: Union[bytes, bytearray]) -> bytes:
    """What the collector holds of a message: enough to say it is too big, never more."""
    return bytes(payload[:MAX_BYTES + 1])


def kept_copy(text: Any, characters: int = KEPT_CHARACTERS) -> str:
    """The start of a rejected message (or topic), as text any database accepts."""
    if isinstance(text, bytes):
        text = text[:characters * 4].decode("utf-8", "replace")
    text = text[:characters].replace("\x00", "\\u0000")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def topic_parts(topic: str) -> Tuple[str, str]:
    """(device, kind) of `PREFIX/<device>/<kind>`."""
    levels = topic.split("/")
    if len(levels) < 3:
        raise Rejected("not a PREFIX/DEVICE/KIND topic")
    device, kind = levels[-2], levels[-1]
    if not 0 < len(device) <= MAX_DEVICE:
        raise Rejected(f"a device id of {len(device)} characters in the topic (1 to {MAX_DEVICE} allowed)")
    _check_text(device)
    if not printable(device):
        raise Rejected(f"a device id with control characters in the topic ({shown(device)})")
    return device, kind


def printable(text: str) -> bool:
    """No control or format characters: a name that reports print cannot rewrite the terminal."""
    return not any(unprintable(char) for char in text)


def is_online(payload: bytes) -> bool:
    """An availability message: `online` or `offline`."""
    word = payload.strip()
    if word not in (b"online", b"offline"):
        raise Rejected(f"availability {shown(kept_copy(payload, 40))} is neither online nor offline")
    return word == b"online"


def read_json(payload: bytes) -> Dict[str, Any]:
    """The message as a JSON object, its size and nesting checked before parsing, every value after."""
    if len(payload) > MAX_BYTES:
        raise Rejected(f"over {MAX_BYTES:,} bytes")
    if b"\x00" in payload:
        raise Rejected("a NUL byte in the message")
    opened = payload.count(b"[") + payload.count(b"{")     # too few to nest too deep: no scan needed
    if opened > MAX_DEPTH and nesting(payload) > MAX_DEPTH:
        raise Rejected(f"nested more than {MAX_DEPTH} deep")
    try:
        value = json.loads(payload, parse_constant=_not_a_number)
    except Rejected:
        raise
    except (ValueError, RecursionError):   # UnicodeDecodeError is a ValueError
        raise Rejected("not JSON") from None
    if not isinstance(value, dict):
        raise Rejected("not a JSON object")
    _check_values(value)
    return value


_STRUCTURE = re.compile(rb'[][{}"\\]')


def nesting(payload: bytes) -> int:
    """How deep objects and lists nest (brackets inside strings do not count), without parsing;
    stops counting past MAX_DEPTH."""
    depth = deepest = 0
    in_text, escaped = False, -1
    for match in _STRUCTURE.finditer(payload):
        at = match.start()
        char = payload[at:at + 1]
        if in_text:
            if at == escaped:
                continue
            if char == b"\\":
                escaped = at + 1
            elif char == b'"':
                in_text = False
        elif char == b'"':
            in_text = True
        elif char in b"[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif char in b"]}":
            depth -= 1
    return deepest


def visit_row(payload: Dict[str, Any], device: str) -> Dict[str, Any]:
    """A visit as a row of `sessions`, stored under the topic's device."""
    _check_fields("visit", payload, VISIT, VISIT_OPTIONAL)
    _check_device(payload, device)
    row = Visit.from_json(payload).row()
    row["device"] = device
    return row


def device_state(kind: str, payload: Dict[str, Any], device: str) -> Dict[str, Any]:
    """A stats message or a view, checked; what reports read of it has the type they expect."""
    if kind not in STATE:
        raise Rejected(f"an unknown kind of message ({shown(kind)})")
    _check_fields(kind, payload, {"ts": TIME}, STATE[kind])
    _check_device(payload, device)
    return payload


def model_state(payload: Dict[str, Any], device: str) -> Dict[str, Any]:
    """A device's MODEL STATE (which model it runs, a step of a deployment), checked."""
    _check_fields("model state", payload, MODEL_STATE, MODEL_STATE_OPTIONAL)
    _check_device(payload, device)
    for part in ("model", "previous", "release"):
        if payload.get(part) is not None:
            _check_fields(f"model state's {part}", payload[part], MODEL, MODEL_OPTIONAL)
    return payload


def rollout_record(payload: Dict[str, Any], rollout: str) -> Dict[str, Any]:
    """A ROLLOUT RECORD, checked; its id is its topic's (`PREFIX-rollouts/<id>`)."""
    if not _is_rollout_id(rollout):
        raise Rejected(f"a rollout id {shown(rollout)} in the topic, not {ROLLOUT_ID[0]}")
    _check_fields("rollout record", payload, ROLLOUT, ROLLOUT_OPTIONAL)
    if payload["rollout"] != rollout:
        raise Rejected(f"names rollout {shown(payload['rollout'])} but came on the topic of rollout {shown(rollout)}")
    _check_fields("rollout record's model", payload["model"], MODEL, MODEL_OPTIONAL)
    return payload


def _not_a_number(name: str) -> None:
    raise Rejected(f"{name} is not a number a database can hold")


def _check_text(text: str) -> None:
    if len(text) > MAX_TEXT:
        raise Rejected(f"a text of {len(text):,} characters (at most {MAX_TEXT:,})")
    if "\x00" in text:
        raise Rejected("a NUL character in a text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected("a text that is not valid Unicode (a lone surrogate)") from None


def _check_values(value: Any) -> None:
    """Every text bounded and clean, every number finite and storable, however deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                _check_text(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise Rejected("a number too large to store")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT8:
            raise Rejected("a whole number too large to store")


def _check_fields(kind: str, payload: Dict[str, Any], required: Dict[str, Rule], optional: Dict[str, Rule]) -> None:
    noun = "stats message" if kind == "stats" else kind
    for name, (what, fits) in {**required, **optional}.items():
        if name not in payload:
            if name in required:
                raise Rejected(f"a {noun} without {name!r}")
        elif not fits(payload[name]):
            raise Rejected(f"a {noun} whose {name!r} is {shown(payload[name])}, not {what}")


def _check_device(payload: Dict[str, Any], device: str) -> None:
    """A payload's device, where it names one, is the topic's (as the device's sink writes it there)."""
    named = payload.get("device", device)
    if named != device and topic_id(str(named)) != device:
        raise Rejected(f"names device {shown(named)} but came on the topic of device {shown(device)}")


def _is_number(value: Any, whole: bool = False) -> bool:
    return isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)


def _number(low: float, high: float, whole: bool = False, null: bool = False) -> Rule:
    what = f"{'a whole number' if whole else 'a number'} from {low:g} to {high:g}{' or null' if null else ''}"
    return what, lambda v: (null and v is None) or (_is_number(v, whole) and low <= v <= high)


def _name(longest: int = MAX_NAME, null: bool = False) -> Rule:
    return (f"a text of 1 to {longest} printable characters{' or null' if null else ''}",
            lambda v: (null and v is None) or (isinstance(v, str) and 0 < len(v) <= longest and printable(v)))


TIME = _number(0, LARGEST_TIME)
MIX: Rule = (f"an object of up to {MAX_LABELS} labels, each a number from 0 to 1",
             lambda v: isinstance(v, dict) and len(v) <= MAX_LABELS
             and all(0 < len(k) <= MAX_NAME and printable(k) and _is_number(x) and 0 <= x <= 1 for k, x in v.items()))
VISIT: Dict[str, Rule] = {
    "id": _name(), "device": _name(MAX_DEVICE), "start": TIME, "end": TIME, "duration": _number(0, LARGEST_SECONDS),
    "frames": _number(0, INT4, whole=True), "shares": MIX, "dominant": _name(), "exit_emotion": _name(),
    "exit_probs": MIX, "satisfaction": _number(0, 100)}
VISIT_OPTIONAL: Dict[str, Rule] = {
    "tracks": ("a list of whole numbers", lambda v: isinstance(v, list) and all(_is_number(x, True) for x in v)),
    "ended_by": _name(), "clock_step": _number(-LARGEST_TIME, LARGEST_TIME)}
# What reports, the fleet page and the documented Grafana panels read of a device's state.
STATE: Dict[str, Dict[str, Rule]] = {
    "stats": {"device": _name(MAX_DEVICE), "fps": _number(0, 1e6, null=True),
              "outbox_pending": _number(0, INT4, whole=True, null=True),
              "camera_lost": _number(0, INT4, whole=True, null=True), "sender": _name(MAX_TEXT, null=True)},
    "view": {"device": _name(MAX_DEVICE), "people": _number(0, INT4, whole=True), "label": _name(null=True),
             "confidence": _number(0, 1, null=True), "probs": MIX},
}


def _is_rollout_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value) is not None


def _one_of(words: Tuple[str, ...], null: bool = False) -> Rule:
    return (f"one of {', '.join(words)}{' or null' if null else ''}", lambda v: (null and v is None) or v in words)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_figures(value: Any) -> bool:
    """A device's figures before or after a swap: numbers (or null), and the emotions' shares."""
    return isinstance(value, dict) and len(value) <= 32 and all(
        printable(k) and (x is None or _is_number(x) or (k == "emotions" and MIX[1](x))) for k, x in value.items())


def _is_step(value: Any) -> bool:
    """One device's step in a rollout record: {state, at, reason}."""
    return (isinstance(value, dict) and _name()[1](value.get("state")) and TIME_OR_NULL[1](value.get("at"))
            and REASON[1](value.get("reason")))


def _is_event(value: Any) -> bool:
    """One entry of a rollout's history: {at, event, by, detail}."""
    return (isinstance(value, dict) and TIME[1](value.get("at")) and _name()[1](value.get("event"))
            and _name()[1](value.get("by")) and REASON[1](value.get("detail")))


MODEL_STATES = ("running", "received", "trial", "kept", "rolled back", "refused", "unjudged")
ROLLOUT_STATES = ("canary", "promoted", "done", "rolled back", "stopped")
ROLLOUT_ID: Rule = ("1 to 64 letters, digits, '.', '_' or '-'", _is_rollout_id)
REASON = _name(MAX_REASON, null=True)
TIME_OR_NULL = _number(0, LARGEST_TIME, null=True)
DEVICES: Rule = (f"a list of up to {MAX_DEVICES:,} device ids",
                 lambda v: isinstance(v, list) and len(v) <= MAX_DEVICES and all(_name(MAX_DEVICE)[1](x) for x in v))
MODEL: Dict[str, Rule] = {
    "name": _name(), "version": _number(0, INT4, whole=True),
    "sha256": ("64 hex digits (or empty: never deployed)",
               lambda v: isinstance(v, str) and re.fullmatch(r"([0-9a-f]{64})?", v) is not None)}
MODEL_OPTIONAL: Dict[str, Rule] = {
    "labels": (f"a list of up to {MAX_LABELS} labels",
               lambda v: isinstance(v, list) and len(v) <= MAX_LABELS and all(_name()[1](x) for x in v))}
MODEL_STATE: Dict[str, Rule] = {"msg_id": _name(64), "device": _name(MAX_DEVICE), "ts": TIME,
                                "model": ("an object", _is_object), "state": _one_of(MODEL_STATES)}
MODEL_STATE_OPTIONAL: Dict[str, Rule] = {
    "group": _name(null=True), "rollout": (f"{ROLLOUT_ID[0]}, or null", lambda v: v is None or _is_rollout_id(v)),
    "previous": ("an object or null", lambda v: v is None or _is_object(v)),
    "release": ("an object or null", lambda v: v is None or _is_object(v)), "reason": REASON,
    "before": ("figures (an object) or null", lambda v: v is None or _is_figures(v)),
    "after": ("figures (an object) or null", lambda v: v is None or _is_figures(v))}
ROLLOUT: Dict[str, Rule] = {
    "msg_id": _name(64), "rollout": ROLLOUT_ID, "by": _name(), "started": TIME, "updated": TIME,
    "model": ("an object", _is_object), "canaries": DEVICES, "targets": DEVICES, "state": _one_of(ROLLOUT_STATES)}
ROLLOUT_OPTIONAL: Dict[str, Rule] = {
    "reason": REASON, "order_sha256": ("64 hex digits", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None),
    "devices": (f"an object of up to {MAX_DEVICES:,} device ids, each {{state, at, reason}}",
                lambda v: isinstance(v, dict) and len(v) <= MAX_DEVICES
                and all(_name(MAX_DEVICE)[1](k) and _is_step(x) for k, x in v.items())),
    "history": (f"a list of up to {MAX_HISTORY} events, each {{at, event, by, detail}}",
                lambda v: isinstance(v, list) and len(v) <= MAX_HISTORY and all(_is_event(x) for x in v))}
