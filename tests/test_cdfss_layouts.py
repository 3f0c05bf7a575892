"""The cross-domain layouts: the synthetic stand-ins (panet/data/synthetic_cdfss.py) and PATNet's
Deepglobe preprocessing (panet/data/deepglobe_prepare.py, scripts/prepare_deepglobe.py)."""

import csv
import filecmp
import re

import numpy as np
import pytest
from PIL import Image

from panet.data.deepglobe_prepare import (CLASS_COLOURS, RELEASE_URL, class_masks, grid_boxes,
                                          keep_tile)
from panet.data.synthetic_cdfss import (DEFAULT_IMAGES_PER_CLASS, DEFAULT_LUNG_IMAGES,
                                        FSS_CLASSES, FSS_IMAGES, FSS_SPLITS, ISIC_CLASSES,
                                        generate_cdfss)

from conftest import load_script

RGB = {"urban": (0, 255, 255), "agriculture": (255, 255, 0), "rangeland": (255, 0, 255),
       "forest": (0, 255, 0), "water": (0, 0, 255), "barren": (255, 255, 255),
       "unknown": (0, 0, 0)}
FOLDER_CLASS = {1: "agriculture", 2: "urban", 3: "rangeland", 4: "forest", 5: "water",
                6: "barren"}  # derived from PATNet's BGR labelset
TILE = 102  # a 612 x 612 release image on the 6 x 6 grid


def tree_files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def cdfss(tmp_path_factory):
    return generate_cdfss(tmp_path_factory.mktemp("cdfss") / "out", seed=3)


def check_mask(mask_path, image_path):
    mask = Image.open(mask_path)
    values = set(np.unique(np.asarray(mask)).tolist())
    assert mask.mode == "L" and values == {0, 255}, mask_path
    assert mask.size == Image.open(image_path).size


def test_deepglobe_and_isic_layouts(cdfss):
    for k in range(1, 7):
        origin, groundtruth = (cdfss / "Deepglobe" / str(k) / "test" / d
                               for d in ("origin", "groundtruth"))
        stems = sorted(p.stem for p in origin.glob("*.jpg"))
        assert len(stems) == DEFAULT_IMAGES_PER_CLASS == len(list(origin.iterdir()))
        assert stems == sorted(p.stem for p in groundtruth.iterdir())
        check_mask(groundtruth / f"{stems[0]}.png", origin / f"{stems[0]}.jpg")
    isic = cdfss / "ISIC"
    lines = (isic / "class_id.csv").read_text().splitlines()
    assert lines[0] == "ID,Class"
    rows = list(csv.DictReader(lines))
    assert [r["ID"] for r in rows] == sorted(r["ID"] for r in rows)
    assert {"ISIC_0009998", "ISIC_0010000"} <= {r["ID"] for r in rows}
    for k, name in enumerate(ISIC_CLASSES, start=1):
        images = sorted((isic / "ISIC2018_Task1-2_Training_Input" / str(k)).iterdir())
        ids = [p.stem for p in images]
        assert len(ids) == DEFAULT_IMAGES_PER_CLASS and all(p.suffix == ".jpg" for p in images)
        assert all(re.fullmatch(r"ISIC_\d{7}", i) for i in ids)
        assert ids == [r["ID"] for r in rows if r["Class"] == name]
        for image in images:
            assert (isic / "ISIC2018_Task1_Training_GroundTruth"
                    / f"{image.stem}_segmentation.png").is_file()
        check_mask(isic / "ISIC2018_Task1_Training_GroundTruth" / f"{ids[0]}_segmentation.png",
                   images[0])
    assert len(list((isic / "ISIC2018_Task1_Training_GroundTruth").iterdir())) == len(rows)


