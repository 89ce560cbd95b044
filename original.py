"""The original's checkpoints: carpedm20's DCGAN-tensorflow (TensorFlow 1, tf.train.Saver) read into a run.

The port's layers carry the original's scope names, so each of its variables has one of ours:
generator/g_h0_lin/Matrix is our generator/g_h0_lin/kernel, <conv>/w and <conv>/biases a convolution's
kernel and bias, batch norm's beta, gamma, moving_mean and moving_variance the same names. The model's
sizes and widths are worked out from the variables' shapes; tf.train.load_checkpoint reads the files,
so neither TensorFlow 1 nor the original is needed.

    config, tensors = read_checkpoint("out/mnist/checkpoint")     # or a prefix: .../model.b64-27000
    dcgan = build_dcgan({**config, "dataset": "mnist", "batch_size": 64, "seed": 0, ...})
    load_weights(dcgan, tensors)
"""
import json
import math
import os
import re

from data import CURVES, MNIST_LIKE, NUM_CLASSES
from utils import DCGANError, first_line

# The original's names for a layer's kernel and bias: linear layers (named *_lin) have Matrix and bias,
# convolutions w and biases.
LINEAR_NAMES, CONV_NAMES = {"kernel": "Matrix", "bias": "bias"}, {"kernel": "w", "bias": "biases"}
# Its Adam slots: <variable>/Adam holds the first moment, <variable>/Adam_1 the second.
FIRST_MOMENT, SECOND_MOMENT = "/Adam", "/Adam_1"
SETTINGS_FILE = "flags.json"
Z_DISTS = {"uniform_signed": "uniform_signed", "uniform_unsigned": "uniform_unsigned", "normal01": "normal"}


def original_name(path):
    """The original's name of our variable path (generator/g_h0_lin/kernel -> generator/g_h0_lin/Matrix)."""
    network, layer, weight = path.split("/")
    if weight in ("kernel", "bias"):
        weight = (LINEAR_NAMES if layer.endswith("_lin") else CONV_NAMES)[weight]
    return f"{network}/{layer}/{weight}"


def checkpoint_prefix(path):
    """The prefix of the checkpoint at path: a prefix (.../model.b64-27000, or one of its files), or a folder,
    whose 'checkpoint' list names the latest (by its file name: the list may hold another machine's paths),
    else whose highest-numbered checkpoint."""
    path = re.sub(r"\.(index|meta|data-\d+-of-\d+)$", "", path.rstrip("/"))
    if not os.path.isdir(path):
        if not os.path.exists(path + ".index"):
            raise DCGANError(f"no checkpoint at {path}: give a folder holding one, or a prefix such as "
                             ".../checkpoint/model.b64-27000 (its .index file must be there)")
        return path
    listed = listed_name(os.path.join(path, "checkpoint"))
    if listed and os.path.exists(os.path.join(path, listed + ".index")):
        return os.path.join(path, listed)
    prefixes = [name[:-len(".index")] for name in os.listdir(path) if name.endswith(".index")]
    if not prefixes:
        raise DCGANError(f"no checkpoint in {path}: it holds no .index file")
    return os.path.join(path, max(prefixes, key=lambda p: (step_of(p) or 0, p)))


def listed_name(listing):
    try:
        with open(listing) as f:
            found = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.MULTILINE)
    except OSError:
        return None
    return found and os.path.basename(found.group(1))


def step_of(prefix):
    """The training step in a checkpoint's name (model.b64-27000, DCGAN.model-27000), or None."""
    found = re.search(r"-(\d+)$", os.path.basename(prefix))
    return int(found.group(1)) if found else None


def read_tensors(prefix):
    """{name: array} of every tensor in the checkpoint, read whole now: a damaged file fails here,
    before anything is written."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise DCGANError(f"cannot read checkpoint {prefix}: {first_line(getattr(e, 'message', e))}") from None
    tensors = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        try:
            tensors[name] = reader.get_tensor(name)
        except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: a data file cut short
            raise DCGANError(f"cannot read {name} from checkpoint {prefix}: "
                             f"{first_line(getattr(e, 'message', e))}") from None
    return tensors


def saved_settings(prefix):
    """The settings file the original writes beside its checkpoint folder (flags.json, in capitals there;
    any case here, as copies between file systems change it), or {}."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(prefix)))
    try:
        name = next(n for n in sorted(os.listdir(folder)) if n.lower() == SETTINGS_FILE)
        with open(os.path.join(folder, name)) as f:
            saved = json.load(f)
    except (OSError, ValueError, StopIteration):
        return {}
    return saved if isinstance(saved, dict) else {}


