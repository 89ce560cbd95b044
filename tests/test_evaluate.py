"""The quality figures on cases whose answer is known, with a classifier trained on the bar digits."""
import os

import numpy as np
import pytest

import evaluate
import folder_eval
import judge
from conftest import bar_digits

# Its module-scoped fixtures are costly: the whole file runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("evaluate")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    train_x, train_y = bar_digits(1000, seed=0)  # bars are easy: 1,000 give a perfect classifier
    test_x, test_y = bar_digits(2000, seed=1)
    classifier, _ = evaluate.cached_classifier(train_x, train_y, str(tmp_path_factory.mktemp("cache")), verbose=0)
    return evaluate.Reference(classifier, test_x, test_y, train_x, train_y)


@pytest.fixture(scope="module")
def test_set():
    return bar_digits(2000, seed=1)


def test_real_test_images_score_like_the_classifier_with_zero_fid(reference, test_set):
    images, labels = test_set
    result = reference.evaluate(images, labels)
    assert result["accuracy"] == reference.classifier_accuracy > 0.95
    assert abs(result["fid"]) < 1e-6 and abs(result["intra_fid"]) < 1e-6
    assert result["min_diversity"] == pytest.approx(1.0)
    assert set(result["per_class"]) == {str(k) for k in range(10)}
    assert result["real"]["fid"] < 1.0  # another sample of the same images is close
    assert result["precision"] == result["recall"] == result["coverage"] == result["min_class_recall"] == 1.0
    assert min(result["real"][k] for k in ("precision", "recall", "coverage", "min_class_recall")) > 0.5


def test_shuffled_labels_give_chance_accuracy(reference, test_set):
    images, labels = test_set
    result = reference.evaluate(images, np.random.default_rng(0).permutation(labels))
    assert result["accuracy"] == pytest.approx(0.1, abs=0.04)
    assert result["intra_fid"] > 10 * max(result["fid"], 1e-3)  # plain FID misses it, intra-class FID does not


def test_one_repeated_image_per_class_has_zero_diversity(reference, test_set):
    images, labels = test_set
    first = {k: images[labels == k][0] for k in range(10)}
    repeated = np.stack([first[k] for k in labels])
    result = reference.evaluate(repeated, labels)
    # Not exactly 0: oneDNN may run identical images at different batch positions through different
    # kernel paths, which differ in the last bits. Real digits score about 1.
    assert result["min_diversity"] < 1e-3
    assert all(c["diversity"] < 1e-3 for c in result["per_class"].values())
    assert result["precision"] == 1.0 and result["recall"] < 0.02 and result["min_class_recall"] < 0.02


def test_noise_gives_a_large_fid(reference, test_set):
    _, labels = test_set
    noise = np.random.default_rng(0).integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    result = reference.evaluate(noise, labels)
    assert result["fid"] > 100 * max(result["real"]["fid"], 0.01)
    assert result["precision"] < 0.05 and result["density"] < 0.05


def test_fid_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20000, 3))
    b = rng.normal(0, 2, (20000, 3)) + np.array([3.0, 0, 0])
    # |mu|^2 + Tr(1 + 4 - 2*sqrt(1*4)) per dimension = 9 + 3 * 1
    assert evaluate.fid(a, b) == pytest.approx(12.0, rel=0.03)


def clusters(n, classes=range(10), seed=1):
    """n points of a mixture of ten unit Gaussians in 8-d, drawn from the given components only."""
    centres = np.random.default_rng(0).normal(0, 4, (10, 8))
    rng = np.random.default_rng(seed)
    return centres[rng.choice(list(classes), n)] + rng.normal(0, 1, (n, 8)), centres


def test_precision_recall_density_and_coverage_of_known_cases():
    real, centres = clusters(2000)
    same = evaluate.manifold_figures(real, clusters(2000, seed=2)[0])  # another sample: the floor
    assert min(same["precision"], same["recall"], same["coverage"]) > 0.75 and 0.8 < same["density"] < 1.2, same
    half = evaluate.manifold_figures(real, clusters(2000, range(5), seed=3)[0])  # half the components
    assert half["precision"] > 0.75 and 0.35 < half["recall"] < 0.6 and 0.35 < half["coverage"] < 0.6, half
    nearest = [real[np.argmin(((real - c) ** 2).sum(1))] for c in centres]  # collapsed: one real point per class
    collapsed = evaluate.manifold_figures(real, np.repeat(nearest, 200, axis=0))
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.01 and collapsed["coverage"] < 0.1, collapsed
    noise = evaluate.manifold_figures(real, np.random.default_rng(4).uniform(20, 30, (2000, 8)))
    assert noise == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_kid_of_known_gaussians():
    rng = np.random.default_rng(0)
    a, same, shifted = rng.normal(0, 1, (2000, 16)), rng.normal(0, 1, (2000, 16)), rng.normal(0.5, 1, (2000, 16))
    assert abs(evaluate.kid(a, same)) < 0.01 < 0.5 < evaluate.kid(a, shifted)  # about 0.95 for this shift
    assert evaluate.kid(a, shifted) == pytest.approx(evaluate.kid(a, rng.normal(0.5, 1, (2000, 16))), rel=0.2)


