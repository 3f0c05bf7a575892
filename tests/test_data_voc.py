"""PASCAL VOC source and preparation: real class-list counts, layout checks, every bad input."""

import shutil
import stat

import numpy as np
import pytest
import scipy.io
from PIL import Image
import torch

from panet.data import make_episode_dataset
from panet.data.episodes import EpisodeDataset
from panet.data.label_png import load_label_png, save_label_png
from panet.data.sampling import Episode
from panet.data.voc import VocSource
from panet.data.voc_prepare import write_class_lists
from panet.data.weak import build_scribble_map
from panet.base.files import default_file_mode
from panet.settings import EpisodeSetting

from conftest import blob_labels, load_checked, load_script, write_jpeg

# Images per class 1..20 documented with the real data (shared/data/README.md)
README_COUNTS = {
    "train_aug": [586, 486, 698, 461, 654, 385, 1086, 1000, 1081, 264, 528, 1177, 444, 482, 3898,
                  487, 299, 491, 500, 548],
    "val": [90, 79, 103, 72, 96, 74, 127, 119, 123, 71, 75, 128, 79, 76, 446, 85, 57, 90, 84, 74],
}


@pytest.mark.parametrize("split", ["train_aug", "val"])
def test_prepare_voc_reproduces_the_real_class_counts(voc_aug_class_lists, split):
    counts = [len(voc_aug_class_lists[split][k]) for k in range(1, 21)]
    assert counts == README_COUNTS[split]


def test_real_class_lists_agree_with_the_masks(voc_aug, voc_aug_class_lists):
    """Spot check against a naive per-pixel reading of 60 val masks."""
    val_ids = [i for i in (voc_aug / "ImageSets" / "val.txt").read_text().split()][:60]
    for image_id in val_ids:
        present = set(np.unique(load_label_png(voc_aug / "SegmentationClassAug"
                                               / f"{image_id}.png")).tolist()) - {0, 255}
        listed = {k for k, ids in voc_aug_class_lists["val"].items() if image_id in ids}
        assert listed == present, image_id


def test_source_reads_a_tree(make_voc_tree):
    labels = blob_labels(8, classes=[3, 4, 5])
    source = VocSource(make_voc_tree(labels), "trainaug")
    lists = source.class_images()
    for class_id in (3, 4, 5):
        assert lists[class_id] == sorted(i for i, m in labels.items() if (m == class_id).any())
    assert lists[1] == []
    image, label = load_checked(source, "img_002", [3])
    assert (image.height, image.width) == label.shape == (60, 80) and image.mode == "RGB"
    assert np.array_equal(label, labels["img_002"])
    assert source.class_name(15) == "15 (person)"


def test_train_aug_list_name_is_accepted(make_voc_tree):
    root = make_voc_tree(blob_labels(4), split="train_aug")
    assert len(VocSource(root, "trainaug").ids) == 4


def test_instance_map_renumbers_the_class_instances(make_voc_tree):
    label = np.zeros((10, 10), dtype=np.uint8)
    label[0:4, 0:4] = 7
    label[6:9, 6:9] = 7
    label[0:4, 6:9] = 2
    label[4, :] = 255
    objects = np.zeros_like(label)
    objects[0:4, 0:4] = 3
    objects[6:9, 6:9] = 5
    objects[0:4, 6:9] = 4
    objects[4, :] = 255
    source = VocSource(make_voc_tree({"a": label}, instances={"a": objects}), "trainaug")
    expected = np.zeros((10, 10), dtype=np.int32)
    expected[0:4, 0:4] = 1
    expected[6:9, 6:9] = 2
    assert np.array_equal(source.instance_map("a", 7), expected)


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("folder,origin", [("JPEGImages", "host.robots.ox.ac.uk"),
                                           ("SegmentationClassAug", "SBD"),
                                           ("ImageSets/Segmentation", "trainaug")])
def test_missing_folder_names_it_and_its_origin(make_voc_tree, folder, origin):
    root = make_voc_tree(blob_labels(3))
    shutil.rmtree(root / folder)
    with pytest.raises(FileNotFoundError, match=origin) as error:
        VocSource(root, "trainaug")
    assert str(root / folder) in str(error.value)


def test_missing_root_and_split_list(make_voc_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="VOC2012 folder"):
        VocSource(tmp_path / "nowhere", "trainaug")
    root = make_voc_tree(blob_labels(3))
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        VocSource(root, "val")


def test_missing_class_lists_say_to_run_prepare_voc(make_voc_tree):
    root = make_voc_tree(blob_labels(3), class_lists=False)
    with pytest.raises(FileNotFoundError, match=r"class1\.txt.*prepare_voc\.py"):
        VocSource(root, "trainaug")


def test_stale_class_lists(make_voc_tree):
    root = make_voc_tree(blob_labels(3))
    with open(root / "ImageSets/Segmentation/trainaug/class2.txt", "a") as handle:
        handle.write("img_999\n")
    with pytest.raises(ValueError, match=r"img_999.*stale"):
        VocSource(root, "trainaug")


