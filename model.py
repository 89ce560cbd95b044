"""The DCGAN: generators and discriminators, with or without a class label, and the training step.

--arch dcgan is layer for layer carpedm20's DCGAN-tensorflow: its conditional (MNIST) branch when the
data has labels, its unconditional 64x64 branch (celebA, image folders) when it has none. mlp and
cs231n are Stanford CS231N's fully connected and convolutional GANs, conditioned the same way (the
one-hot label concatenated to every layer's input) or not at all. A model without labels has y_dim 0
and every label argument None.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from augment import diff_augment
from ops import (ClassBatchNorm, SpectralNorm, batch_norm, concat, conv2d, conv_out_size_same, deconv2d, deconv_to, dense,
                 dtype_policy, linear, lrelu)

# Grappler's remapper fails on the discriminator's lrelu gradient (it logs an error and falls back);
# without it the training step also runs about 5% faster on CPU.
tf.config.optimizer.set_experimental_options({"remapping": False})


class Generator(keras.layers.Layer):
    """What every generator shares: its image size (the export reads it) and its pixel range."""

    signed_output = False  # True for a tanh output: images in [-1, 1] rather than [0, 1]
    size_multiple = 1  # output sizes must be multiples of this (two exact 2x upsamplings: 4)

    def __init__(self, output_height=28, output_width=28, c_dim=1, **kwargs):
        super().__init__(**kwargs)
        self.check_size(output_height, output_width)
        self.output_height, self.output_width, self.c_dim = output_height, output_width, c_dim

    @classmethod
    def check_size(cls, height, width):
        if height % cls.size_multiple or width % cls.size_multiple:
            raise ValueError(f"this generator draws sizes that are multiples of {cls.size_multiple}, "
                             f"not {height}x{width}")

    def from_unit(self, images):
        """Real images in [0, 1] mapped into this generator's range."""
        return images * 2.0 - 1.0 if self.signed_output else images

    def to_unit(self, images):
        """This generator's images mapped back into [0, 1]."""
        return (images + 1.0) / 2.0 if self.signed_output else images


class ConditionalGenerator(Generator):
    """(z, y) -> image in [0, 1]: two linear layers, then two 5x5 stride-2 deconvolutions."""

    size_multiple = 4

    def __init__(self, output_height=28, output_width=28, c_dim=1, y_dim=10, gf_dim=64, gfc_dim=1024, **kwargs):
        super().__init__(output_height, output_width, c_dim, **kwargs)
        self.s_h4, self.s_w4 = output_height // 4, output_width // 4
        self.gf_dim = gf_dim
        self.h0, self.bn0 = linear(gfc_dim, "g_h0_lin"), batch_norm("g_bn0")
        self.h1, self.bn1 = linear(gf_dim * 2 * self.s_h4 * self.s_w4, "g_h1_lin"), batch_norm("g_bn1")
        self.h2, self.bn2 = deconv2d(gf_dim * 2, "g_h2", labels=y_dim), batch_norm("g_bn2")
        self.h3 = deconv2d(c_dim, "g_h3", labels=y_dim)

    def call(self, z, y, training=False):
        h = ops.relu(self.bn0(self.h0(concat(z, y)), training=training))
        h = ops.relu(self.bn1(self.h1(concat(h, y)), training=training))
        h = ops.reshape(h, (-1, self.s_h4, self.s_w4, self.gf_dim * 2))
        h = ops.relu(self.bn2(self.h2(h, y), training=training))
        return ops.sigmoid(self.h3(h, y))


