"""Every dataset the networks train on: MNIST-like IDX files (or tensorflow-datasets), folders of
pictures (unconditional, or one class per sub-folder), the 1-D curves toy, and the seed-ordered
tf.data stream of batches the training loop reads.

    images, labels = load_training_data(config, "./data")   # config: a run's settings (run.py)
    batches = shuffled_batches(images, labels, 64, 10, seed=0)
"""
import collections
import concurrent.futures
import functools
import glob
import gzip
import hashlib
import os
import socket
import sys
import time

import numpy as np
from PIL import Image, ImageOps

from utils import DCGANError, Progress, absl_errors_only, check_memory, first_line

# The datasets read from IDX files or tfds, and their image size; every other name is a folder of pictures.
MNIST_LIKE = {"mnist": 28, "fashion_mnist": 28}
NUM_CLASSES = 10
# The 1-D toy: curves a*x^2 + (a - 1), a ~ U(1, 2), made on the fly (this many unless train_size says).
CURVES, CURVES_N = "curves", 6400
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08
MNIST_SIZE = 28

class DataError(DCGANError):
    pass

def parse_labels(text, class_names):
    """Class indices from 'all' or comma-separated class names or indices; None if one is not a class."""
    if text.strip() == "all":
        return list(range(len(class_names)))
    labels = []
    for part in (p.strip() for p in text.split(",")):
        if part in class_names:
            labels.append(class_names.index(part))
        elif part.isdigit() and int(part) < len(class_names):
            labels.append(int(part))
        else:
            return None
    return labels


# ---------------------------------------------------------------- IDX files (MNIST format)

