"""Image datasets, multi-view augmentations and collators for contrastive pretraining.

Three concerns live here:

* :func:`load_image_dataset` turns a local parquet folder, a local image folder or a
  Hub dataset id into train/eval :class:`datasets.Dataset` splits with the image and
  label columns detected, and the image column left undecoded
  (``datasets.Image(decode=False)``) so that decoding happens in :func:`decode_image`,
  which always yields RGB and reports broken rows by index.
* :func:`build_view_transform` builds the *strong*, *weak* and *eval* views of the
  shared protocol (``docs/methods.md`` section 0) with ``torchvision.transforms.v2``.
* :class:`MultiViewDataset` applies several view transforms per image with
  randomness that is a pure function of ``(seed, epoch, index)``, so a resumed run
  sees exactly the same views whatever the number of dataloader workers.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from torchvision.transforms import v2

logger = logging.getLogger(__name__)

IMAGE_COLUMN_CANDIDATES = ("img", "image")
LABEL_COLUMN_CANDIDATES = ("label", "fine_label", "labels")
EVAL_SPLIT_CANDIDATES = ("test", "validation", "valid", "val")
VIEW_KINDS = ("strong", "weak", "local", "byol_blur", "byol_solarize", "eval")

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]
#: The real CIFAR-10 sample shipped as package data (2,000 train / 500 test images): the default dataset of the
#: training and evaluation recipes, so they run from a wheel as from a checkout.
SAMPLE_DATASET = Path(__file__).resolve().parent / "sample_data" / "cifar10_sample"

#: Per-dataset (mean, std) used by the reference code (methods.md section 0);
#: "imagenet" is timm's IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD.
DATASET_STATS: dict[str, Stats] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "stl10": ((0.4408, 0.4279, 0.3867), (0.2682, 0.2610, 0.2686)),
    "tiny-imagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# Split keywords recognised in parquet file/folder names and the split they map to,
# as `datasets` does for data files (datasets.data_files.KEYWORDS_IN_PATH).
_SPLIT_KEYWORDS = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test", "eval": "test", "evaluation": "test",
}
_PATH_TOKEN_SEPARATORS = re.compile(r"[-._ 0-9]+")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


@dataclass
class ImageDatasetSplits:
    """Train and eval splits of an image dataset plus what was detected about it.

    ``train`` and ``eval`` keep the image column as ``datasets.Image(decode=False)``
    (dicts with ``bytes``/``path``); decode rows with :func:`decode_image`.
    ``label_column`` is None when the dataset has no labels (kNN/linear eval skipped).
    """

    train: datasets.Dataset
    eval: datasets.Dataset
    image_column: str
    label_column: str | None
    num_classes: int | None
    class_names: list[str] | None
    dataset_name: str
    eval_split_name: str = "test"
    # Streaming (load_streaming_image_dataset): the train split as a stream, and its row count when known. ``train``
    # then holds only the first rows, materialised, as the kNN monitor's bank.
    train_stream: datasets.IterableDataset | None = None
    train_rows: int | None = None


def _split_of(relative_path: Path) -> str | None:
    """Return the split named by a keyword in a data file's path (folders or file name), if any."""
    parts = [*relative_path.parent.parts, relative_path.name.split(".")[0]]
    for part in parts:
        for token in _PATH_TOKEN_SEPARATORS.split(part.lower()):
            if token in _SPLIT_KEYWORDS:
                return _SPLIT_KEYWORDS[token]
    return None


def _load_parquet_folder(folder: Path, files: list[Path], streaming: bool = False) -> datasets.DatasetDict:
    """Load parquet files below ``folder``, inferring splits from their names.

    ``train-*.parquet`` / ``test-*.parquet`` / ``validation-*.parquet`` (or folders of
    those names) become the corresponding splits; files naming no split are all
    ``train`` when no file names one, and are ignored (with a warning) otherwise.
    """
    by_split: dict[str, list[str]] = {}
    unassigned: list[str] = []
    for file in files:
        split = _split_of(file.relative_to(folder))
        (by_split.setdefault(split, []) if split else unassigned).append(str(file))
    if not by_split:
        by_split = {"train": unassigned}
    elif unassigned:
        logger.warning(
            "Ignoring %d parquet file(s) under %s whose names contain no split keyword (%s), e.g. %s.",
            len(unassigned), folder, ", ".join(sorted(set(_SPLIT_KEYWORDS))), unassigned[0],
        )
    return datasets.load_dataset("parquet", data_files=by_split, streaming=streaming)


