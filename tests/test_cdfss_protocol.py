"""The cross-domain test protocol against the rule written out here.

Episodes: PATNet's test.py (github.com/slei109/PATNet: data/deepglobe.py, isic.py, lung.py) and
HSNet's FSS-1000 loader (github.com/juhongm999/hsnet data/fss.py), restated below with numpy's
legacy global generator (``np.random.seed`` then ``np.random.choice``), never through
``panet.data.protocols.reference_episodes``:

- np.random.seed(seed) once, then episodes idx = 0, 1, ... in order;
- Deepglobe / ISIC / Lung (K classes): candidates of class c are sorted(glob(folder/*)) kept to
  the names with name.split('.')[1] == ext; episode idx shows class c = idx % K; query =
  choice(cands[c], 1, replace=False)[0]; supports repeat the same draw, keeping those that
  differ from the query, until S are kept;
- FSS-1000: classes = sorted(lines of splits/<split>.txt); queries = every .jpg of each class in
  that order (sorted: 1, 10, 2, ..., 9); episode idx's query is queries[idx]; supports repeat
  n = choice(range(1, 11), 1, replace=False)[0], keeping <query folder>/<n>.jpg when it is not
  the query.

Our class id is the reference's class index + 1; image ids are paths relative to data.root (the
CXR_png image for a Lung mask). Metric: PATNet's AverageMeter (common/logger.py), written out.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panet.data.builder import make_episode_dataset, make_source
from panet.data.cdfss import ChestXraySource, DeepglobeSource, Fss1000Source, IsicSource
from panet.data.episodes import episode_labels
from panet.data.protocols import read_episode_file, read_episode_rows, write_episode_file
from panet.data.synthetic_cdfss import generate_cdfss
from panet.evaluation.metrics import IoUMeter, reference_scores
from panet.settings import EpisodeSetting

N_EPISODES = 40
ISIC_INPUT = "ISIC2018_Task1-2_Training_Input"
ISIC_TRUTH = "ISIC2018_Task1_Training_GroundTruth"
# folder k of PATNet's Deepglobe preprocessing (its BGR labelset read as RGB colours) and of ISIC
DEEPGLOBE_NAMES = {1: "agriculture", 2: "urban", 3: "rangeland", 4: "forest", 5: "water",
                   6: "barren"}
ISIC_NAMES = {1: "nevus", 2: "seborrheic_keratosis", 3: "melanoma"}
# our FSS-1000 stand-in: split -> classes in file order (sorted order differs: "Yak" < "ant_hill"
# < "apple" < "mango" < "zebra" by code point)
FSS_LAYOUT = {"trn": ["trn_b", "trn_a", "trn_c"], "val": ["val_y", "val_x"],
              "test": ["zebra", "Yak", "apple", "ant_hill", "mango"]}


# --------------------------------------------------------------------------------------------
# made data


def save_pair(image_path: Path, mask_path: Path, value: int, size=(6, 5)) -> None:
    """A tiny image and its 0/255 mask (foreground: a corner block)."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[0], size[1], 3), value % 256, dtype=np.uint8)
    Image.fromarray(pixels).save(image_path)
    mask = np.zeros(size, dtype=np.uint8)
    mask[: size[0] // 2, : size[1] // 2] = 255
    Image.fromarray(mask).save(mask_path)


def write_fss(root: Path, layout=FSS_LAYOUT, images=10) -> Path:
    for split, classes in layout.items():
        for index, name in enumerate(classes):
            for n in range(1, images + 1):
                save_pair(root / name / f"{n}.jpg", root / name / f"{n}.png", 10 * index + n)
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"{split}.txt").write_text("".join(c + "\n" for c in classes))
    (root / "apple" / "info.txt").write_text("not an image\n")  # filtered out by the extension
    return root


