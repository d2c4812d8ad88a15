"""The device's deploy agent: takes a signed order off the broker, installs, tries and keeps
or rolls back a model by itself, and tells the fleet each step.

It is a thread of its own: paho's thread only hands it the newest order (`offer`), the camera
loop only swaps models at a frame boundary (`swap`, the pipeline's request_swap), and every
slow or untrusted step (signature, file, contract, self-test, the gate) happens here. Each
step is one log line and one MODEL STATE message (`report`). The store's pointer is written
before each swap, so a power cut at any moment boots the old model or the new one (and a new
one that keeps killing the process is rolled back by the store itself).
"""

import hashlib
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

from ..core.atomic import sha256_of
from ..core.events import EventSink
from ..core.settings_sections import ModelSection
from ..core.log import Budget, Say
from ..model.classify import EmotionClassifier
from ..model.metadata import ModelError
from .contract import check_model, self_test
from .health import Health, figures_of, judge
from .model_store import POINTER, Installed, ModelStore
from .order import MAX_HEADER, MAX_MODEL, Order, OrderRefused, one_line, read_order

SWAP_WAIT_SECONDS = 30.0   # the camera loop takes a swap at its next frame; none for this long: no camera
TICK_SECONDS = 1.0         # how often a trial is judged
QUEUED = 256               # orders heard, not read yet: a flood of garbage must not push a signed one out...
QUEUED_BYTES = MAX_MODEL + MAX_HEADER + (1 << 20)   # ...nor hold more than one order of the largest size
UNSIGNED_SAID = 5          # refusals of orders whose signature does not check: said at once at most...
UNSIGNED_SECONDS = 10.0    # ...then one per this long, the others counted

Swap = Callable[..., None]                           # the pipeline's request_swap(classifier, on_error, on_swapped)


@dataclass
class Running:
    """What the camera loop runs: its classifier and how the fleet names it (version 0: the
    configured model, never deployed)."""

    classifier: EmotionClassifier
    name: str
    version: int
    sha256: str
    labels: Tuple[str, ...]

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "labels": list(self.labels)}

    def short(self) -> str:
        return f"{self.name} v{self.version}" if self.version else f"{self.name} (configured)"


@dataclass
class Trial:
    new: Running
    before: Dict[str, Any]
    gate: Dict[str, Any]
    rollout: Optional[str]
    release: Optional[dict]
    started: float            # Health's clock when the new model took its first frame


def running_of(classifier: EmotionClassifier, installed: Optional[Installed]) -> Running:
    """The Running record of the model a device started on."""
    if installed is None:
        return Running(classifier, classifier.name, 0, sha256_of(classifier.path), classifier.labels)
    return Running(classifier, installed.name, installed.version, installed.sha256, tuple(installed.labels))