def read_idx(path):
    """Reads one IDX file of unsigned bytes, raw or gzip-compressed, checking its header and size."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE or raw[3] == 0:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (wrong magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header needs {header} bytes, it has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path} is truncated or padded: shape {shape} needs {expected} bytes of data, "
                        f"it has {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def find_idx(folder, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def load_idx_splits(folder, num_classes=10):
    """{'train': (images, labels), 'test': ...} from the four IDX files in folder: uint8 [N,28,28], [N]."""
    paths = {key: find_idx(folder, name) for key, name in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)} (raw or .gz)")
    splits = {}
    for split in ("train", "test"):
        x, y = read_idx(paths[f"{split}_images"]), read_idx(paths[f"{split}_labels"])
        if x.ndim != 3 or y.ndim != 1:
            raise DataError(f"{folder}: {split} images must be 3-D and labels 1-D, got {x.shape} and {y.shape}")
        if x.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
            raise DataError(f"{paths[f'{split}_images']} holds {x.shape[1]}x{x.shape[2]} images, where MNIST-like "
                            f"datasets have {MNIST_SIZE}x{MNIST_SIZE}: for other sizes, train on a folder of images")
        if len(x) != len(y):
            raise DataError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
        if y.size and y.max() >= num_classes:
            raise DataError(f"{folder}: {split} label {y.max()} is outside 0..{num_classes - 1}")
        splits[split] = (x, y)
    return splits


# ---------------------------------------------------------------- datasets

def can_reach(host, port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False

def load_tfds_splits(name, folder):
    """MNIST-like splits through tensorflow-datasets, failing fast when it would have to download offline."""
    import tensorflow_datasets as tfds
    with absl_errors_only():  # tfds warns of each folder it looks in for a prepared copy
        builder = tfds.builder(name)
        prepared = builder.is_prepared()
    if not prepared and not can_reach("storage.googleapis.com"):
        raise DataError(f"no {name} files in {folder} and no internet to download them with "
                        f"tensorflow-datasets: put the four IDX files ({MNIST_FILES['train_images']}.gz, ...) "
                        f"in {folder}")
    builder.download_and_prepare()
    splits = {}
    for split in ("train", "test"):
        x, y = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
        splits[split] = (x[..., 0], y.astype(np.uint8))
    return splits


def load_splits(dataset, data_dir, download=True):
    """Train and test splits of an MNIST-like dataset: local IDX files first, then (if download) tfds."""
    folder = os.path.join(data_dir, dataset)
    if os.path.isdir(folder):
        return load_idx_splits(folder)
    if not download:
        raise DataError(f"there is no folder {folder}: put the four IDX files of {dataset} there, or leave "
                        f"--data_dir out to download them with tensorflow-datasets")
    return load_tfds_splits(dataset, folder)


def load_labelled_images(dataset, data_dir, download=True):
    """Train and test splits joined, as the original trained on them: uint8 [N,28,28], labels [N]."""
    splits = load_splits(dataset, data_dir, download)
    return (np.concatenate([splits["train"][0], splits["test"][0]]),
            np.concatenate([splits["train"][1], splits["test"][1]]))


def shuffled_batches(images, labels, batch_size, num_classes, seed, start_step=0, balanced=False, share=(0, 1)):
    """Endless tf.data stream of (x in [0,1] [B,H,W,C], one-hot y) batches, reshuffled each epoch;
    batches of x alone when labels is None. images: uint8 [N,H,W,C] (an array, or a cache.PictureFile read a
    batch at a time), or float32 taken as they are.
    balanced: an epoch's N pictures are drawn a class at a time, every class as often, a picture of it at random
    (a small class's pictures come back within the epoch, a large one's wait for later epochs). share (i, n):
    the i-th of n equal parts of every batch, read alone (a worker's share of the global batch).

    The order of epoch e depends only on (seed, e), so a run resumed at start_step sees exactly
    the batches it would have seen had it never stopped.
    """
    import tensorflow as tf  # here, not at the top: a command that stops on a bad flag or file need not load it
    n = len(images)
    steps_per_epoch = n // batch_size
    by_class = np.argsort(labels, kind="stable") if balanced else None
    counts = np.bincount(labels) if balanced else None
    present = np.flatnonzero(counts) if balanced else None
    if isinstance(images, np.ndarray):
        pictures_at = functools.partial(tf.gather, tf.constant(images))
    else:
        def pictures_at(index):
            return tf.ensure_shape(tf.numpy_function(images.take, [index], tf.uint8, stateful=False),
                                   [index.shape[0], *images.shape[1:]])
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0  # float data (the curves) as it is
    labels = None if labels is None else tf.constant(labels, tf.int32)

    def epoch_order(epoch):
        key = tf.stack([tf.cast(seed, tf.int64), epoch])
        if balanced:
            classes = tf.gather(present, tf.random.stateless_uniform([n], key, 0, len(present), tf.int32))
            within = tf.random.stateless_uniform([n], key + tf.constant([1, 0], tf.int64))
            position = tf.gather(np.cumsum(counts) - counts, classes) + tf.cast(
                within * tf.cast(tf.gather(counts, classes), tf.float32), tf.int64)
            order = tf.gather(by_class, position)
        else:
            order = tf.argsort(tf.random.stateless_uniform([n], seed=key))
        part = batch_size // share[1]
        return (tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=True)
                .map(lambda index: index[share[0] * part:(share[0] + 1) * part]))

    def gather(index):
        x = tf.cast(pictures_at(index), tf.float32) * scale
        return x if labels is None else (x, tf.one_hot(tf.gather(labels, index), num_classes))

    first_epoch = start_step // steps_per_epoch
    return (tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
            .flat_map(epoch_order)
            .skip(start_step - first_epoch * steps_per_epoch)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


# ---------------------------------------------------------------- image folders

def list_image_folder(folder, pattern):
    """(paths, labels, class_names) of the pictures in folder that match pattern (its extension in any case:
    *.jpg takes a.JPG; None: every picture file): those at its top or else one class per sub-folder (labels
    and class_names None when one sub-folder alone has them: celebA/img_align_celeba/*.jpg). A layout that
    cannot be read as meant is refused (pictures at the top beside class sub-folders; one sub-folder's
    pictures matching where others' do not), and sub-folders of pictures left out are named."""
    if not os.path.isdir(folder):
        raise DataError(f"there is no folder {folder}: --dataset is mnist, fashion_mnist or the name of a "
                        f"folder of images inside --data_dir")
    paths = matching_files(folder, pattern)
    subfolders = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and d[0] != ".")
    per_class = {d: matching_files(os.path.join(folder, d), pattern) for d in subfolders}
    per_class = {d: files for d, files in per_class.items() if files}
    asked = f"--input_fname_pattern={pattern}" if pattern else "a picture file"
    if per_class and not any(p.lower().endswith(PICTURES) for p in paths):
        paths = []  # a README.md or notes.txt beside the class sub-folders
    if paths and per_class:
        raise DataError(f"{folder} holds {len(paths)} pictures matching {asked} at its top and sub-folders of them "
                        f"({', '.join(per_class)}): put every picture in a sub-folder per class (a labelled folder) "
                        "or none in sub-folders")
    if paths:
        return paths, None, None
    if not per_class and pattern is None:
        raise DataError(f"no picture file in {folder} or its sub-folders ({', '.join(PICTURES)})")
    if not per_class:
        raise DataError(f"no file in {folder} or its sub-folders matches {asked}{what_is_there(folder)}")
    # after the unlabelled return: celebA-sized folders of sub-folders (*/*.jpg) would be listed twice
    left_out = {d: what_is_there(os.path.join(folder, d), shallow=True) for d in subfolders
                if d not in per_class and matching_files(os.path.join(folder, d), None)}
    if len(per_class) == 1 and left_out:
        raise DataError(f"in {folder} only {next(iter(per_class))}/ has pictures matching {asked}, and "
                        f"{described(left_out)} others: give a pattern that takes every class's pictures "
                        "(e.g. --input_fname_pattern='*'), or move the others out")
    if left_out:
        print(f"Warning: {folder}: no class for {described(left_out)}: no file there matches {asked}",
              file=sys.stderr)
    if len(per_class) == 1:  # data/celebA/img_align_celeba/*.jpg: one folder of pictures, not a class
        return next(iter(per_class.values())), None, None
    class_names = list(per_class)
    labels = np.concatenate([np.full(len(files), k, np.int32) for k, files in enumerate(per_class.values())])
    return [p for files in per_class.values() for p in files], labels, class_names


def described(held):
    """{sub-folder: what_is_there of it} as 'dog/ (5 *.png), fish/ (2 *.gif)'."""
    return ", ".join(f"{d}/ ({text})" for d, text in held.items())


def what_is_there(folder, shallow=False):
    """The kinds of files folder and its sub-folders hold, most first, with the pattern that picks the
    first ('; it holds 40 *.PNG, 5 *.JPG: e.g. --input_fname_pattern=*.PNG'), for a pattern that found
    nothing (photos from cameras are often *.JPG); shallow: folder's own files alone, as '40 *.PNG, 5 *.JPG'
    ('' for none)."""
    places = [folder] if shallow else [folder, *(os.path.join(folder, d) for d in os.listdir(folder))]
    counts = collections.Counter("*" + (os.path.splitext(name)[1] or name) for place in places
                                 if os.path.isdir(place) for name in os.listdir(place)
                                 if os.path.isfile(os.path.join(place, name)) and name[0] != ".")
    kinds = counts.most_common()
    listed = ", ".join(f"{n} {kind}" for kind, n in kinds[:5]) + (", ..." if len(kinds) > 5 else "")
    if shallow:
        return listed
    if not counts:
        return "; it holds no files"
    return f"; it holds {listed}: e.g. --input_fname_pattern={kinds[0][0]}"


PICTURES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def matching_files(folder, pattern):
    """The files in folder that pattern (a glob, its extension matched in any case) names; None: every picture."""
    if pattern is None:
        return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                      if f.lower().endswith(PICTURES) and os.path.isfile(os.path.join(folder, f)))
    return sorted(p for p in glob.glob(os.path.join(glob.escape(folder), any_case_extension(pattern)))
                  if os.path.isfile(p))