def _load_dataset_dict(name_or_path: str, streaming: bool = False) -> datasets.DatasetDict:
    """Load a local parquet folder, a local image folder or a Hub dataset as a DatasetDict (an
    IterableDatasetDict with ``streaming=True``: rows are read as they are iterated, nothing is downloaded first)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        parquet_files = sorted(path.rglob("*.parquet"))
        if parquet_files:
            return _load_parquet_folder(path, parquet_files, streaming)
        return datasets.load_dataset("imagefolder", data_dir=str(path), streaming=streaming)
    if path.exists():
        raise ValueError(f"{name_or_path!r} is a file; pass the folder that contains the parquet files or images.")
    if not _HUB_ID.match(name_or_path):
        raise FileNotFoundError(
            f"{name_or_path!r} is neither an existing local folder nor a Hugging Face Hub dataset id "
            "(like 'uoft-cs/cifar10'). Check the path."
        )
    dataset = datasets.load_dataset(name_or_path, streaming=streaming)
    if not isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(
            f"Hub dataset {name_or_path!r} did not load as a dict of splits; got {type(dataset).__name__}."
        )
    return dataset


def _detect_image_column(features: datasets.Features, explicit: str | None) -> str:
    """Pick the image column: explicit name, else a ``datasets.Image`` feature, else a known name."""
    columns = list(features)
    if explicit is not None:
        if explicit not in features:
            raise ValueError(f"Image column {explicit!r} not found; the dataset has columns {columns}.")
        return explicit
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            return name
    for name in IMAGE_COLUMN_CANDIDATES:
        if name in features:
            return name
    raise ValueError(
        f"No image column found among the dataset's columns {columns} (looked for a datasets.Image "
        f"feature or one of {list(IMAGE_COLUMN_CANDIDATES)}); pass --image_column NAME."
    )


def _detect_label_column(features: datasets.Features, explicit: str | None) -> str | None:
    """Pick the label column: explicit name, else a ``ClassLabel`` (known names first), else a known name."""
    columns = list(features)
    if explicit is not None:
        if explicit not in features:
            raise ValueError(f"Label column {explicit!r} not found; the dataset has columns {columns}.")
        name = explicit
    else:
        class_labels = [n for n, f in features.items() if isinstance(f, datasets.ClassLabel)]
        preferred = [n for n in LABEL_COLUMN_CANDIDATES if n in class_labels]
        fallback = [n for n in LABEL_COLUMN_CANDIDATES if n in features]
        candidates = preferred or class_labels or fallback
        if not candidates:
            return None
        name = candidates[0]
    feature = features[name]
    if not (isinstance(feature, datasets.ClassLabel)
            or (isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")))):
        raise ValueError(
            f"Label column {name!r} has type {feature}; integer class ids are needed. Encode it first "
            f"(e.g. dataset.class_encode_column({name!r})) or pass --label_column for another column."
        )
    return name


def _classes(features: datasets.Features, label_column: str | None,
             *splits: datasets.Dataset) -> tuple[int | None, list[str] | None]:
    """Number of classes and their names: from a ClassLabel, else 1 + the largest label in ``splits``."""
    if label_column is None:
        return None, None
    feature = features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return feature.num_classes, list(feature.names)
    labels = [label for split in splits for label in split[label_column]]
    return (max(labels) + 1 if labels else None), None


def load_image_dataset(
    name_or_path: str,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    train_split: str = "train",
    eval_split: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
) -> ImageDatasetSplits:
    """Load an image classification dataset as train/eval splits with detected columns.

    ``name_or_path`` is a local folder with parquet files anywhere below it (splits
    inferred from names such as ``train-*.parquet`` / ``test-*.parquet``), a local
    image folder (``imagefolder``: class sub-folders become labels) or a Hub dataset
    id. The eval split is ``eval_split``, else the first of
    :data:`EVAL_SPLIT_CANDIDATES` present, else a seeded 10% hold-out of train.
    ``max_*_samples`` keep the first N rows. ``dataset_name`` is ``name_or_path``.
    """
    dataset_dict = _load_dataset_dict(name_or_path)
    splits = list(dataset_dict)
    if train_split not in dataset_dict:
        raise ValueError(f"Train split {train_split!r} not found; the dataset has splits {splits}. Pass --train_split.")
    train = dataset_dict[train_split]
    image_column = _detect_image_column(train.features, image_column)
    label_column = _detect_label_column(train.features, label_column)

    if eval_split is not None:
        if eval_split not in dataset_dict:
            raise ValueError(f"Eval split {eval_split!r} not found; the dataset has splits {splits}.")
        eval_ds = dataset_dict[eval_split]
        eval_split_name = eval_split
    else:
        present = [s for s in EVAL_SPLIT_CANDIDATES if s in dataset_dict]
        if present:
            eval_ds = dataset_dict[present[0]]
            eval_split_name = present[0]
        else:
            logger.warning(
                "No eval split among %s (splits: %s); holding out 10%% of %r as eval (seed %d).",
                list(EVAL_SPLIT_CANDIDATES), splits, train_split, seed,
            )
            if len(train) < 2:  # nothing would be left to train on (or to hold out)
                raise ValueError(
                    f"{name_or_path!r}: the {train_split!r} split has {len(train)} readable image(s), too few to hold "
                    "out 10% as the eval split. Add images (check that they open), or pass --eval_split with a split "
                    "of its own."
                )
            held_out = train.train_test_split(test_size=0.1, seed=seed)
            train, eval_ds = held_out["train"], held_out["test"]
            eval_split_name = f"{train_split} (10% held out)"
    missing = [c for c in (image_column, label_column) if c is not None and c not in eval_ds.column_names]
    if missing:
        raise ValueError(f"The eval split lacks column(s) {missing}; it has {eval_ds.column_names}.")

    if max_train_samples is not None:
        train = train.select(range(min(max_train_samples, len(train))))
    if max_eval_samples is not None:
        eval_ds = eval_ds.select(range(min(max_eval_samples, len(eval_ds))))
    train = train.cast_column(image_column, datasets.Image(decode=False))
    eval_ds = eval_ds.cast_column(image_column, datasets.Image(decode=False))

    num_classes, class_names = _classes(train.features, label_column, train, eval_ds)
    return ImageDatasetSplits(
        train=train, eval=eval_ds, image_column=image_column, label_column=label_column,
        num_classes=num_classes, class_names=class_names, dataset_name=name_or_path,
        eval_split_name=eval_split_name,
    )


def _count_rows(name_or_path: str, split: str, stream: datasets.IterableDataset) -> int | None:
    """Rows of a streamed split without reading it: parquet footers for a local folder, else the dataset info."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if files:
            import pyarrow.parquet as pq

            named = [f for f in files if _split_of(f.relative_to(path)) == split]
            if not named and split == "train" and not any(_split_of(f.relative_to(path)) for f in files):
                named = files
            return sum(pq.ParquetFile(f).metadata.num_rows for f in named) if named else None
    splits = stream.info.splits or {}
    return splits[split].num_examples if split in splits else None


