"""Train, sample, visualise and export the DCGAN: class-conditional on MNIST and labelled image
folders, unconditional on a folder of pictures (celebA, your own).

    python main.py --dataset mnist --train            # train (resumes if a checkpoint exists)
    python main.py --dataset mnist                    # sample grid from the latest checkpoint
    python main.py --dataset mnist --export           # SavedModel for TF Serving
    python main.py --dataset mnist --visualize        # z sweeps (--visualize_option 0..4)
    python main.py --dataset mnist --plot             # loss curves, real vs fake
    python main.py --dataset celebA --input_height 108 --crop --train   # data/celebA/*.jpg at 64x64
    python main.py --dataset mnist --generate --labels 3,1,4 --n_per_label 8 --seed 7
    python main.py --dataset mnist --eval                 # class accuracy, FID, diversity
    python main.py --dataset mnist --demo                 # web page at http://127.0.0.1:7860
"""
import contextlib
import errno
import glob
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import time

# TF's C++ logs (CUDA probing on CPU machines, grappler notes) drown the progress line; set it to 0
# to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TF turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; on an
# AVX2-only AMD EPYC they made the training step 22 % faster too. TF_ENABLE_ONEDNN_OPTS=0 turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np
from absl import app, flags, logging

import distribute
import utils
from utils import DCGANError, first_line

MNIST_LIKE = {"mnist": 28, "fashion_mnist": 28}
NUM_CLASSES = 10
# Flags that fix the model, the variables' shapes or the data: a run must be resumed with the same ones.
RUN_FLAGS = ("dataset", "batch_size", "train_size", "output_height", "output_width", "z_dim", "z_dist", "c_dim",
             "y_dim", "gf_dim", "df_dim", "gfc_dim", "dfc_dim", "ema_decay", "seed", "arch", "loss", "spectral_norm",
             "input_fname_pattern", "crop", "input_height", "input_width")
# What runs saved before these flags existed were trained with.
RUN_DEFAULTS = {"arch": "dcgan", "loss": "gan", "spectral_norm": False, "input_fname_pattern": None, "crop": False,
                "input_height": None, "input_width": None}
# Settings a run's config.json may hold as null: all the data, and an MNIST run's image-folder settings.
UNSET_SETTINGS = ("train_size", "input_fname_pattern", "input_height", "input_width")
PRECISIONS = ["float32", "mixed_bfloat16", "mixed_float16"]
# An image folder's defaults, the original's: 108x108 crops (celebA's faces) drawn at 64x64.
FOLDER_CROP, FOLDER_SIZE = 108, 64
# z's width when --z_dim is not given: the original's 100, CS231N's 96.
Z_DIMS = {"dcgan": 100, "mlp": 96, "cs231n": 96, "curves": 5}
# The 1-D toy: curves a*x^2 + (a - 1), a ~ U(1, 2), made on the fly (this many unless --train_size says).
CURVES, CURVES_N = "curves", 6400

