"""The pretraining loop end to end on real CIFAR-10 images (the shipped sample): results, Hub folder, exact resume,
mixed precision, the command line, and the errors users get for bad arguments."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from transformers import AutoModel

import hf_contrastive
from hf_contrastive.training import Pretrainer, parse_args, train

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample")

# A short run: 96 training images in batches of 32 (3 steps per epoch), a 64-image kNN test set.
# The standard ResNet stem: the CIFAR stem (no stride before layer 1) makes a CPU step about 16x longer, and no test
# here is about the stem unless it sets it.
SMALL_RUN = [
    "--dataset_name", SAMPLE, "--max_train_samples", "96", "--max_eval_samples", "64",
    "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64",
    "--dataloader_num_workers", "0", "--report_to", "none", "--warmup_epochs", "1",
    "--config_overrides", "queue_size=128,projection_hidden_size=256,small_image_stem=false",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("run")
    train(parse_args(SMALL_RUN + ["--num_train_epochs", "2", "--output_dir", str(output_dir)]))
    return output_dir


def test_run_writes_results_and_hub_folder(finished_run):
    results = json.loads((finished_run / "all_results.json").read_text())
    for key in ("knn_top1", "epochs", "train_samples", "train_runtime_s", "train_samples_per_second"):
        assert key in results, key
    assert results["train_samples"] == 96 and results["epochs"] == 2.0 and results["global_step"] == 6
    assert 0.0 <= results["knn_top1"] <= 1.0
    assert [entry["epoch"] for entry in results["knn_history"]] == [1, 2.0]
    assert results["train_samples_per_second"] > 0
    assert torch.isfinite(torch.tensor(results["final_loss"]))
    folder = finished_run / "model"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {p.name for p in folder.iterdir()}
    card = (folder / "README.md").read_text()
    assert f"0.{str(round(results['knn_top1'], 4))[2:]}" in card
    assert f"(random init: {100 * results['knn_top1_random_init']:.2f}%)" in card
    for plot in ("knn_history.png", "embedding_tsne.png"):  # shown in the card, stored beside it
        assert (folder / plot).stat().st_size > 1000 and f"({plot})" in card
    umask = os.umask(0)
    os.umask(umask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir() if path.is_file()}
    assert modes["model.safetensors"] == 0o666 & ~umask and set(modes.values()) == {0o666 & ~umask}, modes


def test_random_init_knn_is_the_same_network_on_the_same_images(finished_run, tmp_path):
    """The baseline printed beside the final kNN is the untrained network of the run (same seed, same bank and test
    images), measured before the first step."""
    results = json.loads((finished_run / "all_results.json").read_text())
    untrained = Pretrainer(parse_args(SMALL_RUN + ["--num_train_epochs", "2", "--output_dir", str(tmp_path)]))
    assert untrained.evaluate_knn()[0] == results["knn_top1_random_init"]


def test_trained_encoder_loads_with_automodel(finished_run):
    encoder = AutoModel.from_pretrained(finished_run / "model")
    assert isinstance(encoder, hf_contrastive.MNNModel)
    state = load_file(finished_run / "model" / "model.safetensors")
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, state[f"encoder.{name}"]), name


def test_queue_was_filled_by_the_loop(finished_run):
    state = load_file(finished_run / "model" / "model.safetensors")
    # 6 steps x 32 keys = 192 keys through a 128-slot queue: pointer (192 mod 128) = 64.
    assert state["queue.pointer"].item() == 64


def test_resume_continues_exactly(tmp_path):
    """A run checkpointed mid-epoch and resumed ends with the same weights, queue and optimiser as an
    uninterrupted run (augmentations, sampler order, lambda draws, EMA and the per-split BatchNorm statistics all
    restored)."""
    common = SMALL_RUN[:-1] + ["queue_size=128,projection_hidden_size=256,bn_splits=4,small_image_stem=false", "--max_train_steps", "5", "--knn_every_n_epochs", "0", "--checkpointing_steps", "2",
                          "--checkpoints_total_limit", "5"]
    straight = tmp_path / "straight"
    train(parse_args(common + ["--output_dir", str(straight)]))
    assert (straight / "checkpoints" / "step_2").is_dir() and (straight / "checkpoints" / "step_4").is_dir()
    assert not list((straight / "checkpoints").glob("*.partial"))

    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    # Continue from the mid-epoch checkpoint (step 2 of 3 in epoch 0), as if the first run had stopped there.
    shutil.copytree(straight / "checkpoints" / "step_2", resumed / "checkpoints" / "step_2")
    # A later checkpoint whose writing crashed (no rename) must not be picked by "latest".
    shutil.copytree(straight / "checkpoints" / "step_4", resumed / "checkpoints" / "step_4.partial")
    results = train(parse_args(common + ["--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]))
    assert results["global_step"] == 5

    expected = load_file(straight / "model" / "model.safetensors")
    got = load_file(resumed / "model" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_resume_without_checkpoint_says_what_to_do(tmp_path):
    args = parse_args(SMALL_RUN + ["--output_dir", str(tmp_path), "--resume_from_checkpoint", "latest"])
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*Start without --resume_from_checkpoint"):
        train(args)
    args = parse_args(SMALL_RUN + ["--output_dir", str(tmp_path), "--resume_from_checkpoint", str(tmp_path / "nope")])
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        train(args)


def test_bf16_mixed_precision_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    # Accelerate keeps one state per process; earlier tests in this process created it in fp32.
    AcceleratorState._reset_state(reset_partial_state=True)
    # SMALL_RUN's standard stem matters most here: a CPU without bf16 instructions (AVX2 only) emulates every bf16
    # convolution, and the CIFAR stem made this test take 277 s on such a VM.
    results = train(parse_args(SMALL_RUN + ["--max_train_steps", "2", "--knn_every_n_epochs", "0",
                                            "--output_dir", str(tmp_path)]))
    assert results["mixed_precision"] == "bf16"
    assert torch.isfinite(torch.tensor(results["final_loss"]))
    AcceleratorState._reset_state(reset_partial_state=True)


def test_yaml_recipe_and_cli_precedence(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: mnn\nnum_train_epochs: 7\nlearning_rate: 0.5\nmodel:\n  queue_size: 512\n  nn_topk: 3\n")
    args = parse_args(["--config", str(recipe), "--learning_rate", "0.1", "--config_overrides", "nn_topk=4"])
    assert args.num_train_epochs == 7 and args.learning_rate == 0.1
    assert args.config_overrides == {"queue_size": 512, "nn_topk": 4}


def test_paper_recipe_file_holds_the_protocol():
    args = parse_args(["--config", str(REPO_ROOT / "recipes" / "configs" / "mnn_cifar10.yaml")])
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.base_learning_rate) == (200, 256, 0.06)
    assert (args.momentum, args.weight_decay, args.warmup_epochs) == (0.9, 5e-4, 5)
    overrides = args.config_overrides
    assert (overrides["ema_momentum"], overrides["queue_size"], overrides["nn_topk"]) == (0.99, 4096, 5)
    assert overrides["views"] == ["strong", "weak"] and overrides["small_image_stem"] and not overrides["stem_max_pool"]


def test_no_arguments_is_the_embedded_sample_job():
    args = parse_args([])
    assert args.method == "mnn" and Path(args.dataset_name) == Path(SAMPLE)
    assert args.num_train_epochs == 20 and args.knn_every_n_epochs == 5
    assert args.config_overrides == {"queue_size": 1024, "small_image_stem": False}


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (["--backbone", "resnet_does_not_exist"], ValueError, "not a timm model name"),
        (["--config_overrides", "queue_size=abc"], TypeError, "queue_size must be int"),
        (["--config_overrides", "queue_sise=10"], ValueError, "Unknown mnn config fields"),
        (["--config_overrides", "queue_size=16"], ValueError, "does not fit the queue"),
        (["--image_column", "picture"], ValueError, "picture"),
        (["--config_overrides", "queue_size=128,bn_splits=5"], ValueError, "not divisible by bn_splits=5"),
        (["--data_on_device", "--streaming"], ValueError, "--streaming never reads it whole: drop one"),
        (["--data_on_device", "--augment_on_device"], ValueError, "already makes every view on the device"),
        (["--torch_compile", "--torch_compile_mode", "fast"], ValueError, "--torch_compile_mode must be one of"),
        (["--torch_compile_mode", "reduce-overhead"], ValueError, "needs --torch_compile"),
    ],
)
def test_bad_arguments_fail_early_with_a_fix(tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        Pretrainer(parse_args(SMALL_RUN + ["--output_dir", str(tmp_path)] + extra))


def test_bad_flag_values_are_rejected():
    with pytest.raises(ValueError, match="--checkpointing_steps must be a positive integer or 'epoch'"):
        parse_args(["--checkpointing_steps", "often"])
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_model_id"):
        parse_args(["--push_to_hub"])
    with pytest.raises(ValueError, match="--report_to must be one of"):
        parse_args(["--report_to", "mlflow2"])


def test_yaml_with_unknown_key_or_wrong_type(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("num_train_epoch: 10\n")
    with pytest.raises(ValueError, match="unknown keys \\['num_train_epoch'\\]"):
        parse_args(["--config", str(recipe)])
    recipe.write_text("num_train_epochs: ten\n")
    with pytest.raises(TypeError, match="num_train_epochs must be a number"):
        parse_args(["--config", str(recipe)])


def test_accelerate_launch_command_line(tmp_path):
    """The documented entry point: progress bar, kNN accuracy, the folder and the line that loads it."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
               "--mixed_precision", "no", "--num_machines", "1", "--dynamo_backend", "no",
               str(REPO_ROOT / "recipes" / "train.py"), *SMALL_RUN, "--max_train_steps", "2",
               "--output_dir", str(tmp_path / "cli")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "pretraining" in output and "2/2" in output  # tqdm bar
    assert "kNN top-1 (k=200, T=0.1)" in output
    assert f"Hub-ready folder: {tmp_path / 'cli' / 'model'}" in output
    assert "AutoModel.from_pretrained(" in output


