"""What one message from the broker becomes in the fleet's database: a visit, a device's state,
a device's model state, a rollout record, or a rejection that says why.

Devices' visits, stats, views and availability come on `PREFIX/<device>/<kind>`; deployments
add each device's MODEL STATE (`PREFIX/<device>/model`) and the controller's ROLLOUT RECORDs
(`PREFIX-rollouts/<id>`). The last two are retained and reach every collector (a shared
subscription never gets retained messages), so their rows are upserts and inserts by id:
stored twice, they are stored once."""

import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .fleet_db import (INSERT_MODEL_EVENT, INSERT_REJECTED, INSERT_VISIT, UPSERT, UPSERT_DEVICE_MODEL, UPSERT_ROLLOUT,
                       VISIT_COLUMNS)
from .handover import Link
from .message_check import (Rejected, device_state, is_online, kept_copy, model_state, read_json, rollout_record,
                            topic_parts, visit_row)

# The order rows are written in within a batch, the same in every collector, by statement then
# key: two collectors' transactions never wait on each other in a circle.
WRITE_ORDER = {INSERT_VISIT: 0, **{statement: 1 for statement in UPSERT.values()}, UPSERT_DEVICE_MODEL: 2,
               INSERT_MODEL_EVENT: 3, UPSERT_ROLLOUT: 4}


@dataclass
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float
    connection: int                    # which broker connection delivered it (its mid is only valid there)
    link: Optional[Link] = None        # the connection's client: its own, or a taken-over collector's


@dataclass(frozen=True)
class Row:
    """What one message becomes in the database (a model state becomes two rows)."""
    kind: str                          # session, stats, view, availability, model, rollout, or rejected
    statement: str
    args: tuple
    message: Message


def history_topics(prefix: str) -> List[str]:
    """The retained topics every collector reads whole (not shared): model states and rollouts."""
    return [f"{prefix}/+/model", f"{prefix}-rollouts/+"]


def row_for(message: Message) -> Tuple[str, tuple]:
    """(statement, arguments) that store one device message, under the device its topic names; a
    message that fails its checks (message_check) raises Rejected."""
    device, kind = topic_parts(message.topic)
    if kind == "availability":
        online = is_online(message.payload)
        return UPSERT["availability"], (device, int(online), message.received, message.received if online else None)
    payload = read_json(message.payload)
    if kind == "session":
        row = visit_row(payload, device)
        row["stored"] = time.time()
        return INSERT_VISIT, tuple(row[c] for c in VISIT_COLUMNS)
    state = device_state(kind, payload, device)
    return UPSERT[kind], (device, json.dumps(state), state["ts"], message.received)


def rows_of(message: Message, prefix: str = "fer-edge") -> List[Row]:
    """The rows of one message; one in `rejected` with the reason when it fails its checks."""
    history = message.topic.startswith(f"{prefix}-rollouts/") or message.topic.endswith("/model")
    if history and not message.payload:
        return []    # a retained record cleared: nothing to store
    try:
        if message.topic.startswith(f"{prefix}-rollouts/"):
            return [Row("rollout", *rollout_row(message.topic.split("/", 1)[1], message.payload), message)]
        if message.topic.endswith("/model"):
            return [Row("model" if n == 0 else "", statement, args, message)
                    for n, (statement, args) in enumerate(model_rows(topic_parts(message.topic)[0], message.payload))]
        statement, args = row_for(message)
        return [Row(message.topic.rsplit("/", 1)[-1], statement, args, message)]
    except Rejected as exc:
        return [rejection(message, str(exc))]


def rejection(message: Message, why: str) -> Row:
    """The message kept in `rejected` with the reason: its start only, as text any database takes."""
    args = (kept_copy(message.topic, 300), kept_copy(message.payload), kept_copy(why, 500), message.received)
    return Row("rejected", INSERT_REJECTED, args, message)


def model_rows(device: str, payload: bytes) -> List[Tuple[str, tuple]]:
    """A MODEL STATE: the step into `model_events` (once by its msg_id), and what the device
    runs now into `device_models` (the newest by its time wins)."""
    state = model_state(read_json(payload), device)
    model, release, stored = state["model"], state.get("release") or {}, time.time()
    event = (state["msg_id"], device, state["ts"], state["state"], state.get("rollout"), model["name"], model["version"],
             model["sha256"], release.get("version"), state.get("reason"), _text(state.get("before")),
             _text(state.get("after")), stored)
    now = (device, model["name"], model["version"], model["sha256"], json.dumps(model.get("labels") or []),
           state["state"], state.get("rollout"), state.get("reason"), state["ts"], stored)
    return [(INSERT_MODEL_EVENT, event), (UPSERT_DEVICE_MODEL, now)]


def rollout_row(rollout: str, payload: bytes) -> Tuple[str, tuple]:
    """A ROLLOUT RECORD: the rollout's row, the newest record (by `updated`) winning."""
    record = rollout_record(read_json(payload), rollout)
    model = record["model"]
    return UPSERT_ROLLOUT, (rollout, record["by"], record["started"], record["updated"], model["name"], model["version"],
                            model["sha256"], record["state"], record.get("reason"), json.dumps(record["canaries"]),
                            json.dumps(record["targets"]), json.dumps(record), time.time())


def write_order(row: Row) -> Tuple[int, str]:
    """Where a row goes in its batch: by statement, then by key (rejections last)."""
    rank = WRITE_ORDER.get(row.statement)
    return (9, "") if rank is None else (rank, str(row.args[0]))


def _text(value: Optional[Dict[str, Any]]) -> Optional[str]:
    return None if value is None else json.dumps(value)
