"""Image folders and the unconditional DCGAN: networks, reading pictures, training, export, --visualize."""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageSequence

import data
import visualize
from conftest import bar_digits, error_lines, run_main, write_image_folder
from model import DCGAN, unconditional_layers, z_from_seeds
from serving import ExportedGenerator, export_savedmodel, generate
from ops import conv_out_size_same, deconv_to

TINY_FOLDER = ["--z_dim=8", "--gf_dim=4", "--df_dim=4", "--gfc_dim=16", "--dfc_dim=16", "--batch_size=8",
               "--seed=2", "--input_fname_pattern=*"]


# ------------------------------------------------------------------ the unconditional networks

def test_full_size_unconditional_layer_shapes_match_the_original():
    dcgan = DCGAN(y_dim=0, output_height=64, output_width=64, c_dim=3)  # z 100, gf_dim = df_dim = 64
    g = {w.path.split("/")[-2] + "/" + w.name: tuple(w.shape) for w in dcgan.generator.weights}
    d = {w.path.split("/")[-2] + "/" + w.name: tuple(w.shape) for w in dcgan.discriminator.weights}
    assert g["g_h0_lin/kernel"] == (100, 512 * 4 * 4)
    assert [g[f"g_h{i}/kernel"] for i in (1, 2, 3, 4)] == [(5, 5, 256, 512), (5, 5, 128, 256), (5, 5, 64, 128),
                                                            (5, 5, 3, 64)]
    assert {f"g_bn{i}/gamma" for i in range(4)} <= set(g) and "g_bn4/gamma" not in g
    assert [d[f"d_h{i}_conv/kernel"] for i in range(4)] == [(5, 5, 3, 64), (5, 5, 64, 128), (5, 5, 128, 256),
                                                             (5, 5, 256, 512)]
    assert d["d_h4_lin/kernel"] == (512 * 4 * 4, 1)
    assert {f"d_bn{i}/gamma" for i in (1, 2, 3)} <= set(d) and "d_bn0/gamma" not in d
    z = dcgan.sample_z(3)
    images = dcgan.generator(z, None)
    assert images.shape == (3, 64, 64, 3) and -1 <= images.numpy().min() and images.numpy().max() <= 1
    assert dcgan.discriminator(images, None).shape == (3, 1)


def shapes_of(network):
    return {w.path.split("/", 1)[1]: tuple(w.shape) for w in network.weights}


def test_a_labelled_folders_networks_are_the_folder_networks_taking_the_class_one_way_or_the_other():
    plain = DCGAN(y_dim=0, output_height=64, output_width=64, c_dim=3)
    projection = DCGAN(y_dim=10, output_height=64, output_width=64, c_dim=3, conditioning="projection")
    concat = DCGAN(y_dim=10, output_height=64, output_width=64, c_dim=3, conditioning="concat")
    g, d = shapes_of(projection.generator), shapes_of(projection.discriminator)
    # The original's 64x64 widths; each batch norm of G a scale and offset per class, D a class embedding
    # of its last features summed over the picture.
    assert g["g_h0_lin/kernel"] == (100, 512 * 4 * 4) and g["g_h4/kernel"] == (5, 5, 3, 64)
    assert g["g_bn1/gamma"] == g["g_bn1/beta"] == (10, 256) and "g_bn1/norm/gamma" not in g
    assert d["d_embed/kernel"] == (10, 512) and d["d_h3_conv/kernel"] == (5, 5, 256, 512)
    assert {k: v for k, v in d.items() if "embed" not in k} == shapes_of(plain.discriminator)
    # The original's way: the one-hot label joined to z and to every layer's input.
    g, d = shapes_of(concat.generator), shapes_of(concat.discriminator)
    assert g["g_h0_lin/kernel"] == (110, 512 * 4 * 4) and g["g_h1/kernel"] == (5, 5, 256, 512 + 10)
    assert d["d_h0_conv/kernel"] == (5, 5, 3 + 10, 64) and d["d_h4_lin/kernel"] == (512 * 4 * 4 + 10, 1)
    z, labels = tf.tile(projection.sample_z(1), (2, 1)), tf.constant([0, 7])
    images = concat.sample(z, labels).numpy()  # untrained, its pictures already depend on their class
    assert images.shape == (2, 64, 64, 3) and np.abs(images[0] - images[1]).max() > 1e-3
    before = projection.sample(z, labels).numpy()  # every class starts from batch norm's plain scale and offset
    np.testing.assert_array_equal(before[0], before[1])
    beta = projection.generator.bns[-1].beta
    beta.assign(tf.tensor_scatter_nd_update(beta, [[7]], tf.ones((1, beta.shape[1]))))  # class 7's own offset
    after = projection.sample(z, labels).numpy()
    np.testing.assert_array_equal(after[0], before[0])
    assert np.abs(after[1] - before[1]).max() > 1e-3
    import model
    assert model.folder_conditioning("projection", 10, 28, 28) == "mnist"  # the MNIST networks below 32 pixels
    assert model.folder_conditioning("concat", 10, 32, 48) == "concat" == model.folder_conditioning("concat", 0, 8, 8)


