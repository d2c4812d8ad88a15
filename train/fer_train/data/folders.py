"""Training on a folder of class folders: the layouts people bring, their label set, and
splits that keep one person's faces on one side.

A folder is `ROOT/<class>/*` (split here) or `ROOT/train/<class>/*` with `ROOT/test/` and
optionally `ROOT/val/`. `fer-train fit` and `fer-convert` both read it through
`read_folder_dataset` with the options the run recorded, so they see the same split.
It imports neither Keras nor TensorFlow.
"""

import dataclasses
import hashlib
import os
import re
from collections import Counter
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from fer_edge.core.labels import canonical, label_problem
from fer_edge.model.datasets import (PARTS, DatasetError, Faces, is_csv, order_labels, read_class_folders,
                                     split_part_folder)

HELD_OUT = 0.1   # the share of faces (of each class) put in val, and in test, when the folder has no such part


@dataclasses.dataclass(frozen=True)
class FolderOptions:
    """How a folder dataset is read and split; kept in the run's state.json (`data`)."""

    classes: Tuple[str, ...] = ()    # pick and order these labels (empty: every class folder)
    detect: bool = False             # find the face in each photo with the device's detector and crop
    group: Optional[str] = None      # a regex on the file name; its first group stays on one side of a split
    seed: int = 1

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "classes": list(self.classes)}

    @classmethod
    def from_json(cls, record: dict) -> "FolderOptions":
        return cls(classes=tuple(record.get("classes") or ()), detect=bool(record.get("detect")),
                   group=record.get("group"), seed=int(record.get("seed", 1)))


def is_folder_dataset(path: str) -> bool:
    return os.path.isdir(path) and not is_csv(path)


def layout(root: str) -> Dict[str, str]:
    """{part: folder} of the parts the folder has; {} for a folder of class folders."""
    parts = {p: os.path.join(root, p) for p in PARTS if os.path.isdir(os.path.join(root, p))}
    if parts and "train" not in parts:
        raise DatasetError(f"{root}: has {', '.join(parts)}/ but no train/ folder")
    return parts


def group_of(pattern: Optional[re.Pattern], name: str) -> str:
    """The group a file belongs to: the first match group of `pattern` on its base name, or the file itself."""
    base = os.path.basename(name)
    if pattern is None:
        return name
    match = pattern.search(base)
    if not match:
        return name
    return match.group(1) if match.groups() else match.group(0)


