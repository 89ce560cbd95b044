"""The judge: a feature network trained on other pictures than those it judges, in whose features a
folder's run is scored (folder_eval.py). A network trained on the judged folder itself reads its own
pictures too kindly: features that only need to tell its ten categories apart put every picture of a
category close together, and generated pictures near any of them pass as variety.

A judge is a small convolutional network trained to tell a labelled folder's classes apart (the emoji
sets' hundred-odd subcategories), read at 64x64 on white. Its features are every stage's activations
averaged over the picture (32, 64, 128 and 256 channels: colour and strokes early, parts and subjects
late), each stage scaled to the same total variance over its training pictures, so that a blur or a
colour shift shows as much as a wrong subject. It remembers a digest of each of its training files, and
says so when asked to judge pictures it was trained on.

    judge = load_judge("judges/openmoji")          # shipped: trained on openmoji, judges emoji-google
    features = judge.features(images)              # uint8 [N, H, W, C] -> [N, 480]
    python judge.py data/openmoji-subgroups judges/openmoji   # trains one on a labelled folder
"""
import hashlib
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import utils
from data import list_image_folder, read_images

VERSION = "judge-v1"  # recorded with every judge: change it when the network or its training changes
SIZE = 64  # pictures are judged at 64x64, larger and smaller ones resized
WIDTHS = (32, 64, 128, 256)
EPOCHS, BATCH, HELD_OUT = 30, 64, 0.1
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "judges")


def build_network(num_classes):
    """Four stages of two 3x3 convolutions with batch norm, max-pooled between; each stage averaged over the
    picture is a part of the features, the last one's also feeds the classes' logits."""
    inputs = keras.Input((SIZE, SIZE, 3))
    h, stages = inputs, []
    for i, filters in enumerate(WIDTHS):
        if i:
            h = layers.MaxPooling2D()(h)
        for _ in range(2):
            h = layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
            h = layers.ReLU()(layers.BatchNormalization()(h))
        stages.append(layers.GlobalAveragePooling2D(name=f"stage{i}")(h))
    logits = layers.Dense(num_classes, name="logits")(layers.Dropout(0.3)(stages[-1]))
    return keras.Model(inputs, [logits, *stages], name="judge")


def as_input(images):
    """Pictures [N, H, W, C] (uint8, or floats in [0, 1]; C 1 or 3) as the network reads them: float32 RGB
    [N, SIZE, SIZE, 3]."""
    x = np.asarray(images)
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return tf.image.resize(x, (SIZE, SIZE)).numpy() if x.shape[1:3] != (SIZE, SIZE) else x


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


class Judge:
    """A trained judge network and its record (what trained it, its stages' scales, its training files)."""

    def __init__(self, network, record, path):
        self.network, self.record, self.path = network, record, path
        self.scales = np.asarray(record["scales"], np.float64)
        self.trained_on = set(record["files"])
        self.key = f"the judge {os.path.basename(path)} ({record['version']}, trained on {record['source']})"

    def stages(self, images, batch_size=250):
        """Each stage's features of pictures [N, H, W, C], unscaled: a list of [N, width]."""
        outputs = self.network.predict(as_input(images), batch_size=batch_size, verbose=0)
        return [np.asarray(o, np.float64) for o in outputs[1:]]

    def features(self, images):
        """The features the figures are measured in: [N, sum(WIDTHS)], every stage scaled by its record."""
        return np.concatenate([s / scale for s, scale in zip(self.stages(images), self.scales)], axis=1)

    def seen(self, paths):
        """How many of the files at paths trained this judge (by their bytes' digest)."""
        return sum(file_digest(p) in self.trained_on for p in paths)


def stage_scales(stages):
    """Per stage, the square root of its total variance over pictures: dividing by it gives every stage the
    same weight in distances, whatever its width."""
    return [float(np.sqrt(np.var(s, axis=0).sum())) for s in stages]


