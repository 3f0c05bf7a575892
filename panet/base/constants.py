"""Constants shared by the model, the losses, the metric and the data pipeline."""

IGNORE_INDEX = 255  # label of pixels that no loss or metric counts (VOC boundaries, padding)

# ImageNet statistics used by torchvision's VGG-16 weights (PROTOCOL §1): RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
