"""CocoSource on tiny hand-written COCO-json datasets: masks, classes, cache and bad input.

The scene (H x W = 6 x 8) has hand-checked masks. Categories are listed out of id order
(car 9, cat 2, dog 5), so the class ids are cat 1, dog 2, car 3. A polygon
[x0, y0, x1, y0, x1, y1, x0, y1] covers rows y0..y1-1 and columns x0..x1-1 (pycocotools'
convention).
"""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as rle_ops

from panet.data import coco
from panet.data.coco import CocoSource
from panet.base.files import default_file_mode

H, W = 6, 8
CAT, DOG, CAR = 1, 2, 3
SPLIT, YEAR = "val", 2017


def rect(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def compressed_rle(mask):
    rle = rle_ops.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode()}


def box_mask(rows, cols):
    mask = np.zeros((H, W), bool)
    mask[rows, cols] = True
    return mask


DOG_MASK_1 = box_mask(slice(1, 4), slice(2, 5))
CAT_INSTANCES_1 = [  # annotation order: polygon, crowd uncompressed RLE, polygon
    box_mask(slice(0, 2), slice(0, 3)),
    box_mask(slice(4, 6), slice(0, 8)),
    box_mask(slice(1, 3), slice(1, 2)),
]


def scene():
    """images (id, file, mode) and annotations of the hand-checked dataset."""
    images = [(1, "a.jpg", "RGB"), (10, "b.jpg", "L"), (9, "c.jpg", "CMYK"), (7, "d.jpg", "RGB")]
    crowd_counts = [4, 2] * W  # column-major: each column has 4 zeros then 2 ones
    annotations = [
        (1, CAT, rect(0, 0, 3, 2), 0),
        (1, DOG, compressed_rle(DOG_MASK_1), 0),
        (1, CAT, {"size": [H, W], "counts": crowd_counts}, 1),
        (1, CAT, rect(1, 1, 2, 3), 0),
        (1, CAR, [[1, 1, 2, 2]], 0),  # a 2-point polygon: no area
        (10, CAR, rect(0, 0, 2, 6), 0),
        (10, DOG, rect(6, 0, 8, 2), 0),
        (9, DOG, compressed_rle(box_mask(slice(2, 4), slice(2, 4))), 1),
    ]
    return images, annotations


CATEGORY_IDS = {CAT: 2, DOG: 5, CAR: 9}

# the degenerate car polygon of image 1 is reported whenever a cache is built (tested below)
pytestmark = pytest.mark.filterwarnings("ignore:.*have only empty masks:UserWarning")


def write_coco(root, images, annotations, split=SPLIT, year=YEAR, sizes=None):
    """Write annotations/instances_{split}{year}.json and the images; ``sizes`` overrides the
    size (W, H) of an image file."""
    sizes = sizes or {}
    folder = Path(root) / f"{split}{year}"
    folder.mkdir(parents=True, exist_ok=True)
    (Path(root) / "annotations").mkdir(exist_ok=True)
    for image_id, name, mode in images:
        pixels = np.random.default_rng(image_id).integers(0, 256, (H, W, 3), np.uint8)
        img = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels).convert(mode)
        img.resize(sizes.get(image_id, (W, H))).save(folder / name, format="JPEG")
    data = {
        "images": [{"id": i, "file_name": n, "height": H, "width": W} for i, n, _ in images],
        "annotations": [
            {"id": k, "image_id": i, "category_id": CATEGORY_IDS[c], "segmentation": s,
             "iscrowd": crowd}
            for k, (i, c, s, crowd) in enumerate(annotations, start=100)
        ],
        "categories": [
            {"id": 9, "name": "car"}, {"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}
        ],
    }
    path = coco.annotation_file(root, split, year)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def root(tmp_path):
    write_coco(tmp_path / "coco", *scene())
    return tmp_path / "coco"


@pytest.fixture
def source(root, tmp_path):
    return CocoSource(root, SPLIT, year=YEAR, cache_dir=tmp_path / "cache")


def test_classes_are_numbered_in_category_id_order(source):
    assert source.class_ids == [1, 2, 3]
    assert source.class_names == {CAT: "cat", DOG: "dog", CAR: "car"}
    assert source.category_ids == CATEGORY_IDS


def test_class_images_are_sorted_ids_with_a_non_empty_mask(source):
    # image 7 has no annotation; image 1's car is a degenerate polygon; crowd-only image 9 counts
    assert source.class_images() == {CAT: ["1"], DOG: ["1", "10", "9"], CAR: ["10"]}
    assert source.image_ids == ["1", "10", "7", "9"]


def test_empty_masks_are_reported_when_the_cache_is_built(root, tmp_path):
    with pytest.warns(UserWarning, match=r"1 \(image, class\) pairs have only empty masks"):
        CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "cache")


