"""Training throughput of every method against the hardware limit for that method, in one process.

    python benchmarks/throughput.py --quick --output benchmarks/results/throughput_quick.json
    python benchmarks/throughput.py --output benchmarks/results/throughput.json

One image = one sample with all its views. "ours" is a full optimiser step of the method's ForPreTraining model
(forward of every view, loss, backward, SGD step, teacher EMA, enqueue). The "limit" is the unavoidable work with
the same backbone: forward+backward of the views the student sees and a no-grad forward of the views the teacher
sees, with no heads, queue or loss. Median over repeated steps after warm-up. Not done yet (benchmark issue): the
comparison with lightly, peak memory, queue-size and batch-size sweeps, the data-loader benchmark.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import hf_contrastive

# (views through the student with gradients, views through the teacher without) per training step, read off each
# method's forward (default config).
VIEW_ROUTES = {
    "mnn": (2, 2), "byol": (2, 2), "mocov2": (2, 2), "simclr": (2, 0), "nnclr": (2, 0),
    "msf": (1, 1), "ressl": (1, 1), "msvq": (1, 3), "mochi": (2, 2), "sscl": (2, 2),
    # multinet_gl: 2 global + 4 local views through the online network, the 2 global ones through its one momentum
    # network (x num_momentum_networks). A local view has 1/4 of a global view's pixels (16 vs 32 px), so the real
    # student cost is about 3 global views; measure() feeds every view at image_size, which overstates it for both
    # "ours" and the limit alike.
    "multinet_gl": (6, 2),
    "cacr": (5, 0),
    # patchmix: student x_1 and mix(x_2), teacher x_1, x_2 and mix(x_1) (official asymmetric loss, the default)
    "patchmix": (2, 3),
    "potential_samples": (2, 2),
    # spps: measure() calls forward(views=...) without neighbour views, i.e. the plain SimCLR frame (default base);
    # a real step also sends each neighbour view through the student: (3, 0) with the default neighbour_views.
    "spps": (2, 0),
}


def time_steps(step, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def measure(method: str, batch: int, image_size: int, small_stem: bool, repeats: int, warmup: int) -> dict:
    spec = hf_contrastive.get_method(method)
    fields = spec.config_class().to_dict()
    overrides = {"small_image_stem": small_stem, "image_size": image_size}
    if "queue_size" in fields:
        overrides["queue_size"] = 4096
    config = spec.config_class(**overrides)
    views = [torch.randn(batch, 3, image_size, image_size) for _ in config.views]

    torch.manual_seed(0)
    model = spec.pretraining_class(config).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def ours() -> None:
        outputs = model(views=views)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.momentum_update()
        if outputs.queue_keys:
            model.enqueue(outputs.queue_keys)

    student_views, teacher_views = VIEW_ROUTES[method]
    backbone = spec.model_class(config).train()
    teacher = spec.model_class(config).train()
    bare_optimizer = torch.optim.SGD(backbone.parameters(), lr=0.01, momentum=0.9)

    def limit() -> None:
        total = sum(backbone(views[i]).pooler_output.sum() for i in range(student_views))
        total.backward()
        bare_optimizer.step()
        bare_optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for i in range(teacher_views):
                teacher(views[i]).pooler_output.sum()

    ours_s = time_steps(ours, repeats, warmup)
    limit_s = time_steps(limit, repeats, warmup)
    return {
        "method": method, "batch": batch, "views": config.views, "student_views": student_views,
        "teacher_views": teacher_views, "ours_step_s": round(ours_s, 4), "limit_step_s": round(limit_s, 4),
        "ours_images_per_s": round(batch / ours_s, 2), "limit_images_per_s": round(batch / limit_s, 2),
        "ours_over_limit": round(limit_s / ours_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Batch 32, standard stem, few repeats (under a minute).")
    parser.add_argument("--methods", nargs="*", default=hf_contrastive.available_methods())
    parser.add_argument("--output", default="benchmarks/results/throughput.json")
    args = parser.parse_args()
    setting = (dict(batch=32, image_size=32, small_stem=False, repeats=3, warmup=1) if args.quick
               else dict(batch=128, image_size=32, small_stem=True, repeats=5, warmup=2))
    results = []
    for method in args.methods:
        row = measure(method, **setting)
        results.append(row)
        print(f"{method:8s} ours {row['ours_images_per_s']:8.1f} img/s   limit {row['limit_images_per_s']:8.1f} img/s"
              f"   ours/limit {row['ours_over_limit']:.3f}")
    report = {
        "machine": platform.node(), "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": "cpu", "setting": setting, "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
