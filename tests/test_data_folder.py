"""The folder dataset (panet/data/folder.py): the source, its per-class lists and the checks of
scripts/prepare_folder.py, against naive recounts and hand-built broken folders."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import load_script, write_bomb_png
from panet.data import make_episode_dataset
from panet.data.folder import ALL_SPLIT, FolderSource
from panet.data.label_png import save_label_png
from panet.settings import EpisodeSetting

PREPARE = load_script("prepare_folder")


def recount(root, ids):
    """Class id -> sorted ids whose mask holds it, by reading every mask pixel by pixel."""
    n_classes = len((root / "classes.txt").read_text().split())
    lists = {k: [] for k in range(1, n_classes + 1)}
    for image_id in sorted(ids):
        mask = np.array(Image.open(root / "masks" / f"{image_id}.png"))
        for value in {int(v) for v in mask.ravel()}:
            if 0 < value <= n_classes:
                lists[value].append(image_id)
    return lists


def test_prepared_lists_equal_a_recount_of_the_masks(folder_root):
    all_ids = sorted(p.stem for p in (folder_root / "images").iterdir())
    splits = {"all": all_ids,
              "train": (folder_root / "splits" / "train.txt").read_text().split(),
              "test": (folder_root / "splits" / "test.txt").read_text().split()}
    assert sorted(splits["train"] + splits["test"]) == all_ids
    names = (folder_root / "classes.txt").read_text().splitlines()
    for split, ids in splits.items():
        expected = recount(folder_root, ids)
        lists_dir = folder_root / "lists" / split
        for class_id, class_ids in expected.items():
            assert (lists_dir / f"class{class_id}.txt").read_text().split() == class_ids
        counts = [line.split("\t") for line in (lists_dir / "counts.txt").read_text().splitlines()]
        assert counts == [[str(k), names[k - 1], str(len(expected[k]))] for k in expected]


def test_source_reads_names_splits_images_and_masks(folder_root):
    source = FolderSource(folder_root, "test")
    assert source.class_ids == list(range(1, 21))
    assert source.class_names[1] == "ellipse-hstripes"
    assert source.ids == (folder_root / "splits" / "test.txt").read_text().split()
    image_id = source.ids[0]
    image = source.image(image_id)
    expected = np.asarray(Image.open(folder_root / "images" / f"{image_id}.jpg").convert("RGB"))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), expected)
    labels = source.label_map(image_id)
    assert np.array_equal(labels, np.array(Image.open(folder_root / "masks" / f"{image_id}.png")))
    assert FolderSource(folder_root, "all").ids == sorted(
        p.stem for p in (folder_root / "images").iterdir())


@pytest.mark.filterwarnings("ignore:left out of the episodes")  # classes of 1 image
@pytest.mark.parametrize("weak", ["dense", "bbox", "scribble"])
def test_episodes_of_explicit_test_classes(folder_root, weak):
    setting = EpisodeSetting(name="folder", root=str(folder_root), ways=2, size=48, weak=weak,
                             test_classes=("ellipse-hstripes", 2, "triangle-checker"))
    dataset = make_episode_dataset(setting, 4, seed=3, train=False)
    for episode in dataset.episodes:
        assert set(episode.class_ids) <= {1, 2, 3}
    item = dataset[0]
    assert item["support_images"].shape == (2, 1, 3, 48, 48)
    assert (item["support_fg"].sum(dim=(-1, -2)) > 0).all()
    training = make_episode_dataset(setting.replace(train_split="train", fold=1, n_folds=5,
                                                    ways=1, test_classes=None, weak="dense"),
                                    20, seed=3, train=True)
    assert {c for e in training.episodes for c in e.class_ids} <= set(range(1, 21)) - {5, 6, 7, 8}


def write_folder(root, items, classes=("cat", "dog")):
    """A folder dataset from {id: (image array or PIL image, label map or None)}."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(name + "\n" for name in classes))
    for image_id, (image, labels) in items.items():
        image = image if isinstance(image, Image.Image) else Image.fromarray(image)
        suffix = "jpg" if image.mode in ("RGB", "L", "CMYK") else "png"
        image.save(root / "images" / f"{image_id}.{suffix}")
        if labels is not None:
            save_label_png(root / "masks" / f"{image_id}.png", labels)
    return root


