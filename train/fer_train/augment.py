"""On-the-fly augmentation for uint8 48x48 face batches (runs inside tf.data on the CPU).

Shift/zoom/rotation (small, faces are registered), horizontal flip, brightness/contrast
and random erasing (occlusion by hands, glasses, hair). Values stay in 0..255.
"""

import keras
import tensorflow as tf
from keras import layers


def make_augmenter(seed):
    """A callable batch -> augmented batch; float32 (N,48,48,1) in 0..255 both ways."""
    geometric = keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),  # about +-15 degrees
        layers.RandomZoom(0.12, fill_mode="reflect", seed=seed + 2),
        layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
        layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 4),
        layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 5),
    ], name="augment")
    generator = tf.random.Generator.from_seed(seed + 6)

    def random_erase(images, probability=0.25, max_area=0.2):
        shape = tf.shape(images)
        n, h, w = shape[0], shape[1], shape[2]
        area = generator.uniform([n], 0.02, max_area)
        aspect = tf.exp(generator.uniform([n], -1.0, 1.0))
        eh = tf.clip_by_value(tf.sqrt(area * aspect), 0.05, 0.9) * tf.cast(h, tf.float32)
        ew = tf.clip_by_value(tf.sqrt(area / aspect), 0.05, 0.9) * tf.cast(w, tf.float32)
        y0 = generator.uniform([n]) * (tf.cast(h, tf.float32) - eh)
        x0 = generator.uniform([n]) * (tf.cast(w, tf.float32) - ew)
        ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
        xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
        inside = ((ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
                  & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None]))
        apply = generator.uniform([n]) < probability
        mask = tf.logical_and(inside, apply[:, None, None])[..., None]
        fill = generator.uniform(tf.shape(images), 0.0, 255.0)
        return tf.where(mask, fill, images)

    def augment(images):
        images = geometric(images, training=True)
        return tf.clip_by_value(random_erase(images), 0.0, 255.0)

    return augment
