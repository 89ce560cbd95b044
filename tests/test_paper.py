"""What the DCGAN paper did with a trained DCGAN: D's features (features.py), arithmetic, inversion and
completion (latent.py), their commands (main.py, paper.py) and the folders they are measured on (folders.py)."""
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import features
import folders
import latent
from conftest import ROOT, TINY, TINY_RUN_ARGS, bar_digits, run_main, write_mnist_folder
from model import DCGAN, z_from_seeds
from utils import DCGANError, digit_names

FAST = latent.Search(steps=40, restarts=2, keep=2, learning_rate=0.05, ball=1.0)


@pytest.fixture(scope="module")
def conditional():
    keras.utils.set_random_seed(1)
    return DCGAN(**TINY)


@pytest.fixture(scope="module")
def unconditional():
    keras.utils.set_random_seed(2)
    return DCGAN(y_dim=0, z_dim=8, gf_dim=8, df_dim=8, layers=3)


def test_inversion_finds_a_z_and_the_label_that_drew_an_image(conditional):
    z = 0.5 * z_from_seeds(np.arange(3), conditional.z_dim, conditional.z_dist).numpy()
    labels = np.array([3, 8, 5])
    images = conditional.sample(z, labels).numpy()
    found = latent.invert(conditional, images, latent.Search(200, 2, 2, 0.05, 1.0))
    assert list(found.label) == [3, 8, 5]
    assert found.z.shape == (3, conditional.z_dim) and np.abs(found.z).max() <= 1.0
    assert np.mean((found.images - images) ** 2) < 0.01 * np.var(images)
    np.testing.assert_allclose(found.error, np.mean((found.images - images) ** 2, axis=(1, 2, 3)), rtol=1e-4)


def test_the_search_keeps_z_in_its_ball(unconditional):
    images = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)  # nothing G can draw
    found = latent.invert(unconditional, images, FAST._replace(ball=0.5))
    typical = np.sqrt(unconditional.z_dim / 3)  # uniform on [-1, 1]: variance 1/3 a dimension
    assert np.linalg.norm(found.z, axis=1).max() <= 0.5 * typical + 1e-5 and found.label is None


def test_completion_leaves_the_known_pixels_as_they_are_and_fills_the_hole_with_gs(conditional):
    images = np.random.default_rng(1).random((3, 28, 28, 1)).astype(np.float32)
    mask = latent.make_mask("left", 28, 28)
    completed, found = latent.complete(conditional, images, mask, search=FAST)
    np.testing.assert_array_equal(completed[:, :, 14:], images[:, :, 14:])
    np.testing.assert_array_equal(completed[:, :, :14], found.images[:, :, :14])
    assert found.label.shape == (3,) and completed.dtype == np.float32


def test_masks_hide_what_they_name():
    hidden = {kind: 1 - latent.make_mask(kind, 8, 6)[..., 0] for kind in latent.MASKS}
    assert hidden["left"][:, :3].all() and not hidden["left"][:, 3:].any()
    assert hidden["bottom"][4:].all() and not hidden["bottom"][:4].any()
    assert hidden["centre"][2:6, 1:5].all() and hidden["centre"].sum() == 16
    assert 0.2 < hidden["random"].mean() < 0.8
    picture = np.full((4, 4, 3), 255, np.uint8)
    picture[1, 2] = 10
    assert np.flatnonzero(latent.mask_from_picture(picture) == 0).tolist() == [6]
    with pytest.raises(ValueError, match="both dark pixels"):
        latent.mask_from_picture(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="left, right, top, bottom, centre, random"):
        latent.make_mask("middle", 4, 4)


def test_yehs_context_weights_favour_the_holes_edge():
    weights = latent.context_weights(latent.make_mask("left", 10, 10), window=3)[..., 0]
    assert not weights[:, :5].any() and (weights[:, 5] > 0).all() and not weights[:, 7:].any()
    np.testing.assert_array_equal(latent.context_weights(latent.make_mask("left", 10, 10), window=0),
                                  latent.make_mask("left", 10, 10))


def test_arithmetic_adds_the_terms_mean_zs(conditional):
    terms = latent.parse_terms("3:1,2,3 - 3:4,5 + 7:6", digit_names(10))
    assert terms == [latent.Term(1, 3, [1, 2, 3]), latent.Term(-1, 3, [4, 5]), latent.Term(1, 7, [6])]
    picture, result = latent.arithmetic(conditional, terms, n=4)
    z = {s: z_from_seeds(np.array([s]), conditional.z_dim, conditional.z_dist).numpy()[0] for s in range(1, 7)}
    np.testing.assert_allclose(result, (z[1] + z[2] + z[3]) / 3 - (z[4] + z[5]) / 2 + z[6], atol=1e-6)
    assert picture.shape == (4 * 28, 5 * 28, 1)  # three terms and the result; 3 seeds and a mean, 1 + 4 results
    np.testing.assert_allclose(picture[-28:, :28], conditional.sample(result[None], [7]).numpy()[0], atol=1e-6)


