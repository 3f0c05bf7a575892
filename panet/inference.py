"""Segment your own images with PANet: ``Segmenter``.

Shape letters: W ways, S shots, Q queries, C channels, H x W the model's input size, h x w its
feature size, H_q x W_q a query's original size.

    from panet.inference import Segmenter
    segmenter = Segmenter.from_checkpoint("runs/1/checkpoints/final.pt")  # or a released .pth
    results = segmenter.segment([[("dog.jpg", "dog_mask.png")],       # way 1: its shots
                                 [("cat.jpg", "cat_mask.png")]],       # way 2
                                ["street.jpg", "park.jpg"])            # queries
    results[0].labels  # H_q x W_q uint8: 0 background, 1 dog, 2 cat

Images: a path, a PIL image or an H x W x 3 uint8 array (converted to RGB; 16-bit and float
images refused). Masks: a path, a PIL image or an H x W array of the image's size, binary in any
encoding (or the alpha channel of a single-colour image): foreground where non-zero;
``ignore_value`` marks pixels counted as neither. Every way has the same number of shots. Both
are read as displayed (EXIF Orientation).

Preprocessing is the test pipeline's (``panet.data.transforms``, as ``EpisodeDataset``); the
prototypes are made once per call, queries encoded ``batch_size`` at a time. A query's labels
are the argmax of its logits upsampled bilinearly to H_q x W_q (``test.resolution=original``).
Bad input raises ``ValueError`` naming the support or query, before any image is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch
from torch import nn
from PIL import Image, UnidentifiedImageError

from panet.base.constants import IGNORE_INDEX
from panet.data.transforms import (Size, as_size, image_tensor, resize_nearest, to_rgb, too_large,
                                   upright)
from panet.base.device import precision_problem, use_device
from panet.run.folder import checkpoint_file
from panet.weights.model_files import build_trained, model_input_size, read_model_file
from panet.models.factory import fast_path_problem, query_logits, with_numerics
from panet.models.builder import build_model
from panet.models.prototypes import upsampled_prediction
from panet.settings import EpisodeSetting, ModelSettings, RunSettings

ImageInput = Union[str, Path, Image.Image, np.ndarray]
MaskInput = Union[str, Path, Image.Image, np.ndarray]
Shot = Tuple[ImageInput, MaskInput]
T = TypeVar("T")
DEFAULT_SIZE = 417  # PANet's input size (PROTOCOL §5)
DEFAULT_BATCH_SIZE = 4  # images per encoder forward


@dataclass
class Segmentation:
    """The prediction for one query, at its original size H_q x W_q."""

    labels: np.ndarray  # H_q x W_q uint8: 0 background, c way c
    probabilities: Optional[np.ndarray] = None  # (1 + W) x H_q x W_q float32, on request


def _describe(what: str, value: object) -> str:
    return f"{what} ({value})" if isinstance(value, (str, Path)) else what


def _read(path: Union[str, Path], what: str, read: Callable[[Image.Image], T]) -> T:
    """`read` applied to the image file at ``path``; ValueError naming ``what`` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: the file does not exist")
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(too_large(what, error)) from None
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{what}: not a readable image ({error})") from None
    try:
        with opened:
            return read(opened)
    except (OSError, SyntaxError) as error:  # truncated or corrupt pixel data
        raise ValueError(f"{what}: cannot decode the image ({error})") from None


def load_image(image: ImageInput, what: str = "image") -> Image.Image:
    """An image input as an RGB PIL image; ValueError naming ``what`` when it cannot be read."""
    if isinstance(image, (str, Path)):
        return _read(image, what, lambda opened: to_rgb(opened, what))
    if isinstance(image, Image.Image):
        return to_rgb(image, what)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (
                image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
            raise ValueError(f"{what}: array of shape {image.shape} and dtype {image.dtype}; "
                             f"expected uint8 H x W x 3 (or H x W grayscale, H x W x 4 RGBA)")
        return to_rgb(Image.fromarray(image[..., 0] if image.shape[2:] == (1,) else image), what)
    raise TypeError(f"{what}: expected a path, a PIL image or a numpy array, got "
                    f"{type(image).__name__}")


def _mask_array(mask: MaskInput, what: str) -> np.ndarray:
    """A mask input as a 2-D array of its values, EXIF-upright (`_mask_channel`)."""
    if isinstance(mask, (str, Path)):
        array = _read(mask, what, lambda opened: np.array(upright(opened)))
    elif isinstance(mask, Image.Image):
        array = np.array(upright(mask))
    elif isinstance(mask, np.ndarray):
        array = mask
    else:
        raise TypeError(f"{what}: expected a path, a PIL image or a numpy array, got "
                        f"{type(mask).__name__}")
    if array.ndim == 3:
        array = _mask_channel(array, what)
    if array.ndim != 2 or not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"{what}: array of shape {array.shape} and dtype {array.dtype}; "
                         f"expected an H x W mask")
    return array


