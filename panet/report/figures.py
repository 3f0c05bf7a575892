"""Figures: qualitative overlays (Figs. 3, 4, 6 style) and training-loss curves (Fig. 5).

Shape letters: B episodes, W ways, S shots, Q queries, H x W image size.

Overlays blend one colour per way (`WAY_COLOURS`) into the image where a mask or label map
holds that way and darken other pixels (`OUTSIDE_DIM`). `save_qualitative` draws one episode
per row; `prediction_overlay` draws one prediction of `scripts/predict.py`, `label_palette`
colours its label PNGs the same way.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from panet.report.analysis import Curve, model_outputs
from panet.base.constants import IMAGENET_MEAN, IMAGENET_STD
from panet.base.files import PathLike

Colour = Tuple[int, int, int]

WAY_COLOURS: Tuple[Colour, ...] = ((230, 25, 75), (60, 180, 75), (0, 130, 200),
                                   (245, 130, 48), (145, 30, 180))
OVERLAY_OPACITY = 0.5
OUTSIDE_DIM = 0.5  # share of brightness taken from pixels outside every mask
MIN_FONT_SIZE = 11  # captions and legends never get smaller than this (pixels)
FONT_SHARE = 1 / 24  # caption font size as a share of the tile width, for large tiles
GAP = 4  # pixels between tiles and rows
PAPER_WHITE = (255, 255, 255)
MIN_OVERLAY_SIDE = 256  # prediction overlays of smaller images are enlarged to at least this
OUTLINE_WIDTH = 1 / 150  # of the short side, at least 1 pixel
LEGEND_FONT_WIDTH = 1 / 45  # legend font size, share of the overlay's width


def denormalize(image: torch.Tensor) -> np.ndarray:
    """An ImageNet-normalised 3 x H x W tensor -> H x W x 3 uint8 RGB."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=image.device)[:, None, None]
    rgb = (image.float() * std + mean).clamp(0, 1) * 255
    return rgb.round().byte().permute(1, 2, 0).cpu().numpy()


def way_colour(way: int) -> Colour:
    """Colour of way `way` (1-based), cycling through WAY_COLOURS."""
    return WAY_COLOURS[(way - 1) % len(WAY_COLOURS)]


def overlay(image: np.ndarray, labels: Union[np.ndarray, torch.Tensor],
            opacity: float = OVERLAY_OPACITY, dim: float = OUTSIDE_DIM) -> np.ndarray:
    """Blend way colours into an image: image H x W x 3 uint8; labels H x W (0 background, c =
    way c, 255 void). Pixels of way c become (1 - opacity) * image + opacity * way_colour(c),
    the others (1 - dim) * image; rounded to H x W x 3 uint8."""
    labels = torch.as_tensor(labels).cpu().numpy()
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels are {labels.shape} but the image is {image.shape[:2]}")
    blended = image.astype(np.float64)
    blended[(labels == 0) | (labels == 255)] *= 1 - dim
    for way in _ways(labels):
        where = labels == way
        blended[where] = (1 - opacity) * blended[where] + opacity * np.array(way_colour(way))
    return np.round(blended).astype(np.uint8)


def _ways(labels: np.ndarray) -> List[int]:
    return [int(v) for v in np.unique(labels) if v not in (0, 255)]