@pytest.mark.parametrize("height, width", [(28, 28), (48, 48), (108, 108), (30, 45), (32, 32)])
def test_any_output_size_halves_rounding_up_as_the_original(height, width):
    dcgan = DCGAN(y_dim=0, z_dim=4, output_height=height, output_width=width, c_dim=1, gf_dim=2, df_dim=2)
    h, w = height, width
    for _ in range(4):
        h, w = conv_out_size_same(h), conv_out_size_same(w)
    assert dcgan.generator.start == (h, w, 16)
    assert dcgan.generator(dcgan.sample_z(2), None).shape == (2, height, width, 1)
    assert dcgan.discriminator(tf.zeros((2, height, width, 1)), None).shape == (2, 1)


@pytest.mark.parametrize("size, layers, smallest", [(64, 4, 4), (32, 3, 4), (28, 3, 4), (16, 2, 4), (108, 5, 4),
                                                    (128, 5, 4), (256, 5, 8)])
def test_new_unconditional_networks_stop_halving_at_4x4_as_the_original_does_at_64x64(size, layers, smallest):
    assert unconditional_layers(size, size) == layers
    dcgan = DCGAN(y_dim=0, z_dim=4, output_height=size, output_width=size, c_dim=1, gf_dim=2, df_dim=2, layers=layers)
    assert dcgan.generator.start == (smallest, smallest, 2 * 2 ** (layers - 1))
    assert len(dcgan.generator.deconvs) == len(dcgan.discriminator.convs) == layers
    assert dcgan.generator(dcgan.sample_z(2), None).shape == (2, size, size, 1)
    assert dcgan.discriminator(tf.zeros((2, size, size, 1)), None).shape == (2, 1)


@pytest.mark.parametrize("size", [7, 8])
def test_odd_and_even_deconvolutions_equal_tf1_conv2d_transpose_with_that_output_shape(size):
    layer = deconv_to(size, size, 3, "g")
    x = tf.random.uniform((2, conv_out_size_same(size), conv_out_size_same(size), 5))
    ours = layer(x)
    theirs = tf.nn.conv2d_transpose(x, layer.kernel, [2, size, size, 3], 2, "SAME") + layer.bias
    assert ours.shape == (2, size, size, 3)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6)


def test_unconditional_export_takes_no_label_and_draws_the_seeds_z(tmp_path):
    dcgan = DCGAN(y_dim=0, z_dim=8, output_height=32, output_width=32, c_dim=3, gf_dim=4, df_dim=4)
    path = export_savedmodel(dcgan, str(tmp_path / "1"), step=3)
    loaded = tf.saved_model.load(path)
    for name, inputs in (("serving_default", {"z"}), ("generate", {"seed"}), ("generate_png", {"seed"})):
        assert set(loaded.signatures[name].structured_input_signature[1]) == inputs
    seed = tf.constant([5, 6], tf.int64)
    images = loaded.signatures["generate"](seed=seed)["images"].numpy()
    np.testing.assert_allclose(images, dcgan.sample(z_from_seeds(seed, 8, dcgan.z_dist)), atol=1e-5)
    assert images.shape == (2, 32, 32, 3) and 0 <= images.min() and images.max() <= 1
    config = {k: v.numpy() for k, v in loaded.signatures["config"]().items()}
    assert config["y_dim"] == 0 and config["channels"] == 3 and list(config["class_names"]) == []
    exported = ExportedGenerator(path)
    np.testing.assert_array_equal(generate(exported, None, n=2, seed=5), generate(dcgan, None, n=2, seed=5))
    with pytest.raises(ValueError, match="unconditional"):
        generate(exported, [0], n=1)


