"""Pacing frames from a source."""

import threading
import time

from fer_edge.vision.capture import Frame, paced


def test_paced_limits_rate_and_count():
    frames = (Frame(i, i / 100, None) for i in range(1000))
    started = time.monotonic()
    taken = list(paced(frames, fps_cap=20, max_frames=6, stop=threading.Event()))
    assert [f.index for f in taken] == list(range(6)) and time.monotonic() - started >= 5 / 20 * 0.9


def cut_faststart(photos, tmp_path, keep_bytes):
    """The Pexels clip (index before the data: faststart) cut after `keep_bytes`, as a copy interrupted."""
    path = tmp_path / f"cut-{keep_bytes}.mp4"
    path.write_bytes((photos / "WolfgangLanger_Pexels.mp4").read_bytes()[:keep_bytes])
    return path


def test_a_looped_cut_file_is_said_once_and_ffmpeg_stays_quiet(photos, tmp_path, capfd):
    from fer_edge.vision.capture import frames_forever, open_source

    cut = str(cut_faststart(photos, tmp_path, 400_000))
    said, stop = [], threading.Event()
    frames = frames_forever(lambda: open_source(source=cut, stop=stop), loop=True, stop=stop, on_event=said.append)
    indices = [frame.index for _, (_, frame) in zip(range(600), frames)]
    assert len(indices) == 600 and indices.count(0) >= 5, "a cut file still loops over what it has"
    assert len(said) == 1 and "ended after" in said[0], said
    assert "partial file" not in capfd.readouterr().err   # FFmpeg's own lines are silenced


def test_a_looped_file_that_yields_no_frame_ends(photos, tmp_path):
    from fer_edge.vision.capture import frames_forever, open_source

    cut = str(cut_faststart(photos, tmp_path, 20_000))
    said, stop = [], threading.Event()
    started = time.monotonic()
    frames = list(frames_forever(lambda: open_source(source=cut, stop=stop), loop=True, stop=stop, on_event=said.append))
    assert frames == [] and time.monotonic() - started < 10
    assert len(said) == 1 and "ended after 0 of" in said[0], said


def test_a_folder_of_photos_skips_what_is_not_a_file(photos, tmp_path):
    """A pipe named b.jpg would block the run for ever, /dev/zero named d.jpg would never end:
    each is counted unreadable, unopened."""
    import os

    from fer_edge.vision.capture import ImageSource

    (tmp_path / "a.jpg").write_bytes((photos / "single_face.jpg").read_bytes())
    os.mkfifo(tmp_path / "b.jpg")
    (tmp_path / "c.jpg").mkdir()
    (tmp_path / "d.jpg").symlink_to("/dev/zero")
    source = ImageSource(str(tmp_path))
    frames: list = []
    reader = threading.Thread(target=lambda: frames.extend(source.frames()), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "the folder's pipe or /dev/zero was opened"
    assert len(frames) == 1 and source.unreadable == ["b.jpg", "c.jpg", "d.jpg"]
