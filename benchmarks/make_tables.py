"""Markdown tables from benchmarks/results/*.json, so README's tables are generated from results, not typed.

    python benchmarks/make_tables.py                       # print every table
    python benchmarks/make_tables.py --write docs/results.md     # rewrite the marked sections of docs/results.md

Sections: throughput (ours / limit, ours / lightly), memory, sweep (queue size, batch size), dataloader, quality,
neighbours (label agreement of queue neighbours, from the retired `neighbours.py`) from CPU runs; throughput_gpu (bf16 with fp32
beside it) and dataloader_gpu from CUDA runs; recipe (recipe runs summarised by `recipe_run.py`); methods (README's
method table: every registered method with its headline result, `--write README.md --sections methods`).
With `--write FILE`, each section is written between the marker comments

    <!-- benchmarks:throughput:start -->
    ...generated...
    <!-- benchmarks:throughput:end -->

(and likewise for every section). A section whose markers are missing is reported and left out; nothing else in
the file changes. For each kind the newest full-run JSON is used (by its `date`); `--quick` smoke runs only with
`--include_quick`. `--throughput FILE` etc. pick one file explicitly.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SECTIONS = ("throughput", "memory", "sweep", "dataloader", "quality", "neighbours", "throughput_gpu", "dataloader_gpu",
            "recipe", "overhead", "methods")


# ----------------------------------------------------------------------------- loading


def kind_of(report: dict, path: Path) -> str | None:
    """The benchmark kind of a results JSON (older throughput files carry no `benchmark` key)."""
    if "benchmark" in report:
        return report["benchmark"]
    if path.name.startswith("throughput") and isinstance(report.get("results"), list):
        return "throughput"
    return None


def load_results(folder: Path) -> dict[str, list[tuple[Path, dict]]]:
    found: dict[str, list[tuple[Path, dict]]] = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            print(f"skipping {path}: {error}", file=sys.stderr)
            continue
        if not isinstance(report, dict):
            continue
        kind = kind_of(report, path)
        if kind:
            found.setdefault(kind, []).append((path, report))
    return found


def is_quick(report: dict, path: Path) -> bool:
    return bool(report.get("quick")) or "quick" in path.stem or report.get("tag") == "quick"


def device_kind(report: dict) -> str:
    """cpu or cuda: where a result was measured (results older than the GPU runs carry no device: CPU)."""
    return str(report.get("device") or "cpu").split(":")[0]


def pick(found: dict, kind: str, include_quick: bool, explicit: str | None, device: str = "cpu",
         precision: str | None = None) -> list[tuple[Path, dict]]:
    """The newest report of ``kind`` measured on ``device`` (and at ``precision``; full runs first), or the
    explicit file."""
    if explicit:
        path = Path(explicit)
        return [(path, json.loads(path.read_text()))]
    candidates = [(p, r) for p, r in found.get(kind, [])
                  if (include_quick or not is_quick(r, p)) and device_kind(r) == device
                  and (precision is None or r.get("setting", {}).get("precision", "fp32") == precision)]
    if not candidates:
        return []
    candidates.sort(key=lambda pr: (not is_quick(pr[1], pr[0]), pr[1].get("date", "")), reverse=True)
    return candidates[:1]


# ----------------------------------------------------------------------------- formatting


def fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(report: dict, path: Path) -> str:
    device = report.get("device_name") or report.get("processor") or "?"
    threads = report.get("torch_threads", report.get("threads"))
    parts = [f"`{path.relative_to(path.parents[2]) if len(path.parents) > 2 else path}`",
             report["date"][:10] if report.get("date") else "date not recorded",
             f"machine `{report.get('machine', '?')}` ({device}" + (f", {threads} threads" if threads else "") + ")",
             f"torch {report.get('torch', '?')}"]
    if report.get("versions", {}).get("lightly"):
        parts.append(f"lightly {report['versions']['lightly']}")
    command = report.get("command")
    text = "Source: " + ", ".join(parts) + "."
    if command:
        text += f" Command: `{command}`."
    if report.get("load_average"):
        text += f" Load average (1 min) when the JSON was written: {report['load_average'][0]}."
    return text


def backbone_label(row: dict) -> str:
    backbone = row.get("backbone", "resnet18")
    if backbone.startswith("vit"):
        kwargs = row.get("backbone_kwargs") or {}
        return f"{backbone.split('_patch')[0]}/{kwargs.get('patch_size', '?')}"
    stem = row.get("small_image_stem")
    return f"{backbone}{' (CIFAR stem)' if stem else ' (standard stem)' if stem is False else ''}"


# ----------------------------------------------------------------------------- sections


def throughput_section(reports) -> str:
    if not reports:
        return "_No throughput results yet: run `python benchmarks/throughput.py`._"
    path, report = reports[0]
    setting = report.get("setting", {})
    rows = []
    for r in report["results"]:
        rows.append([r["method"], backbone_label(r), f"{r.get('student_views', '?')} / {r.get('teacher_views', '?')}",
                     fmt(r.get("ours_images_per_s")), fmt(r.get("limit_images_per_s")), fmt(r.get("ours_over_limit"), 2),
                     fmt(r.get("lightly_images_per_s")), fmt(r.get("ours_over_lightly"), 2)])
    intro = (f"Batch {setting.get('batch')}, {setting.get('image_size')} px, median of {setting.get('repeats')} steps "
             f"after {setting.get('warmup')} warm-up steps, ours / limit / lightly interleaved. Images/s of a full "
             "training step; \"limit\" = the bare backbone doing the method's unavoidable forward/backward work "
             "(student inputs / teacher inputs); \"lightly\" = lightly's version of the same method, same backbone, "
             "batch and views (– where lightly has no such method).")
    return "\n\n".join([intro, table(["method", "backbone", "student / teacher inputs", "ours (img/s)",
                                      "limit (img/s)", "ours / limit", "lightly (img/s)", "ours / lightly"], rows),
                        provenance(report, path)])


def memory_section(reports) -> str:
    reports = [(p, r) for p, r in reports if any("memory" in row for row in r.get("results", []))]
    if not reports:
        return "_No memory results yet: run `python benchmarks/throughput.py` (without --no_memory)._"
    path, report = reports[0]
    how = next((row["memory"]["ours"].get("how") for row in report["results"] if "memory" in row), "")
    rows = []
    for r in report["results"]:
        memory = r.get("memory", {})
        rows.append([r["method"], fmt(memory.get("ours", {}).get("peak_mib"), 0),
                     fmt(memory.get("ours", {}).get("state_mib"), 0), fmt(memory.get("limit", {}).get("peak_mib"), 0),
                     fmt(memory.get("lightly", {}).get("peak_mib"), 0)])
    intro = (f"Peak memory of one training step (MiB): {how}. \"state\" = parameters, buffers (teachers, queues) "
             "and optimiser state held between steps.")
    return "\n\n".join([intro, table(["method", "ours peak", "ours state", "limit peak", "lightly peak"], rows),
                        provenance(report, path)])


def sweep_section(reports) -> str:
    if not reports:
        return "_No sweep results yet: run `python benchmarks/throughput.py --sweep`._"
    path, report = reports[0]
    setting = report.get("setting", {})
    parts = []
    queue_rows = report.get("queue_sweep", [])
    sizes = sorted({r["queue_size"] for r in queue_rows})
    rows = []
    for method in dict.fromkeys(r["method"] for r in queue_rows):
        by_size = {r["queue_size"]: r for r in queue_rows if r["method"] == method}
        first = by_size.get(sizes[0]) if sizes else None
        cells = [method]
        for size in sizes:
            r = by_size.get(size)
            cells.append(f"{r['step_s']:.3f} s ({100 * r['queue_ops_fraction']:.1f}%)" if r else "–")
        last = by_size.get(sizes[-1]) if sizes else None
        growth = (last["step_s"] / first["step_s"] - 1) if first and last else None
        cells.append(fmt(100 * growth if growth is not None else None, 1, "%"))
        rows.append(cells)
    if rows:
        parts.append(f"Step time against the queue size K at batch {setting.get('batch')} (in brackets: the share of "
                     "the step spent in `nearest_neighbors` + `FeatureQueue.enqueue`; the last column is the growth of "
                     "the whole step, queue-dependent loss terms included):")
        parts.append(table(["method", *[f"K = {s}" for s in sizes], f"step growth {sizes[0]} → {sizes[-1]}"], rows))
    batch_rows = report.get("batch_sweep", [])
    batches = sorted({r["batch"] for r in batch_rows})
    rows = []
    for method in dict.fromkeys(r["method"] for r in batch_rows):
        by_batch = {r["batch"]: r for r in batch_rows if r["method"] == method}
        rows.append([method] + [f"{by_batch[b]['images_per_s']:.1f} img/s ({100 * by_batch[b]['queue_ops_fraction']:.1f}%)"
                                if b in by_batch else "–" for b in batches])
    if rows:
        parts.append(f"Images/s against the batch size at K = {setting.get('sweep_batch_queue_size')} (in brackets: "
                     "neighbour search + enqueue share of the step):")
        parts.append(table(["method", *[f"B = {b}" for b in batches]], rows))
    if report.get("not_swept_no_queue"):
        parts.append(f"No queue, not swept: {', '.join(report['not_swept_no_queue'])}.")
    parts.append(provenance(report, path))
    return "\n\n".join(parts)


def dataloader_section(reports) -> str:
    if not reports:
        return "_No data-loader results yet: run `python benchmarks/dataloader.py`._"
    path, report = reports[0]
    setting, stages = report.get("setting", {}), report.get("stage_costs", {})
    consumption = report.get("model_consumption")
    training = {r["workers"]: r for r in (report.get("training") or {}).get("with_loader", [])}
    rows = []
    for r in report.get("loader", []):
        t = training.get(r["workers"])
        rows.append([str(r["workers"]), fmt(r["images_per_s"]), fmt(r.get("loader_over_model"), 1, "x"),
                     fmt(t["images_per_s"] if t else None),
                     fmt(100 * t["fraction_of_fixed_batch_rate"] if t else None, 0, "%")])
    intro = (f"{setting.get('method')} views {setting.get('views')} at {setting.get('image_size')} px, batch "
             f"{setting.get('batch')}, {setting.get('train_images')} images of `{setting.get('dataset_name')}`. "
             f"One process, per image: row fetch {fmt(stages.get('row_fetch_us'), 0)} µs + decode "
             f"{fmt(stages.get('decode_us'), 0)} µs + views = {fmt(stages.get('total_us'), 0)} µs; the whole "
             f"`MultiViewDataset.__getitem__` {fmt(stages.get('getitem_us'), 0)} µs.")
    if consumption:
        intro += (f" The model consumes {consumption['images_per_s']:.1f} img/s "
                  f"({'CIFAR' if consumption.get('small_image_stem') else 'standard'} stem, batch "
                  f"{consumption.get('batch')}, from `{consumption['source']}`).")
    if report.get("training"):
        intro += (f" \"training fed\" = real training steps ({'CIFAR' if report['training'].get('small_image_stem') else 'standard'} "
                  f"stem) taking their batches from the loader, against the same steps on a fixed batch "
                  f"({report['training'].get('fixed_batch_images_per_s')} img/s).")
    parts = [intro, table(["workers", "loader alone (img/s)", "loader / model", "training fed (img/s)",
                           "of fixed-batch rate"], rows)]
    device_path = report.get("device_path")
    if device_path:
        device_stages, half = device_path["stage_costs"], device_path["device_half"]
        cpu_rates = {r["workers"]: r["images_per_s"] for r in report.get("loader", [])}
        device_rows = [[str(r["workers"]), fmt(cpu_rates.get(r["workers"])), fmt(r["images_per_s"]),
                        fmt(r["images_per_s"] / cpu_rates[r["workers"]] if cpu_rates.get(r["workers"]) else None, 1, "x")]
                       for r in device_path["loader"]]
        parts += [f"With `--augment_on_device` the loader only crops and flips (uint8): "
                  f"{fmt(device_stages.get('getitem_us'), 0)} µs per image instead of "
                  f"{fmt(stages.get('getitem_us'), 0)} µs. The photometric half (jitter, grayscale, blur, normalise; "
                  f"per-sample parameters) runs per batch on `{half['device']}` at "
                  f"{fmt(half['images_per_s'], 0)} img/s (batch {half['batch']}, all views).",
                  table(["workers", "loader, CPU views (img/s)", "loader, --augment_on_device (img/s)", "speed-up"],
                        device_rows)]
    whole = report.get("data_on_device")
    if whole:
        parts.append(f"With `--data_on_device` there is no loader: whole views (crop, flip, photometric ops, "
                     f"normalise) are made on `{whole['device']}` at {fmt(whole['images_per_s'], 0)} img/s (batch "
                     f"{whole['batch']}, all views), after decoding the {whole['train_images']} training images once "
                     f"({fmt(whole['decode_s'], 1)} s, {fmt(whole['uint8_mib'], 0)} MiB as uint8).")
    return "\n\n".join(parts + [provenance(report, path)])


def throughput_gpu_section(reports, fp32_reports) -> str:
    if not reports:
        return "_No GPU throughput results yet: run `bash benchmarks/gpu.sh` on a CUDA machine._"
    path, report = reports[0]
    setting = report.get("setting", {})
    fp32 = {r["method"]: r for r in (fp32_reports[0][1]["results"] if fp32_reports else [])}
    rows = []
    for r in report["results"]:
        base = fp32.get(r["method"], {}).get("ours_images_per_s")
        rows.append([r["method"], fmt(r.get("ours_images_per_s"), 0), fmt(r.get("limit_images_per_s"), 0),
                     fmt(r.get("ours_over_limit"), 2), fmt(r.get("lightly_images_per_s"), 0),
                     fmt(r.get("ours_over_lightly"), 2), fmt(base, 0),
                     fmt(r["ours_images_per_s"] / base if base else None, 2, "x"),
                     fmt(r.get("memory", {}).get("ours", {}).get("peak_mib"), 0)])
    layout = "channels-last" if setting.get("channels_last") else "default layout"
    stem = "CIFAR" if setting.get("small_stem") else "standard"
    patchmix = setting.get("patchmix_backbone", {})
    patchmix_label = backbone_label(patchmix) if patchmix.get("backbone", "").startswith("vit") else "its default"
    intro = (f"Batch {setting.get('batch')}, {setting.get('image_size')} px, ResNet-18 with the {stem} stem (PatchMix: "
             f"{patchmix_label}), "
             f"{setting.get('precision')} autocast and {layout} for ours, the limit and lightly alike; median of "
             f"{setting.get('repeats')} steps after {setting.get('warmup')} warm-up steps. \"fp32\" = our step in fp32 "
             "with the default layout (same machine, next run); \"peak\" = our step's peak GPU memory (MiB).")
    parts = [intro, table(["method", "ours (img/s)", "limit (img/s)", "ours / limit", "lightly (img/s)",
                           "ours / lightly", "ours fp32 (img/s)", "bf16 gain", "peak"], rows),
             provenance(report, path)]
    if fp32_reports:
        parts.append("fp32 " + provenance(*reversed(fp32_reports[0])))
    return "\n\n".join(parts)


def recipe_section(reports) -> str:
    if not reports:
        return "_No recipe runs summarised yet: run a recipe, then `python benchmarks/recipe_run.py`._"
    parts = []
    for path, report in reports:
        setting, progress, history = report["setting"], report["progress"], report.get("knn_history", [])
        intro = (f"`{setting['method']}` recipe on {report['device_name']} ({setting['processes_device_precision']}): "
                 f"{progress['epochs_done']:.1f} of {setting['epochs']} epochs ({setting['total_steps']} steps of "
                 f"global batch {setting['global_batch']}, lr {setting['learning_rate']:g}, schedule over all "
                 f"{setting['epochs']} epochs). ")
        if progress["train_images_per_s"] is None:
            intro += "Too short to time (the log's clock counts whole seconds). "
        else:
            intro += (f"Training {progress['train_images_per_s']:.0f} img/s ({progress['seconds_per_epoch_training']:.1f} "
                      f"s per epoch); {progress['seconds_per_epoch_overall']:.1f} s per epoch with the kNN monitor and "
                      f"checkpoints, so the full run takes about {progress['full_run_hours_estimate']:.1f} h. ")
        intro += report.get("machine_note", "")
        parts.append(intro.strip())
        if history:
            parts.append(table(["epoch", *(f"{h['epoch']:g}" for h in history)],
                               [["kNN top-1 (%)", *(f"{100 * h['knn_top1']:.1f}" for h in history)]]))
        if report.get("linear_probe"):
            linear = report["linear_probe"]
            protocol = linear["protocol"]
            parts.append(f"Linear probe ({protocol.get('reference_protocol', 'mnn')} protocol: {protocol['lr_schedule']} "
                         f"schedule, lr {protocol['learning_rate']:g}, {protocol['epochs']} epochs) on "
                         f"{linear['eval_samples']} test images: best {100 * linear['best_top1']:.2f}% (epoch "
                         f"{linear['best_epoch']}), last {100 * linear['last_top1']:.2f}%.")
        if report.get("wall_seconds") is not None:
            parts.append(f"Wall time of the whole job: {report['wall_seconds'] / 60:.1f} min.")
        if report.get("plot"):
            parts.append(f"![kNN top-1 against epochs, {report['name']}](../{report['plot']})")
        versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
        parts.append(f"Source: `{path.relative_to(path.parents[2]) if len(path.parents) > 2 else path}` "
                     f"(from `{report['sources']['log']}` and `{report['sources']['state']}`), {versions}. "
                     f"Command: `{report['command']}`.")
    return "\n\n".join(parts)


def methods_section(quality_reports) -> str:
    """README's method table: one row per registered method (name, paper, what it changes, views, status, from its
    `MethodSpec` and config), with the headline result: kNN top-1 after the fixed CPU budget that most methods ran
    (quality.py), beside the random-init network's."""
    import hf_contrastive

    headline = max(quality_reports, key=lambda pr: len(pr[1].get("rows", [])), default=None)
    by_method, budget, random_init = {}, None, None
    if headline is not None:
        path, report = headline
        budget = report.get("protocol", {}).get("budget_minutes")
        by_method = {r["method"]: r for r in report.get("rows", [])}
        random_init = by_method.pop("random_init", None)

    def views(config) -> str:
        kinds = list(config.views)
        grouped = [f"{kind} x{kinds.count(kind)}" if kinds.count(kind) > 1 else kind for kind in dict.fromkeys(kinds)]
        neighbours = getattr(config, "neighbour_views", None)
        return ", ".join(grouped) + (f" + a mined neighbour's {', '.join(neighbours)}" if neighbours else "")

    def result(name: str) -> str:
        row = by_method.get(name)
        if row is None:
            return "–"
        delta = row.get("minus_random_init_pp")
        return f"{100 * row['knn_top1_mean']:.1f}" + (f" ({delta:+.1f})" if delta is not None else "")

    rows = []
    for name in hf_contrastive.available_methods():
        spec = hf_contrastive.get_method(name)
        status = spec.status + (" (built from the abstract)" if spec.status == "reconstruction" else "")
        rows.append([f"`{name}`", f"{spec.title} ([{spec.arxiv}](https://arxiv.org/abs/{spec.arxiv}))", spec.tagline,
                     views(spec.config_class()), status, result(name)])
    column = (f"kNN top-1 % after {budget:g} CPU min (Δ random init, pp)" if budget else "headline result")
    text = table(["method", "paper", "what it changes", "views", "status", column], rows)
    if headline is not None:
        text += (f"\n\nHeadline: `{headline[0].name}` (`benchmarks/quality.py`, {headline[1].get('date', '')[:10]}): "
                 f"ResNet-18, CIFAR-10, the same fixed budget of training on a 2-core CPU for every method, mean over "
                 f"seeds; random init "
                 + (f"{100 * random_init['knn_top1_mean']:.1f}%" if random_init else "not measured")
                 + ". A sanity check that each method learns, not the papers' 200-epoch numbers "
                 "([docs/results.md](docs/results.md)).")
    return text


