"""Sample quality of a conditional MNIST generator, measured with an MNIST classifier (and of an
unconditional model of a grayscale folder: FID and the classes it reads, in the same features).

- class accuracy: the share of generated images that the classifier reads as the class asked for;
- FID in the classifier's penultimate feature space against the MNIST test split, overall and per
  class (intra-class FID, which catches digits of the wrong class that plain FID forgives);
- diversity per class: mean pairwise feature distance of generated images over that of real
  images of the class (0 when every image of a class is the same: mode collapse).
Each figure comes with its floor on real data, so that a reader can tell good from bad.
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
from data import curve_x, load_splits

CLASSIFIER_VERSION = "cnn-v1"  # part of the cache key: change it when the classifier changes
# Trained once and shipped, so that every machine scores with the same weights: a classifier trained
# anew on another CPU (other kernels, other rounding) gives figures that do not compare.
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "classifier", "mnist_cnn")
RECIPE = ("cnn-v1: conv3x3 32, conv3x3 32, max-pool, conv3x3 64, conv3x3 64, max-pool, dense 128 (features), "
          "dropout 0.3, dense 10; Adam 1e-3, batch 128, 4 epochs, random shifts up to 2 pixels, seed 0; "
          "MNIST's 60,000 training images")


# ---------------------------------------------------------------- the classifier

def build_classifier(num_classes=10):
    """A small CNN; its 128-unit 'features' layer is the feature space of FID and diversity."""
    inputs = keras.Input((28, 28, 1))
    h = inputs
    for filters in (32, 64):
        h = layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D()(h)
    h = layers.Flatten()(h)
    features = layers.Dense(128, activation="relu", name="features")(h)
    logits = layers.Dense(num_classes, name="logits")(layers.Dropout(0.3)(features))
    return keras.Model(inputs, [logits, features], name="mnist_classifier")


def train_classifier(images, labels, epochs=4, batch_size=128, seed=0, verbose=1):
    """Trains the classifier on uint8 images [N, 28, 28] with integer labels [N]."""
    keras.utils.set_random_seed(seed)
    model = build_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), None],
                  metrics=[["accuracy"], []])
    # Small shifts of up to 2 pixels make it read generated digits that sit a little off-centre.
    augment = keras.Sequential([layers.RandomTranslation(0.07, 0.07, fill_mode="constant", seed=seed)])
    data = (tf.data.Dataset.from_tensor_slices((to_float(images), labels.astype(np.int32)))
            .shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
            .map(lambda x, y: (augment(x, training=True), y)).prefetch(tf.data.AUTOTUNE))
    model.fit(data, epochs=epochs, verbose=verbose, shuffle=False)
    return model


def cached_classifier(train_images, train_labels, cache_dir, verbose=None):
    """The classifier for this training data: loaded from cache_dir, or trained once and saved there."""
    key = hashlib.sha256(CLASSIFIER_VERSION.encode() + data_hash(train_images, train_labels).encode()).hexdigest()
    path = os.path.join(cache_dir, f"mnist_classifier_{key[:16]}.weights.h5")
    model = build_classifier()
    if os.path.exists(path):
        try:
            model.load_weights(path)
            return model, path
        except (OSError, ValueError) as e:  # a cache: made again rather than mended by hand
            print(f"Warning: the cached classifier {path} does not read ({utils.first_line(e)}): training it again",
                  file=sys.stderr)
    print(f"Training the MNIST classifier for evaluation (once; cached as {path})")
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, a line per epoch in logs
    trained = train_classifier(train_images, train_labels, verbose=verbose)
    os.makedirs(cache_dir, exist_ok=True)
    with utils.published(path, ".tmp.weights.h5") as tmp:  # Keras takes only names ending .weights.h5
        trained.save_weights(tmp)
    return trained, path


def data_hash(images, labels):
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def shipped_classifier(path=SHIPPED):
    """The MNIST classifier shipped with the project and what is recorded of it (recipe, data, accuracy)."""
    try:
        with open(path + ".json") as f:
            info = json.load(f)
        model = build_classifier()
        model.load_weights(path + ".weights.h5")
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the shipped classifier {path}.weights.h5 ({utils.first_line(e)}): "
                         f"restore it from git, or pass --retrain_classifier") from None
    return model, info


def ship_classifier(data_dir, path=SHIPPED):
    """Trains the classifier on MNIST's training split and writes it, with its record, where
    shipped_classifier() reads it."""
    splits = load_splits("mnist", data_dir, download=False)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    model = train_classifier(train_x, train_y, verbose=2)
    accuracy = float(np.mean(classify(model, test_x)[0] == test_y))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    weights_only = build_classifier()  # without the optimiser's slots, a third of the size
    weights_only.set_weights(model.get_weights())
    weights_only.save_weights(path + ".weights.h5")
    info = {"recipe": RECIPE, "version": CLASSIFIER_VERSION, "test_accuracy": round(accuracy, 4),
            "train_data_sha256": data_hash(train_x, train_y), "test_data_sha256": data_hash(test_x, test_y),
            "tensorflow": tf.__version__, "keras": keras.__version__, "trained_on": utils.cpu_model()}
    utils.save_json(info, path + ".json")
    return info


def to_float(images):
    """uint8 [N, 28, 28] or [N, 28, 28, 1], or floats in [0, 1], -> float32 [N, 28, 28, 1]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
        raise ValueError(f"images must have shape [N, 28, 28] or [N, 28, 28, 1], not {list(images.shape)}")
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def classify(model, images, batch_size=1000):
    """Predicted classes [N] and penultimate features [N, 128]."""
    logits, features = model.predict(to_float(images), batch_size=batch_size, verbose=0)
    return logits.argmax(axis=1), features.astype(np.float64)


