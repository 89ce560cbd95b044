"""Pictures of a trained generator and of its training.

`--visualize` writes what the original's visualize() did, chosen by --visualize_option:
  0  a grid of random samples;
  1  a grid per z dimension: along each row that dimension sweeps z's range, the rest of z fixed;
  2  GIFs, each sweeping one randomly chosen dimension in every image of a grid of random samples;
  3  a GIF per z dimension, sweeping it from z = 0;
  4  the sweeps of option 3 for every dimension, merged in one GIF.
Where an unconditional model's grid has a row per random z, a conditional one's has a row per class
(the same z across rows); conditional models also get a sheet with a row per class and z moving from
one random point to another along the row.

The sample grids of training and of `python main.py` (a row per z, a column per class), and at the
end of training and with --plot, the G and D losses (read back from the run's TensorBoard
logs, so that a resumed run's curve is whole) and real against generated images, as in the PyTorch
DCGAN tutorial.
"""
import functools
import glob
import os
import sys

import numpy as np

import utils
from data import CURVES, curve_x

STEPS = 16  # positions along a sweep or an interpolation
COLUMNS = 8  # random samples per row
RANDOM_DIMS = 10  # option 2's GIFs
CHUNK = 1024  # images per call to the generator
# What a sweep covers: uniform z its whole range, normal z two standard deviations either side.
Z_RANGES = {"uniform_signed": (-1.0, 1.0), "uniform_unsigned": (0.0, 1.0), "normal": (-2.0, 2.0)}


def visualize(sample, z_dim, z_dist, y_dim, option, folder, seed):
    """Writes option's files into folder and returns their paths.

    sample(z [N, z_dim], labels [N] or None) -> float images [N, H, W, C] in [0, 1]."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    values = np.linspace(*Z_RANGES[z_dist], STEPS, dtype=np.float32)
    rows = y_dim or COLUMNS
    labels = np.repeat(np.arange(y_dim), COLUMNS) if y_dim else None
    random_z = functools.partial(draw_random_z, rng, z_dim=z_dim, z_dist=z_dist)

    def random_grid_z():
        """z of a grid of random samples, rows x COLUMNS: a conditional model's rows share theirs."""
        return np.tile(random_z(COLUMNS), (rows, 1)) if y_dim else random_z(rows * COLUMNS)

    draw = functools.partial(grid, sample)

    written = []
    if option == 0:
        written.append(save_png(draw(random_grid_z(), labels, COLUMNS), folder, "random.png"))
    if option == 1:
        base = np.tile(random_z(1), (rows, 1)) if y_dim else random_z(rows)
        sweep_labels = np.repeat(np.arange(y_dim), STEPS) if y_dim else None
        for d in range(z_dim):
            z = np.repeat(base, STEPS, axis=0)
            z[:, d] = np.tile(values, rows)
            written.append(save_png(draw(z, sweep_labels, STEPS), folder, f"sweep_dim{d:03d}.png"))
    if option == 2:
        base = random_grid_z()
        for d in sorted(rng.choice(z_dim, min(RANDOM_DIMS, z_dim), replace=False)):
            frames = []
            for value in values:
                z = base.copy()
                z[:, d] = value
                frames.append(draw(z, labels, COLUMNS))
            written.append(save_gif(frames, folder, f"random_dim{d:03d}.gif"))
    if option == 3:
        class_labels = np.arange(y_dim) if y_dim else None
        for d in range(z_dim):
            z = np.zeros((STEPS, y_dim or 1, z_dim), np.float32)
            z[:, :, d] = values[:, None]
            frames = [draw(frame, class_labels, 1) for frame in z]
            written.append(save_gif(frames, folder, f"zero_dim{d:03d}.gif"))
    if option == 4:
        # One cell per dimension; a conditional model draws dimension d as class d mod y_dim.
        columns = int(np.ceil(np.sqrt(z_dim)))
        dim_labels = np.arange(z_dim) % y_dim if y_dim else None
        frames = []
        for value in values:
            z = np.zeros((z_dim, z_dim), np.float32)
            z[np.arange(z_dim), np.arange(z_dim)] = value
            frames.append(draw(z, dim_labels, columns))
        written.append(save_gif(frames, folder, "all_dims.gif"))
    if y_dim:
        a, b = random_z(2)
        t = np.linspace(0.0, 1.0, STEPS, dtype=np.float32)[:, None]
        z = np.tile((1 - t) * a + t * b, (y_dim, 1))
        written.append(save_png(draw(z, np.repeat(np.arange(y_dim), STEPS), STEPS), folder,
                                "classes_x_interpolation.png"))
    return written