class DeployAgent:
    def __init__(self, store: ModelStore, public_key: Any, health: Health, swap: Swap,
                 report: Callable[[dict], None], options: Dict[str, Any], running: Running,
                 configured: Running, device: str, group: Optional[str] = None, say: Say = lambda line: None):
        """`options`: how this device makes a classifier (threads, delegate, mirror); `running`:
        what the camera loop runs now; `configured`: the model the settings name (what a
        rollback with no previous deployment goes back to)."""
        self.store, self.public_key, self.health, self.swap = store, public_key, health, swap
        self.report, self.options, self.say = report, options, say
        self.running, self.configured = running, configured
        self.previous: Optional[Running] = None     # what ran before, while this process holds it
        self.device, self.group = device, group
        self.lock, self.wake, self.stop_event = threading.Lock(), threading.Event(), threading.Event()
        self.offered: Deque[bytes] = deque()       # the orders heard, in order, not yet read
        self.unsigned = Budget(UNSIGNED_SAID, UNSIGNED_SECONDS, health.clock)
        self.waiting: Optional[Order] = None       # an install not begun yet (a trial runs, or too few figures)
        self.waiting_said = False
        self.settled_since = health.clock()        # since when the running model has run (its own figures)
        self.connected = False                     # a (re)connection: say what runs
        self.handled: List[str] = []               # digests of the orders read by this process
        self.trial: Optional[Trial] = None
        self.swapped_at: Optional[int] = None
        self.swapped = threading.Event()
        self.errors_said = False
        self.last_error: Optional[str] = None
        self.thread = threading.Thread(target=self._run, name="deploy-agent", daemon=True)

    # -- called from other threads: only note and wake --------------------------------------
    def offer(self, payload: bytes) -> None:
        """An order from the broker (paho's thread): queued, the oldest dropped beyond the bounds."""
        with self.lock:
            self.offered.append(payload)
            while len(self.offered) > 1 and (len(self.offered) > QUEUED or sum(map(len, self.offered)) > QUEUED_BYTES):
                self.offered.popleft()
        self.wake.set()

    def on_connection(self) -> None:
        """The broker (re)connected (paho's thread): the fleet hears what runs."""
        self.connected = True
        self.wake.set()

    def start(self, resume: Optional[Trial] = None) -> None:
        """Start the thread; `resume`: the trial a restart interrupted, judged afresh from now."""
        self.trial = resume
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(SWAP_WAIT_SECONDS + 5)

    def alive(self) -> bool:
        return self.thread.is_alive()

    # -- the agent's thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.wake.wait(TICK_SECONDS)
            self.wake.clear()
            if self.stop_event.is_set():
                return
            try:
                self._step()
            except Exception as exc:   # the agent must never take the camera down with it (said once)
                line = f"deploy: unexpected {type(exc).__name__}: {one_line(str(exc))}"
                if line != self.last_error:
                    self.last_error = line
                    self.say(line)

    def _step(self) -> None:
        if self.connected:
            self.connected = False
            self._state("running")
        if self.trial is not None:
            self._judge()
        with self.lock:
            payloads, self.offered = list(self.offered), deque()
        for payload in payloads:
            if payload:   # empty: the order was cleared
                self._read(payload)
        if self.trial is None and self.waiting is not None and self._settled(self.waiting):
            order, self.waiting = self.waiting, None
            self._install(order)

    def _settled(self, order: Order) -> bool:
        """A new model is judged against the figures of the one it replaces alone: it waits until
        that one has run for the gate's seconds (after a start or another swap), or for the health
        window when the gate is longer: the figures cover no more."""
        ran, needed = self.health.clock() - self.settled_since, min(order.gate["seconds"], self.health.window_seconds)
        if ran >= needed:
            return True
        if not self.waiting_said:
            self.waiting_said = True
            self.say(f"deploy: {order.model['name']} v{order.model['version']} waits until {self.running.short()} "
                     f"has run {needed:g} s (the figures it is judged against), {ran:.0f} s so far")
        return False

    def _read(self, payload: bytes) -> None:
        digest = hashlib.sha256(payload).hexdigest()
        if digest in self.handled:   # the retained order again, on a reconnection
            return
        self.handled = (self.handled + [digest])[-16:]
        try:
            order = read_order(payload, self.public_key)
        except OrderRefused as exc:
            reason = exc.reason
            if exc.header is None:   # not signed by the fleet's key: anyone may send these by the hundred
                if not self.unsigned.spend():
                    return
                if self.unsigned.skipped:
                    reason += f" (and {self.unsigned.skipped} more such orders since the last one said)"
                    self.unsigned.skipped = 0
            self._refused(reason, release=_release_of(exc.header), rollout=_rollout_of(exc.header))
            return
        if order.action == "rollback":
            self._rollback_order(order)
            return
        model = order.model
        if model["sha256"] == self.running.sha256:
            if order.rollout != self.store.rollout:   # else the order that brought it, read again after a restart
                self.say(f"deploy: kept {model['name']} v{model['version']} (rollout {order.rollout}): already runs this model")
                self._state("kept", order, reason="already runs this model")
            return
        self.say(f"deploy: received {model['name']} v{model['version']} (sha256 {model['sha256'][:12]}, "
                 f"{model['size']} bytes) for rollout {order.rollout} from {order.by}")
        self._state("received", order)
        refusal = self._unwanted(order)
        if refusal:
            self._refused(refusal, order)
            return
        if self.trial is not None:
            self.say(f"deploy: {model['name']} v{model['version']} waits for the trial of {self.trial.new.short()} to end")
        self.waiting, self.waiting_said = order, self.trial is not None

    def _install(self, order: Order) -> None:
        model, release = order.model, order.release()
        name = f"{model['name']} v{model['version']}"
        refusal = self._unwanted(order)   # again: a trial may have ended with a newer model since
        if refusal:
            self._refused(refusal, order)
            return
        try:
            installed = self.store.put(order)
        except OSError as exc:   # a full disk: nothing was wrong with the model
            self._refused(f"cannot store the model ({exc.strerror or exc})", order)
            return
        try:
            classifier = check_model(installed.path, model, **self.options)
            classifier.name = name
            tested = self_test(classifier, self.health.recent_faces())
        except (OrderRefused, ModelError) as exc:
            self._stored(self.store.reject, model["sha256"])
            self._refused(one_line(str(exc)), order)
            return
        new = Running(classifier, model["name"], model["version"], model["sha256"], tuple(model["labels"]))
        self.say(f"deploy: installed {name}: contract ok, {tested}")
        now = self.health.clock()
        before = self.health.figures(now - order.gate["seconds"], now)
        problem = self._stored(self.store.begin_trial, installed, before, order.rollout, order.gate, order.issued)
        if problem:
            self._refused(f"{problem}; not swapped", order)
            return
        frame = self._swap_to(new, trial=True)
        if frame is None:
            self._roll_back_trial_pointer("the camera loop took no frame to swap at")
            return
        self.trial = Trial(new, before, dict(order.gate), order.rollout, release, self.health.clock())
        self.say(f"deploy: swapped to {name} at frame {frame} (from {self.previous.short() if self.previous else '?'}); "
                 f"trial of {order.gate['seconds']:g} s")
        self._state("trial", order, before=before)

    def _unwanted(self, order: Order) -> Optional[str]:
        """Why an install this device could run is not wanted here, or None."""
        model = order.model
        if self.store.rejected(model["sha256"]):
            return "this model was rolled back or refused here before; not installed again"
        if order.issued < self.store.followed:
            return "issued before the last order this device followed (an old order sent again); not installed"
        if model["version"] <= self.running.version and not order.allow_older:
            return (f"version {model['version']} is not newer than the running v{self.running.version} "
                    "(an explicit rollback sets allow_older)")
        return None

    def _swap_to(self, new: Running, trial: bool) -> Optional[int]:
        """Hand `new` to the camera loop and wait for its first frame; its frame index, or None."""
        self.swapped.clear()
        self.swapped_at = None
        self.errors_said = False

        def swapped(frame: int) -> None:
            self.swapped_at = frame
            self.swapped.set()

        self.swap(new.classifier, self._model_error if trial else None, swapped)
        deadline = time.monotonic() + SWAP_WAIT_SECONDS
        while not self.swapped.wait(0.1):
            if self.stop_event.is_set() or time.monotonic() > deadline:
                self.swap(self.running.classifier, None, None)   # the one waiting is withdrawn
                return None
        self.previous, self.running = self.running, new
        self.settled_since = self.health.clock()
        return self.swapped_at

    def _model_error(self, exc: Exception) -> None:
        """The model on trial failed on a frame (the camera thread): counted; said once."""
        self.health.error(exc)
        if not self.errors_said:
            self.errors_said = True
            self.say(f"deploy: the model on trial failed on a frame ({type(exc).__name__}: {one_line(str(exc))[:200]}); "
                     "the camera goes on without its faces")
        self.wake.set()

    def _judge(self) -> None:
        trial = self.trial
        assert trial is not None
        now = self.health.clock()
        after = self.health.figures(trial.started, now)
        verdict, reason = judge(trial.before, after, trial.gate)
        if verdict == "wait":
            return
        self.trial = None
        if verdict == "rolled back":
            self._roll_back(reason, trial, after)
            return
        problem = self._stored(self.store.keep)   # "unjudged": it ran without errors; the fleet decides
        if problem:
            reason += f"; {problem}: a restart judges it again"
        self.say(f"deploy: {'kept' if verdict == 'kept' else 'unjudged, running on'} {trial.new.short()}: {reason}")
        self._state(verdict, rollout=trial.rollout, release=trial.release, reason=reason, before=trial.before,
                    after=after)

    def _roll_back(self, reason: str, trial: Optional[Trial], after: Optional[dict] = None,
                   order: Optional[Order] = None) -> None:
        """Back to the previous model: the pointer first, then the camera loop."""
        leaving = self.running
        back = self._previous_running()
        problem = self._stored(self.store.roll_back, reason) or self._stored(self.store.reject, leaving.sha256)
        if problem:   # the camera leaves the model all the same; a restart reads the pointer again
            reason += f"; {problem}: a restart may try it again"
        frame = self._swap_to(back, trial=False)
        self.previous = None   # the store keeps no previous after a rollback
        where = f"at frame {frame}" if frame is not None else "at the next start (no frame came)"
        self.say(f"deploy: rolled back {leaving.short()} to {back.short()} {where}: {reason}")
        self._state("rolled back", order, rollout=trial.rollout if trial else None,
                    release=trial.release if trial else _release_of_running(leaving), reason=reason,
                    before=trial.before if trial else None, after=after)

    def _roll_back_trial_pointer(self, reason: str) -> None:
        problem = self._stored(self.store.roll_back, reason)
        reason += f"; {problem}" if problem else ""
        self.say(f"deploy: not swapped: {reason}; the pointer goes back to {self.running.short()}")
        self._state("rolled back", reason=reason)

    def _stored(self, write: Callable[..., Any], *args: Any) -> Optional[str]:
        """Write to the store; why it could not (a full or read-only disk), else None. A disk
        must never keep a model running that the gate or the fleet sent back."""
        try:
            write(*args)
        except OSError as exc:
            return f"cannot write {POINTER} ({exc.strerror or exc})"
        return None

    def _previous_running(self) -> Running:
        """What ran before the current model: in memory when this process swapped, else the store's."""
        if self.previous is not None:
            return self.previous
        previous = self.store.previous
        if previous is None:
            return self.configured
        try:
            classifier = EmotionClassifier(previous.path, **self.options)
        except ModelError:   # gone or damaged since (the store then names none): never stay on the one left
            return self.configured
        classifier.name = f"{previous.name} v{previous.version}"
        return running_of(classifier, previous)

    def _rollback_order(self, order: Order) -> None:
        by = f"rollback ordered by {order.by} (rollout {order.rollout})"
        if order.from_sha256 == self.running.sha256 and self.running.version:
            self.say(f"deploy: received a rollback of {self.running.short()} from {order.by}")
            trial, self.trial = self.trial, None
            self._roll_back(by, trial, order=order)
            self._state("running")
        elif self.store.rejected(order.from_sha256 or ""):
            return   # rolled back already (the retained order again)
        else:
            self._refused("not running that model", order)

    # -- what the fleet hears ----------------------------------------------------------------
    def _refused(self, reason: str, order: Optional[Order] = None, release: Optional[dict] = None,
                 rollout: Optional[str] = None) -> None:
        release = release or (order.release() if order else None)
        what = f"{release['name']} v{release['version']}" if release else "an order"
        self.say(f"deploy: refused {what}: {reason}; {self.running.short()} runs on")
        self._state("refused", order, rollout=rollout, release=release, reason=reason)

    def _state(self, state: str, order: Optional[Order] = None, rollout: Optional[str] = None,
               release: Optional[dict] = None, reason: Optional[str] = None,
               before: Optional[dict] = None, after: Optional[dict] = None) -> None:
        stored = self.store.previous
        previous = self.previous.describe() if self.previous is not None else stored.entry() if stored else None
        self.report({"msg_id": uuid.uuid4().hex, "device": self.device, "ts": round(time.time(), 3),
                     "group": self.group, "model": self.running.describe(),
                     "previous": {k: previous[k] for k in ("name", "version", "sha256")} if previous else None,
                     "state": state, "rollout": rollout or (order.rollout if order else None),
                     "release": release or (order.release() if order else None),
                     "reason": one_line(reason) if reason else None, "before": before, "after": after})


