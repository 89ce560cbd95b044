"""Devices and tf.distribute: which number format the hardware here makes worth it, which strategy,
which worker writes, and the step every replica runs.

--strategy auto uses the default device, or MirroredStrategy when several GPUs are visible; mirrored
splits each global batch over this machine's GPUs (or --logical_cpus CPU devices); multi_worker over
the machines TF_CONFIG lists (MultiWorkerMirroredStrategy). Every path runs the one DCGAN.train_step
through strategy.run in the loop of train.py (model.fit fails under MultiWorkerMirroredStrategy).
"""
import json
import os
import re
import subprocess
import sys

from utils import DCGANError, cpu_flags, cpu_model, has_bfloat16_cpu, isa_cap_hiding, onednn_cap, published

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def crashing_cap(precision):
    """The ONEDNN_MAX_CPU_ISA under which precision's kernels would crash here (no GPU takes them), or None."""
    import tensorflow as tf
    return None if tf.config.list_physical_devices("GPU") else isa_cap_hiding(precision)


def missing_hardware(precision):
    """What precision lacks here to be faster than float32, or to run at all (None when nothing)."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    cap = crashing_cap(precision)
    if cap:
        return f"oneDNN free to use this CPU's 16-bit instructions, which ONEDNN_MAX_CPU_ISA={cap} forbids"
    if precision == "mixed_bfloat16":
        ampere = [gpu for gpu in gpus
                  if tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) >= (8, 0)]
        if not (ampere if gpus else has_bfloat16_cpu()):
            return "a GPU from Ampere on" if gpus else f"a CPU with AVX-512 BF16 or AMX, which {cpu_model()} lacks"
    if precision == "mixed_float16" and not gpus:
        return "a GPU"
    return None


def usable_precision(precision, speeds=None, model=None):
    """precision, or float32 with a warning for mixed_bfloat16 where no device here has bfloat16
    arithmetic, for either 16-bit format where ONEDNN_MAX_CPU_ISA hides the CPU's instructions for it
    (TF's kernels crash then), and for one that bench.py measured slower than float32 on this machine
    (speeds: the path of its record; model: the one to look up there first); mixed_float16 runs anywhere
    else (on a CPU, slowly, with a warning: to check a GPU setting)."""
    slower = speeds and precision != "float32" and measured_slower(speeds, precision, model)
    if slower:
        print(f"Warning: --precision {precision} measured slower than float32 on this machine ({slower}), "
              "so this runs in float32", file=sys.stderr)
        return "float32"
    missing = missing_hardware(precision)
    if crashing_cap(precision):
        print(f"Warning: --precision {precision} needs {missing}; TF's kernels would crash, so this runs in float32",
              file=sys.stderr)
        return "float32"
    if missing and precision == "mixed_bfloat16":
        print(f"Warning: --precision mixed_bfloat16 needs {missing}; emulated it would be many times slower, "
              "so this runs in float32", file=sys.stderr)
        return "float32"
    if missing:
        print(f"Warning: --precision {precision} is meant for {missing}: here it runs, but slower than float32",
              file=sys.stderr)
    return precision


def machine_key():
    """What decides which kernels a precision gets here: the CPU and its flags, TensorFlow's version, oneDNN
    on or off and capped or not."""
    import tensorflow as tf
    flags = [name for name, present in cpu_flags().items() if present]
    return (f"{cpu_model()} [{' '.join(flags)}] TF {tf.__version__} oneDNN "
            f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')} cap {onednn_cap() or 'none'}")


def read_speeds(path):
    """bench.py's record at path: {machine: {model: {precision: steps/s, 'date': ...}}}; {} when absent or unreadable."""
    try:
        with open(path) as f:
            record = json.load(f)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def record_speeds(path, model, steps_per_s, date):
    """Adds this machine's training-step speed of model in each precision (steps/s) to the record at path."""
    record = read_speeds(path)
    record.setdefault(machine_key(), {})[model] = {**steps_per_s, "date": date}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with published(path) as tmp, open(tmp, "w") as f:  # in the order measured: the first is the fallback
        json.dump(record, f, indent=1)


def measured_slower(path, precision, model=None):
    """How bench.py measured precision slower than float32 on this machine ('bench.py --model M, date: A
    against B steps/s'), from model's figures or else any model's; None when it was not, or not measured."""
    measured = read_speeds(path).get(machine_key(), {})
    for name in sorted(measured, key=lambda name: name != model):
        figures = measured[name]
        if isinstance(figures, dict) and precision in figures and "float32" in figures:
            if figures[precision] < figures["float32"]:
                return (f"bench.py --model {name}, {figures.get('date', '?')}: {figures[precision]:.2f} against "
                        f"{figures['float32']:.2f} steps/s")
            return None
    return None


def cluster_from_tf_config():
    """TF_CONFIG's cluster and task, checked: one line for what is wrong with it."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise DCGANError("--strategy multi_worker needs TF_CONFIG (the cluster's addresses and this task's "
                         "type and index; see the README)")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(members):
            raise IndexError(f"task index {task['index']} with {len(members)} {task['type']} addresses")
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise DCGANError(f"TF_CONFIG does not describe a cluster and this task: {type(e).__name__} {e}") from None
    return cluster, task


def make_strategy(name, logical_cpus=1, worker_wait=300):
    """The tf.distribute strategy --strategy names. Multi-worker start-up waits at most worker_wait
    seconds for every worker to join, then ends the process with one line instead of hanging."""
    import tensorflow as tf
    if name == "multi_worker":  # first: listing devices would start the runtime before the cluster is known
        cluster_from_tf_config()
        with bounded_wait(worker_wait, "not every worker in TF_CONFIG joined"):
            return tf.distribute.MultiWorkerMirroredStrategy()
    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy(devices)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


class bounded_wait:
    """A block that may wait on other machines, ended after seconds with one line. TF's cluster start-up
    blocks in C++ holding the GIL and ignores SIGTERM, so a separate watchdog process kills this one."""

    WATCHDOG = ("import os, sys, time; time.sleep(float(sys.argv[1])); print(sys.argv[2], file=sys.stderr, flush=True); "
                "os.kill(int(sys.argv[3]), 9)")

    def __init__(self, seconds, what):
        self.args = [sys.executable, "-c", self.WATCHDOG, str(seconds),
                     f"Error: {what} within {seconds} s (raise --worker_wait, or check the addresses)", str(os.getpid())]

    def __enter__(self):
        self.watchdog = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)

    def __exit__(self, *exc):
        self.watchdog.kill()
        self.watchdog.wait()


# A worker lost for good (killed, its machine gone): the exit code of the workers that see it, so that
# a scheduler can tell it from a bug (1) and from a preemption (143), and restart the job.
PEER_LOST_EXIT_CODE = 75


class PeerLost(DCGANError):
    """A collective failed because another worker went away; exits with PEER_LOST_EXIT_CODE."""

    exit_code = PEER_LOST_EXIT_CODE


def is_peer_loss(error, strategy):
    """Whether a TensorFlow error is a collective that failed because a worker of the cluster went away."""
    import tensorflow as tf
    resolver = getattr(strategy, "cluster_resolver", None)
    workers = sum(map(len, resolver.cluster_spec().as_dict().values())) if resolver and resolver.task_type else 1
    return workers > 1 and isinstance(error, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError))


def lost_workers(error, strategy):
    """The workers other than this one that error names ('127.0.0.1:2223 (worker 1)'), from TF_CONFIG's
    addresses; all the others when it names none (a connection reset says only that a peer is gone)."""
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    me = (resolver.task_type, resolver.task_id)
    named = {(job, int(task)) for job, task in re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", str(error))}
    others = [(job, i) for job, addresses in cluster.items() for i in range(len(addresses)) if (job, i) != me]
    gone = [peer for peer in others if peer in named] or others
    return [f"{cluster[job][i]} ({job} {i})" for job, i in gone]


def is_chief(strategy):
    """Whether this process writes the run's files: the only one, or the cluster's chief (else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)


def worker_folder(path, strategy):
    """Where this process writes what path holds: path itself on the chief, a scratch folder inside it
    on other workers (they must save checkpoints too, TF's multi-worker guide says, then drop them)."""
    if is_chief(strategy):
        return path
    return os.path.join(path, f".worker{strategy.cluster_resolver.task_id}")


def distributed_step(strategy, train_step, batches_of, batch_size):
    """(iterator over the global batches of batch_size split among the replicas, step function). batches_of(share)
    gives the dataset of the share (i, n) of every global batch, its i-th of n equal parts: each worker reads its
    own part alone (data.shuffled_batches's share), and this machine's replicas take its consecutive slices in
    turn, as the whole batch is split on one machine. The step function takes a batch and this process's stop
    request (a signal number, 0 for none) and returns the logs summed over replicas and the stop requests' sum
    (not 0: some worker was asked to stop), so that every worker sees the same losses and stops at the same step."""
    import tensorflow as tf
    per_replica = batch_size // strategy.num_replicas_in_sync

    def this_workers(context):
        part = batches_of((context.input_pipeline_id, context.num_input_pipelines))
        return part if per_replica * context.num_input_pipelines == batch_size else \
            part.unbatch().batch(per_replica, drop_remainder=True)
    batches = iter(strategy.distribute_datasets_from_function(this_workers))

    @tf.function(autograph=False)
    def step(batch, stop):
        logs = strategy.run(train_step, args=(batch,))
        logs = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for name, value in logs.items()}
        stop = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(stop,)), axis=None)
        return logs, stop
    return batches, step


def local_batch(strategy, batch):
    """The first replica's part of a distributed batch (the whole batch on one device)."""
    import tensorflow as tf
    return tf.nest.map_structure(lambda part: strategy.experimental_local_results(part)[0], batch)