# ---------------------------------------------------------------- the metrics

def fid(features_a, features_b):
    """Fréchet distance between Gaussians fitted to two feature sets."""
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    root_a = psd_sqrt(cov_a)
    # Tr sqrt(A B) = Tr sqrt(sqrt(A) B sqrt(A)), and the latter is symmetric: eigvalsh is stable.
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def psd_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def mean_pairwise_distance(features):
    features = features - features.mean(0)  # centring keeps the Gram trick exact for identical rows
    squared = (features ** 2).sum(1)
    d2 = np.clip(squared[:, None] + squared[None, :] - 2 * features @ features.T, 0, None)
    n = len(features)
    return float(np.sqrt(d2).sum() / (n * (n - 1))) if n > 1 else 0.0


K_NEAREST = 3  # the neighbourhood size of improved precision and recall and of density and coverage
ROWS = 1000  # distances are computed ROWS rows at a time: 10,000 x 10,000 at once would be 800 MB


def squared_distances(a, b):
    return np.clip((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T, 0, None)


def neighbour_radii(features, k=K_NEAREST):
    """Squared distance of each point to its k-th nearest other point."""
    radii = np.empty(len(features))
    for start in range(0, len(features), ROWS):
        d2 = squared_distances(features[start:start + ROWS], features)
        radii[start:start + ROWS] = np.partition(d2, k, axis=1)[:, k]  # position 0: the point itself
    return radii


def manifold_figures(real, fake, k=K_NEAREST):
    """Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al.
    2020) of fake features against real ones, each set's manifold the union of balls reaching every
    point's k-th nearest neighbour. Precision: the share of fakes inside the real manifold (fidelity);
    recall: the share of reals inside the fake one (variety); density: how many real balls hold a
    fake, on average, over k (1 for a fake set like the real one); coverage: the share of real balls
    that hold a fake (recall that outlying fakes cannot inflate)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(len(real), len(fake)) <= k:
        return {"precision": float("nan"), "recall": float("nan"), "density": float("nan"), "coverage": float("nan")}
    real_radii, fake_radii = neighbour_radii(real, k), neighbour_radii(fake, k)
    balls_holding = np.empty(len(fake))
    covered, recalled = np.zeros(len(real), bool), np.zeros(len(real), bool)
    for start in range(0, len(fake), ROWS):
        d2 = squared_distances(fake[start:start + ROWS], real)  # [fakes, reals]
        inside = d2 <= real_radii[None, :]
        balls_holding[start:start + ROWS] = inside.sum(1)
        covered |= inside.any(0)
        recalled |= (d2 <= fake_radii[start:start + ROWS, None]).any(0)
    return {"precision": float(np.mean(balls_holding > 0)), "recall": float(recalled.mean()),
            "density": float(balls_holding.sum() / (k * len(fake))), "coverage": float(covered.mean())}


MANIFOLD = ("precision", "recall", "density", "coverage")


class Reference:
    """What generated images are compared with: the classifier and MNIST's real images."""

    def __init__(self, classifier, test_images, test_labels, train_images, train_labels, num_classes=10, key=""):
        self.classifier, self.num_classes, self.key = classifier, num_classes, key
        self.test_labels = test_labels
        predicted, self.test_features = classify(classifier, test_images)
        self.classifier_accuracy = float(np.mean(predicted == test_labels))
        _, floor_features = classify(classifier, train_images[:10000])
        floor_labels = train_labels[:10000]
        self.floor = {
            "fid": fid(floor_features, self.test_features),
            "intra_fid": float(np.mean([fid(floor_features[floor_labels == k], self.test_features[test_labels == k])
                                        for k in range(num_classes)])),
            **manifold_figures(self.test_features, floor_features),
            "per_class": {str(k): manifold_figures(self.test_features[test_labels == k], floor_features[floor_labels == k])
                          for k in range(num_classes)},
        }

    def score(self, model, n, pictures_to=None):
        """The figures of n images per class drawn by model (a DCGAN or an export); they write no pictures."""
        return generated_quality(model, self, n)

    @staticmethod
    def summary(result):
        return format_summary(result)

    def evaluate(self, images, labels):
        """Figures for generated images [N, 28, 28(, 1)] that were asked to be of classes labels [N]."""
        labels = np.asarray(labels)
        predicted, features = classify(self.classifier, images)
        correct = predicted == labels
        per_class = {}
        for k in range(self.num_classes):
            mine, real = features[labels == k], self.test_features[self.test_labels == k]
            per_class[str(k)] = {
                "accuracy": float(correct[labels == k].mean()),
                "fid": fid(mine, real),
                "diversity": mean_pairwise_distance(mine) / mean_pairwise_distance(real),
                **manifold_figures(real, mine),
                "real": self.floor["per_class"][str(k)],
            }
        return {
            "accuracy": float(correct.mean()),
            "fid": fid(features, self.test_features),
            "intra_fid": float(np.mean([c["fid"] for c in per_class.values()])),
            "min_diversity": float(min(c["diversity"] for c in per_class.values())),
            **manifold_figures(self.test_features, features),
            "min_class_recall": float(min(c["recall"] for c in per_class.values())),
            "per_class": per_class,
            "real": {"classifier_accuracy": self.classifier_accuracy, "fid": self.floor["fid"],
                     "intra_fid": self.floor["intra_fid"], **{name: self.floor[name] for name in MANIFOLD},
                     "min_class_recall": float(min(c["recall"] for c in self.floor["per_class"].values()))},
            "samples": int(len(labels)),
        }


def load_reference(data_dir, dataset, cache_dir, download=True, retrain=False):
    """Reference built from the dataset's own train and test splits, scored by the shipped MNIST
    classifier, or for other datasets or with retrain by one trained on this data (and cached)."""
    splits = load_splits(dataset, data_dir, download)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    if dataset == "mnist" and not retrain:
        classifier, path = shipped_classifier()[0], SHIPPED
    else:
        classifier, path = cached_classifier(train_x, train_y, cache_dir)
    key = f"{dataset}'s test split ({data_hash(test_x, test_y)[:16]}) in {os.path.basename(path)}'s features"
    return Reference(classifier, test_x, test_y, train_x, train_y, key=key)


def curve_fit(curves):
    """(a, rms residual) per curve [N, ..., 15] of the least-squares fit y = a*x^2 + (a - 1), which is
    linear in a: y + 1 = a*(x^2 + 1)."""
    y = np.asarray(curves, np.float64).reshape(len(curves), -1)
    basis = curve_x().astype(np.float64) ** 2 + 1.0
    a = (y + 1.0) @ basis / (basis @ basis)
    return a, np.sqrt(np.mean((a[:, None] * basis - 1.0 - y) ** 2, axis=1))


def curve_quality(curves):
    """How well generated curves follow the toy's distribution: the share of fitted a inside [1, 2],
    their mean and spread (U(1, 2): 1.5 and 0.289), the largest gap between their CDF and U(1, 2)'s
    (Kolmogorov-Smirnov) and the median fit residual (0 for a true curve)."""
    a, residual = curve_fit(curves)
    cdf = np.arange(1, len(a) + 1) / len(a)
    return {"n": len(a), "a_in_range": float(np.mean((a >= 1) & (a <= 2))), "a_mean": float(a.mean()),
            "a_std": float(a.std()), "ks": float(np.max(np.abs(cdf - np.clip(np.sort(a) - 1.0, 0.0, 1.0)))),
            "median_residual": float(np.median(residual))}


# ---------------------------------------------------------------- a generator's figures

EVAL_SEED = 12345  # evaluation noise: fixed, so that figures of two checkpoints compare


def generated_quality(model, reference, n):
    """The figures of n images per class drawn by model (a DCGAN or an export), scored against reference."""
    from serving import generate
    images = generate(model, list(range(reference.num_classes)), n=n, seed=EVAL_SEED)
    labels = np.repeat(np.arange(reference.num_classes), n)
    return reference.evaluate(images.reshape(-1, *images.shape[2:]), labels)


def write_eval(model, folder, step, n, reference=None):
    """--eval: the figures of model at step printed and written to folder/eval.json (with any pictures the
    reference writes there); against reference (a Reference, n images per class, or a
    folder_eval.FolderJudgement, n pictures in all or None for its default), or for the curves (reference None)
    how well n curves fit their family."""
    if reference is None:  # the curves: the truth is known
        from model import z_from_seeds
        z = z_from_seeds(EVAL_SEED + np.arange(n, dtype=np.int64), model.z_dim, model.z_dist)
        result = {"step": step, **curve_quality(np.asarray(model.sample(z, None)))}
        publish(result, format_curve_summary(result), folder)
        return
    try:
        result = {"step": step, **reference.score(model, n, pictures_to=folder)}
    except ValueError as e:
        raise utils.DCGANError(f"cannot evaluate: {e}") from None
    publish(result, reference.summary(result), folder)


def as_digits(images):
    """Images of any size, uint8 or in [0, 1], as the classifier takes them: float [N, 28, 28, 1]."""
    x = np.asarray(images, np.float32) / (255.0 if np.asarray(images).dtype == np.uint8 else 1.0)
    return tf.image.resize(x, (28, 28)).numpy() if x.shape[1:3] != (28, 28) else x


def folder_quality(classifier, generated, real, other_real):
    """Figures for an unconditional model of a grayscale folder, in the MNIST classifier's features
    (images resized to 28x28): FID of the generated images against real ones of the folder, beside
    other_real against them (the floor), and the share of each class the classifier reads among the
    generated and the real images: that says something for folders of digit-like images only."""
    def read(images):
        predicted, features = classify(classifier, as_digits(images))
        return np.bincount(predicted, minlength=10) / len(predicted), features

    (shares, generated), (real_shares, real), (_, other) = read(generated), read(real), read(other_real)
    return {"fid": fid(generated, real), "class_shares": [float(v) for v in shares],
            "min_class_share": float(shares.min()),
            "real": {"fid": fid(other, real), "class_shares": [float(v) for v in real_shares]},
            "samples": int(len(generated)), "real_samples": int(len(real))}


def write_folder_eval(model, folder, step, real_images, n):
    """--eval of an unconditional model of a grayscale folder: n generated images against real_images
    of its folder, split in two halves (one for the figures, the other for their floor)."""
    from serving import generate
    classifier, _ = shipped_classifier()
    images = generate(model, None, n=n, seed=EVAL_SEED)[0]
    half = len(real_images) // 2
    result = {"step": step, **folder_quality(classifier, images, real_images[:half], real_images[half:])}
    publish(result, format_folder_summary(result), folder)


INCEPTION_SIZE = 299


def inception_features(weights="imagenet", size=INCEPTION_SIZE):
    """features(images) -> [N, 2048]: InceptionV3's average-pooled features (keras.applications) of
    images [N, H, W, 3] (uint8, or floats in [0, 1]) resized to size x size, the space FID and KID are
    usually measured in. Keras downloads its ImageNet weights once (into ~/.keras/models); where that
    fails, a DCGANError: no figure comes from untrained features. weights=None is for tests only."""
    import keras
    try:
        net = keras.applications.InceptionV3(include_top=False, weights=weights, pooling="avg",
                                             input_shape=(size, size, 3))
    except Exception as e:  # keras raises a bare Exception when the download fails
        models = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser(os.path.join("~", ".keras"))), "models")
        raise utils.DCGANError(f"cannot score colour images: InceptionV3's ImageNet weights are not in {models} and "
                               f"could not be downloaded ({utils.first_line(e)}); run --eval once with internet "
                               "access, or copy inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 there") from None

    def features(images, batch_size=50):
        scale = 1 / 255.0 if np.asarray(images[:1]).dtype == np.uint8 else 1.0
        out = []
        for start in range(0, len(images), batch_size):
            x = np.asarray(images[start:start + batch_size], np.float32) * scale
            out.append(net(tf.image.resize(x, (size, size)) * 2.0 - 1.0, training=False).numpy())  # its [-1, 1]
        return np.concatenate(out)
    return features


