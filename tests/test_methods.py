"""Every registered method, on real CIFAR-10 images: it trains (finite loss that falls on a short run), it runs
through the real training loop, and its Hub folder loads through AutoModel in a process without hf_contrastive.

Method-specific behaviour (which keys are enqueued, forward == loss of recomputed outputs, ...) is tested in
tests/test_method_<name>.py. The backbone here uses the standard ResNet stem at 32 px (16x cheaper than the
small-image stem) to keep the suite fast; the small-image stem is exercised by the MNN tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from host_device_traffic import HostDeviceTraffic

import hf_contrastive
from hf_contrastive import data as data_lib
from hf_contrastive.hub import CardContext, save_hub_folder
from hf_contrastive.training import parse_args, train, training_step

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"
MEAN, STD = data_lib.DATASET_STATS["cifar10"]
METHODS = hf_contrastive.available_methods()
# Methods whose default backbone is too slow for the suite (PatchMix: ViT-S/2) get a tiny one of the same family.
SMALL_BACKBONES = {"patchmix": {"backbone": "vit_tiny_patch16_224",
                                "backbone_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2}}}


def small_config(name: str, **extra):
    """The method's config with small heads and queues (only the fields the method has)."""
    spec = hf_contrastive.get_method(name)
    fields = spec.config_class().to_dict()
    wanted = {"projection_hidden_size": 128, "prediction_hidden_size": 128, "projection_dim": 32, "queue_size": 256,
              "small_image_stem": False, **SMALL_BACKBONES.get(name, {}), **extra}
    return spec, spec.config_class(**{key: value for key, value in wanted.items() if key in fields})


@pytest.fixture(scope="module")
def real_images():
    splits = data_lib.load_image_dataset(str(SAMPLE), max_train_samples=32)
    return [data_lib.decode_image(row, index=i) for i, row in enumerate(splits.train[splits.image_column])]


def make_views(config, images, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    views = []
    for kind in config.views:
        transform = data_lib.build_view_transform(kind, config.image_size, MEAN, STD)
        views.append(torch.stack([transform(image) for image in images]))
    return views


def test_every_method_is_registered():
    assert set(METHODS) >= {"mnn"}
    for name in METHODS:
        spec = hf_contrastive.get_method(name)
        assert spec.config_class.model_type == name
        assert spec.status in ("implemented", "reconstruction")
        assert spec.arxiv and spec.paper and spec.bibtex.strip().startswith("@")


def test_every_method_module_is_discovered_and_has_its_places():
    """Methods are found from hf_contrastive/methods/*.py (no hand-kept list): each one has a CIFAR-10 recipe that
    trains it, a row in README's method table, its arXiv id in docs/methods.md and a linear protocol the probe knows."""
    import yaml

    from hf_contrastive.evaluation.linear import LINEAR_PROTOCOLS

    modules = sorted(path.stem for path in (REPO_ROOT / "hf_contrastive" / "methods").glob("*.py")
                     if path.stem != "__init__")
    assert modules == sorted(METHODS)
    readme, methods_doc = (REPO_ROOT / "README.md").read_text(), (REPO_ROOT / "docs" / "methods.md").read_text()
    for name in METHODS:
        recipe = yaml.safe_load((REPO_ROOT / "recipes" / "configs" / f"{name}_cifar10.yaml").read_text())
        assert recipe["method"] == name, name
        assert f"| `{name}` |" in readme, name
        assert f"arXiv {hf_contrastive.get_method(name).arxiv}" in methods_doc, name
        assert hf_contrastive.get_method(name).linear_protocol in LINEAR_PROTOCOLS, name


# A value out of range for each shared field, and the message every method must give for it.
SHARED_FIELD_ERRORS = {
    "projection_dim": (0, "projection_dim must be >= 1, got 0"),
    "projection_hidden_size": (-1, "projection_hidden_size must be >= 1, got -1"),
    "tau": (0.0, "tau must be > 0, got 0.0"),
    "ema_momentum": (1.0, r"ema_momentum must be in \[0, 1\), got 1.0"),
}


@pytest.mark.parametrize("name", METHODS)
def test_every_config_rejects_shared_fields_out_of_range_with_one_message(name):
    """The range checks are shared (ContrastiveConfig.check_*), so a bad value reads the same in every method,
    and a wrong number of views names the method."""
    config_class = hf_contrastive.get_method(name).config_class
    fields = config_class().to_dict()
    for field, (bad_value, message) in SHARED_FIELD_ERRORS.items():
        if field in fields and not isinstance(fields[field], list):
            with pytest.raises(ValueError, match=message):
                config_class(**{field: bad_value})
    with pytest.raises(ValueError, match=r"views"):
        config_class(views=["strong"])


def _queues(model) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers() if ".features" in name or name.endswith("features")}


