"""Faults and bad input: every case ends with one clear line and a non-zero exit, nothing lost."""
import glob
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver

from conftest import ROOT, TINY, TINY_RUN_ARGS, error_lines, run_main, write_idx, write_image_folder, write_mnist_folder

RUN = "mnist_32_28_28"
DEFAULT_RUN = "mnist_64_28_28"
DEFAULT_CONFIG = {"dataset": "mnist", "batch_size": 64, "train_size": None, "output_height": 28, "output_width": 28,
                  "z_dim": 100, "z_dist": "uniform_signed", "c_dim": 1, "y_dim": 10, "gf_dim": 64, "df_dim": 64,
                  "gfc_dim": 1024, "dfc_dim": 1024, "ema_decay": 0.0, "seed": 5}


def train_args(*extra):
    return [*TINY_RUN_ARGS, "--data_dir=data", *extra]


# ------------------------------------------------------------------ the bad-input catalogue

def mnist(tmp):
    write_mnist_folder(str(tmp / "data" / "mnist"))


def truncated_idx(tmp):
    mnist(tmp)
    path = tmp / "data" / "mnist" / "train-images-idx3-ubyte.gz"
    write_idx(path.with_suffix(""), np.zeros((240, 28, 28)))  # the raw file is taken when no .gz exists
    path.unlink()
    raw = path.with_suffix("")
    raw.write_bytes(raw.read_bytes()[:-100])


def wrong_magic(tmp):
    mnist(tmp)
    path = tmp / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.unlink()
    (tmp / "data" / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04" + bytes(20))  # a zip


def counts_disagree(tmp):
    mnist(tmp)
    write_idx(tmp / "data" / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(200), compress=True)


def other_architecture(tmp):
    folder = tmp / "checkpoints" / DEFAULT_RUN
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**DEFAULT_CONFIG, "z_dim": 50}))


def config_with(settings):
    def setup(tmp):
        folder = tmp / "checkpoints" / DEFAULT_RUN
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(settings))
    return setup


def corrupt_checkpoint(tmp):
    folder = tmp / "checkpoints" / DEFAULT_RUN
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(DEFAULT_CONFIG))
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\nall_model_checkpoint_paths: "ckpt-5"\n')
    (folder / "ckpt-5.index").write_bytes(b"this is not a checkpoint index")
    (folder / "ckpt-5.data-00000-of-00001").write_bytes(bytes(64))


def file_in_place_of_folder(tmp):
    mnist(tmp)
    (tmp / "blocked").write_text("a file, not a folder")


def nothing(tmp):
    pass


def pictures(tmp):
    write_image_folder(str(tmp / "data" / "pictures"), n=12, broken=False)


def labelled_pictures(tmp):
    write_image_folder(str(tmp / "data" / "pictures"), n=12, labelled=True, broken=False)


def pictures_beside_classes(tmp):
    labelled_pictures(tmp)
    shutil.copy(next((tmp / "data" / "pictures" / "disc").glob("*.png")), tmp / "data" / "pictures" / "stray.png")


def folder_args(*extra):
    return ["--train", "--dataset=pictures", "--data_dir=data", "--batch_size=8", "--input_fname_pattern=*", *extra]


