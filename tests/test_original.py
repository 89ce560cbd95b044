"""The port is the original, weight for weight: carpedm20's DCGAN-tensorflow written as its TF1 graph
(tests/original_tf1.py), given random weights and batch-norm statistics, trained one step (so that Adam
has moments), saved with tf.compat.v1.train.Saver, then imported; our generator's images and our
discriminator's logits must equal the TF1 graph's on the same inputs."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import original
from conftest import ROOT
from model import build_dcgan
from original_tf1 import Original
from utils import DCGANError

v1 = tf.compat.v1
BATCH = 6
# Widths unlike the defaults and unlike each other, so that a width read from the wrong variable shows.
WIDTHS = dict(z_dim=7, gf_dim=6, df_dim=5, gfc_dim=24, dfc_dim=20)
STEP = 7
# The largest difference allowed, relative to the largest magnitude of the TF1 graph's output.
TOLERANCE = 1e-5

# Its module-scoped fixture is costly: the whole file runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("original")


def random_value(variable, rng):
    name, shape = variable.op.name, variable.shape.as_list()
    if name.endswith(("gamma", "moving_variance")):
        return rng.uniform(0.5, 1.5, shape)
    if name.endswith(("beta", "moving_mean", "bias", "biases")):
        return rng.normal(0.0, 0.1, shape)
    return rng.normal(0.0, 1 / np.sqrt(np.prod(shape[:-1])), shape)  # weights: layer outputs of order 1


def save_original(folder, height, width, c_dim, y_dim, with_slots=True, seed=0, unbiased=True):
    """Builds the original's graph at this size, with random weights and statistics, one training step
    (D once, G twice), and saves it as the original does (model.b<batch>-<step>); unbiased: its batch
    norm moves the moving variance as TF 1.4 on did (else as before, and as Keras does); returns
    {name: array} of its outputs on fixed inputs (inference mode, then training mode) and the inputs."""
    rng = np.random.default_rng(seed)
    inputs = dict(z=rng.uniform(-1, 1, (BATCH, WIDTHS["z_dim"])).astype(np.float32),
                  x=rng.uniform(0 if y_dim else -1, 1, (BATCH, height, width, c_dim)).astype(np.float32),
                  y=np.eye(y_dim, dtype=np.float32)[rng.integers(0, y_dim, BATCH)] if y_dim else None)
    with tf.Graph().as_default():
        gan = Original(BATCH, height, width, c_dim, y_dim, **WIDTHS, unbiased=unbiased)
        z = v1.placeholder(tf.float32, [BATCH, WIDTHS["z_dim"]])
        x = v1.placeholder(tf.float32, [BATCH, height, width, c_dim])
        y = v1.placeholder(tf.float32, [BATCH, y_dim]) if y_dim else None
        fake = gan.generator(z, y)
        real_logits = gan.discriminator(x, y)
        sampler = gan.generator(z, y, reuse=True, train=False)
        fake_logits = gan.discriminator(fake, y, reuse=True)
        d_inference = gan.discriminator(x, y, reuse=True, train=False)
        model_saver = v1.train.Saver()  # made before the optimisers, as the original's: no Adam slots
        loss = tf.nn.sigmoid_cross_entropy_with_logits
        d_loss = tf.reduce_mean(loss(logits=real_logits, labels=tf.ones_like(real_logits))) + \
            tf.reduce_mean(loss(logits=fake_logits, labels=tf.zeros_like(fake_logits)))
        g_loss = tf.reduce_mean(loss(logits=fake_logits, labels=tf.ones_like(fake_logits)))
        variables = v1.trainable_variables()
        d_optim = v1.train.AdamOptimizer(2e-4, beta1=0.5).minimize(d_loss, var_list=[v for v in variables if "d_" in v.name])
        g_optim = v1.train.AdamOptimizer(2e-4, beta1=0.5).minimize(g_loss, var_list=[v for v in variables if "g_" in v.name])
        saver = v1.train.Saver() if with_slots else model_saver
        feed = {z: inputs["z"], x: inputs["x"], **({y: inputs["y"]} if y_dim else {})}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for variable in v1.global_variables():
                if "Adam" not in variable.op.name and "power" not in variable.op.name:
                    sess.run(variable.assign(random_value(variable, rng).astype(np.float32)))
            for train_op in (d_optim, g_optim, g_optim):
                sess.run(train_op, feed)
            saver.save(sess, os.path.join(folder, f"model.b{BATCH}"), global_step=STEP)
            outputs = dict(zip(["sample", "d_inference"], sess.run([sampler, d_inference], feed)))
            outputs["slots"] = {v.op.name: sess.run(v) for v in v1.global_variables() if "Adam" in v.op.name}
            outputs["fake"] = sess.run(fake, feed)  # training-mode batch norm: moves G's moving statistics
            outputs["d_train"] = sess.run(real_logits, feed)
            outputs["moved"] = {v.op.name: sess.run(v) for v in v1.global_variables() if "moving" in v.op.name}
    return outputs, inputs


def imported(folder, moving_variance="unbiased"):
    """(our DCGAN with the checkpoint in folder loaded, whether it had Adam slots, the model's settings);
    moving_variance: the run's setting, which --import_original makes 'unbiased'."""
    prefix = original.checkpoint_prefix(folder)
    tensors = original.read_tensors(prefix)
    saved = original.saved_settings(prefix)
    config = original.infer_config(tensors, saved.get("output_height"), saved.get("output_width"))
    dcgan = build_dcgan({**config, "seed": 0, "z_dist": "uniform_signed", "ema_decay": 0.0, "arch": "dcgan",
                         "loss": "gan", "spectral_norm": False, "moving_variance": moving_variance})
    return dcgan, original.load_weights(dcgan, tensors, original.step_of(prefix)), config


def assert_same(ours, theirs, what):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, what
    error = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert error <= TOLERANCE, f"{what}: largest difference {error:.2e} of the largest value"


# The last case: TF1 before 1.4 and a run with --moving_variance biased (Keras' rule).
# make test checks one size of each branch; the full tier the rest.
@pytest.mark.parametrize("height, width, c_dim, y_dim, with_slots, unbiased", [
    (28, 28, 1, 10, True, True), (64, 64, 3, 0, True, True),
    *(pytest.param(*case, marks=pytest.mark.full) for case in [
        (64, 64, 3, 10, False, True), (28, 28, 1, 0, False, True), (25, 37, 3, 0, True, True),
        (28, 28, 1, 10, True, False)])])
def test_the_imported_networks_compute_what_the_original_graph_computes(tmp_path, height, width, c_dim, y_dim,
                                                                        with_slots, unbiased):
    """Also: the Adam moments come with the weights where the checkpoint has them (as the original's own
    Saver, made before its optimisers, has not); otherwise the optimisers start afresh."""
    folder = tmp_path / "checkpoint"
    theirs, inputs = save_original(str(folder), height, width, c_dim, y_dim, with_slots, unbiased=unbiased)
    if not y_dim and height != 64:  # sizes the shapes leave open come from FLAGS.json, written beside the folder
        (tmp_path / "FLAGS.json").write_text(f'{{"output_height": {height}, "output_width": {width}}}')
    dcgan, slots, config = imported(str(folder), "unbiased" if unbiased else "biased")
    assert (config["output_height"], config["output_width"], config["c_dim"], config["y_dim"]) == (height, width, c_dim, y_dim)
    assert {k: config[k] for k in WIDTHS if y_dim or k not in ("gfc_dim", "dfc_dim")} == \
        {k: v for k, v in WIDTHS.items() if y_dim or k not in ("gfc_dim", "dfc_dim")}
    z, x, y = inputs["z"], inputs["x"], inputs["y"]
    assert_same(dcgan.generator(z, y, training=False), theirs["sample"], "G in inference mode")
    assert_same(dcgan.discriminator(x, y, training=False), theirs["d_inference"], "D in inference mode")
    assert_same(dcgan.generator(z, y, training=True), theirs["fake"], "G in training mode")
    assert_same(dcgan.discriminator(x, y, training=True), theirs["d_train"], "D in training mode")
    ours = {original.original_name(v.path): v.numpy() for v in dcgan.generator.variables + dcgan.discriminator.variables}
    for name, value in theirs["moved"].items():  # one training-mode call each moved the same statistics
        assert_same(ours[name], value, name)
    assert slots == with_slots
    assert (int(dcgan.d_optimizer.iterations), int(dcgan.g_optimizer.iterations)) == (STEP, 2 * STEP)
    for optimizer, network in ((dcgan.d_optimizer, dcgan.discriminator), (dcgan.g_optimizer, dcgan.generator)):
        for variable in network.trainable_variables:
            index, name = optimizer._get_variable_index(variable), original.original_name(variable.path)
            moments = optimizer._momentums[index].numpy(), optimizer._velocities[index].numpy()
            if with_slots:
                np.testing.assert_array_equal(moments[0], theirs["slots"][name + "/Adam"])
                np.testing.assert_array_equal(moments[1], theirs["slots"][name + "/Adam_1"])
            else:
                assert not np.any(moments[0]) and not np.any(moments[1]), name


@pytest.fixture(scope="module")
def conditional_checkpoint(tmp_path_factory):
    """The original's conditional MNIST model (tiny), saved as it saves: out/<run>/checkpoint/model.b6-7."""
    folder = tmp_path_factory.mktemp("original") / "out" / "mnist" / "checkpoint"
    folder.mkdir(parents=True)
    save_original(str(folder), 28, 28, 1, 10)
    return folder


def copy_of(checkpoint, tmp_path):
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    return copy


def test_the_checkpoint_is_found_from_a_moved_folder_or_any_of_its_files(conditional_checkpoint, tmp_path):
    # The original's list holds the absolute paths of the machine that trained it.
    moved = copy_of(conditional_checkpoint, tmp_path)
    assert str(conditional_checkpoint) in (moved / "checkpoint").read_text()
    prefix = str(moved / f"model.b{BATCH}-{STEP}")
    assert original.checkpoint_prefix(str(moved)) == prefix
    assert original.checkpoint_prefix(prefix + ".index") == prefix
    assert original.checkpoint_prefix(prefix + ".data-00000-of-00001") == prefix
    (moved / "checkpoint").unlink()
    assert original.checkpoint_prefix(str(moved)) == prefix
    assert original.step_of(prefix) == STEP


def rewrite(folder, change):
    """Saves the checkpoint in folder again with change({name: array}) as its tensors."""
    prefix = original.checkpoint_prefix(str(folder))
    tensors = change(original.read_tensors(prefix))
    with tf.Graph().as_default():
        variables = [v1.get_variable(name.replace("/", "__"), initializer=value) for name, value in tensors.items()]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(dict(zip(tensors, variables))).save(sess, prefix)


def without(name):
    return lambda tensors: {k: v for k, v in tensors.items() if k != name}


def renamed(old, new):
    return lambda tensors: {(new if k == old else k): v for k, v in tensors.items()}


def resized(name, shape):
    return lambda tensors: {**tensors, name: np.zeros(shape, np.float32)}


@pytest.mark.parametrize("change, message", [
    (without("discriminator/d_bn2/moving_mean"), "the checkpoint has no discriminator/d_bn2/moving_mean: "),
    (renamed("generator/g_h0_lin/Matrix", "generator/g_h0_lin/kernel"), "the checkpoint has no generator/g_h0_lin/Matrix"),
    (resized("generator/g_h1_lin/Matrix", [34, 6 * 2 * 5 * 5]), "the checkpoint's generator starts from 25 pixels, "
                                                              "which 28x28 images (halved to 7x7) do not have"),
    (resized("generator/g_h1_lin/Matrix", [34, 6 * 2 * 12]), "the checkpoint's generator starts from 12 pixels, "
                                                             "not a square map"),
    (resized("discriminator/d_h2_lin/Matrix", [99, 20]), "discriminator/d_h2_lin/Matrix in the checkpoint is [99, 20], "
                                                         "where the model its other variables describe has [745, 20]"),
    (without("generator/g_h2/w/Adam_1"), "the checkpoint has Adam slots, but not generator/g_h2/w/Adam_1"),
])
def test_a_damaged_checkpoint_names_the_first_variable_at_fault(conditional_checkpoint, tmp_path, change, message):
    folder = copy_of(conditional_checkpoint, tmp_path)
    rewrite(folder, change)
    with pytest.raises(DCGANError, match="^" + re.escape(message)):
        kwargs = {"output_height": 28, "output_width": 28} if "28x28" in message else {}
        prefix = original.checkpoint_prefix(str(folder))
        tensors = original.read_tensors(prefix)
        config = original.imported_config(tensors, prefix, dict(dataset="mnist", batch_size=BATCH, seed=0,
                                                                z_dist="uniform_signed", **kwargs), set(kwargs))
        original.load_weights(build_dcgan(config), tensors, STEP)


def test_another_models_checkpoint_gets_one_line(tmp_path):
    ours = tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([3])))
    prefix = ours.write(str(tmp_path / "other" / "ckpt"))
    with pytest.raises(DCGANError, match="^the checkpoint has no generator/g_h0_lin/Matrix: it is not one of "
                                         r"DCGAN-tensorflow's models \(or the variable was renamed\)$"):
        original.infer_config(original.read_tensors(prefix))


