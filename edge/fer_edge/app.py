"""The composition root: builds the pipeline that `fer-edge run` and `serve` describe from
resolved settings, runs it, and says how it went.

Nothing else wires components together: the command line resolves the settings, this
module builds the source, the face analyzer, the sinks, the frame hooks and the web page
from them. Heavy imports happen here, inside functions, so `fer-edge --help` stays fast.
"""

import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from .core.log import Say
from .core.records import SOURCE_ENDED, STOPPED
from .settings import Settings
from .vision.running_mode import RunningMode

if TYPE_CHECKING:  # for the hints only: app imports its parts where it builds them
    from .vision.analyzer import FaceAnalyzer
    from .model.classify import EmotionClassifier
    from .vision.cadence import Cadence
    from .fleet.collector import CollectorSettings
    from .outputs.mqtt import MQTTSink
    from .kiosk.pipeline import Pipeline, Stats
    from .outputs.store import Spill, StoreFile
    from .core.events import Sinks
    from .kiosk.pipeline import FrameHook
    from .vision.capture import Frame
    from .web.server import WebServer
    from .deploy.agent import DeployAgent
    from .deploy.health import Health
    from .deploy.model_store import Installed, ModelStore



def default_db_path() -> str:
    """$STATE_DIRECTORY (systemd), else $XDG_STATE_HOME or ~/.local/state, /fer-edge/fer-edge.db."""
    state = os.environ.get("STATE_DIRECTORY") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "fer-edge")
    return os.path.join(state.split(":")[0], "fer-edge.db")


def device_id(settings: Settings) -> str:
    """The device's name in logs, MQTT and Home Assistant: [device] id, or the host name."""
    return settings.device.id or socket.gethostname()


def log_path(settings: Settings) -> Optional[str]:
    """The SQLite log to write, or None when the log is off. A run on a file or folder (a
    demo, a test clip) writes into the kiosk's own log only where told to (--db, [log] db, a
    state folder in $STATE_DIRECTORY, or MQTT, whose outbox lives in the log): its visits
    would count in the kiosk's next report."""
    if not settings.log.enabled:
        return None
    if settings.log.db:
        return settings.log.db
    if on_a_file(settings) and not os.environ.get("STATE_DIRECTORY") and not settings.mqtt.host:
        return None
    return default_db_path()


def on_a_file(settings: Settings) -> bool:
    """The source is a file or folder (not a camera or a stream)."""
    from .vision.capture import URL_PREFIXES

    path = settings.source.path
    return settings.source.camera is None and path is not None and not path.lower().startswith(URL_PREFIXES)


def describe_log(settings: Settings, db_path: Optional[str]) -> str:
    """Where the run's log goes, as the start line says it."""
    if db_path or not settings.log.enabled:
        return f"log {db_path or 'off'}"
    return "log off: a file is not logged into the kiosk's log (--db FILE keeps one)"


def under_systemd() -> bool:
    """Started by systemd (a service waits for its camera; a person at a terminal wants to know now)."""
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("NOTIFY_SOCKET"))