def _materialise(stream: datasets.IterableDataset, rows: int) -> datasets.Dataset:
    """The first ``rows`` rows of a stream as an in-memory Dataset (same features)."""
    return datasets.Dataset.from_list(list(stream.take(rows)), features=stream.features)


def load_streaming_image_dataset(
    name_or_path: str,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    train_split: str = "train",
    eval_split: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    bank_samples: int = 10_000,
) -> ImageDatasetSplits:
    """Like :func:`load_image_dataset`, for data that does not fit on local disk: the train split is a
    ``datasets.IterableDataset`` read as training goes (``train_stream``; ``max_train_samples`` keeps its first N
    rows). The kNN monitor still needs random access, so ``train`` holds the first ``bank_samples`` train rows and
    ``eval`` the first ``max_eval_samples`` (default 10,000) rows of the eval split, materialised in memory.
    """
    streams = _load_dataset_dict(name_or_path, streaming=True)
    names = list(streams)
    if train_split not in streams:
        raise ValueError(f"Train split {train_split!r} not found; the dataset has splits {names}. Pass --train_split.")
    stream = streams[train_split]
    if stream.features is None:
        raise ValueError(f"{name_or_path!r} does not declare its features when streamed; pass a dataset with a "
                         "datasets schema (parquet written by datasets, or a Hub dataset with dataset_info).")
    image_column = _detect_image_column(stream.features, image_column)
    label_column = _detect_label_column(stream.features, label_column)
    eval_name = eval_split or next((s for s in EVAL_SPLIT_CANDIDATES if s in streams), None)
    if eval_name is None or eval_name not in streams:
        raise ValueError(f"Streaming needs an eval split (one of {list(EVAL_SPLIT_CANDIDATES)} or --eval_split); "
                         f"the dataset has splits {names}.")
    rows = _count_rows(name_or_path, train_split, stream)
    if max_train_samples is not None:
        stream = stream.take(max_train_samples)
        rows = min(rows, max_train_samples) if rows is not None else max_train_samples
    stream = stream.cast_column(image_column, datasets.Image(decode=False))
    eval_stream = streams[eval_name].cast_column(image_column, datasets.Image(decode=False))
    bank = _materialise(stream, min(bank_samples, rows) if rows is not None else bank_samples)
    eval_ds = _materialise(eval_stream, max_eval_samples or 10_000)
    num_classes, class_names = _classes(stream.features, label_column, bank, eval_ds)
    return ImageDatasetSplits(
        train=bank, eval=eval_ds, image_column=image_column, label_column=label_column, num_classes=num_classes,
        class_names=class_names, dataset_name=name_or_path, eval_split_name=eval_name, train_stream=stream,
        train_rows=rows,
    )


