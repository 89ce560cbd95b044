"""Speed of the conditional MNIST DCGAN on this CPU, comparable with ../shared/bench/torch_cdcgan.py.

Prints a table, then one JSON line, all measured in this process after warm-up:
- the CPU and the flags that decide which kernels run (avx2, avx512f, avx512_bf16, amx_bf16);
- the fp32 matmul ceiling: 2048x2048 matmuls, measured the way the PyTorch reference measures its own;
- the training step: the real train_step at --batch_size on synthetic inputs, the reference's model and
  schedule (one D and two G updates per step): steps/s, samples/s, and GFLOP/s from the FLOPs of one
  step, which TensorFlow counts from the shapes of every op in the step's graph; with its share of
  the ceiling;
- generation from the SavedModel that --export writes: images/s at batch 1000, latency at batch 1.

    python bench.py [--steps 60] [--warmup 10] [--batch_size 64]
"""
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as main.py: see there

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

import distribute
from evaluate import cpu_model
from model import DCGAN, export_savedmodel

flags.DEFINE_integer("steps", 60, "Timed training steps.", lower_bound=1)
flags.DEFINE_integer("warmup", 10, "Untimed steps first (tracing, allocator warm-up).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("g_steps", 2, "Generator updates per batch.", lower_bound=1)
FLAGS = flags.FLAGS

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
MATMUL = 2048


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            present = next(line.split(":", 1)[1].split() for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        present = []
    return {name: name in present for name in CPU_FLAGS}


def graph_flops(fn, *specs):
    """Floating-point operations of one call of fn, counted by TensorFlow from its graph's op shapes."""
    graph = tf.function(fn).get_concrete_function(*specs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def matmul_ceiling(repeats=10):
    """fp32 GFLOP/s of large matmuls: what this CPU can do at best, in this process."""
    m = tf.random.normal((MATMUL, MATMUL))
    matmul = tf.function(lambda a: tf.matmul(a, a))
    for _ in range(3):
        matmul(m).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        matmul(m).numpy()
    return 2 * MATMUL ** 3 * repeats / (time.perf_counter() - start) / 1e9


def seconds_per_call(fn, calls, warmup):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main(_):
    logging.set_verbosity(logging.WARNING)  # no notes from the SavedModel writer
    keras.utils.set_random_seed(0)
    dcgan = DCGAN(g_steps=FLAGS.g_steps)
    dcgan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    n = FLAGS.batch_size
    batch = (tf.random.uniform((n, 28, 28, 1)), tf.one_hot(tf.random.uniform((n,), 0, 10, tf.int32), 10))
    # The step as main.py runs it: through tf.distribute (the default strategy: one device) on a tf.data stream.
    batches, step = distribute.distributed_step(tf.distribute.get_strategy(), dcgan.train_step,
                                                tf.data.Dataset.from_tensors(batch).repeat())
    step_flops = graph_flops(dcgan.train_step, (tf.TensorSpec((n, 28, 28, 1)), tf.TensorSpec((n, 10))))
    g_flops = graph_flops(lambda z, y: dcgan.generator(z, y), tf.TensorSpec((1, dcgan.z_dim)), tf.TensorSpec((1, 10)))
    d_flops = graph_flops(lambda x, y: dcgan.discriminator(x, y), tf.TensorSpec((1, 28, 28, 1)),
                          tf.TensorSpec((1, 10)))
    ceiling = matmul_ceiling()
    # A host read per step, as the training loop does.
    step_s = seconds_per_call(lambda: float(step(next(batches), 0)[0]["d_loss"]), FLAGS.steps, FLAGS.warmup)

    with tempfile.TemporaryDirectory() as folder:
        serve = tf.saved_model.load(export_savedmodel(dcgan, os.path.join(folder, "1"))).signatures["serving_default"]
        def generate(size):
            z = tf.random.uniform((size, dcgan.z_dim), -1, 1)
            label = tf.random.uniform((size,), 0, 10, tf.int32)
            return lambda: serve(z=z, label=label)["images"].numpy()
        batch_s = seconds_per_call(generate(1000), 5, 2)
        latency_s = seconds_per_call(generate(1), 50, 5)

    result = {
        "impl": "keras-tf", "tensorflow": tf.__version__, "keras": keras.__version__, "cpu": cpu_model(),
        "cpu_flags": cpu_flags(), "threads": os.cpu_count(), "batch": n, "steps": FLAGS.steps,
        "onednn": os.environ["TF_ENABLE_ONEDNN_OPTS"] != "0",
        "matmul_ceiling_gflops": round(ceiling, 1),
        "samples_per_s": round(n / step_s, 1), "iter_per_s": round(1 / step_s, 3),
        "flops_per_iter": step_flops, "g_forward_flops_per_image": g_flops, "d_forward_flops_per_image": d_flops,
        "achieved_gflops": round(step_flops / step_s / 1e9, 1),
        "share_of_ceiling": round(step_flops / step_s / 1e9 / ceiling, 3),
        "generate_images_per_s_batch1000": round(1000 / batch_s, 1),
        "generate_gflops_batch1000": round(1000 * g_flops / batch_s / 1e9, 1),
        "generate_latency_ms_batch1": round(1000 * latency_s, 2),
    }
    flags_text = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in result["cpu_flags"].items())
    rows = [
        ("CPU", f"{result['cpu']} ({flags_text}), {result['threads']} threads, oneDNN "
                f"{'on' if result['onednn'] else 'off'}"),
        ("fp32 matmul ceiling", f"{ceiling:.1f} GFLOP/s ({MATMUL}x{MATMUL} matmuls)"),
        (f"training step, batch {n}", f"{1 / step_s:.2f} steps/s, {n / step_s:.1f} samples/s"),
        ("  FLOPs", f"{step_flops / 1e9:.2f} GFLOP a step; forward per image: G {g_flops / 1e6:.1f} MFLOP, "
                    f"D {d_flops / 1e6:.1f} MFLOP"),
        ("  achieved", f"{result['achieved_gflops']:.1f} GFLOP/s = {100 * result['share_of_ceiling']:.0f} % "
                       f"of the ceiling"),
        ("generation (SavedModel), batch 1000", f"{1000 / batch_s:.0f} images/s = "
                                                f"{result['generate_gflops_batch1000']:.1f} GFLOP/s = "
                                                f"{100 * result['generate_gflops_batch1000'] / ceiling:.0f} % "
                                                f"of the ceiling"),
        ("generation (SavedModel), batch 1", f"{1000 * latency_s:.2f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
