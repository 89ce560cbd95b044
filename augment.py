"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): random
colour, translation and cutout applied to every batch D sees, real and generated alike, inside the
gradient. On a folder of a few thousand pictures D otherwise learns the pictures by heart and wins
(D(x) near 1, recall falling); transformed anew at every step, they are never the same twice, and since
the fakes are transformed the same way, G learns the pictures, not the transforms.

The transforms follow the paper's 'color,translation,cutout' policy: brightness, saturation and
contrast per picture; a shift of up to 1/8 of the size, the uncovered border zero (mid-grey); a square
of half the size set to zero. Every draw is stateless, from a seed: a resumed run draws what it would
have drawn.
"""
import tensorflow as tf

TRANSLATION = 0.125  # the largest shift, as a share of the height and width
CUTOUT = 0.5  # the side of the square cut out, as a share of the height and width


def diff_augment(images, seed):
    """images [N, H, W, C] in [-1, 1] (any float type) transformed by draws from seed (an int [2] tensor)."""
    colour, shift, cut = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3))
    return cutout(translate(recolour(images, colour), shift), cut)


def uniform(shape, seed, dtype):
    return tf.cast(tf.random.stateless_uniform(shape, seed), dtype)


def recolour(images, seed):
    """Brightness shifted by U(-0.5, 0.5), saturation scaled by U(0, 2), contrast by U(0.5, 1.5)."""
    n, dtype = tf.shape(images)[0], images.dtype
    brightness, saturation, contrast = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    x = images + uniform([n, 1, 1, 1], brightness, dtype) - 0.5
    grey = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - grey) * (2 * uniform([n, 1, 1, 1], saturation, dtype)) + grey
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (uniform([n, 1, 1, 1], contrast, dtype) + 0.5) + mean


def random_ints(n, low, high, seed):
    """n integers drawn uniformly from low..high - 1, as [n, 1]."""
    return tf.random.stateless_uniform([n, 1], seed, low, high, dtype=tf.int32)


def translate(images, seed):
    """Each picture shifted by up to TRANSLATION of its size along each axis; zeros come in at the border."""
    n, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    dy, dx = int(height * TRANSLATION + 0.5), int(width * TRANSLATION + 0.5)
    rows_seed, cols_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    # Indices into the picture padded by one zero row and column on each side: beyond it, the zeros.
    rows = tf.clip_by_value(tf.range(height)[None, :] + random_ints(n, -dy, dy + 1, rows_seed) + 1, 0, height + 1)
    cols = tf.clip_by_value(tf.range(width)[None, :] + random_ints(n, -dx, dx + 1, cols_seed) + 1, 0, width + 1)
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def cutout(images, seed):
    """A square of CUTOUT of each picture's size, centred anywhere in it (cut off at the edges), set to zero."""
    n, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    size_y, size_x = int(height * CUTOUT + 0.5), int(width * CUTOUT + 0.5)
    rows_seed, cols_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    top = random_ints(n, 0, height + (1 - size_y % 2), rows_seed) - size_y // 2
    left = random_ints(n, 0, width + (1 - size_x % 2), cols_seed) - size_x // 2
    rows, cols = tf.range(height)[None, :], tf.range(width)[None, :]
    inside_y = (rows >= top) & (rows < top + size_y)  # [n, H]
    inside_x = (cols >= left) & (cols < left + size_x)  # [n, W]
    cut = inside_y[:, :, None] & inside_x[:, None, :]
    return images * tf.cast(~cut, images.dtype)[..., None]
