"""The config file (TOML): every option of `fer-edge run` in one typed, validated structure.

Command-line flags override the file. A wrong key or value is one line naming the key and
what is allowed. The file never holds a secret itself, only the paths of files that do
(`password_file`, `token_file`), so showing it reveals none.
"""

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from .detect import DETECTORS


class ConfigError(ValueError):
    pass


def _number(minimum=None, integer=False):
    def check(value):
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if not ok or isinstance(value, bool) or (minimum is not None and value < minimum):
            kind = "an integer" if integer else "a number"
            return f"expected {kind}{f' >= {minimum}' if minimum is not None else ''}"
        return None
    return check


def _string(value):
    return None if isinstance(value, str) else "expected a string"


def _boolean(value):
    return None if isinstance(value, bool) else "expected true or false"


def _choice(*allowed):
    def check(value):
        return None if value in allowed else f"expected one of {', '.join(map(str, allowed))}"
    return check


def _camera(value):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    if isinstance(value, str) and (value == "pi" or value.isdigit() or value.startswith("/dev/video")):
        return None
    return "expected a camera index (0), a /dev/videoN path or \"pi\""


def _valence(value):
    from .labels import LABELS

    if not isinstance(value, dict):
        return "expected a table of emotion = weight"
    for key, weight in value.items():
        if key not in LABELS:
            return f"unknown emotion {key!r}; allowed: {', '.join(LABELS)}"
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -1 <= weight <= 1:
            return f"{key}: expected a number in -1..1"
    return None


# section -> key -> (run() parameter, validator, help)
SCHEMA = {
    "source": {
        "camera": ("camera", _camera, "camera index, /dev/videoN or \"pi\""),
        "path": ("source", _string, "video/image file, folder or stream URL (instead of camera)"),
        "fps": ("fps_cap", _number(0.1), "process at most this many frames/s"),
        "realtime": ("realtime", _boolean, "play a file at its own frame rate"),
        "loop": ("loop", _boolean, "start a file again when it ends"),
        "max_frames": ("max_frames", _number(1, integer=True), "stop after this many frames"),
    },
    "detector": {
        "type": ("detector", _choice(*DETECTORS), "face detector"),
        "blazeface_model": ("blazeface_model", _string, "path of a BlazeFace .tflite"),
        "min_face": ("min_face", _number(8, integer=True), "smallest face side in pixels"),
    },
    "model": {
        "path": ("model_path", _string, "emotion model (.tflite); empty: the shipped one"),
        "threads": ("threads", _number(1, integer=True), "LiteRT threads"),
        "delegate": ("delegate", _choice("cpu", "edgetpu"), "cpu or edgetpu (Coral)"),
        "margin": ("margin", _number(0), "crop margin around a face box"),
        "mirror": ("mirror", _boolean, "also classify each face mirrored and average (twice the classifier time)"),
    },
    "log": {
        "db": ("db_path", _string, "SQLite log path"),
        "enabled": ("log_enabled", _boolean, "write the SQLite log"),
        "interval": ("log_interval", _number(0), "seconds between logged updates per face"),
        "json": ("as_json", _boolean, "JSON lines on stdout"),
        "quiet": ("quiet", _boolean, "no per-update lines on stdout"),
        "save_crops": ("save_crops", _string, "store face crops in this folder (off by default)"),
    },
    "device": {
        "id": ("device_id", _string, "device id in events"),
    },
    "mqtt": {
        "host": ("mqtt_host", _string, "broker HOST[:PORT]"),
        "prefix": ("mqtt_prefix", _string, "topic prefix"),
        "username": ("mqtt_username", _string, "broker user name"),
        "password_file": ("mqtt_password_file", _string, "file holding the password (or LoadCredential=mqtt-password)"),
        "tls_ca": ("mqtt_tls_ca", _string, "CA certificate: use TLS"),
        "tls_cert": ("mqtt_tls_cert", _string, "client certificate"),
        "tls_key": ("mqtt_tls_key", _string, "client key"),
        "durable_emotions": ("durable_emotions", _boolean, "emotion updates through the outbox too"),
        "stats_interval": ("stats_interval", _number(1), "seconds between stats messages"),
    },
    "web": {
        "listen": ("web", _string, "serve the local web page on HOST:PORT (beside the camera loop)"),
        "token_file": ("web_token_file", _string, "token file; required to listen beyond loopback"),
        "live_fps": ("live_fps", _number(0.5), "live view frames/s"),
        "max_upload_mb": ("max_upload_mb", _number(0.1), "largest photo upload"),
    },
    "sessions": {
        "min_seconds": ("session_min", _number(0), "seconds a face must stay to open a session"),
        "gap_seconds": ("session_gap", _number(0), "seconds unseen before a session ends"),
        "exit_seconds": ("exit_seconds", _number(0.1), "last seconds that make the exit emotion"),
        "valence": ("valence", _valence, "per-emotion weights -1..1 for the satisfaction score"),
    },
}


def load_config(path):
    """Validated {run() parameter: value} from a TOML file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return validate(data, path)


def validate(data, path="config"):
    values = {}
    for section, entries in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{path}: [{section}]: unknown section; allowed: {', '.join(SCHEMA)}")
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: {section}: expected a [{section}] table")
        for key, value in entries.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{path}: [{section}] {key}: unknown key; allowed: {', '.join(SCHEMA[section])}")
            parameter, check, _ = SCHEMA[section][key]
            problem = check(value)
            if problem:
                raise ConfigError(f"{path}: [{section}] {key}: {problem}, got {value!r}")
            values[parameter] = str(value) if parameter == "camera" else value
    if "camera" in values and "source" in values:
        raise ConfigError(f"{path}: [source]: give camera or path, not both")
    if "log_enabled" in values:
        values["no_db"] = not values.pop("log_enabled")
    return values


def render(settings):
    """The effective settings as TOML-like text."""
    lines = []
    for section, entries in SCHEMA.items():
        lines.append(f"[{section}]")
        for key, (parameter, _, help_text) in entries.items():
            if parameter == "log_enabled":
                value = not settings.get("no_db", False)
            else:
                value = settings.get(parameter)
            if value is None:
                lines.append(f"# {key} = (unset: {help_text})")
                continue
            if isinstance(value, dict):
                lines.append(f"{key} = {{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }")
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
