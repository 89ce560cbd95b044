"""The web demo: its functions, its HTTP API through gradio_client, a real browser, and main.py --demo."""
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import keras
import numpy as np
import pytest
from PIL import Image

import demo
import latent
import loadtest
import utils
from conftest import ROOT, TINY, TINY_RUN_ARGS
from model import DCGAN
from serving import ExportedGenerator, export_savedmodel, generate

# Its module-scoped fixtures are costly: the whole file runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("demo")

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny export; DCGAN_TEST_DEMO_EXPORT serves a trained one instead (for docs/demo.png)."""
    path = os.environ.get("DCGAN_TEST_DEMO_EXPORT")
    if not path:
        keras.utils.set_random_seed(4)
        path = export_savedmodel(DCGAN(**TINY), str(tmp_path_factory.mktemp("demo") / "5"), step=5)
    return ExportedGenerator(path), path


@pytest.fixture(scope="module")
def completer():
    """The completion tab's function on a tiny DCGAN (main.py gives it the run's)."""
    keras.utils.set_random_seed(4)
    return functools.partial(latent.complete_picture, DCGAN(**TINY), utils.digit_names(10))


@pytest.fixture(scope="module")
def server(exported, completer):
    model, path = exported
    app = demo.serve(model, path, port=free_port(), max_images=40, block=False, completer=completer)
    yield app.local_url
    app.close()


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    """(export, address) of the demo of a tiny unconditional 16x16 colour model, with its completion tab."""
    keras.utils.set_random_seed(5)
    dcgan = DCGAN(y_dim=0, output_height=16, output_width=16, c_dim=3, layers=2, **TINY)
    path = export_savedmodel(dcgan, str(tmp_path_factory.mktemp("colour") / "3"), step=3)
    model = ExportedGenerator(path)
    completer = functools.partial(latent.complete_picture, dcgan, [])
    app = demo.serve(model, path, port=free_port(), max_images=40, block=False, completer=completer)
    yield model, app.local_url
    app.close()


def test_a_port_in_use_gets_one_line_naming_the_flag(exported):
    model, path = exported
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(utils.DCGANError, match=rf"^cannot serve the demo on 127\.0\.0\.1:{port} \(.+\): pass "
                                                   r"another --demo_port or --demo_host$"):
            demo.serve(model, path, port=port, block=False)


def test_grid_holds_generates_images_a_column_per_digit(exported):
    model, _ = exported
    grid = demo.draw_grid(model, ["3", "1"], 2, 7, max_images=100)
    np.testing.assert_array_equal(grid, utils.label_columns(generate(model, [3, 1], n=2, seed=7)))
    assert grid.shape == (2 * 28, 2 * 28, 1)


@pytest.mark.parametrize("digits, n, seed, message", [
    ([], 2, 0, "choose at least one class"), (["10"], 1, 0, r"classes must be in 0\.\.9"),
    (["1"], 0, 0, "at least 1"), (["1", "2"], 60, 0, "is 120 images; this demo draws at most 100"),
    (["1"], 1, -3, "seed must be a whole number"), (["1"], 1, 2.5, "seed must be a whole number"),
])
def test_bad_requests_get_a_plain_message(exported, digits, n, seed, message):
    with pytest.raises(ValueError, match=message):
        demo.draw_grid(exported[0], digits, n, seed, max_images=100)


@pytest.mark.parametrize("classes, max_images, expected", [(10, 400, (10, 4)), (150, 400, (100, 4)),
                                                         (150, 2, (1, 2)), (0, 400, (0, 16)), (0, 5, (0, 5))])
def test_the_first_page_asks_for_no_more_than_one_request_may(classes, max_images, expected):
    assert demo.first_page(classes, max_images) == expected


def test_a_grid_of_many_classes_gets_a_file_name_that_fits(tmp_path):
    """File names stop at 255 bytes: --generate's of 60 classes would have joined them all."""
    import serving
    names = [f"category-number-{k:03d}" for k in range(60)]
    model = DCGAN(**{**TINY, "y_dim": 60})
    classes, n = demo.first_page(60, 400)
    assert demo.draw_grid(model, [str(k) for k in range(classes)], n, 0, 400).shape == (n * 28, classes * 28, 1)
    serving.write_generated(model, list(range(60)), names, str(tmp_path), n=1, seed=2, save_individual=True)
    stem = f"generate_{utils.name_of(names)}_seed2"
    assert utils.name_of(names).startswith("60-classes-") and len(stem) < 60
    assert sorted(os.listdir(tmp_path)) == [stem, stem + ".png"] and len(os.listdir(tmp_path / stem)) == 60
    assert utils.name_of(["3", "1", "4"]) == "3-1-4"  # a few classes keep their names in the file's


