"""Layer helpers with the original's initialisers and batch-norm settings, and spectral norm.

By default every conv-like layer uses 5x5 kernels with stride 2 and 'same' padding, as in carpedm20's
DCGAN-tensorflow, so each conv halves the spatial size and each deconv doubles it; keyword options
override that (the CS231N networks).
"""
import contextlib

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

STDDEV = 0.02
# The compute dtypes in which a deconvolution computes in phases unless told: none, by measurement (see
# Deconv2D); bench.py fills it to time that form on the machine at hand.
PHASE_DTYPES = set()
# Stride-2 layers whose smaller maps are at most this many pixels a side take their kernel gradient as one
# matmul (kernel_gradient): the 64x64 model's step in bfloat16 ran 63.6 and 62.6 against 58.2 and 56.1
# samples/s, float32 38.6 and 35.9 against 36.7 and 35.9 (AMD EPYC, AVX-512 BF16); at 8 pixels no better.
PATCH_GRADIENT_MAP = 4


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


@contextlib.contextmanager
def computing_in(layer, name):
    """layer and every layer inside it compute in the Keras dtype policy name while inside (calls traced
    then keep it); their weights are unchanged."""
    inner = list(layer._flatten_layers())
    previous = [sub.dtype_policy for sub in inner]
    for sub in inner:
        sub.dtype_policy = name
    try:
        yield
    finally:
        for sub, policy in zip(inner, previous):
            sub.dtype_policy = policy


def conv2d(filters, name, spectral_norm=False, labels=0, **options):
    options = {"kernel_size": 5, "strides": 2, "padding": "same", "bias_initializer": "zeros",
               "kernel_initializer": keras.initializers.TruncatedNormal(stddev=STDDEV), **options}
    return (SpectralNormConv2D if spectral_norm else Conv2D)(filters, name=name, labels=labels, **options)


def deconv2d(filters, name, phases=None, labels=0, **options):
    options = {"kernel_size": 5, "strides": 2, "padding": "same", "bias_initializer": "zeros",
               "kernel_initializer": keras.initializers.RandomNormal(stddev=STDDEV), **options}
    return Deconv2D(filters, name=name, phases=phases, labels=labels, **options)


class LabelChannels:
    """Mixin for the convolutions of a conditional network. Made with labels=Y, the layer's kernel takes
    Y input channels more than its input has, and layer(x, y) gives what the original's
    conv2d(conv_cond_concat(x, y)) gave: the convolution of x with the one-hot label y appended to every
    pixel — from the same kernel (checkpoints are unchanged), without making those label maps.

    A convolution is linear in its input channels, and a label channel is constant over the image, so
    the label channels' share of the output is the same for every image of a class: it is computed once
    per call from a map of ones (the padding at the borders counts as it did) and each image takes its
    label's. The conditional D's first two convolutions had 10 label channels to 1 and to 11 of the
    image's; the conditional G's deconvolutions 10 to 128."""

    kernel_input_axis = 2  # [height, width, in, out]

    def __init__(self, filters, labels=0, **kwargs):
        super().__init__(filters, **kwargs)
        self.labels = labels

    def build(self, input_shape):
        super().build((*input_shape[:-1], input_shape[-1] + self.labels))
        self.input_spec = layers.InputSpec(ndim=len(input_shape), axes={-1: input_shape[-1]})

    def call(self, inputs, labels=None):
        kernel = self.call_kernel()
        if self.labels:
            own, per_label = ops.split(kernel, [inputs.shape[-1]], axis=self.kernel_input_axis)
            outputs = self.apply_kernel(inputs, own) + self.label_outputs(inputs, labels, per_label)
        else:
            outputs = self.apply_kernel(inputs, kernel)
        outputs = outputs + self.bias if self.use_bias else outputs
        return outputs if self.activation is None else self.activation(outputs)

    def call_kernel(self):
        return self.kernel

    def label_outputs(self, inputs, labels, kernel):
        """[N, H', W', filters]: the label channels' share of the output for each image's label."""
        ones = ops.ones((1, *inputs.shape[1:3], 1), inputs.dtype)
        per_label = self.apply_kernel(ones, self.one_input_kernel(kernel))  # [1, H', W', (label, filter)]
        height, width = per_label.shape[1:3]
        per_label = ops.reshape(per_label, (height * width, self.labels, self.filters))
        per_label = ops.reshape(ops.transpose(per_label, (1, 0, 2)), (self.labels, -1))
        return ops.reshape(ops.matmul(ops.cast(labels, inputs.dtype), per_label), (-1, height, width, self.filters))


