"""Images and masks are read as the user sees them: alpha-channel masks, masks without
background, photos stored sideways with an EXIF Orientation (predict.py, the Segmenter, folder
datasets), and every query decoded before predict.py writes anything."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_script
from panet.data.folder import FolderSource
from panet.data.transforms import displayed_size, upright
from panet.inference import Segmenter, load_mask
from panet.models import PANet
from panet.models.vgg import SMALL_DILATED, DilatedVGG

PREDICT = load_script("predict")
EXIF_ORIENTATION = 0x0112
SIZE = (56, 72)


def segmenter():
    torch.manual_seed(0)
    return Segmenter(PANet(DilatedVGG(SMALL_DILATED)).eval(), size=SIZE, device="cpu")


def save_sideways(displayed: Image.Image, path, orientation: int = 6) -> None:
    """Store `displayed` as a camera held sideways does: the pixels turned, an EXIF
    Orientation saying how to turn them back (6: rotate 90 degrees clockwise to display)."""
    stored = displayed.transpose(Image.Transpose.ROTATE_90)  # undone by orientation 6
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    stored.save(path, exif=exif)


@pytest.fixture(scope="module")
def example(folder_root):
    examples = folder_root / "examples"
    return (examples / "support.jpg", examples / "support_mask.png",
            sorted((examples / "queries").iterdir()))


def test_a_sideways_photo_is_read_upright(tmp_path, example):
    support, mask, queries = example
    displayed = Image.open(support).convert("RGB")
    save_sideways(displayed, tmp_path / "sideways.png")
    with Image.open(tmp_path / "sideways.png") as stored:
        assert stored.size == displayed.size[::-1] and displayed_size(stored) == displayed.size
        assert np.array_equal(np.asarray(upright(stored).convert("RGB")), np.asarray(displayed))


def test_rotated_support_and_query_predict_as_displayed(tmp_path, example):
    """A support photographed sideways with its mask drawn on the image as displayed, and a
    sideways query: the same predictions as for the upright files, at the displayed size."""
    support, mask, queries = example
    upright_support, upright_query = tmp_path / "support.png", tmp_path / "query.png"
    Image.open(support).convert("RGB").save(upright_support)
    Image.open(queries[0]).convert("RGB").save(upright_query)
    save_sideways(Image.open(upright_support), tmp_path / "support_sideways.png")
    save_sideways(Image.open(upright_query), tmp_path / "query_sideways.png")
    model = segmenter()
    plain = model.segment([[(upright_support, mask)]], [upright_query], probabilities=True)
    turned = model.segment([[(tmp_path / "support_sideways.png", mask)]],
                           [tmp_path / "query_sideways.png"], probabilities=True)
    assert turned[0].labels.shape == Image.open(upright_query).size[::-1]
    assert np.array_equal(turned[0].labels, plain[0].labels)
    np.testing.assert_allclose(turned[0].probabilities, plain[0].probabilities, atol=1e-6)


def test_a_folder_dataset_of_sideways_photos_matches_its_masks(tmp_path, folder_root):
    """Masks drawn on the displayed photos: read upright, the image fits its mask."""
    import shutil

    root = tmp_path / "shapes"
    shutil.copytree(folder_root, root)
    image_id = sorted(p.stem for p in (root / "images").iterdir())[0]
    jpeg = root / "images" / f"{image_id}.jpg"
    save_sideways(Image.open(jpeg).convert("RGB"), root / "images" / f"{image_id}.png")
    jpeg.unlink()
    assert load_script("prepare_folder").main([str(root)]) == 0  # sizes checked as displayed
    source = FolderSource(root, "all")
    image = source.image(image_id)
    source.check_sizes(image_id, image, source.label_map(image_id).shape)


def test_an_alpha_mask_is_read_from_its_alpha(example):
    """An object drawn in the alpha channel of a one-colour image (RGBA or LA) is the mask;
    without the alpha it would be all one value."""
    _, mask, _ = example
    binary = np.array(Image.open(mask)) > 0
    expected = binary.astype(np.uint8)
    rgba = np.zeros((*binary.shape, 4), np.uint8)
    rgba[..., :3] = (30, 60, 90)
    rgba[..., 3] = binary * 255
    la = np.stack([np.full(binary.shape, 200, np.uint8), binary.astype(np.uint8) * 255], -1)
    for name, image in (("RGBA", Image.fromarray(rgba, "RGBA")), ("LA", Image.fromarray(la, "LA"))):
        assert np.array_equal(load_mask(image, name), expected), name
    opaque = rgba.copy()
    opaque[..., 3] = 255  # an opaque mask: its colour is the mask
    opaque[..., :3] = binary[..., None] * 255
    assert np.array_equal(load_mask(Image.fromarray(opaque, "RGBA"), "opaque"), expected)


def test_ambiguous_and_one_sided_masks_are_refused(example):
    _, mask, _ = example
    binary = np.array(Image.open(mask)) > 0
    both = np.zeros((*binary.shape, 4), np.uint8)
    both[..., 0] = np.arange(binary.shape[1]) % 255  # colour varies
    both[..., 3] = binary * 255  # and so does alpha
    with pytest.raises(ValueError, match="both its colour and its transparency vary"):
        load_mask(Image.fromarray(both, "RGBA"), "mask")
    with pytest.raises(ValueError, match="no background pixel"):
        load_mask(np.full(binary.shape, 255, np.uint8), "mask")
    with pytest.raises(ValueError, match="no foreground pixel"):
        load_mask(np.zeros(binary.shape, np.uint8), "mask")


def test_predict_decodes_every_query_before_writing(tmp_path, example, monkeypatch, capsys):
    """A truncated second query stops predict.py before the first query's files are written."""
    support, mask, queries = example
    checkpoint = tmp_path / "final.pt"
    torch.manual_seed(0)
    from panet.weights.checkpoint import save_checkpoint

    model = PANet(DilatedVGG(SMALL_DILATED))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(checkpoint, step=1, model=model, optimizer=optimizer,
                    scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1),
                    config={"model": {"encoder": "small", "weights": None, "alpha": 20.0},
                            "data": {"size": list(SIZE)}})
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(queries[1].read_bytes()[:600])
    out = tmp_path / "out"
    assert PREDICT.main(["--checkpoint", str(checkpoint), "--way", str(support), str(mask),
                         "--query", str(queries[0]), str(truncated), "--out", str(out),
                         "--device", "cpu"]) == 1
    assert "query 2 (" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
