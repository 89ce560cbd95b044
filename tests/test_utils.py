import gzip
import logging
import os

import numpy as np
import pytest
from PIL import Image

import utils
from conftest import write_idx, write_mnist_folder
from utils import DataError


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_reads_raw_and_gzip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", array, compress)
    np.testing.assert_array_equal(utils.read_idx(str(tmp_path / "x")), array)


def test_read_idx_rejects_a_wrong_magic_number(tmp_path):
    (tmp_path / "x").write_bytes(b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x02" + b"\x00" * 8)
    with pytest.raises(DataError, match="wrong magic number 00000d01"):
        utils.read_idx(str(tmp_path / "x"))


@pytest.mark.parametrize("cut", [3, 10, 100])
def test_read_idx_rejects_truncated_files(tmp_path, cut):
    write_idx(tmp_path / "x", np.zeros((5, 28, 28), np.uint8))
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(data[:-cut] if cut > 50 else data[:cut])
    with pytest.raises(DataError, match="truncated|magic"):
        utils.read_idx(str(tmp_path / "x"))


def test_read_idx_rejects_a_broken_gzip(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((5, 28, 28), np.uint8), compress=True)
    data = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read"):
        utils.read_idx(str(tmp_path / "x.gz"))


def test_load_idx_splits_concatenates_train_and_test(tmp_path):
    write_mnist_folder(str(tmp_path / "mnist"), n_train=30, n_test=12, compress=False)
    splits = utils.load_idx_splits(str(tmp_path / "mnist"))
    assert splits["train"][0].shape == (30, 28, 28) and splits["test"][1].shape == (12,)
    images, labels = utils.load_labelled_images("mnist", str(tmp_path))
    assert images.shape == (42, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (42,) and labels.max() <= 9
    np.testing.assert_array_equal(images[30:], splits["test"][0])


def test_load_idx_splits_rejects_counts_that_disagree(tmp_path):
    folder = write_mnist_folder(str(tmp_path), n_train=30, n_test=12)
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), np.zeros(29), compress=True)
    with pytest.raises(DataError, match="30 train images but 29 labels"):
        utils.load_idx_splits(folder)


def test_load_idx_splits_names_missing_files(tmp_path):
    folder = write_mnist_folder(str(tmp_path))
    os.remove(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        utils.load_idx_splits(folder)


def test_load_idx_splits_rejects_labels_out_of_range(tmp_path):
    folder = write_mnist_folder(str(tmp_path), n_train=30, n_test=12)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), np.full(12, 10), compress=True)
    with pytest.raises(DataError, match="label 10 is outside 0..9"):
        utils.load_idx_splits(folder)


def test_load_idx_splits_rejects_images_of_another_size(tmp_path):
    folder = write_mnist_folder(str(tmp_path), n_train=30, n_test=12)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), np.zeros((12, 32, 32)), compress=True)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz holds 32x32 images, where MNIST-like datasets "
                                        r"have 28x28"):
        utils.load_idx_splits(folder)


def test_no_local_files_and_no_internet_fails_fast_with_the_folder(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(utils, "can_reach", lambda host: False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))  # nothing prepared there
    with pytest.raises(DataError, match=f"put the four IDX files .* in {tmp_path}/mnist"):
        utils.load_labelled_images("mnist", str(tmp_path))
    # The error is all the user reads: tfds' notes on the folders it looked in ("Variant folder ... has
    # no dataset_info.json") are not printed before it.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def batches(images, labels, n, **kwargs):
    stream = utils.shuffled_batches(images, labels, batch_size=4, num_classes=10, **kwargs)
    return [(x.numpy(), y.numpy()) for x, y in stream.take(n)]


def indexed_images(n=10):
    """Image i is filled with the value i, so a batch tells which images it holds."""
    return np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28, 1), np.arange(n) % 10


def ids(batch):
    return [int(round(v * 255)) for v in batch[0][:, 0, 0, 0]]


