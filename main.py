"""Train, sample, visualise and export the class-conditional DCGAN.

    python main.py --dataset mnist --train            # train (resumes if a checkpoint exists)
    python main.py --dataset mnist                    # sample grid from the latest checkpoint
    python main.py --dataset mnist --export           # SavedModel for TF Serving
    python main.py --dataset mnist --visualize        # latent-walk GIF
    python main.py --dataset mnist --generate --labels 3,1,4 --n_per_label 8 --seed 7
    python main.py --dataset mnist --eval                 # class accuracy, FID, diversity
    python main.py --dataset mnist --demo                 # web page at http://127.0.0.1:7860
"""
import glob
import json
import os
import random
import shutil
import sys

# TF's C++ logs (CUDA probing on CPU machines, grappler notes) drown the progress line; set it to 0
# to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TF turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; on an
# AVX2-only AMD EPYC they made the training step 22 % faster too. TF_ENABLE_ONEDNN_OPTS=0 turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np
from absl import app, flags, logging

import utils
from utils import DCGANError

MNIST_LIKE = {"mnist": 28, "fashion_mnist": 28}
NUM_CLASSES = 10
# Flags that fix the model, the variables' shapes or the data order: a run must be resumed with the same ones.
RUN_FLAGS = ("dataset", "batch_size", "train_size", "output_height", "output_width", "z_dim", "z_dist", "c_dim",
             "y_dim", "gf_dim", "df_dim", "gfc_dim", "dfc_dim", "ema_decay", "seed", "arch", "loss", "spectral_norm")
# What runs saved before these flags existed were trained with.
RUN_DEFAULTS = {"arch": "dcgan", "loss": "gan", "spectral_norm": False}
# z's width when --z_dim is not given: the original's 100, CS231N's 96.
Z_DIMS = {"dcgan": 100, "mlp": 96, "cs231n": 96}

