"""`fer-edge eval`: how well a model reads labelled faces, or whole photos through a detector."""

import os
from typing import Any, Optional, Sequence

import numpy as np

from ..core.errors import UserError
from ..core.labels import LABELS
from ..core.log import progress, say


class Ensemble:
    """Several models read as one: the mean of their log-probabilities (a normalised geometric
    mean), how a mix of teachers or a pair of candidates is judged before anything is trained
    from it. Each member keeps its own mirror averaging and temperature; the crop is the first's."""

    def __init__(self, members: Sequence[Any]):
        first = members[0]
        for other in members[1:]:
            if other.labels != first.labels:
                raise UserError(f"{other.name}: its labels ({', '.join(other.labels)}) differ from "
                                f"{first.name}'s ({', '.join(first.labels)}); an ensemble needs the same labels")
        self.members = list(members)
        self.labels = first.labels
        self.path = " + ".join(m.path for m in members)
        self.name = " + ".join(m.name for m in members)

    def predict(self, faces: np.ndarray, max_batch: int = 64) -> np.ndarray:
        from ..model.classify import softmax

        log_probs = [np.log(np.clip(m.predict(faces, max_batch), 1e-12, None)) for m in self.members]
        return softmax(np.mean(log_probs, axis=0))


def evaluate_sets(model_paths: Sequence[str], data_paths: Sequence[str], usages: Sequence[str],
                  ferplus_path: Optional[str], detect: bool, detector_name: str, margin: Optional[float], threads: int,
                  mirror: bool, crops: int = 1) -> dict:
    """One report per set for a model (the shipped one when `model_paths` is empty) or the
    ensemble of several (each CSV once per split in `usages`; photo sets through the
    detector when `detect`), and their means: over every set, over the photo sets, and over
    all but PrivateTest (what candidates are chosen on: PrivateTest is only reported).
    `crops` > 1 reads each face on that many framings, as the device's `crops` setting does."""
    from ..model.classify import EmotionClassifier
    from ..model.datasets import (is_csv, read_dataset, read_fer2013, read_ferplus, read_split, read_split_record,
                                  split_record_path)
    from ..vision.detect import make_detector
    from ..vision.running_mode import RunningMode

    members = [EmotionClassifier(path, threads=threads, mirror=mirror) for path in model_paths] or \
        [EmotionClassifier(None, threads=threads, mirror=mirror)]
    classifier = members[0] if len(members) == 1 else Ensemble(members)
    votes = read_ferplus(ferplus_path)[0] if ferplus_path else None  # once, for every split it labels
    detector = None
    crop_margin = members[0].margin if margin is None else margin   # the first model's crop
    reports = []
    for path in data_paths:
        if is_csv(path):
            wanted = None if "all" in usages else tuple(usages)
            say(f"reading {os.path.basename(path)} ({', '.join(usages)}) ...")
            faces = read_fer2013(path, usage=wanted)
            for usage in usages:
                split = faces if usage == "all" else faces.split(usage)
                reports.append(_report(classifier, split.relabelled(classifier.labels), path, usage, votes,
                                       ferplus_path, crops=crops))
            continue
        record_path = split_record_path(path)
        record = read_split_record(record_path) if record_path else None
        detects = detect or bool(record and record.get("detect"))   # a run that detected faces is judged so
        if detects and detector is None:
            detector = make_detector(detector_name, min_size=16, mode=RunningMode.STILLS)
            if detector.note:
                say(detector.note)
        if record is None:
            faces = read_dataset(path, raw=detect, labels=classifier.labels)
            reports.append(_report(classifier, faces, path, None, None, None, detector if detect else None, crop_margin,
                                   crops))
            continue
        for part in split_parts(usages):
            faces = read_split(record, part, raw=detects, labels=classifier.labels)
            reports.append(_report(classifier, faces, path, part, None, None, detector if detects else None,
                                   crop_margin, crops))
    photo_sets = [r for r in reports if r["usage"] is None]
    chosen_on = [r for r in reports if r["usage"] != "PrivateTest"]
    return {"model": classifier.path, "model_name": classifier.name, "crops": crops, "sets": reports,
            "mean": _mean(reports), "field_mean": _mean(photo_sets) if photo_sets else None,
            "selection": _mean(chosen_on) if photo_sets and len(chosen_on) < len(reports) else None}