def any_case_extension(pattern):
    """pattern with its extension matched in any case: '*.jpg' -> '*.[jJ][pP][gG]' (cameras write *.JPG)."""
    head, dot, extension = pattern.rpartition(".")
    if not dot or not extension.isalnum() or "/" in extension:
        return pattern
    return head + "." + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in extension)


def read_image(path, size, crop=None):
    """(uint8 RGB [H, W, 3], whether the file is grayscale) of one image file, turned upright as its
    EXIF orientation says (photos from phones), centre-cropped to crop (height, width) if given, then
    resized to size (height, width) bilinearly, as the original. Transparent pixels are composited
    onto white; 16-bit and float grayscale is scaled to 8 bits rather than clipped."""
    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        grayscale = image.mode in ("1", "L", "LA", "F") or image.mode.startswith("I")
        if image.mode == "F" or image.mode.startswith("I"):
            values = np.asarray(image, np.float64)
            scale = 255.0 / 65535.0 if image.mode != "F" else (255.0 if values.max() <= 1.0 else 1.0)
            image = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
        image = image.convert("RGB")
    if crop:
        (crop_h, crop_w), (w, h) = crop, image.size
        if crop_h > h or crop_w > w:
            raise CropError(f"{path} is {w}x{h} pixels, smaller than the {crop_w}x{crop_h} crop "
                            f"(--input_width x --input_height)")
        # int(round()) of Python 2, which the original ran on: halves round up.
        top, left = int(np.floor((h - crop_h) / 2 + 0.5)), int(np.floor((w - crop_w) / 2 + 0.5))
        image = image.crop((left, top, left + crop_w, top + crop_h))
    image = image.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image), grayscale


