"""The networks: the CNNs (`arch`), a deeper one grown from a trained one (`grow`), a start
from a shipped model's float32 twin (`warmstart`), and the one Keras -> TFLite export
(`tflite`) that the teachers and fer-convert share."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.model")
NEVER_IMPORT: tuple = ()