def split_parts(usages: Sequence[str]) -> Sequence[str]:
    """The parts of a run's split that `--usage` names: train, val and test, or the FER2013
    split of the same role (Training, PublicTest, PrivateTest), or all."""
    from ..model.datasets import PART_OF_USAGE, PARTS

    parts = [part for usage in usages for part in (PARTS if usage == "all" else [PART_OF_USAGE.get(usage, usage)])]
    unknown = [usage for usage in usages if usage != "all" and PART_OF_USAGE.get(usage, usage) not in PARTS]
    if unknown:
        raise UserError(f"--usage {unknown[0]}: a run's split has train, val and test (or Training, PublicTest, PrivateTest)")
    return list(dict.fromkeys(parts))


def _report(classifier: Any, faces: Any, data_path: str, usage: Optional[str], votes: Optional[np.ndarray],
            ferplus_path: Optional[str], detector: Any = None, margin: float = 0.0, crops: int = 1) -> dict:
    from ..model.calibration import expected_calibration_error
    from ..model.datasets import ferplus_majority
    from ..model.metrics import classification_report
    from ..model.preprocess import crop_views
    from ..vision.analyzer import largest_faces

    labels, images = faces.labels, faces.images
    view, found = "FER2013 labels", np.ones(len(labels), bool)
    if detector is not None:
        images, found = largest_faces(images, detector, margin, lambda photos: progress(photos, "detecting"),
                                      crops if crops > 1 else None)
    elif crops > 1:   # faces cropped already: their framings as the device would make them
        images = np.stack([crop_views(face, None, margin, crops) for face in images]) if len(images) else images
    if votes is not None:
        if classifier.labels != LABELS:
            raise UserError(f"{ferplus_path}: FER+ votes are over FER2013's seven labels; {classifier.name} has others")
        if faces.rows.max(initial=-1) >= len(votes):
            raise UserError(f"{ferplus_path}: has {len(votes)} rows, fewer than {data_path}")
        majority = ferplus_majority(votes)[faces.rows]
        keep = majority >= 0
        labels, images, found = majority[keep], images[keep], found[keep]
        view = f"FER+ majority labels ({int((~keep).sum())} rows without one dropped)"
    if not len(labels):
        raise UserError(f"{data_path}: no labelled faces to evaluate ({faces.summary()})")
    chunks = [images[i:i + 1024] for i in range(0, len(images), 1024)]
    probs = np.concatenate([classifier.predict(chunk, max_batch=256)
                            for chunk in progress(chunks, f"classifying {len(images)} faces")])
    predicted = probs.argmax(axis=1)
    predicted[~found] = -1  # no face found: a miss
    report = classification_report(labels[found], predicted[found], classifier.labels)
    report["end_to_end_accuracy"] = float((predicted == labels).mean())
    report["no_face"] = int((~found).sum())
    report["ece"] = expected_calibration_error(probs[found], labels[found])
    report.update(valence_report(probs, labels, found, classifier.labels))
    report.update(model=classifier.path, model_name=classifier.name, data=data_path, usage=usage,
                  labels_view=view, read=faces.summary(), detected=detector is not None)
    return report


VALENCE_CLASSES = ("negative", "neutral", "positive")


