"""Sample quality of a model of a picture folder, measured offline against the folder's own pictures, as
evaluate.py does for MNIST.

In the features of a judge trained on other pictures than these (judge.py): FID, KID, improved precision
and recall with density and coverage, how many generated pictures copy a training picture, and for a
labelled folder (a sub-folder per class) the category mix, each picture's category read from its nearest
real pictures. A labelled folder also trains a small classifier of its own, once (cached), which reads the
class a conditional model was asked for: class accuracy, overall and per class. It tells the classes apart
and nothing else: its features put every picture of a class close together, so they are not where
quality is measured.

The real pictures are split, per class and by a fixed seed, in two halves: the reference, that generated
pictures are compared with, and the floor, real pictures compared with the reference the same way, so
that every figure has its real-vs-real value. As many pictures are generated as the floor holds (or
eval_n), a conditional model's in the floor's class mix.
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
from evaluate import EVAL_SEED, MANIFOLD, fid, kid, manifold_figures, squared_distances

VERSION = "folder-cnn-v2"  # part of the classifier's cache key: change it when the classifier or its training changes
SIZE = 64  # the classifier reads pictures at 64x64, smaller ones at their size
SPLIT = (0.6, 0.2, 0.2)  # the classifier's training part, and the two it never sees
SPLIT_SEED = 0
EPOCHS = 40
MIN_STEPS = 400  # a small folder trains for longer: fewer steps leave batch norm's moving statistics unsettled
BATCH = 64
NEIGHBOURS = 5  # the real pictures whose categories vote on a picture's
ROUGH_BELOW = 500  # reference pictures under which precision and recall (k = 3) are rough
COPY_QUANTILE = 0.05  # a copy: nearer a training picture than all but this share of real pictures are to another
MOST_PICTURES = 20000  # of a larger folder, this many (drawn by a fixed seed) are the real pictures
ROWS = 1000


def list_labelled_folder(folder, pattern=None):
    """(paths, labels, class_names) of the pictures in folder's sub-folders, one class per sub-folder, read as
    training reads a folder (data.list_image_folder): with a run's pattern for the run's own folder, so that
    the classes are the run's; every picture file of another (pattern None)."""
    paths, labels, names = list_folder(folder, pattern)
    if not names:
        raise DataError(f"cannot evaluate: {folder} is not a labelled folder: it needs a sub-folder of pictures per "
                        "class")
    return paths, labels, names


def list_folder(folder, pattern=None):
    if not os.path.isdir(folder):
        raise DataError(f"cannot evaluate: there is no folder {folder}")
    try:
        return list_image_folder(folder, pattern)
    except DataError as e:
        raise DataError(f"cannot evaluate: {e}") from None


def labelled_folder_path(data_dir, name):
    """The folder a labelled-folder name means: the one of that name in data_dir where there is one, else
    the name as a path (so `--data_dir ../shared/data --eval_folder data/emoji-categories` finds ./data)."""
    inside = os.path.join(data_dir, name)
    return inside if os.path.isdir(inside) or not os.path.isdir(name) else name


def run_reference(config, data_dir, eval_folder, cache_dir, judge_name=""):
    """The FolderJudgement that scores an image-folder run (config: its settings, run.py) in the judge judge_name
    names (judge.judge_for): against the labelled eval_folder (a name in data_dir, or a path), else the run's own
    folder, read at the run's size and crop."""
    own = os.path.join(data_dir, config["dataset"])
    folder = labelled_folder_path(data_dir, eval_folder) if eval_folder else own
    pattern = config["input_fname_pattern"] if folder == own else None  # the run's classes in its own folder
    crop = (config["input_height"], config["input_width"]) if config["crop"] else None
    return load_judgement(folder, (config["output_height"], config["output_width"]), config["c_dim"], cache_dir,
                          judge_name, crop, config["class_names"], pattern, labelled=bool(eval_folder))


def load_judgement(folder, size, channels, cache_dir, judge_name="", crop=None, class_names=None, pattern=None,
                   labelled=False):
    """The FolderJudgement of folder's pictures (those pattern names; None: every picture file; labelled: it
    must have classes) read at size (height, width) with channels 1 or 3, centre-cropped to crop first as the
    run's. class_names: a conditional model's classes, which must be the folder's."""
    from judge import judge_for
    paths, labels, names = (list_labelled_folder if labelled else list_folder)(folder, pattern)
    if class_names and names != list(class_names):
        raise ValueError(f"the classes of {folder} ({', '.join(names or ['none'])}) are not the model's "
                         f"({', '.join(class_names)})")
    judge = judge_for(judge_name, paths)
    if len(paths) > MOST_PICTURES:  # LSUN's millions: a sample of them
        chosen = np.sort(np.random.default_rng(SPLIT_SEED).choice(len(paths), MOST_PICTURES, replace=False))
        paths, labels = [paths[i] for i in chosen], None if labels is None else labels[chosen]
    images, kept = read_images(paths, size, crop, channels)
    paths = [paths[i] for i in kept]
    judgement = FolderJudgement(images, judge, None if labels is None else labels[kept], names, cache_dir,
                                name=f"{folder} ({folder_digest(paths)})", paths=paths)
    print(f"Judging against {len(images)} pictures of {folder} in {judge.key}"
          + (f"; the folder's own classifier reads {100 * judgement.classifier_accuracy:.1f} % of its held-out "
             "pictures' classes right" if names else ""), flush=True)
    return judgement


