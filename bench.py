"""Speed of a DCGAN on this machine: --model mnist, the conditional MNIST one (comparable with
../shared/bench/torch_cdcgan.py), 64, the unconditional image-folder one at 64x64x3 (comparable with
../shared/bench/torch_dcgan64.py), or 128, the same at 128x128x3.

Prints a table, then one JSON line, all measured in this process after warm-up:
- the CPU and the flags that decide which kernels run (avx2, avx512f, avx512_bf16, amx_bf16);
- the fp32 matmul ceiling: 2048x2048 matmuls, measured the way the PyTorch reference measures its own;
- the FLOPs of one training step, which TensorFlow counts from the shapes of every op in its graph;
- for float32 and each faster --precision this machine has the hardware for:
  - the training step: the real train_step, built as main.py builds it, at --batch_size on in-memory
    inputs, run as main.py runs it (tf.distribute, tf.data, a host read of the loss per step): the
    reference's model and schedule (one D and two G updates per step): steps/s, samples/s, GFLOP/s
    and their share of the ceiling; also with the deconvolutions in their other form (ops.Deconv2D's
    phases), which shows whether the form chosen is the faster here;
  - the training loop (--model mnist): train.py's loop on real MNIST for --loop_steps steps, with its summaries,
    progress line, samples and checkpoints at their default frequencies: steps/s after its first
    step, as a share of the bare step's, and the share of the loop's own time spent in the step (the
    rest is input, logging, samples and checkpoints; measured in the same run, so immune to the
    machine's speed drifting between the two measurements);
  - generation from the SavedModel that --export writes: images/s at a large batch (1000 MNIST digits,
    250 64x64 and 50 128x128 pictures), latency at batch 1.

The training step's speed in each precision is added to --speed_record, where main.py finds that a
precision measured slower than float32 on this machine, says so and trains in float32.

    python bench.py --data_dir ../shared/data [--model mnist] [--steps 60] [--warmup 10] [--loop_steps 400] [--profile]

With --demo_clients it measures the demo under load instead (loadtest.py: requests/s, latency, files
held, server memory for each number of concurrent clients):

    python bench.py --demo_clients 1,8,32 [--demo_seconds 30] [--from_savedmodel export/...] [--demo_port 7861]

main.py's flags apply (--batch_size, --g_steps, --data_dir, --dataset, ...). Without MNIST in --data_dir
(nor through tensorflow-datasets) the loop is left out, with the reason.
"""
import collections
import glob
import json
import os
import tempfile
import time

import main  # first: its flags and the environment TensorFlow must see before it is imported

import keras
import tensorflow as tf
from absl import app, flags, logging

import distribute
import loadtest
import ops
import utils
import train
from run import checkpoint_manager
from serving import export_savedmodel

# Each model's timed and untimed steps where --steps and --warmup are not given (the references' own),
# and the batch its generation is timed at (about 2 seconds of work).
MODELS = {"mnist": (60, 10, 1000), "64": (30, 5, 250), "128": (10, 3, 50)}
flags.DEFINE_enum("model", "mnist", list(MODELS), "The model timed: mnist, the conditional MNIST DCGAN at 28x28x1; "
                  "64 and 128, the unconditional image-folder DCGAN at 64x64x3 and 128x128x3 (main.py's size and "
                  "width flags apply).")
flags.DEFINE_integer("steps", None, "Timed training steps (default: 60 for --model mnist, 30 for 64, 10 for 128).",
                     lower_bound=1)
flags.DEFINE_integer("warmup", None, "Untimed steps first, tracing and allocator warm-up (default: 10, 5, 3).",
                     lower_bound=1)
flags.DEFINE_boolean("profile", False, "Also profile 20 training steps (5 for --model 64 and 128) in each precision "
                     "with tf.profiler, one op at a time (one inter-op thread), and print where the time goes by op "
                     "type.")
flags.DEFINE_integer("loop_steps", 400, "Steps of the training loop to time on real data (0: leave the loop "
                     "out). The default spans two rounds of samples and checkpoints at their default frequency.",
                     lower_bound=0)
flags.DEFINE_list("demo_clients", [], "Measure the demo under load instead: numbers of concurrent clients, one "
                  "level each, in this order (main.py's --from_savedmodel and --demo_port apply).")
flags.DEFINE_float("demo_seconds", 30, "With --demo_clients: seconds each level sends requests for.", lower_bound=1)
flags.DEFINE_integer("images_per_digit", 4, "With --demo_clients: images of each digit per request (the page's "
                     "default: 4).", lower_bound=1, upper_bound=16)
flags.register_validator("demo_clients", lambda levels: all(c.isdigit() and int(c) > 0 for c in levels),
                         "--demo_clients takes whole numbers of clients above 0, e.g. 1,8,32")
FLAGS = flags.FLAGS

MATMUL = 2048


