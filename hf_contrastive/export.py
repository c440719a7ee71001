"""Export a trained Hub folder: as a native timm model (no remote code) or as the transformers folder it already is.

* :func:`export_timm` writes an encoder-only folder in timm's own Hub format (``config.json`` with ``architecture``,
  ``model_args`` and ``pretrained_cfg``, backbone weights in ``model.safetensors``). transformers reads such a folder
  as a ``timm_wrapper`` model: ``AutoModel`` gives ``TimmWrapperModel`` without ``trust_remote_code``,
  ``AutoImageProcessor`` builds the eval transform from ``pretrained_cfg``, the ``image-feature-extraction``
  pipeline works, and ``AutoModelForImageClassification(num_labels=N)`` adds a fresh head. timm itself loads it with
  ``timm.create_model("hf-hub:<repo>", pretrained=True)``.
  Only backbones that ``timm.create_model(config.backbone, **config.backbone_kwargs)`` rebuilds exactly can go this
  way (:func:`can_export_timm`): the small-image ResNet stem cannot.
* :func:`export_transformers` copies the remote-code Hub folder written by training, which already is the export
  format of the transformers route.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import timm
import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers import AutoConfig, AutoModel, PretrainedConfig

# Training checkpoints (accelerate save_state folders) carry this file; the Hub folder does not.
TRAINING_STATE_FILE = "training_state.json"
FORMATS = ("transformers", "timm")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# PIL resample codes used by image processors -> timm interpolation names.
_RESAMPLE_TO_INTERPOLATION = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# pretrained_cfg entries timm copies from the architecture's default (ImageNet) weights; they do not describe ours.
_SOURCE_CFG_KEYS = ("tag", "origin_url", "paper_ids", "paper_name", "notes", "description", "hf_hub_id", "url",
                    "file", "license")
# Files of the Hub folder never copied by an export.
_IGNORED = shutil.ignore_patterns(".git", ".cache", ".huggingface", "__pycache__")


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says why and what to do instead."""


# ----------------------------------------------------------------------------- inputs


