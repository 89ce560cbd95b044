"""Layer helpers with the original's initialisers and batch-norm settings, and spectral norm.

By default every conv-like layer uses 5x5 kernels with stride 2 and 'same' padding, as in carpedm20's
DCGAN-tensorflow, so each conv halves the spatial size and each deconv doubles it; keyword options
override that (the CS231N networks).
"""
import contextlib

import keras
from keras import layers, ops

STDDEV = 0.02


@contextlib.contextmanager
def dtype_policy(name):
    """Layers created inside compute in the Keras dtype policy name: 'mixed_bfloat16' and
    'mixed_float16' multiply in 16 bits and keep float32 weights (so checkpoints are the same)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def conv2d(filters, name, spectral_norm=False, **options):
    options = {"kernel_size": 5, "strides": 2, "padding": "same", "bias_initializer": "zeros",
               "kernel_initializer": keras.initializers.TruncatedNormal(stddev=STDDEV), **options}
    return (SpectralNormConv2D if spectral_norm else layers.Conv2D)(filters, name=name, **options)


def deconv2d(filters, name, **options):
    options = {"kernel_size": 5, "strides": 2, "padding": "same", "bias_initializer": "zeros",
               "kernel_initializer": keras.initializers.RandomNormal(stddev=STDDEV), **options}
    return layers.Conv2DTranspose(filters, name=name, **options)


def linear(units, name, spectral_norm=False, **options):
    options = {"bias_initializer": "zeros", "kernel_initializer": keras.initializers.RandomNormal(stddev=STDDEV),
               **options}
    return (SpectralNormDense if spectral_norm else layers.Dense)(units, name=name, **options)


def dense(units, name, spectral_norm=False):
    """A CS231N layer: Keras' default (Glorot) initialisation, as the assignment's tf.layers.dense."""
    return linear(units, name, spectral_norm, kernel_initializer="glorot_uniform")


class SpectralNorm:
    """Mixin for Dense and Conv2D: the layer computes with kernel / sigma, sigma the kernel's largest
    singular value (Miyato et al. 2018), from a vector u that power_iteration() refines.

    Unlike Keras' SpectralNormalization wrapper, calling the layer never changes u or the kernel,
    so the caller decides when u moves (once per D update) and a G update leaves D alone."""

    def build(self, input_shape):
        super().build(input_shape)
        self.u = self.add_weight(shape=(1, self.kernel.shape[-1]), name="sn_u", trainable=False,
                                 initializer=keras.initializers.RandomNormal())

    def matrix(self):
        return ops.reshape(self.kernel, (-1, self.kernel.shape[-1]))

    def power_iteration(self):
        w = self.matrix()
        v = l2_normalize(ops.matmul(self.u, ops.transpose(w)))
        self.u.assign(l2_normalize(ops.matmul(v, w)))

    def normalized_kernel(self):
        w = self.matrix()
        u = ops.stop_gradient(self.u)
        v = ops.stop_gradient(l2_normalize(ops.matmul(u, ops.transpose(w))))
        return self.kernel / ops.sum(ops.matmul(v, w) * u)


class SpectralNormDense(SpectralNorm, layers.Dense):
    def call(self, inputs):
        return ops.matmul(inputs, self.normalized_kernel()) + self.bias


class SpectralNormConv2D(SpectralNorm, layers.Conv2D):
    def call(self, inputs):
        return self.convolution_op(inputs, self.normalized_kernel()) + self.bias


def l2_normalize(x):
    return x / ops.sqrt(ops.sum(ops.square(x)) + 1e-12)


def batch_norm(name, enabled=True):
    """enabled=False: an identity in its place (spectral norm replaces batch norm in D)."""
    if not enabled:
        return layers.Identity(name=name)
    # TF1's batch_norm(decay=0.9) keeps 0.9 of the old moving average, as Keras' momentum does.
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, scale=True, name=name)


def lrelu(x, leak=0.2):
    return ops.leaky_relu(x, negative_slope=leak)


def concat(*tensors):
    """Joins along the last axis, leaving out None (the label of an unconditional model)."""
    return ops.concatenate([t for t in tensors if t is not None], axis=-1)


def conv_cond_concat(x, y):
    """Appends the one-hot label y [N, Y] to every pixel of the feature map x [N, H, W, C] (x as it
    is when y is None)."""
    if y is None:
        return x
    y_map = ops.cast(y, x.dtype)[:, None, None, :] * ops.ones_like(x[..., :1])  # real images stay float32
    return concat(x, y_map)


def conv_out_size_same(size, stride=2):
    """The original's: the size a 'same' convolution of this stride gives, rounded up."""
    return -(-size // stride)


def deconv_to(height, width, filters, name):
    """A 5x5 stride-2 deconvolution to height x width from conv_out_size_same of each: output padding
    0 for an odd size, 1 for an even one, as TF1's conv2d_transpose with that output shape did."""
    return deconv2d(filters, name, output_padding=(1 - height % 2, 1 - width % 2))