def shape(tensors, name):
    if name not in tensors:
        raise DCGANError(f"the checkpoint has no {name}: it is not one of DCGAN-tensorflow's models "
                         "(or the variable was renamed)")
    return tensors[name].shape


def infer_config(tensors, height=None, width=None):
    """The model's settings from the variables' shapes: y_dim, z_dim, c_dim, the widths, the output size
    and layers. Where the shapes leave the size open, height and width (or their defaults) decide."""
    unconditional = "generator/g_h4/w" in tensors
    g0 = shape(tensors, "generator/g_h0_lin/Matrix")
    if unconditional:
        gf_dim = shape(tensors, "generator/g_h4/w")[3]
        # gfc_dim and dfc_dim: the unconditional networks have no such layers; the flags' defaults.
        config = dict(y_dim=0, z_dim=g0[0], c_dim=shape(tensors, "generator/g_h4/w")[2], gf_dim=gf_dim,
                      df_dim=shape(tensors, "discriminator/d_h0_conv/w")[3], gfc_dim=1024, dfc_dim=1024, layers=4)
        smallest, factor = g0[1] // max(gf_dim * 8, 1), 16  # (H/16) * (W/16), sizes halving rounded up
    else:
        h2 = shape(tensors, "generator/g_h2/w")
        y_dim, gf_dim = h2[3] - h2[2], h2[2] // 2
        config = dict(y_dim=y_dim, z_dim=g0[0] - y_dim, c_dim=shape(tensors, "generator/g_h3/w")[2], gf_dim=gf_dim,
                      df_dim=shape(tensors, "discriminator/d_h1_conv/w")[3] - y_dim, gfc_dim=g0[1],
                      dfc_dim=shape(tensors, "discriminator/d_h2_lin/Matrix")[1], layers=None)
        smallest, factor = shape(tensors, "generator/g_h1_lin/Matrix")[1] // max(gf_dim * 2, 1), 4  # (H/4) * (W/4)
    widths = {k: int(v) for k, v in config.items() if k not in ("y_dim", "layers")}
    if min(widths.values()) < 1:
        raise DCGANError(f"the checkpoint's shapes fit no DCGAN-tensorflow model (they give {widths})")
    height, width = output_size(smallest, factor, height, width)
    return {**{k: int(v) for k, v in config.items() if v is not None}, "layers": config["layers"],
            "output_height": height, "output_width": width}


def output_size(smallest, factor, height, width):
    """(height, width) whose maps after log2(factor) halvings (rounded up) have smallest pixels: the
    given ones when they fit, else the square size that halves exactly (the original's 64 gives 4x4)."""
    if height:
        width = width or height
        if math.ceil(height / factor) * math.ceil(width / factor) != smallest:
            raise DCGANError(f"the checkpoint's generator starts from {smallest} pixels, which {height}x{width} "
                             f"images (halved to {math.ceil(height / factor)}x{math.ceil(width / factor)}) do not "
                             "have: leave --output_height and --output_width out, or give the run's own")
        return height, width
    side = math.isqrt(smallest)
    if side * side != smallest:
        raise DCGANError(f"the checkpoint's generator starts from {smallest} pixels, not a square map: give the "
                         "run's --output_height and --output_width")
    return factor * side, factor * side


def check_shapes(dcgan, tensors):
    """Every variable of ours has the original's counterpart, of the same shape."""
    for variable in dcgan.generator.variables + dcgan.discriminator.variables:
        name = original_name(variable.path)
        if tuple(shape(tensors, name)) != tuple(variable.shape):
            raise DCGANError(f"{name} in the checkpoint is {list(tensors[name].shape)}, where the model its other "
                             f"variables describe has {list(variable.shape)}: no size fits it")


def has_adam_slots(tensors):
    return any(name.endswith(FIRST_MOMENT) for name in tensors)