def valence_report(probs: np.ndarray, truth: np.ndarray, found: np.ndarray, labels: Sequence[str]) -> dict:
    """How often the visitor's side is right: each label counts as negative, neutral or positive
    by the sign of the valence the sessions weigh it with, and the reading's side is the one
    its probabilities put most weight on. A photo with no face found counts as wrong."""
    from ..kiosk.sessions import valences

    side = np.array([int(np.sign(w)) + 1 for w in valences(labels).values()])   # 0, 1, 2 as VALENCE_CLASSES
    mass = np.stack([probs[:, side == k].sum(axis=1) for k in range(len(VALENCE_CLASSES))], axis=1)
    truth_side, read_side = side[truth], mass.argmax(axis=1)
    right = (read_side == truth_side) & found
    recall = {name: float(right[truth_side == k].mean()) if (truth_side == k).any() else 0.0
              for k, name in enumerate(VALENCE_CLASSES)}
    return {"valence_accuracy": float(right.mean()), "valence_recall": recall}


def _mean(reports: Sequence[dict]) -> dict:
    """The plain mean of each set's figures: every set counts once, whatever its size."""
    return {"sets": len(reports),
            "end_to_end_accuracy": float(np.mean([r["end_to_end_accuracy"] for r in reports])),
            "valence_accuracy": float(np.mean([r["valence_accuracy"] for r in reports])),
            "macro_f1": float(np.mean([r["macro_f1"] for r in reports]))}


def format_text(report: dict) -> str:
    """One set's report, in full."""
    from ..model.metrics import format_report

    lines = [f"{report['model_name']} on {report['data']} ({report['usage'] or 'folders'}; {report['labels_view']}); "
             f"read {report['read']}"]
    if report["detected"]:
        lines.append(f"no face found in {report['no_face']} of {report['n'] + report['no_face']} photos; end-to-end "
                     f"accuracy {report['end_to_end_accuracy'] * 100:.2f}% (misses count as wrong); on faces found:")
    lines.append(format_report(report))
    lines.append(f"expected calibration error (15 bins): {report['ece']:.4f}")
    recall = ", ".join(f"{side} {value * 100:.1f}%" for side, value in report["valence_recall"].items())
    lines.append(f"valence (negative / neutral / positive) accuracy {report['valence_accuracy'] * 100:.2f}%; recall {recall}")
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """Several sets side by side: end to end (misses count as wrong), macro-F1 and recall per
    class on the faces found, and faces missed; then the means."""
    labels = result["sets"][0]["labels"]
    head = f"{'set':<34}{'faces':>6}{'end to end':>11}{'macro-F1':>9}{'valence':>9}{'missed':>7}  " + " ".join(f"{x[:7]:>7}" for x in labels)
    lines = [f"{result['model_name']}", head]
    for r in result["sets"]:
        name = os.path.basename(r["data"]) + (f" {r['usage']}" if r["usage"] else "")
        recall = " ".join(f"{r['per_class_recall'][x] * 100:>6.1f}%" for x in labels)
        lines.append(f"{name[:33]:<34}{r['n'] + r['no_face']:>6}{r['end_to_end_accuracy'] * 100:>10.2f}%"
                     f"{r['macro_f1']:>9.3f}{r['valence_accuracy'] * 100:>8.2f}%{r['no_face']:>7}  {recall}")
    for key, name in (("mean", "mean over the sets"), ("field_mean", "mean over the photo sets"),
                      ("selection", "mean without PrivateTest (choose on)")):
        mean = result[key]
        if mean and mean["sets"] > 1:
            lines.append(f"{name:<40}{mean['end_to_end_accuracy'] * 100:>10.2f}%{mean['macro_f1']:>9.3f}"
                         f"{mean['valence_accuracy'] * 100:>8.2f}%")
    return "\n".join(lines)


def format_result(result: dict, as_json: bool = False) -> str:
    """What `fer-edge eval` prints: one set in full, several side by side; or the JSON object
    (one set's report, or all of them with the means)."""
    import json

    if len(result["sets"]) == 1:
        return json.dumps(result["sets"][0]) if as_json else format_text(result["sets"][0])
    return json.dumps(result) if as_json else format_table(result)
