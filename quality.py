"""Sample quality over seeds: each recipe trained for one epoch per seed, scored by --eval.

One GAN run is an anecdote; this trains MNIST (or a picture folder) with every seed through main.py,
evaluates each run with every recipe's sampling flags and the shipped MNIST classifier (a folder: the
classifier of the labelled --eval_folder), and prints a markdown table of the mean and range (min-max)
of each figure. The original recipe is the same training sampled with the raw weights: the weight
average never feeds back into training (tests/test_model.py checks that). Finished runs and
evaluations are not redone, so an interrupted table resumes where it stopped.

    python quality.py --data_dir ../shared/data [--seeds 0,1,2] [--epoch 1]
    python quality.py --data_dir ../shared/data --seeds 0 --recipes defaults,lsgan,sn,mlp,cs231n \
        --out samples/variants.md
    python quality.py --dataset emoji-google --data_dir ../shared/data --input_fname_pattern '64/*.png' \
        --eval_folder data/emoji-categories --recipes defaults,augment --epoch 8
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.abspath(__file__))
# key: (name, training flags, sampling flags); recipes with the same training flags score the same runs
RECIPES = {
    "defaults": ("defaults (weight average)", [], []),
    "original": ("original recipe (raw weights)", [], ["--raw_weights"]),
    "best": ("--recipe best (one G update, batch 32, D twice as fast)", ["--recipe=best"], []),
    "lsgan": ("least squares (LSGAN)", ["--loss=lsgan"], []),
    "sn": ("spectral norm (SN-GAN)", ["--spectral_norm"], []),
    "mlp": ("CS231N fully connected", ["--arch=mlp"], []),
    "cs231n": ("CS231N convolutional", ["--arch=cs231n"], []),
    "augment": ("DiffAugment (colour, translation, cutout)", ["--augment"], []),
}
FIGURES = (("accuracy", "class accuracy %", 100, "{:.2f}"), ("fid", "FID", 1, "{:.2f}"),
           ("intra_fid", "intra-class FID", 1, "{:.2f}"), ("min_diversity", "lowest class diversity", 1, "{:.3f}"),
           ("precision", "precision", 1, "{:.3f}"), ("recall", "recall", 1, "{:.3f}"),
           ("density", "density", 1, "{:.3f}"), ("coverage", "coverage", 1, "{:.3f}"),
           ("min_class_recall", "lowest class recall", 1, "{:.3f}"), ("kid", "KID", 1, "{:.4f}"),
           ("class_tv", "class mix TV", 1, "{:.3f}"), ("copies", "copies %", 100, "{:.1f}"))

flags.DEFINE_string("data_dir", "./data", "Folder that holds mnist/ (or --dataset).")
flags.DEFINE_string("dataset", "mnist", "mnist, or a picture folder in --data_dir (main.py's --dataset).")
flags.DEFINE_string("input_fname_pattern", "*.jpg", "A picture folder's files (main.py's flag).")
flags.DEFINE_string("eval_folder", "", "A picture folder's labelled folder, whose classifier scores it (main.py's flag).")
flags.DEFINE_string("judge", "", "The features a picture folder's runs are scored in (main.py's flag).")
flags.DEFINE_boolean("yardstick", False, "Instead of training, score picture sets whose ranking a person knows against "
                     "--eval_folder (or --dataset) in --judge's features, to show the judge ranks them so: the folder's "
                     "own pictures, --other_artist's, blurred, colour-shifted, noise, 64 repeated, copies.")
flags.DEFINE_string("other_artist", "", "With --yardstick: a folder of another artist's pictures of the same subjects "
                    "(those whose file names match the judged pictures', if any do).")
flags.DEFINE_integer("size", 64, "With --yardstick: the size the pictures are judged at (the run's).", lower_bound=8)
flags.DEFINE_string("precision", "float32", "main.py's --precision for training (sampling stays float32).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to train with.")
flags.DEFINE_list("recipes", ["defaults", "original"], f"Recipes to compare, from {', '.join(RECIPES)}.")
flags.DEFINE_integer("epoch", 1, "Epochs per run.", lower_bound=1)
flags.DEFINE_string("out", "samples/quality.md", "Where to write the table.")
FLAGS = flags.FLAGS


def main_py(*args):
    folder = [f"--input_fname_pattern={FLAGS.input_fname_pattern}", f"--eval_folder={FLAGS.eval_folder}",
              f"--judge={FLAGS.judge}"] if FLAGS.dataset != "mnist" else []
    command = [sys.executable, os.path.join(ROOT, "main.py"), f"--dataset={FLAGS.dataset}",
               f"--data_dir={FLAGS.data_dir}", *folder, *args]
    print(f"== {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    if subprocess.run(command).returncode != 0:
        raise SystemExit("Error: that command failed (its output is above)")
    print(f"== {(time.monotonic() - start) / 60:.1f} min", flush=True)


def train_and_evaluate(key, seed):
    """eval.json of one recipe and seed, training and evaluating first unless done before."""
    _, training, sampling = RECIPES[key]
    # Recipes that only sample differently share the defaults' runs.
    folder = f"quality{'' if FLAGS.dataset == 'mnist' else '_' + FLAGS.dataset}_e{FLAGS.epoch}_s{seed}" + \
        (f"_{key}" if training else "")
    path = os.path.join("samples", "quality", key, folder, "eval.json")
    if os.path.exists(path) and "precision" in read_json(path):  # scored before (not before precision and recall)
        return read_json(path)
    # A finished run says so and stops; an unfinished one resumes.
    main_py("--train", "--export", f"--epoch={FLAGS.epoch}", f"--seed={seed}", f"--out_name={folder}",
            f"--precision={FLAGS.precision}", *training)
    main_py("--eval", f"--out_name={folder}", f"--sample_dir={os.path.dirname(os.path.dirname(path))}", *sampling)
    return read_json(path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def table(results):
    """Markdown: one row per recipe, mean and range over its seeds for each figure."""
    runs = [run for _, recipe_runs in results.values() for run in recipe_runs]
    figures = [figure for figure in FIGURES if all(figure[0] in run for run in runs)]  # MNIST's or a folder's
    header = "| recipe | flags | seeds | " + " | ".join(label for _, label, _, _ in figures) + " |"
    rows = [header, "|" + " --- |" * (3 + len(figures))]
    for name, (args, runs) in results.items():
        cells = []
        for key, _, scale, fmt in figures:
            values = np.array([run[key] for run in runs]) * scale
            cells.append(f"{fmt.format(values.mean())} ({fmt.format(values.min())}–{fmt.format(values.max())})")
        seeds = ",".join(str(run["seed"]) for run in runs)
        rows.append(f"| {name} | `{args or '(none)'}` | {seeds} | " + " | ".join(cells) + " |")
    real = next(iter(results.values()))[1][0]["real"]
    floor = ", ".join(f"{label} {fmt.format(real[key] * scale)}" for key, label, scale, fmt in figures if key in real)
    rows.append(f"\nReal pictures against real ones (the floor): {floor}.")
    return "\n".join(rows)


def yardstick_table():
    """Markdown: folder_eval.yardstick's picture sets, a row each, every figure beside real-vs-real's."""
    import folder_eval
    from data import list_image_folder, read_images
    folder = folder_eval.labelled_folder_path(FLAGS.data_dir, FLAGS.eval_folder) if FLAGS.eval_folder else \
        os.path.join(FLAGS.data_dir, FLAGS.dataset)
    judgement = folder_eval.load_judgement(folder, (FLAGS.size, FLAGS.size), 3, os.path.join("checkpoints", "classifier"),
                                           FLAGS.judge, pattern=None if FLAGS.eval_folder else FLAGS.input_fname_pattern)
    other = None
    if FLAGS.other_artist:
        paths = list_image_folder(FLAGS.other_artist, None)[0]
        names = {os.path.basename(p).lower() for p in judgement.paths}
        paths = [p for p in paths if os.path.basename(p).lower() in names] or paths
        other = read_images(paths, (FLAGS.size, FLAGS.size), channels=3)[0]
    real = judgement.real
    rows = [f"Judged in {judgement.judge.key}, against {len(judgement.reference)} pictures of {folder} at "
            f"{FLAGS.size}x{FLAGS.size}; each set as large as the floor ({len(judgement.floor)})"
            + (f", another artist's {len(other)} pictures" if other is not None else "") + ".\n",
            "| pictures | FID | KID | precision (share of real's) | recall (share of real's) | density | coverage | "
            "copies % | class mix TV |", "|" + " --- |" * 9]
    for what, figures in folder_eval.yardstick(judgement, other):
        rows.append(f"| {what} | {figures['fid']:.2f} | {figures['kid']:.4f} | {figures['precision']:.3f} "
                    f"({figures['precision'] / real['precision']:.2f}) | {figures['recall']:.3f} "
                    f"({figures['recall'] / real['recall']:.2f}) | {figures['density']:.3f} | {figures['coverage']:.3f} | "
                    f"{100 * figures['copies']:.1f} | {figures.get('class_tv', float('nan')):.3f} |")
    return "\n".join(rows)


def main(argv):
    del argv
    if FLAGS.yardstick:
        return write_table(yardstick_table())
    unknown = set(FLAGS.recipes) - set(RECIPES)
    if unknown:
        raise SystemExit(f"Error: unknown recipe {', '.join(sorted(unknown))}: use some of {', '.join(RECIPES)}")
    results = {RECIPES[key][0]: (" ".join(RECIPES[key][1] + RECIPES[key][2]),
                                 [{**train_and_evaluate(key, int(seed)), "seed": int(seed)} for seed in FLAGS.seeds])
               for key in FLAGS.recipes}
    write_table(table(results))


def write_table(text):
    print(text)
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        f.write(text + "\n")
    print(f"Wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
