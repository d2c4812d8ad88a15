"""Dataset readers shared by training, conversion and on-device evaluation.

Three formats: the original FER2013 CSV (plain or gzip), the FER+ vote CSV aligned with it
by row, and a folder (or .tar/.tar.gz archive) of class folders. Bad images are skipped and
counted, never fatal; a malformed CSV row is an error that names its line.
"""

import csv
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, Iterator, Optional, Sequence, TextIO, Tuple, Union

import cv2
import numpy as np

from ..core.labels import LABELS, canonical, label_index
from .preprocess import SIZE, crop_face
from ..core.errors import UserError
from ..core.media import is_image_path

USAGES = ("Training", "PublicTest", "PrivateTest")
PARTS = ("train", "val", "test")   # a run's split of a folder dataset, in FER2013's roles
PART_OF_USAGE = dict(zip(USAGES, PARTS))
SPLIT_RECORD = "split.json"   # what `fer-train fit` writes in a run folder trained on a folder dataset


class DatasetError(UserError):
    """A dataset that cannot be read; the message is one line for the user."""


@dataclass
class Faces:
    """Images with labels. `images` is uint8 (N,48,48) unless read with raw=True (a list)."""

    images: Any   # an (N,48,48) uint8 array, or a list of photos with raw=True
    labels: np.ndarray
    rows: np.ndarray
    skipped: Counter = field(default_factory=Counter)
    unknown_classes: Counter = field(default_factory=Counter)
    usage: Optional[np.ndarray] = None
    names: Optional[list] = None
    label_names: Tuple[str, ...] = LABELS   # what each index in `labels` means
    notes: list = field(default_factory=list)  # one line each: what a reader noticed (duplicates, empty classes)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Any) -> "Faces":
        """The faces at `index` (positions or a mask), with their labels, CSV rows, splits and file names."""
        index = np.asarray(index)
        usage = None if self.usage is None else self.usage[index]
        names = None if self.names is None else [self.names[i] for i in np.arange(len(self))[index]]
        images = ([self.images[i] for i in np.arange(len(self))[index]] if isinstance(self.images, list)
                  else self.images[index])
        return Faces(images=images, labels=self.labels[index], rows=self.rows[index], usage=usage,
                     names=names, label_names=self.label_names)

    def first(self, n: Optional[int]) -> "Faces":
        """The first `n` faces (all of them for None)."""
        return self.subset(np.arange(len(self))[:n])

    def with_report_of(self, source: "Faces") -> "Faces":
        """These faces, carrying what reading `source` skipped and noticed (a copy of it)."""
        self.skipped, self.unknown_classes = Counter(source.skipped), Counter(source.unknown_classes)
        self.notes = list(source.notes)
        return self

    def relabelled(self, labels: Sequence[str]) -> "Faces":
        """The same faces with their labels as indices into `labels`; faces whose label is not
        among them are left out (and counted in the summary)."""
        labels = tuple(labels)
        if labels == self.label_names:
            return self
        mapping = np.array([labels.index(n) if n in labels else -1 for n in self.label_names] or [-1])
        new = mapping[self.labels] if len(self.labels) else self.labels
        kept = self.subset(new >= 0).with_report_of(self)
        kept.labels, kept.label_names = new[new >= 0], labels
        for name, n in Counter(self.label_names[i] for i in self.labels[new < 0]).items():
            kept.unknown_classes[name] += n
        return kept

    def split(self, usage: str, limit: Optional[int] = None) -> "Faces":
        """The faces of one FER2013 split (Training, PublicTest, PrivateTest), the first `limit`."""
        if self.usage is None:
            raise DatasetError("these faces carry no FER2013 split")
        return self.subset((self.usage == usage).nonzero()[0][:limit])

    def summary(self) -> str:
        """One line: how many were read, skipped and why."""
        parts = [f"{len(self)} images"]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())))
        if self.unknown_classes:
            parts.append("ignored classes " + ", ".join(f"{k} ({n})" for k, n in sorted(self.unknown_classes.items())))
        return "; ".join(parts + self.notes)


