"""Weak supports (PROTOCOL §10): boxes and scribbles, by hand and on real PASCAL masks."""

import numpy as np
from scipy import ndimage

from panet.data.folds import fold_classes
from panet.data.label_png import load_label_png
from panet.data.weak import (box_masks, build_scribble_map, dense_masks, dilate, robot_scribble,
                             scribble_masks)


def test_dense_masks_by_hand():
    labels = np.array([[0, 3, 3], [7, 255, 5], [5, 3, 0]], dtype=np.uint8)
    fg, bg = dense_masks(labels, 3, [3, 5])
    assert fg.tolist() == [[0, 1, 1], [0, 0, 0], [0, 1, 0]]
    # bg: none of the episode's classes; 255 and the unrelated class 7 count as background
    assert bg.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def two_instances():
    """A 10 x 12 class mask with a large instance (1) and a small one (2)."""
    instances = np.zeros((10, 12), dtype=np.int32)
    instances[1:6, 1:7] = 1  # 30 px
    instances[7:9, 9:11] = 2  # 4 px
    instances[3, 3] = 0  # a hole: the box still spans it
    return instances > 0, instances


def test_box_of_largest_instance_by_hand():
    fg, instances = two_instances()
    fg_box, bg_box = box_masks(fg, instances, "largest")
    expected_fg = np.zeros_like(fg)
    expected_fg[1:6, 1:7] = True
    expected_bg = np.ones_like(fg)
    expected_bg[1:6, 1:7] = False
    expected_bg[7:9, 9:11] = False
    assert np.array_equal(fg_box, expected_fg)
    assert np.array_equal(bg_box, expected_bg)


def test_random_instance_choice_covers_both_and_is_seeded():
    fg, instances = two_instances()
    boxes = {box_masks(fg, instances, "random", np.random.default_rng(s))[0].sum()
             for s in range(40)}
    assert boxes == {30, 4}
    first = box_masks(fg, instances, "random", np.random.default_rng(9))
    second = box_masks(fg, instances, "random", np.random.default_rng(9))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_instances_outside_the_foreground_are_ignored():
    fg, instances = two_instances()
    instances[0, 11] = 3  # an instance pixel that is not foreground
    _, bg_box = box_masks(fg, instances)
    assert bg_box[0, 11]


def test_box_falls_back_to_the_class_mask_without_instances():
    fg, _ = two_instances()
    fg_box, bg_box = box_masks(fg, np.zeros(fg.shape, dtype=np.int32))
    assert fg_box[1:9, 1:11].all() and fg_box.sum() == 8 * 10
    assert np.array_equal(bg_box, ~fg_box)


def test_precomputed_scribbles_choose_one_foreground_scribble():
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[2:18, 2:10] = 1
    labels[2:18, 12:18] = 2
    fg, bg = dense_masks(labels, 1, [1])
    scribbles = np.full((20, 20), 255, dtype=np.uint8)
    scribbles[5, 3:9] = 1  # instance 1 of class 1
    scribbles[12, 3:9] = 2  # instance 2 of class 1
    scribbles[8, 13:17] = 3  # a scribble on class 2 (lies outside the fg)
    scribbles[0, :] = 0  # background scribble
    chosen = set()
    for seed in range(30):
        fg_s, bg_s = scribble_masks(fg, bg, np.random.default_rng(seed), scribbles)
        rows = set(np.nonzero(fg_s)[0])
        assert rows in ({5}, {12})
        chosen.add(rows.pop())
        assert np.array_equal(bg_s, (scribbles == 0) & bg)
    assert chosen == {5, 12}