def resolve_model_folder(name_or_path: str | Path) -> Path:
    """A local Hub folder, or the local snapshot of a Hub model id (downloaded with huggingface_hub).

    Raises `ExportError` for an accelerate training checkpoint (``checkpoints/step_N``), which holds the
    pretraining model's weights but no ``config.json``, and for a path that is neither a folder nor a Hub id.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        _check_hub_folder(path)
        return path
    if path.exists():
        raise ExportError(f"{name_or_path} is a file; pass the folder that holds config.json and model.safetensors.")
    if not _HUB_ID.match(str(name_or_path)):
        raise ExportError(
            f"{name_or_path} is neither an existing folder nor a Hugging Face Hub model id (like 'org/mnn-resnet18')."
        )
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(str(name_or_path), repo_type="model"))
    except Exception as error:  # offline, unknown repo, gated repo, ...
        raise ExportError(
            f"Could not download the Hub model {name_or_path!r}: {type(error).__name__}: {error}"
        ) from error
    _check_hub_folder(folder)
    return folder


def _check_hub_folder(folder: Path) -> None:
    if (folder / TRAINING_STATE_FILE).is_file() or (
        not (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    ):
        hub_folder = folder.parent.parent / "model" if folder.parent.name == "checkpoints" else None
        hint = (f" This run's Hub folder is {hub_folder}." if hub_folder is not None and hub_folder.is_dir() else
                " It is written when training finishes; to get it from this checkpoint, run recipes/train.py again "
                f"with the run's --config/arguments and --resume_from_checkpoint {folder}.")
        raise ExportError(
            f"{folder} is an accelerate training checkpoint ({TRAINING_STATE_FILE}, optimiser and pretraining "
            "weights, no config.json), not a Hub folder. Export needs the Hub-ready folder that training writes to "
            f"OUTPUT_DIR/model (config.json, model.safetensors, preprocessor_config.json).{hint}"
        )
    if not (folder / "config.json").is_file():
        raise ExportError(f"{folder} has no config.json: not a Hub model folder (expected OUTPUT_DIR/model of a run).")
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        raise ExportError(f"{folder} has no model.safetensors: not a Hub model folder (expected OUTPUT_DIR/model).")


def _prepare_output(output_dir: str | Path, source: Path, overwrite: bool) -> Path:
    output_dir = Path(output_dir).expanduser()
    if output_dir.resolve() == source.resolve():
        raise ExportError(f"OUTPUT_DIR {output_dir} is the input folder itself; choose another folder.")
    if output_dir.is_file():
        raise ExportError(f"OUTPUT_DIR {output_dir} is a file.")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            raise ExportError(f"OUTPUT_DIR {output_dir} exists and is not empty; remove it or pass --overwrite.")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


# ----------------------------------------------------------------------------- timm


def can_export_timm(config: PretrainedConfig) -> tuple[bool, str]:
    """Whether the encoder of ``config`` is exactly ``timm.create_model(config.backbone, **config.backbone_kwargs)``
    (then it can be exported as a native timm model), and if not, why (a message for the user)."""
    if getattr(config, "model_type", None) == "timm_wrapper":
        return False, "the folder already is a native timm model (config.json has pretrained_cfg); use it as it is."
    backbone = getattr(config, "backbone", None)
    if not isinstance(backbone, str) or not hasattr(config, "small_image_stem"):
        return False, (f"config.json of model_type {getattr(config, 'model_type', None)!r} has no hf_contrastive "
                       "backbone fields (backbone, small_image_stem); only hf_contrastive encoders can be exported.")
    if config.small_image_stem:
        pool = "" if config.stem_max_pool else ", no max-pool"
        return False, (
            f"this encoder uses the small-image stem (small_image_stem=True: 3x3 stride-1 first conv{pool}) on "
            f"{backbone!r}. timm cannot rebuild that stem: timm.create_model({backbone!r}) builds the 7x7 stride-2 "
            "stem, so a native timm / transformers timm_wrapper folder would be a different network. Use --format "
            "transformers (the default): it exports the folder with its own model code, which loads with "
            "AutoModel.from_pretrained(folder, trust_remote_code=True) or, with hf_contrastive installed, without it."
        )
    if backbone == "small_alexnet":
        return False, ("small_alexnet (CACR's official encoder) is this package's own network, not a timm model: use "
                       "--format transformers (the folder with its model code).")
    if not timm.is_model(backbone):
        return False, f"{backbone!r} is not a timm model name in the installed timm {timm.__version__}."
    return True, ""


def _timm_model_args(config: PretrainedConfig) -> dict:
    model_args = dict(config.backbone_kwargs or {})
    if getattr(config, "num_channels", 3) != 3:
        model_args["in_chans"] = config.num_channels
    return model_args


def _data_config(folder: Path, config: PretrainedConfig) -> dict:
    """timm's data config (input size, mean/std, interpolation) of the folder's eval transform.

    ``crop_pct=1.0`` and ``crop_mode="squash"`` make timm's eval transform a plain resize to size x size, as our
    eval transform (``data.build_view_transform("eval", ...)``) and the folder's ViTImageProcessor.
    """
    size, mean, std, interpolation = config.image_size, None, None, "bilinear"
    if (folder / "preprocessor_config.json").is_file():
        processor = json.loads((folder / "preprocessor_config.json").read_text())
        mean, std = processor.get("image_mean"), processor.get("image_std")
        resize = processor.get("size") or {}
        if isinstance(resize, dict) and resize.get("height") and resize.get("height") == resize.get("width"):
            size = int(resize["height"])
        interpolation = _RESAMPLE_TO_INTERPOLATION.get(processor.get("resample", 2), "bilinear")
    if mean is None or std is None:
        raise ExportError(f"{folder} has no preprocessor_config.json with image_mean/image_std; cannot write the "
                          "eval transform of the timm export.")
    return {"input_size": (config.num_channels, size, size), "mean": tuple(mean), "std": tuple(std),
            "interpolation": interpolation, "crop_pct": 1.0, "crop_mode": "squash"}


def _load_encoder(folder: Path):
    import hf_contrastive  # noqa: F401  (registers our model types: the installed classes load, no remote code)

    encoder, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    if info["missing_keys"]:
        raise ExportError(f"{folder}: the encoder weights are incomplete (missing {sorted(info['missing_keys'])[:5]}).")
    return encoder.eval()


@torch.no_grad()
def _check_same_features(encoder, timm_model, config: PretrainedConfig, size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, config.num_channels, size, size, generator=generator)
    ours = encoder(pixel_values=pixels).pooler_output
    theirs = timm_model(pixels)
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4):
        raise ExportError(
            f"timm.create_model({config.backbone!r}, **{_timm_model_args(config)}) does not reproduce this encoder's "
            "features, so it cannot be exported as a native timm model; use --format transformers."
        )


def export_timm(folder: str | Path, output_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write the encoder of the Hub folder ``folder`` (local or Hub id) as a native timm model in ``output_dir``.

    The folder holds ``model.safetensors`` (the timm backbone's state dict, ``num_classes=0``: the model outputs its
    pooled features), ``config.json`` (``architecture``, ``num_features``, ``model_args``, ``pretrained_cfg`` with
    the eval transform) and README.md (the original card with ``library_name: timm``). Raises `ExportError` when the
    backbone cannot be rebuilt by timm (see :func:`can_export_timm`).
    """
    folder = resolve_model_folder(folder)
    import hf_contrastive  # noqa: F401  (AutoConfig must know our model types)

    config = AutoConfig.from_pretrained(folder)
    possible, reason = can_export_timm(config)
    if not possible:
        raise ExportError(f"--format timm is not possible: {reason}")
    data_config = _data_config(folder, config)
    encoder = _load_encoder(folder)
    model_args = _timm_model_args(config)
    timm_model = timm.create_model(config.backbone, pretrained=False, num_classes=0, **model_args)
    # SplitBatchNorm2d (bn_splits) keeps plain BatchNorm2d state names: the backbone's state dict is timm's.
    timm_model.load_state_dict(encoder.backbone.state_dict(), strict=True)
    timm_model.eval()
    _check_same_features(encoder, timm_model, config, data_config["input_size"][-1])

    output_dir = _prepare_output(output_dir, folder, overwrite)
    timm.models.save_for_hf(timm_model, str(output_dir), safe_serialization=True, data_config=data_config,
                            model_args=model_args)
    config_path = output_dir / "config.json"
    hf_config = json.loads(config_path.read_text())
    # timm 1.0.31 records num_classes in model_args too; transformers' TimmWrapperModel passes num_classes itself
    # and fails with "got multiple values for keyword argument 'num_classes'". The root num_classes (0) stays.
    hf_config.get("model_args", {}).pop("num_classes", None)
    if not hf_config.get("model_args"):
        hf_config.pop("model_args", None)
    pretrained_cfg = hf_config["pretrained_cfg"]
    for key in _SOURCE_CFG_KEYS:
        pretrained_cfg.pop(key, None)
    pretrained_cfg.update(crop_pct=1.0, crop_mode="squash")
    config_path.write_text(json.dumps(hf_config, indent=2) + "\n")
    (output_dir / "model.safetensors").chmod(0o644)  # safetensors writes 0600
    _write_timm_card(folder, output_dir, config, encoder.config.hidden_size)
    return output_dir


