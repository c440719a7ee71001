"""benchmarks/quality.py: training time of the published (calibrated) runs in reference-machine minutes, the
training commands it builds, random init, the summary and its table, and one whole quick call on the sample."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import quality


def test_training_time_is_expressed_in_reference_seconds():
    # 40 minutes on a CPU whose steps take 2/3 of the reference's time are 60 reference minutes.
    calibrated = {"calibration": {"role": "calibrated", "speed_factor": 2 / 3}}
    assert quality.reference_seconds(calibrated, 2400.0) == pytest.approx(3600.0)
    for uncalibrated in ({}, {"calibration": None}, {"calibration": {"role": "reference", "speed_factor": 1.0}}):
        assert quality.reference_seconds(uncalibrated, 2400.0) == 2400.0


def test_knn_curve_puts_evaluations_on_minutes_or_epochs():
    # A calibrated run (steps 1.25x the reference's time) evaluated at epoch 9 and at its end (epoch 37.974).
    run = {"calibration": {"role": "calibrated", "speed_factor": 0.8},
           "knn_history": [{"step": 3510, "epoch": 9, "knn_top1": 0.4093, "train_time_s": 2400.0},
                           {"step": 14810, "epoch": 37.974, "knn_top1": 0.5029, "train_time_s": 12000.0}]}
    minutes = quality.knn_curve(run, "minutes")
    assert [x for x, _ in minutes] == pytest.approx([50.0, 250.0])  # 2400 s / 0.8 = 3000 reference s
    assert [y for _, y in minutes] == pytest.approx([40.93, 50.29])
    epochs = quality.knn_curve(run, "epochs")
    # pytest.approx takes flat sequences of numbers only (pytest >= 9.2 refuses a list of tuples).
    assert [x for x, _ in epochs] == pytest.approx([9, 37.974])
    assert [y for _, y in epochs] == pytest.approx([40.93, 50.29])
    assert quality.knn_curve({"method": "random_init"}, "epochs") == []
    assert quality.knn_curve({"method": "random_init", "knn_history": None}, "minutes") == []  # as its JSON has it
    with pytest.raises(ValueError, match="'minutes' or 'epochs'"):
        quality.knn_curve(run, "steps")


def test_plots_only_redraws_the_published_plot_and_writes_no_json(tmp_path):
    pytest.importorskip("matplotlib")
    published = REPO_ROOT / "benchmarks" / "results"
    shutil.copy(published / "quality_180min.json", tmp_path)
    shutil.copytree(published / "quality" / "180min", tmp_path / "quality" / "180min")
    jsons_before = {p: p.read_bytes() for p in tmp_path.rglob("*.json")}
    quality.main(["--plots_only", "--results_dir", str(tmp_path)])
    png = tmp_path / "quality_180min.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json")} == jsons_before


@pytest.mark.parametrize(("backbone", "optimizer", "base_lr", "decay", "decay_end", "min_lr"), [
    ("resnet18", "sgd", 0.06, 5e-4, 5e-4, 0.0),  # the protocol's optimiser, as every other method
    ("vit_tiny", "adamw", 5e-4, 0.04, 0.4, 1e-6),  # the recipe's ViT optimiser
])
def test_patchmix_run_takes_the_optimiser_of_its_backbone(tmp_path, backbone, optimizer, base_lr, decay, decay_end,
                                                          min_lr):
    """The command a PatchMix run trains with, read back through the real parser and recipe file."""
    run = {"dataset_name": "hf_contrastive/sample_data/cifar10_sample", "batch": 128, "base_learning_rate": 0.06,
           "seed": 0, "workers": 0,
           "patchmix_backbone": backbone, "config_overrides": ""}
    args = quality.make_args(quality.training_argv("patchmix", run, tmp_path, 100, 5.0, 0))
    assert (args.optimizer, args.base_learning_rate, args.weight_decay, args.weight_decay_end,
            args.min_learning_rate) == (optimizer, base_lr, decay, decay_end, min_lr)
    assert args.config_overrides["backbone"] == quality.PATCHMIX_OVERRIDES[backbone]["backbone"]


def test_summary_and_table_name_the_calibration_method_of_the_published_runs():
    import make_tables

    def run(method, seed, accuracy, calibration):
        return {"method": method, "seed": seed, "knn_top1": accuracy, "epochs": 10.0, "max_train_steps": 3900,
                "train_time_s": 2400.0, "probe": {"seconds_per_step": 0.6}, "calibration": calibration}

    runs = [run("random_init", 0, 0.37, None),
            run("mnn", 0, 0.42, {"role": "reference", "method": "mnn", "speed_factor": 1.0}),
            run("simclr", 0, 0.53, {"role": "calibrated", "method": "byol", "speed_factor": 0.5})]
    summary = quality.summarize(runs)
    assert summary["calibrated_with"] == ["byol"]
    simclr = next(r for r in summary["rows"] if r["method"] == "simclr")
    assert simclr["train_minutes_mean"] == pytest.approx(80.0)  # 40 min here at speed factor 0.5
    assert simclr["minus_random_init_pp"] == pytest.approx(16.0)

    calibrated_protocol = {"budget_minutes": 60}  # as quality.py wrote it until 2026-12-06
    text = make_tables.quality_section([(Path("quality_60min.json"), {"protocol": calibrated_protocol, **summary})])
    assert "speed factor = `byol`'s seconds per step" in text
    # Summaries written before the field existed were calibrated with the default, MNN.
    older = {key: value for key, value in summary.items() if key != "calibrated_with"}
    assert "speed factor = `mnn`'s seconds per step" in make_tables.quality_section(
        [(Path("quality_60min.json"), {"protocol": calibrated_protocol, **older})])
    # Runs of today's quality.py are in their own machine's minutes: no calibration sentence.
    assert "speed factor =" not in make_tables.quality_section(
        [(Path("quality_60min.json"), {"protocol": {"budget_minutes": 60, "minutes": "own"}, **summary})])


def test_augmentations_reach_the_training_command(tmp_path):
    """A view-option ablation's command, read back through the real parser and multinet_gl's recipe file."""
    run = {"dataset_name": "hf_contrastive/sample_data/cifar10_sample", "batch": 128, "base_learning_rate": 0.06,
           "seed": 0, "workers": 0,
           "patchmix_backbone": "resnet18", "config_overrides": "", "augmentations": "local={crop_scale: [0.14, 1.0]}"}
    args = quality.make_args(quality.training_argv("multinet_gl", run, tmp_path, 100, 5.0, 0))
    assert args.augmentations == {"local": {"crop_scale": [0.14, 1.0]}}
    plain = quality.make_args(quality.training_argv("multinet_gl", {**run, "augmentations": ""}, tmp_path, 100, 5.0, 0))
    assert plain.augmentations == {}


def test_spps_mines_with_the_sampler_of_a_kept_run(tmp_path):
    """SPPS's command names the sampler folder; a kept benchmark run's folder is linked to that run's JSON, whose
    minutes and accuracy the table prints beside SPPS's row."""
    import make_tables

    results, model = tmp_path / "results", tmp_path / "outputs" / "60min" / "simclr_seed1" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    sampler_run = {"method": "simclr", "seed": 1, "knn_top1": 0.53, "train_time_s": 2400.0,
                   "calibration": {"role": "calibrated", "method": "mnn", "speed_factor": 2 / 3}}
    (results / "quality" / "60min").mkdir(parents=True)
    (results / "quality" / "60min" / "simclr_seed1.json").write_text(json.dumps(sampler_run))

    record = quality.sampler_record(str(model), results)
    assert (record["encoder"], record["method"], record["seed"], record["knn_top1"]) == (str(model), "simclr", 1, 0.53)
    assert record["train_minutes"] == pytest.approx(60.0)  # 40 min on a CPU at speed factor 2/3

    run = {"dataset_name": "hf_contrastive/sample_data/cifar10_sample", "batch": 128, "base_learning_rate": 0.06,
           "seed": 0, "workers": 0,
           "patchmix_backbone": "resnet18", "config_overrides": "", "spps_sampler": str(model)}
    args = quality.make_args(quality.training_argv("spps", run, tmp_path, 100, 5.0, 0))
    assert args.config_overrides["mining_encoder"] == str(model)
    other = quality.make_args(quality.training_argv("simclr", run, tmp_path, 100, 5.0, 0))
    assert "mining_encoder" not in other.config_overrides

    runs = [{"method": "spps", "seed": 0, "knn_top1": 0.5, "epochs": 10.0, "max_train_steps": 3900,
             "train_time_s": 2400.0, "probe": {"seconds_per_step": 0.6}, "calibration": None, "spps_sampler": record}]
    summary = quality.summarize(runs)
    text = make_tables.quality_section([(Path("quality_60min.json"), {"protocol": {"budget_minutes": 60}, **summary})])
    assert "spps (sampler: simclr seed 1, 60.0 min)" in text
    # A Hub id (or any folder outside the benchmark) is named as it is.
    assert quality.sampler_record("org/byol-resnet18", results) == {"encoder": "org/byol-resnet18"}


