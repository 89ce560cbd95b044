"""A run on disk: its folders, its config.json (the settings that must stay fixed across resumes), its
recipe (how it trains where flags leave it), its checkpoints (the manager, the repair of a damaged list,
restore and save) and the lock that keeps one trainer per run.

    run = Run(config, run_name(config))          # config: main.py's settings, or your own dict
    manager = checkpoint_manager(dcgan, run.checkpoints)
    restore(manager, required=True)
"""
import contextlib
import glob
import json
import os
import random
import re
import shutil
import sys

from data import CURVES
from utils import DCGANError, absl_errors_only, digit_names, first_line, save_json

# The settings that fix the model, the variables' shapes or the data: a run keeps them in config.json,
# and is resumed with the same ones.
SETTINGS = ("dataset", "batch_size", "train_size", "output_height", "output_width", "z_dim", "z_dist", "c_dim",
            "y_dim", "gf_dim", "df_dim", "gfc_dim", "dfc_dim", "ema_decay", "seed", "arch", "loss", "spectral_norm",
            "input_fname_pattern", "crop", "input_height", "input_width", "layers", "recipe", "projection",
            "moving_variance", "conditioning", "balance_classes")
# What runs saved before these settings existed were trained with.
DEFAULTS = {"arch": "dcgan", "loss": "gan", "spectral_norm": False, "input_fname_pattern": None, "crop": False,
            "input_height": None, "input_width": None, "layers": 4, "recipe": "original", "projection": False,
            "moving_variance": "biased", "conditioning": "mnist", "balance_classes": False}
# Settings a run's config.json may hold as null: all the data, and an MNIST run's image-folder settings.
UNSET = ("train_size", "input_fname_pattern", "input_height", "input_width", "layers")


# How the original trains: Adam at 0.0002 with beta1 0.5, two G updates per D update.
# d_learning_rate None: D's is learning_rate too.
ORIGINAL_RECIPE = {"learning_rate": 0.0002, "d_learning_rate": None, "beta1": 0.5, "g_steps": 2}


# --recipe: changes to the variant's recipe (and batch size). best: one G update per D update, which after
# two epochs drew lower FID, more varied digits and more recall than the original's two; batches of 32:
# twice the updates an epoch in 40 % more time (still less than the original's), FID lower again; and D
# learning twice as fast as G (d_speedup; the two time-scale rule), which lowered FID and raised recall
# most of all (docs/quality.md, three seeds).
RECIPES = {"original": {}, "best": {"g_steps": 1, "batch_size": 32, "d_speedup": 2}}


# How a labelled folder's networks take the class: the folder networks with class-conditional batch norm in G
# and a projection term in D (Miyato & Koyama 2018), or with the one-hot label joined to every layer's input (the
# original's way, from its MNIST networks); or the MNIST networks themselves.
# model.folder_conditioning gives pictures under 32 pixels a side the MNIST networks, whatever was asked.
CONDITIONINGS = ("projection", "concat", "mnist")
DEFAULT_CONDITIONING = "projection"


def variant_recipe(arch, loss):
    """The training settings of a variant, for those its flags leave out: its source's where they
    learn here. CS231N's GAN notebook (mlp, cs231n) trains Adam at 1e-3, beta1 0.5, one G update per
    D update; the mlp at 5e-4, where its projection D drew the class asked for 91 % of the time after an
    epoch against 85 % at 1e-3 (three seeds each). LSGAN (Mao et al. 2017) updates each network once per
    batch. SN-GAN's setting with DCGAN's Adam also updates once each, but here that drew 77 % of the
    digits asked for after an epoch, against 91 % with the original's two G updates (seed 0): spectral
    norm keeps the original's."""
    recipe = dict(ORIGINAL_RECIPE)
    if arch in ("mlp", "cs231n"):
        recipe.update(learning_rate=0.0005 if arch == "mlp" else 0.001, g_steps=1)
    if loss == "lsgan":
        recipe.update(g_steps=1)
    return recipe


