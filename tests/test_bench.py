"""bench.py end to end on the tiny model: every figure of its table and JSON line, per number format."""
import json

import pytest
import tensorflow as tf
from absl.testing import flagsaver

from conftest import CRASHES_HERE, TINY

import bench
import distribute


def run_bench(capsys, tmp_path, **flags):
    """bench.py's table rows and JSON result for a few steps of the tiny model."""
    settings = {"steps": 2, "warmup": 1, "batch_size": 8, "speed_record": str(tmp_path / "speeds.json"), **TINY, **flags}
    with flagsaver.flagsaver(**settings):
        bench.bench(None)
    lines = capsys.readouterr().out.strip().splitlines()
    return lines[:-1], json.loads(lines[-1])


@pytest.mark.full
@pytest.mark.skipif(bool(CRASHES_HERE), reason=f"ONEDNN_MAX_CPU_ISA hides this CPU's {', '.join(CRASHES_HERE)}")
def test_bench_measures_each_format_the_hardware_has_and_reports_one_that_fails(monkeypatch, capsys, tmp_path):
    # As on a machine with bfloat16 arithmetic and a GPU. This CPU need not have either: emulated,
    # bfloat16 is slow but runs the same code; float16 fails as a kernel missing on new hardware would.
    monkeypatch.setattr(distribute, "missing_hardware", lambda precision: None)
    measure = bench.measure

    def no_float16_kernel(precision, *args):
        if precision == "mixed_float16":
            raise tf.errors.NotFoundError(None, None, "No registered 'Conv2D' OpKernel for 'CPU' devices\n(details)")
        return measure(precision, *args)
    monkeypatch.setattr(bench, "measure", no_float16_kernel)
    # The loop is main.py's training loop, run by its own tests; here it is left out for the suite's time.
    rows, result = run_bench(capsys, tmp_path, loop_steps=0)
    assert result["matmul_ceiling_gflops"] > 0 and result["flops_per_iter"] > 0
    assert list(result["precisions"]) == ["float32", "mixed_bfloat16"]
    for precision, figures in result["precisions"].items():
        assert figures["samples_per_s"] == pytest.approx(8 * figures["iter_per_s"], rel=0.01)
        assert figures["achieved_gflops"] > 0 and figures["generate_images_per_s"] > 0
        assert figures["loop_iter_per_s"] is None
        # Each format is also timed with the deconvolutions in the form it does not use.
        assert figures["deconvolutions_in_phases"] is False and figures["iter_per_s_other_deconvolution_form"] > 0
        assert any(row.startswith(f"{precision}: training step, batch 8") for row in rows)
    assert sum("same, deconvolutions in phases" in row for row in rows) == 2
    # What it measured is recorded for main.py, under this machine and the model.
    recorded = distribute.read_speeds(str(tmp_path / "speeds.json"))[distribute.machine_key()]["mnist"]
    assert {p: recorded[p] for p in result["precisions"]} == {p: r["iter_per_s"] for p, r in result["precisions"].items()}
    assert sum("main.py's loop, 0 steps not measured (--loop_steps 0)" in " ".join(row.split()) for row in rows) == 2
    # The format that failed is named with the error's first line; the others' figures are all there.
    failed = "failed (NotFoundError: No registered 'Conv2D' OpKernel for 'CPU' devices)"
    assert result["not_measured"] == {"mixed_float16": failed}
    assert any(row.startswith("mixed_float16") and row.endswith(f"not measured: {failed}") for row in rows)


@pytest.mark.full
def test_bench_times_the_unconditional_colour_model(monkeypatch, capsys, tmp_path):
    # float32 alone: the 16-bit formats are the test above's, and the suite's time is short.
    monkeypatch.setattr(distribute, "missing_hardware", lambda precision: "a test that times them")
    rows, result = run_bench(capsys, tmp_path, model="64", loop_steps=400, steps=1)
    assert result["image"] == [64, 64, 3] and result["conditional"] is False
    assert result["flops_per_iter"] > 0 and result["g_forward_flops_per_image"] > 0
    figures = result["precisions"]["float32"]
    assert figures["samples_per_s"] > 0 and figures["generate_images_per_s"] > 0
    assert figures["loop_iter_per_s"] is None  # the loop is timed on MNIST only, and the table says so
    assert any("not measured (the loop is timed on MNIST, --model mnist)" in " ".join(row.split()) for row in rows)
    assert any(" ".join(row.split()) == "model --model 64: unconditional, 64x64x3 images" for row in rows)
    assert "64" in distribute.read_speeds(str(tmp_path / "speeds.json"))[distribute.machine_key()]
