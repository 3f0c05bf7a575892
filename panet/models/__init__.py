"""PANet's network: the dilated VGG-16 encoder, prototype functions and the few-shot model."""

from .encoder import DilatedVGG, VGG16_DILATED, Block, vgg16_encoder
from .panet import PANet, PANetOutput

__all__ = ["Block", "DilatedVGG", "PANet", "PANetOutput", "VGG16_DILATED", "vgg16_encoder"]
