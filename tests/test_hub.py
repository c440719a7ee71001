"""Publish and reuse: the Hub folder written by ``save_hub_folder`` after a (tiny) real MNN training run.

Everything runs on real CIFAR-10 images from ``hf_contrastive/sample_data/cifar10_sample``:

* remote code: a child Python in which ``hf_contrastive`` cannot be imported loads the folder with
  ``trust_remote_code=True`` (AutoModel, the image-feature-extraction pipeline, AutoModelForImageClassification);
* installed package: the Auto classes resolve to our classes without ``trust_remote_code``, and
  AutoModelForPreTraining restores the whole pretraining state (teacher, queue, pointer);
* fine-tuning with ``transformers.Trainer`` lowers the loss;
* the model card and the folder layout;
* ``push_folder_to_hub`` through huggingface_hub's real ``upload_folder``, with only the HTTP calls replaced.

No network: huggingface_hub is put in offline mode wherever a request could be made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    Trainer,
    TrainingArguments,
)

from hf_contrastive import MNNConfig, MNNForImageClassification, MNNForPreTraining, MNNModel, get_method
from hf_contrastive.data import DATASET_STATS, build_view_transform, decode_image, load_image_dataset
from hf_contrastive.hub import CardContext, push_folder_to_hub, save_hub_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"
MEAN, STD = DATASET_STATS["cifar10"]
REPO_ID = "org/mnn-resnet18"
KNN_TOP1 = 0.432149  # the card must report it rounded to 4 digits
TRAIN_COMMAND = (
    "accelerate launch recipes/train.py --method mnn --dataset_name hf_contrastive/sample_data/cifar10_sample "
    "--per_device_train_batch_size 16 --max_steps 2 --push_to_hub --hub_model_id org/mnn-resnet18"
)
PRETRAIN_BATCH = 16
PRETRAIN_STEPS = 2
AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForImageClassification")


@dataclass
class Published:
    """What the module fixture trained and wrote."""

    model: MNNForPreTraining  # the trained pretraining model (encoder in eval mode afterwards)
    state: dict[str, torch.Tensor]  # its state_dict right after training (cloned)
    enqueued: torch.Tensor  # every key enqueued during training, in order
    folder: Path  # the Hub folder
    pixels: torch.Tensor  # [8, 3, 32, 32] real test images through the eval transform
    features: torch.Tensor  # the trained encoder's pooler_output on ``pixels`` (eval mode)
    image_path: Path  # one real test image as a lossless PNG
    work: Path  # scratch folder of the module


@pytest.fixture(scope="module")
def splits():
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"{SAMPLE_DIR} missing; regenerate it with data/make_cifar10_sample.py")
    return load_image_dataset(str(SAMPLE_DIR))


def _images(dataset, indices) -> list[PIL.Image.Image]:
    return [decode_image(dataset[i]["img"], index=i, column="img") for i in indices]


@pytest.fixture(scope="module")
def published(splits, tmp_path_factory) -> Published:
    """Two real MNN optimiser steps (queue, EMA), then ``save_hub_folder`` as the trainer's ``_finish`` does."""
    torch.manual_seed(0)
    work = tmp_path_factory.mktemp("hub")
    model = MNNForPreTraining(MNNConfig(queue_size=256))
    model.train()
    strong = build_view_transform("strong", 32, MEAN, STD)
    weak = build_view_transform("weak", 32, MEAN, STD)
    images = _images(splits.train, range(PRETRAIN_BATCH))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9,
                                weight_decay=5e-4)
    enqueued = []
    for _ in range(PRETRAIN_STEPS):
        views = [torch.stack([strong(image) for image in images]), torch.stack([weak(image) for image in images])]
        output = model(views=views)
        assert torch.isfinite(output.loss)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        model.momentum_update()
        model.enqueue(output.queue_keys)
        enqueued.append(output.queue_keys["queue"])
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    context = CardContext(
        dataset_name=str(SAMPLE_DIR),
        dataset_stats="cifar10",
        train_samples=len(splits.train),
        epochs=round(PRETRAIN_STEPS * PRETRAIN_BATCH / len(splits.train), 3),
        global_batch_size=PRETRAIN_BATCH,
        command=TRAIN_COMMAND,
        knn_top1=KNN_TOP1,
        eval_split="test",
        recipe={"method": "mnn", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                "warmup_epochs": 0, "max_steps": PRETRAIN_STEPS, "per_device_train_batch_size": PRETRAIN_BATCH},
        hardware="CPU (2 cores)",
        train_runtime_s=3.2,
        train_samples_per_second=20.0,
    )
    folder = save_hub_folder(model, get_method("mnn"), work / "model", image_mean=MEAN, image_std=STD,
                             context=context, repo_id=REPO_ID)

    eval_transform = build_view_transform("eval", 32, MEAN, STD)
    test_images = _images(splits.eval, range(8))
    pixels = torch.stack([eval_transform(image) for image in test_images])
    model.encoder.eval()
    with torch.no_grad():
        features = model.encoder(pixel_values=pixels).pooler_output
    image_path = work / "cifar_test_0.png"
    test_images[0].save(image_path)
    return Published(model=model, state=state, enqueued=torch.cat(enqueued), folder=folder, pixels=pixels,
                     features=features, image_path=image_path, work=work)


