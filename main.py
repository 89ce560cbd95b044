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
    python main.py --dataset mnist --import_original out/.../checkpoint   # the original's TF1 checkpoint
"""
import functools
import math
import os
import shutil

# TF's C++ logs (CUDA probing on CPU machines, grappler notes) drown the progress line; set it to 0
# to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TF turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; on an
# AVX2-only AMD EPYC they made the training step 22 % faster too. TF_ENABLE_ONEDNN_OPTS=0 turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags, logging

import cache
import data
import distribute
import utils
import visualize
from data import CURVE_POINTS, CURVES, MNIST_LIKE, NUM_CLASSES, parse_labels
from run import (BEST, CONDITIONINGS, DEFAULT_CONDITIONING, DEFAULTS, ORIGINAL_RECIPE, RECIPES, SETTINGS, UNSET, Run,
                 best_manager, checkpoint_manager, checkpoint_prefixes, class_names, clear_unfinished_saves, held_alone,
                 repair_checkpoint_list, restore, run_name, save_checkpoint, training_recipe)
from utils import DCGANError, digit_names

# An image folder's defaults, the original's: 108x108 crops (celebA's faces) drawn at 64x64.
FOLDER_CROP, FOLDER_SIZE = 108, 64
FOLDER_SETTINGS = ("input_fname_pattern", "crop", "input_height", "input_width")
# z's width when --z_dim is not given: the original's 100, CS231N's 96.
Z_DIMS = {"dcgan": 100, "mlp": 96, "cs231n": 96, "curves": 5}

flags.DEFINE_integer("epoch", 25, "Epochs to train.", lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Adam learning rate, of both networks unless --d_learning_rate (default: the "
                   "variant's source's: the original's 0.0002, CS231N's 0.001 for --arch mlp and cs231n).",
                   lower_bound=0.0)
flags.DEFINE_float("d_learning_rate", None, "Adam learning rate of D alone, where it should differ from G's (the two "
                   "time-scale update rule, Heusel et al. 2017; default: --learning_rate's, twice it with "
                   "--recipe best).", lower_bound=0.0)
flags.DEFINE_float("beta1", None, "Adam beta1 (momentum term), for both networks: at least 0, below 1 (default: 0.5, "
                   "as every variant's source).")
flags.DEFINE_integer("train_size", None, "Use at most this many training images (default: all).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per batch (32 with --recipe best unless given).", lower_bound=1)
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
flags.DEFINE_boolean("demo", False, "Start a web page that draws the classes asked for (or pictures), from the "
                     "--step checkpoint's export (written first if missing) or --from_savedmodel.")
flags.DEFINE_string("demo_host", "127.0.0.1", "With --demo: address to listen on; 0.0.0.0 lets anyone who can "
                    "reach this machine make it compute.")
flags.DEFINE_integer("demo_port", 7860, "With --demo: port to listen on.", lower_bound=1, upper_bound=65535)
flags.DEFINE_integer("demo_max_images", 400, "With --demo: most images one request may ask for.", lower_bound=1)
flags.DEFINE_integer("demo_max_queue", 64, "With --demo: most requests waiting at once; more are answered at once "
                     "that the queue is full.", lower_bound=1)
flags.DEFINE_boolean("eval", False, "Measure sample quality (class accuracy, FID, intra-class FID, diversity) "
                     "of the checkpoint (--step) or --eval_savedmodel, print it and write eval.json. Image folders: "
                     "see --eval_folder.")
flags.DEFINE_string("eval_folder", "", "Image-folder runs, --eval and --eval_freq: a labelled folder (a sub-folder of "
                    "pictures per class; a name in --data_dir or a path) of the run's pictures, whose categories the "
                    "class mix is read in and whose own classifier reads class accuracy (default: the run's own "
                    "folder; a grayscale one without classes is scored in the MNIST classifier's features).")
flags.DEFINE_string("judge", "", "Image folders, --eval and --eval_freq: the network in whose features pictures are "
                    "scored: '' (a judge that ships in judges/, trained on emoji, the one that saw none of the judged "
                    "pictures), 'inception' (InceptionV3's ImageNet features, where its weights are on disk or can be "
                    "downloaded), or the prefix of a judge trained with judge.py on a labelled folder of pictures "
                    "like yours.")
flags.DEFINE_boolean("keep_best", False, "With --eval_freq: also keep the checkpoint of the lowest FID yet, in "
                     "<checkpoint_dir>/<run>/best/ (--step best uses it).")
flags.DEFINE_enum("step", "latest", ["latest", "best"], "The checkpoint that --generate, --eval, --export, --demo "
                  "and the rest use: the latest, or the best one --keep_best kept.")
flags.DEFINE_string("eval_savedmodel", "", "With --eval: evaluate this exported SavedModel (a version folder).")
flags.DEFINE_integer("eval_n", 1000, "Generated images per class for --eval and --eval_freq (image folders: pictures "
                     "in all, by default as many as the real pictures of the floor they are compared beside).",
                     lower_bound=2)
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
flags.DEFINE_string("arithmetic", "", "Arithmetic on z, as the DCGAN paper's figure 7: 'grid' writes samples numbered by "
                    "seed (of --labels, --n_per_label rows, from --seed); then 'A - B + C', each term seeds (1,5,9) or "
                    "class:seeds (3:1,5,9), draws each term's mean image and their sum's.")
flags.DEFINE_string("invert", "", "Find the z (and class) whose image is closest to this picture: writes the two side by "
                    "side, and z as .npy.")
flags.DEFINE_string("complete", "", "Fill the hole (--mask) of this picture with the generator's pixels (Yeh et al. 2017).")
flags.DEFINE_string("mask", "centre", "With --complete, the hole: left, right, top or bottom (that half), centre (the "
                    "middle square of half the side), random (half the pixels), or a picture whose dark pixels are it.")
flags.DEFINE_boolean("export", False, "Write a SavedModel for TensorFlow Serving (after training with --train).")
flags.DEFINE_string("import_original", "", "Make a new run of a checkpoint of carpedm20's DCGAN-tensorflow (TF1): a "
                    "folder holding one, or a prefix such as out/<run>/checkpoint/model.b64-27000. Its model's sizes "
                    "come from its variables; the run is named as usual, and the other commands given use it.")
flags.DEFINE_integer("max_to_keep", 1, "Checkpoints to keep.", lower_bound=1)
flags.DEFINE_integer("sample_freq", 200, "Write a sample grid every this many steps.", lower_bound=1)
flags.DEFINE_integer("ckpt_freq", 200, "Write a checkpoint every this many steps.", lower_bound=1)
flags.DEFINE_integer("z_dim", None, "Dimension of the noise vector z (default: 100; 96 for --arch mlp and "
                     "cs231n, as in CS231N).", lower_bound=1)
flags.DEFINE_enum("arch", "dcgan", list(Z_DIMS), "Networks: curves (the 1-D toy's, which --dataset curves "
                  "takes), dcgan (the original's), mlp (CS231N's fully "
                  "connected GAN) or cs231n (CS231N's convolutional pair); all conditioned on the label.")
flags.DEFINE_enum("loss", "gan", ["gan", "lsgan", "hinge"], "gan: the original's sigmoid cross-entropy; lsgan: least "
                  "squares on D's raw scores (Mao et al. 2017); hinge: SN-GAN's (Lim & Ye 2017).")
flags.DEFINE_boolean("spectral_norm", False, "Divide every weight of D by its largest singular value "
                     "(Miyato et al. 2018, one power iteration per D update); D then has no batch norm.")
flags.DEFINE_enum("z_dist", "uniform_signed", ["uniform_signed", "uniform_unsigned", "normal"],
                  "Distribution of z: U(-1,1), U(0,1) or N(0,1).")
flags.DEFINE_boolean("G_img_sum", False, "Also write generated images to TensorBoard.")
flags.DEFINE_integer("seed", None, "Random seed for weights, noise and data order (default: random, "
                     "remembered by the run so that resuming keeps the data order).", lower_bound=0)
flags.DEFINE_enum("recipe", "original", ["original", "best"], "How to train, where --learning_rate, --d_learning_rate, "
                  "--beta1, --g_steps and --batch_size are not given: original, the variant's own recipe (the "
                  "original's for the default networks); best, the best one measured here (docs/quality.md: one G "
                  "update, batch 32, D's learning rate twice G's). Stored with the run.")
flags.DEFINE_boolean("augment", False, "DiffAugment (Zhao et al. 2020): D sees every batch, real and generated, "
                     "randomly recoloured, shifted and cut out, so that it cannot learn a small folder by heart.")
flags.DEFINE_integer("g_steps", None, "Generator updates per batch (default: the original's 2; 1, as their sources, for "
                     "--arch mlp and cs231n and --loss lsgan).", lower_bound=1)
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
flags.DEFINE_enum("precision", "float32", distribute.PRECISIONS, "Number format the networks compute in; weights stay "
                  "float32, so checkpoints are the same either way. mixed_bfloat16: for CPUs with AVX-512 BF16 or "
                  "AMX and GPUs from Ampere on (elsewhere it would be emulated, many times slower: float32 is used, "
                  "with a warning). mixed_float16: for GPUs, losses scaled dynamically.")
flags.DEFINE_enum("moving_variance", None, ["biased", "unbiased"], "What batch norm's moving variance moves towards in "
                  "training: the batch's biased variance (Keras; the default for a new run) or its unbiased one "
                  "(the original's tf.contrib batch norm from TF 1.4 on; the default for --import_original). Kept "
                  "with the run.")
flags.DEFINE_string("speed_record", os.environ.get("DCGAN_SPEED_RECORD", os.path.join(
    os.path.expanduser("~"), ".cache", "dcgan-keras", "speeds.json")), "What bench.py measured of each precision's "
    "training step on the machines it ran on (it writes there): a --precision it measured slower than float32 on "
    "this machine runs in float32, with a warning ('': not consulted).")
flags.DEFINE_integer("layers", None, "Image folders without classes: stride-2 layers of the dcgan networks "
                     "(default: as many as keep the smallest feature map at least 4x4, at most 5: 5 at 128x128, 4 "
                     "at 64x64, 3 at 32x32; the original always has 4).", lower_bound=1, upper_bound=5)
flags.DEFINE_enum("conditioning", None, list(CONDITIONINGS), "Labelled folders of pictures 32 pixels a side or more: "
                  "how the networks take the class. projection (the default): the original's folder networks, class-"
                  "conditional batch norm in G and a projection term in D (Miyato & Koyama 2018); concat: the same "
                  "networks with the one-hot label joined to every layer's input, as the original's MNIST networks "
                  "take it; mnist: the MNIST networks (two stride-2 layers from a quarter of the size; what smaller "
                  "pictures and MNIST get). Kept with the run.")
flags.DEFINE_boolean("balance_classes", False, "Labelled folders: draw every class equally often in the real batches "
                     "(and so in G's), rather than as often as it has pictures: small classes learned sooner, the "
                     "largest later (docs/colour.md). Kept with the run.")
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


@flags.multi_flags_validator(["dataset", "conditioning"], message="MNIST-like datasets and the curves have the MNIST "
                             "networks: leave --conditioning out, or set it to mnist")
def _mnist_conditioning(f):
    return f["dataset"] not in (*MNIST_LIKE, CURVES) or f["conditioning"] in (None, "mnist")


@flags.validator("dataset", message="--dataset must be mnist, fashion_mnist or a folder name inside --data_dir")
def _dataset_name(name):
    return bool(name) and os.path.basename(name) == name and name not in (".", "..")


@flags.multi_flags_validator(["dataset", "eval_freq", "eval_savedmodel"],
                             message=f"--eval_savedmodel applies to {' and '.join(MNIST_LIKE)} runs only, --eval_freq "
                                     f"to them and image folders (--eval also scores {CURVES})")
def _evaluable(f):
    return f["dataset"] in MNIST_LIKE or not (f["eval_savedmodel"] or f["eval_freq"] and f["dataset"] == CURVES)


@flags.multi_flags_validator(["keep_best", "eval_freq", "step", "train"],
                             message="--keep_best keeps the best step --eval_freq finds: it needs --eval_freq; --step "
                                     "best does not go with --train (training goes on from the latest)")
def _best(f):
    return (f["eval_freq"] or not f["keep_best"]) and not (f["step"] == "best" and f["train"])


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
for _rate in ("learning_rate", "d_learning_rate"):
    flags.register_validator(_rate, lambda value: value is None or math.isfinite(value),
                             message=f"--{_rate} must be a finite number, 0 or more")
flags.register_validator("ema_decay", math.isfinite, message="--ema_decay must be a finite number in 0..0.99999")


@flags.validator("beta1", message="--beta1 must be at least 0 and below 1")
def _beta1_below_one(value):
    return value is None or 0 <= value < 1


@flags.validator("out_name", message="--out_name must be a plain folder name (no '/', '..' or leading '.')")
def _plain_name(name):
    return name == "" or (os.path.basename(name) == name and not name.startswith(".") and "\\" not in name)


@flags.multi_flags_validator(["dataset", "labels"],
                             message=f"--labels must be 'all' or comma-separated integers in 0..{NUM_CLASSES - 1}")
def _valid_labels(f):
    return f["dataset"] not in MNIST_LIKE or parse_labels(f["labels"], digit_names(NUM_CLASSES)) is not None


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


@flags.multi_flags_validator(["import_original", "from_savedmodel", "eval_savedmodel"],
                             message="--import_original makes a run from the original's checkpoint: it does not go with "
                                     "--from_savedmodel or --eval_savedmodel, which use an export instead")
def _import_original(f):
    return not f["import_original"] or not (f["from_savedmodel"] or f["eval_savedmodel"])


@flags.multi_flags_validator(["arithmetic", "invert", "complete", "from_savedmodel", "eval_savedmodel", "dataset"],
                             message=f"--arithmetic, --invert and --complete use a run's checkpoints (an export has no D "
                                     f"and no gradients), and pictures (not --dataset {CURVES})")
def _latent(f):
    asked = f["arithmetic"] or f["invert"] or f["complete"]
    return not asked or not (f["from_savedmodel"] or f["eval_savedmodel"] or f["dataset"] == CURVES)


@flags.multi_flags_validator(["train_size", "batch_size"], message="--train_size must be at least --batch_size")
def _enough_images(f):
    return f["train_size"] is None or f["train_size"] >= f["batch_size"]


def run_config():
    """The run's settings that must stay fixed across resumes (run.SETTINGS). An image folder's channels
    and classes (c_dim, y_dim, class_names) are None until its images are read."""
    config = {name: getattr(FLAGS, name, None) for name in SETTINGS}
    if FLAGS["batch_size"].using_default_value:
        config["batch_size"] = RECIPES[FLAGS.recipe].get("batch_size", FLAGS.batch_size)
    config["z_dim"] = FLAGS.z_dim or Z_DIMS[FLAGS.arch]
    config["moving_variance"] = FLAGS.moving_variance or "biased"
    config["projection"] = FLAGS.arch == "mlp"  # its D's class term; mlp runs saved before it have none (DEFAULTS)
    if FLAGS.dataset == CURVES:
        config.update(arch=CURVES, projection=False, z_dim=FLAGS.z_dim or Z_DIMS[CURVES], output_height=1,
                      output_width=CURVE_POINTS, c_dim=1, y_dim=0, class_names=[], conditioning="mnist",
                      **{name: DEFAULTS[name] for name in FOLDER_SETTINGS})
        return config
    if FLAGS.dataset in MNIST_LIKE:
        size = MNIST_LIKE[FLAGS.dataset]
        config.update(output_height=size, output_width=size, c_dim=1, y_dim=NUM_CLASSES, conditioning="mnist",
                      **{name: DEFAULTS[name] for name in FOLDER_SETTINGS})
        return config
    height = FLAGS.output_height or FOLDER_SIZE
    crop_height = FLAGS.input_height or FOLDER_CROP
    config.update(output_height=height, output_width=FLAGS.output_width or height, input_height=crop_height,
                  input_width=FLAGS.input_width or crop_height, c_dim=FLAGS.c_dim and int(FLAGS.c_dim),
                  y_dim=None, class_names=None, conditioning=FLAGS.conditioning or DEFAULT_CONDITIONING)
    return config


def is_flag_value(name, value):
    """Whether value, as read from JSON, is one the flag name takes, within its bounds (an enum's, as
    --c_dim's, compared as text), or None where a run may leave it unset. Settings without a flag
    (y_dim) take any."""
    if name not in FLAGS:
        return True
    if value is None:
        return name in UNSET
    parser = FLAGS[name].parser
    try:
        if isinstance(parser, flags.EnumParser):
            return parser.parse(str(value)) is not None
        return parser.parse(value) == value  # not "100" for 100: the parser would take the text
    except (TypeError, ValueError):
        return False


def given_settings():
    return {name for name in SETTINGS if name in FLAGS and FLAGS[name].present}


def open_run(config, name=None):
    """The run the flags name (or name), in the folders they name: an existing run's settings from its
    config.json."""
    return Run(config, FLAGS.out_name or name or run_name(config), FLAGS.checkpoint_dir, FLAGS.sample_dir,
               FLAGS.tensorboard_dir, FLAGS.export_dir, given_settings(), FLAGS.train, is_flag_value)


def import_original(path):
    """Writes the original's checkpoint at path as a new run (its checkpoint and config.json); its name."""
    import original
    prefix = original.checkpoint_prefix(path)
    tensors = original.read_tensors(prefix)
    run = open_run(original.imported_config(tensors, prefix, run_config(), given_settings()))
    if os.path.exists(run.config_path) or checkpoint_prefixes(run.checkpoints):
        raise DCGANError(f"run '{run.name}' already exists in {run.checkpoints}: import under another --out_name")
    dcgan = build_model(run.config)
    step = original.step_of(prefix) or 0
    slots = original.load_weights(dcgan, tensors, step)
    with held_alone(run.checkpoints, f"another process is writing the run in {run.checkpoints}"):
        save_checkpoint(checkpoint_manager(dcgan, run.checkpoints), step)
        run.save_config()
    print(original.describe(run.config, prefix, step, slots))
    print(f"Imported as run '{run.name}': {run.checkpoints}/ckpt-{step}")
    return run.name


def build_model(config, strategy=None):
    """The run's DCGAN as the flags say it trains and samples; a new image folder run's layers settled."""
    from model import build_dcgan, folder_conditioning, unconditional_layers
    if config["dataset"] not in (*MNIST_LIKE, CURVES):
        if config["layers"] is None:
            config["layers"] = unconditional_layers(config["output_height"], config["output_width"])
        config["conditioning"] = folder_conditioning(config["conditioning"], config["y_dim"], config["output_height"],
                                                     config["output_width"])
    recipe = training_recipe(config, recipe_asked())
    precision = distribute.usable_precision(FLAGS.precision, FLAGS.speed_record, bench_model(config))
    return build_dcgan(config, strategy, precision, recipe["learning_rate"], recipe["beta1"], recipe["g_steps"],
                       FLAGS.sync_batch_norm, FLAGS.raw_weights, recipe["d_learning_rate"], FLAGS.augment)


def bench_model(config):
    """The bench.py --model nearest the run: its figures in --speed_record are looked up first."""
    return "mnist" if config["dataset"] in MNIST_LIKE else str(config["output_height"])


def recipe_asked():
    """--learning_rate, --d_learning_rate, --beta1 and --g_steps (None where not given), for run.training_recipe."""
    return {name: getattr(FLAGS, name) for name in ORIGINAL_RECIPE}


def download():
    """An explicit --data_dir means "use my files": no download attempt when they are missing."""
    return not FLAGS["data_dir"].present


def eval_reference(config):
    """What --eval and --eval_freq score the run (config) against: MNIST's test digits and classifier, or a
    picture folder in a judge's features (folder_eval); None for the curves and folders not judged."""
    import evaluate
    import folder_eval
    cache = os.path.join(FLAGS.checkpoint_dir, "classifier")
    try:
        if config["dataset"] in MNIST_LIKE:
            return evaluate.load_reference(FLAGS.data_dir, config["dataset"], cache, download(), FLAGS.retrain_classifier)
        if config["dataset"] == CURVES or not judged(config):
            return None
        return folder_eval.run_reference(config, FLAGS.data_dir, FLAGS.eval_folder, cache, FLAGS.judge)
    except ValueError as e:
        raise DCGANError(f"cannot evaluate: {e}") from None


def judged(config):
    """Whether a folder's run is scored in a judge's features: colour or with classes (else by MNIST's classifier)."""
    return config["c_dim"] != 1 or bool(FLAGS.eval_folder or config["class_names"])


def eval_n(config):
    """Pictures to score: --eval_n per class for MNIST; a folder's: --eval_n in all if given, else None (its floor's)."""
    return FLAGS.eval_n if config["dataset"] in MNIST_LIKE or FLAGS["eval_n"].present else None


def write_eval(model, folder, step, config):
    """--eval of the run (config) of model: against eval_reference, else (a grayscale folder without classes)
    in the MNIST classifier's features against the folder's own pictures."""
    import evaluate
    reference = eval_reference(config)
    if reference or config["dataset"] == CURVES:
        return evaluate.write_eval(model, folder, step, eval_n(config) if reference else FLAGS.eval_n, reference)
    real = data.load_training_data(config, FLAGS.data_dir, download(), limit=20 * FLAGS.eval_n)[0]
    evaluate.write_folder_eval(model, folder, step, real, 10 * FLAGS.eval_n)


def run_demo(model, path, eval_path, completer=None):
    import demo
    demo.serve(model, path, FLAGS.demo_host, FLAGS.demo_port, FLAGS.demo_max_images, eval_path,
               max_queue=FLAGS.demo_max_queue, completer=completer)


def write_generated(model, labels, names, folder):
    import serving
    serving.write_generated(model, labels, names, folder, FLAGS.n_per_label, FLAGS.seed, FLAGS.save_individual)


def train(dcgan, run, training_data, strategy):
    """Trains under the run's lock, from its latest checkpoint; a worker's scratch copies are dropped after."""
    import train as training
    folder = distribute.worker_folder(run.checkpoints, strategy)
    with held_alone(folder, f"another process is training the run in {folder}: let it finish or stop it, or train "
                            "under another --out_name"):
        clear_unfinished_saves(folder)
        manager = checkpoint_manager(dcgan, folder, FLAGS.max_to_keep)
        recipe = training_recipe(run.config, recipe_asked())
        run.config["training"] = {**recipe, "augment": FLAGS.augment}  # recorded in config.json, as used
        restore(manager, required=False, folder=run.checkpoints, learning_rate=recipe["learning_rate"],
                d_learning_rate=recipe["d_learning_rate"])
        chief = distribute.is_chief(strategy)
        reference = eval_reference(run.config) if FLAGS.eval_freq and chief else None
        training.train(dcgan, manager, run, training_data, strategy, FLAGS.epoch, FLAGS.sample_freq, FLAGS.ckpt_freq,
                       FLAGS.eval_freq, reference, eval_n(run.config), FLAGS.G_img_sum,
                       best_manager(dcgan, run.checkpoints, record=True) if FLAGS.keep_best and chief else None)
    if folder != run.checkpoints:  # the chief's checkpoints are the run's
        shutil.rmtree(folder, ignore_errors=True)
    return folder == run.checkpoints


def main(argv):
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise DCGANError(f"unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)")
    if FLAGS.from_savedmodel or FLAGS.eval_savedmodel:  # an export instead of the run's checkpoints
        from serving import load_savedmodel
        exported = load_savedmodel(FLAGS.from_savedmodel or FLAGS.eval_savedmodel)
        folder = os.path.join(FLAGS.sample_dir, FLAGS.out_name or run_name(run_config()))
        if FLAGS.from_savedmodel and FLAGS.generate:
            write_generated(exported, labels_asked(exported.class_names), exported.class_names, folder)
        elif FLAGS.from_savedmodel:
            run_demo(exported, FLAGS.from_savedmodel, os.path.join(folder, "eval.json"))
        else:
            write_eval(exported, folder, exported.step, run_config())
        return
    imported = import_original(FLAGS.import_original) if FLAGS.import_original else None
    run = open_run(run_config(), imported)
    if FLAGS.train and FLAGS.strategy == "multi_worker" and not os.path.exists(run.config_path) \
            and not FLAGS["seed"].present:
        raise DCGANError("a new multi-worker run needs --seed: every worker must draw the same data order and z")
    # Devices and the cluster are set up before anything else starts TensorFlow's runtime.
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.logical_cpus, FLAGS.worker_wait) \
        if FLAGS.train and FLAGS.strategy != "auto" else None
    if FLAGS.eval_folder and (FLAGS.eval or FLAGS.eval_freq):  # before reading pictures to train on
        import folder_eval
        folder_eval.list_labelled_folder(folder_eval.labelled_folder_path(FLAGS.data_dir, FLAGS.eval_folder))
    # A new image folder run learns its channels and classes from its pictures, decoded once into the run's cache.
    training_data = data.load_training_data(run.config, FLAGS.data_dir, download(), read=cache.reader(
        os.path.join(run.checkpoints, "cache")), scored=FLAGS.eval_freq and not FLAGS.eval_folder) if FLAGS.train else None
    repair_checkpoint_list(run.checkpoints)
    # Before TensorFlow loads: a mistyped name or a forgotten --train is answered at once.
    if not FLAGS.train and not os.path.exists(os.path.join(run.checkpoints, "checkpoint")):
        raise DCGANError(f"no checkpoint in {run.checkpoints}: train first with --train")
    if FLAGS.step == "best" and not os.path.exists(os.path.join(run.checkpoints, BEST, "checkpoint")):
        raise DCGANError(f"no best checkpoint in {os.path.join(run.checkpoints, BEST)}: train with --eval_freq and --keep_best")
    names = class_names(run.config)
    labels = labels_asked(names) if FLAGS.generate or FLAGS["labels"].present else None
    if FLAGS.arithmetic or FLAGS.invert or FLAGS.complete:
        import latent
        latent.check_asked(FLAGS.arithmetic, FLAGS.invert, FLAGS.complete, names)
    if FLAGS.train and strategy is None:
        strategy = distribute.make_strategy("auto")
    dcgan = build_model(run.config, strategy)
    if FLAGS.train:
        if not train(dcgan, run, training_data, strategy):
            return  # a worker: the chief writes the rest
    else:
        best = FLAGS.step == "best"
        restore(best_manager(dcgan, run.checkpoints) if best else checkpoint_manager(dcgan, run.checkpoints), True)
    sample_or_serve(dcgan, run, labels, names)


