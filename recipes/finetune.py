"""Fine-tune an exported encoder for image classification with transformers' Trainer.

    accelerate launch recipes/finetune.py --model_name_or_path outputs/mnn-resnet18/model \
        --output_dir outputs/mnn-resnet18/finetune --num_train_epochs 3 --learning_rate 1e-3 \
        --per_device_train_batch_size 128 --eval_strategy epoch --report_to none

Works on any exported folder: ours (AutoModelForImageClassification puts a fresh Linear head on the pooled features)
or a native timm_wrapper folder. Preprocessing comes from the folder's AutoImageProcessor: the eval split goes
through the processor itself, the train split through a light augmentation (RandomResizedCrop(scale=(0.5, 1)) +
horizontal flip, with the processor's size and mean/std). Every transformers.TrainingArguments flag is accepted
(--push_to_hub --hub_model_id uploads the fine-tuned classifier through Trainer). The eval accuracy is written to
<output_dir>/eval_results.json and added to the evaluated folder's model card.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    EvalPrediction,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
)

import hf_contrastive  # noqa: F401  (registers our model types with the Auto classes)
from hf_contrastive import data as data_lib
from hf_contrastive.data import SAMPLE_DATASET
from hf_contrastive.evaluation.linear import (
    build_linear_train_transform,
    command_line,
    detect_dataset_id,
    record_results,
    resolve_preprocessing,
)


@dataclass
class FinetuneArguments:
    """Our options; everything else is a transformers.TrainingArguments flag."""

    model_name_or_path: str = field(metadata={"help": "An exported folder (ours or timm_wrapper) or a Hub id."})
    dataset_name: str | None = field(default=None, metadata={
        "help": "Hub dataset id, local parquet folder or image folder (default: the shipped CIFAR-10 sample)."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: detected)."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: detected)."})
    train_split: str = field(default="train", metadata={"help": "Training split."})
    eval_split: str | None = field(default=None, metadata={
        "help": "Eval split (default: test, validation or valid; else 10%% of train is held out)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N eval images."})
    min_crop_scale: float = field(default=0.5, metadata={
        "help": "Lower bound of the RandomResizedCrop scale of the train augmentation."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run the folder's own Python code, for model types hf_contrastive does not register (ours and native "
                "timm folders never need it). Only for folders you trust."})
    update_model_card: bool = field(default=True, metadata={
        "help": "Add the eval accuracy to the evaluated folder's README.md (model-index + table)."})

    def __post_init__(self) -> None:
        if self.dataset_name is None:
            self.dataset_name = str(SAMPLE_DATASET)


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Only what the model's forward takes."""
    return {"pixel_values": torch.stack([item["pixel_values"] for item in batch]),
            "labels": torch.tensor([item["labels"] for item in batch], dtype=torch.long)}


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Top-1 accuracy (numpy argmax over the logits)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


def run(args: FinetuneArguments, training_args: TrainingArguments, command: str | None = None) -> dict[str, Any]:
    splits = data_lib.load_image_dataset(
        args.dataset_name, image_column=args.image_column, label_column=args.label_column,
        train_split=args.train_split, eval_split=args.eval_split, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, seed=training_args.seed,
    )
    if splits.label_column is None or not splits.num_classes:
        raise ValueError(f"{args.dataset_name} has no label column; pass --label_column.")
    class_names = splits.class_names or [str(i) for i in range(splits.num_classes)]
    model = AutoModelForImageClassification.from_pretrained(
        args.model_name_or_path, num_labels=splits.num_classes, id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)}, ignore_mismatched_sizes=True,
        trust_remote_code=args.trust_remote_code,
    )
    processor = AutoImageProcessor.from_pretrained(args.model_name_or_path)
    prep = resolve_preprocessing(args.model_name_or_path, model)
    train_transform = build_linear_train_transform(prep.image_size, prep.mean, prep.std,
                                                   crop_scale=(args.min_crop_scale, 1.0))

    def eval_transform(image):
        return processor(image, return_tensors="pt")["pixel_values"][0]

    train_dataset, eval_dataset = (
        data_lib.EvalImageDataset(split, splits.image_column, splits.label_column, transform)
        for split, transform in ((splits.train, train_transform), (splits.eval, eval_transform))
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      data_collator=collate, compute_metrics=compute_metrics, processing_class=processor)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    output_dir = Path(training_args.output_dir)

    source_folder = Path(args.model_name_or_path)
    if trainer.is_world_process_zero() and source_folder.is_dir() and getattr(model.config, "auto_map", None):
        # The remote code next to the weights, so the classifier also loads with trust_remote_code alone.
        for code_file in source_folder.glob("*.py"):
            if not (output_dir / code_file.name).exists():
                shutil.copy2(code_file, output_dir / code_file.name)

    dataset_id, dataset_label = detect_dataset_id(args.dataset_name, None)
    global_batch = (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
                    * training_args.world_size)
    protocol = {
        "optimizer": str(getattr(training_args.optim, "value", training_args.optim)),
        "learning_rate": training_args.learning_rate, "lr_scheduler": str(getattr(
            training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        "warmup_steps": training_args.warmup_steps, "weight_decay": training_args.weight_decay,
        "epochs": round(float(trainer.state.epoch or 0), 3), "steps": trainer.state.global_step,
        "global_batch_size": global_batch,
        "train_augmentation": f"RandomResizedCrop({prep.image_size}, scale=({args.min_crop_scale}, 1)) + flip",
        "eval_preprocessing": f"{type(processor).__name__} of the folder",
        "train_split": args.train_split, "train_samples": len(train_dataset), "eval_samples": len(eval_dataset),
    }
    command = command or command_line("finetune.py")
    results = {
        "protocol_name": "full fine-tuning (AutoModelForImageClassification + Trainer)",
        "model_name_or_path": args.model_name_or_path, "dataset_name": args.dataset_name,
        "eval_split": splits.eval_split_name, "eval_accuracy": metrics["eval_accuracy"],
        "eval_loss": metrics.get("eval_loss"), "train_loss": train_result.metrics.get("train_loss"),
        "protocol": protocol, "command": command, "output_dir": str(output_dir),
    }
    entry = dict(task_name="Full fine-tuning (AutoModelForImageClassification + Trainer)", dataset_id=dataset_id,
                 dataset_name=dataset_label, split=splits.eval_split_name, metric_name="fine-tuned top-1",
                 value=metrics["eval_accuracy"], protocol_args=protocol, source=command)
    if trainer.is_world_process_zero():
        record_results(None, output_dir, results, model_name_or_path=args.model_name_or_path,
                       update_card=args.update_model_card, entries=[entry])
    if training_args.push_to_hub:
        trainer.push_to_hub(finetuned_from=args.model_name_or_path if not source_folder.is_dir() else None,
                            dataset=dataset_label, tasks="image-classification")
    if trainer.is_world_process_zero():
        print(f"\nFine-tuned top-1 on {len(eval_dataset)} {splits.eval_split_name} images: "
              f"{100 * metrics['eval_accuracy']:.2f}%\nClassifier: {output_dir}\n"
              f"Results: {output_dir / 'eval_results.json'}")
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = HfArgumentParser((FinetuneArguments, TrainingArguments))
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    return run(args, training_args, command_line("finetune.py", argv))


if __name__ == "__main__":
    main()
