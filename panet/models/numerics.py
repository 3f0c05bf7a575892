"""How PANet's encoder computes: its precision and its memory format (config keys `precision`,
`memory_format`; docs/precision.md).

Shapes: N images, 3 x H x W in, C x h x w features out.

precision
    fp32 (default, the paper's): every op in float32.
    bf16: the encoder runs under `torch.autocast` with bfloat16 (CPUs with AVX512-BF16 or AMX,
        CUDA GPUs of compute capability 8.0 and later). Autocast casts the inputs and weights of
        convolutions (and matmuls, linear layers) to bfloat16 and runs them there; ReLU,
        max-pooling, additions and frozen batch norm take the dtype of their input, hence
        bfloat16 after a convolution. The encoder's output is cast back to float32.
    fp16: the same with float16, on CUDA only; training scales the loss (`torch.amp.GradScaler`)
        so that small float16 gradients do not underflow.

    Autocast covers the encoder only. Everything after it runs in float32 on float32
    features: masked average pooling, prototypes, the cosine head, upsampling, both losses and
    the metric. Backward: autograd runs each op's gradient in the dtype its forward ran in, so
    the encoder's convolutions get bfloat16 (float16) gradients, accumulated into the float32
    weights; the optimizer and its state stay float32.

memory_format
    contiguous (default): N x C x H x W tensors laid out row-major per channel.
    channels_last: the encoder's 4-D weights and its input are laid out N x H x W x C in memory
        (the same logical tensors), which oneDNN and cuDNN convolutions run faster on some
        hardware. The encoder's output is made contiguous again, so everything after it sees
        exactly the layout of the default.

In the default (fp32, contiguous) `Numerics.encode` calls the encoder on its input unchanged.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
from torch import nn

PRECISIONS: Dict[str, Optional[torch.dtype]] = {  # name -> autocast dtype (None: no autocast)
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
MEMORY_FORMATS: Dict[str, torch.memory_format] = {
    "contiguous": torch.contiguous_format,
    "channels_last": torch.channels_last,
}


@dataclass(frozen=True)
class Numerics:
    """The precision and memory format of the encoder (module docstring): keys of
    `PRECISIONS` and `MEMORY_FORMATS` (config keys checked by `panet.settings`)."""

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
        """The encoder's N x C x h x w features of N x 3 x H x W `images` (with `levels`: the
        dict of those levels' features): the input laid out in this memory format, the encoder
        run under autocast in this precision, each output contiguous and in the images' dtype
        (float32; float64 for a model run in double, as some tests do)."""
        images = images.contiguous(memory_format=self.layout)
        dtype = self.autocast_dtype
        with (torch.autocast(images.device.type, dtype=dtype) if dtype is not None
              else contextlib.nullcontext()):  # fp32: no autocast (nor its device check)
            features = encoder(images) if levels is None else encoder(images, levels)
        if levels is None:
            return features.to(images.dtype).contiguous()
        return {name: value.to(images.dtype).contiguous() for name, value in features.items()}
