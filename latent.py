"""What a trained DCGAN's z is good for, as the DCGAN paper and its readers used it: arithmetic on z
(Radford et al. 2016, figure 7), inversion, image -> z (the original's issues #274 and #327), and
completion (Yeh et al. 2017, "Semantic Image Inpainting with Deep Generative Models": the z whose image
fits the known pixels and looks real to D, its pixels pasted into the hole).

    found = invert(dcgan, images)                        # found.z, found.label, found.images, found.error
    completed, found = complete(dcgan, images, make_mask("left", 28, 28))
    picture, z = arithmetic(dcgan, parse_terms("3:1,2,3 - 3:4,5,6 + 7:7,8,9"))

A conditional model's label is searched, never given: every class is tried and the best fit kept, so
the label inversion finds is itself a classification of the image.
"""
import collections
import functools
import os
import weakref

import numpy as np
import tensorflow as tf

import utils
from data import read_image, to_grey
from model import Z_UNIFORM_RANGES, draw_z, z_from_seeds

MASKS = ("left", "right", "top", "bottom", "centre", "random")
# How z is searched: Adam (learning_rate) from `restarts` random starts per candidate label, a quarter of
# the steps for every candidate, then the rest for the `keep` best of each image; z kept in its range and
# within `ball` times the typical distance of a z from the distribution's centre. Allowed the whole
# distance, z ran far out, where the conditional MNIST model drew a label's images unlike its class: on
# 100 left-masked test digits the found label was the true one 59 times, 88 with ball 0.4 (docs/paper.md).
Search = collections.namedtuple("Search", "steps restarts keep learning_rate ball")
SEARCH = Search(steps=100, restarts=2, keep=4, learning_rate=0.05, ball=0.4)
# Completion knows half the pixels or fewer, so z is held closer to the centre and started from more
# places: on 400 left-masked test digits that paper.py does not measure, the true digit was read in 86.8 %
# of completions with SEARCH, 88.2 % with ball 0.3, 89.0 % with ball 0.3 and four restarts.
COMPLETION_SEARCH = SEARCH._replace(restarts=4, ball=0.3)
# Images searched at once: each has up to classes x restarts candidates in one generator batch.
CHUNK = 50
# The prior's weight (Yeh et al.'s λ, who took 0.003) and the context's window (context_weights). Their
# window of 7 weighs only the hole's edge: on left-masked test digits every known pixel weighing the same
# found the true digit more often (docs/paper.md).
PRIOR, WINDOW = 0.1, 0

Found = collections.namedtuple("Found", "z label images error")


