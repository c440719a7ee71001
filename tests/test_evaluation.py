"""Evaluation recipes (kNN, linear probe, fine-tuning), the model-index updates and the model card plots.

Everything runs on real CIFAR-10 images from ``hf_contrastive/sample_data/cifar10_sample`` with a small random-init MNN
folder written by ``save_hub_folder`` (as at the end of training: its card already holds the training kNN number). The
recipes' ``main`` functions run in-process with tiny settings; their numbers are checked against an independent numpy
kNN, the probe's training loss has to fall, and the folder's card has to end up with every entry exactly once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from accelerate.state import AcceleratorState
from huggingface_hub import ModelCard, ModelCardData
from transformers import AutoModel, AutoModelForImageClassification

import hf_contrastive
from hf_contrastive import data as data_lib
from hf_contrastive.card_plots import plot_embedding_map, plot_knn_history
from hf_contrastive.evaluation.knn import neighbour_label_agreement
from hf_contrastive.evaluation.linear import default_milestones, linear_probe_lr
from hf_contrastive.hub import MODEL_CARD_TEMPLATE, CardContext, save_hub_folder
from hf_contrastive.model_index import MIXED_TASK_NAME, SECTION_HEADING, update_model_index

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"
MEAN, STD = data_lib.DATASET_STATS["cifar10"]
TRAINING_KNN = 0.1234
TRAINING_TASK = "kNN classification (k=200, T=0.1, frozen features)"  # what render_model_card writes
TRAIN_IMAGES, EVAL_IMAGES = 256, 200
COMMON = ["--dataset_name", str(SAMPLE), "--max_train_samples", str(TRAIN_IMAGES),
          "--max_eval_samples", str(EVAL_IMAGES), "--dataloader_num_workers", "0"]


def load_recipe(name: str):
    """Import ``recipes/<name>.py`` (recipes are scripts, not a package)."""
    module_name = f"_recipe_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "recipes" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def reset_accelerate() -> None:
    """Each recipe builds its own Accelerator (Trainer too); the state is a per-process singleton."""
    AcceleratorState._reset_state(reset_partial_state=True)


def small_mnn_folder(folder: Path) -> Path:
    torch.manual_seed(0)
    config = hf_contrastive.MNNConfig(small_image_stem=False, queue_size=64, projection_hidden_size=64,
                                      projection_dim=32)
    model = hf_contrastive.MNNForPreTraining(config)
    context = CardContext(
        dataset_name=str(SAMPLE), dataset_stats="cifar10", train_samples=2000, epochs=1.0, global_batch_size=64,
        command="accelerate launch recipes/train.py --max_train_steps 30", knn_top1=TRAINING_KNN, eval_split="test",
        recipe={"method": "mnn", "learning_rate": None, "base_learning_rate": 0.06, "momentum": 0.9,
                "weight_decay": 5e-4, "warmup_epochs": 1},
        hardware="CPU", train_runtime_s=1.0, train_samples_per_second=64.0,
    )
    return save_hub_folder(model, hf_contrastive.get_method("mnn"), folder, image_mean=MEAN, image_std=STD,
                           context=context)


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory) -> tuple[Path, str]:
    folder = small_mnn_folder(tmp_path_factory.mktemp("evaluation") / "run" / "model")
    return folder, (folder / "README.md").read_text()


@pytest.fixture(scope="module")
def evaluated(hub_folder) -> dict:
    """kNN, then a 2-epoch linear probe, then 10 fine-tuning steps, all on the same folder."""
    folder, _ = hub_folder
    reset_accelerate()
    knn = load_recipe("knn_eval").main(["--model_name_or_path", str(folder), *COMMON])
    reset_accelerate()
    linear = load_recipe("linear_eval").main([
        "--model_name_or_path", str(folder), *COMMON, "--num_train_epochs", "2", "--per_device_train_batch_size", "64",
        "--lr_schedule", "step", "--learning_rate", "0.01",
    ])
    reset_accelerate()
    finetune = load_recipe("finetune").main([
        "--model_name_or_path", str(folder), "--dataset_name", str(SAMPLE), "--max_train_samples", str(TRAIN_IMAGES),
        "--max_eval_samples", "100", "--output_dir", str(folder.parent / "finetune"), "--max_steps", "10",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "50", "--learning_rate", "0.001",
        "--report_to", "none", "--save_strategy", "no", "--use_cpu", "--dataloader_num_workers", "0",
        "--disable_tqdm", "true", "--seed", "0",
    ])
    reset_accelerate()
    return {"folder": folder, "knn": knn, "linear": linear, "finetune": finetune}


@pytest.mark.parametrize("name", ["knn_eval", "linear_eval", "finetune"])
def test_recipe_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_recipe(name).main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model_name_or_path" in out and "--dataset_name" in out and "--max_train_samples" in out


# ----------------------------------------------------------------------------- kNN


def test_knn_eval_matches_an_independent_numpy_knn(evaluated):
    results, folder = evaluated["knn"], evaluated["folder"]
    written = json.loads((folder.parent / "knn_eval" / "eval_results.json").read_text())
    assert written["knn_top1"] == results["knn_top1"]
    assert 0.0 <= results["knn_top1"] <= 1.0
    assert written["protocol"]["k"] == 200 and written["protocol"]["temperature"] == 0.1
    assert written["protocol"]["bank_samples"] == TRAIN_IMAGES and written["protocol"]["eval_samples"] == EVAL_IMAGES
    assert written["eval_split"] == "test" and "knn_eval.py" in written["command"]

    # Independent: PIL images -> the folder's own image processor -> AutoModel -> numpy weighted vote.
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder).eval()
    splits = data_lib.load_image_dataset(str(SAMPLE), max_train_samples=TRAIN_IMAGES, max_eval_samples=EVAL_IMAGES)

    def features(split) -> np.ndarray:
        images = [data_lib.decode_image(value) for value in split["img"]]
        with torch.no_grad():
            pooled = encoder(processor(images, return_tensors="pt")["pixel_values"]).pooler_output.numpy()
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    bank, queries = features(splits.train), features(splits.eval)
    bank_labels, query_labels = np.array(splits.train["label"]), np.array(splits.eval["label"])
    similarity = queries @ bank.T
    top = np.argsort(-similarity, axis=1)[:, :200]
    scores = np.zeros((len(queries), 10))
    for row in range(len(queries)):
        np.add.at(scores[row], bank_labels[top[row]], np.exp(similarity[row, top[row]] / 0.1))
    expected = float((scores.argmax(1) == query_labels).mean())
    assert abs(results["knn_top1"] - expected) <= 1.0 / EVAL_IMAGES  # at most one float tie resolved differently


def test_neighbour_label_agreement_by_hand():
    # Queries along x and y; bank: x-ish rows labelled 0, 1, 0 and a y row labelled 1.
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0]]), dim=1)
    bank_labels = torch.tensor([0, 1, 0, 1])
    queries, query_labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    result = neighbour_label_agreement(queries, query_labels, bank, bank_labels, ks=(1, 2))
    # Query x: neighbours by similarity rows 0 (label 0), 1 (1); query y: rows 3 (1), 2 (0).
    assert result["agreement@1"] == 1.0
    assert result["agreement@2"] == 0.5
    assert result["chance"] == 0.5  # queries half 0 / half 1, bank half 0 / half 1
    with pytest.raises(ValueError, match="every k must be in"):
        neighbour_label_agreement(queries, query_labels, bank, bank_labels, ks=(5,))


def test_neighbour_label_agreement_matches_numpy_on_real_images():
    # Features: the raw pixels of real CIFAR-10 images at 8x8, so neighbours mean something but nothing is trained.
    splits = data_lib.load_image_dataset(str(SAMPLE), max_train_samples=300, max_eval_samples=100)

    def pixels(split) -> np.ndarray:
        images = [data_lib.decode_image(value).resize((8, 8)) for value in split["img"]]
        flat = np.stack([np.asarray(image, dtype=np.float64).ravel() for image in images]) - 127.5
        return flat / np.linalg.norm(flat, axis=1, keepdims=True)

    bank, queries = pixels(splits.train), pixels(splits.eval)
    bank_labels, query_labels = np.array(splits.train["label"]), np.array(splits.eval["label"])
    result = neighbour_label_agreement(torch.from_numpy(queries).float(), torch.from_numpy(query_labels),
                                       torch.from_numpy(bank).float(), torch.from_numpy(bank_labels), ks=(1, 5),
                                       chunk_size=32)
    order = np.argsort(-(queries @ bank.T), axis=1, kind="stable")
    for k in (1, 5):
        expected = np.mean(bank_labels[order[:, :k]] == query_labels[:, None])
        assert abs(result[f"agreement@{k}"] - expected) <= 1.0 / (k * len(queries))  # one float tie at most
    expected_chance = sum(np.mean(query_labels == c) * np.mean(bank_labels == c) for c in range(10))
    assert result["chance"] == pytest.approx(expected_chance)


# ----------------------------------------------------------------------------- linear probe


def test_linear_probe_schedules():
    assert default_milestones(100) == (60, 80) and default_milestones(200) == (120, 160)
    step = [linear_probe_lr(epoch, 30.0, "step", 100) for epoch in (0, 59, 60, 79, 80, 99)]
    assert step == pytest.approx([30.0, 30.0, 3.0, 3.0, 0.3, 0.3])
    per_epoch = [linear_probe_lr(epoch, 1.0, "cosine_per_epoch", 100) for epoch in (0, 50, 99)]
    assert per_epoch == pytest.approx([1.0, 0.5, 0.5 * (1 + np.cos(np.pi * 0.99))])
    with pytest.raises(ValueError, match="schedule"):
        linear_probe_lr(0, 1.0, "linear", 100)


def test_linear_probe_cosines_follow_torchs_cosine_annealing_per_step_and_per_epoch():
    """MSVQ's probe steps CosineAnnealingLR(T_max=epochs x iterations) after every iteration; PatchMix's steps
    CosineAnnealingLR(T_max=epochs) after every epoch. Our schedules give the lr each of its steps ran with."""
    epochs, steps = 3, 4
    for schedule, t_max, per_step in (("cosine", epochs * steps, True), ("cosine_per_epoch", epochs, False)):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)
        for epoch in range(epochs):
            for step in range(steps):
                ours = linear_probe_lr(epoch, 0.5, schedule, epochs, step_in_epoch=step, steps_per_epoch=steps)
                assert ours == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-12), (schedule, epoch, step)
                optimizer.step()
                if per_step:
                    scheduler.step()
            if not per_step:
                scheduler.step()


def test_eval_results_go_next_to_the_folder_and_remote_code_is_opt_in(tmp_path):
    from hf_contrastive.evaluation.linear import LinearEvalArguments

    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "models" / "a").mkdir(parents=True)
    (tmp_path / "models" / "b").mkdir(parents=True)
    run = LinearEvalArguments(model_name_or_path=str(tmp_path / "run" / "model"))
    assert run.default_output_dir("linear_eval") == tmp_path.resolve() / "run" / "linear_eval"
    a = LinearEvalArguments(model_name_or_path=str(tmp_path / "models" / "a")).default_output_dir("linear_eval")
    b = LinearEvalArguments(model_name_or_path=str(tmp_path / "models" / "b")).default_output_dir("linear_eval")
    assert (a.name, b.name) == ("a-linear_eval", "b-linear_eval") and a.parent == b.parent
    assert run.trust_remote_code is False  # the folder's own code runs only when asked


def test_linear_protocols_head_init_and_patchmix_test_transform(sample_images):
    from torchvision import transforms as T

    from hf_contrastive.evaluation.linear import (
        LinearEvalArguments,
        build_linear_head,
        build_resize_center_crop_transform,
    )

    torch.manual_seed(0)
    head = build_linear_head(512, 10, "normal")  # the MNN/MSVQ reference LinearHead
    assert abs(head.weight.std().item() - 0.01) < 0.001 and torch.equal(head.bias, torch.zeros(10))
    assert build_linear_head(512, 10, "torch").weight.std().item() > 0.02  # nn.Linear's default: U(+-1/sqrt(512))
    mnn = LinearEvalArguments(model_name_or_path="x")
    assert (mnn.protocol, mnn.lr_schedule, mnn.head_init, mnn.peak_learning_rate(256)) == ("mnn", "step", "normal", 30.0)
    msvq = LinearEvalArguments(model_name_or_path="x", protocol="msvq")
    assert (msvq.lr_schedule, msvq.head_init, msvq.peak_learning_rate(512)) == ("cosine", "normal", 1.0)
    patchmix = LinearEvalArguments(model_name_or_path="x", protocol="patchmix")
    assert (patchmix.lr_schedule, patchmix.head_init) == ("cosine_per_epoch", "torch")
    assert patchmix.peak_learning_rate(256) == pytest.approx(0.02) and patchmix.peak_learning_rate(512) == pytest.approx(0.04)
    cacr = LinearEvalArguments(model_name_or_path="x", protocol="cacr")  # CACR-SSL small_scale linear_eval.py
    assert (cacr.lr_schedule, cacr.head_init, cacr.per_device_train_batch_size, cacr.min_crop_scale) == (
        "step", "torch", 128, 0.2)
    assert cacr.peak_learning_rate(128) == 1e-3
    assert LinearEvalArguments(model_name_or_path="x", protocol="cacr", per_device_train_batch_size=64,
                               min_crop_scale=0.08).per_device_train_batch_size == 64
    assert linear_probe_lr(80, 1e-3, "step", 100, gamma=0.2) == pytest.approx(1e-3 * 0.04)
    with pytest.raises(ValueError, match="--protocol must be one of"):
        LinearEvalArguments(model_name_or_path="x", protocol="simclr")
    # PatchMix's main_linear.py test transform, written with torchvision's v1 API on PIL images.
    reference = T.Compose([T.Resize(int(32 / 224 * 256), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32),
                           T.ToTensor(), T.Normalize(MEAN, STD)])
    ours = build_resize_center_crop_transform(32, MEAN, STD)
    for image in sample_images(3):
        torch.testing.assert_close(ours(image), reference(image), atol=1e-5, rtol=0)


def test_linear_eval_results_and_training(evaluated):
    results, folder = evaluated["linear"], evaluated["folder"]
    written = json.loads((folder.parent / "linear_eval" / "eval_results.json").read_text())
    for key in ("best_top1", "best_epoch", "last_top1", "last_epoch", "history", "protocol", "reported"):
        assert key in written, key
    history = written["history"]
    assert [record["epoch"] for record in history] == [1, 2] and written["last_epoch"] == 2
    assert all(0.0 <= record["test_top1"] <= 1.0 and 0.0 <= record["train_top1"] <= 1.0 for record in history)
    assert written["best_top1"] == max(record["test_top1"] for record in history) >= written["last_top1"]
    assert written["last_top1"] == history[-1]["test_top1"]
    assert history[written["best_epoch"] - 1]["test_top1"] == written["best_top1"]
    # step schedule over 2 epochs: milestones at 60% and 80% -> epochs (1, 2): x0.1 from the second epoch
    assert [record["lr"] for record in history] == pytest.approx([0.01, 0.001])
    protocol = written["protocol"]
    assert protocol["lr_schedule"] == "step" and protocol["learning_rate"] == 0.01 and protocol["epochs"] == 2
    assert protocol["momentum"] == 0.9 and protocol["weight_decay"] == 0.0 and protocol["global_batch_size"] == 64
    assert written["train_samples"] == TRAIN_IMAGES and written["eval_samples"] == EVAL_IMAGES
    assert written["num_features"] == 512 and written["num_classes"] == 10
    # A random-init encoder is not guaranteed to beat chance on test after 2 epochs; the head must still learn.
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert results["best_top1"] == written["best_top1"]


# ----------------------------------------------------------------------------- fine-tuning


def test_finetune_results_and_classifier_folder(evaluated):
    results, folder = evaluated["finetune"], evaluated["folder"]
    output = folder.parent / "finetune"
    written = json.loads((output / "eval_results.json").read_text())
    assert 0.0 <= written["eval_accuracy"] <= 1.0 and written["eval_accuracy"] == results["eval_accuracy"]
    assert written["protocol"]["steps"] == 10 and written["protocol"]["learning_rate"] == 0.001
    assert written["protocol"]["eval_samples"] == 100
    classifier = AutoModelForImageClassification.from_pretrained(output)
    assert type(classifier) is hf_contrastive.MNNForImageClassification
    assert classifier.config.num_labels == 10 and classifier.config.id2label[0] == "airplane"
    assert (output / "preprocessor_config.json").is_file() and (output / "modeling_mnn.py").is_file()


def test_finetune_native_timm_folder(tmp_path):
    """A timm_wrapper folder (no remote code, no README): fine-tunes, and gets a card with the result."""
    import timm

    folder = tmp_path / "timm-resnet18"
    timm.models.save_for_hf(timm.create_model("resnet18", pretrained=False, num_classes=0), folder,
                            safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"].pop("num_classes", None)  # timm 1.0.31 + transformers 5 (docs/hf-notes.md)
    config["pretrained_cfg"].update(input_size=[3, 32, 32], mean=list(MEAN), std=list(STD), crop_pct=1.0)
    (folder / "config.json").write_text(json.dumps(config))
    reset_accelerate()
    results = load_recipe("finetune").main([
        "--model_name_or_path", str(folder), "--dataset_name", str(SAMPLE), "--max_train_samples", "64",
        "--max_eval_samples", "32", "--output_dir", str(tmp_path / "finetune"), "--max_steps", "3",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--report_to", "none",
        "--save_strategy", "no", "--use_cpu", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
    ])
    reset_accelerate()
    assert 0.0 <= results["eval_accuracy"] <= 1.0
    assert "TimmWrapperImageProcessor" in results["protocol"]["eval_preprocessing"]
    card = ModelCard.load(folder / "README.md")
    [entry] = card.data.eval_results
    assert entry.metric_name == "fine-tuned top-1" and entry.metric_value == round(results["eval_accuracy"], 4)
    assert SECTION_HEADING in card.text


# ----------------------------------------------------------------------------- the model card


def test_card_holds_training_knn_and_every_evaluation(evaluated):
    card = ModelCard.load(evaluated["folder"] / "README.md")
    entries = {result.metric_name: result for result in card.data.eval_results}
    assert len(entries) == len(card.data.eval_results) == 5  # no duplicates
    assert entries["kNN top-1"].metric_value == TRAINING_KNN  # written by save_hub_folder at the end of training
    assert entries["kNN top-1"].metric_args["protocol"] == TRAINING_TASK
    knn = entries["kNN top-1 (knn_eval, k=200, T=0.1)"]
    assert knn.metric_value == round(evaluated["knn"]["knn_top1"], 4) and knn.metric_args["k"] == 200
    best = entries["linear probe top-1 (step schedule, best epoch)"]
    last = entries["linear probe top-1 (step schedule, last epoch)"]
    assert best.metric_value == round(evaluated["linear"]["best_top1"], 4)
    assert last.metric_value == round(evaluated["linear"]["last_top1"], 4)
    assert best.metric_args["best_epoch"] == evaluated["linear"]["best_epoch"]
    assert best.metric_args["protocol"] == "Linear probe (frozen backbone, step schedule)"
    assert best.metric_args["lr_schedule"] == "step" and best.metric_args["epochs"] == 2
    assert "linear_eval.py" in best.metric_args["source"]
    finetune = entries["fine-tuned top-1"]
    assert finetune.metric_value == round(evaluated["finetune"]["eval_accuracy"], 4)
    assert all(result.dataset_type == "uoft-cs/cifar10" and result.dataset_split == "test"
               for result in card.data.eval_results)
    assert {result.task_name for result in card.data.eval_results} == {MIXED_TASK_NAME}

    text = card.text
    table = text[text.index(SECTION_HEADING):].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # without the header
    assert len(rows) == 4  # kNN, linear best, linear last, fine-tuning (the training kNN is in "## Results")
    assert f"{100 * evaluated['linear']['best_top1']:.2f}%" in table
    assert text.index("## Results") < text.index(SECTION_HEADING) < text.index("## How it was trained")
    assert "not part of this card yet" not in text
    assert "**12.34%**" in text  # the training section is untouched


def test_update_model_index_keeps_entries_and_replaces_reruns(hub_folder, tmp_path):
    _, pristine = hub_folder
    (tmp_path / "README.md").write_text(pristine)
    common = dict(dataset_id="uoft-cs/cifar10", dataset_name="uoft-cs/cifar10", split="test", source="test")
    update_model_index(tmp_path, task_name="Linear probe (frozen backbone, step schedule)",
                       metric_name="linear probe top-1 (best epoch)", value=0.61234, protocol_args={"epochs": 100},
                       **common)
    update_model_index(tmp_path, task_name="Full fine-tuning", metric_name="fine-tuned top-1", value=0.7,
                       protocol_args={"steps": 10, "note": "a|b"}, **common)

    def state():
        card = ModelCard.load(tmp_path / "README.md")
        table = card.text[card.text.index(SECTION_HEADING):].split("\n## ")[0]
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        return {r.metric_name: r for r in card.data.eval_results}, rows, card

    entries, rows, card = state()
    assert set(entries) == {"kNN top-1", "linear probe top-1 (best epoch)", "fine-tuned top-1"}
    assert entries["kNN top-1"].metric_value == TRAINING_KNN
    assert entries["linear probe top-1 (best epoch)"].metric_value == 0.6123
    assert entries["fine-tuned top-1"].metric_args == {"protocol": "Full fine-tuning", "source": "test", "steps": 10,
                                                      "note": "a|b"}
    assert len(rows) == 2 and "61.23%" in rows[0] and "a\\|b" in rows[1]

    # Same protocol, dataset, split and metric: replaced in the metadata and in the table.
    update_model_index(tmp_path, task_name="Linear probe (frozen backbone, step schedule)",
                       metric_name="linear probe top-1 (best epoch)", value=0.65, protocol_args={"epochs": 200},
                       **common)
    entries, rows, card = state()
    assert len(card.data.eval_results) == 3 and entries["linear probe top-1 (best epoch)"].metric_value == 0.65
    assert entries["linear probe top-1 (best epoch)"].metric_args["epochs"] == 200
    assert len(rows) == 2 and "65.00%" in rows[0] and "61.23%" not in "\n".join(rows)
    assert entries["fine-tuned top-1"].metric_value == 0.7 and entries["kNN top-1"].metric_value == TRAINING_KNN
    # Another protocol with the same metric name is a different entry.
    update_model_index(tmp_path, task_name="Linear probe (frozen backbone, cosine schedule)",
                       metric_name="linear probe top-1 (best epoch)", value=0.66, protocol_args={}, **common)
    _, rows, card = state()
    assert len(card.data.eval_results) == 4 and len(rows) == 3


def test_update_model_index_single_protocol_keeps_its_task_name(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    update_model_index(folder, task_name="Full fine-tuning", dataset_id=None, dataset_name="my-images", split="test",
                       metric_name="fine-tuned top-1", value=0.5, protocol_args={"steps": 3}, source="test")
    card = ModelCard.load(folder / "README.md")
    [entry] = card.data.eval_results
    assert entry.task_name == "Full fine-tuning" and entry.dataset_type == "my-images"
    assert card.data.to_dict()["model-index"][0]["name"] == "bare"
    assert SECTION_HEADING in card.text and "50.00%" in card.text


def test_card_template_shows_plots_only_when_asked(hub_folder):
    spec = hf_contrastive.get_method("mnn")
    model = hf_contrastive.MNNForPreTraining(hf_contrastive.MNNConfig(small_image_stem=False, queue_size=64,
                                                                      projection_hidden_size=64, projection_dim=32))
    context = CardContext(dataset_name=str(SAMPLE), dataset_stats="cifar10", train_samples=10, epochs=1.0,
                          global_batch_size=8, command="x", knn_top1=0.5, eval_split="test", recipe={})

    def render(**plots) -> str:
        return str(ModelCard.from_template(ModelCardData(), template_path=str(MODEL_CARD_TEMPLATE), spec=spec,
                                           config=model.config, context=context, repo_id="org/x",
                                           parameters_millions=1.0, pretraining_parts="queue", **plots))

    plain = render()
    assert "knn_history.png" not in plain and "embedding_tsne.png" not in plain
    assert render(knn_plot=False, embedding_plot=None) == plain
    both = render(knn_plot=True, embedding_plot=True)
    assert "![kNN accuracy during training](knn_history.png)" in both
    assert "![t-SNE of test-set embeddings](embedding_tsne.png)" in both
    assert both.replace("\n\n![kNN accuracy during training](knn_history.png)", "").replace(
        "\n\n![t-SNE of test-set embeddings](embedding_tsne.png)", "") == plain


# ----------------------------------------------------------------------------- plots


def test_card_plots_from_real_features(tmp_path):
    splits = data_lib.load_image_dataset(str(SAMPLE), max_eval_samples=300)
    transform = data_lib.build_view_transform("eval", 32, MEAN, STD)
    pixels = torch.stack([transform(data_lib.decode_image(value)) for value in splits.eval["img"]])
    torch.manual_seed(0)
    encoder = hf_contrastive.MNNModel(hf_contrastive.MNNConfig(small_image_stem=False)).eval()
    with torch.no_grad():
        features = encoder(pixels).pooler_output.numpy()
    labels = np.array(splits.eval["label"])

    tsne = plot_embedding_map(features, labels, splits.class_names, tmp_path / "embedding_tsne.png", max_points=250)
    history = [{"step": 15 * e, "epoch": float(e), "knn_top1": value}
               for e, value in zip(range(1, 6), (0.25, 0.21, 0.24, 0.3, 0.33), strict=True)]
    knn = plot_knn_history(history, tmp_path / "knn_history.png", subtitle="k=200, T=0.1, CIFAR-10 test")
    for path in (tsne, knn):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
        with PIL.Image.open(path) as image:
            assert image.width >= 500 and image.height >= 350
            assert len(image.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 20  # not a blank canvas
    with pytest.raises(ValueError, match="no kNN"):
        plot_knn_history([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="N = len"):
        plot_embedding_map(features[:10], labels[:9], None, tmp_path / "bad.png")
    saved = Path(os.environ.get("HF_CONTRASTIVE_KEEP_PLOTS", ""))
    if saved.name:  # keep the images for a look (HF_CONTRASTIVE_KEEP_PLOTS=/some/folder)
        saved.mkdir(parents=True, exist_ok=True)
        for path in (tsne, knn):
            shutil.copy(path, saved / path.name)


def test_evaluation_does_not_import_training():
    """The layers run one way: training uses evaluation (the kNN monitor), evaluation never imports training."""
    import subprocess

    code = ("import sys, hf_contrastive.evaluation.linear, hf_contrastive.evaluation.knn; "
            "print(sorted(m for m in sys.modules if m.startswith('hf_contrastive.training')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"
