"""What the DCGAN paper did with a trained DCGAN, measured: D's features under a linear classifier
(features.py), inversion and completion (latent.py) on MNIST's test digits, scored by the shipped MNIST
classifier. Prints markdown tables (and writes them to --out) and example grids beside them.

    python folders.py --source mnist --data_dir ../shared/data --out data/mnist-pixels --unlabelled
    python main.py --dataset mnist-pixels --output_height 28 --input_fname_pattern '*.png' --train --epoch 2
    python paper.py --measure features --run checkpoints/mnist-pixels_64_28_28 --data_dir ../shared/data

    python folders.py --source mnist --data_dir ../shared/data --out data/mnist-train
    python main.py --dataset mnist-train --output_height 28 --input_fname_pattern '*.png' --train --epoch 1
    python paper.py --measure inversion,completion --run checkpoints/mnist-train_64_28_28 --data_dir ../shared/data

Features of a colour run are scored on a labelled folder (--labelled_folder, a sub-folder per class, e.g.
folders.py --source emoji): a seeded fifth of it is the test set. The conditional model of inversion and
completion is one trained on MNIST's training split only (folders.py's), so that the test digits are new
to it: --dataset mnist trains on both splits, as the original did.
"""
import os
import sys
import time

import numpy as np
from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MEASURES = ("features", "inversion", "completion")
flags.DEFINE_list("measure", list(MEASURES), f"What to measure, of {', '.join(MEASURES)}.")
flags.DEFINE_string("run", None, "The trained run's checkpoint folder (<checkpoint_dir>/<run>).")
flags.DEFINE_string("data_dir", "./data", "Folder that holds mnist/ (its IDX files).")
flags.DEFINE_string("labelled_folder", "", "features: score on this folder's classes (a sub-folder per class) "
                                           "rather than MNIST's digits.")
