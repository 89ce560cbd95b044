import numpy as np
import pytest

import ops


def test_conv2d_halves_and_deconv2d_doubles_with_5x5_kernels():
    x = np.zeros((2, 28, 28, 3), np.float32)
    conv, deconv = ops.conv2d(7, "c"), ops.deconv2d(5, "d")
    assert conv(x).shape == (2, 14, 14, 7)
    assert deconv(x).shape == (2, 56, 56, 5)
    assert conv.kernel.shape == (5, 5, 3, 7)
    assert deconv.kernel.shape == (5, 5, 5, 3)


@pytest.mark.parametrize("make, truncated", [(lambda: ops.conv2d(256, "c"), True),
                                             (lambda: ops.deconv2d(256, "d"), False)])
def test_conv_initialisers_match_the_original(make, truncated):
    layer = make()
    layer.build((None, 8, 8, 256))
    w = layer.kernel.numpy()
    assert np.std(w) == pytest.approx(0.02 * (0.88 if truncated else 1.0), rel=0.05)
    assert (np.abs(w).max() <= 0.04 + 1e-6) == truncated
    assert np.all(layer.bias.numpy() == 0)


def test_linear_is_normal_0_02_with_zero_bias():
    layer = ops.linear(512, "l")
    layer.build((None, 512))
    assert np.std(layer.kernel.numpy()) == pytest.approx(0.02, rel=0.05)
    assert np.all(layer.bias.numpy() == 0)


def test_batch_norm_settings():
    bn = ops.batch_norm("bn")
    assert (bn.momentum, bn.epsilon, bn.scale, bn.center) == (0.9, 1e-5, True, True)


def test_lrelu_leaks_negative_values():
    np.testing.assert_allclose(np.asarray(ops.lrelu(np.array([-1.0, 0.0, 2.0]))), [-0.2, 0.0, 2.0])


def test_conv_cond_concat_tiles_label_over_every_pixel():
    x = np.random.rand(2, 3, 4, 5).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[[3, 7]]
    out = np.asarray(ops.conv_cond_concat(x, y))
    assert out.shape == (2, 3, 4, 15)
    np.testing.assert_array_equal(out[..., :5], x)
    for i in range(2):
        np.testing.assert_array_equal(out[i, :, :, 5:], np.broadcast_to(y[i], (3, 4, 10)))
