"""The export as TF Serving and other users see it: through saved_model_cli, and from a process that
has TensorFlow but none of this project's code."""
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from conftest import TINY, skip_if_it_crashes_here
from model import DCGAN
from serving import FLOAT32_BELOW, export_savedmodel, load_savedmodel

# Its module-scoped fixtures are costly: the whole file runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("serving")

CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    keras.utils.set_random_seed(2)
    dcgan = DCGAN(**TINY)
    # Weights that differ from layer to layer, so that mixing two layers' weights up would show.
    for i, w in enumerate(dcgan.generator.non_trainable_variables):
        w.assign(w.numpy() + 0.1 * (i + 1) if "mean" in w.path else w.numpy() * (1 + 0.1 * i))
    path = export_savedmodel(dcgan, str(tmp_path_factory.mktemp("serving") / "3"), step=3)
    return dcgan, path


# Session-based loaders (TF Serving, saved_model_cli run) resolve variables by name, unlike
# tf.saved_model.load: this is where duplicate variable names would show.
@pytest.mark.parametrize("signature, input_exprs, outputs", [
    ("serving_default", f"z={[[0.5] * 8] * 2};label=[3,1]", {"images": (2, 28, 28, 1)}),
    pytest.param("generate", "label=[3,1,4];seed=[7,8,9]", {"images": (3, 28, 28, 1)}, marks=pytest.mark.full),
    pytest.param("generate_png", "label=[3];seed=[7]", {"png_bytes": (1,)}, marks=pytest.mark.full),
])
def test_each_signature_runs_in_saved_model_cli(export_dir, tmp_path, signature, input_exprs, outputs):
    dcgan, export_dir = export_dir
    args = [CLI, "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def", signature,
            "--outdir", str(tmp_path), "--input_exprs", input_exprs]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, shape in outputs.items():
        if name == "png_bytes":  # strings are saved as a pickled object array: read the printout instead
            assert re.search(r"Result for output key png_bytes:\n\[b[\"']\\x89PNG", proc.stdout), proc.stdout
            continue
        value = np.load(tmp_path / f"{name}.npy")
        assert value.shape == shape and value.dtype == np.float32 and 0 <= value.min() and value.max() <= 1
    if signature == "serving_default":
        expected = dcgan.sample(np.full((2, 8), 0.5, np.float32), np.array([3, 1])).numpy()
        np.testing.assert_allclose(value, expected, atol=1e-5)


def test_export_loads_in_a_process_without_the_project(export_dir, tmp_path):
    _, export_dir = export_dir
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        assert not any(m in sys.modules for m in ("model", "ops", "utils", "main"))
        m = tf.saved_model.load({export_dir!r})
        s = m.signatures
        images = s["serving_default"](z=tf.zeros((2, 8)), label=tf.constant([0, 9]))["images"]
        again = s["generate"](label=tf.constant([5]), seed=tf.constant([42], tf.int64))["images"]
        png = s["generate_png"](label=tf.constant([5]), seed=tf.constant([42], tf.int64))["png_bytes"]
        config = {{k: v.numpy() for k, v in s["config"]().items()}}
        print(json.dumps({{"images": images.shape.as_list(), "generate": again.shape.as_list(),
                           "png": tf.io.decode_png(png[0]).shape.as_list(),
                           "z_dist": config["z_dist"].decode(), "step": int(config["step"])}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"images": [2, 28, 28, 1], "generate": [1, 28, 28, 1], "png": [28, 28, 1],
                      "z_dist": "uniform_signed", "step": 3}


def test_a_bfloat16_export_draws_a_few_images_in_float32_and_many_in_bfloat16(tmp_path):
    skip_if_it_crashes_here("mixed_bfloat16")
    drawn = {}
    for precision in ("float32", "mixed_bfloat16"):
        keras.utils.set_random_seed(2)
        dcgan = DCGAN(**TINY, precision=precision)  # the same weights: the same seed, float32 variables
        drawn[precision] = load_savedmodel(export_savedmodel(dcgan, str(tmp_path / precision / "1")))
    z = np.random.default_rng(0).uniform(-1, 1, (FLOAT32_BELOW, 8)).astype(np.float32)
    label = np.arange(FLOAT32_BELOW) % 10

    def images(precision, n):
        return drawn[precision].sample(z[:n], label[:n]).numpy()
    few, many = FLOAT32_BELOW - 1, FLOAT32_BELOW
    np.testing.assert_allclose(images("mixed_bfloat16", few), images("float32", few), atol=1e-6)
    difference = np.abs(images("mixed_bfloat16", many) - images("float32", many)).max()
    assert 1e-4 < difference < 0.05  # bfloat16's rounding: the 16-bit path, not float32's, nor a broken one
