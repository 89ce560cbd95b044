"""main.py end to end, in fresh processes as a user runs it, plus checkpoint round trips."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver
from PIL import Image

import main
import data
import distribute
import run as runs
import utils
from conftest import TINY, TINY_RUN_ARGS, error_lines, run_main

RUN = "mnist_32_28_28"


def train_args(data_dir, *extra):
    return [*TINY_RUN_ARGS, f"--data_dir={data_dir}", *extra]


def test_train_resume_sample_and_export(tmp_path, trained_tiny):
    trained_tiny(tmp_path)  # one epoch: 320 images / 32 = 10 steps, its checkpoint and final grid
    # A sample grid that cannot be written (a folder holds its temporary name, as a full disk would fail
    # it) is a warning: training goes on.
    (tmp_path / "samples" / RUN / "train_01_0004.png.tmp").mkdir()
    # Exported and visualized by the process that trained, as a user may ask in one command.
    rc, out = run_main(train_args("data", "--train", "--epoch=2", "--ckpt_freq=4", "--sample_freq=5", "--export",
                                  "--visualize"), tmp_path)
    assert rc == 0, out
    assert f"Restored checkpoints/{RUN}/ckpt-10" in out and "steps 10..20" in out
    assert re.search(r"^Warning: step 15's sample grid was not written \(\[Errno \d+\] .*train_01_0004\.png\.tmp'\); "
                     r"training goes on$", out, re.M), out
    ckpt = tmp_path / "checkpoints" / RUN
    assert (ckpt / "ckpt-20.index").exists() and not (ckpt / "ckpt-16.index").exists()  # max_to_keep 1
    assert sorted(os.listdir(tmp_path / "samples" / RUN)) == ["losses.png", "real_vs_fake.png", "train_00_0009.png",
                                                             "train_01_0004.png.tmp", "train_01_0009.png", "visualize"]
    assert "Warning: the TensorBoard logs" not in out  # the resumed run's logs go on from the first run's
    events = sorted(glob.glob(str(tmp_path / "logs" / RUN / "events.out.tfevents.*")))
    assert len(events) == 2
    visualized = sorted(os.listdir(tmp_path / "samples" / RUN / "visualize"))  # option 1: a sweep per z dimension
    assert visualized == ["classes_x_interpolation.png"] + [f"sweep_dim{d:03d}.png" for d in range(8)]
    export = tmp_path / "export" / RUN / "20"
    assert (export / "saved_model.pb").exists()

    generate = ["--generate", "--labels=3,1,4", "--n_per_label=2", "--seed=7"]
    os.remove(events[-1])  # the resumed run's logs lost: the curves end at step 10, and --plot says so
    rc, out = run_main(train_args("data", *generate, "--save_individual", "--plot"), tmp_path)
    assert rc == 0, out
    assert f"Warning: the TensorBoard logs in logs/{RUN} end at step 10 and the run at step 20: the rest is " \
           "missing (removed, or lost), so the loss curves stop there" in out, out
    assert f"Wrote samples/{RUN}/losses.png, samples/{RUN}/real_vs_fake.png" in out
    grid = tmp_path / "samples" / RUN / "generate_3-1-4_seed7.png"
    assert Image.open(grid).size == (3 * 28, 2 * 28)
    assert sorted(os.listdir(tmp_path / "samples" / RUN / "generate_3-1-4_seed7")) == sorted(
        f"label{k}_seed{s}.png" for k in (3, 1, 4) for s in (7, 8))
    rc, out = run_main(train_args("data", *generate, f"--from_savedmodel={export}", "--sample_dir=served"), tmp_path)
    assert rc == 0, out
    assert (tmp_path / "served" / RUN / grid.name).read_bytes() == grid.read_bytes()


def test_eval_of_the_trained_model_and_of_its_savedmodel_agree_and_eval_freq_logs(tmp_path, data_dir):
    rc, out = run_main(train_args(data_dir, "--train", "--epoch=1", "--eval_freq=5", "--eval_n=20", "--export",
                                  "--eval"), tmp_path)
    assert rc == 0, out
    assert "Training the MNIST classifier" not in out  # the shipped one scores
    assert " | acc " in out and " FID " in out
    from test_faults import summary_values
    values = summary_values(tmp_path / "logs" / RUN)
    assert len(values["eval/accuracy"]) == 2 and len(values["eval/fid"]) == 2  # steps 5 and 10
    assert len(values["eval/precision"]) == 2 and len(values["eval/recall"]) == 2
    with open(tmp_path / "samples" / RUN / "eval.json") as f:
        from_model = json.load(f)
    assert from_model["step"] == 10 and from_model["samples"] == 200
    assert all(0 <= from_model[k] <= 1 and 0 <= from_model["real"][k] <= 1 for k in ("precision", "recall", "coverage"))
    assert set(from_model["per_class"]) == {str(k) for k in range(10)}
    for key in ("accuracy", "fid", "intra_fid", "min_diversity", "real"):
        assert key in from_model

    rc, out = run_main(train_args(data_dir, "--eval", "--eval_n=20", f"--eval_savedmodel=export/{RUN}/10",
                                  "--sample_dir=served"), tmp_path)
    assert rc == 0, out
    with open(tmp_path / "served" / RUN / "eval.json") as f:
        from_export = json.load(f)
    # The model and its export draw the same images through other graphs: a borderline image may flip.
    assert from_export["accuracy"] == pytest.approx(from_model["accuracy"], abs=0.011)
    assert from_export["fid"] == pytest.approx(from_model["fid"], rel=1e-3)


def test_retrain_classifier_scores_with_one_trained_on_the_runs_data_and_cached(tmp_path, data_dir, capsys):
    with flagsaver.flagsaver(data_dir=data_dir, checkpoint_dir=str(tmp_path), retrain_classifier=True):
        reference = main.eval_reference({"dataset": "mnist"})
    assert "Training the MNIST classifier for evaluation" in capsys.readouterr().out
    assert glob.glob(str(tmp_path / "classifier" / "mnist_classifier_*.weights.h5"))
    images, labels = data.load_labelled_images("mnist", data_dir)
    assert reference.evaluate(images[:100], labels[:100])["accuracy"] > 0.9  # the bars: easy


@pytest.mark.full
def test_resume_with_other_architecture_flags_names_the_flag(tmp_path, trained_tiny):
    trained_tiny(tmp_path)
    rc, out = run_main(train_args("data", "--train", "--epoch=2", "--z_dim=16"), tmp_path)
    assert rc == 1
    assert error_lines(out)[-1] == (f"Error: run '{RUN}' in checkpoints/{RUN} was made with --z_dim=8, not 16: "
                                    "use the same value or another --out_name")


@pytest.mark.parametrize("saved_in", ["float32", pytest.param("mixed_float16", marks=pytest.mark.full)])
def test_checkpoint_restores_weights_and_optimizer_state(tmp_path, saved_in):
    """Weights stay float32 and the loss scale is not saved: a checkpoint of any precision loads in any."""
    import tensorflow as tf
    with flagsaver.flagsaver(checkpoint_dir=str(tmp_path), seed=1, **TINY):
        def fresh(precision="float32"):
            run = main.open_run(main.run_config())
            with flagsaver.flagsaver(precision=precision):
                dcgan = main.build_model(run.config)
            return dcgan, runs.checkpoint_manager(dcgan, run.checkpoints)

        dcgan, manager = fresh(saved_in)
        step = tf.function(dcgan.train_step, autograph=False)  # as train.py traces it; autograph took 40 s here
        x, y = tf.random.uniform((8, 28, 28, 1)), tf.one_hot(tf.range(8) % 10, 10)
        for _ in range(3):
            step((x, y))
        manager.save(checkpoint_number=int(dcgan.step))

        restored, restored_manager = fresh()
        assert runs.restore(restored_manager, required=True)
        assert int(restored.step) == 3 and int(restored.g_optimizer.iterations) == 6
        for a, b in [(dcgan.d_optimizer.variables, restored.d_optimizer.variables),
                     (dcgan.g_optimizer.variables, restored.g_optimizer.variables),
                     (dcgan.generator.weights, restored.generator.weights),
                     (dcgan.discriminator.weights, restored.discriminator.weights)]:
            assert len(a) == len(b) > 0
            for va, vb in zip(a, b):
                np.testing.assert_array_equal(np.asarray(va), np.asarray(vb))
        # Training on from the restored state (the same step, so the same z) gives what training on
        # without a stop gives (to 16-bit rounding when it was saved from another precision).
        restored_step = tf.function(restored.train_step, autograph=False)
        np.testing.assert_allclose(step((x, y))["g_loss"], restored_step((x, y))["g_loss"],
                                   rtol=1e-5 if saved_in == "float32" else 1e-2)


def test_the_best_steps_export_has_a_base_path_of_its_own(tmp_path):
    """TF Serving serves a base path's highest version: an export of the best step beside later ones would lose."""
    folders = {f"{kind}_dir": str(tmp_path / kind) for kind in ("checkpoint", "sample", "export")}
    with flagsaver.flagsaver(**folders, batch_size=32, export=True, **TINY):
        run = main.open_run(main.run_config())
        dcgan = main.build_model(run.config)
        with flagsaver.flagsaver(step="best"):
            main.sample_or_serve(dcgan, run, None, runs.class_names(run.config))
        main.sample_or_serve(dcgan, run, None, runs.class_names(run.config))
    assert sorted(os.listdir(tmp_path / "export" / RUN)) == ["0", "best"]
    assert os.listdir(tmp_path / "export" / RUN / "best") == ["0"]