def _to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Convert any PIL mode to RGB.

    Images with transparency (RGBA, LA, P with a transparency entry) are composited
    on white so that transparent pixels do not turn into arbitrary colours; 16-bit
    integer grayscale ("I;16*", "I") is scaled to 8 bits instead of being clipped;
    every other mode (L, P, CMYK, ...) uses PIL's conversion.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "I" or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64).clip(0, 65535) / 257.0
        return PIL.Image.fromarray(values.round().astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


class UndecodableImageError(ValueError):
    """An image of the dataset that PIL cannot decode; the message names its row and how to drop it."""


def decode_image(value: Any, *, index: int | None = None, column: str = "image") -> PIL.Image.Image:
    """Decode one ``Image(decode=False)`` cell (``{"bytes", "path"}``) or a PIL image to RGB.

    Grayscale, palette, 16-bit and alpha images are converted to RGB (see ``_to_rgb``).
    An undecodable image raises `UndecodableImageError` (a ``ValueError``) naming the row and column, so the user
    can drop or re-encode that row instead of getting a bare PIL error mid-epoch.
    """
    where = f"row {index} of column {column!r}" if index is not None else f"an image of column {column!r}"
    try:
        if isinstance(value, PIL.Image.Image):
            image = value
        elif isinstance(value, dict) and value.get("bytes") is not None:
            image = PIL.Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, dict) and value.get("path"):
            image = PIL.Image.open(value["path"])
        else:
            raise ValueError(f"expected a PIL image or a dict with 'bytes' or 'path', got {type(value).__name__}")
        image.load()
        return _to_rgb(image)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        fix = (f"dataset.filter(lambda _, i: i != {index}, with_indices=True)" if index is not None
               else "dataset.filter(...)")
        raise UndecodableImageError(
            f"Could not decode {where} ({type(error).__name__}: {error}). "
            f"Remove or re-encode this row, e.g. with {fix}."
        ) from error


def drop_undecodable_images(
    dataset: datasets.Dataset, image_column: str, num_proc: int | None = None
) -> tuple[datasets.Dataset, list[int]]:
    """Decode every image once and drop the rows that fail (``--skip_bad_images``).

    Returns the filtered dataset and the indices (in the input) of the dropped rows. Done once before training so
    batches keep their size and the skipped rows are known exactly; ``datasets`` caches the check for files on disk.
    """

    def decodable(values: list[Any]) -> dict[str, list[bool]]:
        flags = []
        for value in values:
            try:
                decode_image(value)
                flags.append(True)
            except ValueError:
                flags.append(False)
        return {"_decodable": flags}

    flags = dataset.map(decodable, input_columns=image_column, batched=True, remove_columns=dataset.column_names,
                        num_proc=num_proc, desc="Checking images")["_decodable"]
    bad = [index for index, ok in enumerate(flags) if not ok]
    if bad:
        dataset = dataset.select([index for index, ok in enumerate(flags) if ok])
    return dataset, bad


def detect_dataset_stats(dataset_name: str, dataset_stats: str | None = None) -> str:
    """Which (mean, std) normalisation of :data:`DATASET_STATS` to use: ``dataset_stats`` if given, else guessed
    from the dataset name (cifar10, cifar100, stl10, tiny-imagenet), else ``imagenet``."""
    if dataset_stats:
        if dataset_stats not in DATASET_STATS:
            raise ValueError(f"--dataset_stats must be one of {sorted(DATASET_STATS)}, got {dataset_stats!r}.")
        return dataset_stats
    name = dataset_name.lower().replace("_", "").replace("-", "")
    for key in ("cifar100", "cifar10", "stl10", "tinyimagenet"):
        if key in name:
            return "tiny-imagenet" if key == "tinyimagenet" else key
    return "imagenet"


@dataclass(frozen=True)
class Normalisation:
    """The (mean, std) a run normalises its images with, and where it came from.

    ``source`` is ``"image_mean"`` (--image_mean/--image_std), ``"dataset_stats"`` (--dataset_stats), ``"guessed"``
    (a known dataset's name in --dataset_name) or ``"fallback"`` (ImageNet's, for a name that matches none).
    ``dataset_stats`` is the :data:`DATASET_STATS` key in every case (the model card maps it to a Hub dataset id)."""

    dataset_stats: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    dataset_name: str

    @property
    def message(self) -> str:
        """One line for the start of a run: the values, why they were chosen and, unless given, how to change them."""
        values = f"mean {_rounded(self.mean)}, std {_rounded(self.std)}"
        if self.source == "image_mean":
            return f"Normalisation: {values} (--image_mean/--image_std)."
        if self.source == "dataset_stats":
            return f"Normalisation: {self.dataset_stats} {values} (--dataset_stats {self.dataset_stats})."
        # A local folder is named by its last part (the sample's full path is inside site-packages).
        name = Path(self.dataset_name).name if Path(self.dataset_name).exists() else self.dataset_name
        others = (f"--dataset_stats ({', '.join(sorted(DATASET_STATS))}) or --image_mean R G B --image_std R G B "
                  "(your images' per-channel mean and std, pixels in [0, 1])")
        if self.source == "guessed":
            return (f"Normalisation: {self.dataset_stats} {values}, guessed from the dataset name {name!r}. "
                    f"Other values: {others}.")
        known = ", ".join(key for key in DATASET_STATS if key != "imagenet")
        return (f"Normalisation: ImageNet {values}, the default for a dataset whose name ({name!r}) contains none of "
                f"{known}. If your images differ, pass {others}.")