def stop_on_signals() -> threading.Event:
    """SIGINT, SIGTERM and SIGHUP (the SSH session that started a run closing) end a run cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def make_analyzer(settings: Settings, mode: RunningMode, threads: Optional[int] = None,
                  min_face: Optional[int] = None) -> "FaceAnalyzer":
    """The FaceAnalyzer the settings describe: the emotion model and the face detector."""
    from .vision.analyzer import FaceAnalyzer
    from .model.classify import EmotionClassifier, choose_variant
    from .vision.detect import make_detector
    from .setting_kinds import thread_count

    model = settings.model
    threads = threads or thread_count(model.threads)
    delegate = None if model.delegate == "cpu" else model.delegate
    path, temperature, why = choose_variant(model.path, model.variant, delegate, model.size)
    classifier = EmotionClassifier(path, threads=threads, delegate=delegate, mirror=model.mirror, temperature=temperature,
                                   variant_reason=why)
    detector = make_detector(settings.detector.type, settings.detector.blazeface_model, mode=mode,
                             min_size=min_face or settings.detector.min_face, threads=threads)
    return FaceAnalyzer(detector, classifier, model.margin, model.crops)


def run(settings: Settings, say: Say, started: float) -> None:
    """`fer-edge run` / `serve`: watch the source until it ends or a signal stops it."""
    import cv2

    from .vision.capture import ImageSource, frames_forever, open_source, paced

    stop = stop_on_signals()
    source_settings = settings.source
    if settings.web.listen and source_settings.camera is None and source_settings.path is None:
        return serve_only(settings, stop, say)
    open_fn = lambda: open_source(camera=source_settings.camera, source=source_settings.path, stop=stop,  # noqa: E731
                                  on_event=say, wait=under_systemd(), lean=source_settings.realtime,
                                  bounded=source_settings.max_frames is not None)
    first_source = open_fn()  # fail fast on a bad source, before loading anything else; read on from here
    configured_path = settings.model.path
    store, installed = open_deployments(settings, say)
    if installed is not None:   # the deployed model runs (it has no float32 twin)
        settings = Settings(dict(settings.values, model_path=installed.path, model_variant="int8"))
    db_path = log_path(settings)
    if settings.run.annotate:   # a wrong --annotate is said now, not once the source is done
        from .kiosk.drawing import check_video_path

        check_video_path(settings.run.annotate, settings.source.path, db_path)
    mode = RunningMode.STILLS if isinstance(first_source, ImageSource) else RunningMode.VIDEO
    # At camera rate a frame waits for the camera, not for the model: one thread costs the
    # least CPU. A file read as fast as it goes uses every thread "auto" allows.
    at_camera_rate = first_source.live or source_settings.realtime
    analyzer = make_analyzer(settings, mode, threads=1 if at_camera_rate and settings.model.threads == "auto" else None)
    if installed is not None:
        analyzer.classifier.name = f"{installed.name} v{installed.version}"
        analyzer.classifier.variant_reason = f"deployed, sha256 {installed.sha256[:12]}"
    if at_camera_rate:  # OpenCV's pool wakes every core for a frame's small resizes: more CPU than it saves
        cv2.setNumThreads(1)
    sinks, store_file = build_sinks(settings, analyzer, db_path, say, stop)
    live, server = None, None
    if settings.web.listen:
        from .kiosk.live import LiveState

        live = LiveState({"device": device_id(settings), "model": analyzer.classifier.name,
                          "detector": analyzer.detector.name, "source": describe_source(settings), "camera": True},
                         health=sinks.health, alive=sinks.alive)
    figures = deploy_health(store)
    hooks = [hook for hook in (live, figures) if hook is not None]
    pipeline = build_pipeline(settings, analyzer, first_source, mode, sinks, store_file, hooks, say)
    agent = start_deploy_agent(settings, store, installed, configured_path, analyzer, figures, pipeline, sinks, say)
    if live is not None:
        from .web.device_page import start_web

        server = start_web(settings.web, live, db_path, say, photo_analyzer(settings, analyzer), device_id(settings),
                           model_now=lambda: analyzer.classifier.path)
    if analyzer.detector.note:
        say(analyzer.detector.note)
    say(f"model {analyzer.classifier.name} ({analyzer.classifier.variant_reason}), detector {analyzer.detector.name}, "
        f"{analyzer.classifier.threads} thread{'' if analyzer.classifier.threads == 1 else 's'}, "
        f"{pipeline.cadence.describe()}, "
        f"{describe_log(settings, db_path)}")
    current = {}

    def frames() -> Iterator["Frame"]:
        for source, frame in frames_forever(open_fn, source_settings.loop, stop, first=first_source, on_event=say):
            current["source"] = source
            yield frame

    try:
        stats = pipeline.run(paced(frames(), fps_cap=source_settings.fps,
                                   realtime_fps=first_source.fps if source_settings.realtime else None,
                                   max_frames=source_settings.max_frames, stop=stop), stop)
        health = pipeline.health()
    finally:
        if agent is not None:
            agent.stop()
        pipeline.close(STOPPED if stop.is_set() else SOURCE_ENDED)   # the sinks, then the store they share
        if server:
            server.stop()
    say(summary_line(stats, pipeline.sessions_done, health, stop.is_set(), started, current.get("source")))


def open_deployments(settings: Settings, say: Say) -> "Tuple[Optional[ModelStore], Optional[Installed]]":
    """With [deploy] public_key: the device's model store and the deployed model to start on, if any."""
    if not settings.deploy.public_key:
        return None, None
    from .core.errors import UserError
    from .deploy.agent import open_store

    if not settings.mqtt.host:
        raise UserError("[deploy] public_key needs the broker that carries the orders: --mqtt HOST or [mqtt] host")
    return open_store(settings.deploy.dir or os.path.join(os.path.dirname(default_db_path()), "models"), say)


