"""Pretrain a contrastive image encoder.

    accelerate launch recipes/train.py                       # MNN on the shipped CIFAR-10 sample, a few minutes on CPU
    accelerate launch recipes/train.py --config recipes/configs/mnn_cifar10.yaml --output_dir outputs/mnn-resnet18

Every flag is listed by --help; flags override the --config YAML file. Mixed precision and multi-GPU come from
`accelerate launch` (--mixed_precision bf16, --multi_gpu --num_processes N).

Exit status: 0 done; 2 an error in the arguments, recipe, dataset or paths (one line on stderr;
HF_CONTRASTIVE_TRACEBACK=1 shows the traceback); 143 / 130 stopped by SIGTERM / SIGINT after saving a checkpoint
(resume with the same command and --resume_from_checkpoint auto); 1 a bug (with its traceback).
"""

import sys

import hf_contrastive  # noqa: F401  (registers the methods with the Auto classes)
from hf_contrastive.training import main

if __name__ == "__main__":
    sys.exit(main())