def write_deepglobe(root: Path, counts) -> Path:
    """Deepglobe layout with counts[k-1] images in class k."""
    for k, count in enumerate(counts, start=1):
        for n in range(count):
            stem = f"{100 + k}_sat_{n:02d}"
            save_pair(root / str(k) / "test" / "origin" / f"{stem}.jpg",
                      root / str(k) / "test" / "groundtruth" / f"{stem}.png", 7 * k + n)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """data.root of each dataset: generate_cdfss for three, our own FSS-1000 (50 test images)."""
    base = tmp_path_factory.mktemp("cdfss")
    generated = generate_cdfss(base / "gen", size=(20, 24))
    (generated / "Deepglobe" / "1" / "test" / "origin" / "readme.txt").write_text("x\n")
    return {"deepglobe": generated / "Deepglobe", "isic2018": generated / "ISIC",
            "chestxray": generated / "LungSegmentation",
            "fss1000": write_fss(base / "FSS-1000")}


# --------------------------------------------------------------------------------------------
# the rule, written out


def rel(path, root) -> str:
    return Path(os.path.relpath(str(path), str(root))).as_posix()


def patnet_candidates(name: str, root: Path):
    """Per class (0-based), the reference loader's list of candidate paths (strings)."""
    if name == "deepglobe":
        folders, ext = [os.path.join(root, str(k), "test", "origin") for k in range(1, 7)], "jpg"
    elif name == "isic2018":
        folders, ext = [os.path.join(root, ISIC_INPUT, str(k)) for k in range(1, 4)], "jpg"
    else:
        folders, ext = [os.path.join(root, "masks")], "png"
    return [[p for p in sorted(glob.glob(f"{folder}/*")) if os.path.basename(p).split(".")[1] == ext]
            for folder in folders]


def with_global_seed(seed, draw):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return draw()
    finally:
        np.random.set_state(state)


def patnet_rule(name: str, root: Path, shots: int, n: int, seed: int = 0):
    """The reference episodes as (class_ids, support_ids, query_ids) in our ids."""
    cands = patnet_candidates(name, root)

    def image_id(path):
        if name == "chestxray":  # the image of a mask: its name minus 9 characters, in CXR_png
            return f"CXR_png/{os.path.basename(path)[:-9]}.png"
        return rel(path, root)

    def draw():
        episodes = []
        for idx in range(n):
            c = idx % len(cands)
            query = np.random.choice(cands[c], 1, replace=False)[0]
            supports = []
            while True:
                support = np.random.choice(cands[c], 1, replace=False)[0]
                if support != query:
                    supports.append(support)
                if len(supports) == shots:
                    break
            episodes.append(((c + 1,), (tuple(image_id(s) for s in supports),),
                             ((image_id(query),),)))
        return episodes

    return with_global_seed(seed, draw)


def hsnet_fss_rule(root: Path, shots: int, n: int, seed: int = 0, split: str = "test"):
    with open(os.path.join(root, "splits", f"{split}.txt")) as lines:
        categories = sorted(lines.read().split("\n")[:-1])
    queries = []
    for category in categories:
        paths = sorted(glob.glob(f"{os.path.join(root, category)}/*"))
        queries += [p for p in paths if os.path.basename(p).split(".")[1] == "jpg"]

    def draw():
        episodes = []
        for idx in range(n):
            query = queries[idx]
            k = categories.index(query.split("/")[-2]) + 1
            supports = []
            while True:
                number = np.random.choice(range(1, 11), 1, replace=False)[0]
                support = os.path.join(os.path.dirname(query), str(number)) + ".jpg"
                if query != support:
                    supports.append(support)
                if len(supports) == shots:
                    break
            episodes.append(((k,), (tuple(rel(s, root) for s in supports),),
                             ((rel(query, root),),)))
        return episodes

    return with_global_seed(seed, draw)


def rule(name, root, shots, n=N_EPISODES, seed=0):
    if name == "fss1000":
        return hsnet_fss_rule(root, shots, n, seed)
    return patnet_rule(name, root, shots, n, seed)


