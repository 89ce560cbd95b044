import gzip
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Under pytest-xdist, each worker (and the main.py processes it starts) gets its share of the cores:
# two TensorFlow processes that each spin a thread per core on the same cores run at half speed.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, share)
# No test reads what bench.py measured on this machine (a precision measured slower would run float32).
os.environ["DCGAN_SPEED_RECORD"] = os.path.join(tempfile.mkdtemp(prefix="dcgan-tests-"), "speeds.json")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
import pytest
from absl import flags

import main  # noqa: F401  (defines the flags)
import utils

flags.FLAGS.mark_as_parsed()

# TF picks its 16-bit kernels from the CPU's flags, and they crash under a ONEDNN_MAX_CPU_ISA below them
# (main.py then runs float32: test_main.py); tests that force a 16-bit format skip there.
CRASHES_HERE = {p: utils.isa_cap_hiding(p) for p in ("mixed_bfloat16", "mixed_float16") if utils.isa_cap_hiding(p)}


def skip_if_it_crashes_here(precision):
    if precision in CRASHES_HERE:
        pytest.skip(f"ONEDNN_MAX_CPU_ISA={CRASHES_HERE[precision]} hides this CPU's instructions for {precision}")


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, whichever tests its xdist worker ran before it: a
    learning assertion then holds or fails the same way on every run on a CPU."""
    import keras
    keras.utils.set_random_seed(0)


# A model small enough to train in seconds on 2 cores, with the real layer structure.
TINY = dict(z_dim=8, gf_dim=8, df_dim=8, gfc_dim=32, dfc_dim=32)
TINY_FLAGS = [f"--{k}={v}" for k, v in TINY.items()]
# main.py's flags for the tiny model on the synthetic MNIST (10 steps an epoch); --data_dir is the test's.
TINY_RUN_ARGS = ["--dataset=mnist", "--batch_size=32", "--seed=3", *TINY_FLAGS]


def write_idx(path, array, compress=False):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)


def bar_digits(n, seed=0):
    """A tiny labelled image set: class k is a bright horizontal bar at row 2 + 2k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 255
    return images, labels


def write_mnist_folder(folder, n_train=240, n_test=80, compress=True):
    os.makedirs(folder, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = bar_digits(n, seed)
        write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte{suffix}"), x, compress)
        write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte{suffix}"), y, compress)
    return folder


@pytest.fixture
def data_dir(tmp_path):
    """A data_dir whose mnist/ sub-folder holds a tiny synthetic MNIST (320 images)."""
    write_mnist_folder(str(tmp_path / "data" / "mnist"))
    return str(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """A copier of one epoch of the tiny model trained with TINY_RUN_ARGS on ./data (data, checkpoint,
    logs, samples) into a test's folder: trained once for the whole test run, whichever xdist worker asks
    first (each fresh main.py costs seconds)."""
    def train(folder):
        write_mnist_folder(str(folder / "data" / "mnist"))
        rc, out = run_main([*TINY_RUN_ARGS, "--data_dir=data", "--train", "--epoch=1"], folder)
        assert rc == 0, out
    folder = made_once(tmp_path_factory, "trained_tiny", train)
    return lambda target: shutil.copytree(folder, target, dirs_exist_ok=True)


def made_once(tmp_path_factory, name, make):
    """A folder that make(folder) fills once for the whole test run: the xdist workers share the run's base
    temporary folder, and the first to take the lock makes it while the others wait."""
    import fcntl
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


def run_main(args, cwd, timeout=600, env=None):
    """Runs main.py in a fresh process (env: variables to set besides ours); returns (exit code, stdout + stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


def error_lines(output):
    """The lines a user would read as our error message (TF's own C++ start-up notes left out)."""
    return [l for l in output.splitlines()
            if l.strip() and not l.startswith(("I0000", "WARNING: All log messages", "E0000", "W0000"))]


def shape_image(rng, size, kind):
    """A small picture: a coloured disc or square on a plain background (the class is the shape)."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3), min(h, w) * rng.uniform(0.25, 0.35)
    inside = (np.hypot(yy - cy, xx - cx) < r) if kind == "disc" else ((abs(yy - cy) < r) & (abs(xx - cx) < r))
    image = np.empty((h, w, 3), np.uint8)
    image[:] = rng.integers(0, 80, 3)
    image[inside] = rng.integers(150, 256, 3)
    return image


def write_image_folder(folder, n=40, kinds=("disc", "square"), labelled=False, seed=0, broken=True):
    """n pictures of varied sizes, saved in turn as RGB JPEG, grayscale PNG, RGBA PNG and palette PNG
    (in a sub-folder per shape when labelled); broken adds a file that is not an image and a truncated
    JPEG. Returns the number of good images."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        where = os.path.join(folder, kind) if labelled else folder
        os.makedirs(where, exist_ok=True)
        picture = Image.fromarray(shape_image(rng, (int(rng.integers(40, 72)), int(rng.integers(40, 72))), kind))
        form = i % 4
        if form == 0:
            picture.save(os.path.join(where, f"{i:03d}.jpg"), quality=95)
        elif form == 1:
            picture.convert("L").save(os.path.join(where, f"{i:03d}.png"))
        elif form == 2:
            picture.convert("RGBA").save(os.path.join(where, f"{i:03d}.png"))
        else:
            picture.convert("P", palette=Image.Palette.ADAPTIVE).save(os.path.join(where, f"{i:03d}.png"))
    if broken:
        with open(os.path.join(folder, "notes.png"), "wb") as f:
            f.write(b"not an image at all")
        with open(os.path.join(folder, "000.jpg"), "rb") as f:
            head = f.read()[:300]
        with open(os.path.join(folder, "truncated.jpg"), "wb") as f:
            f.write(head)
    return n
