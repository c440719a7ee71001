"""Summarise a recipe run (``recipes/train.py``) from its log and checkpoint into a results JSON and a kNN plot.

    python benchmarks/recipe_run.py --log train.log --state OUTPUT_DIR/checkpoints/step_N/training_state.json \\
        --name mnn_cifar10_gpu --command "accelerate launch ..." --device_name "NVIDIA H100 80GB HBM3" \\
        --versions torch=2.11.0+cu130 timm=1.0.29 --machine_note "..."

For runs made elsewhere (a GPU machine) and read here: the kNN curve comes from the checkpoint's
``training_state.json`` (or ``all_results.json`` of a finished run), the speed from the tqdm progress lines of the
log (``tr '\\r' '\\n'`` makes them lines; the trainer prints them to stderr). Where and with what the run was made is
given on the command line, since this process did not see it. Output: ``results/recipe_<name>.json``
(``benchmark: "recipe_run"``) and ``results/recipe_<name>.png``; ``make_tables.py`` section ``recipe``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, write_json

# "pretraining:  38%|...| 14800/39000 [24:05<32:19, 12.48it/s, epoch=75, loss=0.3926]"
PROGRESS = re.compile(r"pretraining:.*?\|\s*(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<.*?epoch=(\d+)")
# "mnn | resnet18 | 50000 train images | global batch 256 | lr 0.06 | 39000 steps (200 epochs) | 1 process(es), ..."
HEADER = re.compile(r"^(\w+) \| (\S+) \| (\d+) train images.*\| global batch (\d+) \| lr (\S+) \| (\d+) steps "
                    r"\((\d+) epochs\) \| (.*)$")


def parse_progress(log_text: str) -> list[tuple[int, int, int]]:
    """(step, elapsed seconds, epoch) of every progress line, in step order, one per step."""
    points = {}
    for line in log_text.replace("\r", "\n").splitlines():
        match = PROGRESS.search(line)
        if match:
            step, _, hours, minutes, seconds, epoch = match.groups()
            points[int(step)] = (int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds), int(epoch))
    return [(step, elapsed, epoch) for step, (elapsed, epoch) in sorted(points.items())]


def training_speed(points: list[tuple[int, int, int]], steps_per_epoch: int, batch: int) -> dict:
    """Overall seconds per epoch (kNN evaluations and checkpoints included) and the median training rate inside
    epochs (windows of one epoch that hold no epoch boundary, so no kNN or checkpoint)."""
    first, last = points[0], points[-1]
    if last[1] == first[1]:
        # tqdm's clock counts whole seconds: a run shorter than that (a CPU dry run on a fast machine) has no speed.
        return {"steps_done": last[0], "elapsed_s": last[1], "seconds_per_epoch_overall": None,
                "train_steps_per_s": None, "train_images_per_s": None, "seconds_per_epoch_training": None}
    overall_s_per_step = (last[1] - first[1]) / (last[0] - first[0])
    inside = []
    for epoch in sorted({p[2] for p in points}):
        in_epoch = [p for p in points if p[2] == epoch]
        if len(in_epoch) >= 2 and in_epoch[-1][1] > in_epoch[0][1] and in_epoch[-1][0] - in_epoch[0][0] >= steps_per_epoch // 2:
            inside.append((in_epoch[-1][0] - in_epoch[0][0]) / (in_epoch[-1][1] - in_epoch[0][1]))
    steps_per_s = statistics.median(inside) if inside else 1 / overall_s_per_step
    return {"steps_done": last[0], "elapsed_s": last[1],
            "seconds_per_epoch_overall": round(overall_s_per_step * steps_per_epoch, 2),
            "train_steps_per_s": round(steps_per_s, 2), "train_images_per_s": round(steps_per_s * batch, 1),
            "seconds_per_epoch_training": round(steps_per_epoch / steps_per_s, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--log", required=True, help="The run's stdout+stderr.")
    parser.add_argument("--state", required=True, help="training_state.json of the latest checkpoint, or the "
                        "finished run's all_results.json.")
    parser.add_argument("--name", required=True, help="Results name: results/recipe_<name>.json/.png.")
    parser.add_argument("--command", required=True, help="The command that made the run.")
    parser.add_argument("--device_name", required=True)
    parser.add_argument("--versions", nargs="*", default=[], help="name=version pairs of the run's machine.")
    parser.add_argument("--machine_note", default="", help="Anything else a reader needs (why it stopped, ...).")
    parser.add_argument("--results_dir", default=str(RESULTS_DIR))
    parser.add_argument("--linear_results", help="eval_results.json of recipes/linear_eval.py on the run's encoder: "
                        "its best and last top-1 and protocol join the report.")
    parser.add_argument("--wall_seconds", type=float, help="Wall time of the whole job (training, evaluation), "
                        "when the caller measured it.")
    args = parser.parse_args(argv)

    log_text = Path(args.log).read_text(errors="replace")
    header = next(filter(None, map(HEADER.match, log_text.splitlines())), None)
    if header is None:
        raise SystemExit(f"{args.log}: no trainer header line ('<method> | <backbone> | N train images | ...').")
    method, backbone, images, batch, lr, total_steps, epochs, where = header.groups()
    steps_per_epoch = int(total_steps) // int(epochs)
    points = parse_progress(log_text)
    if len(points) < 2:
        raise SystemExit(f"{args.log}: fewer than two progress lines; was stderr captured?")
    state = json.loads(Path(args.state).read_text())
    history = state.get("knn_history", [])
    report = {
        "benchmark": "recipe_run", "name": args.name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": args.command, "device_name": args.device_name,
        "versions": dict(pair.split("=", 1) for pair in args.versions), "machine_note": args.machine_note,
        "setting": {"method": method, "backbone": backbone, "train_images": int(images), "global_batch": int(batch),
                    "learning_rate": float(lr), "total_steps": int(total_steps), "epochs": int(epochs),
                    "steps_per_epoch": steps_per_epoch, "processes_device_precision": where},
        "progress": {"epochs_done": round(points[-1][0] / steps_per_epoch, 2),
                     **training_speed(points, steps_per_epoch, int(batch))},
        "knn_history": history,
        "sources": {"log": args.log, "state": args.state},
    }
    if args.linear_results:
        linear = json.loads(Path(args.linear_results).read_text())
        report["linear_probe"] = {key: linear[key] for key in ("best_top1", "best_epoch", "last_top1", "last_epoch",
                                                                "eval_samples", "protocol")}
        report["sources"]["linear"] = args.linear_results
    if args.wall_seconds is not None:
        report["wall_seconds"] = round(args.wall_seconds, 1)
    speed = report["progress"]
    speed["full_run_hours_estimate"] = (None if speed["seconds_per_epoch_overall"] is None
                                        else round(speed["seconds_per_epoch_overall"] * int(epochs) / 3600, 2))
    results_dir = Path(args.results_dir)
    plot = results_dir / f"recipe_{args.name}.png"
    if history:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot([h["epoch"] for h in history], [100 * h["knn_top1"] for h in history], marker="o")
        axis.set(xlabel="epoch", ylabel="kNN top-1 (%)", xlim=(0, int(epochs)),
                 title=f"{method} recipe, {args.device_name}: {speed['epochs_done']:.0f} of {epochs} epochs")
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(plot, dpi=110)
        plt.close(figure)
        report["plot"] = f"benchmarks/results/{plot.name}"
    write_json(results_dir / f"recipe_{args.name}.json", report)


if __name__ == "__main__":
    main()