CATALOGUE = [
    # (case, setup, args, what the error line says)
    ("unknown dataset", nothing, ["--train", "--dataset=cifar"],
     "there is no folder ./data/cifar: --dataset is mnist, fashion_mnist or the name of a folder"),
    ("dataset that is a path", nothing, ["--dataset=../x"], "--dataset must be mnist, fashion_mnist or a folder"),
    ("no file matches the pattern", pictures, folder_args("--input_fname_pattern=*.bmp"),
     "no file in data/pictures or its sub-folders matches --input_fname_pattern=*.bmp; it holds 9 *.png, 3 *.jpg: "
     "e.g. --input_fname_pattern=*.png"),
    ("fewer pictures than a batch", pictures, folder_args("--batch_size=64"), "12 images are fewer than one batch of 64"),
    ("pictures beside class sub-folders", pictures_beside_classes, folder_args(),
     "data/pictures holds 1 pictures matching --input_fname_pattern=* at its top and sub-folders of them (disc, "
     "square): put every picture in a sub-folder per class"),
    ("one class of pictures matching the pattern", labelled_pictures, folder_args("--input_fname_pattern=*.jpg"),
     "in data/pictures only disc/ has pictures matching --input_fname_pattern=*.jpg, and square/ (6 *.png) others"),
    ("crop larger than a picture", pictures, folder_args("--crop", "--input_height=60"),
     "pixels, smaller than the 60x60 crop"),
    ("conditional size the networks cannot draw", labelled_pictures, folder_args("--output_height=30"),
     "--arch dcgan (conditional): this generator draws sizes that are multiples of 4, not 30x30"),
    ("eval while training a grayscale folder without classes", pictures, folder_args("--eval_freq=5", "--c_dim=1"),
     "--eval_freq on a grayscale image folder without classes needs a labelled --eval_folder of its pictures"),
    ("balanced classes of a folder without them", pictures, folder_args("--balance_classes"),
     "--balance_classes draws every class as often, and pictures has no classes: leave it out"),
    ("a conditioning for MNIST", nothing, ["--train", "--conditioning=concat"],
     "MNIST-like datasets and the curves have the MNIST networks: leave --conditioning out"),
    ("eval while training the curves", nothing, ["--eval_freq=5", "--train", "--dataset=curves"],
     "--eval_savedmodel applies to mnist and fashion_mnist runs only, --eval_freq to them and image folders"),
    ("an eval folder without classes", pictures, folder_args("--eval_freq=5", "--eval_folder=pictures"),
     "cannot evaluate: data/pictures is not a labelled folder: it needs a sub-folder of pictures per class"),
    ("keep_best without eval_freq", nothing, ["--train", "--keep_best"], "--keep_best keeps the best step --eval_freq"),
    ("best step while training", nothing, ["--train", "--step=best"], "--step best does not go with --train"),
    ("image flags for the curves", nothing, ["--dataset=curves", "--generate"],
     "--dataset curves (15-point curves, not images) takes no image sizes, --arch, --generate"),
    ("missing data folder", nothing, ["--train", "--data_dir=nowhere"], "there is no folder nowhere/mnist"),
    ("truncated IDX file", truncated_idx, train_args("--train"), "train-images-idx3-ubyte is truncated"),
    ("wrong magic number", wrong_magic, train_args("--train"), "wrong magic number 504b0304"),
    ("image and label counts disagree", counts_disagree, train_args("--train"), "240 train images but 200 labels"),
    ("fewer images than a batch", mnist, train_args("--train", "--batch_size=512"),
     "320 images are fewer than one batch of 512"),
    ("zero batch size", nothing, ["--batch_size=0"], "flag --batch_size=0: 0 is not a positive integer"),
    ("negative epoch", nothing, ["--epoch=-1"], "flag --epoch=-1: -1 is not a positive integer"),
    ("zero z_dim", nothing, ["--z_dim=0"], "flag --z_dim=0: 0 is not a positive integer"),
    ("non-numeric z_dim", nothing, ["--z_dim=abc"], "--z_dim=abc: invalid literal"),
    ("output size the data cannot give", nothing, ["--output_height=64"], "MNIST-like datasets have 28x28 images"),
    ("train_size below batch_size", nothing, ["--train_size=10"], "--train_size must be at least --batch_size"),
    ("learning rate that is not a number", nothing, ["--learning_rate=nan"],
     "flag --learning_rate=nan: --learning_rate must be a finite number"),
    ("beta1 of 1", nothing, ["--beta1=1"], "flag --beta1=1.0: --beta1 must be at least 0 and below 1"),
    ("unknown z_dist", nothing, ["--z_dist=gauss"], "value should be one of <uniform_signed|uniform_unsigned|normal>"),
    ("other architecture flags than the run's", other_architecture, ["--train", "--z_dim=100"],
     f"run '{DEFAULT_RUN}' in checkpoints/{DEFAULT_RUN} was made with --z_dim=50, not 100"),
    ("corrupt checkpoint", corrupt_checkpoint, [],
     f"checkpoints/{DEFAULT_RUN}/checkpoint lists checkpoints, but none there reads (an index missing or damaged)"),
    ("run settings that are not a JSON object", config_with(["mnist", 64]), [],
     f"cannot read checkpoints/{DEFAULT_RUN}/config.json: it holds a JSON list, not the run's settings"),
    ("run setting of the wrong type", config_with({**DEFAULT_CONFIG, "z_dim": "100"}), [],
     f"cannot read checkpoints/{DEFAULT_RUN}/config.json: its z_dim, \"100\", is not a value --z_dim takes"),
    ("run setting out of bounds", config_with({**DEFAULT_CONFIG, "arch": "resnet"}), [],
     f"cannot read checkpoints/{DEFAULT_RUN}/config.json: its arch, \"resnet\", is not a value --arch takes"),
    ("test mode without checkpoint", nothing, [], f"no checkpoint in checkpoints/{DEFAULT_RUN}: train first"),
    ("export without checkpoint", nothing, ["--export"], f"no checkpoint in checkpoints/{DEFAULT_RUN}: train first"),
    ("eval without checkpoint", nothing, ["--eval"], f"no checkpoint in checkpoints/{DEFAULT_RUN}: train first"),
    ("output name escaping the output folder", nothing, ["--out_name=../elsewhere"],
     "--out_name must be a plain folder name"),
    ("output folder that cannot be made", file_in_place_of_folder, train_args("--train", "--checkpoint_dir=blocked"),
     "Not a directory"),
    ("labels outside 0..9", nothing, ["--generate", "--labels=12"],
     "--labels must be 'all' or comma-separated integers in 0..9"),
    ("labels that are not numbers", nothing, ["--generate", "--labels=3,x"], "--labels must be 'all'"),
    ("an export to draw from, but nothing to draw", nothing, ["--train", "--from_savedmodel=export/x/1"],
     "--from_savedmodel draws from an export instead of the checkpoints: it goes with --generate or --demo, and not "
     "with --train"),
    ("an export to score, but no --eval", nothing, ["--eval_savedmodel=export/x/1"],
     "--eval_savedmodel scores an export instead of the checkpoints: it goes with --eval, and not with --train"),
    ("SavedModel folder that is not an export", nothing, ["--generate", "--from_savedmodel=nowhere"],
     "nowhere is not a SavedModel written by --export"),
    ("stray argument", nothing, ["--train", "stray"], "unexpected arguments: stray"),
    ("an original's checkpoint that is not there", nothing, ["--import_original=out/mnist/checkpoint"],
     "no checkpoint at out/mnist/checkpoint: give a folder holding one, or a prefix"),
    ("an original's checkpoint with an export", nothing, ["--generate", "--import_original=x",
                                                          "--from_savedmodel=export/x/1"],
     "--import_original makes a run from the original's checkpoint: it does not go with --from_savedmodel"),
]


