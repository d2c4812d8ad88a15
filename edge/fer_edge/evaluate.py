"""`fer-edge eval`: how well a model reads labelled faces, or whole photos through a detector."""

from typing import Any, Callable, Optional, Tuple

import numpy as np

from .errors import UserError
from .log import say


def largest_faces(photos: list, analyzer: Any, progress: Optional[Callable] = None) -> Tuple[np.ndarray, np.ndarray]:
    """48x48 crop of the largest detected face per photo (zeros where none), and which photos
    had one. The crops are classified afterwards, all in large batches."""
    from .preprocess import SIZE

    crops, found = [], []
    for photo in progress(photos) if progress else photos:
        detections = analyzer.detect(photo)
        if detections:
            crops.append(analyzer.crop(photo, max(detections, key=lambda d: d.w * d.h)))
        else:
            crops.append(np.zeros((SIZE, SIZE), np.uint8))
        found.append(bool(detections))
    return np.stack(crops), np.array(found)


def evaluate(model_path: Optional[str], data_path: str, usage: str, ferplus_path: Optional[str], detect: bool,
             detector: str, margin: Optional[float], threads: int, mirror: bool,
             progress: Optional[Callable] = None) -> dict:
    """The report dict `eval --json` prints."""
    from .analyzer import FaceAnalyzer
    from .calibration import expected_calibration_error
    from .classify import EmotionClassifier
    from .datasets import ferplus_majority, read_dataset, read_ferplus
    from .detect import make_detector
    from .metrics import classification_report

    classifier = EmotionClassifier(model_path, threads=threads, mirror=mirror)
    faces = read_dataset(data_path, usage=None if usage == "all" else usage, raw=detect)
    labels, images = faces.labels, faces.images
    view, no_face = "FER2013 labels", 0
    if detect:
        analyzer = FaceAnalyzer(make_detector(detector, min_size=16, stills=True), classifier, margin)
        if analyzer.detector.note:
            say(analyzer.detector.note)
        images, found = largest_faces(images, analyzer, progress)
        no_face = int((~found).sum())
    if ferplus_path:
        votes, _ = read_ferplus(ferplus_path)
        if faces.rows.max(initial=-1) >= len(votes):
            raise UserError(f"{ferplus_path}: has {len(votes)} rows, fewer than {data_path}")
        majority = ferplus_majority(votes)[faces.rows]
        keep = majority >= 0
        labels, images = majority[keep], images[keep]
        view = f"FER+ majority labels ({int((~keep).sum())} rows without one dropped)"
    if not len(labels):
        raise UserError(f"{data_path}: no labelled faces to evaluate ({faces.summary()})")
    probs = classifier.predict(images, max_batch=256)
    predicted = probs.argmax(axis=1)
    if detect:
        predicted[~found] = -1  # no face found: a miss, counted in no_face
        report = classification_report(labels[found], predicted[found])
        report["end_to_end_accuracy"] = float((predicted == labels).mean())
        report["no_face"] = no_face
        report["ece"] = expected_calibration_error(probs[found], labels[found])
    else:
        report = classification_report(labels, predicted)
        report["ece"] = expected_calibration_error(probs, labels)
    csv = data_path.lower().endswith((".csv", ".csv.gz"))
    report.update(model=classifier.path, model_name=classifier.name, data=data_path, usage=usage if csv else None,
                  labels_view=view, read=faces.summary())
    return report


def format_text(report: dict, detect: bool) -> str:
    from .metrics import format_report

    lines = [f"{report['model_name']} on {report['data']} ({report['usage'] or 'folders'}; {report['labels_view']}); "
             f"read {report['read']}"]
    if detect:
        lines.append(f"no face found in {report['no_face']} of {report['n'] + report['no_face']} photos; end-to-end "
                     f"accuracy {report['end_to_end_accuracy'] * 100:.2f}% (misses count as wrong); on faces found:")
    lines.append(format_report(report))
    lines.append(f"expected calibration error (15 bins): {report['ece']:.4f}")
    return "\n".join(lines)
