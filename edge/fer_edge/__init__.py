"""fer-edge device runtime: the model contract (labels, preprocessing, metadata) and the
LiteRT-based classifier. Never imports TensorFlow, so it runs on a Raspberry Pi.

The folders follow the data, lowest first: core, model, vision, kiosk, outputs, fleet, web,
tools; on top `cli`, `settings`, `app` (the composition root) and `cli_guard`. Each folder's
`__init__` says what it owns and what it may import (`MAY_IMPORT`: folders, or single
modules, of fer_edge; its own folder always; a package above it, loaded already, too) and
which third-party packages it never imports (`NEVER_IMPORT`, which holds for the folders
below it too); tests/unit/test_layout.py holds every module to them.
"""

__version__ = "0.1.0"

MAY_IMPORT = ("fer_edge.core", "fer_edge.model", "fer_edge.vision", "fer_edge.kiosk", "fer_edge.outputs",
              "fer_edge.fleet", "fer_edge.web", "fer_edge.tools", "fer_edge.deploy")
NEVER_IMPORT = ("tensorflow", "keras")
