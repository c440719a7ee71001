"""benchmarks/reproduce.sh, the one prepared command that reproduces a paper's CIFAR-10 number on a GPU: its dry run
(the same commands at tiny settings on the CPU) trains, probes with the method's reference protocol, fills the
card's model-index and writes the results JSON; a second call skips what is finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from huggingface_hub import ModelCard

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"


def _reproduce(results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "reproduce.sh"), "mnn", str(SAMPLE), str(results)],
                          cwd=ROOT, env={**os.environ, "REPRODUCE_DRY_RUN": "1", "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=600)


def test_reproduce_dry_run_trains_probes_reports_and_resumes(tmp_path):
    first = _reproduce(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads((tmp_path / "recipe_mnn_reproduce.json").read_text())
    assert report["benchmark"] == "recipe_run" and report["device_name"] == "cpu"
    assert set(report["versions"]) == {"torch", "transformers", "timm", "accelerate"}
    assert report["setting"]["method"] == "mnn" and report["progress"]["steps_done"] == 2
    assert report["command"].startswith("bash benchmarks/reproduce.sh mnn")
    linear = report["linear_probe"]
    assert 0 <= linear["last_top1"] <= 1 and linear["best_epoch"] == 1
    assert linear["protocol"]["reference_protocol"] == "mnn" and linear["protocol"]["lr_schedule"] == "step"
    assert report["wall_seconds"] > 0
    card = ModelCard.load(tmp_path / "mnn" / "run" / "model" / "README.md")
    names = {result.metric_name for result in card.data.eval_results}
    assert "linear probe top-1 (step schedule, best epoch)" in names

    # A second call finds the run and the probe finished: nothing is trained or probed again.
    second = _reproduce(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "pretraining" not in second.stdout + second.stderr and "linear probe" not in second.stdout
    again = json.loads((tmp_path / "recipe_mnn_reproduce.json").read_text())
    assert again["linear_probe"] == linear and again["wall_seconds"] >= report["wall_seconds"]


def test_reproduce_refuses_a_method_without_a_cifar10_recipe(tmp_path):
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "reproduce.sh"), "nosuch", str(SAMPLE), str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no CIFAR-10 recipe for 'nosuch'" in run.stderr
