"""What training reads: folder datasets (layouts, label sets, grouped splits), FER2013 packs
and run folders. Neither Keras nor TensorFlow, so a command checks its data and its run
folder before it loads a framework, and fer-convert reads them the same way."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.model", "fer_edge.vision")
NEVER_IMPORT = ("keras", "tensorflow")
