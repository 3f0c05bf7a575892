"""The DAVIS interaction robot's scribbles (PROTOCOL §10): each step against a naive reference or
a hand-checked case, properties on real PASCAL masks, and the released scribble-map format."""

import itertools

import networkx as nx
import numpy as np
import pytest
from scipy import ndimage
from scipy.special import comb
from skimage.morphology import convex_hull_image

from panet.data import weak
from panet.data.label_png import load_label_png
from panet.data.weak import build_scribble_map, robot_curves, robot_scribble

REAL_IDS = ("2007_000033", "2007_000061", "2007_000129")  # VOC val: 1, 4 and 2 + 15 (split)


def test_long_rectangle_by_hand():
    """A 21 x 201 rectangle: its axis is the midline (row 30) plus short diagonal branches into
    the corners; the longest path runs corner branch - midline - corner branch, and the Bezier
    curve through it hugs the midline. Drawing scales rows by (H - 1) / H: 30 * 59 / 60 -> 29."""
    region = np.zeros((60, 260), dtype=bool)
    region[20:41, 30:231] = True
    scribble = robot_scribble(region)
    rows, cols = np.nonzero(scribble)
    middle = (cols >= 70) & (cols <= 190)  # the middle 60% of the length
    assert middle.any() and np.abs(rows[middle] - 30).max() <= 1
    assert len(set(cols)) >= 0.8 * 201  # spans most of the length
    assert ((cols >= 30) & (cols <= 230) & (rows >= 20) & (rows <= 40)).all()


def disk(radius):
    offsets = np.arange(-int(radius), int(radius) + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2


def naive_opened(region):
    """Step 1 with scipy's binary morphology (outside the image counts as region for erosion)."""
    radius = min(0.15 * np.sqrt(region.sum()) / 2, 16)
    while radius > 1:
        eroded = ndimage.binary_erosion(region, disk(radius), border_value=1)
        opened = ndimage.binary_dilation(eroded, disk(radius))
        if opened.any():
            return opened
        radius *= 0.9
    return region


def random_blobs(rng, shape=(48, 64)):
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), rng.uniform(1.5, 5))
    return noise > np.quantile(noise, rng.uniform(0.3, 0.9))


def test_opening_matches_binary_morphology():
    rng = np.random.default_rng(0)
    for _ in range(30):
        region = random_blobs(rng)
        for radius in (1.5, 2.3, 4.0, 7.7):
            expected = ndimage.binary_dilation(
                ndimage.binary_erosion(region, disk(radius), border_value=1), disk(radius))
            assert np.array_equal(weak._disk_opening(region, radius), expected)
        assert np.array_equal(weak._opened(region), naive_opened(region))
    band = np.zeros((30, 400), dtype=bool)
    band[10:12] = True  # 2 px wide: every opening by a disk of radius > 1 empties it
    assert np.array_equal(weak._opened(band), band)
    assert robot_scribble(band).any()


def test_trees_and_longest_paths_against_brute_force():
    """Per 8-connected part of >= 4 pixels one spanning tree of minimum weight: (n - 1) unit
    edges plus one diagonal per extra 4-connected part, i.e. n - 1 + (sqrt 2 - 1)(c4 - 1); its
    path is the tree's diameter (all-pairs search)."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        axis = rng.random((14, 18)) < 0.45
        graph, ys, xs = weak._axis_graph(axis)
        parts, n_parts = ndimage.label(axis, structure=np.ones((3, 3)))
        expected = []
        for part in range(1, n_parts + 1):
            pixels = parts == part
            if pixels.sum() >= 4:
                expected.append(pixels)
        trees = weak._axis_trees(graph)
        assert len(trees) == len(expected)
        for tree, pixels in zip(trees, expected):
            assert nx.is_tree(tree)
            covered = np.zeros_like(axis)
            covered[ys[list(tree)], xs[list(tree)]] = True
            assert np.array_equal(covered, pixels)
            for a, b in tree.edges:
                assert max(abs(ys[a] - ys[b]), abs(xs[a] - xs[b])) == 1
                assert tree.edges[a, b]["weight"] == pytest.approx(np.hypot(ys[a] - ys[b],
                                                                            xs[a] - xs[b]))
            n4 = ndimage.label(pixels)[1]
            weight = tree.size(weight="weight")
            assert weight == pytest.approx(pixels.sum() - 1 + (np.sqrt(2) - 1) * (n4 - 1))
            path = weak._longest_path(tree)
            assert all(tree.has_edge(a, b) for a, b in zip(path, path[1:]))
            diameter = max(max(d.values()) for _, d in nx.all_pairs_shortest_path_length(tree))
            assert len(path) - 1 == diameter


def de_casteljau(points, t):
    """The Bezier curve's point at t by repeated linear interpolation (the definition)."""
    points = np.array(points, dtype=np.float64)
    while len(points) > 1:
        points = (1 - t) * points[:-1] + t * points[1:]
    return points[0]


def test_bezier_matches_de_casteljau():
    rng = np.random.default_rng(2)
    for n_points in (2, 3, 7, 40):
        points = rng.uniform(0, 100, size=(n_points, 2))
        curve = weak._bezier(points, 50)
        for k, t in enumerate(np.linspace(0, 1, 50)):
            np.testing.assert_allclose(curve[k], de_casteljau(points, t), rtol=1e-9, atol=1e-9)
    line = np.stack([np.arange(999.0), 2 * np.arange(999.0)], axis=1)  # degree 998
    curve = weak._bezier(line)
    t = np.linspace(0, 1, 1000)[:, None]
    np.testing.assert_allclose(curve, t * line[-1], atol=1e-6)  # linear precision
    small = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])  # the robot's comb formula
    i, tt = np.arange(3)[:, None], np.linspace(0, 1, 1000)[None, :]
    robot = (comb(2, i) * tt ** (2 - i) * (1 - tt) ** i).T @ small
    np.testing.assert_allclose(weak._bezier(small)[::-1], robot, atol=1e-9)


