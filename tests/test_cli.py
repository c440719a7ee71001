"""The command lines explain themselves: recipes/train.py --help (methods, defaults), `hf-contrastive methods`,
the warm-up warning and the normalisation message of a run, and --image_mean/--image_std on real CIFAR-10 images."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hf_contrastive
from hf_contrastive import cli
from hf_contrastive.data import DATASET_STATS
from hf_contrastive.training import Pretrainer, parse_args, train
from hf_contrastive.training.arguments import SAMPLE_DATASET, build_parser

REPO_ROOT = Path(__file__).resolve().parents[1]
# 64 training images in batches of 32: 2 steps per epoch; no kNN monitor, no tracker.
TINY_RUN = [
    "--max_train_samples", "64", "--max_eval_samples", "32", "--per_device_train_batch_size", "32",
    "--per_device_eval_batch_size", "32", "--dataloader_num_workers", "0", "--report_to", "none",
    "--knn_every_n_epochs", "0", "--config_overrides", "queue_size=128,projection_hidden_size=256",
]


# ---------------------------------------------------------------------------- recipes/train.py --help


def test_train_help_lists_the_methods_and_every_default():
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "recipes" / "train.py"), "--help"],
                               capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "120"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    text = " ".join(completed.stdout.split())  # argparse wraps lines
    assert f"--method METHOD Method to pretrain, one of: {', '.join(hf_contrastive.available_methods())}." in text
    for shown in ("(default: mnn)", "(default: 200)", "(default: 5.0)", "(default: 0.06)", "(default: off)",
                  "--image_mean R G B", "the embedded sample job"):
        assert shown in text, shown
    for action in build_parser()._actions:
        if action.dest != "help":
            assert action.help and "(default: " in action.help, action.option_strings


def test_method_flag_takes_known_names_in_any_spelling(capsys):
    assert parse_args(["--method", "MultiNet-GL"]).method == "multinet_gl"
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--method", "simclr2"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'simclr2'" in error and all(name in error for name in hf_contrastive.available_methods())


def test_recipe_with_unknown_method_lists_the_known_ones(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: simclr2\n")
    with pytest.raises(ValueError, match="Unknown method 'simclr2'. Available methods: byol, cacr, mnn"):
        Pretrainer(parse_args(["--config", str(recipe), "--output_dir", str(tmp_path / "out")]))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image_mean", "0.5", "0.5", "0.5"], "--image_mean and --image_std go together"),
        (["--image_mean", "0.5", "0.5", "0.5", "--image_std", "0.2", "0", "0.2"], "--image_std must be positive"),
        (["--image_mean", "0.5", "nan", "0.5", "--image_std", "0.2", "0.2", "0.2"], "3 finite numbers"),
    ],
)
def test_image_mean_and_std_are_checked(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_args(flags)


def test_image_mean_from_a_recipe_needs_three_numbers(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("image_mean: [0.5, 0.5]\nimage_std: [0.2, 0.2, 0.2]\n")
    with pytest.raises(ValueError, match=r"--image_mean takes 3 finite numbers \(red green blue\), got \[0.5, 0.5\]"):
        parse_args(["--config", str(recipe)])


# ---------------------------------------------------------------------------- hf-contrastive methods


def test_methods_lists_every_method_with_status_views_and_paper(capsys):
    assert cli.main(["methods"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name in hf_contrastive.available_methods():
        spec = hf_contrastive.get_method(name)
        assert rows[name].split()[1] == spec.status, name
        assert f"{spec.paper} (arXiv {spec.arxiv})" in rows[name], name
    assert "strong x2, local x4" in rows["multinet_gl"] and "reconstruction" in rows["multinet_gl"]
    assert "strong, weak" in rows["mnn"] and "implemented" in rows["mnn"]


def test_methods_name_shows_the_config_fields_with_defaults_and_the_recipes(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the recipes are looked up from the current folder, as a user runs it
    assert cli.main(["methods", "mnn"]) == 0
    lines = capsys.readouterr().out.splitlines()
    field_lines = [line.split(None, 1) for line in lines if line.startswith("  ") and ":" not in line]
    fields = dict(field_lines)
    assert fields["queue_size"] == "4096" and fields["nn_topk"] == "5" and fields["ema_momentum"] == "0.99"
    assert fields["views"] == "[strong, weak]" and fields["backbone"] == "resnet18"
    assert fields["small_image_stem"] == "true"
    for generic in ("id2label", "return_dict", "transformers_version", "model_type", "hidden_size"):
        assert generic not in fields
    order = [name for name, _ in field_lines]  # the method's own fields first, then the backbone fields
    assert order.index("nn_topk") < order.index("backbone")
    paper = "MNN: Mixed Nearest-Neighbors for Self-Supervised Learning (https://arxiv.org/abs/2311.00562)"
    assert f"  paper:   {paper}" in lines
    assert "  accelerate launch recipes/train.py --config recipes/configs/mnn_cifar10.yaml" in lines


def test_methods_name_outside_a_checkout_says_where_recipes_are(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["methods", "patchmix"]) == 0
    output = capsys.readouterr().out
    assert re.search(r"^  backbone +vit_small_patch16_224$", output, re.M)  # the method's own backbone default
    assert "Recipes: none in recipes/configs" in output


def test_methods_unknown_name_is_one_line_with_the_known_ones(capsys):
    assert cli.main(["methods", "simclr2"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("hf-contrastive methods: error: Unknown method 'simclr2'. Available methods: byol, cacr")


# ---------------------------------------------------------------------------- messages of a run


def test_warmup_longer_than_the_run_warns_with_the_fix(tmp_path, caplog):
    flags = TINY_RUN + ["--dataset_name", str(SAMPLE_DATASET), "--max_train_steps", "2", "--output_dir", str(tmp_path)]
    with caplog.at_level(logging.WARNING):
        trainer = Pretrainer(parse_args(flags + ["--warmup_epochs", "5"]))
    warnings = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert warnings == ["The warm-up (10 steps: --warmup_epochs 5 x 2 steps per epoch) is not shorter than the run "
                        "(2 steps): the learning rate never reaches its peak 0.0075 and never decays. Pass "
                        "--warmup_epochs 0, or a value below 1 (the run's length in epochs)."]
    # What it says is true of the schedule the run uses: every step's factor of the peak stays below 1.
    factor = trainer.lr_scheduler.scheduler.lr_lambdas[0]
    assert max(factor(step) for step in range(trainer.max_train_steps)) < 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Pretrainer(parse_args(flags + ["--warmup_epochs", "0.5"]))  # 1 warm-up step of 2
    assert not [r for r in caplog.records if "warm-up" in r.getMessage()]


def test_guessed_normalisation_is_named(tmp_path, capsys):
    Pretrainer(parse_args(TINY_RUN + ["--dataset_name", str(SAMPLE_DATASET), "--output_dir", str(tmp_path)]))
    mean, std = DATASET_STATS["cifar10"]
    assert (f"Normalisation: cifar10 mean ({', '.join(map(str, mean))}), std (0.2023, 0.1994, 0.201), guessed from "
            "the dataset name 'cifar10_sample'. Other values: --dataset_stats") in capsys.readouterr().out


def test_unknown_dataset_gets_imagenet_normalisation_with_a_warning(tmp_path, caplog):
    photos = tmp_path / "photos"  # the sample under a name that names no known dataset
    shutil.copytree(SAMPLE_DATASET, photos)
    with caplog.at_level(logging.WARNING):
        trainer = Pretrainer(parse_args(TINY_RUN + ["--dataset_name", str(photos),
                                                    "--output_dir", str(tmp_path / "run")]))
    assert (trainer.image_mean, trainer.image_std) == DATASET_STATS["imagenet"]
    [message] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Normalisation")]
    assert message.startswith("Normalisation: ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), the "
                              "default for a dataset whose name ('photos') contains none of cifar10, cifar100, stl10")
    assert "pass --dataset_stats" in message and "--image_mean R G B --image_std R G B" in message


def test_image_mean_and_std_normalise_training_and_reach_the_hub_folder(tmp_path, capsys):
    """Mean 0 and std 1: the training views keep the [0, 1] pixel range (CIFAR-10's statistics would make the dark
    pixels negative), and the exported image processor and the card carry the same values."""
    args = parse_args(TINY_RUN + ["--dataset_name", str(SAMPLE_DATASET), "--max_train_steps", "2", "--warmup_epochs",
                                  "0", "--image_mean", "0", "0", "0", "--image_std", "1", "1", "1",
                                  "--output_dir", str(tmp_path)])
    trainer = Pretrainer(args)
    assert "Normalisation: mean (0, 0, 0), std (1, 1, 1) (--image_mean/--image_std)." in capsys.readouterr().out
    views = torch.stack([view for index in range(4) for view in trainer.train_dataset[index]["views"]])
    assert views.min() >= 0 and views.max() <= 1 and views.max() > 0.5
    trainer.train()
    processor = json.loads((tmp_path / "model" / "preprocessor_config.json").read_text())
    assert (processor["image_mean"], processor["image_std"]) == ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert "mean `[0.0, 0.0, 0.0]`, std `[1.0, 1.0, 1.0]` (--image_mean/--image_std)" in (
        tmp_path / "model" / "README.md").read_text()


def test_default_normalisation_still_reaches_the_hub_folder(tmp_path):
    train(parse_args(TINY_RUN + ["--dataset_name", str(SAMPLE_DATASET), "--max_train_steps", "1", "--warmup_epochs",
                                 "0", "--output_dir", str(tmp_path)]))
    processor = json.loads((tmp_path / "model" / "preprocessor_config.json").read_text())
    assert (tuple(processor["image_mean"]), tuple(processor["image_std"])) == DATASET_STATS["cifar10"]
    assert "`cifar10` mean/std (in `preprocessor_config.json`)" in (tmp_path / "model" / "README.md").read_text()
