"""fer-train: the command line (`cli`) and TensorFlow's quieting (`quiet`) on top of four
folders that follow the data: `data` (what training reads), `networks` (the CNNs and how
they start), `teachers` (soft targets) and `loops` (the training loops and what they share).

Each folder's `__init__` says what it may import (`MAY_IMPORT`: folders, or single modules,
of fer_train, fer_convert and fer_edge; its own folder always) and which third-party
packages it never imports (`NEVER_IMPORT`, which holds for the folders below it too);
tests/unit/test_layout.py holds every module to them. fer_train never imports fer_convert:
fer-convert reads what training writes, so it is the one that imports.
"""

MAY_IMPORT = ("fer_train.data", "fer_train.networks", "fer_train.teachers", "fer_train.loops",
              "fer_edge.core", "fer_edge.model", "fer_edge.cli_guard")
NEVER_IMPORT: tuple = ()
