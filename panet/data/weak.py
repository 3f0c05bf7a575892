"""Support masks of one support image: dense, bounding box or scribble (PROTOCOL §2, §10).

Maps are H x W at the episode's input size (after resize and flip) unless said otherwise; masks
are bool. A support's dense fg is never empty (the dataset resamples such supports), so neither
is its box or scribble; a bg can be empty (an object filling the image) and stays empty: masked
pooling then gives a zero prototype, not a NaN.

Dense: fg = pixels of the way's class; bg = pixels labelled with none of the episode's W classes
(void 255 counts as background).

Box: the class's instance map restricted to the dense fg; fg = the box of the largest instance
(released rule) or of a random one (the paper's wording); bg = everything outside the boxes of all
its instances. If no instance overlaps the fg (instance and class PNGs disagree), the whole fg
counts as one instance.

Scribble: from an image's scribble map in the released ``ScribbleAugAuto`` format (0 bg
scribble, 255 unlabelled, k fg scribble of instance k), read from the released files or
generated with ``build_scribble_map`` (the DAVIS-challenge interaction robot, ``robot_scribble``,
on every instance and on the background region). fg = one fg scribble chosen at random among
those that touch the dense fg, kept inside it; bg = the bg scribble inside the dense bg.
Optional dilation by a disk of radius r, clipped to the region (never onto the other side).

Fallback for an empty side: scribbles can vanish at the input size (instances too small for the
robot, a 1-px line between the rows nearest-neighbour resizing keeps), where the released loader
pools an empty mask. Here the empty side gets the robot's scribble of its dense region at the
input size, or the dense region itself when the robot draws nothing there (too thin for a
4-pixel axis: scribble-sized already), so that a support's fg is never empty.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import networkx as nx
import numpy as np
from scipy import ndimage
from scipy.special import gammaln, xlogy
from skimage.draw import line
from skimage.morphology import medial_axis

from panet.base.constants import IGNORE_INDEX

Masks = Tuple[np.ndarray, np.ndarray]  # (fg, bg), H x W bool
BOX_CHOICES = ("largest", "random")

# The DAVIS interaction robot's parameters (Caelles et al. 2018; davisinteractive's defaults)
OPENING_FRACTION = 0.15  # disk radius = OPENING_FRACTION * sqrt(area) / 2 ...
MAX_OPENING_RADIUS = 16.0  # ... at most this many pixels
OPENING_SHRINK = 0.9  # radius factor while the opening empties the region
MIN_AXIS_PIXELS = 4  # axis components with fewer pixels are dropped
BEZIER_SAMPLES = 1000  # points sampled on each scribble's Bezier curve
MEDIAL_AXIS_SEED = 0  # fixed tie-breaking order of skimage's medial axis (determinism)
MAX_SCRIBBLE_ID = 254  # scribble maps are uint8 and 255 means unlabelled


def dense_masks(labels: np.ndarray, class_id: int, episode_class_ids: Sequence[int]) -> Masks:
    """fg = ``labels == class_id``; bg = label is none of ``episode_class_ids``."""
    return labels == class_id, ~np.isin(labels, episode_class_ids)


def bounding_box(mask: np.ndarray) -> Tuple[slice, slice]:
    """(rows, columns) of the smallest box holding a non-empty H x W ``mask``."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def box_masks(fg: np.ndarray, instances: np.ndarray, choice: str = "largest",
              rng: Optional[np.random.Generator] = None) -> Masks:
    """Box supports from a non-empty dense ``fg`` and the class's H x W instance ids;
    ``choice``: one of ``BOX_CHOICES`` (config key data.bbox_instance, checked there)."""
    inside = np.where(fg, instances, 0)
    ids, areas = np.unique(inside[inside > 0], return_counts=True)
    if ids.size == 0:
        inside, ids, areas = fg.astype(np.int32), np.array([1]), np.array([fg.sum()])
    if choice == "largest":
        chosen = ids[np.argmax(areas)]  # ties: the smallest id
    else:
        chosen = ids[rng.integers(ids.size)]
    fg_box = np.zeros_like(fg, dtype=bool)
    fg_box[bounding_box(inside == chosen)] = True
    bg_box = np.ones_like(fg, dtype=bool)
    for instance in ids:
        bg_box[bounding_box(inside == instance)] = False
    return fg_box, bg_box