class Conv2D(LabelChannels, layers.Conv2D):
    def apply_kernel(self, inputs, kernel):
        if small_map(self, self.compute_output_shape(inputs.shape)):
            return conv_by_patches(inputs, kernel)
        return self.convolution_op(inputs, kernel)

    def one_input_kernel(self, kernel):
        """[h, w, labels, filters] -> [h, w, 1, labels * filters]: label c's taps to filter o as output c, o."""
        return ops.reshape(kernel, (*kernel.shape[:2], 1, -1))


class Deconv2D(LabelChannels, layers.Conv2DTranspose):
    """Keras' Conv2DTranspose (the same kernel, so checkpoints are interchangeable) that can compute a
    stride-2 'same' deconvolution as one ordinary stride-1 convolution with four times the output
    channels, one group per output phase (even or odd row, even or odd column), interleaved by
    depth_to_space. Each phase of the output only sees the kernel taps of its parity, so the
    convolution's kernel is the transposed one's taps re-arranged, zeros where a phase has no tap.

    With 5x5 kernels it does 1.44x the multiplications, and measured slower wherever it was timed: in
    float32 (AVX2: 105 against 70 ms forward and backward for the MNIST generator's first deconvolution)
    and in bfloat16 (AMD EPYC with AVX-512 BF16: the 64x64 model's step 45 against 58 samples/s). So
    phases=None uses it only when the layer computes in a dtype of PHASE_DTYPES (none by default)."""

    kernel_input_axis = 3  # [height, width, out, in]

    def __init__(self, filters, phases=None, **kwargs):
        super().__init__(filters, **kwargs)
        self.phases = phases

    def apply_kernel(self, inputs, kernel):
        layout = self.phase_layout(inputs.shape)
        if layout is None and small_map(self, inputs.shape):
            return conv_transpose_by_patches(inputs, kernel, self.compute_output_shape(inputs.shape)[1:3])
        if layout is None:
            return ops.conv_transpose(inputs, kernel, strides=list(self.strides), padding=self.padding,
                                      output_padding=self.output_padding, data_format=self.data_format,
                                      dilation_rate=self.dilation_rate)
        taps, pads, out_size = layout
        # Padded apart: with its padding given explicitly, a convolution's gradients leave oneDNN for
        # TF's own kernels, which in bfloat16 made the MNIST step 14x slower.
        outputs = tf.nn.conv2d(tf.pad(inputs, [[0, 0], *pads, [0, 0]]), phase_kernel(kernel, taps), 1, "VALID")
        return tf.nn.depth_to_space(outputs, 2)[:, :out_size[0], :out_size[1]]

    def one_input_kernel(self, kernel):
        """[h, w, filters, labels] -> [h, w, labels * filters, 1]: label c's taps to filter o as output c, o."""
        return ops.reshape(ops.transpose(kernel, (0, 1, 3, 2)), (*kernel.shape[:2], -1, 1))

    def phase_layout(self, input_shape):
        """(kernel tap per convolution tap and phase, per spatial axis; the convolution's padding;
        the output size) when this layer computes in phases, else None."""
        use = self.compute_dtype in PHASE_DTYPES if self.phases is None else self.phases
        if not use or self.strides != (2, 2) or self.padding != "same" or self.dilation_rate != (1, 1):
            return None
        in_size, out_size = input_shape[1:3], self.compute_output_shape(input_shape)[1:3]
        if None in in_size or any(o > 2 * i for i, o in zip(in_size, out_size)):
            return None
        taps, pads = zip(*(phase_taps(i, o, k) for i, o, k in zip(in_size, out_size, self.kernel_size)))
        return taps, pads, out_size