flags.DEFINE_integer("epoch", 25, "Epochs to train.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.0002, "Adam learning rate, for both networks.", lower_bound=0.0)
flags.DEFINE_float("beta1", 0.5, "Adam beta1 (momentum term), for both networks.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("train_size", None, "Use at most this many training images (default: all).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("input_height", None, "Height of the input images (MNIST: 28, the only size it has).", lower_bound=1)
flags.DEFINE_integer("input_width", None, "Width of the input images (default: input_height).", lower_bound=1)
flags.DEFINE_integer("output_height", None, "Height of the generated images (MNIST: 28).", lower_bound=4)
flags.DEFINE_integer("output_width", None, "Width of the generated images (default: output_height).", lower_bound=4)
flags.DEFINE_string("dataset", "mnist", f"Dataset: one of {', '.join(MNIST_LIKE)}, read from "
                    "<data_dir>/<dataset>/ (the four IDX files, raw or .gz) or else through tensorflow-datasets.")
flags.DEFINE_string("data_dir", "./data", "Folder that holds one sub-folder per dataset.")
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Checkpoints go to <checkpoint_dir>/<out_name>/.")
flags.DEFINE_string("sample_dir", "samples", "Sample grids go to <sample_dir>/<out_name>/.")
flags.DEFINE_string("tensorboard_dir", "logs", "TensorBoard logs go to <tensorboard_dir>/<out_name>/.")
flags.DEFINE_string("export_dir", "export", "SavedModels go to <export_dir>/<out_name>/<step>/.")
flags.DEFINE_string("out_name", "", "Name of this run's folders (default: <dataset>_<batch>_<height>_<width>).")
flags.DEFINE_boolean("train", False, "Train (continuing from the latest checkpoint of the run, if any).")
flags.DEFINE_boolean("crop", False, "Center-crop inputs (kept from the original; MNIST needs no crop).")
flags.DEFINE_boolean("generate", False, "Write a grid of the digits in --labels, --n_per_label of each (one "
                     "column per label, one z per row), from the latest checkpoint or --from_savedmodel.")
flags.DEFINE_string("labels", "all", "With --generate: comma-separated class labels, e.g. 3,1,4, or 'all'.")
flags.DEFINE_integer("n_per_label", 8, "With --generate: images per label.", lower_bound=1)
flags.DEFINE_boolean("save_individual", False, "With --generate: also write one PNG per image.")
flags.DEFINE_string("from_savedmodel", "", "With --generate or --demo: use this exported SavedModel (a version "
                    "folder) instead of the latest checkpoint.")
flags.DEFINE_boolean("demo", False, "Start a web page that draws the digits asked for, from the latest "
                     "checkpoint's export (written first if missing) or --from_savedmodel.")
flags.DEFINE_string("demo_host", "127.0.0.1", "With --demo: address to listen on; 0.0.0.0 lets anyone who can "
                    "reach this machine make it compute.")
flags.DEFINE_integer("demo_port", 7860, "With --demo: port to listen on.", lower_bound=1, upper_bound=65535)
flags.DEFINE_integer("demo_max_images", 400, "With --demo: most images one request may ask for.", lower_bound=1)
flags.DEFINE_boolean("eval", False, "Measure sample quality (class accuracy, FID, intra-class FID, diversity) "
                     "of the latest checkpoint or --eval_savedmodel, print it and write eval.json.")
flags.DEFINE_string("eval_savedmodel", "", "With --eval: evaluate this exported SavedModel (a version folder).")
flags.DEFINE_integer("eval_n", 1000, "Generated images per class for --eval and --eval_freq.", lower_bound=2)
flags.DEFINE_boolean("retrain_classifier", False, "With --eval or --eval_freq: score with a classifier trained "
                     "on this machine and data (cached in <checkpoint_dir>/classifier) instead of the shipped MNIST "
                     "classifier, whose figures compare across machines. Datasets other than mnist always do.")
flags.DEFINE_integer("eval_freq", 0, "While training, evaluate every this many steps (0: never).", lower_bound=0)
flags.DEFINE_boolean("visualize", False, "Write a GIF walking the latent space, every class side by side.")
flags.DEFINE_boolean("export", False, "Write a SavedModel for TensorFlow Serving (after training with --train).")
flags.DEFINE_integer("max_to_keep", 1, "Checkpoints to keep.", lower_bound=1)
flags.DEFINE_integer("sample_freq", 200, "Write a sample grid every this many steps.", lower_bound=1)
flags.DEFINE_integer("ckpt_freq", 200, "Write a checkpoint every this many steps.", lower_bound=1)
flags.DEFINE_integer("z_dim", None, "Dimension of the noise vector z (default: 100; 96 for --arch mlp and "
                     "cs231n, as in CS231N).", lower_bound=1)
flags.DEFINE_enum("arch", "dcgan", list(Z_DIMS), "Networks: dcgan (the original's), mlp (CS231N's fully "
                  "connected GAN) or cs231n (CS231N's convolutional pair); all conditioned on the label.")
flags.DEFINE_enum("loss", "gan", ["gan", "lsgan"], "gan: the original's sigmoid cross-entropy; lsgan: least "
                  "squares on D's raw scores (Mao et al. 2017).")
flags.DEFINE_boolean("spectral_norm", False, "Divide every weight of D by its largest singular value "
                     "(Miyato et al. 2018, one power iteration per D update); D then has no batch norm.")
flags.DEFINE_enum("z_dist", "uniform_signed", ["uniform_signed", "uniform_unsigned", "normal"],
                  "Distribution of z: U(-1,1), U(0,1) or N(0,1).")
flags.DEFINE_boolean("G_img_sum", False, "Also write generated images to TensorBoard.")
flags.DEFINE_integer("seed", None, "Random seed for weights, noise and data order (default: random, "
                     "remembered by the run so that resuming keeps the data order).", lower_bound=0)
flags.DEFINE_integer("g_steps", 2, "Generator updates per batch (the original runs two).", lower_bound=1)
flags.DEFINE_float("ema_decay", 0.999, "Sample, evaluate and export with an exponential moving average of the "
                   "generator's weights with this decay (0: the raw weights, as the original).",
                   lower_bound=0.0, upper_bound=0.99999)
flags.DEFINE_boolean("raw_weights", False, "Sample, evaluate and export with the generator's raw weights rather "
                     "than their moving average (the average never changes training, so this gives the original "
                     "recipe's samples from a run trained with the default --ema_decay).")
flags.DEFINE_integer("gf_dim", 64, "Generator filters in the first deconv layer's output.", lower_bound=1)
flags.DEFINE_integer("df_dim", 64, "Discriminator filters in the second conv layer.", lower_bound=1)
flags.DEFINE_integer("gfc_dim", 1024, "Generator fully connected units.", lower_bound=1)
flags.DEFINE_integer("dfc_dim", 1024, "Discriminator fully connected units.", lower_bound=1)
FLAGS = flags.FLAGS


@flags.multi_flags_validator(["dataset", "input_height", "input_width", "output_height", "output_width"],
                             message="MNIST-like datasets have 28x28 images: leave the sizes unset or set them to 28")
def _mnist_sizes(f):
    sizes = [f[k] for k in ("input_height", "input_width", "output_height", "output_width")]
    return f["dataset"] not in MNIST_LIKE or all(s in (None, MNIST_LIKE[f["dataset"]]) for s in sizes)


@flags.validator("dataset", message=f"unknown dataset: use one of {', '.join(MNIST_LIKE)}")
def _known_dataset(name):
    return name in MNIST_LIKE


@flags.validator("out_name", message="--out_name must be a plain folder name (no '/', '..' or leading '.')")
def _plain_name(name):
    return name == "" or (os.path.basename(name) == name and not name.startswith(".") and "\\" not in name)


@flags.validator("labels", message=f"--labels must be 'all' or comma-separated integers in 0..{NUM_CLASSES - 1}")
def _valid_labels(text):
    return parse_labels(text) is not None


def parse_labels(text):
    if text.strip() == "all":
        return list(range(NUM_CLASSES))
    try:
        labels = [int(part) for part in text.split(",")]
    except ValueError:
        return None
    return labels if all(0 <= k < NUM_CLASSES for k in labels) else None


@flags.multi_flags_validator(["train_size", "batch_size"], message="--train_size must be at least --batch_size")
def _enough_images(f):
    return f["train_size"] is None or f["train_size"] >= f["batch_size"]


def run_config():
    """The run's settings that must stay fixed across resumes (see RUN_FLAGS)."""
    size = MNIST_LIKE[FLAGS.dataset]
    config = {name: getattr(FLAGS, name, None) for name in RUN_FLAGS}
    config.update(output_height=size, output_width=size, c_dim=1, y_dim=NUM_CLASSES,
                  z_dim=FLAGS.z_dim or Z_DIMS[FLAGS.arch])
    return config


def run_name(config):
    """--out_name, or <dataset>_<batch>_<height>_<width> with the arch, loss and spectral norm where
    they are not the original's (mnist_mlp_lsgan_sn_64_28_28)."""
    if FLAGS.out_name:
        return FLAGS.out_name
    variant = [config["arch"], config["loss"], "sn" if config["spectral_norm"] else ""]
    variant = [v for v in variant if v not in ("dcgan", "gan", "")]
    return "_".join([config["dataset"], *variant, str(config["batch_size"]),
                     str(config["output_height"]), str(config["output_width"])])


class Run:
    """A run's folders and its config.json, which pins RUN_FLAGS for later resumes."""

    def __init__(self, config):
        self.name = name = run_name(config)
        self.checkpoints = os.path.join(FLAGS.checkpoint_dir, name)
        self.samples = os.path.join(FLAGS.sample_dir, name)
        self.logs = os.path.join(FLAGS.tensorboard_dir, name)
        self.exports = os.path.join(FLAGS.export_dir, name)
        self.config_path = os.path.join(self.checkpoints, "config.json")
        self.config = self.settle_config(config)

    def settle_config(self, config):
        """The run's settings: a new run's from the flags, an existing run's from its config.json.

        A flag given on the command line that contradicts the run's value is an error; flags left
        out take the run's values, so resuming, sampling or exporting need not repeat them.
        """
        saved = self.saved_config()
        if saved is None:
            if config["seed"] is None:
                config["seed"] = random.SystemRandom().randrange(2 ** 31)
            return config
        for name in RUN_FLAGS:
            # Outside training --seed only picks the noise of the images asked for.
            if name == "seed" and not FLAGS.train:
                continue
            if name in FLAGS and FLAGS[name].present and saved.get(name) != config[name]:
                raise DCGANError(f"run '{self.name}' in {self.checkpoints} was made with --{name}={saved.get(name)}, "
                                 f"not {config[name]}: use the same value or another --out_name")
        return saved

    def saved_config(self):
        if not os.path.exists(self.config_path):
            return None
        try:
            with open(self.config_path) as f:
                return {**RUN_DEFAULTS, **json.load(f)}
        except (OSError, ValueError) as e:
            raise DCGANError(f"cannot read {self.config_path}: {e}") from None

    def save_config(self):
        utils.save_json(self.config, self.config_path)


def build_model(config):
    import keras
    from model import DCGAN
    keras.utils.set_random_seed(config["seed"])
    dcgan = DCGAN(y_dim=config["y_dim"], z_dim=config["z_dim"], output_height=config["output_height"],
                  output_width=config["output_width"], c_dim=config["c_dim"], gf_dim=config["gf_dim"],
                  df_dim=config["df_dim"], gfc_dim=config["gfc_dim"], dfc_dim=config["dfc_dim"],
                  z_dist=config["z_dist"], g_steps=FLAGS.g_steps, seed=config["seed"],
                  ema_decay=config["ema_decay"], arch=config["arch"], loss=config["loss"],
                  spectral_norm=config["spectral_norm"])
    dcgan.compile(d_optimizer=adam(), g_optimizer=adam())
    dcgan.sample_average = not FLAGS.raw_weights
    return dcgan


def adam():
    import keras
    # epsilon 1e-8 is TF1's AdamOptimizer default, which the original used (Keras' is 1e-7).
    return keras.optimizers.Adam(FLAGS.learning_rate, beta_1=FLAGS.beta1, epsilon=1e-8)


def checkpoint_manager(dcgan, run):
    import tensorflow as tf
    averaged = {"average": dcgan.average} if dcgan.average else {}
    checkpoint = tf.train.Checkpoint(generator=dcgan.generator, discriminator=dcgan.discriminator,
                                     g_optimizer=dcgan.g_optimizer, d_optimizer=dcgan.d_optimizer,
                                     noise=dcgan.noise, **averaged)
    # The manager publishes a checkpoint by rewriting the small 'checkpoint' index file atomically
    # after the data is written, so a kill mid-save leaves the previous checkpoint as the latest.
    # What such a kill leaves behind is a '<prefix>_temp' folder, cleared here.
    for leftover in glob.glob(os.path.join(glob.escape(run.checkpoints), "ckpt-*_temp")):
        shutil.rmtree(leftover, ignore_errors=True)
    return tf.train.CheckpointManager(checkpoint, run.checkpoints, max_to_keep=FLAGS.max_to_keep,
                                      checkpoint_name="ckpt")


def restore(manager, required):
    """Loads the latest checkpoint into the model; returns whether there was one."""
    import tensorflow as tf
    path = manager.latest_checkpoint
    if path is None:
        if required:
            raise DCGANError(f"no checkpoint in {manager.directory}: train first with --train")
        return False
    try:
        manager.checkpoint.restore(path).assert_existing_objects_matched()
    except (ValueError, AssertionError) as e:
        raise DCGANError(f"checkpoint {path} does not fit this model: {first_line(e)}") from None
    except tf.errors.OpError as e:
        raise DCGANError(f"cannot read checkpoint {path}: {first_line(e.message)}") from None
    # The checkpoint brings the optimisers' learning rate back too; the flag given now wins.
    for optimizer in (manager.checkpoint.d_optimizer, manager.checkpoint.g_optimizer):
        optimizer.learning_rate.assign(FLAGS.learning_rate)
    print(f"Restored {path}")
    return True


def save_checkpoint(manager, step):
    import tensorflow as tf
    try:
        return manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:
        raise DCGANError(f"cannot write a checkpoint in {manager.directory} at step {step} "
                         f"({first_line(getattr(e, 'message', e))}); the last one written still loads: "
                         f"{manager.latest_checkpoint}") from None


def first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def fixed_samples(config, z_dim, rows=10):
    """Sample inputs for grids: one z per row, one class per column (labels as integers)."""
    rng = np.random.default_rng(config["seed"])
    z = rng.uniform(-1, 1, (rows, z_dim)).astype(np.float32)
    return np.repeat(z, NUM_CLASSES, axis=0), np.tile(np.arange(NUM_CLASSES), rows)


def sample_grid(dcgan, z, labels):
    images = dcgan.sample(z, labels).numpy()
    return utils.make_grid(images, len(images) // NUM_CLASSES, NUM_CLASSES)


def load_training_images(config):
    """The run's training images and labels, in an order fixed by its seed, at most --train_size."""
    # An explicit --data_dir means "use my files": no download attempt when they are missing.
    images, labels = utils.load_labelled_images(FLAGS.dataset, FLAGS.data_dir,
                                                download=not FLAGS["data_dir"].present)
    order = np.random.default_rng(config["seed"]).permutation(len(images))[:FLAGS.train_size]
    if len(order) < FLAGS.batch_size:
        raise DCGANError(f"{len(order)} images are fewer than one batch of {FLAGS.batch_size}")
    return images[order], labels[order]


def train(dcgan, manager, run):
    import tensorflow as tf
    images, labels = load_training_images(run.config)
    steps_per_epoch = len(images) // FLAGS.batch_size
    total = FLAGS.epoch * steps_per_epoch
    start = int(dcgan.step)
    run.save_config()
    if start >= total:
        print(f"Run '{run.name}' already trained {start} steps ({FLAGS.epoch} epochs); raise --epoch to go on.")
        return
    print(f"Training on {len(images)} images, {steps_per_epoch} steps per epoch, steps {start}..{total}")
    batches = iter(utils.shuffled_batches(images, labels, FLAGS.batch_size, NUM_CLASSES,
                                          run.config["seed"], start))
    train_step = tf.function(dcgan.train_step)
    sample_z, sample_y = fixed_samples(run.config, dcgan.z_dim)
    os.makedirs(run.samples, exist_ok=True)
    progress = utils.Progress(total, start)
    reference = load_eval_reference() if FLAGS.eval_freq else None
    quality = ""
    with tf.summary.create_file_writer(run.logs).as_default(), utils.StopSignals() as stop:
        for step in range(start + 1, total + 1):
            x, y = next(batches)
            logs = {k: float(v) for k, v in train_step((x, y)).items()}
            if not all(np.isfinite(list(logs.values()))):
                kept = manager.latest_checkpoint or "none was written yet"
                raise DCGANError(f"non-finite loss at step {step} ({format_logs(logs)}); nothing of this step "
                                 f"was saved, the last good checkpoint is kept: {kept}")
            for name, value in logs.items():
                tf.summary.scalar(name, value, step=step)
            epoch, batch = divmod(step - 1, steps_per_epoch)
            if reference and (step % FLAGS.eval_freq == 0 or step == total):
                quality = log_quality(evaluate_model(dcgan, reference), step)
            progress.update(step, f"epoch {epoch + 1}/{FLAGS.epoch} {format_logs(logs)}{quality}",
                            force=bool(quality) and step % FLAGS.eval_freq == 0)
            if step % FLAGS.sample_freq == 0 or step == total:
                write_samples(dcgan, run, sample_z, sample_y, x, y, step, f"train_{epoch:02d}_{batch:04d}.png")
            if step % FLAGS.ckpt_freq == 0 or step == total or stop.signal:
                save_checkpoint(manager, step)
            if stop.signal:
                progress.close()
                raise Stopped(stop.signal, f"stopped by {stop.signal.name} at step {step}; saved "
                                           f"{manager.latest_checkpoint}. Run the same command to resume.")
    progress.close()
    print(f"Done: {total} steps. Checkpoint {manager.latest_checkpoint}, samples in {run.samples}")


class Stopped(DCGANError):
    """Training stopped on request (SIGINT, SIGTERM) after saving; exits with 128 + the signal number."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def log_quality(result, step):
    """Writes evaluation figures to TensorBoard; returns them as text for the progress line."""
    import tensorflow as tf
    for name in ("accuracy", "fid", "intra_fid", "min_diversity"):
        tf.summary.scalar(f"eval/{name}", result[name], step=step)
    return f" | acc {result['accuracy']:.3f} FID {result['fid']:.2f} intra-FID {result['intra_fid']:.2f}"


def format_logs(logs):
    names = {"d_loss": "d_loss", "g_loss": "g_loss", "d_real": "D(x)", "d_fake": "D(G(z))"}
    return " ".join(f"{label} {logs[key]:.3f}" for key, label in names.items() if key in logs)


def write_samples(dcgan, run, z, labels, real_x, real_y, step, filename):
    import tensorflow as tf
    grid = sample_grid(dcgan, z, labels)
    utils.save_image(grid, os.path.join(run.samples, filename))
    y = tf.one_hot(labels, NUM_CLASSES)
    tf.summary.histogram("z", z, step=step)
    tf.summary.histogram("d", tf.sigmoid(dcgan.discriminator(real_x, real_y, training=False)), step=step)
    tf.summary.histogram("d_", tf.sigmoid(dcgan.discriminator(dcgan.generator(z, y), y, training=False)),
                         step=step)
    if FLAGS.G_img_sum:
        tf.summary.image("G", grid[None], step=step)


def visualize(dcgan, run, rows=5, keyframes=5, frames_between=10):
    """GIF that moves each row's z smoothly through random points, every class in its column."""
    rng = np.random.default_rng(run.config["seed"] + 1)
    points = rng.uniform(-1, 1, (keyframes + 1, rows, dcgan.z_dim)).astype(np.float32)
    points[-1] = points[0]
    frames = []
    _, y = fixed_samples(run.config, dcgan.z_dim, rows)
    for a, b in zip(points[:-1], points[1:]):
        for t in np.linspace(0, 1, frames_between, endpoint=False):
            z = np.repeat((1 - t) * a + t * b, NUM_CLASSES, axis=0)
            frames.append(sample_grid(dcgan, z, y))
    path = os.path.join(run.samples, "latent_walk.gif")
    utils.save_gif(frames, path)
    print(f"Wrote {path} ({len(frames)} frames)")


def export(dcgan, run):
    from model import export_savedmodel
    step = int(dcgan.step)
    path = export_savedmodel(dcgan, os.path.join(run.exports, str(step)), step)
    print(f"Exported SavedModel to {path}")
    return path


def current_export(dcgan, run):
    """The export of the checkpoint's step, written if there is none yet."""
    path = os.path.join(run.exports, str(int(dcgan.step)))
    return path if os.path.exists(os.path.join(path, "saved_model.pb")) else export(dcgan, run)


def run_demo(path, eval_path):
    import demo
    demo.serve(load_savedmodel(path), path, FLAGS.demo_host, FLAGS.demo_port, FLAGS.demo_max_images, eval_path)


def load_savedmodel(path):
    from model import ExportedGenerator
    try:
        return ExportedGenerator(path)
    except ValueError as e:
        raise DCGANError(str(e)) from None


def write_generated(model, sample_dir):
    """--generate: one grid (a column per label, a row per seed) and, if asked, one PNG per image."""
    from model import generate
    labels = parse_labels(FLAGS.labels)
    seed = FLAGS.seed if FLAGS.seed is not None else random.SystemRandom().randrange(2 ** 31)
    images = generate(model, labels, n=FLAGS.n_per_label, seed=seed)
    stem = f"generate_{'-'.join(map(str, labels))}_seed{seed}"
    os.makedirs(sample_dir, exist_ok=True)
    path = os.path.join(sample_dir, stem + ".png")
    utils.save_image(utils.label_columns(images), path)
    print(f"Wrote {path} ({len(labels)} labels x {FLAGS.n_per_label}, seed {seed})")
    if FLAGS.save_individual:
        folder = os.path.join(sample_dir, stem)
        os.makedirs(folder, exist_ok=True)
        for label, row in zip(labels, images):
            for j, image in enumerate(row):
                utils.save_image(image, os.path.join(folder, f"label{label}_seed{seed + j}.png"))
        print(f"Wrote {images.shape[0] * images.shape[1]} images to {folder}")


EVAL_SEED = 12345  # evaluation noise: fixed, so that figures of two checkpoints compare


def load_eval_reference():
    import evaluate
    try:
        return evaluate.load_reference(FLAGS.data_dir, FLAGS.dataset, os.path.join(FLAGS.checkpoint_dir, "classifier"),
                                       download=not FLAGS["data_dir"].present, retrain=FLAGS.retrain_classifier)
    except ValueError as e:
        raise DCGANError(f"cannot evaluate: {e}") from None


def evaluate_model(model, reference):
    from model import generate
    images = generate(model, list(range(NUM_CLASSES)), n=FLAGS.eval_n, seed=EVAL_SEED)
    labels = np.repeat(np.arange(NUM_CLASSES), FLAGS.eval_n)
    return reference.evaluate(images.reshape(-1, *images.shape[2:]), labels)


def write_eval(model, sample_dir, step):
    import evaluate
    reference = load_eval_reference()
    try:
        result = {"step": step, **evaluate_model(model, reference)}
    except ValueError as e:
        raise DCGANError(f"cannot evaluate: {e}") from None
    print(evaluate.format_summary(result))
    path = os.path.join(sample_dir, "eval.json")
    utils.save_json(result, path)
    print(f"Wrote {path}")


def main(argv):
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise DCGANError(f"unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)")
    if FLAGS.generate and FLAGS.from_savedmodel:
        write_generated(load_savedmodel(FLAGS.from_savedmodel), os.path.join(FLAGS.sample_dir, run_name(run_config())))
        return
    if FLAGS.demo and FLAGS.from_savedmodel:
        run_demo(FLAGS.from_savedmodel, os.path.join(FLAGS.sample_dir, run_name(run_config()), "eval.json"))
        return
    if FLAGS.eval and FLAGS.eval_savedmodel:
        exported = load_savedmodel(FLAGS.eval_savedmodel)
        write_eval(exported, os.path.join(FLAGS.sample_dir, run_name(run_config())), exported.step)
        return
    run = Run(run_config())
    dcgan = build_model(run.config)
    manager = checkpoint_manager(dcgan, run)
    restore(manager, required=not FLAGS.train)
    if FLAGS.train:
        train(dcgan, manager, run)
    if FLAGS.generate:
        write_generated(dcgan, run.samples)
    if FLAGS.eval:
        write_eval(dcgan, run.samples, int(dcgan.step))
    if not (FLAGS.train or FLAGS.generate or FLAGS.eval or FLAGS.demo):
        os.makedirs(run.samples, exist_ok=True)
        path = os.path.join(run.samples, f"test_{int(dcgan.step):06d}.png")
        utils.save_image(sample_grid(dcgan, *fixed_samples(run.config, dcgan.z_dim)), path)
        print(f"Wrote {path}")
    if FLAGS.visualize:
        visualize(dcgan, run)
    if FLAGS.export:
        export(dcgan, run)
    if FLAGS.demo:
        run_demo(current_export(dcgan, run), os.path.join(run.samples, "eval.json"))


def run_main(argv):
    try:
        main(argv)
    except Stopped as e:
        print(f"Stopped: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("Stopped: interrupted before training started; nothing was changed.", file=sys.stderr)
        sys.exit(130)
    except (DCGANError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(run_main)
