"""Views made where the model is: batched augmentation with every random parameter drawn on the device.

Two training flags use it (docs/training.md):

* ``--augment_on_device``: the loader crops and flips on the CPU (uint8); :class:`DevicePhotometricAugment` does the
  colour jitter, grayscale, blur, solarize and normalisation of the batch on the device.
* ``--data_on_device``: the training split is decoded once into a uint8 tensor on the device
  (:class:`DeviceTrainingSet`); every view, crop and flip included, is made there by :class:`DeviceViewAugment`.
  No loader, no worker, no host-to-device copy in a step.

Both follow the CPU pipeline of :func:`hf_contrastive.data.build_view_transform` op for op, with per-sample
parameters from the same distributions (tests/test_device_views.py checks them against torchvision's): the crop is
torchvision's RandomResizedCrop algorithm (ten tries of area and log-aspect, then the centre fallback), the jitter
applies brightness, contrast, saturation and hue in an order drawn per image, as torchvision's ColorJitter. What
differs: pixels stay float between ops (PIL rounds to uint8 after each).

Randomness: each call takes a ``torch.Generator`` on the images' device, which the trainer seeds per (step, view);
a batch's views are a pure function of that seed (bit-exact on the CPU, so a resumed run sees the same views), the
global RNG is untouched, and nothing is drawn on the host: no host-device synchronisation in a step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import (
    BLUR_SIGMA,
    PHOTOMETRIC_KINDS,
    blur_kernel_size,
    decode_image,
    jitter_strengths,
    view_crop_size,
    view_options,
    view_seed,
)

#: RandomResizedCrop's aspect-ratio range (torchvision's default, used by every recipe).
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
#: Tries of RandomResizedCrop before its centre-crop fallback (torchvision's 10).
CROP_TRIES = 10
# ImageOps.solarize inverts pixels >= 128 of 255; in [0, 1] that is 128 / 255.
SOLARIZE_THRESHOLD = 128.0 / 255.0
# Part of every --data_on_device seed: keeps them apart from the loader's per-image seeds.
DEVICE_DATA_SEED_TAG = 0xDA7A


def _uniform(low: float, high: float, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=device) * (high - low) + low


def _bernoulli(p: float, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=device) < p


def sample_crop_boxes(count: int, height: int, width: int, scale: Sequence[float], generator: torch.Generator,
                      device: torch.device, ratio: Sequence[float] = CROP_RATIO) -> torch.Tensor:
    """``count`` RandomResizedCrop boxes ``[count, 4]`` (x1, y1, x2, y2 in pixels, float) of an ``height x width``
    image, drawn as torchvision's ``RandomResizedCrop.get_params``: up to ten tries of area ~ U(scale) x H x W and
    log-aspect ~ U(log ratio), sides rounded, the first that fits taken at a uniform integer offset; else the centre
    crop with the aspect clamped to ``ratio``. All tries are drawn for every sample at once (fixed shapes, no
    host read)."""
    area = height * width
    target_area = area * _uniform(scale[0], scale[1], count * CROP_TRIES, generator, device).view(count, CROP_TRIES)
    log_ratio = _uniform(math.log(ratio[0]), math.log(ratio[1]), count * CROP_TRIES, generator, device)
    aspect = torch.exp(log_ratio).view(count, CROP_TRIES)
    widths = torch.round(torch.sqrt(target_area * aspect))
    heights = torch.round(torch.sqrt(target_area / aspect))
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)  # the first try that fits (0 when none does)
    crop_w, crop_h = widths.gather(1, first)[:, 0], heights.gather(1, first)[:, 0]
    offsets = torch.rand(count, 2, generator=generator, device=device)
    top = torch.floor(offsets[:, 0] * (height - crop_h + 1))
    left = torch.floor(offsets[:, 1] * (width - crop_w + 1))
    # torchvision's fallback: the whole image, its aspect clamped into ratio, centred.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    any_fits = fits.any(dim=1)
    crop_w = torch.where(any_fits, crop_w, float(fallback_w))
    crop_h = torch.where(any_fits, crop_h, float(fallback_h))
    left = torch.where(any_fits, left, float((width - fallback_w) // 2))
    top = torch.where(any_fits, top, float((height - fallback_h) // 2))
    return torch.stack([left, top, left + crop_w, top + crop_h], dim=1)


def _resampling_filter(distance: torch.Tensor, interpolation: str) -> torch.Tensor:
    """PIL's resampling filters: the triangle (bilinear, support 1) and Keys' cubic with a = -0.5 (bicubic, support
    2), as PIL and torchvision's antialiased resize use them."""
    x = distance.abs()
    if interpolation == "bilinear":
        return (1.0 - x).clamp_(min=0.0)
    a = -0.5
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _resampling_weights(start: torch.Tensor, length: torch.Tensor, size: int, extent: int,
                        interpolation: str) -> torch.Tensor:
    """``[B, size, extent]``: row ``s`` weighs the pixels of the image row/column that output pixel ``s`` of the crop
    ``[start, start + length)`` reads, as PIL resizes a cropped image: the filter stretched by the shrink factor (its
    antialias), taps only inside the crop, normalised to sum 1."""
    support = 1.0 if interpolation == "bilinear" else 2.0
    scale = (length / size)[:, None, None]
    stretch = scale.clamp(min=1.0)
    centres = (torch.arange(size, device=start.device, dtype=start.dtype)[None, :, None] + 0.5) * scale
    offsets = torch.arange(extent, device=start.device, dtype=start.dtype)[None, None, :] - start[:, None, None]
    weights = _resampling_filter((offsets + 0.5 - centres) / stretch, interpolation)
    inside = (offsets >= 0) & (offsets < length[:, None, None]) & ((offsets + 0.5 - centres).abs() < support * stretch)
    weights = weights * inside
    return weights / weights.sum(dim=2, keepdim=True)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    """Each image's box ``[B, 4]`` (x1, y1, x2, y2, whole pixels) resized to ``size x size``: float
    ``[B, C, size, size]``, as torchvision's ``resized_crop`` of a PIL image (PIL's separable resampling, antialiased
    when it shrinks) without PIL's rounding to uint8 after the resize. Two batched matrix products per batch."""
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}.")
    _, _, height, width = images.shape
    left, top, right, bottom = boxes.unbind(1)
    rows = _resampling_weights(top, bottom - top, size, height, interpolation)
    columns = _resampling_weights(left, right - left, size, width, interpolation)
    resized = torch.einsum("bsh,bchw,btw->bcst", rows, images, columns)
    return resized.clamp_(0.0, 1.0) if interpolation == "bicubic" else resized


