"""fer-convert: a trained network to a device model: `quantize` (float32, dynamic, int8,
flip averaging), `edgetpu` (check and compile), `card` (the model card) and `cli` (the
gate and the metadata).

It reads what training writes (run folders, folder datasets) through fer_train's `data`
and exports through its `networks.tflite`; fer_train never imports it back.
"""

MAY_IMPORT = ("fer_train.data", "fer_train.networks", "fer_train.quiet",
              "fer_edge.core", "fer_edge.model", "fer_edge.cli_guard")
NEVER_IMPORT: tuple = ()
