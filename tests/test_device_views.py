"""--augment_on_device: the loader crops and flips (uint8), DevicePhotometricAugment does jitter, grayscale, blur and
normalisation on the batch. Checked on real CIFAR-10 images against the CPU (torchvision) pipeline it replaces.
The training loop with the flag (and its exact resume) is in test_training.py."""

from __future__ import annotations

import pytest
import torch

from hf_contrastive.data import DATASET_STATS, DevicePhotometricAugment, build_view_transform

MEAN, STD = DATASET_STATS["cifar10"]
NO_PHOTOMETRIC = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}


def _per_image(transform, images, seed: int = 0) -> torch.Tensor:
    """``transform`` of each image with the per-image seed ``seed + i`` (as MultiViewDataset seeds each image)."""
    views = []
    for i, image in enumerate(images):
        torch.manual_seed(seed + i)
        views.append(transform(image))
    return torch.stack(views)


def _normalise(uint8_images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (uint8_images.float() / 255 - mean) / std


def test_loader_half_is_the_cpu_crop_and_flip_as_uint8(sample_images):
    """Same seed, photometric ops off: the CPU view equals the device path (loader crop -> uint8 -> device)."""
    images = sample_images(64)
    cpu = _per_image(build_view_transform("strong", 32, MEAN, STD, **NO_PHOTOMETRIC), images)
    cropped = _per_image(build_view_transform("strong", 32, MEAN, STD, photometric_on_device=True), images)
    assert cropped.dtype == torch.uint8 and cropped.shape == (64, 3, 32, 32) and type(cropped) is torch.Tensor
    device = DevicePhotometricAugment("strong", 32, MEAN, STD, **NO_PHOTOMETRIC)(cropped, seed=0)
    assert torch.allclose(device, cpu, atol=1e-5)
    # A weak view has no photometric part: the device half only rescales and normalises.
    weak = _per_image(build_view_transform("weak", 32, MEAN, STD, photometric_on_device=True), images)
    assert torch.allclose(DevicePhotometricAugment("weak", 32, MEAN, STD)(weak, seed=0), _normalise(weak), atol=1e-6)
    local = _per_image(build_view_transform("local", 32, MEAN, STD, photometric_on_device=True), images)
    assert local.shape == (64, 3, 16, 16)


def test_device_views_are_as_strong_as_the_cpu_views(sample_images):
    """On 500 real images, the same crops: how far each pipeline moves pixels away from the plain crop, the share of
    grayscale views (p=0.2) and of blurred views agree between torchvision (per image) and kornia (per batch)."""
    images = sample_images(500)
    crops = _per_image(build_view_transform("strong", 32, MEAN, STD, photometric_on_device=True), images)
    cpu = _per_image(build_view_transform("strong", 32, MEAN, STD), images)  # same seeds: same crops, then jitter...
    device = DevicePhotometricAugment("strong", 32, MEAN, STD)(crops, seed=3)
    plain = _normalise(crops)
    cpu_shift = (cpu - plain).abs().mean((1, 2, 3))
    device_shift = (device - plain).abs().mean((1, 2, 3))
    assert device_shift.mean() == pytest.approx(cpu_shift.mean().item(), rel=0.15)
    # Views left as cropped: no jitter (0.2) x no grayscale (0.8) x no blur (0.5) = 8% in both pipelines.
    assert (device_shift < 1e-3).float().mean() == pytest.approx((cpu_shift < 1e-3).float().mean().item(), abs=0.06)

    def grayscale_share(views: torch.Tensor) -> float:
        pixels = views * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
        return ((pixels[:, 0] - pixels[:, 1]).abs().amax((1, 2)) < 1e-4).float().mean().item()

    assert grayscale_share(cpu) == pytest.approx(0.2, abs=0.06)
    assert grayscale_share(device) == pytest.approx(0.2, abs=0.06)


def test_blur_and_jitter_happen_per_image():
    """Per-sample parameters: a batch of 64 copies of one real-looking image comes out as many different views."""
    image = (torch.rand(1, 3, 32, 32) * 255).to(torch.uint8).repeat(64, 1, 1, 1)
    views = DevicePhotometricAugment("strong", 32, MEAN, STD)(image, seed=0)
    distinct = {tuple(view.flatten()[:50].tolist()) for view in views}
    assert len(distinct) > 40


def test_seeded_and_the_global_rng_untouched(sample_images):
    crops = _per_image(build_view_transform("strong", 32, MEAN, STD, photometric_on_device=True), sample_images(32))
    augment = DevicePhotometricAugment("strong", 32, MEAN, STD)
    state = torch.get_rng_state()
    first = augment(crops, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(augment(crops, seed=11), first)
    assert not torch.equal(augment(crops, seed=12), first)


def test_bad_inputs_say_what_to_do():
    with pytest.raises(ValueError, match="eval view has no random augmentation"):
        DevicePhotometricAugment("eval", 32, MEAN, STD)
    with pytest.raises(ValueError, match="eval view has no random augmentation"):
        build_view_transform("eval", 32, MEAN, STD, photometric_on_device=True)
    with pytest.raises(ValueError, match="Unknown override"):
        DevicePhotometricAugment("strong", 32, MEAN, STD, hue=0.5)
    with pytest.raises(ValueError, match=r"jitter of the 'strong' view is \(brightness, contrast, saturation, hue\)"):
        DevicePhotometricAugment("strong", 32, MEAN, STD, jitter=0.5)
    with pytest.raises(ValueError, match="expects uint8"):
        DevicePhotometricAugment("strong", 32, MEAN, STD)(torch.zeros(2, 3, 32, 32), seed=0)

