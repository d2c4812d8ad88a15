"""Training and fine-tuning on folders of faces, with any label set, and a six-class model
through the whole device: run, MQTT discovery, sessions, the report and the page.

The folders are written from the real FER2013 CSV (folder_helpers); the field sets never
train anything.
"""

import json
import re
import sqlite3

import numpy as np
import pytest

from conftest import ROOT, SIX, run_cli
from folder_helpers import write_fer2013_folders, write_sequences

pytestmark = pytest.mark.slow
TWIN = ROOT / "models" / "fer-cnn-int8-float32.tflite"


def one_line_error(result, *fragments):
    assert result.returncode == 1, (result.stdout[-800:], result.stderr[-800:])
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="session")
def fer2013_folders(fer_csv, tmp_path_factory):
    """All of FER2013 as train/ (Training), val/ (PublicTest) and test/ (PrivateTest) PNGs."""
    return write_fer2013_folders(fer_csv, tmp_path_factory.mktemp("fer2013-folders"))


def test_fer2013_as_class_folders_reads_back_as_the_csv(fer_csv, fer2013_folders):
    from fer_edge.model.datasets import read_fer2013
    from fer_train.folders import FolderOptions, read_folder_dataset

    lines = []
    data, record = read_folder_dataset(str(fer2013_folders), FolderOptions(), say=lines.append)
    faces = read_fer2013(str(fer_csv))
    for part, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        expected = faces.split(usage)
        assert data[part].label_names == expected.label_names
        assert np.array_equal(data[part].images, expected.images) and np.array_equal(data[part].labels, expected.labels)
    assert record["layout"] == "train/val/test" and len(record["test"]) == len(faces.split("PrivateTest"))
    # FER2013 repeats some faces, across its splits too: said, not hidden.
    assert any("duplicate files" in line for line in lines)
    assert any(re.search(r"faces also in train: val \d+, test \d+", line) for line in lines), lines


def test_the_same_seed_trains_the_same_model_from_the_csv_or_its_folders(fer_csv, fer2013_folders, tmp_path):
    import keras

    weights = []
    for data in (fer_csv, fer2013_folders):
        out = tmp_path / data.name
        result = run_cli("fer-train", "fit", "--data", data, "--limit", "300", "--epochs", "1", "--out", out)
        assert result.returncode == 0, result.stderr[-2000:]
        weights.append(keras.models.load_model(out / "best.keras").get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_a_six_class_model_speaks_its_labels_everywhere(six_class_model, photos, small_csv, tmp_path):
    from fer_edge.model.classify import EmotionClassifier
    from mqtt_helpers import Broker, Recorder, make_visits_video

    classifier = EmotionClassifier(str(six_class_model))
    assert classifier.labels == SIX
    card = six_class_model.with_suffix(".md").read_text()
    assert "6 classes (angry, fear, happy, sad, surprise, neutral)" in card and "a new head" in card
    evaluated = run_cli("fer-edge", "eval", "--model", six_class_model, "--data", small_csv, "--usage", "PrivateTest",
                        "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["labels"] == list(SIX) and "ignored classes disgust" in report["read"]
    assert report["accuracy"] > 0.5

    broker = Broker(tmp_path).start()
    recorder = Recorder(broker.port)
    db = tmp_path / "log.db"
    try:
        result = run_cli("fer-edge", "run", "--source", make_visits_video(photos, tmp_path), "--model", six_class_model,
                         "--db", db, "--mqtt", f"127.0.0.1:{broker.port}", "--device-id", "kiosk-6",
                         "--session-min", "0.5", "--session-gap", "0.5", "--exit-seconds", "0.5", "--quiet")
        assert result.returncode == 0, result.stderr
        assert recorder.wait_for(lambda: recorder.on("/session") and recorder.on("emotion/config"), 20)
        emotion = recorder.json_on("emotion/config")[-1]
        visits, views = recorder.json_on("/session"), recorder.json_on("/view")
    finally:
        recorder.close()
        broker.stop()
    assert emotion["device_class"] == "enum" and emotion["options"] == list(SIX)
    assert all(tuple(v["exit_probs"]) == SIX and v["exit_emotion"] in SIX for v in visits)
    assert all(0 <= v["satisfaction"] <= 100 for v in visits)
    assert {v["label"] for v in views if v["people"]} <= set(SIX) and any(v["people"] for v in views)
    rows = sqlite3.connect(db).execute("SELECT p_disgust, p_happy FROM emotions").fetchall()
    assert rows and all(d is None and h is not None for d, h in rows)

    report = run_cli("fer-edge", "report", "--db", db, "--since", "all", "--json", "--plot", tmp_path / "report.png")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["labels"] == list(SIX) and (tmp_path / "report.png").stat().st_size > 10_000


def test_the_page_shows_a_six_class_models_labels(six_class_model, photos, tmp_path):
    from web_helpers import Server, chromium

    server = Server("--source", photos / "single_face.mp4", "--loop", "--model", six_class_model,
                    "--db", tmp_path / "log.db", "--quiet")
    try:
        page = server.request("/")[1].decode()
        assert 'const LABELS = ["angry", "fear", "happy", "sad", "surprise", "neutral"];' in page
        browser = chromium()
        try:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait

            browser.get(server.url + "/")
            browser.find_element(By.ID, "photo-input").send_keys(str(photos / "single_face.jpg"))
            browser.find_element(By.CSS_SELECTOR, "#photo-form button").click()
            WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "photo-legend").text)
            legend = browser.find_element(By.ID, "photo-legend").text.split()
        finally:
            browser.quit()
        assert legend == list(SIX)
    finally:
        assert "Traceback" not in server.stop()


