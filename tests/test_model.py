import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, bar_digits
from model import DCGAN, export_savedmodel


def compiled(**kwargs):
    dcgan = DCGAN(**{**TINY, **kwargs})
    dcgan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    return dcgan


def one_hot(labels):
    return tf.one_hot(labels, 10)


def bar_batch(n, seed=0):
    x, y = bar_digits(n, seed)
    return tf.constant(x[..., None] / 255.0, tf.float32), one_hot(y)


def test_full_size_layer_shapes_match_the_original():
    dcgan = DCGAN()  # z_dim 100, gf_dim = df_dim = 64, gfc_dim = dfc_dim = 1024
    g = {w.path.split("/")[-2] + "/" + w.name: tuple(w.shape) for w in dcgan.generator.weights}
    d = {w.path.split("/")[-2] + "/" + w.name: tuple(w.shape) for w in dcgan.discriminator.weights}
    assert g["g_h0_lin/kernel"] == (110, 1024)
    assert g["g_h1_lin/kernel"] == (1034, 128 * 7 * 7)
    assert g["g_h2/kernel"] == (5, 5, 128, 138)
    assert g["g_h3/kernel"] == (5, 5, 1, 138)
    assert d["d_h0_conv/kernel"] == (5, 5, 11, 11)
    assert d["d_h1_conv/kernel"] == (5, 5, 21, 74)
    assert d["d_h2_lin/kernel"] == (74 * 7 * 7 + 10, 1024)
    assert d["d_h3_lin/kernel"] == (1034, 1)
    assert {k for k in g if "bn" in k} >= {"g_bn0/gamma", "g_bn1/moving_mean", "g_bn2/beta"}


def test_generator_makes_images_in_unit_range_that_depend_on_the_label():
    dcgan = DCGAN(**TINY)
    z = tf.random.uniform((4, TINY["z_dim"]), -1, 1)
    a = dcgan.generator(z, one_hot([0, 1, 2, 3])).numpy()
    b = dcgan.generator(z, one_hot([9, 9, 9, 9])).numpy()
    assert a.shape == (4, 28, 28, 1) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert np.abs(a - b).max() > 1e-4
    logits = dcgan.discriminator(tf.constant(a), one_hot([0, 1, 2, 3]))
    assert tuple(logits.shape) == (4, 1)


@pytest.mark.parametrize("z_dist, low, high", [("uniform_signed", -1, 1), ("uniform_unsigned", 0, 1),
                                               ("normal", -np.inf, np.inf)])
def test_sample_z_follows_z_dist(z_dist, low, high):
    z = DCGAN(**TINY, z_dist=z_dist).sample_z(2000).numpy()
    assert z.shape == (2000, TINY["z_dim"])
    assert z.min() >= low and z.max() <= high
    if z_dist == "normal":
        assert z.std() == pytest.approx(1, abs=0.05) and z.min() < -2


@pytest.mark.parametrize("g_steps", [1, 2, 3])
def test_train_step_updates_d_once_and_g_g_steps_times(g_steps):
    dcgan = compiled(g_steps=g_steps)
    g_before = [w.numpy() for w in dcgan.generator.trainable_weights]
    logs = tf.function(dcgan.train_step)(bar_batch(16))
    assert int(dcgan.d_optimizer.iterations) == 1
    assert int(dcgan.g_optimizer.iterations) == g_steps
    assert int(dcgan.step) == 1
    assert set(logs) == {"d_loss", "d_loss_real", "d_loss_fake", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert float(logs["d_loss"]) == pytest.approx(float(logs["d_loss_real"]) + float(logs["d_loss_fake"]))
    assert any(np.abs(a - w.numpy()).max() > 0 for a, w in zip(g_before, dcgan.generator.trainable_weights))


@pytest.mark.slow
def test_short_training_on_a_tiny_real_problem_learns_the_conditional_bars():
    """Class k of bar_digits is a bar at rows 2+2k..3+2k: the original recipe learns it in 300 steps."""
    keras.utils.set_random_seed(0)
    dcgan = compiled(seed=0)
    step = tf.function(dcgan.train_step)
    x, y = bar_batch(640)
    epoch_d_loss = [np.mean([float(step((x[i:i + 32], y[i:i + 32]))["d_loss"]) for i in range(0, 640, 32)])
                    for _ in range(15)]
    assert epoch_d_loss[0] == pytest.approx(2 * np.log(2), abs=0.05)  # D starts near chance
    assert min(epoch_d_loss) < epoch_d_loss[0] - 0.03
    labels = np.arange(200) % 10
    images = dcgan.generator(dcgan.sample_z(200), one_hot(labels)).numpy()[..., 0]
    brightest_row = [int(np.argmax(images[labels == k].mean(axis=(0, 2)))) for k in range(10)]
    assert all(row in (2 + 2 * k, 3 + 2 * k) for k, row in enumerate(brightest_row)), brightest_row


def test_fit_can_drive_the_same_train_step():
    dcgan = compiled()
    x, y = bar_batch(64)
    history = dcgan.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0, shuffle=False)
    assert int(dcgan.step) == 4
    assert np.isfinite(history.history["d_loss"][-1])


def test_same_seed_gives_the_same_first_losses():
    def losses(seed):
        keras.utils.set_random_seed(seed)
        dcgan = compiled(seed=seed)
        step = tf.function(dcgan.train_step)
        return [float(step(bar_batch(16, i))["g_loss"]) for i in range(3)]
    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_export_reloads_and_matches_the_keras_generator(tmp_path):
    dcgan = compiled()
    path = export_savedmodel(dcgan, str(tmp_path / "export" / "1"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"z", "label"}
    for batch in (1, 5):
        z = tf.random.uniform((batch, TINY["z_dim"]), -1, 1)
        label = tf.constant(np.arange(batch) % 10, tf.int32)
        images = serve(z=z, label=label)["images"].numpy()
        assert images.shape == (batch, 28, 28, 1)
        np.testing.assert_allclose(images, dcgan.generator(z, one_hot(label)).numpy(), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be in 0..9"):
        serve(z=tf.zeros((1, TINY["z_dim"])), label=tf.constant([10]))
