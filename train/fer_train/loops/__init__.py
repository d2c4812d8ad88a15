"""The training loops and what they share: `recipe` (schedule, class weights, per-epoch
records), augmentation (`augment`, `camera`), `fit` (TensorFlow), `portable` (any Keras
backend), `average` (weight averaging and soups) and `plots` (a run's PNGs)."""

MAY_IMPORT = ("fer_train.data", "fer_train.networks", "fer_train.teachers", "fer_edge.core", "fer_edge.model")
NEVER_IMPORT: tuple = ()