flags.DEFINE_list("label_counts", ["100", "1000", "all"], "features: labelled training images the classifier gets.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "features: draws of the labelled images (for counts below all).")
flags.DEFINE_integer("n", 1000, "inversion, completion: test digits (a seeded draw).", lower_bound=1)
flags.DEFINE_list("masks", ["left", "centre"], "completion: the holes to fill.")
flags.DEFINE_integer("steps", None, "inversion, completion: Adam steps on z (default: latent.SEARCH's and "
                     "latent.COMPLETION_SEARCH's).", lower_bound=1)
flags.DEFINE_string("out", "samples/paper", "Folder for the tables (paper.md) and the example grids.")
flags.mark_flag_as_required("run")
FLAGS = flags.FLAGS


def mean_range(values, scale=100, digits=2):
    values = np.asarray(values) * scale
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ({values.min():.{digits}f}-{values.max():.{digits}f})"


def feature_table(dcgan, config, train, test):
    """Markdown rows: test accuracy of the linear classifier on pixels, untrained D and trained D."""
    import features
    from model import build_dcgan
    untrained = build_dcgan(config)  # seeded as the run was: the very D it started from
    sets = {}
    for name, represent in (("raw pixels", features.pixel_features),
                            ("D untrained (random weights)", lambda x: features.discriminator_features(untrained, x)),
                            ("D trained (this run)", lambda x: features.discriminator_features(dcgan, x))):
        started = time.monotonic()
        sets[name] = represent(train[0]), represent(test[0])
        print(f"{name}: {sets[name][0].shape[1]} features in {time.monotonic() - started:.0f} s", flush=True)
    lines = ["| labelled training images | " + " | ".join(sets) + " |", "| --- |" + " --- |" * len(sets)]
    for count in FLAGS.label_counts:
        n = None if count == "all" else int(count)
        seeds = [0] if n is None else [int(s) for s in FLAGS.seeds]
        row = []
        for name, (train_f, test_f) in sets.items():
            started = time.monotonic()
            scores = [features.probe_accuracy(train_f, train[1], test_f, test[1], n, seed) for seed in seeds]
            row.append(mean_range(scores))
            print(f"{count} labels, {name}: {row[-1]} % ({time.monotonic() - started:.0f} s)", flush=True)
        shown = f"all {len(train[1]):,}" if n is None else f"{n:,} (seeds {', '.join(map(str, seeds))})"
        lines.append(f"| {shown} | " + " | ".join(row) + " |")
    return lines


def labelled_folder_split(config, folder, seed=0):
    """(train, test) of a labelled folder at the run's size: a seeded fifth is the test set."""
    from data import list_image_folder, read_images
    paths, labels, names = list_image_folder(folder, os.path.basename(config["input_fname_pattern"] or "*.png"))
    if names is None:
        raise SystemExit(f"Error: {folder} has no sub-folders of classes")
    images, kept = read_images(paths, (config["output_height"], config["output_width"]), None, config["c_dim"])
    labels = labels[kept]
    order = np.random.default_rng(seed).permutation(len(images))
    test, train = order[:len(order) // 5], order[len(order) // 5:]
    print(f"{len(names)} classes: {', '.join(names)}; {len(train)} training and {len(test)} test images")
    return (images[train], labels[train]), (images[test], labels[test])


def mnist_splits():
    from data import load_splits
    splits = load_splits("mnist", FLAGS.data_dir, download=False)
    return ((splits["train"][0][..., None], splits["train"][1]), (splits["test"][0][..., None], splits["test"][1]))


def test_digits(test):
    chosen = np.random.default_rng(0).choice(len(test[1]), FLAGS.n, replace=False)
    return test[0][chosen].astype(np.float32) / 255.0, test[1][chosen]


def read_digits(classifier, images):
    from evaluate import classify
    return classify(classifier, images)[0]


def nearest(train_images, images, batch=500):
    """Index of each image's nearest training image in squared pixel distance."""
    import tensorflow as tf
    train = tf.constant(train_images.reshape(len(train_images), -1).astype(np.float32) / 255.0)
    norms = tf.reduce_sum(tf.square(train), axis=1)
    found = []
    for i in range(0, len(images), batch):
        x = tf.constant(images[i:i + batch].reshape(len(images[i:i + batch]), -1))
        distances = norms[None, :] - 2.0 * tf.matmul(x, train, transpose_b=True)
        found.append(tf.argmin(distances, axis=1).numpy())
    return np.concatenate(found)


def inversion_table(dcgan, classifier, train, test):
    import latent
    from utils import Progress
    images, labels = test_digits(test)
    started = time.monotonic()
    found = latent.invert(dcgan, images, search=search_of(latent.SEARCH), progress=Progress(len(images)))
    seconds = time.monotonic() - started
    near = nearest(train[0], images)
    near_images = train[0][near].astype(np.float32) / 255.0
    rows = [("the digits themselves", 0.0, None, read_digits(classifier, images)),
            ("inversion, G(z) (label found, not given)", np.mean((found.images - images) ** 2), found.label,
             read_digits(classifier, found.images)),
            ("nearest training digit (pixel distance)", np.mean((near_images - images) ** 2), train[1][near],
             read_digits(classifier, near_images))]
    lines = ["| images | mean squared error | label found = true label % | classifier reads the true digit % |",
             "| --- | --- | --- | --- |"]
    for name, error, found_labels, read in rows:
        label_rate = "" if found_labels is None else f"{100 * np.mean(found_labels == labels):.2f}"
        lines.append(f"| {name} | {error:.4f} | {label_rate} | {100 * np.mean(read == labels):.2f} |")
    lines.append(f"\n{len(images)} test digits, {seconds / len(images):.2f} s a digit.")
    return lines, np.concatenate([images[:16], found.images[:16], near_images[:16]]), min(16, len(images))


def completion_table(dcgan, classifier, test):
    import latent
    from utils import Progress
    images, labels = test_digits(test)
    lines = ["| hole | classifier on the originals % | on the masked digits % | on the completed digits % | "
             "label found = true label % | mean absolute error in the hole | s a digit |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    original = np.mean(read_digits(classifier, images) == labels)
    examples = []
    for kind in FLAGS.masks:
        mask = latent.make_mask(kind, *images.shape[1:3])
        masked = images * mask
        started = time.monotonic()
        completed, found = latent.complete(dcgan, images, mask, search=search_of(latent.COMPLETION_SEARCH),
                                           progress=Progress(len(images)))
        seconds = (time.monotonic() - started) / len(images)
        hole = (1.0 - mask)[None]
        error = np.sum(hole * np.abs(completed - images)) / (np.sum(hole) * len(images))
        lines.append(f"| {kind} | {100 * original:.2f} | {100 * np.mean(read_digits(classifier, masked) == labels):.2f} | "
                     f"{100 * np.mean(read_digits(classifier, completed) == labels):.2f} | "
                     f"{100 * np.mean(found.label == labels):.2f} | {error:.4f} | {seconds:.2f} |")
        examples += [images[:16], masked[:16], found.images[:16], completed[:16]]
    return lines, np.concatenate(examples), min(16, len(images))


def search_of(default):
    return default._replace(steps=FLAGS.steps) if FLAGS.steps else default


def write_grid(images, columns, name):
    from utils import make_grid, save_image
    path = os.path.join(FLAGS.out, name)
    save_image(make_grid(images, len(images) // columns, columns), path)
    print(f"Wrote {path}")


def main(argv):
    del argv
    unknown = set(FLAGS.measure) - set(MEASURES)
    if unknown:
        raise SystemExit(f"Error: --measure takes {', '.join(MEASURES)}, not {', '.join(sorted(unknown))}")
    from run import load_trained
    from utils import DCGANError, cpu_model, save_json
    try:
        dcgan, config = load_trained(FLAGS.run)
    except DCGANError as e:
        raise SystemExit(f"Error: {e}") from None
    os.makedirs(FLAGS.out, exist_ok=True)
    report = [f"Run {FLAGS.run} (step {dcgan.trained_steps()}), {cpu_model()}, `{' '.join(sys.argv)}`", ""]
    if "features" in FLAGS.measure:
        train, test = labelled_folder_split(config, FLAGS.labelled_folder) if FLAGS.labelled_folder else mnist_splits()
        report += ["## D's features, linear classifier, test accuracy %", ""] + feature_table(dcgan, config, train, test)
    if {"inversion", "completion"} & set(FLAGS.measure):
        from evaluate import shipped_classifier
        classifier, _ = shipped_classifier()
        train, test = mnist_splits()
        for measure in ("inversion", "completion"):
            if measure in FLAGS.measure:
                lines, examples, columns = (inversion_table(dcgan, classifier, train, test) if measure == "inversion"
                                            else completion_table(dcgan, classifier, test))
                report += ["", f"## {measure}", ""] + lines
                write_grid(examples, columns, f"{measure}.png")
    text = "\n".join(report) + "\n"
    print(text)
    with open(os.path.join(FLAGS.out, "paper.md"), "w") as f:
        f.write(text)
    save_json({"run": FLAGS.run, "argv": sys.argv}, os.path.join(FLAGS.out, "paper.json"))


if __name__ == "__main__":
    app.run(main)
