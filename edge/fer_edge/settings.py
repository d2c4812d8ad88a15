"""Every setting of `fer-edge run` and `serve`, declared once.

Each `Setting` names its config-file section and key, its command-line flag, its kind
(which parses and checks a value), default and help. The click options, the TOML
validation, `config show` and docs/config.md all come from the one table below, so a
value is held to the same rule whether it comes from a flag or from the file.
"""

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .core.errors import UserError
from .core import settings_sections as sections
from .core.network import without_password
from .core.records import MAX_DEVICE
from .setting_kinds import (Boolean, Camera, Choice, DeployKey, FilePath, HostPort, Kind, Name, Networks, Number, Text,
                            Threads, TopicLevel, TopicPrefix, Valence)

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


class ConfigError(UserError):
    """A config file or flag value that cannot be used."""


@dataclass(frozen=True)
class Setting:
    """One setting: where it lives in the file, its flag, how it is checked."""

    section: Optional[str]        # config-file section; None: a flag only
    key: str                      # key in the section (and the attribute of the section's settings)
    kind: Kind
    default: Any
    help: str
    flag: Optional[str] = None    # e.g. "--margin" or "--mirror/--no-mirror"; None: the file only

    @property
    def name(self) -> str:
        """The click parameter name, unique over all settings."""
        return f"{self.section or 'run'}_{self.key}"


def _detector_names() -> Tuple[str, ...]:
    from .vision.detect import DETECTORS

    return DETECTORS


