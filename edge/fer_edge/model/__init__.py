"""The model contract: the one preprocessing path, the metadata inside a .tflite, the runtime
that runs it, its latency, and the labelled faces and metrics that measure it. It knows no
camera: training and conversion read it as well as the device."""

MAY_IMPORT = ("fer_edge.core",)
NEVER_IMPORT: tuple = ()