def test_queue_check_counts_keys_per_image(tmp_path):
    """MoCo v2 enqueues both views' keys: a 32-image batch needs a queue of at least 64."""
    with pytest.raises(ValueError, match="x2 keys per image"):
        Pretrainer(parse_args(SMALL_RUN[:-2] + ["--method", "mocov2", "--output_dir", str(tmp_path),
                                                "--config_overrides", "queue_size=48"]))


def test_init_from_a_hub_folder_restores_the_whole_pretraining_state(finished_run, tmp_path):
    folder = finished_run / "model"
    pretrainer = Pretrainer(parse_args(SMALL_RUN[:-2] + ["--init_from", str(folder), "--output_dir", str(tmp_path)]))
    saved = load_file(folder / "model.safetensors")
    state = pretrainer.accelerator.unwrap_model(pretrainer.model).state_dict()
    assert saved.keys() == state.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert state["queue.pointer"].item() == 64  # the queue continues where the run left it
    teacher = [p for n, p in pretrainer.model.named_parameters() if n.startswith("teacher_")]
    assert teacher and not any(p.requires_grad for p in teacher)
    with pytest.raises(ValueError, match="holds a 'mnn' model but --method is 'byol'"):
        Pretrainer(parse_args(SMALL_RUN[:-2] + ["--method", "byol", "--init_from", str(folder),
                                                "--output_dir", str(tmp_path)]))


