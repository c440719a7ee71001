"""A dispatch mode that counts host-device traffic inside a block (used by the step and device-view tests)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostDeviceTraffic(TorchDispatchMode):
    """Counts what on an accelerator moves data between host and device inside a step: tensors built from Python
    data (aten.lift_fresh: a host-to-device copy) and reads of device values on the host (``.item()``, ``int()``,
    ``bool()``: aten._local_scalar_dense; ``nonzero`` and boolean-mask indexing, whose output size the host must
    learn): each makes the host wait for the device."""

    def __init__(self):
        super().__init__()
        self.from_python_data, self.reads = 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("lift_fresh", "lift_fresh_copy"):
            self.from_python_data += 1
        elif name in ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero") or (
                name in ("index", "index_put_", "index_put") and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []) if i is not None)):
            self.reads.append(name)
        return func(*args, **(kwargs or {}))
