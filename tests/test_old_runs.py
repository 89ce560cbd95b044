"""Runs written before the modules were split (tests/fixtures/old_runs) load and draw the same pixels."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_main

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "old_runs")

DRAWN = [
    (["--dataset=mnist", "--out_name=mnist_run"], "samples/mnist_run/test_000010.png", "mnist_test_000010.png"),
    (["--dataset=mnist", "--out_name=mnist_run", "--generate", "--labels=3,1", "--n_per_label=2", "--seed=7"],
     "samples/mnist_run/generate_3-1_seed7.png", "mnist_generate_3-1_seed7.png"),
    (["--generate", "--from_savedmodel=export/mnist_run/10", "--labels=3,1", "--n_per_label=2", "--seed=7",
      "--out_name=from_export"], "samples/from_export/generate_3-1_seed7.png", "mnist_export_generate_3-1_seed7.png"),
    (["--dataset=shapes", "--out_name=folder_run"], "samples/folder_run/test_000005.png", "folder_test_000005.png"),
    (["--dataset=shapes", "--out_name=folder_run", "--generate", "--n_per_label=3", "--seed=7"],
     "samples/folder_run/generate_seed7.png", "folder_generate_seed7.png"),
]


# make test draws from an old folder run's checkpoint; the full tier from the rest.
QUICK = {"folder_generate_seed7.png"}


@pytest.mark.parametrize("args, written, expected", [
    pytest.param(*case, id=case[-1][:-4], marks=() if case[-1] in QUICK else pytest.mark.full) for case in DRAWN])
def test_an_old_run_draws_the_same_pixels(tmp_path, args, written, expected):
    for part in ("checkpoints", "export"):
        shutil.copytree(os.path.join(FIXTURE, part), tmp_path / part)
    rc, out = run_main(args, tmp_path)
    assert rc == 0, out
    drawn = np.asarray(Image.open(tmp_path / written), np.int16)
    before = np.asarray(Image.open(os.path.join(FIXTURE, "expected", expected)), np.int16)
    assert drawn.shape == before.shape
    # Identical on the CPUs tried; one level of 255 leaves room for another CPU's rounding.
    assert np.abs(drawn - before).max() <= 1
