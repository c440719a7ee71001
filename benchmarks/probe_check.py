"""Does the quality benchmark's timing probe predict the step time of a whole run?

`quality.py` gives each run `budget / probe` steps, where the probe is the median gap between steps 3..15 of the real
loop on the first `batch x 16` training images. A run's training time is the sum of all its gaps, on the full train
split. Some runs trained about 20% longer than their probe predicted (their `budget_ratio`), others did not. This
script times, for each method, the probe as `quality.py` runs it and then the same loop on the full train split for
`--steps` steps (more than one epoch by default, so an epoch boundary is inside), and compares the probe's median
with the full loop's mean, median and late steps. It also reports how far the median of 11 (the probe's) or 41
consecutive steps of the full loop strays from the loop's median: the probe's own noise at either length.

    python benchmarks/probe_check.py --methods msvq mocov2 simclr mnn byol msf --steps 420

Writes `benchmarks/results/probe_check.json` (`--output`): per method the probe, the full loop's summary, its gaps
per step, and the ratio mean(full) / median(probe), which is the budget ratio a run would have had.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality
from common import RESULTS_DIR, SHARED_CIFAR10, display_path, environment, write_json


def summary(gaps: list[float], skip: int) -> dict:
    timed = gaps[skip:]
    median = statistics.median(timed)
    return {"steps_timed": len(timed), "median_s": round(median, 4), "mean_s": round(statistics.fmean(timed), 4),
            "min_s": round(min(timed), 4), "max_s": round(max(timed), 4),
            "slow_steps_share": round(sum(g > 1.5 * median for g in timed) / len(timed), 4),
            "seconds_in_slow_steps": round(sum(g for g in timed if g > 1.5 * median), 2)}


def window_spread(gaps: list[float], skip: int, window: int) -> dict:
    """How far the median of `window` consecutive steps strays from the median of all of them: what a probe of
    `window` timed steps at a random point of the loop would be off by (consecutive, non-overlapping windows)."""
    timed = gaps[skip:]
    median = statistics.median(timed)
    ratios = [statistics.median(timed[i:i + window]) / median for i in range(0, len(timed) - window + 1, window)]
    return {"window": window, "windows": len(ratios), "std_pct": round(100 * statistics.pstdev(ratios), 2),
            "lowest_pct": round(100 * (min(ratios) - 1), 2), "highest_pct": round(100 * (max(ratios) - 1), 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["msvq", "mocov2", "simclr", "mnn", "byol", "msf"])
    parser.add_argument("--steps", type=int, default=420, help="Steps of the full-split loop (an epoch is 390).")
    parser.add_argument("--probe_steps", type=int, default=15, help="Steps of the probe, as quality.py's default.")
    parser.add_argument("--dataset_name", default=display_path(SHARED_CIFAR10))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default=str(RESULTS_DIR / "probe_check.json"))
    parser.add_argument("--work_dir", default="outputs/probe_check")
    args = parser.parse_args(argv)
    if not Path(args.dataset_name).exists():
        parser.error(f"{args.dataset_name} not found: pass --dataset_name (a parquet folder of CIFAR-10).")
    skip = 3  # quality.py's probe skips its first 3 steps (start-up)
    run = {"dataset_name": args.dataset_name, "batch": 128, "base_learning_rate": 0.06, "seed": 0,
           "workers": args.workers, "patchmix_backbone": "resnet18", "config_overrides": "", "augmentations": ""}
    work_dir = Path(args.work_dir)
    results = []
    for method in args.methods:
        started = time.perf_counter()
        probe = summary(quality.loop_step_gaps(method, run, work_dir, args.probe_steps, subset=True), skip)
        full_gaps = quality.loop_step_gaps(method, run, work_dir, args.steps, subset=False)
        full = summary(full_gaps, skip)
        late = summary(full_gaps[len(full_gaps) // 2:], 0)
        row = {"method": method, "probe": probe, "full_split": full, "full_split_second_half": late,
               "predicted_budget_ratio": round(full["mean_s"] / probe["median_s"], 3),
               "probe_vs_full_split_median_pct": round(100 * (probe["median_s"] / full["median_s"] - 1), 2),
               "window_spread": [window_spread(full_gaps, skip, w) for w in (11, 41) if len(full_gaps) - skip >= w],
               "full_split_gaps_s": [round(g, 4) for g in full_gaps], "wall_s": round(time.perf_counter() - started)}
        results.append(row)
        print(f"{method}: probe median {probe['median_s']:.3f} s; full split mean {full['mean_s']:.3f} s, median "
              f"{full['median_s']:.3f} s, second half mean {late['mean_s']:.3f} s, slow steps "
              f"{100 * full['slow_steps_share']:.1f}% ({full['seconds_in_slow_steps']:.0f} s); "
              f"mean / probe {row['predicted_budget_ratio']:.3f}; window medians: " + ", ".join(
                  f"{w['window']} steps sd {w['std_pct']:.1f}% ({w['lowest_pct']:+.1f} to {w['highest_pct']:+.1f}%)"
                  for w in row["window_spread"]), flush=True)
    if work_dir.is_dir() and not any(work_dir.iterdir()):
        work_dir.rmdir()
    write_json(Path(args.output), {"benchmark": "probe_check", **environment(quality.TRAINING_DEVICE),
                                   "probe_steps": args.probe_steps, "skip": skip, "steps": args.steps,
                                   "workers": args.workers, "dataset_name": args.dataset_name, "methods": results})


if __name__ == "__main__":
    main()
