"""PANet's network: encoders (a registry, `encoders`: dilated VGG-16, the small CPU encoder,
dilated ResNet-50/101), prototype functions and the few-shot model."""

from panet.models.encoders import ENCODERS, EncoderSpec, build_encoder, imagenet_weights
from panet.models.panet import PANet, PANetOutput
from panet.models.resnet import DilatedResNet, resnet_encoder
from panet.models.vgg import SMALL_DILATED, VGG16_DILATED, Block, DilatedVGG, vgg16_encoder

__all__ = ["Block", "DilatedResNet", "DilatedVGG", "ENCODERS", "EncoderSpec", "PANet",
           "PANetOutput", "SMALL_DILATED", "VGG16_DILATED", "build_encoder", "imagenet_weights",
           "resnet_encoder", "vgg16_encoder"]