def test_lung_and_fss_layouts(cdfss):
    lung = cdfss / "LungSegmentation"
    masks = sorted(p.name for p in (lung / "masks").iterdir())
    images = sorted(p.name for p in (lung / "CXR_png").iterdir())
    assert len(masks) == len(images) == DEFAULT_LUNG_IMAGES
    from_masks = [m[:-9] + ".png" for m in masks]
    assert sorted(from_masks) == images and from_masks != images  # same set, other order
    check_mask(lung / "masks" / masks[0], lung / "CXR_png" / from_masks[0])
    fss = cdfss / "FSS-1000"
    splits = {}
    for split, count in FSS_SPLITS.items():
        text = (fss / "splits" / f"{split}.txt").read_text()
        assert text.endswith("\n") and len(text.splitlines()) == count
        splits[split] = text.splitlines()
    assert sorted(sum(splits.values(), [])) == sorted(FSS_CLASSES)
    assert sorted(p.name for p in fss.iterdir()) == sorted(FSS_CLASSES + ("splits",))
    expected = sorted(f"{n}{s}" for n in range(1, FSS_IMAGES + 1) for s in (".jpg", ".png"))
    for name in FSS_CLASSES:
        assert sorted(p.name for p in (fss / name).iterdir()) == expected
    check_mask(fss / FSS_CLASSES[0] / "10.png", fss / FSS_CLASSES[0] / "10.jpg")


def test_byte_identical_for_a_seed(cdfss, tmp_path):
    again = generate_cdfss(tmp_path / "again", seed=3)
    files = tree_files(cdfss)
    assert files == tree_files(again) and len(files) > 400
    assert all(filecmp.cmp(cdfss / f, again / f, shallow=False) for f in files)
    other = generate_cdfss(tmp_path / "other", seed=4, images_per_class=2, lung_images=2)
    image = "FSS-1000/" + FSS_CLASSES[0] + "/1.jpg"
    assert not filecmp.cmp(cdfss / image, other / image, shallow=False)


def test_make_synthetic_cdfss_layout(tmp_path, capsys):
    script = load_script("make_synthetic")
    out = tmp_path / "c"
    assert script.main(["--layout", "cdfss", "--out", str(out), "--size", "40", "48"]) == 0
    printed = capsys.readouterr().out
    assert "wrote Deepglobe, ISIC, LungSegmentation and FSS-1000 (40 x 48)" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "Deepglobe", "FSS-1000", "ISIC", "LungSegmentation"]
    assert Image.open(out / "FSS-1000" / FSS_CLASSES[0] / "1.jpg").size == (48, 40)
    with pytest.raises(SystemExit):
        script.main(["--layout", "cdfss", "--n-images", "5", "--out", str(tmp_path / "d")])


def test_grid_is_six_by_six_of_any_size():
    boxes = list(grid_boxes(2448, 2448))
    assert len(boxes) == 36 and {(b - t, r - l) for _, _, (t, b, l, r) in boxes} == {(408, 408)}
    rows = sorted({(t, b) for _, _, (t, b, _, _) in grid_boxes(100, 612)})
    assert rows == [(0, 16), (16, 33), (33, 50), (50, 66), (66, 83), (83, 100)]


def tile_of(colour):
    return np.broadcast_to(np.array(colour, np.uint8), (TILE, TILE, 3)).copy()


def with_pixels(base, colour, n):
    tile = tile_of(RGB[base])
    tile.reshape(-1, 3)[:n] = RGB[colour]
    return tile


