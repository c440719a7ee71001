"""``hf-contrastive export`` and ``embed`` on a (tiny) really trained MNN encoder and real CIFAR-10 images.

* ``--format timm``: the encoder-only folder loads as a native ``timm_wrapper`` model (no remote code) in AutoModel,
  AutoImageProcessor, the image-feature-extraction pipeline and AutoModelForImageClassification, and in timm itself,
  with the same weights and the same pooled features as our encoder;
* the small-image stem, which timm cannot rebuild, fails with a clear message and exit code 2;
* ``--format transformers`` copies the remote-code folder, which loads in a process without hf_contrastive;
* ``embed`` writes ids and raw 512-d features to parquet, and each image's cosine nearest neighbour is itself.

No network: huggingface_hub runs offline in every child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
import timm
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

import hf_contrastive
from hf_contrastive import MNNConfig, MNNForPreTraining, cli
from hf_contrastive.data import DATASET_STATS, build_view_transform, decode_image, load_image_dataset
from hf_contrastive.embed import FEATURES_DESCRIPTION, embed_images, read_embeddings
from hf_contrastive.export import ExportError, can_export_timm, export_timm, export_transformers
from hf_contrastive.hub import CardContext, save_hub_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"
MEAN, STD = DATASET_STATS["cifar10"]
KNN_TOP1 = 0.3125
SMALL_HEADS = dict(queue_size=64, projection_hidden_size=64, projection_dim=32)


@dataclass
class Trained:
    folder: Path  # the Hub folder (remote code, whole pretraining model)
    timm_folder: Path  # its --format timm export
    images: list[PIL.Image.Image]  # 16 real test images
    pixels: torch.Tensor  # [16, 3, 32, 32] through our eval transform
    features: torch.Tensor  # our encoder's pooler_output on ``pixels`` (eval mode)
    encoder: torch.nn.Module  # our trained encoder (eval mode)
    work: Path


def _context(**extra) -> CardContext:
    return CardContext(dataset_name=str(SAMPLE_DIR), dataset_stats="cifar10", train_samples=2000, epochs=0.016,
                       global_batch_size=16, command="pytest", knn_top1=KNN_TOP1, eval_split="test", **extra)


def _child_env(work: Path) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(work / "hf_modules"))


@pytest.fixture(scope="module")
def splits():
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"{SAMPLE_DIR} missing; regenerate it with data/make_cifar10_sample.py")
    return load_image_dataset(str(SAMPLE_DIR))


@pytest.fixture(scope="module")
def trained(splits, tmp_path_factory) -> Trained:
    """Two SGD steps of MNN (standard ResNet-18 stem, SplitBatchNorm with 2 splits) on real views, so the BN
    statistics are real ones, then the Hub folder as the trainer writes it and its timm export."""
    torch.manual_seed(0)
    work = tmp_path_factory.mktemp("export")
    model = MNNForPreTraining(MNNConfig(small_image_stem=False, bn_splits=2, **SMALL_HEADS)).train()
    strong, weak = (build_view_transform(kind, 32, MEAN, STD) for kind in ("strong", "weak"))
    train_images = [decode_image(splits.train[i]["img"], index=i) for i in range(8)]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    for _ in range(2):
        views = [torch.stack([strong(im) for im in train_images]), torch.stack([weak(im) for im in train_images])]
        output = model(views=views)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        model.momentum_update()
        model.enqueue(output.queue_keys)
    bn = model.encoder.backbone.bn1.state_dict()  # split BN writes its running statistics when they are read
    assert bn["num_batches_tracked"].item() > 0 and bn["running_mean"].abs().max() > 1e-3  # non-trivial statistics

    folder = save_hub_folder(model, hf_contrastive.get_method("mnn"), work / "model", image_mean=MEAN,
                             image_std=STD, context=_context(), repo_id="org/mnn-resnet18")
    images = [decode_image(splits.eval[i]["img"], index=i) for i in range(16)]
    pixels = torch.stack([build_view_transform("eval", 32, MEAN, STD)(im) for im in images])
    model.encoder.eval()
    with torch.no_grad():
        features = model.encoder(pixel_values=pixels).pooler_output
    timm_folder = export_timm(folder, work / "timm")
    return Trained(folder=folder, timm_folder=timm_folder, images=images, pixels=pixels, features=features,
                   encoder=model.encoder, work=work)


def _assert_same_features(actual, expected) -> None:
    """Equal up to float32 rounding of the input: the image processors and our eval transform give pixels that differ
    by < 1e-6, which through 18 layers moves features of size ~50 by ~1e-6 of their scale (features of different
    images differ by O(1)). Where both sides see the same pixels the tests use atol=1e-5 directly."""
    actual, expected = np.asarray(actual, dtype=np.float32), np.asarray(expected, dtype=np.float32)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(actual - expected).max()) <= 1e-5 * scale, (np.abs(actual - expected).max(), scale)


def _pooled(model, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(pixel_values=pixels).pooler_output


# ---------------------------------------------------------------- --format timm


def test_timm_folder_holds_only_the_backbone_in_timm_format(trained):
    folder = trained.timm_folder
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 0 and config["num_features"] == 512
    assert "num_classes" not in config.get("model_args", {})  # transformers 5.23 would get it twice
    pretrained_cfg = config["pretrained_cfg"]
    assert pretrained_cfg["input_size"] == [3, 32, 32]
    assert pretrained_cfg["mean"] == pytest.approx(MEAN) and pretrained_cfg["std"] == pytest.approx(STD)
    assert pretrained_cfg["interpolation"] == "bilinear" and pretrained_cfg["crop_pct"] == 1.0
    assert "tag" not in pretrained_cfg  # nothing borrowed from timm's ImageNet weights' description

    weights = load_file(folder / "model.safetensors")
    reference = timm.create_model("resnet18", num_classes=0).state_dict()
    assert weights.keys() == reference.keys()  # no "backbone." prefix, no teacher/heads/queue, no classifier
    source = load_file(trained.folder / "model.safetensors")
    for name, tensor in weights.items():
        assert torch.equal(tensor, source[f"encoder.backbone.{name}"]), name


def test_native_auto_model_gives_the_same_features_without_remote_code(trained):
    encoder = AutoModel.from_pretrained(trained.timm_folder, trust_remote_code=False)
    assert type(encoder).__name__ == "TimmWrapperModel"
    assert type(encoder).__module__.startswith("transformers.models.timm_wrapper")
    torch.testing.assert_close(_pooled(encoder, trained.pixels), trained.features, atol=1e-5, rtol=0)


def test_native_image_processor_reproduces_the_eval_transform(trained):
    processor = AutoImageProcessor.from_pretrained(trained.timm_folder)
    eval_transform = build_view_transform("eval", 32, MEAN, STD)
    image = trained.images[3]
    for size in ((32, 32), (64, 64), (24, 24), (48, 40)):  # native size, bilinear resizes, a non-square image
        resized = image.resize(size, PIL.Image.BICUBIC)
        pixels = processor(resized, return_tensors="pt")["pixel_values"]
        assert pixels.shape == (1, 3, 32, 32)
        torch.testing.assert_close(pixels[0], eval_transform(resized), atol=1e-5, rtol=0)


def test_native_pipeline_returns_the_pooled_features(trained):
    extractor = pipeline("image-feature-extraction", model=str(trained.timm_folder))
    pooled = torch.tensor(extractor(trained.images[0], pool=True)).reshape(-1)
    assert pooled.numel() == 512
    # Exactly the native model on the processor's pixels ...
    native = AutoModel.from_pretrained(trained.timm_folder, trust_remote_code=False)
    processed = AutoImageProcessor.from_pretrained(trained.timm_folder)(trained.images[0], return_tensors="pt")
    torch.testing.assert_close(pooled, _pooled(native, processed["pixel_values"])[0], atol=1e-5, rtol=0)
    # ... and our encoder on our eval transform's pixels, which differ from the processor's by float rounding.
    _assert_same_features(pooled, trained.features[0])


def test_native_classifier_has_a_fresh_head_on_the_exported_backbone(trained):
    torch.manual_seed(0)
    classifier = AutoModelForImageClassification.from_pretrained(trained.timm_folder, num_labels=10)
    assert type(classifier).__name__ == "TimmWrapperForImageClassification"
    state = classifier.timm_model.state_dict()
    assert state["fc.weight"].shape == (10, 512)
    for name, tensor in load_file(trained.timm_folder / "model.safetensors").items():
        assert torch.equal(state[name], tensor), name  # the backbone is loaded, not re-initialised
    with torch.no_grad():
        logits = classifier.eval()(pixel_values=trained.pixels[:4]).logits
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


def test_timm_itself_loads_the_same_weights(trained):
    config = json.loads((trained.timm_folder / "config.json").read_text())
    model_args = config.get("model_args", {})
    # What timm.create_model("hf-hub:...") does, with the file taken from the folder instead of the Hub.
    model = timm.create_model(
        config["architecture"], pretrained=True, pretrained_cfg=config["pretrained_cfg"],
        pretrained_cfg_overlay=dict(file=str(trained.timm_folder / "model.safetensors")),
        num_classes=config["num_classes"], **model_args,
    ).eval()
    weights = load_file(trained.timm_folder / "model.safetensors")
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in weights.items())
    with torch.no_grad():
        torch.testing.assert_close(model(trained.pixels), trained.features, atol=1e-5, rtol=0)
    data_config = timm.data.resolve_data_config(model=model)
    transform = timm.data.create_transform(**data_config)
    torch.testing.assert_close(transform(trained.images[0]), trained.pixels[0], atol=1e-5, rtol=0)


def test_timm_model_card_says_timm_and_keeps_the_results(trained):
    card = ModelCard.load(trained.timm_folder / "README.md")
    assert card.data.library_name == "timm"
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.eval_results[0].metric_value == KNN_TOP1
    assert card.data.datasets == ["uoft-cs/cifar10"]
    assert card.text.lstrip().startswith("# MNN resnet18")
    assert "## Load with timm" in card.text
    assert 'timm.create_model("hf-hub:org/mnn-resnet18", pretrained=True)' in card.text
    assert card.text.index("Load with timm") < card.text.index("## Results")


def test_vit_backbone_exports_natively(tmp_path, trained):
    torch.manual_seed(0)
    config = MNNConfig(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 2},
                       small_image_stem=False, **SMALL_HEADS)
    assert can_export_timm(config) == (True, "")
    model = MNNForPreTraining(config).eval()
    folder = save_hub_folder(model, hf_contrastive.get_method("mnn"), tmp_path / "vit", image_mean=MEAN,
                             image_std=STD, context=_context())
    exported = export_timm(folder, tmp_path / "vit-timm")
    model_args = json.loads((exported / "config.json").read_text())["model_args"]
    assert model_args["img_size"] in (32, [32, 32]) and model_args["patch_size"] in (8, [8, 8])
    assert model_args["depth"] == 2
    native = AutoModel.from_pretrained(exported, trust_remote_code=False)
    torch.testing.assert_close(_pooled(native, trained.pixels[:4]), _pooled(model.encoder, trained.pixels[:4]),
                               atol=1e-5, rtol=0)


def test_can_export_timm_explains_what_timm_cannot_rebuild():
    possible, reason = can_export_timm(MNNConfig())  # the default: small-image stem
    assert not possible and "small-image stem" in reason and "--format transformers" in reason
    assert can_export_timm(MNNConfig(small_image_stem=False, bn_splits=8)) == (True, "")
    possible, reason = can_export_timm(MNNConfig(backbone="no_such_net", small_image_stem=False))
    assert not possible and "no_such_net" in reason


def test_small_image_stem_fails_clearly_on_the_command_line(tmp_path):
    model = MNNForPreTraining(MNNConfig(**SMALL_HEADS))  # small_image_stem=True, the CIFAR default
    folder = save_hub_folder(model, hf_contrastive.get_method("mnn"), tmp_path / "model", image_mean=MEAN,
                             image_std=STD, context=_context())
    out = tmp_path / "out"
    child = subprocess.run(
        [sys.executable, "-m", "hf_contrastive", "export", str(folder), str(out), "--format", "timm"],
        cwd=tmp_path, env=_child_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 2, child.stderr[-3000:]
    assert "Traceback" not in child.stderr
    assert "small-image stem" in child.stderr and "--format transformers" in child.stderr
    assert not out.exists()


# ---------------------------------------------------------------- --format transformers

CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["hf_contrastive"] = None  # a user without the package
    import json
    import torch
    from transformers import AutoModel
    folder, pixels_path, result_path = sys.argv[1:4]
    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        features = encoder(pixel_values=torch.load(pixels_path)).pooler_output
    torch.save(features, result_path)
    print(type(encoder).__module__ + "." + type(encoder).__name__)
    """
)


