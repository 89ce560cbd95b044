"""The training loop: batches through the one DCGAN.train_step (under any tf.distribute strategy),
and around it the run's sample grids, TensorBoard logs, checkpoints, evaluation while training, the
progress line, and stops on a signal, a non-finite loss or a full disk, each saved and said in one line.

    train(dcgan, manager, run, (images, labels), tf.distribute.get_strategy(), epochs=1)
"""
import os
import signal
import sys
import time

import numpy as np

import distribute
from data import shuffled_batches
from evaluate import MANIFOLD
from run import save_best, save_checkpoint
from utils import DCGANError, Progress, Stopped, StopSignals, check_memory, first_line, tf_writing
from visualize import fixed_samples, save_samples, write_plots


def train(dcgan, manager, run, data, strategy, epochs, sample_every=200, checkpoint_every=200, eval_every=0,
          eval_reference=None, eval_n=1000, image_summaries=False, best_manager=None):
    """Trains the run to `epochs` epochs of data (images, labels), checkpointing through manager; returns
    the loop's steps/s after its first step and the share of that time spent in the training step (None
    when there was nothing to train). With several workers every one runs this; only the chief writes the
    run's files, and a stop (signal, non-finite loss) on any worker stops all at the same step.

    Every sample_every steps a sample grid (with image_summaries also in TensorBoard); every eval_every
    steps the figures of eval_n images per class scored against eval_reference (an evaluate.Reference
    or a folder_eval.FolderReference, given to the chief only); with best_manager (run.best_manager with its
    record), the step of the lowest FID so far against that reference (its key) is kept there too (run.save_best)."""
    import tensorflow as tf
    batch_size = run.config["batch_size"]
    if not tf.config.list_physical_devices("GPU"):  # a GPU's memory is its own, and TF names it when short
        check_memory(batch_size * dcgan.step_bytes_per_image(),
                     f"a training step at --batch_size {batch_size} needs about", "use a smaller --batch_size")
    images, labels = data
    steps_per_epoch = len(images) // batch_size
    total = epochs * steps_per_epoch
    start = dcgan.trained_steps()
    chief = distribute.is_chief(strategy)
    if chief:
        run.save_config()
    if start >= total:
        print(f"Run '{run.name}' already trained {start} steps ({epochs} epoch{'s' * (epochs > 1)}); "
              "raise --epoch to go on.")
        return
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise DCGANError(f"--batch_size {batch_size} does not split evenly over {replicas} replicas")
    print(f"Training on {len(images)} images, {steps_per_epoch} steps per epoch, steps {start}..{total}"
          + (f", {replicas} replicas of {batch_size // replicas} images" if replicas > 1 else ""))
    batches, train_step = distribute.distributed_step(
        strategy, dcgan.train_step,
        lambda share: shuffled_batches(images, labels, batch_size, dcgan.y_dim, run.config["seed"], start,
                                       run.config.get("balance_classes", False), share), batch_size)
    sample_z, sample_y = fixed_samples(run.config, dcgan.z_dim)
    if chief:
        os.makedirs(run.samples, exist_ok=True)
    progress = Progress(total, start)
    quality = ""
    write_scalars = scalar_writer()
    # Where the loop's time goes: waiting for input (does the pipeline keep up?) and in the training
    # step itself (the rest is logging, samples and checkpoints), the latter from the second step on.
    waited, stepping, started = 0.0, 0.0, time.perf_counter()
    # Signals are caught before the events file appears, so whoever sees it can stop the run cleanly.
    try:
        with StopSignals() as stop, summary_writer(run, chief).as_default():
            for step in range(start + 1, total + 1):
                before = time.perf_counter()
                batch = next(batches)
                fetched = time.perf_counter()
                waited += fetched - before
                step_logs, stop_request = train_step(batch, tf.constant(int(stop.signal or 0)))
                logs, stop_request = {k: float(v) for k, v in step_logs.items()}, int(stop_request)
                stepping += (time.perf_counter() - fetched) if step > start + 1 else 0.0
                if not all(np.isfinite(list(logs.values()))):
                    kept = manager.latest_checkpoint or "none was written yet"
                    raise DCGANError(f"non-finite loss at step {step} ({format_logs(logs)}); nothing of this step "
                                     f"was saved, the last good checkpoint is kept: {kept}")
                write_scalars(step_logs, tf.constant(step, tf.int64))
                epoch, batch_index = divmod(step - 1, steps_per_epoch)
                if eval_reference and (step % eval_every == 0 or step == total):
                    result = eval_reference.score(dcgan, eval_n)
                    quality = log_quality(result, step)
                    if best_manager and save_best(best_manager, step, result["fid"], eval_reference.key):
                        quality += " (best so far: kept)"
                progress.update(step, f"epoch {epoch + 1}/{epochs} {format_logs(logs)}{quality}",
                                force=bool(quality) and step % eval_every == 0)
                if chief and (step % sample_every == 0 or step == total):
                    try:
                        write_samples(dcgan, run, sample_z, sample_y, distribute.local_batch(strategy, batch), step,
                                      f"train_{epoch:02d}_{batch_index:04d}.png", image_summaries)
                    except OSError as e:  # a picture is not worth the training: the checkpoints decide
                        progress.interject(f"Warning: step {step}'s sample grid was not written ({e}); "
                                           "training goes on")
                if step % checkpoint_every == 0 or step == total or stop_request:
                    save_checkpoint(manager, step)
                if stop_request:
                    progress.close()
                    by = stop.signal.name if stop.signal else "a signal to another worker"
                    raise Stopped(stop.signal or signal.SIGTERM,
                                  f"stopped by {by} at step {step}; saved {manager.latest_checkpoint}. "
                                  f"{waiting_share(waited, started)}. Run the same command to resume.")
    except tf.errors.OpError as e:
        if distribute.is_peer_loss(e, strategy):
            progress.close()
            latest = tf.train.latest_checkpoint(run.checkpoints) or "none was written yet"
            raise distribute.PeerLost(
                f"{' or '.join(distribute.lost_workers(e, strategy))} is gone: the collectives of step {step} "
                f"failed ({type(e).__name__}). The last checkpoint is {latest}; start every worker again with the "
                "same command to resume from it") from None
        if run.logs not in str(e):
            raise
        # A write to the logs failed (a full disk), not the training step (it writes nothing): the step is whole.
        if manager.latest_checkpoint != os.path.join(manager.directory, f"ckpt-{step}"):
            save_checkpoint(manager, step)
        raise DCGANError(f"cannot write TensorBoard logs in {run.logs} at step {step} ({first_line(e)}); saved "
                         f"{manager.latest_checkpoint}") from None
    steps_per_s = progress.rate(total)
    in_step = stepping * steps_per_s / max(total - start - 1, 1)
    progress.close()
    written = f"Checkpoint {manager.latest_checkpoint}, samples in {run.samples}" if chief else \
        f"The chief wrote the run's checkpoint and samples in {run.checkpoints}, {run.samples}"
    if total - start > 1:
        print(f"Done: {total} steps ({steps_per_s:.2f} steps/s after the first). {written}. "
              f"{waiting_share(waited, started)}, the training step {100 * in_step:.1f} % after the first.")
    else:  # the first step, which traces the graph, has no rate to tell
        print(f"Done: {total} steps. {written}.")
    if chief:
        try:
            write_plots(dcgan, run, distribute.local_batch(strategy, batch))
        except OSError as e:
            print(f"Warning: the loss curves and real vs fake figure were not written ({e})", file=sys.stderr)
    return steps_per_s, in_step


