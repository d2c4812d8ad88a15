"""What the frames of a run are, which decides how they are looked at (as MediaPipe's
`VisionTaskRunningMode`): separate photos, where finding every face counts and nothing
carries from one photo to the next, or video, where speed counts and faces are followed
from frame to frame into visits."""

import enum


class RunningMode(enum.Enum):
    STILLS = "stills"   # separate photos: a finer search, no tracks or visits across photos
    VIDEO = "video"     # a camera, a stream or a video file: frames in sequence
