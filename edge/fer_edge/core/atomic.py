"""Whole files or none: a model or detector file is never left half written."""

import os
import tempfile


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(path)), delete=False) as part:
        part.write(data)
    try:
        os.chmod(part.name, mode)
        os.replace(part.name, path)
    except OSError:
        os.unlink(part.name)
        raise