def is_blank(image: np.ndarray) -> bool:
    """True for an image with (almost) no contrast, such as FER2013's all-black rows."""
    return int(image.max()) - int(image.min()) < 8


def _open_text(path: str) -> TextIO:
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_fer2013(path: str, usage: Union[None, str, Sequence[str]] = None, keep_blank: bool = False) -> "Faces":
    """Read the FER2013 CSV (`emotion,pixels,Usage`); `usage` is one split name or a tuple.

    Blank (all-black) rows are skipped and counted unless keep_blank. `rows` holds the
    0-based data-row index, which is what the FER+ file aligns on.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    wanted = None if usage is None else ({usage} if isinstance(usage, str) else set(usage))
    if wanted and not wanted <= set(USAGES):
        raise DatasetError(f"unknown usage {sorted(wanted - set(USAGES))}; choose from {', '.join(USAGES)}")
    images, labels, rows, usages = [], [], [], []   # type: list, list, list, list
    skipped: Counter = Counter()
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or [h.strip() for h in header[:2]] != ["emotion", "pixels"]:
                raise DatasetError(f"{path}: line 1: expected header 'emotion,pixels,Usage', got {','.join(header or [])[:60]!r}")
            has_usage = len(header) > 2
            for row_index, record in enumerate(reader):
                line = reader.line_num
                if len(record) < (3 if has_usage else 2):
                    raise DatasetError(f"{path}: line {line}: expected {len(header)} fields, got {len(record)} (truncated row?)")
                split = record[2].strip() if has_usage else "Training"
                if wanted and split not in wanted:
                    continue
                try:
                    emotion = int(record[0])
                    pixels = np.array(record[1].split(), dtype=np.int64)
                except ValueError:
                    raise DatasetError(f"{path}: line {line}: emotion and pixels must be integers") from None
                if not 0 <= emotion < len(LABELS):
                    raise DatasetError(f"{path}: line {line}: emotion {emotion} is not in 0..{len(LABELS) - 1}")
                if pixels.size != SIZE * SIZE or pixels.min() < 0 or pixels.max() > 255:
                    raise DatasetError(f"{path}: line {line}: expected {SIZE * SIZE} pixels in 0..255, got {pixels.size}")
                image = pixels.astype(np.uint8).reshape(SIZE, SIZE)
                if not keep_blank and is_blank(image):
                    skipped["blank"] += 1
                    continue
                images.append(image)
                labels.append(emotion)
                rows.append(row_index)
                usages.append(split)
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    return Faces(
        images=np.stack(images) if images else np.zeros((0, SIZE, SIZE), np.uint8),
        labels=np.array(labels, np.int64), rows=np.array(rows, np.int64),
        skipped=skipped, usage=np.array(usages),
    )


# FER+ vote columns, in file order, and where each lands in LABELS (None: not an emotion of ours).
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")


def read_ferplus(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """FER+ votes aligned by row with fer2013.csv: returns (votes (N,10) int, usage (N,)).

    Align by position, never by 'Image name' (most names do not match their row; see SOURCES.md).
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    votes, usage = [], []
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0].strip() != "Usage" or len(header) != 12:
            raise DatasetError(f"{path}: line 1: expected the FER+ header 'Usage,Image name,neutral,...,NF'")
        for record in reader:
            if len(record) != 12:
                raise DatasetError(f"{path}: line {reader.line_num}: expected 12 fields, got {len(record)}")
            try:
                votes.append([int(v) for v in record[2:]])
            except ValueError:
                raise DatasetError(f"{path}: line {reader.line_num}: votes must be integers") from None
            usage.append(record[0].strip())
    return np.array(votes, np.int64), np.array(usage)


def ferplus_soft_labels(votes: np.ndarray) -> np.ndarray:
    """(N,7) vote shares in LABELS order over our seven emotions (rows with none are all 0)."""
    ours = np.zeros((len(votes), len(LABELS)), np.float64)
    for column, name in enumerate(FERPLUS_COLUMNS):
        index = label_index(name) if name not in ("contempt", "unknown", "NF") else None
        if index is not None:
            ours[:, index] = votes[:, column]
    total = ours.sum(axis=1, keepdims=True)
    return np.divide(ours, total, out=np.zeros_like(ours), where=total > 0)


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """Majority label in LABELS order, or -1 where the top vote is contempt/unknown/not-a-face or tied."""
    top = votes.argmax(axis=1)
    tied = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1
    mapping = np.array([label_index(n) if n not in ("contempt", "unknown", "NF") else -1 for n in FERPLUS_COLUMNS])
    majority = mapping[top]
    majority[tied] = -1
    return majority