SETTINGS: List[Setting] = [
    Setting("source", "camera", Camera(), None, 'Camera: an index (0), /dev/videoN, or "pi" for picamera2.', "--camera"),
    Setting("source", "path", Text(nonempty=True), None,
            "A video file, image file, folder of images, or stream URL (rtsp/http), instead of a camera.", "--source"),
    Setting("source", "fps", Number(0.1, 240), None, "Process at most this many frames/s.", "--fps"),
    Setting("source", "realtime", Boolean(), False, "Play a file at its own frame rate, as a camera would.", "--realtime"),
    Setting("source", "loop", Boolean(), False, "Start a file again when it ends.", "--loop"),
    Setting("source", "max_frames", Number(1, integer=True), None, "Stop after this many frames.", "--max-frames"),
    Setting("detector", "type", Choice(*_detector_names()), "auto", "Face detector.", "--detector"),
    Setting("detector", "blazeface_model", FilePath(exists=True), None, "Path of a BlazeFace .tflite.", "--blazeface-model"),
    Setting("detector", "min_face", Number(8, 4096, integer=True), 24, "Smallest face side in pixels.", "--min-face"),
    Setting("model", "path", FilePath(), None, "Emotion model (.tflite); unset: the shipped model of [model] size.", "--model"),
    Setting("model", "size", Choice("auto", "small", "large"), "auto",
            "Which shipped model runs when [model] path is unset: small (every Pi), large (Pi 4/5-class CPUs), "
            "or auto: large on x86 and on out-of-order Arm cores (Cortex-A72 and later), else small.", "--model-size"),
    Setting("model", "threads", Threads(), "auto",
            'LiteRT threads for the detector and the model; "auto": one at camera rate (a camera or --realtime), '
            'else one per CPU, at most 4.',
            "--threads"),
    Setting("model", "variant", Choice("auto", "int8", "float32"), "auto",
            "Which twin of the model runs: int8, its float32 twin beside it (NAME-float32.tflite), or auto: "
            "the faster one for this CPU.", "--model-variant"),
    Setting("model", "delegate", Choice("cpu", "edgetpu"), "cpu", "cpu, or edgetpu for a Coral.", "--delegate"),
    Setting("model", "margin", Number(0, 1), None, "Crop margin around a face box; unset: the model's.", "--margin"),
    Setting("model", "mirror", Boolean(), True,
            "Also classify each face mirrored and average the two (twice the classifier time).", "--mirror/--no-mirror"),
    Setting("model", "crops", Number(1, 7, integer=True), 1,
            "Classify each face on this many framings (the crop, then tighter, looser, shifted; each mirrored "
            "with mirror) in one batch and average them: n times the classifier time.", "--crops"),
    Setting("log", "db", FilePath(), None, "SQLite log; unset: $STATE_DIRECTORY or ~/.local/state/fer-edge/fer-edge.db.", "--db"),
    Setting("log", "enabled", Boolean(), True, "Write the SQLite log.", "--log/--no-db"),
    Setting("log", "interval", Number(0, 3600), 1.0, "Seconds between logged updates per face.", "--log-interval"),
    Setting("log", "keep_days", Number(0, 36500), 90.0,
            "Delete logged emotion updates older than this many days (0: keep all).", "--keep-days"),
    Setting("log", "max_mb", Number(0), 500.0,
            "Delete the oldest emotion updates while the log is larger than this (0: no limit).", "--max-log-mb"),
    Setting("log", "json", Boolean(), False, "JSON lines on stdout.", "--json"),
    Setting("log", "quiet", Boolean(), False, "No per-update lines on stdout.", "--quiet"),
    Setting("log", "save_crops", FilePath(folder=True), None, "Store face crops in this folder (off by default).", "--save-crops"),
    Setting("device", "id", Name(MAX_DEVICE, "device id", "TEXT"), None, "Device id in events; unset: the host name.", "--device-id"),
    Setting("mqtt", "host", HostPort(1883), None, "MQTT broker HOST[:PORT]; unset: no MQTT.", "--mqtt"),
    Setting("mqtt", "prefix", TopicPrefix(), "fer-edge", "Topic prefix: PREFIX/DEVICE/...", "--mqtt-prefix"),
    Setting("mqtt", "username", Text(), None, "Broker user name.", "--mqtt-username"),
    Setting("mqtt", "password_file", FilePath(), None,
            "File holding the broker password (or LoadCredential=mqtt-password); never the password itself.",
            "--mqtt-password-file"),
    Setting("mqtt", "tls_ca", FilePath(exists=True), None, "CA certificate: use TLS.", "--mqtt-tls-ca"),
    Setting("mqtt", "tls_cert", FilePath(exists=True), None, "Client certificate.", "--mqtt-tls-cert"),
    Setting("mqtt", "tls_key", FilePath(exists=True), None, "Client key.", "--mqtt-tls-key"),
    Setting("mqtt", "durable_emotions", Boolean(), False, "Emotion updates too go through the durable outbox (QoS 1).",
            "--durable-emotions"),
    Setting("mqtt", "stats_interval", Number(1, 86400), 60.0, "Seconds between stats messages.", "--stats-interval"),
    Setting("mqtt", "discovery", Boolean(), True, "Announce the sensors to Home Assistant (MQTT discovery).",
            "--ha-discovery/--no-ha-discovery"),
    Setting("mqtt", "discovery_prefix", TopicPrefix(), "homeassistant", "Home Assistant's discovery prefix.",
            "--ha-discovery-prefix"),
    Setting("web", "listen", HostPort(None), None, "Serve the local web page on HOST:PORT (serve: 127.0.0.1:8080).", "--web"),
    Setting("web", "token_file", FilePath(), None, "Token for the page; required to listen beyond loopback.",
            "--web-token-file"),
    Setting("web", "live_fps", Number(0.5, 30), 5.0, "Live view frames/s.", "--live-fps"),
    Setting("web", "max_upload_mb", Number(0.1, 50), 10.0, "Largest photo upload in MB.", "--max-upload-mb"),
    Setting("web", "trusted_proxies", Networks(), None,
            "Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the client: "
            "the per-address limits count that client; unset: the header is ignored.", "--trusted-proxies"),
    Setting("cadence", "analyse_fps", Number(0, 240), 6.0,
            "Search for faces and classify them at most this many times a second of the source (every frame "
            "while a face's two likeliest emotions are close); a face that enters is found within "
            "1/analyse_fps s, and tracked faces keep their boxes and emotions in between. 0: every frame.",
            "--analyse-fps"),
    Setting("cadence", "every_frame", Boolean(), False, "Analyse every frame (as --analyse-fps 0).", "--every-frame"),
    Setting("sessions", "min_seconds", Number(0, 3600), 1.0, "Seconds a face must stay to open a session.", "--session-min"),
    Setting("sessions", "gap_seconds", Number(0, 3600), 3.0, "Seconds unseen before a session ends.", "--session-gap"),
    Setting("sessions", "exit_seconds", Number(0.1, 3600), 3.0, "Last seconds that make the exit emotion.", "--exit-seconds"),
    Setting("sessions", "valence", Valence(), None,
            "Per-label weights -1..1 for the satisfaction score; unset: the built-in ones (a model's other labels: 0).",
            "--valence"),
    Setting("deploy", "public_key", DeployKey(), None,
            "The fleet's public deploy key (fer-edge-deploy.pub): take signed models from the broker; "
            "unset: deployments off, nothing subscribed.", "--deploy-key"),
    Setting("deploy", "dir", FilePath(folder=True), None,
            "Folder of the deployed models; unset: models beside the log ($STATE_DIRECTORY or ~/.local/state/fer-edge).",
            "--deploy-dir"),
    Setting("deploy", "group", Name(), None, "The device's group, for deploy publish --group; unset: none.",
            "--deploy-group"),
    Setting("collector", "db", Text(nonempty=True), None,
            "collect: the fleet's database, a SQLite file or postgresql://USER@HOST/DB; unset: fleet.db in "
            "$STATE_DIRECTORY or ~/.local/state/fer-edge.", "--db"),
    Setting("collector", "db_password_file", FilePath(), None,
            "collect: file holding the database password (or LoadCredential=db-password, or ~/.pgpass).",
            "--db-password-file"),
    Setting("collector", "group", TopicLevel(), "fer-edge-collectors",
            "collect: the shared subscription's group; collectors in one group share the messages.", "--group"),
    Setting("collector", "client_id", Text(nonempty=True), None,
            "collect: MQTT client id, fixed so that the broker keeps the session; unset: fer-edge-collector-HOST.",
            "--client-id"),
    Setting("collector", "keep_days", Number(0, 36500), 0.0,
            "collect: delete visits older than this many days (0: keep all).", "--keep-days"),
    Setting(None, "annotate", FilePath(), None, "Write an annotated video (.mp4).", "--annotate"),
    Setting(None, "show", Boolean(), False, "Show the annotated frames in a window (needs a GUI OpenCV).", "--show"),
]

