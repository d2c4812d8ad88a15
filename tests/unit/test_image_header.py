"""Image sizes from headers, before any decoding."""

import cv2
import numpy as np
import pytest

from fer_edge.web.image_header import ImageHeaderError, image_size


def test_image_headers_give_the_size_before_decoding():
    for suffix in (".png", ".jpg"):
        ok, data = cv2.imencode(suffix, np.zeros((37, 91, 3), np.uint8))
        assert image_size(data.tobytes())[1:] == (91, 37)
    ok, bmp = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageHeaderError, match="not a JPEG or PNG"):
        image_size(bmp.tobytes())