# ------------------------------------------------------------------ reading pictures

def test_crop_takes_the_centre_then_resizes(tmp_path):
    image = np.zeros((60, 80, 3), np.uint8)
    image[20:40, 30:50] = 255  # a white 20x20 square in the middle
    Image.fromarray(image).save(tmp_path / "a.png")
    cropped, _ = data.read_image(str(tmp_path / "a.png"), (10, 10), crop=(20, 20))
    assert cropped.shape == (10, 10, 3) and cropped.min() == 255  # exactly the square
    whole, _ = data.read_image(str(tmp_path / "a.png"), (30, 40))
    assert whole.shape == (30, 40, 3) and whole[15, 20].min() == 255 and whole[0, 0].max() == 0
    with pytest.raises(data.DataError, match=r"a.png is 80x60 pixels, smaller than the 70x70 crop"):
        data.read_image(str(tmp_path / "a.png"), (10, 10), crop=(70, 70))


def test_grayscale_rgba_and_palette_files_read_alike(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4] = (200, 40, 10)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 255, np.uint8)], -1)
    rgba[:, 4:, 3] = 0  # the right half transparent: white once composited
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "gray16.png")  # 16 bits, same picture
    names = ("rgb", "palette", "rgba", "gray", "gray16")
    read = {name: data.read_image(str(tmp_path / f"{name}.png"), (8, 8)) for name in names}
    np.testing.assert_array_equal(read["palette"][0], read["rgb"][0])
    np.testing.assert_array_equal(read["rgba"][0][:, :4], read["rgb"][0][:, :4])
    assert read["rgba"][0][:, 4:].min() == 255
    assert [read[n][1] for n in names] == [False, False, False, True, True]
    np.testing.assert_array_equal(read["gray16"][0], read["gray"][0])
    assert read["gray"][0][..., 0].tolist() == read["gray"][0][..., 2].tolist()


def test_a_photo_is_turned_upright_as_its_exif_orientation_says(tmp_path):
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:, :20] = 255  # white left half, stored sideways: orientation 6 means "rotate 90 degrees clockwise"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(picture).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    upright, _ = data.read_image(str(tmp_path / "photo.jpg"), (40, 20))
    assert upright.shape == (40, 20, 3)
    assert upright[:15].mean() > 200 and upright[25:].mean() < 50  # the white half is now on top


def test_read_images_skips_broken_files_naming_them_and_decides_the_channels(tmp_path, capsys):
    n = write_image_folder(str(tmp_path), n=12)
    paths, labels, names = data.list_image_folder(str(tmp_path), "*")
    assert len(paths) == n + 2 and labels is None and names is None
    images, kept = data.read_images(paths, (16, 16))
    assert images.shape == (n, 16, 16, 3) and images.dtype == np.uint8 and len(kept) == n
    warning = capsys.readouterr().err
    assert "skipped 2 unreadable image file(s) of 14" in warning
    assert "notes.png" in warning and "truncated.jpg" in warning
    gray = [p for p in paths if p.endswith(("001.png", "005.png", "009.png"))]  # the grayscale ones
    assert data.read_images(gray, (16, 16))[0].shape == (3, 16, 16, 1)
    assert data.read_images(gray, (16, 16), channels=3)[0].shape == (3, 16, 16, 3)


def test_a_labelled_folder_has_a_class_per_sub_folder(tmp_path):
    write_image_folder(str(tmp_path / "labelled"), n=8, labelled=True, broken=False)
    paths, labels, names = data.list_image_folder(str(tmp_path / "labelled"), "*")
    assert names == ["disc", "square"] and len(paths) == 8
    assert [names[k] for k in labels] == [os.path.basename(os.path.dirname(p)) for p in paths]
    write_image_folder(str(tmp_path / "one" / "img_align_celeba"), n=4, broken=False)
    paths, labels, names = data.list_image_folder(str(tmp_path / "one"), "*")
    assert len(paths) == 4 and labels is None and names is None  # one sub-folder is not a class