SECTIONS = list(dict.fromkeys(s.section for s in SETTINGS if s.section))
BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}


def check(setting: Setting, value: Any, where: str) -> Any:
    """`value` if it is allowed, else a ConfigError naming `where` it came from."""
    if value is None:
        return None
    problem = setting.kind.problem(value)
    if problem:
        raise ConfigError(f"{where}: {problem}, got {value!r}")
    return normalised(setting, value)


def normalised(setting: Setting, value: Any) -> Any:
    """An allowed value in the one type its readers expect (a camera as text, a number as float)."""
    if isinstance(setting.kind, Camera):
        return str(value)
    if isinstance(setting.kind, Number) and not setting.kind.integer:
        return float(value)
    return value


def read_file(path: str) -> Dict[str, Any]:
    """{setting name: value} from a TOML file; every value checked, errors name file, section and key."""
    try:
        with open(path, "rb") as f:
            # utf-8-sig: a byte-order mark, which Windows editors write, is no TOML error
            data = tomllib.loads(f.read().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (arrays or tables nested too deep)") from None
    return from_mapping(data, path)


def from_mapping(data: Dict[str, Any], path: str = "config") -> Dict[str, Any]:
    values = {}
    for section, entries in data.items():
        if section not in SECTIONS and not isinstance(entries, dict):
            raise ConfigError(top_level_key(path, section, entries))
        if section not in SECTIONS:
            raise ConfigError(f"{path}: [{section}]: unknown section; allowed: {', '.join(SECTIONS)}")
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: {section}: expected a [{section}] table")
        known = {s.key: s for s in SETTINGS if s.section == section}
        for key, value in entries.items():
            if key not in known:
                raise ConfigError(f"{path}: [{section}] {key}: unknown key; allowed: {', '.join(known)}")
            values[known[key].name] = check(known[key], value, f"{path}: [{section}] {key}")
    if values.get("source_camera") is not None and values.get("source_path") is not None:
        raise ConfigError(f"{path}: [source]: give camera or path, not both")
    return values


def top_level_key(path: str, key: str, value: Any) -> str:
    """What `camera = 0` above every [section] means: the setting of that name in its section."""
    homes = [s for s in SETTINGS if s.section and s.key == key]
    shown = toml_value(value) if isinstance(value, (str, int, float)) else "..."
    meant = " or ".join(f"[{s.section}] {key} = {shown}" for s in homes)
    return (f"{path}: {key} = {shown} at the top level: settings live in sections; "
            + (f"did you mean {meant}?" if homes else f"sections: {', '.join(SECTIONS)}"))


def section_name(section: str) -> str:
    """The record's class name of a section: `mqtt` -> `MqttSection`."""
    return section.capitalize() + "Section"


class Settings:
    """Resolved settings, read by section as typed records (settings_sections.py):
    `settings.mqtt.host`, `settings.run.annotate`."""

    source: sections.SourceSection
    detector: sections.DetectorSection
    model: sections.ModelSection
    log: sections.LogSection
    device: sections.DeviceSection
    mqtt: sections.MqttSection
    web: sections.WebSection
    cadence: sections.CadenceSection
    sessions: sections.SessionsSection
    deploy: sections.DeploySection
    collector: sections.CollectorSection
    run: sections.RunSection

    def __init__(self, values: Dict[str, Any]):
        self.values = {s.name: values.get(s.name, s.default) for s in SETTINGS}
        for section in SECTIONS + ["run"]:
            record = getattr(sections, section_name(section))
            setattr(self, section, record(**{
                s.key: self.values[s.name] for s in SETTINGS if (s.section or "run") == section}))

    def render(self) -> str:
        """The effective settings as TOML (what `config show` prints)."""
        lines = []
        for section in SECTIONS:
            lines.append(f"[{section}]")
            for s in (s for s in SETTINGS if s.section == section):
                value = self.values[s.name]
                if value is None:   # "(unset: what that means)  # what the setting is", "unset" once
                    what, _, meaning = s.help.partition("; unset: ")
                    lines.append(f"# {s.key} = (unset{': ' + meaning.rstrip('.') if meaning else ''})  # {what}")
                elif isinstance(value, dict):
                    lines.append(f"{s.key} = {{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }")
                else:  # a database address may hold its password: never printed
                    lines.append(f"{s.key} = {toml_value(without_password(value) if isinstance(value, str) else value)}")
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # JSON's string escapes are TOML's; TOML also wants DEL escaped. A control character
    # printed raw would make `config show > file` unreadable and rewrite the terminal.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def resolve(file_values: Dict[str, Any], given: Dict[str, Any]) -> Settings:
    """Flags given on the command line win over the file, which wins over the defaults.
    A source flag (--camera or --source) replaces the file's source of either kind."""
    values = dict(file_values)
    if given.get("source_camera") is not None or given.get("source_path") is not None:
        values.pop("source_camera", None)
        values.pop("source_path", None)
    values.update(given)
    return Settings(values)


RUN_SETTINGS = [s for s in SETTINGS if s.section != "collector"]
# `demo` sends its visit to a broker as `run` would, to show what Home Assistant gets.
DEMO_SETTINGS = [BY_NAME[name] for name in ("mqtt_host", "mqtt_username", "mqtt_password_file", "mqtt_tls_ca")]
COLLECT_SETTINGS = [s for s in SETTINGS if s.section == "collector"
                    or (s.section == "mqtt" and s.key in ("host", "prefix", "username", "password_file", "tls_ca",
                                                          "tls_cert", "tls_key"))]


def _setting_type(setting: Setting) -> Any:
    """The click type that reads a flag's text as the setting's kind and checks it."""
    import click

    class SettingType(click.ParamType):
        def __init__(self, setting: Setting):
            self.setting = setting
            self.name = setting.kind.metavar

        def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
            if not isinstance(value, str):
                return value
            parsed = self.setting.kind.from_text(value)
            problem = self.setting.kind.problem(parsed)
            if problem:
                self.fail(f"{problem}, got {value!r}", param, ctx)
            return normalised(self.setting, parsed)

    return SettingType(setting)


def setting_option(name: str, **overrides: Any) -> Callable:
    """The click option of the setting called `name` (`detector_type`, `collector_db`): its flag,
    kind and help from the table; `overrides` (a default, a help) where a command means it
    otherwise, as `eval --threads` defaults to one thread."""
    import click

    s = BY_NAME[name]
    assert s.flag, f"{name} has no flag"
    if isinstance(s.kind, Boolean):
        options: Dict[str, Any] = dict(is_flag="/" not in s.flag or None, default=s.default, show_default=True)
    else:
        options = dict(default=s.default, show_default=s.default is not None, type=_setting_type(s),
                       metavar=s.kind.metavar)
    if "default" in overrides:
        options["show_default"] = overrides["default"] is not None
    options.update({"help": s.help, **overrides})
    return click.option(s.flag, s.name, **options)


def click_options(settings: Iterable[Setting] = RUN_SETTINGS) -> Callable:
    """A decorator adding one click option per setting that has a flag."""

    def decorate(function: Callable) -> Callable:
        for s in reversed([s for s in settings if s.flag]):
            function = setting_option(s.name)(function)
        return function

    return decorate


def from_config(config_path: Optional[str], given: Dict[str, Any], **defaults: Any) -> Settings:
    """`given` (flags typed on the command line), over the config file, over `defaults` (a
    command's own, as `serve` listens on 127.0.0.1:8080), over the table's defaults."""
    return resolve(dict(defaults, **(read_file(config_path) if config_path else {})), given)


def given_on_command_line(ctx: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """The subset of click's `params` the user typed (not click's defaults)."""
    from click.core import ParameterSource

    return {name: value for name, value in params.items()
            if name in BY_NAME and ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}


def sections_source() -> str:
    """settings_sections.py: one frozen dataclass per section, its fields typed from the kinds."""
    lines = ['"""Each section of the settings as a typed, frozen record. Generated from the one table in',
             'settings.py; do not edit: `cd edge && python -m fer_edge.settings --sections > s.tmp && mv s.tmp fer_edge/core/settings_sections.py`."""',
             "", "from dataclasses import dataclass", "from typing import Dict, Optional, Union"]
    for section in SECTIONS + ["run"]:
        lines += ["", "", "@dataclass(frozen=True)", f"class {section_name(section)}:"]
        for s in SETTINGS:
            if (s.section or "run") != section:
                continue
            kind = s.kind.python_type
            annotation = f"Optional[{kind}]" if s.default is None else kind
            lines.append(f"    {s.key}: {annotation} = {s.default!r}")
    return "\n".join(lines) + "\n"


def markdown_reference() -> str:
    """docs/config.md's table: every setting with its section, key, flag, default and help."""
    lines = ["| section | key | flag | default | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = "" if s.default is None else f"`{toml_value(s.default)}`"
        flag = f"`{s.flag}`" if s.flag else "(file only)"
        where = f"`[{s.section}]`" if s.section else "(flag only)"
        key = f"`{s.key}`" if s.section else ""
        lines.append(f"| {where} | {key} | {flag} | {default} | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate docs/config.md's table, or with --sections settings_sections.py
    import sys

    print(sections_source() if sys.argv[1:] == ["--sections"] else markdown_reference(), end="")
