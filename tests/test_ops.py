import numpy as np
import pytest
import tensorflow as tf

import ops
from conftest import skip_if_it_crashes_here


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


def paired_deconvs(kernel_size, output_padding, input_shape, seed=0):
    """The same deconvolution with and without phases, on the same random kernel and bias."""
    rng = np.random.default_rng(seed)
    pair = [ops.deconv2d(4, f"d{p}", phases=p, kernel_size=kernel_size, output_padding=output_padding)
            for p in (False, True)]
    for layer in pair:
        layer.build(input_shape)
    kernel, bias = rng.normal(size=pair[0].kernel.shape), rng.normal(size=pair[0].bias.shape)
    for layer in pair:
        layer.kernel.assign(kernel.astype(np.float32))
        layer.bias.assign(bias.astype(np.float32))
    return pair


# The generators' deconvolutions: 5x5 to an even size (MNIST), to an odd size (the 64x64 model drawing
# 28x28), from 1 pixel, and CS231N's 4x4; a non-square input checks the axes are not swapped.
@pytest.mark.parametrize("kernel_size, input_size, output_padding",
                         [(5, 7, None), (5, 4, 0), (5, 2, 1), (5, 1, 0), (4, 7, None)])
def test_deconv2d_in_phases_equals_the_transposed_convolution_forward_and_backward(kernel_size, input_size,
                                                                                    output_padding):
    shape = (3, input_size, input_size + 1, 6)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    plain, phased = paired_deconvs(kernel_size, output_padding, shape)
    assert plain.phase_layout(shape) is None and phased.phase_layout(shape) is not None
    expected, got = output_and_gradients(plain, x), output_and_gradients(phased, x)
    assert got[0].shape == expected[0].shape
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-4)