def snapshot(folder):
    return {os.path.relpath(p, folder): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)}


# make test tries one case of each kind (a flag absl refuses, a missing folder, a folder's files, a run's settings,
# a checkpoint, no checkpoint); the full tier the whole catalogue.
QUICK = {"zero batch size", "unknown dataset", "no file matches the pattern", "other architecture flags than the run's",
         "corrupt checkpoint", "test mode without checkpoint", "one class of pictures matching the pattern"}


@pytest.mark.parametrize("case, setup, args, message", [
    pytest.param(*case, id=case[0], marks=() if case[0] in QUICK else pytest.mark.full) for case in CATALOGUE])
def test_bad_input_gets_one_clear_line_and_changes_nothing(tmp_path, case, setup, args, message):
    setup(tmp_path)
    before = snapshot(tmp_path)
    rc, out = run_main(args, tmp_path)
    assert rc == 1, out
    assert "Traceback" not in out
    lines = [line for line in error_lines(out) if not line.startswith(("Read ", "Decoding "))]  # what was read first
    assert message in lines[0], out
    assert len(lines) <= 2, out  # absl adds "Pass --helpshort or --helpfull to see help on flags."
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="the memory check reads Linux's /proc/meminfo")
def test_training_refuses_a_batch_larger_than_memory_before_touching_anything():
    import train
    import utils
    assert utils.check_memory(1, "one byte needs", "") is None
    huge = types.SimpleNamespace(step_bytes_per_image=lambda: 2 ** 50)  # a PiB an image
    run = types.SimpleNamespace(config={"batch_size": 64})
    # The check comes first: no data, checkpoint manager or strategy is touched, nor the run's folders.
    with pytest.raises(utils.DCGANError, match=r"^a training step at --batch_size 64 needs about \d+\.\d GiB in "
                                               r"memory and \d+\.\d GiB are available: use a smaller --batch_size$"):
        train.train(huge, None, run, None, None, epochs=1)


