"""PANet's network: the dilated VGG-16 encoder, prototype functions and the few-shot model."""

from .encoder import SMALL_DILATED, VGG16_DILATED, Block, DilatedVGG, build_encoder, vgg16_encoder
from .panet import PANet, PANetOutput

__all__ = ["Block", "DilatedVGG", "PANet", "PANetOutput", "SMALL_DILATED", "VGG16_DILATED",
           "build_encoder", "vgg16_encoder"]
