"""Whole files or none: a model or detector file is never left half written, and is known
by its sha256."""

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


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`; on a
    failure (a full disk) the temporary file goes and `path` is as it was."""
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(path)), delete=False) as part:
        try:
            part.write(data)
            part.flush()
        except OSError:
            os.unlink(part.name)
            raise
    try:
        os.chmod(part.name, mode)
        os.replace(part.name, path)
    except OSError:
        os.unlink(part.name)
        raise
