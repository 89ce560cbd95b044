"""A folder's pictures decoded once, on disk beside the run, as the original read them batch by batch from
the folder: every picture cropped and resized at the run's size, one after another as uint8 RGB in a
NumPy .npy file, with a manifest of what it holds. Later starts and resumes read it instead of decoding
the folder again; another file list, size or crop makes a new one. A folder that fits easily in memory is
read into it whole; a larger one is read a batch at a time with positioned reads, in constant memory
whatever its size.

    pictures, kept = cached_pictures(paths, (64, 64), None, None, "checkpoints/run/cache")
    pictures.take([3, 1, 4])        # uint8 [3, 64, 64, C] (a PictureFile; a folder that fits: an array)

The .npy file is written under a temporary name and renamed when whole, and the manifest is written after
it: a build cut short by a kill leaves no manifest, and the next start builds it again.
"""
import functools
import json
import os
import shutil
import sys

import numpy as np

from data import decoded, files_digest, to_grey
from run import held_alone
from utils import DCGANError, save_json

VERSION = 1
# Pictures that take less than this (and fit in the memory available) are read into memory: a gather from
# memory is the fastest stream there is. 1 GiB: 87,000 pictures of 64x64x3, 21,000 of 128x128x3.
IN_MEMORY_BELOW = 2 ** 30
PICTURES, KEPT, MANIFEST = "pictures.npy", "kept.npy", "manifest.json"


def reader(folder):
    """A data.read_images that goes through the cache in folder (data.load_training_data's read)."""
    return functools.partial(cached_pictures, folder=folder)


def cached_pictures(paths, size, crop=None, channels=None, folder="cache"):
    """(pictures [N, H, W, C], indices of the paths kept) of the readable files of paths as data.read_images gives
    them, from the cache in folder, built first when it holds other files, sizes or crops: an array where they
    fit easily in memory, else a PictureFile. channels 1 or 3; None: 1 if every file is grayscale, else 3."""
    key = {"version": VERSION, "files": files_digest(common_folder(paths), paths),
           "count": len(paths), "size": list(size), "crop": list(crop) if crop else None}
    with held_alone(folder, "", wait=True):  # another worker building it: wait, then read it
        manifest = read_manifest(folder)
        if manifest is None or manifest["key"] != key:
            manifest = build(paths, size, crop, folder, key)
    kept = np.load(os.path.join(folder, KEPT))
    channels = channels or (1 if manifest["grayscale"] else 3)
    pictures = PictureFile(os.path.join(folder, PICTURES), kept, channels)
    if pictures.nbytes < min(IN_MEMORY_BELOW, 0.25 * available_memory()):
        print(f"Read {len(kept)} pictures from the cache {folder} into memory ({pictures.nbytes / 2 ** 20:.0f} MiB)")
        return pictures.take(np.arange(len(kept))), kept
    print(f"Streaming {len(kept)} pictures from the cache {folder} ({pictures.nbytes / 2 ** 30:.1f} GiB, more than "
          "fits in memory at ease): a batch at a time")
    return pictures, kept


def common_folder(paths):
    """The folder every path is in, so the cache's key holds no more of where it is than needed: that of the
    first and last in sort order is that of all, in a thousandth of the time on 1 M paths."""
    return os.path.commonpath([min(paths), max(paths)]) if paths else ""


def available_memory():
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return 0


def read_manifest(folder):
    """The cache's manifest, or None where there is none whole (never built, or a build cut short)."""
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            manifest = json.load(f)
        return manifest if os.path.exists(os.path.join(folder, PICTURES)) else None
    except (OSError, ValueError):
        return None


def build(paths, size, crop, folder, key):
    """Decodes every file of paths into folder's cache, in order (an unreadable file's slot left black and out of
    kept.npy); its manifest."""
    if os.listdir(folder):
        print(f"The picture cache {folder} holds other pictures, or was cut short: building it again", file=sys.stderr)
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
    shape = (len(paths), *size, 3)
    free = shutil.disk_usage(folder).free
    if np.prod(shape) > free:
        raise DCGANError(f"the picture cache of {len(paths)} pictures needs {np.prod(shape) / 2 ** 30:.1f} GiB in "
                         f"{folder} and the disk has {free / 2 ** 30:.1f} GiB free: free some, or use fewer "
                         "(--train_size) or smaller (--output_height) pictures")
    print(f"Decoding {len(paths)} pictures into the cache {folder} (once: later starts read it)", flush=True)
    blank, kept, grey, written = np.zeros(size + (3,), np.uint8).tobytes(), [], [], 0
    target = os.path.join(folder, PICTURES)
    try:
        with open(target + ".tmp", "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
            for i, picture, is_grey in decoded(paths, size, crop, "pictures decoded into the cache"):
                f.write(blank * (i - written) + np.ascontiguousarray(picture).tobytes())  # the unreadable ones first
                written = i + 1
                kept.append(i)
                grey.append(is_grey)
            f.write(blank * (len(paths) - written))
    except BaseException:  # a picture refused (a crop that does not fit), a full disk, Ctrl-C: nothing half-built kept
        os.remove(target + ".tmp")
        raise
    os.replace(target + ".tmp", target)
    np.save(os.path.join(folder, KEPT), np.asarray(kept, np.int64))
    manifest = {"key": key, "kept": len(kept), "grayscale": bool(grey) and all(grey)}
    save_json(manifest, os.path.join(folder, MANIFEST))
    return manifest


class PictureFile:
    """The pictures of a cache's .npy file that kept names, read on demand with positioned reads: the file's
    pages stay in the system's cache, not in this process's memory."""

    def __init__(self, path, kept, channels):
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
            self.offset = f.tell()
        self.path, self.kept, self.channels = path, kept, channels
        self.picture_shape, self.picture_bytes = shape[1:], int(np.prod(shape[1:]))
        self.shape = (len(kept), *shape[1:3], channels)
        self.dtype = np.dtype(np.uint8)
        self.nbytes = len(kept) * self.picture_bytes
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self):
        return len(self.kept)

    def take(self, indices):
        """uint8 [len(indices), H, W, C] of the pictures at indices (of the kept ones)."""
        indices = np.asarray(indices, np.int64)
        out = np.empty((len(indices), *self.picture_shape), np.uint8)
        for j in np.argsort(self.kept[indices]):  # in the file's order: fewer seeks on a disk
            raw = os.pread(self.fd, self.picture_bytes, self.offset + int(self.kept[indices[j]]) * self.picture_bytes)
            out[j] = np.frombuffer(raw, np.uint8).reshape(self.picture_shape)
        return to_grey(out) if self.channels == 1 else out
