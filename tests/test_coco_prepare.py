"""scripts/prepare_coco.py: layout report, cache building, per-class counts."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panet.data.coco import annotation_file

SCRIPT = Path(__file__).parents[1] / "scripts" / "prepare_coco.py"


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("prepare_coco", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def write_split(root, split, year, n_images):
    """``n_images`` 4 x 6 images; image i holds one 'cat' square (category 17), so the cat list
    has every image and the 'dog' list (category 18) none."""
    (root / f"{split}{year}").mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    for i in range(n_images):
        pixels = np.full((4, 6, 3), 40 * i, np.uint8)
        Image.fromarray(pixels).save(root / f"{split}{year}" / f"{i}.png")
    data = {
        "images": [
            {"id": i, "file_name": f"{i}.png", "height": 4, "width": 6} for i in range(n_images)
        ],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 17, "iscrowd": 0,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}
            for i in range(n_images)
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 17, "name": "cat"}],
    }
    annotation_file(root, split, year).write_text(json.dumps(data))


def test_missing_layout_is_listed_with_the_official_downloads(prepare, tmp_path, capsys):
    write_split(tmp_path, "val", 2014, 1)
    assert prepare([str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"missing {tmp_path / 'annotations' / 'instances_train2014.json'}" in out
    assert "annotations/annotations_trainval2014.zip" in out
    assert f"missing image folder {tmp_path / 'train2014'}" in out
    assert "zips/train2014.zip" in out
    assert out.count("\n  missing ") == 2  # the complete val split is not reported


def test_builds_the_cache_and_prints_images_per_class(prepare, tmp_path, capsys):
    write_split(tmp_path, "train", 2017, 3)
    write_split(tmp_path, "val", 2017, 2)
    cache = tmp_path / "cache"
    assert prepare([str(tmp_path), "--year", "2017", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == [
        "instances_train2017.index.json", "instances_val2017.index.json"
    ]
    assert "train2017: 3 images" in out and "val2017: 2 images" in out
    rows = {row.split()[1]: row.split()[2:] for row in out.splitlines() if row.startswith("   ")}
    assert rows == {"cat": ["3", "2"], "dog": ["0", "0"]}  # cat (id 17) is class 1


def test_images_missing_from_a_folder_fail_with_their_names(prepare, tmp_path, capsys):
    write_split(tmp_path, "val", 2017, 3)
    (tmp_path / "val2017" / "1.png").unlink()
    args = [str(tmp_path), "--year", "2017", "--splits", "val", "--cache-dir", str(tmp_path / "c")]
    assert prepare(args) == 1
    out = capsys.readouterr().out
    assert "1 of the 3 images" in out and "1.png" in out and "zips/val2017.zip" in out
