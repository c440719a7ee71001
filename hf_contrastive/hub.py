"""The Hub-ready folder: weights + remote code + image processor + model card, and pushing it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from transformers import PreTrainedModel, ViTImageProcessor

from .models import FeatureQueue
from .registry import MethodSpec

# Package data (pyproject.toml), so that a wheel renders cards too.
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
# Local copies of Hub datasets map to their Hub id in the card metadata.
KNOWN_DATASET_IDS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100", "stl10": "tanganke/stl10",
                     "tiny-imagenet": "zh-plus/tiny-imagenet"}


@dataclass
class CardContext:
    """What the model card reports about one training run."""

    dataset_name: str
    dataset_stats: str
    train_samples: int
    epochs: float
    global_batch_size: int
    command: str
    knn_top1: float | None
    eval_split: str
    knn_top1_random_init: float | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    hardware: str = ""
    train_runtime_s: float | None = None
    train_samples_per_second: float | None = None
    learning_rate: float | None = None


def dataset_display_name(dataset_name: str, dataset_stats: str) -> str:
    """How the card names the training data: the Hub id, or a local folder's name (never a local absolute path)."""
    if not Path(dataset_name).exists():
        return dataset_name
    known = KNOWN_DATASET_IDS.get(dataset_stats)
    return f"{Path(dataset_name).name} (local copy of {known})" if known else f"{Path(dataset_name).name} (local folder)"


def hub_dataset_id(dataset_name: str, dataset_stats: str) -> str | None:
    """The Hub id to put in the card metadata: the name itself for a Hub id, the known id for a local copy."""
    if not Path(dataset_name).exists():
        return dataset_name
    return KNOWN_DATASET_IDS.get(dataset_stats)


def render_model_card(
    spec: MethodSpec,
    model: PreTrainedModel,
    context: CardContext,
    repo_id: str | None,
    knn_plot: bool = False,
    embedding_plot: bool = False,
) -> ModelCard:
    """Render ``hf_contrastive/templates/model_card.md`` with huggingface_hub's ModelCard (metadata + model-index)."""
    dataset_id = hub_dataset_id(context.dataset_name, context.dataset_stats)
    eval_results = None
    if context.knn_top1 is not None:
        eval_results = [
            EvalResult(
                task_type="image-classification",
                task_name="kNN classification (k=200, T=0.1, frozen features)",
                dataset_type=dataset_id or Path(context.dataset_name).name,
                dataset_name=dataset_display_name(context.dataset_name, context.dataset_stats),
                dataset_split=context.eval_split,
                metric_type="accuracy",
                metric_name="kNN top-1",
                metric_value=round(context.knn_top1, 4),
            )
        ]
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        datasets=[dataset_id] if dataset_id else None,
        tags=["hf_contrastive", "self-supervised-learning", "contrastive-learning", spec.name, model.config.backbone],
        model_name=repo_id or f"{spec.name}-{model.config.backbone}",
        eval_results=eval_results,
    )
    if not MODEL_CARD_TEMPLATE.is_file():
        raise FileNotFoundError(f"Model card template missing at {MODEL_CARD_TEMPLATE}; reinstall hf_contrastive.")
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        spec=spec,
        config=model.config,
        context=context,
        repo_id=repo_id or "path/to/folder",
        parameters_millions=sum(p.numel() for p in model.encoder.parameters()) / 1e6,
        pretraining_parts=describe_pretraining_parts(model),
        dataset_display=dataset_display_name(context.dataset_name, context.dataset_stats),
        hub_dataset_id=dataset_id,
        knn_plot=knn_plot,
        embedding_plot=embedding_plot,
    )


def describe_pretraining_parts(model: PreTrainedModel) -> str:
    """What the folder holds besides the encoder, read from the model's own modules (e.g. "projector, predictor,
    EMA teacher (teacher_encoder, teacher_projector), queue (4096 x 128)")."""
    parts, teachers = [], []
    for name, module in model.named_children():
        if name == "encoder":
            continue
        if name == "student_encoder":  # PatchMix: the published encoder is the EMA of this one
            parts.append("student encoder (the published encoder is its EMA)")
        elif name.startswith("teacher_"):
            teachers.append(name)
        elif isinstance(module, FeatureQueue):
            parts.append(f"{name.replace('_', ' ')} ({module.size} x {module.dim})")
        else:
            parts.append(name.replace("_", " "))
    if teachers:
        parts.append(f"EMA teacher weights ({', '.join(teachers)})")
    return ", ".join(parts) if parts else "nothing else"


def save_hub_folder(
    model: PreTrainedModel,
    spec: MethodSpec,
    folder: str | Path,
    *,
    image_mean: tuple[float, float, float],
    image_std: tuple[float, float, float],
    context: CardContext,
    repo_id: str | None = None,
    knn_plot: bool = False,
    embedding_plot: bool = False,
) -> Path:
    """Write the folder that is pushed as-is: safetensors weights of the whole pretraining model (the encoder loads
    from it with AutoModel, the full state with AutoModelForPreTraining), config with an ``auto_map`` for every Auto
    class, the flat remote-code files, ``preprocessor_config.json`` (the eval transform) and README.md (which shows
    ``knn_history.png`` / ``embedding_tsne.png`` when the flags say they were written into the folder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.auto_map = spec.auto_map
    model.save_pretrained(folder, safe_serialization=True)
    size = model.config.evaluation_image_size  # the eval transform's side (STL-10: the native 96 px)
    ViTImageProcessor(
        do_convert_rgb=True,  # grayscale, palette and RGBA images become RGB, as training's decode_image does
        do_resize=True,
        size={"height": size, "width": size},
        resample=2,  # bilinear, as torchvision's Resize in the eval transform
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(image_mean),
        image_std=list(image_std),
    ).save_pretrained(folder)
    render_model_card(spec, model, context, repo_id, knn_plot, embedding_plot).save(folder / "README.md")
    (folder / "training_args.json").write_text(json.dumps(context.recipe, indent=2, default=str))
    readable_by_all(folder)
    return folder


def readable_by_all(folder: Path) -> None:
    """Give every file of ``folder`` the mode a plain ``open()`` would (0644 under the usual umask 022):
    safetensors writes its weights through a private temporary file (0600), which other users of a shared
    machine, or a web server serving the folder, could not read."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


def push_folder_to_hub(folder: str | Path, repo_id: str, commit_message: str = "Upload hf_contrastive model") -> str:
    """Create ``repo_id`` if needed and upload ``folder`` exactly as it is (our model card included).

    Authentication comes from ``huggingface-cli login`` or ``HF_TOKEN``; the token is never printed or logged.
    """
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    return str(getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}"))