def deploy_health(store: "Optional[ModelStore]") -> "Optional[Health]":
    """The figures the health gate judges by, kept only when deployments are on."""
    from .deploy.health import Health

    return Health() if store is not None else None


def start_deploy_agent(settings: Settings, store: "Optional[ModelStore]", installed: "Optional[Installed]",
                       configured_path: Optional[str], analyzer: "FaceAnalyzer", health: "Optional[Health]",
                       pipeline: "Pipeline", sinks: "Sinks", say: Say) -> "Optional[DeployAgent]":
    """The deploy agent, on the MQTT sink's release topic, swapping through the camera loop."""
    if store is None or health is None:
        return None
    from .deploy.agent import start_agent
    from .model.classify import configured_model

    return start_agent(store, installed, settings.deploy, settings.model, analyzer.classifier,
                       configured_model(configured_path, settings.model.size), health, pipeline.request_swap, sinks,
                       device_id(settings), say)


def demo(given: Dict[str, Any], annotate: Optional[str], say: Say, started: float) -> str:
    """`fer-edge demo`: what `run` does on a clip of a visitor, logged to a throw-away database;
    returns the summary `report` would show. `given`: the flags typed (the broker's, to send
    the visit as device "demo" in real time)."""
    import tempfile

    from .fleet.visit_report import build_report, format_table
    from .settings import resolve
    from .tools.demo import write_clip

    with tempfile.TemporaryDirectory(prefix="fer-edge-demo-") as folder:
        clip, db = os.path.join(folder, "demo.mp4"), os.path.join(folder, "demo.db")
        frames, seconds = write_clip(clip, say)
        say(f"demo: a visitor in a {seconds:g} s clip ({frames} frames), logged to a throw-away {db}")
        given = dict(given, source_path=clip, log_db=db, device_id="demo", source_realtime=bool(given.get("mqtt_host")))
        if annotate:
            given["run_annotate"] = annotate
        run(resolve({}, given), say, started)
        return "\nsummary (as `fer-edge report` shows a kiosk's log; this one is thrown away):\n" + format_table(build_report(db))


def build_sinks(settings: Settings, analyzer: "FaceAnalyzer", db_path: Optional[str], say: Say,
                stop: Optional[threading.Event] = None) -> "Tuple[Sinks, Optional[StoreFile]]":
    """The run's outputs and the store file they share; `db_path` None: no log; `stop` is set
    when stdout's reader goes away."""
    from .core.errors import UserError
    from .core.events import EventSink, Sinks
    from .outputs.sinks import SQLiteLog, StdoutLog
    from .outputs.store import StoreFile

    device = device_id(settings)
    sinks: List[EventSink] = []
    store: Optional[StoreFile] = None
    if db_path:
        store = StoreFile(db_path, say)
        log = SQLiteLog(db_path, keep_days=settings.log.keep_days, max_mb=settings.log.max_mb, say=say, store=store)
        log.start_run(device, describe_source(settings), analyzer.classifier.name, analyzer.detector.name)
        sinks.append(log)
    if not settings.log.quiet or settings.log.json:
        sinks.append(StdoutLog(as_json=settings.log.json, on_closed=stop.set if stop else None))
    if settings.mqtt.host:
        if not db_path:
            raise UserError("--mqtt needs the local database for its durable outbox; drop --no-db")
        assert store is not None
        sinks.append(make_mqtt_sink(settings, device, db_path, analyzer.classifier, say, store.spill))
    return Sinks(sinks), store


