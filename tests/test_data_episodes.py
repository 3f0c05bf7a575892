"""Episode items and collation: shapes, labels, determinism, flips, resampling, the builder."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from panet.data import collate_episodes, make_episode_dataset
from panet.data.episodes import EpisodeDataset, episode_labels
from panet.data.folds import fold_classes
from panet.data.sampling import Episode
from panet.data.transforms import resize_nearest
from panet.data.voc import VocSource
from panet.settings import EpisodeSetting

from conftest import blob_labels


def synthetic(root, ways=2, shots=2, queries=2, n=6, train=False, keep_original_labels=False,
              **options):
    options.setdefault("size", (64, 96))
    setting = EpisodeSetting(name="synthetic", root=str(root), train_split="trainaug",
                             test_split="trainaug", fold=1, ways=ways, shots=shots,
                             queries=queries, **options)
    return make_episode_dataset(setting, n, seed=11, train=train,
                                keep_original_labels=keep_original_labels)


def test_item_shapes_and_dtypes(synthetic_root):
    item = synthetic(synthetic_root, ways=2, shots=3, queries=2, keep_original_labels=True)[0]
    assert item["support_images"].shape == (2, 3, 3, 64, 96)
    assert item["support_fg"].shape == item["support_bg"].shape == (2, 3, 64, 96)
    assert item["query_images"].shape == (2, 3, 64, 96)
    assert item["query_labels"].shape == (2, 64, 96)
    assert item["support_images"].dtype == item["support_fg"].dtype == torch.float32
    assert item["query_labels"].dtype == item["class_ids"].dtype == torch.int64
    assert item["class_ids"].shape == (2,)
    assert [len(s) for s in item["support_ids"]] == [3, 3] and len(item["query_ids"]) == 2
    assert [tuple(t.shape) for t in item["query_labels_full"]] == [(120, 160)] * 2
    assert set(torch.unique(item["support_fg"]).tolist()) <= {0.0, 1.0}


def test_labels_and_masks_match_a_naive_reference(synthetic_root):
    dataset = synthetic(synthetic_root, ways=2, shots=2, queries=3, keep_original_labels=True)
    source = VocSource(synthetic_root / "VOC2012", "trainaug")
    for index in range(len(dataset)):
        item = dataset[index]
        class_ids = item["class_ids"].tolist()
        assert set(class_ids) <= set(fold_classes(20, 1, train=False))
        for q, image_id in enumerate(item["query_ids"]):
            full = source.label_map(image_id)
            expected = np.zeros(full.shape, dtype=np.int64)
            for y, x in np.ndindex(*full.shape):
                value = int(full[y, x])
                if value == 255:
                    expected[y, x] = 255
                elif value in class_ids:
                    expected[y, x] = class_ids.index(value) + 1
            assert np.array_equal(item["query_labels_full"][q].numpy(), expected)
            assert np.array_equal(item["query_labels"][q].numpy(), resize_nearest(expected,
                                                                                  (64, 96)))
        for way, ids in enumerate(item["support_ids"]):
            for shot, image_id in enumerate(ids):
                labels = resize_nearest(source.label_map(image_id), (64, 96))
                fg = item["support_fg"][way, shot].numpy() == 1
                bg = item["support_bg"][way, shot].numpy() == 1
                assert fg.any()
                assert np.array_equal(fg, labels == class_ids[way])
                assert np.array_equal(bg, (labels == 255) | ~np.isin(labels, class_ids))
            assert not set(ids) & set(dataset.episodes[index].query_ids[way])


def test_episode_labels_lookup():
    labels = np.array([[0, 4, 9, 255, 12]], dtype=np.uint8)
    assert episode_labels(labels, [12, 4]).tolist() == [[0, 2, 0, 255, 1]]


def test_items_are_independent_of_workers_batch_and_order(synthetic_root):
    dataset = synthetic(synthetic_root, n=6, train=True, weak="scribble")
    reference = [dataset[i] for i in range(6)]
    reversed_items = {i: dataset[i] for i in reversed(range(6))}
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_episodes)
    batches = list(loader)
    for i in range(6):
        batch, j = batches[i // 3], i % 3
        for key in ("support_images", "support_fg", "support_bg", "query_images",
                    "query_labels"):
            assert torch.equal(reference[i][key], reversed_items[i][key])
            assert torch.equal(reference[i][key], batch[key][j])
        assert batch["support_ids"][j] == reference[i]["support_ids"]


def test_flips_only_in_training_and_consistent(synthetic_root):
    test_items = synthetic(synthetic_root, ways=1, shots=1, queries=1, n=20)
    plain = synthetic(synthetic_root, ways=1, shots=1, queries=1, n=20, train=False)
    assert all(torch.equal(test_items[i]["query_images"], plain[i]["query_images"])
               for i in range(3))
    source = VocSource(synthetic_root / "VOC2012", "trainaug")
    train_items = synthetic(synthetic_root, ways=1, shots=1, queries=1, n=30, train=True)
    flipped = 0
    for i in range(len(train_items)):
        item = train_items[i]
        (image_id,) = item["query_ids"]
        labels = episode_labels(resize_nearest(source.label_map(image_id), (64, 96)),
                                item["class_ids"].tolist())
        if np.array_equal(item["query_labels"][0].numpy(), labels[:, ::-1]) and \
                not np.array_equal(labels, labels[:, ::-1]):
            flipped += 1
        else:
            assert np.array_equal(item["query_labels"][0].numpy(), labels)
    assert 5 <= flipped <= 25  # p = 0.5 over 30 items


def test_vanishing_support_is_resampled(make_voc_tree):
    labels = blob_labels(6, size=(60, 80), classes=[1, 2])
    tiny = np.zeros((60, 80), dtype=np.uint8)
    tiny[30, 41] = 1  # one pixel of class 1: gone at 6 x 8
    labels["img_tiny"] = tiny
    root = make_voc_tree(labels)
    source = VocSource(root, "trainaug")
    episode = Episode((1,), (("img_tiny",),), ((source.class_images()[1][0],),))
    item = EpisodeDataset(source, [episode], EpisodeSetting(size=(6, 8)), seed=0, train=False)[0]
    (replacement,) = item["support_ids"][0]
    assert replacement not in ("img_tiny", episode.query_ids[0][0])
    assert item["support_fg"].sum() > 0


def test_support_that_cannot_be_replaced_is_an_error(make_voc_tree):
    tiny = np.zeros((60, 80), dtype=np.uint8)
    tiny[30, 41] = 1
    labels = {"a": tiny, "b": tiny.copy(), "c": blob_labels(1, classes=[2, 3])["img_000"]}
    root = make_voc_tree(labels)
    source = VocSource(root, "trainaug")
    dataset = EpisodeDataset(source, [Episode((1,), (("a",),), (("b",),))],
                             EpisodeSetting(size=(6, 8)), 0, False)
    with pytest.raises(ValueError, match=r"class 1 \(aeroplane\).*larger input size"):
        dataset[0]


def test_box_supports_use_instance_maps(make_voc_tree):
    label = np.zeros((40, 40), dtype=np.uint8)
    label[2:12, 2:12] = 5
    label[20:24, 30:36] = 5
    instances = np.zeros_like(label)
    instances[2:12, 2:12] = 1
    instances[20:24, 30:36] = 2
    other = np.zeros_like(label)
    other[5:30, 5:30] = 5
    root = make_voc_tree({"x": label, "y": other}, instances={"x": instances, "y": other // 5})
    source = VocSource(root, "trainaug")
    episode = Episode((5,), (("x",),), (("y",),))
    item = EpisodeDataset(source, [episode], EpisodeSetting(size=40, weak="bbox"), 0, False)[0]
    fg, bg = item["support_fg"][0, 0].numpy(), item["support_bg"][0, 0].numpy()
    assert fg.sum() == 100 and fg[2:12, 2:12].all()
    assert bg.sum() == 1600 - 100 - 24
    assert torch.equal(item["query_labels"][0], torch.from_numpy(episode_labels(other, [5])))


def test_collate_stacks_tensors_and_keeps_lists(synthetic_root):
    dataset = synthetic(synthetic_root, ways=2, shots=1, queries=1, keep_original_labels=True)
    batch = collate_episodes([dataset[0], dataset[1], dataset[2]])
    assert batch["support_images"].shape == (3, 2, 1, 3, 64, 96)
    assert batch["support_fg"].shape == (3, 2, 1, 64, 96)
    assert batch["query_labels"].shape == (3, 1, 64, 96)
    assert batch["class_ids"].shape == (3, 2)
    assert len(batch["support_ids"]) == 3 and len(batch["query_labels_full"]) == 3
    assert torch.equal(batch["query_images"][1], dataset[1]["query_images"])


@pytest.mark.parametrize("values, message", [
    ({"weak": "points"}, "data.weak='points': must be one of 'dense'"),
    ({"bbox_instance": "smallest"}, "data.bbox_instance='smallest': must be one of 'largest'"),
    ({"coco_labels": "all"}, "data.coco_labels='all': must be one of 'class'"),
    ({"scribble_dilation": -1}, "data.scribble_dilation=-1: must be an integer >= 0"),
    ({"fold_style": "interleaved"}, "data.fold_style='interleaved': synthetic has the "
                                    "contiguous / all split only"),
    ({"name": "ade20k"}, "data.name='ade20k': must be one of 'pascal'"),
])
def test_bad_options_are_refused_by_the_settings_the_builder_trusts(synthetic_root, values,
                                                                   message):
    """Checked once, where settings are read (`EpisodeSetting.problems`); the builder and the
    dataset trust their setting."""
    setting = EpisodeSetting(**{"name": "synthetic", "root": str(synthetic_root), **values})
    problems = setting.problems()
    assert len(problems) == 1 and problems[0].startswith(message)


def test_builder_rejects_unknown_options(synthetic_root):
    with pytest.raises(TypeError):
        synthetic(synthetic_root, colour_jitter=True)


def test_builder_episode_list_depends_only_on_the_setting(synthetic_root):
    first = synthetic(synthetic_root, n=20, size=32)
    second = synthetic(synthetic_root, n=20, size=(64, 64), weak="bbox")
    assert first.episodes == second.episodes
    training = synthetic(synthetic_root, n=20, train=True)
    assert {c for e in training.episodes for c in e.class_ids} <= set(fold_classes(20, 1, True))


@pytest.mark.filterwarnings("ignore:left out of the episodes")  # the small val split
def test_builder_coco_path_on_the_synthetic_coco_variant(synthetic_root, tmp_path):
    setting = EpisodeSetting(name="coco", root=str(synthetic_root / "coco"), train_split="val",
                             fold=2, ways=2, queries=2, size=(120, 160), year=2014,
                             cache_dir=str(tmp_path), fold_style="interleaved")
    coco = make_episode_dataset(setting, 4, seed=5, train=True)
    voc = VocSource(synthetic_root / "VOC2012", "val")
    for episode in coco.episodes:
        assert set(episode.class_ids) <= set(fold_classes(20, 2, True, "interleaved"))
    item = coco[0]
    assert item["query_labels"].shape == (2, 120, 160)
    assert item["support_fg"].sum((-1, -2)).min() > 0
    for q, image_id in enumerate(item["query_ids"]):
        labels = voc.label_map(f"synth_{int(image_id) - 1:05d}")  # COCO image id = index + 1
        expected = episode_labels(labels, item["class_ids"].tolist())
        flipped = item["query_labels"][q].numpy()
        known = labels != 255  # COCO has no void band
        assert any(np.array_equal(candidate[known], expected[known])
                   for candidate in (flipped, flipped[:, ::-1]))


def test_coco_labels_leave_full_label_maps_unchanged(synthetic_root):
    """PASCAL-layout label maps hold every class whatever is asked for: both readings agree."""
    released, episode = (synthetic(synthetic_root, ways=2, shots=1, queries=2, n=4,
                                   coco_labels=mode) for mode in ("class", "episode"))
    source = VocSource(synthetic_root / "VOC2012", "trainaug")
    both = [image_id for e in released.episodes for ids in e.support_ids + e.query_ids
            for image_id in ids if np.isin(e.class_ids, source.label_map(image_id)).all()]
    assert both, "no image holds both classes of its episode: the comparison would be vacuous"
    for index in range(4):
        first, second = released[index], episode[index]
        for key in ("support_fg", "support_bg", "query_labels"):
            assert torch.equal(first[key], second[key])
