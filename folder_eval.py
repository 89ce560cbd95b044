"""Sample quality of a model of a labelled picture folder (one sub-folder per class), measured offline
with a classifier trained once on the folder's own pictures, as evaluate.py does for MNIST.

The folder's pictures are split, per class and by a fixed seed, into three parts: 60 % train the
classifier; the other two, 20 % each and never seen by it, are the reference (the real pictures the
generated ones are compared with) and the floor (real pictures compared with the reference the same
way, so that every figure has its real-vs-real value). Generated sets are as large as the floor set,
and of a conditional model in the floor set's class mix: figures of sets of one size compare.

In the classifier's 128-unit feature space: FID, KID, and improved precision/recall with density and
coverage; from its readings: class accuracy (a conditional model) and the class mix's total variation
distance from the reference's (an unconditional one).
"""
import hashlib
import os
import sys

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import utils
from data import DataError, list_image_folder, read_images
from evaluate import EVAL_SEED, MANIFOLD, fid, kid, manifold_figures

VERSION = "folder-cnn-v2"  # part of the cache key: change it when the classifier or its training changes
SIZE = 64  # the classifier reads pictures at 64x64, smaller ones at their size
SPLIT = (0.6, 0.2, 0.2)  # classifier, reference, floor
SPLIT_SEED = 0
EPOCHS = 40
MIN_STEPS = 400  # a small folder trains for longer: fewer steps leave batch norm's moving statistics unsettled
BATCH = 64


def list_labelled_folder(folder, pattern=None):
    """(paths, labels, class_names) of the pictures in folder's sub-folders, one class per sub-folder, read as
    training reads a folder (data.list_image_folder): with a run's pattern for the run's own folder, so that
    the classes are the run's; every picture file of another (pattern None)."""
    if not os.path.isdir(folder):
        raise DataError(f"cannot evaluate: there is no folder {folder}")
    try:
        paths, labels, names = list_image_folder(folder, pattern)
    except DataError as e:
        raise DataError(f"cannot evaluate: {e}") from None
    if not names:
        raise DataError(f"cannot evaluate: {folder} is not a labelled folder: it needs a sub-folder of pictures per "
                        "class")
    return paths, labels, names


def load_reference(folder, size, channels, cache_dir, crop=None, class_names=None, pattern=None):
    """The FolderReference of a labelled folder's pictures (those pattern names; None: every picture file) read
    at size (height, width) with channels 1 or 3 (centre-cropped to crop first, as the run's): the classifier
    trained on them or loaded from cache_dir. class_names: a conditional model's classes, which must be the
    folder's."""
    paths, labels, names = list_labelled_folder(folder, pattern)
    if class_names and names != list(class_names):
        raise ValueError(f"the classes of {folder} ({', '.join(names)}) are not the model's ({', '.join(class_names)})")
    images, kept = read_images(paths, size, crop, channels)
    reference = FolderReference(images, labels[kept], names, cache_dir)
    print(f"The classifier of {folder} reads {100 * reference.accuracy:.1f} % of its held-out pictures right "
          f"({reference.sizes['classifier']} pictures trained it; {reference.sizes['reference']} are the reference "
          f"and {reference.sizes['floor']} the floor)", flush=True)
    return reference


def run_reference(config, data_dir, eval_folder, cache_dir):
    """The FolderReference that scores an image-folder run (config: its settings, run.py): of eval_folder
    (a name in data_dir, or a path), else of the run's own folder when it has classes; None when neither."""
    if not eval_folder and not config["class_names"]:
        return None
    crop = (config["input_height"], config["input_width"]) if config["crop"] else None
    own = not eval_folder or labelled_folder_path(data_dir, eval_folder) == os.path.join(data_dir, config["dataset"])
    return load_reference(labelled_folder_path(data_dir, eval_folder or config["dataset"]),
                          (config["output_height"], config["output_width"]), config["c_dim"], cache_dir, crop,
                          config["class_names"], config["input_fname_pattern"] if own else None)


def labelled_folder_path(data_dir, name):
    """The folder a labelled-folder name means: the one of that name in data_dir where there is one, else
    the name as a path (so `--data_dir ../shared/data --eval_folder data/emoji-categories` finds ./data)."""
    inside = os.path.join(data_dir, name)
    return inside if os.path.isdir(inside) or not os.path.isdir(name) else name