def held_out(labels: np.ndarray, groups: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """A mask of the faces to hold out: about `fraction` of each class, whole groups at a time.

    Groups are visited in a seeded random order and held out while the class most of their
    faces have still needs faces; a class of 3 faces or more gives at least one."""
    names = sorted(set(groups))
    index = {g: k for k, g in enumerate(names)}
    members = np.array([index[g] for g in groups], np.int64)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(labels, minlength=n_classes)
    target = np.where(counts >= 3, np.maximum(1, np.round(counts * fraction)), 0)
    taken = np.zeros(n_classes, np.int64)
    chosen = np.zeros(len(names), bool)
    for g in np.random.default_rng(seed).permutation(len(names)):
        in_group = labels[members == g]
        main = int(np.bincount(in_group, minlength=n_classes).argmax())
        if taken[main] < target[main]:
            chosen[g] = True
            taken += np.bincount(in_group, minlength=n_classes)
    return chosen[members]


def _detected(faces: Faces, say: Callable[[str], None]) -> Faces:
    """The largest face of each photo, framed by the device's detector and crop; photos without one are counted."""
    from fer_edge.model.preprocess import DEFAULT_MARGIN
    from fer_edge.vision.analyzer import largest_faces
    from fer_edge.vision.detect import make_detector
    from fer_edge.vision.running_mode import RunningMode

    def progress(photos: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        for k, photo in enumerate(photos, start=1):
            yield photo
            if k % 200 == 0:
                say(f"  looked for faces in {k} of {len(photos)} photos")

    crops, found = largest_faces(faces.images, make_detector("auto", min_size=16, mode=RunningMode.STILLS), DEFAULT_MARGIN,
                                 progress)
    kept = faces.subset(found).with_report_of(faces)
    kept.images = crops[found]
    if not found.all():
        kept.skipped["no face found"] += int((~found).sum())
    return kept


def _read_part(folder: str, detect: bool, say: Callable[[str], None], only: Optional[Sequence[str]] = None) -> Faces:
    """One part's faces (or just the files `only` names), ordered by file name across the
    classes (a CSV's row order, where the names are row numbers), so that `--limit` and the
    seed pick the same faces."""
    def progress(n: int) -> None:
        if n % 5000 == 0:
            say(f"  {n} images read from {folder}")

    faces = read_class_folders(folder, raw=detect, labels=None, progress=progress, only=only)
    names = faces.names or []
    order = sorted(range(len(names)), key=lambda i: (os.path.basename(names[i]), names[i]))
    ordered = faces.subset(np.array(order, np.int64)).with_report_of(faces)
    return _detected(ordered, say) if detect else ordered


def _label_set(parts: Dict[str, Faces], classes: Sequence[str], root: str) -> Tuple[str, ...]:
    found = order_labels([faces.label_names[i] for faces in parts.values() for i in set(faces.labels.tolist())])
    if classes:
        picked = tuple(canonical(c) for c in classes)
        missing = [c for c, label in zip(classes, picked) if label not in found]
        if missing:
            raise DatasetError(f"{root}: no class folder for {', '.join(missing)} (found {', '.join(found)})")
        found = picked
    if len(found) < 2:
        read = "; ".join(faces.summary() for faces in parts.values())
        raise DatasetError(f"{root}: needs at least two classes with images (found {', '.join(found) or 'none'}; "
                           f"read {read})")
    problem = label_problem(list(found))
    if problem:
        raise DatasetError(f"{root}: {problem}")
    return found


def read_folder_dataset(root: str, options: FolderOptions, limit: Optional[int] = None,
                        say: Callable[[str], None] = print) -> Tuple[Dict[str, Faces], dict]:
    """The train, val and test faces of a folder dataset, in one label set, and a record of the
    split (which file went where). Raises DatasetError with a one-line reason when the folder
    cannot train a model."""
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: not a folder")
    try:
        pattern = re.compile(options.group) if options.group else None
    except re.error as exc:
        raise DatasetError(f"--group {options.group!r}: not a regular expression ({exc})") from None
    found = layout(root)
    read = {part: _read_part(folder, options.detect, say) for part, folder in (found or {"all": root}).items()}
    labels = _label_set(read, options.classes, root)
    read = {part: faces.relabelled(labels) for part, faces in read.items()}
    for part, faces in read.items():
        say(f"read {os.path.join(root, part) if found else root}: {faces.summary()}")
    data = dict(read) if found else {"train": read["all"]}
    pool = 1.0   # the share of the whole that data["train"] still holds
    if "test" not in data:
        data["train"], data["test"] = _split(data["train"], pattern, HELD_OUT, options.seed)
        pool -= HELD_OUT
    if "val" not in data:
        data["train"], data["val"] = _split(data["train"], pattern, HELD_OUT / pool, options.seed + 1)
    for part in PARTS:
        empty = [labels[c] for c in range(len(labels)) if not (data[part].labels == c).any()]
        if not len(data[part]):
            read_lines = "; ".join(faces.summary() for faces in read.values())
            raise DatasetError(f"{root}: no faces left for {part} (read {read_lines}; too few faces: "
                               f"add more or a {part}/ folder)")
        if part == "train" and empty:
            raise DatasetError(f"{root}: no training faces of {', '.join(empty)}")
    record = {"root": os.path.abspath(root), "layout": "/".join(found) if found else "class folders",
              "labels": list(labels), **options.to_json(),
              **{part: sorted(data[part].names or []) for part in PARTS}}
    _say_split(data, pattern, say)
    if limit:
        data = {part: faces.first(limit) for part, faces in data.items()}
    return data, record


def read_recorded_split(record: dict, root: Optional[str] = None,
                        say: Callable[[str], None] = print) -> Dict[str, Faces]:
    """The train, val and test faces of a run as its split record (split.json) lists them, read
    as `read_folder_dataset` read them, in the same order and the run's labels; files added to
    the folder since stay out. `root` is where the dataset is now (default: where it was)."""
    labels = tuple(record["labels"])
    data = {}
    for part in PARTS:
        folder = split_part_folder(record, part, root)
        data[part] = _read_part(folder, bool(record.get("detect")), say, only=record[part]).relabelled(labels)
        say(f"read {part} as the run split it: {data[part].summary()}")
    return data


def _split(faces: Faces, pattern: Optional[re.Pattern], fraction: float, seed: int) -> Tuple[Faces, Faces]:
    groups = [group_of(pattern, name) for name in faces.names or []]
    mask = held_out(faces.labels, groups, fraction, seed)
    return faces.subset(~mask), faces.subset(mask)


def _say_split(data: Dict[str, Faces], pattern: Optional[re.Pattern], say: Callable[[str], None]) -> None:
    sizes = ", ".join(f"{part} {len(data[part])}" for part in PARTS)
    line = f"split: {sizes} faces"
    if pattern is not None:
        sides = {part: {group_of(pattern, n) for n in data[part].names or []} for part in PARTS}
        line += f"; groups {', '.join(f'{part} {len(sides[part])}' for part in PARTS)}"
        shared = (sides["train"] & sides["test"]) | (sides["train"] & sides["val"]) | (sides["val"] & sides["test"])
        if shared:  # only where the folder's own train/test share a group
            line += f"; {len(shared)} groups on two sides (the folder's own parts)"
    seen = {hashlib.sha1(face.tobytes()).digest() for face in data["train"].images}
    repeated = {part: sum(hashlib.sha1(face.tobytes()).digest() in seen for face in data[part].images)
                for part in ("val", "test")}
    if any(repeated.values()):
        line += "; faces also in train: " + ", ".join(f"{part} {n}" for part, n in repeated.items())
    say(line)
    counts = Counter()  # type: Counter
    for faces in data.values():
        counts.update(faces.label_names[i] for i in faces.labels)
    say("classes: " + ", ".join(f"{label} {counts[label]}" for label in data["train"].label_names))
