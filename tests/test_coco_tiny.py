"""COCO-20i on real COCO 2017 data (../shared/data/coco_tiny, 80 + 80 images).

Every image of both splits goes through CocoSource and is checked against pycocotools' own masks
(``COCO.annToMask``) and against class lists recounted from the raw json; then episodes of every
fold (contiguous and interleaved), 1- and 2-way, go through ``make_episode_dataset``.
"""

import contextlib
import io
import json

import numpy as np
import pytest

from conftest import shared_data_dir
from panet.data import Episode, EpisodeDataset, make_episode_dataset
from panet.data.coco import CocoSource, annotation_file
from panet.data.transforms import resize_nearest
from panet.settings import EpisodeSetting

COCO_TINY = shared_data_dir() / "coco_tiny"
YEAR = 2017
EPISODES_PER_SETTING = 4

pytestmark = pytest.mark.skipif(
    not COCO_TINY.is_dir(),
    reason=f"real COCO data not found at {COCO_TINY} (set PANET_SHARED_DATA to its parent)")


@pytest.fixture(scope="module", params=["train", "val"])
def split(request):
    return request.param


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("coco_cache")


@pytest.fixture(scope="module")
def source(split, cache_dir):
    return CocoSource(COCO_TINY, split, year=YEAR, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def reference(split):
    """pycocotools' own index of the split (its loading messages silenced)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_file(COCO_TINY, split, YEAR)))


def test_classes_are_the_80_categories_in_id_order(source, reference):
    category_ids = sorted(reference.getCatIds())
    assert len(category_ids) == 80
    assert source.class_ids == list(range(1, 81))
    assert [source.category_ids[k] for k in source.class_ids] == category_ids
    assert [source.class_names[k] for k in source.class_ids] == [
        reference.cats[c]["name"] for c in category_ids
    ]


def test_class_lists_equal_a_recount_of_the_json(source, split):
    data = json.loads(annotation_file(COCO_TINY, split, YEAR).read_text())
    class_of = {cat: k for k, cat in enumerate(sorted(c["id"] for c in data["categories"]), 1)}
    expected = {k: set() for k in class_of.values()}
    for ann in data["annotations"]:
        expected[class_of[ann["category_id"]]].add(str(ann["image_id"]))
    lists = source.class_images()
    assert {k: set(ids) for k, ids in lists.items()} == expected
    assert all(ids == sorted(ids) for ids in lists.values())
    assert all(lists.values()), "every category of coco_tiny has an image"


def test_every_image_matches_pycocotools(source, reference):
    lists = source.class_images()
    assert sorted(source.image_ids) == sorted(str(i) for i in reference.getImgIds())
    for image_id in reference.getImgIds():
        meta = reference.imgs[image_id]
        img = source.image(str(image_id))
        assert img.mode == "RGB" and img.size == (meta["width"], meta["height"])

        painted = np.zeros((meta["height"], meta["width"]), np.uint8)  # every class, in order
        classes = []
        for class_id, category_id in source.category_ids.items():
            anns = reference.loadAnns(reference.getAnnIds(imgIds=image_id, catIds=category_id))
            if not anns:
                assert str(image_id) not in lists[class_id]
                continue
            masks = [reference.annToMask(ann) > 0 for ann in anns]
            union = np.logical_or.reduce(masks)
            assert union.any(), "coco_tiny has no degenerate annotation"
            assert str(image_id) in lists[class_id]
            classes.append(class_id)
            painted[union] = class_id

            label = source.label_map(str(image_id), [class_id])
            np.testing.assert_array_equal(label, union * np.uint8(class_id))
            instances = np.zeros(union.shape, np.int32)
            for k, mask in enumerate(masks, start=1):
                instances[mask] = k
            np.testing.assert_array_equal(source.instance_map(str(image_id), class_id), instances)
        np.testing.assert_array_equal(source.label_map(str(image_id), classes), painted)


def expected_fold_classes(fold, style, train):
    """COCO-20i classes of a fold (PROTOCOL §7), written out independently of panet.data.folds."""
    if style == "contiguous":
        test = set(range(20 * fold + 1, 20 * fold + 21))
    else:
        test = {4 * k + fold + 1 for k in range(20)}
    return set(range(1, 81)) - test if train else test


@pytest.mark.filterwarnings("ignore:left out of the episodes")  # coco_tiny classes with 1 image
@pytest.mark.parametrize("split, train", [("train", True), ("train", False), ("val", False)])
@pytest.mark.parametrize("ways", [1, 2])
@pytest.mark.parametrize("fold_style", ["contiguous", "interleaved"])
@pytest.mark.parametrize("fold", range(4))
def test_episodes_of_every_fold(fold, fold_style, ways, split, train, cache_dir):
    setting = EpisodeSetting(name="coco", root=str(COCO_TINY), train_split=split,
                             test_split=split, fold=fold, ways=ways, year=YEAR,
                             fold_style=fold_style, cache_dir=str(cache_dir))
    dataset = make_episode_dataset(setting, EPISODES_PER_SETTING, seed=1234, train=train,
                                   keep_original_labels=True)
    source = CocoSource(COCO_TINY, split, year=YEAR, cache_dir=cache_dir)
    lists = source.class_images()
    allowed = expected_fold_classes(fold, fold_style, train)
    for episode, item in zip(dataset.episodes, dataset):
        class_ids = item["class_ids"].tolist()
        assert len(set(class_ids)) == ways and set(class_ids) <= allowed
        for way, class_id in enumerate(class_ids):
            assert all(i in lists[class_id] for i in item["support_ids"][way])
        fg, bg = item["support_fg"], item["support_bg"]
        assert fg.shape == bg.shape == (ways, 1, 417, 417)
        assert ((fg == 0) | (fg == 1)).all() and ((bg == 0) | (bg == 1)).all()
        assert (fg.flatten(2).sum(-1) > 0).all(), "a support mask is empty"
        assert not (fg * bg).any()
        labels = item["query_labels"]
        assert labels.shape == (1, 417, 417)
        assert 0 <= labels.min() and labels.max() <= ways  # COCO has no void label
        if not train:  # no flip: the original-size label is the source's for the query's class
            ((way, query_id),), (full,) = episode.queries(), item["query_labels_full"]
            expected = (source.label_map(query_id, [class_ids[way]]) > 0) * (way + 1)
            np.testing.assert_array_equal(full.numpy(), expected)


def coco_masks(reference, image_id, category_ids):
    """{category id: H x W bool union of the image's instances} from pycocotools."""
    anns = reference.loadAnns(reference.getAnnIds(imgIds=int(image_id)))
    return {c: np.logical_or.reduce([reference.annToMask(a) > 0 for a in anns
                                     if a["category_id"] == c]) for c in category_ids}


def test_two_way_labels_as_released_or_for_the_whole_episode(cache_dir):
    """Car (class 3) and person (class 1): the car way's support and query hold people too.
    coco_labels="class" (released): each image is labelled for its own way's class only;
    "episode": both classes painted into every image (person, later in the episode, on top)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCO(str(annotation_file(COCO_TINY, "train", YEAR)))
    source = CocoSource(COCO_TINY, "train", year=YEAR, cache_dir=cache_dir)
    car, person = 3, 1
    category = {car: source.category_ids[car], person: source.category_ids[person]}
    ids = {"car_support": "114692", "car_query": "237568", "person_support": "319492",
           "person_query": "163840"}
    masks = {name: coco_masks(reference, i, category.values()) for name, i in ids.items()}
    assert all(m[category[car]].any() for n, m in masks.items() if n != "person_query")
    assert all(m[category[person]].any() for m in masks.values())
    episode = Episode((car, person), ((ids["car_support"],), (ids["person_support"],)),
                      ((ids["car_query"],), (ids["person_query"],)))
    size = (417, 417)
    items = {mode: EpisodeDataset(source, [episode], EpisodeSetting(size=size, coco_labels=mode),
                                  0, False, keep_original_labels=True)[0]
             for mode in ("class", "episode")}

    def labelled(name):  # (class-only label, episode label) in episode-local ids
        cars, people = masks[name][category[car]], masks[name][category[person]]
        return cars * 1, people * 2, np.where(people, 2, np.where(cars, 1, 0))

    for way, name in enumerate(["car_support", "person_support"]):
        own, painted = labelled(name)[way], labelled(name)[2]
        for mode, label in (("class", own), ("episode", painted)):
            label = resize_nearest(label, size)
            np.testing.assert_array_equal(items[mode]["support_fg"][way, 0].numpy(),
                                          label == way + 1)
            np.testing.assert_array_equal(items[mode]["support_bg"][way, 0].numpy(), label == 0)
    for q, name in enumerate(["car_query", "person_query"]):
        own, painted = labelled(name)[q], labelled(name)[2]
        np.testing.assert_array_equal(items["class"]["query_labels_full"][q].numpy(), own)
        np.testing.assert_array_equal(items["episode"]["query_labels_full"][q].numpy(), painted)
    # the two readings differ on this episode: people in the car way's support and query
    assert items["class"]["support_bg"][0].sum() > items["episode"]["support_bg"][0].sum()
    assert (items["episode"]["query_labels"][0] == 2).any()
    assert not (items["class"]["query_labels"][0] == 2).any()
