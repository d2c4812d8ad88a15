"""Camera-crop augmentation: make a FER2013 face look like one a detector cut from a video frame.

FER2013 faces are centred, sharp and well exposed; the device hands the model faces
framed from BlazeFace's eyes (a few pixels off and a little too big or small), often
small in the frame (upscaled), soft, JPEG-compressed, noisy and under- or over-exposed.
Each effect is applied to a random part of the batch, so the model keeps seeing clean faces.
"""

import tensorflow as tf
from typing import Callable


def make_camera_augmenter(seed: int, probability: float = 0.2) -> Callable:
    """A callable float32 (N,48,48,1) batch in 0..255 -> the same batch with camera effects."""
    generator = tf.random.Generator.from_seed(seed + 100)

    def chosen(n: tf.Tensor) -> tf.Tensor:
        return (generator.uniform([n]) < probability)[:, None, None, None]

    def box_jitter(images: tf.Tensor) -> tf.Tensor:
        """Re-cut each face from a box off by up to 6 % of its size and 0.9-1.12x as big."""
        n = tf.shape(images)[0]
        scale = tf.exp(generator.uniform([n], tf.math.log(0.9), tf.math.log(1.12)))
        dy, dx = generator.uniform([n], -0.06, 0.06), generator.uniform([n], -0.06, 0.06)
        padded = tf.pad(images, [[0, 0], [8, 8], [8, 8], [0, 0]], mode="REFLECT")  # no black edges
        half, unit = scale / 2 * 48 / 64, 48 / 64
        centre_y, centre_x = 0.5 + dy * unit, 0.5 + dx * unit
        boxes = tf.stack([centre_y - half, centre_x - half, centre_y + half, centre_x + half], axis=1)
        return tf.image.crop_and_resize(padded, boxes, tf.range(n), [48, 48])

    def down_up(images: tf.Tensor) -> tf.Tensor:
        """A small face in the frame: down to 20-40 px, back up to 48."""
        size = generator.uniform([], 20, 41, dtype=tf.float32)
        size = tf.cast(size, tf.int32)
        small = tf.image.resize(images, [size, size], method="area")
        return tf.image.resize(small, [48, 48], method="bilinear")

    def blur(images: tf.Tensor) -> tf.Tensor:
        sigma = generator.uniform([], 0.4, 1.0)
        x = tf.range(-2, 3, dtype=tf.float32)
        kernel = tf.exp(-(x ** 2) / (2 * sigma ** 2))
        kernel = kernel / tf.reduce_sum(kernel)
        images = tf.nn.conv2d(tf.pad(images, [[0, 0], [2, 2], [0, 0], [0, 0]], mode="SYMMETRIC"),
                              tf.reshape(kernel, [5, 1, 1, 1]), 1, "VALID")
        return tf.nn.conv2d(tf.pad(images, [[0, 0], [0, 0], [2, 2], [0, 0]], mode="SYMMETRIC"),
                            tf.reshape(kernel, [1, 5, 1, 1]), 1, "VALID")

    def jpeg(images: tf.Tensor) -> tf.Tensor:
        quality = tf.cast(generator.uniform([], 25, 90), tf.int32)
        encoded = tf.map_fn(lambda image: tf.image.adjust_jpeg_quality(image / 255.0, quality),
                            images, fn_output_signature=tf.float32)
        return encoded * 255.0

    def gamma(images: tf.Tensor) -> tf.Tensor:
        n = tf.shape(images)[0]
        g = tf.exp(generator.uniform([n], -0.45, 0.45))[:, None, None, None]
        return 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), g)

    def noise(images: tf.Tensor) -> tf.Tensor:
        n = tf.shape(images)[0]
        sigma = generator.uniform([n], 2.0, 8.0)[:, None, None, None]
        return images + sigma * generator.normal(tf.shape(images))

    def augment(images: tf.Tensor) -> tf.Tensor:
        for effect in (box_jitter, down_up, blur, jpeg, gamma, noise):
            images = tf.where(chosen(tf.shape(images)[0]), effect(images), images)
            images = tf.clip_by_value(images, 0.0, 255.0)
        return images

    return augment