@pytest.mark.parametrize(("stem", "pushed"), [("true", "remote-code folder"), ("false", "native timm folder")])
def test_push_to_hub_pushes_native_timm_when_the_backbone_allows(tmp_path, offline_hub, capsys, stem, pushed):
    args = parse_args(SMALL_RUN[:-2] + ["--max_train_steps", "1", "--knn_every_n_epochs", "0",
                                        "--config_overrides", f"queue_size=128,small_image_stem={stem}",
                                        "--output_dir", str(tmp_path / "run"),
                                        "--push_to_hub", "--hub_model_id", "org/mnn-test"])
    train(args)
    assert f"Pushed the {pushed}" in capsys.readouterr().out
    remote = tmp_path / "remote" / "org" / "mnn-test"
    config = json.loads((remote / "config.json").read_text())
    if stem == "true":
        assert config["model_type"] == "mnn" and (remote / "modeling_mnn.py").is_file()
    else:
        assert "pretrained_cfg" in config and not list(remote.glob("*.py"))


@pytest.mark.parametrize(("checkpointing_steps", "message", "kept"), [
    ("1", r"The loss became nan at step 2; the last checkpoint, .*step_1, is untouched", ["step_1"]),
    # The loss reaches the host only at logging and checkpoint steps: step 2's NaN is found at step 3's checkpoint.
    ("3", r"The loss became nan within steps 1-3; no checkpoint has been written yet\. .* start the run again", []),
])
def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, checkpointing_steps, message, kept):
    # A learning rate of 1e30 makes the weights, then the loss, non-finite within two steps.
    args = parse_args(SMALL_RUN[:-2] + ["--config_overrides", "queue_size=128,small_image_stem=false",
                                        "--learning_rate", "1e30", "--warmup_epochs", "0", "--max_train_steps", "6",
                                        "--checkpointing_steps", checkpointing_steps, "--output_dir", str(tmp_path)])
    with pytest.raises(FloatingPointError, match=message):
        train(args)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*")) == kept
    for name in kept:
        state = load_file(tmp_path / "checkpoints" / name / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def _logged_losses(output_dir: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    losses = {}
    for folder in {path.parent for path in (output_dir / "logs").rglob("events.out.tfevents.*")}:
        accumulator = EventAccumulator(str(folder))
        accumulator.Reload()
        if "train/loss" in accumulator.Tags()["scalars"]:
            losses.update({event.step: event.value for event in accumulator.Scalars("train/loss")})
    return losses


def test_logged_loss_is_the_mean_over_its_logging_window(tmp_path):
    """Steps 1-6 logged one by one, then the same seeded run logged every 3 steps: each logged value is the mean of
    its window's step losses, computed here with numpy."""
    runs = {}
    for every in (1, 3):
        output_dir = tmp_path / f"every_{every}"
        results = train(parse_args(SMALL_RUN + ["--max_train_steps", "6", "--logging_steps", str(every),
                                                "--knn_every_n_epochs", "0", "--report_to", "tensorboard",
                                                "--output_dir", str(output_dir)]))
        runs[every] = (_logged_losses(output_dir), results["final_loss"])
    (per_step, final_loss), (windowed, _) = runs[1], runs[3]
    assert sorted(per_step) == [1, 2, 3, 4, 5, 6] and sorted(windowed) == [3, 6]
    for step in (3, 6):
        assert windowed[step] == pytest.approx(np.mean([per_step[s] for s in range(step - 2, step + 1)]), rel=1e-5)
    assert final_loss == pytest.approx(per_step[6], rel=1e-6)  # final_loss is still the last step's loss


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL a real training process after its first checkpoint, then finish the run with --resume latest."""
    import signal
    import time

    command = [sys.executable, str(REPO_ROOT / "recipes" / "train.py"), *SMALL_RUN[:-2],
               "--config_overrides", "queue_size=128,small_image_stem=false", "--max_train_steps", "30",
               "--knn_every_n_epochs", "0", "--checkpointing_steps", "2", "--output_dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (tmp_path / "checkpoints" / "step_2" / "training_state.json").is_file():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "all_results.json").exists()

    results = train(parse_args(command[2:] + ["--resume_from_checkpoint", "latest"]))
    assert results["global_step"] == 30
    assert torch.isfinite(torch.tensor(results["final_loss"]))


def test_no_token_in_outputs(tmp_path, monkeypatch):
    secret = "hf_" + "SeCrEt" * 6
    monkeypatch.setenv("HF_TOKEN", secret)
    train(parse_args(SMALL_RUN[:-2] + ["--config_overrides", "queue_size=128,small_image_stem=false",
                                       "--max_train_steps", "2", "--checkpointing_steps", "1",
                                       "--report_to", "tensorboard", "--output_dir", str(tmp_path)]))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_eval_image_size_reaches_the_knn_monitor_and_the_exported_processor(tmp_path):
    """The STL-10 recipes train on 64 px crops and evaluate the native 96 px images, as the MNN/MSVQ references:
    here 16 px crops and 24 px evaluation images."""
    from transformers import AutoImageProcessor

    args = parse_args(SMALL_RUN[:-2] + ["--config_overrides", "queue_size=128,small_image_stem=false,eval_image_size=24",
                                        "--image_size", "16", "--max_train_steps", "2", "--output_dir", str(tmp_path)])
    trainer = Pretrainer(args)
    bank_batch = next(iter(trainer.knn_dataloaders[0]))
    assert tuple(bank_batch["pixel_values"].shape[-2:]) == (24, 24)
    assert tuple(next(iter(trainer.train_dataloader))["views"][0].shape[-2:]) == (16, 16)
    trainer.train()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "model")
    assert processor.size == {"height": 24, "width": 24}
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert (config["image_size"], config["eval_image_size"]) == (16, 24)


def test_callbacks_see_every_step_evaluation_and_checkpoint_and_can_end_training(tmp_path):
    """TrainerCallback hooks, as transformers' TrainerCallback: a callback that asks to stop after step 3 of a
    6-step run ends it there, and the run still writes its final kNN, Hub folder and results; the trainer's
    ``seconds_spent`` tells the seconds of kNN evaluations and checkpoints apart from training."""
    from hf_contrastive.training import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.events = []

        def on_train_begin(self, trainer, global_step):
            self.events.append(("begin", global_step, trainer.max_train_steps))

        def on_step_end(self, trainer, global_step):
            self.events.append(("step", global_step))
            return global_step == 3

        def on_evaluate(self, trainer, global_step, metrics):
            self.events.append(("evaluate", global_step, 0.0 <= metrics["knn_top1"] <= 1.0))

        def on_save(self, trainer, global_step, checkpoint):
            self.events.append(("save", global_step, checkpoint.name))

        def on_train_end(self, trainer, results):
            self.events.append(("end", results["global_step"]))
            self.seconds_spent = dict(trainer.seconds_spent)

    recorder = Recorder()
    results = train(parse_args(SMALL_RUN + ["--max_train_steps", "6", "--checkpointing_steps", "2",
                                            "--no_card_plots", "--output_dir", str(tmp_path)]), callbacks=[recorder])
    assert recorder.events == [("evaluate", 0, True), ("begin", 0, 6), ("step", 1), ("save", 2, "step_2"), ("step", 2),
                               ("step", 3), ("evaluate", 3, True), ("end", 3)]
    assert results["global_step"] == 3 and (tmp_path / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "model" / "knn_history.png").exists()  # --no_card_plots
    # What the trainer spent outside the steps, for callbacks that time training (benchmarks/quality.py).
    spent = recorder.seconds_spent
    assert spent["knn"] > 0 and spent["checkpoints"] > 0 and spent["mining"] == 0.0


def test_own_dataset_without_a_recipe_says_which_defaults_it_runs(tmp_path, caplog):
    """--dataset_name without --config runs the CIFAR-10 protocol's defaults: one warning says so and what to set."""
    import logging

    own = tmp_path / "my_images"
    shutil.copytree(SAMPLE, own)  # the sample under another name: a user's own dataset
    with caplog.at_level(logging.WARNING):
        cifar_stem = SMALL_RUN[:-1] + ["queue_size=128,projection_hidden_size=256"]  # the default stem, named below
        Pretrainer(parse_args(cifar_stem + ["--dataset_name", str(own), "--dataset_stats", "cifar10",
                                            "--max_train_steps", "2", "--output_dir", str(tmp_path / "run")]))
    [message] = [r.getMessage() for r in caplog.records if "No --config" in r.getMessage()]
    assert "2 steps, 32 px images, the 3x3 small-image ResNet stem, checkpoints: none" in message
    assert "--checkpointing_steps epoch" in message


def test_mnn_config_rejects_out_of_range_values():
    with pytest.raises(ValueError, match="queue_size must be >= 1"):
        hf_contrastive.MNNConfig(queue_size=-4)
    with pytest.raises(ValueError, match="nn_topk must be between 1 and queue_size"):
        hf_contrastive.MNNConfig(queue_size=4, nn_topk=5)
    with pytest.raises(ValueError, match=r"ema_momentum must be in \[0, 1\)"):
        hf_contrastive.MNNConfig(ema_momentum=1.5)


def _dataset_with_a_corrupt_image(folder: Path, bad_row: int) -> Path:
    import datasets

    source = datasets.load_dataset("parquet", data_dir=SAMPLE)
    train = source["train"].select(range(64)).cast_column("img", datasets.Image(decode=False))
    images = list(train["img"])
    images[bad_row] = {"bytes": b"definitely not a JPEG", "path": None}
    train = train.remove_columns("img").add_column("img", images).cast_column("img", datasets.Image())
    folder.mkdir(parents=True)
    train.to_parquet(folder / "train-00000-of-00001.parquet")
    source["test"].select(range(32)).to_parquet(folder / "test-00000-of-00001.parquet")
    return folder


def test_corrupt_image_stops_with_its_row_or_is_skipped(tmp_path):
    data_dir = _dataset_with_a_corrupt_image(tmp_path / "data", bad_row=5)
    run = ["--dataset_name", str(data_dir), "--per_device_train_batch_size", "16", "--dataloader_num_workers", "0",
           "--report_to", "none", "--max_train_steps", "4", "--knn_every_n_epochs", "0",
           "--config_overrides", "queue_size=64,small_image_stem=false"]
    with pytest.raises(ValueError, match="Could not decode row 5 of column 'img'"):
        train(parse_args(run + ["--output_dir", str(tmp_path / "strict")]))
    results = train(parse_args(run + ["--output_dir", str(tmp_path / "lenient"), "--skip_bad_images"]))
    assert results["skipped_images"] == {"train": 1}
    assert results["train_samples"] == 63 and results["global_step"] == 4


def test_cosine_momentum_schedule_by_hand():
    from hf_contrastive.models.modeling_contrastive import scheduled_momentum

    assert scheduled_momentum(0.99, 0.5, "constant") == 0.99
    assert scheduled_momentum(0.99, None, "cosine") == 0.99
    # 1 - (1 - m)(cos(pi t) + 1) / 2: m at t = 0, halfway to 1 at t = 1/2, 1 at t = 1.
    assert scheduled_momentum(0.99, 0.0, "cosine") == pytest.approx(0.99)
    assert scheduled_momentum(0.99, 0.5, "cosine") == pytest.approx(0.995)
    assert scheduled_momentum(0.99, 1.0, "cosine") == pytest.approx(1.0)


def test_teacher_follows_the_cosine_momentum(sample_views):
    import hf_contrastive

    config = hf_contrastive.BYOLConfig(small_image_stem=False, projection_hidden_size=64, prediction_hidden_size=64,
                                       projection_dim=32, ema_momentum=0.9, ema_momentum_schedule="cosine")
    model = hf_contrastive.BYOLForPreTraining(config)
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.add_(1.0)
    student = model.encoder.backbone.conv1.weight.detach().clone()
    teacher = model.teacher_encoder.backbone.conv1.weight.detach().clone()
    model.momentum_update(progress=0.5)  # m = 0.95
    torch.testing.assert_close(model.teacher_encoder.backbone.conv1.weight, 0.95 * teacher + 0.05 * student)
    with pytest.raises(ValueError, match="'constant' or 'cosine'"):
        hf_contrastive.BYOLConfig(ema_momentum_schedule="linear")


def test_adamw_leaves_biases_norms_and_vit_tokens_without_weight_decay(tmp_path):
    AcceleratorState._reset_state(reset_partial_state=True)
    args = parse_args(SMALL_RUN + ["--output_dir", str(tmp_path), "--optimizer", "adamw", "--weight_decay", "0.05"])
    trainer = Pretrainer(args)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decayed = {names[id(p)] for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {names[id(p)] for g in trainer.optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert "encoder.backbone.conv1.weight" in decayed and "encoder.backbone.bn1.weight" in plain
    assert not any(name.startswith("teacher_") for name in decayed | plain)  # frozen teachers are not optimised
    assert type(trainer.optimizer.optimizer).__name__ == "AdamW"
    with pytest.raises(ValueError, match="'sgd' or 'adamw'"):
        Pretrainer(parse_args(SMALL_RUN + ["--output_dir", str(tmp_path / "x"), "--optimizer", "lamb"]))


def test_channels_last_trains_the_same_model(tmp_path):
    """--channels_last changes the memory layout only: same loss and weights as the default layout (up to float
    summation order in the convolutions), with the recipes' split BatchNorm too."""
    common = SMALL_RUN[:-1] + ["queue_size=128,projection_hidden_size=256,bn_splits=4,small_image_stem=false", "--max_train_steps", "2",
                               "--knn_every_n_epochs", "0"]
    default = train(parse_args(common + ["--output_dir", str(tmp_path / "default")]))
    channels_last = train(parse_args(common + ["--output_dir", str(tmp_path / "cl"), "--channels_last"]))
    assert channels_last["final_loss"] == pytest.approx(default["final_loss"], abs=1e-3)
    expected = load_file(tmp_path / "default" / "model" / "model.safetensors")
    got = load_file(tmp_path / "cl" / "model" / "model.safetensors")
    assert max((expected[k] - got[k]).abs().max().item() for k in expected if expected[k].is_floating_point()) < 1e-3


def _resumed_run_ends_where_the_straight_run_ends(tmp_path: Path, argv: list[str]) -> dict:
    """Train ``argv`` (4 steps, a checkpoint every 2) straight, then again from the straight run's step-2 checkpoint
    in another folder: the final weights must be equal bit for bit. Returns the straight run's results."""
    straight = train(parse_args(argv + ["--output_dir", str(tmp_path / "straight")]))
    resumed_dir = tmp_path / "resumed" / "checkpoints"
    resumed_dir.mkdir(parents=True)
    (tmp_path / "straight" / "checkpoints" / "step_2").rename(resumed_dir / "step_2")
    train(parse_args(argv + ["--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest"]))
    expected = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    got = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    return straight


def test_training_with_augment_on_device_resumes_exactly(tmp_path):
    """The real loop with --augment_on_device (MNN: strong + weak views): it trains, and a run resumed from its
    mid-epoch checkpoint ends with the same weights as the uninterrupted run (the device half is seeded per batch)."""
    common = SMALL_RUN + ["--max_train_steps", "4", "--knn_every_n_epochs", "0", "--checkpointing_steps", "2",
                          "--augment_on_device"]
    straight = _resumed_run_ends_where_the_straight_run_ends(tmp_path, common)
    assert straight["global_step"] == 4
    # And the flag changes the views: the same run without it ends elsewhere.
    default = train(parse_args(SMALL_RUN + ["--max_train_steps", "4", "--knn_every_n_epochs", "0",
                                            "--output_dir", str(tmp_path / "default")]))
    assert default["final_loss"] != straight["final_loss"]


def test_training_with_data_on_device_resumes_exactly(tmp_path):
    """The real loop with --data_on_device (SPPS: two views and a mined neighbour's view, so the neighbour path
    runs too): a run resumed from its mid-epoch checkpoint ends with the same weights as the uninterrupted run."""
    common = SMALL_RUN[:-2] + ["--method", "spps", "--max_train_steps", "4", "--knn_every_n_epochs", "0",
                               "--checkpointing_steps", "2", "--data_on_device", "--config_overrides",
                               "queue_size=128,projection_hidden_size=256,small_image_stem=false"]
    straight = _resumed_run_ends_where_the_straight_run_ends(tmp_path, common)
    assert straight["global_step"] == 4 and math.isfinite(straight["final_loss"])


def test_data_on_device_learns_like_the_loader(tmp_path):
    """MNN for 24 steps on 512 real images, once with the loader's PIL views and once with --data_on_device: the loss
    falls the same way (measured: 4.15 -> 1.69 and 4.20 -> 1.71). The mean of the last 8 steps is under the first 5
    steps' in both runs, and the two differ by under 10%."""
    losses = {}
    for name, flags in (("loader", []), ("device", ["--data_on_device"])):
        output_dir = tmp_path / name
        train(parse_args(SMALL_RUN[:-2] + [
            "--max_train_samples", "512", "--per_device_train_batch_size", "32", "--max_train_steps", "24",
            "--knn_every_n_epochs", "0", "--no_knn_random_init", "--logging_steps", "1", "--report_to", "tensorboard",
            "--config_overrides", "queue_size=256,projection_hidden_size=256,small_image_stem=false",
            "--output_dir", str(output_dir), *flags]))
        logged = _logged_losses(output_dir)
        losses[name] = (np.mean([logged[step] for step in range(1, 6)]), np.mean([logged[step] for step in range(17, 25)]))
    for first, last in losses.values():
        assert last < first
    assert losses["device"][1] == pytest.approx(losses["loader"][1], rel=0.10), losses


def test_torch_compile_mode_reaches_accelerate(tmp_path):
    """--torch_compile --torch_compile_mode reduce-overhead (CUDA graphs on a GPU): Accelerate's dynamo plugin gets
    inductor and the mode, and the prepared model is compiled (lazily: nothing is compiled until the first step).
    A second trainer in the same process, after Accelerate's state was made without compile, still compiles."""
    compiled = SMALL_RUN + ["--output_dir", str(tmp_path), "--torch_compile", "--torch_compile_mode", "reduce-overhead"]
    AcceleratorState._reset_state(reset_partial_state=True)  # earlier tests in this process made it without compile
    trainer = Pretrainer(parse_args(compiled))
    plugin = trainer.accelerator.state.dynamo_plugin
    assert (str(plugin.backend).rpartition(".")[2], plugin.mode) == ("INDUCTOR", "reduce-overhead")
    assert isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule)
    AcceleratorState._reset_state(reset_partial_state=True)
    Pretrainer(parse_args(SMALL_RUN + ["--output_dir", str(tmp_path / "eager")]))  # the process's state: no compile
    trainer = Pretrainer(parse_args(compiled))
    assert isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule)
    AcceleratorState._reset_state(reset_partial_state=True)


def test_cosine_weight_decay_matches_the_per_iteration_schedule():
    """DINO's / PatchMix's wd schedule, computed independently with numpy: start at step 0, halfway at T/2."""
    import numpy as np

    from hf_contrastive.training.trainer import cosine_weight_decay

    total = 10
    expected = 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * np.arange(total) / total))
    got = [cosine_weight_decay(0.04, 0.4, step, total) for step in range(total)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got[0] == pytest.approx(0.04) and got[5] == pytest.approx(0.22)
    with pytest.raises(ValueError, match="--weight_decay_end must be >= 0 and needs --weight_decay > 0"):
        parse_args(["--weight_decay_end", "0.4", "--weight_decay", "0"])
    with pytest.raises(ValueError, match="--weight_decay_end must be >= 0"):
        parse_args(["--weight_decay_end", "-1"])


def test_weight_decay_end_anneals_the_decayed_group_and_resumes_exactly(tmp_path):
    """--weight_decay_end changes the decay of AdamW's decayed group step by step (its no-decay group stays at 0),
    changes the trained weights, and a run resumed mid-schedule ends with the uninterrupted run's weights."""
    common = SMALL_RUN + ["--optimizer", "adamw", "--weight_decay", "0.04", "--max_train_steps", "5",
                          "--knn_every_n_epochs", "0", "--checkpointing_steps", "2", "--checkpoints_total_limit", "5"]
    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = Pretrainer(parse_args(common + ["--weight_decay_end", "0.4", "--output_dir", str(tmp_path / "cosine")]))
    trainer.train()
    decays = sorted({group["weight_decay"] for group in trainer.optimizer.param_groups})
    from hf_contrastive.training.trainer import cosine_weight_decay

    assert decays == [0.0, pytest.approx(cosine_weight_decay(0.04, 0.4, 4, 5))]  # set before the 5th (last) step

    constant = tmp_path / "constant"
    train(parse_args(common + ["--output_dir", str(constant)]))
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "cosine" / "checkpoints" / "step_2", resumed / "checkpoints" / "step_2")
    train(parse_args(common + ["--weight_decay_end", "0.4", "--output_dir", str(resumed),
                               "--resume_from_checkpoint", "latest"]))

    cosine_weights = load_file(tmp_path / "cosine" / "model" / "model.safetensors")
    constant_weights = load_file(constant / "model" / "model.safetensors")
    resumed_weights = load_file(resumed / "model" / "model.safetensors")
    name = "encoder.backbone.conv1.weight"
    assert not torch.equal(cosine_weights[name], constant_weights[name])
    for key, value in cosine_weights.items():
        assert torch.equal(value, resumed_weights[key]), key


