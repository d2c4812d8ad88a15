"""Model metadata that travels inside the .tflite file.

The metadata is a JSON document in a zip archive appended to the TFLite flatbuffer, the
same trick TFLite Support uses for its associated files: the interpreter ignores the
trailing bytes, and `zipfile` finds the archive from the end. One file to copy, nothing
beside it to lose, and no extra dependency to read it.
"""

import hashlib
import io
import json
import zipfile

from typing import Any, Optional, Sequence

from ..core.labels import LABELS, label_problem
from .preprocess import DEFAULT_MARGIN, PREPROCESS_NAME, PREPROCESS_VERSION, SIZE
from ..core.errors import UserError

METADATA_NAME = "fer_edge_metadata.json"
FORMAT = "fer-edge-model"
FORMAT_VERSION = 1


class ModelError(UserError):
    """A model file the runtime will not run; the message is one line for the user."""


def model_metadata(quantization: str, input_quant: Optional[list] = None, output_quant: Optional[list] = None,
                   margin: float = DEFAULT_MARGIN, labels: Sequence[str] = LABELS,
                   **more: Any) -> dict:
    """The metadata every fer-edge model carries (what `check_metadata` asks for), plus `more`.
    `labels` name the model's outputs in order."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "labels": list(labels),
        "input": {"size": SIZE, "channels": 1, "colour": "grey", "range": "grey levels 0..255",
                  "quantization": input_quant},
        "output": {"kind": "logits", "quantization": output_quant},
        "preprocess": {"name": PREPROCESS_NAME, "version": PREPROCESS_VERSION, "margin": margin},
        "quantization": quantization,
        **more,
    }


def strip_metadata(data: bytes) -> bytes:
    """The bare flatbuffer: `data` without an appended metadata archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if METADATA_NAME not in archive.namelist():
                return data
            start = min(info.header_offset for info in archive.infolist())
            return data[:start] if start > 0 else data
    except zipfile.BadZipFile:
        return data


def embed_metadata(model_bytes: bytes, metadata: dict) -> bytes:
    """Return the model with `metadata` (a dict) appended; replaces earlier metadata. The
    metadata records the sha256 of the flatbuffer, so a damaged copy is refused at load."""
    bare = strip_metadata(model_bytes)
    metadata = dict(metadata, weights_sha256=hashlib.sha256(bare).hexdigest())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(metadata, indent=1, sort_keys=True))
    # Zip offsets are relative to the archive start; ZipFile tolerates data before it.
    return bare + buffer.getvalue()


def read_metadata(data: bytes, source: str = "model") -> dict:
    """The metadata dict of a model's bytes, or ModelError saying why not."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{source}: not a TFLite model (no TFL3 identifier)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            metadata = json.loads(archive.read(METADATA_NAME))
    except (zipfile.BadZipFile, KeyError):
        raise ModelError(f"{source}: has no fer-edge metadata (convert it with fer-convert)") from None
    except (ValueError, zipfile.LargeZipFile) as exc:
        raise ModelError(f"{source}: unreadable metadata ({exc})") from None
    check_metadata(metadata, source)
    expected = metadata.get("weights_sha256")
    if expected and hashlib.sha256(strip_metadata(data)).hexdigest() != expected:
        raise ModelError(f"{source}: the model's weights do not match the sha256 in its metadata "
                         "(a damaged copy: copy the file again)")
    return metadata


def read_model_metadata(path: str) -> dict:
    """The metadata of the model file at `path`, or ModelError saying why not."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model ({exc.strerror or exc})") from None
    return read_metadata(data, source=path)


def check_metadata(metadata: dict, source: str = "model") -> dict:
    """Refuse metadata this runtime cannot honour, with a one-line reason."""
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelError(f"{source}: metadata is not of format {FORMAT!r}")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{source}: metadata format {metadata.get('format_version')} is newer than this fer-edge ({FORMAT_VERSION}); upgrade fer-edge")
    problem = label_problem(metadata.get("labels"))
    if problem:
        raise ModelError(f"{source}: {problem}")
    pre = metadata.get("preprocess", {})
    if pre.get("name") != PREPROCESS_NAME or pre.get("version") != PREPROCESS_VERSION:
        raise ModelError(f"{source}: preprocessing {pre.get('name')} v{pre.get('version')} is not {PREPROCESS_NAME} v{PREPROCESS_VERSION}")
    spec = metadata.get("input", {})
    if spec.get("size") != SIZE or spec.get("channels") != 1:
        raise ModelError(f"{source}: input {spec.get('size')}x{spec.get('size')}x{spec.get('channels')} is not {SIZE}x{SIZE}x1 grey")
    return metadata
