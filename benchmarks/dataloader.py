"""Images per second of the view pipeline (decode + augment) per DataLoader worker count, against what the model
consumes.

    python benchmarks/dataloader.py --quick --output benchmarks/results/dataloader_quick.json
    python benchmarks/dataloader.py --output benchmarks/results/dataloader.json

One image = one sample with all its views (the method's `config.views`, e.g. MNN: strong + weak), as in
throughput.py. For each worker count it iterates `hf_contrastive.data.MultiViewDataset` (the training dataset class:
decode, the views' torchvision v2 transforms under the per-sample seed) through a `DataLoader` with
`collate_views`, as the training loop does, and reports images/s after the first batch (worker start-up reported
apart). It also splits the per-image cost of the main process into decode and each view transform.

The model's consumption is the method's "ours" images/s of a training step, read from a throughput JSON
(`--throughput`, default benchmarks/results/throughput.json, same device kind) when it holds the method. With
`--train_steps N` it also runs N real training steps of the method fed by the loader at each worker count and
compares them with the same steps on a fixed batch: on a CPU the workers share cores with the model, which a loader
measured alone does not show.

The same is measured for `--augment_on_device` (`device_path` in the JSON): the loader then only crops and flips
(uint8 views), and `device_views.DevicePhotometricAugment` does jitter, grayscale, blur and normalisation per batch on `--device`
(default: CUDA when available, else the CPU): per-image loader cost, loader images/s per worker count, and the
device half's images/s per batch of all views. For `--data_on_device` (`data_on_device`): the one-off decode of the
split and the images/s of whole views made on the device (gather, crop, flip, photometric ops, normalise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import hf_contrastive
from hf_contrastive import data as data_lib
from hf_contrastive import device_views

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, SHARED_CIFAR10, display_path, environment, set_threads, usable_cores, write_json

SAMPLE = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"


def build_dataset(dataset_name: str, method: str, image_size: int, max_samples: int | None,
                  photometric_on_device: bool = False):
    splits = data_lib.load_image_dataset(dataset_name, max_train_samples=max_samples)
    stats = data_lib.DATASET_STATS[data_lib.detect_dataset_stats(dataset_name)]
    config = hf_contrastive.get_method(method).config_class(image_size=image_size)
    kinds = list(config.views)
    neighbour_kinds = list(getattr(config, "neighbour_views", None) or [])
    transforms, neighbour_transforms = (
        [data_lib.build_view_transform(kind, image_size, *stats, photometric_on_device=photometric_on_device)
         for kind in group] for group in (kinds, neighbour_kinds))
    dataset = data_lib.MultiViewDataset(splits.train, splits.image_column, splits.label_column, transforms, seed=0,
                                        neighbour_transforms=neighbour_transforms)
    return splits, dataset, kinds + neighbour_kinds, transforms + neighbour_transforms


def stage_costs(splits, dataset, kinds, transforms, count: int) -> dict:
    """Microseconds per image of decode and of each view transform, in this process (one thread of work)."""
    count = min(count, len(dataset))
    start = time.perf_counter()
    values = [dataset.dataset[i][splits.image_column] for i in range(count)]
    row_us = (time.perf_counter() - start) / count * 1e6
    start = time.perf_counter()
    images = [data_lib.decode_image(v) for v in values]
    decode_us = (time.perf_counter() - start) / len(images) * 1e6
    costs = {"row_fetch_us": round(row_us, 1), "decode_us": round(decode_us, 1)}
    for index, (kind, transform) in enumerate(zip(kinds, transforms, strict=True)):
        torch.manual_seed(index)
        start = time.perf_counter()
        for image in images:
            transform(image)
        costs[f"view{index}_{kind}_us"] = round((time.perf_counter() - start) / len(images) * 1e6, 1)
    costs["total_us"] = round(sum(costs.values()), 1)
    # The whole MultiViewDataset.__getitem__ (row, decode, per-sample seed and fork_rng, views): the loader's unit.
    dataset.set_epoch(0)
    start = time.perf_counter()
    for i in range(count):
        dataset[i]
    costs["getitem_us"] = round((time.perf_counter() - start) / count * 1e6, 1)
    costs["images_per_s_one_process"] = round(1e6 / costs["getitem_us"], 1)
    return costs


def make_loader(dataset, batch: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, collate_fn=data_lib.collate_views,
                      num_workers=workers, persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))


def loader_rate(dataset, batch: int, workers: int, batches: int) -> dict:
    """Images/s of the loader alone, after the first batch (whose wait, worker start-up included, is apart)."""
    dataset.set_epoch(0)
    loader = make_loader(dataset, batch, workers)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first_batch_s = time.perf_counter() - start
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            item = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            item = next(iterator)
        seen += item["views"][0].shape[0]
    elapsed = time.perf_counter() - start
    del iterator, loader
    return {"workers": workers, "batches": batches, "first_batch_s": round(first_batch_s, 3),
            "images_per_s": round(seen / elapsed, 1)}


def load_next(iterator, inputs: list[torch.Tensor]) -> None:
    item = next(iterator)
    for target, source in zip(inputs, item["views"] + item.get("neighbour_views", []), strict=True):
        target.copy_(source)


def training_rates(dataset, method: str, image_size: int, batch: int, workers_list: list[int], steps: int,
                   small_stem: bool) -> dict:
    """Images/s of real training steps fed by the loader, per worker count, and on one fixed batch."""
    from throughput import build_config
    from training_setup import ours_step

    spec, config = build_config(method, image_size, small_stem)
    dataset.set_epoch(0)
    fixed = next(iter(make_loader(dataset, batch, 0)))
    step, _, _ = ours_step(spec, config, {name: fixed[name] for name in ("views", "neighbour_views") if name in fixed},
                           torch.device("cpu"))
    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synthetic = batch * steps / (time.perf_counter() - start)
    results = {"fixed_batch_images_per_s": round(synthetic, 2), "with_loader": []}
    model_step = step
    # The step closure reads the tensors it was built with: each loaded batch is copied into them.
    inputs = fixed["views"] + fixed.get("neighbour_views", [])
    for workers in workers_list:
        loader = make_loader(dataset, batch, workers)
        iterator = iter(loader)
        load_next(iterator, inputs)
        model_step()
        start = time.perf_counter()
        for _ in range(steps):
            load_next(iterator, inputs)
            model_step()
        rate = batch * steps / (time.perf_counter() - start)
        results["with_loader"].append({"workers": workers, "images_per_s": round(rate, 2),
                                       "fraction_of_fixed_batch_rate": round(rate / synthetic, 3)})
        print(f"  training fed by {workers} worker(s): {rate:7.1f} img/s ({100 * rate / synthetic:.0f}% of the "
              f"fixed-batch rate {synthetic:.1f})", flush=True)
        del iterator, loader
    return results


def _median_rate(run, batch: int, device: torch.device, repeats: int) -> dict:
    """Images/s of ``run(seed)`` (one batch's views), median of ``repeats`` after one warm-up."""
    def timed(seed: int) -> float:
        start = time.perf_counter()
        run(seed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed(0)
    median = sorted(timed(repeat + 1) for repeat in range(repeats))[repeats // 2]
    return {"device": str(device), "batch": batch, "median_batch_s": round(median, 4),
            "images_per_s": round(batch / median, 1)}


def device_half_rate(dataset, kinds: list[str], image_size: int, stats, batch: int, device: torch.device,
                     repeats: int) -> dict:
    """Images/s of DevicePhotometricAugment over all views of a loaded uint8 batch on ``device``."""
    augments = [device_views.DevicePhotometricAugment(kind, image_size, *stats) for kind in kinds]
    dataset.set_epoch(0)
    item = next(iter(make_loader(dataset, batch, 0)))
    views = [view.to(device) for view in item["views"] + item.get("neighbour_views", [])]

    def run(seed: int) -> None:
        for number, (augment, images) in enumerate(zip(augments, views, strict=True)):
            augment(images, seed=seed * 97 + number)

    return _median_rate(run, batch, device, repeats)


def data_on_device_rate(splits, kinds: list[str], image_size: int, stats, batch: int, device: torch.device,
                        repeats: int) -> dict:
    """``--data_on_device``: images/s of a whole batch's views (gather, crop, flip, photometric, normalise) made by
    DeviceTrainingSet from the split decoded on ``device``, and the one-off decode time."""
    start = time.perf_counter()
    images = device_views.decode_to_uint8(splits.train, splits.image_column).to(device)
    decode_s = time.perf_counter() - start
    augments = [device_views.DeviceViewAugment(kind, image_size, *stats) for kind in kinds]
    data = device_views.DeviceTrainingSet(images, augments, seed=0)
    order = data.permutation(0)
    rows = [order[number * batch:(number + 1) * batch] for number in range(min(repeats + 1, len(data) // batch))]

    def run(seed: int) -> None:
        data.batch(rows[seed % len(rows)], seed)

    return {**_median_rate(run, batch, device, repeats), "decode_s": round(decode_s, 2),
            "train_images": len(data), "uint8_mib": round(images.numel() / 2**20, 1)}


def model_consumption(path: str | None, method: str, device_kind: str) -> dict | None:
    if not path or not Path(path).is_file():
        return None
    report = json.loads(Path(path).read_text())
    if not str(report.get("device", "cpu")).startswith(device_kind):
        return None
    for row in report.get("results", []):
        if row.get("method") == method:
            return {"source": str(path), "images_per_s": row["ours_images_per_s"], "batch": row.get("batch"),
                    "small_image_stem": row.get("small_image_stem"), "device": report.get("device"),
                    "device_name": report.get("device_name"), "date": report.get("date")}
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="The shipped sample, few batches, workers 0 1.")
    parser.add_argument("--dataset_name", default=None,
                        help="Parquet folder / Hub id (default ../shared/data/cifar10 if present, else the sample).")
    parser.add_argument("--method", default="mnn", help="Whose views to build (config.views). Default mnn.")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=None, help="Default 128 (quick: 64).")
    parser.add_argument("--batches", type=int, default=None, help="Timed batches per worker count (default 40).")
    parser.add_argument("--workers", type=int, nargs="*", default=None,
                        help="Worker counts (default 0 1 2 ... usable cores, and 2x cores).")
    parser.add_argument("--train_steps", type=int, default=None,
                        help="Also time N training steps fed by the loader per worker count (default 5, quick 3; "
                             "0: off).")
    parser.add_argument("--small_image_stem", choices=("true", "false"), default=None,
                        help="Model of --train_steps: CIFAR stem (default true; quick: false).")
    parser.add_argument("--throughput", default=None,
                        help="Throughput JSON with the model's images/s, same method and device kind (default "
                             "benchmarks/results/throughput.json; quick: throughput_quick.json).")
    parser.add_argument("--device", default=None, help="Where the --augment_on_device half runs and the model "
                        "trains: the loader/model ratio reads the throughput JSON of this device kind (default cuda "
                        "if available, else cpu).")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    cores = usable_cores()
    dataset_name = args.dataset_name or display_path(SAMPLE if args.quick or not SHARED_CIFAR10.is_dir()
                                                     else SHARED_CIFAR10)
    batch = args.batch or (64 if args.quick else 128)
    batches = args.batches or (5 if args.quick else 40)
    workers_list = args.workers if args.workers is not None else (
        [0, 1] if args.quick else sorted({0, 1, 2, *range(1, cores + 1), 2 * cores}))
    train_steps = args.train_steps if args.train_steps is not None else (3 if args.quick else 5)
    small_stem = (args.small_image_stem or ("false" if args.quick else "true")) == "true"
    output = args.output or f"benchmarks/results/dataloader{'_quick' if args.quick else ''}.json"

    started = time.perf_counter()
    splits, dataset, kinds, transforms = build_dataset(dataset_name, args.method, args.image_size,
                                                       max_samples=None)
    print(f"{dataset_name}: {len(dataset)} train images, views {kinds}, batch {batch}, {cores} usable cores")
    stages = stage_costs(splits, dataset, kinds, transforms, 200 if args.quick else 2000)
    print(f"one process, per image: row {stages['row_fetch_us']:.0f} us + decode {stages['decode_us']:.0f} us + views "
          f"= {stages['total_us']:.0f} us; whole __getitem__ {stages['getitem_us']:.0f} us "
          f"({stages['images_per_s_one_process']:.0f} img/s)")
    rates = []
    for workers in workers_list:
        row = loader_rate(dataset, batch, workers, batches)
        rates.append(row)
        print(f"workers {workers:2d}: {row['images_per_s']:8.1f} img/s   (first batch after {row['first_batch_s']:.2f} s)",
              flush=True)
    # The model trains on the GPU when there is one: compare with its throughput there (same device kind).
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    throughput_json = args.throughput or f"benchmarks/results/throughput{'_quick' if args.quick else ''}.json"
    consumption = model_consumption(throughput_json, args.method, device.type)
    report = {
        "benchmark": "dataloader", **environment(device), "quick": args.quick,
        "setting": {"dataset_name": dataset_name, "train_images": len(dataset), "method": args.method,
                    "views": kinds, "image_size": args.image_size, "batch": batch, "timed_batches": batches,
                    "pin_memory": False},
        "stage_costs": stages,
        "loader": rates,
        "model_consumption": consumption,
    }
    if consumption:
        model_rate = consumption["images_per_s"]
        for row in rates:
            row["loader_over_model"] = round(row["images_per_s"] / model_rate, 2)
        print(f"model ({args.method}, {consumption['source']}): {model_rate:.1f} img/s; "
              + ", ".join(f"{r['workers']} workers {r['loader_over_model']:.1f}x" for r in rates))
    else:
        print(f"no throughput result for {args.method} in {throughput_json}: run benchmarks/throughput.py first "
              "for the loader/model ratio.")
    # --augment_on_device: the loader crops and flips only; the photometric half runs per batch on the device.
    _, uint8_dataset, _, uint8_transforms = build_dataset(dataset_name, args.method, args.image_size, max_samples=None,
                                                          photometric_on_device=True)
    device_stages = stage_costs(splits, uint8_dataset, kinds, uint8_transforms, 200 if args.quick else 2000)
    device_rates = [loader_rate(uint8_dataset, batch, workers, batches) for workers in workers_list]
    stats = data_lib.DATASET_STATS[data_lib.detect_dataset_stats(dataset_name)]
    device_half = device_half_rate(uint8_dataset, kinds, args.image_size, stats, batch, device, 3 if args.quick else 10)
    report["device_path"] = {"stage_costs": device_stages, "loader": device_rates, "device_half": device_half}
    # --data_on_device: no loader; the whole view is made on the device from the decoded split.
    whole = data_on_device_rate(splits, kinds, args.image_size, stats, batch, device, 3 if args.quick else 10)
    report["data_on_device"] = whole
    print(f"--data_on_device: {whole['images_per_s']:.0f} img/s of whole views on {device} (decoding "
          f"{whole['train_images']} images once: {whole['decode_s']:.1f} s, {whole['uint8_mib']:.0f} MiB)", flush=True)
    print(f"--augment_on_device: per image {device_stages['getitem_us']:.0f} us in the loader ("
          f"{device_stages['images_per_s_one_process']:.0f} img/s), "
          + ", ".join(f"{r['workers']} workers {r['images_per_s']:.0f} img/s" for r in device_rates)
          + f"; device half on {device}: {device_half['images_per_s']:.0f} img/s", flush=True)
    if train_steps > 0:
        report["training"] = {"steps": train_steps, "small_image_stem": small_stem,
                              **training_rates(dataset, args.method, args.image_size, batch, workers_list,
                                                 train_steps, small_stem)}
    report["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(output, report)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
