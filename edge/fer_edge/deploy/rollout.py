"""The operator's side of a deployment (`fer-edge deploy`): it orders, the devices judge.

Everything goes through the broker the fleet already uses. The devices say which model they
run on `PREFIX/DEVICE/model` (retained), so the fleet is read from there; a signed order goes
retained to `PREFIX/DEVICE/release`, so a device that is offline gets it when it returns; the
rollout's record goes retained to `PREFIX-rollouts/ID`, where the collectors store it and
`deploy status`, `promote` and `rollback` find it. Canaries get the order first; each runs the
health gate itself (its thresholds are in the signed order). When every canary kept the model
the rest get it; when one rolled back or refused it, every device that took it gets a signed
rollback order and every retained install order is cleared, so no other device ever gets it.
"""

import getpass
import hashlib
import json
import re
import socket
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..core.errors import UserError
from ..core.log import escaped
from ..outputs.broker import topic_id
from .fleet_link import MAX_PAYLOAD, Device, Link, Say, text

FINAL = ("kept", "rolled back", "refused", "unjudged")     # a device's last word on an order
FAILED = ("rolled back", "refused")
TOOK = ("received", "trial", "kept")                       # states in which a device holds the new model
PROGRESS_SECONDS = 30.0        # a "still waiting" line this often
ROLLBACK_WAIT_SECONDS = 60.0   # how long a rollback waits for the devices to confirm
MAX_HISTORY = 200
RECORD_ROOM = 4096             # bytes a record keeps free for its reason and history
PROMOTED, ROLLED_BACK, UNDECIDED = 0, 1, 3   # exit statuses


def operator() -> str:
    """Who signs and orders: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"[:128]


def rollout_id(name: str, version: int, now: Optional[float] = None) -> str:
    """A readable, unique id, as the order allows: the model's name and version, the time, and
    six random hex digits, so two operators publishing in the same second keep two records.
    It starts with a letter or digit, so a command line never reads it as an option."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", re.sub(r"\.tflite$", "", name))[:26].lstrip("-._") or "model"
    return f"{stem}-v{version}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:6]}"


