"""PANet's network: encoders (a registry: `encoders`), prototype functions and the model."""

from .encoders import ENCODERS, EncoderSpec, build_encoder, imagenet_weights
from .panet import PANet, PANetOutput
from .vgg import SMALL_DILATED, VGG16_DILATED, Block, DilatedVGG, vgg16_encoder

__all__ = ["Block", "DilatedVGG", "ENCODERS", "EncoderSpec", "PANet", "PANetOutput",
           "SMALL_DILATED", "VGG16_DILATED", "build_encoder", "imagenet_weights", "vgg16_encoder"]
