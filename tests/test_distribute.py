"""tf.distribute: mirrored replicas compute what one device does; two workers on loopback train as one,
stop together on a signal to either, and resume from the chief's checkpoint."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import ROOT, TINY, TINY_FLAGS, TINY_RUN_ARGS, error_lines, run_main

pytestmark = [pytest.mark.xdist_group("distribute"), pytest.mark.full]

# Logical CPU devices must be set before TensorFlow starts, so this runs in a fresh process: the same
# seed, batches and model trained on one device and on two mirrored replicas with synchronised batch norm.
MIRRORED_VS_ONE_DEVICE = textwrap.dedent(f"""
    import sys, numpy as np, keras
    sys.path.insert(0, {ROOT!r})
    import data, distribute
    from model import DCGAN
    strategies = {{"mirrored": distribute.make_strategy("mirrored", logical_cpus=2),
                   "one": distribute.make_strategy("one_device")}}
    images = np.random.default_rng(0).integers(0, 256, (128, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(128) % 10
    for name, strategy in strategies.items():
        keras.utils.set_random_seed(0)
        with strategy.scope():
            dcgan = DCGAN(**{TINY!r}, seed=0, ema_decay=0.9, sync_batch_norm=True)
            dcgan.compile(keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5))
        batches, step = distribute.distributed_step(
            strategy, dcgan.train_step, lambda share: data.shuffled_batches(images, labels, 32, 10, 0, share=share), 32)
        losses = [[float(v) for v in step(next(batches), 0)[0].values()] for _ in range(4)]
        print(name, strategy.num_replicas_in_sync, losses, float(np.sum(dcgan.sample(dcgan.sample_z(4), [1, 2, 3, 4]))))
""")


def test_mirrored_replicas_give_one_devices_losses():
    proc = subprocess.run([sys.executable, "-c", MIRRORED_VS_ONE_DEVICE], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    rows = {line.split()[0]: line.split(maxsplit=2)[2] for line in proc.stdout.splitlines()
            if line.startswith(("one ", "mirrored "))}
    assert proc.returncode == 0 and set(rows) == {"one", "mirrored"}, proc.stdout + proc.stderr
    assert proc.stdout.split("mirrored ")[1].startswith("2 ")  # two replicas, 16 images each
    one, mirrored = (eval(rows[k].rsplit(" ", 1)[0]) for k in ("one", "mirrored"))
    np.testing.assert_allclose(mirrored, one, rtol=1e-4, atol=1e-6)
    assert float(rows["mirrored"].rsplit(" ", 1)[1]) == pytest.approx(float(rows["one"].rsplit(" ", 1)[1]), rel=1e-4)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(args, cwd, ports):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return [subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1",
                                      TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
            for i in range(len(ports))]


def trained_state(prefix):
    """A checkpoint's generator weights (the average's sources come first, trainable then statistics),
    their average and both optimisers' state. Batch-norm moving statistics are left out: every replica
    keeps its own batches' (the chief's are saved and sampled with)."""
    import tensorflow as tf
    names = [name for name, _ in tf.train.list_variables(prefix)]
    trainable = sum(name.startswith("average/trainable/") for name in names)
    kept = ("average/trainable/", "d_optimizer/", "g_optimizer/", *(f"average/sources/{i}/" for i in range(trainable)))
    return {name: tf.train.load_variable(prefix, name) for name in names if name.startswith(kept)}


@pytest.mark.slow
def test_two_workers_train_as_one_stop_together_and_resume(tmp_path, data_dir):
    import tensorflow as tf
    run = "mnist_32_28_28"
    args = [*TINY_RUN_ARGS, f"--data_dir={data_dir}", "--train", "--strategy=multi_worker", "--epoch=4",
            "--ckpt_freq=5", "--sample_freq=100", "--worker_wait=120"]
    chief_dir, scratch = tmp_path / "checkpoints" / run, tmp_path / "checkpoints" / run / ".worker1"
    workers = start_workers(args, tmp_path, free_ports(2))
    # Preempt worker 1 once the chief has saved a checkpoint: both must save the same step and stop.
    deadline = time.monotonic() + 240
    while not (chief_dir / "checkpoint").exists() and workers[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the file, not timing anything
    workers[1].send_signal(signal.SIGTERM)
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [128 + signal.SIGTERM] * 2, outputs
    assert "stopped by a signal to another worker" in outputs[0] and "stopped by SIGTERM" in outputs[1]
    chief, other = tf.train.latest_checkpoint(str(chief_dir)), tf.train.latest_checkpoint(str(scratch))
    assert chief and os.path.basename(chief) == os.path.basename(other)  # the same step
    stopped_at = int(chief.rsplit("-", 1)[1])
    assert 0 < stopped_at < 40
    ours, theirs = trained_state(chief), trained_state(other)
    assert len(ours) > 40 and ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])

    # The same command on both resumes from the chief's checkpoint and finishes.
    workers = start_workers(args, tmp_path, free_ports(2))
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert all(f"steps {stopped_at}..40" in out for out in outputs)
    assert os.path.basename(tf.train.latest_checkpoint(str(chief_dir))) == "ckpt-40"
    assert not scratch.exists()  # the other worker's copies are gone: the run's files are the chief's
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "data", "logs", "samples"]


def test_multi_worker_flags_errors_are_one_line(tmp_path, data_dir):
    base = ["--dataset=mnist", f"--data_dir={data_dir}", "--train", "--strategy=multi_worker", *TINY_FLAGS]
    env = os.environ.pop("TF_CONFIG", None)
    try:
        rc, out = run_main([*base, "--seed=1"], tmp_path)
        assert rc == 1 and error_lines(out) == ["Error: --strategy multi_worker needs TF_CONFIG (the cluster's "
                                                "addresses and this task's type and index; see the README)"], out
        os.environ["TF_CONFIG"] = '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}'
        rc, out = run_main([*base, "--seed=1"], tmp_path)
        assert rc == 1 and len(error_lines(out)) == 1 and "TF_CONFIG does not describe" in out, out
        rc, out = run_main(base, tmp_path)
        assert rc == 1 and error_lines(out) == ["Error: a new multi-worker run needs --seed: every worker must draw "
                                                "the same data order and z"], out
        # A worker that never comes: a clear line after --worker_wait, not a hang.
        port = free_ports(2)
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in port]},
                                              "task": {"type": "worker", "index": 0}})
        rc, out = run_main([*base, "--seed=1", "--worker_wait=2"], tmp_path, timeout=120)
        assert rc != 0 and "Error: not every worker in TF_CONFIG joined within 2 s" in out, out
    finally:
        os.environ.pop("TF_CONFIG", None)
        if env is not None:
            os.environ["TF_CONFIG"] = env


@pytest.mark.slow
def test_a_worker_killed_outright_ends_the_others_with_one_line_and_a_restart_resumes(tmp_path, data_dir):
    import tensorflow as tf
    run = "mnist_32_28_28"
    args = [*TINY_RUN_ARGS, f"--data_dir={data_dir}", "--train", "--strategy=multi_worker", "--epoch=4",
            "--ckpt_freq=5", "--sample_freq=100", "--worker_wait=120"]
    chief_dir = tmp_path / "checkpoints" / run
    ports = free_ports(2)
    workers = start_workers(args, tmp_path, ports)
    deadline = time.monotonic() + 240
    while not (chief_dir / "checkpoint").exists() and workers[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the file, not timing anything
    workers[1].kill()  # kill -9: a machine lost, nothing of it runs
    out = workers[0].communicate(timeout=300)[0]
    workers[1].communicate(timeout=60)
    assert workers[0].returncode == 75, out
    last = error_lines(out)[-1]
    latest = tf.train.latest_checkpoint(str(chief_dir))
    assert re.fullmatch(rf"Error: 127\.0\.0\.1:{ports[1]} \(worker 1\) is gone: the collectives of step \d+ failed "
                        rf"\(\w+Error\)\. The last checkpoint is checkpoints/{run}/ckpt-\d+; start every worker again "
                        "with the same command to resume from it", last), out
    assert f"The last checkpoint is {os.path.relpath(latest, tmp_path)};" in last
    assert "Traceback" not in out
    stopped_at = int(latest.rsplit("-", 1)[1])

    workers = start_workers(args, tmp_path, free_ports(2))
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert all(f"steps {stopped_at}..40" in out for out in outputs)
    assert os.path.basename(tf.train.latest_checkpoint(str(chief_dir))) == "ckpt-40"