def test_min_learning_rate_ends_the_cosine_there(tmp_path):
    """The schedule by hand: linear warm-up over w steps, then min + (peak - min)(1 + cos(pi (t - w) / (T - w))) / 2."""
    import math

    AcceleratorState._reset_state(reset_partial_state=True)
    args = parse_args(SMALL_RUN + ["--output_dir", str(tmp_path), "--max_train_steps", "9", "--learning_rate", "0.1",
                                   "--min_learning_rate", "0.01"])
    trainer = Pretrainer(args)
    warmup, total = trainer.steps_per_epoch, 9  # --warmup_epochs 1 of 3 steps
    seen = []
    for _ in range(total):
        seen.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()  # no gradients: only keeps torch's step-order check quiet
        trainer.lr_scheduler.step()
    expected = [0.1 * t / warmup if t < warmup else
                0.01 + 0.09 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2 for t in range(total)]
    assert seen == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"--min_learning_rate \(0.2\) must be below the peak learning rate \(0.1\)"):
        Pretrainer(parse_args(SMALL_RUN + ["--output_dir", str(tmp_path / "x"), "--learning_rate", "0.1",
                                           "--min_learning_rate", "0.2"]))
    with pytest.raises(ValueError, match="--min_learning_rate must be >= 0"):
        parse_args(["--min_learning_rate", "-1"])