def _features(model, pixels: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(pixel_values=pixels).pooler_output


# ---------------------------------------------------------------- remote code, without the package

# Runs in a fresh interpreter where `import hf_contrastive` fails, as for a Hub user without the package.
CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["hf_contrastive"] = None  # the package is installed (editable): make it unimportable here
    import json
    folder, pixels_path, features_path, image_path, result_path = sys.argv[1:6]
    result = {}
    try:
        import hf_contrastive  # noqa: F401
        result["package_importable"] = True
    except ImportError:
        result["package_importable"] = False

    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    result["encoder_class"] = f"{type(encoder).__module__}.{type(encoder).__name__}"
    pixels, expected = torch.load(pixels_path), torch.load(features_path)
    with torch.no_grad():
        got = encoder(pixel_values=pixels).pooler_output
    result["encoder_shape"] = list(got.shape)
    result["encoder_max_diff"] = (got - expected).abs().max().item()

    image = Image.open(image_path).convert("RGB")
    extractor = pipeline("image-feature-extraction", model=folder, trust_remote_code=True)
    pooled = torch.tensor(extractor(image, pool=True)).reshape(-1)
    processor = AutoImageProcessor.from_pretrained(folder)
    processed = processor(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        direct = encoder(pixel_values=processed).pooler_output[0]
    result["pipeline_dim"] = pooled.numel()
    result["pipeline_max_diff"] = (pooled - direct).abs().max().item()
    result["processor_vs_eval_transform_max_diff"] = (processed[0] - pixels[0]).abs().max().item()

    classifier = AutoModelForImageClassification.from_pretrained(folder, num_labels=10, trust_remote_code=True)
    result["classifier_class"] = f"{type(classifier).__module__}.{type(classifier).__name__}"
    with torch.no_grad():
        result["classifier_logits_shape"] = list(classifier.eval()(pixel_values=pixels).logits.shape)
    result["modules"] = sorted(  # (the editable install's import finder is loaded at start-up; it is not the package)
        name for name in sys.modules if name.split(".")[0] == "hf_contrastive" and sys.modules[name] is not None
    )
    with open(result_path, "w") as f:
        json.dump(result, f)
    """
)


def test_remote_code_loads_without_the_package(published):
    work = published.work
    torch.save(published.pixels, work / "pixels.pt")
    torch.save(published.features, work / "features.pt")
    result_path = work / "child_result.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(work / "hf_modules"))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(published.folder), str(work / "pixels.pt"), str(work / "features.pt"),
         str(published.image_path), str(result_path)],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    result = json.loads(result_path.read_text())

    assert result["package_importable"] is False
    assert result["modules"] == []
    # The classes come from the files copied next to the weights, not from an installed package.
    assert result["encoder_class"].startswith("transformers_modules.")
    assert result["encoder_class"].endswith("modeling_mnn.MNNModel")
    assert result["encoder_shape"] == [8, 512]
    assert result["encoder_max_diff"] < 1e-5
    assert result["pipeline_dim"] == 512
    assert result["pipeline_max_diff"] < 1e-5
    # preprocessor_config.json reproduces the eval transform the features were trained and evaluated with.
    assert result["processor_vs_eval_transform_max_diff"] < 1e-5
    assert result["classifier_class"].startswith("transformers_modules.")
    assert result["classifier_class"].endswith("modeling_mnn.MNNForImageClassification")
    assert result["classifier_logits_shape"] == [8, 10]


# ---------------------------------------------------------------- with the package installed


def test_auto_model_resolves_to_package_class_without_trust_remote_code(published):
    encoder = AutoModel.from_pretrained(published.folder)
    assert type(encoder) is MNNModel and type(encoder).__module__ == "hf_contrastive.models.modeling_mnn"
    torch.testing.assert_close(_features(encoder, published.pixels), published.features, atol=1e-5, rtol=0)


def test_auto_model_for_pretraining_restores_teacher_and_queue(published):
    restored = AutoModelForPreTraining.from_pretrained(published.folder)
    assert type(restored) is MNNForPreTraining
    state = restored.state_dict()
    assert state.keys() == published.state.keys()
    for name, tensor in published.state.items():
        assert torch.equal(state[name], tensor), name

    enqueued = published.enqueued
    assert restored.queue.pointer.item() == enqueued.shape[0] == PRETRAIN_STEPS * PRETRAIN_BATCH
    torch.testing.assert_close(restored.queue.features[: enqueued.shape[0]], enqueued, atol=0, rtol=0)
    # The teacher is the EMA one from the checkpoint, not a fresh copy of the student.
    teacher = restored.teacher_encoder.state_dict()
    student = restored.encoder.state_dict()
    assert any(not torch.equal(teacher[name], student[name]) for name in teacher)


def test_teacher_stays_frozen_after_loading(published):
    assert not any(p.requires_grad for p in published.model.teacher_encoder.parameters())  # as trained
    restored = AutoModelForPreTraining.from_pretrained(published.folder)
    teacher = [*restored.teacher_encoder.parameters(), *restored.teacher_projector.parameters()]
    assert not any(p.requires_grad for p in teacher)


def test_auto_model_for_image_classification_adds_fresh_head(published):
    classifier = AutoModelForImageClassification.from_pretrained(published.folder, num_labels=10)
    assert type(classifier) is MNNForImageClassification
    assert classifier.classifier.out_features == 10
    torch.testing.assert_close(_features(classifier.encoder, published.pixels), published.features, atol=1e-5, rtol=0)


class _LabelledImages(torch.utils.data.Dataset):
    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor):
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


def test_fine_tuning_with_trainer_lowers_the_loss(published, splits, tmp_path):
    eval_transform = build_view_transform("eval", 32, MEAN, STD)
    indices = range(1000, 1128)  # not the pretraining batch
    pixels = torch.stack([eval_transform(image) for image in _images(splits.train, indices)])
    labels = torch.tensor([splits.train[i]["label"] for i in indices])
    assert len(labels.unique()) == 10

    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_pretrained(published.folder, num_labels=10, trust_remote_code=True)

    def loss_on_train_images() -> float:
        model.eval()
        with torch.no_grad():
            return model(pixel_values=pixels, labels=labels).loss.item()

    loss_before = loss_on_train_images()
    args = TrainingArguments(
        output_dir=str(tmp_path / "finetune"), per_device_train_batch_size=32, max_steps=12, learning_rate=1e-3,
        logging_steps=1, report_to="none", use_cpu=True, remove_unused_columns=False, save_strategy="no",
        disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_LabelledImages(pixels, labels))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert loss_on_train_images() < loss_before


# ---------------------------------------------------------------- model card and folder layout


def test_model_card_metadata_and_text(published):
    card = ModelCard.load(published.folder / "README.md")
    data = card.data
    assert data.pipeline_tag == "image-feature-extraction"
    assert data.library_name == "transformers"
    assert data.license == "apache-2.0"
    assert data.datasets == ["uoft-cs/cifar10"]
    assert "mnn" in data.tags and "resnet18" in data.tags
    result = data.eval_results[0]
    assert result.metric_value == round(KNN_TOP1, 4) == 0.4321
    assert result.dataset_type == "uoft-cs/cifar10" and result.dataset_split == "test"
    assert result.task_type == "image-classification"
    assert "2311.00562" in card.text
    assert TRAIN_COMMAND in card.text
    assert REPO_ID in card.text
    assert "43.21%" in card.text
    assert "{{" not in card.text and "{%" not in card.text


def test_folder_layout_safetensors_processor_and_auto_map(published):
    folder = published.folder
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "training_args.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    assert [f for f in files if "safetensors" in f] == ["model.safetensors"]
    with safe_open(folder / "model.safetensors", framework="pt") as weights:
        keys = set(weights.keys())
    assert {"queue.features", "queue.pointer"} <= keys
    assert any(k.startswith("teacher_encoder.") for k in keys) and any(k.startswith("predictor.") for k in keys)

    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 32, "width": 32}
    assert processor["image_mean"] == pytest.approx(list(MEAN))
    assert processor["image_std"] == pytest.approx(list(STD))
    assert processor["do_normalize"] and processor["do_rescale"]

    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mnn"
    assert set(config["auto_map"]) == set(AUTO_CLASSES)
    for reference in config["auto_map"].values():  # every reference points at a file copied next to the weights
        module, class_name = reference.rsplit(".", 1)
        assert f"class {class_name}(" in (folder / f"{module}.py").read_text(), reference
    for source_file in folder.glob("*.py"):  # ... and the copied files form a flat, self-contained set
        text = source_file.read_text()
        assert "from hf_contrastive" not in text and "import hf_contrastive" not in text, source_file.name
        assert "from .." not in text, source_file.name


def test_image_processor_reproduces_eval_transform(published, splits):
    processor = AutoImageProcessor.from_pretrained(published.folder)
    eval_transform = build_view_transform("eval", 32, MEAN, STD)
    image = _images(splits.eval, [3])[0]
    for side in (32, 64, 24):  # native CIFAR size, then real images that need a bilinear resize
        resized = image.resize((side, side), PIL.Image.BICUBIC)
        pixels = processor(resized, return_tensors="pt")["pixel_values"]
        assert pixels.shape == (1, 3, 32, 32)
        torch.testing.assert_close(pixels[0], eval_transform(resized), atol=1e-5, rtol=0)
    # Grayscale and RGBA images are converted to RGB first, as training decodes them (decode_image).
    for mode in ("L", "RGBA"):
        converted = image.convert(mode)
        pixels = processor(converted, return_tensors="pt")["pixel_values"]
        expected = eval_transform(decode_image(converted))  # RGBA here is fully opaque
        torch.testing.assert_close(pixels[0], expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- push (HTTP layer replaced)


def test_push_uploads_the_folder_with_our_card(published, tmp_path, offline_hub):
    fake = offline_hub

    url = push_folder_to_hub(published.folder, REPO_ID)
    assert url.endswith(f"/{REPO_ID}/commit/{'0' * 40}")
    assert fake.calls == ["create_repo", "_validate_yaml", "create_commit"]

    remote = tmp_path / "remote" / REPO_ID
    local_files = {p.relative_to(published.folder).as_posix() for p in published.folder.rglob("*") if p.is_file()}
    remote_files = {p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()}
    assert remote_files == local_files
    for name in local_files:
        assert (remote / name).read_bytes() == (published.folder / name).read_bytes(), name

    card = ModelCard.load(remote / "README.md")
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.eval_results[0].metric_value == round(KNN_TOP1, 4)
    assert "model-index" in card.content

    encoder = AutoModel.from_pretrained(remote, trust_remote_code=True)
    torch.testing.assert_close(_features(encoder, published.pixels), published.features, atol=1e-5, rtol=0)


def test_pickle_checkpoints_are_refused(published, tmp_path):
    """A folder holding only pytorch_model.bin (pickle) is not loaded: safetensors only."""
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(published.folder, folder)
    state = AutoModelForPreTraining.from_pretrained(folder).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModel.from_pretrained(folder)


def test_config_that_does_not_match_the_weights_is_refused(published, tmp_path):
    """config.json naming another backbone than the weights were saved with: a clear error, never a silently
    half-random encoder. A fresh classifier head or absent heads are fine."""
    import json
    import shutil

    folder = tmp_path / "mismatched"
    shutil.copytree(published.folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["backbone"] = "resnet34"  # more blocks than the saved resnet18 weights
    (folder / "config.json").write_text(json.dumps(config))
    for auto_class in (AutoModel, AutoModelForPreTraining):
        with pytest.raises(ValueError, match="the weights do not match config.json .*resnet34.*encoder weights are missing"):
            auto_class.from_pretrained(folder)
    model, info = AutoModel.from_pretrained(published.folder, output_loading_info=True)  # the caller's request kept
    assert not info["missing_keys"]