def sampler_label(row: dict) -> str:
    """' (sampler: simclr seed 1, 60.0 min)' for SPPS rows mined with a benchmark run's encoder (its cost is extra)."""
    labels = []
    for sampler in row.get("spps_samplers", []):
        if "method" in sampler:
            labels.append(f"{sampler['method']} seed {sampler['seed']}, {sampler['train_minutes']:.1f} min")
        else:
            labels.append(f"`{sampler['encoder']}`")
    return f" (sampler: {'; '.join(dict.fromkeys(labels))})" if labels else ""


def quality_section(reports) -> str:
    if not reports:
        return "_No fixed-budget results yet: run `python benchmarks/quality.py --budget_minutes M`._"
    parts = []
    for path, report in reports:
        protocol = report.get("protocol", {})
        rows = []
        for r in report.get("rows", []):
            accuracy = f"{100 * r['knn_top1_mean']:.2f}" + (f" ± {100 * r['knn_top1_std']:.2f}" if len(r["seeds"]) > 1 else "")
            flag = " (stopped early)" if r.get("runs_stopped_early") else ""
            rows.append([r["method"].replace("random_init", "**random init**") + sampler_label(r), str(len(r["seeds"])),
                         fmt(r.get("epochs_mean"), 1), fmt(r.get("train_minutes_mean"), 1) + flag,
                         ", ".join(f"{f:.3f}" for f in r["speed_factors"]) if r.get("speed_factors") else
                         ("–" if r["method"] == "random_init" else "1.000"), accuracy,
                         fmt(r.get("minus_random_init_pp"), 2) if "minus_random_init_pp" in r else "–",
                         fmt(r.get("separation_sigma"), 1) if r.get("separation_sigma") is not None else "–"])
        intro = (f"Budget {protocol.get('budget_minutes')} min of training per run on `{protocol.get('dataset_name')}`: "
                 f"{protocol.get('backbone')}, batch {protocol.get('batch')}, lr {protocol.get('learning_rate')}, "
                 f"{protocol.get('schedule')} (warm-up {100 * (protocol.get('warmup_fraction') or 0):.0f}%), each "
                 f"method's CIFAR-10 recipe otherwise; kNN top-1 ({protocol.get('knn')}).")
        if protocol.get("minutes") != "own":  # quality.py calibrated until 2026-12-06 (default MNN)
            calibration_methods = " and ".join(f"`{m}`" for m in report.get("calibrated_with") or ["mnn"])
            intro += (" Minutes are the reference machine's (the CPU of the table's first runs); a run on another CPU "
                      f"trained for budget x speed factor of its own minutes, where speed factor = "
                      f"{calibration_methods}'s seconds per step on that CPU / on the reference CPU "
                      "(benchmarks/README.md).")
        if protocol.get("config_overrides"):
            intro = f"**Ablation: `{protocol['config_overrides']}` replaces the recipe's value.** " + intro
        if protocol.get("augmentations"):
            intro = f"**Ablation: view options `{protocol['augmentations']}` replace the recipe's.** " + intro
        parts += [intro, table(["method", "seeds", "epochs", "train min", "speed factor", "kNN top-1 (%)",
                                "Δ random init (pp)", "separation (σ)"], rows)]
        if report.get("plot"):
            parts.append(f"![kNN top-1 against training time and epochs, {report.get('tag')}](../{report['plot']})")
        parts.append(provenance(report, path))
    return "\n\n".join(parts)