def small_map(layer, small_shape):
    """Whether a stride-2 'same' layer's smaller side (a convolution's output, a deconvolution's input) is at
    most PATCH_GRADIENT_MAP pixels: its kernel gradient is then taken as one matmul of patches."""
    return (layer.strides == (2, 2) and layer.padding == "same" and layer.dilation_rate == (1, 1)
            and None not in small_shape[1:3] and max(small_shape[1:3]) <= PATCH_GRADIENT_MAP)


def kernel_gradient(x, dy, kernel_shape):
    """The kernel gradient of the stride-2 'same' convolution of x to dy: x's patches, one row per output
    pixel, times dy. oneDNN's own sums over only batch x 4 x 4 pixels for the 64x64 model's 512-channel
    layers, and ran at half its speed elsewhere in bfloat16."""
    patches = tf.image.extract_patches(x, [1, *kernel_shape[:2], 1], [1, 2, 2, 1], [1, 1, 1, 1], "SAME")
    gradient = tf.matmul(tf.reshape(patches, (-1, patches.shape[-1])), tf.reshape(dy, (-1, dy.shape[-1])),
                         transpose_a=True)
    return tf.reshape(gradient, kernel_shape)


def conv_by_patches(inputs, kernel):
    """tf.nn.conv2d(inputs, kernel, 2, 'SAME'), its kernel gradient by kernel_gradient."""
    @tf.custom_gradient
    def conv(x, k):
        def gradients(dy):
            return tf.nn.conv2d_transpose(dy, k, tf.shape(x), 2, "SAME"), kernel_gradient(x, dy, k.shape)
        return tf.nn.conv2d(x, k, 2, "SAME"), gradients
    return conv(inputs, tf.convert_to_tensor(kernel))


def conv_transpose_by_patches(inputs, kernel, out_size):
    """The stride-2 'same' transposed convolution of inputs to out_size, its kernel gradient by kernel_gradient
    (of the convolution it transposes, from the output's gradient to the input)."""
    @tf.custom_gradient
    def deconv(x, k):
        def gradients(dy):
            return tf.nn.conv2d(dy, k, 2, "SAME"), kernel_gradient(dy, x, k.shape)
        shape = tf.stack([tf.shape(x)[0], *out_size, k.shape[2]])
        return tf.nn.conv2d_transpose(x, k, shape, 2, "SAME"), gradients
    return deconv(inputs, tf.convert_to_tensor(kernel))


