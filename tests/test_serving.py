"""The export as TF Serving and other users see it: through saved_model_cli, and from a process that
has TensorFlow but none of this project's code."""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from conftest import TINY
from model import DCGAN, export_savedmodel

CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    keras.utils.set_random_seed(2)
    dcgan = DCGAN(**TINY)
    return export_savedmodel(dcgan, str(tmp_path_factory.mktemp("serving") / "3"), step=3)


@pytest.mark.parametrize("signature, input_exprs, outputs", [
    ("serving_default", "z=np.zeros((2,8),np.float32);label=np.array([3,1],np.int32)", {"images": (2, 28, 28, 1)}),
    ("generate", "label=np.array([3,1,4],np.int32);seed=np.array([7,8,9])", {"images": (3, 28, 28, 1)}),
    ("generate_png", "label=np.array([3],np.int32);seed=np.array([7])", {"png_bytes": (1,)}),
    ("config", None, {"z_dim": (), "step": ()}),
])
def test_each_signature_runs_in_saved_model_cli(export_dir, tmp_path, signature, input_exprs, outputs):
    args = [CLI, "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def", signature,
            "--outdir", str(tmp_path)]
    if input_exprs:
        args += ["--input_exprs", input_exprs]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, shape in outputs.items():
        value = np.load(tmp_path / f"{name}.npy", allow_pickle=False) if name != "png_bytes" else None
        if value is not None:
            assert value.shape == shape
    if signature == "config":
        assert int(np.load(tmp_path / "step.npy")) == 3 and int(np.load(tmp_path / "z_dim.npy")) == 8


def test_export_loads_in_a_process_without_the_project(export_dir, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        assert not any(m in sys.modules for m in ("model", "ops", "utils", "main"))
        m = tf.saved_model.load({export_dir!r})
        s = m.signatures
        images = s["serving_default"](z=tf.zeros((2, 8)), label=tf.constant([0, 9]))["images"]
        again = s["generate"](label=tf.constant([5]), seed=tf.constant([42], tf.int64))["images"]
        png = s["generate_png"](label=tf.constant([5]), seed=tf.constant([42], tf.int64))["png_bytes"]
        config = {{k: v.numpy().item() for k, v in s["config"]().items()}}
        print(json.dumps({{"images": images.shape.as_list(), "generate": again.shape.as_list(),
                           "png": tf.io.decode_png(png[0]).shape.as_list(),
                           "z_dist": config["z_dist"].decode(), "step": config["step"]}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"images": [2, 28, 28, 1], "generate": [1, 28, 28, 1], "png": [28, 28, 1],
                      "z_dist": "uniform_signed", "step": 3}