def make_mask(kind, height, width, seed=0):
    """float32 [H, W, 1]: 1 where a pixel is known, 0 in the hole. left, right, top, bottom: that half
    hidden; centre: the centre square of half the side; random: each pixel hidden with probability 1/2."""
    mask = np.ones((height, width, 1), np.float32)
    if kind == "left":
        mask[:, :width // 2] = 0
    elif kind == "right":
        mask[:, width // 2:] = 0
    elif kind == "top":
        mask[:height // 2] = 0
    elif kind == "bottom":
        mask[height // 2:] = 0
    elif kind == "centre":
        mask[height // 4:height - height // 4, width // 4:width - width // 4] = 0
    elif kind == "random":
        mask[np.random.default_rng(seed).random((height, width)) < 0.5] = 0
    else:
        raise ValueError(f"the mask must be one of {', '.join(MASKS)} or a picture, not {kind!r}")
    return mask


def mask_from_picture(picture):
    """A mask from a picture (uint8 [H, W, C]): its dark pixels (below half brightness) are the hole."""
    mask = (to_grey(np.asarray(picture, np.float32)) >= 127.5).astype(np.float32)
    if mask.all() or not mask.any():
        raise ValueError("the mask picture must have both dark pixels (the hole) and light ones (the known part)")
    return mask


def context_weights(mask, window=WINDOW):
    """The weights of the context loss: with a window, Yeh et al.'s (each known pixel weighted by the
    share of hidden pixels in the window x window square around it: the hole's edge counts most, pixels
    further off not at all); window 0: every known pixel weighs 1; 0 in the hole either way."""
    mask = np.asarray(mask, np.float32)
    if not window:
        return mask
    return mask * tf.nn.avg_pool2d(tf.constant(1.0 - mask[None]), window, 1, "SAME").numpy()[0]


def fit_z(dcgan, targets, weights, norm="l2", prior=0.0, search=SEARCH, seed=0, progress=None):
    """For each target image (float [N, H, W, C] in [0, 1]) the z, and for a conditional model the label,
    whose G(z, label) fits it best where weights ([H, W, 1] or [N, H, W, 1]) are above 0: weighted
    squared (l2) or absolute (l1) error summed over pixels, plus prior x log(1 - D(G(z))), searched as
    search says (a Search). A Found of z [N, z_dim], label [N] (None: unconditional), G's images
    [N, H, W, C] and the error per image (the weighted mean, without the prior)."""
    targets = np.asarray(targets, np.float32)
    weights = np.broadcast_to(np.asarray(weights, np.float32), (*targets.shape[:-1], 1))
    found = []
    for start in range(0, len(targets), CHUNK):
        chunk = slice(start, start + CHUNK)
        found.append(fit_chunk(dcgan, targets[chunk], weights[chunk], norm, prior, search, seed + start))
        if progress:
            progress.update(min(len(targets), start + CHUNK), "images searched")
    z, label, images, error = (np.concatenate(parts) for parts in zip(*found))
    return Found(z, label if dcgan.y_dim else None, images, error)


def fit_chunk(dcgan, targets, weights, norm, prior, search, seed):
    n, candidates = len(targets), (dcgan.y_dim or 1) * search.restarts
    z = draw_z([n * candidates, dcgan.z_dim], tf.constant([seed, 1], tf.int64), dcgan.z_dist)
    label = np.tile(np.repeat(np.arange(dcgan.y_dim or 1, dtype=np.int32), search.restarts), n)
    fit = functools.partial(descend, dcgan, norm=norm, prior=prior, search=search)
    first = max(1, search.steps // 4)
    z, loss = fit(z, label, np.repeat(targets, candidates, 0), np.repeat(weights, candidates, 0), steps=first)
    keep = min(search.keep, candidates)
    best = (np.argsort(loss.reshape(n, candidates), axis=1)[:, :keep] + np.arange(n)[:, None] * candidates).reshape(-1)
    label = label[best]
    z, loss = fit(tf.gather(z, best), label, np.repeat(targets, keep, 0), np.repeat(weights, keep, 0),
                  steps=search.steps - first)
    chosen = np.argmin(loss.reshape(n, keep), axis=1) + np.arange(n) * keep
    z, label = tf.gather(z, chosen), label[chosen]
    images = dcgan.sample(z, label if dcgan.y_dim else None).numpy()
    error = np.sum(weights * pixel_error(images, targets, norm), axis=(1, 2, 3)) / (
        np.sum(weights, axis=(1, 2, 3)) * targets.shape[-1])
    return z.numpy(), label, images, error


def pixel_error(images, targets, norm):
    return np.square(images - targets) if norm == "l2" else np.abs(images - targets)


def descend(dcgan, z, label, targets, weights, norm, prior, search, steps):
    """(z after steps of Adam on each image's loss, the final loss per image as numpy)."""
    label = tf.constant(label) if dcgan.y_dim else None
    step = descent_step(dcgan)
    targets, weights = tf.constant(targets), tf.constant(weights)
    z = tf.convert_to_tensor(z)
    m = v = tf.zeros_like(z)
    for t in range(1, steps + 1):
        z, m, v = step(z, m, v, label, targets, weights, norm, prior, search.learning_rate, search.ball,
                       tf.constant(t, tf.float32))
    return z, fit_loss(dcgan, z, label, targets, weights, norm, prior).numpy()


STEPS_OF = weakref.WeakKeyDictionary()


def descent_step(dcgan):
    """The model's compiled Adam step on z, (z, m, v) -> (z, m, v): one per model, traced once per norm,
    prior and batch size."""
    if dcgan not in STEPS_OF:
        low, high = Z_UNIFORM_RANGES.get(dcgan.z_dist, (-np.inf, np.inf))
        centre = (low + high) / 2 if np.isfinite(low) else 0.0
        typical = np.sqrt(dcgan.z_dim * ((high - low) ** 2 / 12 if np.isfinite(low) else 1.0))

        @tf.function(reduce_retracing=True)
        def step(z, m, v, label, targets, weights, norm, prior, learning_rate, ball, t):
            with tf.GradientTape() as tape:
                tape.watch(z)
                total = tf.reduce_sum(fit_loss(dcgan, z, label, targets, weights, norm, prior))
            gradient = tape.gradient(total, z)
            m = 0.9 * m + 0.1 * gradient
            v = 0.999 * v + 0.001 * tf.square(gradient)
            moved = z - learning_rate * (m / (1 - 0.9 ** t)) / (tf.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            offset = tf.clip_by_value(moved, low, high) - centre
            distance = tf.norm(offset, axis=1, keepdims=True)
            return centre + offset * tf.minimum(1.0, ball * typical / tf.maximum(distance, 1e-6)), m, v
        STEPS_OF[dcgan] = step
    return STEPS_OF[dcgan]


def fit_loss(dcgan, z, label, targets, weights, norm, prior):
    """Per image: the weighted pixel error summed, plus prior x log(1 - D(G(z))) in D's training mode."""
    images = dcgan.sample(z, label)
    difference = images - targets
    error = tf.square(difference) if norm == "l2" else tf.abs(difference)
    loss = tf.reduce_sum(weights * error, axis=[1, 2, 3])
    if prior:
        d = dcgan.discriminator
        scores, _ = d.stateless_call(d.trainable_variables, d.non_trainable_variables,
                                     dcgan.generator.from_unit(images), dcgan.one_hot(label), training=True)
        loss += prior * -tf.nn.softplus(tf.cast(scores[:, 0], tf.float32))  # log(1 - sigmoid(s))
    return loss


def invert(dcgan, images, search=SEARCH, seed=0, progress=None):
    """The z (and label) whose image is closest to each of images (float [N, H, W, C] in [0, 1]) in
    squared error: a Found."""
    return fit_z(dcgan, images, np.ones((*np.shape(images)[1:-1], 1), np.float32), "l2", 0.0, search, seed, progress)


def complete(dcgan, images, mask, prior=PRIOR, window=WINDOW, search=COMPLETION_SEARCH, seed=0, progress=None):
    """images (float [N, H, W, C] in [0, 1]) completed where mask ([H, W, 1] or [N, H, W, 1]) is 0: the z
    (and label) fitting the known pixels in Yeh et al.'s weighted L1 and D's prior, G's pixels pasted
    into the hole; the known pixels are left as they are. (completed images, the Found)."""
    mask = np.asarray(mask, np.float32)
    weights = np.stack([context_weights(m, window) for m in mask]) if mask.ndim == 4 else context_weights(mask, window)
    found = fit_z(dcgan, images, weights, "l1", prior, search, seed, progress)
    return mask * images + (1.0 - mask) * found.images, found


# ---------------------------------------------------------------- arithmetic on z

Term = collections.namedtuple("Term", "sign label seeds")


def parse_terms(text, class_names=()):
    """'A - B + C' (spaces around the signs), each term seeds (12,40,51) or, for a conditional model,
    class:seeds (3:12,40,51). A list of Terms (sign +1 or -1, class index or None, seeds)."""
    terms, sign = [], 1
    for token in text.split():  # operators between spaces: class names may hold '-' (food-drink)
        if token in "+-":
            sign = 1 if token == "+" else -1
            continue
        label, _, seeds = token.rpartition(":")
        if bool(label) != bool(class_names) or (label and label not in class_names):
            raise ValueError(f"term {token!r}: " + (f"give each term a class of {', '.join(class_names)}, e.g. "
                             f"{class_names[0]}:1,2,3" if class_names else "this model has no classes: give seeds only, "
                             "e.g. 1,2,3"))
        try:
            numbers = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise ValueError(f"term {token!r}: seeds are integers separated by commas") from None
        terms.append(Term(sign, class_names.index(label) if label else None, numbers))
        sign = 1
    if len(terms) < 2:
        raise ValueError("give at least two terms, e.g. 'A - B + C' with each term seeds or class:seeds")
    return terms


def arithmetic(dcgan, terms, noise=0.25, n=8, seed=0):
    """(picture, result z): a row per term, its samples then the image of their mean z; under them the
    image of the signed sum of the means, drawn with the last term's class, then n of it with uniform
    noise of +-noise added to z (as the paper's figure 7). Columns: max(seeds per term + 1, n + 1)."""
    columns = max(max(len(t.seeds) for t in terms), n) + 1
    rows, means = [], []
    for term in terms:
        z = z_from_seeds(np.asarray(term.seeds, np.int64), dcgan.z_dim, dcgan.z_dist).numpy()
        means.append(z.mean(axis=0))
        rows.append(padded_row(draw(dcgan, np.concatenate([z, means[-1][None]]), term.label), columns))
    result = sum(t.sign * m for t, m in zip(terms, means)).astype(np.float32)
    jitter = np.random.default_rng(seed).uniform(-noise, noise, (n, dcgan.z_dim)).astype(np.float32)
    rows.append(padded_row(draw(dcgan, np.concatenate([result[None], result + jitter]), terms[-1].label), columns))
    return utils.make_grid(np.concatenate(rows), len(rows), columns), result


def padded_row(images, columns):
    return np.concatenate([images, np.zeros((columns - len(images), *images.shape[1:]), images.dtype)])


def draw(dcgan, z, label):
    labels = None if label is None else np.full(len(z), label, np.int32)
    return dcgan.sample(tf.constant(z), labels).numpy()


# ---------------------------------------------------------------- the commands (main.py)

def model_picture(dcgan, rgb):
    """A picture (uint8 [H', W', 3 or 4], any size) as the networks take it: float [1, H, W, C] in [0, 1],
    resized bilinearly, alpha dropped, colour made grey (luminance, as training reads it) for a one-channel model."""
    from PIL import Image
    g = dcgan.generator
    image = Image.fromarray(np.asarray(rgb, np.uint8)[..., :3]).resize((g.output_width, g.output_height), Image.BILINEAR)
    picture = np.asarray(image, np.float32) / 255.0
    return (to_grey(picture) if g.c_dim == 1 else picture)[None]


def read_picture(dcgan, path):
    """A picture file as the networks take it (transparent pixels composited onto white, as training does)."""
    g = dcgan.generator
    return model_picture(dcgan, read_image(path, (g.output_height, g.output_width))[0])


def mask_for(dcgan, hole):
    """The mask of hole: one of MASKS, or a picture file whose dark pixels are the hole."""
    g = dcgan.generator
    if hole in MASKS:
        return make_mask(hole, g.output_height, g.output_width)
    return mask_from_picture(read_image(hole, (g.output_height, g.output_width))[0])


def completion_strip(dcgan, picture, mask):
    """(the picture, the part kept, G's drawing and the completion side by side; the Found)."""
    completed, found = complete(dcgan, picture, mask)
    return utils.make_grid(np.concatenate([picture, picture * mask, found.images, completed]), 1, 4), found


def complete_picture(dcgan, class_names, rgb, hole):
    """The demo's completion of a picture (uint8 [H', W', 3 or 4]): (completion_strip's picture, a line on it)."""
    strip, found = completion_strip(dcgan, model_picture(dcgan, rgb), mask_for(dcgan, hole))
    return strip, f"{named(found, class_names).capitalize()}mean absolute error on the known pixels {found.error[0]:.4f}"


def named(found, class_names):
    return f"class {class_names[found.label[0]]}, " if found.label is not None else ""


def check_asked(arithmetic, invert, complete, class_names=()):
    """A DCGANError for an --arithmetic expression that does not parse or an --invert or --complete
    picture that is not there, before the model is loaded."""
    for flag, path in (("invert", invert), ("complete", complete)):
        if path and not os.path.isfile(path):
            raise utils.DCGANError(f"--{flag}: there is no picture {path}")
    if arithmetic and arithmetic.strip() != "grid":
        try:
            parse_terms(arithmetic, class_names)
        except ValueError as e:
            raise utils.DCGANError(e) from None


def write_asked(dcgan, folder, class_names, arithmetic="", invert="", complete="", hole="centre", labels=None, n=8,
                seed=0):
    """main.py's --arithmetic, --invert and --complete into folder; what was written printed."""
    try:
        if arithmetic:
            print(write_arithmetic(dcgan, arithmetic, folder, class_names, labels, n, seed))
        if invert:
            print(write_inversion(dcgan, invert, folder, class_names))
        if complete:
            print(write_completion(dcgan, complete, hole, folder, class_names))
    except ValueError as e:
        raise utils.DCGANError(e) from None


def write_inversion(dcgan, path, folder, class_names=()):
    """--invert: the picture beside G's drawing of the z found (invert_<name>.png) and that z (.npy)."""
    os.makedirs(folder, exist_ok=True)
    picture = read_picture(dcgan, path)
    found = invert(dcgan, picture)
    stem = os.path.join(folder, f"invert_{os.path.splitext(os.path.basename(path))[0]}")
    utils.save_image(utils.make_grid(np.concatenate([picture, found.images]), 1, 2), stem + ".png")
    save_array(found.z[0], stem + "_z.npy")
    return (f"{path}: {named(found, class_names)}mean squared error {found.error[0]:.4f}. Wrote {stem}.png (the "
            f"picture, G's drawing) and {stem}_z.npy")


def write_completion(dcgan, path, hole, folder, class_names=()):
    """--complete: the picture, the part kept, G's drawing and the completed picture (complete_<name>_<hole>.png).
    hole: one of MASKS, or a picture whose dark pixels are the hole."""
    os.makedirs(folder, exist_ok=True)
    strip, found = completion_strip(dcgan, read_picture(dcgan, path), mask_for(dcgan, hole))
    kind = hole if hole in MASKS else "mask"
    path_out = os.path.join(folder, f"complete_{os.path.splitext(os.path.basename(path))[0]}_{kind}.png")
    utils.save_image(strip, path_out)
    return (f"{path}: {named(found, class_names)}mean absolute error on the known pixels {found.error[0]:.4f}. "
            f"Wrote {path_out} (the picture, the part kept, G's drawing, the completion)")


def write_arithmetic(dcgan, text, folder, class_names=(), labels=None, n=8, seed=0):
    """--arithmetic: 'grid', a grid of samples numbered by seed to pick terms from; else the expression's
    picture (arithmetic_<expression>.png) and its result z (.npy)."""
    os.makedirs(folder, exist_ok=True)
    from visualize import numbered_grid
    if text.strip() == "grid":
        if dcgan.y_dim:
            labels = list(range(dcgan.y_dim)) if labels is None else labels
            images = draw_seeds(dcgan, labels, n, seed)
            grid = numbered_grid(images.swapaxes(0, 1), [str(seed + j) for j in range(n)],
                                 [class_names[k] for k in labels])
            how = "its row's, its class its column's"
        else:
            images = draw_seeds(dcgan, None, n * 8, seed)
            images = images.reshape(n, 8, *images.shape[2:])
            grid = numbered_grid(images, [f"{seed + 8 * r}+" for r in range(n)], [f"+{c}" for c in range(8)])
            how = "its row's plus its column's"
        path = os.path.join(folder, f"arithmetic_grid_seed{seed}.png")
        utils.save_image(grid, path)
        return f"Wrote {path}: each image's seed is {how}; pick the terms from it"
    picture, z = arithmetic(dcgan, parse_terms(text, list(class_names) if dcgan.y_dim else ()), seed=seed)
    stem = os.path.join(folder, "arithmetic_" + "".join(c if c.isalnum() or c in ",-+" else "_" for c in text)[:80])
    utils.save_image(picture, stem + ".png")
    save_array(z, stem + "_z.npy")
    return (f"Wrote {stem}.png (a row per term: its samples, then their mean's image; the last row the result, then "
            f"it with noise) and {stem}_z.npy")


def draw_seeds(dcgan, labels, n, seed):
    """float images [len(labels) or 1, n, H, W, C], image j from seed + j's z (serving.generate's)."""
    from serving import generate
    return generate(dcgan, labels, n, seed).astype(np.float32) / 255.0


def save_array(array, path):
    with utils.published(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