def neighbours_section(reports) -> str:
    if not reports:
        return "_No neighbour-agreement results (made by the retired `neighbours.py`, commit 8475c3b)._"
    parts = []
    for path, report in reports:
        protocol = report.get("protocol", {})
        ks = protocol.get("k", [])
        rows = [[r["label"], r["space"], *(fmt(100 * r[f"agreement@{k}"], 1) for k in ks), fmt(100 * r["chance"], 1)]
                for r in report.get("rows", [])]
        intro = (f"Share of each query's k nearest queue entries with the query's class: {protocol.get('queries')} "
                 f"train images against a queue of {protocol.get('queue_size')} other train images, "
                 f"`{protocol.get('view')}` views, networks in eval mode, `{protocol.get('dataset_name')}`. Made by "
                 "`neighbours.py`, retired since 2026-12-07 (`git show 8475c3b:benchmarks/neighbours.py`).")
        parts += [intro, table(["model", "space", *(f"agreement@{k} (%)" for k in ks), "chance (%)"], rows),
                  provenance(report, path)]
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- README rewriting


def overhead_section(reports) -> str:
    """One row per method: the op ratio of every code version counted (oldest first), then the newest one's details;
    then the timed runs (gpu_check.sh), if any."""
    if not reports:
        return "_No overhead results yet: run `python benchmarks/overhead.py`._"
    reports = sorted(reports, key=lambda pr: pr[1].get("date", ""))
    timed_table = ""
    if any("timed" in row for _, r in reports for row in r["results"]):  # gpu_check.sh: images/s, sync check
        timed_table = table(["method", "device / precision", "ours (img/s)", "limit (img/s)", "ours / limit", "sync-free"],
                            [[row["method"], f"{r.get('device_name', '?')} / {row['timed']['precision']}"
                              f"{' compiled' if row['timed']['compile'] else ''}",
                              fmt(row["timed"]["ours_images_per_s"], 0), fmt(row["timed"]["limit_images_per_s"], 0),
                              fmt(row["timed"]["ours_over_limit"], 2), row["timed"]["sync_free"]]
                             for _, r in reports for row in r["results"] if "timed" in row])
    loop_rows = [[row["method"], *(fmt(row["loop"][name]["bare_over_loop"], 2) for name in ("loader", "data_on_device")),
                  str(row["loop"]["loader"]["batch"]), r.get("date", "?")[:10]]
                 for _, r in reports for row in r["results"] if "loop" in row]
    if loop_rows:  # overhead.py --loop_steps: the real loop against its bare step
        timed_table += ("\n\n**The real loop against its bare step** (`--loop_steps`: `Pretrainer` on the shipped "
                        "sample, standard stem, against its forward/backward/SGD/EMA/enqueue repeated on one of its own "
                        "batches in the same process; bare / loop, 1.00 = the loop adds nothing):\n\n"
                        + table(["method", "with the loader (2 workers)", "--data_on_device", "batch", "date"],
                                loop_rows))
    reports = [(p, r) for p, r in reports if any("op_ratio" in row for row in r["results"])]
    if not reports:
        return timed_table.strip()
    path, newest = reports[-1]
    versions = [f"ops ours / limit: {r.get('label', '?')} (`{r.get('code', '?')}`)" for _, r in reports]
    by_method = [{row["method"]: row for row in r["results"]} for _, r in reports]
    rows = []
    for row in newest["results"]:
        ratios = [fmt(found.get(row["method"], {}).get("op_ratio"), 2) for found in by_method]
        rows.append([row["method"], *ratios, f"{row['ops_ours']} / {row['ops_limit']}",
                     fmt(row.get("op_ratio_stacked_limit"), 2), fmt(row.get("proxy_ours_over_limit"), 2),
                     str(row.get("tensors_from_python_data_ours", "–"))])
    setting = newest.get("setting", {})
    intro = (f"Each method's CIFAR-10 recipe (bn_splits, views, heads), batch {setting.get('batch_size')}, "
             f"{setting.get('image_size')} px, queue {setting.get('queue_size')}. **ops ours / limit**: aten ops that "
             "launch work in one training step (forward, loss, backward, SGD foreach, EMA, enqueue) over the bare "
             "backbone's per-view work (student views forward+backward, teacher views no-grad forward, SGD); "
             "deterministic. **/ stacked limit**: the same bare work with the views of one shape in one call. "
             "**proxy**: limit time / ours time with every convolution made 1x1 (per-op cost dominates, as on a fast "
             "GPU), interleaved in one process, one thread. **from Python data**: tensors built from Python values "
             "in a step (each a host-to-device copy on a GPU).")
    for earlier_path, earlier in reports[:-1]:
        intro += f"\n\nEarlier version: {provenance(earlier, earlier_path)}"
    header = ["method", *versions, "ops ours / limit (newest)", "ours / stacked limit", "proxy limit/ours",
              "from Python data"]
    return "\n\n".join([intro, table(header, rows), provenance(newest, path)] + ([timed_table] if timed_table else []))


