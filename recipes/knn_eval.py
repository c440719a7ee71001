"""kNN top-1 of a frozen encoder (methods.md section 0): weighted vote of the k=200 nearest train images, T=0.1.

    accelerate launch recipes/knn_eval.py --model_name_or_path outputs/mnn-resnet18/model
    accelerate launch recipes/knn_eval.py --model_name_or_path outputs/mnn-resnet18/model \
        --dataset_name ../shared/data/cifar10 --knn_k 200 --knn_temperature 0.1

The bank is the whole train split and the queries the eval split, both through the protocol's eval transform with
the folder's normalisation; features are the L2-normalised pooled features of the encoder in eval mode. Writes
<output_dir>/eval_results.json and adds the result to the folder's model card. --help lists every flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser

from hf_contrastive import data as data_lib
from hf_contrastive.evaluation import knn_accuracy
from hf_contrastive.evaluation.linear import (
    FrozenEvalArguments,
    command_line,
    detect_dataset_id,
    eval_dataloader,
    load_frozen_encoder,
    load_labelled_splits,
    make_accelerator,
    record_results,
    resolve_preprocessing,
)


@dataclass
class KnnEvalArguments(FrozenEvalArguments):
    knn_k: int = field(default=200, metadata={"help": "Neighbours of the weighted vote (protocol: 200)."})
    knn_temperature: float = field(default=0.1, metadata={"help": "Temperature T of the exp(sim / T) weights (0.1)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.knn_k <= 0 or self.knn_temperature <= 0:
            raise ValueError(
                f"--knn_k and --knn_temperature must be positive, got {self.knn_k}, {self.knn_temperature}."
            )


def run(args: KnnEvalArguments, command: str | None = None) -> dict[str, Any]:
    accelerator = make_accelerator(args.seed)
    encoder = load_frozen_encoder(args.model_name_or_path, args.trust_remote_code).to(accelerator.device)
    prep = resolve_preprocessing(args.model_name_or_path, encoder, dataset_stats=args.dataset_stats,
                                 image_size=args.image_size)
    splits = load_labelled_splits(args)
    transform = data_lib.build_view_transform("eval", prep.image_size, prep.mean, prep.std)
    bank, test = (
        accelerator.prepare(eval_dataloader(split, splits, transform, args.per_device_eval_batch_size,
                                            args.dataloader_num_workers))
        for split in (splits.train, splits.eval)
    )
    accelerator.print(f"kNN | {args.model_name_or_path} | bank {len(splits.train)} {args.train_split} images | "
                      f"{len(splits.eval)} {splits.eval_split_name} images | k={args.knn_k}, T={args.knn_temperature}")
    top1 = knn_accuracy(encoder, bank, test, accelerator, splits.num_classes, args.knn_k, args.knn_temperature)

    dataset_id, dataset_label = detect_dataset_id(args.dataset_name, args.dataset_stats)
    protocol = {"k": args.knn_k, "temperature": args.knn_temperature, "vote": "weighted, exp(sim / T)",
                "features": "L2-normalised pooled, encoder in eval mode", "bank_split": args.train_split,
                "bank_samples": len(splits.train), "eval_samples": len(splits.eval), "image_size": prep.image_size,
                "normalisation": prep.source}
    command = command or command_line("knn_eval.py")
    output_dir = args.default_output_dir("knn_eval")
    results = {"protocol_name": "weighted kNN on frozen features", "model_name_or_path": args.model_name_or_path,
               "dataset_name": args.dataset_name, "eval_split": splits.eval_split_name, "knn_top1": top1,
               "num_classes": splits.num_classes, "protocol": protocol, "command": command,
               "output_dir": str(output_dir)}
    entry = dict(task_name=f"kNN evaluation (k={args.knn_k}, T={args.knn_temperature}, frozen features)",
                 dataset_id=dataset_id, dataset_name=dataset_label, split=splits.eval_split_name,
                 metric_name=f"kNN top-1 (knn_eval, k={args.knn_k}, T={args.knn_temperature})", value=top1,
                 protocol_args=protocol, source=command)
    record_results(accelerator, output_dir, results, model_name_or_path=args.model_name_or_path,
                   update_card=args.update_model_card, entries=[entry])
    accelerator.print(f"\nkNN top-1 (k={args.knn_k}, T={args.knn_temperature}) on {len(splits.eval)} "
                      f"{splits.eval_split_name} images: {100 * top1:.2f}%\n"
                      f"Results: {output_dir / 'eval_results.json'}")
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    (args,) = HfArgumentParser(KnnEvalArguments).parse_args_into_dataclasses(args=argv)
    return run(args, command_line("knn_eval.py", argv))


if __name__ == "__main__":
    main()
