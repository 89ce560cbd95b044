"""carpedm20's DCGAN-tensorflow as the TensorFlow 1 graph it builds, for tests/test_original.py.

Written from the original's model.py and ops.py (github.com/carpedm20/DCGAN-tensorflow): the same variable
scopes and names, initialisers, layer order and concatenation order, with tf.compat.v1 in place of TF1.
Its batch norm is tf.contrib.layers.batch_norm(decay=0.9, epsilon=1e-5, scale=True,
updates_collections=None) written out: beta, gamma, moving_mean and moving_variance under the layer's
scope; in training mode the batch's mean and (biased) variance normalise and the moving statistics
move in place, in inference mode the moving ones normalise. From TF 1.4 on contrib's batch norm ran
TF's fused kernel, whose moving variance moves towards the batch's unbiased variance (n / (n - 1) times
the biased one, n values per channel): unbiased=True (the default); False, towards the biased one.
"""
import math

import tensorflow as tf

v1 = tf.compat.v1


def batch_norm(x, name, train, unbiased):
    with v1.variable_scope(name):
        channels = x.shape[-1]
        beta = v1.get_variable("beta", [channels], initializer=v1.zeros_initializer())
        gamma = v1.get_variable("gamma", [channels], initializer=v1.ones_initializer())
        moving_mean = v1.get_variable("moving_mean", [channels], initializer=v1.zeros_initializer(), trainable=False)
        moving_variance = v1.get_variable("moving_variance", [channels], initializer=v1.ones_initializer(),
                                          trainable=False)
        if not train:
            return tf.nn.batch_normalization(x, moving_mean, moving_variance, beta, gamma, 1e-5)
        mean, variance = tf.nn.moments(x, list(range(len(x.shape) - 1)))
        n = math.prod(x.shape[:-1])
        moved = variance * n / (n - 1) if unbiased else variance
        updates = [v1.assign_sub(moving_mean, (moving_mean - mean) * 0.1),
                   v1.assign_sub(moving_variance, (moving_variance - moved) * 0.1)]
        with tf.control_dependencies(updates):
            return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5)


def conv_cond_concat(x, y):
    return tf.concat([x, y * tf.ones([x.shape[0], x.shape[1], x.shape[2], y.shape[3]])], 3)


def conv2d(x, output_dim, name):
    with v1.variable_scope(name):
        w = v1.get_variable("w", [5, 5, x.shape[-1], output_dim], initializer=v1.truncated_normal_initializer(stddev=0.02))
        conv = tf.nn.conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME")
        biases = v1.get_variable("biases", [output_dim], initializer=v1.constant_initializer(0.0))
        return tf.reshape(tf.nn.bias_add(conv, biases), conv.shape)


def deconv2d(x, output_shape, name):
    with v1.variable_scope(name):
        w = v1.get_variable("w", [5, 5, output_shape[-1], x.shape[-1]], initializer=v1.random_normal_initializer(stddev=0.02))
        deconv = tf.nn.conv2d_transpose(x, w, output_shape=output_shape, strides=[1, 2, 2, 1])
        biases = v1.get_variable("biases", [output_shape[-1]], initializer=v1.constant_initializer(0.0))
        return tf.reshape(tf.nn.bias_add(deconv, biases), deconv.shape)


def lrelu(x, leak=0.2):
    return tf.maximum(x, leak * x)


def linear(x, output_size, scope):
    with v1.variable_scope(scope):
        matrix = v1.get_variable("Matrix", [x.shape[1], output_size], tf.float32,
                                 v1.random_normal_initializer(stddev=0.02))
        bias = v1.get_variable("bias", [output_size], initializer=v1.constant_initializer(0.0))
        return tf.matmul(x, matrix) + bias


def conv_out_size_same(size, stride):
    return int(math.ceil(float(size) / float(stride)))


