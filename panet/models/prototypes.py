"""Prototypes and the non-parametric cosine head of PANet (PROTOCOL §2-3), as pure functions.

Shape letters: B episodes, W ways, S shots, Q queries, N any batch of images, P prototypes,
C feature channels, H x W image/mask size, h x w feature size.

PROTOCOL §2 pools features *after* bilinearly upsampling them to the mask size. Upsampling is a
linear map U (per channel, F_up = A_H F A_W^T with 1-D interpolation matrices A_H: H x h and
A_W: W x w), so  sum(F_up * M) = sum(F * U^T(M))  with  U^T(M) = A_H^T M A_W, an h x w map.
We pool the low-resolution features against U^T(M): the same number up to float rounding, without
ever materialising C x H x W upsampled features (512 x 417 x 417 per image).

Batching: each episode is computed from its own inputs only. The head's and the pooling's dot
products are one contiguous reduction per pair (`torch.linalg.vecdot`), not a batched matmul,
whose BLAS blocking rounds by batch size (seen on AVX-512 CPUs); nothing relies on bitwise
batch invariance (docs/performance.md).
"""

from __future__ import annotations

import functools
from typing import Tuple

import torch
import torch.nn.functional as F

EPS = 1e-5  # PROTOCOL: denominator of every masked average (prototypes, PAR query prototypes)
COSINE_EPS = 1e-8  # F.cosine_similarity's default eps: norms are clamped to at least this


@functools.lru_cache(maxsize=32)
def interpolation_matrix(size_in: int, size_out: int, device: torch.device,
                         dtype: torch.dtype) -> torch.Tensor:
    """size_out x size_in matrix A of 1-D linear interpolation (align_corners=False): `A @ x`
    equals `F.interpolate(x, size_out, mode="linear")`. Built by interpolating the identity, so
    it follows torch's own index arithmetic."""
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode
        identity = torch.eye(size_in, device=device, dtype=torch.float64)
        columns = F.interpolate(identity[None], size=size_out, mode="linear",
                                align_corners=False)[0]
        return columns.t().to(dtype)  # row Y: weights of the inputs that make output Y


def upsampling_adjoint(masks: torch.Tensor, size: tuple) -> torch.Tensor:
    """Apply the adjoint of bilinear upsampling h x w -> H x W to masks: ... x H x W -> ... x h x w.

    For any F (... x h x w): sum(upsample(F) * M) == sum(F * upsampling_adjoint(M, (h, w))).
    """
    (H, W), (h, w) = masks.shape[-2:], size
    rows = interpolation_matrix(h, H, masks.device, masks.dtype)  # H x h
    cols = interpolation_matrix(w, W, masks.device, masks.dtype)  # W x w
    return torch.einsum("Yy,...YX,Xx->...yx", rows, masks, cols)


def masked_average_pool(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Masked average pooling (eq. 1-2) of features upsampled to the mask size.

    features: ... x C x h x w; masks: ... x H x W (0/1, same leading dims) -> ... x C.
    Equals  sum(upsample(F) * M) / (sum(M) + EPS)  (PROTOCOL §2) to float tolerance.
    """
    weights = upsampling_adjoint(masks, features.shape[-2:])  # ... x h x w
    # ... x C: one dot product per channel over the h*w positions (see Batching above)
    pooled = torch.linalg.vecdot(features.flatten(-2), weights.flatten(-2).unsqueeze(-2))
    return pooled / (masks.sum(dim=(-2, -1))[..., None] + EPS)


def prototypes_from_pools(fg_pools: torch.Tensor, bg_pools: torch.Tensor) -> torch.Tensor:
    """Prototypes from each support's pooled foreground and background: B x W x S x C each.

    Returns B x (1 + W) x C: [p_bg, p_1, ..., p_W] with p_c the mean over shots of the
    foreground pools of way c, and p_bg the mean over ways and shots of the background pools.
    """
    fg = fg_pools.mean(dim=2)  # B x W x C
    bg = bg_pools.mean(dim=(1, 2))  # B x C
    return torch.cat([bg[:, None], fg], dim=1)


def cosine_logits(features: torch.Tensor, prototypes: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * cos(F(x, y), p_j) for every position and prototype (eq. 3), as
    `alpha * F.cosine_similarity(F, p, dim=1, eps=1e-8)`, one contiguous reduction over C each
    (Batching above). features: N x C x h x w; prototypes: N x P x C -> N x P x h x w.
    """
    unit_features = F.normalize(features.flatten(2).transpose(1, 2), dim=-1, eps=COSINE_EPS)
    unit_prototypes = F.normalize(prototypes, dim=-1, eps=COSINE_EPS)
    # N x 1 x hw x C against N x P x 1 x C -> N x P x hw
    cosines = torch.linalg.vecdot(unit_features[:, None], unit_prototypes[:, :, None])
    return alpha * cosines.unflatten(-1, features.shape[-2:])


def upsample(logits: torch.Tensor, size: tuple) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) of ... x P x h x w maps to ... x P x H x W."""
    out = F.interpolate(logits.flatten(0, -4), size=tuple(size), mode="bilinear",
                        align_corners=False)
    return out.view(*logits.shape[:-2], *out.shape[-2:])


def upsampled_prediction(logits_low: torch.Tensor, size: tuple
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One query's prediction at `size` (PROTOCOL §3): its P x h x w logits upsampled to
    P x H x W, and the H x W labels (`max(0).indices`: argmax's, much faster on CPU)."""
    logits = upsample(logits_low[None], size)[0]
    return logits, logits.max(dim=0).indices
