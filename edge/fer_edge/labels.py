"""The label contract: FER2013 order, plus the aliases that other datasets use."""

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


def label_index(name):
    """Index of a class-folder name in LABELS, or None for unknown classes (contempt...)."""
    canonical = ALIASES.get(name.strip().lower())
    return None if canonical is None else LABELS.index(canonical)
