"""Which files are still images: one list that reading a camera source and reading a dataset
both go by, so a photo that one of them takes the other takes too."""

from typing import Tuple

IMAGE_SUFFIXES: Tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


def is_image_path(path: str) -> bool:
    """Whether `path` names a still image by its suffix (any case)."""
    return path.lower().endswith(IMAGE_SUFFIXES)