def colour_folder(n, seed=0):
    """n pictures of a colour each, under a random shading."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (n, 1, 1, 3)) * rng.uniform(0.5, 1, (n, 16, 16, 1)) * 255).astype(np.uint8)


class QuadrantJudge:
    """Each quadrant's mean colour: a feature space where the answers are plain."""
    key = "quadrant colours"

    @staticmethod
    def features(images):
        x = np.asarray(images, np.float64) / 255
        return np.concatenate([x[:, i::2, j::2].mean((1, 2)) for i in (0, 1) for j in (0, 1)], axis=1)


def test_colour_figures_of_a_folder_against_itself_and_its_negative():
    judgement = folder_eval.FolderJudgement(colour_folder(400), QuadrantJudge())
    alike, negative = judgement.figures(colour_folder(200, seed=1)), judgement.figures(255 - colour_folder(200, seed=1))
    assert alike["fid"] < 0.05 and abs(alike["kid"]) < 0.01 and judgement.real["fid"] < 0.05
    assert negative["fid"] > 20 * max(alike["fid"], judgement.real["fid"]) and negative["kid"] > 0.05


@pytest.mark.full
def test_inception_features_plumbing_untrained(monkeypatch):
    """InceptionV3 at its smallest size and untrained (weights=None; figures from such features are
    never reported): the shapes, and the pieces connect as --judge inception connects them."""
    features = evaluate.inception_features(weights=None, size=75)
    images = colour_folder(20)
    assert features(images).shape == (20, 2048) and np.isfinite(features(images)).all()
    monkeypatch.setattr(evaluate, "inception_features", lambda: features)
    judgement = folder_eval.FolderJudgement(images, judge.InceptionJudge())
    assert judgement.figures(images[judgement.reference])["fid"] < 1e-6 and "kid" in judgement.real


@pytest.mark.full
def test_classifier_is_cached_by_its_data(tmp_path):
    x, y = bar_digits(500, seed=3)
    first, path = evaluate.cached_classifier(x, y, str(tmp_path), verbose=0)
    again, same_path = evaluate.cached_classifier(x, y, str(tmp_path), verbose=0)
    assert same_path == path and os.path.exists(path)
    np.testing.assert_allclose(evaluate.classify(first, x)[1], evaluate.classify(again, x)[1], atol=1e-5)
    _, other_path = evaluate.cached_classifier(x[:-1], y[:-1], str(tmp_path), verbose=0)
    assert other_path != path
    with open(path, "r+b") as f:  # a cache cut short (a kill, a full disk) is trained again, not an error
        f.truncate(100)
    remade, remade_path = evaluate.cached_classifier(x, y, str(tmp_path), verbose=0)
    assert remade_path == path and os.path.getsize(path) > 100
    assert (evaluate.classify(remade, x)[0] == y).mean() > 0.9


def test_images_of_the_wrong_shape_get_a_clear_error(reference):
    with pytest.raises(ValueError, match=r"images must have shape \[N, 28, 28\] or \[N, 28, 28, 1\], not \[4, 32, 32, 1\]"):
        reference.evaluate(np.zeros((4, 32, 32, 1), np.uint8), np.zeros(4, int))


def test_shipped_classifier_loads_with_its_record():
    model, info = evaluate.shipped_classifier()
    assert info["version"] == evaluate.CLASSIFIER_VERSION and info["recipe"] == evaluate.RECIPE
    assert info["test_accuracy"] >= 0.99
    assert len(info["train_data_sha256"]) == 64
    assert model.count_params() == evaluate.build_classifier().count_params()


@pytest.mark.skipif(not os.environ.get("DCGAN_TEST_DATA_DIR"), reason="set DCGAN_TEST_DATA_DIR to a folder "
                    "with mnist/ (CI points it at ../shared/data)")
def test_shipped_classifier_reads_real_test_digits_at_its_recorded_accuracy():
    import data
    splits = data.load_splits("mnist", os.environ["DCGAN_TEST_DATA_DIR"], download=False)
    model, info = evaluate.shipped_classifier()
    test_x, test_y = splits["test"]
    accuracy = np.mean(evaluate.classify(model, test_x)[0] == test_y)
    # Other kernels (another CPU) may flip a handful of borderline digits out of 10,000, not more.
    assert accuracy == pytest.approx(info["test_accuracy"], abs=0.001)
    assert evaluate.data_hash(*splits["test"]) == info["test_data_sha256"]


def test_a_missing_shipped_classifier_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot load the shipped classifier .*--retrain_classifier"):
        evaluate.shipped_classifier(str(tmp_path / "nothing"))