def summary_writer(run, chief):
    import tensorflow as tf
    if not chief:
        return tf.summary.create_noop_writer()
    with tf_writing(f"TensorBoard logs in {run.logs}"):
        return tf.summary.create_file_writer(run.logs)


def scalar_writer():
    """A function that writes a step's logs as TensorBoard scalars to the default writer, as one graph:
    eager tf.summary.scalar calls cost about 1 ms each, 2 % of a training step on a 2-core CPU."""
    import tensorflow as tf

    @tf.function
    def write(logs, step):
        for name, value in logs.items():
            tf.summary.scalar(name, value, step=step)
    return write


def log_quality(result, step):
    """Writes evaluation figures to TensorBoard; returns them as text for the progress line."""
    import tensorflow as tf
    for name in ("accuracy", "fid", "kid", "intra_fid", "min_diversity", *MANIFOLD, "min_class_recall", "class_tv"):
        if name in result:  # a folder's figures have no intra-class FID; an unconditional model's no accuracy
            tf.summary.scalar(f"eval/{name}", result[name], step=step)
    shown = [("acc", "accuracy", "{:.3f}"), ("FID", "fid", "{:.2f}"), ("intra-FID", "intra_fid", "{:.2f}"),
             ("P", "precision", "{:.2f}"), ("R", "recall", "{:.2f}"), ("mix TV", "class_tv", "{:.3f}")]
    return " |" + "".join(f" {label} {form.format(result[name])}" for label, name, form in shown if name in result)


def format_logs(logs):
    names = {"d_loss": "d_loss", "g_loss": "g_loss", "d_real": "D(x)", "d_fake": "D(G(z))"}
    return " ".join(f"{label} {logs[key]:.3f}" for key, label in names.items() if key in logs)


def write_samples(dcgan, run, z, labels, batch, step, filename, image_summaries=False):
    import tensorflow as tf
    real_x, real_y = batch if dcgan.y_dim else (batch, None)
    grid = save_samples(dcgan, run.config, z, labels, real_x, os.path.join(run.samples, filename))
    y = dcgan.one_hot(labels)
    tf.summary.histogram("z", z, step=step)
    tf.summary.histogram("d", tf.sigmoid(dcgan.discriminator(real_x, real_y, training=False)), step=step)
    tf.summary.histogram("d_", tf.sigmoid(dcgan.discriminator(dcgan.generator(z, y), y, training=False)),
                         step=step)
    if image_summaries and grid is not None:
        tf.summary.image("G", grid[None], step=step)


def waiting_share(waited, started):
    """The share of the loop's time spent waiting for input since started (does the pipeline keep up?)."""
    return f"Waiting for input took {100 * waited / (time.perf_counter() - started):.1f} % of the time"
