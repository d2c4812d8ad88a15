"""The size of a JPEG or PNG from its first bytes, before anything is decoded.

A 1 MB PNG of one colour can decode to gigabytes of pixels; reading the header first lets
the web page refuse it while it is still 1 MB. Only JPEG and PNG are recognised, by their
bytes (not by a name or a content type a client chose).
"""

import struct
from typing import Tuple

from ..core.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless...); C4, C8 and CC are not frames.
SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageHeaderError(UserError):
    """Not a JPEG or PNG whose size can be read."""


def image_size(data: bytes) -> Tuple[str, int, int]:
    """("jpeg" | "png", width, height) of an encoded image."""
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageHeaderError("a PNG without its IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(b"\xff\xd8"):
        return ("jpeg", *_jpeg_size(data))
    raise ImageHeaderError("not a JPEG or PNG image")


def _jpeg_size(data: bytes) -> Tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageHeaderError("a damaged JPEG (no marker where one belongs)")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in SOF_MARKERS:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA:  # image data started without a frame header
            break
        i += 2 + length
    raise ImageHeaderError("a JPEG without a readable frame header")
