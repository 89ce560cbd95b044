"""Picture folders made from data the project knows, for main.py to train on and paper.py to score with:

    python folders.py --source mnist --data_dir ../shared/data --out data/mnist-train           # a sub-folder per digit
    python folders.py --source mnist --data_dir ../shared/data --out data/mnist-pixels --unlabelled
    python folders.py --source emoji --data_dir ../shared/data/emoji-google --out data/emoji-categories
    python folders.py --source openmoji --data_dir ../shared/data/openmoji-128 --out data/openmoji-groups
    python folders.py --source openmoji --data_dir ../shared/data/openmoji-128 --out data/openmoji-subgroups --fine
    python folders.py --source many --data_dir ../shared/data/emoji-google/64 --out data/many --count 1000000

MNIST's split (--split train or test) is written as 28x28 PNGs: with labels, a run on it is conditional
like --dataset mnist but has never seen the test digits (--dataset mnist trains on both splits, as the
original); --unlabelled makes one flat folder, for an unconditional model trained without the labels.
emoji-google's emoji.json (each emoji's category; skin-tone variants under the base emoji's) and
openmoji's openmoji.json (each one's group) become a sub-folder per category of copies of the pictures.
"""
import json
import os
import shutil

import numpy as np
from absl import app, flags

from utils import DCGANError, first_line, save_image

SOURCES = ("mnist", "emoji", "openmoji", "many")
PER_FOLDER = 1000  # --source many: pictures per sub-folder (a million in one folder is slow to list)
FLAGS = flags.FLAGS


def emoji_categories(folder, fine=False):
    """{picture file: category} of emoji-google's emoji.json (fine: its subcategory), skin-tone variants with
    their base emoji."""
    with open(os.path.join(folder, "emoji.json")) as f:
        entries = json.load(f)
    categories = {}
    for entry in entries:
        for picture in [entry] + list((entry.get("skin_variations") or {}).values()):
            categories[picture["image"]] = entry["subcategory" if fine else "category"]
    return categories


def openmoji_groups(folder, fine=False):
    """{picture file: group} of openmoji's openmoji.json (fine: its subgroup)."""
    with open(os.path.join(folder, "openmoji.json")) as f:
        return {f"{entry['hexcode']}.png": entry["subgroups" if fine else "group"] for entry in json.load(f)}