def test_label_map_is_the_union_of_instances_and_later_classes_win(source):
    cat = np.logical_or.reduce(CAT_INSTANCES_1)
    expected_cat = cat.astype(np.uint8) * CAT
    np.testing.assert_array_equal(source.label_map("1", [CAT]), expected_cat)

    cat_then_dog = expected_cat.copy()
    cat_then_dog[DOG_MASK_1] = DOG
    dog_then_cat = np.where(cat, CAT, DOG_MASK_1 * DOG).astype(np.uint8)
    assert cat[1, 2] and DOG_MASK_1[1, 2]  # the overlap pixel
    for order, expected in (([CAT, DOG], cat_then_dog), ([DOG, CAT], dog_then_cat)):
        label = source.label_map("1", order)
        assert label.dtype == np.uint8 and label.shape == (H, W)
        np.testing.assert_array_equal(label, expected)
    np.testing.assert_array_equal(source.label_map("1", [CAR]), np.zeros((H, W), np.uint8))
    np.testing.assert_array_equal(source.label_map("7", [CAT, DOG, CAR]), np.zeros((H, W)))


def test_label_map_matches_pycocotools_ann_to_mask(root, source):
    from pycocotools.coco import COCO

    api = COCO()
    api.dataset = json.loads(coco.annotation_file(root, SPLIT, YEAR).read_text())
    api.createIndex()
    for image_id in source.image_ids:
        for class_id in source.class_ids:
            anns = api.loadAnns(api.getAnnIds(imgIds=int(image_id), catIds=CATEGORY_IDS[class_id]))
            union = np.zeros((H, W), bool)
            for ann in anns:
                if ann["segmentation"] != [[1, 1, 2, 2]]:  # pycocotools: a box; we drop it
                    union |= api.annToMask(ann) > 0
            np.testing.assert_array_equal(source.label_map(image_id, [class_id]) > 0, union)


def test_instance_map_numbers_instances_in_annotation_order_later_ones_win(source):
    expected = np.zeros((H, W), np.int32)
    for k, mask in enumerate(CAT_INSTANCES_1, start=1):
        expected[mask] = k
    assert expected[1, 1] == 3  # instances 1 and 3 overlap there
    instance = source.instance_map("1", CAT)
    assert instance.dtype == np.int32
    np.testing.assert_array_equal(instance, expected)
    np.testing.assert_array_equal(source.instance_map("1", DOG), DOG_MASK_1.astype(np.int32))
    np.testing.assert_array_equal(source.instance_map("1", CAR), np.zeros((H, W), np.int32))


def test_images_come_back_rgb(root, source):
    for image_id in source.image_ids:
        img = source.image(image_id)
        assert img.mode == "RGB" and img.size == (W, H)
    gray = np.asarray(Image.open(root / f"{SPLIT}{YEAR}" / "b.jpg"))
    rgb = np.asarray(source.image("10"))
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], gray)


def test_location_names_the_image_and_annotation_files(root, source):
    location = source.location("10")
    assert str(root / "val2017" / "b.jpg") in location
    assert str(coco.annotation_file(root, SPLIT, YEAR)) in location


def test_default_year_is_2014(tmp_path):
    write_coco(tmp_path, *scene(), split="train", year=2014)
    source = CocoSource(tmp_path, "train", cache_dir=tmp_path / "cache")
    assert source.annotation_file.name == "instances_train2014.json"
    assert source.class_images()[DOG] == ["1", "10", "9"]


# --- cache ---------------------------------------------------------------------------------------


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    build = coco.build_index

    def counting_build(*args):
        calls.append(args)
        return build(*args)

    monkeypatch.setattr(coco, "build_index", counting_build)
    return calls