def pictures(folder, names, colour=(200, 40, 10)):
    """Writes a small picture under each of names (relative paths) in folder."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(path, format="PNG" if name.lower().endswith(
            ".png") else "JPEG")


def test_extensions_match_in_any_case_and_classes_the_pattern_leaves_out_are_named(tmp_path, capsys):
    pictures(tmp_path / "pets", ["cat/1.jpg", "cat/2.jpg", "dog/1.JPG", "dog/2.Jpg"])
    paths, labels, names = data.list_image_folder(str(tmp_path / "pets"), "*.jpg")
    assert names == ["cat", "dog"] and labels.tolist() == [0, 0, 1, 1] and len(paths) == 4
    pictures(tmp_path / "pets", ["fish/1.png", "fish/2.png", ".ipynb_checkpoints/1.jpg", "README.md/x.txt"])
    assert data.list_image_folder(str(tmp_path / "pets"), "*.jpg")[2] == ["cat", "dog"]
    assert capsys.readouterr().err.strip() == (f"Warning: {tmp_path / 'pets'}: no class for fish/ (2 *.png): no file "
                                               "there matches --input_fname_pattern=*.jpg")
    assert data.list_image_folder(str(tmp_path / "pets"), "*")[2] == ["README.md", "cat", "dog", "fish"]


def test_a_layout_that_cannot_be_read_as_meant_is_refused(tmp_path):
    # One class matching the pattern and another whose pictures do not: cats alone, unconditional, was not meant.
    pictures(tmp_path / "pets", ["cat/1.jpg", "cat/2.jpg", "dog/1.png"])
    with pytest.raises(data.DataError, match=re.escape(
            f"in {tmp_path / 'pets'} only cat/ has pictures matching --input_fname_pattern=*.jpg, and dog/ (1 *.png) "
            "others: give a pattern that takes every class's pictures")):
        data.list_image_folder(str(tmp_path / "pets"), "*.jpg")
    # Pictures at the top beside sub-folders of pictures: classes or not?
    pictures(tmp_path / "mixed", ["top.jpg", "a/1.jpg", "b/1.jpg"])
    with pytest.raises(data.DataError, match=re.escape(
            f"{tmp_path / 'mixed'} holds 1 pictures matching --input_fname_pattern=*.jpg at its top and sub-folders "
            "of them (a, b): put every picture in a sub-folder per class")):
        data.list_image_folder(str(tmp_path / "mixed"), "*.jpg")
    (tmp_path / "mixed" / "top.jpg").rename(tmp_path / "mixed" / "notes.txt")  # a note beside the classes is fine
    assert data.list_image_folder(str(tmp_path / "mixed"), "*")[2] == ["a", "b"]


def test_one_channel_is_the_luminance_in_training_and_the_latent_commands(tmp_path):
    import latent
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 2] = 255
    Image.fromarray(blue).save(tmp_path / "blue.png")
    grey, _ = data.read_images([str(tmp_path / "blue.png")], (8, 8), channels=1)
    assert grey.shape == (1, 8, 8, 1) and grey.min() == grey.max() == 29  # 0.114 * 255: dark, not black
    assert np.asarray(Image.fromarray(blue).convert("L")).max() == 29  # Pillow's own conversion agrees
    dcgan = DCGAN(y_dim=0, z_dim=4, output_height=8, output_width=8, c_dim=1, gf_dim=2, df_dim=2, layers=1)
    assert latent.model_picture(dcgan, blue) == pytest.approx(np.full((1, 8, 8, 1), 29 / 255), abs=0.5 / 255)


@pytest.mark.parametrize("z_dist, low, high", [("normal", -5, 5), ("uniform_unsigned", 0, 1),
                                               ("uniform_signed", -1, 1)])
def test_sample_grids_draw_z_from_the_runs_distribution(z_dist, low, high):
    z, labels = visualize.fixed_samples({"seed": 3, "y_dim": 0, "z_dist": z_dist}, z_dim=20)
    assert z.shape == (80, 20) and labels is None and low <= z.min() and z.max() <= high
    if z_dist == "normal":
        assert z.min() < -1.5 and z.max() > 1.5 and abs(z.mean()) < 0.1
    else:
        assert z.mean() == pytest.approx((low + high) / 2, abs=0.05)
    if z_dist == "uniform_signed":  # the grids of runs made before are drawn as they were
        np.testing.assert_array_equal(z, np.random.default_rng(3).uniform(-1, 1, (80, 20)).astype(np.float32))


def test_a_resumed_run_says_when_the_folders_files_changed(tmp_path, capsys):
    pictures(tmp_path / "pics", [f"{i}.jpg" for i in range(4)])
    config = {"dataset": "pics", "train_size": None, "batch_size": 2, "seed": 0, "input_fname_pattern": "*.jpg",
              "class_names": None, "c_dim": None, "arch": "dcgan", "output_height": 8, "output_width": 8,
              "crop": False, "input_height": None, "input_width": None, "conditioning": "projection"}
    data.load_training_data(config, str(tmp_path))
    assert config["files"]["count"] == 4 and "Warning" not in capsys.readouterr().err
    data.load_training_data(config, str(tmp_path))  # the same files: nothing said
    assert "Warning" not in capsys.readouterr().err
    pictures(tmp_path / "pics", ["4.jpg"])
    data.load_training_data(config, str(tmp_path))
    assert (f"Warning: the files of {tmp_path / 'pics'} are not those the run was trained on so far (4 then, 5 now, or "
            "other names): from here on it sees other batches") in capsys.readouterr().err
    assert config["files"]["count"] == 5
    os.rename(tmp_path / "pics" / "4.jpg", tmp_path / "pics" / "5.jpg")
    data.load_training_data(config, str(tmp_path))
    assert "(5 then, 5 now, or other names)" in capsys.readouterr().err


# ------------------------------------------------------------------ through main.py

def outputs(folder):
    return sorted(os.listdir(folder))


def test_a_labelled_folder_trains_draws_by_class_name_and_exports_in_one_command(tmp_path):
    """make test's folder run, in one process: the full tier's tests below take each part further."""
    write_image_folder(str(tmp_path / "data" / "shapes"), n=16, labelled=True, broken=False)
    rc, out = run_main(["--dataset=shapes", "--data_dir=data", "--output_height=32", *TINY_FOLDER, "--train",
                        "--epoch=1", "--generate", "--labels=square", "--n_per_label=2", "--seed=1", "--export"],
                       tmp_path)
    assert rc == 0, out
    run = "shapes_8_32_32"
    config = json.loads((tmp_path / "checkpoints" / run / "config.json").read_text())
    assert config["y_dim"] == 2 and config["class_names"] == ["disc", "square"] and config["c_dim"] == 3
    assert Image.open(tmp_path / "samples" / run / "generate_square_seed1.png").size == (32, 2 * 32)
    assert ExportedGenerator(str(tmp_path / "export" / run / "2")).class_names == ["disc", "square"]


@pytest.mark.full
@pytest.mark.slow
def test_unconditional_64x64_trains_resumes_generates_exports_and_visualizes(tmp_path):
    write_image_folder(str(tmp_path / "data" / "shapes"), n=24)
    args = ["--dataset=shapes", "--data_dir=data", *TINY_FOLDER]
    run = "shapes_8_64_64"
    rc, out = run_main([*args, "--train", "--epoch=1"], tmp_path)
    assert rc == 0, out
    assert "skipped 2 unreadable image file(s) of 26" in out and "steps 0..3" in out
    assert f"Decoding 26 pictures into the cache checkpoints/{run}/cache (once: later starts read it)" in out
    config = json.loads((tmp_path / "checkpoints" / run / "config.json").read_text())
    assert config["y_dim"] == 0 and config["c_dim"] == 3 and config["class_names"] == []
    assert {"losses.png", "real_vs_fake.png", "train_00_0002.png"} <= set(outputs(tmp_path / "samples" / run))
    assert Image.open(tmp_path / "samples" / run / "train_00_0002.png").size == (8 * 64, 10 * 64)

    rc, out = run_main([*args, "--train", "--epoch=2"], tmp_path)
    assert rc == 0, out
    assert f"Restored checkpoints/{run}/ckpt-3" in out and "steps 3..6" in out
    assert f"Read 24 pictures from the cache checkpoints/{run}/cache into memory" in out and "Decoding" not in out

    rc, out = run_main(["--dataset=shapes", "--batch_size=8", "--generate", "--n_per_label=5", "--seed=4",
                        "--export", "--visualize", "--visualize_option=4"], tmp_path)
    assert rc == 0, out
    assert outputs(tmp_path / "samples" / run / "visualize") == ["all_dims.gif"]
    assert Image.open(tmp_path / "samples" / run / "generate_seed4.png").size == (5 * 64, 64)
    exported = ExportedGenerator(str(tmp_path / "export" / run / "6"))
    assert exported.y_dim == 0 and exported.step == 6
    rc, out = run_main(["--dataset=shapes", "--batch_size=8", "--generate", "--labels=1"], tmp_path)
    assert rc == 1 and "this model is unconditional" in error_lines(out)[0], out
    # Scored offline by the shipped judge, against the folder's own pictures, as many as its floor (12).
    rc, out = run_main(["--dataset=shapes", "--batch_size=8", "--eval"], tmp_path)
    assert rc == 0 and re.search(r"12 generated pictures against 12 real ones, in the features of the judge "
                                 r"[\w-]+ \(judge-v1, trained on [\w-]+\)", out), out
    figures = json.loads((tmp_path / "samples" / run / "eval.json").read_text())
    assert figures["step"] == 6 and {"fid", "recall", "copies"} <= set(figures) and "accuracy" not in figures
    assert (tmp_path / "samples" / run / "copies.png").exists()
    # InceptionV3's features without its weights and offline (a proxy that refuses, whatever this machine's
    # network): one line.
    rc, out = run_main(["--dataset=shapes", "--batch_size=8", "--eval", "--judge=inception", "--sample_dir=inception"],
                       tmp_path, env={"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert rc == 1 and error_lines(out)[-1].startswith(
        f"Error: cannot score colour images: InceptionV3's ImageNet weights are not in {tmp_path / 'keras' / 'models'} "
        "and could not be downloaded (URL fetch failure"), out
    assert "Traceback" not in out and not (tmp_path / "inception" / run / "eval.json").exists()


@pytest.mark.parametrize("y_dim", [0, 3])
def test_each_visualize_option_writes_its_files(tmp_path, y_dim):
    dcgan = DCGAN(y_dim=y_dim, z_dim=6, output_height=16, output_width=16, c_dim=3, gf_dim=2, df_dim=2, gfc_dim=8,
                  dfc_dim=8)
    sheet = {"classes_x_interpolation.png"} if y_dim else set()
    written = {0: {"random.png"}, 1: {f"sweep_dim{d:03d}.png" for d in range(6)},
               2: {f"random_dim{d:03d}.gif" for d in range(6)}, 3: {f"zero_dim{d:03d}.gif" for d in range(6)},
               4: {"all_dims.gif"}}
    rows = y_dim or visualize.COLUMNS
    for option, files in written.items():
        folder = tmp_path / str(option)
        paths = visualize.visualize(lambda z, labels: dcgan.sample(z, labels).numpy(), 6, "uniform_signed", y_dim,
                                    option, str(folder), seed=0)
        assert set(os.listdir(folder)) == files | sheet == {os.path.basename(p) for p in paths}
    assert Image.open(tmp_path / "1" / "sweep_dim000.png").size == (visualize.STEPS * 16, rows * 16)
    gif = Image.open(tmp_path / "2" / "random_dim000.gif")
    assert gif.size == (visualize.COLUMNS * 16, rows * 16)
    # Pillow merges equal frames (an untrained G may draw some alike) and adds up their durations.
    assert sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif)) == (2 * visualize.STEPS - 2) * 80
    assert Image.open(tmp_path / "3" / "zero_dim005.gif").size == (16, (y_dim or 1) * 16)
    assert Image.open(tmp_path / "4" / "all_dims.gif").size == (3 * 16, 2 * 16)  # 6 dimensions, 3 a row


@pytest.mark.full
@pytest.mark.slow
def test_a_labelled_folder_trains_the_conditional_model_at_32x32_and_generates_by_class_name(tmp_path):
    write_image_folder(str(tmp_path / "data" / "shapes"), n=24, labelled=True, broken=False)
    args = ["--dataset=shapes", "--data_dir=data", "--output_height=32", *TINY_FOLDER]
    run = "shapes_8_32_32"
    rc, out = run_main([*args, "--train", "--epoch=1", "--eval_freq=2", "--keep_best"], tmp_path)
    assert rc == 0, out
    config = json.loads((tmp_path / "checkpoints" / run / "config.json").read_text())
    assert config["y_dim"] == 2 and config["class_names"] == ["disc", "square"] and config["c_dim"] == 3
    # Scored while training in the judge's features, class accuracy by the folder's own classifier; the step of
    # the lowest FID kept apart.
    assert re.search(r"Judging against 24 pictures of data/shapes in the judge [\w-]+ \(judge-v1", out), out
    assert "the folder's own classifier reads" in out and " | acc " in out and " mix TV " in out, out
    best = json.loads((tmp_path / "checkpoints" / run / "best" / "best.json").read_text())
    assert best["step"] in (2, 3) and (tmp_path / "checkpoints" / run / "best" / f"ckpt-{best['step']}.index").exists()
    rc, out = run_main([*args, "--eval", "--step=best"], tmp_path)
    assert rc == 0 and f"Restored checkpoints/{run}/best/ckpt-{best['step']}" in out, out
    figures = json.loads((tmp_path / "samples" / run / "eval.json").read_text())
    assert figures["step"] == best["step"] and {"accuracy", "fid", "kid", "recall", "class_tv"} <= set(figures)
    assert figures["real"]["accuracy"] >= 0.5 and figures["fid"] == pytest.approx(best["fid"], rel=1e-3)
    rc, out = run_main(["--dataset=shapes", "--batch_size=8", "--output_height=32", "--generate",
                        "--labels=square,disc", "--n_per_label=3", "--seed=1", "--visualize",
                        "--visualize_option=0", "--export"], tmp_path)
    assert rc == 0, out
    assert Image.open(tmp_path / "samples" / run / "generate_square-disc_seed1.png").size == (2 * 32, 3 * 32)
    assert outputs(tmp_path / "samples" / run / "visualize") == ["classes_x_interpolation.png", "random.png"]
    exported = ExportedGenerator(str(tmp_path / "export" / run / "3"))
    assert exported.class_names == ["disc", "square"]
    rc, out = run_main(["--dataset=shapes", "--batch_size=8", "--output_height=32", "--generate", "--labels=circle"],
                       tmp_path)
    assert rc == 1 and "classes of this model: disc, square" in error_lines(out)[0], out


def unconditional_digit_shares(data_dir, layers, seed=0, steps=500):
    """The share of each digit, read by the shipped classifier, among 2,000 images of an unconditional
    half-width model trained `steps` steps on 6,400 real MNIST digits drawn at 32x32 (as from a folder)."""
    import evaluate
    from data import load_idx_splits, shuffled_batches
    from model import build_dcgan
    images = load_idx_splits(os.path.join(data_dir, "mnist"))["train"][0][:6400, ..., None]
    images = np.round(tf.image.resize(images.astype(np.float32), (32, 32)).numpy()).clip(0, 255).astype(np.uint8)
    config = dict(y_dim=0, z_dim=100, output_height=32, output_width=32, c_dim=1, gf_dim=32, df_dim=32, gfc_dim=1024,
                  dfc_dim=1024, z_dist="uniform_signed", ema_decay=0.0, seed=seed, arch="dcgan", loss="gan",
                  spectral_norm=False, layers=layers)
    dcgan = build_dcgan(config)
    step = tf.function(dcgan.train_step, autograph=False)
    batches = iter(shuffled_batches(images, None, 64, 0, seed))
    for _ in range(steps):
        step(next(batches))
    samples = tf.image.resize(dcgan.sample(dcgan.sample_z(2000, key=777)), (28, 28)).numpy()
    classifier, _ = evaluate.shipped_classifier()
    return np.bincount(evaluate.classify(classifier, samples)[0], minlength=10) / len(samples)


@pytest.mark.learning
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DCGAN_TEST_DATA_DIR"), reason="set DCGAN_TEST_DATA_DIR to a folder "
                    "with mnist/ (CI points it at ../shared/data)")
def test_the_unconditional_model_learns_every_digit_of_a_folder_at_32x32():
    # With the original's four layers (2x2 smallest maps) the same run drew six digits not at all (seed 0);
    # with the default three every digit came, the rarest at 3.3-5.1 % over seeds 0-2, and 5.1 % / 5.8 %
    # for seed 0 under ONEDNN_MAX_CPU_ISA=AVX2 / TF_ENABLE_ONEDNN_OPTS=0 (Intel Xeon).
    shares = unconditional_digit_shares(os.environ["DCGAN_TEST_DATA_DIR"], unconditional_layers(32, 32))
    assert shares.min() >= 0.015, shares


COLOURS = np.array([[220, 30, 30], [30, 200, 30], [30, 30, 220]], np.uint8)


def colour_classes(n, size=64, seed=0):
    """n pictures of a disc on white, class k's disc in colour k (red, green, blue), at random places and sizes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(COLOURS)
    images = np.full((n, size, size, 3), 255, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for image, k in zip(images, labels):
        cy, cx, r = size / 2 + rng.uniform(-6, 6), size / 2 + rng.uniform(-6, 6), rng.uniform(10, 18)
        image[np.hypot(yy - cy, xx - cx) < r] = COLOURS[k]
    return images, labels


@pytest.mark.learning
@pytest.mark.slow
@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_the_conditional_folder_model_draws_each_class_in_its_colour_at_64x64(conditioning):
    from data import shuffled_batches
    from model import build_dcgan
    images, labels = colour_classes(192)
    config = dict(y_dim=3, z_dim=16, output_height=64, output_width=64, c_dim=3, gf_dim=8, df_dim=8, gfc_dim=32,
                  dfc_dim=32, z_dist="uniform_signed", ema_decay=0.0, seed=0, arch="dcgan", loss="gan",
                  spectral_norm=False, layers=4, conditioning=conditioning)
    dcgan = build_dcgan(config, g_steps=1, learning_rate=1e-3)
    step = tf.function(dcgan.train_step, autograph=False)
    batches = iter(shuffled_batches(images, labels, 32, 3, seed=0))
    for _ in range(STEPS_TO_COLOUR):
        step(next(batches))
    z = dcgan.sample_z(60, key=99)
    # The mean colour of the pictures' centres, a row per class asked: its own channel well above the others.
    centres = np.stack([dcgan.sample(z, tf.fill([60], k)).numpy()[:, 24:40, 24:40].reshape(-1, 3).mean(0)
                        for k in range(3)])
    margins = [centres[k, k] - np.delete(centres[k], k).max() for k in range(3)]
    assert min(margins) > 0.1, centres.round(2)  # a model deaf to the class has a margin of 0 or less


STEPS_TO_COLOUR = 400  # measured: docs/tests.md


def bar_pictures(n, seed):
    """bar_digits drawn at 32x32, as a grayscale folder would give them: uint8 [n, 32, 32, 1]."""
    images, _ = bar_digits(n, seed)
    return np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]