def setting(name, root, shots=1, **more) -> EpisodeSetting:
    return EpisodeSetting(name=name, root=str(root), fold_style="all", shots=shots, size=65,
                          **more)


def drawn(name, root, shots, n=N_EPISODES, seed=0, **more):
    chosen = setting(name, root, shots, **more)
    assert chosen.problems() == []
    episodes = make_episode_dataset(chosen, n, seed, train=False).episodes
    return as_tuples(episodes)


def as_tuples(episodes):
    return [(tuple(e.class_ids), tuple(tuple(w) for w in e.support_ids),
             tuple(tuple(w) for w in e.query_ids)) for e in episodes]


# --------------------------------------------------------------------------------------------
# 1. the first 40 episodes of each dataset, 1-shot and 5-shot


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("name", ["deepglobe", "isic2018", "chestxray", "fss1000"])
def test_first_episodes_are_the_reference_rules(data, name, shots):
    root = data[name]
    expected = rule(name, root, shots)
    assert setting(name, root, shots).episode_rule == "patnet"  # the targets' default
    got = drawn(name, root, shots)
    assert len(got) == N_EPISODES
    assert got == expected
    # the expectation is not degenerate: every support is a file of its class, never the query
    for (k,), (supports,), ((query,),) in got:
        assert len(supports) == shots and query not in supports
        for image_id in (query, *supports):
            assert (root / image_id).is_file()
    if name == "fss1000":
        # queries in order, class by class in sorted class order, 1, 10, 2, ..., 9 within each
        order = [f"{c}/{n}.jpg" for c in sorted(FSS_LAYOUT["test"])
                 for n in (1, 10, 2, 3, 4, 5, 6, 7, 8, 9)]
        assert [q for _, _, ((q,),) in got] == order[:N_EPISODES]
        assert [k for (k,), _, _ in got] == [1 + i // 10 for i in range(N_EPISODES)]
    else:
        n_classes = {"deepglobe": 6, "isic2018": 3, "chestxray": 1}[name]
        assert [k for (k,), _, _ in got] == [1 + i % n_classes for i in range(N_EPISODES)]
        assert len({q for _, _, ((q,),) in got}) > 3  # queries vary
    if name == "chestxray":
        assert all(q.startswith("CXR_png/") for _, _, ((q,),) in got)


@pytest.mark.parametrize("name", ["deepglobe", "fss1000"])
def test_another_seed_draws_other_episodes(data, name):
    root = data[name]
    other = drawn(name, root, 5, seed=1)
    assert other == rule(name, root, 5, seed=1)
    assert other != drawn(name, root, 5, seed=0)


def test_hsnet_protocol_draws_as_patnet_on_fss(data):
    root = data["fss1000"]
    assert drawn("fss1000", root, 5, protocol="hsnet") == hsnet_fss_rule(root, 5, N_EPISODES)


def test_mask_order_differs_from_image_order_on_lung(data):
    """The Lung check is only meaningful if the two sorted lists differ (made data's pairs)."""
    root = data["chestxray"]
    from_masks = [f"{os.path.basename(p)[:-9]}.png" for p in patnet_candidates("chestxray", root)[0]]
    assert from_masks != sorted(os.listdir(root / "CXR_png"))
    assert [i.split("/")[-1] for i in ChestXraySource(root, "test").class_images()[1]] == from_masks


def test_isic_flat_layout_with_class_file_draws_the_same(data, tmp_path):
    flat = tmp_path / "ISIC"
    shutil.copytree(data["isic2018"], flat)
    rows = []
    for k, name in ISIC_NAMES.items():
        for image in sorted((flat / ISIC_INPUT / str(k)).iterdir()):
            image.rename(flat / ISIC_INPUT / image.name)
            rows.append((image.name.split(".")[0], name))
        (flat / ISIC_INPUT / str(k)).rmdir()
    rows.reverse()  # the table's row order does not matter
    (flat / "class_id.csv").write_text("ID,Class\n" + "".join(f"{i},{c}\n" for i, c in rows))

    def by_stem(episodes):
        def stem(image_id):
            return image_id.rsplit("/", 1)[-1]
        return [(k, tuple(stem(s) for s in supports), stem(q))
                for k, (supports,), ((q,),) in episodes]

    for shots in (1, 5):
        folders = drawn("isic2018", data["isic2018"], shots)
        flat_episodes = drawn("isic2018", flat, shots)
        assert by_stem(flat_episodes) == by_stem(folders)
        assert all(q.startswith(f"{ISIC_INPUT}/ISIC_") and q.count("/") == 1
                   for _, _, ((q,),) in flat_episodes)


# --------------------------------------------------------------------------------------------
# 2. the support != query loop


def test_two_image_class_gives_the_other_image_as_every_support(tmp_path):
    root = write_deepglobe(tmp_path / "Deepglobe", [2, 3, 3, 3, 3, 3])
    got = drawn("deepglobe", root, 5, n=13)
    assert got == patnet_rule("deepglobe", root, 5, 13)
    pair = {"1/test/origin/101_sat_00.jpg", "1/test/origin/101_sat_01.jpg"}
    class_one = [e for e in got if e[0] == (1,)]
    assert len(class_one) == 3  # episodes 0, 6, 12
    for _, (supports,), ((query,),) in class_one:
        assert query in pair
        assert supports == tuple(pair - {query}) * 5


def test_one_image_class_is_refused(tmp_path):
    root = write_deepglobe(tmp_path / "Deepglobe", [3, 1, 3, 3, 3, 3])
    with pytest.raises(ValueError, match=r"(?i)urban.*one image|one image.*urban") as error:
        make_episode_dataset(setting("deepglobe", root, 1), 12, 0, train=False)
    assert "2" in str(error.value)


# --------------------------------------------------------------------------------------------
# 3. lists and class splits


def test_class_ids_and_names(data):
    deepglobe = DeepglobeSource(data["deepglobe"], "test")
    assert deepglobe.class_ids == [1, 2, 3, 4, 5, 6]
    assert deepglobe.class_names == DEEPGLOBE_NAMES
    isic = IsicSource(data["isic2018"], "test")
    assert isic.class_ids == [1, 2, 3] and isic.class_names == ISIC_NAMES
    lung = ChestXraySource(data["chestxray"], "test")
    assert lung.class_ids == [1] and len(lung.class_images()[1]) == 20
    fss = Fss1000Source(data["fss1000"], "test")
    assert fss.class_ids == [1, 2, 3, 4, 5]
    assert fss.class_names == {1: "Yak", 2: "ant_hill", 3: "apple", 4: "mango", 5: "zebra"}
    # every list is the reference loader's, in its order; "readme.txt" is not listed
    for source, name in ((deepglobe, "deepglobe"), (isic, "isic2018")):
        cands = patnet_candidates(name, data[name])
        assert [source.class_images()[k] for k in source.class_ids] == \
            [[rel(p, data[name]) for p in paths] for paths in cands]
    assert fss.class_images()[3] == [f"apple/{n}.jpg" for n in (1, 10, 2, 3, 4, 5, 6, 7, 8, 9)]
    assert not any(i.endswith(".txt") for i in deepglobe.class_images()[1])


def test_fss_split_files(data, tmp_path):
    root = data["fss1000"]
    names = {split: Fss1000Source(root, split).class_names for split in ("trn", "val", "test")}
    assert names["trn"] == {1: "trn_a", 2: "trn_b", 3: "trn_c"}
    assert names["val"] == {1: "val_x", 2: "val_y"}
    sets = [set(n.values()) for n in names.values()]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2]) and sets[1].isdisjoint(sets[2])
    # training opens trn, the test opens test (the dataset's defaults)
    chosen = setting("fss1000", root)
    assert set(make_source(chosen, train=True).class_names.values()) == sets[0]
    assert set(make_source(chosen, train=False).class_names.values()) == sets[2]
    # data.lists_dir: the split files elsewhere
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "test.txt").write_text("mango\napple\n")
    assert Fss1000Source(root, "test", lists).class_names == {1: "apple", 2: "mango"}
    # a missing split file names HSNet's lists
    with pytest.raises(FileNotFoundError) as error:
        Fss1000Source(root, "val", lists)
    assert "data/splits/fss" in str(error.value)
    assert "github.com/juhongm999/hsnet" in str(error.value)
    assert str(lists / "val.txt") in str(error.value)
    with pytest.raises(ValueError, match="trn"):
        Fss1000Source(root, "train")