def test_cache_is_reused_until_the_annotation_file_changes(root, tmp_path, count_builds):
    cache_dir = tmp_path / "cache"
    first = CocoSource(root, SPLIT, YEAR, cache_dir=cache_dir)
    second = CocoSource(root, SPLIT, YEAR, cache_dir=cache_dir)
    assert len(count_builds) == 1
    assert first.cache_file == second.cache_file == cache_dir / "instances_val2017.index.json"
    assert second.class_images() == first.class_images()
    assert [p.name for p in cache_dir.iterdir()] == ["instances_val2017.index.json"]  # no temp files
    assert first.cache_file.stat().st_mode & 0o777 == default_file_mode()  # umask's mode

    ann = coco.annotation_file(root, SPLIT, YEAR)
    stat = ann.stat()
    os.utime(ann, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, new mtime
    CocoSource(root, SPLIT, YEAR, cache_dir=cache_dir)
    assert len(count_builds) == 2

    images, annotations = scene()
    write_coco(root, images, annotations + [(7, CAR, rect(0, 0, 1, 1), 0)])
    changed = CocoSource(root, SPLIT, YEAR, cache_dir=cache_dir)
    assert len(count_builds) == 3
    assert changed.class_images()[CAR] == ["10", "7"]


def test_unreadable_cache_is_rebuilt(root, tmp_path, count_builds):
    cache_file = tmp_path / "cache" / "instances_val2017.index.json"
    cache_file.parent.mkdir()
    cache_file.write_bytes(b"not json")
    source = CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "cache")
    assert len(count_builds) == 1 and source.cache_file == cache_file
    with open(cache_file) as f:
        assert json.loads(f.readline()) == coco._cache_key(coco.annotation_file(root, SPLIT, YEAR))


def test_a_malformed_payload_under_a_matching_header_is_rebuilt(root, tmp_path, count_builds):
    cache_dir = tmp_path / "cache"
    first = CocoSource(root, SPLIT, YEAR, cache_dir=cache_dir)
    header = first.cache_file.read_text().splitlines()[0]
    first.cache_file.write_text(header + '\n{"categories": [], "images": {"1": [1, 2]}}\n')
    again = CocoSource(root, SPLIT, YEAR, cache_dir=cache_dir)
    assert len(count_builds) == 2
    assert again.class_images() == first.class_images()


def test_cache_round_trip_keeps_every_byte_of_the_rle_counts():
    every_byte = bytes(range(256))
    index = coco.CocoIndex([(9, "car"), (2, "cat é")], {
        "1": coco.CocoImage("ä.jpg", 6, 8, {3: every_byte, 1: b"\\\"x"},
                            {3: (every_byte, b""), 1: (b'"',)}),
        "10": coco.CocoImage("b.jpg", 2, 3, {}, {}),
    })
    assert coco._index(json.loads(json.dumps(coco._payload(index)))) == index


class _Payload:
    """Pickled, it calls os.system when unpickled (what a crafted cache file would do)."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return os.system, (f"touch {self.flag}",)


def test_a_crafted_pickle_in_the_cache_folder_runs_nothing(root, tmp_path, count_builds):
    """The cache is JSON: a pickle at its place (or at the old .pkl name) is never unpickled."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    flag = tmp_path / "PWNED"
    key = coco._cache_key(coco.annotation_file(root, SPLIT, YEAR))
    for name in ("instances_val2017.index.json", "instances_val2017.pkl"):
        with open(cache_dir / name, "wb") as f:
            pickle.dump(key, f)
            pickle.dump(_Payload(flag), f)
    source = CocoSource(root, SPLIT, YEAR, cache_dir=cache_dir)
    assert not flag.exists()
    assert len(count_builds) == 1  # the crafted file counted as no cache: rebuilt
    assert source.cache_file.read_bytes().startswith(b"{")


def test_failed_cache_write_leaves_the_previous_file_intact(root, tmp_path, monkeypatch):
    cache_file = tmp_path / "cache" / "instances_val2017.index.json"
    cache_file.parent.mkdir()
    cache_file.write_bytes(b"previous")

    def failing_dump(obj, f, **options):
        f.write("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(coco.json, "dump", failing_dump)
    with pytest.raises(RuntimeError, match="disk full"):
        CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "cache")
    assert cache_file.read_bytes() == b"previous"
    assert list(cache_file.parent.iterdir()) == [cache_file]


def files_under(folder):
    """Every path below `folder` with its size and modification time."""
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")}


def test_the_default_cache_is_the_users_one_folder_per_root_never_the_root(
        root, tmp_path, monkeypatch, count_builds):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    before = files_under(root)
    first = CocoSource(root, SPLIT, YEAR)
    assert files_under(root) == before  # a stored data root is never written to
    assert first.cache_file.parent.parent == tmp_path / "home" / ".cache" / "panet"
    assert CocoSource(root, SPLIT, YEAR).cache_file == first.cache_file
    assert len(count_builds) == 1

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # the same annotation file, size and time: still its own entry
    other = CocoSource(copy, SPLIT, YEAR)
    assert len(count_builds) == 2 and other.cache_file.parent != first.cache_file.parent
    assert other.class_images() == first.class_images()

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert CocoSource(root, SPLIT, YEAR).cache_file.parent.parent == tmp_path / "xdg" / "panet"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # not absolute: the XDG rule
    assert CocoSource(root, SPLIT, YEAR).cache_file == first.cache_file