def test_spps_without_a_usable_sampler_fails_before_training(tmp_path, capsys):
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(ValueError, match="no config.json in that folder"):
        quality.sampler_record(str(tmp_path / "not_a_model"), tmp_path)
    with pytest.raises(ValueError, match="not an existing folder, and not a Hub id"):
        quality.sampler_record(str(tmp_path / "missing" / "run" / "model"), tmp_path)
    for argv in (["--budget_minutes", "60", "--methods", "spps"],
                 ["--budget_minutes", "60", "--methods", "spps", "--spps_sampler", str(tmp_path / "not_a_model")]):
        with pytest.raises(SystemExit):
            quality.main(argv + ["--results_dir", str(tmp_path / "results")])
        assert "--spps_sampler" in capsys.readouterr().err


def test_random_init_of_an_ablation_keeps_only_simclr_fields(tmp_path):
    """An ablation of another method's loss field (PatchMix's mixing weights) still measures random init, on real
    sample images: SimCLR's encoder takes the fields it has (views) and the others are left out and recorded."""
    run = {"dataset_name": "hf_contrastive/sample_data/cifar10_sample", "batch": 128, "base_learning_rate": 0.06,
           "seed": 0, "workers": 0,
           "patchmix_backbone": "resnet18",
           "config_overrides": "views=[strong, strong],mixed_to_original_weight=0,mixed_to_mixed_weight=0"}
    record = quality.run_random_init(run, tmp_path)
    assert record["config_overrides_ignored"] == ["mixed_to_mixed_weight", "mixed_to_original_weight"]
    assert 0.1 < record["knn_top1"] < 0.5  # an untrained ResNet-18 on 10 classes: above chance, far from trained
    assert record["eval_samples"] == 500


