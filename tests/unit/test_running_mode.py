"""What the running mode means to a detector: separate photos get a finer search, video the
fast settings (BlazeFace's second look at photos: tests/edge/test_field_crops.py)."""

from fer_edge.vision.detect import make_detector
from fer_edge.vision.detectors import HaarDetector
from fer_edge.vision.running_mode import RunningMode


def test_photos_get_a_finer_haar_search_than_video():
    stills, video = make_detector("haar", mode=RunningMode.STILLS), make_detector("haar", mode=RunningMode.VIDEO)
    assert isinstance(stills, HaarDetector) and isinstance(video, HaarDetector)
    assert (stills.max_side, stills.scale_factor) == (640, 1.1) and (video.max_side, video.scale_factor) == (320, 1.2)