flags.DEFINE_integer("epoch", 25, "Epochs to train.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.0002, "Adam learning rate, for both networks.", lower_bound=0.0)
flags.DEFINE_float("beta1", 0.5, "Adam beta1 (momentum term), for both networks: at least 0, below 1.")
flags.DEFINE_integer("train_size", None, "Use at most this many training images (default: all).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("input_height", None, f"With --crop: height of the centre crop taken from each image of a "
                     f"folder (default {FOLDER_CROP}, the original's for celebA).", lower_bound=1)
flags.DEFINE_integer("input_width", None, "With --crop: width of the crop (default: input_height).", lower_bound=1)
flags.DEFINE_integer("output_height", None, f"Height of the generated images (MNIST: 28; image folders: default "
                     f"{FOLDER_SIZE}).", lower_bound=4)
flags.DEFINE_integer("output_width", None, "Width of the generated images (default: output_height).", lower_bound=4)
flags.DEFINE_string("dataset", "mnist", f"{' or '.join(MNIST_LIKE)}, read from <data_dir>/<dataset>/ (the four IDX "
                    "files, raw or .gz) or else through tensorflow-datasets; any other name is the folder of images "
                    "<data_dir>/<dataset>/ (unconditional; with one sub-folder per class, conditional).")
flags.DEFINE_string("input_fname_pattern", "*.jpg", "Image folders: the files to train on (glob pattern).")
flags.DEFINE_enum("c_dim", None, ["1", "3"], "Image folders: colour channels, 1 (grayscale) or 3 (RGB); default 1 "
                  "if every image is grayscale, else 3. Transparent pixels are composited onto white.")
flags.DEFINE_string("data_dir", "./data", "Folder that holds one sub-folder per dataset.")
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Checkpoints go to <checkpoint_dir>/<out_name>/.")
flags.DEFINE_string("sample_dir", "samples", "Sample grids go to <sample_dir>/<out_name>/.")
flags.DEFINE_string("tensorboard_dir", "logs", "TensorBoard logs go to <tensorboard_dir>/<out_name>/.")
flags.DEFINE_string("export_dir", "export", "SavedModels go to <export_dir>/<out_name>/<step>/.")
flags.DEFINE_string("out_name", "", "Name of this run's folders (default: <dataset>_<batch>_<height>_<width>).")
flags.DEFINE_boolean("train", False, "Train (continuing from the latest checkpoint of the run, if any).")
flags.DEFINE_boolean("crop", False, "Image folders: centre-crop input_height x input_width, then resize to the "
                     "output size (without it the whole image is resized). MNIST needs no crop.")
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
flags.DEFINE_boolean("visualize", False, "Write pictures of the latent space to <sample_dir>/<run>/visualize/, "
                     "as --visualize_option says.")
flags.DEFINE_enum("visualize_option", "1", ["0", "1", "2", "3", "4"], "With --visualize, as the original: 0 a grid "
                  "of random samples; 1 a grid per z dimension sweeping it, the rest fixed; 2 GIFs sweeping random "
                  "dimensions; 3 a GIF per dimension from z = 0; 4 those merged in one GIF. Conditional runs also "
                  "get a class x z-interpolation sheet.")
flags.DEFINE_boolean("plot", False, "Write the run's loss curves (from its TensorBoard logs) and a real vs fake "
                     "figure (also written when training ends).")
flags.DEFINE_boolean("export", False, "Write a SavedModel for TensorFlow Serving (after training with --train).")
flags.DEFINE_integer("max_to_keep", 1, "Checkpoints to keep.", lower_bound=1)
flags.DEFINE_integer("sample_freq", 200, "Write a sample grid every this many steps.", lower_bound=1)
flags.DEFINE_integer("ckpt_freq", 200, "Write a checkpoint every this many steps.", lower_bound=1)
flags.DEFINE_integer("z_dim", None, "Dimension of the noise vector z (default: 100; 96 for --arch mlp and "
                     "cs231n, as in CS231N).", lower_bound=1)
flags.DEFINE_enum("arch", "dcgan", list(Z_DIMS), "Networks: curves (the 1-D toy's, which --dataset curves "
                  "takes), dcgan (the original's), mlp (CS231N's fully "
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
flags.DEFINE_enum("strategy", "auto", list(distribute.STRATEGIES), "Training: auto (one device, or all GPUs when "
                  "there are several), one_device, mirrored (every GPU of this machine, or --logical_cpus) or "
                  "multi_worker (the machines in TF_CONFIG). --batch_size is the global batch.")
flags.DEFINE_integer("logical_cpus", 1, "With --strategy mirrored: split the CPU into this many devices (to try "
                     "data parallelism without GPUs).", lower_bound=1)
flags.DEFINE_integer("worker_wait", 300, "With --strategy multi_worker: seconds to wait for every worker to join.",
                     lower_bound=1)
flags.DEFINE_boolean("sync_batch_norm", False, "With several replicas: batch-norm statistics over the global batch "
                     "(one all-reduce per layer and call) instead of each replica's own, as the original per GPU.")
flags.DEFINE_enum("precision", "float32", PRECISIONS, "Number format the networks compute in; weights stay "
                  "float32, so checkpoints are the same either way. mixed_bfloat16: for CPUs with AVX-512 BF16 or "
                  "AMX and GPUs from Ampere on (elsewhere it would be emulated, many times slower: float32 is used, "
                  "with a warning). mixed_float16: for GPUs, losses scaled dynamically.")
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


@flags.validator("dataset", message="--dataset must be mnist, fashion_mnist or a folder name inside --data_dir")
def _dataset_name(name):
    return bool(name) and os.path.basename(name) == name and name not in (".", "..")


@flags.multi_flags_validator(["dataset", "eval", "eval_freq", "eval_savedmodel"],
                             message="--eval and --eval_freq score with an MNIST classifier: they apply to "
                                     f"{' and '.join(MNIST_LIKE)} runs (and --eval to {CURVES}) only")
def _evaluable(f):
    evaluated = f["eval"] or f["eval_freq"] or f["eval_savedmodel"]
    return f["dataset"] in MNIST_LIKE or not evaluated or (f["dataset"] == CURVES and not f["eval_freq"])


@flags.multi_flags_validator(["dataset", "arch", "input_height", "input_width", "output_height", "output_width",
                              "generate", "visualize", "demo"],
                             message=f"--dataset {CURVES} (15-point curves, not images) takes no image sizes, "
                                     "--arch, --generate, --visualize or --demo: its samples are plots")
def _curves_flags(f):
    if f["dataset"] != CURVES:
        return f["arch"] != CURVES
    sizes = [f[k] for k in ("input_height", "input_width", "output_height", "output_width")]
    return f["arch"] in ("dcgan", CURVES) and sizes == [None] * 4 and not (f["generate"] or f["visualize"] or f["demo"])


# absl's bounds let nan through (every comparison with it is false), and Adam divides by 1 - beta1^t.
flags.register_validator("learning_rate", math.isfinite, message="--learning_rate must be a finite number, 0 or more")
flags.register_validator("ema_decay", math.isfinite, message="--ema_decay must be a finite number in 0..0.99999")


@flags.validator("beta1", message="--beta1 must be at least 0 and below 1")
def _beta1_below_one(value):
    return 0 <= value < 1


@flags.validator("out_name", message="--out_name must be a plain folder name (no '/', '..' or leading '.')")
def _plain_name(name):
    return name == "" or (os.path.basename(name) == name and not name.startswith(".") and "\\" not in name)


@flags.multi_flags_validator(["dataset", "labels"],
                             message=f"--labels must be 'all' or comma-separated integers in 0..{NUM_CLASSES - 1}")
def _valid_labels(f):
    return f["dataset"] not in MNIST_LIKE or parse_labels(f["labels"], utils.digit_names(NUM_CLASSES)) is not None


def parse_labels(text, class_names):
    """Class indices from 'all' or comma-separated class names or indices; None if one is not a class."""
    if text.strip() == "all":
        return list(range(len(class_names)))
    labels = []
    for part in (p.strip() for p in text.split(",")):
        if part in class_names:
            labels.append(class_names.index(part))
        elif part.isdigit() and int(part) < len(class_names):
            labels.append(int(part))
        else:
            return None
    return labels


def labels_asked(class_names):
    """--labels as class indices for a conditional model; None for an unconditional one."""
    if not class_names:
        if FLAGS["labels"].present:
            raise DCGANError("this model is unconditional (its images have no classes): leave --labels out")
        return None
    labels = parse_labels(FLAGS.labels, class_names)
    if labels is None:
        raise DCGANError(f"--labels must be 'all' or comma-separated classes of this model: {', '.join(class_names)} "
                         f"(or their indices 0..{len(class_names) - 1})")
    return labels


@flags.multi_flags_validator(["from_savedmodel", "generate", "demo", "train"],
                             message="--from_savedmodel draws from an export instead of the checkpoints: it goes with "
                                     "--generate or --demo, and not with --train")
def _from_savedmodel(f):
    return not f["from_savedmodel"] or ((f["generate"] or f["demo"]) and not f["train"])


@flags.multi_flags_validator(["eval_savedmodel", "eval", "train"],
                             message="--eval_savedmodel scores an export instead of the checkpoints: it goes with "
                                     "--eval, and not with --train")
def _eval_savedmodel(f):
    return not f["eval_savedmodel"] or (f["eval"] and not f["train"])


@flags.multi_flags_validator(["train_size", "batch_size"], message="--train_size must be at least --batch_size")
def _enough_images(f):
    return f["train_size"] is None or f["train_size"] >= f["batch_size"]


def run_config():
    """The run's settings that must stay fixed across resumes (see RUN_FLAGS). An image folder's channels
    and classes (c_dim, y_dim, class_names) are None until its images are read."""
    config = {name: getattr(FLAGS, name, None) for name in RUN_FLAGS}
    config["z_dim"] = FLAGS.z_dim or Z_DIMS[FLAGS.arch]
    if FLAGS.dataset == CURVES:
        config.update(arch=CURVES, z_dim=FLAGS.z_dim or Z_DIMS[CURVES], output_height=1,
                      output_width=utils.CURVE_POINTS, c_dim=1, y_dim=0, class_names=[],
                      **{name: RUN_DEFAULTS[name] for name in ("input_fname_pattern", "crop", "input_height",
                                                                "input_width")})
        return config
    if FLAGS.dataset in MNIST_LIKE:
        size = MNIST_LIKE[FLAGS.dataset]
        config.update(output_height=size, output_width=size, c_dim=1, y_dim=NUM_CLASSES,
                      **{name: RUN_DEFAULTS[name] for name in ("input_fname_pattern", "crop", "input_height",
                                                                "input_width")})
        return config
    height = FLAGS.output_height or FOLDER_SIZE
    crop_height = FLAGS.input_height or FOLDER_CROP
    config.update(output_height=height, output_width=FLAGS.output_width or height, input_height=crop_height,
                  input_width=FLAGS.input_width or crop_height, c_dim=FLAGS.c_dim and int(FLAGS.c_dim),
                  y_dim=None, class_names=None)
    return config


def class_names(config):
    """The run's class names ([] when unconditional); MNIST runs' are its digits."""
    return config.get("class_names") or utils.digit_names(config["y_dim"])


def run_name(config):
    """--out_name, or <dataset>_<batch>_<height>_<width> with the arch, loss and spectral norm where
    they are not the original's (mnist_mlp_lsgan_sn_64_28_28)."""
    if FLAGS.out_name:
        return FLAGS.out_name
    variant = [config["arch"], config["loss"], "sn" if config["spectral_norm"] else ""]
    variant = [v for v in variant if v not in ("dcgan", "gan", "", CURVES)]
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
            if checkpoint_prefixes(self.checkpoints):
                print(f"Warning: {self.checkpoints} holds checkpoints but no config.json: the run's settings are "
                      f"taken from the flags given now{'' if FLAGS['seed'].present else ', with a new --seed'}",
                      file=sys.stderr)
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
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise DCGANError(f"cannot read {self.config_path}: {e}") from None
        if not isinstance(saved, dict):
            raise DCGANError(f"cannot read {self.config_path}: it holds a JSON {type(saved).__name__}, not the run's "
                             "settings")
        curve_sizes = ("output_height", "output_width") if saved.get("dataset") == CURVES else ()  # 1x15: no flag's
        for name, value in saved.items():
            if name in RUN_FLAGS and name in FLAGS and name not in curve_sizes and not is_flag_value(name, value):
                raise DCGANError(f"cannot read {self.config_path}: its {name}, {json.dumps(value)}, is not a value "
                                 f"--{name} takes")
        return {**RUN_DEFAULTS, **saved}

    def save_config(self):
        utils.save_json(self.config, self.config_path)


def is_flag_value(name, value):
    """Whether value, as read from JSON, is one the flag name takes, within its bounds (an enum's, as
    --c_dim's, compared as text), or None where a run may leave it unset."""
    if value is None:
        return name in UNSET_SETTINGS
    parser = FLAGS[name].parser
    try:
        if isinstance(parser, flags.EnumParser):
            return parser.parse(str(value)) is not None
        return parser.parse(value) == value  # not "100" for 100: the parser would take the text
    except (TypeError, ValueError):
        return False


def build_model(config, strategy=None):
    """The run's DCGAN with its optimisers, its variables placed by strategy (default: one device)."""
    import keras
    import tensorflow as tf
    from model import DCGAN
    keras.utils.set_random_seed(config["seed"])
    precision = usable_precision(FLAGS.precision)
    with (strategy or tf.distribute.get_strategy()).scope():
        dcgan = DCGAN(y_dim=config["y_dim"], z_dim=config["z_dim"], output_height=config["output_height"],
                      output_width=config["output_width"], c_dim=config["c_dim"], gf_dim=config["gf_dim"],
                      df_dim=config["df_dim"], gfc_dim=config["gfc_dim"], dfc_dim=config["dfc_dim"],
                      z_dist=config["z_dist"], g_steps=FLAGS.g_steps, seed=config["seed"],
                      ema_decay=config["ema_decay"], arch=config["arch"], loss=config["loss"],
                      spectral_norm=config["spectral_norm"], sync_batch_norm=FLAGS.sync_batch_norm,
                      precision=precision)
        dcgan.compile(d_optimizer=adam(), g_optimizer=adam())
    dcgan.sample_average = not FLAGS.raw_weights
    return dcgan


def missing_hardware(precision):
    """What precision lacks here to be faster than float32 (None when nothing)."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if precision == "mixed_bfloat16":
        ampere = [gpu for gpu in gpus
                  if tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) >= (8, 0)]
        if not (ampere if gpus else utils.has_bfloat16_cpu()):
            return "a GPU from Ampere on" if gpus else \
                f"a CPU with AVX-512 BF16 or AMX, which {utils.cpu_model()} lacks"
    if precision == "mixed_float16" and not gpus:
        return "a GPU"
    return None


def usable_precision(precision):
    """precision, or float32 with a warning for mixed_bfloat16 where no device here has bfloat16
    arithmetic; mixed_float16 runs anywhere (on a CPU, slowly, with a warning: to check a GPU setting)."""
    missing = missing_hardware(precision)
    if missing and precision == "mixed_bfloat16":
        print(f"Warning: --precision mixed_bfloat16 needs {missing}; emulated it would be many times slower, "
              "so this runs in float32", file=sys.stderr)
        return "float32"
    if missing:
        print(f"Warning: --precision {precision} is meant for {missing}: here it runs, but slower than float32",
              file=sys.stderr)
    return precision


def adam():
    from model import FusedAdam
    # epsilon 1e-8 is TF1's AdamOptimizer default, which the original used (Keras' is 1e-7).
    return FusedAdam(FLAGS.learning_rate, beta_1=FLAGS.beta1, epsilon=1e-8)


def checkpoint_manager(dcgan, run, folder=None):
    """The manager of the run's checkpoints, written to folder (default: the run's checkpoint folder)."""
    import tensorflow as tf
    averaged = {"average": dcgan.average} if dcgan.average else {}
    checkpoint = tf.train.Checkpoint(generator=dcgan.generator, discriminator=dcgan.discriminator,
                                     g_optimizer=dcgan.g_optimizer, d_optimizer=dcgan.d_optimizer, **averaged)
    return tf.train.CheckpointManager(checkpoint, folder or run.checkpoints, max_to_keep=FLAGS.max_to_keep,
                                      checkpoint_name="ckpt")


def clear_unfinished_saves(folder):
    """The manager publishes a checkpoint by rewriting the small 'checkpoint' index file atomically
    after the data is written, so a kill mid-save leaves the previous checkpoint as the latest, and a
    '<prefix>_temp' folder, cleared here. Only a process that trains the run may: another one's
    would be a save in progress."""
    for leftover in glob.glob(os.path.join(glob.escape(folder), "ckpt-*_temp")):
        shutil.rmtree(leftover, ignore_errors=True)


def checkpoint_prefixes(folder):
    """The checkpoints folder holds (an index file each), oldest first."""
    found = [re.fullmatch(r"ckpt-(\d+)\.index", name) for name in os.listdir(folder)] if os.path.isdir(folder) else []
    return [os.path.join(folder, f"ckpt-{step}") for step in sorted(int(m.group(1)) for m in found if m)]


def repair_checkpoint_list(folder):
    """Rewrites folder's 'checkpoint' file, the list of its checkpoints, from the checkpoints there when
    it is missing or unreadable (emptied, hand-edited) or its latest checkpoint does not read (an index
    file deleted): TensorFlow would see no checkpoint at all, and training would silently start over."""
    prefixes, listing = checkpoint_prefixes(folder), os.path.join(folder, "checkpoint")
    if not prefixes and not os.path.exists(listing):
        return  # a new run (or a mistyped name), answered before TensorFlow loads
    import tensorflow as tf
    # Quiet: TF would log the parse error and "Checkpoint ignored", and that its v1 writer is deprecated.
    with utils.absl_errors_only():
        listed = listed_checkpoint(folder)
        if listed and readable_checkpoint(listed):
            return
        # A kill while a first checkpoint's index is being written can leave it half written.
        prefixes = [prefix for prefix in prefixes if readable_checkpoint(prefix)]
        if not prefixes:
            if not os.path.exists(listing):
                return  # that first checkpoint is redone
            raise DCGANError(f"{listing} lists checkpoints, but none there reads (an index missing or damaged): "
                             "restore their files, or train under another --out_name")
        tf.compat.v1.train.update_checkpoint_state(folder, prefixes[-1], list(prefixes))  # it makes them relative
    print(f"Warning: {listing}, the list of the run's checkpoints, was missing, unreadable or named one that does "
          f"not read: rebuilt it from the checkpoints there (the latest is {os.path.basename(prefixes[-1])})",
          file=sys.stderr)


def listed_checkpoint(folder):
    """The latest checkpoint folder's list names, or None (no list, or one TF cannot parse)."""
    import tensorflow as tf
    try:
        state = tf.train.get_checkpoint_state(folder)
    except ValueError:  # it parses but names no checkpoint
        return None
    return state and state.model_checkpoint_path


def readable_checkpoint(prefix):
    import tensorflow as tf
    try:
        tf.train.load_checkpoint(prefix)  # its index: the table of every tensor
        return True
    except (tf.errors.OpError, ValueError):
        return False


def restore(manager, required, folder=None):
    """Loads the latest checkpoint of folder (default: the manager's) into the model; returns whether
    there was one. Every worker of a multi-worker run restores the chief's."""
    import tensorflow as tf
    path = tf.train.latest_checkpoint(folder or manager.directory)
    if path is None:
        if required:
            raise DCGANError(f"no checkpoint in {manager.directory}: train first with --train")
        return False
    try:
        manager.checkpoint.restore(path).assert_existing_objects_matched()
    except (ValueError, AssertionError) as e:
        raise DCGANError(f"checkpoint {path} does not fit this model: {first_line(e)}") from None
    except (tf.errors.OpError, IndexError) as e:  # IndexError: a data file cut short
        raise DCGANError(f"cannot read checkpoint {path}: {first_line(getattr(e, 'message', e))}") from None
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
        clear_unfinished_saves(manager.directory)  # it would hold the space a full disk needs for the next one
        kept = f"the last one written still loads: {manager.latest_checkpoint}" if manager.latest_checkpoint \
            else "none was written before"
        raise DCGANError(f"cannot write a checkpoint in {manager.directory} at step {step} "
                         f"({first_line(getattr(e, 'message', e))}); {kept}") from None


UNCONDITIONAL_COLUMNS = 8


def fixed_samples(config, z_dim, rows=10):
    """Sample inputs for grids: one z per row and one class per column (labels as integers), or for an
    unconditional run a z per image (labels None)."""
    rng = np.random.default_rng(config["seed"])
    y_dim = config["y_dim"]
    if not y_dim:
        return rng.uniform(-1, 1, (rows * UNCONDITIONAL_COLUMNS, z_dim)).astype(np.float32), None
    z = rng.uniform(-1, 1, (rows, z_dim)).astype(np.float32)
    return np.repeat(z, y_dim, axis=0), np.tile(np.arange(y_dim), rows)


def save_samples(dcgan, config, z, labels, real, path):
    """Writes the samples for z (and labels) to path as a grid, or for the curves as a plot beside real
    curves; returns the grid (None for the curves)."""
    images = dcgan.sample(z, labels).numpy()
    if config["dataset"] == CURVES:
        import visualize
        visualize.plot_curves(np.asarray(real), images, path)
        return None
    columns = dcgan.y_dim or UNCONDITIONAL_COLUMNS
    grid = utils.make_grid(images, len(images) // columns, columns)
    utils.save_image(grid, path)
    return grid


def load_training_data(config, limit=None):
    """The run's training images (uint8 [N, H, W, C]) and labels (None when unconditional), in an order
    fixed by its seed, at most --train_size, or the first limit of them (then fewer than a batch is
    fine). Reading a new image folder settles the run's c_dim, y_dim and class_names."""
    count, at_least = (limit, 0) if limit else (FLAGS.train_size, FLAGS.batch_size)
    if FLAGS.dataset == CURVES:
        images, labels = utils.make_curves(count or CURVES_N, config["seed"]), None
    elif FLAGS.dataset in MNIST_LIKE:
        # An explicit --data_dir means "use my files": no download attempt when they are missing.
        images, labels = utils.load_labelled_images(FLAGS.dataset, FLAGS.data_dir,
                                                    download=not FLAGS["data_dir"].present)
        order = np.random.default_rng(config["seed"]).permutation(len(images))[:count]
        images, labels = images[order, ..., None], labels[order]
    else:
        images, labels = load_image_folder(config, count, at_least)
    check_count(len(images), at_least)
    return images, labels


def check_count(n, at_least):
    if n < at_least:
        raise DCGANError(f"{n} images are fewer than one batch of {at_least}")


def load_image_folder(config, limit, at_least):
    folder = os.path.join(FLAGS.data_dir, config["dataset"])
    paths, labels, names = utils.list_image_folder(folder, config["input_fname_pattern"])
    if config["class_names"] is not None and (names or []) != config["class_names"]:
        raise DCGANError(f"the classes in {folder} ({', '.join(names or ['none'])}) are not the run's "
                         f"({', '.join(config['class_names']) or 'none'}): use another --out_name")
    from model import generator_class
    try:  # before the long part: a size the networks cannot draw
        generator_class(config["arch"], len(names or [])).check_size(config["output_height"], config["output_width"])
    except ValueError as e:
        raise DCGANError(f"--arch {config['arch']}{' (conditional)' if names else ''}: {e}") from None
    order = np.random.default_rng(config["seed"]).permutation(len(paths))[:limit]
    check_count(len(order), at_least)  # before reading them
    paths = [paths[i] for i in order]
    crop = (config["input_height"], config["input_width"]) if config["crop"] else None
    started = time.perf_counter()
    images, kept = utils.read_images(paths, (config["output_height"], config["output_width"]), crop,
                                     config["c_dim"])
    print(f"Read {len(images)} images of {folder} as {'x'.join(map(str, images.shape[1:]))} "
          f"in {time.perf_counter() - started:.1f} s")
    if config["class_names"] is None:
        config.update(c_dim=images.shape[-1], y_dim=len(names or []), class_names=names or [])
    return images, None if labels is None else labels[order][kept]


def trained_steps(dcgan):
    return int(dcgan.step.numpy())


def train(dcgan, manager, run, data, strategy):
    """Trains to --epoch epochs; returns the loop's steps/s after its first step and the share of that
    time spent in the training step (None when there was nothing to train). With several workers every
    one runs this; only the chief writes the run's files, and a stop (signal, non-finite loss) on any
    worker stops all at the same step."""
    import tensorflow as tf
    if not tf.config.list_physical_devices("GPU"):  # a GPU's memory is its own, and TF names it when short
        utils.check_memory(FLAGS.batch_size * dcgan.step_bytes_per_image(),
                           f"a training step at --batch_size {FLAGS.batch_size} needs about", "use a smaller --batch_size")
    images, labels = data
    steps_per_epoch = len(images) // FLAGS.batch_size
    total = FLAGS.epoch * steps_per_epoch
    start = trained_steps(dcgan)
    chief = distribute.is_chief(strategy)
    if chief:
        run.save_config()
    if start >= total:
        print(f"Run '{run.name}' already trained {start} steps ({FLAGS.epoch} epoch{'s' * (FLAGS.epoch > 1)}); "
              "raise --epoch to go on.")
        return
    replicas = strategy.num_replicas_in_sync
    if FLAGS.batch_size % replicas:
        raise DCGANError(f"--batch_size {FLAGS.batch_size} does not split evenly over {replicas} replicas")
    print(f"Training on {len(images)} images, {steps_per_epoch} steps per epoch, steps {start}..{total}"
          + (f", {replicas} replicas of {FLAGS.batch_size // replicas} images" if replicas > 1 else ""))
    batches, train_step = distribute.distributed_step(
        strategy, dcgan.train_step,
        utils.shuffled_batches(images, labels, FLAGS.batch_size, dcgan.y_dim, run.config["seed"], start))
    sample_z, sample_y = fixed_samples(run.config, dcgan.z_dim)
    if chief:
        os.makedirs(run.samples, exist_ok=True)
    progress = utils.Progress(total, start)
    reference = load_eval_reference() if FLAGS.eval_freq and chief else None
    quality = ""
    write_scalars = scalar_writer()
    # Where the loop's time goes: waiting for input (does the pipeline keep up?) and in the training
    # step itself (the rest is logging, samples and checkpoints), the latter from the second step on.
    waited, stepping, started = 0.0, 0.0, time.perf_counter()
    # Signals are caught before the events file appears, so whoever sees it can stop the run cleanly.
    try:
        with utils.StopSignals() as stop, summary_writer(run, chief).as_default():
            for step in range(start + 1, total + 1):
                before = time.perf_counter()
                batch = next(batches)
                fetched = time.perf_counter()
                waited += fetched - before
                step_logs, stop_request = train_step(batch, tf.constant(int(stop.signal or 0)))
                logs, stop_request = {k: float(v) for k, v in step_logs.items()}, int(stop_request)
                stepping += (time.perf_counter() - fetched) if step > start + 1 else 0.0
                if not all(np.isfinite(list(logs.values()))):
                    kept = manager.latest_checkpoint or "none was written yet"
                    raise DCGANError(f"non-finite loss at step {step} ({format_logs(logs)}); nothing of this step "
                                     f"was saved, the last good checkpoint is kept: {kept}")
                write_scalars(step_logs, tf.constant(step, tf.int64))
                epoch, batch_index = divmod(step - 1, steps_per_epoch)
                if reference and (step % FLAGS.eval_freq == 0 or step == total):
                    quality = log_quality(evaluate_model(dcgan, reference), step)
                progress.update(step, f"epoch {epoch + 1}/{FLAGS.epoch} {format_logs(logs)}{quality}",
                                force=bool(quality) and step % FLAGS.eval_freq == 0)
                if chief and (step % FLAGS.sample_freq == 0 or step == total):
                    try:
                        write_samples(dcgan, run, sample_z, sample_y, local_batch(strategy, batch), step,
                                      f"train_{epoch:02d}_{batch_index:04d}.png")
                    except OSError as e:  # a picture is not worth the training: the checkpoints decide
                        progress.interject(f"Warning: step {step}'s sample grid was not written ({e}); "
                                           "training goes on")
                if step % FLAGS.ckpt_freq == 0 or step == total or stop_request:
                    save_checkpoint(manager, step)
                if stop_request:
                    progress.close()
                    by = stop.signal.name if stop.signal else "a signal to another worker"
                    raise Stopped(stop.signal or signal.SIGTERM,
                                  f"stopped by {by} at step {step}; saved {manager.latest_checkpoint}. "
                                  "Run the same command to resume.")
    except tf.errors.OpError as e:
        if run.logs not in str(e):
            raise
        # A write to the logs failed (a full disk), not the training step (it writes nothing): the step is whole.
        if manager.latest_checkpoint != os.path.join(manager.directory, f"ckpt-{step}"):
            save_checkpoint(manager, step)
        raise DCGANError(f"cannot write TensorBoard logs in {run.logs} at step {step} ({first_line(e)}); saved "
                         f"{manager.latest_checkpoint}") from None
    steps_per_s = progress.rate(total)
    in_step = stepping * steps_per_s / max(total - start - 1, 1)
    progress.close()
    written = f"Checkpoint {manager.latest_checkpoint}, samples in {run.samples}" if chief else \
        f"The chief wrote the run's checkpoint and samples in {run.checkpoints}, {run.samples}"
    if total - start > 1:
        print(f"Done: {total} steps ({steps_per_s:.2f} steps/s after the first). {written}. "
              f"Waiting for input took {100 * waited / (time.perf_counter() - started):.1f} % of the time, "
              f"the training step {100 * in_step:.1f} % after the first.")
    else:  # the first step, which traces the graph, has no rate to tell
        print(f"Done: {total} steps. {written}.")
    if chief:
        try:
            write_plots(dcgan, run, local_batch(strategy, batch))
        except OSError as e:
            print(f"Warning: the loss curves and real vs fake figure were not written ({e})", file=sys.stderr)
    return steps_per_s, in_step


def summary_writer(run, chief):
    import tensorflow as tf
    if not chief:
        return tf.summary.create_noop_writer()
    with tf_writing(f"TensorBoard logs in {run.logs}"):
        return tf.summary.create_file_writer(run.logs)


@contextlib.contextmanager
def tf_writing(what):
    """Within the block, TensorFlow's errors writing what (a read-only or full disk, a file where a folder
    should be) end as one line."""
    import tensorflow as tf
    try:
        yield
    except tf.errors.OpError as e:
        raise DCGANError(f"cannot write {what}: {first_line(e)}") from None


def scalar_writer():
    """A function that writes a step's logs as TensorBoard scalars to the default writer, as one graph:
    eager tf.summary.scalar calls cost about 1 ms each, 2 % of a training step on a 2-core CPU."""
    import tensorflow as tf

    @tf.function
    def write(logs, step):
        for name, value in logs.items():
            tf.summary.scalar(name, value, step=step)
    return write


def local_batch(strategy, batch):
    """The first replica's part of a distributed batch (the whole batch on one device)."""
    import tensorflow as tf
    return tf.nest.map_structure(lambda part: strategy.experimental_local_results(part)[0], batch)


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


def write_samples(dcgan, run, z, labels, batch, step, filename):
    import tensorflow as tf
    real_x, real_y = batch if dcgan.y_dim else (batch, None)
    grid = save_samples(dcgan, run.config, z, labels, real_x, os.path.join(run.samples, filename))
    y = dcgan.one_hot(labels)
    tf.summary.histogram("z", z, step=step)
    tf.summary.histogram("d", tf.sigmoid(dcgan.discriminator(real_x, real_y, training=False)), step=step)
    tf.summary.histogram("d_", tf.sigmoid(dcgan.discriminator(dcgan.generator(z, y), y, training=False)),
                         step=step)
    if FLAGS.G_img_sum and grid is not None:
        tf.summary.image("G", grid[None], step=step)


def write_visualizations(dcgan, run):
    import visualize
    folder = os.path.join(run.samples, "visualize")
    written = visualize.visualize(lambda z, labels: dcgan.sample(z, labels).numpy(), dcgan.z_dim, dcgan.z_dist,
                                  dcgan.y_dim, int(FLAGS.visualize_option), folder, run.config["seed"])
    print(f"Wrote {len(written)} files to {folder}")


def write_plots(dcgan, run, batch):
    """Loss curves from the run's TensorBoard logs (so a resumed run's are whole) and real vs fake."""
    import visualize
    real = batch[0] if dcgan.y_dim else batch
    real_labels = np.argmax(batch[1], -1) if dcgan.y_dim else None
    z = dcgan.sample_z(len(real))
    os.makedirs(run.samples, exist_ok=True)
    losses = visualize.read_scalars(run.logs)
    gap = logs_gap(losses, run.logs, trained_steps(dcgan))
    if gap:
        print(f"Warning: {gap}", file=sys.stderr)
    paths = [visualize.plot_losses(losses, os.path.join(run.samples, "losses.png"), run.name),
             os.path.join(run.samples, "real_vs_fake.png")]
    if run.config["dataset"] == CURVES:
        save_samples(dcgan, run.config, z, None, real, paths[1])
    else:
        visualize.plot_real_vs_fake(np.asarray(real), dcgan.sample(z, real_labels).numpy(), paths[1])
    print(f"Wrote {', '.join(p for p in paths if p)}")


def logs_gap(losses, folder, step):
    """What is missing when the logged losses end before the run's step (logs deleted or lost), else None."""
    steps = losses["g_loss"][0]
    last = int(steps[-1]) if len(steps) else 0
    if last >= step:
        return None
    return (f"the TensorBoard logs in {folder} end at step {last} and the run at step {step}: the rest is missing "
            "(removed, or lost), so the loss curves stop there")


def real_batch(dcgan, config):
    """A batch of the run's training data, as the pipeline gives it, for the real vs fake figure."""
    images, labels = load_training_data(config, limit=FLAGS.batch_size)
    x = images.astype(np.float32) / 255.0
    return (x, np.eye(dcgan.y_dim, dtype=np.float32)[labels]) if dcgan.y_dim else x


def export(dcgan, run):
    from model import export_savedmodel
    step = trained_steps(dcgan)
    path = os.path.join(run.exports, str(step))
    with tf_writing(f"the export {path}"):
        export_savedmodel(dcgan, path, step, run.config.get("class_names") or ())
    print(f"Exported SavedModel to {path}")
    return path


def current_export(dcgan, run):
    """The export of the checkpoint's step, loaded, and its path: written if there is none yet, or again
    if the one there does not load (damaged since)."""
    path = os.path.join(run.exports, str(trained_steps(dcgan)))
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        try:
            return load_savedmodel(path), path
        except DCGANError as e:
            print(f"Warning: {e}; exporting it again", file=sys.stderr)
    path = export(dcgan, run)
    return load_savedmodel(path), path


def run_demo(model, path, eval_path):
    import demo
    if not model.y_dim:
        raise DCGANError(f"--demo draws the classes a visitor picks, and {path} is unconditional")
    demo.serve(model, path, FLAGS.demo_host, FLAGS.demo_port, FLAGS.demo_max_images, eval_path)


def load_savedmodel(path):
    from model import ExportedGenerator
    try:
        return ExportedGenerator(path)
    except ValueError as e:
        raise DCGANError(str(e)) from None


def write_generated(model, labels, names, sample_dir):
    """--generate: one grid (a column per label, a row per seed; an unconditional model's images in rows
    of 8) and, if asked, one PNG per image. labels: from labels_asked(names), names the model's classes."""
    from model import generate
    seed = FLAGS.seed if FLAGS.seed is not None else random.SystemRandom().randrange(2 ** 31)
    n = FLAGS.n_per_label
    images = generate(model, labels, n=n, seed=seed)
    shown = [names[k] for k in labels] if labels else []
    stem = f"generate_{'-'.join(shown) + '_' if shown else ''}seed{seed}"
    os.makedirs(sample_dir, exist_ok=True)
    path = os.path.join(sample_dir, stem + ".png")
    if labels:
        grid = utils.label_columns(images)
    else:
        columns = min(n, UNCONDITIONAL_COLUMNS)
        grid = utils.make_grid(utils.padded(images[0], columns), -(-n // columns), columns)
    utils.save_image(grid, path)
    print(f"Wrote {path} ({f'{len(labels)} labels x ' if labels else ''}{n} images, seed {seed})")
    if FLAGS.save_individual:
        folder = os.path.join(sample_dir, stem)
        os.makedirs(folder, exist_ok=True)
        for name, row in zip(shown or [None], images):
            for j, image in enumerate(row):
                prefix = f"label{name}_" if name is not None else ""
                utils.save_image(image, os.path.join(folder, f"{prefix}seed{seed + j}.png"))
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
    if FLAGS.dataset == CURVES:  # the truth is known: how well each generated curve fits the family
        from model import z_from_seeds
        z = z_from_seeds(EVAL_SEED + np.arange(FLAGS.eval_n, dtype=np.int64), model.z_dim, model.z_dist)
        result = {"step": step, **evaluate.curve_quality(np.asarray(model.sample(z, None)))}
        print(evaluate.format_curve_summary(result))
    else:
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
        exported = load_savedmodel(FLAGS.from_savedmodel)
        names = exported.class_names
        write_generated(exported, labels_asked(names), names, os.path.join(FLAGS.sample_dir, run_name(run_config())))
        return
    if FLAGS.demo and FLAGS.from_savedmodel:
        run_demo(load_savedmodel(FLAGS.from_savedmodel), FLAGS.from_savedmodel,
                 os.path.join(FLAGS.sample_dir, run_name(run_config()), "eval.json"))
        return
    if FLAGS.eval and FLAGS.eval_savedmodel:
        exported = load_savedmodel(FLAGS.eval_savedmodel)
        write_eval(exported, os.path.join(FLAGS.sample_dir, run_name(run_config())), exported.step)
        return
    run = Run(run_config())
    if FLAGS.train and FLAGS.strategy == "multi_worker" and not os.path.exists(run.config_path) \
            and not FLAGS["seed"].present:
        raise DCGANError("a new multi-worker run needs --seed: every worker must draw the same data order and z")
    # Devices and the cluster are set up before anything else starts TensorFlow's runtime.
    strategy = None
    if FLAGS.train and FLAGS.strategy != "auto":
        strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.logical_cpus, FLAGS.worker_wait)
    # A new image folder run learns its channels and classes from its images.
    data = load_training_data(run.config) if FLAGS.train else None
    repair_checkpoint_list(run.checkpoints)
    # Before TensorFlow loads: a mistyped name or a forgotten --train is answered at once.
    if not FLAGS.train and not os.path.exists(os.path.join(run.checkpoints, "checkpoint")):
        raise DCGANError(f"no checkpoint in {run.checkpoints}: train first with --train")
    names = class_names(run.config)
    labels = labels_asked(names) if FLAGS.generate else None
    if FLAGS.train and strategy is None:
        strategy = distribute.make_strategy("auto")
    dcgan = build_model(run.config, strategy)
    if FLAGS.train:
        folder = distribute.worker_folder(run.checkpoints, strategy)
        with utils.held_alone(folder, f"another process is training the run in {folder}: let it finish or stop "
                                      "it, or train under another --out_name"):
            clear_unfinished_saves(folder)
            manager = checkpoint_manager(dcgan, run, folder)
            restore(manager, required=False, folder=run.checkpoints)
            train(dcgan, manager, run, data, strategy)
        if folder != run.checkpoints:  # a worker's scratch copies: the chief's checkpoints are the run's
            shutil.rmtree(folder, ignore_errors=True)
            return
    else:
        manager = checkpoint_manager(dcgan, run)
        restore(manager, required=True)
    if FLAGS.generate:
        write_generated(dcgan, labels, names, run.samples)
    if FLAGS.eval:
        write_eval(dcgan, run.samples, trained_steps(dcgan))
    if not (FLAGS.train or FLAGS.generate or FLAGS.eval or FLAGS.demo or FLAGS.plot):
        os.makedirs(run.samples, exist_ok=True)
        path = os.path.join(run.samples, f"test_{trained_steps(dcgan):06d}.png")
        real = utils.make_curves(FLAGS.batch_size, run.config["seed"]) if run.config["dataset"] == CURVES else None
        save_samples(dcgan, run.config, *fixed_samples(run.config, dcgan.z_dim), real, path)
        print(f"Wrote {path}")
    if FLAGS.visualize:
        write_visualizations(dcgan, run)
    if FLAGS.plot and not FLAGS.train:
        write_plots(dcgan, run, real_batch(dcgan, run.config))
    if FLAGS.export:
        export(dcgan, run)
    if FLAGS.demo:
        run_demo(*current_export(dcgan, run), os.path.join(run.samples, "eval.json"))


def run_main(argv):
    try:
        main(argv)
    except Stopped as e:
        print(f"Stopped: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        # Outside the training loop (loading, sampling, evaluating, exporting, the end-of-training figures).
        print("Stopped: interrupted. Nothing is left half written (files are published only when complete); "
              "checkpoints already written are kept.", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if disk_full(e):
            exit_with_error(f"{first_line(e)}. The disk is full: free some space, or write elsewhere "
                            "(--checkpoint_dir, --sample_dir, --tensorboard_dir, --export_dir); checkpoints already "
                            "written are kept")
        if isinstance(e, (DCGANError, OSError)):
            exit_with_error(e)
        shortage = memory_shortage(e)
        if shortage is None:
            raise
        exit_with_error(f"out of memory ({shortage}): use a smaller --batch_size, --n_per_label or --eval_n, or "
                        "narrower networks (--z_dim, --gf_dim, --df_dim, --gfc_dim, --dfc_dim); checkpoints already "
                        "written are kept")


def exit_with_error(message):
    print(f"Error: {message}", file=sys.stderr)
    logging.set_verbosity(logging.ERROR)  # the last line: not followed by TF's notes on unrestored values at exit
    sys.exit(1)


def disk_full(error):
    """Whether error is a write that found the disk full: Python's OSError, or TensorFlow's (which it
    raises as ResourceExhaustedError, its out-of-memory error, too)."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error)


def memory_shortage(error):
    """What could not be allocated, when error is TensorFlow's or Python's out-of-memory error; else None."""
    if isinstance(error, MemoryError):
        return str(error) or "MemoryError"
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.ResourceExhaustedError):
        return None
    found = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", str(error))
    return found.group(0) if found else first_line(error)


if __name__ == "__main__":
    app.run(run_main)