def output_and_gradients(layer, x, *labels):
    """layer(x, *labels), and the gradients of a fixed random weighting of it to x, the kernel and the bias."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, *labels)
        loss = tf.reduce_sum(outputs * np.random.default_rng(2).normal(size=outputs.shape).astype(np.float32))
    return [outputs, *tape.gradient(loss, [x, layer.kernel, layer.bias])]


def with_label_maps(x, y):
    """What the original's conv_cond_concat gave a convolution: the one-hot label after every pixel's channels."""
    return np.concatenate([x, np.broadcast_to(y[:, None, None, :], (*x.shape[:3], y.shape[1]))], axis=-1)


# The conditional networks' layers: D's 5x5 stride-2 convolutions (with spectral norm too; a non-square
# input checks the axes), G's deconvolutions (in phases too, to an even size), CS231N's valid stride-1
# convolution and 4x4 deconvolution.
@pytest.mark.parametrize("make, shape", [
    (lambda labels: ops.conv2d(11, "c", labels=labels), (3, 28, 28, 1)),
    (lambda labels: ops.conv2d(74, "c", spectral_norm=True, labels=labels), (3, 14, 15, 11)),
    (lambda labels: ops.deconv2d(8, "d", labels=labels), (3, 7, 8, 16)),
    (lambda labels: ops.deconv2d(8, "d", phases=True, labels=labels, output_padding=1), (3, 7, 7, 16)),
    (lambda labels: ops.conv2d(6, "c", labels=labels, strides=1, padding="valid"), (3, 12, 12, 4)),
    (lambda labels: ops.deconv2d(6, "d", labels=labels, kernel_size=4), (3, 7, 7, 5))],
    ids=["conv", "spectral-norm-conv", "deconv", "deconv-in-phases", "valid-conv", "4x4-deconv"])
def test_a_layer_given_the_labels_equals_it_on_the_label_maps_forward_and_backward(make, shape):
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[[3, 0, 9]]
    labelled, on_maps = make(10), make(0)
    labelled.build(shape)
    on_maps.build((*shape[:3], shape[3] + 10))
    assert labelled.kernel.shape == on_maps.kernel.shape  # the same checkpoints
    on_maps.set_weights([rng.normal(scale=0.1, size=w.shape).astype(np.float32) for w in on_maps.get_weights()])
    labelled.set_weights(on_maps.get_weights())
    got, expected = output_and_gradients(labelled, x, y), output_and_gradients(on_maps, with_label_maps(x, y))
    expected[1] = expected[1][..., :shape[3]]  # the image's channels: the labels' have no gradient to take
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


def test_deconv2d_computes_in_phases_only_in_the_dtypes_asked_and_gives_the_float32_result_to_bfloat16_rounding(
        monkeypatch):
    skip_if_it_crashes_here("mixed_bfloat16")
    shape = (2, 7, 7, 6)
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    plain = paired_deconvs(5, None, shape)[0]
    with ops.dtype_policy("mixed_bfloat16"):
        bfloat16 = ops.deconv2d(4, "bf")
    bfloat16.build(shape)
    bfloat16.set_weights(plain.get_weights())
    assert bfloat16.phase_layout(shape) is None  # by default no dtype computes in phases (measured slower)
    monkeypatch.setattr(ops, "PHASE_DTYPES", {"bfloat16"})
    assert plain.phase_layout(shape) is None and ops.deconv2d(4, "f").phase_layout(shape) is None
    assert bfloat16.phase_layout(shape) is not None
    expected, got = plain(x).numpy(), bfloat16(x)
    assert got.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float32), expected, atol=0.05 * np.abs(expected).max())


def test_deconv2d_in_phases_pads_apart_so_that_its_gradients_can_stay_on_onednn():
    # A convolution given its padding explicitly has gradients oneDNN does not take: in bfloat16 the
    # MNIST step ran 14x slower on TF's own kernels.
    layer = paired_deconvs(5, 1, (2, 7, 7, 6))[1]
    x = tf.zeros((2, 7, 7, 6))

    def loss():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x))
        return tape.gradient(y, [x, layer.kernel])
    graph = tf.function(loss).get_concrete_function().graph
    convolutions = [op for op in graph.get_operations() if op.type.startswith("Conv2D")]
    assert {op.type for op in convolutions} == {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"}
    assert all(op.get_attr("padding") == b"VALID" for op in convolutions)


# The 64x64 model's layers at its 4x4 maps: D's last convolution (8x8 to 4x4), G's first deconvolution (to
# 8x8), and odd and non-square sizes; with the one-hot label's channels too.
@pytest.mark.parametrize("make, shape, labels", [
    (lambda labels: ops.conv2d(16, "c", labels=labels), (3, 8, 8, 6), 0),
    (lambda labels: ops.conv2d(16, "c", labels=labels), (3, 7, 5, 6), 3),
    (lambda labels: ops.deconv2d(16, "d", labels=labels, output_padding=1), (3, 4, 4, 6), 0),
    (lambda labels: ops.deconv2d(16, "d", labels=labels, output_padding=(0, 1)), (3, 4, 3, 6), 3)],
    ids=["conv", "conv-odd-labelled", "deconv", "deconv-odd-labelled"])
def test_small_maps_take_their_kernel_gradient_by_patches_and_equal_the_plain_layer(monkeypatch, make, shape, labels):
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(np.float32)
    y = [np.eye(labels, dtype=np.float32)[rng.integers(0, labels, shape[0])]] if labels else []
    results = []
    for size in (ops.PATCH_GRADIENT_MAP, 0):  # the matmul of patches, then oneDNN's own kernel gradient
        monkeypatch.setattr(ops, "PATCH_GRADIENT_MAP", size)
        layer = make(labels)
        layer.build(shape)
        layer.set_weights([np.random.default_rng(5).normal(size=w.shape).astype(np.float32)
                           for w in layer.get_weights()])
        results.append(output_and_gradients(layer, x, *y))
        graph = tf.function(lambda: output_and_gradients(layer, x, *y)).get_concrete_function().graph
        assert any(op.type == "ExtractImagePatches" for op in graph.get_operations()) == bool(size)
    for got, expected in zip(*results):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