def blobs(height=20, width=30, value=1):
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[2:8, 3:9] = value
    return labels


def pixels(height=20, width=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_connected_parts_are_the_instances_of_box_supports(tmp_path):
    labels = np.zeros((10, 12), dtype=np.uint8)
    labels[1:3, 1:3] = 1
    labels[3, 3] = 1  # touches the first block diagonally: the same part (8-connected)
    labels[6:9, 6:11] = 1
    labels[0, 11] = 2
    root = write_folder(tmp_path / "d", {"a": (pixels(10, 12), labels),
                                         "b": (pixels(10, 12, 1), labels)})
    assert PREPARE.main([str(root)]) == 0
    parts = FolderSource(root).instance_map("a", 1)
    expected = np.zeros((10, 12), dtype=np.int32)
    expected[1:3, 1:3] = expected[3, 3] = 1
    expected[6:9, 6:11] = 2
    assert np.array_equal(parts, expected)


def test_source_errors_name_the_fix(tmp_path, folder_root):
    root = tmp_path / "copy"
    shutil.copytree(folder_root, root)
    with pytest.raises(FileNotFoundError, match=r"splits/val\.txt does not exist.*'all'"):
        FolderSource(root, "val")
    stale = root / "lists" / "test" / "class1.txt"
    stale.write_text(stale.read_text() + "not_an_image\n")
    with pytest.raises(ValueError, match="stale.*prepare_folder.py"):
        FolderSource(root, "test")
    shutil.rmtree(root / "lists")
    with pytest.raises(FileNotFoundError, match=r"class1\.txt does not exist.*prepare_folder\.py"):
        FolderSource(root, "all")
    assert PREPARE.main([str(root)]) == 0
    source = FolderSource(root)
    image_id = source.ids[0]
    save_label_png(root / "masks" / f"{image_id}.png", blobs(120, 160, value=30))
    with pytest.raises(ValueError, match=rf"{image_id}\.png holds labels \[30\] outside 0\.\.20"):
        source.label_map(image_id)  # a source opened before the mask was redrawn
    with pytest.raises(ValueError, match=rf"written from other files than .*masks/{image_id}"
                                         r"\.png \(changed.*prepare_folder\.py"):
        FolderSource(root)  # opened after: the lists are stale


def test_prepare_lists_every_problem_and_writes_nothing(tmp_path, capsys):
    sixteen_bit = Image.fromarray(np.full((20, 30), 1000, dtype=np.uint16))
    root = write_folder(tmp_path / "d", {
        "ok": (pixels(), blobs()),
        "gray": (pixels()[..., 0], blobs(value=2)),  # grayscale images are fine
        "nomask": (pixels(), None),
        "small_mask": (pixels(), blobs(10, 10)),
        "label_7": (pixels(), blobs(value=7)),
        "deep": (sixteen_bit, blobs()),
        "dup": (pixels(), blobs()),
        "corrupt": (pixels(), blobs()),
    })
    Image.fromarray(pixels()).save(root / "images" / "dup.png")
    (root / "images" / "corrupt.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.stack([blobs()] * 3, axis=-1)).save(root / "masks" / "colour.png")
    Image.fromarray(pixels()).save(root / "images" / "colour.jpg")
    save_label_png(root / "masks" / "orphan.png", blobs())
    (root / "images" / "notes.txt").write_text("my notes")
    write_bomb_png(root / "images" / "bomb.png")
    save_label_png(root / "masks" / "bomb.png", blobs())
    (root / "images" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"")  # a Latin-1 name
    (root / "splits").mkdir()
    (root / "splits" / "test.txt").write_text("ok\nghost\n")
    (root / "splits" / "all.txt").write_text("ok\n")

    assert PREPARE.main([str(root)]) == 1
    out = capsys.readouterr().out
    expected = {
        "missing mask": ["masks/nomask.png does not exist"],
        "mask size": ["small_mask.png is 10 x 10 (H x W) but its image small_mask.jpg is 20 x 30"],
        "bad mask": ["label_7.png holds labels [7] outside 0..2", "colour.png: mode RGB"],
        "bad image": ["deep.png: I;16 image", "cannot decode image", "corrupt.jpg",
                      "bomb.png refused: Image size (3600000000 pixels) exceeds limit"],
        "file name": ["b'caf\\xe9.jpg' in", "is not a UTF-8 name"],
        "duplicate id": ["dup.jpg and", "dup.png share the id 'dup'"],
        "orphan mask": ["masks/orphan.png has no image"],
        "stray file": ["images/notes.txt is not a"],
        "split": ["test.txt lists 1 ids without an image", "ghost",
                  "all.txt: 'all' is the reserved name"],
    }
    for kind, fragments in expected.items():
        lines = [line for line in out.splitlines() if line.startswith(f"  [{kind}]")]
        assert lines, kind
        for fragment in fragments:
            assert any(fragment in line for line in lines), (kind, fragment, out)
    assert "13 problems:" in out and "2 bad mask" in out and "Nothing was written" in out
    assert "/ok." not in out and "/gray." not in out
    assert "Traceback" not in out and not (root / "lists").exists()


def test_prepare_reports_a_broken_classes_file_and_missing_folders(tmp_path, capsys):
    root = write_folder(tmp_path / "d", {"a": (pixels(), blobs())}, classes=("cat", "", "cat"))
    assert PREPARE.main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "line 2 is empty" in out and "line 3 repeats 'cat' of line 1" in out
    assert PREPARE.main([str(tmp_path / "nowhere")]) == 1
    out = capsys.readouterr().out
    assert "nowhere/images does not exist" in out and "nowhere/classes.txt does not exist" in out


def test_images_of_any_8_bit_mode_are_read_as_rgb(tmp_path):
    rgb = pixels()
    root = write_folder(tmp_path / "d", {"cmyk": (Image.fromarray(rgb).convert("CMYK"), blobs()),
                                         "gray": (rgb[..., 0], blobs()),
                                         "palette": (Image.fromarray(rgb).convert("P"), blobs())})
    assert PREPARE.main([str(root)]) == 0
    source = FolderSource(root)
    for image_id in ("cmyk", "gray", "palette"):
        image = source.image(image_id)
        assert image.mode == "RGB" and image.size == (30, 20)
    gray = np.asarray(source.image("gray"))
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_lists_of_images_added_since_are_refused(folder_root, tmp_path):
    """An image added after prepare_folder.py wrote the per-class lists: the source says to run
    it again instead of leaving the image out without a word."""
    root = tmp_path / "shapes"
    shutil.copytree(folder_root, root)
    FolderSource(root, "all")  # a copy holds the same files: its lists stay good
    first = sorted((root / "images").iterdir())[0]
    shutil.copyfile(first, root / "images" / "added.jpg")
    shutil.copyfile(root / "masks" / f"{first.stem}.png", root / "masks" / "added.png")
    with pytest.raises(ValueError, match=r"other files than .*masks/added\.png \(changed, added "
                                         r"or removed since\); run .*prepare_folder\.py"):
        FolderSource(root, "all")
    assert PREPARE.main([str(root)]) == 0
    assert "added" in FolderSource(root, "all").ids


def test_a_mask_replaced_by_an_older_one_is_refused(folder_root, tmp_path):
    """`cp -p` gives the replaced mask the other file's older time: a check by time would keep
    the lists, which would then sample the image for classes its mask no longer holds."""
    root = tmp_path / "shapes"
    shutil.copytree(folder_root, root)
    target, other = sorted((root / "masks").iterdir())[:2]
    assert target.read_bytes() != other.read_bytes()
    os.utime(other, ns=(1, 1))  # older than every file of the dataset, the lists included
    assert FolderSource(root, "all").ids  # a time changed, not a byte: the lists stay good
    subprocess.run(["cp", "-p", str(other), str(target)], check=True)
    assert target.stat().st_mtime_ns == 1
    train = (root / "splits" / "train.txt").read_text().split()
    held = "train" if target.stem in train else "test"
    for split in (ALL_SPLIT, held):
        with pytest.raises(ValueError, match=rf"other files than .*masks/{target.stem}\.png "
                                             r"\(changed, added or removed since\); run `python "
                                             r"scripts/prepare_folder\.py .*` again$") as error:
            FolderSource(root, split)
        assert "\n" not in str(error.value)
    assert FolderSource(root, "test" if held == "train" else "train").ids  # its masks: untouched
    assert PREPARE.main([str(root)]) == 0
    assert FolderSource(root, held).ids