@pytest.mark.parametrize("recipe, given, expected", [("original", None, 64), ("best", None, 32), ("best", 16, 16),
                                                     ("best", 64, 64), ("original", 16, 16)])
def test_recipe_best_trains_in_batches_of_32_unless_batch_size_is_given(recipe, given, expected):
    with flagsaver.flagsaver(recipe=recipe, **({"batch_size": given} if given else {})):
        config = main.run_config()
        assert config["batch_size"] == expected and runs.run_name(config) == f"mnist_{expected}_28_28"


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("cap", ["avx2", "AVX512_CORE", "AVX512_CORE_BF16", "AVX512_CORE_AMX", ""])
def test_16_bits_on_a_cpu_with_them_fall_back_to_float32_when_onednn_is_capped_below_them(monkeypatch, capsys,
                                                                                        precision, cap):
    """TF picks its 16-bit kernels from the CPU's flags; under a cap that keeps oneDNN from them they crash."""
    monkeypatch.setattr(utils, "cpu_flags", lambda: dict.fromkeys(utils.CPU_FLAGS, True))
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # the CPU's case, on any machine
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    below = cap.upper() in {"AVX2", "AVX512_CORE"} or (cap == "AVX512_CORE_BF16" and precision == "mixed_float16")
    expected = "float32" if below else precision
    assert distribute.usable_precision(precision) == expected
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning:")]
    crash = (f"Warning: --precision {precision} needs oneDNN free to use this CPU's 16-bit instructions, which "
             f"ONEDNN_MAX_CPU_ISA={cap.upper()} forbids; TF's kernels would crash, so this runs in float32")
    assert (crash in warnings) == below and len(warnings) <= 1, warnings