class Rollout:
    """One rollout: its record (published whole at each change) and the orders it sends."""

    def __init__(self, link: Link, record: Dict[str, Any], say: Say, key: Any = None, by: Optional[str] = None):
        self.link, self.record, self.say, self.key = link, record, say, key
        self.by = by or operator()

    @property
    def id(self) -> str:
        return str(self.record["rollout"])

    @property
    def sha256(self) -> str:
        return str(self.record["model"]["sha256"])

    def publish(self) -> None:
        now = time.time()
        self.record.update(msg_id=uuid.uuid4().hex, updated=max(now, self.record.get("updated", 0.0)))
        history = self.record["history"]
        if len(history) > MAX_HISTORY:
            self.record["history"] = history[:1] + history[-(MAX_HISTORY - 1):]
        self.link.send(f"{self.link.prefix}-rollouts/{self.id}", fitted(self.record))

    def note(self, event: str, detail: Optional[str] = None) -> None:
        self.record["history"].append({"at": time.time(), "event": event, "by": self.by, "detail": text(detail)})

    def mark(self, device: str, state: str, reason: Optional[str] = None) -> None:
        self.record["devices"][device] = {"state": state, "at": time.time(), "reason": reason}

    def state_of(self, device: str) -> str:
        return str(self.record["devices"].get(device, {}).get("state", "waiting"))

    def send_install(self, devices: Sequence[str], order: bytes) -> None:
        """The record says 'sent' before any order goes (a device's answer may come before the
        broker's acknowledgement, and a deployer killed in between leaves no order unrecorded)."""
        for device in devices:
            self.mark(device, "sent")
        self.publish()
        for device in devices:
            self.link.send(self.link.release_topic(device), order)

    def watch(self, devices: Sequence[str], seconds: float, stop_on_failure: bool = False) -> List[str]:
        """Follow `devices` until each said its last word on this rollout (or one failed, with
        `stop_on_failure`), at most `seconds`; progress lines; the devices still silent."""
        deadline, said = time.monotonic() + seconds, time.monotonic()
        while True:
            waiting = [d for d in devices if self.state_of(d) not in FINAL]
            failed = [d for d in devices if self.state_of(d) in FAILED]
            if not waiting or (stop_on_failure and failed) or time.monotonic() >= deadline:
                return waiting
            if time.monotonic() - said >= PROGRESS_SECONDS:
                said = time.monotonic()
                self.say(f"waiting for {', '.join(f'{d} ({self.state_of(d)})' for d in waiting)}: "
                         f"{deadline - time.monotonic():.0f} s left")
            heard = self.link.wait(min(1.0, deadline - time.monotonic()))
            if heard is not None and heard.id in devices:
                self._heard(heard)

    def _heard(self, state: Device) -> None:
        step = self._take(state)
        if step is not None:
            self.say(step)
            self.publish()

    def _take(self, state: Device, sent: bool = False) -> Optional[str]:
        """A device's new step in this rollout marked; `device: step: reason`, or None. A
        device still 'waiting' was not sent the order, unless `sent` (the record may be older
        than the send)."""
        device = state.id
        step = state.step(self.id)
        if step is None or step == self.state_of(device) or (self.state_of(device) == "waiting" and not sent):
            return None
        reason = text(state.state.get("reason"))
        self.mark(device, step, reason)
        return f"{device}: {step}" + (f": {reason}" if reason else "")

    def catch_up(self, publish: bool = True) -> None:
        """What its devices said of it while no deployer listened (one killed, the broker away):
        each device's retained MODEL STATE that names this rollout (its id comes with the order)."""
        steps = [self._take(device, sent=True) for device in self.link.known().values()
                 if device.id in self.record["devices"] and device.state.get("rollout") == self.id]
        if any(steps) and publish:
            self.publish()

    def roll_back(self, why: str, by_hand: bool = False) -> List[str]:
        """Every device sent the install: a signed rollback order where it may hold the model,
        the install order cleared elsewhere; waits for their word; the devices still silent."""
        if self.key is None:
            raise UserError("a rollback order is signed: give the deploy key (--key)")
        from .order import rollback_header, sign_order

        order = sign_order(rollback_header(self.id, self.sha256, self.by), b"", self.key)
        known, ordered = self.link.known(), []
        for device in sorted(self.record["devices"]):
            if self.state_of(device) == "waiting":
                continue                               # never sent: nothing to take back
            state = known.get(device)
            # It may hold the model, or may be taking it now: an order to go back. Offline and
            # never said it took it: the install order is cleared, so it never gets it.
            holds = self.state_of(device) in TOOK or (state is not None and (
                state.runs(self.sha256) or (self.state_of(device) == "sent" and state.online is not False)))
            self.link.send(self.link.release_topic(device), order if holds else b"")
            if holds:
                ordered.append(device)
                self.mark(device, "rollback sent")
        self.record.update(state="rolled back", reason=text(why))
        self.note("rolled back by hand" if by_hand else "rolled back", why)
        self.publish()
        self.say(f"rolled back: {why}; rollback orders sent to {', '.join(ordered) or 'no device'}, "
                 "every other install order cleared")
        silent = self._confirm(ordered, ROLLBACK_WAIT_SECONDS)
        if silent:
            self.say(f"no answer yet from {', '.join(silent)}: each gets the rollback order when it returns")
        return silent

    def _confirm(self, devices: List[str], seconds: float) -> List[str]:
        """Wait for each device to leave the model; its rollback order is then cleared."""
        deadline, waiting = time.monotonic() + seconds, list(devices)
        while waiting and time.monotonic() < deadline:
            known = self.link.known()
            for device in list(waiting):
                state = known.get(device)
                if state and not state.runs(self.sha256) and state.state.get("state") in ("rolled back", "running",
                                                                                          "refused"):
                    waiting.remove(device)
                    self.mark(device, "rolled back", text(state.state.get("reason")))
                    self.link.send(self.link.release_topic(device), b"")
                    self.say(f"{device}: back on {state.runs_now()}")
                    self.publish()
            self.link.wait(min(1.0, max(0.0, deadline - time.monotonic())))
        return waiting

    def promote(self, order: bytes, seconds: float, by_hand: bool = False) -> List[str]:
        """The rest of the targets get the order; waits for their word; the devices still silent."""
        rest = [d for d in self.record["targets"] if d not in self.record["canaries"]]
        self.record.update(state="promoted", reason="promoted by hand" if by_hand else "every canary kept it")
        self.note("promoted by hand" if by_hand else "promoted", f"to {len(rest)} more devices")
        self.send_install(rest, order)
        self.say(f"promoted: sent to {', '.join(rest) or 'no other device'}")
        silent = self.watch(rest, seconds)
        failed = [d for d in rest if self.state_of(d) in FAILED]
        if not silent and not failed:
            self.record.update(state="done", reason="every device kept it")
            self.note("done")
        elif failed:
            self.record["reason"] = text(f"{', '.join(failed)} rolled back or refused it by itself")
        self.publish()
        return silent


