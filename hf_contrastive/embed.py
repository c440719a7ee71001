"""Embed images with a trained encoder and write the pooled features to a parquet file (for retrieval, kNN, ...).

The encoder is any folder (or Hub id) that ``AutoModel`` + ``AutoImageProcessor`` load and whose output has a
``pooler_output``: an hf_contrastive Hub folder (installed classes, no remote code) or its native timm export
(``TimmWrapperModel``). The features are written raw, exactly ``pooler_output`` (not L2-normalised): normalise them
for cosine retrieval.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from .data import decode_image, load_image_dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
FEATURES_DESCRIPTION = "raw pooled features (the encoder's pooler_output), not L2-normalised"


def load_encoder(model: str | Path, *, device: str | torch.device = "cpu", trust_remote_code: bool = False):
    """``(encoder, image_processor)`` for ``model`` (folder or Hub id), the encoder in eval mode on ``device``.

    hf_contrastive's model types and transformers' own (``timm_wrapper``) load with the installed classes. A folder
    of another library that only has remote code (``auto_map``) needs ``trust_remote_code=True``.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    import hf_contrastive  # noqa: F401  (registers our model types with the Auto classes)

    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "training_state.json").is_file() or not (path / "config.json").is_file():
            raise ValueError(
                f"{path} is not a Hub model folder (no config.json); pass the folder written at the end of training "
                "(OUTPUT_DIR/model) or its export, not a training checkpoint."
            )
        config_dict = json.loads((path / "config.json").read_text())
        if "auto_map" in config_dict and not trust_remote_code:
            # Our folders have an auto_map too, but their model_type is registered: the installed code is used.
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING

            if config_dict.get("model_type") not in CONFIG_MAPPING:
                raise ValueError(
                    f"{path} needs its own model code (model_type {config_dict.get('model_type')!r} is not known to "
                    "transformers or hf_contrastive); pass --trust_remote_code if you trust that code."
                )
    config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    encoder = AutoModel.from_pretrained(model, config=config, trust_remote_code=trust_remote_code)
    processor = AutoImageProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
    return encoder.to(device).eval(), processor


def list_image_files(paths: Sequence[str | Path]) -> list[Path]:
    """The image files named by ``paths``: files as given, folders searched recursively for image extensions
    (sorted). Raises ``FileNotFoundError`` for a missing path and ``ValueError`` when nothing is found."""
    files: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ValueError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) under {path}.")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"Image path {item} does not exist.")
    if not files:
        raise ValueError("No images given: pass image files or folders, or --dataset_name.")
    return files


class _Items(torch.utils.data.Dataset):
    """``(id, undecoded image)`` pairs; decoding and preprocessing happen per batch in `_Collate`."""

    def __init__(self, ids: list[str], images: Any, column: str | None = None, labels: list[int] | None = None):
        self.ids, self.images, self.column, self.labels = ids, images, column, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.column is not None:  # a datasets row of Image(decode=False): {"bytes", "path"}
            image = image[self.column]
        label = self.labels[index] if self.labels is not None else None
        return self.ids[index], image, index, label


class _Collate:
    def __init__(self, processor, column: str):
        self.processor, self.column = processor, column

    def __call__(self, batch):
        ids, values, indices, labels = zip(*batch, strict=True)
        images = []
        for value, index in zip(values, indices, strict=True):
            if isinstance(value, Path):
                images.append(_open_image_file(value))
            else:
                images.append(decode_image(value, index=index, column=self.column))
        pixels = self.processor(images, return_tensors="pt")["pixel_values"]
        return list(ids), pixels, list(labels)


def _open_image_file(path: Path) -> PIL.Image.Image:
    try:
        return decode_image(PIL.Image.open(path))
    except (OSError, ValueError) as error:
        cause = error.__cause__ or error
        raise ValueError(
            f"Could not decode the image file {path} ({type(cause).__name__}: {cause}). Remove it or re-save it as "
            "PNG/JPEG."
        ) from error