def run_main(cwd, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.full
def test_main_imports_the_original_then_samples_exports_and_trains_on(conditional_checkpoint, tmp_path, data_dir):
    done = run_main(tmp_path, "--dataset=mnist", f"--import_original={conditional_checkpoint}", "--export",
                    f"--batch_size={BATCH}", "--train_size=12", "--seed=1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"DCGAN-tensorflow's conditional, 10 classes model, 28x28x1, z_dim 7, gf_dim 6, df_dim 5, gfc_dim 24, " \
           f"dfc_dim 20, step {STEP}" in done.stdout, done.stdout
    run = tmp_path / "checkpoints" / f"mnist_{BATCH}_28_28"
    assert (run / f"ckpt-{STEP}.index").exists() and (run / "config.json").exists()
    assert json.loads((run / "config.json").read_text())["moving_variance"] == "unbiased"  # as the original's
    assert (tmp_path / "export" / f"mnist_{BATCH}_28_28" / str(STEP) / "saved_model.pb").exists()
    # With --export as with no command: a sample grid too (docs/original.md says so).
    assert (tmp_path / "samples" / f"mnist_{BATCH}_28_28" / f"test_{STEP:06d}.png").exists()
    trained = run_main(tmp_path, "--dataset=mnist", f"--data_dir={data_dir}", "--train", "--epoch=5",
                       f"--batch_size={BATCH}")  # 2 steps an epoch: from step 7 to 10
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "Restored checkpoints/mnist_6_28_28/ckpt-7" in trained.stdout, trained.stdout
    assert (run / "ckpt-10.index").exists(), trained.stdout + trained.stderr
    again = run_main(tmp_path, "--dataset=mnist", f"--import_original={conditional_checkpoint}", f"--batch_size={BATCH}")
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == \
        f"Error: run 'mnist_{BATCH}_28_28' already exists in checkpoints/mnist_{BATCH}_28_28: import under another " \
        "--out_name", again.stderr


@pytest.mark.full
def test_main_refuses_a_truncated_checkpoint_in_one_line_and_writes_nothing(conditional_checkpoint, tmp_path):
    folder = copy_of(conditional_checkpoint, tmp_path)
    data = folder / f"model.b{BATCH}-{STEP}.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    done = run_main(tmp_path, "--dataset=mnist", f"--import_original={folder}")
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot read ") and "from checkpoint" in last and "Traceback" not in done.stderr, \
        done.stderr
    assert not (tmp_path / "checkpoints").exists()
