"""The label contract: FER2013's seven in their order, the aliases other datasets use, and
what any model's own label set must look like.

A model carries its labels in its metadata; FER2013's seven are the default. Labels become
MQTT payloads, Home Assistant options and log column names, so they are short lowercase
identifiers.
"""

import re
import zlib

from typing import Any, Dict, Optional, Sequence, Tuple

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

LABEL_FORM = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_LABELS = 32

# Folder names seen in public FER-style datasets, mapped onto our seven labels.
ALIASES = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "happy_face": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise", "suprise": "surprise",
    "neutral": "neutral", "calm": "neutral", "neutrality": "neutral",
}


def canonical(name: str) -> str:
    """A class-folder name as a label: an alias's label, else the name in lowercase with
    anything but letters and digits as underscores ("Thumbs Up" -> "thumbs_up")."""
    lowered = name.strip().lower()
    return ALIASES.get(lowered) or re.sub(r"[^a-z0-9]+", "_", lowered).strip("_")


def label_problem(labels: Any) -> Optional[str]:
    """Why `labels` cannot be a model's label set, or None."""
    if not isinstance(labels, (list, tuple)) or not 2 <= len(labels) <= MAX_LABELS:
        return f"a label set has 2..{MAX_LABELS} labels (got {labels!r})"
    bad = [label for label in labels if not isinstance(label, str) or not LABEL_FORM.fullmatch(label)]
    if bad:
        return f"label {bad[0]!r} is not a lowercase name of letters, digits and underscores"
    if len(set(labels)) != len(labels):
        return f"labels {list(labels)} repeat a name"
    return None


def label_index(name: str) -> Optional[int]:
    """Index of a class-folder name in LABELS, or None for unknown classes (contempt...)."""
    label = ALIASES.get(name.strip().lower())
    return None if label is None else LABELS.index(label)

# The order a chart stacks emotions in, pleasant first; a model's other labels follow.
PLEASANT_FIRST = ("happy", "surprise", "neutral", "sad", "fear", "angry", "disgust")


def pleasant_first(labels: Sequence[str]) -> Tuple[str, ...]:
    """`labels` in the order a chart stacks them."""
    return tuple([label for label in PLEASANT_FIRST if label in labels]
                 + [label for label in labels if label not in PLEASANT_FIRST])


# One colour per emotion, used everywhere a person sees one (live view, photo result, charts,
# `report --plot`): dark enough for white text on it, and distinct from each other.
COLOURS = {"angry": "#d32f2f", "disgust": "#6d4c41", "fear": "#7b1fa2", "happy": "#2e7d32",
           "sad": "#1565c0", "surprise": "#ef6c00", "neutral": "#546e7a"}


# Colours for labels beyond FER2013's seven, picked by a stable hash of the name.
MORE_COLOURS = ("#00838f", "#ad1457", "#9e9d24", "#4527a0", "#c62828", "#283593", "#00695c", "#5d4037",
                "#37474f", "#6a1b9a")


def colour(label: str) -> str:
    """A label's colour as #rrggbb: the same on every device and in every report."""
    return COLOURS.get(label) or MORE_COLOURS[zlib.crc32(label.encode()) % len(MORE_COLOURS)]


def palette(labels: Sequence[str]) -> Dict[str, str]:
    """{label: colour} for a label set, in its order."""
    return {label: colour(label) for label in labels}


def colour_bgr(label: str) -> Tuple[int, int, int]:
    """A label's colour as OpenCV's (blue, green, red)."""
    rgb = colour(label)
    return int(rgb[5:7], 16), int(rgb[3:5], 16), int(rgb[1:3], 16)
