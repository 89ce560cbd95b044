"""Quality figures of a picture folder (folder_eval.py) on a made-up labelled folder of coloured shapes, where
the answers are known: real against real sits at the floor, noise far from it, one picture per class has
little recall, a copier copies, and a conditional model's class accuracy is what it draws. The judge here
is the pictures' own pixels, shrunk (the trained judge has tests of its own: test_judge.py)."""
import os
import re

import numpy as np
import pytest
from PIL import Image

import folder_eval
import judge
from data import DataError
from conftest import shape_image

# Its tests share one classifier, trained once: on one worker.
pytestmark = pytest.mark.xdist_group("folder_eval")

SHAPES = ("disc", "square")


class PixelJudge:
    """A stand-in judge: a picture's pixels at 8x8."""
    key = "8x8 pixels"

    @staticmethod
    def features(images):
        return judge.as_input(images)[:, ::8, ::8].reshape(len(images), -1).astype(np.float64)

    @staticmethod
    def seen(paths):
        return 0


def shapes(n, seed, size=32):
    """n pictures [n, size, size, 3] alternating between the shapes, and their classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SHAPES)
    return np.stack([shape_image(rng, (size, size), SHAPES[k]) for k in labels]), labels


class Drawer:
    """A stand-in for a generator: draws its pictures in turn (of the class asked, when it has classes)."""
    z_dim, z_dist = 2, "uniform_signed"

    def __init__(self, images, labels=None, y_dim=0):
        self.images, self.labels, self.y_dim, self.drawn = images, labels, y_dim, 0

    def sample(self, z, labels):
        pool = self.images if labels is None else self.images[self.labels == int(np.asarray(labels)[0])]
        index = (self.drawn + np.arange(len(z))) % len(pool)
        self.drawn += len(z)
        return pool[index].astype(np.float32) / 255.0


def write_labelled(folder, images, labels):
    for i, (image, k) in enumerate(zip(images, labels)):
        os.makedirs(folder / SHAPES[k], exist_ok=True)
        Image.fromarray(image).save(folder / SHAPES[k] / f"{i}.png")
    (folder / "notes.txt").write_text("not a class")


@pytest.fixture(scope="module")
def cached(tmp_path_factory, module_monkeypatch):
    """(the folder of 200 shapes, the classifier's cache, its judgement) once the judgement was made."""
    module_monkeypatch.setattr(judge, "judge_for", lambda name, paths: PixelJudge())
    folder, cache = tmp_path_factory.mktemp("shapes"), str(tmp_path_factory.mktemp("cache"))
    write_labelled(folder, *shapes(200, seed=0))
    return folder, cache, folder_eval.load_judgement(str(folder), (32, 32), 3, cache)


@pytest.fixture(scope="module")
def module_monkeypatch():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def judgement(cached):
    return cached[2]


def test_the_classifiers_split_keeps_a_fifth_of_each_class_apart_twice_and_small_classes_for_training():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 4)
    train, reference, floor = folder_eval.split(labels)
    assert sorted(np.concatenate([train, reference, floor])) == list(range(len(labels)))
    assert [int(np.sum(labels[reference] == k)) for k in range(3)] == [10, 4, 0]
    assert [int(np.sum(labels[floor] == k)) for k in range(3)] == [10, 4, 0]
    assert np.array_equal(folder_eval.split(labels)[1], reference)  # seeded: every --eval holds out the same


def test_the_judgements_halves_split_each_class_in_two():
    labels = np.array([0] * 51 + [1] * 20 + [2])
    reference, floor = folder_eval.halves(labels, len(labels))
    assert sorted(np.concatenate([reference, floor])) == list(range(len(labels)))
    assert [int(np.sum(labels[floor] == k)) for k in range(3)] == [25, 10, 0]
    assert np.array_equal(folder_eval.halves(labels, len(labels))[1], floor)
    assert len(folder_eval.halves(None, 9)[1]) == 4


def test_new_real_pictures_score_at_the_floor_and_copy_nothing(judgement):
    assert judgement.classifier_accuracy > 0.9
    new_real, _ = shapes(200, seed=1)
    result = judgement.score(Drawer(new_real))
    real = result["real"]
    assert result["samples"] == len(judgement.floor) == 100 and result["judge"] == "8x8 pixels"
    assert result["fid"] < 3 * real["fid"] + 1 and result["class_tv"] < 0.15
    assert result["precision"] > 0.7 * real["precision"] and result["recall"] > 0.7 * real["recall"]
    assert result["copies"] < 0.2 and result["nearest_ratio"] > 0.5
    assert "accuracy" not in result  # an unconditional model asks for no class
    assert judgement.score(Drawer(new_real), n=30)["samples"] == 30  # --eval_n, where given


def test_a_generator_copying_its_training_pictures_is_caught(judgement, tmp_path):
    copier = Drawer(judgement.images[::-1])
    result = judgement.score(copier, pictures_to=str(tmp_path))
    assert result["copies"] == 1.0 and result["nearest_ratio"] < 0.01
    assert result["real"]["copies"] < 0.15  # real pictures are not each other's copies
    # The closest pairs, generated above their nearest training picture: here the same pictures.
    grid = np.asarray(Image.open(tmp_path / "copies.png"))
    assert grid.shape == (2 * 32, 8 * 32, 3) and np.array_equal(grid[:32], grid[32:])