@pytest.mark.parametrize("name", METHODS)
def test_method_loss_is_finite_and_falls(name, real_images):
    """8 optimiser steps on one real batch (queues and teachers updated as in the loop) lower the loss measured
    on that batch. The measurement uses the queues as they were at the start, since queue-relational losses
    (ReSSL, MSVQ) are measured against the queue and a queue filling with real keys changes the reference."""
    torch.manual_seed(0)
    spec, config = small_config(name)
    model = spec.pretraining_class(config)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    views = make_views(config, real_images)
    initial_queues = _queues(model)

    def measured_loss() -> float:
        current = _queues(model)
        model.load_state_dict(initial_queues, strict=False)
        torch.manual_seed(1)  # the same random draws (e.g. MNN's lambda) for both measurements
        with torch.no_grad():
            loss = model(views=views).loss.item()
        model.load_state_dict(current, strict=False)
        return loss

    before = measured_loss()
    for _ in range(8):
        outputs = model(views=views)
        assert outputs.loss.dim() == 0 and torch.isfinite(outputs.loss)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.momentum_update()
        if outputs.queue_keys:
            model.enqueue(outputs.queue_keys)
    after = measured_loss()
    assert after < before, (before, after)
    # teacher_* attributes and the EMA side of teacher_pairs (PatchMix's momentum encoder is its ``encoder``)
    teachers = [p for n, p in model.named_parameters() if n.startswith("teacher_")]
    teachers += [p for teacher, _, _ in model.teacher_pairs() for p in teacher.parameters()]
    assert not any(p.requires_grad for p in teachers)


@pytest.mark.parametrize("name", METHODS)
def test_method_runs_through_the_training_loop(name, tmp_path):
    spec, config = small_config(name)
    overrides = {k: v for k, v in config.to_dict().items()
                 if k in ("projection_hidden_size", "prediction_hidden_size", "projection_dim", "queue_size",
                          "small_image_stem", "backbone", "backbone_kwargs")}
    args = parse_args([
        "--method", name, "--dataset_name", str(SAMPLE), "--max_train_samples", "64", "--max_eval_samples", "32",
        "--per_device_train_batch_size", "16", "--max_train_steps", "2", "--dataloader_num_workers", "0",
        "--report_to", "none", "--output_dir", str(tmp_path),
        "--config_overrides", ",".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()),
    ])
    results = train(args)
    assert results["method"] == name and results["global_step"] == 2
    assert torch.isfinite(torch.tensor(results["final_loss"]))
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_every_hub_folder_loads_without_the_package(tmp_path, real_images):
    """One child process (hf_contrastive made unimportable) loads every method's folder with remote code."""
    pixels = make_views(hf_contrastive.MNNConfig(), real_images[:4])[0]
    torch.save(pixels, tmp_path / "pixels.pt")
    expected = {}
    for name in METHODS:
        spec, config = small_config(name)
        model = spec.pretraining_class(config).eval()
        context = CardContext(dataset_name=str(SAMPLE), dataset_stats="cifar10", train_samples=32, epochs=0.0,
                              global_batch_size=32, command="pytest", knn_top1=None, eval_split="test")
        save_hub_folder(model, spec, tmp_path / name, image_mean=MEAN, image_std=STD, context=context)
        with torch.no_grad():
            expected[name] = model.encoder(pixels).pooler_output
        torch.save(expected[name], tmp_path / f"{name}.pt")
    child = f"""
import sys
sys.modules["hf_contrastive"] = None
import torch
from transformers import AutoModel
pixels = torch.load({str(tmp_path / 'pixels.pt')!r})
for name in {METHODS!r}:
    encoder = AutoModel.from_pretrained({str(tmp_path)!r} + "/" + name, trust_remote_code=True).eval()
    assert "hf_contrastive" not in type(encoder).__module__, type(encoder).__module__
    with torch.no_grad():
        got = encoder(pixel_values=pixels).pooler_output
    want = torch.load({str(tmp_path)!r} + "/" + name + ".pt")
    assert torch.allclose(got, want, atol=1e-5), name
    print("loaded", name)
"""
    completed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=tmp_path,
                               env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")},
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for name in METHODS:
        assert f"loaded {name}" in completed.stdout


def test_reconstructions_say_so_in_config_docs_metadata_and_card():
    """The four methods built from abstracts only are marked everywhere a user looks."""
    reconstructions = {name for name in METHODS if hf_contrastive.get_method(name).status == "reconstruction"}
    assert reconstructions == {"sscl", "potential_samples", "multinet_gl", "spps"}
    for name in METHODS:
        spec, config = small_config(name)
        docs = " ".join(spec.config_class.__doc__.split())
        context = CardContext(dataset_name=str(SAMPLE), dataset_stats="cifar10", train_samples=32, epochs=0.0,
                              global_batch_size=32, command="pytest", knn_top1=None, eval_split="test")
        from hf_contrastive.hub import render_model_card

        card = " ".join(render_model_card(spec, spec.pretraining_class(config), context, None).text.split())
        marked = "built from the abstract" in card and "not been verified against the paper's tables" in card
        assert marked == (name in reconstructions), name
        if name in reconstructions:
            assert "built from the abstract" in docs and "not verified against the paper" in docs, name


