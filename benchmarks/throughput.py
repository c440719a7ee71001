"""Training throughput of every method against the hardware limit for that method (and against lightly), in one process.

    python benchmarks/throughput.py --quick --output benchmarks/results/throughput_quick.json
    python benchmarks/throughput.py --output benchmarks/results/throughput.json
    python benchmarks/throughput.py --sweep --output benchmarks/results/throughput_sweep.json

One image = one sample with all its views. "ours" is a full optimiser step of the method's ForPreTraining model
(forward of every view, loss, backward, SGD step, teacher EMA, enqueue: `hf_contrastive.training.training_step`),
built from the method's CIFAR-10 recipe (`recipes/configs/<method>_cifar10.yaml`: bn_splits, views, heads, queue;
since 2026-12-06, `--config_source default` for the config classes' defaults, as before). The "limit" is the
unavoidable work with the same backbone in plain BatchNorm: forward+backward of the inputs the student sees and a
no-grad forward of the inputs the teacher sees (read off the method's own forward: `training_setup.per_view_calls`),
with no heads, queue or loss (`training_setup.limit_step`, as overhead.py's). Where lightly implements the
same method (SimCLR, MoCo v2, BYOL, NNCLR) and is installed (`pip install -e ".[bench]"`), lightly's version, built
as lightly's examples build it on the same backbone, batch and views, is timed the same way. The three step
functions run interleaved (rotating order) and each reports the median over the repeats after warm-up.

Inputs are random tensors of the size each view has in training: `image_size` for strong/weak views,
`image_size // 2` for `local` views (multinet_gl), plus SPPS's neighbour views (`config.neighbour_views`).
Peak memory of one step of each variant: `torch.cuda.max_memory_allocated` on CUDA; on CPU the profiler's memory
timeline (`torch.profiler`, profile_memory=True) of one step, i.e. the largest total of live tensors during the
step (parameters, gradients, optimiser state, activations, queue), not the process RSS.

`--precision bf16` runs every variant's whole step under `torch.autocast(bfloat16)` (what `accelerate launch
--mixed_precision bf16` does to the forward; backward, optimiser and EMA kernels are not autocast ops, so wrapping the
step changes nothing else) and `--channels_last` puts every variant's models and inputs in channels-last layout (the
trainer's `--channels_last`): the GPU setting. Both apply to ours, the limit and lightly alike.

`--sweep` measures our step time against the queue size K (4096, 16384, 65536) and the batch size (64, 128, 256)
for every method with a queue, with the time spent in `nearest_neighbors` and `FeatureQueue.enqueue` per step.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import hf_contrastive
from hf_contrastive.models import modeling_contrastive
from hf_contrastive.models.modeling_contrastive import (
    FeatureQueue,
    build_backbone,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    environment,
    max_rss_mib,
    set_threads,
    summarize,
    synchronize,
    time_interleaved,
    write_json,
)
from training_setup import limit_step, ours_step, per_view_calls, recipe_config, sgd, view_inputs, view_side

# PatchMix's own backbone is a ViT; its official ViT-S/2 (256 tokens, 12 blocks) costs ~10x a CIFAR ResNet-18 per
# image, too much for a CPU benchmark. "tiny": ViT-Ti/4 at 32 px (64 patches + cls, 192-d, 12 blocks, 3 heads),
# about a CIFAR ResNet-18's cost; "official": the method's default backbone.
PATCHMIX_BACKBONES = {
    "tiny": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4, "drop_path_rate": 0.1}),
    # --quick only: ViT-Ti/8 (16 patches), in proportion to the quick run's standard-stem ResNet-18.
    "tiny_quick": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "drop_path_rate": 0.1}),
    "official": (None, None),
}
LIGHTLY_METHODS = ("simclr", "mocov2", "byol", "nnclr")
QUEUE_SIZES = (4096, 16384, 65536)


def build_config(method: str, image_size: int, small_stem: bool, queue_size: int | None = 4096,
                 patchmix_backbone: str = "tiny", config_source: str = "recipe"):
    """The method's config from its CIFAR-10 recipe (``config_source="recipe"``; ``queue_size`` None: the recipe's)
    or its config class's defaults (``"default"``; ``queue_size`` None: 4096), at ``image_size`` with the given stem
    or PatchMix backbone."""
    overrides: dict = {}
    if method == "patchmix":
        backbone, kwargs = PATCHMIX_BACKBONES[patchmix_backbone]
        if backbone is not None:
            overrides.update(backbone=backbone, backbone_kwargs=dict(kwargs))
    else:
        overrides["small_image_stem"] = small_stem
    if config_source == "recipe":
        return recipe_config(method, image_size, queue_size, **overrides)
    spec = hf_contrastive.get_method(method)
    if "queue_size" in spec.config_class().to_dict():
        overrides["queue_size"] = queue_size or 4096
    return spec, spec.config_class(image_size=image_size, **overrides)


def lightly_available() -> tuple[bool, str]:
    try:
        import lightly
        from lightly.loss import NTXentLoss  # noqa: F401
        from lightly.models.modules import NNMemoryBankModule  # noqa: F401
    except ImportError as error:
        return False, (f"lightly is not installed ({error}); install the benchmark extra with "
                       "`pip install -e \".[bench]\"` to compare with it.")
    return True, f"lightly {lightly.__version__}"


def build_lightly(method: str, config, views, device):
    """lightly's version of ``method`` as lightly's examples (examples/pytorch/<method>.py) build it, on our
    backbone (timm ResNet-18 with the same stem, `build_backbone`), our head widths and temperature, and the same
    views, optimiser and batch. Returns (step, modules, optimizer, description)."""
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import (
        BYOLPredictionHead,
        BYOLProjectionHead,
        MoCoProjectionHead,
        NNCLRPredictionHead,
        NNMemoryBankModule,
        SimCLRProjectionHead,
    )
    from lightly.models.modules.heads import ProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    torch.manual_seed(0)
    backbone = build_backbone(config)
    features = backbone.num_features
    hidden, dim = config.projection_hidden_size, config.projection_dim
    x0, x1 = views

    if method == "simclr":
        class SimCLR(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                self.projection_head = SimCLRProjectionHead(features, hidden, dim)

            def forward(self, x):
                return self.projection_head(self.backbone(x).flatten(start_dim=1))

        model = SimCLR().to(device).train()
        criterion = NTXentLoss(temperature=config.tau)
        optimizer = sgd(model.parameters(), x0.shape[0])

        def step() -> None:
            loss = criterion(model(x0), model(x1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        return step, [model, criterion], optimizer, "SimCLRProjectionHead (2 layers, BN) + NTXentLoss"

    if method in ("mocov2", "byol"):
        class Momentum(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                if method == "mocov2":
                    self.projection_head = MoCoProjectionHead(features, hidden, dim)
                else:
                    self.projection_head = BYOLProjectionHead(features, hidden, dim)
                    self.prediction_head = BYOLPredictionHead(dim, config.projection_hidden_size, dim)
                self.backbone_momentum = copy.deepcopy(self.backbone)
                self.projection_head_momentum = copy.deepcopy(self.projection_head)
                deactivate_requires_grad(self.backbone_momentum)
                deactivate_requires_grad(self.projection_head_momentum)

            def forward(self, x):
                z = self.projection_head(self.backbone(x).flatten(start_dim=1))
                return self.prediction_head(z) if method == "byol" else z

            def forward_momentum(self, x):
                return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

        model = Momentum().to(device).train()
        if method == "mocov2":
            criterion = NTXentLoss(temperature=config.tau, memory_bank_size=(config.queue_size, dim))
            description = ("MoCoProjectionHead + NTXentLoss(memory_bank_size) (the memory bank), symmetric loss as "
                           "lightly's CIFAR-10 benchmark, update_momentum")
        else:
            criterion = NegativeCosineSimilarity()
            description = "BYOLProjectionHead + BYOLPredictionHead + NegativeCosineSimilarity, update_momentum"
        criterion = criterion.to(device)
        optimizer = sgd(model.parameters(), x0.shape[0])
        momentum = config.ema_momentum

        def step() -> None:
            update_momentum(model.backbone, model.backbone_momentum, m=momentum)
            update_momentum(model.projection_head, model.projection_head_momentum, m=momentum)
            p0, p1 = model(x0), model(x1)
            z0, z1 = model.forward_momentum(x0), model.forward_momentum(x1)
            loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        return step, [model, criterion], optimizer, description

    if method == "nnclr":
        class NNCLR(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                # Our projector's layout (Linear-BN-ReLU-Linear) through lightly's ProjectionHead: lightly's
                # NNCLRProjectionHead has a third 2048x2048 layer, which would be another model, not another library.
                self.projection_head = ProjectionHead([
                    (features, hidden, nn.BatchNorm1d(hidden), nn.ReLU()),
                    (hidden, dim, None, None),
                ])
                self.prediction_head = NNCLRPredictionHead(dim, config.prediction_hidden_size, dim)

            def forward(self, x):
                z = self.projection_head(self.backbone(x).flatten(start_dim=1))
                return z.detach(), self.prediction_head(z)

        model = NNCLR().to(device).train()
        memory_bank = NNMemoryBankModule(size=(config.queue_size, dim)).to(device)
        criterion = NTXentLoss(temperature=config.tau)
        optimizer = sgd(model.parameters(), x0.shape[0])

        def step() -> None:
            (z0, p0), (z1, p1) = model(x0), model(x1)
            z0 = memory_bank(z0, update=False)
            z1 = memory_bank(z1, update=True)
            loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        return step, [model, memory_bank], optimizer, ("ProjectionHead (our 2-layer layout) + NNCLRPredictionHead + "
                                                       "NNMemoryBankModule + NTXentLoss")
    raise ValueError(f"lightly has no {method}")


def apply_setting(variants: dict, device: torch.device, precision: str, channels_last: bool) -> dict:
    """The same precision and memory layout for every variant: models to channels-last (the inputs were made so by
    `training_setup.view_inputs`), each step under autocast. Returns ``variants`` with wrapped steps."""
    if channels_last:
        for _, modules, _ in variants.values():
            for module in modules:
                # Module.to swaps .data, so the optimisers built before keep the same Parameter objects.
                module.to(memory_format=torch.channels_last)
    if precision == "fp32":
        return variants
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def autocast(step):
        def wrapped() -> None:
            with torch.autocast(device.type, dtype=dtype):
                step()
        return wrapped

    return {name: (autocast(step), *rest) for name, (step, *rest) in variants.items()}


# ----------------------------------------------------------------------------- memory


def _tensor_mib(modules: list[nn.Module], optimizer: torch.optim.Optimizer | None) -> float:
    """Parameters, buffers and optimiser state held between steps (each storage once)."""
    seen, total = set(), 0
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return round(total / 2**20, 1)


def peak_memory(step: Callable[[], None], device: torch.device, modules: list[nn.Module],
                optimizer: torch.optim.Optimizer | None) -> dict:
    """Peak of live tensor memory during one step (run after warm-up, so optimiser state exists)."""
    state_mib = _tensor_mib(modules, optimizer)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)  # every variant's models live on the device at once
        step()
        synchronize(device)
        extra_mib = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        return {"peak_mib": round(state_mib + extra_mib, 1), "state_mib": state_mib,
                "how": "torch.cuda.max_memory_allocated over one step, minus what was allocated before it, plus "
                       "this variant's state"}
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export_memory_timeline is deprecated in favour of CUDA-only tools
        path = Path(folder) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    peak = max((sum(s) for s in sizes), default=0) / 2**20
    return {"peak_mib": round(max(peak, state_mib), 1), "state_mib": state_mib,
            "how": "torch.profiler memory timeline of one step (largest total of live CPU tensors)"}


# ----------------------------------------------------------------------------- main table


def measure(method: str, batch: int, image_size: int, small_stem: bool, repeats: int, warmup: int,
            device: torch.device, patchmix_backbone: str = "tiny", with_lightly: bool = True,
            with_memory: bool = True, precision: str = "fp32", channels_last: bool = False,
            config_source: str = "recipe") -> dict:
    spec, config = build_config(method, image_size, small_stem, queue_size=None, patchmix_backbone=patchmix_backbone,
                                config_source=config_source)
    generator = torch.Generator().manual_seed(0)
    inputs = view_inputs(config, batch, generator, device, channels_last=channels_last)
    # Which inputs reach the student and the teacher(s): read off the method's own forward, one call per view.
    route = per_view_calls(spec, config, inputs)
    variants = {"ours": ours_step(spec, config, inputs, device, progress=None),
                "limit": limit_step(spec, config, route, device, generator)}
    lightly_note = None
    if with_lightly and method in LIGHTLY_METHODS:
        ok, lightly_note = lightly_available()
        if ok:
            step, modules, optimizer, lightly_note = build_lightly(method, config, inputs["views"], device)
            variants["lightly"] = (step, modules, optimizer)
    variants = apply_setting(variants, device, precision, channels_last)
    timings = time_interleaved({name: v[0] for name, v in variants.items()}, repeats, warmup, device)
    row = {
        "method": method, "backbone": config.backbone, "backbone_kwargs": config.backbone_kwargs,
        "small_image_stem": config.small_image_stem, "image_size": config.image_size, "batch": batch,
        "config_source": config_source, "bn_splits": getattr(config, "bn_splits", None),
        "queue_size": getattr(config, "queue_size", None),
        "views": config.views, "view_sides": [view_side(k, config.image_size) for k in config.views],
        "neighbour_views": list(getattr(config, "neighbour_views", None) or []),
        "student_calls": [list(shape[-2:]) for shape in route["student"]],
        "teacher_calls": [list(shape[-2:]) for shape in route["teacher"]],
        "student_views": len(route["student"]), "teacher_views": len(route["teacher"]),
        "timings": timings,
    }
    for name, timing in timings.items():
        row[f"{name}_step_s"] = timing["median_s"]
        row[f"{name}_images_per_s"] = round(batch / timing["median_s"], 2)
    row["ours_over_limit"] = round(row["limit_step_s"] / row["ours_step_s"], 3)
    if "lightly" in timings:
        row["ours_over_lightly"] = round(row["lightly_step_s"] / row["ours_step_s"], 3)
    if lightly_note:
        row["lightly_build"] = lightly_note
    if with_memory:
        row["memory"] = {name: peak_memory(step, device, modules, optimizer)
                         for name, (step, modules, optimizer) in variants.items()}
    return row


# ----------------------------------------------------------------------------- sweeps


class QueueOpTimer(contextlib.AbstractContextManager):
    """Times every `nearest_neighbors` and `FeatureQueue.enqueue` call while active (wrappers around the originals;
    the modeling modules import `nearest_neighbors` by name, so each module's reference is replaced)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.neighbour_s = 0.0
        self.enqueue_s = 0.0
        self._patched: list[tuple[object, str, object]] = []

    def reset(self) -> None:
        self.neighbour_s = self.enqueue_s = 0.0

    def _timed(self, function, counter: str):
        def wrapper(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            synchronize(self.device)
            setattr(self, counter, getattr(self, counter) + time.perf_counter() - start)
            return result
        return wrapper

    def __enter__(self):
        original = modeling_contrastive.nearest_neighbors
        for module in list(sys.modules.values()):
            if (getattr(module, "__name__", "") or "").startswith("hf_contrastive") and \
                    getattr(module, "nearest_neighbors", None) is original:
                self._patched.append((module, "nearest_neighbors", original))
                module.nearest_neighbors = self._timed(original, "neighbour_s")
        self._patched.append((FeatureQueue, "enqueue", FeatureQueue.enqueue))
        FeatureQueue.enqueue = self._timed(FeatureQueue.enqueue, "enqueue_s")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()
        return False


def sweep_point(method: str, batch: int, queue_size: int, image_size: int, small_stem: bool, repeats: int,
                warmup: int, device: torch.device, patchmix_backbone: str, precision: str = "fp32",
                channels_last: bool = False, config_source: str = "recipe") -> dict:
    spec, config = build_config(method, image_size, small_stem, queue_size=queue_size,
                                patchmix_backbone=patchmix_backbone, config_source=config_source)
    inputs = view_inputs(config, batch, torch.Generator().manual_seed(0), device, channels_last=channels_last)
    variants = {"ours": ours_step(spec, config, inputs, device, progress=None)}
    step = apply_setting(variants, device, precision, channels_last)["ours"][0]
    for _ in range(warmup):
        step()
    records = []
    with QueueOpTimer(device) as timer:
        for _ in range(repeats):
            timer.reset()
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            records.append((time.perf_counter() - start, timer.neighbour_s, timer.enqueue_s))
    records.sort(key=lambda r: r[0])
    median = records[len(records) // 2]
    fractions = sorted((n + e) / s for s, n, e in records)
    return {
        "method": method, "batch": batch, "queue_size": queue_size,
        "step": summarize([r[0] for r in records]),
        "step_s": round(median[0], 5), "images_per_s": round(batch / median[0], 2),
        "neighbour_search_s": round(median[1], 6), "enqueue_s": round(median[2], 6),
        "queue_ops_fraction": round(fractions[len(fractions) // 2], 5),
    }


def queue_methods(methods: list[str], patchmix_backbone: str, config_source: str) -> list[str]:
    """The methods whose model holds a FeatureQueue (SPPS only with base=mocov2)."""
    found = []
    for method in methods:
        spec, config = build_config(method, 32, False, patchmix_backbone=patchmix_backbone,
                                    config_source=config_source)
        if "queue_size" not in config.to_dict():
            continue
        model = spec.pretraining_class(config)
        if any(isinstance(m, FeatureQueue) for m in model.modules()):
            found.append(method)
    return found


def run_sweep(args, setting: dict, device: torch.device) -> dict:
    methods = queue_methods(args.methods, args.patchmix_backbone, args.config_source)
    skipped = sorted(set(args.methods) - set(methods))
    if skipped:
        print(f"no queue, not swept: {', '.join(skipped)}")
    common_kwargs = {"image_size": setting["image_size"], "small_stem": setting["small_stem"],
                     "repeats": setting["repeats"], "warmup": setting["warmup"], "device": device,
                     "patchmix_backbone": args.patchmix_backbone, "precision": setting["precision"],
                     "channels_last": setting["channels_last"], "config_source": args.config_source}
    queue_rows, batch_rows = [], []
    for method in methods:
        for queue_size in setting["queue_sizes"]:
            row = sweep_point(method, setting["batch"], queue_size, **common_kwargs)
            queue_rows.append(row)
            print(f"{method:18s} B {row['batch']:4d} K {queue_size:6d}  step {row['step_s']:7.3f} s  "
                  f"neighbours+enqueue {100 * row['queue_ops_fraction']:5.2f}% of the step")
        for batch in setting["batch_sizes"]:
            row = sweep_point(method, batch, setting["sweep_batch_queue_size"], **common_kwargs)
            batch_rows.append(row)
            print(f"{method:18s} B {batch:4d} K {row['queue_size']:6d}  step {row['step_s']:7.3f} s  "
                  f"{row['images_per_s']:8.1f} img/s  neighbours+enqueue {100 * row['queue_ops_fraction']:5.2f}%")
    return {"queue_sweep": queue_rows, "batch_sweep": batch_rows, "not_swept_no_queue": skipped}


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="Batch 32, standard stem, 3 repeats after 1 warm-up: a smoke run (about a minute).")
    parser.add_argument("--sweep", action="store_true",
                        help="Step time vs queue size and batch size for the methods with a queue (instead of the "
                             "main table).")
    parser.add_argument("--methods", nargs="*", default=hf_contrastive.available_methods())
    parser.add_argument("--output", default=None,
                        help="JSON path (default benchmarks/results/throughput[_sweep][_quick].json).")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:N].")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--batch", type=int, default=None, help="Override the batch size of the setting.")
    parser.add_argument("--repeats", type=int, default=None, help="Timed steps per variant (median reported).")
    parser.add_argument("--warmup", type=int, default=None, help="Untimed steps per variant first.")
    parser.add_argument("--queue_sizes", type=int, nargs="*", default=list(QUEUE_SIZES), help="--sweep: K values.")
    parser.add_argument("--batch_sizes", type=int, nargs="*", default=None,
                        help="--sweep: batch sizes (default 64 128 256; --quick 16 32 64).")
    parser.add_argument("--patchmix_backbone", choices=sorted(PATCHMIX_BACKBONES), default=None,
                        help="tiny (default): ViT-Ti/4 at 32 px, affordable on CPU; tiny_quick (--quick default): "
                             "ViT-Ti/8; official: PatchMix's own ViT-S/2.")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="bf16/fp16: every variant's step under torch.autocast (the GPU setting; fp16 without a "
                             "loss scaler, for timing only).")
    parser.add_argument("--channels_last", action="store_true",
                        help="Every variant's models and inputs in channels-last layout (the trainer's flag).")
    parser.add_argument("--config_source", choices=("recipe", "default"), default="recipe",
                        help="recipe (default): each method's recipes/configs/<method>_cifar10.yaml model section "
                             "(bn_splits, views, heads, queue), what users run; default: the config class's defaults "
                             "(bn_splits 1, queue 4096), as this benchmark measured before 2026-12-06.")
    parser.add_argument("--no_lightly", action="store_true", help="Skip the lightly comparison.")
    parser.add_argument("--no_memory", action="store_true", help="Skip the peak-memory measurement.")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods) - set(hf_contrastive.available_methods()))
    if unknown:
        parser.error(f"unknown methods {unknown}; available: {hf_contrastive.available_methods()}")
    set_threads(args.threads)
    if args.patchmix_backbone is None:
        args.patchmix_backbone = "tiny_quick" if args.quick else "tiny"
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if args.quick:
        setting = {"batch": 32, "image_size": 32, "small_stem": False, "repeats": 3, "warmup": 1}
    else:
        setting = {"batch": 128, "image_size": 32, "small_stem": True, "repeats": 5, "warmup": 2}
    if args.sweep:
        setting.update(repeats=3, warmup=1, queue_sizes=list(args.queue_sizes),
                       batch_sizes=args.batch_sizes or ([16, 32, 64] if args.quick else [64, 128, 256]),
                       sweep_batch_queue_size=4096)
    for name in ("batch", "repeats", "warmup"):
        if getattr(args, name) is not None:
            setting[name] = getattr(args, name)
    setting.update(precision=args.precision, channels_last=args.channels_last, config_source=args.config_source)
    backbone, kwargs = PATCHMIX_BACKBONES[args.patchmix_backbone]
    setting["patchmix_backbone"] = {"name": args.patchmix_backbone, "backbone": backbone or "method default",
                                    "backbone_kwargs": kwargs}
    output = args.output or (f"benchmarks/results/throughput{'_sweep' if args.sweep else ''}"
                             f"{'_quick' if args.quick else ''}.json")

    started = time.perf_counter()
    report = {"benchmark": "throughput_sweep" if args.sweep else "throughput", **environment(device),
              "quick": args.quick, "setting": setting}
    if args.sweep:
        report.update(run_sweep(args, setting, device))
    else:
        ok, note = lightly_available()
        report["lightly"] = note if not args.no_lightly else "skipped (--no_lightly)"
        if not ok and not args.no_lightly:
            print(f"lightly comparison skipped: {note}")
        results = []
        for method in args.methods:
            row = measure(method, setting["batch"], setting["image_size"], setting["small_stem"], setting["repeats"],
                          setting["warmup"], device, args.patchmix_backbone, with_lightly=not args.no_lightly,
                          with_memory=not args.no_memory, precision=args.precision,
                          channels_last=args.channels_last, config_source=args.config_source)
            results.append(row)
            extra = ""
            if "ours_over_lightly" in row:
                extra = f"   lightly {row['lightly_images_per_s']:7.1f} img/s   ours/lightly {row['ours_over_lightly']:.3f}"
            if "memory" in row:
                extra += f"   peak {row['memory']['ours']['peak_mib']:.0f} MiB"
            print(f"{method:18s} ours {row['ours_images_per_s']:7.1f} img/s   limit {row['limit_images_per_s']:7.1f} "
                  f"img/s   ours/limit {row['ours_over_limit']:.3f}{extra}", flush=True)
        report["results"] = results
    report["max_rss_mib"] = max_rss_mib()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(output, report)


if __name__ == "__main__":
    main()
