"""From camera to faces: capture, detection (and BlazeFace's files), tracking, and which frames
are analysed."""