def test_a_cache_in_the_root_from_earlier_versions_is_still_read(root, tmp_path, monkeypatch,
                                                                  count_builds):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    built = CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "built")
    old = root / ".panet_cache" / "instances_val2017.index.json"
    old.parent.mkdir()
    shutil.copyfile(built.cache_file, old)
    found = CocoSource(root, SPLIT, YEAR)
    assert found.cache_file == old and len(count_builds) == 1
    assert found.class_images() == built.class_images()
    assert not (tmp_path / "home").exists()
    explicit = CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "mine")  # given: it wins
    assert explicit.cache_file == tmp_path / "mine" / "instances_val2017.index.json"


def test_an_unwritable_cache_is_one_line_naming_the_key(root, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be: mkdir fails")
    with pytest.raises(OSError, match=r"^cannot write the COCO cache .*blocked.*data\.cache_dir"
                                      r" \(prepare_coco\.py --cache-dir\) to a writable folder$"):
        CocoSource(root, SPLIT, YEAR, cache_dir=blocked)


# --- bad input -----------------------------------------------------------------------------------


def test_missing_annotation_file_names_it_and_the_download(root, tmp_path):
    coco.annotation_file(root, SPLIT, YEAR).unlink()
    message = r"instances_val2017\.json.*annotations_trainval2017\.zip"
    with pytest.raises(FileNotFoundError, match=message):
        CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "cache")


def test_missing_image_folder_names_it_and_the_download(root, tmp_path):
    (root / "val2017").rename(root / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"val2017.*zips/val2017\.zip"):
        CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "cache")


def test_image_listed_but_missing_is_named(root, tmp_path):
    (root / "val2017" / "c.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 4 images .* missing .*c\.jpg"):
        CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "cache")


def test_image_deleted_after_construction_is_named(source, root):
    (root / "val2017" / "c.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"c\.jpg.*missing"):
        source.image("9")


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_corrupt_image_is_named(source, root, content):
    path = root / "val2017" / "a.jpg"
    if content == "truncated":
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"a\.jpg is not a readable image"):
        source.image("1")


def test_image_size_differing_from_annotation_is_named(tmp_path):
    write_coco(tmp_path, *scene(), sizes={10: (W + 1, H)})
    source = CocoSource(tmp_path, SPLIT, YEAR, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=rf"b\.jpg is {W + 1} x {H} .* says {W} x {H}"):
        source.image("10")


def bad_annotation(tmp_path, annotation):
    images, annotations = scene()
    path = write_coco(tmp_path, images, annotations)
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 999, "iscrowd": 0, **annotation})
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "annotation, message",
    [
        ({"image_id": 1, "category_id": 2, "segmentation": {"size": [H + 1, W], "counts": [1]}},
         r"annotation id 999: RLE size \[7, 8\] differs"),
        ({"image_id": 1, "category_id": 3, "segmentation": rect(0, 0, 1, 1)},
         r"annotation id 999: unknown category id 3"),
        ({"image_id": 5, "category_id": 2, "segmentation": rect(0, 0, 1, 1)},
         r"annotation id 999: refers to image id 5"),
        ({"image_id": 1, "category_id": 2}, r"annotation id 999: field 'segmentation' missing"),
    ],
)
def test_bad_annotation_is_named(tmp_path, annotation, message):
    bad_annotation(tmp_path, annotation)
    with pytest.raises(ValueError, match=message):
        CocoSource(tmp_path, SPLIT, YEAR, cache_dir=tmp_path / "cache")


def test_annotation_file_that_is_not_json_is_named(root, tmp_path):
    coco.annotation_file(root, SPLIT, YEAR).write_text('{"images": [')
    with pytest.raises(ValueError, match=r"instances_val2017\.json is not valid json"):
        CocoSource(root, SPLIT, YEAR, cache_dir=tmp_path / "cache")


def test_bad_arguments_are_refused(root, source):
    with pytest.raises(ValueError, match="split"):
        CocoSource(root, "test", YEAR)
    with pytest.raises(ValueError, match="class id 4"):
        source.label_map("1", [4])
    with pytest.raises(ValueError, match="class id 0"):
        source.instance_map("1", 0)
    with pytest.raises(KeyError, match="image id '2'"):
        source.label_map("2", [CAT])