def folder_digest(paths):
    return hashlib.sha256("\n".join(paths).encode() + b"".join(
        str(os.path.getsize(p)).encode() for p in paths)).hexdigest()[:12]


# ---------------------------------------------------------------- the folder's own classifier (class accuracy)

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
    """Indices (classifier, reference, floor) of the classifier's own split, taken per class in SPLIT's shares:
    a class of fewer than five pictures goes to the classifier alone."""
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
            return model
        except (OSError, ValueError) as e:  # a cache: made again rather than mended
            print(f"Warning: the cached classifier {path} does not read ({utils.first_line(e)}): training it again",
                  file=sys.stderr)
    print(f"Training a classifier of the folder's {num_classes} classes on {len(images)} of its pictures "
          f"({training_steps(len(images))} steps of {BATCH}, once; cached as {path})", flush=True)
    trained = train_classifier(images, labels, num_classes, verbose=1 if sys.stdout.isatty() else 2)
    os.makedirs(cache_dir, exist_ok=True)
    with utils.published(path, ".tmp.weights.h5") as tmp:  # Keras takes only names ending .weights.h5
        trained.save_weights(tmp)
    return trained


def classify(model, images, batch_size=250):
    """Predicted classes [N]."""
    logits, _ = model.predict(as_input(images, model.input_shape[1]), batch_size=batch_size, verbose=0)
    return logits.argmax(axis=1)


# ---------------------------------------------------------------- the figures

def halves(labels, n, seed=SPLIT_SEED):
    """(reference, floor) indices of n pictures: each class (or all of them) halved at random by seed, an odd
    picture out going to the reference."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == k) for k in np.unique(labels)]
    reference, floor = [], []
    for members in groups:
        members = rng.permutation(members)
        floor.append(members[:len(members) // 2])
        reference.append(members[len(members) // 2:])
    return np.sort(np.concatenate(reference)), np.sort(np.concatenate(floor))


def nearest(a, b, skip_same=False):
    """(distance, index) of each row of a's nearest row of b; skip_same: a is b, and a row is not its own nearest."""
    distances, indices = np.empty(len(a)), np.empty(len(a), np.int64)
    for start in range(0, len(a), ROWS):
        d2 = squared_distances(a[start:start + ROWS], b)
        if skip_same:
            d2[np.arange(len(d2)), start + np.arange(len(d2))] = np.inf
        indices[start:start + ROWS] = d2.argmin(1)
        distances[start:start + ROWS] = np.sqrt(d2[np.arange(len(d2)), indices[start:start + ROWS]])
    return distances, indices


def total_variation(p, q):
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