def graph_flops(fn, *specs):
    """Floating-point operations of one call of fn, counted by TensorFlow from its graph's op shapes."""
    graph = tf.function(fn).get_concrete_function(*specs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def flops_per_image(fn, batch, *shapes):
    """graph_flops of fn on a batch of inputs of these shapes, per image: at the batch it runs at, as
    the conditional layers compute their label channels' share once per call."""
    return graph_flops(fn, *(tf.TensorSpec((batch, *shape)) for shape in shapes)) / batch


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


def fresh_run(precision, folder):
    """main.py's Run for a new run of --model in folder, computing in precision."""
    FLAGS.precision = precision
    FLAGS.checkpoint_dir, FLAGS.sample_dir, FLAGS.tensorboard_dir = (os.path.join(folder, name) for name in
                                                                      ("checkpoints", "samples", "logs"))
    if FLAGS.model == "mnist":
        return main.open_run(main.run_config())
    FLAGS.dataset, FLAGS.output_height, FLAGS.c_dim = "bench_folder", int(FLAGS.model), "3"
    config = main.run_config()
    config.update(y_dim=0, class_names=[])  # what a folder of colour pictures without classes settles
    return main.open_run(config)


def fresh_model(precision, folder):
    """A new DCGAN built as main.py builds it, its run's folders in folder."""
    return main.build_model(fresh_run(precision, folder).config)


def step_seconds(dcgan):
    """Seconds per training step after warm-up."""
    return seconds_per_call(training_step(dcgan), FLAGS.steps, FLAGS.warmup)


def input_shapes(dcgan):
    """The shapes of one training example: the image, and the one-hot label of a conditional model."""
    g = dcgan.generator
    return [(g.output_height, g.output_width, g.c_dim)] + ([(dcgan.y_dim,)] if dcgan.y_dim else [])


def training_step(dcgan):
    """One training step as main.py runs it: through tf.distribute (the default strategy: one device)
    on a tf.data stream, with a host read."""
    n = FLAGS.batch_size
    batch = [tf.random.uniform((n, *input_shapes(dcgan)[0]))]
    if dcgan.y_dim:
        batch.append(tf.one_hot(tf.random.uniform((n,), 0, dcgan.y_dim, tf.int32), dcgan.y_dim))
    one = tf.data.Dataset.from_tensors(tuple(batch) if dcgan.y_dim else batch[0]).repeat()
    batches, step = distribute.distributed_step(tf.distribute.get_strategy(), dcgan.train_step, lambda share: one, n)
    return lambda: float(step(next(batches), 0)[0]["d_loss"])


def op_seconds(fn, calls):
    """{op type: seconds per call of fn} from a tf.profiler trace of calls calls (after a warm-up)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    for _ in range(5):  # tracing and warm-up, not profiled
        fn()
    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        for _ in range(calls):
            fn()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    seconds = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):  # the executor's threads; their events are ops ("name:Type")
                for event in line.events:
                    name = names[event.metadata_id]
                    if ":" in name and not name.endswith(":Process"):  # ':Process' spans a whole function
                        seconds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12 / calls
    return seconds


def profile_rows(precision, seconds, step_flops, ceiling):
    """Where a step's time goes: the convolutions and matmuls (nearly all FLOPs) and everything else."""
    total = sum(seconds.values())
    dense = sum(s for op, s in seconds.items() if "Conv2D" in op or "MatMul" in op)
    rows = [(f"{precision}: profile, ops of one step", f"{1000 * total:.0f} ms; convolutions and matmuls {1000 * dense:.0f} ms "
                                         f"({100 * dense / total:.0f} %), at {step_flops / dense / 1e9:.0f} GFLOP/s = "
                                         f"{100 * step_flops / dense / 1e9 / ceiling:.0f} % of the ceiling")]
    rows += [(f"  {op}", f"{1000 * s:.1f} ms ({100 * s / total:.1f} %)") for op, s in seconds.most_common(12)]
    return rows


def loop_speed(precision, data, folder):
    """The training loop on data for --loop_steps steps of a new run: its steps/s after the first,
    and the share of that time it spent in the training step."""
    run = fresh_run(precision, folder)
    dcgan = main.build_model(run.config)
    return train.train(dcgan, checkpoint_manager(dcgan, run.checkpoints), run, data, tf.distribute.get_strategy(),
                       FLAGS.epoch, FLAGS.sample_freq, FLAGS.ckpt_freq)


def generation_seconds(dcgan):
    """Seconds per call of the SavedModel's serving signature at --model's large batch and at batch 1."""
    with tempfile.TemporaryDirectory() as folder:
        serve = tf.saved_model.load(export_savedmodel(dcgan, os.path.join(folder, "1"))).signatures["serving_default"]

        def generate(size):
            inputs = {"z": tf.random.uniform((size, dcgan.z_dim), -1, 1)}
            if dcgan.y_dim:
                inputs["label"] = tf.random.uniform((size,), 0, dcgan.y_dim, tf.int32)
            return lambda: serve(**inputs)["images"].numpy()
        return seconds_per_call(generate(MODELS[FLAGS.model][2]), 5, 2), seconds_per_call(generate(1), 50, 5)


def loop_data():
    """The real training data the loop runs on (--loop_steps batches), or (None, why not)."""
    if not FLAGS.loop_steps:
        return None, "--loop_steps 0"
    if FLAGS.model != "mnist":
        return None, "the loop is timed on MNIST, --model mnist"
    FLAGS.epoch, FLAGS.train_size = 1, FLAGS.batch_size * FLAGS.loop_steps
    try:
        return main.load_training_data(main.run_config()), None
    except (utils.DCGANError, OSError) as e:
        return None, str(e)


def measure(precision, step_flops, g_flops, ceiling, data):
    with tempfile.TemporaryDirectory() as folder:
        dcgan = fresh_model(precision, os.path.join(folder, "step"))
        step_s = step_seconds(dcgan)
        batch_s, latency_s = generation_seconds(dcgan)
        loop, in_step = loop_speed(precision, data, os.path.join(folder, "loop")) if data else (None, None)
        other_form_s = other_form_step_seconds(precision, os.path.join(folder, "other_form"))
    n, large = FLAGS.batch_size, MODELS[FLAGS.model][2]
    return {"samples_per_s": round(n / step_s, 1), "iter_per_s": round(1 / step_s, 3),
            "deconvolutions_in_phases": deconvolutions_in_phases(precision),
            "iter_per_s_other_deconvolution_form": round(1 / other_form_s, 3),
            "achieved_gflops": round(step_flops / step_s / 1e9, 1),
            "share_of_ceiling": round(step_flops / step_s / 1e9 / ceiling, 3),
            "loop_iter_per_s": loop and round(loop, 3), "loop_share_of_step": loop and round(loop * step_s, 3),
            "loop_time_in_step": in_step and round(in_step, 3),
            "generate_batch": large, "generate_images_per_s": round(large / batch_s, 1),
            "generate_gflops": round(large * g_flops / batch_s / 1e9, 1),
            "generate_share_of_ceiling": round(large * g_flops / batch_s / 1e9 / ceiling, 3),
            "generate_latency_ms_batch1": round(1000 * latency_s, 2)}


def deconvolutions_in_phases(precision):
    """Whether the deconvolutions compute in phases in precision (ops.Deconv2D), rather than transposed."""
    return keras.DTypePolicy(precision).compute_dtype in ops.PHASE_DTYPES


def other_form_step_seconds(precision, folder):
    """Seconds a training step takes with its deconvolutions in the form precision does not use (in phases
    or transposed): shows whether the form chosen is the faster on this machine."""
    phase_dtypes = ops.PHASE_DTYPES
    ops.PHASE_DTYPES = phase_dtypes ^ {keras.DTypePolicy(precision).compute_dtype}
    try:
        return step_seconds(fresh_model(precision, folder))
    finally:
        ops.PHASE_DTYPES = phase_dtypes


def table(result, data_note):
    """The benchmark's rows (name, value) for people."""
    flags_text = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in result["cpu_flags"].items())
    n = result["batch"]
    image = "x".join(map(str, result["image"]))
    rows = [("CPU", f"{result['cpu']} ({flags_text}), {result['threads']} threads, oneDNN "
                    f"{'on' if result['onednn'] else 'off'}"),
            ("model", f"--model {result['model']}: {'conditional' if result['conditional'] else 'unconditional'}, "
                      f"{image} images"),
            ("fp32 matmul ceiling", f"{result['matmul_ceiling_gflops']:.1f} GFLOP/s ({MATMUL}x{MATMUL} matmuls)"),
            ("FLOPs", f"{result['flops_per_iter'] / 1e9:.2f} GFLOP a training step; forward per image: "
                      f"G {result['g_forward_flops_per_image'] / 1e6:.1f} MFLOP, "
                      f"D {result['d_forward_flops_per_image'] / 1e6:.1f} MFLOP")]
    for precision, r in result["precisions"].items():
        loop = (f"{r['loop_iter_per_s']:.2f} steps/s = {100 * r['loop_share_of_step']:.1f} % of the bare step's; "
                f"{100 * r['loop_time_in_step']:.1f} % of its time in the step"
                if r["loop_iter_per_s"] else f"not measured ({data_note})")
        versus = r["samples_per_s"] / result["precisions"]["float32"]["samples_per_s"]
        rows += [(f"{precision}: training step, batch {n}", f"{r['iter_per_s']:.2f} steps/s, "
                                                           f"{r['samples_per_s']:.1f} samples/s"
                                                           + (f" = {versus:.2f}x float32's" if precision != "float32" else "")),
                 ("  achieved", f"{r['achieved_gflops']:.1f} GFLOP/s = {100 * r['share_of_ceiling']:.0f} % of the "
                                f"fp32 ceiling"),
                 (f"  same, deconvolutions {'transposed' if r['deconvolutions_in_phases'] else 'in phases'}",
                  f"{r['iter_per_s_other_deconvolution_form']:.2f} steps/s"),
                 (f"  main.py's loop, {result['loop_steps']} steps", loop),
                 (f"  generation (SavedModel), batch {r['generate_batch']}",
                  f"{r['generate_images_per_s']:.0f} images/s = {r['generate_gflops']:.1f} GFLOP/s = "
                  f"{100 * r['generate_share_of_ceiling']:.0f} % of the fp32 ceiling"),
                 ("  generation (SavedModel), batch 1", f"{r['generate_latency_ms_batch1']:.2f} ms")]
    rows += [(f"{precision}", f"not measured: {why}") for precision, why in result["not_measured"].items()]
    return rows


