"""How often SSCL's debiased denominator sits at its floor, where a query's loss sends no gradient to any negative.

    python benchmarks/quality.py --budget_minutes 60 --methods sscl --seeds 1 --keep_outputs     # keeps model/
    python benchmarks/sscl_floor.py --model outputs/quality/60min/sscl_seed1/model --label "SSCL, 60 min, seed 1" \\
        --output benchmarks/results/sscl_floor_60min.json

SSCL's third ingredient (Chuang et al.'s debiasing, `hf_contrastive.losses.sscl_loss`) replaces the mean negative
term by `max((weighted mean - tau_plus * exp(<q, k> / tau)) / (1 - tau_plus), exp(-1 / tau))`. When the positive
pair is well aligned, `tau_plus * exp(<q, k> / tau)` outgrows the negatives' mean (the more so, the smaller `tau`),
the floor holds, and that query's loss only pulls it towards its key: its negatives get no gradient
(`hf_contrastive.losses.sscl_floor_mask`). This measures the share of such queries.

For each `--model` (an SSCL pretraining folder: a run's `output_dir/model`; or a trainer checkpoint folder
`checkpoints/step_N`, whose config then comes from `--config_from`) and for the same architecture at random
initialisation: `--images` random train images, two `strong` views each (the recipe's views) under a fixed seed,
the networks in eval mode; `q` = student projection of view 1, `k` = teacher projection of view 2, the model's own
queue, and mixing draws from a fixed seed: the first direction of SSCL's forward. Per model: the share of queries
at the floor with the model's `tau` and `tau_plus`, the same share if `tau` were each of `--also_tau` (same
features: how the floor depends on the temperature alone), the mean positive cosine `<q, k>`, the mean cosine to
the queue, and the mean probability of the positive in MoCo's softmax over the same features (what the frame
without the three ingredients would see).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModelForPreTraining

import hf_contrastive  # noqa: F401  (registers our model types with the Auto classes)
from hf_contrastive import data as data_lib
from hf_contrastive.losses import sscl_floor_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_CIFAR10, display_path, environment, model_labels, write_json


def strong_views(splits, indices: list[int], image_size: int, dataset_name: str, seed: int) -> list[torch.Tensor]:
    """Two `strong` views of each image, ``[N, C, H, W]`` each, the same for every model."""
    stats = data_lib.DATASET_STATS[data_lib.detect_dataset_stats(dataset_name)]
    dataset = data_lib.EvalImageDataset(splits.train.select(indices), splits.image_column, splits.label_column,
                                        data_lib.build_view_transform("strong", image_size, *stats))
    torch.manual_seed(seed)
    return [torch.cat([batch["pixel_values"] for batch in
                       DataLoader(dataset, batch_size=256, collate_fn=data_lib.collate_eval, num_workers=0)])
            for _ in range(2)]


@torch.no_grad()
def measure(model, label: str, source: str, views: list[torch.Tensor], args) -> dict:
    model.eval()
    config = model.config
    # Eval mode: the student's and the teacher's projections as the loss sees them (no batch statistics involved).
    q = torch.cat([model.student_embeddings([chunk])[0] for chunk in views[0].split(256)])
    k = torch.cat([model.teacher_embeddings([chunk])[0] for chunk in views[1].split(256)])
    queue = model.queue.features
    generator = torch.Generator().manual_seed(args.seed)
    draws = {"num_hard": config.num_hard_negatives,
             "mix_indices": torch.randint(config.num_hard_negatives, (len(q), config.num_synthetic_negatives, 2),
                                          generator=generator),
             "mix_alpha": torch.rand(len(q), config.num_synthetic_negatives, generator=generator)}
    shares = {}
    for tau in [config.tau, *args.also_tau]:
        mask = sscl_floor_mask(q, k, queue, tau, **draws, beta=config.hardness_beta, tau_plus=config.tau_plus)
        shares[f"{tau:g}"] = round(mask.float().mean().item(), 4)
    qn, kn, queue_n = (F.normalize(x.float(), dim=1) for x in (q, k, queue))
    positive_cos = (qn * kn).sum(dim=1)
    queue_cos = qn @ queue_n.T
    moco_logits = torch.cat([positive_cos[:, None], queue_cos], dim=1) / config.tau
    row = {"label": label, "model": source, "tau": config.tau, "tau_plus": config.tau_plus,
           "hardness_beta": config.hardness_beta, "queries": len(q),
           "share_at_floor": shares[f"{config.tau:g}"], "share_at_floor_by_tau": shares,
           "mean_positive_cos": round(positive_cos.mean().item(), 4),
           "mean_queue_cos": round(queue_cos.mean().item(), 4),
           "mean_moco_positive_probability": round(F.softmax(moco_logits, dim=1)[:, 0].mean().item(), 4)}
    print(f"{label:>32} | at floor {row['share_at_floor']:.3f} (by tau {shares}) | <q,k> "
          f"{row['mean_positive_cos']:.3f} | <q,queue> {row['mean_queue_cos']:.3f}")
    return row


def load(folder: str, config_from: str | None):
    """A Hub-style SSCL pretraining folder, or a trainer checkpoint folder (weights only) with another's config."""
    is_hub_folder = (Path(folder) / "config.json").is_file()
    if not is_hub_folder and not ((Path(folder) / "model.safetensors").is_file() and config_from is not None):
        raise SystemExit(f"{folder} has no config.json: pass a run's `model/` folder, or a `checkpoints/step_N` "
                         "folder (with model.safetensors) and --config_from <a model/ folder of the same run>.")
    config = AutoConfig.from_pretrained(folder if is_hub_folder else config_from)
    if config.model_type != "sscl":
        raise SystemExit(f"{folder} is a {config.model_type!r} model; this measures SSCL's loss only.")
    if is_hub_folder:
        return AutoModelForPreTraining.from_pretrained(folder)
    model = AutoModelForPreTraining.from_config(config)
    model.load_state_dict(load_file(Path(folder) / "model.safetensors"))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", nargs="+", required=True,
                        help="SSCL pretraining folder(s) (a run's output_dir/model) or trainer checkpoint folders.")
    parser.add_argument("--label", nargs="*", default=None, help="A name per --model for the table.")
    parser.add_argument("--config_from", default=None, help="A model/ folder whose config the checkpoints use.")
    parser.add_argument("--dataset_name", default=display_path(SHARED_CIFAR10))
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--also_tau", type=float, nargs="*", default=[0.5],
                        help="Other temperatures to evaluate the floor at, on the same features (HCL used 0.5).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_random_init", action="store_true", help="Skip the random-init reference row.")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    labels = model_labels(parser, args.model, args.label)
    if any(tau <= 0 for tau in args.also_tau):
        parser.error("--also_tau values must be > 0.")

    models = [(load(folder, args.config_from), label, folder) for folder, label in zip(args.model, labels, strict=True)]
    splits = data_lib.load_image_dataset(args.dataset_name)
    if args.images > len(splits.train):
        parser.error(f"--images {args.images} exceeds the {len(splits.train)} train images.")
    indices = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(args.seed))[: args.images]
    views = strong_views(splits, indices.tolist(), models[0][0].config.image_size, args.dataset_name, args.seed)
    rows = [measure(model, label, folder, views, args) for model, label, folder in models]
    if not args.no_random_init:
        torch.manual_seed(args.seed)
        random_model = AutoModelForPreTraining.from_config(models[0][0].config)
        rows.append(measure(random_model, "random init", f"{args.model[0]} (config only)", views, args))

    report = {**environment("cpu"), "benchmark": "sscl_floor",
              "protocol": {"dataset_name": args.dataset_name, "images": args.images, "view": "strong",
                           "seed": args.seed, "also_tau": args.also_tau, "mode": "eval (BN running statistics)",
                           "floor": "exp(-1 / tau)"},
              "rows": rows}
    write_json(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