class FolderJudgement:
    """A folder's real pictures (uint8 [N, H, W, C]) in a judge's features, that a model's pictures are scored
    against; labels [N] and class_names for a labelled folder, whose classifier (trained once, cached in
    cache_dir) reads class accuracy. name says which folder it is, in the key that --keep_best records; paths
    are the pictures' files, where they came from files."""

    def __init__(self, images, judge, labels=None, class_names=(), cache_dir=None, name="the folder", paths=None):
        self.images, self.judge, self.class_names, self.paths = images, judge, list(class_names or []), paths
        self.labels = None if labels is None else np.asarray(labels)
        self.num_classes = len(self.class_names)
        self.features = judge.features(images)
        self.reference, self.floor = halves(self.labels, len(images))
        if min(len(self.reference), len(self.floor)) <= 3:
            raise ValueError(f"{len(images)} pictures are too few to hold out a reference and a floor: give at least "
                             "eight")
        # Each real picture's distance to its nearest other: how near a new picture comes to a training picture.
        self.nearest_other = nearest(self.features, self.features, skip_same=True)[0]
        self.copy_distance = float(np.quantile(self.nearest_other, COPY_QUANTILE))
        self.key = f"{name} in {judge.key}"
        self.real = self.figures(images[self.floor], None, self.features[self.floor], self.nearest_other[self.floor])
        self.classifier, self.classifier_accuracy = None, None
        if self.num_classes:
            trained, *held = split(self.labels)
            self.classifier = cached_classifier(images[trained], self.labels[trained], self.num_classes, cache_dir)
            held = np.concatenate(held)
            right, held_labels = classify(self.classifier, images[held]) == self.labels[held], self.labels[held]
            self.classifier_accuracy = float(np.mean(right))
            # Real pictures' class accuracy: of those the classifier never saw.
            self.real.update(accuracy=self.classifier_accuracy, per_class={
                self.class_names[k]: {"accuracy": float(np.mean(right[held_labels == k]))}
                for k in np.unique(held_labels)})

    def read_classes(self, features):
        """Each picture's category, the most common among its NEIGHBOURS nearest reference pictures."""
        reference = self.features[self.reference]
        votes = np.zeros((len(features), self.num_classes))
        for start in range(0, len(features), ROWS):
            d2 = squared_distances(features[start:start + ROWS], reference)
            closest = np.argpartition(d2, NEIGHBOURS, axis=1)[:, :NEIGHBOURS]
            np.add.at(votes, (np.arange(len(closest))[:, None] + start, self.labels[self.reference][closest]), 1)
        return votes.argmax(1)

    def mix(self, classes):
        return np.bincount(classes, minlength=self.num_classes) / len(classes)

    def figures(self, images, asked=None, features=None, distances=None):
        """The figures of pictures [N, H, W, C] against the reference (asked: the classes a conditional model
        drew them as); features and distances (to the nearest real picture) where already known."""
        features = self.judge.features(images) if features is None else features
        distances = nearest(features, self.features)[0] if distances is None else distances
        reference = self.features[self.reference]
        result = {"fid": fid(features, reference), "kid": kid(features, reference),
                  **manifold_figures(reference, features),
                  "copies": float(np.mean(distances <= self.copy_distance)),
                  "nearest_ratio": float(np.median(distances) / max(np.median(self.nearest_other), 1e-12))}
        if self.num_classes:
            shares = self.mix(self.read_classes(features))
            result.update(class_shares=[float(v) for v in shares],
                          class_tv=total_variation(shares, self.mix(self.labels[self.reference])))
        if asked is not None and self.classifier is not None:
            right = classify(self.classifier, images) == asked
            result["accuracy"] = float(np.mean(right))
            result["per_class"] = {self.class_names[k]: self.class_figures(features[asked == k], right[asked == k], k)
                                   for k in np.unique(asked)}
        return result

    def class_figures(self, features, right, k):
        """A class's figures: class accuracy, and in the judge's features FID and recall against its reference
        pictures (where there are enough of both for them)."""
        reference = self.features[self.reference][self.labels[self.reference] == k]
        figures = {"accuracy": float(np.mean(right)), "pictures": int(len(features))}
        if min(len(features), len(reference)) > 3:
            figures.update(fid=fid(features, reference), recall=manifold_figures(reference, features)["recall"])
        return figures

    def score(self, model, n=None, seed=EVAL_SEED, pictures_to=None):
        """The figures of n pictures (default: as many as the floor) drawn by model (a DCGAN or an export) from
        seeds from seed on, a conditional model's in the floor's class mix; pictures_to: a folder to write the
        generated pictures nearest a training picture to (copies.png), beside those."""
        from serving import generate
        if model.y_dim not in (0, self.num_classes):
            raise ValueError(f"the model draws {model.y_dim} classes and the folder has {self.num_classes}")
        n = n or len(self.floor)
        asked = None
        if model.y_dim:
            shares = self.mix(self.labels[self.floor])
            counts = np.floor(shares * n).astype(int)
            counts[np.argsort(shares * n - counts)[::-1][:n - counts.sum()]] += 1  # largest remainders
            asked = np.repeat(np.arange(self.num_classes), counts)
            images = np.concatenate([generate(model, [k], n=int(c), seed=seed)[0] for k, c in enumerate(counts) if c])
        else:
            images = generate(model, None, n=n, seed=seed)[0]
        if images.shape[-1] != self.images.shape[-1]:
            raise ValueError(f"the model draws {images.shape[-1]}-channel pictures and the folder's are "
                             f"{self.images.shape[-1]}-channel")
        features = self.judge.features(images)
        distances, nearest_real = nearest(features, self.features)
        if pictures_to:
            self.write_copies(images, distances, nearest_real, pictures_to)
        return {**self.figures(images, asked, features, distances), "real": self.real, "class_names": self.class_names,
                "samples": int(len(images)), "reference_pictures": int(len(self.reference)), "judge": self.judge.key,
                "classifier_accuracy": self.classifier_accuracy}

    def write_copies(self, images, distances, nearest_real, folder, shown=8):
        """copies.png: the generated pictures nearest a training picture (top row) above those pictures."""
        closest = np.argsort(distances)[:shown]
        grid = utils.make_grid(np.concatenate([images[closest], self.images[nearest_real[closest]]]), 2, len(closest))
        os.makedirs(folder, exist_ok=True)
        utils.save_image(grid, os.path.join(folder, "copies.png"))

    @staticmethod
    def summary(result):
        return format_summary(result)