def training_recipe(config, asked):
    """How a run (config: its settings) trains now: the values asked ({name: value or None} of ORIGINAL_RECIPE's
    names) where given, else its variant's (variant_recipe) as its recipe changes them (a d_speedup there: D's
    learning rate that many times G's)."""
    recipe = {**variant_recipe(config["arch"], config["loss"]), **RECIPES[config["recipe"]]}
    chosen = {name: recipe[name] if asked.get(name) is None else asked[name] for name in ORIGINAL_RECIPE}
    if asked.get("d_learning_rate") is None and "d_speedup" in recipe:
        chosen["d_learning_rate"] = recipe["d_speedup"] * chosen["learning_rate"]
    return chosen


def run_name(config):
    """<dataset>_<batch>_<height>_<width>, with the arch, loss and spectral norm where they are not the
    original's (mnist_mlp_lsgan_sn_64_28_28)."""
    variant = [config["arch"], config["loss"], "sn" if config["spectral_norm"] else ""]
    variant = [v for v in variant if v not in ("dcgan", "gan", "", CURVES)]
    return "_".join([config["dataset"], *variant, str(config["batch_size"]),
                     str(config["output_height"]), str(config["output_width"])])


def class_names(config):
    """The run's class names ([] when unconditional); MNIST runs' are its digits."""
    return config.get("class_names") or digit_names(config["y_dim"])


class Run:
    """A run's folders and its config.json, which pins SETTINGS for later resumes.

    config: the settings asked for now; given: the names of those the user gave explicitly (they must
    agree with an existing run's); training: whether this command trains (else the seed given only
    picks the noise of the images asked for); valid(name, value): whether a value read from config.json
    is one the setting takes (default: any).
    """

    def __init__(self, config, name, checkpoint_dir="checkpoints", sample_dir="samples", tensorboard_dir="logs",
                 export_dir="export", given=(), training=False, valid=None):
        self.name = name
        self.checkpoints = os.path.join(checkpoint_dir, name)
        self.samples = os.path.join(sample_dir, name)
        self.logs = os.path.join(tensorboard_dir, name)
        self.exports = os.path.join(export_dir, name)
        self.config_path = os.path.join(self.checkpoints, "config.json")
        self.valid = valid or (lambda name, value: True)
        self.config = self.settle_config(dict(config), set(given), training)

    def settle_config(self, config, given, training):
        """The run's settings: a new run's as asked, an existing run's from its config.json.

        A setting given explicitly that contradicts the run's value is an error; those left out take
        the run's values, so resuming, sampling or exporting need not repeat them.
        """
        saved = self.saved_config()
        if saved is None:
            if checkpoint_prefixes(self.checkpoints):
                print(f"Warning: {self.checkpoints} holds checkpoints but no config.json: the run's settings are "
                      f"taken from the flags given now{'' if 'seed' in given else ', with a new --seed'}",
                      file=sys.stderr)
            if config["seed"] is None:
                config["seed"] = random.SystemRandom().randrange(2 ** 31)
            return config
        for name in SETTINGS:
            if name == "seed" and not training:
                continue
            if name in given and saved.get(name) != config[name]:
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
            if name in SETTINGS and name not in curve_sizes and not self.valid(name, value):
                raise DCGANError(f"cannot read {self.config_path}: its {name}, {json.dumps(value)}, is not a value "
                                 f"--{name} takes")
        return {**DEFAULTS, **saved}

    def save_config(self):
        save_json(self.config, self.config_path)


# ---------------------------------------------------------------- checkpoints

def checkpoint_manager(dcgan, folder, max_to_keep=1, **extra):
    """The manager of a run's checkpoints in folder: both networks, their optimisers, G's average and extra
    (more variables, saved and restored with them)."""
    import tensorflow as tf
    averaged = {"average": dcgan.average} if dcgan.average else {}
    checkpoint = tf.train.Checkpoint(generator=dcgan.generator, discriminator=dcgan.discriminator,
                                     g_optimizer=dcgan.g_optimizer, d_optimizer=dcgan.d_optimizer, **averaged, **extra)
    return tf.train.CheckpointManager(checkpoint, folder, max_to_keep=max_to_keep, checkpoint_name="ckpt")


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
    with absl_errors_only():
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


