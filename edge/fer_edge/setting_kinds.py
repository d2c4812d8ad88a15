"""The kinds of value a setting holds: how a flag's text is read (`from_text`) and what a
value must be (`problem`), whether it comes from a flag or from the config file. The table of
settings (settings.py) gives each setting one of these."""

import math
import os
from typing import Any, Optional

from .core.labels import LABEL_FORM, LABELS
from .core.network import parse_networks, split_host_port


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


class Name(Text):
    """A name a person gives (a device's id, its group): printable and of bounded length. The
    collector refuses every message of a device whose id is longer than it stores or holds
    control characters, so such a name is refused here, at the start."""

    def __init__(self, longest: int = 64, what: str = "name", metavar: str = "NAME") -> None:
        super().__init__(nonempty=True)
        self.longest, self.what, self.metavar = longest, what, metavar

    def problem(self, value: Any) -> Optional[str]:
        from .core.log import unprintable

        problem = super().problem(value)
        if problem:
            return problem
        if len(value) > self.longest:
            return f"at most {self.longest} characters"
        return f"control characters cannot be part of a {self.what}" if any(unprintable(c) for c in value) else None


class TopicPrefix(Text):
    """An MQTT topic prefix: one or more levels, without the wildcards + and # (a subscription
    would match other topics, and paho refuses to publish to them) or an empty level."""

    metavar = "PREFIX"

    def __init__(self) -> None:
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


class DeployKey(FilePath):
    """The fleet's public deploy key: a missing file, a private key or no key at all is
    refused when the setting is read (by `config check` too), not at the first order."""

    def __init__(self) -> None:
        super().__init__(exists=True)

    def problem(self, value: Any) -> Optional[str]:
        problem = super().problem(value)
        if problem:
            return problem
        from .core.errors import UserError
        from .deploy.order import load_public_key   # only when a key is set: cryptography is not small

        try:
            load_public_key(value)
        except UserError as exc:
            return str(exc).removeprefix(f"{value}: ")
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

    def _range(self) -> str:
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

    def __init__(self) -> None:
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
