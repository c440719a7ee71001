"""benchmarks/throughput.py on CPU with tiny settings: every registered method is measured with the route its own
forward takes (no hand-written table), each built from its recipe by default; the limit's calls include Multi-network
GL's half-size local views and SPPS's neighbour views; memory per variant; make_tables renders the JSON it writes.
Timings here are one step each: not results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_tables
import throughput

import hf_contrastive


def test_throughput_rows_and_sweep_on_cpu(tmp_path):
    output = tmp_path / "throughput_quick.json"
    throughput.main(["--quick", "--methods", "multinet_gl", "spps", "--no_lightly", "--batch", "16", "--repeats", "1",
                     "--warmup", "0", "--device", "cpu", "--output", str(output)])
    report = json.loads(output.read_text())
    rows = {row["method"]: row for row in report["results"]}
    # Multi-network GL: global views at 32 px and local views at 16 px reach the student.
    assert {tuple(side) for side in rows["multinet_gl"]["student_calls"]} == {(32, 32), (16, 16)}
    # SPPS (SimCLR base): its two views and its neighbour views all reach the student; no teacher.
    assert rows["spps"]["student_views"] == len(rows["spps"]["views"]) + len(rows["spps"]["neighbour_views"])
    assert rows["spps"]["teacher_views"] == 0
    for row in rows.values():
        assert row["ours_step_s"] > 0 and row["limit_step_s"] > 0 and row["ours_over_limit"] > 0
        assert row["memory"]["ours"]["peak_mib"] >= row["memory"]["ours"]["state_mib"] > 0
    assert "| multinet_gl |" in make_tables.throughput_section([(output, report)])

    sweep = tmp_path / "throughput_sweep_quick.json"
    throughput.main(["--sweep", "--quick", "--methods", "mnn", "--queue_sizes", "256", "--batch_sizes", "16",
                     "--device", "cpu", "--output", str(sweep)])
    points = json.loads(sweep.read_text())
    assert points["benchmark"] == "throughput_sweep"


def test_throughput_reads_every_methods_route_off_its_forward():
    """benchmarks/throughput.py keeps no hand-written table of which views reach which network: every registered
    method (a new one included) is measured with the route its own forward takes, one call per view."""
    expected = {"mnn": (2, 2), "msf": (1, 1), "msvq": (1, 3), "simclr": (2, 0), "multinet_gl": (6, 2)}
    for method in hf_contrastive.available_methods():
        row = throughput.measure(method, batch=4, image_size=32, small_stem=False, repeats=1, warmup=0,
                                 device=torch.device("cpu"), with_lightly=False, with_memory=False,
                                 config_source="default")
        assert row["ours_step_s"] > 0 and row["limit_step_s"] > 0 and row["student_views"] >= 1, method
        if method in expected:
            assert (row["student_views"], row["teacher_views"]) == expected[method], method
    assert row["student_calls"] and all(len(side) == 2 for side in row["student_calls"])
    # By default each method is built from its CIFAR-10 recipe (MNN's: 8 BatchNorm splits, queue 4096).
    row = throughput.measure("mnn", batch=16, image_size=32, small_stem=False, repeats=1, warmup=0,
                             device=torch.device("cpu"), with_lightly=False, with_memory=False)
    assert (row["config_source"], row["bn_splits"], row["queue_size"]) == ("recipe", 8, 4096)
