"""benchmarks/probe_check.py on real sample images: the probe and the full-split loop both run the real training
loop, and the JSON holds what README's probe finding is computed from."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import probe_check


def test_probe_and_full_split_loop_are_timed_step_by_step(tmp_path):
    output = tmp_path / "probe_check.json"
    # The sample's train split is 2,000 images: 15 steps of 128 per epoch, so 20 steps cross an epoch boundary.
    probe_check.main(["--methods", "simclr", "--steps", "20", "--probe_steps", "6", "--dataset_name",
                      "hf_contrastive/sample_data/cifar10_sample", "--workers", "0", "--output", str(output),
                      "--work_dir", str(tmp_path / "work")])
    report = json.loads(output.read_text())
    (row,) = report["methods"]
    assert row["method"] == "simclr"
    assert row["probe"]["steps_timed"] == 6 - 1 - 3  # 6 steps give 5 gaps; the first 3 are skipped
    gaps = row["full_split_gaps_s"]
    assert len(gaps) == 19 and all(g > 0 for g in gaps)
    assert row["full_split"]["mean_s"] == pytest.approx(statistics.fmean(gaps[3:]), abs=1e-3)
    assert row["predicted_budget_ratio"] == round(row["full_split"]["mean_s"] / row["probe"]["median_s"], 3)
    (eleven,) = row["window_spread"]  # 16 timed steps hold one 11-step window and no 41-step one
    assert eleven["window"] == 11 and eleven["windows"] == 1
    assert not (tmp_path / "work").exists()  # training folders removed


def test_window_spread_by_hand():
    # Timed steps [1, 1, 1, 2, 2, 2] (the first 3 skipped): median 1.5; two 3-step windows, medians 1 and 2.
    spread = probe_check.window_spread([9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0], skip=3, window=3)
    assert spread == {"window": 3, "windows": 2, "std_pct": 33.33, "lowest_pct": -33.33, "highest_pct": 33.33}
