"""Views made on the device (hf_contrastive.device_views), checked on real CIFAR-10 images against the CPU
(torchvision) pipeline they replace.

--augment_on_device: the loader crops and flips (uint8), DevicePhotometricAugment does jitter, grayscale, blur and
normalisation on the batch. --data_on_device: DeviceTrainingSet holds the decoded split on the device and
DeviceViewAugment makes whole views there. Parameters follow torchvision's distributions (two-sample tests against
torchvision's own draws), each op equals torchvision's functional op given the same parameters, the views are a pure
function of their seed, and the loop with the flags resumes exactly (here and in test_training.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from host_device_traffic import HostDeviceTraffic
from scipy.stats import ks_2samp
from torchvision.transforms import v2

from hf_contrastive.data import DATASET_STATS, build_view_transform
from hf_contrastive.device_views import (
    DevicePhotometricAugment,
    DeviceTrainingSet,
    DeviceViewAugment,
    decode_to_uint8,
    sample_crop_boxes,
    seeded_generator,
)

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
    grayscale views (p=0.2) and of blurred views agree between torchvision (per image) and the device path (per batch)."""
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



# ----------------------------------------------------------------------------- --data_on_device

DRAWS = 20_000
# A two-sample Kolmogorov-Smirnov test rejects a true match with probability 1e-4 at this level: a failure is a
# distribution that differs, not bad luck.
P_FLOOR = 1e-4


def _uint8(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) for image in images])


@pytest.mark.parametrize("height, width, scale", [(32, 32, (0.2, 1.0)), (32, 32, (0.05, 0.4)), (48, 96, (0.08, 1.0))])
def test_crop_area_and_aspect_follow_torchvision(height, width, scale):
    """Our boxes and torchvision's RandomResizedCrop.get_params, 20,000 draws each: the same distribution of crop
    area, aspect ratio and position (two-sample KS), including the centre fallback of a wide image."""
    boxes = sample_crop_boxes(DRAWS, height, width, scale, seeded_generator("cpu", 0), torch.device("cpu"))
    ours_w, ours_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert torch.equal(boxes, boxes.round()) and (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all() and (ours_w > 0).all()
    crop = v2.RandomResizedCrop(8, scale=scale)
    torch.manual_seed(0)
    theirs = [crop.make_params([torch.zeros(3, height, width)]) for _ in range(DRAWS)]
    their_w, their_h = (torch.tensor([p[key] for p in theirs], dtype=torch.float32) for key in ("width", "height"))
    their_left = torch.tensor([p["left"] for p in theirs], dtype=torch.float32)
    for ours, reference in ((ours_w * ours_h, their_w * their_h), (ours_w / ours_h, their_w / their_h),
                            (boxes[:, 0] / (width - ours_w + 1), their_left / (width - their_w + 1))):
        assert ks_2samp(ours.numpy(), reference.numpy()).pvalue > P_FLOOR


def test_photometric_draws_follow_torchvision():
    """Jitter factors (each uniform over torchvision's range), a uniformly random jitter order, blur sigma
    U(0.1, 2.0), and the probabilities of jitter, grayscale, blur, solarize and flip: against torchvision's own draws
    (KS) and the binomial spread."""
    augment = DeviceViewAugment("byol_solarize", 32, MEAN, STD)  # every op is on: blur 0.1, solarize 0.2
    draws = augment.sample_parameters(DRAWS, 32, 32, seeded_generator("cpu", 1))
    torch.manual_seed(1)
    jitter = v2.ColorJitter(*augment.jitter)
    theirs = [jitter.make_params([torch.zeros(3, 4, 4)]) for _ in range(DRAWS)]
    for name in ("brightness", "contrast", "saturation", "hue"):
        reference = np.array([p[f"{name}_factor"] for p in theirs])
        assert ks_2samp(draws[name].numpy(), reference).pvalue > P_FLOOR, name
    blur = v2.GaussianBlur(13, sigma=(0.1, 2.0))
    sigmas = np.array([blur.make_params([torch.zeros(3, 4, 4)])["sigma"][0] for _ in range(DRAWS)])
    assert ks_2samp(draws["sigma"].numpy(), sigmas).pvalue > P_FLOOR
    # Every op takes each of the four places a quarter of the time.
    places = torch.stack([(draws["jitter_order"] == op).float().argmax(1) for op in range(4)])
    for op in range(4):
        counts = torch.bincount(places[op], minlength=4).float() / DRAWS
        assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.015)
    options = augment.options
    for name, p in (("jitter", options["jitter_p"]), ("grayscale", options["grayscale_p"]), ("blur", options["blur_p"]),
                    ("solarize", options["solarize_p"]), ("flip", options["flip_p"])):
        assert draws[name].float().mean().item() == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / DRAWS)), name