def bench(_):
    logging.set_verbosity(logging.ERROR)  # no notes from the SavedModel writer nor the FLOP counter
    if FLAGS.demo_clients:
        return loadtest.load_table(FLAGS.from_savedmodel, [int(c) for c in FLAGS.demo_clients], FLAGS.demo_seconds,
                                   FLAGS.images_per_digit, FLAGS.demo_port)
    if FLAGS.seed is None:
        FLAGS.seed = 0
    FLAGS.steps, FLAGS.warmup = FLAGS.steps or MODELS[FLAGS.model][0], FLAGS.warmup or MODELS[FLAGS.model][1]
    # The models timed here compute in the precision asked, whatever an earlier record says.
    record, FLAGS.speed_record = FLAGS.speed_record, ""
    if FLAGS.profile:  # ops one at a time, so that their durations add up to the step's
        tf.config.threading.set_inter_op_parallelism_threads(1)
    missing = {p: distribute.missing_hardware(p) for p in distribute.PRECISIONS if p != "float32"}
    precisions = ["float32"] + [p for p, lacks in missing.items() if not lacks]
    not_measured = {p: f"needs {lacks}" for p, lacks in missing.items() if lacks}
    data, data_note = loop_data()
    n = FLAGS.batch_size
    with tempfile.TemporaryDirectory() as folder:
        dcgan = fresh_model("float32", folder)
    inputs, labels = input_shapes(dcgan), [(dcgan.y_dim,)] if dcgan.y_dim else []
    specs = tuple(tf.TensorSpec((n, *shape)) for shape in inputs)
    step_flops = graph_flops(dcgan.train_step, specs if dcgan.y_dim else specs[0])
    g_flops = flops_per_image(dcgan.generator, n, (dcgan.z_dim,), *labels)
    d_flops = flops_per_image(dcgan.discriminator, n, *inputs)
    generate_flops = flops_per_image(dcgan.generator, MODELS[FLAGS.model][2], (dcgan.z_dim,), *labels)
    ceiling = matmul_ceiling()
    result = {
        "impl": "keras-tf", "model": FLAGS.model, "image": list(inputs[0]), "conditional": bool(dcgan.y_dim),
        "tensorflow": tf.__version__, "keras": keras.__version__, "cpu": utils.cpu_model(),
        "cpu_flags": utils.cpu_flags(), "threads": os.cpu_count(), "batch": n, "steps": FLAGS.steps,
        "loop_steps": FLAGS.loop_steps, "onednn": os.environ["TF_ENABLE_ONEDNN_OPTS"] != "0",
        "matmul_ceiling_gflops": round(ceiling, 1), "flops_per_iter": step_flops,
        "g_forward_flops_per_image": g_flops, "d_forward_flops_per_image": d_flops,
        "precisions": {}, "not_measured": not_measured,
    }
    for precision in precisions:
        try:
            result["precisions"][precision] = measure(precision, step_flops, generate_flops, ceiling, data)
        except Exception as e:  # a 16-bit format failing on hardware not seen before must not take float32's figures
            if precision == "float32":
                raise
            not_measured[precision] = f"failed ({type(e).__name__}: {utils.first_line(e)})"
    distribute.record_speeds(record, FLAGS.model, {p: r["iter_per_s"] for p, r in result["precisions"].items()},
                             time.strftime("%Y-%m-%d"))
    rows = table(result, data_note)
    for precision in result["precisions"] if FLAGS.profile else ():
        with tempfile.TemporaryDirectory() as folder:
            profiled = training_step(fresh_model(precision, folder))
            rows += profile_rows(precision, op_seconds(profiled, 20 if FLAGS.model == "mnist" else 5), step_flops,
                                 ceiling)
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    utils.drop_tensorflow_notes(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    app.run(bench)
