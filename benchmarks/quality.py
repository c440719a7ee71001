"""Accuracy at a fixed wall-clock budget on real CIFAR-10: every method trained for the same time, then kNN top-1.

    python benchmarks/quality.py --quick                                   # smoke run, ~2-3 min, shipped sample
    python benchmarks/quality.py --budget_minutes 60 --methods mnn msf byol simclr --seeds 0 1 2
    python benchmarks/quality.py --budget_minutes 60 --summarize_only      # re-make the summary JSON + plot
    python benchmarks/quality.py --plots_only                              # redraw every plot, JSONs untouched

Protocol (benchmarks/README.md says why): each method's CIFAR-10 recipe (recipes/configs/<method>_cifar10.yaml:
its hyper-parameters, views, EMA, queue, SplitBatchNorm) with ResNet-18 and the *standard* stem at 32 px, batch 128,
SGD lr 0.06 x 128 / 256, run by the real training loop (hf_contrastive.training). The budget becomes a step count:
a short probe of the real loop (data loading included) measures seconds per step on this machine, then the run
gets `--max_train_steps = budget / (s/step)`, so the cosine schedule (after a warm-up of `--warmup_fraction` of the
steps) ends exactly at the budget, in minutes of this machine. kNN top-1 (k=200, T=0.1, bank = the 50k train images,
queries = the full 10k test split) is measured `--knn_points` times during training and at the end; its time is
not part of the budget. The same ResNet-18 at random initialisation (one per seed) is always measured too.
SPPS mines its neighbours once with a pretrained sampler, so it runs only with `--spps_sampler` (e.g. the kept
output of another 60-minute run: `--methods simclr --seeds 1 --keep_outputs`, then `--methods spps --spps_sampler
outputs/quality/60min/simclr_seed1/model`); the mining counts as SPPS's training time, the sampler's own minutes
are stated beside its row.

Writes one JSON per run in `--results_dir/quality/<tag>/` (`<method>_seed<S>.json`, `random_init_seed<S>.json`; an existing
one is skipped, so an interrupted campaign continues where it stopped), and `--results_dir/quality_<tag>.json`
(mean/std per method, random-init row, difference in percentage points) with the plot `quality_<tag>.png` (kNN top-1
against training minutes and epochs). `<tag>` is `<M>min`, or `quick`; `_lr<L>_b<B>` is appended when `--base_learning_rate`
or `--batch` differ from the protocol's 0.06 and 128, `_<overrides>` for `--config_overrides` (an ablation such
as `--config_overrides "views=[strong, strong]"`, applied to every method of the call), and `_aug-<augmentations>` for
`--augmentations` (view options, e.g. `--augmentations "local={crop_scale: [0.14, 1.0]}"`).

A sanity check that every method learns on real images, not a race: the runs published before 2026-12-06 also
scaled each budget by a calibration probe against a reference CPU and continued cut-off runs from checkpoints
(benchmarks/README.md; quality.py at commit 1e11123); their JSONs keep those fields and are still summarised and
plotted in reference-machine minutes.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from huggingface_hub.utils import HFValidationError, validate_repo_id

import hf_contrastive
from hf_contrastive.training import Pretrainer, parse_args
from hf_contrastive.training.arguments import parse_overrides

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, RESULTS_DIR, SHARED_CIFAR10, display_path, environment, write_json
from training_setup import RECIPES, StepTimes

SAMPLE = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"
RANDOM_INIT = "random_init"
# Each method's probe: 45 steps, 41 timed. Until 2026-11-29 it was 15 (11 timed); probe_check.py (since
# removed) measured that the median of 11 steps strays from the full loop's by 0.7-2.8% (sd; up to 9.8%), of 41 steps by 0.4-2.4%.
PROBE_STEPS = 45
# Where the trainer runs (Accelerate picks CUDA when present): recorded in every JSON.
TRAINING_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# PatchMix is a ViT method; the benchmark keeps one backbone for every method. "resnet18": PatchMix's mixing of
# 8x8-pixel cells (a 4x4 grid, like a ViT/8) and its losses on the same ResNet-18 as the others; "vit_tiny": ViT-Ti/4.
PATCHMIX_OVERRIDES = {
    "resnet18": {"backbone": "resnet18", "backbone_kwargs": {}, "mix_patch_size": 8},
    "vit_tiny": {"backbone": "vit_tiny_patch16_224", "backbone_kwargs": {"img_size": 32, "patch_size": 4},
                 "mix_patch_size": None},
}
# PatchMix's recipe trains a ViT with AdamW (lr 5e-4 x B/256, weight decay 0.04 -> 0.4, min lr 1e-6). On the ResNet-18
# it takes the protocol's optimiser like every other method (SGD, lr 0.06 x B/256, constant weight decay 5e-4, cosine
# to 0: the cosine from 5e-4 to 5e-4 is constant); on ViT-Ti it keeps its recipe's optimiser, learning rate included.
PATCHMIX_OPTIMISER = {
    "resnet18": ["--optimizer", "sgd", "--weight_decay", "5e-4", "--weight_decay_end", "5e-4",
                 "--min_learning_rate", "0"],
    "vit_tiny": [],
}


def overrides_text(overrides: dict) -> str:
    """A --config_overrides string (values as YAML flow)."""
    def fmt(value):
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    return ",".join(f"{key}={fmt(value)}" for key, value in overrides.items())


def training_argv(method: str, run: dict, output_dir: Path, max_train_steps: int, warmup_epochs: float,
                  knn_every_n_epochs: int, max_train_samples: int | None = None) -> list[str]:
    """The recipes/train.py command line of one run (also stored in the results JSON)."""
    overrides = {"small_image_stem": False, "image_size": 32}
    if method == "patchmix":
        overrides = {**PATCHMIX_OVERRIDES[run["patchmix_backbone"]], "image_size": 32}
    if method == "spps" and run.get("spps_sampler"):
        overrides["mining_encoder"] = run["spps_sampler"]
    extra = overrides_text(overrides) + (f",{run['config_overrides']}" if run["config_overrides"] else "")
    argv = [
        "--method", method,
        "--dataset_name", run["dataset_name"], "--dataset_stats", "cifar10",
        "--output_dir", str(output_dir),
        "--per_device_train_batch_size", str(run["batch"]),
        *([] if method == "patchmix" and run["patchmix_backbone"] == "vit_tiny"  # the recipe's AdamW lr
          else ["--base_learning_rate", str(run["base_learning_rate"])]),
        "--seed", str(run["seed"]),
        "--max_train_steps", str(max_train_steps),
        "--warmup_epochs", f"{warmup_epochs:.4f}",
        "--knn_every_n_epochs", str(knn_every_n_epochs),
        "--knn_k", "200", "--knn_temperature", "0.1",
        "--dataloader_num_workers", str(run["workers"]),
        "--report_to", "none",
        "--config_overrides", extra,
        *(["--augmentations", run["augmentations"]] if run.get("augmentations") else []),
    ]
    recipe = RECIPES / f"{method}_cifar10.yaml"
    if recipe.is_file():
        argv = ["--config", display_path(recipe)] + argv
    if method == "patchmix":
        argv += PATCHMIX_OPTIMISER[run["patchmix_backbone"]]
    if max_train_samples:
        argv += ["--max_train_samples", str(max_train_samples)]
    return argv


def make_args(argv: list[str]):
    """The trainer's arguments: no checkpoints, card plots or random-init kNN (measured once, as its own row:
    `run_random_init`). Not part of the stored training command: they do not change what is trained."""
    args = parse_args(argv)
    args.checkpointing_steps = None
    args.card_plots = False
    args.knn_random_init = False
    return args


class BudgetClock(StepTimes):
    """The benchmark's clock on the real loop, from the trainer's public hooks and ``seconds_spent``: training time
    (wall time since the loop began, less kNN evaluations; SPPS's neighbour mining counts as training and is also
    recorded), a timestamp per optimiser step (`StepTimes`, for the probe) and (training time, seconds) of each kNN
    evaluation."""

    def __init__(self):
        super().__init__()
        self.eval_marks: list[tuple[float, float]] = []
        self.started = self.knn_at_start = None
        self.knn_seconds_seen = 0.0

    def training_seconds(self, trainer: Pretrainer) -> float:
        return time.perf_counter() - self.started - (trainer.seconds_spent["knn"] - self.knn_at_start)

    def on_train_begin(self, trainer: Pretrainer, global_step: int) -> None:
        self.started = time.perf_counter()
        self.knn_at_start = self.knn_seconds_seen = trainer.seconds_spent["knn"]

    def on_evaluate(self, trainer: Pretrainer, global_step: int, metrics: dict[str, float]) -> None:
        spent = trainer.seconds_spent["knn"] - self.knn_seconds_seen
        self.knn_seconds_seen = trainer.seconds_spent["knn"]
        self.eval_marks.append((self.training_seconds(trainer), spent))


def loop_step_gaps(method: str, run: dict, work_dir: Path, steps: int) -> list[float]:
    """Seconds between consecutive optimiser steps of the real training loop (data loading included), no kNN, on the
    first `batch x (steps + 1)` training images."""
    output_dir = work_dir / f"probe_{method}"
    argv = training_argv(method, run, output_dir, steps, 0.0, 0, max_train_samples=run["batch"] * (steps + 1))
    clock = BudgetClock()
    trainer = Pretrainer(make_args(argv), callbacks=[clock])
    trainer.knn_dataloaders = None  # no kNN: evaluate_knn returns None
    trainer.train()
    stamps = clock.step_times
    del trainer
    gc.collect()
    shutil.rmtree(output_dir, ignore_errors=True)
    return [b - a for a, b in itertools.pairwise(stamps)]


def probe_seconds_per_step(method: str, run: dict, work_dir: Path, steps: int, skip: int) -> dict:
    """Median seconds per optimiser step of the real loop (data loading included) over `steps - skip` steps."""
    gaps = loop_step_gaps(method, run, work_dir, steps)[skip:]
    if not gaps:
        raise RuntimeError(f"The probe of {method} recorded {steps} steps and skips {skip}; raise --probe_steps.")
    return {"steps_timed": len(gaps), "seconds_per_step": round(statistics.median(gaps), 4),
            "min_s": round(min(gaps), 4), "max_s": round(max(gaps), 4)}


def run_method(method: str, run: dict, budget_s: float, probe: dict, steps_per_epoch: int, work_dir: Path,
               keep_outputs: bool) -> dict:
    """Train one run for the step count the probe gives the budget and return its record."""
    max_train_steps = max(1, int(budget_s / probe["seconds_per_step"]))
    epochs = max_train_steps / steps_per_epoch
    warmup_epochs = run["warmup_fraction"] * epochs
    knn_every = 0 if epochs < 2 or run["knn_points"] <= 0 else max(1, round(epochs / run["knn_points"]))
    output_dir = work_dir / f"{method}_seed{run['seed']}"
    shutil.rmtree(output_dir, ignore_errors=True)
    argv = training_argv(method, run, output_dir, max_train_steps, warmup_epochs, knn_every)
    print(f"\n== {method} seed {run['seed']}: {max_train_steps} steps ({epochs:.2f} epochs) for "
          f"{budget_s / 60:.1f} min at {probe['seconds_per_step']:.3f} s/step; "
          f"kNN every {knn_every or '-'} epoch(s)", flush=True)
    budget_clock = BudgetClock()
    trainer = Pretrainer(make_args(argv), callbacks=[budget_clock])
    results = trainer.train()
    history = []
    for entry, (train_s, eval_s) in zip(trainer.knn_history, budget_clock.eval_marks, strict=False):
        history.append({**entry, "train_time_s": round(train_s, 1), "eval_time_s": round(eval_s, 1)})
    train_time_s = history[-1]["train_time_s"] if history else round(budget_clock.training_seconds(trainer), 1)
    record = {
        "method": method, "seed": run["seed"], "budget_minutes": run["budget_minutes"],
        "backbone": trainer.model_config.backbone, "small_image_stem": trainer.model_config.small_image_stem,
        "probe": probe, "budget_s_here": round(budget_s, 1),
        "max_train_steps": max_train_steps, "epochs": round(epochs, 3),
        "warmup_epochs": round(warmup_epochs, 3), "knn_every_n_epochs": knn_every,
        "learning_rate": trainer.learning_rate, "train_time_s": train_time_s,
        "eval_time_total_s": round(sum(e for _, e in budget_clock.eval_marks), 1),
        "budget_ratio": round(train_time_s / budget_s, 3),
        "knn_top1": results.get("knn_top1"), "knn_history": history,
        "train_samples": results.get("train_samples"), "eval_samples": results.get("eval_samples"),
        "final_loss": results.get("final_loss"),
        **({"spps_sampler": run["spps_sampler_record"], "neighbour_mining_s": round(trainer.seconds_spent["mining"], 1)}
           if method == "spps" else {}),
        "train_command": "accelerate launch recipes/train.py " + " ".join(
            a if " " not in a and "{" not in a else repr(a) for a in argv),
    }
    del trainer
    gc.collect()
    if not keep_outputs:
        shutil.rmtree(output_dir, ignore_errors=True)
    return record


def sampler_record(sampler: str, results_dir: Path) -> dict:
    """What SPPS mines its neighbours with: the encoder (a folder or Hub id) and, when the folder is the kept output
    of a run of this benchmark (`<work_dir>/<tag>/<method>_seed<N>/model`, kept with --keep_outputs), that run's
    method, seed, training minutes (reference machine's) and kNN top-1: the sampler's cost, stated beside SPPS's row.
    Raises ValueError, saying what to pass, for a folder that is not a model folder or a string that is neither a
    folder nor a Hub id."""
    record: dict = {"encoder": sampler}
    path = Path(sampler)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"--spps_sampler {sampler}: no config.json in that folder. Pass the `model` folder of a "
                             "training run (e.g. outputs/quality/60min/simclr_seed1/model, kept with --keep_outputs) "
                             "or a Hub id.")
        run_folder = path.resolve().parent  # <work_dir>/<tag>/<method>_seed<N>
        run_json = results_dir / "quality" / run_folder.parent.name / f"{run_folder.name}.json"
        if path.name == "model" and run_json.is_file():
            sampler_run = json.loads(run_json.read_text())
            record.update(run=display_path(run_json), method=sampler_run["method"], seed=sampler_run["seed"],
                          train_minutes=round(reference_seconds(sampler_run, sampler_run["train_time_s"]) / 60, 2),
                          knn_top1=sampler_run["knn_top1"])
        return record
    try:
        validate_repo_id(sampler)
    except HFValidationError:
        raise ValueError(f"--spps_sampler {sampler}: not an existing folder, and not a Hub id (org/name). Pass the "
                         "`model` folder of a training run or a Hub id.") from None
    return record


def run_random_init(run: dict, work_dir: Path) -> dict:
    """kNN top-1 of the call's backbone at random initialisation, seeded, evaluated by the same code: the ResNet-18
    (standard stem) of a fresh SimCLR model, or with `--patchmix_backbone vit_tiny` the ViT-Ti/4 of a fresh PatchMix
    model (its recipe's ViT init)."""
    output_dir = work_dir / f"random_init_seed{run['seed']}"
    method = "simclr" if run["patchmix_backbone"] == "resnet18" else "patchmix"
    # The call's overrides that shape the encoder (backbone, image_size, ...) apply to it; another method's loss
    # fields (e.g. PatchMix's mixed_to_original_weight in SimCLR) do not exist in its config: left out, recorded.
    overrides = parse_overrides(run["config_overrides"]) if run["config_overrides"] else {}
    config_fields = set(hf_contrastive.get_method(method).config_class().to_dict())
    ignored = sorted(set(overrides) - config_fields)
    run = {**run, "config_overrides": overrides_text({k: v for k, v in overrides.items() if k in config_fields})}
    argv = training_argv(method, run, output_dir, 1, 0.0, 0)
    trainer = Pretrainer(make_args(argv))
    start = time.perf_counter()
    knn_top1 = trainer.evaluate_knn()[0]
    record = {"method": RANDOM_INIT, "seed": run["seed"], "backbone": trainer.model_config.backbone,
              "small_image_stem": trainer.model_config.small_image_stem, "knn_top1": knn_top1,
              "eval_time_s": round(time.perf_counter() - start, 1), "train_time_s": 0.0,
              "eval_samples": len(trainer.splits.eval), "train_samples": len(trainer.train_dataset),
              "note": ("encoder of a freshly built SimCLRForPreTraining (every method builds the same ResNet-18 and "
                       "init); no training step") if method == "simclr" else
                      "encoder of a freshly built PatchMixForPreTraining (its ViT and init); no training step",
              **({"config_overrides_ignored": ignored} if ignored else {})}
    del trainer
    gc.collect()
    shutil.rmtree(output_dir, ignore_errors=True)
    return record


# ----------------------------------------------------------------------------- summary and plot


def load_runs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def reference_seconds(run: dict, seconds_here: float) -> float:
    """Training seconds of a run expressed on the reference machine (calibrated runs ran on another CPU)."""
    return seconds_here / ((run.get("calibration") or {}).get("speed_factor") or 1.0)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict]) -> dict:
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    random_runs = by_method.get(RANDOM_INIT, [])
    random_mean, random_std = mean_std([r["knn_top1"] for r in random_runs]) if random_runs else (None, None)
    rows = []
    for method, method_runs in sorted(by_method.items(), key=lambda kv: (kv[0] != RANDOM_INIT, kv[0])):
        accuracies = [r["knn_top1"] for r in method_runs if r.get("knn_top1") is not None]
        if not accuracies:
            continue
        mean, std = mean_std(accuracies)
        row = {"method": method, "seeds": sorted(r["seed"] for r in method_runs), "knn_top1_mean": round(mean, 4),
               "knn_top1_std": round(std, 4), "knn_top1_runs": [round(a, 4) for a in accuracies]}
        if method != RANDOM_INIT:
            row.update(epochs_mean=round(statistics.fmean(r["epochs"] for r in method_runs), 2),
                       steps_mean=round(statistics.fmean(r["max_train_steps"] for r in method_runs)),
                       train_minutes_mean=round(statistics.fmean(reference_seconds(r, r["train_time_s"])
                                                                 for r in method_runs) / 60, 2),
                       seconds_per_step=round(statistics.fmean(r["probe"]["seconds_per_step"] for r in method_runs), 4),
                       budget_ratio_max=max(r.get("budget_ratio", 1.0) for r in method_runs),
                       speed_factors=sorted({(r.get("calibration") or {}).get("speed_factor") or 1.0
                                             for r in method_runs}),
                       runs_stopped_early=sum(1 for r in method_runs if r.get("stopped_early_at_step")))
            samplers = [r["spps_sampler"] for r in method_runs if r.get("spps_sampler")]
            if samplers:
                row["spps_samplers"] = samplers
            if random_mean is not None:
                row["minus_random_init_pp"] = round(100 * (mean - random_mean), 2)
                # Separation in units of the combined seed spread (None with a single seed on either side).
                spread = math.sqrt(std ** 2 + random_std ** 2)
                row["separation_sigma"] = round((mean - random_mean) / spread, 1) if spread > 0 else None
        rows.append(row)
    calibrated_with = sorted({r["calibration"]["method"] for r in runs
                              if (r.get("calibration") or {}).get("role") == "calibrated"})
    return {"rows": rows, "random_init_mean": random_mean, "random_init_std": random_std,
            "calibrated_with": calibrated_with}