def folder_name(name):
    """A class name as a folder name: 'Smileys & Emotion' -> 'smileys-emotion'."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def write_pictures(classes, pictures, out, labels=True):
    """Copies the files in pictures (a folder) that classes ({file: class}) names into out, a sub-folder
    per class when labels; files missing from pictures are counted, not fatal. (written, missing)."""
    written = missing = 0
    for name, category in sorted(classes.items()):
        source = os.path.join(pictures, name)
        if not os.path.isfile(source):
            missing += 1
            continue
        target = os.path.join(out, folder_name(category)) if labels else out
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(source, os.path.join(target, name))
        written += 1
    return written, missing


def write_mnist(images, digits, out, labels=True):
    """MNIST images (uint8 [N, 28, 28]) as PNGs, named by their index, in a sub-folder per digit when labels."""
    for i, (image, digit) in enumerate(zip(images, digits)):
        target = os.path.join(out, str(digit)) if labels else out
        os.makedirs(target, exist_ok=True)
        save_image(image[..., None], os.path.join(target, f"{i:05d}.png"))
    return len(images)


def write_many(pictures, out, count, seed=0, workers=None):
    """count JPEGs made from the pictures (a folder's files, drawn at random): each shifted, scaled, recoloured
    and mirrored at random at 64x64, PER_FOLDER to a sub-folder of out (out/000/000000.jpg, ...): a folder of
    any size to train on (--input_fname_pattern '*/*.jpg'), written by processes in parallel."""
    import concurrent.futures
    sources = sorted(os.path.join(pictures, f) for f in os.listdir(pictures))
    starts = range(0, count, PER_FOLDER)
    with concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        done = 0
        for written in pool.map(write_many_part, [sources] * len(starts), [out] * len(starts), starts,
                                [min(PER_FOLDER, count - s) for s in starts], [seed] * len(starts), chunksize=4):
            done += written
            if done % 50000 < PER_FOLDER:
                print(f"{done}/{count} pictures written", flush=True)
    return done


def write_many_part(sources, out, start, count, seed):
    from PIL import Image
    from data import read_image
    rng = np.random.default_rng([seed, start])
    folder = os.path.join(out, f"{start // PER_FOLDER:03d}")
    os.makedirs(folder, exist_ok=True)
    for i in range(start, start + count):
        picture = Image.fromarray(read_image(sources[rng.integers(len(sources))], (64, 64))[0])
        scale = rng.uniform(0.7, 1.1)
        shifted = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(200, 256, 3)))
        small = picture.resize((int(64 * scale), int(64 * scale)), Image.BILINEAR)
        shifted.paste(small, tuple(int(v) for v in rng.integers(-8, 9, 2) + (64 - small.size[0]) // 2))
        hue, saturation, value = shifted.convert("HSV").split()
        turn = int(rng.integers(-20, 21))
        recoloured = Image.merge("HSV", (hue.point(lambda h: (h + turn) % 256), saturation, value)).convert("RGB")
        if rng.random() < 0.5:
            recoloured = recoloured.transpose(Image.FLIP_LEFT_RIGHT)
        recoloured.save(os.path.join(folder, f"{i:06d}.jpg"), quality=90)
    return count


def make_folder(source, data_dir, out, split="train", labels=True, fine=False, count=0):
    """Writes the folder (fine: the emoji sets by subcategory or subgroup; many: count pictures made from
    data_dir's); a line saying what it holds."""
    if os.path.exists(out):
        raise DCGANError(f"{out} exists already: name a new folder with --out")
    if source == "many":
        written = write_many(data_dir, out, count)
        return f"Wrote {written} pictures made from {data_dir}'s to {out}/<thousand>/ (--input_fname_pattern '*/*.jpg')"
    if source == "mnist":
        from data import load_splits
        images, digits = load_splits("mnist", data_dir, download=False)[split]
        written = write_mnist(images, digits, out, labels)
        return f"Wrote MNIST's {split} split, {written} images, to {out}" + ("/<digit>/" if labels else "/")
    read, pictures = (emoji_categories, "64") if source == "emoji" else (openmoji_groups, "128")
    classes = read(data_dir, fine)
    written, missing = write_pictures(classes, os.path.join(data_dir, pictures), out, labels)
    kinds = len({folder_name(c) for c in classes.values()})
    return (f"Wrote {written} pictures of {kinds} classes to {out}" + ("/<class>/" if labels else "/")
            + (f" ({missing} listed pictures are not in {pictures}/)" if missing else ""))


def main(argv):
    del argv
    try:
        print(make_folder(FLAGS.source, FLAGS.data_dir, FLAGS.out, FLAGS.split, not FLAGS.unlabelled, FLAGS.fine,
                          FLAGS.count))
    except (DCGANError, OSError, KeyError, ValueError) as e:
        raise SystemExit(f"Error: {first_line(e)}") from None


def define_flags():
    """Defined when run as a script only: the tests import make_folder beside main.py's flags."""
    flags.DEFINE_enum("source", None, SOURCES, "What to turn into a folder.")
    flags.DEFINE_string("data_dir", "./data", "mnist: the folder that holds mnist/; emoji and openmoji: their folder "
                                              "(emoji.json and 64/, or openmoji.json and 128/).")
    flags.DEFINE_string("out", None, "The folder to write; it must not exist yet.")
    flags.DEFINE_enum("split", "train", ["train", "test"], "mnist: which split.")
    flags.DEFINE_boolean("unlabelled", False, "Every picture in one folder, rather than a sub-folder per class.")
    flags.DEFINE_boolean("fine", False, "emoji and openmoji: a class per subcategory (subgroup), about a hundred, "
                                        "rather than per category (group); the judges are trained on these.")
    flags.DEFINE_integer("count", 1000000, "many: how many pictures.", lower_bound=1)
    flags.mark_flags_as_required(["source", "out"])


if __name__ == "__main__":
    define_flags()
    app.run(main)