def _rounded(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:.4g}" for value in values) + ")"


def resolve_normalisation(
    dataset_name: str,
    dataset_stats: str | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> Normalisation:
    """The normalisation of a run: ``image_mean``/``image_std`` when given, else the :data:`DATASET_STATS` entry
    named by ``dataset_stats`` or guessed from ``dataset_name`` (see :func:`detect_dataset_stats`)."""
    key = detect_dataset_stats(dataset_name, dataset_stats)
    if image_mean is not None and image_std is not None:
        return Normalisation(key, tuple(image_mean), tuple(image_std), "image_mean", dataset_name)
    if dataset_stats:
        source = "dataset_stats"
    else:
        source = "fallback" if key == "imagenet" else "guessed"
    mean, std = DATASET_STATS[key]
    return Normalisation(key, mean, std, source, dataset_name)


# The recipes' blur: sigma ~ U(0.1, 2.0), as the reference code's PIL GaussianBlur(radius=sigma).
BLUR_SIGMA = (0.1, 2.0)


def blur_kernel_size(image_size: int, max_sigma: float = BLUR_SIGMA[1]) -> int:
    """Odd Gaussian-blur kernel that holds +-3 sigma of the widest blur (13 taps for sigma 2), so every sigma blurs
    as PIL's GaussianBlur(radius=sigma) does (the reference code's blur: a full Gaussian); at least the SimCLR/MoCo
    convention of 10% of the side (23 at 224 px). Smaller only where reflect padding needs it (sides under 7 px).

    The kernel was 10% of the side before, 3 taps at 32 px: every sigma above about 0.8 then blurred alike (a point
    spread over 0.80 px at sigma 2, against PIL's 2.0)."""
    size = max(2 * math.ceil(3 * max_sigma) + 1, round(0.1 * image_size))
    size += 1 - size % 2
    while size > 3 and size // 2 >= image_size:  # reflect padding needs pad < side
        size -= 2
    return size


# The photometric options of every strongly augmented view: ColorJitter(*jitter) x jitter_strength with p=jitter_p,
# grayscale, Gaussian blur, solarize (PIL's ImageOps.solarize: pixels >= 128 inverted); crops resized bilinearly.
_STRONG = {"crop_scale": (0.2, 1.0), "crop_interpolation": "bilinear", "flip_p": 0.5, "jitter": (0.4, 0.4, 0.4, 0.1),
           "jitter_strength": 1.0, "jitter_p": 0.8, "grayscale_p": 0.2, "blur_p": 0.5, "solarize_p": 0.0}
# BYOL's asymmetric pair (arXiv 2006.07733, table 6), as PatchMix's official module/augmentation.py uses it:
# saturation 0.2, bicubic crops; the first view always blurred, the second rarely blurred and sometimes solarized.
_BYOL_PAIR = {**_STRONG, "crop_interpolation": "bicubic", "jitter": (0.4, 0.4, 0.2, 0.1)}

_VIEW_DEFAULTS: dict[str, dict[str, Any]] = {
    "strong": dict(_STRONG),
    "weak": {"crop_scale": (0.2, 1.0), "crop_interpolation": "bilinear", "flip_p": 0.9},
    # Multi-crop local view (SwAV/DINO): a small crop of a small part of the image, strongly augmented.
    "local": {**_STRONG, "size": None, "crop_scale": (0.05, 0.4)},
    "byol_blur": {**_BYOL_PAIR, "blur_p": 1.0},
    "byol_solarize": {**_BYOL_PAIR, "blur_p": 0.1, "solarize_p": 0.2},
    "eval": {},
}
PHOTOMETRIC_KINDS = ("strong", "local", "byol_blur", "byol_solarize")
#: Resampling of RandomResizedCrop by name (view option `crop_interpolation`, linear probe protocols).
INTERPOLATIONS = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}