def knn_curve(run: dict, axis: str) -> list[tuple[float, float]]:
    """A run's kNN evaluations as (x, top-1 in %) points; x is reference-machine training minutes (axis="minutes")
    or epochs (axis="epochs"). Epochs are what the probe fixed before training, so they carry no VM drift."""
    if axis not in ("minutes", "epochs"):
        raise ValueError(f"axis must be 'minutes' or 'epochs', got {axis!r}")
    return [(reference_seconds(run, h["train_time_s"]) / 60 if axis == "minutes" else h["epoch"], 100 * h["knn_top1"])
            for h in run.get("knn_history") or []]  # random init records None


def plot(runs: list[dict], summary: dict, path: Path, title: str) -> Path | None:
    """Two panels: kNN top-1 against training minutes (with the budget line) and against epochs."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return None
    fig, (ax_minutes, ax_epochs) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    methods = sorted({r["method"] for r in runs if r["method"] != RANDOM_INIT})
    palette = plt.get_cmap("tab20")
    colors = [palette(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]  # the ten dark shades first
    for ax, axis in ((ax_minutes, "minutes"), (ax_epochs, "epochs")):
        for index, method in enumerate(methods):
            for n, run in enumerate(r for r in runs if r["method"] == method):
                points = knn_curve(run, axis)
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=colors[index % 20], alpha=0.9,
                        label=method if n == 0 else None)
        if summary.get("random_init_mean") is not None:
            mean, std = 100 * summary["random_init_mean"], 100 * (summary["random_init_std"] or 0)
            ax.axhline(mean, color="black", linestyle="--", linewidth=1, label="random init")
            if std:
                ax.axhspan(mean - std, mean + std, color="grey", alpha=0.2)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    budget = (runs[0].get("protocol") or {}).get("budget_minutes")
    if budget:
        ax_minutes.axvline(budget, color="grey", linestyle=":", linewidth=1, label="budget")
    ax_minutes.set_xlabel("training minutes (kNN evaluations excluded; calibrated runs: the reference machine's)")
    ax_epochs.set_xlabel("epochs (fixed before training: no machine drift)")
    ax_minutes.set_ylabel("kNN top-1 (%)  k=200, T=0.1")
    ax_minutes.legend(fontsize=8, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"Wrote {path}")
    return path


def plot_title(protocol: dict) -> str:
    dataset = protocol.get("dataset_name", "")
    backbone = "ViT-Ti/4" if protocol.get("backbone", "").startswith("ViT") else "ResNet-18 standard stem"
    return (f"kNN top-1 vs training time and epochs, {protocol.get('budget_minutes'):g}-min budget, {backbone}, "
            f"batch {protocol.get('batch')}, lr {protocol.get('learning_rate'):g}, "
            f"{Path(dataset).name or dataset}")


def draw_plot(results_dir: Path, tag: str, runs: list[dict], summary: dict, protocol: dict) -> Path | None:
    """Draw `quality_<tag>.png` in `results_dir` from a budget's runs and summary; None where matplotlib is missing."""
    return plot(runs, summary, results_dir / f"quality_{tag}.png", plot_title(protocol))