def test_each_op_is_torchvisions_given_the_same_parameters(sample_images):
    """The photometric half on 64 real images against torchvision's functional ops applied image by image with the
    drawn parameters, in each image's drawn jitter order (every op forced on, so every path runs)."""
    crops = _uint8(sample_images(64))
    always = {"jitter_p": 1.0, "grayscale_p": 0.5, "blur_p": 0.5, "solarize_p": 0.5}
    augment = DevicePhotometricAugment("byol_solarize", 32, MEAN, STD, **always)
    views = augment(crops, seed=5)
    draws = augment.sample_parameters(64, 32, 32, seeded_generator("cpu", 5))
    ops = [lambda x, i: TF.adjust_brightness(x, draws["brightness"][i].item()),
           lambda x, i: TF.adjust_contrast(x, draws["contrast"][i].item()),
           lambda x, i: TF.adjust_saturation(x, draws["saturation"][i].item()),
           lambda x, i: TF.adjust_hue(x, draws["hue"][i].item())]
    mismatched = 0
    for i in range(64):
        x = crops[i].float() / 255
        for op in draws["jitter_order"][i].tolist():
            x = ops[op](x, i)
        if draws["grayscale"][i]:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        if draws["blur"][i]:
            sigma = draws["sigma"][i].item()
            x = TF.gaussian_blur(x, [augment.blur_kernel] * 2, [sigma, sigma])
        if draws["solarize"][i]:
            x = TF.solarize(x, 128 / 255)
        expected = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        # A pixel that rounding puts on the other side of solarize's threshold (128/255) differs more: a handful in
        # 196,608.
        differs = (views[i] - expected).abs() > 2e-4
        mismatched += int(differs.sum())
        if draws["solarize"][i] == 0:
            assert not differs.any(), f"image {i}"
    assert mismatched < 20


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("side", [32, 20])
def test_crop_and_flip_are_torchvisions(sample_images, interpolation, side):
    """The geometric half (photometric ops off) against torchvision's antialiased resized_crop + hflip of each real
    image with the drawn box and flip (the algorithm PIL runs on the CPU path), enlarging (32 px) and shrinking
    (20 px from crops of up to 30 px)."""
    images = _uint8(sample_images(48))
    augment = DeviceViewAugment("local", 32, MEAN, STD, size=side, crop_interpolation=interpolation,
                                crop_scale=(0.3, 0.9), **NO_PHOTOMETRIC)
    views = augment(images, seeded_generator("cpu", 2))
    draws = augment.sample_parameters(48, 32, 32, seeded_generator("cpu", 2))
    mode = v2.InterpolationMode.BILINEAR if interpolation == "bilinear" else v2.InterpolationMode.BICUBIC
    for i in range(48):
        left, top, right, bottom = (int(v) for v in draws["boxes"][i].tolist())
        x = TF.resized_crop(images[i].float() / 255, top, left, bottom - top, right - left, [side, side],
                            interpolation=mode, antialias=True).clamp(0, 1)
        if draws["flip"][i]:
            x = TF.horizontal_flip(x)
        expected = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        torch.testing.assert_close(views[i], expected, atol=2e-5, rtol=0, msg=f"image {i}")