def test_a_model_without_classes_draws_pictures_from_consecutive_seeds_row_by_row(colour):
    model, _ = colour
    grid = demo.draw_grid(model, [], 20, 3, max_images=40)
    assert grid.shape == (3 * 16, demo.COLUMNS * 16, 3)
    tiles = grid.reshape(3, 16, demo.COLUMNS, 16, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 16, 16, 3)
    np.testing.assert_array_equal(tiles[:20], generate(model, None, n=20, seed=3)[0])
    assert not tiles[20:].any()  # the last row filled out with black
    with pytest.raises(ValueError, match="41 pictures: this demo draws at most 40 per request"):
        demo.draw_grid(model, [], 41, 3, max_images=40)
    frames = demo.walk(model, None, 7, 9, 4)
    np.testing.assert_array_equal(frames[-1], generate(model, None, n=1, seed=9)[0, 0])
    assert "no classes" in demo.describe(model, "x")


def test_walk_goes_from_one_seeds_image_to_the_others(exported):
    model, _ = exported
    frames = demo.walk(model, "4", 7, 9, 5)
    assert frames.shape == (5, 28, 28, 1) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], generate(model, [4], n=1, seed=7)[0, 0])
    np.testing.assert_array_equal(frames[-1], generate(model, [4], n=1, seed=9)[0, 0])
    with pytest.raises(ValueError, match="2 to 64 steps"):
        demo.walk(model, "4", 7, 9, 1)


def test_description_names_the_export_and_its_own_eval_figures(exported, tmp_path):
    model, path = exported
    figures = {"step": model.step, "accuracy": 0.9876, "fid": 3.21, "intra_fid": 7.5, "min_diversity": 0.91}
    utils.save_json(figures, str(tmp_path / "eval.json"))
    text = demo.describe(model, path, str(tmp_path / "eval.json"))
    assert f"training step {model.step}, z_dim {model.z_dim}" in text and "class accuracy 98.76%" in text
    utils.save_json({"step": model.step, "fid": 12.5, "kid": 0.0123, "recall": 0.61}, str(tmp_path / "eval.json"))
    text = demo.describe(model, path, str(tmp_path / "eval.json"))  # a folder's figures (folder_eval)
    assert "FID 12.50, KID 0.0123, recall 0.610." in text and "accuracy" not in text
    utils.save_json(figures, str(tmp_path / "eval.json"))
    utils.save_json({**figures, "step": model.step + 1}, str(tmp_path / "eval.json"))
    assert "accuracy" not in demo.describe(model, path, str(tmp_path / "eval.json"))  # another step's


def test_server_answers_through_its_http_api(server, exported, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    client = Client(server, verbose=False, download_files=str(tmp_path))
    shown, download = client.predict(["3", "1"], 2, 7, api_name="/generate")
    expected = demo.draw_grid(exported[0], ["3", "1"], 2, 7, max_images=100)[..., 0]
    np.testing.assert_array_equal(np.asarray(Image.open(shown)), expected)
    np.testing.assert_array_equal(np.asarray(Image.open(download)), expected)  # the PNG, lossless
    with pytest.raises(AppError, match="this demo draws at most 40 per request"):
        client.predict([str(k) for k in range(10)], 5, 7, api_name="/generate")
    strip, gif = client.predict("4", 7, 9, 5, api_name="/walk")
    assert np.asarray(Image.open(strip)).shape == (28, 5 * 28)
    animation = Image.open(gif)
    assert animation.size == (28, 28) and animation.n_frames > 1  # PIL merges identical neighbours
    picture = tmp_path / "digit.png"
    Image.fromarray(np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((70, 70), np.uint8))).save(picture)
    value = {"background": handle_file(str(picture)), "layers": [], "composite": handle_file(str(picture))}
    completion, line = client.predict(value, "left", api_name="/complete")
    shown = np.asarray(Image.open(completion))
    assert shown.shape == (28, 4 * 28) and line.startswith("Class ")
    np.testing.assert_array_equal(shown[:, 3 * 28 + 14:], shown[:, 14:28])  # the known half, kept as it was


