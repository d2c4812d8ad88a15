"""The model contract: the one preprocessing path, the metadata inside a .tflite, the runtime
that runs it, and the labelled faces and metrics that measure it."""