class ConditionalDiscriminator(keras.layers.Layer):
    """(image, y) -> one logit per image: two 5x5 stride-2 convolutions, then two linear layers."""

    def __init__(self, c_dim=1, y_dim=10, df_dim=64, dfc_dim=1024, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        sn, bn = spectral_norm, not spectral_norm
        self.h0 = conv2d(c_dim + y_dim, "d_h0_conv", sn, labels=y_dim)
        self.h1, self.bn1 = conv2d(df_dim + y_dim, "d_h1_conv", sn, labels=y_dim), batch_norm("d_bn1", bn)
        self.h2, self.bn2 = linear(dfc_dim, "d_h2_lin", sn), batch_norm("d_bn2", bn)
        self.h3 = linear(1, "d_h3_lin", sn)

    def call(self, x, y, training=False):
        h = lrelu(self.h0(x, y))
        h = lrelu(self.bn1(self.h1(h, y), training=training))
        h = ops.reshape(h, (ops.shape(h)[0], -1))
        h = lrelu(self.bn2(self.h2(concat(h, y)), training=training))
        return self.h3(concat(h, y))


class FolderGenerator(Generator):
    """(z, class) -> image in [-1, 1], the original's 64x64 branch: linear to (H/16) x (W/16) x gf_dim*8, batch
    norm, ReLU, then 5x5 stride-2 deconvolutions to gf_dim*4, *2, *1 and c_dim channels with batch norm and ReLU
    between, tanh out. Sizes halve rounding up (conv_out_size_same), so any output size works: 28 goes 2 -> 4 ->
    7 -> 14 -> 28. With layers=L < 4 the L last deconvolutions only: linear to (H/2^L) x (W/2^L) x
    gf_dim*2^(L-1) (see unconditional_layers). Without classes (y_dim 0) it is the original's y_dim=None
    branch; with them, conditioning 'concat' joins the one-hot label to z and to every deconvolution's input,
    'projection' gives every batch norm each class's own scale and offset."""

    signed_output = True

    def __init__(self, output_height=64, output_width=64, c_dim=3, gf_dim=64, layers=4, y_dim=0,
                 conditioning="projection", **kwargs):
        super().__init__(output_height, output_width, c_dim, **kwargs)
        sizes = [(output_height, output_width)]
        for _ in range(layers):
            sizes.append(tuple(conv_out_size_same(s) for s in sizes[-1]))
        self.start = (*sizes[layers], gf_dim * 2 ** (layers - 1))
        self.joined = y_dim if conditioning == "concat" else 0
        self.class_norm = bool(y_dim) and conditioning == "projection"
        norm = (lambda name: ClassBatchNorm(y_dim, name=name)) if self.class_norm else batch_norm
        self.h0, self.bn0 = linear(int(np.prod(self.start)), "g_h0_lin"), norm("g_bn0")
        filters = [gf_dim * 2 ** k for k in range(layers - 2, -1, -1)] + [c_dim]
        self.deconvs = [deconv_to(h, w, f, f"g_h{i}", labels=self.joined)
                        for i, ((h, w), f) in enumerate(zip(sizes[layers - 1::-1], filters), 1)]
        self.bns = [norm(f"g_bn{i}") for i in range(1, layers)]

    def normed(self, bn, h, y, training):
        return bn(h, y, training=training) if self.class_norm else bn(h, training=training)

    def call(self, z, y=None, training=False):
        h = self.h0(concat(z, y) if self.joined else z)
        h = ops.relu(self.normed(self.bn0, ops.reshape(h, (-1, *self.start)), y, training))
        for deconv, bn in zip(self.deconvs, self.bns):
            h = ops.relu(self.normed(bn, deconv(h, y), y, training))
        return ops.tanh(self.deconvs[-1](h, y))


class FolderDiscriminator(keras.layers.Layer):
    """image (and class) -> one logit, the original's 64x64 branch: 5x5 stride-2 convolutions to df_dim, *2, *4
    and *8 channels (the first `layers` of them), leaky ReLU, batch norm after all but the first, then linear to
    1. With classes, conditioning 'concat' joins the one-hot label to every layer's input, 'projection' adds
    the inner product of the last convolution's features, summed over the picture, with the class's learnt
    embedding to the logit (as SN-GAN and BigGAN: one weight per channel and class, not per position)."""

    def __init__(self, df_dim=64, spectral_norm=False, layers=4, y_dim=0, conditioning="projection", **kwargs):
        super().__init__(**kwargs)
        self.joined = y_dim if conditioning == "concat" else 0
        self.convs = [conv2d(df_dim * 2 ** i, f"d_h{i}_conv", spectral_norm, labels=self.joined) for i in range(layers)]
        self.bns = [batch_norm(f"d_bn{i}", not spectral_norm) for i in range(1, layers)]
        self.h4 = linear(1, f"d_h{layers}_lin", spectral_norm)
        self.embed = linear(df_dim * 2 ** (layers - 1), "d_embed", spectral_norm,
                            use_bias=False) if y_dim and conditioning == "projection" else None

    def hidden(self, x, y=None, training=False):
        """Every convolution's activations, first to last (features.py's image representation)."""
        h = [lrelu(self.convs[0](x, y))]
        for conv, bn in zip(self.convs[1:], self.bns):
            h.append(lrelu(bn(conv(h[-1], y), training=training)))
        return h

    def call(self, x, y=None, training=False):
        h = self.hidden(x, y, training)[-1]
        flat = ops.reshape(h, (ops.shape(h)[0], -1))
        scores = self.h4(concat(flat, y) if self.joined else flat)
        if self.embed:
            scores = scores + ops.sum(self.embed(y) * ops.sum(h, axis=(1, 2)), axis=1, keepdims=True)
        return scores


class MLPGenerator(Generator):
    """A fully connected G: (z, y) -> hidden layers with ReLU -> H*W*C, tanh for images. CS231N's has
    two hidden layers of 1024 units; the 1-D toy's one of 128 and a linear output (its values are the
    curve's points, not pixels)."""

    def __init__(self, output_height=28, output_width=28, c_dim=1, hidden=(1024, 1024), tanh=True, **kwargs):
        super().__init__(output_height, output_width, c_dim, **kwargs)
        self.signed_output = self.tanh = tanh
        self.hidden = [dense(units, f"g_h{i}_lin") for i, units in enumerate(hidden)]
        self.out = dense(output_height * output_width * c_dim, f"g_h{len(hidden)}_lin")

    def call(self, z, y=None, training=False):
        h = z
        for layer in self.hidden:
            h = ops.relu(layer(concat(h, y)))
        h = self.out(concat(h, y))
        h = ops.tanh(h) if self.tanh else h
        return ops.reshape(h, (-1, self.output_height, self.output_width, self.c_dim))


class MLPDiscriminator(keras.layers.Layer):
    """A fully connected D: (image, y) -> hidden layers with LeakyReLU(leak) -> 1. CS231N's has two of
    256 units and leak 0.01; the 1-D toy's one of 128 and ReLU (leak 0).

    projection > 0 (the number of classes) adds a projection discriminator's class term (Miyato & Koyama
    2018): the last hidden features' inner product with the label's learnt embedding. With the label
    only concatenated, as CS231N's, G drew the class asked for 59 % of the time after an epoch; with it, 91 %
    (three seeds, docs/variants.md)."""

    def __init__(self, spectral_norm=False, hidden=(256, 256), leak=0.01, projection=0, **kwargs):
        super().__init__(**kwargs)
        self.leak = leak
        self.hidden = [dense(units, f"d_h{i}_lin", spectral_norm) for i, units in enumerate(hidden)]
        self.out = dense(1, f"d_h{len(hidden)}_lin", spectral_norm)
        self.embed = linear(hidden[-1], "d_embed", spectral_norm, use_bias=False,
                            kernel_initializer="glorot_uniform") if projection else None

    def call(self, x, y=None, training=False):
        h = ops.reshape(x, (ops.shape(x)[0], -1))
        for layer in self.hidden:
            h = lrelu(layer(concat(h, y)), self.leak)
        scores = self.out(concat(h, y))
        if self.embed:
            scores = scores + ops.sum(self.embed(y) * h, axis=1, keepdims=True)
        return scores


class CS231NGenerator(Generator):
    """CS231N's convolutional (InfoGAN-style) G: FC 1024 -> ReLU -> BN -> FC 128*(H/4)*(W/4) -> ReLU
    -> BN -> 4x4 stride-2 deconv 64 -> ReLU -> BN -> 4x4 stride-2 deconv C -> tanh."""

    signed_output = True
    size_multiple = 4

    def __init__(self, output_height=28, output_width=28, c_dim=1, y_dim=0, **kwargs):
        super().__init__(output_height, output_width, c_dim, **kwargs)
        self.s_h4, self.s_w4 = output_height // 4, output_width // 4
        self.h0, self.bn0 = dense(1024, "g_h0_lin"), batch_norm("g_bn0")
        self.h1, self.bn1 = dense(128 * self.s_h4 * self.s_w4, "g_h1_lin"), batch_norm("g_bn1")
        deconv = dict(kernel_size=4, kernel_initializer="glorot_uniform", labels=y_dim)
        self.h2, self.bn2 = deconv2d(64, "g_h2", **deconv), batch_norm("g_bn2")
        self.h3 = deconv2d(c_dim, "g_h3", **deconv)

    def call(self, z, y=None, training=False):
        h = self.bn0(ops.relu(self.h0(concat(z, y))), training=training)
        h = self.bn1(ops.relu(self.h1(concat(h, y))), training=training)
        h = ops.reshape(h, (-1, self.s_h4, self.s_w4, 128))
        h = self.bn2(ops.relu(self.h2(h, y)), training=training)
        return ops.tanh(self.h3(h, y))


class CS231NDiscriminator(keras.layers.Layer):
    """CS231N's convolutional D, valid padding (28 -> 24 -> 12 -> 8 -> 4): 5x5 conv 32 -> LeakyReLU(0.01)
    -> max-pool 2 -> 5x5 conv 64 -> LeakyReLU -> max-pool 2 -> FC 4*4*64 -> LeakyReLU -> FC 1."""

    def __init__(self, spectral_norm=False, y_dim=0, **kwargs):
        super().__init__(**kwargs)
        conv = dict(kernel_size=5, strides=1, padding="valid", kernel_initializer="glorot_uniform", labels=y_dim)
        self.h0 = conv2d(32, "d_h0_conv", spectral_norm, **conv)
        self.h1 = conv2d(64, "d_h1_conv", spectral_norm, **conv)
        self.pool = layers.MaxPooling2D(2)
        self.h2, self.h3 = dense(4 * 4 * 64, "d_h2_lin", spectral_norm), dense(1, "d_h3_lin", spectral_norm)

    def call(self, x, y=None, training=False):
        h = self.pool(lrelu(self.h0(x, y), 0.01))
        h = self.pool(lrelu(self.h1(h, y), 0.01))
        h = ops.reshape(h, (ops.shape(h)[0], -1))
        h = lrelu(self.h2(concat(h, y)), 0.01)
        return self.h3(concat(h, y))


def folder_conditioning(conditioning, y_dim, height, width):
    """The conditioning (run.CONDITIONINGS) a labelled folder's networks get: the MNIST networks below 32 pixels a
    side, whatever was asked (the folder networks' smallest maps would be 2x2 there); as asked above."""
    return "mnist" if y_dim and min(height, width) < 32 else conditioning


def generator_class(arch, y_dim, conditioning="mnist"):
    if arch == "dcgan":
        return ConditionalGenerator if y_dim and conditioning == "mnist" else FolderGenerator
    return {"mlp": MLPGenerator, "cs231n": CS231NGenerator, "curves": MLPGenerator}[arch]


# The 1-D toy's networks: G 5 noise dims -> 128 -> ReLU -> 15 points; D 15 -> 128 -> ReLU -> 1.
CURVES_G, CURVES_D = dict(hidden=(128,), tanh=False), dict(hidden=(128,), leak=0.0)


def unconditional_layers(height, width, smallest=4, most=5):
    """How many stride-2 layers the unconditional dcgan networks get for this output size: the original
    always has four, which halve its 64x64 to 4x4; here as many as keep the smallest map at least
    4x4 (three at 32x32 or 28x28, five at 128x128), at most five. Its four at 32x32 leave 2x2 maps, and
    on a folder of digits every run collapsed to a few shapes, in PyTorch as here; with three, every
    digit came."""
    layers, size = 0, min(height, width)
    while layers < most and conv_out_size_same(size) >= smallest:
        layers, size = layers + 1, conv_out_size_same(size)
    return max(layers, 1)


def networks(arch, output_height, output_width, c_dim, y_dim, gf_dim, df_dim, gfc_dim, dfc_dim, spectral_norm,
             layers=4, projection=False, conditioning="mnist"):
    """(generator, discriminator) of --arch, conditional when y_dim > 0; only dcgan has the width flags, its
    folder networks the number of stride-2 layers and, with classes, a conditioning (run.CONDITIONINGS:
    'mnist' gives the MNIST branch's networks); projection: mlp's D has the class term."""
    if arch == "dcgan" and y_dim and conditioning == "mnist":
        return (ConditionalGenerator(output_height, output_width, c_dim, y_dim, gf_dim, gfc_dim, name="generator"),
                ConditionalDiscriminator(c_dim, y_dim, df_dim, dfc_dim, spectral_norm, name="discriminator"))
    if arch == "dcgan":
        return (FolderGenerator(output_height, output_width, c_dim, gf_dim, layers, y_dim, conditioning,
                                name="generator"),
                FolderDiscriminator(df_dim, spectral_norm, layers, y_dim, conditioning, name="discriminator"))
    if arch == "curves":
        return (MLPGenerator(output_height, output_width, c_dim, name="generator", **CURVES_G),
                MLPDiscriminator(spectral_norm, name="discriminator", **CURVES_D))
    if arch == "cs231n":
        return (CS231NGenerator(output_height, output_width, c_dim, y_dim, name="generator"),
                CS231NDiscriminator(spectral_norm, y_dim, name="discriminator"))
    return (MLPGenerator(output_height, output_width, c_dim, name="generator"),
            MLPDiscriminator(spectral_norm, projection=y_dim if projection else 0, name="discriminator"))


Z_UNIFORM_RANGES = {"uniform_signed": (-1.0, 1.0), "uniform_unsigned": (0.0, 1.0)}


def draw_z(shape, key, z_dist):
    """z of this shape from a stateless RNG keyed by key (two int64): the same key, the same z."""
    if z_dist == "normal":
        return tf.random.stateless_normal(shape, key)
    low, high = Z_UNIFORM_RANGES[z_dist]
    return tf.random.stateless_uniform(shape, key, low, high)


def z_from_seeds(seeds, z_dim, z_dist):
    """One z per integer seed: a seed gives the same z in Python, on the command line and inside an
    exported SavedModel, whatever else is in the batch."""
    def one(seed):
        return draw_z([z_dim], tf.stack([seed, tf.constant(0, tf.int64)]), z_dist)
    return tf.map_fn(one, tf.cast(seeds, tf.int64), fn_output_signature=tf.float32)


def replica():
    """(replicas in sync, this replica's index): (1, 0) outside tf.distribute."""
    context = tf.distribute.get_replica_context()
    return (context.num_replicas_in_sync, context.replica_id_in_sync_group) if context else (1, 0)


def global_mean(values):
    """This replica's share of the mean over the global batch: summed over replicas (as tf.distribute
    sums gradients, and the training loop the logs) it is the mean over every replica's examples."""
    return tf.reduce_mean(values) / replica()[0]


def adversarial_loss(loss, scores, target, generator=False):
    """Mean loss of D's raw scores against the target 1 (real) or 0 (fake), over the global batch; generator:
    G's loss (target 1).

    gan: sigmoid cross-entropy (the original's; G's loss against 1 is the non-saturating one).
    lsgan: least squares, half the mean squared distance (Mao et al. 2017, CS231N's ls_*_loss).
    hinge: D's max(0, 1 - score) for real and max(0, 1 + score) for fake, G's -score (Lim & Ye 2017, SN-GAN's)."""
    scores = tf.cast(scores, tf.float32)  # 16-bit scores would lose the loss's small differences
    if loss == "hinge":
        return global_mean(-scores) if generator else global_mean(tf.nn.relu(1.0 - (2.0 * target - 1.0) * scores))
    if loss == "lsgan":
        return 0.5 * global_mean(tf.square(scores - target))
    labels = tf.fill(tf.shape(scores), target)
    return global_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=scores))


