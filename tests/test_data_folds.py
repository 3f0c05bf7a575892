"""Fold tables of PASCAL-5i and COCO-20i (PROTOCOL §6, §7)."""

import pytest

from panet.data.folds import N_FOLDS, PASCAL_CLASS_NAMES, fold_classes, held_out_classes


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


@pytest.mark.parametrize("args", [(20, 4, "contiguous"), (20, -1, "contiguous"),
                                  (21, 0, "contiguous"), (80, 0, "random")])
def test_bad_fold_arguments(args):
    with pytest.raises(ValueError):
        held_out_classes(*args)