OUT_OF_MEMORY = ("): use a smaller --batch_size, --n_per_label or --eval_n, or narrower networks (--z_dim, --gf_dim, "
                 "--df_dim, --gfc_dim, --dfc_dim); checkpoints already written are kept")
DISK_FULL = (". The disk is full: free some space, or write elsewhere (--checkpoint_dir, --sample_dir, "
             "--tensorboard_dir, --export_dir); checkpoints already written are kept")


# A real out-of-memory error (--z_dim 100000000000000: 400 TB) takes TensorFlow's allocator 10 s of
# retries to give up; a full disk is checked for real by hand (a small tmpfs: docs/training.md, "Resuming and failures").
@pytest.mark.parametrize("error, line", [
    (tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__Fill}} OOM when allocating tensor "
                                      "with shape[1,100000000000000] and type float on /job:localhost [Op:Fill]"),
     "Error: out of memory (OOM when allocating tensor with shape[1,100000000000000]" + OUT_OF_MEMORY),
    (MemoryError("Unable to allocate 3.6 TiB"), "Error: out of memory (Unable to allocate 3.6 TiB" + OUT_OF_MEMORY),
    # TensorFlow reports a full disk with its out-of-memory error's type.
    (tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__CreateSummaryFileWriter_device_/job:"
                                      "localhost/replica:0/task:0/device:CPU:0}} logs/run/events.out.tfevents.1; No "
                                      "space left on device [Op:CreateSummaryFileWriter]"),
     "Error: logs/run/events.out.tfevents.1; No space left on device" + DISK_FULL),
    (OSError(28, "No space left on device", "samples/run/losses.png"),
     "Error: [Errno 28] No space left on device: 'samples/run/losses.png'" + DISK_FULL),
    # Ctrl-C outside the training loop (loading, sampling, evaluating, exporting): exit code 130.
    (KeyboardInterrupt(), "Stopped: interrupted. Nothing is left half written (files are published only when "
                          "complete); checkpoints already written are kept.")])
def test_out_of_memory_disk_full_or_ctrl_c_anywhere_ends_with_one_line(monkeypatch, capsys, error, line):
    import main

    def failing(argv):
        raise error
    monkeypatch.setattr(main, "main", failing)
    with pytest.raises(SystemExit) as stopped:
        main.run_main(["main.py"])
    assert stopped.value.code == (130 if isinstance(error, KeyboardInterrupt) else 1)
    assert capsys.readouterr().err.splitlines() == [line]


def test_logs_or_an_export_that_cannot_be_written_is_one_line(tmp_path):
    """TensorFlow writes these itself and raises its own errors (a read-only disk: PermissionDeniedError);
    here a file stands where their folder should be."""
    import main
    import serving
    import train
    from utils import DCGANError
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    with flagsaver.flagsaver(checkpoint_dir=str(tmp_path), tensorboard_dir=str(blocked), export_dir=str(blocked),
                             batch_size=32, **TINY):
        run = main.open_run(main.run_config())
        with pytest.raises(DCGANError, match=rf"^cannot write TensorBoard logs in {re.escape(run.logs)}: \S"):
            train.summary_writer(run, chief=True)
        with pytest.raises(DCGANError, match=rf"^cannot write the export {re.escape(run.exports)}/0: [^{{\[]+$"):
            serving.export(main.build_model(run.config), run.exports)
    assert blocked.read_text() == ""