def _release_of(header: Optional[dict]) -> Optional[dict]:
    model = (header or {}).get("model")
    return {k: model[k] for k in ("name", "version", "sha256")} if isinstance(model, dict) else None


def _rollout_of(header: Optional[dict]) -> Optional[str]:
    return (header or {}).get("rollout")


def _release_of_running(running: Running) -> dict:
    return {"name": running.name, "version": running.version, "sha256": running.sha256}


# -- how a device starts with deployments on (the composition root calls these) -------------

def open_store(folder: str, say: Say) -> Tuple[ModelStore, Optional[Installed]]:
    """The device's model store and the model it says to run at boot (None: the configured one)."""
    store = ModelStore(folder)
    installed = store.start()
    while installed is not None:   # whole, but it may not run now (a runtime upgraded since, a pointer edited by hand)
        try:
            check_model(installed.path, installed.entry())
            break
        except OrderRefused as exc:
            reason = f"{installed.name} v{installed.version} no longer meets the contract ({exc.reason}), back to the previous model"
        try:
            installed = store.roll_back(reason)
        except OSError as exc:   # the pointer cannot say so: it is left at every start until the disk takes it
            say(f"deploy: {reason}; cannot write {POINTER} ({exc.strerror or exc})")
            installed = None
    if installed is None:
        say(f"deploy: no deployed model in {folder}; the configured model runs")
    else:
        say(f"deploy: starting on deployed {installed.name} v{installed.version} (sha256 {installed.sha256[:12]}) "
            f"from {folder}")
    return store, installed


