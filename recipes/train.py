"""Pretrain a contrastive image encoder.

    accelerate launch recipes/train.py                       # MNN on the shipped CIFAR-10 sample, a few minutes on CPU
    accelerate launch recipes/train.py --config recipes/configs/mnn_cifar10.yaml --output_dir outputs/mnn-resnet18

Every flag is listed by --help; flags override the --config YAML file. Mixed precision and multi-GPU come from
`accelerate launch` (--mixed_precision bf16, --multi_gpu --num_processes N).
"""

import hf_contrastive  # noqa: F401  (registers the methods with the Auto classes)
from hf_contrastive.training import parse_args, train


def main() -> None:
    train(parse_args())


if __name__ == "__main__":
    main()