def draw_random_z(rng, n, z_dim, z_dist):
    """n z of z_dist from a NumPy generator: float32 [n, z_dim]."""
    if z_dist == "normal":
        return rng.standard_normal((n, z_dim)).astype(np.float32)
    return rng.uniform(*Z_RANGES[z_dist], (n, z_dim)).astype(np.float32)


def grid(sample, z, labels, columns):
    """One image of the samples for z (and labels), filled row by row, columns wide."""
    images = np.concatenate([sample(z[i:i + CHUNK], None if labels is None else labels[i:i + CHUNK])
                             for i in range(0, len(z), CHUNK)])
    images = utils.padded(images, columns)
    return utils.make_grid(images, len(images) // columns, columns)


def numbered_grid(images, row_names, column_names, cell=56):
    """images [rows, columns, H, W, C] (floats in [0, 1]) as one RGB uint8 picture, each image scaled up to
    about cell pixels without blurring, the row names down its left and the column names along its top."""
    from PIL import Image, ImageDraw
    rows, columns, height, width = images.shape[:4]
    scale = max(1, cell // max(height, width))
    grid = utils.to_pil(utils.make_grid(images.reshape(rows * columns, *images.shape[2:]), rows, columns)).convert("RGB")
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    margin_left, margin_top = 8 + 7 * max(len(name) for name in row_names), 16
    picture = Image.new("RGB", (grid.width + margin_left, grid.height + margin_top), "white")
    picture.paste(grid, (margin_left, margin_top))
    pen = ImageDraw.Draw(picture)
    for r, name in enumerate(row_names):
        pen.text((4, margin_top + r * height * scale + height * scale // 2 - 5), name, fill="black")
    for c, name in enumerate(column_names):
        pen.text((margin_left + c * width * scale + 2, 3), name, fill="black")
    return np.asarray(picture)


def save_png(image, folder, name):
    path = os.path.join(folder, name)
    utils.save_image(image, path)
    return path


def save_gif(frames, folder, name):
    """There and back again, the ends not repeated."""
    path = os.path.join(folder, name)
    utils.save_gif(frames + frames[-2:0:-1], path)
    return path


# ---------------------------------------------------------------- a run's sample grids

def fixed_samples(config, z_dim, rows=10):
    """Sample inputs for a run's grids: one z per row and one class per column (labels as integers), or
    for an unconditional run a z per image (labels None), the same for every grid of the run."""
    rng = np.random.default_rng(config["seed"])
    y_dim = config["y_dim"]
    if not y_dim:
        return draw_random_z(rng, rows * COLUMNS, z_dim, config["z_dist"]), None
    z = draw_random_z(rng, rows, z_dim, config["z_dist"])
    return np.repeat(z, y_dim, axis=0), np.tile(np.arange(y_dim), rows)


def save_samples(dcgan, config, z, labels, real, path):
    """Writes the samples for z (and labels) to path as a grid, or for the curves as a plot beside real
    curves; returns the grid (None for the curves)."""
    images = dcgan.sample(z, labels).numpy()
    if config["dataset"] == CURVES:
        plot_curves(np.asarray(real), images, path)
        return None
    columns = dcgan.y_dim or COLUMNS
    grid = utils.make_grid(images, len(images) // columns, columns)
    utils.save_image(grid, path)
    return grid


# ---------------------------------------------------------------- training plots

def write_plots(dcgan, run, batch):
    """A run's loss curves from its TensorBoard logs (so a resumed run's are whole) and real vs fake,
    in its samples folder. batch: real training data, as the stream gives it."""
    real = batch[0] if dcgan.y_dim else batch
    real_labels = np.argmax(batch[1], -1) if dcgan.y_dim else None
    z = dcgan.sample_z(len(real))
    os.makedirs(run.samples, exist_ok=True)
    losses = read_scalars(run.logs)
    gap = logs_gap(losses, run.logs, dcgan.trained_steps())
    if gap:
        print(f"Warning: {gap}", file=sys.stderr)
    paths = [plot_losses(losses, os.path.join(run.samples, "losses.png"), run.name),
             os.path.join(run.samples, "real_vs_fake.png")]
    if run.config["dataset"] == CURVES:
        save_samples(dcgan, run.config, z, None, real, paths[1])
    else:
        plot_real_vs_fake(np.asarray(real), dcgan.sample(z, real_labels).numpy(), paths[1])
    print(f"Wrote {', '.join(p for p in paths if p)}")


def logs_gap(losses, folder, step):
    """What is missing when the logged losses end before the run's step (logs deleted or lost), else None."""
    steps = losses["g_loss"][0]
    last = int(steps[-1]) if len(steps) else 0
    if last >= step:
        return None
    return (f"the TensorBoard logs in {folder} end at step {last} and the run at step {step}: the rest is missing "
            "(removed, or lost), so the loss curves stop there")


def read_scalars(log_dir, tags=("d_loss", "g_loss")):
    """{tag: (steps, values)} from every TensorBoard event file in log_dir. A resumed run rewrites the
    steps after its last checkpoint: the later file's values win."""
    import tensorflow as tf
    series = {tag: {} for tag in tags}
    # Event file names start with their creation time, so sorting puts them in writing order.
    for path in sorted(glob.glob(os.path.join(glob.escape(log_dir), "events.out.tfevents.*"))):
        try:
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if value.tag in series:
                        series[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
        except tf.errors.DataLossError:  # the tail of a file whose writer was killed
            continue
    return {tag: (np.array(sorted(points)), np.array([points[s] for s in sorted(points)]))
            for tag, points in series.items()}


def plot_losses(series, path, title):
    """The G and D loss against the step (read_scalars' series), as a PNG; None when there are none."""
    if not any(len(steps) for steps, _ in series.values()):
        return None
    fig, ax = pyplot().subplots(figsize=(10, 5))
    for tag, label in (("g_loss", "G"), ("d_loss", "D")):
        steps, values = series[tag]
        ax.plot(steps, values, label=label, linewidth=0.8)
    ax.set(title=f"Generator and discriminator loss during training: {title}", xlabel="step", ylabel="loss")
    ax.legend()
    return save_figure(fig, path)


def plot_real_vs_fake(real, fake, path):
    """Real images beside generated ones (float [N, H, W, C] in [0, 1]), as a PNG."""
    fig, axes = pyplot().subplots(1, 2, figsize=(12, 6.5))
    for ax, images, title in ((axes[0], real, "Real images"), (axes[1], fake, "Fake images")):
        n = min(len(images), COLUMNS * COLUMNS)
        columns = min(n, COLUMNS)
        image = utils.make_grid(utils.padded(utils.to_uint8(images[:n]), columns), -(-n // columns), columns)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    return save_figure(fig, path)


def plot_curves(real, fake, path, shown=24):
    """The 1-D toy: generated curves over real ones ([N, ..., 15] each), between the family's bounds
    a = 1 and a = 2, as a PNG."""
    x = curve_x()
    fig, ax = pyplot().subplots(figsize=(8, 5))
    for a, style in ((1.0, ":"), (2.0, ":")):
        ax.plot(x, a * x ** 2 + a - 1, "k" + style, linewidth=1)
    for curves, colour, label in ((real, "0.6", "real"), (fake, "tab:red", "generated")):
        for i, curve in enumerate(np.asarray(curves)[:shown].reshape(-1, len(x))):
            ax.plot(x, curve, color=colour, linewidth=0.8, label=label if i == 0 else None)
    ax.set(title="a*x^2 + (a - 1), a ~ U(1, 2): generated over real (dotted: a = 1 and a = 2)", xlabel="x",
           ylabel="y")
    ax.legend()
    return save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot drawing to files (no display needed), imported only when a plot is made."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path):
    try:
        with utils.published(path, ".tmp.png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return path