def test_the_grid_to_pick_terms_from_numbers_its_rows_and_columns(conditional, unconditional, tmp_path):
    line = latent.write_arithmetic(conditional, "grid", str(tmp_path), digit_names(10), [3, 7], n=3, seed=5)
    assert line.endswith("each image's seed is its row's, its class its column's; pick the terms from it")
    grid = np.asarray(Image.open(tmp_path / "arithmetic_grid_seed5.png"))
    scale = 56 // 28
    assert grid.shape[0] > 3 * 28 * scale and grid.shape[1] > 2 * 28 * scale and grid.shape[2] == 3
    cell = grid[-28 * scale::scale, -28 * scale::scale, 0]  # seed 7 (5 + 2), class 7, scaled back down
    expected = conditional.sample(z_from_seeds(np.array([7]), 8, conditional.z_dist), np.array([7])).numpy()[0, ..., 0]
    np.testing.assert_array_equal(cell, np.rint(expected * 255).astype(np.uint8))
    line = latent.write_arithmetic(unconditional, "grid", str(tmp_path), (), None, n=2, seed=0)
    assert "its row's plus its column's" in line


@pytest.mark.parametrize("text, names, message", [
    ("1,2 - 3", digit_names(10), "give each term a class"), ("3:1,2 - 3", (), "has no classes"),
    ("3:1,x - 3:2", digit_names(10), "seeds are integers"), ("1,2", (), "at least two terms"),
    ("12:1 - 3:2", digit_names(10), "give each term a class"),
])
def test_bad_expressions_say_what_a_term_is(text, names, message):
    with pytest.raises(ValueError, match=message):
        latent.parse_terms(text, names)


def test_class_names_with_dashes_are_terms():
    names = ["food-drink", "flags"]
    assert latent.parse_terms("food-drink:1 - flags:2", names) == [latent.Term(1, 0, [1]), latent.Term(-1, 1, [2])]


def test_d_features_pool_every_convolution_to_four_by_four(unconditional):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1)).astype(np.uint8)
    found = features.discriminator_features(unconditional, images, batch_size=2)
    assert found.shape == (5, 16 * (8 + 16 + 32)) and found.dtype == np.float32
    maps = unconditional.discriminator.hidden(unconditional.generator.from_unit(images.astype(np.float32) / 255))
    np.testing.assert_allclose(found[:, :16 * 8].reshape(5, 4, 4, 8)[:, 1, 2],
                               maps[0].numpy()[:, 3:7, 7:11].max(axis=(1, 2)), rtol=1e-5)  # 14x14: cells of 3-4
    with pytest.raises(ValueError, match="unconditional dcgan"):
        features.discriminator_features(DCGAN(**TINY), images)


def test_grid_max_pool_covers_maps_smaller_and_odd_sized():
    maps = np.arange(2 * 7 * 3, dtype=np.float32).reshape(1, 2, 7, 3)
    pooled = features.grid_max_pool(maps).numpy()
    assert pooled.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(pooled[0, 0, 0], maps[0, 0, :2].max(axis=0))
    np.testing.assert_array_equal(pooled[0, 3, 3], maps[0, 1, 5:].max(axis=0))


def test_a_linear_classifier_on_d_features_beats_chance_on_bar_digits(unconditional):
    (train_x, train_y), (test_x, test_y) = bar_digits(300, 0), bar_digits(200, 1)
    train_f = features.discriminator_features(unconditional, train_x[..., None])
    test_f = features.discriminator_features(unconditional, test_x[..., None])
    assert features.probe_accuracy(train_f, train_y, test_f, test_y, n=100, seed=0) > 0.5  # chance: 0.1


def test_labelled_subsets_are_even_over_classes_and_seeded():
    labels = np.repeat(np.arange(4), [50, 30, 3, 17])
    chosen = features.labelled_subset(labels, 20, seed=0)
    assert len(set(chosen)) == 20 and np.bincount(labels[chosen]).min() >= 3
    np.testing.assert_array_equal(chosen, features.labelled_subset(labels, 20, seed=0))
    assert len(features.labelled_subset(labels, None, 0)) == 100