def test_transformers_export_copies_the_folder_and_loads_without_the_package(trained, tmp_path, capsys):
    out = tmp_path / "exported"
    assert cli.main(["export", str(trained.folder), str(out)]) == 0  # --format transformers is the default
    assert "trust_remote_code=True" in capsys.readouterr().out
    source = {p.relative_to(trained.folder).as_posix() for p in trained.folder.rglob("*") if p.is_file()}
    copied = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert copied == source and {"modeling_mnn.py", "preprocessor_config.json", "README.md"} <= copied
    for name in source:
        assert (out / name).read_bytes() == (trained.folder / name).read_bytes(), name
    assert cli.main(["export", str(trained.folder), str(out)]) == 2  # never overwritten silently
    assert "--overwrite" in capsys.readouterr().err

    torch.save(trained.pixels, tmp_path / "pixels.pt")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), str(tmp_path / "pixels.pt"), str(tmp_path / "features.pt")],
        cwd=tmp_path, env=_child_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    assert child.stdout.strip().splitlines()[-1].startswith("transformers_modules.")
    torch.testing.assert_close(torch.load(tmp_path / "features.pt"), trained.features, atol=1e-5, rtol=0)


def test_training_checkpoint_is_refused_with_the_folder_to_use(trained, tmp_path, capsys):
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "step_2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "training_state.json").write_text(json.dumps({"global_step": 2}))
    (checkpoint / "model.safetensors").write_bytes((trained.folder / "model.safetensors").read_bytes())
    (run / "model").mkdir()
    for fmt in ("transformers", "timm"):
        assert cli.main(["export", str(checkpoint), str(tmp_path / f"out-{fmt}"), "--format", fmt]) == 2
        error = capsys.readouterr().err
        assert "training checkpoint" in error and "OUTPUT_DIR/model" in error and str(run / "model") in error
    with pytest.raises(ExportError, match="neither an existing folder nor a Hugging Face Hub model id"):
        export_timm(tmp_path / "missing", tmp_path / "out")