def train_judge(folder, out, epochs=EPOCHS, seed=0, verbose=2):
    """Trains a judge on the labelled folder's pictures (a sub-folder per class) and writes it to out
    (out.weights.h5 and out.json); returns its record."""
    paths, labels, names = list_image_folder(folder, None)
    if not names:
        raise utils.DCGANError(f"{folder} is not a labelled folder: a judge learns to tell its classes apart")
    images, kept = read_images(paths, (SIZE, SIZE), channels=3)
    labels, paths = labels[kept], [paths[i] for i in kept]
    rng = np.random.default_rng(seed)
    held = rng.random(len(images)) < HELD_OUT
    keras.utils.set_random_seed(seed)
    network = build_network(len(names))
    network.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] + [None] * len(WIDTHS))
    # Mirror images and shifts only: colour and sharpness are what it must stay sensitive to. (Drawing like
    # another artist as well, outlines filled and shading added, made it as blind to a blur: docs/colour.md.)
    augment = keras.Sequential([layers.RandomFlip("horizontal", seed=seed),
                                layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=1.0, seed=seed)])
    train = (tf.data.Dataset.from_tensor_slices((as_input(images[~held]), labels[~held].astype(np.int32)))
             .shuffle(int((~held).sum()), seed=seed, reshuffle_each_iteration=True).batch(BATCH)
             .map(lambda x, y: (augment(x, training=True), y)).prefetch(tf.data.AUTOTUNE))
    network.fit(train, epochs=epochs, verbose=verbose, shuffle=False)
    logits = network.predict(as_input(images[held]), batch_size=250, verbose=0)[0]
    judge = Judge(network, {"scales": [1.0] * len(WIDTHS), "files": [], "version": VERSION, "source": ""}, out)
    record = {"version": VERSION, "source": os.path.basename(os.path.normpath(folder)), "classes": names,
              "held_out_accuracy": round(float(np.mean(logits.argmax(1) == labels[held])), 4),
              "pictures": len(images), "epochs": epochs, "seed": seed,
              "scales": stage_scales(judge.stages(images)), "files": sorted(file_digest(p) for p in paths),
              "tensorflow": tf.__version__, "keras": keras.__version__, "trained_on": utils.cpu_model()}
    write_judge(network, record, out)
    return record


def write_judge(network, record, out):
    """Writes the network's weights (out.weights.h5, without the optimiser's moments: a third of the size) and its
    record (out.json)."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    weights_only = build_network(len(record["classes"]))
    weights_only.set_weights(network.get_weights())
    with utils.published(out + ".weights.h5", ".tmp.weights.h5") as tmp:  # Keras takes only names ending .weights.h5
        weights_only.save_weights(tmp)
    utils.save_json(record, out + ".json")


def load_judge(path):
    """The judge written by train_judge at path (the prefix of path.weights.h5 and path.json)."""
    try:
        with open(path + ".json") as f:
            record = json.load(f)
        network = build_network(len(record["classes"]))
        network.load_weights(path + ".weights.h5")
    except (OSError, ValueError, KeyError) as e:
        raise utils.DCGANError(f"cannot load the judge {path} ({utils.first_line(e)}): give the prefix of its "
                               ".weights.h5 and .json files") from None
    if record.get("version") != VERSION:
        raise utils.DCGANError(f"the judge {path} is a {record.get('version')} judge, and this code reads {VERSION}: "
                               "train it again (python judge.py)")
    return Judge(network, record, path)


class InceptionJudge:
    """InceptionV3's ImageNet features as a judge (--judge inception): where its weights are on disk or can
    be downloaded (evaluate.inception_features)."""

    key = "InceptionV3's ImageNet features"

    def __init__(self):
        from evaluate import inception_features
        self.network = inception_features()

    def features(self, images):
        images = np.asarray(images)
        return np.asarray(self.network(np.repeat(images, 3, -1) if images.shape[-1] == 1 else images), np.float64)

    @staticmethod
    def seen(paths):
        return 0


SAMPLED = 200  # the judged files whose digests are looked up among a judge's training files


def judge_for(name, paths):
    """The judge name names for pictures at paths: 'inception', the prefix of a judge's files, or '' for the
    shipped judge that was trained on none of them (the first in SHIPPED's order that saw none of SAMPLED of
    them). A judge that was trained on some of them is used with a warning: its figures flatter them."""
    if name == "inception":
        return InceptionJudge()
    sample = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))[:SAMPLED]]
    candidates = [name] if name else shipped_judges()
    for path in candidates:
        judge = load_judge(path)
        seen = judge.seen(sample)
        if not seen or path == candidates[-1]:
            break
    if seen:
        print(f"Warning: {judge.key} was trained on {seen} of {len(sample)} of these pictures (those looked up): its "
              "figures flatter them; give a --judge trained elsewhere", file=sys.stderr)
    return judge


def shipped_judges():
    """The prefixes of the judges that ship in judges/, in the order auto-selection tries them."""
    names = sorted({f.split(".")[0] for f in os.listdir(SHIPPED) if f.endswith(".json")}) if os.path.isdir(SHIPPED) else []
    if not names:
        raise utils.DCGANError(f"no judge in {SHIPPED}: restore it from git, or give --judge")
    return [os.path.join(SHIPPED, n) for n in names]


if __name__ == "__main__":
    # python judge.py LABELLED_FOLDER OUT [EPOCHS]: trains a judge (the shipped ones: docs/colour.md).
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python judge.py LABELLED_FOLDER OUT_PREFIX [EPOCHS]")
    print(json.dumps({k: v for k, v in train_judge(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])).items()
                      if k != "files"}, indent=2))
