"""tf.distribute for training: which strategy, which worker writes, and the step every replica runs.

--strategy auto uses the default device, or MirroredStrategy when several GPUs are visible; mirrored
splits each global batch over this machine's GPUs (or --logical_cpus CPU devices); multi_worker over
the machines TF_CONFIG lists (MultiWorkerMirroredStrategy). Every path runs the one DCGAN.train_step
through strategy.run in the loop of main.py (model.fit fails under MultiWorkerMirroredStrategy).
"""
import json
import os
import subprocess
import sys

from utils import DCGANError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


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


def distributed_step(strategy, train_step, dataset):
    """(iterator over the global batches of dataset split among the replicas, step function). The step
    function takes a batch and this process's stop request (a signal number, 0 for none) and returns
    the logs summed over replicas and the stop requests' sum (not 0: some worker was asked to stop), so
    that every worker sees the same losses and stops at the same step."""
    import tensorflow as tf
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = iter(strategy.experimental_distribute_dataset(dataset.with_options(options)))

    @tf.function(autograph=False)
    def step(batch, stop):
        logs = strategy.run(train_step, args=(batch,))
        logs = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for name, value in logs.items()}
        stop = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(stop,)), axis=None)
        return logs, stop
    return batches, step