@pytest.mark.parametrize("folder,suffix", [("JPEGImages", "jpg"), ("SegmentationClassAug", "png")])
def test_listed_id_without_its_file(make_voc_tree, folder, suffix):
    root = make_voc_tree(blob_labels(3))
    (root / folder / f"img_001.{suffix}").unlink()
    with pytest.raises(FileNotFoundError, match=rf"no {folder}/<id>.*img_001"):
        VocSource(root, "trainaug")


def test_corrupt_image(make_voc_tree):
    root = make_voc_tree(blob_labels(3))
    path = root / "JPEGImages" / "img_001.jpg"
    path.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.raises(ValueError, match=r"img_001\.jpg.*corrupt"):
        VocSource(root, "trainaug").image("img_001")


def test_corrupt_mask(make_voc_tree):
    root = make_voc_tree(blob_labels(3))
    (root / "SegmentationClassAug" / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=r"cannot decode label file .*img_001\.png"):
        VocSource(root, "trainaug").label_map("img_001")
    with pytest.raises(ValueError, match=r"cannot decode .*img_001\.png"):
        write_class_lists(root)


def test_mask_of_another_size(make_voc_tree):
    root = make_voc_tree(blob_labels(3))
    write_jpeg(root / "JPEGImages" / "img_002.jpg", 50, 80)
    with pytest.raises(ValueError, match=r"img_002.*50 x 80.*60 x 80"):
        load_checked(VocSource(root, "trainaug"), "img_002", [1])


def test_labels_outside_the_classes(make_voc_tree):
    labels = blob_labels(3, classes=[1, 2])
    root = make_voc_tree(labels)
    bad = labels["img_000"].copy()
    bad[5, 5] = 21
    save_label_png(root / "SegmentationClassAug" / "img_000.png", bad)
    with pytest.raises(ValueError, match=r"img_000\.png holds labels \[21\]"):
        VocSource(root, "trainaug").label_map("img_000")
    with pytest.raises(ValueError, match=r"img_000\.png holds labels \[21\]"):
        write_class_lists(root)


def test_colour_mask_is_rejected(make_voc_tree):
    root = make_voc_tree(blob_labels(3))
    Image.new("RGB", (80, 60)).save(root / "SegmentationClassAug" / "img_001.png")
    with pytest.raises(ValueError, match=r"img_001\.png.*mode RGB"):
        VocSource(root, "trainaug").label_map("img_001")


def test_class_too_small_for_the_episode(make_voc_tree):
    labels = blob_labels(12, classes=[1, 2, 3, 4])  # about 6 images per class
    for image_id in ("img_000", "img_001"):
        labels[image_id][40:50, 60:70] = 5  # class 5 in 2 images: too few for 2 shots + 1 query
    root = make_voc_tree(labels)
    with pytest.warns(UserWarning, match=r"class 5 \(bottle\) with 2"):
        dataset = make_episode_dataset(EpisodeSetting(root=str(root), shots=2, size=32), 20, 0,
                                       False)
    assert {c for e in dataset.episodes for c in e.class_ids} == {1, 2, 3, 4}


def test_box_supports_without_instance_folder(make_voc_tree):
    root = make_voc_tree(blob_labels(10, classes=[1, 2, 3, 4, 5]))
    dataset = make_episode_dataset(EpisodeSetting(root=str(root), size=32, weak="bbox"), 2, 0,
                                   False)
    with pytest.raises(FileNotFoundError, match=r"SegmentationObjectAug.*--sbd"):
        dataset[0]


def test_precomputed_scribbles_are_used_when_present(make_voc_tree):
    label = np.zeros((30, 30), dtype=np.uint8)
    label[5:25, 5:25] = 3
    root = make_voc_tree({"a": label, "b": label.copy()})
    (root / "ScribbleAugAuto").mkdir()
    scribble = np.full((30, 30), 255, dtype=np.uint8)
    scribble[10, 8:20] = 1
    scribble[1, :] = 0
    for image_id in ("a", "b"):
        save_label_png(root / "ScribbleAugAuto" / f"{image_id}.png", scribble)
    episode = Episode((3,), (("a",),), (("b",),))
    scribbles = EpisodeSetting(size=30, weak="scribble")
    item = EpisodeDataset(VocSource(root, "trainaug"), [episode], scribbles, 0, False)[0]
    assert np.array_equal(item["support_fg"][0, 0].numpy(), scribble == 1)
    assert np.array_equal(item["support_bg"][0, 0].numpy(), scribble == 0)
    (root / "ScribbleAugAuto" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"ScribbleAugAuto/a\.png"):
        EpisodeDataset(VocSource(root, "trainaug"), [episode], scribbles, 0, False)[0]


