"""The label contract: FER2013 order, plus the aliases that other datasets use."""

from typing import Optional

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

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


def label_index(name: str) -> Optional[int]:
    """Index of a class-folder name in LABELS, or None for unknown classes (contempt...)."""
    canonical = ALIASES.get(name.strip().lower())
    return None if canonical is None else LABELS.index(canonical)

# One colour per emotion, used everywhere a person sees one (live view, photo result, charts,
# `report --plot`): dark enough for white text on it, and distinct from each other.
COLOURS = {"angry": "#d32f2f", "disgust": "#6d4c41", "fear": "#7b1fa2", "happy": "#2e7d32",
           "sad": "#1565c0", "surprise": "#ef6c00", "neutral": "#546e7a"}


def colour_bgr(label: str) -> tuple:
    """A label's colour as OpenCV's (blue, green, red)."""
    rgb = COLOURS.get(label, COLOURS["neutral"])
    return tuple(int(rgb[i:i + 2], 16) for i in (5, 3, 1))
