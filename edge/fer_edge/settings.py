"""Every setting of `fer-edge run` and `serve`, declared once.

Each `Setting` names its config-file section and key, its command-line flag, its kind
(which parses and checks a value), default and help. The click options, the TOML
validation, `config show` and docs/config.md all come from the one table below, so a
value is held to the same rule whether it comes from a flag or from the file.
"""

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

from .core.errors import UserError
from .core import settings_sections as sections
from .core.network import parse_networks, split_host_port, without_password
from .core.labels import LABEL_FORM, LABELS

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


class ConfigError(UserError):
    """A config file or flag value that cannot be used."""


class Kind:
    """How one kind of value is read from a flag's text and checked; `problem` says why not."""

    metavar = "TEXT"
    python_type = "str"   # the annotation of its field in settings_sections

    def from_text(self, text: str) -> Any:
        return text

    def problem(self, value: Any) -> Optional[str]:
        return None if isinstance(value, str) else "expected a string"


class Text(Kind):
    def __init__(self, nonempty: bool = False):
        self.nonempty = nonempty

    def problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, str):
            return "expected a string"
        if self.nonempty and not value.strip():
            return "expected a non-empty string"
        if "\x00" in value:
            return "a NUL character cannot be part of it"
        return None


class DeviceId(Text):
    """The device's name: the collector refuses every message of a device whose id is longer
    than it stores or holds control characters, so such an id is refused here, at the start."""

    def __init__(self):
        super().__init__(nonempty=True)

    def problem(self, value: Any) -> Optional[str]:
        from .fleet.message_check import MAX_DEVICE, printable   # only when an id is given: the check's module is not small

        problem = super().problem(value)
        if problem:
            return problem
        if len(value) > MAX_DEVICE:
            return f"at most {MAX_DEVICE} characters (the collector stores no longer id)"
        return None if printable(value) else "control characters cannot be part of a device id"


class TopicPrefix(Text):
    """An MQTT topic prefix: one or more levels, without the wildcards + and # (a subscription
    would match other topics, and paho refuses to publish to them) or an empty level."""

    metavar = "PREFIX"

    def __init__(self):
        super().__init__(nonempty=True)

    def problem(self, value: Any) -> Optional[str]:
        problem = super().problem(value)
        if problem:
            return problem
        if "+" in value or "#" in value or "\x00" in value:
            return "an MQTT topic prefix cannot hold + or # (they are wildcards)"
        if value.startswith("/") or value.endswith("/") or "//" in value:
            return "an MQTT topic prefix cannot start or end with / or hold an empty level"
        return None


class TopicLevel(TopicPrefix):
    """One MQTT topic level (a shared subscription's group name)."""

    metavar = "NAME"

    def problem(self, value: Any) -> Optional[str]:
        problem = super().problem(value)
        if problem:
            return problem.replace("topic prefix", "topic level")
        return "an MQTT topic level cannot hold /" if "/" in value else None


class FilePath(Kind):
    """A path; `exists` files are checked when the setting is read, not when first used."""

    metavar = "FILE"

    def __init__(self, exists: bool = False, folder: bool = False):
        self.exists, self.folder = exists, folder
        self.metavar = "DIR" if folder else "FILE"

    def problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, str) or not value:
            return "expected a path"
        if "\x00" in value:
            return "a NUL character cannot be part of a path"
        if self.exists and not os.path.isfile(value):
            return "no such file"
        return None


class Number(Kind):
    def __init__(self, minimum: Optional[float] = None, maximum: Optional[float] = None, integer: bool = False):
        self.minimum, self.maximum, self.integer = minimum, maximum, integer
        self.metavar = "N" if integer else "X"
        self.python_type = "int" if integer else "float"

    def from_text(self, text: str) -> Any:
        try:
            return int(text) if self.integer else float(text)
        except ValueError:
            return text  # `problem` names what was expected

    def problem(self, value: Any) -> Optional[str]:
        kind = "an integer" if self.integer else "a number"
        ok = isinstance(value, int) if self.integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not math.isfinite(value):
            return f"expected {kind}{self._range()}"
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            return f"expected {kind}{self._range()}"
        return None

    def _range(self):
        if self.minimum is not None and self.maximum is not None:
            return f" in {self.minimum:g}..{self.maximum:g}"
        if self.minimum is not None:
            return f" >= {self.minimum:g}"
        return ""