def test_lung_mask_without_image_is_refused(data, tmp_path):
    root = tmp_path / "LungSegmentation"
    shutil.copytree(data["chestxray"], root)
    mask = sorted(os.listdir(root / "masks"))[3]
    (root / "CXR_png" / f"{mask[:-9]}.png").unlink()
    with pytest.raises(FileNotFoundError) as error:
        ChestXraySource(root, "test")
    assert mask in str(error.value)


def test_deepglobe_missing_mask_named_when_read(data, tmp_path):
    root = tmp_path / "Deepglobe"
    shutil.copytree(data["deepglobe"], root)
    source = DeepglobeSource(root, "test")
    image_id = source.class_images()[4][2]
    stem = image_id.rsplit("/", 1)[-1].split(".")[0]
    mask = root / "4" / "test" / "groundtruth" / f"{stem}.png"
    assert source.label_map(image_id).max() == 4  # the class id where the mask is >= 128
    mask.unlink()
    with pytest.raises(FileNotFoundError) as error:
        source.label_map(image_id)
    assert str(mask) in str(error.value)


# --------------------------------------------------------------------------------------------
# 4. the metric: PATNet's AverageMeter, written out


def patnet_average_meter(pairs, n_classes):
    """pairs: (pred, gt, class id 1..K) binary maps. I[b, k], U[b, k] for b in {0 bg, 1 fg}."""
    inter = np.zeros((2, n_classes))
    union = np.zeros((2, n_classes))
    for pred, gt, class_id in pairs:
        for b in (0, 1):
            both = np.sum((pred == b) & (gt == b))
            inter[b, class_id - 1] += both
            union[b, class_id - 1] += np.sum(pred == b) + np.sum(gt == b) - both
    miou = 100 * np.mean(inter[1] / np.maximum(union[1], 1))
    fb_iou = 100 * np.mean(inter.sum(axis=1) / union.sum(axis=1))
    return miou, fb_iou


