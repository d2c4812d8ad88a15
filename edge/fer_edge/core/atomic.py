"""Whole files or none: a model or detector file is never left half written, and is known
by its sha256. A durable write also survives a power cut: on disk, whole, before it returns."""

import hashlib
import os
import tempfile


def sha256_of(path: str) -> str:
    """The hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: str, data: bytes, mode: int = 0o644, durable: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`; on a
    failure (a full disk) the temporary file goes and `path` is as it was.

    `durable`: the data is fsync'd before the rename and the folder after it, so that after a
    power cut at any moment `path` holds the old bytes or the new, never a mix or nothing
    (a rename alone may reach the disk before the data it names)."""
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as part:
        try:
            part.write(data)
            part.flush()
            if durable:
                os.fsync(part.fileno())
        except OSError:
            os.unlink(part.name)
            raise
    try:
        os.chmod(part.name, mode)
        os.replace(part.name, path)
    except OSError:
        os.unlink(part.name)
        raise
    if durable:
        sync_folder(folder)


def sync_folder(folder: str) -> None:
    """fsync a folder, so that the renames and deletions in it are on disk."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