def test_folders_writes_mnist_by_digit_or_flat_and_emoji_by_category(tmp_path):
    write_mnist_folder(str(tmp_path / "data" / "mnist"), n_train=30, n_test=10)
    line = folders.make_folder("mnist", str(tmp_path / "data"), str(tmp_path / "by_digit"))
    assert line.startswith("Wrote MNIST's train split, 30 images")
    assert sum(len(files) for _, _, files in os.walk(tmp_path / "by_digit")) == 30
    folders.make_folder("mnist", str(tmp_path / "data"), str(tmp_path / "flat"), split="test", labels=False)
    assert len(os.listdir(tmp_path / "flat")) == 10
    emoji = tmp_path / "emoji"
    os.makedirs(emoji / "64")
    for name in ("a.png", "a-tone.png", "b.png"):
        Image.new("RGBA", (4, 4)).save(emoji / "64" / name)
    entries = [{"image": "a.png", "category": "Smileys & Emotion", "skin_variations": {"1F3FB": {"image": "a-tone.png"}}},
               {"image": "b.png", "category": "Flags"}, {"image": "gone.png", "category": "Flags"}]
    (emoji / "emoji.json").write_text(json.dumps(entries))
    line = folders.make_folder("emoji", str(emoji), str(tmp_path / "categories"))
    assert line == f"Wrote 3 pictures of 2 classes to {tmp_path / 'categories'}/<class>/ (1 listed pictures are not in 64/)"
    assert sorted(os.listdir(tmp_path / "categories" / "smileys-emotion")) == ["a-tone.png", "a.png"]
    with pytest.raises(DCGANError, match="exists already"):
        folders.make_folder("emoji", str(emoji), str(tmp_path / "categories"))


def test_main_inverts_completes_and_adds_from_a_runs_checkpoint(tmp_path, trained_tiny):
    trained_tiny(tmp_path)
    digit = bar_digits(1, 5)[0][0]
    Image.fromarray(digit).save(tmp_path / "digit.png")
    mask = np.full((28, 28), 255, np.uint8)
    mask[:, 20:] = 0
    Image.fromarray(mask).save(tmp_path / "hole.png")
    rc, out = run_main([*TINY_RUN_ARGS, "--data_dir=data", "--invert=digit.png", "--complete=digit.png",
                        "--mask=hole.png", "--arithmetic=3:1,2 - 3:3 + 4:5", "--seed=1"], tmp_path)
    assert rc == 0, out
    samples = tmp_path / "samples" / "mnist_32_28_28"
    assert "digit.png: class " in out and "Wrote samples/mnist_32_28_28/complete_digit_mask.png" in out
    assert Image.open(samples / "invert_digit.png").size == (2 * 28, 28)
    assert np.load(samples / "invert_digit_z.npy").shape == (8,)
    completed = np.asarray(Image.open(samples / "complete_digit_mask.png"))
    np.testing.assert_array_equal(completed[:, 3 * 28:3 * 28 + 20], digit[:, :20])  # the known part, kept
    assert Image.open(samples / "arithmetic_3_1,2_-_3_3_+_4_5.png").size == (9 * 28, 4 * 28)
    # main.py checks the expression before it loads the model (its one line: the catalogue in test_faults).
    with pytest.raises(DCGANError, match=re.escape("term '1,2': give each term a class of 0, 1, 2, 3, 4, 5, 6, 7, 8, "
                                                   "9, e.g. 0:1,2,3")):
        latent.check_asked("1,2 - 3", "", "", digit_names(10))


def test_latent_commands_need_a_runs_checkpoints(tmp_path):
    rc, out = run_main(["--dataset=mnist", "--complete=x.png", "--from_savedmodel=export/mnist/1", "--generate"],
                       tmp_path)
    assert rc == 1 and "--arithmetic, --invert and --complete use a run's checkpoints" in out, out


@pytest.mark.full
def test_paper_py_measures_inversion_and_completion_of_a_run(tmp_path, trained_tiny):
    trained_tiny(tmp_path)
    command = [sys.executable, os.path.join(ROOT, "paper.py"), "--measure=inversion,completion",
               "--run=checkpoints/mnist_32_28_28", "--data_dir=data", "--n=6", "--steps=4", "--masks=left",
               "--out=paper"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = (tmp_path / "paper" / "paper.md").read_text()
    assert "| inversion, G(z) (label found, not given) |" in table and "| left | " in table
    assert Image.open(tmp_path / "paper" / "completion.png").size == (6 * 28, 4 * 28)  # a row per stage, a digit a column