def test_augmentations_flag_updates_the_recipe_views_per_kind(tmp_path):
    """`--augmentations` changes only the named options of the named view kind; the loader then yields views built
    with them (real CIFAR-10 images: multinet_gl's local crops at 24 px instead of the default 16)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: multinet_gl\naugmentations:\n  local:\n    crop_scale: [0.1, 0.5]\n    blur_p: 0.0\n")
    args = parse_args(["--config", str(recipe), "--augmentations", "local={size: 24, crop_scale: [0.3, 1.0]}"])
    assert args.augmentations == {"local": {"crop_scale": [0.3, 1.0], "blur_p": 0.0, "size": 24}}

    trainer = Pretrainer(parse_args(SMALL_RUN + [
        "--method", "multinet_gl", "--output_dir", str(tmp_path / "run"), "--config_overrides",
        "projection_hidden_size=256", "--augmentations", "local={size: 24}"]))
    shapes = [tuple(view.shape) for view in trainer.train_dataset[0]["views"]]
    kinds = list(trainer.model_config.views)
    assert "local" in kinds and "strong" in kinds
    assert shapes == [(3, 24, 24) if kind == "local" else (3, 32, 32) for kind in kinds]


@pytest.mark.parametrize(("flags", "message"), [
    (["--augmentations", "locall={size: 24}"], "Unknown view kind 'locall'"),
    (["--augmentations", "local={crop: [0.1, 1.0]}"], r"Unknown override\(s\) \['crop'\] for the 'local' view"),
])
def test_bad_augmentations_name_what_is_valid(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_args(flags)


def test_augmentations_value_must_be_a_mapping(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--augmentations", "local=24"])
    assert "the value must be a mapping of view options" in capsys.readouterr().err


def test_recipe_augmentations_must_be_mappings(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: multinet_gl\naugmentations:\n  local: 24\n")
    with pytest.raises(ValueError, match="'augmentations:' must map view kinds to mappings of their options"):
        parse_args(["--config", str(recipe)])