@pytest.mark.parametrize("hardware", [False, True])
def test_bfloat16_without_hardware_for_it_falls_back_to_float32_with_one_warning(monkeypatch, capsys, hardware):
    monkeypatch.setattr(distribute, "has_bfloat16_cpu", lambda: hardware)
    monkeypatch.setattr(distribute, "isa_cap_hiding", lambda precision: None)
    assert distribute.usable_precision("mixed_bfloat16") == ("mixed_bfloat16" if hardware else "float32")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning:")]
    assert warnings == ([] if hardware else [f"Warning: --precision mixed_bfloat16 needs a CPU with AVX-512 BF16 or "
                                             f"AMX, which {utils.cpu_model()} lacks; emulated it would be many times "
                                             f"slower, so this runs in float32"])


def slower_line(model, bfloat16, float32):
    return (f"Warning: --precision mixed_bfloat16 measured slower than float32 on this machine (bench.py --model "
            f"{model}, 2026-12-06: {bfloat16:.2f} against {float32:.2f} steps/s), so this runs in float32")


@pytest.mark.full
def test_a_command_prints_its_own_lines_only(tmp_path, trained_tiny):
    """TF's start-up notes (oneDNN, CUDA probing, an error-level cuInit line on a machine without a GPU)
    come before its logger honours TF_CPP_MIN_LOG_LEVEL (a user's own level: the test below)."""
    trained_tiny(tmp_path)
    shell = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}

    def run(*args, **env):
        return subprocess.run([sys.executable, os.path.join(os.path.dirname(main.__file__), "main.py"), *args],
                              cwd=tmp_path, env={**shell, **env}, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
    helped = run("--helpshort")
    assert helped.stderr == "" and helped.stdout.startswith(main.__doc__.split("\n")[0])
    generate = [*TINY_RUN_ARGS, "--data_dir=data", "--generate", "--labels=3,1", "--n_per_label=2"]
    # With a precision bench.py measured slower here: its one warning is the only line on stderr.
    record = str(tmp_path / "speeds.json")
    distribute.record_speeds(record, "mnist", {"float32": 4.33, "mixed_bfloat16": 0.44}, "2026-12-06")
    quiet = run(*generate, "--precision=mixed_bfloat16", f"--speed_record={record}")
    assert quiet.returncode == 0 and quiet.stderr == slower_line("mnist", 0.44, 4.33) + "\n", quiet.stderr
    assert [line.split()[0] for line in quiet.stdout.splitlines()] == ["Restored", "Wrote"], quiet.stdout


@pytest.mark.parametrize("level, kept", [(0, "IWEX+ours"), (1, "WEX+ours"), (2, "EX+ours"), (3, "X+ours")])
def test_the_stderr_filter_drops_tensorflows_notes_below_the_level_and_passes_the_rest(level, kept):
    """What utils.drop_tensorflow_notes puts stderr through, on TF's notes as they come (absl's header, a
    note and its continuation line, a warning, an error) and the project's own lines around them."""
    tf_lines = {"I": "I0000 00:00:1796534433.894708   14726 cpu_feature_guard.cc:227] This TensorFlow binary is\n"
                     "To enable the following instructions: AVX2 FMA, in other operations, rebuild\n",
                "W": "W0000 00:00:1796534433.895123   14726 some_file.cc:31] a warning\n",
                "E": "E0000 00:00:1796534447.588600   14761 cuda_platform.cc:52] failed call to cuInit\n"}
    header = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    ours = "Warning: ours\nTo enable the following instructions: ours too\nError: ours\n"
    text = header + "".join(tf_lines.values()) + ours
    done = subprocess.run([sys.executable, "-c", utils.NOTES_FILTER, str(level)], input=text, capture_output=True,
                          text=True, timeout=60)
    expected = (header if level == 0 else "") + "".join(tf_lines[k] for k in "IWE" if k in kept) + ours
    assert done.returncode == 0 and done.stdout == expected


def test_a_precision_bench_measured_slower_than_float32_here_runs_in_float32_with_one_line(monkeypatch, capsys,
                                                                                             tmp_path):
    monkeypatch.setattr(distribute, "has_bfloat16_cpu", lambda: True)  # the hardware is there, as on the Xeon
    monkeypatch.setattr(distribute, "isa_cap_hiding", lambda precision: None)
    record = str(tmp_path / "speeds.json")
    distribute.record_speeds(record, "mnist", {"float32": 4.33, "mixed_bfloat16": 0.44}, "2026-12-06")
    distribute.record_speeds(record, "64", {"float32": 0.57, "mixed_bfloat16": 0.91}, "2026-12-06")

    def chosen(model):
        precision = distribute.usable_precision("mixed_bfloat16", record, model)
        return precision, [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning:")]
    assert chosen("mnist") == ("float32", [slower_line("mnist", 0.44, 4.33)])
    assert chosen("64") == ("mixed_bfloat16", [])  # the run's own model first: faster there
    assert chosen("128") == ("float32", [slower_line("mnist", 0.44, 4.33)])  # not measured: the first model measured
    assert distribute.usable_precision("float32", record, "mnist") == "float32"
    monkeypatch.setattr(distribute, "machine_key", lambda: "another CPU")
    assert chosen("mnist") == ("mixed_bfloat16", [])  # figures of another machine say nothing of this one
    with open(record, "w") as f:
        f.write("{not json")
    assert chosen("mnist") == ("mixed_bfloat16", [])


@pytest.mark.learning
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DCGAN_TEST_DATA_DIR"), reason="set DCGAN_TEST_DATA_DIR to a folder "
                    "with mnist/ (CI points it at ../shared/data)")
def test_real_mnist_100_steps_draws_the_asked_digits(tmp_path):
    data_dir = os.environ["DCGAN_TEST_DATA_DIR"]
    # A quarter of the default widths for 100 steps: this checks learning on real data, not the full
    # model's size (other tests do), and keeps the suite short on 2-core AVX2 machines. Measured: 0.86-0.88
    # over seeds 0-2 (0.84-0.85 after 150 steps and 0.89 there without oneDNN, 0.79-0.85 after 200).
    rc, out = run_main(["--dataset=mnist", f"--data_dir={data_dir}", "--train", "--epoch=1", "--gf_dim=16",
                        "--df_dim=16", "--gfc_dim=256", "--dfc_dim=256", "--train_size=6400", "--seed=0",
                        "--sample_freq=50", "--export"], tmp_path)
    assert rc == 0, out
    run = "mnist_64_28_28"
    assert (tmp_path / "checkpoints" / run / "ckpt-100.index").exists()
    assert (tmp_path / "samples" / run / "train_00_0099.png").exists()
    export = tmp_path / "export" / run / "100"
    assert (export / "saved_model.pb").exists()

    # The digits follow their labels: a nearest-class-mean classifier fit on real MNIST (82% on real
    # test digits) recognises most generated digits as the class asked for.
    import tensorflow as tf
    images, labels = data.load_labelled_images("mnist", data_dir)
    images = images.reshape(len(images), -1) / 255.0
    means = np.stack([images[labels == k].mean(0) for k in range(10)])
    asked = np.arange(1000) % 10
    z = np.random.default_rng(0).uniform(-1, 1, (1000, 100)).astype(np.float32)
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    fake = serve(z=tf.constant(z), label=tf.constant(asked, tf.int32))["images"].numpy().reshape(1000, -1)
    predicted = np.argmin(((fake[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = np.mean(predicted == asked)
    print(f"nearest-mean accuracy of generated digits: {accuracy:.3f}")
    assert accuracy > 0.6