def robot_scribble(region: np.ndarray) -> np.ndarray:
    """H x W bool map of 1-px curves: what the DAVIS-challenge interaction robot draws on an
    H x W bool ``region`` (deterministic; empty without an axis component of ``MIN_AXIS_PIXELS``).

    Steps: 1. a disk opening (``_opened``); 2. its medial axis (``_medial_axis``); 3. the graph
    of the axis pixels (``_axis_graph``); 4. a minimum spanning tree per component
    (``_axis_trees``); 5. its longest path (``_longest_path``); 6. each path smoothed into a
    Bezier curve and drawn in 1-px lines (``_bezier``, ``_draw``). Not clipped to the region (a
    Bezier curve stays in the convex hull of its control points); ``build_scribble_map`` clips.
    """
    scribble = np.zeros(np.shape(region), dtype=bool)
    for curve in robot_curves(region):
        _draw(curve, scribble)
    return scribble


def robot_curves(region: np.ndarray) -> List[np.ndarray]:
    """Steps 1-6a of ``robot_scribble``: its curves as N x 2 float (x, y) arrays, not yet drawn
    (a path of more than ``BEZIER_SAMPLES`` pixels is kept as it is, not smoothed).

    Computed on the region's bounding box grown by 1 px, with the same result as on the whole
    image: every step looks only at the region, its 1-px surroundings and the nearest background
    pixel, which that window always holds (or the image edge, treated as on the whole image).
    """
    region = np.asarray(region, dtype=bool)
    if region.sum() < MIN_AXIS_PIXELS:  # the axis lies inside the region: too few pixels
        return []
    rows, cols = bounding_box(region)
    top, left = max(rows.start - 1, 0), max(cols.start - 1, 0)
    window = region[top:rows.stop + 1, left:cols.stop + 1]
    graph, ys, xs = _axis_graph(_medial_axis(_opened(window)))
    curves = []
    for tree in _axis_trees(graph):
        path = _longest_path(tree)
        points = np.stack([xs[path] + left, ys[path] + top], axis=1).astype(np.float64)
        curves.append(_bezier(points) if len(path) <= BEZIER_SAMPLES else points)
    return curves


def _disk_opening(region: np.ndarray, radius: float) -> np.ndarray:
    """Opening of ``region`` by the disk {(dy, dx) integer: dy^2 + dx^2 <= radius^2}, exact via
    Euclidean distance transforms (a pixel survives the erosion iff no background pixel lies
    within ``radius``; the dilation adds every pixel within ``radius`` of a survivor). Outside
    the image counts as region, as in the robot's rank filters: no erosion from the image edge.
    """
    if region.all():
        return region.copy()
    eroded = np.rint(ndimage.distance_transform_edt(region) ** 2) > radius ** 2
    if not eroded.any():
        return eroded
    return np.rint(ndimage.distance_transform_edt(~eroded) ** 2) <= radius ** 2


def _opened(region: np.ndarray) -> np.ndarray:
    """Step 1: the region opened by the largest disk, shrunk from min(0.15 sqrt(area)/2, 16)
    by x0.9 steps, that leaves it non-empty; the region itself once the radius is <= 1."""
    radius = min(OPENING_FRACTION * np.sqrt(region.sum()) / 2, MAX_OPENING_RADIUS)
    while radius > 1:
        opened = _disk_opening(region, radius)
        if opened.any():
            return opened
        radius *= OPENING_SHRINK
    return region


