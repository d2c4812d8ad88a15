"""Drawing a face on a frame."""

import numpy as np

from fer_edge.kiosk.drawing import draw
from fer_edge.core.labels import colour_bgr


def test_drawing_marks_the_face_in_its_colour():
    class Track:
        id, box, label, confidence = 1, (20, 30, 60, 60), "happy", 0.9

    image = np.zeros((120, 160, 3), np.uint8)
    out = draw(image, [Track()])
    assert image.sum() == 0, "the frame itself is left as it is"
    assert tuple(out[89, 50]) == colour_bgr("happy"), "the box's bottom edge"
    chip = out[:30, 20:120]
    assert (chip == colour_bgr("happy")).all(axis=2).sum() > 300, "a filled chip in the label's colour"
    assert (chip > 200).all(axis=2).sum() > 20, "white text on it"
