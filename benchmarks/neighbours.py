"""How often the queue neighbours that MNN (and MSF, NNCLR) pull each image towards share its class.

    python benchmarks/quality.py --budget_minutes 60 --methods mnn --seeds 1 --keep_outputs     # keeps model/
    python benchmarks/neighbours.py --model outputs/quality/60min/mnn_seed1/model --label "MNN, 60 min" \\
        --output benchmarks/results/neighbours_60min.json

MNN mixes each image's teacher projection with its k = 5 nearest entries of a queue of teacher projections and
pulls the student towards them: a neighbour of the same class is a useful extra positive, one of another class
pulls towards the wrong class. This measures the share of same-class neighbours for trained pretraining folders
(the `model/` folder of a training run holds the teacher) and for the same architecture at random initialisation:

- a queue-like bank of `--queue_size` random train images (a full queue holds the projections of the last
  `queue_size` training images, a uniform sample of the train split) and `--queries` other random train images,
  both through the view `--view` (default `weak`, the view MNN enqueues: crop + flip) under a fixed seed, the
  networks in eval mode;
- two spaces: the L2-normalised teacher projection (the space of MNN's and MSF's neighbour search; the student
  projection for models without a teacher projector, as NNCLR) and the L2-normalised student backbone feature
  (what the kNN monitor and the published encoder use);
- `hf_contrastive.evaluation.neighbour_label_agreement`: agreement@k = mean share of each query's k nearest bank
  entries that have its label; chance = sum_c P_query(c) P_bank(c) (10% on CIFAR-10).

A queue in training holds projections from teachers up to queue_size / batch steps old and from augmented views;
here one network embeds both sides, so the number is the purity of the embedding's neighbourhoods at the end of
training, not a replay of the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForPreTraining

import hf_contrastive  # noqa: F401  (registers our model types with the Auto classes)
from hf_contrastive import data as data_lib
from hf_contrastive.evaluation import neighbour_label_agreement

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_CIFAR10, display_path, environment, model_labels, write_json


def search_space(model) -> tuple[str, torch.nn.Module, torch.nn.Module]:
    """(name, encoder, projector) of the space the method's neighbour search uses."""
    if hasattr(model, "teacher_projector"):
        # PatchMix keeps its momentum (teacher) encoder at ``encoder`` and has no ``teacher_encoder``.
        return "teacher projection", getattr(model, "teacher_encoder", model.encoder), model.teacher_projector
    if hasattr(model, "projector"):
        return "student projection", model.encoder, model.projector
    raise ValueError(f"{type(model).__name__} has no projector: only the backbone space can be measured.")


@torch.no_grad()
def embed(model, loader: DataLoader, description: str) -> dict[str, torch.Tensor]:
    """Normalised features of both spaces and the labels of every image of ``loader`` (one pass)."""
    space, encoder, projector = search_space(model)
    student = getattr(model, "student_encoder", model.encoder)  # PatchMix's student is not its ``encoder``
    backbone, projection, labels = [], [], []
    for batch in tqdm(loader, desc=description, leave=False):
        pixels = batch["pixel_values"]
        backbone.append(F.normalize(student(pixels).pooler_output.float(), dim=1))
        projection.append(F.normalize(projector(encoder(pixels).pooler_output).float(), dim=1))
        labels.append(batch["labels"])
    return {"student backbone": torch.cat(backbone), space: torch.cat(projection), "labels": torch.cat(labels)}


def measure(model, label: str, source: str, splits, indices: dict[str, list[int]], args) -> list[dict]:
    model.eval()
    stats = data_lib.DATASET_STATS[data_lib.detect_dataset_stats(args.dataset_name)]
    transform = data_lib.build_view_transform(args.view, model.config.image_size, *stats)
    features = {}
    for part in ("queue", "queries"):
        dataset = data_lib.EvalImageDataset(splits.train.select(indices[part]), splits.image_column,
                                            splits.label_column, transform)
        torch.manual_seed(args.seed)  # the same augmented views for every model
        loader = DataLoader(dataset, batch_size=256, collate_fn=data_lib.collate_eval, num_workers=0)
        features[part] = embed(model, loader, f"{label}: {part}")
    rows = []
    for space in features["queue"]:
        if space == "labels":
            continue
        agreement = neighbour_label_agreement(features["queries"][space], features["queries"]["labels"],
                                              features["queue"][space], features["queue"]["labels"], tuple(args.k))
        rows.append({"label": label, "model": source, "method": model.config.model_type, "space": space,
                     **{key: round(value, 4) for key, value in agreement.items()}})
        print(f"{label:>28} | {space:>18} | " + " | ".join(f"{key} {value:.3f}" for key, value in agreement.items()))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", nargs="+", required=True, help="Pretraining folder(s): a run's output_dir/model.")
    parser.add_argument("--label", nargs="*", default=None, help="A name per --model for the table.")
    parser.add_argument("--dataset_name", default=display_path(SHARED_CIFAR10))
    parser.add_argument("--queue_size", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=10000)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5], help="Neighbour counts (MNN and MSF use 5).")
    parser.add_argument("--view", default="weak", choices=["weak", "strong", "eval"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_random_init", action="store_true", help="Skip the random-init reference row.")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    labels = model_labels(parser, args.model, args.label)

    splits = data_lib.load_image_dataset(args.dataset_name)
    if splits.label_column is None:
        parser.error(f"{args.dataset_name} has no label column: agreement needs labels.")
    if args.queue_size + args.queries > len(splits.train):
        parser.error(f"--queue_size + --queries ({args.queue_size + args.queries}) exceeds the {len(splits.train)} "
                     "train images.")
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(args.seed)).tolist()
    indices = {"queue": order[: args.queue_size], "queries": order[args.queue_size: args.queue_size + args.queries]}

    rows = []
    for folder, label in zip(args.model, labels, strict=True):
        if not (Path(folder) / "config.json").is_file():
            parser.error(f"{folder} has no config.json: pass the `model/` folder a training run wrote "
                         "(quality.py deletes it unless --keep_outputs).")
        rows += measure(AutoModelForPreTraining.from_pretrained(folder), label, folder, splits, indices, args)
    if not args.no_random_init:
        torch.manual_seed(args.seed)
        random_model = AutoModelForPreTraining.from_config(AutoConfig.from_pretrained(args.model[0]))
        rows += measure(random_model, "random init", f"{args.model[0]} (config only)", splits, indices, args)

    report = {**environment("cpu"), "benchmark": "neighbour_agreement",
              "protocol": {"dataset_name": args.dataset_name, "queue_size": args.queue_size, "queries": args.queries,
                           "k": args.k, "view": args.view, "seed": args.seed, "mode": "eval (BN running statistics)"},
              "rows": rows}
    write_json(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
