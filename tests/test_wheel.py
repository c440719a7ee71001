"""The package works from a wheel, not only from a checkout: the card template and the CIFAR-10 sample of the default
job are package data. The wheel is built from a copy of the sources, installed into a folder of its own and run from
a folder outside the repository, so neither the editable install nor the repository can stand in for it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# A 2-step run on the packaged sample: 64 images in batches of 32, a small queue, no warm-up.
TINY_FLAGS = [
    "--max_train_steps", "2", "--max_train_samples", "64", "--max_eval_samples", "64",
    "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64", "--warmup_epochs", "0",
    "--knn_every_n_epochs", "0", "--dataloader_num_workers", "0", "--report_to", "none",
    "--config_overrides", "queue_size=128,projection_hidden_size=256",
]
LOAD_ENCODER = """
import sys
import hf_contrastive
from transformers import AutoModel
encoder = AutoModel.from_pretrained(sys.argv[1])
print(hf_contrastive.__file__)
print(type(encoder).__name__)
"""


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    return completed


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The wheel installed with ``pip install --target``: returns that folder (the PYTHONPATH to run it with)."""
    missing = [name for name in ("pip", "setuptools") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"cannot build a wheel without network: {', '.join(missing)} not installed in this environment "
                    f"(pip install {' '.join(missing)})")
    work = tmp_path_factory.mktemp("wheel")
    # Built from a copy: an in-tree build would write build/ and *.egg-info into the repository.
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "hf_contrastive", source / "hf_contrastive",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
          str(work / "dist"), str(source)], cwd=work, env=dict(os.environ))
    [wheel] = (work / "dist").glob("hf_contrastive-*.whl")
    site = work / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet", "--target", str(site),
          str(wheel)], cwd=work, env=dict(os.environ))
    return site


def test_wheel_holds_the_template_and_the_sample(installed_wheel):
    package = installed_wheel / "hf_contrastive"
    assert (package / "templates" / "model_card.md").is_file()
    assert sorted(p.name for p in (package / "sample_data" / "cifar10_sample").iterdir()) == [
        "README.md", "test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]


def test_default_job_runs_from_the_wheel_outside_the_repository(installed_wheel, tmp_path):
    """recipes/train.py without --dataset_name (the packaged sample), then AutoModel on the written folder, both
    importing the wheel's package (PYTHONPATH comes before the editable install's finder)."""
    shutil.copy(REPO_ROOT / "recipes" / "train.py", tmp_path / "train.py")
    env = {**os.environ, "PYTHONPATH": str(installed_wheel), "HF_CONTRASTIVE_TRACEBACK": "1"}
    run = _run([sys.executable, "train.py", *TINY_FLAGS], cwd=tmp_path, env=env)
    assert "guessed from the dataset name 'cifar10_sample'" in run.stdout
    folder = tmp_path / "outputs" / "mnn-resnet18" / "model"
    recipe = json.loads((folder / "training_args.json").read_text())
    assert Path(recipe["dataset_name"]).is_relative_to(installed_wheel / "hf_contrastive" / "sample_data")
    card = (folder / "README.md").read_text()
    assert "kNN top-1" in card and "cifar10_sample (local copy of uoft-cs/cifar10)" in card

    loaded = _run([sys.executable, "-c", LOAD_ENCODER, str(folder)], cwd=tmp_path, env=env)
    package_file, class_name = loaded.stdout.split()[-2:]
    assert Path(package_file).is_relative_to(installed_wheel) and class_name == "MNNModel"


def test_methods_command_runs_from_the_wheel_outside_the_repository(installed_wheel, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    run = _run([sys.executable, "-m", "hf_contrastive", "methods", "mnn"], cwd=tmp_path, env=env)
    assert "queue_size" in run.stdout and "Recipes: none in recipes/configs" in run.stdout
