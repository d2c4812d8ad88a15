"""From camera to faces: capture, detection (the contract, the detectors and BlazeFace's
files), the running mode, tracking, and which frames are analysed. It hands faces up to the
camera loop and never imports it."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.model")
NEVER_IMPORT: tuple = ()