def test_noise_scores_far_from_the_floor(judgement):
    noise = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    result = judgement.score(Drawer(noise))
    assert result["fid"] > 10 * (result["real"]["fid"] + 1)
    assert result["precision"] < 0.3 and result["coverage"] < 0.3 and result["density"] < 0.3


def test_one_picture_per_class_has_little_recall_and_the_class_mix_of_one_shape_is_far(judgement):
    images, labels = shapes(2, seed=1)
    result = judgement.score(Drawer(images))
    assert result["recall"] < 0.3 < result["real"]["recall"]
    discs = shapes(40, seed=2)[0][::2]
    # Half the folder is squares (0.5: each read from its nearest real pictures' shapes, some as squares).
    assert judgement.score(Drawer(discs))["class_tv"] > max(0.3, 3 * result["real"]["class_tv"])


def test_a_conditional_models_accuracy_is_how_often_it_draws_the_class_asked_per_class_too(judgement):
    images, labels = shapes(60, seed=3)
    right = judgement.score(Drawer(images, labels, y_dim=2))
    wrong = judgement.score(Drawer(images, 1 - labels, y_dim=2))
    assert right["accuracy"] > 0.9 and wrong["accuracy"] < 0.1
    assert right["real"]["accuracy"] > 0.9 and set(right["per_class"]) == set(SHAPES)
    assert all(c["accuracy"] > 0.8 and c["pictures"] == 50 and "fid" in c for c in right["per_class"].values())
    assert max(c["accuracy"] for c in wrong["per_class"].values()) < 0.2
    summary = folder_eval.format_summary(right)
    assert re.search(r"per class, accuracy \(real's\): disc:\d\.\d\d\(\d\.\d\d\) square:", summary), summary
    with pytest.raises(ValueError, match="draws 3 classes and the folder has 2"):
        judgement.score(Drawer(images, labels, y_dim=3))


def test_the_yardstick_ranks_copies_noise_and_repeats_as_a_person_would(judgement):
    rows = dict(folder_eval.yardstick(judgement, other_artist=shapes(100, seed=5)[0], repeated=8))
    real = rows["real pictures (the floor)"]
    assert rows["a generator copying training pictures"]["copies"] > 0.9 > real["copies"]
    assert rows["noise"]["fid"] == max(r["fid"] for r in rows.values())
    assert rows["a generator repeating 8 training pictures"]["recall"] < 0.5 * real["recall"]
    # Shrunk pixels barely see a blur, and the shapes' colours are drawn at random, so a turned hue gives more of
    # the same: the trained judge's ranking of those is measured on the emoji (docs/colour.md's table).
    assert rows["the floor, blurred (Gaussian, radius 1.5 px)"]["fid"] > real["fid"]
    assert len(rows) == 7


def test_a_labelled_folder_is_read_by_class_and_its_classifier_is_trained_once(cached, capsys):
    folder, cache, first = cached
    assert first.class_names == list(SHAPES) and len(first.reference) == len(first.floor) == 100
    second = folder_eval.load_judgement(str(folder), (32, 32), 3, cache)
    out = capsys.readouterr().out
    assert "Training" not in out and re.search(r"classifier reads [\d.]+ % of its held-out pictures' classes", out)
    assert second.classifier_accuracy == first.classifier_accuracy
    with pytest.raises(ValueError, match=r"classes of .* \(disc, square\) are not the model's \(a, b\)"):
        folder_eval.load_judgement(str(folder), (32, 32), 3, cache, class_names=["a", "b"])
    with pytest.raises(DataError, match=r"^cannot evaluate: no picture file in .*cache\d* or its sub-folders \(\.png, "):
        folder_eval.load_judgement(cache, (32, 32), 3, cache)
    pictures = next(folder.glob("disc/*.png"))
    with pytest.raises(DataError, match="^cannot evaluate: .* is not a labelled folder: it needs a sub-folder of "):
        folder_eval.load_judgement(str(pictures.parent), (32, 32), 3, cache, labelled=True)
    unlabelled = folder_eval.load_judgement(str(pictures.parent), (32, 32), 3, cache)  # the run's own folder
    assert unlabelled.num_classes == 0 and unlabelled.classifier is None
    assert "class_tv" not in unlabelled.real and "accuracy" not in unlabelled.real


def test_an_eval_folder_is_looked_for_in_the_data_dir_then_as_a_path(tmp_path, monkeypatch):
    data_dir = tmp_path / "shared"
    (data_dir / "emoji").mkdir(parents=True)
    (tmp_path / "data" / "emoji-categories").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert folder_eval.labelled_folder_path(str(data_dir), "emoji") == str(data_dir / "emoji")
    assert folder_eval.labelled_folder_path(str(data_dir), "data/emoji-categories") == "data/emoji-categories"
    # Neither: the data_dir's, which the one-line error then names.
    assert folder_eval.labelled_folder_path(str(data_dir), "nowhere") == str(data_dir / "nowhere")