def outlined(picture: np.ndarray, labels: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """A copy of `picture` (H x W x 3 uint8) with the border of each way's region of `labels`
    (H x W) drawn in the way's colour, OUTLINE_WIDTH of the short side thick (at least 1 px)."""
    labels = torch.as_tensor(labels).cpu().numpy()
    thickness = max(1, round(min(labels.shape) * OUTLINE_WIDTH))
    picture = picture.copy()
    for way in _ways(labels):
        region = labels == way
        picture[region & ~ndimage.binary_erosion(region, iterations=thickness,
                                                 border_value=1)] = way_colour(way)
    return picture


def caption_font(width: int) -> ImageFont.FreeTypeFont:
    """The caption font for tiles `width` pixels wide: grows with it, never below MIN_FONT_SIZE."""
    return _font(max(MIN_FONT_SIZE, round(width * FONT_SHARE)))


def wrap(caption: str, font: ImageFont.FreeTypeFont, width: int) -> List[str]:
    """`caption` broken at spaces (a too wide word between characters) into lines no wider
    than `width` pixels."""
    lines: List[str] = []
    for word in caption.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += " " + word
            continue
        lines.append("")
        for char in word:
            if lines[-1] and font.getlength(lines[-1] + char) > width:
                lines.append("")
            lines[-1] += char
    return lines


def captioned_tiles(tiles: Sequence[np.ndarray], captions: Sequence[str]) -> List[Image.Image]:
    """H x W x 3 uint8 tiles with their captions in a white band above them, as tall as the
    longest wrapped caption (the images of a row stay aligned)."""
    fonts = [caption_font(tile.shape[1]) for tile in tiles]
    wrapped = [wrap(caption, font, tile.shape[1] - 2)
               for tile, caption, font in zip(tiles, captions, fonts)]
    line_height = [sum(font.getmetrics()) for font in fonts]
    band = max(len(lines) * height for lines, height in zip(wrapped, line_height)) + 2
    canvases = []
    for tile, lines, font, height in zip(tiles, wrapped, fonts, line_height):
        canvas = Image.new("RGB", (tile.shape[1], tile.shape[0] + band), PAPER_WHITE)
        canvas.paste(Image.fromarray(tile), (0, band))
        draw = ImageDraw.Draw(canvas)
        for index, line in enumerate(lines):
            draw.text((1, 1 + index * height), line, fill=(0, 0, 0), font=font)
        canvases.append(canvas)
    return canvases


def label_palette() -> List[int]:
    """Flat PNG palette of episode labels, matching the overlays: 0 black, c `way_colour(c)`,
    255 (void) white."""
    colours = [(0, 0, 0)] + [way_colour(c) for c in range(1, 255)] + [PAPER_WHITE]
    return [channel for colour in colours for channel in colour]


def prediction_overlay(image: np.ndarray, labels: np.ndarray, names: Sequence[str]
                       ) -> Image.Image:
    """A prediction drawn over its image (`overlay`, `outlined`), legible at any size, with a
    legend below giving each way's colour, name and share of the image.

    image: H x W x 3 uint8; labels: H x W (0 background, c = way c); names: one per way.
    Images under `MIN_OVERLAY_SIDE` pixels are first enlarged by an integer factor.
    """
    factor = max(1, -(-MIN_OVERLAY_SIDE // min(image.shape[:2])))
    image, labels = (np.asarray(x).repeat(factor, axis=0).repeat(factor, axis=1)
                     for x in (image, labels))
    picture = outlined(overlay(image, labels), labels)
    height, width = labels.shape
    font_size = max(MIN_FONT_SIZE, round(width * LEGEND_FONT_WIDTH))
    font = _font(font_size)
    line = round(font_size * 1.5)
    canvas = Image.new("RGB", (width, height + line * len(names) + font_size // 2), PAPER_WHITE)
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for way, name in enumerate(names, start=1):
        top = height + font_size // 4 + line * (way - 1)
        draw.rectangle([font_size // 2, top + font_size // 4, font_size * 3 // 2,
                        top + font_size * 5 // 4], fill=way_colour(way), outline=(0, 0, 0))
        share = 100 * float((labels == way).mean())
        draw.text((font_size * 2, top), f"way {way}: {name} ({share:.1f}% of the image)",
                  fill=(0, 0, 0), font=font)
    return canvas


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def stack(images: Sequence[Image.Image], across: bool = False) -> Image.Image:
    """Images one below the other (`across`: side by side), GAP apart, on white."""
    sizes = [(image.width, image.height) if across else (image.height, image.width)
             for image in images]  # (along, across) of each
    along = sum(size[0] for size in sizes) + GAP * (len(images) - 1)
    thick = max(size[1] for size in sizes)
    figure = Image.new("RGB", (along, thick) if across else (thick, along), PAPER_WHITE)
    offset = 0
    for image, size in zip(images, sizes):
        figure.paste(image, (offset, 0) if across else (0, offset))
        offset += size[0] + GAP
    return figure


def episode_figure(batch: Mapping[str, Any], predictions: torch.Tensor, index: int) -> Image.Image:
    """Episode `index` of a collated batch as a row of captioned tiles: each support with its
    foreground mask, then each query with the prediction and with the ground truth, tinted and
    outlined per way.

    batch: `collate_episodes` output (support_images B x W x S x 3 x H x W, support_fg
    B x W x S x H x W, query_images B x Q x 3 x H x W, query_labels B x Q x H x W, class_ids
    B x W); predictions: B x Q x H x W episode labels.
    """
    support_images, support_fg = batch["support_images"][index], batch["support_fg"][index]
    ways, shots = support_images.shape[:2]
    class_ids = batch["class_ids"][index].tolist()
    tiles, captions = [], []
    for way in range(ways):
        for shot in range(shots):
            labels = support_fg[way, shot].round().long() * (way + 1)
            tiles.append(outlined(overlay(denormalize(support_images[way, shot]), labels),
                                  labels))
            captions.append(f"support w{way + 1} s{shot + 1} (class {class_ids[way]})")
    for query, image in enumerate(batch["query_images"][index]):
        rgb = denormalize(image)
        tiles += [outlined(overlay(rgb, labels), labels) for labels in (
            predictions[index, query], batch["query_labels"][index, query])]
        captions += [f"query {query + 1}: prediction", f"query {query + 1}: ground truth"]
    return stack(captioned_tiles(tiles, captions), across=True)


@torch.inference_mode()
def save_qualitative(checkpoint: PathLike, path: PathLike, n_episodes: int = 4, *,
                     seed: int = 1234, device: Union[str, torch.device] = "cpu",
                     **overrides: Any) -> Path:
    """Segment the first `n_episodes` test episodes of a train.py checkpoint (`model_outputs`:
    data.* keys replaced by `overrides`, e.g. shots=5) and write them at `path` as one PNG, an
    `episode_figure` row per episode. Returns the path."""
    rows = [episode_figure(batch, out.logits.argmax(dim=2), 0) for batch, out in
            model_outputs(checkpoint, n_episodes, seed, device, workers=0, **overrides)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stack(rows).save(path)  # PIL opens the file with open(): the umask's mode
    return path


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of each value and the `window - 1` before it (fewer at the start)."""
    totals = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (totals[ends] - totals[starts]) / (ends - starts)


TERM_STYLES = ("-", "--", ":", "-.") * 4  # the total, then each term


def loss_terms(curves: Mapping[str, Curve]) -> List[str]:
    """The losses a run's curves hold: the total ("loss"), then each `<name>_loss` term in the
    order logged, leaving out those identically 0 (no PAR: align = 0)."""
    names = [name for name in curves if name.endswith("_loss")]
    return [name for name in ["loss", *names] if any(curves.get(name, ([], []))[1])]


def plot_loss_curves(panels: Mapping[str, Mapping[str, Dict[str, Curve]]], path: PathLike,
                     smoothing: int = 0) -> Path:
    """Fig. 5: training loss vs step, one panel per entry of `panels` (e.g. "1-shot").

    panels[title][run label] = that run's curves (`analysis.read_training_curves`). Each run
    draws its total loss (solid) and each of its `loss_terms` (dashed or dotted), smoothed by
    a moving average of `smoothing` steps (0: 1/50 of the run).
    """
    import matplotlib  # only the figure commands need it

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for axis, (title, runs) in zip(axes[0], panels.items()):
        for colour, (label, curves) in enumerate(runs.items()):
            for key, style in zip(loss_terms(curves), TERM_STYLES):
                steps, values = curves[key]
                name = "loss" if key == "loss" else f"{key[:-len('_loss')]} term"
                window = smoothing or max(1, len(values) // 50)
                axis.plot(steps, moving_average(values, window), style, color=f"C{colour}",
                          label=f"{label}: {name}")
        axis.set(title=title, xlabel="step", ylabel="training loss")
        axis.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path