class Threads(Number):
    """A thread count, or "auto": one per CPU this process may use, at most `AUTO_MAX`."""

    AUTO_MAX = 4
    python_type = "Union[int, str]"
    metavar = "N|auto"

    def __init__(self):
        super().__init__(1, 64, integer=True)
        self.metavar = Threads.metavar
        self.python_type = Threads.python_type

    def from_text(self, text: str) -> Any:
        return "auto" if text == "auto" else super().from_text(text)

    def problem(self, value: Any) -> Optional[str]:
        if value == "auto":
            return None
        problem = super().problem(value)
        return problem and f'{problem} or "auto"'


def thread_count(value: Any) -> int:
    """The number of threads a `Threads` setting stands for on this machine."""
    if value != "auto":
        return int(value)
    try:
        cpus = len(os.sched_getaffinity(0))  # respects taskset, cgroups' cpusets and systemd's CPUAffinity
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, Threads.AUTO_MAX))


class Boolean(Kind):
    python_type = "bool"

    def problem(self, value: Any) -> Optional[str]:
        return None if isinstance(value, bool) else "expected true or false"


class Choice(Kind):
    def __init__(self, *allowed: str):
        self.allowed = allowed
        self.metavar = "[" + "|".join(allowed) + "]"

    def problem(self, value: Any) -> Optional[str]:
        return None if value in self.allowed else f"expected one of {', '.join(self.allowed)}"


class Camera(Kind):
    metavar = "CAMERA"

    def problem(self, value: Any) -> Optional[str]:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return None
        if isinstance(value, str) and (value == "pi" or value.isdigit() or value.startswith("/dev/video")):
            return None
        return 'expected a camera index (0), a /dev/videoN path or "pi"'


class HostPort(Kind):
    """A network address; `default_port` None means the port must be given."""

    metavar = "HOST[:PORT]"

    def __init__(self, default_port: Optional[int]):
        self.default_port = default_port
        if default_port is None:
            self.metavar = "HOST:PORT"

    def problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, str):
            return "expected a string"
        try:
            split_host_port(value, self.default_port)
        except ValueError as exc:
            return str(exc)
        return None


class Networks(Kind):
    """IP addresses or networks, comma-separated: `127.0.0.1, 10.0.0.0/8`."""

    metavar = "ADDRESS[/BITS],..."

    def problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, str):
            return "expected addresses or networks, comma-separated"
        try:
            parse_networks(value)
        except ValueError as exc:
            return str(exc)
        return None


class Valence(Kind):
    """Per-emotion weights: a TOML table, or `happy=1,sad=-1` on the command line."""

    metavar = "EMOTION=W,..."
    python_type = "Dict[str, float]"

    def from_text(self, text: str) -> Any:
        weights = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, number = part.partition("=")
            try:
                weights[key.strip()] = float(number)
            except ValueError:
                return text
        return weights

    def problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, dict):
            return "expected emotion = weight pairs"
        for key, weight in value.items():
            if not LABEL_FORM.fullmatch(str(key)):
                return f"{key!r} is not a label name (lowercase letters, digits, underscores: {', '.join(LABELS)}, ...)"
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -1 <= weight <= 1:
                return f"{key}: expected a number in -1..1"
        return None


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


def _detector_names():
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
    Setting("model", "path", FilePath(), None, "Emotion model (.tflite); unset: the shipped int8 model.", "--model"),
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
    Setting("device", "id", DeviceId(), None, "Device id in events; unset: the host name.", "--device-id"),
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
        def __init__(self, setting):
            self.setting = setting
            self.name = setting.kind.metavar

        def convert(self, value, param, ctx):
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

    def decorate(function):
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
