"""How PANet's encoder computes: its precision and memory format (config keys `precision`,
`memory_format`; docs/precision.md). Shapes: N images, 3 x H x W in, C x h x w features out.

precision: fp32 (default, the paper's); bf16: the encoder under `torch.autocast` with bfloat16
    (convolutions and matmuls in bfloat16; ReLU, pooling, additions and frozen BN in their
    input's dtype), its output cast back to float32; fp16: the same with float16, CUDA only,
    the loss scaled in training (`torch.amp.GradScaler`). Everything after the encoder (pooling,
    prototypes, head, upsampling, losses, metric) runs in float32; backward runs each op in its
    forward's dtype, into float32 weights and optimizer state.
memory_format: contiguous (default) or channels_last: the encoder's 4-D weights and input laid
    out N x H x W x C (faster convolutions on some hardware), its output made contiguous again.

In the default (fp32, contiguous) `Numerics.encode` calls the encoder on its input unchanged.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
from torch import nn

# name -> autocast dtype (None: no autocast)
PRECISIONS: Dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16,
                                                "fp16": torch.float16}
MEMORY_FORMATS: Dict[str, torch.memory_format] = {"contiguous": torch.contiguous_format,
                                                  "channels_last": torch.channels_last}


@dataclass(frozen=True)
class Numerics:
    """The precision and memory format of the encoder: keys of `PRECISIONS`, `MEMORY_FORMATS`."""

    precision: str = "fp32"
    memory_format: str = "contiguous"

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        """The dtype autocast runs the encoder in (None: float32, no autocast)."""
        return PRECISIONS[self.precision]

    @property
    def layout(self) -> torch.memory_format:
        return MEMORY_FORMATS[self.memory_format]

    def apply_layout(self, encoder: nn.Module) -> nn.Module:
        """Lay the encoder's 4-D weights out in this memory format (in place); returns it."""
        return encoder.to(memory_format=self.layout)

    def encode(self, encoder: nn.Module, images: torch.Tensor,
               levels: Optional[Sequence[str]] = None):
        """The encoder's N x C x h x w features of N x 3 x H x W `images` (with `levels`: a dict
        of those levels'), computed in these numerics, contiguous, in the images' dtype."""
        images = images.contiguous(memory_format=self.layout)
        dtype = self.autocast_dtype
        with (torch.autocast(images.device.type, dtype=dtype) if dtype is not None
              else contextlib.nullcontext()):  # fp32: no autocast (nor its device check)
            features = encoder(images) if levels is None else encoder(images, levels)
        if levels is None:
            return features.to(images.dtype).contiguous()
        return {name: value.to(images.dtype).contiguous() for name, value in features.items()}