def start_agent(store: ModelStore, installed: Optional[Installed], deploy: Any, model: ModelSection,
                classifier: EmotionClassifier, configured_path: str, health: Health, swap: Swap,
                sinks: Iterable[EventSink], device: str, say: Say) -> DeployAgent:
    """The agent, on the MQTT sink's release topic (`deploy`: the [deploy] settings), telling the
    fleet on every connection what runs."""
    from ..outputs.mqtt import MQTTSink
    from .order import load_public_key

    mqtt = next(sink for sink in sinks if isinstance(sink, MQTTSink))
    options: Dict[str, Any] = {"threads": classifier.threads, "delegate": None if model.delegate == "cpu" else model.delegate,
                               "mirror": model.mirror}
    running = running_of(classifier, installed)
    configured = running_of(EmotionClassifier(configured_path, **options), None) if installed is not None else running
    agent = DeployAgent(store, load_public_key(deploy.public_key), health, swap, mqtt.model_state, options, running,
                        configured, device, deploy.group, say)
    for event in store.events:   # what the store did by itself at boot (a damaged file, a trial cut short)
        say(f"deploy: {event['state']}: {event['reason']}")
        agent._state(event["state"], rollout=event["rollout"], release=event["release"], reason=event["reason"])
    resume = None
    if store.state == "trial" and installed is not None and store.trial:   # a restart cut the trial short: judged afresh
        trial = store.trial
        resume = Trial(running, trial.get("before") or figures_of([], 0, 0.0, 0.0), trial["gate"], store.rollout, installed.release(),
                       health.clock())
        say(f"deploy: the trial of {running.short()} goes on after a restart ({trial['gate']['seconds']:g} s from now)")
    agent.start(resume)
    mqtt.listen("release", agent.offer, agent.on_connection)
    return agent