class Original:
    """The original DCGAN's two networks for one batch size; y_dim 0 is its y_dim=None branch."""

    def __init__(self, batch_size, output_height, output_width, c_dim, y_dim, z_dim, gf_dim, df_dim, gfc_dim,
                 dfc_dim, unbiased=True):
        self.batch_size, self.output_height, self.output_width, self.c_dim = batch_size, output_height, output_width, c_dim
        self.y_dim, self.z_dim, self.gf_dim, self.df_dim = y_dim, z_dim, gf_dim, df_dim
        self.gfc_dim, self.dfc_dim, self.unbiased = gfc_dim, dfc_dim, unbiased

    def batch_norm(self, x, name, train):
        return batch_norm(x, name, train, self.unbiased)

    def discriminator(self, image, y=None, reuse=False, train=True):
        with v1.variable_scope("discriminator", reuse=reuse):
            if not self.y_dim:
                h0 = lrelu(conv2d(image, self.df_dim, "d_h0_conv"))
                h1 = lrelu(self.batch_norm(conv2d(h0, self.df_dim * 2, "d_h1_conv"), "d_bn1", train))
                h2 = lrelu(self.batch_norm(conv2d(h1, self.df_dim * 4, "d_h2_conv"), "d_bn2", train))
                h3 = lrelu(self.batch_norm(conv2d(h2, self.df_dim * 8, "d_h3_conv"), "d_bn3", train))
                return linear(tf.reshape(h3, [self.batch_size, -1]), 1, "d_h4_lin")
            yb = tf.reshape(y, [self.batch_size, 1, 1, self.y_dim])
            x = conv_cond_concat(image, yb)
            h0 = lrelu(conv2d(x, self.c_dim + self.y_dim, "d_h0_conv"))
            h0 = conv_cond_concat(h0, yb)
            h1 = lrelu(self.batch_norm(conv2d(h0, self.df_dim + self.y_dim, "d_h1_conv"), "d_bn1", train))
            h1 = tf.concat([tf.reshape(h1, [self.batch_size, -1]), y], 1)
            h2 = lrelu(self.batch_norm(linear(h1, self.dfc_dim, "d_h2_lin"), "d_bn2", train))
            h2 = tf.concat([h2, y], 1)
            return linear(h2, 1, "d_h3_lin")

    def generator(self, z, y=None, reuse=False, train=True):
        """The original's generator (train=True) or sampler (train=False)."""
        with v1.variable_scope("generator", reuse=reuse):
            s_h, s_w, n = self.output_height, self.output_width, self.batch_size
            if not self.y_dim:
                s_h2, s_w2 = conv_out_size_same(s_h, 2), conv_out_size_same(s_w, 2)
                s_h4, s_w4 = conv_out_size_same(s_h2, 2), conv_out_size_same(s_w2, 2)
                s_h8, s_w8 = conv_out_size_same(s_h4, 2), conv_out_size_same(s_w4, 2)
                s_h16, s_w16 = conv_out_size_same(s_h8, 2), conv_out_size_same(s_w8, 2)
                h0 = tf.reshape(linear(z, self.gf_dim * 8 * s_h16 * s_w16, "g_h0_lin"), [-1, s_h16, s_w16, self.gf_dim * 8])
                h0 = tf.nn.relu(self.batch_norm(h0, "g_bn0", train))
                h1 = tf.nn.relu(self.batch_norm(deconv2d(h0, [n, s_h8, s_w8, self.gf_dim * 4], "g_h1"), "g_bn1", train))
                h2 = tf.nn.relu(self.batch_norm(deconv2d(h1, [n, s_h4, s_w4, self.gf_dim * 2], "g_h2"), "g_bn2", train))
                h3 = tf.nn.relu(self.batch_norm(deconv2d(h2, [n, s_h2, s_w2, self.gf_dim], "g_h3"), "g_bn3", train))
                return tf.nn.tanh(deconv2d(h3, [n, s_h, s_w, self.c_dim], "g_h4"))
            s_h2, s_h4 = int(s_h / 2), int(s_h / 4)
            s_w2, s_w4 = int(s_w / 2), int(s_w / 4)
            yb = tf.reshape(y, [n, 1, 1, self.y_dim])
            z = tf.concat([z, y], 1)
            h0 = tf.nn.relu(self.batch_norm(linear(z, self.gfc_dim, "g_h0_lin"), "g_bn0", train))
            h0 = tf.concat([h0, y], 1)
            h1 = tf.nn.relu(self.batch_norm(linear(h0, self.gf_dim * 2 * s_h4 * s_w4, "g_h1_lin"), "g_bn1", train))
            h1 = conv_cond_concat(tf.reshape(h1, [n, s_h4, s_w4, self.gf_dim * 2]), yb)
            h2 = tf.nn.relu(self.batch_norm(deconv2d(h1, [n, s_h2, s_w2, self.gf_dim * 2], "g_h2"), "g_bn2", train))
            h2 = conv_cond_concat(h2, yb)
            return tf.nn.sigmoid(deconv2d(h2, [n, s_h, s_w, self.c_dim], "g_h3"))
