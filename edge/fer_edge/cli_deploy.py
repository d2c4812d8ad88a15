"""`fer-edge deploy`: a model signed and rolled out to the fleet through its broker, canaries
first; promoted when every canary kept it, rolled back when one did not. The work is done in
deploy/rollout.py; heavy imports (paho, cryptography) happen inside each command."""

from typing import Any, Callable, Dict, Optional, Tuple

import click

from .cli_guard import FiniteFloatRange
from .core.log import say
from .settings import COLLECT_SETTINGS, click_options, from_config, given_on_command_line

BROKER_SETTINGS = [s for s in COLLECT_SETTINGS if s.section == "mqtt"]   # collect's [mqtt] flags and config
# The health gate's thresholds (deploy/order.py DEFAULT_GATE), each a `--gate-...` option of publish.
GATE_OPTIONS: Dict[str, Tuple[click.ParamType, str]] = {
    "seconds": (FiniteFloatRange(1, 86400), "Seconds of figures after the swap compared with as many before"),
    "max_seconds": (FiniteFloatRange(1, 7 * 86400), "A canary that saw too few faces by then cannot judge the model"),
    "min_faces": (click.IntRange(0, 10 ** 6), "Faces a canary must see after the swap to judge"),
    "max_fps_drop": (FiniteFloatRange(0, 1), "Largest drop of frames/s (0.3: 30%)"),
    "max_faces_drop": (FiniteFloatRange(0, 1), "Largest drop of faces found per frame"),
    "max_errors": (click.IntRange(0, 10 ** 9), "Most errors of the new model"),
    "max_emotion_shift": (FiniteFloatRange(0, 1), "Largest change of the emotions' shares (total variation)"),
    "min_spread_ratio": (FiniteFloatRange(0, 1), "Least spread of confidences, as a share of the spread before"),
}
EXIT_HELP = ("Exit status 0: promoted; 1: rolled back (by a canary, or by a device after the promotion); "
             "3: undecided (a canary silent or unable to judge, or Ctrl-C in the canary wait).")


def broker_options(function: Callable) -> Callable:
    """--config and the broker flags of `collect`; the deployer logs in with its own user."""
    function = click_options(BROKER_SETTINGS)(function)
    return click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
                        help="TOML config file; its [mqtt] section (see docs/config.md); flags override it.")(function)


def gate_options(function: Callable) -> Callable:
    for key, (kind, words) in reversed(GATE_OPTIONS.items()):
        function = click.option(f"--gate-{key.replace('_', '-')}", f"gate_{key}", type=kind, default=None,
                                help=f"{words} (default: the order's).")(function)
    return function


def open_link(ctx: click.Context, config_path: Optional[str], params: Dict[str, Any]) -> Any:
    """The broker connection the settings describe, with what the broker holds read."""
    from .deploy.fleet_link import Link
    from .outputs.broker import Broker

    mqtt = from_config(config_path, given_on_command_line(ctx, params)).mqtt
    return Link(Broker.from_section(mqtt), mqtt.prefix, say).open()


@click.group()
def deploy() -> None:
    """Sign a model and roll it out to the fleet: canaries first, then the rest."""


@deploy.command("keygen")
@click.option("--out", "folder", required=True, type=click.Path(file_okay=False), help="Folder for the key pair.")
def keygen(folder: str) -> None:
    """Make the fleet's key pair: the private key signs (keep it here), the public key goes on each device."""
    from .deploy.order import keygen as make_pair

    click.echo(make_pair(folder))


@deploy.command("publish", epilog=EXIT_HELP)
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False), help="The private key (deploy keygen).")
@click.option("--version", type=click.IntRange(1, 10 ** 9), default=None, help="Default: one above the fleet's highest.")
@click.option("--name", default=None, help="The model's name on the devices (default: the file's name).")
@click.option("--canary", "canaries", multiple=True, help="A canary device (repeat); default: the first device online.")
@click.option("--to", "to", type=click.Choice(["all"]), default="all", show_default=True, help="Every device.")
@click.option("--group", default=None, help="Only the devices of this [deploy] group.")
@click.option("--device", "devices", multiple=True, help="Only this device (repeat).")
@click.option("--allow-older", is_flag=True, help="Go back to an older version on purpose.")
@click.option("--wait", type=FiniteFloatRange(1, 7 * 86400), default=None,
              help="Seconds to wait for the canaries, and then for the rest (default: the gate's max seconds + 120).")
@gate_options
@broker_options
@click.pass_context
def publish(ctx: click.Context, model_path: str, key_path: str, version: Optional[int], name: Optional[str],
            canaries: Tuple[str, ...], to: str, group: Optional[str], devices: Tuple[str, ...], allow_older: bool,
            wait: Optional[float], config_path: Optional[str], **params: Any) -> None:
    """Sign MODEL, send it to the canaries, and promote it to the rest when every canary kept it
    (or roll it back when one did not)."""
    from .deploy import rollout
    from .deploy.order import load_private_key

    if group and devices:
        raise click.UsageError("give --group or --device, not both")
    key = load_private_key(key_path)           # a bad key is said before the broker is asked
    gate = {k[len("gate_"):]: v for k, v in params.items() if k.startswith("gate_") and v is not None}
    link = open_link(ctx, config_path, params)
    try:
        code = rollout.publish(link, model_path, key, say, version, group, devices, canaries, gate, wait, allow_older, name)
    finally:
        link.close()
    ctx.exit(code)


@deploy.command("promote", epilog=EXIT_HELP)
@click.argument("rollout_id")
@click.option("--wait", type=FiniteFloatRange(1, 7 * 86400), default=1020, show_default=True,
              help="Seconds to wait for the rest to answer.")
@broker_options
@click.pass_context
def promote(ctx: click.Context, rollout_id: str, wait: float, config_path: Optional[str], **params: Any) -> None:
    """Send a rollout still on its canaries to the rest of its devices (its signed order, as it is)."""
    from .deploy import rollout

    link = open_link(ctx, config_path, params)
    try:
        code = rollout.promote(link, rollout_id, say, wait)
    finally:
        link.close()
    ctx.exit(code)


@deploy.command("rollback")
@click.argument("rollout_id")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False), help="The private key (deploy keygen).")
@broker_options
@click.pass_context
def rollback(ctx: click.Context, rollout_id: str, key_path: str, config_path: Optional[str], **params: Any) -> None:
    """Every device that took the rollout's model goes back to its previous one; the devices that
    have not taken it never will."""
    from .deploy import rollout
    from .deploy.order import load_private_key

    key = load_private_key(key_path)
    link = open_link(ctx, config_path, params)
    try:
        rollout.rollback(link, rollout_id, key, say)
    finally:
        link.close()


@deploy.command("status")
@broker_options
@click.pass_context
def status(ctx: click.Context, config_path: Optional[str], **params: Any) -> None:
    """The rollouts on the broker, newest first, and the model each device runs."""
    from .deploy import rollout

    link = open_link(ctx, config_path, params)
    try:
        click.echo(rollout.status(link))
    finally:
        link.close()