def kid(a, b, subset=1000, subsets=10, seed=0):
    """Kernel inception distance (Binkowski et al. 2018): the unbiased squared MMD between features a
    and b with the kernel (x.y / d + 1)^3, averaged over subsets of subset rows of each."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng, d, m = np.random.default_rng(seed), a.shape[1], min(subset, len(a), len(b))
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.mean())
    return float(np.mean(values))


def format_folder_summary(result):
    shares = " ".join(f"{k}:{v:.3f}" for k, v in enumerate(result["class_shares"]))
    real = " ".join(f"{k}:{v:.3f}" for k, v in enumerate(result["real"]["class_shares"]))
    return (f"FID {result['fid']:.3f} in the MNIST classifier's features (real vs real: {result['real']['fid']:.3f}; "
            f"{result['samples']} generated against {result['real_samples']} images of the folder)\n"
            f"classes the MNIST classifier reads (meaningful for digit-like folders only): {shares}\n"
            f"the same for the folder's images: {real}")


def publish(result, summary, folder):
    """Prints summary and writes result to folder/eval.json."""
    print(summary)
    path = os.path.join(folder, "eval.json")
    utils.save_json(result, path)
    print(f"Wrote {path}")


def format_curve_summary(result):
    return (f"fitted a inside [1, 2]: {result['a_in_range']:.3f}; mean {result['a_mean']:.3f} (true 1.5), "
            f"spread {result['a_std']:.3f} (true {1 / np.sqrt(12):.3f}), KS distance to U(1, 2) {result['ks']:.3f}; "
            f"median fit residual {result['median_residual']:.4f}")


def format_summary(result):
    real = result["real"]
    per_class = " ".join(f"{k}:{c['accuracy']:.3f}" for k, c in result["per_class"].items())
    return (f"class accuracy {result['accuracy']:.4f} (real test digits: {real['classifier_accuracy']:.4f})\n"
            f"FID {result['fid']:.3f} (real vs real: {real['fid']:.3f})\n"
            f"intra-class FID {result['intra_fid']:.3f} (real vs real: {real['intra_fid']:.3f})\n"
            f"diversity, lowest class {result['min_diversity']:.3f} (real: 1)\n"
            f"{' / '.join(MANIFOLD)} {' / '.join(f'{result[m]:.3f}' for m in MANIFOLD)} "
            f"(real vs real: {' / '.join(f'{real[m]:.3f}' for m in MANIFOLD)})\n"
            f"recall, lowest class {result['min_class_recall']:.3f} (real vs real: {real['min_class_recall']:.3f})\n"
            f"per-class accuracy {per_class}")


if __name__ == "__main__":
    # python evaluate.py DATA_DIR: retrains the shipped classifier on DATA_DIR/mnist (once per recipe change).
    if len(sys.argv) != 2:
        sys.exit("usage: python evaluate.py DATA_DIR   (the folder that holds mnist/)")
    print(json.dumps(ship_classifier(sys.argv[1]), indent=2))
