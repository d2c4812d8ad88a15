"""fer-train: FER2013 readers for training, augmentation, the compact CNN and its training loop."""
