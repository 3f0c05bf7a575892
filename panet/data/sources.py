"""Per-image access to one split of a dataset, in global class ids.

A *source* knows which images contain which class and how to load an image and its label
maps. Episode sampling, transforms and weak supports are built on top of this interface, so a
new dataset only needs a new source.

Label maps are H x W ``uint8`` arrays at the image's original resolution, in *global* class ids:
0 background, 1..n_classes the dataset's classes, 255 (``IGNORE_INDEX``) ignored.
"""

from __future__ import annotations

import abc
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image


class Source(abc.ABC):
    """One split of a segmentation dataset (e.g. PASCAL ``trainaug``, COCO ``train2014``)."""

    #: global class ids this source can sample, ascending (PASCAL 1..20, COCO 1..80)
    class_ids: List[int]

    @abc.abstractmethod
    def class_images(self) -> Dict[int, List[str]]:
        """Image ids per global class id: the images whose label map contains that class.

        Lists are sorted so that sampling from them is reproducible.
        """

    @abc.abstractmethod
    def image(self, image_id: str) -> Image.Image:
        """The RGB image (grayscale and palette images are converted to RGB)."""

    @abc.abstractmethod
    def label_map(self, image_id: str, class_ids: Sequence[int]) -> np.ndarray:
        """H x W uint8 label map in global ids.

        Pixels of every class in ``class_ids`` carry that class's id; other pixels are 0, another
        class's id or 255. (PASCAL returns its full map; COCO draws only the classes asked for.)
        """

    @abc.abstractmethod
    def instance_map(self, image_id: str, class_id: int) -> np.ndarray:
        """H x W int32 map of the instances of ``class_id``: 0 elsewhere, 1..n one per instance.

        Needed only for bounding-box supports; sources without instances raise a clear error.
        """