def _decode(data: bytes) -> Optional[np.ndarray]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return image


def _iter_class_files(root: str, only: Optional[Collection[str]] = None) -> Iterator[Tuple[str, str, bytes]]:
    """(class name, display name, bytes) for every file two levels below root (dir or tar),
    or for those of them whose display names are in the set `only`."""
    if os.path.isdir(root):
        for cls in sorted(os.listdir(root)):
            folder = os.path.join(root, cls)
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                path = os.path.join(folder, name)
                if os.path.isfile(path) and (only is None or os.path.join(cls, name) in only):
                    with open(path, "rb") as f:
                        yield cls, os.path.join(cls, name), f.read()
    elif tarfile.is_tarfile(root):
        with tarfile.open(root) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
            # Class folders are the parent of each file; a single top folder (wild/) is allowed.
            for member in members:
                parts = member.name.strip("/").split("/")
                if len(parts) < 2 or (only is not None and "/".join(parts[-2:]) not in only):
                    continue
                contents = tar.extractfile(member)
                if contents is not None:   # None only for what is not a regular file
                    yield parts[-2], "/".join(parts[-2:]), contents.read()
    else:
        raise DatasetError(f"{root}: not a folder of class folders nor a tar archive")


def order_labels(names: Sequence[str]) -> Tuple[str, ...]:
    """A label set found in folder names: FER2013's in their order, then the others alphabetically."""
    return tuple([label for label in LABELS if label in names] + sorted(set(names) - set(LABELS)))


def read_class_folders(root: str, raw: bool = False, progress: Optional[Callable] = None,
                       labels: Optional[Sequence[str]] = LABELS, only: Optional[Sequence[str]] = None) -> "Faces":
    """Read `root/<class>/*.jpg|png|...` (a folder or a .tar/.tar.gz of one).

    Returns 48x48 faces from the whole image (raw=False) or the decoded BGR photos
    (raw=True, for detection first). Class names are read through the aliases public sets
    use (anger -> angry). Classes outside `labels` are counted and skipped; with `labels`
    None every class is a label. Non-image, unreadable and blank files are counted and
    skipped; files with the same bytes as another and classes without an image are noted.
    With `only` (names as `class/file`), just those files are read; the ones gone are counted.
    """
    images: Any = []
    found, names = [], []   # type: list, list
    skipped: Counter = Counter()
    unknown: Counter = Counter()
    seen_classes: Dict[str, None] = {}
    first_of: Dict[str, str] = {}
    duplicates = []
    listed = None if only is None else set(only)
    present = 0
    for cls, name, data in _iter_class_files(root, listed):
        present += 1
        label = canonical(cls)
        seen_classes[label] = None
        if labels is not None and label not in labels:
            unknown[cls] += 1
            continue
        if not is_image_path(name):
            skipped["not an image"] += 1
            continue
        image = _decode(data)
        if image is None:
            skipped["unreadable"] += 1
            continue
        if is_blank(image):
            skipped["blank"] += 1
            continue
        digest = hashlib.sha1(data).hexdigest()
        if digest in first_of:
            duplicates.append(f"{name} = {first_of[digest]}")
        first_of.setdefault(digest, name)
        images.append(image if raw else crop_face(image))
        found.append(label)
        names.append(name)
        if progress:
            progress(len(images))
    if listed is not None and present < len(listed):
        skipped["listed but missing"] += len(listed) - present
    if not images and not skipped and not unknown:
        raise DatasetError(f"{root}: no class folders with images found")
    label_set = order_labels(found) if labels is None else tuple(labels)
    notes = []
    empty = [label for label in seen_classes if label not in found and (labels is None or label in labels)]
    if empty:
        notes.append(f"classes without a usable image: {', '.join(empty)}")
    if duplicates:
        notes.append(f"{len(duplicates)} duplicate files (e.g. {', '.join(duplicates[:3])})")
    if not raw:
        images = np.stack(images) if images else np.zeros((0, SIZE, SIZE), np.uint8)
    return Faces(images=images, labels=np.array([label_set.index(f) for f in found], np.int64),
                 rows=np.arange(len(found)), skipped=skipped, unknown_classes=unknown, names=names,
                 label_names=label_set, notes=notes)