def _medial_axis(region: np.ndarray) -> np.ndarray:
    """Step 2: the medial axis, computed with a 1-px zero border so that a region touching the
    image edge keeps its axis there (a fixed tie-breaking seed)."""
    padded = np.pad(region, 1, constant_values=False)
    return medial_axis(padded, rng=MEDIAL_AXIS_SEED)[1:-1, 1:-1]


def _axis_graph(axis: np.ndarray) -> Tuple[nx.Graph, np.ndarray, np.ndarray]:
    """Step 3: the graph of the axis pixels (node i = the i-th axis pixel in row-major order)
    with an edge between 8-neighbours weighted by their distance; also the nodes' rows, columns."""
    ys, xs = np.nonzero(axis)
    nodes = np.arange(ys.size)
    index = np.full((axis.shape[0] + 2, axis.shape[1] + 2), -1, dtype=np.int64)  # -1: none
    index[ys + 1, xs + 1] = nodes  # a 1-px border of -1 around the image
    graph = nx.Graph()
    graph.add_nodes_from(nodes.tolist())
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbour pair once
        neighbour = index[ys + 1 + dy, xs + 1 + dx]
        linked = neighbour >= 0
        weight = float(np.hypot(dy, dx))
        graph.add_weighted_edges_from(
            (int(a), int(b), weight) for a, b in zip(nodes[linked], neighbour[linked]))
    return graph, ys, xs


def _axis_trees(graph: nx.Graph) -> List[nx.Graph]:
    """Step 4: per connected component, a minimum spanning tree (deleting a heaviest edge of a
    cycle until none is left keeps a minimum spanning forest, by the cycle property; among
    equal-weight trees Kruskal's stable edge order decides); components of fewer than
    ``MIN_AXIS_PIXELS`` pixels are dropped. Trees in the order of their first pixel."""
    forest = nx.minimum_spanning_tree(graph, algorithm="kruskal")
    components = sorted((sorted(c) for c in nx.connected_components(forest)), key=lambda c: c[0])
    return [forest.subgraph(c) for c in components if len(c) >= MIN_AXIS_PIXELS]


def _longest_path(tree: nx.Graph) -> List[int]:
    """Step 5: the longest path of a tree (in edges): breadth-first from its first node to the
    farthest node, then the longest of the shortest paths from that node (first found on ties)."""
    hops = nx.single_source_shortest_path_length(tree, min(tree.nodes))
    farthest = max(hops, key=hops.get)
    return max(nx.single_source_shortest_path(tree, farthest).values(), key=len)


def _bezier(points: np.ndarray, n_samples: int = BEZIER_SAMPLES) -> np.ndarray:
    """Step 6a: ``n_samples`` x 2 points of the Bezier curve whose control points are the
    N x 2 ``points``, at parameters t evenly spaced over [0, 1]. The Bernstein weights
    C(n, i) t^i (1 - t)^(n - i), n = N - 1, are computed in log space (C(999, 499) ~ 1e299)."""
    n = len(points) - 1
    i = np.arange(n + 1)[:, None]
    t = np.linspace(0.0, 1.0, n_samples)[None, :]
    log_weights = (gammaln(n + 1) - gammaln(i + 1) - gammaln(n - i + 1)
                   + xlogy(i, t) + xlogy(n - i, 1 - t))
    return np.exp(log_weights).T @ points


def _draw(points: np.ndarray, canvas: np.ndarray) -> None:
    """Step 6b: draw the N x 2 (x, y) ``points`` on the H x W bool ``canvas`` as a polyline of
    1-px Bresenham lines between consecutive points. Points are scaled to the image as the DAVIS
    toolkit draws its scribbles: normalised by (W, H), multiplied by (W - 1, H - 1), truncated."""
    height, width = canvas.shape
    x = (points[:, 0] / width * (width - 1)).astype(np.int64)
    y = (points[:, 1] / height * (height - 1)).astype(np.int64)
    canvas[y, x] = True
    # a Bresenham line between 8-neighbours is just its two ends: draw only the longer steps
    for k in np.flatnonzero(np.maximum(np.abs(np.diff(x)), np.abs(np.diff(y))) > 1):
        rows, cols = line(y[k], x[k], y[k + 1], x[k + 1])
        canvas[rows, cols] = True


