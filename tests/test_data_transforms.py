"""Resize, flip and normalisation (PROTOCOL §5) against naive references."""

import numpy as np
import pytest
import torch
from PIL import Image

from panet.base.constants import IMAGENET_MEAN, IMAGENET_STD
from panet.data.transforms import (as_size, hflip, normalize, resize_image, resize_nearest,
                                   resize_nearest_torch)
from panet.settings import EpisodeSetting


def test_resize_nearest_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 21, size=(37, 53)).astype(np.uint8)
    out = resize_nearest(labels, (50, 20))
    for y in range(50):
        for x in range(20):
            source_y = min(int((y + 0.5) * 37 / 50), 36)
            source_x = min(int((x + 0.5) * 53 / 20), 52)
            assert out[y, x] == labels[source_y, source_x]


def test_resize_nearest_keeps_values_and_dtype():
    instances = np.arange(12, dtype=np.int32).reshape(3, 4) * 1000
    out = resize_nearest(instances, (417, 417))
    assert out.dtype == np.int32 and set(np.unique(out)) == set(instances.ravel())
    assert np.array_equal(resize_nearest(instances, (3, 4)), instances)


def test_resize_image_is_pil_bilinear():
    pixels = np.random.default_rng(1).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    expected = np.asarray(image.resize((17, 23), Image.BILINEAR))
    assert np.array_equal(resize_image(image, (23, 17)), expected)


def test_normalize_by_hand():
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[1, 2] = (255, 128, 0)
    out = normalize(pixels)
    assert out.shape == (3, 2, 3) and out.dtype == torch.float32
    for channel in range(3):
        value = pixels[1, 2, channel] / 255.0
        expected = (value - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert out[channel, 1, 2].item() == pytest.approx(expected, abs=1e-5)
        assert out[channel, 0, 0].item() == pytest.approx(
            -IMAGENET_MEAN[channel] / IMAGENET_STD[channel], abs=1e-5)


def test_hflip_mirrors_columns():
    array = np.arange(6).reshape(2, 3)
    assert hflip(array).tolist() == [[2, 1, 0], [5, 4, 3]]
    assert hflip(np.zeros((2, 3, 3))).flags["C_CONTIGUOUS"]


def test_as_size():
    assert as_size(417) == (417, 417)
    assert as_size((120, 160)) == (120, 160)
    for size in (0, (0, 5), (5, -1)):  # refused once, by the settings; as_size trusts them
        assert EpisodeSetting(size=size).problems() == [
            f"data.size={size!r}: must be an integer >= 1 or a pair [H, W] of them"]


@pytest.mark.parametrize("n_in", [1, 7, 20, 96, 129, 375, 400, 408, 500, 2448])
def test_torch_nearest_picks_the_pixels_torch_picks(n_in):
    """The reference protocols' mask resize against torch.nn.functional.interpolate itself:
    shrinking, growing, doubling and keeping the size, both axes."""
    rng = np.random.default_rng(n_in)
    labels = rng.integers(0, 256, size=(n_in, 13)).astype(np.uint8)
    for n_out in (1, 33, 65, n_in, 2 * n_in, 129, 400, 417):
        size = (n_out, 31)
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(labels.astype(np.float32))[None, None], size=size,
            mode="nearest")[0, 0].numpy().astype(np.uint8)
        assert np.array_equal(resize_nearest_torch(labels, size), expected), (n_in, n_out)