def phase_taps(in_size, out_size, kernel_size):
    """For one axis of a stride-2 'same' transposed convolution: which kernel tap (kernel_size: none)
    each stride-1 convolution tap t applies for output phase r, and the convolution's padding.

    TF pads a 'same' convolution by p = max(2(in - 1) + k - out, 0) // 2 before, so output 2m + r
    sums input m + d times kernel tap r + p - 2d, for every d that gives a tap in [0, k)."""
    p = max(2 * (in_size - 1) + kernel_size - out_size, 0) // 2
    low = min(-((kernel_size - 1 - r - p) // 2) for r in (0, 1))
    high = max((r + p) // 2 for r in (0, 1))
    tap = np.array([[r + p - 2 * d for r in (0, 1)] for d in range(low, high + 1)])
    tap[(tap < 0) | (tap >= kernel_size)] = kernel_size
    return tap, (-low, high)


def phase_kernel(kernel, taps):
    """The transposed convolution's kernel [kh, kw, out, in] as the phase convolution's
    [th, tw, in, 4 out], channels ordered (row phase, column phase, out) as depth_to_space reads them."""
    kernel = tf.pad(kernel, [[0, 1], [0, 1], [0, 0], [0, 0]])  # tap kernel_size: a zero
    kernel = tf.gather(tf.gather(kernel, taps[0], axis=0), taps[1], axis=2)  # [th, 2, tw, 2, out, in]
    th, tw, out, in_ = taps[0].shape[0], taps[1].shape[0], kernel.shape[-2], kernel.shape[-1]
    return tf.reshape(tf.transpose(kernel, [0, 2, 5, 1, 3, 4]), [th, tw, in_, 4 * out])


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
        outputs = ops.matmul(inputs, self.normalized_kernel())
        return outputs + self.bias if self.use_bias else outputs


class SpectralNormConv2D(SpectralNorm, Conv2D):
    def call_kernel(self):
        return self.normalized_kernel()


def l2_normalize(x):
    return x / ops.sqrt(ops.sum(ops.square(x)) + 1e-12)


def batch_norm(name, enabled=True):
    """enabled=False: an identity in its place (spectral norm replaces batch norm in D)."""
    if not enabled:
        return layers.Identity(name=name)
    # TF1's batch_norm(decay=0.9) keeps 0.9 of the old moving average, as Keras' momentum does.
    return BatchNorm(momentum=0.9, epsilon=1e-5, scale=True, name=name)


class BatchNorm(layers.BatchNormalization):
    """Keras' batch norm. With unbiased_moving_variance its moving variance moves towards the batch's
    unbiased variance, n / (n - 1) times the one that normalises (n values per channel), as the original's
    tf.contrib.layers.batch_norm did from TF 1.4 on (its fused kernel); Keras moves it towards the biased
    one. Only the moving variance differs, which inference-mode sampling uses."""

    unbiased_moving_variance = False

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training, mask)
        if training and self.trainable and self.unbiased_moving_variance:
            _, variance = self._moments(ops.cast(inputs, "float32"), mask)
            n = tf.cast(tf.reduce_prod(tf.gather(tf.shape(inputs), self._reduction_axes)), "float32")
            if self.synchronized:
                n *= tf.distribute.get_replica_context().num_replicas_in_sync
            self.moving_variance.assign_add(variance * (1.0 - self.momentum) / tf.maximum(n - 1.0, 1.0))
        return outputs


class ClassBatchNorm(keras.layers.Layer):
    """Class-conditional batch norm (de Vries et al. 2017; SN-GAN's and BigGAN's G): batch norm without a scale
    and offset of its own, then the scale and offset of each picture's class."""

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.norm = BatchNorm(momentum=0.9, epsilon=1e-5, center=False, scale=False, name="norm")

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(self.num_classes, input_shape[-1]), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.num_classes, input_shape[-1]), initializer="zeros", name="beta")

    def call(self, x, y, training=False):
        h = self.norm(x, training=training)
        y = ops.cast(y, h.dtype)
        scale, offset = ops.matmul(y, ops.cast(self.gamma, h.dtype)), ops.matmul(y, ops.cast(self.beta, h.dtype))
        return h * scale[:, None, None, :] + offset[:, None, None, :]


def lrelu(x, leak=0.2):
    return ops.leaky_relu(x, negative_slope=leak)


def concat(*tensors):
    """Joins along the last axis, leaving out None (the label of an unconditional model)."""
    return ops.concatenate([t for t in tensors if t is not None], axis=-1)


def conv_out_size_same(size, stride=2):
    """The original's: the size a 'same' convolution of this stride gives, rounded up."""
    return -(-size // stride)


def deconv_to(height, width, filters, name, labels=0):
    """A 5x5 stride-2 deconvolution to height x width from conv_out_size_same of each: output padding
    0 for an odd size, 1 for an even one, as TF1's conv2d_transpose with that output shape did."""
    return deconv2d(filters, name, output_padding=(1 - height % 2, 1 - width % 2), labels=labels)
