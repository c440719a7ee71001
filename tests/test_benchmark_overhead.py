"""benchmarks/overhead.py: its op counts are exact for a known step, its limit is read off the method's own forward,
and make_tables renders the JSON it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_tables
import overhead
import recipe_run


def test_op_counter_counts_launching_ops_and_tensors_from_python_data():
    """A Linear forward+backward by hand: addmm forward; mm (input grad), mm and sum (weight and bias grads) in
    backward; views (t) and detach are not work. torch.tensor([...]) is counted apart."""
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    with overhead.OpCounter() as counter:
        layer(x).sum().backward()
        torch.tensor([1.0, 2.0])
    assert counter.from_python_data == 1
    assert counter.ops["addmm"] == 1 and counter.ops["mm"] == 2 and "t" not in counter.ops and "detach" not in counter.ops


def test_overhead_report_for_two_recipes_and_its_table(tmp_path):
    output = tmp_path / "overhead.json"
    overhead.main(["--methods", "mnn", "ressl", "--proxy_repeats", "1", "--output", str(output), "--label", "test"])
    report = json.loads(output.read_text())
    assert report["benchmark"] == "overhead" and report["label"] == "test" and report["code"]
    rows = {row["method"]: row for row in report["results"]}
    # Read off the forwards with one call per view: MNN's two views through student and teacher, ReSSL one each.
    assert rows["mnn"]["per_view_encoder_calls"] == {"student": 2, "teacher": 2}
    assert rows["ressl"]["per_view_encoder_calls"] == {"student": 1, "teacher": 1}
    for row in rows.values():
        assert row["tensors_from_python_data_ours"] == 0
        # Ours does the stacked limit's backbone work plus heads, loss, EMA and enqueue.
        assert row["ops_limit_stacked"] <= row["ops_limit"] and row["ops_limit_stacked"] < row["ops_ours"]
        assert row["op_ratio"] == round(row["ops_ours"] / row["ops_limit"], 3) and row["proxy_ours_over_limit"] > 0
    # MNN's views stacked (one call per network) do ReSSL's bare work: one student and one teacher call.
    assert rows["mnn"]["ops_limit_stacked"] == rows["ressl"]["ops_limit"]
    section = make_tables.overhead_section([(output, report)])
    assert "| mnn |" in section and "test (`" in section and str(rows["mnn"]["ops_ours"]) in section


def test_loop_against_its_bare_step_with_the_loader_and_on_the_device(tmp_path):
    """--loop_steps: the real loop (loader, and --data_on_device) against its bare step on its own batches, as a
    ratio per path, and its table."""
    output = tmp_path / "loop.json"
    overhead.main(["--methods", "mnn", "--no_counts", "--loop_steps", "2", "--loop_batch_size", "16",
                   "--loop_workers", "0", "--output", str(output)])
    report = json.loads(output.read_text())
    loop = report["results"][0]["loop"]
    for name in ("loader", "data_on_device"):
        # From the unrounded seconds; the JSON keeps 4 digits of each.
        assert loop[name]["bare_over_loop"] == pytest.approx(loop[name]["bare_step_s"] / loop[name]["loop_step_s"],
                                                             abs=2e-3)
        assert loop[name]["bare_over_loop"] > 0
    assert "The real loop against its bare step" in make_tables.overhead_section([(output, report)])


def test_gpu_check_script_dry_run_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh with GPU_CHECK_DRY_RUN=1: the same commands at tiny settings on the CPU, so the one
    prepared GPU call does not fail on a typo. It writes the timed overhead JSON and the recipe run's summary."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    sample = root / "hf_contrastive" / "sample_data" / "cifar10_sample"
    run = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), str(sample), str(tmp_path)], cwd=root, env={**os.environ, "GPU_CHECK_DRY_RUN": "1", "PYTHON": sys.executable},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    timed = json.loads((tmp_path / "overhead_gpu.json").read_text())
    (row,) = timed["results"]
    assert row["method"] == "mnn" and row["timed"]["ours_images_per_s"] > 0 and 0 < row["timed"]["ours_over_limit"]
    assert row["timed"]["sync_free"] == "not checked (CPU)" and "ops_ours" not in row  # --no_counts
    recipe = json.loads((tmp_path / "recipe_mnn_two_epochs_cpu.json").read_text())
    assert recipe["benchmark"] == "recipe_run" and recipe["knn_history"]


def test_recipe_speed_from_tqdm_lines_and_a_run_shorter_than_its_clock():
    """tqdm prints elapsed time in whole seconds: 100 steps from 10 s to 20 s is 10 steps/s; a run whose lines all
    read the same second (a dry run on a fast machine) has no speed rather than a division by zero."""
    log = "\r".join(f"pretraining:  5%|#| {step}/400 [00:{elapsed:02d}<00:30, 9.9it/s, epoch={step // 100}, loss=1.0]"
                     for step, elapsed in [(110, 10), (160, 15), (210, 20)])
    points = recipe_run.parse_progress(log)
    assert points == [(110, 10, 1), (160, 15, 1), (210, 20, 2)]
    speed = recipe_run.training_speed(points, steps_per_epoch=100, batch=8)
    assert speed["train_steps_per_s"] == 10 and speed["train_images_per_s"] == 80
    assert speed["seconds_per_epoch_overall"] == 10
    same_second = recipe_run.training_speed([(1, 0, 0), (2, 0, 0)], steps_per_epoch=100, batch=8)
    assert same_second["train_images_per_s"] is None and same_second["steps_done"] == 2
