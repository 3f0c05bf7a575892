"""PANet's network: the dilated VGG-16 encoder (and dilated ResNet-50/101 ones), prototype
functions and the few-shot model."""

from .encoder import SMALL_DILATED, VGG16_DILATED, Block, DilatedVGG, build_encoder, vgg16_encoder
from .panet import PANet, PANetOutput
from .resnet import DilatedResNet, resnet_encoder

__all__ = ["Block", "DilatedResNet", "DilatedVGG", "PANet", "PANetOutput", "SMALL_DILATED",
           "VGG16_DILATED", "build_encoder", "resnet_encoder", "vgg16_encoder"]
