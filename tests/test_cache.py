"""The picture cache (cache.py): a folder decoded once into one .npy file beside the run, read back whole or a
batch at a time, the same pictures and batches either way, rebuilt when its files or size change or a build
was cut short, never read half-written."""
import os

import numpy as np
import pytest
from PIL import Image

import cache
import data
from conftest import write_image_folder
from utils import DCGANError


@pytest.fixture
def folder(tmp_path):
    write_image_folder(str(tmp_path / "pictures"), n=12)  # 12 pictures, a broken file and a truncated JPEG
    return data.list_image_folder(str(tmp_path / "pictures"), "*")[0]


def test_a_folder_is_decoded_once_and_read_back_as_read_images_reads_it(folder, tmp_path, capsys):
    expected, expected_kept = data.read_images(folder, (16, 16))
    capsys.readouterr()
    pictures, kept = cache.cached_pictures(folder, (16, 16), folder=str(tmp_path / "cache"))
    out = capsys.readouterr()
    assert "Decoding 14 pictures into the cache" in out.out and "skipped 2 unreadable image file(s) of 14" in out.err
    np.testing.assert_array_equal(pictures, expected)
    np.testing.assert_array_equal(kept, expected_kept)
    again, _ = cache.cached_pictures(folder, (16, 16), folder=str(tmp_path / "cache"))
    out = capsys.readouterr()
    assert "Decoding" not in out.out and "Read 12 pictures from the cache" in out.out and not out.err
    np.testing.assert_array_equal(again, expected)
    assert sorted(os.listdir(tmp_path / "cache")) == ["kept.npy", "manifest.json", "pictures.npy"]


def test_a_large_folder_streams_the_same_pictures_and_batches(folder, tmp_path, monkeypatch, capsys):
    in_memory, kept = cache.cached_pictures(folder, (16, 16), folder=str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "IN_MEMORY_BELOW", 0)  # as if it did not fit
    streamed, _ = cache.cached_pictures(folder, (16, 16), folder=str(tmp_path / "cache"))
    assert isinstance(streamed, cache.PictureFile) and "Streaming 12 pictures" in capsys.readouterr().out
    assert streamed.shape == in_memory.shape and len(streamed) == 12
    np.testing.assert_array_equal(streamed.take([5, 0, 11, 5]), in_memory[[5, 0, 11, 5]])
    labels = np.arange(12) % 3
    for start in (0, 5):  # a resumed stream too
        one = data.shuffled_batches(in_memory, labels, 4, 3, seed=1, start_step=start)
        two = data.shuffled_batches(streamed, labels, 4, 3, seed=1, start_step=start)
        for (x1, y1), (x2, y2), _ in zip(one, two, range(7)):
            np.testing.assert_array_equal(x1.numpy(), x2.numpy())
            np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    grey, _ = cache.cached_pictures(folder, (16, 16), channels=1, folder=str(tmp_path / "cache"))
    np.testing.assert_array_equal(grey.take([3]), data.to_grey(in_memory[[3]]))


def test_other_files_another_size_or_a_build_cut_short_build_it_again(folder, tmp_path, capsys):
    place = str(tmp_path / "cache")
    cache.cached_pictures(folder, (16, 16), folder=place)
    for paths, size in ((folder, (8, 8)), (folder[1:], (8, 8))):
        capsys.readouterr()
        pictures, _ = cache.cached_pictures(paths, size, folder=place)
        assert "holds other pictures, or was cut short: building it again" in capsys.readouterr().err
        assert pictures.shape[1:3] == size
    Image.new("RGB", (20, 20), (255, 0, 0)).save(folder[1], format="PNG")  # changed in place: same name
    pictures, _ = cache.cached_pictures(folder[1:], (8, 8), folder=place)
    assert "building it again" in capsys.readouterr().err and (pictures[0] == [255, 0, 0]).all()
    os.remove(os.path.join(place, cache.MANIFEST))  # killed before its manifest was written
    with open(os.path.join(place, cache.PICTURES + ".tmp"), "wb") as f:
        f.write(b"half")
    pictures, _ = cache.cached_pictures(folder[1:], (8, 8), folder=place)
    assert "building it again" in capsys.readouterr().err and len(pictures) == 11
    assert sorted(os.listdir(place)) == ["kept.npy", "manifest.json", "pictures.npy"]


def test_a_disk_too_small_for_the_cache_is_one_line_and_leaves_nothing(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: type("usage", (), {"free": 1000})())
    with pytest.raises(DCGANError, match=r"^the picture cache of 14 pictures needs 0\.0 GiB in .*cache and the "
                                         r"disk has 0\.0 GiB free: free some, or use fewer"):
        cache.cached_pictures(folder, (16, 16), folder=str(tmp_path / "cache"))
    assert not os.path.exists(tmp_path / "cache")
