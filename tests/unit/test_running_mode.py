"""What the running mode means to a detector: separate photos get a finer search, video the
fast settings (BlazeFace's second look at photos: tests/edge/test_field_crops.py)."""

from fer_edge.vision.detect import make_detector
from fer_edge.vision.detectors import HaarDetector
from fer_edge.vision.running_mode import RunningMode


def test_photos_get_a_finer_haar_search_than_video():
    stills, video = make_detector("haar", mode=RunningMode.STILLS), make_detector("haar", mode=RunningMode.VIDEO)
    assert isinstance(stills, HaarDetector) and isinstance(video, HaarDetector)
    assert (stills.max_side, stills.scale_factor) == (640, 1.1) and (video.max_side, video.scale_factor) == (320, 1.2)



def test_the_modes_are_named_as_logs_spell_them():
    assert RunningMode("stills") is RunningMode.STILLS and RunningMode("video") is RunningMode.VIDEO


def test_each_photo_is_looked_at_whole_video_at_the_cadence():
    from fer_edge import app
    from fer_edge.settings import Settings

    settings = Settings({"cadence_analyse_fps": 2.0})
    every_frame = app.make_cadence(Settings({"cadence_every_frame": True}), RunningMode.VIDEO).describe()
    assert app.make_cadence(settings, RunningMode.STILLS).describe() == every_frame
    assert app.make_cadence(settings, RunningMode.VIDEO).describe() != every_frame