def replace_section(text: str, name: str, content: str) -> tuple[str, bool]:
    pattern = re.compile(rf"(<!-- benchmarks:{name}:start -->)(.*?)(<!-- benchmarks:{name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        return text, False
    return pattern.sub(lambda m: f"{m.group(1)}\n{content}\n{m.group(3)}", text, count=1), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--results", default=str(RESULTS_DIR), help="Folder searched recursively for *.json.")
    parser.add_argument("--write", metavar="FILE", default=None, help="Rewrite the marked sections of FILE.")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--include_quick", action="store_true", help="Also consider --quick smoke runs.")
    for kind in ("throughput", "sweep", "dataloader"):
        parser.add_argument(f"--{kind}", default=None, metavar="FILE", help=f"Use this {kind} JSON.")
    args = parser.parse_args(argv)
    found = load_results(Path(args.results))
    throughput = pick(found, "throughput", args.include_quick, args.throughput)
    # Longest budget first: it is the headline; shorter budgets and explorations follow.
    quality = sorted(((p, r) for p, r in found.get("quality_summary", [])
                      if args.include_quick or not is_quick(r, p)),
                     key=lambda pr: pr[1].get("protocol", {}).get("budget_minutes") or 0, reverse=True)
    builders = {
        "throughput": lambda: throughput_section(throughput),
        "memory": lambda: memory_section(throughput),
        "sweep": lambda: sweep_section(pick(found, "throughput_sweep", args.include_quick, args.sweep)),
        "dataloader": lambda: dataloader_section(pick(found, "dataloader", args.include_quick, args.dataloader)),
        "quality": lambda: quality_section(quality),
        "neighbours": lambda: neighbours_section(
            sorted(found.get("neighbour_agreement", []), key=lambda pr: pr[1].get("date", ""), reverse=True)),
        "throughput_gpu": lambda: throughput_gpu_section(
            pick(found, "throughput", args.include_quick, None, device="cuda", precision="bf16"),
            pick(found, "throughput", args.include_quick, None, device="cuda", precision="fp32")),
        "dataloader_gpu": lambda: dataloader_section(pick(found, "dataloader", args.include_quick, None,
                                                          device="cuda")),
        "overhead": lambda: overhead_section(
            [(p, r) for p, r in found.get("overhead", []) if args.include_quick or not is_quick(r, p)]),
        "recipe": lambda: recipe_section(
            sorted(found.get("recipe_run", []), key=lambda pr: pr[1].get("date", ""), reverse=True)),
        "methods": lambda: methods_section(quality),
    }
    generated = {name: builders[name]() for name in args.sections}
    if not args.write:
        for name, content in generated.items():
            print(f"<!-- benchmarks:{name} -->\n{content}\n")
        return 0
    path = Path(args.write)
    text = path.read_text()
    written, missing = [], []
    for name, content in generated.items():
        text, ok = replace_section(text, name, content)
        (written if ok else missing).append(name)
    if written:
        path.write_text(text)
        print(f"{path}: rewrote section(s) {', '.join(written)}.")
    for name in missing:
        print(f"{path}: no markers for section '{name}' (add <!-- benchmarks:{name}:start --> and "
              f"<!-- benchmarks:{name}:end --> where its table should go); not written.")
    if not written:
        print(f"{path} is unchanged: it has none of the marker pairs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