def test_patchmix_on_vit_has_its_own_folder_and_random_init(tmp_path, capsys):
    """`--patchmix_backbone vit_tiny` measures random init on the ViT-Ti/4 of a fresh PatchMix model (real sample
    images), and refuses other methods, which would otherwise land in the ViT's folder with their ResNet-18."""
    run = {"dataset_name": "hf_contrastive/sample_data/cifar10_sample", "batch": 128, "base_learning_rate": 0.06,
           "seed": 0, "workers": 0,
           "patchmix_backbone": "vit_tiny", "config_overrides": ""}
    record = quality.run_random_init(run, tmp_path)
    assert record["backbone"] == "vit_tiny_patch16_224"
    assert "PatchMixForPreTraining" in record["note"]
    assert 0.1 < record["knn_top1"] < 0.5
    with pytest.raises(SystemExit):
        quality.main(["--budget_minutes", "60", "--methods", "simclr", "patchmix", "--patchmix_backbone", "vit_tiny",
                      "--results_dir", str(tmp_path / "results")])
    assert "trains PatchMix only" in capsys.readouterr().err


def test_a_quick_call_probes_trains_and_summarises_on_the_sample(tmp_path):
    """The whole benchmark at tiny settings on the shipped sample (real images, the real loop): the probe's step
    count for the budget, one run with its kNN, random init, and the summary the README table is made from."""
    results = tmp_path / "results"
    quality.main(["--quick", "--methods", "simclr", "--batch", "32", "--probe_steps", "4", "--budget_minutes", "0.05",
                  "--workers", "0", "--results_dir", str(results), "--work_dir", str(tmp_path / "work")])
    run = json.loads((results / "quality" / "quick_lr0.06_b32" / "simclr_seed0.json").read_text())
    assert run["max_train_steps"] == max(1, int(0.05 * 60 / run["probe"]["seconds_per_step"]))
    assert 0.0 < run["knn_top1"] < 1.0 and "calibration" not in run
    summary = json.loads((results / "quality_quick_lr0.06_b32.json").read_text())
    assert [row["method"] for row in summary["rows"]] == ["random_init", "simclr"]
    assert summary["protocol"]["minutes"] == "own"
    assert not (tmp_path / "work").exists()  # training folders removed