def _mask_channel(array: np.ndarray, what: str) -> np.ndarray:
    """The channel holding the mask of an H x W x K image (K: 1 gray, 2 gray + alpha, 3 RGB,
    4 RGBA): its alpha where that varies over a constant colour, else its gray channel (colour
    channels equal); anything else is refused."""
    channels = array.shape[2]
    if channels not in (1, 2, 3, 4):
        return array  # refused by the caller, naming the shape
    colour = array[..., :1] if channels <= 2 else array[..., :3]  # without alpha
    alpha = array[..., -1] if channels in (2, 4) else None
    colour_constant = bool((colour == colour[:1, :1]).all())
    if alpha is not None and not (alpha == alpha.flat[0]).all():
        if colour_constant:
            return alpha
        raise ValueError(f"{what}: both its colour and its transparency vary; save the mask as a "
                         "single-channel PNG (0 background, non-zero object), or draw the object "
                         "in the alpha channel of a single-colour image")
    if not (colour == colour[..., :1]).all():
        raise ValueError(f"{what}: a colour image with differing channels; a mask is "
                         f"single-channel (0 background, non-zero foreground)")
    return colour[..., 0]


def load_mask(mask: MaskInput, what: str = "mask",
              ignore_value: Optional[float] = None) -> np.ndarray:
    """A binary mask input as an H x W uint8 map: 1 foreground (non-zero, not
    ``ignore_value``), 0 background, 255 ignore. ValueError naming ``what`` otherwise."""
    array = _mask_array(mask, what)
    ignore = (array == ignore_value) if ignore_value is not None else np.zeros(array.shape, bool)
    values = np.unique(array[~ignore])
    if np.isnan(values.astype(np.float64)).any():
        raise ValueError(f"{what}: holds NaN values")
    if len(values) > 2 or np.count_nonzero(values) > 1:
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        besides = f" besides ignore_value={ignore_value}" if ignore_value is not None else ""
        hint = ("" if ignore_value is not None else "; if a value marks pixels to ignore, pass it "
                "as ignore_value (predict.py: --ignore-value)")
        raise ValueError(f"{what}: {len(values)} values ({shown}){besides}; a binary mask holds "
                         f"0 (background) and one non-zero foreground value{hint}")
    if not np.count_nonzero(values):
        raise ValueError(f"{what}: no foreground pixel (a mask is non-zero on the object)")
    if 0 not in values:
        raise ValueError(f"{what}: no background pixel (every pixel is the object); a mask is 0 "
                         "on the background")
    return np.where(ignore, IGNORE_INDEX, array != 0).astype(np.uint8)


@dataclass
class Supports:
    """The supports of a call: W*S images 3 x H x W, masks fg, bg W x S x H x W (float 0/1)
    and, through the model's parts, the 1 x (1 + W) x C prototypes made of them once."""

    images: torch.Tensor
    fg: torch.Tensor
    bg: torch.Tensor
    prototypes: Optional[torch.Tensor] = None