def test_drawing_scales_and_connects():
    canvas = np.zeros((10, 10), dtype=bool)
    weak._draw(np.array([[0.0, 0.0], [9.0, 0.0]]), canvas)  # x 9 -> 9 * 9 / 10 = 8.1 -> 8
    assert np.array_equal(np.nonzero(canvas[0])[0], np.arange(9)) and canvas.sum() == 9
    canvas = np.zeros((30, 30), dtype=bool)
    weak._draw(np.array([[2.0, 3.0], [20.0, 9.0], [5.0, 25.0]]), canvas)
    assert ndimage.label(canvas, structure=np.ones((3, 3)))[1] == 1


def test_scribble_is_deterministic():
    rng = np.random.default_rng(3)
    region = random_blobs(rng, (80, 120))
    first = robot_scribble(region)
    np.random.seed(123)  # the global generators play no part
    assert np.array_equal(first, robot_scribble(region.copy()))
    assert np.array_equal(build_scribble_map(region.astype(np.uint8) * 7),
                          build_scribble_map(region.astype(np.uint8) * 7))


# ---- on the real PASCAL masks --------------------------------------------------------------


@pytest.fixture(scope="module")
def real_labels(voc_aug):
    return {i: load_label_png(voc_aug / "SegmentationClassAug" / f"{i}.png") for i in REAL_IDS}


@pytest.fixture(scope="module")
def real_maps(real_labels):
    return {i: build_scribble_map(labels) for i, labels in real_labels.items()}


def test_robot_on_real_masks_is_thin_and_contained(real_labels):
    for image_id, labels in real_labels.items():
        for class_id in np.setdiff1d(np.unique(labels), [255]):
            region = labels == class_id
            scribble = robot_scribble(region)
            assert scribble.any(), (image_id, class_id)
            # thin: 1-px curves have no pixel whose whole 3 x 3 neighbourhood is scribble
            assert not ndimage.binary_erosion(scribble, np.ones((3, 3))).any()
            assert scribble.sum() < 0.1 * region.sum()
            # contained: a Bezier curve stays in the convex hull of its control points (axis
            # pixels, inside the region); drawing may truncate by 1 px
            hull = ndimage.binary_dilation(convex_hull_image(region), np.ones((3, 3)))
            assert not (scribble & ~hull).any(), (image_id, class_id)
            assert (scribble & region).sum() >= 0.85 * scribble.sum(), (image_id, class_id)


def test_cropped_computation_equals_the_whole_image(real_labels):
    labels = real_labels["2007_000129"]
    for class_id in (2, 15):
        region = labels == class_id
        graph, ys, xs = weak._axis_graph(weak._medial_axis(weak._opened(region)))
        whole = [weak._bezier(np.stack([xs[p], ys[p]], 1).astype(float))
                 for p in map(weak._longest_path, weak._axis_trees(graph))]
        cropped = robot_curves(region)
        assert len(cropped) == len(whole) > 0
        assert all(np.array_equal(a, b) for a, b in zip(cropped, whole))


def test_scribble_map_format_on_real_masks(real_labels, real_maps):
    for image_id, labels in real_labels.items():
        scribbles = real_maps[image_id]
        assert scribbles.dtype == np.uint8 and scribbles.shape == labels.shape
        assert (scribbles == 0).any() and np.array_equal(
            scribbles == 0, robot_scribble(labels == 0) & (labels == 0))
        ids = np.setdiff1d(np.unique(scribbles), [0, 255])
        assert ids.tolist() == list(range(1, len(ids) + 1))
        expected = []  # the 8-connected parts of each class (ascending) the robot draws on
        for class_id in np.setdiff1d(np.unique(labels), [0, 255]):
            parts, n = ndimage.label(labels == class_id, structure=np.ones((3, 3)))
            for part in range(1, n + 1):
                drawn = robot_scribble(parts == part) & (parts == part)
                if drawn.any():
                    expected.append(drawn)
        assert len(expected) == len(ids), image_id
        for k, drawn in enumerate(expected, start=1):
            assert np.array_equal(scribbles == k, drawn), (image_id, k)


def test_instance_maps_number_the_scribbles():
    labels = np.zeros((60, 80), dtype=np.uint8)
    instances = np.zeros((60, 80), dtype=np.uint8)
    labels[5:30, 5:40], instances[5:30, 5:40] = 3, 4  # one object of class 3 ...
    labels[5:30, 40:75], instances[5:30, 40:75] = 3, 9  # ... touching another one
    labels[40:55, 10:70], instances[40:55, 10:70] = 255, 255  # void
    scribbles = build_scribble_map(labels, instances)
    assert set(np.unique(scribbles)) == {0, 4, 9, 255}
    for k in (4, 9):
        assert np.array_equal(scribbles == k, robot_scribble(instances == k) & (instances == k))
    merged = build_scribble_map(labels)  # without instances: one 8-connected part, id 1
    assert set(np.unique(merged)) == {0, 1, 255}
    assert not (scribbles[labels == 255] != 255).any()
    with pytest.raises(ValueError, match="instance map"):
        build_scribble_map(labels, instances[:, :10])


def test_tiny_regions_get_no_scribble():
    for pixels in itertools.combinations([(0, 0), (0, 1), (1, 0), (1, 1)], 3):
        region = np.zeros((5, 5), dtype=bool)
        region[tuple(np.array(pixels).T)] = True
        assert not robot_scribble(region).any()