def test_fine_tuning_keeps_each_subject_on_one_side_and_reports_before_and_after(fer_csv, tmp_path):
    folder = write_sequences(fer_csv, tmp_path / "ck", subjects=60, per_subject=4)
    out = tmp_path / "tuned"
    result = run_cli("fer-train", "fit", "--data", folder, "--group", r"^(S\d+)_", "--epochs", "1",
                     "--init-from", TWIN, "--out", out, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    split = json.loads((out / "split.json").read_text())
    subjects = {part: {name.split("/")[-1].split("_")[0] for name in split[part]} for part in ("train", "val", "test")}
    assert subjects["test"] and subjects["val"]
    assert not (subjects["train"] & subjects["test"] or subjects["train"] & subjects["val"]
                or subjects["val"] & subjects["test"])
    assert re.search(r"test: accuracy [\d.]+%.*before fine-tuning [\d.]+%", result.stdout), result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["before"]["test"]["n"] == metrics["test"]["n"] > 0
    state = json.loads((out / "state.json").read_text())
    assert state["config"]["lr"] == 5e-4 and state["config"]["one_warp"] and state["data"]["group"] == r"^(S\d+)_"


def test_bad_folders_get_one_line(fer_csv, tmp_path):
    import cv2

    def fit(data, *more):
        return run_cli("fer-train", "fit", "--data", data, "--epochs", "1", "--out", tmp_path / "run", *more)

    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(fit(empty), "no class folders with images")
    one = write_fer2013_folders(fer_csv, tmp_path / "one", {"Training": "."}, classes=("happy",), limit=200)
    one_line_error(fit(one), "needs at least two classes")
    broken = tmp_path / "broken"
    for cls in ("happy", "sad"):
        (broken / cls).mkdir(parents=True)
        (broken / cls / "face.png").write_bytes(b"not a png")
    one_line_error(fit(broken), "needs at least two classes", "2 unreadable")
    faceless = tmp_path / "faceless"   # smooth gradients: photos without a face
    for cls in ("happy", "sad"):
        (faceless / cls).mkdir(parents=True)
        for k in range(4):
            ramp = np.linspace(0, 255, 200)[None, :] * (0.2 + 0.2 * k) + np.linspace(0, 60, 200)[:, None]
            cv2.imwrite(str(faceless / cls / f"{k}.png"), np.clip(ramp, 0, 255).astype(np.uint8))
    one_line_error(fit(faceless, "--detect"), "needs at least two classes", "8 no face found")
    six = write_fer2013_folders(fer_csv, tmp_path / "six", {"Training": "."}, classes=SIX, limit=300)
    one_line_error(fit(six, "--init-from", TWIN), "not", "pass --new-head")
    one_line_error(fit(six, "--classes", "happy,contempt"), "no class folder for contempt")
    one_line_error(fit(fer_csv, "--group", "x"), "read folder datasets")