@pytest.mark.parametrize("kind", ["strong", "weak", "local", "byol_blur"])
def test_whole_device_views_match_the_cpu_views_in_distribution(sample_images, kind):
    """500 real images, one CPU view (torchvision on PIL, per-image seeds) and one device view each: the per-view
    mean, contrast (std) and colourfulness (channel spread) have the same distribution (two-sample KS), and the
    shapes agree (the local view is 16 px)."""
    images = sample_images(500)
    cpu = _per_image(build_view_transform(kind, 32, MEAN, STD), images, seed=100)
    device = DeviceViewAugment(kind, 32, MEAN, STD)(_uint8(images), seeded_generator("cpu", 7))
    assert device.shape == cpu.shape and device.dtype == cpu.dtype

    def summaries(views: torch.Tensor) -> dict[str, np.ndarray]:
        pixels = views * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
        return {"mean": pixels.mean((1, 2, 3)).numpy(), "std": pixels.std((1, 2, 3)).numpy(),
                "colour": pixels.std(1).mean((1, 2)).numpy()}

    ours, theirs = summaries(device), summaries(cpu)
    for name in ours:
        assert ks_2samp(ours[name], theirs[name]).pvalue > 1e-3, name


def test_device_training_set_shards_epochs_and_resumes_exactly(sample_images):
    """Batches as a prepared loader gives them: each epoch a permutation drawn per (seed, epoch); with two processes
    each takes its own rows of every global batch (disjoint, every row at most once, the incomplete batch dropped)
    and together they see what one process sees with the global batch; the views of a batch depend only on (seed,
    epoch, batch), so starting at batch 2 gives the tail."""
    images = _uint8(sample_images(70))
    augments = [DeviceViewAugment("strong", 32, MEAN, STD), DeviceViewAugment("weak", 32, MEAN, STD)]
    data = DeviceTrainingSet(images, augments, seed=3)
    shards = [list(data.batches(0, 0, batch_size=8, process_index=rank, num_processes=2)) for rank in (0, 1)]
    assert [len(shard) for shard in shards] == [4, 4]  # 70 rows // (8 x 2)
    rows = torch.cat([batch["index"] for shard in shards for batch in shard])
    assert len(rows) == 64 and len(set(rows.tolist())) == 64
    assert not torch.equal(data.permutation(0), data.permutation(1))
    assert torch.equal(data.permutation(1), DeviceTrainingSet(images, augments, seed=3).permutation(1))
    # One process with the global batch gets the same images and views as the two processes together.
    whole = list(data.batches(0, 0, batch_size=16))
    for number, batch in enumerate(whole):
        assert torch.equal(batch["index"], torch.cat([shards[0][number]["index"], shards[1][number]["index"]]))
        for view, (left, right) in zip(batch["views"], zip(shards[0][number]["views"], shards[1][number]["views"],
                                                           strict=True), strict=True):
            assert torch.equal(view, torch.cat([left, right]))
    first = shards[0][0]
    assert [view.shape for view in first["views"]] == [(8, 3, 32, 32)] * 2 and first["views"][0].dtype == torch.float32
    tail = list(data.batches(0, 2, batch_size=8, process_index=0, num_processes=2))
    for resumed, straight in zip(tail, shards[0][2:], strict=True):
        assert torch.equal(resumed["index"], straight["index"])
        for a, b in zip(resumed["views"], straight["views"], strict=True):
            assert torch.equal(a, b)
    # The global RNG is not used (the model's own draws, e.g. MNN's lambda, stay where they were).
    state = torch.get_rng_state()
    next(data.batches(1, 0, batch_size=8))
    assert torch.equal(torch.get_rng_state(), state)


