"""What several modules share: the error a user can fix, image grids and files written whole, the
progress line, stop signals, the memory check and the CPU's features."""
import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image


# The child that stderr passes through: it drops TF's C++ notes below the level it is given (I, W, E, F
# are 0 to 3), with absl's header before them and the one line that continues a note (the CPU-features one).
NOTES_FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
level, dropped = int(sys.argv[1]), False
note = re.compile(rb"[IWEF]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] ")
for line in sys.stdin.buffer:
    if note.match(line):
        dropped = "IWEF".index(chr(line[0])) < level
    elif line.startswith(b"WARNING: All log messages before absl::InitializeLog() is called"):
        dropped = level > 0
    elif not (dropped and line.startswith(b"To enable the following instructions:")):
        dropped = False
    if not dropped:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


def drop_tensorflow_notes(level):
    """From here on, this process's stderr (fd 2, which its children inherit) passes through a child
    process that drops TensorFlow's C++ notes below level (TF_CPP_MIN_LOG_LEVEL's value). TF honours that
    variable only once its logger is set up: the notes it writes while loading (oneDNN on, no CUDA
    drivers, and from device set-up an error-level 'failed call to cuInit' on every machine without a
    GPU) come before, each twice, as TF's core library and its profiler plugin each carry the logger.
    The child ignores the terminal's signals and ends when the last writer closes, so nothing written
    before a crash or a kill is lost. Level 0 (or not a number): nothing is dropped."""
    level = int(level) if str(level).isdigit() else 0
    if level <= 0:
        return
    read, write = os.pipe()
    subprocess.Popen([sys.executable, "-c", NOTES_FILTER, str(level)], stdin=read, stdout=sys.stderr.fileno(),
                     start_new_session=True)
    sys.stderr.flush()
    os.dup2(write, sys.stderr.fileno())
    os.close(read)
    os.close(write)


class DCGANError(Exception):
    """A problem the user can fix; main.py prints it as one line instead of a traceback."""


def exit_in_one_line(work, disk, memory):
    """Runs work(); a stop asked for, a problem the user can fix, a full disk or a shortage of memory ends the
    process with one line (disk and memory: the advice for those) and its exit code, anything else as Python
    would. Nothing is left half written: files are published only when complete."""
    from absl import logging
    try:
        work()
    except Stopped as e:
        print(f"Stopped: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        # Outside the training loop (loading, sampling, evaluating, exporting, the end-of-training figures).
        print("Stopped: interrupted. Nothing is left half written (files are published only when complete); "
              "checkpoints already written are kept.", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        kept = "checkpoints already written are kept"
        if disk_full(e):
            message = f"{first_line(e)}. The disk is full: free some space, or {disk}; {kept}"
        elif isinstance(e, (DCGANError, OSError)):
            message = e
        elif (shortage := memory_shortage(e)) is not None:
            message = f"out of memory ({shortage}): {memory}; {kept}"
        else:
            raise
        print(f"Error: {message}", file=sys.stderr)
        logging.set_verbosity(logging.ERROR)  # the last line: not followed by TF's notes on unrestored values at exit
        sys.exit(getattr(e, "exit_code", 1))


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


def digit_names(n):
    """Class names of a dataset whose classes are its indices (MNIST's digits)."""
    return [str(k) for k in range(n)]


def name_of(parts, limit=80):
    """parts joined by '-' as part of a file name, or past limit bytes (dozens of classes asked at once) their
    number and a digest of them: file names stop at 255 bytes."""
    joined = "-".join(parts)
    if len(joined.encode()) <= limit:
        return joined
    return f"{len(parts)}-classes-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def first_line(error):
    """An error's first line, for one-line messages (its type's name when it has no text); of a
    TensorFlow graph error, its cause's; without the function and op names TensorFlow puts around it."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith("Graph execution error"):  # the cause follows the op's Python traceback
        lines = [line for line in lines[1:] if not line.startswith((" ", "\t", "Detected at node"))] or lines
    line = lines[0].strip() if lines else type(error).__name__
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name:.*)?$", "", line) or line


def disk_full(error):
    """Whether error is a write that found the disk full: Python's OSError, or TensorFlow's (which it
    raises as ResourceExhaustedError, its out-of-memory error, too)."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error)


def memory_shortage(error):
    """What could not be allocated, when error is TensorFlow's or Python's out-of-memory error; else None."""
    if isinstance(error, MemoryError):
        return str(error) or "MemoryError"
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.ResourceExhaustedError):
        return None
    found = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", str(error))
    return found.group(0) if found else first_line(error)


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


@contextlib.contextmanager
def tf_writing(what):
    """Within the block, TensorFlow's errors writing what (a read-only or full disk, a file where a folder
    should be) end as one line."""
    import tensorflow as tf
    try:
        yield
    except tf.errors.OpError as e:
        raise DCGANError(f"cannot write {what}: {first_line(e)}") from None


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


class Stopped(DCGANError):
    """Work stopped on request (SIGINT, SIGTERM) after saving; exits with 128 + the signal number."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


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
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16")


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


# The CPU flags of each 16-bit format's arithmetic, and oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA)
# that leave those instructions out.
SIXTEEN_BIT_FLAGS = {"mixed_bfloat16": ("avx512_bf16", "amx_bf16"), "mixed_float16": ("avx512_fp16", "amx_fp16")}
CAPS_BELOW_BFLOAT16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
CAPS_WITHOUT = {"mixed_bfloat16": CAPS_BELOW_BFLOAT16, "mixed_float16": CAPS_BELOW_BFLOAT16 | {"AVX512_CORE_BF16"}}


def has_bfloat16_cpu():
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX); elsewhere TF emulates it, slower
    than float32."""
    flags = cpu_flags()
    return any(flags[name] for name in SIXTEEN_BIT_FLAGS["mixed_bfloat16"])


def onednn_cap():
    """The instruction-set cap oneDNN is started with (ONEDNN_MAX_CPU_ISA or its old name), in capitals; '' for none."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()


def isa_cap_hiding(precision):
    """The ONEDNN_MAX_CPU_ISA that keeps oneDNN from this CPU's instructions for precision's 16-bit format, or
    None. TF still picks its 16-bit kernels from the CPU's flags, and they crash under such a cap."""
    flags = cpu_flags()
    cap = onednn_cap()
    has = any(flags[name] for name in SIXTEEN_BIT_FLAGS.get(precision, ()))
    return cap if has and cap in CAPS_WITHOUT[precision] else None