# ---------------------------------------------------------------- embed


def _nearest_is_itself(features: np.ndarray) -> bool:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    return bool((np.argmax(unit @ unit.T, axis=1) == np.arange(len(unit))).all())


def test_embed_dataset_split_writes_ids_and_raw_features(trained, tmp_path, capsys):
    output = tmp_path / "embeddings.parquet"
    code = cli.main(["embed", str(trained.timm_folder), "--dataset_name", str(SAMPLE_DIR), "--split", "test",
                     "--max_samples", "64", "--batch_size", "24", "--output", str(output)])
    assert code == 0 and "64 embeddings of dimension 512" in capsys.readouterr().out
    table = pq.read_table(output)
    assert str(table.schema.field("embedding").type) == "list<element: float>"
    assert table.schema.metadata[b"hf_contrastive.features"].decode() == FEATURES_DESCRIPTION
    ids, features = read_embeddings(output)
    assert ids == [f"test/{i}" for i in range(64)]
    assert features.shape == (64, 512) and features.dtype == np.float32
    assert table.column("label").to_pylist() == [int(v) for v in load_image_dataset(str(SAMPLE_DIR)).eval["label"][:64]]
    # Raw pooler_output (not normalised), equal to our encoder's features on the same images.
    _assert_same_features(features[:16], trained.features)
    assert not np.allclose(np.linalg.norm(features, axis=1), 1.0)
    assert _nearest_is_itself(features)


