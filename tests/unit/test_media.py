"""core.media: which paths are still images, by suffix, in any case."""

from fer_edge.core.media import IMAGE_SUFFIXES, is_image_path


def test_still_images_by_suffix_in_any_case():
    assert is_image_path("faces/a.PNG") and is_image_path("b.jpeg") and is_image_path("c.tiff")
    assert all(is_image_path("x" + suffix.upper()) for suffix in IMAGE_SUFFIXES)


def test_videos_streams_and_bare_names_are_not_images():
    for path in ("clip.mp4", "rtsp://cam/stream", "png", "photos/", "a.png.txt", ""):
        assert not is_image_path(path), path