def test_a_colour_model_without_classes_answers_through_the_http_api(colour, tmp_path):
    from gradio_client import Client, handle_file
    model, address = colour
    client = Client(address, verbose=False, download_files=str(tmp_path))
    shown, _ = client.predict([], 16, 5, api_name="/generate")
    np.testing.assert_array_equal(np.asarray(Image.open(shown)), demo.draw_grid(model, [], 16, 5, max_images=40))
    strip, _ = client.predict(None, 7, 9, 5, api_name="/walk")
    assert np.asarray(Image.open(strip)).shape == (16, 5 * 16, 3)
    picture = tmp_path / "colours.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(picture)
    value = {"background": handle_file(str(picture)), "layers": [], "composite": handle_file(str(picture))}
    completion, line = client.predict(value, "right", api_name="/complete")
    assert np.asarray(Image.open(completion)).shape == (16, 4 * 16, 3) and "Class" not in line


def chromium(tmp_path, monkeypatch):
    """A headless Chromium driven by Selenium, offline."""
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must not try to download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--window-size=1280,1100",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


needs_chromium = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and "
                                    "chromium-driver (apt-get install -y chromium chromium-driver); .ci/run installs them")


@pytest.mark.full
@needs_chromium
def test_a_real_browser_picks_digits_and_sees_the_grid(server, tmp_path, monkeypatch):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver = chromium(tmp_path, monkeypatch)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 120)
        natural = "const i = document.querySelector('#grid img'); return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null"
        # The page opens on the default grid, every digit four times, before anything is pressed.
        assert wait.until(lambda d: d.execute_script(natural)) == [10 * 28, 4 * 28]
        seven = wait.until(lambda d: d.find_element(By.XPATH, "//*[@id='digits']//label[normalize-space()='7']"))
        seven.click()  # every digit starts ticked: seven off leaves nine columns
        driver.find_element(By.ID, "generate").click()
        assert wait.until(lambda d: d.execute_script(natural) == [9 * 28, 4 * 28] or None)
        driver.save_screenshot(os.environ.get("DCGAN_TEST_SCREENSHOT") or str(tmp_path / "demo.png"))
        n = driver.find_element(By.CSS_SELECTOR, "#n input[type='number']")
        n.clear()
        n.send_keys("16\t")  # 9 x 16 = 144 images, over the cap of 40
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_elements(By.XPATH, "//*[contains(text(), 'at most 40 per request')]"))
        driver.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Complete a picture']").click()
        picture = tmp_path / "digit.png"
        Image.fromarray(np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((70, 70), np.uint8))).save(picture)
        # The tab renders, and again as the upload lands: a control found a moment before may be gone.
        settled = WebDriverWait(driver, 120, ignored_exceptions=(StaleElementReferenceException,))
        # The image editor's upload input, the page's only one.
        settled.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(str(picture)) or True)
        settled.until(lambda d: d.find_element(By.XPATH, "//*[@id='hole']//label[normalize-space()='centre']").click()
                      or True)
        completed = "const i = document.querySelector('#completion img'); return i && i.complete ? i.naturalWidth : null"

        def completion_shown(d):
            """The completion's width once shown; until then the picture is given and Complete pressed again
            (a press before the upload has landed gets 'upload a picture or draw one first')."""
            width = d.execute_script(completed)
            if not width:
                d.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(str(picture))
                d.find_element(By.ID, "complete").click()
            return width
        assert WebDriverWait(driver, 120, poll_frequency=3, ignored_exceptions=(StaleElementReferenceException,)
                             ).until(completion_shown) == 4 * 28
        assert wait.until(lambda d: d.find_elements(By.XPATH, "//*[@id='found']//p[starts-with(normalize-space(), 'Class ')]"))
        assert "Traceback" not in driver.page_source
    finally:
        driver.quit()


