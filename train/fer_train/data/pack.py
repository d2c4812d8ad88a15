"""A compact, lossless copy of FER2013's faces for moving them to a training machine.

The CSV spells every grey level in decimal (301 MB; 94 MB gzipped). A pack keeps the
pixels as bytes, each row as its difference from the row above, compressed with xz:
about 0.7 of the raw pixels. It is a transfer format for machines that have the
accelerator but not the data; `fer-train` reads a pack wherever it reads the CSV.
"""

import lzma
import os

import numpy as np

from fer_edge.model.datasets import DatasetError, Faces

SIZE = 48
_FILTERS = [{"id": lzma.FILTER_DELTA, "dist": SIZE}, {"id": lzma.FILTER_LZMA2, "preset": 6}]


def is_pack(path: str) -> bool:
    return str(path).endswith(".npz")


def write_pack(faces: Faces, path: str) -> int:
    """Write `faces` (pixels, labels, CSV rows, usage) to `path`; return its size in bytes."""
    pixels = lzma.compress(np.ascontiguousarray(faces.images, dtype=np.uint8).tobytes(),
                           format=lzma.FORMAT_XZ, filters=_FILTERS)
    tmp = path + ".tmp.npz"
    np.savez(tmp, pixels=np.frombuffer(pixels, dtype=np.uint8), labels=faces.labels, rows=faces.rows,
             usage=np.asarray(faces.usage, dtype=str))
    os.replace(tmp, path)
    return os.path.getsize(path)


def read_pack(path: str) -> Faces:
    """The faces a pack holds, exactly as `read_fer2013` gave them when it was written."""
    try:
        with np.load(path, allow_pickle=False) as pack:
            labels, rows, usage = pack["labels"], pack["rows"], pack["usage"]
            pixels = np.frombuffer(lzma.decompress(pack["pixels"].tobytes()), dtype=np.uint8)
    except (OSError, ValueError, KeyError, lzma.LZMAError) as exc:
        raise DatasetError(f"{path}: not a fer-train face pack ({exc})") from None
    if pixels.size != len(labels) * SIZE * SIZE:
        raise DatasetError(f"{path}: holds {pixels.size} pixels for {len(labels)} faces")
    return Faces(images=pixels.reshape(len(labels), SIZE, SIZE), labels=labels, rows=rows, usage=usage)