def view_options(kind: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The options of a ``kind`` view: :data:`_VIEW_DEFAULTS` updated by ``overrides`` (unknown ones raise)."""
    if kind not in _VIEW_DEFAULTS:
        raise ValueError(f"Unknown view kind {kind!r}; valid kinds: {list(VIEW_KINDS)}.")
    unknown = sorted(set(overrides) - set(_VIEW_DEFAULTS[kind]))
    if unknown:
        raise ValueError(
            f"Unknown override(s) {unknown} for the {kind!r} view; "
            f"valid ones: {sorted(_VIEW_DEFAULTS[kind]) or 'none'}."
        )
    options = {**_VIEW_DEFAULTS[kind], **overrides}
    if "crop_interpolation" in options and options["crop_interpolation"] not in INTERPOLATIONS:
        raise ValueError(f"crop_interpolation of the {kind!r} view must be one of {list(INTERPOLATIONS)}, "
                         f"got {options['crop_interpolation']!r}.")
    if "jitter" in options and not (isinstance(options["jitter"], list | tuple) and len(options["jitter"]) == 4):
        raise ValueError(f"jitter of the {kind!r} view is (brightness, contrast, saturation, hue), got "
                         f"{options['jitter']!r}.")
    return options


def jitter_strengths(opts: dict[str, Any]) -> tuple[float, float, float, float]:
    """ColorJitter's (brightness, contrast, saturation, hue), each scaled by ``jitter_strength``."""
    return tuple(float(value) * opts["jitter_strength"] for value in opts["jitter"])


def view_crop_size(kind: str, image_size: int, opts: dict[str, Any]) -> int:
    """Side of a view's output: ``image_size``, or the local view's ``size`` (default ``image_size // 2``)."""
    if kind != "local":
        return image_size
    crop_size = int(opts["size"]) if opts["size"] is not None else max(1, image_size // 2)
    if crop_size < 1:
        raise ValueError(f"The local view size must be >= 1 pixel, got {opts['size']}.")
    return crop_size


def build_view_transform(
    kind: str, image_size: int, mean: Sequence[float], std: Sequence[float], *, photometric_on_device: bool = False,
    **overrides: Any,
) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """Build a view transform: RGB PIL image -> normalised float32 tensor ``[3, image_size, image_size]``.

    ``kind`` is one of :data:`VIEW_KINDS` (methods.md section 0):

    * ``strong``: RandomResizedCrop(scale=crop_scale), flip(flip_p), ColorJitter(*jitter = 0.4, 0.4,
      0.4, 0.1) x jitter_strength with p=jitter_p, grayscale(grayscale_p), Gaussian blur
      (sigma 0.1-2.0, a kernel of +-3 sigma: PIL's GaussianBlur(radius=sigma)) with p=blur_p, solarize
      (pixels >= 128 of 255 inverted, PIL's ImageOps.solarize) with p=solarize_p (0 by default).
    * ``weak``: RandomResizedCrop(scale=crop_scale), flip(flip_p=0.9, as the MNN code).
    * ``local``: the multi-crop local view: the ``strong`` pipeline on a RandomResizedCrop of
      ``crop_scale=(0.05, 0.4)`` resized to ``size`` (default ``image_size // 2``: 16 px for CIFAR),
      so the tensor is ``[3, size, size]``.
    * ``byol_blur`` / ``byol_solarize``: BYOL's asymmetric pair (PatchMix's official views): the ``strong``
      pipeline with jitter (0.4, 0.4, 0.2, 0.1) and bicubic crops; blur p=1.0 on the first, blur p=0.1 and
      solarize p=0.2 on the second.
    * ``eval``: bilinear resize to ``image_size`` x ``image_size`` then rescale and
      normalise, no randomness; this is what the exported ViTImageProcessor reproduces.

    With ``photometric_on_device`` (``--augment_on_device``) the transform stops after the crop and flip and returns
    the uint8 tensor ``[3, side, side]``; ``device_views.DevicePhotometricAugment`` does the rest on a batch on the
    accelerator. ``overrides`` replace the defaults named above; unknown ones raise ``ValueError``.
    """
    opts = view_options(kind, overrides)
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]

    if kind == "eval":
        if photometric_on_device:
            raise ValueError("The eval view has no random augmentation to move to the device.")
        geometry = [v2.Resize((image_size, image_size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)]
        return v2.Compose(geometry + to_tensor)

    crop_size = view_crop_size(kind, image_size, opts)
    augment = [
        v2.RandomResizedCrop(crop_size, scale=tuple(opts["crop_scale"]), antialias=True,
                             interpolation=INTERPOLATIONS[opts["crop_interpolation"]]),
        v2.RandomHorizontalFlip(p=opts["flip_p"]),
    ]
    if photometric_on_device:
        return v2.Compose(augment + [v2.ToImage(), v2.ToPureTensor()])
    if kind in PHOTOMETRIC_KINDS:
        augment += [
            v2.RandomApply([v2.ColorJitter(*jitter_strengths(opts))], p=opts["jitter_p"]),
            v2.RandomGrayscale(p=opts["grayscale_p"]),
            v2.RandomApply([v2.GaussianBlur(blur_kernel_size(crop_size), sigma=BLUR_SIGMA)], p=opts["blur_p"]),
        ]
        if opts["solarize_p"] > 0:  # on the PIL image, so the threshold is 128 of 255 as ImageOps.solarize
            augment.append(v2.RandomSolarize(threshold=128, p=opts["solarize_p"]))
    return v2.Compose(augment + to_tensor)


def view_seed(seed: int, epoch: int, index: int, *position: int) -> int:
    """Seed for the views of sample ``index`` at ``epoch``: a pure function of its arguments.

    Uses numpy's SeedSequence hashing rather than a linear mix, so that distinct
    (epoch, index) pairs never collide even for datasets with millions of rows. Streams, which have no row index,
    pass their position (process, worker, pass, position in the pass) as extra integers.
    """
    state = np.random.SeedSequence([seed, epoch, index, *position]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _label_of(row: dict[str, Any], label_column: str | None) -> int:
    """Integer label of a row, -1 when the dataset has no labels."""
    if label_column is None or row[label_column] is None:
        return -1
    return int(row[label_column])


class MultiViewDataset(torch.utils.data.Dataset):
    """Applies each of ``transforms`` to one decoded image: ``{"views", "labels", "index"}``.

    With ``neighbour_transforms`` (methods that take mined positives, e.g. SPPS) each item also holds
    ``neighbour_views`` (those transforms applied to one of the image's ``num_neighbours`` mined neighbours, see
    :meth:`set_neighbours`) and ``neighbour_index``.

    The views of sample ``index`` depend only on ``(seed, epoch, index)``: the
    transforms run under ``torch.random.fork_rng`` seeded with :func:`view_seed`, so
    the global RNG is left untouched and the worker count does not matter. The
    epoch lives in a shared-memory tensor, so :meth:`set_epoch` also reaches
    persistent dataloader workers (call it before iterating the epoch).
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        image_column: str,
        label_column: str | None,
        transforms: Sequence[Callable[[PIL.Image.Image], torch.Tensor]],
        seed: int = 0,
        neighbour_transforms: Sequence[Callable[[PIL.Image.Image], torch.Tensor]] = (),
        num_neighbours: int = 1,
    ) -> None:
        if not transforms:
            raise ValueError("MultiViewDataset needs at least one view transform.")
        columns = [image_column] + ([label_column] if label_column is not None else [])
        self.dataset = dataset.select_columns(columns)
        self.image_column = image_column
        self.label_column = label_column
        self.transforms = list(transforms)
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.neighbour_transforms = list(neighbour_transforms)
        # Mined neighbours [N, k] (row i: dataset indices of images similar to i). Shared memory, so
        # set_neighbours also reaches persistent workers. Until a table is mined every image is its own neighbour.
        self._neighbours = None
        if self.neighbour_transforms:
            if num_neighbours < 1:
                raise ValueError(f"num_neighbours must be >= 1, got {num_neighbours}.")
            self._neighbours = torch.arange(len(self.dataset))[:, None].repeat(1, num_neighbours).share_memory_()

    def set_neighbours(self, table: torch.Tensor) -> None:
        """Use ``table`` ``[N, k]`` (long, dataset indices) as the mined neighbours of every image."""
        if self._neighbours is None:
            raise ValueError("This dataset was built without neighbour_transforms; it has no neighbour views.")
        if tuple(table.shape) != tuple(self._neighbours.shape):
            raise ValueError(f"Neighbour table has shape {tuple(table.shape)}, expected {tuple(self._neighbours.shape)} "
                             "(one row per image, num_neighbours columns).")
        if table.numel() and (int(table.min()) < 0 or int(table.max()) >= len(self.dataset)):
            raise ValueError(f"Neighbour indices must lie in [0, {len(self.dataset)}).")
        self._neighbours.copy_(table.to(torch.long))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose views are produced (part of the augmentation seed)."""
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        """The epoch last given to :meth:`set_epoch` (0 initially)."""
        return int(self._epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        row = self.dataset[index]
        image = decode_image(row[self.image_column], index=index, column=self.image_column)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed also queues a CUDA seeding with a stack trace on every call
            # (~0.5 ms, a third of this method's time on CIFAR-10); the transforms draw from this generator alone.
            torch.default_generator.manual_seed(view_seed(self.seed, self.epoch, index))
            views = [transform(image) for transform in self.transforms]
            item = {"views": views, "labels": _label_of(row, self.label_column), "index": index}
            if self._neighbours is not None:
                # One mined neighbour per sample and epoch, drawn uniformly among the k (same seed as the views).
                choice = int(torch.randint(self._neighbours.shape[1], ()))
                neighbour = int(self._neighbours[index, choice])
                value = self.dataset[neighbour][self.image_column]
                neighbour_image = decode_image(value, index=neighbour, column=self.image_column)
                item["neighbour_views"] = [transform(neighbour_image) for transform in self.neighbour_transforms]
                item["neighbour_index"] = neighbour
        return item


class StreamingViewDataset(torch.utils.data.IterableDataset):
    """The views of a streamed split (``{"views", "labels", "index"}`` like :class:`MultiViewDataset`), endlessly.

    ``stream`` is this process's part of the split (``datasets.distributed.split_dataset_by_node``), read through a
    shuffle buffer reseeded by :meth:`set_epoch`; DataLoader workers split its shards between them (datasets does
    that). When a pass ends the stream starts again (a new shuffle), so every process can take the same number of
    batches per epoch; the trainer stops after ``steps_per_epoch``. Views are seeded by (seed, epoch, process,
    worker, pass, position), so a run and its resumption see the same views with the same number of workers.
    ``index`` is the position in the pass (streams have no row index). Undecodable rows raise, or are skipped with
    ``skip_bad_images`` (counted in ``skipped`` per worker and logged).
    """

    def __init__(
        self,
        stream: datasets.IterableDataset,
        image_column: str,
        label_column: str | None,
        transforms: Sequence[Callable[[PIL.Image.Image], torch.Tensor]],
        *,
        seed: int = 0,
        shuffle_buffer_size: int = 10_000,
        process_index: int = 0,
        skip_bad_images: bool = False,
    ) -> None:
        if not transforms:
            raise ValueError("StreamingViewDataset needs at least one view transform.")
        self.stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer_size) if shuffle_buffer_size > 1 else stream
        self.image_column, self.label_column = image_column, label_column
        self.transforms = list(transforms)
        self.seed, self.process_index, self.skip_bad_images = seed, process_index, skip_bad_images
        self.epoch = 0
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (reshuffles the stream and is part of the view seeds); call before iterating."""
        self.epoch = epoch

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        for repeat in range(2**31):
            # A distinct shuffle per (epoch, pass); datasets adds the epoch to the shuffle seed.
            self.stream.set_epoch(self.epoch * 1_000_003 + repeat)
            empty = True
            for position, row in enumerate(self.stream):
                empty = False
                try:
                    image = decode_image(row[self.image_column], index=position, column=self.image_column)
                except ValueError:
                    if not self.skip_bad_images:
                        raise
                    self.skipped += 1
                    logger.warning("--skip_bad_images: skipped an undecodable streamed image (%d so far in this "
                                   "worker).", self.skipped)
                    continue
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(
                        view_seed(self.seed, self.epoch, position, self.process_index, worker_id, repeat))
                    views = [transform(image) for transform in self.transforms]
                yield {"views": views, "labels": _label_of(row, self.label_column), "index": position}
            if empty:
                if worker is not None:  # datasets gives workers beyond the number of shards nothing to read
                    logger.warning("Dataloader worker %d has no shard of the stream to read; it stays idle "
                                   "(the stream has fewer shards than workers).", worker_id)
                    return
                raise ValueError("The streamed training split is empty for this process: use fewer processes "
                                 "than the dataset has rows.")


class EvalImageDataset(torch.utils.data.Dataset):
    """One deterministically transformed image per row: ``{"pixel_values", "labels", "index"}``."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        image_column: str,
        label_column: str | None,
        transform: Callable[[PIL.Image.Image], torch.Tensor],
    ) -> None:
        columns = [image_column] + ([label_column] if label_column is not None else [])
        self.dataset = dataset.select_columns(columns)
        self.image_column = image_column
        self.label_column = label_column
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        row = self.dataset[index]
        image = decode_image(row[self.image_column], index=index, column=self.image_column)
        return {"pixel_values": self.transform(image), "labels": _label_of(row, self.label_column), "index": index}


def collate_views(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack :class:`MultiViewDataset` items: ``views`` (and ``neighbour_views``) become one ``[B, 3, H, W]``
    tensor per view."""
    num_views = len(batch[0]["views"])
    collated = {
        "views": [torch.stack([item["views"][v] for item in batch]) for v in range(num_views)],
        "labels": torch.tensor([item["labels"] for item in batch], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in batch], dtype=torch.long),
    }
    if "neighbour_views" in batch[0]:
        num_neighbour_views = len(batch[0]["neighbour_views"])
        collated["neighbour_views"] = [
            torch.stack([item["neighbour_views"][v] for item in batch]) for v in range(num_neighbour_views)
        ]
        collated["neighbour_index"] = torch.tensor([item["neighbour_index"] for item in batch], dtype=torch.long)
    return collated


def collate_eval(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack :class:`EvalImageDataset` items into ``pixel_values [B, 3, H, W]``, ``labels``, ``index``."""
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in batch]),
        "labels": torch.tensor([item["labels"] for item in batch], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in batch], dtype=torch.long),
    }
