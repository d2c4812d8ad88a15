"""Teachers for distillation: soft targets from models (`distill`) and face-api.js's
expression network rebuilt as one (`faceapi`)."""

MAY_IMPORT = ("fer_train.networks", "fer_edge.core", "fer_edge.model")
NEVER_IMPORT: tuple = ()
