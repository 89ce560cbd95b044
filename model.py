"""The DCGAN: class-conditional generator and discriminator and the training step.

Layer for layer the conditional (MNIST) branch of carpedm20's DCGAN-tensorflow.
"""
import keras
import tensorflow as tf
from keras import ops

from ops import batch_norm, concat, conv2d, conv_cond_concat, deconv2d, linear, lrelu

# Grappler's remapper fails on the discriminator's lrelu gradient (it logs an error and falls back);
# without it the training step also runs about 5% faster on CPU.
tf.config.optimizer.set_experimental_options({"remapping": False})


class ConditionalGenerator(keras.layers.Layer):
    """(z, y) -> image in [0, 1]: two linear layers, then two 5x5 stride-2 deconvolutions."""

    def __init__(self, output_height=28, output_width=28, c_dim=1, gf_dim=64, gfc_dim=1024, **kwargs):
        super().__init__(**kwargs)
        self.s_h4, self.s_w4 = output_height // 4, output_width // 4
        self.gf_dim = gf_dim
        self.h0, self.bn0 = linear(gfc_dim, "g_h0_lin"), batch_norm("g_bn0")
        self.h1, self.bn1 = linear(gf_dim * 2 * self.s_h4 * self.s_w4, "g_h1_lin"), batch_norm("g_bn1")
        self.h2, self.bn2 = deconv2d(gf_dim * 2, "g_h2"), batch_norm("g_bn2")
        self.h3 = deconv2d(c_dim, "g_h3")

    def call(self, z, y, training=False):
        h = ops.relu(self.bn0(self.h0(concat(z, y)), training=training))
        h = ops.relu(self.bn1(self.h1(concat(h, y)), training=training))
        h = ops.reshape(h, (-1, self.s_h4, self.s_w4, self.gf_dim * 2))
        h = ops.relu(self.bn2(self.h2(conv_cond_concat(h, y)), training=training))
        return ops.sigmoid(self.h3(conv_cond_concat(h, y)))


class ConditionalDiscriminator(keras.layers.Layer):
    """(image, y) -> one logit per image: two 5x5 stride-2 convolutions, then two linear layers."""

    def __init__(self, c_dim=1, y_dim=10, df_dim=64, dfc_dim=1024, **kwargs):
        super().__init__(**kwargs)
        self.h0 = conv2d(c_dim + y_dim, "d_h0_conv")
        self.h1, self.bn1 = conv2d(df_dim + y_dim, "d_h1_conv"), batch_norm("d_bn1")
        self.h2, self.bn2 = linear(dfc_dim, "d_h2_lin"), batch_norm("d_bn2")
        self.h3 = linear(1, "d_h3_lin")

    def call(self, x, y, training=False):
        h = lrelu(self.h0(conv_cond_concat(x, y)))
        h = lrelu(self.bn1(self.h1(conv_cond_concat(h, y)), training=training))
        h = ops.reshape(h, (ops.shape(h)[0], -1))
        h = lrelu(self.bn2(self.h2(concat(h, y)), training=training))
        return self.h3(concat(h, y))


def bce_with_logits(logits, target):
    labels = tf.fill(tf.shape(logits), target)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


