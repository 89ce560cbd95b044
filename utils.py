"""Data loading, image grids and GIFs."""
import gzip
import json
import os
import signal
import socket
import sys
import threading
import time

import numpy as np
import tensorflow as tf
from PIL import Image

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08


class DCGANError(Exception):
    """A problem the user can fix; main.py prints it as one line instead of a traceback."""


class DataError(DCGANError):
    pass


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
    builder = tfds.builder(name)
    if not builder.is_prepared() and not can_reach("storage.googleapis.com"):
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


def shuffled_batches(images, labels, batch_size, num_classes, seed, start_step=0):
    """Endless tf.data stream of (x in [0,1] [B,H,W,1], one-hot y) batches, reshuffled each epoch.

    The order of epoch e depends only on (seed, e), so a run resumed at start_step sees exactly
    the batches it would have seen had it never stopped.
    """
    n = len(images)
    steps_per_epoch = n // batch_size
    images, labels = tf.constant(images), tf.constant(labels, tf.int32)

    def epoch_order(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size, drop_remainder=True)

    def gather(index):
        x = tf.cast(tf.gather(images, index), tf.float32)[..., None] / 255.0
        return x, tf.one_hot(tf.gather(labels, index), num_classes)

    first_epoch = start_step // steps_per_epoch
    return (tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
            .flat_map(epoch_order)
            .skip(start_step - first_epoch * steps_per_epoch)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


# ---------------------------------------------------------------- images

def to_uint8(images):
    """Float images in [0, 1] -> uint8 (uint8 images pass through)."""
    if np.asarray(images).dtype == np.uint8:
        return np.asarray(images)
    return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def make_grid(images, rows, cols):
    """[rows*cols, H, W, C] -> one [rows*H, cols*W, C] image, filled row by row."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    if n != rows * cols:
        raise ValueError(f"{n} images do not fill a {rows}x{cols} grid")
    return images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def label_columns(images):
    """[labels, n, H, W, C] -> one grid image with a column per label and a row per seed."""
    images = np.asarray(images)
    by_row = images.swapaxes(0, 1).reshape(-1, *images.shape[2:])
    return make_grid(by_row, images.shape[1], images.shape[0])


def to_pil(image):
    image = to_uint8(image)
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def save_image(image, path):
    """Writes one [H, W, C] image (float in [0, 1], or uint8) as PNG, published only when complete."""
    tmp = path + ".tmp"
    to_pil(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def save_json(obj, path):
    """Writes obj as JSON at path (making its folder), published only when complete."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def save_gif(frames, path, duration_ms=80):
    """Writes [H, W, C] float frames in [0, 1] as a looping GIF."""
    first, *rest = [to_pil(f) for f in frames]
    tmp = path + ".tmp"
    first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=0)
    os.replace(tmp, path)


# ---------------------------------------------------------------- progress

class Progress:
    """One status line for long loops: rewritten in place on a terminal, else printed every `every` s."""

    def __init__(self, total, start=0, every=30.0, stream=None):
        self.clock = time.perf_counter
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total, self.start, self.every = total, start, every
        self.t0 = self.clock()
        self.first = True
        self.last = float("-inf")  # the first update always shows

    def update(self, done, text="", force=False):
        now = self.clock()
        if self.first:  # the first step includes tracing and warm-up: time from its end
            self.first, self.start, self.t0 = False, done, now
        if not (force or self.tty or now - self.last >= self.every):
            return
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        line = f"{done}/{self.total} {text} | {rate:.2f} it/s ETA {format_seconds(eta)}"
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")


def format_seconds(seconds):
    if not np.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class StopSignals:
    """Within the block, SIGINT and SIGTERM only set .signal (and the event .received), so a loop
    can save and stop cleanly. Installed explicitly, since a process started in the background
    inherits SIGINT ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, doing="saving a checkpoint, then stopping"):
        self.doing = doing

    def __enter__(self):
        self.signal = None
        self.received = threading.Event()
        self.previous = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def handle(self, signum, frame):
        if self.signal is None:
            print(f"\n{signal.Signals(signum).name} received: {self.doing}.", file=sys.stderr, flush=True)
        self.signal = signal.Signals(signum)
        self.received.set()

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
