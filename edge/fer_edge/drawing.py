"""What a person looks at: boxes and labels drawn on frames, an annotated video, a window."""

import cv2

POSITIVE = ("happy", "surprise", "neutral")


def label_colour(label: str):
    """BGR: green for the calm or pleased labels, orange for the others."""
    return (0, 200, 0) if label in POSITIVE else (0, 120, 255)


def draw(image, tracks):
    """Boxes, labels, confidence and track ids on a copy of the frame."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for track in tracks:
        x, y, w, h = (int(round(v)) for v in track.box)
        colour = label_colour(track.label)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        text = f"#{track.id} {track.label} {track.confidence * 100:.0f}%"
        cv2.putText(out, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


class Annotator:
    """A frame hook writing the annotated video (mp4v works in every OpenCV build, headless too)."""

    def __init__(self, path, fps):
        self.path, self.fps, self.writer = path, fps or 15.0, None

    def on_frame(self, frame, tracks, stats):
        image = draw(frame.image, tracks)
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: cannot write video")
        self.writer.write(image)

    def close(self):
        if self.writer is not None:
            self.writer.release()


class Window:
    """A frame hook for --show: an OpenCV window, where the installed OpenCV has a GUI."""

    def __init__(self, title="fer-edge"):
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise OSError("--show needs an OpenCV build with a GUI (opencv-python, not -headless) and a display; "
                          "use --annotate OUT.mp4 instead") from None

    def on_frame(self, frame, tracks, stats):
        cv2.imshow(self.title, draw(frame.image, tracks))
        cv2.waitKey(1)

    def close(self):
        cv2.destroyWindow(self.title)