def test_embed_image_files_with_the_hub_folder(trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(trained.images[:10]):
        image.save(images / f"cifar_{i:02d}.png")
    (images / "notes.txt").write_text("not an image")  # skipped: only image extensions are read from a folder
    output = embed_images(trained.folder, [images], output=tmp_path / "files.parquet", batch_size=4, progress=False)
    ids, features = read_embeddings(output)
    assert ids == [str(images / f"cifar_{i:02d}.png") for i in range(10)]
    _assert_same_features(features, trained.features[:10])
    assert _nearest_is_itself(features)
    with pytest.raises(ValueError, match="exactly one"):
        embed_images(trained.folder, [images], dataset_name=str(SAMPLE_DIR), output=tmp_path / "x.parquet")


# ---------------------------------------------------------------- the command itself


def test_command_line_help_and_console_script():
    child = subprocess.run([sys.executable, "-m", "hf_contrastive", "--help"], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    assert "usage: hf-contrastive" in child.stdout and "export" in child.stdout and "embed" in child.stdout
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("hf-contrastive") == "hf_contrastive.cli:main"


def test_hub_id_is_resolved_with_snapshot_download(trained, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):  # the Hub replaced by the local folder
        calls.append(repo_id)
        return str(trained.folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    out = export_transformers("org/mnn-resnet18", tmp_path / "from-hub")
    assert calls == ["org/mnn-resnet18"] and (out / "model.safetensors").is_file()

    monkeypatch.undo()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network: a clear error instead
    with pytest.raises(ExportError, match="Could not download the Hub model 'org/not-cached'"):
        export_transformers("org/not-cached", tmp_path / "none")