def restore(manager, required, folder=None, learning_rate=None, d_learning_rate=None):
    """Loads the latest checkpoint of folder (default: the manager's) into the model; returns whether
    there was one. Every worker of a multi-worker run restores the chief's. The checkpoint brings the
    optimisers' learning rate back too: learning_rate, when given, replaces it (D's by d_learning_rate
    where that is given)."""
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
    if learning_rate is not None:
        manager.checkpoint.g_optimizer.learning_rate.assign(learning_rate)
        manager.checkpoint.d_optimizer.learning_rate.assign(learning_rate if d_learning_rate is None else d_learning_rate)
    print(f"Restored {path}")
    return True


def load_trained(folder, precision="float32"):
    """(DCGAN, settings) of the run whose checkpoints are in folder (<checkpoint_dir>/<run>), restored
    from its latest checkpoint: for scripts and notebooks that use a trained model."""
    from model import build_dcgan
    folder = os.path.normpath(folder)
    run = Run({}, os.path.basename(folder), os.path.dirname(folder))
    if not os.path.exists(run.config_path):
        raise DCGANError(f"{folder} is not a run's checkpoint folder (it has no config.json)")
    dcgan = build_dcgan(run.config, precision=precision)
    restore(checkpoint_manager(dcgan, folder), required=True)
    return dcgan, run.config


BEST = "best"  # the sub-folder of a run's checkpoints that --keep_best keeps its best step in


def best_manager(dcgan, checkpoints, record=False):
    """The manager of the checkpoint --keep_best keeps in checkpoints/best; record: with the FID that chose it and
    the reference that FID was measured against, as variables of that checkpoint (what save_best writes)."""
    if not record:
        return checkpoint_manager(dcgan, os.path.join(checkpoints, BEST))
    import tensorflow as tf
    return checkpoint_manager(dcgan, os.path.join(checkpoints, BEST), best_fid=tf.Variable(float("inf")),
                              best_reference=tf.Variable(""))


def save_best(manager, step, fid, reference):
    """Keeps step's checkpoint in manager's folder (best_manager with its record) when fid is below the FID kept
    there, measured against the same reference (a text naming what scored it); whether it did. The FID and the
    reference are saved inside the checkpoint, so a kill leaves the last one whole: never a checkpoint beside
    another step's FID. best.json repeats them for people."""
    kept = best_record(manager.directory)
    if kept and kept["reference"] != reference:
        print(f"Warning: the best step kept in {manager.directory} (step {kept['step']}, FID {kept['fid']:.3f}) was "
              f"scored against {kept['reference'] or 'an unrecorded reference'}, not {reference}: its FID does not "
              "compare, so the best step is chosen afresh", file=sys.stderr)
        kept = None
    if kept and not fid < kept["fid"]:
        return False
    manager.checkpoint.best_fid.assign(fid)
    manager.checkpoint.best_reference.assign(reference)
    save_checkpoint(manager, step)
    save_json({"step": step, "fid": fid, "reference": reference}, os.path.join(manager.directory, "best.json"))
    return True


def best_record(folder):
    """{'step', 'fid', 'reference'} of the best checkpoint in folder, read from the checkpoint itself (reference ''
    for one saved before the record was); None when there is none."""
    import tensorflow as tf
    path = tf.train.latest_checkpoint(folder)
    if path is None:
        return None
    reader = tf.train.load_checkpoint(path)
    names = reader.get_variable_to_shape_map()
    value = "/.ATTRIBUTES/VARIABLE_VALUE"
    if "best_fid" + value not in names:
        return {"step": int(path.rsplit("-", 1)[1]), "fid": float("inf"), "reference": ""}
    return {"step": int(path.rsplit("-", 1)[1]), "fid": float(reader.get_tensor("best_fid" + value)),
            "reference": reader.get_tensor("best_reference" + value).decode()}


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


@contextlib.contextmanager
def held_alone(folder, taken, wait=False):
    """Holds folder (made if need be) locked for the block, so that two processes never write the same
    run; raises DCGANError(taken) when another one holds it, or with wait, waits for it to let go. The lock
    is the kernel's on the folder itself (no lock file to go stale): it dies with its process, kill -9
    included. Where there is no flock (Windows, file systems without locks), the block runs unlocked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    made = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise DCGANError(taken) from None
        except OSError:  # a file system without locks (some network ones): unlocked rather than not at all
            pass
        yield
    finally:
        os.close(fd)
        if made:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                os.rmdir(folder)

