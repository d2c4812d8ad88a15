"""Soft targets from teacher models: knowledge distillation.

Each Training face's target becomes `(1 - weight) * its label + weight * the teachers'
probabilities`, where the teachers' probabilities are the mean over every teacher of its
output on the face and on the face's mirror image. A flip-averaged ensemble classifies
better than any single network of ours, but costs 2x per model on the device;
distillation moves part of that gain into the single network the device runs. On
FER2013, whose labels are noisy, the soft targets also say how ambiguous a face is,
which a one-hot label cannot.

Offline (the default), the teachers run once, with the device runtime (any fer-edge
.tflite works as a teacher), over the un-augmented faces, and the targets are cached in
the run folder so a resumed run uses exactly the same ones; live, they look at every
augmented batch (`Teachers`).
"""

import os
from typing import Sequence, Tuple

import numpy as np

from fer_edge.core.labels import LABELS
from fer_edge.model.classify import EmotionClassifier
from fer_edge.model.metadata import ModelError
from fer_edge.model.provenance import Provenance, Teacher


class Teachers:
    """A set of teacher models, run by the device runtime; the mean of their probabilities.

    Called on a float batch (N,48,48,1) inside the input pipeline, it scores the very
    batch the student sees, augmented (`--live-teachers`). Why: offline targets describe
    the clean face, but the student is shown a rotated, shifted, partly erased one; a
    teacher that looks at the same view gives a target that fits it ("consistent
    teaching", Beyer et al. 2022). It costs one teacher pass per augmented face per epoch.
    """

    def __init__(self, paths: Sequence[str], temperature: float = 1.0):
        try:
            self.teachers = [EmotionClassifier(path, threads=os.cpu_count() or 1) for path in paths]
        except ModelError as exc:
            raise ValueError(f"teacher {exc}") from None
        self.temperature = temperature

    def mean_probabilities(self, faces: np.ndarray, max_batch: int = 256) -> np.ndarray:
        """(N, 7) mean softened probabilities of the teachers over uint8 faces (N,48,48)."""
        return np.mean([_soften(t.predict(faces, max_batch=max_batch).astype(np.float64), self.temperature)
                        for t in self.teachers], axis=0)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        faces = np.clip(np.rint(batch[..., 0]), 0, 255).astype(np.uint8)
        return self.mean_probabilities(faces, max_batch=len(faces)).astype(np.float32)


def teacher_probabilities(paths: Sequence[str], images: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, 7) mean probabilities of the teachers at `paths` over `images` and their mirrors."""
    teachers = Teachers(paths, temperature)
    mirrors = np.ascontiguousarray(images[:, :, ::-1])
    return ((teachers.mean_probabilities(images) + teachers.mean_probabilities(mirrors)) / 2).astype(np.float32)


def _soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The same distribution at a higher temperature (softmax(log p / T))."""
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.maximum(probabilities, 1e-12)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    return soft / soft.sum(axis=1, keepdims=True)


def describe_teachers(paths: Sequence[str], labels: Sequence[str] = LABELS) -> Tuple[Teacher, ...]:
    """What the model card needs to know of each teacher (its file and measured accuracy).
    A teacher must speak the student's labels: ValueError otherwise."""
    described = []
    for path in paths:
        classifier = EmotionClassifier(path)
        if classifier.labels != tuple(labels):
            raise ValueError(f"{path}: a teacher with labels {', '.join(classifier.labels)} cannot teach a model "
                             f"of {', '.join(labels)}")
        meta = classifier.metadata
        provenance = Provenance.from_json(meta.get("provenance"))
        private = meta.get("accuracy", {}).get("PrivateTest", {}).get("accuracy")
        described.append(Teacher(model=os.path.basename(path), quantization=meta.get("quantization"),
                                 architecture=meta.get("architecture"), flip_average=bool(meta.get("flip_average")),
                                 private_test_accuracy=private, train_command=provenance.train_command,
                                 source=provenance.teacher_source))
    return tuple(described)


def cached_teacher_targets(out: str, paths: Sequence[str], images: np.ndarray, temperature: float) -> np.ndarray:
    """The teachers' probabilities, computed once per run folder and kept in it."""
    cache = os.path.join(out, "teacher-probabilities.npy")
    if os.path.exists(cache):
        probabilities = np.load(cache)
        if probabilities.shape == (len(images), 7):
            return probabilities
    print(f"teachers: {len(paths)} model(s) x 2 (face and mirror) over {len(images)} Training faces...", flush=True)
    probabilities = teacher_probabilities(paths, images, temperature)
    np.save(cache, probabilities)
    return probabilities
