"""Data loading (MNIST's IDX files, tfds, image folders), image grids and GIFs."""
import collections
import concurrent.futures
import contextlib
import glob
import gzip
import json
import os
import platform
import re
import signal
import socket
import sys
import threading
import time

import numpy as np
from PIL import Image, ImageOps

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08
MNIST_SIZE = 28


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


@contextlib.contextmanager
def absl_errors_only():
    """Within the block, absl's log (TensorFlow's and tfds' Python-side notes) shows errors only."""
    from absl import logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


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


def shuffled_batches(images, labels, batch_size, num_classes, seed, start_step=0):
    """Endless tf.data stream of (x in [0,1] [B,H,W,C], one-hot y) batches, reshuffled each epoch;
    batches of x alone when labels is None. images: uint8 [N,H,W,C], or float32 taken as they are.

    The order of epoch e depends only on (seed, e), so a run resumed at start_step sees exactly
    the batches it would have seen had it never stopped.
    """
    import tensorflow as tf  # here, not at the top: a command that stops on a bad flag or file need not load it
    n = len(images)
    steps_per_epoch = n // batch_size
    images = tf.constant(images)
    labels = None if labels is None else tf.constant(labels, tf.int32)

    def epoch_order(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size, drop_remainder=True)

    scale = 1.0 / 255.0 if images.dtype == tf.uint8 else 1.0  # float data (the curves) as it is

    def gather(index):
        x = tf.cast(tf.gather(images, index), tf.float32) * scale
        return x if labels is None else (x, tf.one_hot(tf.gather(labels, index), num_classes))

    first_epoch = start_step // steps_per_epoch
    return (tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
            .flat_map(epoch_order)
            .skip(start_step - first_epoch * steps_per_epoch)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def digit_names(n):
    """Class names of a dataset whose classes are its indices (MNIST's digits)."""
    return [str(k) for k in range(n)]


# ---------------------------------------------------------------- image folders

def list_image_folder(folder, pattern):
    """(paths, labels, class_names) of the files in folder that match pattern; when none does, of those
    in its sub-folders, one class per sub-folder (labels and class_names None for a single one)."""
    if not os.path.isdir(folder):
        raise DataError(f"there is no folder {folder}: --dataset is mnist, fashion_mnist or the name of a "
                        f"folder of images inside --data_dir")
    paths = matching_files(folder, pattern)
    if paths:
        return paths, None, None
    subfolders = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    per_class = {d: matching_files(os.path.join(folder, d), pattern) for d in subfolders}
    per_class = {d: files for d, files in per_class.items() if files}
    if not per_class:
        raise DataError(f"no file in {folder} or its sub-folders matches --input_fname_pattern={pattern}"
                        f"{what_is_there(folder)}")
    if len(per_class) == 1:  # data/celebA/img_align_celeba/*.jpg: one folder of pictures, not a class
        return next(iter(per_class.values())), None, None
    class_names = list(per_class)
    labels = np.concatenate([np.full(len(files), k, np.int32) for k, files in enumerate(per_class.values())])
    return [p for files in per_class.values() for p in files], labels, class_names


def what_is_there(folder):
    """The kinds of files folder and its sub-folders hold, most first, with the pattern that picks the
    first ('; it holds 40 *.PNG, 5 *.JPG: e.g. --input_fname_pattern=*.PNG'), for a pattern that found
    nothing (photos from cameras are often *.JPG)."""
    places = [folder, *(os.path.join(folder, d) for d in os.listdir(folder))]
    counts = collections.Counter("*" + (os.path.splitext(name)[1] or name) for place in places
                                 if os.path.isdir(place) for name in os.listdir(place)
                                 if os.path.isfile(os.path.join(place, name)))
    if not counts:
        return "; it holds no files"
    kinds = counts.most_common()
    listed = ", ".join(f"{n} {kind}" for kind, n in kinds[:5]) + (", ..." if len(kinds) > 5 else "")
    return f"; it holds {listed}: e.g. --input_fname_pattern={kinds[0][0]}"


def matching_files(folder, pattern):
    return sorted(p for p in glob.glob(os.path.join(glob.escape(folder), pattern)) if os.path.isfile(p))


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
    images, gray, kept, skipped = np.empty((len(paths), *size, 3), np.uint8), [], [], []
    progress = Progress(len(paths), warmup=False)
    pool = concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count())
    try:
        results = pool.map(try_read_image, paths, [size] * len(paths), [crop] * len(paths))
        for i, (path, result) in enumerate(zip(paths, results)):
            if isinstance(result, str):
                skipped.append(f"{path} ({result})")
            else:
                images[len(kept)], is_gray = result
                gray.append(is_gray)
                kept.append(i)
            if (i + 1) % 1000 == 0:
                progress.update(i + 1, "images read")
    finally:  # on an error (a crop that does not fit, Ctrl-C), the files not yet read are not read
        pool.shutdown(cancel_futures=True)
    progress.close()
    if skipped:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        print(f"Warning: skipped {len(skipped)} unreadable image file(s) of {len(paths)}: {shown}", file=sys.stderr)
    channels = channels or (1 if all(gray) else 3)
    images = images[:len(kept)]
    return (images[..., :1] if channels == 1 else images), np.asarray(kept, np.int64)