def test_make_scribbles_round_trip_on_real_masks(voc_aug, make_voc_tree, capsys):
    """Scribbles written by scripts/make_scribbles.py read back through the loader equal the
    ones it generates on the fly without the folder, and so do the episode's supports."""
    ids = ("2007_000042", "2007_000123")  # two real val masks holding class 19 (train)
    root = make_voc_tree({i: load_label_png(voc_aug / "SegmentationClassAug" / f"{i}.png")
                          for i in ids})
    episode = Episode((19,), ((ids[0],),), ((ids[1],),))

    def support(source):
        return EpisodeDataset(source, [episode], EpisodeSetting(weak="scribble"), 0, False)[0]

    on_the_fly = VocSource(root, "trainaug")
    generated = {i: on_the_fly.scribble_map(i) for i in ids}
    before = support(on_the_fly)
    assert load_script("make_scribbles").main([str(root)]) == 0
    assert "2 to draw" in capsys.readouterr().out
    from_files = VocSource(root, "trainaug")
    for image_id in ids:
        written = root / "ScribbleAugAuto" / f"{image_id}.png"
        assert Image.open(written).mode == "P"
        assert stat.S_IMODE(written.stat().st_mode) == default_file_mode()  # not mkstemp's 0600
        assert np.array_equal(from_files.scribble_map(image_id), generated[image_id])
    after = support(from_files)
    for key in ("support_fg", "support_bg", "query_labels"):
        assert torch.equal(before[key], after[key])
    dense = EpisodeDataset(from_files, [episode], EpisodeSetting(), 0, False)[0]["support_fg"]
    assert 0 < after["support_fg"].sum() < 0.2 * dense.sum()
    assert (after["support_fg"] <= dense).all()

    # resumable: existing files are kept, missing ones drawn again
    kept = np.full(generated[ids[0]].shape, 255, dtype=np.uint8)
    save_label_png(root / "ScribbleAugAuto" / f"{ids[0]}.png", kept)
    (root / "ScribbleAugAuto" / f"{ids[1]}.png").unlink()
    assert load_script("make_scribbles").main([str(root)]) == 0
    assert "1 scribble files kept, 1 to draw" in capsys.readouterr().out
    assert np.array_equal(load_label_png(root / "ScribbleAugAuto" / f"{ids[0]}.png"), kept)
    assert np.array_equal(VocSource(root, "trainaug").scribble_map(ids[1]), generated[ids[1]])
    assert not list((root / "ScribbleAugAuto").glob(".*"))  # no temporary file left
    assert not list((root / "ScribbleAugAuto").glob("*.tmp"))


def test_generated_scribbles_use_instance_masks_when_present(make_voc_tree):
    label = np.zeros((40, 60), dtype=np.uint8)
    label[5:35, 5:55] = 2
    objects = np.zeros_like(label)
    objects[5:35, 5:30], objects[5:35, 30:55] = 1, 2  # two touching instances of class 2
    root = make_voc_tree({"a": label, "b": label.copy()}, instances={"a": objects})
    scribbles = VocSource(root, "trainaug").scribble_map("a")
    assert np.array_equal(scribbles, build_scribble_map(label, objects))
    assert set(np.unique(scribbles)) == {0, 1, 2, 255}
    with pytest.raises(FileNotFoundError, match=r"SegmentationObjectAug/b\.png"):
        VocSource(root, "trainaug").scribble_map("b")


def test_make_scribbles_reports_a_missing_layout(tmp_path, capsys):
    assert load_script("make_scribbles").main([str(tmp_path)]) == 2
    assert "SegmentationClassAug" in capsys.readouterr().out


# ---- scripts/prepare_voc.py ----------------------------------------------------------------


def test_prepare_voc_reports_missing_layout(tmp_path, capsys):
    (tmp_path / "VOC2012").mkdir()
    status = load_script("prepare_voc").main([str(tmp_path / "VOC2012")])
    out = capsys.readouterr().out
    assert status == 2
    assert "SegmentationClassAug" in out and "ImageSets/Segmentation" in out and "SBD" in out


def test_prepare_voc_converts_sbd_instances(make_voc_tree, tmp_path, capsys):
    labels = blob_labels(3, classes=[1, 2])
    root = make_voc_tree(labels)
    sbd = tmp_path / "sbd" / "dataset"
    (sbd / "inst").mkdir(parents=True)
    instances = {}
    for k, image_id in enumerate(["img_000", "img_001"]):
        instances[image_id] = (labels[image_id] > 0).astype(np.uint8) * (k + 1)
        scipy.io.savemat(sbd / "inst" / f"{image_id}.mat",
                         {"GTinst": {"Segmentation": instances[image_id],
                                     "Categories": np.array([1])}})
    (root / "SegmentationObject").mkdir()
    voc_objects = np.full((60, 80), 9, dtype=np.uint8)
    save_label_png(root / "SegmentationObject" / "img_001.png", voc_objects)  # takes precedence
    status = load_script("prepare_voc").main([str(root), "--sbd", str(sbd)])
    out = capsys.readouterr().out
    assert status == 0 and "img_002" in out  # in neither source
    converted = root / "SegmentationObjectAug"
    assert np.array_equal(load_label_png(converted / "img_000.png"), instances["img_000"])
    assert np.array_equal(load_label_png(converted / "img_001.png"), voc_objects)
    assert not (converted / "img_002.png").exists()
