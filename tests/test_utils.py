import os

import numpy as np
import pytest
from PIL import Image

import utils


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