def first_line(error):
    """An error's first line, for one-line messages (its type's name when it has no text); of a
    TensorFlow graph error, its cause's; without the function and op names TensorFlow puts around it."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith("Graph execution error"):  # the cause follows the op's Python traceback
        lines = [line for line in lines[1:] if not line.startswith((" ", "\t", "Detected at node"))] or lines
    line = lines[0].strip() if lines else type(error).__name__
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name:.*)?$", "", line) or line


def try_read_image(path, size, crop):
    """read_image's result, or the reason the file cannot be read (a crop that does not fit raises)."""
    try:
        return read_image(path, size, crop)
    except CropError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return first_line(e)


def check_memory(needed, what, advice, error=DCGANError):
    """Refuses, with one line, work that would not fit in the memory available now: what (ending in
    "need" or "needs") is said to need `needed` bytes, and advice tells how to need less."""
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return  # not Linux: no figure to check against
    if needed > 0.8 * available:
        raise error(f"{what} {needed / 2 ** 30:.1f} GiB in memory and {available / 2 ** 30:.1f} GiB are "
                    f"available: {advice}")


# ---------------------------------------------------------------- the 1-D toy

CURVE_POINTS = 15


def curve_x():
    return np.linspace(-1.0, 1.0, CURVE_POINTS, dtype=np.float32)


def make_curves(n, seed):
    """n "artist's curves" a*x^2 + (a - 1) on 15 points x evenly spaced in [-1, 1], a ~ U(1, 2), as
    float32 [n, 1, 15, 1]: one-row, one-channel "images" for the networks and the data stream."""
    a = np.random.default_rng(seed).uniform(1.0, 2.0, (n, 1)).astype(np.float32)
    return (a * curve_x() ** 2 + (a - 1.0))[:, None, :, None]


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


def padded(images, columns):
    """images [N, H, W, C] followed by black ones up to a multiple of columns, to fill a grid."""
    images = np.asarray(images)
    missing = -len(images) % columns
    return np.concatenate([images, np.zeros((missing, *images.shape[1:]), images.dtype)]) if missing else images


def label_columns(images):
    """[labels, n, H, W, C] -> one grid image with a column per label and a row per seed."""
    images = np.asarray(images)
    by_row = images.swapaxes(0, 1).reshape(-1, *images.shape[2:])
    return make_grid(by_row, images.shape[1], images.shape[0])


def to_pil(image):
    image = to_uint8(image)
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


@contextlib.contextmanager
def published(path, suffix=".tmp"):
    """Yields the name to write path's content under; renames it to path once written, so path is never
    half written, and removes it when writing fails (a full disk keeps no partial file). An error
    without a file name (a write that found the disk full) is raised naming path."""
    tmp = path + suffix
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, path) from e
        raise


def save_image(image, path):
    """Writes one [H, W, C] image (float in [0, 1], or uint8) as PNG."""
    with published(path) as tmp:
        to_pil(image).save(tmp, format="PNG")


def save_json(obj, path):
    """Writes obj as JSON at path (making its folder)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with published(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


def save_gif(frames, path, duration_ms=80):
    """Writes [H, W, C] float frames in [0, 1] as a looping GIF."""
    first, *rest = [to_pil(f) for f in frames]
    with published(path) as tmp:
        first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=0)


@contextlib.contextmanager
def held_alone(folder, taken):
    """Holds folder (made if need be) locked for the block, so that two processes never write the same
    run; raises DCGANError(taken) when another one holds it. The lock is the kernel's on the folder
    itself (no lock file to go stale): it dies with its process, kill -9 included. Where there is no
    flock (Windows, file systems without locks), the block runs unlocked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    made = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DCGANError(taken) from None
        except OSError:  # a file system without locks (some network ones): unlocked rather than not at all
            pass
        yield
    finally:
        os.close(fd)
        if made:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                os.rmdir(folder)


# ---------------------------------------------------------------- progress

class Progress:
    """One status line for long loops: rewritten in place on a terminal, else printed every `every` s."""

    def __init__(self, total, start=0, every=30.0, stream=None, warmup=True):
        self.clock = time.perf_counter
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total, self.start, self.every = total, start, every
        self.t0 = self.clock()
        self.first = warmup
        self.last = float("-inf")  # the first update always shows

    def update(self, done, text="", force=False):
        now = self.clock()
        if self.first:  # a first training step includes tracing and warm-up: time from its end
            self.first, self.start, self.t0 = False, done, now
        if not (force or self.tty or now - self.last >= self.every):
            return
        self.last = now
        rate = self.rate(done, now)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        line = f"{done}/{self.total} {text} | {rate:.2f} it/s ETA {format_seconds(eta)}"
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def rate(self, done, now=None):
        """Iterations per second from the end of the first (or from the start without warmup) to now."""
        return (done - self.start) / max((self.clock() if now is None else now) - self.t0, 1e-9)

    def interject(self, warning):
        """Prints warning on stderr on a line of its own; the status line comes back with the next update."""
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
        print(warning, file=sys.stderr, flush=True)

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


# The CPU features that decide which kernels run: AVX2 or AVX-512 float32, bfloat16 in hardware.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_field(name):
    """A field of /proc/cpuinfo ('model name', 'flags') for the first CPU, or None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == name), None)
    except OSError:
        return None


def cpu_model():
    return cpu_field("model name") or platform.processor() or platform.machine()


def cpu_flags():
    """{flag: present} for CPU_FLAGS."""
    present = (cpu_field("flags") or "").split()
    return {name: name in present for name in CPU_FLAGS}


def has_bfloat16_cpu():
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX); elsewhere TF emulates it, slower
    than float32."""
    flags = cpu_flags()
    return flags["avx512_bf16"] or flags["amx_bf16"]