# ------------------------------------------------------------------ faults during training

def start(args, cwd, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"), **kwargs)


def wait_for(condition, proc, limit_s=240):
    """Polls until condition() holds; fails if the process ends first or the limit passes."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def latest_step(folder):
    path = tf.train.latest_checkpoint(str(folder))
    return int(path.rsplit("-", 1)[1]) if path else 0


def assert_loads(folder):
    """Every tensor of the latest checkpoint reads back in full."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(folder)))
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)


@pytest.mark.full
@pytest.mark.slow
def test_kill_9_at_random_points_then_resume(tmp_path):
    mnist(tmp_path)
    args = train_args("--train", "--epoch=4", "--ckpt_freq=3", "--sample_freq=1000")  # 40 steps
    ckpt = tmp_path / "checkpoints" / RUN
    rng = random.Random(0)
    resumed_from = []
    for _ in range(2):
        before = latest_step(ckpt)
        proc = start(args, tmp_path)
        # Once a new checkpoint is published, kill at a random moment within the next few steps:
        # between steps, inside a step, or in the middle of writing the next checkpoint.
        wait_for(lambda: latest_step(ckpt) > before, proc)
        time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        out = proc.communicate()[0]
        resumed_from.append(before)
        if before:
            assert f"steps {before}..40" in out, out
        assert_loads(ckpt)
    rc, out = run_main(args, tmp_path)
    assert rc == 0, out
    last = resumed_from[-1]
    assert "Restored" in out and latest_step(ckpt) == 40
    assert resumed_from == sorted(resumed_from) and last > 0
    assert not glob.glob(str(ckpt / "*_temp*"))


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_save_a_checkpoint_then_stop(tmp_path, signum, code):
    mnist(tmp_path)
    args = train_args("--train", "--epoch=100", "--ckpt_freq=1000", "--sample_freq=1000")
    proc = start(args, tmp_path)
    wait_for(lambda: (tmp_path / "logs" / RUN).exists() and glob.glob(str(tmp_path / "logs" / RUN / "*")), proc)
    proc.send_signal(signum)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, out
    step = latest_step(tmp_path / "checkpoints" / RUN)
    assert step > 0
    name = signal.Signals(signum).name
    assert f"Stopped: stopped by {name} at step {step}; saved checkpoints/{RUN}/ckpt-{step}" in out, out
    assert re.search(r"Waiting for input took \d+\.\d % of the time\. Run the same command to resume", out), out
    assert "Traceback" not in out
    if signum == signal.SIGTERM:  # both save through the same code: one resume shows the checkpoint goes on
        rc, out = run_main(train_args("--train", f"--epoch={step // 10 + 1}"), tmp_path)
        assert rc == 0 and f"steps {step}.." in out, out