@pytest.mark.parametrize("bn_splits", [1, 2])
@pytest.mark.parametrize("name", METHODS)
def test_stacked_views_give_the_loss_and_gradients_of_one_call_per_view(name, bn_splits, real_images):
    """stack_views (the default: one backbone call per network for the views of one shape) against one call per
    view, on the same weights, real views and random draws, in float64: the same loss, queue keys and gradient of
    every parameter. Only the BatchNorm running statistics may differ (one update per call instead of per view)."""
    if name == "patchmix" and bn_splits > 1:
        pytest.skip("PatchMix's ViT has no BatchNorm to split")
    results, encoder_calls = [], []
    for stack_views in (True, False):
        torch.manual_seed(0)
        spec, config = small_config(name, bn_splits=bn_splits, stack_views=stack_views)
        model = spec.pretraining_class(config).double().train()
        views = [view.double() for view in make_views(config, real_images[:16])]
        calls = []
        for module in model.modules():
            if isinstance(module, hf_contrastive.models.ContrastiveModel):
                module.register_forward_pre_hook(lambda module, args, calls=calls: calls.append(1))
        torch.manual_seed(1)  # the same random draws (shuffle-BN permutations, mixing, lambdas) in both
        outputs = model(views=views)
        outputs.loss.backward()
        results.append((outputs, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
        encoder_calls.append(len(calls))
    (stacked, stacked_grads), (per_view, per_view_grads) = results
    # MSF and ReSSL send one view to each network (asymmetric by default): nothing to stack.
    assert encoder_calls[0] < encoder_calls[1] or name in ("msf", "ressl"), encoder_calls
    torch.testing.assert_close(stacked.loss, per_view.loss, rtol=1e-10, atol=1e-12)
    for queue, keys in (per_view.queue_keys or {}).items():
        torch.testing.assert_close(stacked.queue_keys[queue], keys, rtol=1e-9, atol=1e-11)
    assert stacked_grads.keys() == per_view_grads.keys() and per_view_grads
    for parameter, grad in per_view_grads.items():
        torch.testing.assert_close(stacked_grads[parameter], grad, rtol=1e-7, atol=1e-9, msg=parameter)


@pytest.mark.parametrize("name", METHODS)
def test_a_training_step_neither_creates_tensors_on_the_host_nor_reads_the_device(name, real_images):
    """A whole training step as the loop runs it (forward, backward, SGD, EMA, enqueue) creates every tensor where
    the model is: run with "meta" as the default device, any tensor made without an explicit device (a CPU arange
    or randperm moved to the GPU in every step) becomes a meta tensor and fails against the model's. And it builds
    no tensor from Python data and reads no device value on the host: on a GPU each would be a synchronisation in
    every step. (MoCHi reads its warm-up clock once per run: in the first step here.)"""
    extra = {} if name == "patchmix" else {"bn_splits": 2}
    if name == "mochi":
        extra["mix_start_step"] = 1
    spec, config = small_config(name, **extra)
    model = spec.pretraining_class(config).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    views = make_views(config, real_images[:8])

    def step():
        training_step(model, optimizer, {"views": views}, progress=0.5)

    step()  # the first step creates the optimiser state
    with torch.device("meta"), HostDeviceTraffic() as traffic:
        step()
    assert traffic.from_python_data == 0 and traffic.reads == []


@pytest.mark.parametrize("name", METHODS)
def test_forward_and_teacher_queue_update_trace_as_whole_graphs(name, real_images):
    """torch.compile can capture the step without graph breaks (fullgraph=True fails on any): the pretraining
    forward (encoders, heads, loss, random draws) and the after-step update (teacher EMA and enqueue). Traced with
    the "eager" backend: dynamo's capture without inductor's code generation, which takes minutes on this CPU."""
    torch._dynamo.reset()
    # One block per stage (tracing time grows with the ops traced; the graph has every kind of op either way).
    extra = {} if name == "patchmix" else {"bn_splits": 2, "backbone_kwargs": {"layers": [1, 1, 1, 1]}}
    spec, config = small_config(name, **extra)
    model = spec.pretraining_class(config).train()
    views = make_views(config, real_images[:8])
    outputs = torch.compile(model, backend="eager", fullgraph=True)(views=views)
    assert torch.isfinite(outputs.loss)

    def update(keys, progress):
        model.momentum_update(progress=progress)
        if keys:
            model.enqueue(keys)

    torch.compile(update, backend="eager", fullgraph=True)(outputs.queue_keys, 0.5)


@pytest.mark.parametrize("name, schedule", [("byol", "cosine"), ("mnn", "constant")])
def test_compiled_ema_does_not_recompile_as_the_momentum_changes(name, schedule):
    """--torch_compile compiles the after-step EMA; its progress changes every step (BYOL's cosine momentum with
    it). Dynamo specialises on the first value and makes it symbolic at the second: two graphs for any number of
    steps, not one per step ("eager" backend: the capture alone)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    spec, config = small_config(name, backbone_kwargs={"layers": [1, 1, 1, 1]}, ema_momentum_schedule=schedule)
    model = spec.pretraining_class(config)
    update = torch.compile(model.momentum_update, backend="eager", fullgraph=True)
    for step in range(1, 6):
        update(progress=step / 10)
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])
