"""The judge (judge.py): trained on a labelled folder, written and read back with its record, features that
weigh every stage alike, the training files it remembers, and the choice among the shipped judges."""
import json
import os
import shutil

import numpy as np
import pytest

import judge
import utils
from conftest import write_image_folder

# Its module-scoped fixture is costly: the whole file runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("judge")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(folder, judge) of a judge trained one epoch on a small labelled folder of shapes."""
    folder = tmp_path_factory.mktemp("shapes")
    write_image_folder(str(folder), n=24, labelled=True, broken=False)
    out = str(tmp_path_factory.mktemp("judges") / "shapes")
    judge.train_judge(str(folder), out, epochs=1, verbose=0)
    return folder, out


def test_a_judge_is_written_with_its_record_and_reads_back_the_same(trained):
    folder, out = trained
    record = json.loads(open(out + ".json").read())
    assert record["classes"] == ["disc", "square"] and record["pictures"] == 24 and record["version"] == judge.VERSION
    assert len(record["files"]) == 24 and len(record["scales"]) == len(judge.WIDTHS)
    loaded = judge.load_judge(out)
    pictures = np.random.default_rng(0).integers(0, 256, (5, 40, 50, 3), dtype=np.uint8)  # any size: read at 64x64
    features = loaded.features(pictures)
    assert features.shape == (5, sum(judge.WIDTHS))
    np.testing.assert_allclose(judge.load_judge(out).features(pictures), features, rtol=1e-5)
    # Each stage scaled by its total variance over the training pictures: every stage weighs alike there.
    from data import list_image_folder, read_images
    images = read_images(list_image_folder(str(folder), None)[0], (64, 64), channels=3)[0]
    spread = [np.var(s / scale, axis=0).sum() for s, scale in zip(loaded.stages(images), loaded.scales)]
    np.testing.assert_allclose(spread, 1.0, rtol=1e-3)
    grey = loaded.features(pictures[..., :1])  # a grayscale picture is read as the same grey in three channels
    np.testing.assert_allclose(grey, loaded.features(np.repeat(pictures[..., :1], 3, -1)), rtol=1e-5)


def test_a_judge_knows_the_files_it_was_trained_on(trained, tmp_path):
    folder, out = trained
    loaded = judge.load_judge(out)
    mine = sorted(str(p) for p in folder.rglob("*.*"))[:3]
    copied = tmp_path / "copy.png"
    shutil.copy(mine[0], copied)  # a copy elsewhere is the same picture
    write_image_folder(str(tmp_path / "other"), n=4, seed=7, broken=False)
    assert loaded.seen(mine) == 3 and loaded.seen([str(copied)]) == 1
    assert loaded.seen([str(p) for p in (tmp_path / "other").iterdir()]) == 0


def test_the_shipped_judge_chosen_is_one_that_saw_none_of_the_pictures(trained, tmp_path, monkeypatch, capsys):
    folder, out = trained
    shipped = tmp_path / "judges"
    shipped.mkdir()
    for name in ("a-saw-them", "b-saw-others"):
        for suffix in (".json", ".weights.h5"):
            shutil.copy(out + suffix, shipped / (name + suffix))
    record = json.loads((shipped / "b-saw-others.json").read_text())
    utils.save_json({**record, "files": []}, str(shipped / "b-saw-others.json"))
    monkeypatch.setattr(judge, "SHIPPED", str(shipped))
    pictures = sorted(str(p) for p in folder.rglob("*.png"))
    assert judge.judge_for("", pictures).path == str(shipped / "b-saw-others")
    assert not capsys.readouterr().err
    # Asked for by name, a judge that saw them is used all the same, with a warning.
    chosen = judge.judge_for(str(shipped / "a-saw-them"), pictures)
    assert chosen.path == str(shipped / "a-saw-them")
    assert "was trained on" in capsys.readouterr().err


def test_a_judge_of_another_version_or_missing_is_one_line(trained, tmp_path):
    _, out = trained
    for suffix in (".json", ".weights.h5"):
        shutil.copy(out + suffix, str(tmp_path / "old") + suffix)
    record = json.loads(open(out + ".json").read())
    utils.save_json({**record, "version": "judge-v0"}, str(tmp_path / "old.json"))
    with pytest.raises(utils.DCGANError, match="is a judge-v0 judge, and this code reads judge-v1: train it again"):
        judge.load_judge(str(tmp_path / "old"))
    with pytest.raises(utils.DCGANError, match="^cannot load the judge .*nowhere .*: give the prefix"):
        judge.load_judge(str(tmp_path / "nowhere"))
    assert os.path.isdir(judge.SHIPPED)