class WeightAverage(tf.Module):
    """Exponential moving average of the generator's weights (and batch-norm statistics).

    Sampling from averaged weights smooths out the step-to-step jitter of GAN training. The decay
    ramps up as min(decay, (1 + t) / (10 + t)), so early averages do not cling to the initial weights.
    """

    def __init__(self, generator, decay):
        super().__init__()
        self.decay = decay
        self.sources = list(generator.trainable_variables) + list(generator.non_trainable_variables)
        self.trainable = [tf.Variable(w.value, trainable=False) for w in generator.trainable_variables]
        self.non_trainable = [tf.Variable(w.value, trainable=False) for w in generator.non_trainable_variables]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False)

    def update(self):
        t = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        # average - (1 - decay)(average - source) = decay * average + (1 - decay) * source, in two passes over
        # the weights where the plain expression takes four (3 % of a training step on a 2-core CPU).
        for average, source in zip(self.trainable + self.non_trainable, self.sources):
            tf.raw_ops.ResourceApplyGradientDescent(var=handle(average), alpha=1.0 - decay, delta=average - source.value)
        self.updates.assign_add(1)


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable's update in TensorFlow's one fused kernel (ResourceApplyAdam, which
    TF1's AdamOptimizer ran for the original) instead of about ten elementwise ops: the same
    arithmetic in one pass over the weights and moments. On a 2-core CPU the unfused updates were a
    fifth of the training step, and this made the step about 11 % faster."""

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=handle(variable), m=handle(self._momentums[index]), v=handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


def handle(variable):
    """The resource handle of a Keras or tf.Variable (under tf.distribute: this device's copy)."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


class DCGAN(keras.Model):
    """Generator and discriminator trained together: per batch, one D update, then g_steps G updates.

    The training step counter is the discriminator optimiser's iteration count (D is updated
    exactly once per step), so it is saved and restored with the optimiser state. The step's z is
    drawn from (seed, step): a resumed run draws the same z, whatever the number of replicas.

    Under tf.distribute each replica runs train_step on its share of the global batch: losses are
    averaged over the global batch (replicas' gradients are summed), and the logs it returns are
    this replica's shares, to be summed over replicas. Batch-norm statistics are per replica unless
    sync_batch_norm.

    precision is a Keras dtype policy (float32, mixed_bfloat16, mixed_float16): the networks compute in
    it; their weights, the losses and the samples stay float32. mixed_float16 scales the losses
    (LossScaleOptimizer).
    """

    def __init__(self, y_dim=10, z_dim=100, output_height=28, output_width=28, c_dim=1, gf_dim=64,
                 df_dim=64, gfc_dim=1024, dfc_dim=1024, z_dist="uniform_signed", g_steps=2, seed=0,
                 ema_decay=0.0, arch="dcgan", loss="gan", spectral_norm=False, sync_batch_norm=False,
                 precision="float32", layers=4, projection=False, unbiased_moving_variance=False, augment=False,
                 conditioning="mnist", **kwargs):
        super().__init__(**kwargs)
        self.y_dim, self.z_dim, self.z_dist, self.g_steps, self.loss = y_dim, z_dim, z_dist, g_steps, loss
        self.seed, self.precision, self.augment = seed, precision, augment
        with dtype_policy(precision):
            self.generator, self.discriminator = networks(arch, output_height, output_width, c_dim, y_dim, gf_dim,
                                                          df_dim, gfc_dim, dfc_dim, spectral_norm, layers,
                                                          projection, conditioning)
        for layer in self._flatten_layers():  # switches read at call time, the same weights either way
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = sync_batch_norm
                layer.unbiased_moving_variance = unbiased_moving_variance
        y = self.one_hot(ops.zeros((1,), "int32"))
        self.generator(ops.zeros((1, z_dim)), y)
        self.discriminator(ops.zeros((1, output_height, output_width, c_dim)), y)
        self.spectral_layers = [l for l in self.discriminator._flatten_layers() if isinstance(l, SpectralNorm)]
        self.average = WeightAverage(self.generator, ema_decay) if ema_decay else None
        self.sample_average = True  # False: sample with the raw weights even when there is an average

    def step_bytes_per_image(self):
        """About the memory a training step holds per image of its batch: the bytes of every tensor G's
        forward pass computes for one image. (The step also keeps D's smaller passes for its gradients:
        for the default MNIST model this gives 0.97 MB an image, and a training process's peak memory
        grew by 1.05 MB an image from batch 2048 to 4096.)"""
        y = tf.TensorSpec([None, self.y_dim]) if self.y_dim else None
        forward = tf.function(lambda z, y: self.generator(z, y, training=True))
        graph = forward.get_concrete_function(tf.TensorSpec([None, self.z_dim]), y).graph
        batched = [t for op in graph.get_operations() for t in op.outputs
                   if t.dtype.is_floating and t.shape.rank and t.shape[0] is None and t.shape[1:].is_fully_defined()]
        return sum(t.shape[1:].num_elements() * t.dtype.size for t in batched)

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer  # what checkpoints hold
        # float16 gradients underflow: the updates go through a LossScaleOptimizer, which scales the
        # loss up and the gradients back down, halves its scale and skips the update when they
        # overflow, all in the graph. Its scale is not checkpointed: a resumed run re-adapts it.
        scaled = keras.optimizers.LossScaleOptimizer if self.precision == "mixed_float16" else None
        self.d_updater = scaled(d_optimizer) if scaled else d_optimizer
        self.g_updater = scaled(g_optimizer) if scaled else g_optimizer
        # Built now so that a checkpoint restores their slots instead of silently skipping them.
        self.d_updater.build(self.discriminator.trainable_variables)
        self.g_updater.build(self.generator.trainable_variables)

    @property
    def step(self):
        return self.d_optimizer.iterations

    def trained_steps(self):
        return int(self.step.numpy())

    def one_hot(self, label):
        """The label as the networks take it: one-hot, or None for an unconditional model."""
        return tf.one_hot(label, self.y_dim) if self.y_dim else None

    def sample_z(self, n, key=-1):
        """n z vectors drawn from (seed, key); training step t uses key t, other uses the default."""
        return draw_z(tf.stack([n, self.z_dim]), tf.stack([tf.cast(self.seed, tf.int64), tf.cast(key, tf.int64)]),
                      self.z_dist)

    def step_z(self, n):
        """This replica's n z of the current step: its slice of the global batch's."""
        replicas, index = replica()
        z = self.sample_z(n * replicas, ops.convert_to_tensor(self.step))
        return z[index * n:(index + 1) * n]

    def sampling_weights(self):
        """(trainable, non-trainable) generator weights that samples are drawn with: the averaged ones
        when there is an average and sample_average is on."""
        if self.average and self.sample_average:
            return self.average.trainable, self.average.non_trainable
        return self.generator.trainable_variables, self.generator.non_trainable_variables

    def sample(self, z, label=None, weights=None):
        """Images in [0, 1] for z [N, z_dim] and integer labels [N] (None when unconditional), batch-norm
        in inference mode, drawn with weights (trainable, non-trainable), by default sampling_weights()."""
        trainable, non_trainable = weights or self.sampling_weights()
        images, _ = self.generator.stateless_call(trainable, non_trainable, z, self.one_hot(label),
                                                  training=False)
        return self.generator.to_unit(tf.cast(images, tf.float32))

    def call(self, inputs, training=False):
        z, y = inputs
        return self.generator(z, y, training=training)

    def train_step(self, data):
        x, y = data if self.y_dim else (data, None)  # (images, one-hot labels), or images alone
        x = self.generator.from_unit(x)
        z = self.step_z(tf.shape(x)[0])
        with tf.GradientTape() as g_tape:
            fake = self.generator(z, y, training=True)
            with g_tape.stop_recording():
                logs = self.update_discriminator(x, tf.stop_gradient(fake), y)
            # The first G update reuses the fake batch D was just trained on: G has not changed
            # since, so this saves one generator forward pass per step over the original.
            g_loss = self.generator_loss(fake, y, 2)
        self.apply_gradients(self.g_updater, g_tape, g_loss, self.generator)
        for i in range(self.g_steps - 1):
            with tf.GradientTape() as g_tape:
                g_loss = self.generator_loss(self.generator(z, y, training=True), y, 3 + i)
            self.apply_gradients(self.g_updater, g_tape, g_loss, self.generator)
        if self.average:
            self.average.update()
        logs["g_loss"] = g_loss
        return logs

    def update_discriminator(self, x, fake, y):
        for layer in self.spectral_layers:  # one power iteration per D update, before its forward passes
            layer.power_iteration()
        with tf.GradientTape() as tape:
            real_scores = self.discriminator(self.d_view(x, 0), y, training=True)
            fake_scores = self.discriminator(self.d_view(fake, 1), y, training=True)
            d_loss_real = adversarial_loss(self.loss, real_scores, 1.0)
            d_loss_fake = adversarial_loss(self.loss, fake_scores, 0.0)
            d_loss = d_loss_real + d_loss_fake
        step = self.step + 1
        self.apply_gradients(self.d_updater, tape, d_loss, self.discriminator)
        if self.d_updater is not self.d_optimizer:  # a skipped (overflowed) update is a step all the same
            self.step.assign(step)
        # D(x) and D(G(z)) as logged: probabilities for gan, the raw scores for lsgan (targets 1 and 0) and hinge.
        shown = tf.sigmoid if self.loss == "gan" else tf.identity
        real_scores, fake_scores = tf.cast(real_scores, tf.float32), tf.cast(fake_scores, tf.float32)
        return {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
                "d_real": global_mean(shown(real_scores)), "d_fake": global_mean(shown(fake_scores))}

    def d_view(self, images, salt):
        """What D sees of a batch: with augment, DiffAugment's transforms of it (augment.py), drawn anew
        for each step and salt (which of the step's batches it is)."""
        if not self.augment:
            return images
        return diff_augment(images, tf.stack([tf.cast(self.seed, tf.int64), self.step * 16 + salt]))

    def generator_loss(self, fake, y, salt):
        # Stateless: D's batch-norm statistics move with D's own updates only, so a G update changes
        # nothing of D (its statistics are never used: D always runs in training mode).
        d = self.discriminator
        scores, _ = d.stateless_call(d.trainable_variables, d.non_trainable_variables, self.d_view(fake, salt), y,
                                     training=True)
        return adversarial_loss(self.loss, scores, 1.0, generator=True)

    @staticmethod
    def apply_gradients(optimizer, tape, loss, network):
        with tape:  # recorded, so that the gradient is of the loss as the optimizer scales it
            loss = optimizer.scale_loss(loss)
        variables = network.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


def build_dcgan(config, strategy=None, precision="float32", learning_rate=0.0002, beta1=0.5, g_steps=2,
                sync_batch_norm=False, raw_weights=False, d_learning_rate=None, augment=False):
    """A run's DCGAN, compiled with its optimisers, its variables placed by strategy (default: one device).
    config: the run's settings (run.py: sizes, widths, arch, loss, seed, ...); the rest are how it trains
    and samples now, free to change on every resume."""
    keras.utils.set_random_seed(config["seed"])
    with (strategy or tf.distribute.get_strategy()).scope():
        dcgan = DCGAN(y_dim=config["y_dim"], z_dim=config["z_dim"], output_height=config["output_height"],
                      output_width=config["output_width"], c_dim=config["c_dim"], gf_dim=config["gf_dim"],
                      df_dim=config["df_dim"], gfc_dim=config["gfc_dim"], dfc_dim=config["dfc_dim"],
                      z_dist=config["z_dist"], g_steps=g_steps, seed=config["seed"],
                      ema_decay=config["ema_decay"], arch=config["arch"], loss=config["loss"],
                      spectral_norm=config["spectral_norm"], sync_batch_norm=sync_batch_norm, precision=precision,
                      layers=config.get("layers") or 4, projection=config.get("projection", False),
                      unbiased_moving_variance=config.get("moving_variance") == "unbiased", augment=augment,
                      conditioning=config.get("conditioning", "mnist"))
        # epsilon 1e-8 is TF1's AdamOptimizer default, which the original used (Keras' is 1e-7).
        d_rate = learning_rate if d_learning_rate is None else d_learning_rate  # a two time-scale rule when they differ
        dcgan.compile(d_optimizer=FusedAdam(d_rate, beta_1=beta1, epsilon=1e-8),
                      g_optimizer=FusedAdam(learning_rate, beta_1=beta1, epsilon=1e-8))
    dcgan.sample_average = not raw_weights
    return dcgan