def test_neighbour_views_come_from_the_mined_table(sample_images):
    """SPPS's neighbour views: one of each image's k mined neighbours, drawn per image and seeded."""
    images = _uint8(sample_images(40))
    strong = DeviceViewAugment("strong", 32, MEAN, STD)
    data = DeviceTrainingSet(images, [strong], seed=0, neighbour_augments=[strong], num_neighbours=2)
    batch = next(data.batches(0, 0, batch_size=16))
    assert torch.equal(batch["neighbour_index"], batch["index"])  # before mining: every image is its own neighbour
    table = torch.stack([(torch.arange(40) + 1) % 40, (torch.arange(40) + 2) % 40], dim=1)
    data.set_neighbours(table)
    batch = next(data.batches(0, 0, batch_size=16))
    offsets = (batch["neighbour_index"] - batch["index"]) % 40
    assert set(offsets.tolist()) == {1, 2} and batch["neighbour_views"][0].shape == (16, 3, 32, 32)
    with pytest.raises(ValueError, match="expected"):
        data.set_neighbours(table[:, :1])


def test_decoding_needs_images_of_one_size(tmp_path):
    import datasets
    from PIL import Image

    pictures = [Image.new("RGB", (32, 32), (200, 10, 10)), Image.new("L", (32, 32), 90), Image.new("RGB", (40, 32))]
    dataset = datasets.Dataset.from_dict({"img": pictures[:2]}).cast_column("img", datasets.Image())
    pixels = decode_to_uint8(dataset, "img")
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 3, 32, 32)
    assert pixels[0, :, 0, 0].tolist() == [200, 10, 10] and pixels[1, :, 0, 0].tolist() == [90, 90, 90]  # RGB
    mixed = datasets.Dataset.from_dict({"img": pictures}).cast_column("img", datasets.Image())
    with pytest.raises(ValueError, match="needs images of one size: row 0 is 32x32, row 2 is 40x32"):
        decode_to_uint8(mixed, "img")


@pytest.mark.parametrize("kinds", [("strong", "weak"), ("byol_blur", "byol_solarize"), ("strong", "strong", "local")])
def test_making_a_batch_of_views_neither_creates_tensors_on_the_host_nor_reads_the_device(kinds):
    """A --data_on_device batch (gather, crops, flips, every photometric op) creates every tensor where the images
    are (run with "meta" as the default device, a tensor made without an explicit device fails against them), builds
    none from Python data and reads no device value on the host: on a GPU each would be a synchronisation."""
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    data = DeviceTrainingSet(images, [DeviceViewAugment(kind, 32, MEAN, STD) for kind in kinds], seed=0)
    rows = data.permutation(0)[:16]
    data.batch(rows, seed=1)  # the first call builds nothing lazily either; the second is counted
    with torch.device("meta"), HostDeviceTraffic() as traffic:
        batch = data.batch(rows, seed=2)
        next(data.batches(1, 0, batch_size=16))
    assert traffic.from_python_data == 0 and traffic.reads == []
    assert [view.device.type for view in batch["views"]] == ["cpu"] * len(kinds)


@pytest.mark.parametrize("kind", ["strong", "weak", "local", "byol_solarize"])
def test_views_trace_as_one_graph_for_torch_compile(kind):
    """With --torch_compile the views are compiled (DeviceTrainingSet.compile_views, fullgraph): dynamo captures the
    whole view without a graph break and gives the eager result ("eager" backend: the capture without inductor's
    code generation, which takes minutes on this CPU)."""
    torch._dynamo.reset()
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    data = DeviceTrainingSet(images, [DeviceViewAugment(kind, 32, MEAN, STD)], seed=0)
    rows = data.permutation(0)
    eager = data.batch(rows, seed=4)["views"][0]
    data.compile_views(backend="eager")
    torch.testing.assert_close(data.batch(rows, seed=4)["views"][0], eager, rtol=0, atol=1e-6)