def _write_timm_card(folder: Path, output_dir: Path, config: PretrainedConfig, num_features: int) -> None:
    source = folder / "README.md"
    if source.is_file():
        card = ModelCard.load(source)
    else:
        card = ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n\n# {config.model_type} {config.backbone}\n")
    card.data.library_name = "timm"
    card.data.pipeline_tag = card.data.pipeline_tag or "image-feature-extraction"
    tags = list(card.data.tags or [])
    card.data.tags = tags + ["timm"] if "timm" not in tags else tags
    name = card.data.model_name if isinstance(card.data.model_name, str) and "/" in card.data.model_name else None
    repo = name or "your-name/this-repo"
    note = (
        "\n## Load with timm\n\n"
        f"This folder is the encoder-only, native timm export of the model described below (`{config.backbone}`, "
        f"`num_classes=0`: the output is the {num_features}-d pooled feature). No `trust_remote_code` is needed; the "
        "eval transform is `pretrained_cfg` in config.json. The pretraining state (teacher, heads, queue) and the "
        "remote-code snippets further down belong to the original transformers folder, not to this export.\n\n"
        "```python\n"
        "import timm\n"
        f"model = timm.create_model(\"hf-hub:{repo}\", pretrained=True).eval()\n"
        "data_config = timm.data.resolve_data_config(model=model)\n"
        "transform = timm.data.create_transform(**data_config)\n"
        f"features = model(transform(image).unsqueeze(0))  # [1, {num_features}]\n\n"
        "# or transformers: a TimmWrapperModel, features in .pooler_output\n"
        "from transformers import AutoModel, pipeline\n"
        f"encoder = AutoModel.from_pretrained(\"{repo}\")\n"
        f"extractor = pipeline(\"image-feature-extraction\", model=\"{repo}\")\n"
        "```\n"
    )
    text = card.text.lstrip("\n")
    if text.startswith("# "):
        title, _, rest = text.partition("\n")
        card.text = f"\n{title}\n{note}\n{rest.lstrip(chr(10))}"
    else:
        card.text = f"\n{note}\n{text}"
    card.save(output_dir / "README.md")


# ----------------------------------------------------------------------------- transformers


def export_transformers(folder: str | Path, output_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Copy the Hub folder (weights, config.json with ``auto_map``, model code, preprocessor_config.json, README.md)
    to ``output_dir`` unchanged: it already is the transformers export (remote code, every Auto class)."""
    folder = resolve_model_folder(folder)
    output_dir = _prepare_output(output_dir, folder, overwrite)
    shutil.copytree(folder, output_dir, ignore=_IGNORED, dirs_exist_ok=True)
    return output_dir


def export(
    folder: str | Path, output_dir: str | Path, *, format: str = "transformers", overwrite: bool = False
) -> Path:
    """`export_timm` or `export_transformers`, by ``format``."""
    if format == "timm":
        return export_timm(folder, output_dir, overwrite=overwrite)
    if format == "transformers":
        return export_transformers(folder, output_dir, overwrite=overwrite)
    raise ExportError(f"Unknown export format {format!r}; choose one of {list(FORMATS)}.")


__all__ = ["ExportError", "can_export_timm", "export", "export_timm", "export_transformers", "resolve_model_folder"]