def build_scribble_map(labels: np.ndarray, instances: Optional[np.ndarray] = None) -> np.ndarray:
    """H x W uint8 scribble map of one image in the released ``ScribbleAugAuto`` format.

    labels: H x W class ids (0 background, 255 void). instances: H x W ids (0 none, 255 void),
    as in ``SegmentationObjectAug``; None: every 8-connected part of a class region is an
    instance, numbered 1, 2, ... by class id, then position (only parts the robot draws on).
    Instance k's scribble (``robot_scribble`` of its mask, kept inside it) gets k, the background
    region's (label 0, not void) gets 0 (the paper does not say how background scribbles were
    drawn: our reading), every other pixel 255.
    """
    scribbles = np.full(labels.shape, IGNORE_INDEX, dtype=np.uint8)
    _paint(scribbles, labels == 0, 0)
    if instances is not None:
        if instances.shape != labels.shape:
            raise ValueError(f"instance map is {instances.shape} but the label map is "
                             f"{labels.shape}; they must belong to the same image")
        for instance_id in np.setdiff1d(np.unique(instances), [0, IGNORE_INDEX]):
            _paint(scribbles, instances == instance_id, int(instance_id))
        return scribbles
    next_id = 1
    for class_id in np.setdiff1d(np.unique(labels), [0, IGNORE_INDEX]):
        parts, n_parts = ndimage.label(labels == class_id, structure=np.ones((3, 3)))
        for part in range(1, n_parts + 1):
            if _paint(scribbles, parts == part, next_id):
                if next_id > MAX_SCRIBBLE_ID:
                    raise ValueError(f"more than {MAX_SCRIBBLE_ID} object parts carry a "
                                     "scribble; a uint8 scribble map cannot number them")
                next_id += 1
    return scribbles


def _paint(scribbles: np.ndarray, region: np.ndarray, value: int) -> bool:
    """Write the robot's scribble of ``region``, kept inside it, as ``value``; True if any."""
    scribble = robot_scribble(region) & region
    scribbles[scribble] = value
    return bool(scribble.any())


def dilate(scribble: np.ndarray, region: np.ndarray, radius: int) -> np.ndarray:
    """``scribble`` dilated by a disk of ``radius`` pixels, clipped to ``region``."""
    if radius <= 0:
        return scribble
    offsets = np.arange(-radius, radius + 1)
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2
    return ndimage.binary_dilation(scribble, structure=disk) & region


def _fallback_scribble(region: np.ndarray) -> np.ndarray:
    """For a side whose scribbles vanished: the robot's scribble of the dense region, kept
    inside it, or the region itself when the robot draws nothing (see the module docstring)."""
    scribble = robot_scribble(region) & region
    return scribble if scribble.any() else region


def scribble_masks(fg: np.ndarray, bg: np.ndarray, rng: np.random.Generator,
                   scribbles: np.ndarray, dilation: int = 0) -> Masks:
    """Scribble supports from the dense (fg, bg) and the image's H x W scribble map (released
    format, resized and flipped like the image)."""
    candidates = np.setdiff1d(np.unique(scribbles[fg]), [0, IGNORE_INDEX])
    if candidates.size:
        fg_scribble = (scribbles == candidates[rng.integers(candidates.size)]) & fg
    else:
        fg_scribble = _fallback_scribble(fg)
    bg_scribble = (scribbles == 0) & bg
    if not bg_scribble.any():
        bg_scribble = _fallback_scribble(bg)
    return dilate(fg_scribble, fg, dilation), dilate(bg_scribble, bg, dilation)
