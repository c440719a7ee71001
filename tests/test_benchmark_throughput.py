"""benchmarks/throughput.py on CPU with tiny settings: each method is built from its recipe, the limit does the
student's and teacher's calls read off the method's own forward (local views at half size, SPPS's neighbour views
included), and make_tables renders the JSON it writes. Timings here are one step each: not results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_tables
import throughput


def test_throughput_rows_and_sweep_on_cpu(tmp_path):
    output = tmp_path / "throughput_quick.json"
    throughput.main(["--quick", "--methods", "multinet_gl", "spps", "--no_lightly", "--batch", "16", "--repeats", "1",
                     "--warmup", "0", "--device", "cpu", "--output", str(output)])
    report = json.loads(output.read_text())
    rows = {row["method"]: row for row in report["results"]}
    assert rows["multinet_gl"]["config_source"] == "recipe" and rows["multinet_gl"]["bn_splits"] == 8
    # Multi-network GL: two global views at 32 px and local views at 16 px, through the student and two teachers.
    assert {tuple(side) for side in rows["multinet_gl"]["student_calls"]} == {(32, 32), (16, 16)}
    assert rows["multinet_gl"]["teacher_views"] >= 2
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