def scores(pairs, class_ids, rule="corrected"):
    meter = IoUMeter(class_ids, rule=rule)
    for i, (pred, gt, class_id) in enumerate(pairs):
        meter.update(pred, gt, [class_id], episode=i)
    result = reference_scores(meter.counts)
    return result["miou"][0], result["fb_iou"][0]


def test_metric_against_patnet_average_meter():
    rng = np.random.default_rng(7)
    pairs = []
    for i in range(24):
        class_id = [1, 2, 3, 5][i % 4]  # class 4 of 1..5 is never drawn
        gt = (rng.random((6, 7)) < rng.uniform(0.1, 0.7)).astype(np.int64)
        pred = (rng.random((6, 7)) < rng.uniform(0.1, 0.7)).astype(np.int64)
        pairs.append((pred, gt, class_id))
    empty_gt = np.zeros((6, 7), dtype=np.int64)
    pairs.append((np.eye(6, 7, dtype=np.int64), empty_gt, 2))  # no foreground, predicted some
    pairs.append((np.zeros((6, 7), dtype=np.int64), np.eye(6, 7, dtype=np.int64), 3))  # none found
    expected = patnet_average_meter(pairs, 5)
    assert scores(pairs, [1, 2, 3, 4, 5]) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # and the "released" rule (a label counted only where the gt holds it) would differ here
    assert scores(pairs, [1, 2, 3, 4, 5], "released") != pytest.approx(expected, rel=1e-6)