@pytest.mark.full
@needs_chromium
def test_a_real_browser_draws_pictures_of_a_colour_model_without_classes(colour, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver = chromium(tmp_path, monkeypatch)
    try:
        driver.get(colour[1])
        wait = WebDriverWait(driver, 120)
        natural = "const i = document.querySelector('#grid img'); return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null"
        assert wait.until(lambda d: d.execute_script(natural)) == [8 * 16, 2 * 16]  # 16 pictures, rows of 8
        assert wait.until(lambda d: d.find_elements(By.XPATH, "//h1[normalize-space()='Draw pictures with a DCGAN']"))
        assert not driver.find_elements(By.CSS_SELECTOR, "#digits input")  # no classes to pick
        driver.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Walk between two seeds']").click()
        wait.until(lambda d: d.find_element(By.ID, "walk_button")).click()
        walked = "const i = document.querySelector('#walk img'); return i && i.complete ? i.naturalWidth : null"
        assert wait.until(lambda d: d.execute_script(walked)) == 10 * 16
        assert "Traceback" not in driver.page_source
    finally:
        driver.quit()


def ignore_sigint():
    """As in a job started in the background with '&': SIGINT ignored from the start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.full
def test_main_demo_exports_the_checkpoint_serves_it_and_stops_on_ctrl_c(tmp_path, data_dir):
    args = [*TINY_RUN_ARGS, f"--data_dir={data_dir}"]
    train = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args, "--train", "--epoch=1"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stdout + train.stderr
    damaged = tmp_path / "export" / "mnist_32_28_28" / "10"  # an export of this step, damaged since: made again
    damaged.mkdir(parents=True)
    (damaged / "saved_model.pb").write_bytes(b"not a SavedModel")
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args, "--demo", f"--demo_port={port}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=ignore_sigint)
    try:
        lines = []
        for line in proc.stdout:  # ends if the process dies
            lines.append(line)
            if "running on" in line:
                break
        assert f"Demo of export/mnist_32_28_28/10 running on http://127.0.0.1:{port}" in "".join(lines), lines
        assert "Warning: export/mnist_32_28_28/10 is not a SavedModel written by --export" in "".join(lines), lines
        assert (tmp_path / "export" / "mnist_32_28_28" / "10" / "saved_model.pb").exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as page:
            assert page.status == 200 and b"DCGAN digits" in page.read()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0 and "SIGINT received: stopping the demo" in out, out
        assert "Traceback" not in out, out
    finally:
        proc.kill()


@pytest.mark.full
def test_many_distinct_requests_leave_a_bounded_number_of_files(exported, tmp_path, monkeypatch):
    """What a demo up for weeks hands out is deleted after a while: here after 3 s (time for a client on a
    busy machine to fetch what it was sent), over 80 distinct requests (each leaves three files: its
    download, Gradio's copy of it and of the shown grid), of which the demo keeps the newest 20 downloads."""
    from gradio_client import Client
    model, path = exported
    kept = 20
    monkeypatch.setattr(demo, "KEPT", kept)
    app = demo.serve(model, path, port=free_port(), max_images=40, block=False, cache_seconds=3)
    try:
        client = Client(app.local_url, verbose=False, download_files=str(tmp_path / "downloads"))
        for seed in range(80):
            client.predict(["3"], 1, seed, api_name="/generate")
        gradio_files = sum(map(len, app.temp_file_sets))
        downloads = len(os.listdir(app.scratch_folder))
    finally:
        app.close()
    assert gradio_files < 80, gradio_files  # 160 without deletion
    assert downloads == kept, downloads  # 80 without pruning


def test_a_full_queue_answers_at_once_that_it_is_busy(exported, monkeypatch):
    """One request computing, one waiting (max_queue=1): a third is turned away with Gradio's message
    at once, and both the others are answered once the first can finish."""
    from gradio_client import Client
    model, path = exported
    computing, finish = threading.Event(), threading.Event()

    def slow_generate(*args, **kwargs):
        computing.set()
        finish.wait(timeout=60)
        return generate(*args, **kwargs)

    monkeypatch.setattr(demo, "generate", slow_generate)
    app = demo.serve(model, path, port=free_port(), max_images=40, block=False, max_queue=1)
    try:
        client = Client(app.local_url, verbose=False)
        first = client.submit(["1"], 1, 0, api_name="/generate")
        assert computing.wait(timeout=60)
        second = client.submit(["2"], 1, 0, api_name="/generate")
        deadline = time.monotonic() + 60
        while second.status().code.name != "IN_QUEUE":  # its place confirmed before the third is sent
            assert time.monotonic() < deadline, second.status()
        with pytest.raises(Exception, match="Queue is full"):
            client.predict(["3"], 1, 0, api_name="/generate")
        finish.set()
        assert first.result(timeout=60)[0] and second.result(timeout=60)[0]
    finally:
        finish.set()
        app.close()


@pytest.mark.full
def test_the_load_script_drives_main_demo_and_reports_each_level(exported, capsys):
    """bench.py --demo_clients: main.py --demo in its own process, clients at two levels, one table row each."""
    loadtest.load_table(exported[1], [1, 2], seconds=2, images_per_digit=1, port=free_port())
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row[0].strip() for row in rows] == ["clients", "---", "1", "2"]
    for clients, requests, per_second, p50, p95, errors, files, memory in rows[2:]:
        assert int(requests) >= 1 and float(per_second) > 0 and 0 < float(p50) <= float(p95), rows
        assert errors.strip() == "0" and int(files) > 0 and float(memory) > 100, rows