def fitted(record: Dict[str, Any]) -> bytes:
    """The record as one message the collectors and `deploy status` read (at most MAX_PAYLOAD):
    whole where it fits; else without the devices' reasons (each device's own MODEL STATE keeps
    its reason), then without the oldest history but the first entry."""
    payload = json.dumps(record).encode()
    if len(payload) <= MAX_PAYLOAD:
        return payload
    lean = dict(record, devices={d: dict(step, reason=None) for d, step in record["devices"].items()})
    payload = json.dumps(lean).encode()
    while len(payload) > MAX_PAYLOAD and len(lean["history"]) > 2:
        lean["history"] = lean["history"][:1] + lean["history"][-(len(lean["history"]) // 2):]
        payload = json.dumps(lean).encode()
    return payload


def check_fits(record: Dict[str, Any]) -> None:
    """One line where a rollout of this many devices could outgrow its record's one message."""
    worst = dict(record, devices={d: {"state": "rollback sent", "at": time.time(), "reason": None}
                                  for d in record["targets"]})
    if len(json.dumps(worst).encode()) + RECORD_ROOM > MAX_PAYLOAD:
        raise UserError(f"{len(record['targets'])} devices: too many for one rollout's record (one message of at "
                        f"most {MAX_PAYLOAD // 1024} KB): roll out by --group or --device")


def select(devices: Dict[str, Device], group: Optional[str], named: Sequence[str],
           canaries: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(targets, canaries) from what the devices said; a name no device answers to is one line."""
    if not devices:
        raise UserError("no devices found: none has said which model it runs (is [deploy] public_key set on them, "
                        "and may this login read their model topics?)")
    wanted = [topic_id(name) for name in named]
    unknown = [name for name in [*wanted, *map(topic_id, canaries)] if name not in devices]
    if unknown:
        raise UserError(f"no device {unknown[0]!r} has said which model it runs (known: {', '.join(sorted(devices))})")
    if wanted:
        targets = sorted(set(wanted) | set(map(topic_id, canaries)))
    elif group is not None:
        targets = sorted(d for d, device in devices.items() if device.group == group)
        if not targets:
            raise UserError(f"no devices found in group {group!r}")
    else:
        targets = sorted(devices)
    chosen = [topic_id(c) for c in canaries] or [next((d for d in targets if devices[d].online), targets[0])]
    outside = [c for c in chosen if c not in targets]
    if outside:
        raise UserError(f"canary {outside[0]!r} is not among the devices the model goes to")
    return targets, sorted(set(chosen))


def choose_version(devices: Dict[str, Device], targets: Sequence[str], version: Optional[int],
                   allow_older: bool) -> int:
    """One above the highest version the fleet runs, or the one given; one line where a target
    would refuse it as not newer (a device refuses that unless it goes back on purpose). What a
    device says it runs is its word only: a device claiming the highest version is named."""
    from .order import MAX_VERSION

    def highest(among: Iterable[str]) -> Tuple[int, str]:
        runs = [(v, d) for d in among if isinstance(v := devices[d].model.get("version"), int) and not isinstance(v, bool)]
        return max(runs, default=(0, ""))

    if version is None:
        top, device = highest(devices)
        if top >= MAX_VERSION:
            raise UserError(f"{device} says it runs v{top}, the highest version there is: give --version "
                            "(and --group or --device to leave it out)")
        return top + 1
    top, device = highest(targets)
    if version <= top and not allow_older:
        raise UserError(f"version {version} is not newer than v{top} that {device} runs: it would refuse it "
                        "(--allow-older goes back on purpose)")
    return version


def new_record(rollout: str, header: Dict[str, Any], by: str, canaries: List[str], targets: List[str],
               order: bytes = b"") -> Dict[str, Any]:
    """The record of a new rollout; `order_sha256` names the signed order, the one `deploy
    promote` may send on (a device may write its own release topic)."""
    model = {k: header["model"][k] for k in ("name", "version", "sha256", "labels")}
    now = time.time()
    return {"msg_id": "", "rollout": rollout, "by": by, "started": now, "updated": now, "model": model,
            "order_sha256": hashlib.sha256(order).hexdigest(),
            "canaries": canaries, "targets": targets, "state": "canary", "reason": None,
            "devices": {d: {"state": "waiting", "at": now, "reason": None} for d in targets},
            "history": [{"at": now, "event": "published", "by": by,
                         "detail": text(f"{model['name']} v{model['version']} to {len(targets)} devices, "
                                        f"canaries {', '.join(canaries)}")}]}


def publish(link: Link, model_path: str, key: Any, say: Say, version: Optional[int] = None, group: Optional[str] = None,
            named: Sequence[str] = (), canaries: Sequence[str] = (),
            gate: Optional[Dict[str, Any]] = None, wait: Optional[float] = None, allow_older: bool = False,
            name: Optional[str] = None) -> int:
    """`deploy publish`: sign, send to the canaries, promote or roll back; the exit status."""
    from .order import install_header, sign_order

    devices = link.known()
    targets, chosen = select(devices, group, named, canaries)
    version = choose_version(devices, targets, version, allow_older)
    by = operator()
    header = install_header(model_path, version, "pending", gate, by, allow_older, name)
    rid = rollout_id(header["model"]["name"], version)
    header["rollout"] = rid
    with open(model_path, "rb") as f:
        order = sign_order(header, f.read(), key)
    record = new_record(rid, header, by, chosen, targets, order)
    check_fits(record)
    rollout = Rollout(link, record, say, key, by)
    offline = [d for d in targets if devices[d].online is False]
    say(f"rollout {rid}: {header['model']['name']} v{version} ({header['model']['sha256'][:12]}) to {len(targets)} "
        f"devices, canaries {', '.join(chosen)}" + (f"; offline now: {', '.join(offline)}" if offline else ""))
    seconds = wait if wait is not None else float(header["gate"]["max_seconds"]) + 120
    rollout.send_install(chosen, order)
    try:
        silent, interrupted = rollout.watch(chosen, seconds, stop_on_failure=True), False
    except KeyboardInterrupt:   # Ctrl-C: the rollout waits for the operator's decision, as with a silent canary
        silent, interrupted = [d for d in chosen if rollout.state_of(d) not in FINAL], True
    failed = [] if interrupted else [d for d in chosen if rollout.state_of(d) in FAILED]
    if failed:
        device = failed[0]
        reason = rollout.record["devices"][device]["reason"]
        rollout.roll_back(f"canary {device} {rollout.state_of(device)}" + (f": {reason}" if reason else ""))
        return ROLLED_BACK
    if interrupted or silent or any(rollout.state_of(d) != "kept" for d in chosen):
        unjudged = [d for d in chosen if rollout.state_of(d) == "unjudged"]
        why = ("interrupted in the canary wait" if interrupted else
               f"canary {', '.join(unjudged)} could not judge the model" if unjudged else
               f"no word from canary {', '.join(silent)} within {seconds:.0f} s")
        rollout.record.update(state="stopped", reason=text(why))
        rollout.note("stopped", why)
        rollout.publish()
        say(f"stopped: {why}; `fer-edge deploy promote {rid}` or `fer-edge deploy rollback {rid} --key KEY` decides")
        return UNDECIDED
    return _promoted(rollout, order, seconds, say)


def _promoted(rollout: Rollout, order: bytes, seconds: float, say: Say, by_hand: bool = False) -> int:
    """Promote and say how it ended: a device that rolled the model back by itself (its camera
    is not the canaries') makes the exit status say so."""
    silent = rollout.promote(order, seconds, by_hand)
    _name_silent(say, silent, "the model")
    say(f"{rollout.record['state']}: {rollout.record['reason']}")
    return ROLLED_BACK if any(rollout.state_of(d) in FAILED for d in rollout.record["targets"]) else PROMOTED


def _name_silent(say: Say, silent: List[str], what: str) -> None:
    if silent:
        say(f"no answer yet from {', '.join(silent)} (offline?): each gets {what} when it returns")


def find(link: Link, rid: str) -> Dict[str, Any]:
    record = link.records.get(rid)
    if record is None:
        raise UserError(f"no rollout {rid!r} on the broker (fer-edge deploy status lists them)")
    return record


def promote(link: Link, rid: str, say: Say, wait: float) -> int:
    """`deploy promote`: the canaries' signed order, as it is, to the rest of the targets."""
    from .order import MAGIC, parse_header

    rollout = Rollout(link, find(link, rid), say)
    if rollout.record.get("state") not in ("canary", "stopped"):
        raise UserError(f"rollout {rid} is {rollout.record.get('state')}: only a rollout on its canaries is promoted")
    rollout.catch_up()
    failed = [canary for canary in rollout.record["canaries"] if rollout.state_of(canary) in FAILED]
    if failed:
        reason = rollout.record["devices"][failed[0]]["reason"]
        raise UserError(f"canary {failed[0]} {rollout.state_of(failed[0])} rollout {rid} by itself"
                        + (f": {reason}" if reason else "") + f"; `fer-edge deploy rollback {rid} --key KEY` ends it")
    link.read([link.release_topic(canary) for canary in rollout.record["canaries"]])
    signed = rollout.record.get("order_sha256")
    for canary in rollout.record["canaries"]:
        order = link.orders.get(canary, b"")
        if signed is not None:                 # the very order this rollout signed, nothing a canary put there
            if hashlib.sha256(order).hexdigest() == signed:
                break
            continue
        end = order.find(b"\n", len(MAGIC))
        try:
            header = parse_header(order[len(MAGIC):end]) if order.startswith(MAGIC) and end > 0 else {}
        except UserError:
            header = {}
        if header.get("rollout") == rid and header.get("model", {}).get("sha256") == rollout.sha256:
            break
    else:
        raise UserError(f"the signed order of rollout {rid} is no longer on the broker: publish the model again")
    return _promoted(rollout, order, wait, say, by_hand=True)


def rollback(link: Link, rid: str, key: Any, say: Say) -> int:
    """`deploy rollback`: every device that took the model goes back; the install orders are cleared."""
    rollout = Rollout(link, find(link, rid), say, key)
    if rollout.record.get("state") == "rolled back":
        raise UserError(f"rollout {rid} is rolled back already")
    rollout.catch_up()
    rollout.roll_back(f"ordered by hand by {rollout.by}", by_hand=True)
    return 0


def status(link: Link, now: Optional[float] = None) -> str:
    """`deploy status`: the rollouts on the broker, newest first, and the model each device runs."""
    now = time.time() if now is None else now
    lines = []
    records = sorted(link.records.values(), key=lambda r: -float(r.get("started") or 0))
    for r in records:
        Rollout(link, r, lambda line: None).catch_up(publish=False)   # what devices said since
        model, steps = r.get("model") or {}, r.get("devices") or {}
        counts: Dict[str, int] = {}
        for step in steps.values():
            counts[str(step.get("state"))] = counts.get(str(step.get("state")), 0) + 1
        lines.append(f"{r.get('rollout')}  {r.get('state')}  {model.get('name')} v{model.get('version')}  by {r.get('by')}, "
                     f"{(now - float(r.get('updated') or now)) / 60:.0f} min ago; canaries "
                     f"{', '.join(map(str, r.get('canaries') or []))}; "
                     + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
                     + (f"; {r['reason']}" if r.get("reason") else ""))
    devices = link.known()
    lines += [f"{d.id}  {d.model.get('name')} v{d.model.get('version')}  {d.state.get('state')}"
              + ("  offline" if d.online is False else "") for d in sorted(devices.values(), key=lambda d: d.id)]
    if not lines:
        return "no rollouts and no devices with deployments on"
    return "\n".join(escaped(line) for line in lines)