def test_metric_hand_checked():
    # classes 1, 2, 3; class 3 never drawn.
    # q0 class 1: gt [[1,1],[0,0]], pred [[1,0],[0,0]]: fg I=1 U=2; bg I=2 U=3
    # q1 class 2: gt all 0, pred [[1,0],[0,0]]:          fg I=0 U=1; bg I=3 U=4
    # q2 class 1: gt [[1,1],[1,0]], pred all 1:          fg I=3 U=4; bg I=0 U=1
    # class 1: 4/6, class 2: 0/1, class 3: 0/max(0,1) -> mIoU = 100 (2/3) / 3 = 22.2222...
    # bg 5/8 = 0.625, fg 4/7 = 0.571428... -> FB-IoU = 100 (0.625 + 0.571428...) / 2 = 59.8214...
    pairs = [(np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 0]]), 1),
             (np.array([[1, 0], [0, 0]]), np.array([[0, 0], [0, 0]]), 2),
             (np.array([[1, 1], [1, 1]]), np.array([[1, 1], [1, 0]]), 1)]
    assert patnet_average_meter(pairs, 3) == pytest.approx((22.2222222, 59.8214286), abs=1e-6)
    assert scores(pairs, [1, 2, 3]) == pytest.approx((200 / 9, 100 * (5 / 8 + 4 / 7) / 2),
                                                     rel=1e-12)


# --------------------------------------------------------------------------------------------
# 5. episode files


@pytest.fixture
def deepglobe_episodes(data):
    root = data["deepglobe"]
    dataset = make_episode_dataset(setting("deepglobe", root, 5), 14, 3, train=False)
    return root, dataset.source, dataset.episodes


def rows_of(episodes, by_name=False):
    return [{"class": DEEPGLOBE_NAMES[e.class_ids[0]] if by_name else str(e.class_ids[0]),
             "query": e.query_ids[0][0], "supports": list(e.support_ids[0])} for e in episodes]


@pytest.mark.parametrize("suffix,by_name", [(".csv", False), (".jsonl", False), (".jsonl", True),
                                            (".csv", True)])
def test_episode_file_round_trip(deepglobe_episodes, tmp_path, suffix, by_name):
    root, source, episodes = deepglobe_episodes
    path = write_episode_file(tmp_path / f"episodes{suffix}", rows_of(episodes, by_name))
    first = path.read_text().splitlines()[0]
    if suffix == ".csv":
        assert first == "class,query,support_1,support_2,support_3,support_4,support_5"
    else:
        assert set(json.loads(first)) == {"class", "query", "supports"}
    assert as_tuples(read_episode_file(path, source)) == as_tuples(episodes)
    through_builder = make_episode_dataset(setting("deepglobe", root, 5), 1, 99, train=False,
                                           episodes_file=path)
    assert as_tuples(through_builder.episodes) == as_tuples(episodes)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_episode_file_naming_a_missing_image_is_refused(deepglobe_episodes, tmp_path, suffix):
    _, source, episodes = deepglobe_episodes
    rows = rows_of(episodes)
    rows[3]["supports"][1] = "1/test/origin/absent_sat_99.jpg"
    path = write_episode_file(tmp_path / f"episodes{suffix}", rows)
    with pytest.raises(FileNotFoundError, match="absent_sat_99.jpg"):
        read_episode_file(path, source)
    # an image of another class is no image of the row's class
    rows = rows_of(episodes)
    other = source.class_images()[2][0]
    assert rows[0]["class"] != "2"
    rows[0]["query"] = other
    path = write_episode_file(tmp_path / f"other{suffix}", rows)
    with pytest.raises(FileNotFoundError, match=other):
        read_episode_file(path, source)