def test_batches_are_scaled_one_hot_and_reshuffled_each_epoch():
    images, labels = indexed_images()
    out = batches(images, labels, 6, seed=1)  # 2 full batches per epoch, remainder dropped
    x, y = out[0]
    assert x.shape == (4, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(y.argmax(1), np.array(ids(out[0])) % 10)
    epochs = [ids(out[i]) + ids(out[i + 1]) for i in (0, 2, 4)]
    assert all(len(set(e)) == 8 for e in epochs)
    assert epochs[0] != epochs[1]


def test_batches_resumed_at_a_step_continue_the_same_stream():
    images, labels = indexed_images()
    full = [ids(b) for b in batches(images, labels, 7, seed=5)]
    for start in (1, 2, 3, 5):
        resumed = [ids(b) for b in batches(images, labels, 7 - start, seed=5, start_step=start)]
        assert resumed == full[start:]
    assert [ids(b) for b in batches(images, labels, 7, seed=6)] != full


def test_make_grid_lays_images_out_row_by_row():
    images = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones((6, 2, 3, 1), np.float32)
    grid = utils.make_grid(images, rows=2, cols=3)
    assert grid.shape == (4, 9, 1)
    assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 1 and grid[2, 0, 0] == 3 and grid[3, 8, 0] == 5
    with pytest.raises(ValueError):
        utils.make_grid(images, rows=2, cols=2)


def test_save_image_and_gif_write_readable_files(tmp_path):
    frame = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28, 1)
    utils.save_image(frame, str(tmp_path / "a.png"))
    png = np.asarray(Image.open(tmp_path / "a.png"))
    assert png.shape == (28, 28) and png.dtype == np.uint8 and png[0, 0] == 0 and png[-1, -1] == 255
    utils.save_gif([frame, 1 - frame, frame], str(tmp_path / "a.gif"))
    gif = Image.open(tmp_path / "a.gif")
    assert gif.n_frames == 3
    assert sorted(os.listdir(tmp_path)) == ["a.gif", "a.png"]  # no temporary files left


@pytest.mark.parametrize("save, content", [
    (utils.save_image, np.random.default_rng(0).random((200, 200, 3))),
    (utils.save_gif, np.random.default_rng(0).random((3, 200, 200, 3))),
    (utils.save_json, {"noise": np.random.default_rng(0).random(10_000).tolist()})])
def test_a_write_that_fails_midway_leaves_no_file_and_names_it(tmp_path, save, content):
    import resource
    import signal
    path = str(tmp_path / "out")
    limits, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))  # as a full disk: the write stops at 4 kB
    try:
        with pytest.raises(OSError) as failed:
            save(content, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert failed.value.filename == path and failed.value.errno is not None
    assert os.listdir(tmp_path) == []  # neither a half-written file nor its temporary


def test_a_folder_held_by_one_process_is_refused_to_another_until_that_one_dies(tmp_path):
    import subprocess
    import sys
    folder = str(tmp_path / "run")
    with utils.held_alone(folder, "taken"):
        with pytest.raises(utils.DCGANError, match="^taken$"):  # a second hold, even in this process
            with utils.held_alone(folder, "taken"):
                pass
    assert not os.path.exists(folder)  # made for the hold and left empty: removed
    code = (f"import sys, utils\nwith utils.held_alone({folder!r}, ''):\n"
            f"    open({os.path.join(folder, 'x')!r}, 'w').close()\n"
            "    print('held', flush=True)\n    sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(utils.__file__),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(utils.DCGANError):
            with utils.held_alone(folder, "taken"):
                pass
    finally:
        holder.kill()  # kill -9: nothing of it runs, the kernel drops the lock
        holder.wait()
    with utils.held_alone(folder, "taken"):
        pass
    assert os.listdir(folder) == ["x"]  # a folder with something in it stays


def test_a_file_system_without_locks_runs_unlocked(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with utils.held_alone(str(tmp_path), "taken"):
        ran = True
    assert ran


def test_progress_prints_rate_and_eta(capsys):
    import io
    stream = io.StringIO()
    progress = utils.Progress(total=10, start=2, every=1e9, stream=stream)
    progress.update(3, "loss 1.0")
    progress.update(4, "loss 0.9")  # within `every`: not printed
    progress.update(5, "loss 0.8", force=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("3/10 loss 1.0 |") and "ETA" in lines[1]
    assert lines[0].endswith("ETA ?")  # no rate is known after the first (warm-up) step


def test_a_warning_during_progress_on_a_terminal_clears_the_status_line_first(capsys):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    stream = Terminal()
    progress = utils.Progress(total=10, stream=stream)
    progress.update(3, "loss 1.0")
    progress.interject("Warning: something")
    assert stream.getvalue().endswith("ETA ?\033[K\r\033[K")  # rewritten in place, then wiped
    assert capsys.readouterr().err == "Warning: something\n"


def test_progress_without_warmup_times_from_the_start():
    import io
    stream = io.StringIO()
    clock = iter([0.0, 2.0])
    progress = utils.Progress(total=10, stream=stream, warmup=False)
    progress.clock = lambda: next(clock)
    progress.t0 = progress.clock()
    progress.update(4, "images read")
    assert stream.getvalue().startswith("4/10 images read | 2.00 it/s ETA 0m03s")
