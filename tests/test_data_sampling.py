"""Episode sampling (PROTOCOL §8): determinism, distinctness, class coverage, small classes."""

import warnings

import numpy as np
import pytest

from panet.data.folds import fold_classes
from panet.data.label_png import load_label_png
from panet.data.sampling import queries_per_way, sample_episodes
from panet.settings import EpisodeSetting


def toy_lists(n_classes=20, per_class=12):
    """Class k has ``per_class`` images; images are shared between neighbouring classes."""
    return {k: [f"im{(k * 7 + j) % 90:02d}" for j in range(per_class)]
            for k in range(1, n_classes + 1)}


def test_same_seed_same_list_and_prefix_property():
    lists = toy_lists()
    first = sample_episodes(lists, range(1, 16), 2, 3, 2, 50, seed=7)
    again = sample_episodes(lists, range(1, 16), 2, 3, 2, 50, seed=7)
    longer = sample_episodes(lists, range(1, 16), 2, 3, 2, 80, seed=7)
    other = sample_episodes(lists, range(1, 16), 2, 3, 2, 50, seed=8)
    assert first == again
    assert longer[:50] == first
    assert other != first


@pytest.mark.parametrize("ways,shots,queries", [(1, 1, 1), (2, 1, 1), (2, 5, 3), (5, 2, 5)])
def test_episode_structure(ways, shots, queries):
    lists = toy_lists()
    classes = fold_classes(20, 2, train=True)
    for episode in sample_episodes(lists, classes, ways, shots, queries, 100, seed=1):
        assert len(set(episode.class_ids)) == ways
        assert set(episode.class_ids) <= set(classes)
        assert sum(len(q) for q in episode.query_ids) == queries
        for way, class_id in enumerate(episode.class_ids):
            drawn = episode.support_ids[way] + episode.query_ids[way]
            assert len(episode.support_ids[way]) == shots
            assert len(set(drawn)) == len(drawn)  # support never equals a query of its way
            assert set(drawn) <= set(lists[class_id])


def test_queries_per_way_fixed_for_the_whole_list():
    episodes = sample_episodes(toy_lists(), range(1, 21), 3, 1, 4, 30, seed=5)
    counts = {tuple(len(q) for q in e.query_ids) for e in episodes}
    assert len(counts) == 1
    expected = queries_per_way(3, 4, np.random.default_rng(5))
    assert list(counts.pop()) == expected and sum(expected) == 4


def test_classes_drawn_uniformly():
    classes = list(range(1, 21))
    episodes = sample_episodes(toy_lists(), classes, 1, 1, 1, 4000, seed=0)
    counts = np.bincount([e.class_ids[0] for e in episodes], minlength=21)[1:]
    # 4000 draws over 20 classes: 200 each, binomial std ~ 13.8; 5 std is a loose bound
    assert np.all(np.abs(counts - 200) < 70)


def test_small_classes_left_out_with_a_warning_naming_them():
    lists = toy_lists()
    lists[3] = lists[3][:2]  # needs shots + queries = 1 + 2 = 3
    with pytest.warns(UserWarning, match=r"class 3 with 2"):
        episodes = sample_episodes(lists, [1, 2, 3, 4], 2, 1, 2, 200, seed=0,
                                   describe=lambda c: str(c))
    assert all(3 not in e.class_ids for e in episodes)


def test_too_few_classes_is_an_error():
    lists = toy_lists()
    lists[1], lists[2] = [], ["a"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="only 1 classes"):
            sample_episodes(lists, [1, 2, 3], 2, 1, 1, 10, seed=0)


@pytest.mark.parametrize("key", ["ways", "shots", "queries"])
def test_bad_counts_are_refused_where_settings_are_read(key):
    """Checked once, by the settings; sampling trusts its counts."""
    assert EpisodeSetting(**{key: 0}).problems() == [f"data.{key}=0: must be an integer >= 1"]


# ---- on the real PASCAL label maps ---------------------------------------------------------


@pytest.mark.parametrize("fold", [0, 3])
def test_real_pascal_test_episodes(voc_aug, voc_aug_class_lists, fold):
    lists = voc_aug_class_lists["train_aug"]
    classes = fold_classes(20, fold, train=False)
    episodes = sample_episodes(lists, classes, 1, 1, 1, 1000, seed=1234)
    counts = np.bincount([e.class_ids[0] for e in episodes], minlength=21)[classes]
    # 1000 draws over 5 classes: 200 each, binomial std ~ 12.6
    assert np.all(np.abs(counts - 200) < 65), counts
    for episode in episodes[:40]:  # the masks really hold the class, support != query
        class_id = episode.class_ids[0]
        (support,), (query,) = episode.support_ids[0], episode.query_ids[0]
        assert support != query
        for image_id in (support, query):
            labels = load_label_png(voc_aug / "SegmentationClassAug" / f"{image_id}.png")
            assert (labels == class_id).any()


def test_real_pascal_training_episodes_use_only_training_classes(voc_aug, voc_aug_class_lists):
    lists = voc_aug_class_lists["train_aug"]
    classes = fold_classes(20, 1, train=True)
    episodes = sample_episodes(lists, classes, 2, 5, 1, 500, seed=3)
    drawn = {c for e in episodes for c in e.class_ids}
    assert drawn == set(classes)
    for episode in episodes:
        for way in range(2):
            ids = episode.support_ids[way] + episode.query_ids[way]
            assert len(set(ids)) == len(ids)