class DCGAN(keras.Model):
    """Generator and discriminator trained together: per batch, one D update, then g_steps G updates.

    The training step counter is the discriminator optimiser's iteration count (D is updated
    exactly once per step), so it is saved and restored with the optimiser state.
    """

    def __init__(self, y_dim=10, z_dim=100, output_height=28, output_width=28, c_dim=1, gf_dim=64,
                 df_dim=64, gfc_dim=1024, dfc_dim=1024, z_dist="uniform_signed", g_steps=2, seed=0,
                 **kwargs):
        super().__init__(**kwargs)
        self.y_dim, self.z_dim, self.z_dist, self.g_steps = y_dim, z_dim, z_dist, g_steps
        self.generator = ConditionalGenerator(output_height, output_width, c_dim, gf_dim, gfc_dim,
                                              name="generator")
        self.discriminator = ConditionalDiscriminator(c_dim, y_dim, df_dim, dfc_dim, name="discriminator")
        self.noise = tf.random.Generator.from_seed(seed)
        self.generator(ops.zeros((1, z_dim)), ops.zeros((1, y_dim)))
        self.discriminator(ops.zeros((1, output_height, output_width, c_dim)), ops.zeros((1, y_dim)))

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        # Built now so that a checkpoint restores their slots instead of silently skipping them.
        d_optimizer.build(self.discriminator.trainable_variables)
        g_optimizer.build(self.generator.trainable_variables)

    @property
    def step(self):
        return self.d_optimizer.iterations

    def sample_z(self, n):
        shape = tf.stack([n, self.z_dim])
        if self.z_dist == "uniform_signed":
            return self.noise.uniform(shape, -1.0, 1.0)
        if self.z_dist == "uniform_unsigned":
            return self.noise.uniform(shape, 0.0, 1.0)
        return self.noise.normal(shape)

    def call(self, inputs, training=False):
        z, y = inputs
        return self.generator(z, y, training=training)

    def train_step(self, data):
        x, y = data
        z = self.sample_z(tf.shape(x)[0])
        with tf.GradientTape() as g_tape:
            fake = self.generator(z, y, training=True)
            with g_tape.stop_recording():
                logs = self.update_discriminator(x, tf.stop_gradient(fake), y)
            # The first G update reuses the fake batch D was just trained on: G has not changed
            # since, so this saves one generator forward pass per step over the original.
            g_loss = self.generator_loss(fake, y)
        self.apply_gradients(self.g_optimizer, g_tape, g_loss, self.generator)
        for _ in range(self.g_steps - 1):
            with tf.GradientTape() as g_tape:
                g_loss = self.generator_loss(self.generator(z, y, training=True), y)
            self.apply_gradients(self.g_optimizer, g_tape, g_loss, self.generator)
        logs["g_loss"] = g_loss
        return logs

    def update_discriminator(self, x, fake, y):
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(x, y, training=True)
            fake_logits = self.discriminator(fake, y, training=True)
            d_loss_real = bce_with_logits(real_logits, 1.0)
            d_loss_fake = bce_with_logits(fake_logits, 0.0)
            d_loss = d_loss_real + d_loss_fake
        self.apply_gradients(self.d_optimizer, tape, d_loss, self.discriminator)
        return {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
                "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
                "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}

    def generator_loss(self, fake, y):
        return bce_with_logits(self.discriminator(fake, y, training=True), 1.0)

    @staticmethod
    def apply_gradients(optimizer, tape, loss, network):
        variables = network.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


class ServingModule(tf.Module):
    """What --export writes: the generator behind signatures with named inputs and any batch size."""

    def __init__(self, generator, z_dim, y_dim):
        super().__init__()
        self.generator, self.z_dim, self.y_dim = generator, z_dim, y_dim
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, z_dim], tf.float32, name="z"),
            tf.TensorSpec([None], tf.int32, name="label")])

    def _serve(self, z, label):
        checks = [
            tf.debugging.assert_equal(tf.shape(z)[0], tf.shape(label)[0],
                                      message="z and label must have the same batch size"),
            tf.debugging.assert_non_negative(label, message=f"label must be in 0..{self.y_dim - 1}"),
            tf.debugging.assert_less(label, self.y_dim, message=f"label must be in 0..{self.y_dim - 1}"),
        ]
        with tf.control_dependencies(checks):
            y = tf.one_hot(label, self.y_dim)
        return {"images": self.generator(z, y, training=False)}


def export_savedmodel(dcgan, path):
    """Writes a SavedModel at path (TF Serving's <base>/<version> layout), published only when complete."""
    module = ServingModule(dcgan.generator, dcgan.z_dim, dcgan.y_dim)
    tmp = path + ".tmp"
    if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
    tf.io.gfile.rename(tmp, path)
    return path