class CropError(DataError):
    pass


def read_images(paths, size, crop=None, channels=None, workers=None):
    """(uint8 [N, H, W, C], indices of the paths read) for image files, decoded in parallel threads
    (Pillow releases the GIL while decoding and resizing). Unreadable files are skipped with a warning
    that names them. channels 1 or 3; None: 1 if every file is grayscale, else 3."""
    check_memory(len(paths) * size[0] * size[1] * 3, f"{len(paths)} images of {size[1]}x{size[0]} need",
                 "use fewer (--train_size) or smaller (--output_height) images", DataError)
    images, gray, kept = np.empty((len(paths), *size, 3), np.uint8), [], []
    for i, picture, is_gray in decoded(paths, size, crop, "images read", workers):
        images[len(kept)] = picture
        gray.append(is_gray)
        kept.append(i)
    channels = channels or (1 if all(gray) else 3)
    images = images[:len(kept)]
    return (to_grey(images) if channels == 1 else images), np.asarray(kept, np.int64)


def decoded(paths, size, crop=None, doing="images read", workers=None, chunk=1024):
    """Yields (index, uint8 RGB [H, W, 3], whether the file is grayscale) of each readable file of paths, in
    order, decoded `chunk` at a time in parallel threads, with a progress line past the first chunk; then a
    warning naming the files that could not be read."""
    skipped, progress = [], Progress(len(paths), warmup=False)
    pool = concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count())
    try:
        for start in range(0, len(paths), chunk):
            part = paths[start:start + chunk]
            for i, (path, result) in enumerate(zip(part, pool.map(try_read_image, part, [size] * len(part),
                                                                   [crop] * len(part))), start):
                if isinstance(result, str):
                    skipped.append(f"{path} ({result})")
                else:
                    yield i, *result
            if start:  # a folder of fewer than a chunk is read in a blink
                progress.update(start + len(part), doing)
    finally:  # on an error (a crop that does not fit, Ctrl-C), the files not yet read are not read
        pool.shutdown(cancel_futures=True)
    progress.close()
    if skipped:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        print(f"Warning: skipped {len(skipped)} unreadable image file(s) of {len(paths)}: {shown}", file=sys.stderr)


# ITU-R 601-2 luma, as Pillow's convert("L"): a blue picture is dark grey, not black.
LUMA = np.array([0.299, 0.587, 0.114])


def to_grey(images):
    """RGB pictures [..., 3] (uint8, or floats in [0, 1]) as one channel of luminance [..., 1], of the same type:
    the one conversion to grey of training, evaluation and the latent commands."""
    images = np.asarray(images)
    grey = images[..., :3] @ LUMA
    if images.dtype == np.uint8:
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
    return grey.astype(images.dtype)[..., None]


def try_read_image(path, size, crop):
    """read_image's result, or the reason the file cannot be read (a crop that does not fit raises)."""
    try:
        return read_image(path, size, crop)
    except CropError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return first_line(e)


# ---------------------------------------------------------------- the 1-D toy

CURVE_POINTS = 15


def curve_x():
    return np.linspace(-1.0, 1.0, CURVE_POINTS, dtype=np.float32)


def make_curves(n, seed):
    """n "artist's curves" a*x^2 + (a - 1) on 15 points x evenly spaced in [-1, 1], a ~ U(1, 2), as
    float32 [n, 1, 15, 1]: one-row, one-channel "images" for the networks and the data stream."""
    a = np.random.default_rng(seed).uniform(1.0, 2.0, (n, 1)).astype(np.float32)
    return (a * curve_x() ** 2 + (a - 1.0))[:, None, :, None]


# ---------------------------------------------------------------- a run's training data

def load_training_data(config, data_dir, download=True, limit=None, read=None, scored=False):
    """A run's training images (uint8 [N, H, W, C]; the curves float32) and labels (None when
    unconditional), in an order fixed by its seed, at most its train_size, or the first limit of them
    (then fewer than a batch is fine). config: the run's settings (run.py). download: whether an
    MNIST-like dataset missing from data_dir may come through tensorflow-datasets. read: how a folder's
    pictures are read (read_images, or cache.reader's: then perhaps a cache.PictureFile, read a batch at a
    time). Reading a new image folder settles the run's c_dim, y_dim and class_names. scored: whether the run is
    scored while training with no labelled folder to score it against (--eval_freq without --eval_folder)."""
    count, at_least = (limit, 0) if limit else (config["train_size"], config["batch_size"])
    dataset = config["dataset"]
    if dataset == CURVES:
        images, labels = make_curves(count or CURVES_N, config["seed"]), None
    elif dataset in MNIST_LIKE:
        images, labels = load_labelled_images(dataset, data_dir, download)
        order = np.random.default_rng(config["seed"]).permutation(len(images))[:count]
        images, labels = images[order, ..., None], labels[order]
    else:
        images, labels = load_image_folder(config, os.path.join(data_dir, dataset), count, at_least,
                                           read or read_images, scored)
    check_count(len(images), at_least)
    check_classes(config, labels is not None, scored and dataset not in MNIST_LIKE)
    return images, labels


