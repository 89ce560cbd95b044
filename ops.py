"""Layer helpers with the original's initialisers and batch-norm settings.

Every conv-like layer uses 5x5 kernels with stride 2 and 'same' padding, as in carpedm20's
DCGAN-tensorflow, so each conv halves the spatial size and each deconv doubles it.
"""
import keras
from keras import layers, ops

STDDEV = 0.02


def conv2d(filters, name):
    return layers.Conv2D(
        filters, 5, strides=2, padding="same", name=name,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=STDDEV),
        bias_initializer="zeros")


def deconv2d(filters, name):
    return layers.Conv2DTranspose(
        filters, 5, strides=2, padding="same", name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=STDDEV),
        bias_initializer="zeros")


def linear(units, name):
    return layers.Dense(
        units, name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=STDDEV),
        bias_initializer="zeros")


def batch_norm(name):
    # TF1's batch_norm(decay=0.9) keeps 0.9 of the old moving average, as Keras' momentum does.
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, scale=True, name=name)


def lrelu(x, leak=0.2):
    return ops.leaky_relu(x, negative_slope=leak)


def concat(*tensors):
    return ops.concatenate(tensors, axis=-1)


def conv_cond_concat(x, y):
    """Appends the one-hot label y [N, Y] to every pixel of the feature map x [N, H, W, C]."""
    y_map = y[:, None, None, :] * ops.ones_like(x[..., :1])
    return concat(x, y_map)