def redraw_plots(results_dir: Path) -> list[Path]:
    """Redraw each `quality_<tag>.png` of `results_dir` from its summary and run JSONs, writing no JSON: a change
    of the plot should not rewrite the summaries' dates, machines and commands."""
    drawn = []
    for summary_path in sorted(results_dir.glob("quality_*.json")):
        summary = json.loads(summary_path.read_text())
        png = draw_plot(results_dir, summary["tag"], load_runs(results_dir / "quality" / summary["tag"]), summary,
                        summary["protocol"])
        if png:
            drawn.append(png)
    return drawn


def write_summary(results_dir: Path, tag: str, protocol: dict) -> None:
    folder = results_dir / "quality" / tag
    runs = load_runs(folder)
    if not runs:
        print(f"no runs in {folder}")
        return
    summary = summarize(runs)
    png = draw_plot(results_dir, tag, runs, summary, protocol)
    environment_now = environment(TRAINING_DEVICE)
    # The commands that trained the runs (a --summarize_only rebuild would otherwise record only itself).
    run_commands = list(dict.fromkeys(run["command"] for run in runs if run.get("command")))
    if run_commands and "--summarize_only" in environment_now["command"]:
        environment_now["command"] = " ; ".join(run_commands)
    write_json(results_dir / f"quality_{tag}.json", {
        "benchmark": "quality_summary", **environment_now, "tag": tag, "protocol": protocol,
        "run_commands": run_commands,
        "plot": str(png.relative_to(REPO_ROOT)) if png and png.is_relative_to(REPO_ROOT) else (str(png) if png else None),
        "runs_folder": str(folder.relative_to(REPO_ROOT)) if folder.is_relative_to(REPO_ROOT) else str(folder),
        **summary,
    })
    for row in summary["rows"]:
        extra = f"  {row['minus_random_init_pp']:+.2f} pp vs random init" if "minus_random_init_pp" in row else ""
        print(f"{row['method']:18s} kNN top-1 {100 * row['knn_top1_mean']:6.2f} +- {100 * row['knn_top1_std']:.2f} "
              f"({len(row['seeds'])} seed(s)){extra}")


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--budget_minutes", type=float, default=None, help="Training wall-clock per run (required "
                        "unless --quick).")
    parser.add_argument("--methods", nargs="*", default=None, help="Default: all methods (quick: simclr mnn).")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run on the shipped sample: 0.25-minute budget, simclr + mnn, one seed.")
    parser.add_argument("--dataset_name", default=None,
                        help="Default ../shared/data/cifar10 (the local parquet copy of uoft-cs/cifar10); quick: the "
                             "shipped sample.")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--base_learning_rate", type=float, default=0.06, help="lr = this x batch / 256.")
    parser.add_argument("--warmup_fraction", type=float, default=0.05, help="Linear warm-up share of the steps.")
    parser.add_argument("--knn_points", type=int, default=4, help="kNN evaluations during training (plus the end).")
    parser.add_argument("--workers", type=int, default=2, help="--dataloader_num_workers of the runs.")
    parser.add_argument("--probe_steps", type=int, default=None, help="Steps of each method's timing probe "
                        f"(default {PROBE_STEPS}, quick 5); the first 3 (quick 2) are not timed.")
    parser.add_argument("--config_overrides", default="", help="Extra model-config overrides for every method of "
                        "the call, as recipes/train.py takes them (e.g. \"views=[strong, strong]\"); the results get "
                        "their own tag.")
    parser.add_argument("--augmentations", default="", help="View options for every method of the call, as "
                        "recipes/train.py takes them (e.g. \"local={crop_scale: [0.14, 1.0]}\"); the results get "
                        "their own tag.")
    parser.add_argument("--spps_sampler", default=None,
                        help="SPPS's pretrained sampler (its recipe's mining_encoder): the `model` folder of a run "
                             "kept with --keep_outputs (e.g. outputs/quality/60min/simclr_seed1/model; the table then "
                             "names it and its minutes) or a Hub id. Without it SPPS is not run: each image would be "
                             "its own neighbour, which is SimCLR with a third view.")
    parser.add_argument("--patchmix_backbone", choices=sorted(PATCHMIX_OVERRIDES), default="resnet18")
    parser.add_argument("--results_dir", default=str(RESULTS_DIR))
    parser.add_argument("--work_dir", default="outputs/quality", help="Training output folders (deleted after each "
                        "run unless --keep_outputs).")
    parser.add_argument("--keep_outputs", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="Redo runs whose JSON exists.")
    parser.add_argument("--no_random_init", action="store_true")
    parser.add_argument("--summarize_only", action="store_true", help="Only rebuild the summary JSON and plot.")
    parser.add_argument("--plots_only", action="store_true", help="Only redraw every quality_<tag>.png in "
                        "--results_dir from the JSONs there (no budget needed; no JSON is written).")
    args = parser.parse_args(argv)
    if args.plots_only:
        redraw_plots(Path(args.results_dir))
        return
    if args.budget_minutes is None and not args.quick:
        parser.error("--budget_minutes is required (or --quick).")
    budget_minutes = args.budget_minutes if args.budget_minutes is not None else 0.25
    methods = args.methods or (["simclr", "mnn"] if args.quick else hf_contrastive.available_methods())
    unknown = sorted(set(methods) - set(hf_contrastive.available_methods()))
    if unknown:
        parser.error(f"unknown methods {unknown}")
    if "spps" in methods and not args.spps_sampler:
        if args.methods:
            parser.error("spps needs --spps_sampler: the `model` folder of a pretrained run (e.g. a 60-minute SimCLR "
                         "run kept with --keep_outputs) or a Hub id.")
        methods = [m for m in methods if m != "spps"]
        print("spps skipped: it needs --spps_sampler (a pretrained encoder to mine its neighbours with).")
    dataset_name = args.dataset_name or display_path(SAMPLE if args.quick else SHARED_CIFAR10)
    tag = "quick" if args.quick else f"{budget_minutes:g}min"
    if args.base_learning_rate != 0.06 or args.batch != 128:  # another protocol: its own folder and summary
        tag += f"_lr{args.base_learning_rate:g}_b{args.batch}"
    if args.patchmix_backbone != "resnet18":  # another backbone: its own folder, with its own random init
        if methods != ["patchmix"]:
            parser.error(f"--patchmix_backbone {args.patchmix_backbone} trains PatchMix only: pass --methods patchmix "
                         "(the other methods keep the ResNet-18, in the call without it).")
        tag += f"_patchmix-{args.patchmix_backbone.replace('_', '-')}"
    if args.config_overrides:  # an ablation: its own folder and summary, named after the overrides
        tag += "_" + re.sub(r"[^A-Za-z0-9.]+", "-", args.config_overrides).strip("-")
    if args.augmentations:  # likewise for view options
        tag += "_aug-" + re.sub(r"[^A-Za-z0-9.]+", "-", args.augmentations).strip("-")
    results_dir = Path(args.results_dir)
    try:
        spps_sampler_record = sampler_record(args.spps_sampler, results_dir) if args.spps_sampler else None
    except ValueError as error:
        parser.error(str(error))
    run_folder = results_dir / "quality" / tag
    work_dir = Path(args.work_dir) / tag
    probe_steps = args.probe_steps or (5 if args.quick else PROBE_STEPS)
    probe_skip = 2 if args.quick else 3
    base_learning_rate = args.base_learning_rate
    if args.patchmix_backbone == "vit_tiny":  # PatchMix's ViT keeps its recipe's AdamW learning rate
        base_learning_rate = yaml.safe_load((RECIPES / "patchmix_cifar10.yaml").read_text())["base_learning_rate"]
    protocol = {
        "dataset_name": dataset_name, "budget_minutes": budget_minutes, "batch": args.batch,
        "base_learning_rate": base_learning_rate, "learning_rate": base_learning_rate * args.batch / 256,
        "schedule": "linear warm-up then cosine to 0 over the budget's steps", "warmup_fraction": args.warmup_fraction,
        "backbone": "resnet18, standard stem (7x7 stride-2 conv + max-pool), 32 px" if args.patchmix_backbone ==
        "resnet18" else "ViT-Ti/4 (vit_tiny_patch16_224 at img_size 32, patch_size 4) with PatchMix's recipe "
        "optimiser (AdamW, weight decay 0.04 to 0.4)",
        "patchmix": PATCHMIX_OVERRIDES[args.patchmix_backbone], "knn": "k=200, T=0.1, bank = train split, "
        "queries = full eval split", "recipes": "recipes/configs/<method>_cifar10.yaml (hyper-parameters, views)",
        "dataloader_num_workers": args.workers, "probe_steps": probe_steps,
        "minutes": "own",  # this machine's (until 2026-12-06 runs were calibrated to a reference machine's)
        "config_overrides": args.config_overrides or None, "augmentations": args.augmentations or None,
    }
    if args.summarize_only:
        write_summary(results_dir, tag, protocol)
        return
    if not Path(dataset_name).exists() and not args.dataset_name:
        parser.error(f"{dataset_name} not found: pass --dataset_name (a parquet folder or uoft-cs/cifar10).")

    steps_per_epoch = None
    probes: dict[str, dict] = {}
    started = time.perf_counter()
    for seed in args.seeds:
        run = {"dataset_name": dataset_name, "budget_minutes": budget_minutes, "batch": args.batch,
               "base_learning_rate": args.base_learning_rate,
               "seed": seed, "warmup_fraction": args.warmup_fraction, "knn_points": args.knn_points,
               "workers": args.workers, "patchmix_backbone": args.patchmix_backbone,
               "config_overrides": args.config_overrides, "augmentations": args.augmentations,
               "spps_sampler": args.spps_sampler, "spps_sampler_record": spps_sampler_record}
        jobs = ([] if args.no_random_init else [RANDOM_INIT]) + list(methods)
        for method in jobs:
            path = run_folder / f"{method}_seed{seed}.json"
            if path.is_file() and not args.overwrite:
                print(f"{path} exists: skipped (--overwrite to redo)")
                continue
            if method == RANDOM_INIT:
                record = run_random_init(run, work_dir)
                steps_per_epoch = steps_per_epoch or record["train_samples"] // args.batch
            else:
                if steps_per_epoch is None:
                    from hf_contrastive.data import load_image_dataset
                    steps_per_epoch = len(load_image_dataset(dataset_name).train) // args.batch
                if method not in probes:
                    probes[method] = probe_seconds_per_step(method, run, work_dir, probe_steps, probe_skip)
                    print(f"probe {method}: {probes[method]['seconds_per_step']:.3f} s/step", flush=True)
                record = run_method(method, run, budget_minutes * 60, probes[method], steps_per_epoch, work_dir,
                                    args.keep_outputs)
            write_json(path, {"benchmark": "quality_run", **environment(TRAINING_DEVICE), "tag": tag, "protocol": protocol,
                              **record})
            print(f"{method} seed {seed}: kNN top-1 {100 * record['knn_top1']:.2f}%", flush=True)
    print(f"\ncampaign wall time {(time.perf_counter() - started) / 60:.1f} min")
    for folder in (work_dir, work_dir.parent):  # remove the (now empty) training folders
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    write_summary(results_dir, tag, protocol)


if __name__ == "__main__":
    main()