def load_weights(dcgan, tensors, step):
    """Assigns the checkpoint's weights, batch-norm statistics and, where it holds them, Adam moments to
    dcgan (built and compiled); its optimisers count step D updates and 2 * step G updates, as the
    original's loop makes. Returns whether the Adam moments were there."""
    check_shapes(dcgan, tensors)
    for variable in dcgan.generator.variables + dcgan.discriminator.variables:
        variable.assign(tensors[original_name(variable.path)])
    slots = has_adam_slots(tensors)
    for optimizer, network, updates in ((dcgan.d_optimizer, dcgan.discriminator, step),
                                        (dcgan.g_optimizer, dcgan.generator, 2 * step)):
        optimizer.iterations.assign(updates)
        if not slots:
            continue
        for variable in network.trainable_variables:
            name, index = original_name(variable.path), optimizer._get_variable_index(variable)
            for moments, suffix in ((optimizer._momentums, FIRST_MOMENT), (optimizer._velocities, SECOND_MOMENT)):
                moments[index].assign(slot(tensors, name + suffix, variable))
    if dcgan.average:
        for average, source in zip(dcgan.average.trainable + dcgan.average.non_trainable, dcgan.average.sources):
            average.assign(source)
    return slots


def slot(tensors, name, variable):
    if name not in tensors:
        raise DCGANError(f"the checkpoint has Adam slots, but not {name}")
    if tensors[name].shape != tuple(variable.shape):
        raise DCGANError(f"{name} in the checkpoint is {list(tensors[name].shape)}, not {list(variable.shape)}")
    return tensors[name]


def describe(config, prefix, step, slots):
    kind = (f"conditional, {config['y_dim']} classes" if config["y_dim"] else "unconditional")
    return (f"{prefix}: DCGAN-tensorflow's {kind} model, {config['output_height']}x{config['output_width']}x"
            f"{config['c_dim']}, z_dim {config['z_dim']}, gf_dim {config['gf_dim']}, df_dim {config['df_dim']}"
            + (f", gfc_dim {config['gfc_dim']}, dfc_dim {config['dfc_dim']}" if config["y_dim"] else "")
            + f", step {step}" + ("" if slots else "; no Adam slots in it: --train resumes with fresh optimiser "
                                                    "state"))


def imported_config(tensors, prefix, config, given):
    """The run's settings for the checkpoint: config (the settings asked for: dataset, batch size, seed
    ...) with the model's own from the variables' shapes, sizes the shapes leave open from the flags
    given or the original's settings file. given: the settings the user gave explicitly, which must agree."""
    saved = saved_settings(prefix)
    height = config["output_height"] if "output_height" in given else whole(saved.get("output_height"))
    width = config["output_width"] if "output_width" in given else whole(saved.get("output_width"))
    model = infer_config(tensors, height, width)
    for name, value in model.items():
        if name in given and config[name] is not None and str(config[name]) != str(value):
            raise DCGANError(f"the checkpoint's {name} is {value}, not {config[name]}: leave --{name} out")
    kind = f"{model['output_height']}x{model['output_width']}x{model['c_dim']}, " + \
        (f"conditional on {model['y_dim']} classes" if model["y_dim"] else "unconditional")
    if config["dataset"] == CURVES:
        raise DCGANError(f"the original has no {CURVES}: import its checkpoints as mnist or an image folder")
    if config["dataset"] in MNIST_LIKE:
        size = MNIST_LIKE[config["dataset"]]
        if (model["y_dim"], model["output_height"], model["output_width"], model["c_dim"]) != (NUM_CLASSES, size, size, 1):
            raise DCGANError(f"the checkpoint's model is {kind}, not {config['dataset']}'s conditional {size}x{size}x1: "
                             "import it with --dataset naming its image folder")
    elif model["y_dim"]:
        raise DCGANError(f"the checkpoint's model is {kind}: the original trains that one on MNIST, so import it "
                         "with --dataset mnist")
    z = config["z_dist"] if "z_dist" in given else Z_DISTS.get(saved.get("z_dist"), "uniform_signed")
    return {**config, **model, "z_dist": z, "arch": "dcgan", "loss": "gan", "spectral_norm": False,
            "ema_decay": 0.0, "moving_variance": config["moving_variance"] if "moving_variance" in given else "unbiased",
            **({} if model["y_dim"] else {"class_names": []})}


def whole(value):
    return value if isinstance(value, int) and value > 0 else None

