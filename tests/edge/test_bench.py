"""`fer-edge bench` on a real video with the shipped model: every model at every thread
count gets its figures, the table shows them, and a video without faces is one line."""

import cv2
import numpy as np
import pytest

from fer_edge.core.errors import UserError
from fer_edge.tools.bench import bench_decode, format_table, run_bench, sample_faces


def test_every_model_at_every_thread_count_gets_its_figures(photos, model_path):
    results = run_bench(str(photos / "single_face.mp4"), [str(model_path)], "auto", [1, 2], warmup=2, max_frames=8)
    assert [(c["threads"], p["threads"]) for c, p in zip(results["classifier"], results["pipeline"])] == [(1, 1), (2, 2)]
    for pipeline in results["pipeline"]:
        assert pipeline["frames"] == 8 and pipeline["faces"] >= 6 and pipeline["process_fps"] > 0
        assert pipeline["detect_ms"] > 0 and pipeline["classify_ms"] > 0
    assert all(c["per_face_ms"] > 0 for c in results["classifier"])
    assert results["decode"]["decode_fps"] > 0 and results["peak_rss_mb"] > 0
    lines = format_table(results).splitlines()
    assert len(lines) == 2 + 2 + 1 and lines[0].startswith("decode: ") and model_path.name[:20] in lines[2]


def test_a_video_without_faces_is_one_line(tmp_path):
    video = tmp_path / "empty-room.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for _ in range(20):
        writer.write(np.full((120, 160, 3), 128, np.uint8))
    writer.release()
    with pytest.raises(UserError, match="empty-room.avi: no faces found to benchmark the classifier on"):
        sample_faces(str(video))
    assert bench_decode(str(video), max_frames=10)["decode_fps"] > 0


def test_bench_reads_each_face_on_its_crops(photos, model_path):
    faces = sample_faces(str(photos / "single_face.mp4"), n=4, crops=3)
    assert faces.shape[1:] == (3, 48, 48)
    results = run_bench(str(photos / "single_face.mp4"), [str(model_path)], "auto", [1], warmup=2, max_frames=8, crops=3)
    assert results["crops"] == 3 and results["pipeline"][0]["faces"] >= 6 and results["classifier"][0]["per_face_ms"] > 0
    assert "each face read on 3 crops" in format_table(results).splitlines()[0]


def test_by_default_every_shipped_model_and_twin_is_timed(photos):
    from fer_edge.model.classify import SHIPPED_MODELS

    results = run_bench(str(photos / "single_face.mp4"), [], "auto", [1], warmup=1, max_frames=4)
    names = [c["model"] for c in results["classifier"]]
    assert names == [f"{name[:-len('.tflite')]}{twin}.tflite" for name in SHIPPED_MODELS.values() for twin in ("", "-float32")]
    rows = format_table(results).splitlines()[2:-1]
    assert [row.split()[0] for row in rows] == names and all(float(row.split()[2]) > 0 for row in rows)