def test_folder_figures_of_the_folder_itself_sit_at_the_floor_and_of_a_collapse_far_above():
    import evaluate
    classifier, _ = evaluate.shipped_classifier()
    real, other = bar_pictures(300, 0), bar_pictures(300, 1)
    itself = evaluate.folder_quality(classifier, real, real, other)
    assert itself["fid"] < 1e-6 < itself["real"]["fid"]
    assert itself["class_shares"] == itself["real"]["class_shares"]
    assert sum(itself["class_shares"]) == pytest.approx(1.0) and itself["samples"] == itself["real_samples"] == 300
    collapsed = evaluate.folder_quality(classifier, np.repeat(real[:1], 300, axis=0), real, other)
    assert max(collapsed["class_shares"]) == 1.0 and collapsed["min_class_share"] == 0.0
    assert collapsed["fid"] > 10 * itself["real"]["fid"]


@pytest.mark.full
def test_eval_of_a_grayscale_folder_run_writes_fid_and_the_classes_read(tmp_path):
    folder = tmp_path / "data" / "bars"
    folder.mkdir(parents=True)
    for i, image in enumerate(bar_pictures(64, 0)):
        Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
    rc, out = run_main(["--dataset=bars", "--data_dir=data", "--input_fname_pattern=*.png", "--output_height=32",
                        *TINY_FOLDER, "--train", "--epoch=1", "--eval", "--eval_n=4"], tmp_path)
    assert rc == 0, out
    assert "in the MNIST classifier's features (real vs real:" in out and "digit-like folders only" in out
    figures = json.loads((tmp_path / "samples" / "bars_8_32_32" / "eval.json").read_text())
    assert figures["step"] == 8 and figures["samples"] == 40 and figures["real_samples"] == 32
    assert len(figures["class_shares"]) == 10 and sum(figures["class_shares"]) == pytest.approx(1.0)
    assert figures["fid"] > 0 and figures["real"]["fid"] > 0