def summary_values(log_dir):
    """Every value of every summary (scalars and histograms) written to log_dir, by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: np.concatenate([tf.make_ndarray(e.tensor_proto).ravel() for e in events.Tensors(tag)])
            for tag in events.Tags()["tensors"]}


def test_logs_that_cannot_be_written_midway_stop_training_with_a_checkpoint_of_that_step(tmp_path, monkeypatch):
    import main
    import run as runs
    import train
    import utils
    from utils import DCGANError
    with flagsaver.flagsaver(checkpoint_dir=str(tmp_path / "checkpoints"), tensorboard_dir=str(tmp_path / "logs"),
                             sample_dir=str(tmp_path / "samples"), batch_size=8, epoch=1, seed=0, **TINY):
        run = main.open_run(main.run_config())
        write = train.scalar_writer()

        def fills_the_disk_at_step_3():
            def write_scalars(logs, step):
                if int(step) == 3:  # as TensorFlow's event writer reports it when its flush fails
                    raise tf.errors.ResourceExhaustedError(None, None, (
                        f"Graph execution error:\n\nDetected at node d_loss/write_summary defined at (most recent "
                        f"call last):\n  File \"main.py\", line 1, in write\n\n{run.logs}/events.out.tfevents.1; No "
                        f"space left on device\n\tCould not flush events file.\n [Op:__inference_write_1]"))
                write(logs, step)
            return write_scalars
        monkeypatch.setattr(train, "scalar_writer", fills_the_disk_at_step_3)
        dcgan = main.build_model(run.config)
        manager = runs.checkpoint_manager(dcgan, run.checkpoints)
        images, labels = np.zeros((40, 28, 28, 1), np.uint8), np.arange(40) % 10
        with pytest.raises(DCGANError) as stopped:
            train.train(dcgan, manager, run, (images, labels), tf.distribute.get_strategy(), epochs=1)
    assert str(stopped.value) == (f"cannot write TensorBoard logs in {run.logs} at step 3 ({run.logs}/events.out."
                                  f"tfevents.1; No space left on device); saved {run.checkpoints}/ckpt-3")
    assert utils.disk_full(stopped.value)  # so the line goes on to say the disk is full
    assert int(dcgan.step) == 3 and tf.train.latest_checkpoint(run.checkpoints).endswith("ckpt-3")


@pytest.mark.full
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, trained_tiny):
    trained_tiny(tmp_path)
    ckpt = tmp_path / "checkpoints" / RUN
    before = snapshot(ckpt)
    rc, out = run_main(train_args("--train", "--epoch=2", "--learning_rate=1e30"), tmp_path)
    assert rc == 1
    assert error_lines(out)[-1].startswith("Error: non-finite loss at step 11 (")
    assert f"the last good checkpoint is kept: checkpoints/{RUN}/ckpt-10" in out
    after = snapshot(ckpt)
    assert after.pop("config.json") != before.pop("config.json")  # it records what the attempt trained with
    assert json.loads((ckpt / "config.json").read_text())["training"]["learning_rate"] == 1e30
    assert after == before  # the checkpoints are untouched
    values = summary_values(tmp_path / "logs" / RUN)
    assert len(values["g_loss"]) == 10  # the 10 good steps, nothing of step 11
    assert all(np.all(np.isfinite(v)) for v in values.values())


@pytest.mark.full
def test_the_best_step_of_a_run_trained_without_keep_best_is_asked_for_in_vain(tmp_path, trained_tiny):
    trained_tiny(tmp_path)
    rc, out = run_main([*TINY_RUN_ARGS, "--data_dir=data", "--generate", "--step=best"], tmp_path)
    assert rc == 1 and error_lines(out) == ["Error: no best checkpoint in checkpoints/mnist_32_28_28/best: train with "
                                            "--eval_freq and --keep_best"], out


@pytest.mark.full
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, trained_tiny):
    trained_tiny(tmp_path)
    ckpt = tmp_path / "checkpoints" / RUN
    before = snapshot(ckpt)

    def small_disk():  # files may not grow past 100 kB: the checkpoint (~1 MB) cannot be written
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = start(train_args("--train", "--epoch=2", "--ckpt_freq=2", "--sample_freq=1000"), tmp_path,
                 preexec_fn=small_disk)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert error_lines(out)[-1].startswith(f"Error: cannot write a checkpoint in checkpoints/{RUN} at step 12 (")
    assert error_lines(out)[-1].endswith(f"the last one written still loads: checkpoints/{RUN}/ckpt-10")
    # The failed save's files are gone too: they would hold the space a full disk needs.
    assert snapshot(ckpt) == before and not glob.glob(str(ckpt / "*_temp*"))
    assert_loads(ckpt)
    rc, out = run_main(train_args("--train", "--epoch=2"), tmp_path)  # and with room again, it goes on
    assert rc == 0 and "steps 10..20" in out, out


@pytest.mark.full
def test_a_run_being_trained_refuses_a_second_trainer_and_its_save_in_progress_is_left_alone(tmp_path, trained_tiny):
    import run
    trained_tiny(tmp_path)
    ckpt = tmp_path / "checkpoints" / RUN
    (ckpt / "ckpt-14_temp").mkdir()  # the running trainer's save in progress
    before = snapshot(ckpt)
    with run.held_alone(str(ckpt), "held by the test, as by a training process"):
        rc, out = run_main(train_args("--train", "--epoch=2"), tmp_path)
        assert rc == 1
        assert error_lines(out)[-1] == (f"Error: another process is training the run in checkpoints/{RUN}: let it "
                                        "finish or stop it, or train under another --out_name")
        rc, out = run_main(train_args(), tmp_path)  # sampling meanwhile is fine
        assert rc == 0, out
    assert snapshot(ckpt) == before and (ckpt / "ckpt-14_temp").is_dir()


@pytest.mark.parametrize("damage", ["deleted", "emptied", "truncated", "names no checkpoint",
                                    "names one whose index is cut short"])
def test_a_damaged_checkpoint_list_is_rebuilt_from_the_checkpoints(tmp_path, trained_tiny, capsys, damage):
    import run as runs
    trained_tiny(tmp_path)
    ckpt = tmp_path / "checkpoints" / RUN
    listed = (ckpt / "checkpoint").read_text()
    shutil.copy(ckpt / "ckpt-10.index", ckpt / "ckpt-7.index")  # an older one, as --max_to_keep 2 keeps
    (ckpt / "ckpt-12.index").write_bytes((ckpt / "ckpt-10.index").read_bytes()[:40])  # killed while written
    damaged = {"deleted": None, "emptied": "", "truncated": listed[:25],
               "names no checkpoint": 'all_model_checkpoint_paths: "ckpt-10"\n',
               "names one whose index is cut short": 'model_checkpoint_path: "ckpt-12"\n'}[damage]
    (ckpt / "checkpoint").unlink()
    if damaged is not None:
        (ckpt / "checkpoint").write_text(damaged)
    runs.repair_checkpoint_list(str(ckpt))
    assert capsys.readouterr().err.splitlines() == [
        f"Warning: {ckpt}/checkpoint, the list of the run's checkpoints, was missing, unreadable or named one that "
        "does not read: rebuilt it from the checkpoints there (the latest is ckpt-10)"]
    state = tf.train.get_checkpoint_state(str(ckpt))
    assert list(state.all_model_checkpoint_paths) == [str(ckpt / "ckpt-7"), str(ckpt / "ckpt-10")]
    assert tf.train.latest_checkpoint(str(ckpt)) == str(ckpt / "ckpt-10")
    rebuilt = (ckpt / "checkpoint").read_text()
    runs.repair_checkpoint_list(str(ckpt))  # a readable list is left as it is
    assert (ckpt / "checkpoint").read_text() == rebuilt and not capsys.readouterr().err


def test_a_checkpoint_that_does_not_read_and_nothing_to_fall_back_on_is_an_error(tmp_path, trained_tiny):
    import run as runs
    from utils import DCGANError
    trained_tiny(tmp_path)
    ckpt = tmp_path / "checkpoints" / RUN
    (ckpt / "ckpt-10.index").unlink()  # its data file is left, and the list still names it
    message = "^" + re.escape(f"{ckpt}/checkpoint lists checkpoints, but none there reads (an index missing or "
                              "damaged): restore their files, or train under another --out_name") + "$"
    with pytest.raises(DCGANError, match=message):
        runs.repair_checkpoint_list(str(ckpt))
    (ckpt / "checkpoint").write_text("garbage")  # and when the list is unreadable too
    with pytest.raises(DCGANError, match=message):
        runs.repair_checkpoint_list(str(ckpt))
    # No list and a half-written index: a first save killed. Training starts again, and saves it again.
    (ckpt / "checkpoint").unlink()
    (ckpt / "ckpt-10.index").write_bytes(b"\x00" * 40)
    runs.repair_checkpoint_list(str(ckpt))
    assert not (ckpt / "checkpoint").exists()


def test_a_checkpoint_data_file_cut_short_is_one_line(tmp_path, trained_tiny):
    import main
    import run as runs
    from utils import DCGANError
    trained_tiny(tmp_path)
    data = tmp_path / "checkpoints" / RUN / "ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:5000])
    with flagsaver.flagsaver(checkpoint_dir=str(tmp_path / "checkpoints"), batch_size=32):
        run = main.open_run(main.run_config())
        manager = runs.checkpoint_manager(main.build_model(run.config), run.checkpoints)
        with pytest.raises(DCGANError, match="^" + re.escape(f"cannot read checkpoint {tmp_path}/checkpoints/{RUN}/"
                                                             "ckpt-10: Read less bytes than requested") + "$"):
            runs.restore(manager, required=True)


@pytest.mark.full
def test_resume_past_a_damaged_checkpoint_list_takes_the_learning_rates_given_now(tmp_path, trained_tiny):
    trained_tiny(tmp_path)  # trained at the default 0.0002
    # Without the list's repair, TF would see no checkpoint, and training would start over from step 0.
    (tmp_path / "checkpoints" / RUN / "checkpoint").write_text('model_checkpoint_path: "ckpt-10"\nall_mod')
    rc, out = run_main(train_args("--train", "--epoch=2", "--learning_rate=0.0005", "--d_learning_rate=0.0008"),
                       tmp_path)
    assert rc == 0 and "Traceback" not in out, out
    assert "or named one that does not read: rebuilt it" in out and "steps 10..20" in out, out
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints" / RUN / "ckpt-20"))
    rates = {k.split("/")[0]: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
             if k.endswith("_learning_rate/.ATTRIBUTES/VARIABLE_VALUE")}
    assert rates == {"g_optimizer": pytest.approx(0.0005), "d_optimizer": pytest.approx(0.0008)}, rates


@pytest.mark.full
def test_same_seed_gives_the_same_losses_and_recipe_original_is_the_default(tmp_path, trained_tiny):
    trained_tiny(tmp_path)  # one process trained it with --seed=3; another does so again here
    assert run_main(train_args("--train", "--epoch=1", "--out_name=again", "--recipe=original"), tmp_path)[0] == 0
    # (That another seed gives other losses is tested in-process, in test_model.)
    first, again = summary_values(tmp_path / "logs" / RUN), summary_values(tmp_path / "logs" / "again")
    # Two processes on one machine run the same kernels; a tolerance still spares threading's rounding.
    for name in ("d_loss", "g_loss"):
        assert len(first[name]) == 10
        np.testing.assert_allclose(first[name], again[name], rtol=1e-4, atol=1e-6)


@pytest.mark.full
def test_recipe_best_sets_the_training_flags_a_flag_given_wins_and_the_run_keeps_it(tmp_path, trained_tiny):
    from run import ORIGINAL_RECIPE, RECIPES
    trained_tiny(tmp_path)
    rc, out = run_main(train_args("--train", "--epoch=1", "--out_name=best", "--recipe=best", "--beta1=0.7"), tmp_path)
    assert rc == 0, out
    config = json.loads((tmp_path / "checkpoints" / "best" / "config.json").read_text())
    assert config["recipe"] == "best" and config["training"] == {**ORIGINAL_RECIPE, "g_steps": 1, "beta1": 0.7,
                                                                 "d_learning_rate": 0.0004, "augment": False}
    assert config["batch_size"] == 32 == RECIPES["best"]["batch_size"]  # given here, as the recipe's
    rc, out = run_main(train_args("--train", "--epoch=2", "--out_name=best", "--recipe=original"), tmp_path)
    assert rc == 1 and "was made with --recipe=best, not original" in out, out
    rc, out = run_main(train_args("--train", "--epoch=2", "--out_name=best"), tmp_path)  # kept without the flag
    assert rc == 0 and json.loads((tmp_path / "checkpoints" / "best" / "config.json").read_text())["training"] == \
        {**ORIGINAL_RECIPE, "g_steps": 1, "d_learning_rate": 0.0004, "augment": False}, out  # D's twice G's
    rc, out = run_main(train_args("--train", "--epoch=3", "--out_name=best", "--learning_rate=0.0003"), tmp_path)
    assert rc == 0 and json.loads((tmp_path / "checkpoints" / "best" / "config.json").read_text())["training"] == \
        {**ORIGINAL_RECIPE, "g_steps": 1, "learning_rate": 0.0003, "d_learning_rate": 0.0006, "augment": False}, out
