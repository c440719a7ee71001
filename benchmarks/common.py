"""Helpers shared by the benchmark scripts: environment record, interleaved step timing, JSON output.

Not part of the package: the scripts in this folder import it as a sibling module (``python benchmarks/x.py`` puts
``benchmarks/`` first on ``sys.path``).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
# The real CIFAR-10 beside the checkout (the local parquet copy of uoft-cs/cifar10): the benchmarks' default data.
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10"


def display_path(path: Path | str) -> str:
    """Relative to the working directory when below its parent (commands and JSON stay portable)."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("../..") else str(path)


def model_labels(parser, models: list[str], labels: list[str] | None) -> list[str]:
    """One table name per `--model` folder: the given `--label`s, else each folder's parent name (the run's folder)."""
    labels = labels or [Path(model).parent.name or model for model in models]
    if len(labels) != len(models):
        parser.error(f"--label needs one name per --model ({len(models)}), got {len(labels)}.")
    return labels


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` model name), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device | str = "cpu") -> dict:
    """Where and with what a result was measured: goes at the top of every results JSON."""
    device = torch.device(device)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "machine": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_cores": usable_cores(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": {name: package_version(name) for name in
                     ("hf_contrastive", "torchvision", "timm", "transformers", "accelerate", "datasets", "lightly")},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
    }
    return record


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int, warmup: int,
                     device: torch.device | str = "cpu") -> dict[str, dict]:
    """Median (and spread) of the wall time of each step function, measured interleaved.

    Every function runs ``warmup`` times first; then ``repeats`` rounds run each function once, in an order that
    rotates every round, so a slow phase of a shared machine hits all of them alike instead of one.
    """
    device = torch.device(device)
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    synchronize(device)
    durations: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            steps[name]()
            synchronize(device)
            durations[name].append(time.perf_counter() - start)
    return {name: summarize(values) for name, values in durations.items()}


def summarize(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median_s": round(statistics.median(ordered), 5),
        "min_s": round(ordered[0], 5),
        "max_s": round(ordered[-1], 5),
        "n": len(ordered),
    }


def max_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_json(path: str | Path, report: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {path}")
    return path


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def encoder_calls(model: torch.nn.Module, inputs: dict) -> dict[str, list[tuple[int, ...]]]:
    """Input shapes of every encoder call in one forward of a pretraining model, split into ``student`` (with
    gradients) and ``teacher`` (the encoders on the teacher side of ``teacher_pairs()``): each method's route of
    views, read off its own forward (so a new method needs no table here). PatchMix's ``encoder`` is its momentum
    teacher, its student ``student_encoder``."""
    from hf_contrastive.models import ContrastiveModel

    teachers = {id(part) for teacher, _, _ in model.teacher_pairs() for part in teacher.modules()}
    calls: dict[str, list[tuple[int, ...]]] = {"student": [], "teacher": []}
    hooks = [module.register_forward_pre_hook(
        lambda module, args: calls["teacher" if id(module) in teachers else "student"].append(tuple(args[0].shape)))
        for module in model.modules() if isinstance(module, ContrastiveModel)]
    try:
        model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return calls
