"""Linear probe of a frozen encoder (methods.md section 0): Linear(D, C) on the frozen backbone in eval mode,
100 epochs, batch 256, SGD nesterov momentum 0.9, no weight decay.

    # MNN repo: lr 30, x0.1 at epochs 60 and 80 (the default)
    accelerate launch recipes/linear_eval.py --model_name_or_path outputs/mnn-resnet18/model
    # MSVQ repo: lr 1.0, cosine
    accelerate launch recipes/linear_eval.py --model_name_or_path outputs/mnn-resnet18/model --lr_schedule cosine

Train augmentation: RandomResizedCrop + horizontal flip; test: the protocol's eval transform. Prints the best-epoch
top-1 (what the reference repos report) and the last-epoch top-1, writes <output_dir>/eval_results.json (with the
per-epoch history) and adds both numbers to the folder's model card. --help lists every flag.
"""

from __future__ import annotations

from typing import Any

from transformers import HfArgumentParser

from hf_contrastive.evaluation.linear import LinearEvalArguments, command_line, run_linear_eval


def main(argv: list[str] | None = None) -> dict[str, Any]:
    (args,) = HfArgumentParser(LinearEvalArguments).parse_args_into_dataclasses(args=argv)
    return run_linear_eval(args, command=command_line("linear_eval.py", argv))


if __name__ == "__main__":
    main()
