import gzip
import tarfile

import cv2
import numpy as np
import pytest

from fer_edge.model.datasets import (DatasetError, ferplus_majority, ferplus_soft_labels, read_class_folders,
                               read_dataset, read_fer2013, read_ferplus)
from fer_edge.core.labels import LABELS, label_index


def test_fer2013_splits_match_the_published_counts(fer_csv):
    faces = read_fer2013(str(fer_csv), usage="PrivateTest")
    assert len(faces) == 3589
    assert np.bincount(faces.labels).tolist() == [491, 55, 528, 879, 594, 416, 626]
    assert faces.images.shape == (3589, 48, 48) and faces.images.dtype == np.uint8
    assert faces.rows[0] == 28709 + 3589  # row index counts every data row


def test_blank_rows_are_skipped_and_counted(public_test):
    # PublicTest holds one all-black image (row 30002): SOURCES.md
    assert public_test.skipped["blank"] == 1
    assert 30002 not in set(public_test.rows.tolist())
    assert len(public_test) == 3588


def _write_rows(path, rows, header="emotion,pixels,Usage"):
    with open(path, "w") as f:
        f.write(header + "\n")
        for row in rows:
            f.write(row + "\n")


def test_truncated_and_malformed_rows_name_their_line(tmp_path, public_test):
    good = "3," + " ".join(map(str, public_test.images[0].ravel())) + ",PublicTest"
    cases = {
        "truncated.csv": [good, good[: len(good) // 2]],  # cut mid-pixels, no Usage field
        "short.csv": [good, "3,1 2 3,PublicTest"],
        "label.csv": [good, good, "9" + good[1:]],
        "text.csv": [good, "x" + good[1:]],
    }
    expected_line = {"truncated.csv": 3, "short.csv": 3, "label.csv": 4, "text.csv": 3}
    for name, rows in cases.items():
        _write_rows(tmp_path / name, rows)
        with pytest.raises(DatasetError, match=f"line {expected_line[name]}"):
            read_fer2013(str(tmp_path / name))
    _write_rows(tmp_path / "header.csv", [good], header="label,data")
    with pytest.raises(DatasetError, match="line 1"):
        read_fer2013(str(tmp_path / "header.csv"))


def test_truncated_gzip_is_a_clear_error(tmp_path, fer_csv):
    data = open(fer_csv, "rb").read(200_000)
    (tmp_path / "cut.csv.gz").write_bytes(data)
    with pytest.raises(DatasetError, match="cut.csv.gz"):
        read_fer2013(str(tmp_path / "cut.csv.gz"))


def test_ferplus_aligns_by_row(ferplus_csv, fer_csv):
    votes, usage = read_ferplus(str(ferplus_csv))
    assert votes.shape == (35887, 10)
    assert (usage == "Training").sum() == 28709 and (usage == "PrivateTest").sum() == 3589
    # Row 0 votes: neutral 4, happiness 0, surprise 0, sadness 1, anger 3, disgust 2 -> neutral
    assert ferplus_majority(votes[:1]).tolist() == [LABELS.index("neutral")]
    soft = ferplus_soft_labels(votes[:1])[0]
    assert soft[LABELS.index("neutral")] == pytest.approx(0.4)
    assert soft[LABELS.index("angry")] == pytest.approx(0.3)
    assert soft.sum() == pytest.approx(1.0)
    # All-black FER2013 rows are "not a face" in FER+: no majority label
    black_rows = [6458, 7629, 10423, 11286, 13148, 13402, 13988, 15894, 22198, 22927, 28601, 30002]
    assert (ferplus_majority(votes[black_rows]) == -1).all()


@pytest.fixture()
def class_folders(tmp_path, public_test):
    """Real FER2013 faces written as class folders, with aliases and bad files mixed in."""
    root = tmp_path / "faces"
    written = {}
    for folder, label in (("Anger", "angry"), ("happiness", "happy"), ("surprised", "surprise"), ("fearful", "fear")):
        (root / folder).mkdir(parents=True)
        picks = np.flatnonzero(public_test.labels == LABELS.index(label))[:5]
        for i in picks:
            cv2.imwrite(str(root / folder / f"{i}.png"), public_test.images[i])
        written[label] = len(picks)
    (root / "contempt").mkdir()
    cv2.imwrite(str(root / "contempt" / "c.png"), public_test.images[0])
    (root / "happiness" / "notes.txt").write_text("not an image")
    (root / "happiness" / "fake.jpg").write_text("not a jpeg either")
    ok, jpeg = cv2.imencode(".jpg", public_test.images[1])
    (root / "happiness" / "cut.jpg").write_bytes(jpeg.tobytes()[:40])
    cv2.imwrite(str(root / "Anger" / "black.png"), np.zeros((48, 48), np.uint8))
    return root, written


def test_class_folders_accept_aliases_and_skip_bad_files(class_folders):
    root, written = class_folders
    faces = read_class_folders(str(root))
    counts = np.bincount(faces.labels, minlength=7)
    for label, n in written.items():
        assert counts[LABELS.index(label)] == n
    assert faces.skipped == {"not an image": 1, "unreadable": 2, "blank": 1}
    assert faces.unknown_classes == {"contempt": 1}
    assert "skipped" in faces.summary() and "contempt" in faces.summary()


def test_class_folders_read_from_a_tar_archive(class_folders, tmp_path):
    root, written = class_folders
    archive = tmp_path / "faces.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="faces")
    from_tar, from_dir = read_dataset(str(archive)), read_dataset(str(root))
    assert np.array_equal(from_tar.images, from_dir.images)
    assert np.array_equal(from_tar.labels, from_dir.labels)


def test_wild_archive_counts(wild):
    faces = read_class_folders(str(wild))
    assert np.bincount(faces.labels).tolist() == [252, 208, 21, 400, 267, 367, 400]


def test_label_aliases():
    assert label_index("Happiness") == LABELS.index("happy")
    assert label_index("surprised") == LABELS.index("surprise")
    assert label_index("contempt") is None


def test_missing_and_wrong_inputs(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        read_dataset(str(tmp_path / "none.csv"))
    (tmp_path / "plain.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(DatasetError, match="not a folder of class folders"):
        read_dataset(str(tmp_path / "plain.bin"))
    gz = tmp_path / "empty.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("")
    with pytest.raises(DatasetError, match="line 1"):
        read_fer2013(str(gz))