def is_csv(path: str) -> bool:
    """A FER2013-style CSV holds 48x48 faces; anything else holds photos or face images."""
    return str(path).lower().endswith((".csv", ".csv.gz"))


def read_dataset(path: str, usage: Optional[str] = None, raw: bool = False,
                 labels: Sequence[str] = LABELS) -> "Faces":
    """A FER2013-style CSV (.csv/.csv.gz) or a folder/archive of class folders, read into `labels`."""
    if is_csv(path):
        if raw:
            raise DatasetError(f"{path}: a CSV holds 48x48 faces already; face detection needs full photos")
        return read_fer2013(path, usage=usage).relabelled(labels)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file or folder")
    if not (os.path.isdir(path) or os.path.isfile(path)):   # a pipe: opened twice, and for ever without a writer
        raise DatasetError(f"{path}: a pipe or device, not a file or folder (save the data to a file first)")
    return read_class_folders(path, raw=raw, labels=labels)


def split_record_path(path: str) -> Optional[str]:
    """The split record `path` names: a split.json itself, or a run folder that holds one; None
    for anything else. A run folder without one (a run on a CSV) is a DatasetError."""
    if os.path.basename(os.path.normpath(path)) == SPLIT_RECORD and os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        return None
    if os.path.isfile(os.path.join(path, SPLIT_RECORD)):
        return os.path.join(path, SPLIT_RECORD)
    if os.path.isfile(os.path.join(path, "state.json")):
        raise DatasetError(f"{path}: a fer-train run folder without {SPLIT_RECORD} (its run read no folder dataset): "
                           "give the data it was trained on")
    return None


def read_split_record(path: str) -> dict:
    """A run's split.json: the folder dataset it read, its layout, labels and options, and the
    files that went to each part. Raises DatasetError with a one-line reason when unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    except RecursionError:   # brackets nested thousands deep: no record a run writes
        raise DatasetError(f"{path}: not a fer-train split record (nested too deep)") from None

    def is_text_list(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    if not isinstance(record, dict):
        raise DatasetError(f"{path}: not a fer-train split record (not a JSON object)")
    wrong = [key for key in ("root", "layout") if not isinstance(record.get(key), str)]
    wrong += [key for key in ("labels", *PARTS) if not is_text_list(record.get(key))]
    wrong += [key for key in ("detect",) if not isinstance(record.get(key, False), bool)]   # "false" is not False
    if wrong:
        raise DatasetError(f"{path}: not a fer-train split record ({', '.join(wrong)} missing or malformed)")
    return record


def split_part_folder(record: dict, part: str, root: Optional[str] = None) -> str:
    """The folder the names of a split's `part` are relative to: the dataset's own part folder,
    else its train/ (the part was split off it), or the root of a folder of class folders.
    `root` is where the dataset is now (default: where the run read it). Raises DatasetError
    when that folder is not there."""
    root = root or record["root"]
    parts = [p for p in record["layout"].split("/") if p in PARTS]
    folder = os.path.join(root, part if part in parts else "train") if parts else root
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: no such folder (the run read its {part} faces there)")
    return folder


def read_split(record: dict, part: str, raw: bool = False, labels: Optional[Sequence[str]] = LABELS,
               root: Optional[str] = None, progress: Optional[Callable] = None) -> "Faces":
    """The faces a run put in `part` (train, val or test), as its split record lists them:
    files added since stay out, files gone are counted."""
    folder = split_part_folder(record, part, root)
    return read_class_folders(folder, raw=raw, labels=labels, progress=progress, only=record[part])
