"""Process-group helpers shared by training and evaluation."""

from __future__ import annotations

import os

import torch
from torch import nn

from .models.modeling_contrastive import all_gather_with_grad


def distributed_without_gpu() -> bool:
    """True under torchrun (WORLD_SIZE > 1) on a machine without GPU: Accelerate then only forms the (gloo) process
    group when given ``cpu=True``; otherwise every process would run alone."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1d or 2d) whose training statistics are those of the global batch over every process.

    ``torch.nn.SyncBatchNorm`` does the same with fused kernels but has no CPU kernels, so multi-process CPU training
    (gloo) uses this module instead. Per channel each process sums ``d = x - shift`` and ``d^2`` over its
    values (``shift`` = the running mean, the same on every process); the sums are gathered with gradients
    (`all_gather_with_grad`), so ``mean = shift + S1 / n`` and ``var = S2 / n - (S1 / n)^2`` (biased, for
    normalising) are the global-batch statistics and gradients flow through them to every process. Running statistics use the unbiased variance ``var * n / (n - 1)``, as BatchNorm does. Parameters and
    buffers keep BatchNorm's names, so checkpoints are interchangeable. In eval mode it is plain BatchNorm; in
    one process it computes the same statistics with the same formula (so a 1-process run and an N-process run
    differ only by summation order; torch's own CPU BatchNorm backward is less accurate in float32).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3, 4, 5):
            raise ValueError(f"GlobalBatchNorm expects a [N, C, ...] input, got {x.dim()} dimensions.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        # Statistics in at least float32 (fp16/bf16 inputs under autocast are upcast).
        values = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        shape = [1, channels] + [1] * (x.dim() - 2)
        # One collective per layer: sums of x - shift and its square. The shift (the running mean, identical on
        # every process) keeps E[d^2] - E[d]^2 from cancelling when the mean is large against the spread.
        shift = self.running_mean.detach().to(values.dtype) if self.track_running_stats else values.new_zeros(channels)
        deviations = values - shift.view(shape)
        local = torch.cat([deviations.sum(dims), (deviations * deviations).sum(dims),
                           values.new_tensor([x.numel() / channels])])
        total = all_gather_with_grad(local[None]).sum(dim=0)
        count = total[-1]
        mean_deviation = total[:channels] / count
        mean = shift + mean_deviation
        var = (total[channels:2 * channels] / count - mean_deviation * mean_deviation).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * count / (count - 1).clamp_min(1.0)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
                self.num_batches_tracked.add_(1)
        out = (values - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


def use_global_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm of ``model`` by one normalising over the global batch of all processes:
    ``torch.nn.SyncBatchNorm`` on GPUs, :class:`GlobalBatchNorm` elsewhere. Weights and buffers are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _replace_batchnorm(model)


def _replace_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        reference = module.running_mean if module.running_mean is not None else module.weight
        replacement = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats, device=reference.device, dtype=reference.dtype)
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        for parameter, original in zip(replacement.parameters(), module.parameters(), strict=True):
            parameter.requires_grad_(original.requires_grad)
        return replacement
    for name, child in module.named_children():
        module.add_module(name, _replace_batchnorm(child))
    return module