def build_classifier(size, channels, num_classes):
    """Four stride-2 convolutions with batch norm, global average pooling, and a 128-unit 'features' layer."""
    inputs = keras.Input((size, size, channels))
    h = inputs
    for filters in (32, 64, 128, 256):
        h = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(h)
        h = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(h))
    h = layers.GlobalAveragePooling2D()(h)
    features = layers.Dense(128, activation="relu", name="features")(h)
    logits = layers.Dense(num_classes, name="logits")(layers.Dropout(0.3)(features))
    return keras.Model(inputs, [logits, features], name="folder_classifier")


def input_size(images):
    return min(SIZE, *np.shape(images)[1:3])


def as_input(images, size):
    """uint8 (or [0, 1] float) pictures [N, H, W, C] as the classifier reads them: float [N, size, size, C]."""
    x = np.asarray(images)
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    return tf.image.resize(x, (size, size)).numpy() if x.shape[1:3] != (size, size) else x


def train_classifier(images, labels, num_classes, seed=0, verbose=0):
    keras.utils.set_random_seed(seed)
    model = build_classifier(input_size(images), images.shape[-1], num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), None])
    # Shifts and mirror images: a few thousand pictures are few, and a generated picture may sit off-centre.
    augment = keras.Sequential([layers.RandomFlip("horizontal", seed=seed),
                                layers.RandomTranslation(0.08, 0.08, fill_mode="nearest", seed=seed)])
    data = (tf.data.Dataset.from_tensor_slices((as_input(images, input_size(images)), labels.astype(np.int32)))
            .shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat().batch(BATCH)
            .map(lambda x, y: (augment(x, training=True), y)).prefetch(tf.data.AUTOTUNE))
    # In ten rounds whatever the folder's size: a progress line each, not one per epoch of a tiny folder.
    model.fit(data, epochs=10, steps_per_epoch=-(-training_steps(len(images)) // 10), verbose=verbose,
              shuffle=False)  # the dataset shuffles
    return model


def training_steps(n):
    return max(EPOCHS * -(-n // BATCH), MIN_STEPS)


def split(labels, seed=SPLIT_SEED):
    """Indices (classifier, reference, floor), taken per class in SPLIT's shares: a class of fewer than
    five pictures goes to the classifier alone."""
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        held = int(SPLIT[1] * len(members)) if len(members) >= 5 else 0
        parts[0].append(members[2 * held:])
        parts[1].append(members[:held])
        parts[2].append(members[held:2 * held])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def cached_classifier(images, labels, num_classes, cache_dir):
    """The classifier of these training pictures: loaded from cache_dir, or trained once and saved there."""
    digest = hashlib.sha256(f"{VERSION} {images.shape}".encode() + images.tobytes()
                            + labels.astype(np.int32).tobytes()).hexdigest()
    path = os.path.join(cache_dir, f"folder_classifier_{digest[:16]}.weights.h5")
    model = build_classifier(input_size(images), images.shape[-1], num_classes)
    if os.path.exists(path):
        try:
            model.load_weights(path)
            return model, path
        except (OSError, ValueError) as e:  # a cache: made again rather than mended
            print(f"Warning: the cached classifier {path} does not read ({utils.first_line(e)}): training it again",
                  file=sys.stderr)
    print(f"Training a classifier of the folder's {num_classes} classes on {len(images)} of its pictures "
          f"({training_steps(len(images))} steps of {BATCH}, once; cached as {path})", flush=True)
    trained = train_classifier(images, labels, num_classes, verbose=1 if sys.stdout.isatty() else 2)
    os.makedirs(cache_dir, exist_ok=True)
    with utils.published(path, ".tmp.weights.h5") as tmp:  # Keras takes only names ending .weights.h5
        trained.save_weights(tmp)
    return trained, path


def classify(model, images, batch_size=250):
    """Predicted classes [N] and features [N, 128]."""
    logits, features = model.predict(as_input(images, model.input_shape[1]), batch_size=batch_size, verbose=0)
    return logits.argmax(axis=1), features.astype(np.float64)


def total_variation(p, q):
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


class FolderReference:
    """A labelled folder's pictures (uint8 [N, H, W, C], labels [N], class_names) and the classifier
    trained on their first part (cached in cache_dir); scores generated pictures against the rest."""

    def __init__(self, images, labels, class_names, cache_dir):
        labels = np.asarray(labels)
        self.class_names, self.num_classes = list(class_names), len(class_names)
        train, reference, floor = split(labels)
        if min(len(reference), len(floor)) <= 3:
            raise ValueError(f"{len(labels)} labelled pictures are too few to hold out a reference and a floor: "
                             "give at least five of a class")
        self.classifier, path = cached_classifier(images[train], labels[train], self.num_classes, cache_dir)
        self.key = f"the folder's pictures in {os.path.basename(path)}'s features"  # the name holds their digest
        predicted, self.features = classify(self.classifier, images[reference])
        self.shares = self.mix(predicted)
        self.floor_labels = labels[floor]
        self.floor, floor_predicted = self.figures(images[floor], self.floor_labels)
        self.accuracy = float(np.mean(np.concatenate([predicted, floor_predicted])
                                      == np.concatenate([labels[reference], self.floor_labels])))
        self.sizes = {"classifier": len(train), "reference": len(reference), "floor": len(floor)}

    def mix(self, classes):
        return np.bincount(classes, minlength=self.num_classes) / len(classes)

    def figures(self, images, asked=None):
        """(figures, classes read) of pictures [N, H, W, C] against the reference set, with the accuracy
        of their readings where asked (their classes) is given."""
        predicted, features = classify(self.classifier, images)
        shares = self.mix(predicted)
        result = {"fid": fid(features, self.features), "kid": kid(features, self.features),
                  **manifold_figures(self.features, features), "class_shares": [float(v) for v in shares],
                  "class_tv": total_variation(shares, self.shares)}
        if asked is not None:
            result["accuracy"] = float(np.mean(predicted == asked))
        return result, predicted

    def score(self, model, n=None, seed=EVAL_SEED):
        """The figures of pictures drawn by model (a DCGAN or an export) from seeds from seed on, as many
        as the floor set (whatever n, evaluate.Reference's images per class), a conditional model's in
        the floor set's classes."""
        from serving import generate
        if model.y_dim not in (0, self.num_classes):
            raise ValueError(f"the model draws {model.y_dim} classes and the folder has {self.num_classes}")
        if model.y_dim:
            asked = self.floor_labels
            drawn = [generate(model, [k], n=int(np.sum(asked == k)), seed=seed)[0] for k in np.unique(asked)]
            images, asked = np.concatenate(drawn), np.sort(asked)
        else:
            images, asked = generate(model, None, n=len(self.floor_labels), seed=seed)[0], None
        channels = self.classifier.input_shape[-1]
        if images.shape[-1] != channels:
            raise ValueError(f"the model draws {images.shape[-1]}-channel pictures and the folder's are "
                             f"{channels}-channel")
        result, _ = self.figures(images, asked)
        return {**result, "real": {**self.floor, "classifier_accuracy": self.accuracy},
                "class_names": self.class_names, "samples": int(len(images)), **{f"{k}_pictures": v for k, v in
                                                                                self.sizes.items()}}

    @staticmethod
    def summary(result):
        return format_summary(result)


def format_summary(result):
    """evaluate's print-out for a folder: each figure beside its real-vs-real value."""
    real = result["real"]
    lines = [f"classifier of the folder's {len(result['class_names'])} classes: {real['classifier_accuracy']:.3f} of "
             f"held-out pictures read right; {result['samples']} generated pictures against "
             f"{result['reference_pictures']} of the folder"]
    if "accuracy" in result:
        lines.append(f"class accuracy {result['accuracy']:.4f} (real pictures: {real['accuracy']:.4f})")
    lines += [f"FID {result['fid']:.3f}, KID {result['kid']:.4f} (real vs real: {real['fid']:.3f}, {real['kid']:.4f})",
              f"{' / '.join(MANIFOLD)} {' / '.join(f'{result[m]:.3f}' for m in MANIFOLD)} "
              f"(real vs real: {' / '.join(f'{real[m]:.3f}' for m in MANIFOLD)}); precision and recall "
              f"{result['precision'] / max(real['precision'], 1e-9):.2f} and "
              f"{result['recall'] / max(real['recall'], 1e-9):.2f} of real's",
              f"class mix {result['class_tv']:.3f} total variation from the folder's (real: {real['class_tv']:.3f}): "
              + " ".join(f"{name}:{share:.2f}" for name, share in zip(result["class_names"], result["class_shares"]))]
    return "\n".join(lines)