def format_summary(result):
    """evaluate's print-out for a folder: each figure beside its real-vs-real value."""
    real, names = result["real"], result["class_names"]
    lines = [f"{result['samples']} generated pictures against {result['reference_pictures']} real ones, in the features "
             f"of {result['judge']}" + (f" (precision and recall with fewer than {ROUGH_BELOW} real pictures are rough)"
                                        if result["reference_pictures"] < ROUGH_BELOW else ""),
             f"FID {result['fid']:.3f}, KID {result['kid']:.4f} (real vs real: {real['fid']:.3f}, {real['kid']:.4f})",
             f"{' / '.join(MANIFOLD)} {' / '.join(f'{result[m]:.3f}' for m in MANIFOLD)} "
             f"(real vs real: {' / '.join(f'{real[m]:.3f}' for m in MANIFOLD)}); precision and recall "
             f"{result['precision'] / max(real['precision'], 1e-9):.2f} and "
             f"{result['recall'] / max(real['recall'], 1e-9):.2f} of real's",
             f"copies: {100 * result['copies']:.1f} % of the pictures are nearer a training picture than "
             f"{100 - 100 * COPY_QUANTILE:.0f} % of real pictures are to another (real: {100 * real['copies']:.1f} %); "
             f"the median distance to the nearest is {result['nearest_ratio']:.2f} times real's"]
    if "class_tv" in result:
        lines.append(f"class mix {result['class_tv']:.3f} total variation from the folder's (real: {real['class_tv']:.3f}"
                     f"; each read from its {NEIGHBOURS} nearest real pictures): "
                     + " ".join(f"{name}:{share:.2f}" for name, share in zip(names, result["class_shares"])))
    if "accuracy" in result:
        lines.append(f"class accuracy {result['accuracy']:.4f} (real pictures: {real['accuracy']:.4f}), read by the "
                     f"folder's own classifier ({100 * result['classifier_accuracy']:.1f} % of held-out pictures right; "
                     "it tells the classes apart and cannot see quality)")
        lines.append("per class, accuracy (real's): " + " ".join(
            f"{name}:{c['accuracy']:.2f}({real['per_class'][name]['accuracy']:.2f})"
            for name, c in result["per_class"].items() if name in real["per_class"]))
    return "\n".join(lines)


# ---------------------------------------------------------------- the yardstick: does the judge rank as a person would?

def yardstick(judgement, other_artist=None, repeated=64, seed=0):
    """[(what, figures)] of picture sets whose ranking a person knows, each as large as the floor, scored as a
    model's pictures are: the floor itself, another artist's drawings of the same subjects (other_artist, uint8
    pictures, if given), the floor blurred and colour-shifted, noise, a generator repeating `repeated` training
    pictures, and one copying training pictures (the folder's: what a model trained on it saw)."""
    from PIL import Image, ImageFilter
    rng = np.random.default_rng(seed)
    floor = judgement.images[judgement.floor]
    n = len(floor)

    def each(images, change):
        return np.stack([np.asarray(change(Image.fromarray(np.squeeze(p, -1) if p.shape[-1] == 1 else p)))
                         .reshape(p.shape) for p in images])

    def hue_turned(picture, turn=256 // 6):  # a sixth of the colour wheel
        h, s, v = picture.convert("RGB").convert("HSV").split()
        return Image.merge("HSV", (h.point(lambda x: (x + turn) % 256), s, v)).convert(picture.mode)

    sets = [("real pictures (the floor)", None)]
    if other_artist is not None:
        sets.append(("another artist's drawings of the same subjects",
                     other_artist[rng.permutation(len(other_artist))[:n]]))
    sets += [("the floor, blurred (Gaussian, radius 1.5 px)", each(floor, lambda p: p.filter(ImageFilter.GaussianBlur(1.5)))),
             ("the floor, colour-shifted (hue turned a sixth)", each(floor, hue_turned)),
             ("noise", rng.integers(0, 256, floor.shape, dtype=np.uint8)),
             (f"a generator repeating {repeated} training pictures", judgement.images[
                 rng.choice(len(judgement.images), repeated, replace=False)[rng.integers(0, repeated, n)]]),
             ("a generator copying training pictures", judgement.images[rng.choice(len(judgement.images), n, replace=False)])]
    return [(what, judgement.real if images is None else judgement.figures(images)) for what, images in sets]
