"""Folder datasets written out of the real FER2013 CSV, in the layouts people bring.

Every face is a lossless PNG named after its CSV row, so a test can say which face it is.
The field sets never go into a folder here: training data comes from FER2013 only.
"""

from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import cv2
import numpy as np

from fer_edge.core.labels import LABELS
from fer_edge.model.datasets import read_fer2013

KAGGLE = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}   # Kaggle's FER-2013 folders
THREE_PARTS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def write_fer2013_folders(csv_path: Path, root: Path, parts: Dict[str, str] = THREE_PARTS,
                          classes: Sequence[str] = LABELS, limit: Optional[int] = None,
                          names: Optional[Dict[str, str]] = None) -> Path:
    """`root/<part>/<class>/<row>.png` for the CSV's faces of `classes`, the first `limit` of
    each split; `names` renames class folders (the aliases other sets use)."""
    faces = read_fer2013(str(csv_path))
    for usage, part in parts.items():
        split = faces.split(usage, limit)
        for image, label, row in zip(split.images, split.labels, split.rows):
            name = LABELS[label]
            if name not in classes:
                continue
            folder = root / part / (names or {}).get(name, name)
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{row:05d}.png"), image)
    return root


def write_sequences(csv_path: Path, root: Path, subjects: int, per_subject: int,
                    classes: Iterable[str] = LABELS) -> Path:
    """CK+-style 48x48 crops in class folders, `S<subject>_<sequence>_<frame>.png`: three
    frames of a sequence are the same face, as CK+'s last frames nearly are."""
    faces = read_fer2013(str(csv_path), usage="Training")
    by_class = [list(np.flatnonzero(faces.labels == LABELS.index(c))) for c in classes]
    wanted = [face for row in zip(*by_class) for face in row]  # the classes in turn
    for k in range(subjects * per_subject):
        face = wanted[k]
        subject, sequence = 10 + k // per_subject, 1 + k % per_subject
        folder = root / LABELS[faces.labels[face]]
        folder.mkdir(parents=True, exist_ok=True)
        for frame in range(1, 4):  # near-identical frames: the face moves a pixel
            moved = np.roll(faces.images[face], frame - 1, axis=1)
            cv2.imwrite(str(folder / f"S{subject:03d}_{sequence:03d}_{frame:08d}.png"), moved)
    return root