def build_pipeline(settings: Settings, analyzer: "FaceAnalyzer", first_source: Any, mode: RunningMode, sinks: "Sinks",
                   store: "Optional[StoreFile]" = None, hooks: "Iterable[FrameHook]" = (),
                   say: Say = lambda message: None) -> "Pipeline":
    """Sessions and frame hooks around the analyzer and the sinks; `store` is closed after the
    sinks; `hooks` go after the run's own (the notifier, the annotated video, the window)."""
    from .core.clock import WallClock
    from .kiosk.drawing import Annotator, Window
    from .kiosk.notify import Notifier
    from .kiosk.pipeline import Pipeline
    from .kiosk.sessions import SessionTracker
    from .vision.track import Tracker

    device = device_id(settings)
    stills = mode is RunningMode.STILLS
    clock = WallClock(time.time(), say)
    sessions = SessionTracker(min_seconds=settings.sessions.min_seconds, gap_seconds=settings.sessions.gap_seconds,
                              exit_seconds=settings.sessions.exit_seconds, valence=settings.sessions.valence,
                              device_id=device, clock=clock, labels=analyzer.labels)
    own: List["FrameHook"] = [Notifier(healthy=sinks.alive)]
    if settings.run.annotate:
        own.append(Annotator(settings.run.annotate, first_source.fps))
    if settings.run.show:
        own.append(Window())
    # Separate photos are not a sequence: never carry a track from one photo to the next.
    tracker = (Tracker(iou_threshold=1.01, max_misses=0, labels=analyzer.labels) if stills
               else Tracker(labels=analyzer.labels))
    return Pipeline(analyzer, tracker, sinks, [*own, *hooks], device_id=device, log_interval=settings.log.interval,
                    save_crops=settings.log.save_crops, sessions=None if stills else sessions,
                    stats_interval=settings.mqtt.stats_interval, clock=clock,
                    cadence=make_cadence(settings, mode), store=store)


def make_cadence(settings: Settings, mode: RunningMode) -> "Cadence":
    """How often the camera loop looks; photos are each looked at whole."""
    from .vision.cadence import Cadence

    cadence = settings.cadence
    if mode is RunningMode.STILLS or cadence.every_frame:
        return Cadence()
    return Cadence(cadence.analyse_fps)


def make_mqtt_sink(settings: Settings, device: str, db_path: str, classifier: "EmotionClassifier", say: Say,
                   spill: Optional["Spill"] = None) -> "MQTTSink":
    from .outputs.mqtt import MQTTSink

    return MQTTSink(settings.mqtt, device, db_path, on_event=say, model_name=classifier.name, spill=spill,
                    configuration_url=web_url(settings), labels=classifier.labels)


def default_fleet_db() -> str:
    """fleet.db beside the device log's default place."""
    return os.path.join(os.path.dirname(default_db_path()), "fleet.db")


def collector_settings(settings: Settings) -> "CollectorSettings":
    """What `fer-edge collect` needs, from the [mqtt] and [collector] settings."""
    from .fleet.collector import CollectorSettings
    from .core.errors import UserError
    from .core.network import read_db_password

    mqtt, collector = settings.mqtt, settings.collector
    if not mqtt.host:
        raise UserError("collect needs the broker: --mqtt HOST[:PORT] or [mqtt] host")
    db = collector.db or default_fleet_db()
    if db == default_fleet_db():
        os.makedirs(os.path.dirname(db), exist_ok=True)
    return CollectorSettings(mqtt=mqtt, db=db, db_password=read_db_password(collector.db_password_file),
                             collector=collector)


def collect(settings: Settings, say: Say) -> None:
    """`fer-edge collect`: the fleet's messages into its database until a signal."""
    from .fleet.collector import Collector

    Collector(collector_settings(settings), say, stop=stop_on_signals()).run()


