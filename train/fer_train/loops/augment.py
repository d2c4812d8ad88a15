"""On-the-fly augmentation for uint8 48x48 face batches (runs inside tf.data on the CPU).

Shift/zoom/rotation (small, faces are registered), horizontal flip, brightness/contrast
and random erasing (occlusion by hands, glasses, hair). Values stay in 0..255.

The usual geometry is Keras's chain of flip, rotation, zoom and shift layers, each of which
resamples the face, so training faces are softer than FER2013's test faces. `one_warp`
does the same geometry in one bilinear warp instead (docs/model.md says what it changes).
"""

import math
from typing import Any, Callable, Tuple

import keras
import tensorflow as tf

from .recipe import (ERASE_AREA, ERASE_PROBABILITY, MAX_SHIFT, MAX_ZOOM, ROTATION_TURNS, geometry_layers,
                     photometric_layers)

MAX_ROTATION = ROTATION_TURNS * 2 * math.pi


def make_warp(generator: Any, max_rotation: float = MAX_ROTATION, max_zoom: float = MAX_ZOOM,
              max_shift: float = MAX_SHIFT) -> Callable:
    """A callable batch -> the batch with each face flipped (half of them), rotated, zoomed
    and shifted in one bilinear warp; float32 (N,48,48,1). Draws from `generator`."""

    def warp(images: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images)
        n, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        flip = tf.where(generator.uniform([n]) < 0.5, -1.0, 1.0)
        angle = generator.uniform([n], -max_rotation, max_rotation)
        scale = 1.0 + generator.uniform([n], -max_zoom, max_zoom)  # >1 shows more of the frame
        shift_x = generator.uniform([n], -max_shift, max_shift) * w
        shift_y = generator.uniform([n], -max_shift, max_shift) * h
        cx, cy = (w - 1) / 2, (h - 1) / 2
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        # Output pixel (x, y) reads the input at centre + rotate/scale(flip(x - cx, y - cy)) + shift.
        a0, a1 = cos * flip, -sin
        b0, b1 = sin * flip, cos
        a2 = cx + shift_x - a0 * cx - a1 * cy
        b2 = cy + shift_y - b0 * cx - b1 * cy
        zeros = tf.zeros([n])
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT")

    return warp


def make_augmenter(seed: int, one_warp: bool = False) -> Callable:
    """A callable batch -> augmented batch; float32 (N,48,48,1) in 0..255 both ways."""
    generator = tf.random.Generator.from_seed(seed + 6)
    if one_warp:
        geometric = make_warp(generator)
    else:
        chain = keras.Sequential(geometry_layers(seed), name="geometry")
        geometric = lambda images: chain(images, training=True)  # noqa: E731
    photometric = keras.Sequential(photometric_layers(seed), name="augment")

    def random_erase(images: tf.Tensor, probability: float = ERASE_PROBABILITY,
                     area_range: Tuple[float, float] = ERASE_AREA) -> tf.Tensor:
        shape = tf.shape(images)
        n, h, w = shape[0], shape[1], shape[2]
        area = generator.uniform([n], *area_range)
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

    def augment(images: tf.Tensor) -> tf.Tensor:
        images = photometric(geometric(images), training=True)
        return tf.clip_by_value(random_erase(images), 0.0, 255.0)

    return augment