def embed_images(
    model: str | Path,
    images: Sequence[str | Path] | None = None,
    *,
    output: str | Path = "embeddings.parquet",
    dataset_name: str | None = None,
    split: str = "test",
    image_column: str | None = None,
    max_samples: int | None = None,
    batch_size: int = 256,
    device: str | None = None,
    num_workers: int = 0,
    trust_remote_code: bool = False,
    progress: bool = True,
) -> Path:
    """Write the pooled features of ``images`` (files or folders) or of a dataset split to the parquet ``output``.

    Columns: ``id`` (string: the image file path as given, or ``"<split>/<row index>"`` for a dataset),
    ``embedding`` (``list<float32>``, the encoder's raw ``pooler_output``, not L2-normalised) and, for a dataset
    with labels, ``label``. The file's schema metadata names the model and the feature dimension. ``device``
    defaults to cuda when available. Returns ``output``.
    """
    if (images is None or len(images) == 0) == (dataset_name is None):
        raise ValueError("Pass image files/folders or --dataset_name (exactly one of the two).")
    if batch_size <= 0:
        raise ValueError(f"--batch_size must be positive, got {batch_size}.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    if dataset_name is not None:
        # The requested split is both "train" and "eval" here, so no split is held out or required besides it.
        splits = load_image_dataset(dataset_name, image_column=image_column, train_split=split, eval_split=split,
                                    max_eval_samples=max_samples)
        rows = splits.eval.select_columns([splits.image_column])
        column = splits.image_column
        ids = [f"{split}/{i}" for i in range(len(rows))]
        labels = [int(v) for v in splits.eval[splits.label_column]] if splits.label_column else None
        items = _Items(ids, rows, column=column, labels=labels)
    else:
        files = list_image_files(images)
        if max_samples is not None:
            files = files[:max_samples]
        column = "image"
        items = _Items([str(f) for f in files], files)
        labels = None

    encoder, processor = load_encoder(model, device=device, trust_remote_code=trust_remote_code)
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=_Collate(processor, column))
    output = Path(output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    writer: pq.ParquetWriter | None = None
    try:
        with tqdm(total=len(items), unit="img", desc="embed", disable=not progress) as bar, torch.inference_mode():
            for batch_ids, pixels, batch_labels in loader:
                pooled = encoder(pixel_values=pixels.to(device)).pooler_output
                if pooled is None:
                    raise ValueError(f"{model}: the encoder returned no pooler_output; cannot embed with it.")
                features = pooled.float().reshape(pooled.shape[0], -1).cpu().numpy()
                table = _table(batch_ids, features, batch_labels if labels is not None else None)
                if writer is None:
                    metadata = {"hf_contrastive.model": str(model), "hf_contrastive.features": FEATURES_DESCRIPTION,
                                "hf_contrastive.dim": str(features.shape[1])}
                    table = table.replace_schema_metadata(metadata)
                    writer = pq.ParquetWriter(partial, table.schema)
                writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
                bar.update(len(batch_ids))
    except BaseException:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, output)
    return output


def _table(ids: list[str], features: np.ndarray, labels: list[int] | None) -> pa.Table:
    count, dim = features.shape
    offsets = pa.array(np.arange(0, (count + 1) * dim, dim, dtype=np.int32))
    embedding = pa.ListArray.from_arrays(offsets, pa.array(features.astype(np.float32, copy=False).ravel()))
    columns = {"id": pa.array(ids, type=pa.string()), "embedding": embedding}
    if labels is not None:
        columns["label"] = pa.array(labels, type=pa.int64())
    return pa.table(columns)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(ids, features [N, D] float32)`` from a file written by :func:`embed_images`."""
    table = pq.read_table(path, columns=["id", "embedding"])
    embedding = table.column("embedding").combine_chunks()
    features = embedding.flatten().to_numpy(zero_copy_only=False).reshape(len(table), -1).astype(np.float32)
    return table.column("id").to_pylist(), features


__all__ = ["FEATURES_DESCRIPTION", "IMAGE_EXTENSIONS", "embed_images", "list_image_files", "load_encoder",
           "read_embeddings"]