def test_malformed_episode_lines_are_refused_by_number(deepglobe_episodes, tmp_path):
    _, source, episodes = deepglobe_episodes
    good = rows_of(episodes)[:3]
    path = write_episode_file(tmp_path / "bad.csv", good)
    lines = path.read_text().splitlines()
    lines[2] = "1,1/test/origin/only_a_query.jpg"  # third line of the file: no support
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 3\b"):
        read_episode_file(path, source)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(json.dumps(good[0]) + "\n{not json\n" + json.dumps(good[1]) + "\n")
    with pytest.raises(ValueError, match=r"line 2\b"):
        read_episode_rows(jsonl)
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in good[:2])
                     + json.dumps({"class": "1", "query": good[2]["query"]}) + "\n")
    with pytest.raises(ValueError, match=r"line 3\b"):
        read_episode_rows(jsonl)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_episode_file_with_two_shot_counts_is_refused(deepglobe_episodes, tmp_path, suffix):
    _, source, episodes = deepglobe_episodes
    rows = rows_of(episodes)
    rows[5]["supports"] = rows[5]["supports"][:2]
    path = write_episode_file(tmp_path / f"mixed{suffix}", rows)
    with pytest.raises(ValueError, match="shot"):
        read_episode_file(path, source)
    with open(path, newline="") as lines:  # the file does hold both counts
        if suffix == ".csv":
            assert {len(r) - 2 for r in list(csv.reader(lines))[1:]} == {2, 5}


# --------------------------------------------------------------------------------------------
# 6. label ids above 255


def test_episode_labels_on_uint16_maps():
    labels = np.array([[0, 300, 255], [7, 301, 300], [255, 0, 1000]], dtype=np.uint16)
    # ways 300 and 255 (in a split of more than 254 classes 255 is a class): 300 -> 1, 255 -> 2
    assert episode_labels(labels, [300, 255]).tolist() == [[0, 1, 2], [0, 0, 1], [2, 0, 0]]
    assert episode_labels(labels, [255, 300]).tolist() == [[0, 2, 1], [0, 0, 2], [1, 0, 0]]
    assert episode_labels(labels, [1000, 7, 255]).tolist() == [[0, 0, 3], [2, 0, 0], [3, 0, 1]]
    one_way = episode_labels(labels, [301])
    assert one_way.dtype == np.int64
    assert one_way[labels != 255].tolist() == [0, 0, 0, 1, 0, 0, 0]  # 255 pixels: see below


def test_class_255_of_a_uint16_map_is_background_when_not_a_way():
    labels = np.array([[0, 300, 255], [7, 301, 300]], dtype=np.uint16)
    assert episode_labels(labels, [300]).tolist() == [[0, 1, 0], [0, 0, 1]]


def test_fss_split_of_more_than_254_classes_keeps_ids_above_255(tmp_path):
    root = tmp_path / "FSS-1000"
    names = [f"c{i:03d}" for i in range(300)]
    for name in names:
        save_pair(root / name / "1.jpg", root / name / "1.png", 1, size=(2, 2))
    (root / "splits").mkdir()
    (root / "splits" / "trn.txt").write_text("".join(n + "\n" for n in reversed(names)))
    source = Fss1000Source(root, "trn")
    assert source.class_ids == list(range(1, 301))
    assert source.class_names[300] == "c299" and source.class_names[255] == "c254"
    for class_id in (255, 300):
        labels = source.label_map(f"{source.class_names[class_id]}/1.jpg")
        assert labels.dtype == np.uint16
        assert labels.tolist() == [[class_id, 0], [0, 0]]
        assert episode_labels(labels, [class_id]).tolist() == [[1, 0], [0, 0]]
