"""Fold tables of PASCAL-5i and COCO-20i (PROTOCOL §6, §7) and the class splits of other
datasets (n folds, explicit test classes)."""

import itertools
import re

import pytest

from panet.data.folds import (N_FOLDS, PASCAL_CLASS_NAMES, fold_classes, held_out_classes,
                              split_classes)
from panet.settings import EpisodeSetting


def test_pascal_folds_by_hand():
    assert fold_classes(20, 0, train=False) == [1, 2, 3, 4, 5]
    assert fold_classes(20, 3, train=False) == [16, 17, 18, 19, 20]
    assert fold_classes(20, 1, train=True) == [1, 2, 3, 4, 5] + list(range(11, 21))


def test_coco_contiguous_and_interleaved_by_hand():
    assert fold_classes(80, 2, train=False) == list(range(41, 61))
    assert fold_classes(80, 1, train=False, style="interleaved") == [2, 6, 10, 14, 18, 22, 26,
                                                                      30, 34, 38, 42, 46, 50,
                                                                      54, 58, 62, 66, 70, 74, 78]


@pytest.mark.parametrize("n_classes,style", [(20, "contiguous"), (80, "contiguous"),
                                             (80, "interleaved")])
def test_folds_partition_the_classes(n_classes, style):
    all_test = []
    for fold in range(N_FOLDS):
        held_out = fold_classes(n_classes, fold, train=False, style=style)
        training = fold_classes(n_classes, fold, train=True, style=style)
        assert len(held_out) == n_classes // 4
        assert sorted(held_out + training) == list(range(1, n_classes + 1))
        all_test += held_out
    assert sorted(all_test) == list(range(1, n_classes + 1))


def test_pascal_names_in_protocol_order():
    assert len(PASCAL_CLASS_NAMES) == 20
    assert PASCAL_CLASS_NAMES[0] == "aeroplane" and PASCAL_CLASS_NAMES[14] == "person"
    assert PASCAL_CLASS_NAMES[19] == "tvmonitor"


def test_fewer_classes_than_folds_is_refused():
    with pytest.raises(ValueError, match="3 classes cannot be split into 4 folds"):
        held_out_classes(3, 0, "contiguous", 4)


@pytest.mark.parametrize("values, message", [
    ({"fold": 4}, r"data\.fold=4: must be in 0\.\.3"),
    ({"fold": -1}, r"data\.fold=-1: must be an integer >= 0"),
    ({"name": "coco", "fold_style": "random"}, r"data\.fold_style='random': must be one of"),
    ({"name": "folder", "n_folds": 1}, r"data\.n_folds=1: must be an integer >= 2"),
])
def test_bad_fold_settings_are_refused_where_settings_are_read(values, message):
    """Checked once, by the settings (`EpisodeSetting.problems`); the folds trust them."""
    problems = EpisodeSetting(**values).problems()
    assert len(problems) == 1 and re.match(message, problems[0])


def test_uneven_folds_by_hand():
    assert [held_out_classes(10, i, n_folds=4) for i in range(4)] == [
        [1, 2, 3], [4, 5, 6], [7, 8], [9, 10]]
    assert held_out_classes(10, 2, "interleaved", n_folds=4) == [3, 7]
    assert fold_classes(7, 1, train=True, n_folds=3) == [1, 2, 3, 6, 7]


@pytest.mark.parametrize("n_classes,n_folds,style", [
    (n, k, style) for n, k, style in itertools.product([2, 5, 9, 13, 24], [2, 3, 4, 7],
                                                       ["contiguous", "interleaved"]) if k <= n])
def test_any_folds_partition_the_classes_into_near_equal_blocks(n_classes, n_folds, style):
    folds = [held_out_classes(n_classes, i, style, n_folds) for i in range(n_folds)]
    assert sorted(c for fold in folds for c in fold) == list(range(1, n_classes + 1))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    if style == "contiguous":  # consecutive ids, blocks in order, larger blocks first
        assert all(fold == list(range(fold[0], fold[-1] + 1)) for fold in folds)
        assert [len(fold) for fold in folds] == sorted(map(len, folds), reverse=True)
    else:
        assert all((c - 1) % n_folds == i for i, fold in enumerate(folds) for c in fold)


class Named:
    """A stand-in source: class ids 1..5 with names."""

    class_ids = [1, 2, 3, 4, 5]
    class_names = {1: "cat", 2: "dog", 3: "cow", 4: "bird", 5: "dining table"}

    def class_name(self, class_id):
        return f"{class_id} ({self.class_names[class_id]})"


def test_explicit_test_classes_by_id_or_name():
    source = Named()
    assert split_classes(source, False, test_classes=["dining table", 2]) == [2, 5]
    assert split_classes(source, True, test_classes=["dining table", 2]) == [1, 3, 4]
    assert split_classes(source, False, fold=3, test_classes=[4]) == [4]  # the fold is unused
    assert split_classes(source, False, test_classes=[1, 2, 3, 4, 5]) == [1, 2, 3, 4, 5]
    assert split_classes(source, True, fold=1, n_folds=2) == [1, 2, 3]  # blocks 1-3, 4-5


@pytest.mark.parametrize("test_classes,train,message", [
    (["horse"], False, r"'horse' is not a class id or name.*1 \(cat\), 2 \(dog\)"),
    ([6], False, "6 is not a class id"),
    (["cat", 1], False, "1 is listed twice"),
    ([1, 2, 3, 4, 5], True, "none is left to train on"),
])
def test_bad_test_classes(test_classes, train, message):
    with pytest.raises(ValueError, match=message):
        split_classes(Named(), train, test_classes=test_classes)


@pytest.mark.parametrize("test_classes", [(), "cat", (True,), (2, 2)])
def test_test_classes_that_are_no_list_of_distinct_ids_or_names_are_refused_by_the_settings(
        test_classes):
    problems = EpisodeSetting(test_classes=test_classes).problems()
    assert len(problems) == 1 and problems[0].startswith(f"data.test_classes={test_classes!r}: "
                                                         "must be None or a non-empty list")