def test_an_empty_side_falls_back_to_the_robot_then_to_the_region():
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[4:16, 4:16] = 1
    labels[18, 18:20] = 2  # 2 pixels: too small for the robot's 4-pixel axis
    no_scribbles = np.full((20, 20), 255, dtype=np.uint8)
    fg, bg = dense_masks(labels, 1, [1])
    fg_s, bg_s = scribble_masks(fg, bg, np.random.default_rng(0), no_scribbles)
    assert fg_s.any() and np.array_equal(fg_s, robot_scribble(fg) & fg)
    assert bg_s.any() and np.array_equal(bg_s, robot_scribble(bg) & bg)
    tiny, _ = dense_masks(labels, 2, [2])
    assert not robot_scribble(tiny).any()
    fg_s, _ = scribble_masks(tiny, ~tiny, np.random.default_rng(0), no_scribbles)
    assert np.array_equal(fg_s, tiny)
    full = np.ones((20, 20), dtype=bool)  # an object filling the image: the bg stays empty
    _, bg_s = scribble_masks(full, ~full, np.random.default_rng(0), no_scribbles)
    assert not bg_s.any()


def test_dilation_grows_the_scribble_inside_its_region():
    region = np.zeros((15, 15), dtype=bool)
    region[:, :8] = True
    scribble = np.zeros_like(region)
    scribble[7, 6] = True
    grown = dilate(scribble, region, 2)
    expected = np.zeros_like(region)
    for y in range(15):
        for x in range(8):
            expected[y, x] = (y - 7) ** 2 + (x - 6) ** 2 <= 4
    assert np.array_equal(grown, expected)
    assert np.array_equal(dilate(scribble, region, 0), scribble)


# ---- on the real PASCAL masks (instances = connected parts of the class mask) --------------


def real_cases(voc_aug, class_lists, n_per_class=3):
    for class_id in fold_classes(20, 0, train=False):
        for image_id in class_lists["val"][class_id][:n_per_class]:
            labels = load_label_png(voc_aug / "SegmentationClassAug" / f"{image_id}.png")
            yield image_id, class_id, labels


def box_of(mask):
    """Bool mask of the bounding box of ``mask`` (naive reference)."""
    ys, xs = np.nonzero(mask)
    box = np.zeros_like(mask, dtype=bool)
    box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    return box


def test_boxes_on_real_masks(voc_aug, voc_aug_class_lists):
    for image_id, class_id, labels in real_cases(voc_aug, voc_aug_class_lists):
        fg, _ = dense_masks(labels, class_id, [class_id])
        instances, n = ndimage.label(fg)
        boxes = [box_of(instances == k) for k in range(1, n + 1)]
        areas = np.bincount(instances.ravel())[1:]
        expected_bg = ~np.any(boxes, axis=0)
        for choice in ("largest", "random"):
            fg_box, bg_box = box_masks(fg, instances, choice, np.random.default_rng(0))
            chosen = [k for k in range(n) if np.array_equal(fg_box, boxes[k])]
            assert chosen, image_id  # the fg is the box of one instance, containing it
            assert fg_box[instances == chosen[0] + 1].all()
            if choice == "largest":
                assert areas[chosen].max() == areas.max()
            assert np.array_equal(bg_box, expected_bg)  # outside every instance's box


def test_scribbles_on_real_masks(voc_aug, voc_aug_class_lists):
    for image_id, class_id, labels in list(real_cases(voc_aug, voc_aug_class_lists, 1))[:3]:
        scribbles = build_scribble_map(labels)
        fg, bg = dense_masks(labels, class_id, [class_id])
        thin = scribble_masks(fg, bg, np.random.default_rng(0), scribbles)
        assert 0 < thin[0].sum() < 0.2 * fg.sum() and 0 < thin[1].sum() < 0.2 * bg.sum()
        parts = {int(k) for k in np.unique(scribbles[thin[0]])}
        assert len(parts) == 1 and np.array_equal(thin[0], scribbles == parts.pop()), image_id
        assert np.array_equal(thin[1], scribbles == 0), image_id
        for dilation in (0, 3):
            fg_s, bg_s = scribble_masks(fg, bg, np.random.default_rng(0), scribbles, dilation)
            assert not (fg_s & ~fg).any() and not (bg_s & ~bg).any()
            assert (fg_s >= thin[0]).all() and (bg_s >= thin[1]).all()
