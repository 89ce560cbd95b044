"""DiffAugment (augment.py): what each transform does to pictures whose answer is known, that its draws
come from the seed alone, that gradients pass through it, and that --augment puts it before D."""
import numpy as np
import pytest
import tensorflow as tf

from augment import CUTOUT, TRANSLATION, cutout, diff_augment, recolour, translate
from conftest import TINY
from model import DCGAN

SEED = tf.constant([3, 4], tf.int64)


def test_the_draws_come_from_the_seed_alone_and_keep_shape_and_type():
    x = tf.random.stateless_uniform([8, 16, 12, 3], [0, 1], -1, 1)
    a, b = diff_augment(x, SEED), diff_augment(x, SEED)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, diff_augment(x, SEED + 1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert diff_augment(tf.cast(x, tf.bfloat16), SEED).dtype == tf.bfloat16


def test_translation_shifts_each_picture_by_at_most_an_eighth_bringing_zeros_in():
    n, size = 64, 32
    ones = tf.ones([n, size, size, 1])
    shifted = translate(ones, SEED).numpy()[..., 0]
    most = int(size * TRANSLATION + 0.5)
    assert set(np.unique(shifted)) <= {0.0, 1.0}
    for picture in shifted:
        zero_rows, zero_cols = np.sum(~picture.any(axis=1)), np.sum(~picture.any(axis=0))
        assert zero_rows <= most and zero_cols <= most
        assert picture.sum() == (size - zero_rows) * (size - zero_cols)  # what is left is one rectangle
    assert 0 < np.mean(shifted == 0) < 0.3  # some pictures moved, none moved far
    # A shift moves content: one bright pixel lands within the shift of where it was.
    dot = np.zeros([n, size, size, 1], np.float32)
    dot[:, 16, 16] = 1
    rows, cols = np.nonzero(translate(tf.constant(dot), SEED).numpy()[..., 0].max(axis=0))
    assert rows.min() >= 16 - most and rows.max() <= 16 + most and cols.min() >= 16 - most


def test_cutout_zeroes_one_square_of_half_the_size_cut_off_at_the_edges():
    n, size = 64, 20
    cut = cutout(tf.ones([n, size, size, 3]), SEED).numpy()
    side = int(size * CUTOUT + 0.5)
    for picture in cut:
        hole = picture[..., 0] == 0
        rows, cols = np.nonzero(hole)
        assert (picture[hole] == 0).all() and (picture[~hole] == 1).all()
        assert rows.max() - rows.min() + 1 <= side and cols.max() - cols.min() + 1 <= side
        assert hole.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle
        assert hole.sum() >= (side // 2) ** 2  # at least a quarter of the square is inside
    assert np.mean([(p[..., 0] == 0).sum() == side * side for p in cut]) > 0.15  # whole a quarter of the time


def test_recolouring_changes_brightness_saturation_and_contrast_per_picture():
    x = tf.random.stateless_uniform([256, 8, 8, 3], [5, 6], -0.5, 0.5)
    y = recolour(x, SEED).numpy()
    shift = y.mean(axis=(1, 2, 3)) - x.numpy().mean(axis=(1, 2, 3))
    assert -0.55 < shift.min() < -0.3 and 0.3 < shift.max() < 0.55  # brightness: U(-0.5, 0.5)
    spread = y.std(axis=(1, 2, 3)) / x.numpy().std(axis=(1, 2, 3))
    assert spread.min() < 0.5 and spread.max() > 1.5  # saturation and contrast scale the spread


def test_gradients_pass_through_every_transform():
    x = tf.Variable(tf.random.stateless_uniform([4, 16, 16, 3], [7, 8], -1, 1))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(diff_augment(x, SEED) ** 2)
    gradient = tape.gradient(loss, x).numpy()
    assert np.isfinite(gradient).all() and np.mean(gradient != 0) > 0.3


@pytest.mark.parametrize("augment", [False, True])
def test_augment_transforms_what_d_sees_and_training_steps_on(augment):
    dcgan = DCGAN(y_dim=0, output_height=16, output_width=16, c_dim=3, layers=2, augment=augment, **TINY)
    from model import FusedAdam
    dcgan.compile(d_optimizer=FusedAdam(2e-4), g_optimizer=FusedAdam(2e-4))
    x = tf.random.stateless_uniform([8, 16, 16, 3], [1, 2], -1, 1)
    seen = dcgan.d_view(x, 0)
    assert np.array_equal(seen, x) != augment
    if augment:  # the step's other batches and the next step's see other transforms
        assert not np.allclose(seen, dcgan.d_view(x, 1))
    logs = tf.function(dcgan.train_step, autograph=False)(tf.random.stateless_uniform([8, 16, 16, 3], [1, 2]))
    assert np.isfinite(float(logs["d_loss"])) and int(dcgan.step) == 1
    if augment:
        assert not np.allclose(seen, dcgan.d_view(x, 0))
