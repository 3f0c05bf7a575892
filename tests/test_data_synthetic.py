"""The synthetic dataset: determinism, layout, class design, instance maps, COCO variant."""

import filecmp
import json

import numpy as np
from pycocotools import mask as rle_ops

from panet.data.folds import fold_classes
from panet.data.label_png import load_label_png
from panet.data.synthetic import (CLASS_SHAPE_TEXTURE, N_CLASSES, SHAPES, TEXTURES,
                                  coco_category_id, generate)
from panet.data.voc import VocSource

from conftest import load_checked, load_script


def tree_files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_byte_identical_from_seed_and_prefix_stable(tmp_path):
    first = generate(tmp_path / "a", n_images=6, size=(60, 80), seed=5, coco=True)
    second = generate(tmp_path / "b", n_images=6, size=(60, 80), seed=5, coco=True)
    files = tree_files(first)
    assert files == tree_files(second) and len(files) > 20
    assert all(filecmp.cmp(first / f, second / f, shallow=False) for f in files)
    other = generate(tmp_path / "c", n_images=6, size=(60, 80), seed=6)
    image = "VOC2012/JPEGImages/synth_00000.jpg"
    assert not filecmp.cmp(first / image, other / image, shallow=False)
    longer = generate(tmp_path / "d", n_images=9, size=(60, 80), seed=5, val_fraction=0.0)
    assert filecmp.cmp(first / image, longer / image, shallow=False)


def test_classes_are_new_combinations_of_seen_shapes_and_textures():
    assert sorted(CLASS_SHAPE_TEXTURE) == list(range(1, N_CLASSES + 1))
    assert len(set(CLASS_SHAPE_TEXTURE.values())) == N_CLASSES == len(SHAPES) * len(TEXTURES)
    for fold in range(4):
        test = [CLASS_SHAPE_TEXTURE[k] for k in fold_classes(20, fold, train=False)]
        train = [CLASS_SHAPE_TEXTURE[k] for k in fold_classes(20, fold, train=True)]
        assert sorted(s for s, _ in test) == list(range(len(SHAPES)))
        assert {s for s, _ in test} <= {s for s, _ in train}
        assert {t for _, t in test} <= {t for _, t in train}


def test_layout_labels_and_instances(synthetic_root):
    voc = synthetic_root / "VOC2012"
    short = 120
    for split in ("trainaug", "val"):
        source = VocSource(voc, split)
        counts = [len(ids) for ids in source.class_images().values()]
        assert min(counts) >= (3 if split == "trainaug" else 0) and sum(counts) > 0
        for image_id in source.ids[:25]:
            image, labels = load_checked(source, image_id, [])
            objects = load_label_png(voc / "SegmentationObjectAug" / f"{image_id}.png")
            assert np.array_equal(labels == 255, objects == 255)
            assert np.array_equal(labels == 0, objects == 0)
            classes = set(np.unique(labels).tolist()) - {0, 255}
            assert len(classes) >= 2  # several objects of different classes
            for instance in set(np.unique(objects).tolist()) - {0, 255}:
                owner = np.unique(labels[objects == instance])
                assert len(owner) == 1  # an instance belongs to one class
                ys, xs = np.nonzero(objects == instance)
                extent = max(np.ptp(ys), np.ptp(xs)) + 1
                assert extent >= 0.12 * short  # 20-45% of the short side, minus occlusion


def test_coco_variant_matches_the_instance_maps(synthetic_root):
    annotations = json.loads((synthetic_root / "coco/annotations/instances_val2014.json")
                             .read_text())
    categories = [c["id"] for c in annotations["categories"]]
    assert categories == [coco_category_id(k) for k in range(1, 21)]
    assert categories == sorted(categories) and len(set(categories)) == 20
    to_class = {coco_category_id(k): k for k in range(1, 21)}
    by_image = {}
    for annotation in annotations["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    source = VocSource(synthetic_root / "VOC2012", "val")
    assert len(annotations["images"]) == len(source.ids)
    for record, image_id in zip(annotations["images"], source.ids):
        assert (synthetic_root / "coco/val2014" / record["file_name"]).is_file()
        labels = source.label_map(image_id)
        void = labels == 255
        for annotation in by_image[record["id"]]:
            mask = rle_ops.decode(annotation["segmentation"]).astype(bool)
            assert mask.sum() == annotation["area"]
            class_mask = labels == to_class[annotation["category_id"]]
            assert np.array_equal(mask & ~void, class_mask)


def test_make_synthetic_script(tmp_path, capsys):
    status = load_script("make_synthetic").main(
        ["--out", str(tmp_path / "s"), "--n-images", "5", "--size", "50", "70"])
    assert status == 0 and "wrote 5 images" in capsys.readouterr().out
    assert len(VocSource(tmp_path / "s" / "VOC2012", "trainaug").ids) == 4