def gaussian_blurs(pixels: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Each image ``[B, C, H, W]`` blurred with its own ``sigma`` ``[B]``: torchvision's ``gaussian_blur`` (a
    normalised ``kernel_size``-tap Gaussian along each axis, reflect padding) for a batch of sigmas, as two grouped
    convolutions. (kornia's batched blur reads sigma on the host to check it: a device synchronisation.)"""
    count, channels, height, width = pixels.shape
    half = kernel_size // 2
    taps = torch.arange(kernel_size, device=pixels.device, dtype=pixels.dtype) - half
    kernels = torch.exp(-0.5 * (taps / sigma[:, None]) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # [B * C, k]
    padded = F.pad(pixels, (half, half, half, half), mode="reflect").reshape(1, count * channels, height + 2 * half,
                                                                             width + 2 * half)
    rows = F.conv2d(padded, kernels[:, None, None, :], groups=count * channels)
    return F.conv2d(rows, kernels[:, None, :, None], groups=count * channels).view(count, channels, height, width)


def hue_shifts(pixels: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each RGB image ``[B, 3, H, W]`` with its hue turned by ``shift`` ``[B]`` turns: torchvision's ``adjust_hue``
    (hue from torchvision's RGB->HSV formula, ``h' = (h + shift) mod 1``, saturation and value kept) in fewer ops:
    value and saturation kept means each pixel's max ``M`` and min ``m`` are kept, and channel ``n`` of the result is
    ``M - (M - m) clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h') mod 6``, n = 5, 3, 1 for red, green, blue."""
    red, green, blue = pixels.unbind(1)
    high, low = pixels.amax(1), pixels.amin(1)
    chroma = high - low
    divisor = torch.where(chroma > 0, chroma, 1.0)
    red_c, green_c, blue_c = ((high - channel) / divisor for channel in (red, green, blue))
    is_red, is_green = high == red, (high == green) & (high != red)
    hue = torch.where(is_red, blue_c - green_c, torch.where(is_green, 2.0 + red_c - blue_c, 4.0 + green_c - red_c))
    hue = torch.remainder(hue / 6.0 + 1.0 + shift.view(-1, 1, 1), 1.0)
    offsets = torch.arange(5.0, 0.0, -2.0, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)  # 5, 3, 1
    sector = torch.remainder(offsets + 6.0 * hue.unsqueeze(1), 6.0)
    return high.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(sector, 4.0 - sector).clamp_(0.0, 1.0)


def grayscale(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` luma of RGB ``[B, 3, H, W]`` with torchvision's weights (0.2989, 0.587, 0.114)."""
    red, green, blue = pixels.unbind(1)
    return (0.2989 * red + 0.587 * green + 0.114 * blue).unsqueeze(1)


def _blend_where(choose: torch.Tensor, changed: torch.Tensor, unchanged: torch.Tensor) -> torch.Tensor:
    return torch.where(choose.view(-1, 1, 1, 1), changed, unchanged)


class DeviceViewAugment(torch.nn.Module):
    """A ``kind`` view of :func:`hf_contrastive.data.build_view_transform` for a whole batch, on its device.

    ``forward(images, generator)``: ``images`` uint8 ``[B, 3, H, W]`` -> normalised float32 ``[B, 3, S, S]``.
    With ``geometric=True`` (``--data_on_device``) the view starts with RandomResizedCrop(crop_scale,
    crop_interpolation) to its side ``S`` and a flip with p=flip_p; with ``geometric=False``
    (``--augment_on_device``) the images arrive cropped and flipped (``S = H``). Then, for the strongly augmented
    kinds: ColorJitter(*jitter x jitter_strength) with p=jitter_p (factors and order drawn per image), grayscale
    with p=grayscale_p, Gaussian blur (sigma ~ U(0.1, 2.0), the CPU kernel size) with p=blur_p, solarize with
    p=solarize_p; finally (x - mean) / std. :meth:`sample_parameters` returns the draws, which tests compare with
    torchvision's.
    """

    def __init__(self, kind: str, image_size: int, mean: Sequence[float], std: Sequence[float], *,
                 geometric: bool = True, **overrides: Any):
        super().__init__()
        if kind == "eval":
            raise ValueError("The eval view has no random augmentation to move to the device.")
        self.options = view_options(kind, overrides)
        self.kind, self.geometric = kind, geometric
        self.side = view_crop_size(kind, image_size, self.options)
        self.photometric = kind in PHOTOMETRIC_KINDS
        self.jitter = jitter_strengths(self.options) if self.photometric else (0.0, 0.0, 0.0, 0.0)
        self.blur_kernel = blur_kernel_size(self.side)
        # Buffers, so that .to(device) moves them once instead of every call building them from Python floats.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def sample_parameters(self, count: int, height: int, width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Every random parameter of ``count`` views, drawn on the generator's device in a fixed order.

        ``boxes`` [count, 4] and ``flip`` (geometric only); ``jitter`` (applied?), ``brightness``, ``contrast``,
        ``saturation`` (factors), ``hue`` (shift in turns), ``jitter_order`` [count, 4] (a permutation of 0..3 per
        view: brightness, contrast, saturation, hue), ``grayscale``, ``blur``, ``sigma``, ``solarize``
        (photometric kinds only)."""
        device, opts = generator.device, self.options
        draws: dict[str, torch.Tensor] = {}
        if self.geometric:
            draws["boxes"] = sample_crop_boxes(count, height, width, opts["crop_scale"], generator, device)
            draws["flip"] = _bernoulli(opts["flip_p"], count, generator, device)
        if self.photometric:
            brightness, contrast, saturation, hue = self.jitter
            draws["jitter"] = _bernoulli(opts["jitter_p"], count, generator, device)
            for name, strength in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
                draws[name] = _uniform(max(0.0, 1.0 - strength), 1.0 + strength, count, generator, device)
            draws["hue"] = _uniform(-hue, hue, count, generator, device)
            draws["jitter_order"] = torch.argsort(torch.rand(count, 4, generator=generator, device=device), dim=1)
            draws["grayscale"] = _bernoulli(opts["grayscale_p"], count, generator, device)
            draws["blur"] = _bernoulli(opts["blur_p"], count, generator, device)
            draws["sigma"] = _uniform(BLUR_SIGMA[0], BLUR_SIGMA[1], count, generator, device)
            draws["solarize"] = _bernoulli(opts["solarize_p"], count, generator, device)
        return draws

    def _color_jitter(self, pixels: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """The four ColorJitter ops in each image's own order. Brightness, contrast and saturation are one blend,
        ``clamp(f x + (1 - f) reference)`` with reference 0, the mean of the image's gray, or its gray (torchvision's
        ``_blend``), so each of the four places costs one blend, with each image's factor for the op it has there (1:
        unchanged), and one hue shift kept where the image has hue there. Ops of strength 0 are identities, as
        torchvision skips them."""
        factors = torch.stack([draws["brightness"], draws["contrast"], draws["saturation"]], dim=1)  # [B, 3]
        hue_strength = self.jitter[3]
        for position in range(4):
            op = draws["jitter_order"][:, position]
            blended = draws["jitter"] & (op < 3)
            factor = torch.where(blended, factors.gather(1, op.clamp(max=2)[:, None])[:, 0], 1.0).view(-1, 1, 1, 1)
            gray = grayscale(pixels)
            reference = torch.where((op == 0).view(-1, 1, 1, 1), 0.0,
                                    torch.where((op == 1).view(-1, 1, 1, 1), gray.mean((-2, -1), keepdim=True), gray))
            pixels = (factor * pixels + (1.0 - factor) * reference).clamp_(0.0, 1.0)
            if hue_strength > 0:
                shifted = hue_shifts(pixels, draws["hue"])
                pixels = _blend_where(draws["jitter"] & (op == 3), shifted, pixels)
        return pixels

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The views of ``images`` with parameters drawn from ``generator``."""
        count, _, height, width = images.shape
        return self.apply(images, self.sample_parameters(count, height, width, generator))

    def apply(self, images: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """The views of ``images`` with the given parameters (one row of every draw per image)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects uint8 [B, 3, H, W] images, got {images.dtype} "
                             f"{tuple(images.shape)}.")
        pixels = images.float().div_(255.0)
        if self.geometric:
            pixels = resized_crops(pixels, draws["boxes"], self.side, self.options["crop_interpolation"])
            pixels = _blend_where(draws["flip"], pixels.flip(-1), pixels)
        if self.photometric:
            pixels = self._color_jitter(pixels, draws)
            pixels = _blend_where(draws["grayscale"], grayscale(pixels).expand_as(pixels), pixels)
            if self.options["blur_p"] > 0:
                blurred = gaussian_blurs(pixels, draws["sigma"], self.blur_kernel)
                pixels = _blend_where(draws["blur"], blurred, pixels)
            if self.options["solarize_p"] > 0:
                inverted = torch.where(pixels >= SOLARIZE_THRESHOLD, 1.0 - pixels, pixels)
                pixels = _blend_where(draws["solarize"], inverted, pixels)
        return (pixels - self.mean) / self.std


class DevicePhotometricAugment(DeviceViewAugment):
    """The photometric half of a ``kind`` view (``--augment_on_device``): :class:`DeviceViewAugment` without the
    crop and flip, which the loader did (``build_view_transform(..., photometric_on_device=True)``).

    ``forward(images, seed)``: uint8 ``[B, 3, H, W]`` -> normalised float32; the parameters come from a generator
    on the images' device seeded with ``seed``."""

    def __init__(self, kind: str, image_size: int, mean: Sequence[float], std: Sequence[float], **overrides: Any):
        super().__init__(kind, image_size, mean, std, geometric=False, **overrides)

    def forward(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        self.to(images.device)  # the mean/std buffers, once
        return super().forward(images, seeded_generator(images.device, seed))


def seeded_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (seeding sets host-side state: no synchronisation)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def decode_to_uint8(dataset: datasets.Dataset, image_column: str, description: str = "Decoding images") -> torch.Tensor:
    """Every image of ``dataset`` decoded to RGB: uint8 ``[N, 3, H, W]`` (on the CPU). All images must have one size."""
    first = decode_image(dataset[0][image_column], index=0, column=image_column)
    width, height = first.size
    pixels = np.empty((len(dataset), height, width, 3), dtype=np.uint8)
    column = dataset.select_columns([image_column])
    for index in tqdm(range(len(dataset)), desc=description, mininterval=5.0, leave=False):
        image = decode_image(column[index][image_column], index=index, column=image_column)
        if image.size != (width, height):
            raise ValueError(
                f"--data_on_device needs images of one size: row 0 is {width}x{height}, row {index} is "
                f"{image.size[0]}x{image.size[1]}. Resize the dataset to one size first, or train without "
                "--data_on_device.")
        pixels[index] = np.asarray(image)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


class DeviceTrainingSet:
    """The training split held on the device as uint8, with its views made there (``--data_on_device``).

    ``batches(epoch, first_batch, batch_size, process_index, num_processes)`` yields the batches of an epoch as the
    prepared loader would (``{"views": [...], "index"}``, plus ``neighbour_views`` for methods with mined
    neighbours): a permutation of the rows drawn on the device per (seed, epoch), cut into global batches of
    ``batch_size x num_processes`` (the last incomplete one dropped), each process taking its own ``batch_size``
    rows of each; the views of batch ``b`` are seeded by (seed, epoch, b, view), so resuming at ``first_batch``
    gives exactly the views the interrupted run would have seen, whatever the number of processes.
    """

    def __init__(self, images: torch.Tensor, view_augments: Sequence[DeviceViewAugment], seed: int,
                 neighbour_augments: Sequence[DeviceViewAugment] = (), num_neighbours: int = 1):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"DeviceTrainingSet holds uint8 [N, 3, H, W] images, got {images.dtype} "
                             f"{tuple(images.shape)}.")
        self.images, self.seed = images, seed
        self.view_augments = [augment.to(images.device) for augment in view_augments]
        self.neighbour_augments = [augment.to(images.device) for augment in neighbour_augments]
        self.neighbour_transforms = self.neighbour_augments  # what the trainer's re-mining checks for
        self.epoch = 0
        self._neighbour_rows = None
        if self.neighbour_augments:  # until a table is mined every image is its own neighbour
            rows = torch.arange(len(images), device=images.device)
            self._neighbour_rows = rows[:, None].repeat(1, num_neighbours)

    def __len__(self) -> int:
        return self.images.shape[0]

    def compile_views(self, **compile_kwargs: Any) -> None:
        """Compile every view's `DeviceViewAugment.apply` (the ops after the draws: several hundred small kernels per
        batch in eager mode, on a GPU a few fused ones) with ``torch.compile(fullgraph=True, **compile_kwargs)``
        (``--torch_compile``). The draws stay eager, so the same seed gives the same parameters."""
        for augment in {id(a): a for a in [*self.view_augments, *self.neighbour_augments]}.values():
            augment.apply = torch.compile(augment.apply, fullgraph=True, **compile_kwargs)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_neighbours(self, table: torch.Tensor) -> None:
        """Use ``table`` ``[N, k]`` (dataset indices) as the mined neighbours (as MultiViewDataset.set_neighbours)."""
        if self._neighbour_rows is None:
            raise ValueError("This training set was built without neighbour views.")
        if tuple(table.shape) != tuple(self._neighbour_rows.shape):
            raise ValueError(f"Neighbour table has shape {tuple(table.shape)}, expected {tuple(self._neighbour_rows.shape)}.")
        self._neighbour_rows = table.to(device=self.device, dtype=torch.long)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The epoch's order of the rows, drawn on the device."""
        generator = seeded_generator(self.device, view_seed(self.seed, epoch, 0, DEVICE_DATA_SEED_TAG))
        return torch.randperm(len(self), generator=generator, device=self.device)

    def batches(self, epoch: int, first_batch: int, batch_size: int, process_index: int = 0,
                num_processes: int = 1) -> Iterator[dict[str, Any]]:
        order = self.permutation(epoch)
        global_batch = batch_size * num_processes
        mine = slice(process_index * batch_size, (process_index + 1) * batch_size)
        for number in range(first_batch, len(self) // global_batch):
            rows = order[number * global_batch:(number + 1) * global_batch]
            yield self.batch(rows, view_seed(self.seed, epoch, number, DEVICE_DATA_SEED_TAG), mine)

    def batch(self, rows: torch.Tensor, seed: int, mine: slice = slice(None)) -> dict[str, Any]:
        """The views of this process's images ``rows[mine]`` of a global batch ``rows`` (device indices).

        Every view's parameters are drawn for the whole global batch from a generator seeded by ``seed`` and the
        view's number, and each process uses its rows of them: the views of an image do not depend on how many
        processes share the batch (one process x 32 images sees what two processes x 16 see)."""
        images = self.images[rows[mine]]
        batch: dict[str, Any] = {"index": rows[mine]}
        batch["views"] = self._views(self.view_augments, images, len(rows), view_seed(seed, 0, 0), mine)
        if self._neighbour_rows is not None:
            # One of the k mined neighbours per image, drawn uniformly (as MultiViewDataset).
            generator = seeded_generator(self.device, view_seed(seed, 1, 0))
            choice = torch.randint(self._neighbour_rows.shape[1], (len(rows), 1), generator=generator,
                                   device=self.device)
            neighbour_rows = self._neighbour_rows[rows].gather(1, choice)[mine, 0]
            batch["neighbour_index"] = neighbour_rows
            batch["neighbour_views"] = self._views(self.neighbour_augments, self.images[neighbour_rows], len(rows),
                                                   view_seed(seed, 1, 1), mine)
        return batch

    def _views(self, augments: Sequence[DeviceViewAugment], images: torch.Tensor, global_count: int, seed: int,
               mine: slice) -> list[torch.Tensor]:
        _, _, height, width = images.shape
        views = []
        for number, augment in enumerate(augments):
            generator = seeded_generator(self.device, view_seed(seed, number, 0))
            draws = augment.sample_parameters(global_count, height, width, generator)
            views.append(augment.apply(images, {name: values[mine] for name, values in draws.items()}))
        return views
