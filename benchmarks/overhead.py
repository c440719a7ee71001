"""How far each method's training step is from the bare work it cannot avoid, at its CIFAR-10 recipe's settings.

    python benchmarks/overhead.py --output benchmarks/results/overhead.json
    python benchmarks/overhead.py --methods mnn byol --proxy_repeats 0          # op counts only (seconds)

Two measures that transfer from this CPU to a fast GPU, where a step of small CIFAR images is bound by kernel
launches rather than arithmetic (the H100 step times fit 5.4 ms + 36 us x launches):

- **op ratio** (deterministic): aten operations that launch work in one training step of ours, over the same count
  for the *limit*. Views, metadata and allocation-only ops are not counted. On a GPU each counted op is at least one
  kernel launch.
- **cheap-conv proxy** (timed): every convolution of both variants becomes a 1x1 convolution with the same channels
  and stride, and every head is 64 wide (same layers; since 2026-12-06), at a small image and batch on one thread,
  so the per-op cost dominates as on a fast GPU; the limit's median step time over ours, the two interleaved in one
  process (a ratio, never an absolute time).

"ours" is one full optimiser step as `recipes/train.py` runs it: the method's ForPreTraining model built from
``recipes/configs/{method}_cifar10.yaml`` (bn_splits, views, heads, queue), forward of all views, loss, backward,
SGD (foreach, the CUDA default), teacher EMA and enqueue. The "limit" is the unavoidable work with the same
backbone in plain BatchNorm (bn_splits 1): forward+backward of every input the student sees, a no-grad forward of
every input a teacher sees (both read off the method's own forward with one encoder call per view, with hooks, so a
new method needs no table), one call per input, and the same SGD over the backbone. ``ops_limit_stacked`` counts the
same bare work with the inputs of one shape and side in one call: the fewest launches the backbone allows, which
ours approaches since it stacks views (``stack_views``). Both measures use a smaller image (``--image_size``; CNNs only, a ViT
keeps its patch grid) and queue (``--queue_size``) than the recipe; neither changes which ops run.

On a GPU, ``--timed_repeats N --device cuda [--precision bf16] [--compile]`` also times the real step at the
recipe's image size, batch and queue against the per-view limit (images/s, interleaved) and checks that one step
runs under ``torch.cuda.set_sync_debug_mode("error")`` (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import hf_contrastive
from hf_contrastive import data as data_lib
from hf_contrastive import device_views
from hf_contrastive.training import Pretrainer, parse_args, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO_ROOT,
    environment,
    set_threads,
    synchronize,
    time_interleaved,
    write_json,
)
from training_setup import (  # noqa: E402
    RECIPES,
    StepTimes,
    limit_step,
    ours_step,
    per_view_calls,
    recipe_config,
    stacked_calls,
    view_inputs,
)

SAMPLE = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"
CHEAP_HEAD_WIDTH = 64  # hidden and output width of every head in the cheap-convolution proxy
# Ops that launch no work: allocation, aliasing and metadata.
NOT_WORK = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias", "lift_fresh",
            "_unsafe_view", "set_", "is_same_size", "_has_compatible_shallow_copy_type", "_to_copy_noop"}


class OpCounter(TorchDispatchMode):
    """Counts the aten ops that launch work (see NOT_WORK; view ops are skipped too) and the tensors created from
    Python data (``torch.tensor(...)``: ``lift_fresh``), which on an accelerator are a host-to-device copy."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.from_python_data = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("lift_fresh", "lift_fresh_copy"):
            self.from_python_data += 1
        elif not func.is_view and name not in NOT_WORK:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def code_version() -> str:
    """The git commit of the hf_contrastive that runs (``+changes`` when the package differs from it), or "unknown"."""
    root = Path(hf_contrastive.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "hf_contrastive"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def cheap_convolutions(module: nn.Module) -> nn.Module:
    """Every Conv2d becomes a 1x1 Conv2d with the same channels, stride and groups (the proxy's cheap backbone)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.kernel_size != (1, 1):
            setattr(module, name, nn.Conv2d(child.in_channels, child.out_channels, 1, child.stride,
                                            groups=child.groups, bias=child.bias is not None))
        else:
            cheap_convolutions(child)
    return module


def build_steps(method: str, image_size: int, batch_size: int, queue_size: int, cheap: bool = False,
                stacked_limit: bool = False, device: str = "cpu", precision: str = "fp32", compile: bool = False):
    """(ours, limit, calls): two closures, each one training step on fixed inputs, and the per-view encoder calls."""
    device = torch.device(device)
    # The proxy's heads are narrow too: with 1x1 convolutions the recipe's 2048-4096-wide heads (and SGD over their
    # weights) would be most of its arithmetic, which the limit (the backbone alone) does not do and which a GPU
    # step at the recipe's batch hardly notices. Same layers, same ops.
    spec, config = recipe_config(method, image_size, queue_size, head_width=CHEAP_HEAD_WIDTH if cheap else None)
    generator = torch.Generator().manual_seed(0)
    inputs = view_inputs(config, batch_size, generator, device)
    calls = per_view_calls(spec, config, inputs)
    # bf16: autocast around the forwards, as `accelerate launch --mixed_precision bf16` does; compile as
    # --torch_compile (Accelerate's dynamo_backend). SGD foreach, as on CUDA, for the op counts.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward(model):
        compiled = torch.compile(model) if compile else model

        def call(**views):
            with autocast:
                return compiled(**views)
        return call

    prepare = cheap_convolutions if cheap else None
    ours, _, _ = ours_step(spec, config, inputs, device, foreach=True, prepare=prepare, forward=forward)
    limit_calls = stacked_calls(calls) if stacked_limit else calls
    limit, _, _ = limit_step(spec, config, limit_calls, device, generator, foreach=True, prepare=prepare,
                             wrap=forward)
    return ours, limit, calls


def sync_free(step, device: torch.device) -> str:
    """On CUDA: "yes" when one step runs under torch.cuda.set_sync_debug_mode("error"), else the error's first line."""
    if device.type != "cuda":
        return "not checked (CPU)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        return "yes"
    except RuntimeError as error:
        return str(error).splitlines()[0][:300]
    finally:
        torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()


def timed(method: str, args) -> dict:
    """Images/s of ours and of the per-view limit with the real backbone at the recipe's image size and batch, on
    --device, interleaved; plus the sync check."""
    recipe = yaml.safe_load((RECIPES / f"{method}_cifar10.yaml").read_text())
    image_size = recipe.get("model", {}).get("image_size", 32)
    batch = args.timed_batch_size or recipe["per_device_train_batch_size"]
    ours, limit, _ = build_steps(method, image_size, batch, None,  # the recipe's queue
                                 device=args.device, precision=args.precision, compile=args.compile)
    times = time_interleaved({"ours": ours, "limit": limit}, repeats=args.timed_repeats, warmup=args.timed_warmup,
                             device=args.device)
    return {"image_size": image_size, "batch_size": batch, "precision": args.precision, "compile": args.compile,
            "ours_images_per_s": round(batch / times["ours"]["median_s"], 1),
            "limit_images_per_s": round(batch / times["limit"]["median_s"], 1),
            "ours_over_limit": round(times["limit"]["median_s"] / times["ours"]["median_s"], 3),
            "sync_free": sync_free(ours, torch.device(args.device)),
            "views_sync_free": sync_free(device_views_step(method, recipe, image_size, batch, args.device),
                                         torch.device(args.device)),
            "times": times}


def device_views_step(method: str, recipe: dict, image_size: int, batch: int, device: str):
    """One --data_on_device batch of the recipe's views (random uint8 images held on ``device``)."""
    spec = hf_contrastive.get_method(method)
    config = spec.config_class(**recipe.get("model", {}))
    mean, std = data_lib.DATASET_STATS["cifar10"]
    images = torch.randint(0, 256, (2 * batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    kinds = [*config.views, *(getattr(config, "neighbour_views", None) or [])]
    augments = [device_views.DeviceViewAugment(kind, image_size, mean, std, **recipe.get("augmentations", {}).get(kind, {}))
                for kind in kinds]
    data = device_views.DeviceTrainingSet(images, augments, seed=0)
    rows = data.permutation(0)[:batch]
    data.batch(rows, seed=0)  # warm-up
    return lambda: data.batch(rows, seed=1)


def count_ops(step) -> OpCounter:
    step()  # the first step differs (optimiser state, lazy buffers): count the second
    with OpCounter() as counter:
        step()
    return counter


def loop_against_step(method: str, args, data_on_device: bool) -> dict:
    """The real loop (`Pretrainer` on the shipped sample: batches, the step, EMA, enqueue, loss bookkeeping, hooks)
    against its bare step (forward, backward, SGD, EMA, enqueue) repeated on one of its own batches afterwards, in
    the same process: median seconds per step of each and bare / loop. The recipe's settings, except the standard
    ResNet stem (the CIFAR stem makes a CPU step 16x longer, hiding what the loop adds)."""
    warmup, steps = 3, args.loop_steps
    with tempfile.TemporaryDirectory() as output_dir:
        argv = ["--method", method, "--config", str(RECIPES / f"{method}_cifar10.yaml"), "--dataset_name", str(SAMPLE),
                "--max_train_steps", str(warmup + steps), "--per_device_train_batch_size", str(args.loop_batch_size),
                "--dataloader_num_workers", str(args.loop_workers), "--knn_every_n_epochs", "0",
                "--no_knn_random_init", "--no_card_plots", "--report_to", "none", "--checkpointing_steps", "1000000",
                "--output_dir", output_dir]
        if recipe_config(method, 32, 256)[1].backbone.startswith("resnet"):
            argv += ["--config_overrides", "small_image_stem=false"]
        if data_on_device:
            argv.append("--data_on_device")
        clock = StepTimes()
        trainer = Pretrainer(parse_args(argv), callbacks=[clock])
        trainer.knn_dataloaders = None  # no kNN monitor: the loop alone
        trainer.train()
    gaps = [b - a for a, b in itertools.pairwise(clock.step_times[warmup - 1:])]
    if data_on_device:
        data = trainer.train_dataset
        batch = data.batch(data.permutation(0)[:args.loop_batch_size], seed=0)
    else:
        batch = next(iter(trainer.train_dataloader))
    inputs = {name: batch[name] for name in ("views", "neighbour_views") if name in batch}

    def bare_step() -> None:
        training_step(trainer.model, trainer.optimizer, inputs, progress=0.5)
        synchronize(trainer.accelerator.device)

    bare = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        bare_step()
        bare.append(time.perf_counter() - start)
    loop_s, bare_s = statistics.median(gaps), statistics.median(bare[warmup:])
    return {"loop_step_s": round(loop_s, 4), "bare_step_s": round(bare_s, 4), "bare_over_loop": round(bare_s / loop_s, 3),
            "steps": steps, "batch": args.loop_batch_size, "workers": 0 if data_on_device else args.loop_workers}


def measure(method: str, args) -> dict:
    row: dict = {"method": method}
    if args.loop_steps:
        row["loop"] = {name: loop_against_step(method, args, name == "data_on_device")
                       for name in ("loader", "data_on_device")}
        print(f"{method:18s} loop vs bare step: " + ", ".join(
            f"{name} {result['bare_over_loop']:.2f}" for name, result in row["loop"].items()), flush=True)
    if args.timed_repeats:
        row["timed"] = timed(method, args)
        print(f"{method:18s} {args.device} {args.precision}{' compiled' if args.compile else ''}: "
              f"{row['timed']['ours_images_per_s']:.0f} img/s, {row['timed']['ours_over_limit']:.2f} of the limit, "
              f"sync-free: {row['timed']['sync_free']}, device views sync-free: {row['timed']['views_sync_free']}", flush=True)
    if args.no_counts:
        return row
    sizes = (args.image_size, args.batch_size, args.queue_size)
    ours, limit, calls = build_steps(method, *sizes)
    _, stacked_limit, _ = build_steps(method, *sizes, stacked_limit=True)
    ours_count = count_ops(ours)
    row.update({
        "per_view_encoder_calls": {role: len(shapes) for role, shapes in calls.items()},
        "ops_ours": sum(ours_count.ops.values()),
        "ops_limit": sum(count_ops(limit).ops.values()),
        "ops_limit_stacked": sum(count_ops(stacked_limit).ops.values()),
        "tensors_from_python_data_ours": ours_count.from_python_data,
        "top_ops_ours": dict(ours_count.ops.most_common(args.top_ops)),
    })
    row["op_ratio"] = round(row["ops_ours"] / row["ops_limit"], 3)
    row["op_ratio_stacked_limit"] = round(row["ops_ours"] / row["ops_limit_stacked"], 3)
    # The proxy makes convolutions cheap; a ViT (PatchMix) has one convolution and would only be timed at full cost.
    if args.proxy_repeats and not recipe_config(method, args.image_size, args.queue_size)[1].backbone.startswith("vit"):
        ours, limit, _ = build_steps(method, *sizes, cheap=True)
        times = time_interleaved({"ours": ours, "limit": limit}, repeats=args.proxy_repeats, warmup=3)
        row["proxy_ours_over_limit"] = round(times["limit"]["median_s"] / times["ours"]["median_s"], 3)
    print(f"{method:18s} ops {row['ops_ours']:5d} / {row['ops_limit']:5d} = {row['op_ratio']:.2f}   "
          f"stacked limit {row['ops_limit_stacked']:5d}: {row['op_ratio_stacked_limit']:.2f}"
          + (f"   proxy {row['proxy_ours_over_limit']:.2f}" if "proxy_ours_over_limit" in row else ""), flush=True)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    recipes = sorted(p.name.removesuffix("_cifar10.yaml") for p in RECIPES.glob("*_cifar10.yaml"))
    parser.add_argument("--methods", nargs="+", default=recipes, choices=recipes, help="default: every CIFAR-10 recipe")
    parser.add_argument("--image_size", type=int, default=8, help="image side for both measures (default: 8)")
    parser.add_argument("--batch_size", type=int, default=16, help="per step; a multiple of the recipes' bn_splits")
    parser.add_argument("--queue_size", type=int, default=256, help="queues are this long (default: 256)")
    parser.add_argument("--proxy_repeats", type=int, default=20, help="timed rounds of the proxy; 0 skips it")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: per-op cost dominates)")
    parser.add_argument("--top_ops", type=int, default=8, help="most frequent ops of ours kept in the JSON")
    parser.add_argument("--no_counts", action="store_true", help="skip the op counts and the proxy (timed runs)")
    parser.add_argument("--timed_repeats", type=int, default=0,
                        help="timed rounds of the real step (recipe image size and batch) on --device; 0 skips it")
    parser.add_argument("--timed_warmup", type=int, default=5, help="untimed steps first (compilation, cuDNN)")
    parser.add_argument("--timed_batch_size", type=int, default=None, help="default: the recipe's batch")
    parser.add_argument("--device", default="cpu", help="device of the timed steps (cuda on a GPU)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="timed steps: autocast or not")
    parser.add_argument("--compile", action="store_true", help="timed steps: torch.compile the forwards")
    parser.add_argument("--loop_steps", type=int, default=0,
                        help="also time the real training loop against its bare step, with the loader and with "
                             "--data_on_device, over N steps on the shipped sample (0: skip; minutes per method)")
    parser.add_argument("--loop_batch_size", type=int, default=64, help="--loop_steps: per step")
    parser.add_argument("--loop_workers", type=int, default=2, help="--loop_steps: loader workers of the loader run")
    parser.add_argument("--label", default="current", help="names this code version in the tables (e.g. before)")
    parser.add_argument("--output", help="results JSON")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    report = {"benchmark": "overhead", **environment(args.device), "label": args.label, "code": code_version(),
              "setting": {k: v for k, v in vars(args).items() if k not in ("output", "label")},
              "results": [measure(method, args) for method in args.methods]}
    if args.output:
        write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