def sample_or_serve(dcgan, run, labels, names):
    """What the flags ask of a trained model besides training; a sample grid when they ask nothing else."""
    import serving
    if FLAGS.generate:
        write_generated(dcgan, labels, names, run.samples)
    if FLAGS.eval:
        write_eval(dcgan, run.samples, dcgan.trained_steps(), run.config)
    latent_asked = FLAGS.arithmetic or FLAGS.invert or FLAGS.complete
    if latent_asked:
        import latent
        latent.write_asked(dcgan, run.samples, names, FLAGS.arithmetic, FLAGS.invert, FLAGS.complete, FLAGS.mask,
                           labels, FLAGS.n_per_label, FLAGS.seed or 0)
    if not (FLAGS.train or FLAGS.generate or FLAGS.eval or FLAGS.demo or FLAGS.plot or latent_asked):
        os.makedirs(run.samples, exist_ok=True)
        path = os.path.join(run.samples, f"test_{dcgan.trained_steps():06d}.png")
        curves = run.config["dataset"] == CURVES
        real = data.make_curves(run.config["batch_size"], run.config["seed"]) if curves else None
        visualize.save_samples(dcgan, run.config, *visualize.fixed_samples(run.config, dcgan.z_dim), real, path)
        print(f"Wrote {path}")
    if FLAGS.visualize:
        folder = os.path.join(run.samples, "visualize")
        written = visualize.visualize(lambda z, labels: dcgan.sample(z, labels).numpy(), dcgan.z_dim, dcgan.z_dist,
                                      dcgan.y_dim, int(FLAGS.visualize_option), folder, run.config["seed"])
        print(f"Wrote {len(written)} files to {folder}")
    if FLAGS.plot and not FLAGS.train:
        visualize.write_plots(dcgan, run, data.first_batch(run.config, FLAGS.data_dir, download()))
    class_list = run.config.get("class_names") or ()
    # The best step's exports have a base path of their own: TF Serving serves a base path's highest version,
    # and every step after the best is higher.
    exports = os.path.join(run.exports, BEST) if FLAGS.step == "best" else run.exports
    if FLAGS.export:
        serving.export(dcgan, exports, class_list)
    if FLAGS.demo:
        import latent
        run_demo(*serving.current_export(dcgan, exports, class_list), os.path.join(run.samples, "eval.json"),
                 functools.partial(latent.complete_picture, dcgan, names))


def run_main(argv):
    utils.exit_in_one_line(lambda: main(argv), disk="write elsewhere (--checkpoint_dir, --sample_dir, --tensorboard_dir, "
                           "--export_dir)", memory="use a smaller --batch_size, --n_per_label or --eval_n, or narrower "
                           "networks (--z_dim, --gf_dim, --df_dim, --gfc_dim, --dfc_dim)")


if __name__ == "__main__":
    utils.drop_tensorflow_notes(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    app.run(run_main)