def check_classes(config, labelled, scored):
    """Refuses what needs classes a run does not have: balancing them, or scoring a grayscale folder without a
    labelled folder to score it against (a colour one has the judges)."""
    if config.get("balance_classes") and not labelled:
        raise DCGANError(f"--balance_classes draws every class as often, and {config['dataset']} has no classes: "
                         "leave it out")
    if scored and not labelled and config["c_dim"] == 1:
        raise DCGANError("--eval_freq on a grayscale image folder without classes needs a labelled --eval_folder of "
                         "its pictures to score them against")


def check_count(n, at_least):
    if n < at_least:
        raise DCGANError(f"{n} images are fewer than one batch of {at_least}")


def load_image_folder(config, folder, limit, at_least, read, scored=False):
    paths, labels, names = list_image_folder(folder, config["input_fname_pattern"])
    check_classes(config, bool(names), scored)  # before the long part; a grayscale folder found so after it
    note_changed_files(config, folder, paths)
    if config["class_names"] is not None and (names or []) != config["class_names"]:
        raise DCGANError(f"the classes in {folder} ({', '.join(names or ['none'])}) are not the run's "
                         f"({', '.join(config['class_names']) or 'none'}): use another --out_name")
    from model import folder_conditioning, generator_class
    size = config["output_height"], config["output_width"]
    try:  # before the long part: a size the networks cannot draw
        generator_class(config["arch"], len(names or []),
                        folder_conditioning(config["conditioning"], len(names or []), *size)).check_size(*size)
    except ValueError as e:
        raise DCGANError(f"--arch {config['arch']}{' (conditional)' if names else ''}: {e}") from None
    order = np.random.default_rng(config["seed"]).permutation(len(paths))[:limit]
    check_count(len(order), at_least)  # before reading them
    paths = [paths[i] for i in order]
    crop = (config["input_height"], config["input_width"]) if config["crop"] else None
    started = time.perf_counter()
    images, kept = read(paths, (config["output_height"], config["output_width"]), crop, config["c_dim"])
    print(f"Read {len(images)} images of {folder} as {'x'.join(map(str, images.shape[1:]))} "
          f"in {time.perf_counter() - started:.1f} s")
    if config["class_names"] is None:
        config.update(c_dim=images.shape[-1], y_dim=len(names or []), class_names=names or [])
    return images, None if labels is None else labels[order][kept]


def note_changed_files(config, folder, paths):
    """Records folder's files (their count and a digest of their names) in the run's config, saying so when
    they are not those it recorded before: a resumed run's batches are those it would have seen only while
    the same names are there to be shuffled (a file changed in place changes its picture, which the cache
    sees, not the order)."""
    listed = {"count": len(paths), "names": files_digest(folder, paths, sizes=False)}
    before = config.get("files")  # a run recorded before names were: its count alone compared
    if before and (before["count"], before.get("names", listed["names"])) != (listed["count"], listed["names"]):
        print(f"Warning: the files of {folder} are not those the run was trained on so far ({before['count']} then, "
              f"{listed['count']} now, or other names): from here on it sees other batches than it would have",
              file=sys.stderr)
    config["files"] = listed


def files_digest(folder, paths, sizes=True):
    """A digest of paths' names relative to folder and, with sizes, their sizes (a stat each: 4 s a million)."""
    start = len(os.path.join(folder, "")) if folder else 0  # relpath's normalising took 13 s on 1 M files
    entries = (f"{p[start:]}\t{os.path.getsize(p)}" if sizes else p[start:] for p in paths)
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def first_batch(config, data_dir, download=True):
    """One batch of a run's training data as the stream gives it (x in [0, 1], one-hot labels), for figures."""
    images, labels = load_training_data(config, data_dir, download, limit=config["batch_size"])
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    return (x, np.eye(config["y_dim"], dtype=np.float32)[labels]) if config["y_dim"] else x