def web_url(settings: Settings) -> Optional[str]:
    """The web page's address for Home Assistant's device page, when it listens beyond loopback."""
    if not settings.web.listen:
        return None
    from .core.network import split_host_port
    from .web.access import is_loopback
    from .web.server import page_url   # the server's module, loaded only when a page is served

    host, port = split_host_port(settings.web.listen, None)
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    if is_loopback(host):
        return None
    return page_url(host, port)


def describe_source(settings: Settings) -> str:
    """The source as the log, the page and the journal name it: a stream's password left out."""
    from .core.network import without_password

    return without_password(str(settings.source.camera if settings.source.camera is not None else settings.source.path))


def summary_line(stats: "Stats", sessions_done: int, health: dict, stopped: bool, started: float,
                 source: Any = None) -> str:
    """The run's last line: what was done, and anything that did not go to plan."""
    first = f", first face logged {stats.first_face_at - started:.2f} s after start" if stats.first_face_at else ""
    line = (f"{'stopped' if stopped else 'done'}: {stats.frames} frames, {stats.faces} faces, "
            f"{stats.tracks} tracks, {stats.updates} updates logged in {stats.elapsed():.1f} s "
            f"({stats.fps():.1f} frames/s), {sessions_done} sessions{first}")
    if health.get("log") == "full":   # the rows held at the stop could not be written either
        line += f"; log full, {health.get('log_dropped', 0) + health.get('log_held', 0)} rows dropped"
    elif health.get("log_dropped"):
        line += f"; {health['log_dropped']} log rows dropped"
    if health.get("log_held") and health.get("log") != "full":
        line += f"; {health['log_held']} log rows held while the log was locked"
    if "mqtt" in health:
        pending = health.get("outbox_pending")
        line += f"; MQTT {health['mqtt']}, " + (f"{pending} messages waiting in the outbox" if pending is not None
                                                else "the outbox cannot be read (disk full)")
        if health.get("sender", "ok") != "ok":
            line += f" (sender: {health['sender']})"
        if health.get("outbox_set_aside"):
            line += f", {health['outbox_set_aside']} set aside"
    unreadable = getattr(source, "unreadable", [])
    if unreadable:
        line += f"; {len(unreadable)} unreadable: {', '.join(unreadable[:5])}" + (" ..." if len(unreadable) > 5 else "")
    if getattr(source, "ended_early", None):
        line += f"; {source.ended_early}"
    return line


def photo_analyzer(settings: Settings, camera: "Optional[FaceAnalyzer]" = None) -> Callable:
    """How the page's photo uploads are analysed: stills, one thread, small faces too, on the
    model the `camera` loop runs now (one deployed to it since it started included)."""
    started_on = camera.classifier.path if camera is not None else None

    def build() -> "FaceAnalyzer":
        if camera is None or camera.classifier.path == started_on:
            return make_analyzer(settings, RunningMode.STILLS, threads=1, min_face=16)
        deployed = Settings(dict(settings.values, model_path=camera.classifier.path, model_variant="int8"))
        return make_analyzer(deployed, RunningMode.STILLS, threads=1, min_face=16)
    return build


def serve_fleet(settings: Settings, say: Say) -> None:
    """`serve --fleet`: the fleet page over the collector's database until a signal."""
    from .fleet.fleet_db import describe, open_database
    from .web.fleet_page import make_fleet_app
    from .core.network import read_db_password
    from .web.server import serve

    target = settings.log.db or settings.collector.db or default_fleet_db()
    password = read_db_password(settings.collector.db_password_file)
    open_database(target, password, readonly=True).close()   # a wrong --db is said now, in one line
    stop = stop_on_signals()
    server = serve(settings.web, lambda token: make_fleet_app(target, password, token, say), say)
    say(f"the fleet in {describe(target)}")
    _serve_until(stop, server, say)


def serve_only(settings: Settings, stop: threading.Event, say: Say) -> None:
    """No camera: the page, the report and photo analysis until a signal."""
    from .web.device_page import start_web

    server = start_web(settings.web, None, log_path(settings), say, photo_analyzer(settings), device_id(settings))
    _serve_until(stop, server, say)


def _serve_until(stop: threading.Event, server: "WebServer", say: Say) -> None:
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    say("stopped")
