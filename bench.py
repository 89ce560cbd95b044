"""Training-step speed of the conditional MNIST DCGAN, comparable with ../shared/bench/torch_cdcgan.py.

Same model, batch and schedule as that PyTorch reference (one D update, two G updates per batch, on
synthetic inputs so that only the model is timed). Prints one JSON line.

    python bench.py [--steps 60] [--warmup 10] [--batch_size 64]
"""
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tensorflow as tf
from absl import app, flags

from model import DCGAN

flags.DEFINE_integer("steps", 60, "Timed training steps.", lower_bound=1)
flags.DEFINE_integer("warmup", 10, "Untimed steps first (tracing, allocator warm-up).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("g_steps", 2, "Generator updates per batch.", lower_bound=1)
FLAGS = flags.FLAGS


def main(_):
    keras.utils.set_random_seed(0)
    dcgan = DCGAN(g_steps=FLAGS.g_steps)
    dcgan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    n = FLAGS.batch_size
    batch = (tf.random.uniform((n, 28, 28, 1)), tf.one_hot(tf.random.uniform((n,), 0, 10, tf.int32), 10))
    step = tf.function(dcgan.train_step)
    for _ in range(FLAGS.warmup):
        float(step(batch)["d_loss"])
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        float(step(batch)["d_loss"])  # a host read per step, as the training loop does
    seconds = time.perf_counter() - start
    print(json.dumps({"impl": "keras-tf", "tensorflow": tf.__version__, "keras": keras.__version__,
                      "batch": n, "steps": FLAGS.steps, "threads": os.cpu_count(),
                      "samples_per_s": round(FLAGS.steps * n / seconds, 1),
                      "iter_per_s": round(FLAGS.steps / seconds, 3)}))


if __name__ == "__main__":
    app.run(main)
