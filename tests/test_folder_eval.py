"""Quality figures of a labelled picture folder (folder_eval.py) on a made-up folder of coloured shapes,
where the answers are known: real against real sits at the floor, noise far from it, one picture per
class has little recall, and a conditional model's class accuracy is what it draws."""
import os
import re

import numpy as np
import pytest

import folder_eval
from data import DataError
from conftest import shape_image

# Its tests share one classifier, trained once: on one worker.
pytestmark = pytest.mark.xdist_group("folder_eval")

SHAPES = ("disc", "square")


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
    from PIL import Image
    for i, (image, k) in enumerate(zip(images, labels)):
        os.makedirs(folder / SHAPES[k], exist_ok=True)
        Image.fromarray(image).save(folder / SHAPES[k] / f"{i}.png")
    (folder / "notes.txt").write_text("not a class")


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """(the folder of 200 shapes, the classifier's cache) once its reference was made."""
    folder, cache = tmp_path_factory.mktemp("shapes"), str(tmp_path_factory.mktemp("cache"))
    write_labelled(folder, *shapes(200, seed=0))
    return folder, cache, folder_eval.load_reference(str(folder), (32, 32), 3, cache)


@pytest.fixture
def reference(cached):
    return cached[2]


def test_the_split_keeps_a_fifth_of_each_class_for_the_reference_and_the_floor_and_small_classes_for_training():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 4)
    train, reference, floor = folder_eval.split(labels)
    assert sorted(np.concatenate([train, reference, floor])) == list(range(len(labels)))
    assert [int(np.sum(labels[reference] == k)) for k in range(3)] == [10, 4, 0]
    assert [int(np.sum(labels[floor] == k)) for k in range(3)] == [10, 4, 0]
    assert np.array_equal(folder_eval.split(labels)[1], reference)  # seeded: every --eval holds out the same


def test_the_classifier_reads_the_shapes_and_real_pictures_score_at_the_floor(reference):
    assert reference.accuracy > 0.9
    new_real, _ = shapes(200, seed=1)
    result = reference.score(Drawer(new_real))
    real = result["real"]
    assert result["samples"] == reference.sizes["floor"] == 40
    assert result["fid"] < 3 * real["fid"] + 1 and result["class_tv"] < 0.15
    assert result["precision"] > 0.7 * real["precision"] and result["recall"] > 0.7 * real["recall"]
    assert "accuracy" not in result  # an unconditional model asks for no class


def test_noise_scores_far_from_the_floor(reference):
    noise = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    result = reference.score(Drawer(noise))
    assert result["fid"] > 10 * (result["real"]["fid"] + 1)
    # Not recall: 40 scattered noise pictures have wide neighbourhoods that take in real ones (0.05 here,
    # 0.3 under ONEDNN_MAX_CPU_ISA=AVX2); coverage (Naeem et al.) is the figure made for that.
    assert result["precision"] < 0.3 and result["coverage"] < 0.3 and result["density"] < 0.3


def test_one_picture_per_class_has_little_recall_and_the_class_mix_of_one_shape_is_far(reference):
    images, labels = shapes(2, seed=1)
    result = reference.score(Drawer(images))
    assert result["recall"] < 0.3 < result["real"]["recall"]
    discs = shapes(40, seed=2)[0][::2]
    assert reference.score(Drawer(discs))["class_tv"] > 0.4  # half the folder is squares


def test_a_conditional_models_accuracy_is_how_often_it_draws_the_class_asked(reference):
    images, labels = shapes(60, seed=3)
    right = reference.score(Drawer(images, labels, y_dim=2))
    wrong = reference.score(Drawer(images, 1 - labels, y_dim=2))
    assert right["accuracy"] > 0.9 and wrong["accuracy"] < 0.1
    assert right["real"]["accuracy"] > 0.9
    with pytest.raises(ValueError, match="draws 3 classes and the folder has 2"):
        reference.score(Drawer(images, labels, y_dim=3))


def test_a_labelled_folder_is_read_by_class_and_its_classifier_is_trained_once(cached, capsys):
    folder, cache, first = cached
    assert first.class_names == list(SHAPES) and first.sizes == {"classifier": 120, "reference": 40, "floor": 40}
    second = folder_eval.load_reference(str(folder), (32, 32), 3, cache)
    out = capsys.readouterr().out
    assert "Training" not in out and re.search(r"reads [\d.]+ % of its held-out pictures right", out)
    assert second.accuracy == first.accuracy
    with pytest.raises(ValueError, match=r"classes of .* \(disc, square\) are not the model's \(a, b\)"):
        folder_eval.load_reference(str(folder), (32, 32), 3, cache, class_names=["a", "b"])
    with pytest.raises(DataError, match=r"^cannot evaluate: no picture file in .*cache\d* or its sub-folders \(\.png, "):
        folder_eval.load_reference(cache, (32, 32), 3, cache)
    pictures = next(folder.glob("disc/*.png"))
    with pytest.raises(DataError, match="^cannot evaluate: .* is not a labelled folder: it needs a sub-folder of "):
        folder_eval.load_reference(str(pictures.parent), (32, 32), 3, cache)


def test_an_eval_folder_is_looked_for_in_the_data_dir_then_as_a_path(tmp_path, monkeypatch):
    data_dir = tmp_path / "shared"
    (data_dir / "emoji").mkdir(parents=True)
    (tmp_path / "data" / "emoji-categories").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert folder_eval.labelled_folder_path(str(data_dir), "emoji") == str(data_dir / "emoji")
    assert folder_eval.labelled_folder_path(str(data_dir), "data/emoji-categories") == "data/emoji-categories"
    # Neither: the data_dir's, which the one-line error then names.
    assert folder_eval.labelled_folder_path(str(data_dir), "nowhere") == str(data_dir / "nowhere")
