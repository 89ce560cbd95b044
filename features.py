"""A trained discriminator as an image representation, as the DCGAN paper used it (Radford et al. 2016,
section 5.1): every convolution's activations max-pooled to a 4x4 grid, flattened and joined, and a
linear classifier fitted on them from a few labelled images. Its baselines: the same classifier on the
raw pixels, and on the features of the same D untrained.

    features = discriminator_features(dcgan, images)         # float32 [N, 16 x (channels of every layer)]
    accuracy = probe_accuracy(train_features, train_labels, test_features, test_labels, n=1000, seed=0)
"""
import warnings
import weakref

import numpy as np
import tensorflow as tf

GRID = 4
# The linear classifier's inverse regularisation strengths, one chosen by held-out accuracy on the labelled
# images alone (never the test images): fewer labels want more regularisation.
STRENGTHS = (0.001, 0.01, 0.1)
HELD_OUT_FOLDS = 3
MAX_ITERATIONS = 300  # of L-BFGS: all of MNIST's 60,000 digits in D's 7,168 features take about a minute


def grid_max_pool(maps, grid=GRID):
    """[N, H, W, C] -> [N, grid, grid, C]: each cell the maximum over its share of the map (cells overlap by
    a pixel where H or W is not a multiple of grid; a map smaller than the grid repeats pixels)."""
    height, width = maps.shape[1], maps.shape[2]
    rows = []
    for i in range(grid):
        top, bottom = (i * height) // grid, max(-(-(i + 1) * height // grid), (i * height) // grid + 1)
        cells = []
        for j in range(grid):
            left, right = (j * width) // grid, max(-(-(j + 1) * width // grid), (j * width) // grid + 1)
            cells.append(tf.reduce_max(maps[:, top:bottom, left:right], axis=[1, 2]))
        rows.append(tf.stack(cells, axis=1))
    return tf.stack(rows, axis=1)


def discriminator_features(dcgan, images, batch_size=500):
    """D's image representation of images (uint8, or float in [0, 1]; [N, H, W, C] at the model's size):
    float32 [N, grid x grid x channels summed over D's convolutions], batch norm in inference mode."""
    if not hasattr(dcgan.discriminator, "hidden"):
        raise ValueError("D's features are those of the unconditional dcgan networks (a run of a folder without "
                         "classes); this run's D is conditional or another architecture")
    represent = REPRESENTATIONS.get(dcgan) or REPRESENTATIONS.setdefault(dcgan, representation(dcgan))
    parts = [represent(tf.constant(unit_floats(images[i:i + batch_size]))).numpy()
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts)


REPRESENTATIONS = weakref.WeakKeyDictionary()  # one compiled function per model


def representation(dcgan):
    @tf.function(reduce_retracing=True)
    def represent(x):
        maps = dcgan.discriminator.hidden(dcgan.generator.from_unit(x), training=False)
        return tf.concat([tf.reshape(grid_max_pool(tf.cast(m, tf.float32)), (tf.shape(x)[0], -1)) for m in maps],
                         axis=1)
    return represent


def unit_floats(images):
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def pixel_features(images):
    """The raw-pixel baseline: each image flattened, in [0, 1]."""
    return unit_floats(images).reshape(len(images), -1)


def labelled_subset(labels, n, seed):
    """Indices of n labelled training images drawn by seed, as evenly over the classes as they allow
    (the paper's 1,000 SVHN labels were uniformly class-distributed); all of them when n is None."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:n // len(classes)] for c in classes]
    chosen = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    return np.concatenate([chosen, rng.choice(rest, n - len(chosen), replace=False)])


def fit_probe(features, labels, seed=0):
    """A multinomial logistic regression on standardised features, its strength chosen from STRENGTHS by
    accuracy on held-out folds of these labelled images: (predict(features) -> labels, chosen strength)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6

    def fitted(x, y, strength):
        with warnings.catch_warnings():  # at most MAX_ITERATIONS, converged or not: the held-out folds judge
            warnings.simplefilter("ignore", ConvergenceWarning)
            return LogisticRegression(C=strength, max_iter=MAX_ITERATIONS, tol=1e-3).fit((x - mean) / scale, y)

    folds = min(HELD_OUT_FOLDS, np.bincount(labels).min())
    if folds >= 2:
        split = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels))
        if len(labels) > 10000:  # one fold is enough to choose by, and three fits of all of them cost minutes
            split = split[:1]
        scores = {s: np.mean([fitted(features[a], labels[a], s).score((features[b] - mean) / scale, labels[b])
                              for a, b in split]) for s in STRENGTHS}
        strength = max(scores, key=scores.get)
    else:
        strength = STRENGTHS[len(STRENGTHS) // 2]
    model = fitted(features, labels, strength)
    return (lambda x: model.predict((x - mean) / scale)), strength


def probe_accuracy(train_features, train_labels, test_features, test_labels, n=None, seed=0):
    """Test accuracy of fit_probe on n labelled training images drawn by seed (None: all of them)."""
    chosen = labelled_subset(train_labels, n, seed)
    predict, _ = fit_probe(train_features[chosen], train_labels[chosen], seed)
    return float(np.mean(predict(test_features) == test_labels))
