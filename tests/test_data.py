import logging
import os

import numpy as np
import pytest

import data
from conftest import write_idx, write_mnist_folder
from data import DataError


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_reads_raw_and_gzip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", array, compress)
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / "x")), array)


def test_read_idx_rejects_a_wrong_magic_number(tmp_path):
    (tmp_path / "x").write_bytes(b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x02" + b"\x00" * 8)
    with pytest.raises(DataError, match="wrong magic number 00000d01"):
        data.read_idx(str(tmp_path / "x"))


@pytest.mark.parametrize("cut", [3, 10, 100])
def test_read_idx_rejects_truncated_files(tmp_path, cut):
    write_idx(tmp_path / "x", np.zeros((5, 28, 28), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(raw[:-cut] if cut > 50 else raw[:cut])
    with pytest.raises(DataError, match="truncated|magic"):
        data.read_idx(str(tmp_path / "x"))


def test_read_idx_rejects_a_broken_gzip(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((5, 28, 28), np.uint8), compress=True)
    raw = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cannot read"):
        data.read_idx(str(tmp_path / "x.gz"))


def test_load_idx_splits_concatenates_train_and_test(tmp_path):
    write_mnist_folder(str(tmp_path / "mnist"), n_train=30, n_test=12, compress=False)
    splits = data.load_idx_splits(str(tmp_path / "mnist"))
    assert splits["train"][0].shape == (30, 28, 28) and splits["test"][1].shape == (12,)
    images, labels = data.load_labelled_images("mnist", str(tmp_path))
    assert images.shape == (42, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (42,) and labels.max() <= 9
    np.testing.assert_array_equal(images[30:], splits["test"][0])


def test_load_idx_splits_rejects_counts_that_disagree(tmp_path):
    folder = write_mnist_folder(str(tmp_path), n_train=30, n_test=12)
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), np.zeros(29), compress=True)
    with pytest.raises(DataError, match="30 train images but 29 labels"):
        data.load_idx_splits(folder)


def test_load_idx_splits_names_missing_files(tmp_path):
    folder = write_mnist_folder(str(tmp_path))
    os.remove(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        data.load_idx_splits(folder)


def test_load_idx_splits_rejects_labels_out_of_range(tmp_path):
    folder = write_mnist_folder(str(tmp_path), n_train=30, n_test=12)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), np.full(12, 10), compress=True)
    with pytest.raises(DataError, match="label 10 is outside 0..9"):
        data.load_idx_splits(folder)


def test_load_idx_splits_rejects_images_of_another_size(tmp_path):
    folder = write_mnist_folder(str(tmp_path), n_train=30, n_test=12)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), np.zeros((12, 32, 32)), compress=True)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz holds 32x32 images, where MNIST-like datasets "
                                        r"have 28x28"):
        data.load_idx_splits(folder)


def test_no_local_files_and_no_internet_fails_fast_with_the_folder(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "can_reach", lambda host: False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))  # nothing prepared there
    with pytest.raises(DataError, match=f"put the four IDX files .* in {tmp_path}/mnist"):
        data.load_labelled_images("mnist", str(tmp_path))
    # The error is all the user reads: tfds' notes on the folders it looked in ("Variant folder ... has
    # no dataset_info.json") are not printed before it.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def batches(images, labels, n, **kwargs):
    stream = data.shuffled_batches(images, labels, batch_size=4, num_classes=10, **kwargs)
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


def test_balanced_batches_draw_every_class_as_often_and_resume_the_same():
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)  # each picture's value is its index
    stream = data.shuffled_batches(images, labels, 10, 3, seed=4, balanced=True)
    drawn = [batch for _, batch in zip(range(60), stream)]
    classes = np.concatenate([y.numpy().argmax(1) for _, y in drawn])
    assert np.all(np.abs(np.bincount(classes) / len(classes) - 1 / 3) < 0.05)  # as drawn: 0.9, 0.08, 0.02
    for x, y in drawn[:5]:  # each picture comes with its own label
        index = np.rint(x.numpy().ravel() * 255).astype(int)
        np.testing.assert_array_equal(labels[index], y.numpy().argmax(1))
    resumed = data.shuffled_batches(images, labels, 10, 3, seed=4, start_step=23, balanced=True)
    np.testing.assert_array_equal(next(iter(resumed))[0].numpy(), drawn[23][0].numpy())
