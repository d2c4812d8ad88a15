"""fer-edge device runtime: the model contract (labels, preprocessing, metadata) and the
LiteRT-based classifier. Never imports TensorFlow, so it runs on a Raspberry Pi."""

__version__ = "0.1.0"