class Segmenter:
    """A few-shot segmenter for images of any size (module docstring).

    ``model``: any model of ``model.factory``; ``size``: the input size it was trained at;
    ``device``, ``precision``, ``memory_format``: as the config keys (refused as train.py
    refuses them); ``batch_size``: images per forward. A model with the "parts" fast path
    (``panet.models.factory.fast_path_problem``) makes its prototypes once; any other runs
    through its forward, the supports with each batch of queries (``through_forward``: why).
    """

    def __init__(self, model: nn.Module, size: Union[int, Size] = DEFAULT_SIZE,
                 device: Union[str, torch.device] = "auto",
                 batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32",
                 memory_format: str = "contiguous"):
        run = RunSettings(device=str(device), precision=precision, memory_format=memory_format)
        refused = (run.problems()
                   + [line.replace("data.size", "size", 1)
                      for line in EpisodeSetting(size=size).problems()]
                   + [f"batch_size={batch_size!r}: must be an integer >= 1"]
                   * (not (isinstance(batch_size, int) and batch_size >= 1)))
        if not refused and precision_problem(precision, str(device)):
            refused.append(precision_problem(precision, str(device)))
        if refused:
            raise ValueError("; ".join(refused))
        self.device = use_device(str(device))
        self.model = with_numerics(model.to(self.device), run.numerics()).eval()
        self.size = as_size(size)
        self.batch_size = batch_size
        self.through_forward = fast_path_problem(model, "parts")

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: Union[str, torch.device] = "auto",
                        batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32",
                        memory_format: str = "contiguous",
                        factory: Optional[str] = None) -> "Segmenter":
        """The model of a train.py checkpoint (or a run folder's newest) or of a released
        snapshot, at the input size it was trained with. Another method than PANet is built
        only when ``factory`` names its model.factory (a file supplies no code)."""
        model_file = read_model_file(checkpoint_file(path))
        return cls(build_trained(model_file, factory), model_input_size(model_file), device,
                   batch_size, precision, memory_format)

    @classmethod
    def from_weights(cls, path: Union[str, Path], device: Union[str, torch.device] = "auto",
                     size: Union[int, Size] = DEFAULT_SIZE, batch_size: int = DEFAULT_BATCH_SIZE,
                     encoder: str = "vgg16", precision: str = "fp32",
                     memory_format: str = "contiguous") -> "Segmenter":
        """PANet-init: `encoder` (``panet.models.ENCODERS``) with torchvision's ImageNet
        weights at ``path``, untrained."""
        model = ModelSettings(encoder=encoder, weights=str(path))
        return cls(build_model(model, weights_key="weights"), size, device, batch_size,
                   precision, memory_format)

    def _tensors(self, images: List[Image.Image]) -> torch.Tensor:
        return torch.stack([image_tensor(image, self.size) for image in images]).to(self.device)

    def _encode(self, images: List[Image.Image]) -> torch.Tensor:
        """N RGB images -> N x C x h x w features, the segmenter's batch size per forward."""
        return torch.cat([self.model.encode(self._tensors(images[start:start + self.batch_size]))
                          for start in range(0, len(images), self.batch_size)])

    def _support_masks(self, ways: Sequence[Sequence[Shot]], ignore_value: Optional[float]
                       ) -> Tuple[List[Image.Image], torch.Tensor, torch.Tensor]:
        """Read and check every support: (W*S images, fg W x S x H x W, bg W x S x H x W)."""
        if isinstance(ways, (str, Path)) or not ways or any(
                isinstance(way, (str, Path)) or not way for way in ways):
            raise ValueError("ways must be a non-empty list of ways, each a non-empty list of "
                             "(image, mask) shots")
        shots = len(ways[0])
        images, labels = [], []
        for w, way in enumerate(ways, start=1):
            if len(way) != shots:
                raise ValueError(f"way {w} has {len(way)} shots but way 1 has {shots}; every way "
                                 f"needs the same number of shots")
            for s, shot in enumerate(way, start=1):
                if not isinstance(shot, (tuple, list)) or len(shot) != 2:
                    raise ValueError(f"way {w} shot {s}: expected an (image, mask) pair, got "
                                     f"{shot!r}")
                what = f"way {w} shot {s}"
                image = load_image(shot[0], _describe(f"{what} image", shot[0]))
                mask = load_mask(shot[1], _describe(f"{what} mask", shot[1]), ignore_value)
                if mask.shape != (image.height, image.width):
                    raise ValueError(f"{what}: the image is {image.height} x {image.width} "
                                     f"(H x W) but its mask is {mask.shape[0]} x {mask.shape[1]}")
                resized = resize_nearest(mask, self.size)
                if not (resized == 1).any():
                    raise ValueError(
                        f"{what}: the mask's {int((mask == 1).sum())} foreground pixels vanish "
                        f"when it is resized to the model's {self.size[0]} x {self.size[1]} "
                        f"input (nearest); the object is too small: crop the image around it")
                images.append(image)
                labels.append(resized)
        stacked = torch.from_numpy(np.stack(labels)).view(len(ways), shots, *self.size)
        stacked = stacked.to(self.device)
        return images, (stacked == 1).float(), (stacked == 0).float()

    @torch.inference_mode()
    def supports(self, ways: Sequence[Sequence[Shot]],
                 ignore_value: Optional[float] = None) -> Supports:
        """The supports of ``ways`` read, checked and made into prototypes (``Supports``)."""
        images, fg, bg = self._support_masks(ways, ignore_value)
        supports = Supports(self._tensors(images), fg, bg)
        if self.through_forward is None:
            features = self._encode(images).unflatten(0, fg.shape[:2])[None]
            supports.prototypes = self.model.prototypes(features, fg[None], bg[None])
        return supports

    def prototypes(self, ways: Sequence[Sequence[Shot]],
                   ignore_value: Optional[float] = None) -> torch.Tensor:
        """The 1 x (1 + W) x C prototypes [background, way 1, ..., way W] of the supports."""
        if self.through_forward is not None:
            raise ValueError(f"no prototypes to show: {self.through_forward}, so it is run "
                             "through its forward")
        return self.supports(ways, ignore_value).prototypes

    @torch.inference_mode()
    def query_logits(self, supports: Supports, queries: Sequence[ImageInput],
                     first: int = 1) -> torch.Tensor:
        """Q x (1 + W) x h x w logits of the queries (numbered from ``first`` in messages),
        at the lowest resolution the model gives (PANet: its feature resolution)."""
        images = [load_image(query, _describe(f"query {first + q}", query))
                  for q, query in enumerate(queries)]
        return self._query_logits(supports, images)

    @torch.inference_mode()
    def _query_logits(self, supports: Supports, images: List[Image.Image]) -> torch.Tensor:
        if supports.prototypes is not None:
            return self.model.score(self._encode(images)[None], supports.prototypes)[0]
        support_images = supports.images.view(*supports.fg.shape[:2], *supports.images.shape[1:])
        return torch.cat([query_logits(self.model(
            support_images[None], supports.fg[None], supports.bg[None],
            self._tensors(images[start:start + self.batch_size])[None]), self.model)[0]
            for start in range(0, len(images), self.batch_size)])

    def segment(self, ways: Sequence[Sequence[Shot]], queries: Sequence[ImageInput], *,
                ignore_value: Optional[float] = None, probabilities: bool = False,
                batch_size: Optional[int] = None) -> List[Segmentation]:
        """One ``Segmentation`` per query (see the module docstring for the inputs)."""
        return list(self.iter_segment(ways, queries, ignore_value=ignore_value,
                                      probabilities=probabilities, batch_size=batch_size))

    def iter_segment(self, ways: Sequence[Sequence[Shot]], queries: Sequence[ImageInput], *,
                     ignore_value: Optional[float] = None, probabilities: bool = False,
                     batch_size: Optional[int] = None) -> Iterator[Segmentation]:
        """``segment`` as an iterator. Every query is decoded once when it is called (a bad one
        fails before any result); they are read again ``batch_size`` at a time as results are
        taken, so that memory holds one batch of images."""
        if isinstance(queries, (str, Path)) or not list(queries):
            raise ValueError("queries must be a non-empty list of images")
        queries = list(queries)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for q, query in enumerate(queries, start=1):
            load_image(query, _describe(f"query {q}", query))  # decoded in full: checked
        supports = self.supports(ways, ignore_value)
        step = batch_size or self.batch_size

        @torch.inference_mode()
        def results() -> Iterator[Segmentation]:
            for start in range(0, len(queries), step):
                images = [load_image(query, _describe(f"query {start + q + 1}", query))
                          for q, query in enumerate(queries[start:start + step])]
                for image, low in zip(images, self._query_logits(supports, images)):
                    logits, labels = upsampled_prediction(low, (image.height, image.width))
                    yield Segmentation(labels=labels.to(torch.uint8).cpu().numpy(),
                                       probabilities=logits.softmax(dim=0).cpu().numpy()
                                       if probabilities else None)

        return results()