def stripes():
    """Six 17-pixel-wide columns, folder k's colour in column k - 1."""
    return np.repeat(np.array([RGB[FOLDER_CLASS[k]] for k in range(1, 7)], np.uint8)[None],
                     TILE, axis=0).repeat(TILE // 6, axis=1)


def test_keep_filter_hand_computed():
    # tile area 10404: 0.048 of it is 499.39 pixels
    assert not keep_tile(tile_of(RGB["urban"]))  # one colour
    assert not keep_tile(with_pixels("forest", "water", 499))  # 499 / 10404 = 0.04796
    assert keep_tile(with_pixels("forest", "water", 500))  # 500 / 10404 = 0.04806
    assert keep_tile(with_pixels("agriculture", "unknown", TILE * TILE // 2))


def test_class_folders_by_colour():
    assert {k: RGB[name] for k, name in FOLDER_CLASS.items()} == CLASS_COLOURS
    masks = class_masks(stripes())
    assert sorted(masks) == [1, 2, 3, 4, 5, 6]
    for k, mask in masks.items():
        columns = np.flatnonzero(mask.all(axis=0))
        assert mask.sum() == TILE * 17 and list(columns) == list(range(17 * (k - 1), 17 * k))
    assert sorted(class_masks(with_pixels("agriculture", "unknown", 5000))) == [1]


def write_release(root):
    """A 612 x 612 release image "123": tile (i, j) of the image has colour (40i, 40j, 128);
    the labels are forest everywhere except the hand-made tiles below."""
    label = np.broadcast_to(np.array(RGB["forest"], np.uint8), (6 * TILE, 6 * TILE, 3)).copy()
    tiles = {(0, 0): tile_of(RGB["urban"]), (0, 1): with_pixels("forest", "water", 499),
             (0, 2): with_pixels("forest", "water", 500),
             (0, 3): with_pixels("agriculture", "unknown", TILE * TILE // 2), (1, 0): stripes()}
    off = with_pixels("forest", "barren", TILE * TILE // 2)
    off[-1, -2:] = (250, 250, 250)  # two pixels off the palette
    tiles[(2, 2)] = off
    for (i, j), tile in tiles.items():
        label[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE] = tile
    image = np.zeros_like(label)
    for i in range(6):
        for j in range(6):
            image[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE] = (40 * i, 40 * j, 128)
    (root / "train").mkdir(parents=True)
    Image.fromarray(image).save(root / "train" / "123_sat.jpg", quality=100)
    Image.fromarray(label).save(root / "train" / "123_mask.png")
    return tiles


def test_prepare_deepglobe_writes_kept_tiles_per_class(tmp_path, capsys):
    tiles = write_release(tmp_path / "release")
    out = tmp_path / "Deepglobe"
    status = load_script("prepare_deepglobe").main(
        ["--release", str(tmp_path / "release"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0 and "36 tiles, 3 kept" in printed and "1 tiles held colours" in printed
    expected = {1: ["03", "10"], 2: ["10"], 3: ["10"], 4: ["02", "10"], 5: ["02", "10"],
                6: ["10"]}
    for k, cells in expected.items():
        stems = [f"123_sat_{cell}" for cell in cells]
        origin, groundtruth = (out / str(k) / "test" / d for d in ("origin", "groundtruth"))
        assert sorted(p.name for p in origin.iterdir()) == [f"{s}.jpg" for s in stems]
        assert sorted(p.name for p in groundtruth.iterdir()) == [f"{s}.png" for s in stems]
        for stem, cell in zip(stems, cells):
            i, j = int(cell[0]), int(cell[1])
            pixels = np.asarray(Image.open(origin / f"{stem}.jpg"), np.float32)
            assert pixels.shape == (TILE, TILE, 3)
            assert np.abs(pixels - (40 * i, 40 * j, 128)).mean() < 3  # the crop of tile (i, j)
            mask = Image.open(groundtruth / f"{stem}.png")
            assert mask.mode == "L"
            colour_k = np.all(tiles[(i, j)] == RGB[FOLDER_CLASS[k]], axis=-1)
            assert np.array_equal(np.asarray(mask), colour_k.astype(np.uint8) * 255)


def test_prepare_deepglobe_refuses_in_one_line(tmp_path, capsys):
    script = load_script("prepare_deepglobe")
    wrong = tmp_path / "wrong"
    (wrong / "images").mkdir(parents=True)
    Image.new("RGB", (12, 12)).save(wrong / "images" / "1_sat.jpg")
    assert script.main(["--release", str(wrong), "--out", str(tmp_path / "o1")]) == 2
    printed = capsys.readouterr().out.strip()
    assert "\n" not in printed and "train/<id>_sat.jpg" in printed and RELEASE_URL in printed
    assert not (tmp_path / "o1").exists()
    write_release(tmp_path / "release")
    (tmp_path / "release" / "train" / "124_mask.png").write_bytes(b"")
    assert script.main(["--release", str(tmp_path / "release"), "--out",
                        str(tmp_path / "o2")]) == 2
    printed = capsys.readouterr().out.strip()
    assert "\n" not in printed and "124" in printed and not (tmp_path / "o2").exists()
    (tmp_path / "release" / "train" / "124_mask.png").unlink()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine\n")
    assert script.main(["--release", str(tmp_path / "release"), "--out", str(busy)]) == 2
    printed = capsys.readouterr().out.strip()
    assert "\n" not in printed and "not empty" in printed
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
