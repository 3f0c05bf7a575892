"""The image evaluation path (panet.evaluation.images, test.encode=image) against the per-episode path.

Exactness: both paths score the same queries with logits within the contract's tolerance
(tests/tolerance.py), and test.py's results.json of both agree within 0.1 IoU points in every
number (per class, per run, mean- and binary-IoU), on the synthetic set and on real COCO images,
over settings covering every pair of {1, 2} ways x {1, 5} shots x dense / box / scribble
supports x label / original resolution, plus 2 queries per episode, the corrected metric rule
and COCO's two labellings. Bits are not compared: the encoder sees the images in other batches on
the two paths, and convolution kernels promise no batch invariance. The model is the PANet-init
of the small encoder (random weights seeded by the config): no training needed.

Then the plan against the items of the per-episode path (slots, replaced supports, replayed
random box choices), the encoder calls against the schedule's count (a forward hook), the
feature cache directory (a rewritten image is encoded again), sharded evaluation, bad values,
and the call counter of scripts/bench_eval.py.
"""

import json
import os
from collections import defaultdict

import numpy as np
import pytest
import torch

from PIL import Image

from conftest import blob_labels, load_script, shared_data_dir, write_jpeg
from panet.data import make_episode_dataset
from panet.data.folds import fold_classes
from panet.data.sampling import sample_episodes
from panet.data.voc import IMAGE_DIR, VocSource
from panet.evaluation.images import evaluate_images, plan_runs, schedule
from panet.evaluation.options import EvalOptions
from panet.run.identity import model_identity
from toy_methods import DoubledEncodePANet
from panet.settings import ModelSettings, TestSettings
from panet.evaluation.feature_cache import DiskCache
from panet.evaluation.metrics import IoUMeter
from panet.models import PANet, build_encoder
from panet.settings import EpisodeSetting
from test_experiments import QUIET, TEST, torchrun
from tolerance import (assert_counts_close, assert_logits_close, assert_results_close,
                       recorded_logits)

COCO_TINY = shared_data_dir() / "coco_tiny"
SIZE = 101
RUNS, EPISODES = 2, 4
# every pair of values of two of ways, shots, weak, resolution appears at least once; also
# the corrected metric rule and 2 queries per episode
SYNTHETIC_SETTINGS = [
    {"ways": 1, "shots": 1, "weak": "dense", "resolution": "label"},
    {"ways": 1, "shots": 5, "weak": "scribble", "resolution": "original", "rule": "corrected"},
    {"ways": 2, "shots": 1, "weak": "bbox", "resolution": "original"},
    {"ways": 2, "shots": 5, "weak": "dense", "resolution": "original", "rule": "corrected"},
    {"ways": 1, "shots": 5, "weak": "bbox", "resolution": "label"},
    {"ways": 2, "shots": 1, "weak": "scribble", "resolution": "label", "queries": 2}]
COCO_SETTINGS = [{"ways": 1, "shots": 1, "weak": "scribble", "resolution": "original"},
                 {"ways": 2, "shots": 5, "weak": "bbox", "resolution": "label"},
                 {"ways": 2, "shots": 1, "weak": "dense", "resolution": "label",
                  "coco_labels": "episode"}]
DATA_KEYS = ("ways", "shots", "weak", "queries", "coco_labels")


def setting_id(setting):
    return "-".join(str(value) for value in setting.values())

pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]


def synthetic_data(root, **setting):
    """data config of the synthetic set (its trainaug list: enough images per class for 5-shot)."""
    return {"name": "synthetic", "root": str(root), "test_split": "trainaug", "fold": 0,
            "size": SIZE, "workers": 0, **setting}


def results_json(out, data, encode, **test):
    """test.py on the PANet-init of the small encoder (random weights seeded by the config)."""
    run = TEST.run(options=QUIET, config_updates={
        "data": data, "model": {"encoder": "small", "weights": None},
        "test": {"notrain": True, "runs": RUNS, "episodes": EPISODES, "encode": encode,
                 "output_dir": str(out), **test}})
    assert run.status == "COMPLETED"
    return json.loads((out / "results.json").read_text())


def compare_paths(tmp_path, data, setting, monkeypatch):
    data = {**data, **{key: setting[key] for key in DATA_KEYS if key in setting}}
    test = {key: value for key, value in setting.items() if key not in DATA_KEYS}
    with recorded_logits(monkeypatch) as episode_logits:
        episode = results_json(tmp_path / "episode", data, "episode", **test)
    with recorded_logits(monkeypatch) as image_logits:
        image = results_json(tmp_path / "image", data, "image", **test)
    assert_logits_close(episode_logits, image_logits)
    assert_results_close(episode, image)


@pytest.mark.parametrize("setting", SYNTHETIC_SETTINGS, ids=setting_id)
def test_both_paths_write_the_same_results_synthetic(synthetic_root, tmp_path, setting,
                                                     monkeypatch):
    compare_paths(tmp_path, synthetic_data(synthetic_root), setting, monkeypatch)


@pytest.mark.skipif(not COCO_TINY.is_dir(),
                    reason=f"real COCO data not found at {COCO_TINY} (set PANET_SHARED_DATA)")
@pytest.mark.parametrize("setting", COCO_SETTINGS, ids=setting_id)
def test_both_paths_write_the_same_results_coco(tmp_path_factory, tmp_path, setting,
                                                monkeypatch):
    data = {"name": "coco", "root": str(COCO_TINY), "year": 2017, "test_split": "val",
            "fold": 2, "size": SIZE, "workers": 0,
            "cache_dir": str(tmp_path_factory.getbasetemp() / "coco_cache")}
    compare_paths(tmp_path, data, setting, monkeypatch)


def test_plan_holds_the_slots_of_the_items(synthetic_root):
    """At 6 x 8 px small objects vanish and supports are replaced; box instances are drawn at
    random: the plan must still name the items' images, and its recorded generator states must
    draw the items' masks again."""
    ways, shots, queries = 2, 2, 2
    setting = synthetic_setting(synthetic_root, ways=ways, shots=shots, queries=queries,
                                size=(6, 8), weak="bbox", bbox_instance="random")
    datasets = [make_episode_dataset(setting, 8, seed, train=False) for seed in (5, 6)]
    plan = plan_runs(datasets)
    expected_supports, expected_queries = defaultdict(list), defaultdict(list)
    items, replaced = {}, 0
    for run, dataset in enumerate(datasets):
        for index in range(len(dataset)):
            item = items[run, index] = dataset[index]
            for way, ids in enumerate(item["support_ids"]):
                for shot, image_id in enumerate(ids):
                    expected_supports[image_id].append((run, index, way, shot))
                    replaced += image_id != dataset.episodes[index].support_ids[way][shot]
            for q, image_id in enumerate(item["query_ids"]):
                expected_queries[image_id].append((run, index, q))
    assert replaced > 0

    def slot_of(row):  # rows: episode by episode, way-major
        episode, slot = divmod(row, ways * shots)
        return (*divmod(episode, 8), *divmod(slot, shots))

    assert {image: sorted(slot_of(s.row) for s in slots)
            for image, slots in plan.supports.items()} == expected_supports
    assert {image: sorted(tuple(s.key) for s in slots)
            for image, slots in plan.queries.items()} == expected_queries
    assert plan.episode_calls == 2 * 8 * (ways * shots + queries)
    for image, slots in plan.supports.items():
        for slot in slots:
            run, index, way, shot = slot_of(slot.row)
            drawn = datasets[-1].redraw_support(image, slot.way, slot.class_ids, slot.state)
            assert np.array_equal(drawn.fg, items[run, index]["support_fg"][way, shot].numpy() == 1)
            assert np.array_equal(drawn.bg, items[run, index]["support_bg"][way, shot].numpy() == 1)
    for image, slots in plan.queries.items():
        for slot in slots:
            view = datasets[-1].redraw_query(image, slot.way, slot.class_ids, slot.state).view
            labels = items[slot.key.run, slot.key.episode]["query_labels"][slot.key.query]
            assert torch.equal(datasets[-1].query_labels(view, slot.class_ids), labels)


@pytest.fixture(scope="module")
def small_panet():
    torch.manual_seed(0)
    return PANet(build_encoder("small")).eval()


def synthetic_setting(root, **fields):
    """An episode setting of the synthetic set's trainaug split (test classes of fold 0)."""
    return EpisodeSetting(name="synthetic", root=str(root), train_split="trainaug",
                          test_split="trainaug", **{"size": SIZE, **fields})


def runs_of(root, weak="dense", runs=RUNS):
    """1-way 1-shot test runs of 8 episodes: some images are supports and queries."""
    return [make_episode_dataset(synthetic_setting(root, weak=weak), 8, 1234 + run, train=False)
            for run in range(runs)]


def counted(model, plan, **options):
    """(counts, images through the encoder, schedule) of the image path."""
    calls = []  # images computed (feature_shape's trace on the meta device computes none)
    hook = model.encoder.register_forward_hook(
        lambda m, i, output: calls.append(len(output) * (output.device.type != "meta")))
    try:
        meter = IoUMeter(fold_classes(20, 0, train=False), n_runs=RUNS)
        key = model_identity(model, ModelSettings(encoder="small"))["model_sha256"]  # as test.py
        followed = evaluate_images(model, plan, meter, EvalOptions(cache_key=key, **options),
                                   progress=False)
    finally:
        hook.remove()
    return meter.counts, sum(calls), followed


def test_encoder_calls_follow_the_schedule(synthetic_root, small_panet):
    plan = plan_runs(runs_of(synthetic_root))
    supports, queries = set(plan.supports), set(plan.queries)
    both, distinct = supports & queries, supports | queries
    assert both and len(distinct) < plan.episode_calls  # images repeat
    assert schedule(plan, 0).encoder_calls() == len(supports) + len(queries)
    assert schedule(plan, 1).encoder_calls() == len(supports) + len(queries) - 1
    assert schedule(plan, len(both)).encoder_calls() == len(distinct)
    shares = [schedule(plan, len(both), rank=rank, world_size=2) for rank in (0, 1)]
    mine = [set(share.supports) | set(share.queries) for share in shares]
    assert not mine[0] & mine[1] and mine[0] | mine[1] == distinct
    assert sum(share.encoder_calls() for share in shares) == len(distinct)

    twice, n_twice, followed = counted(small_panet, plan, cache_gb=0)
    assert n_twice == followed.encoder_calls() == len(supports) + len(queries)
    once, n_once, followed = counted(small_panet, plan)  # the default 1 GiB holds them all
    assert n_once == followed.encoder_calls() == len(distinct)
    assert_counts_close(once, twice)  # other batches of images: equal to float rounding
    assert once.sum() > 0


def test_feature_files_serve_later_evaluations(synthetic_root, small_panet, tmp_path):
    dense = plan_runs(runs_of(synthetic_root, runs=1))
    boxes = plan_runs(runs_of(synthetic_root, weak="bbox", runs=1))
    assert dense.images() == boxes.images()  # same episodes, other support masks
    n_images = len(dense.images())
    counted(small_panet, dense, cache_dir=tmp_path)
    (folder,) = tmp_path.iterdir()
    assert len(list(folder.glob("*.pt"))) == n_images
    in_memory, calls, _ = counted(small_panet, boxes)
    assert calls > 0
    from_files, calls, _ = counted(small_panet, boxes, cache_dir=tmp_path)
    assert calls == 0 and np.array_equal(from_files, in_memory)

    cpu = torch.device("cpu")

    def cache_folder(model, factory="panet.models:PANet"):
        key = model_identity(model, ModelSettings(encoder="small", factory=factory))[
            "model_sha256"]
        return DiskCache(tmp_path, key, dense.dataset, cpu).folder

    assert cache_folder(small_panet) == folder
    assert cache_folder(PANet(build_encoder("small"))) != folder  # other weights: other folder
    # the same weights in another method (its own encode): other features, other folder
    doubled = DoubledEncodePANet(small_panet.encoder)
    assert doubled.state_dict().keys() == small_panet.state_dict().keys()
    assert cache_folder(doubled, "toy_methods:DoubledEncodePANet") != folder

    budget_gb = 3.5 * next(folder.glob("*.pt")).stat().st_size / 2 ** 30
    counted(small_panet, dense, cache_dir=tmp_path / "small", cache_gb=budget_gb)
    assert len(list((tmp_path / "small").rglob("*.pt"))) == 3


def test_a_rewritten_image_is_encoded_again(make_voc_tree, small_panet, tmp_path):
    """Feature files are keyed by the image file's identity (path, size, modification time): an
    image rewritten at the same path is encoded again, never served its old features."""
    root = make_voc_tree(blob_labels(30, classes=range(1, 11), per_image=3))
    datasets = [make_episode_dataset(EpisodeSetting(root=str(root), size=SIZE), 6, 1234,
                                     train=False)]
    plan = plan_runs(datasets)
    counted(small_panet, plan, cache_dir=tmp_path / "features")
    for image_id in plan.images():  # new pixels, same paths
        path = root / IMAGE_DIR / f"{image_id}.jpg"
        before = path.stat().st_mtime_ns
        write_jpeg(path, *np.asarray(Image.open(path)).shape[:2], seed=99)
        os.utime(path, ns=(before + 10 ** 9, before + 10 ** 9))
    fresh, calls_fresh, _ = counted(small_panet, plan_runs(datasets))  # in memory
    from_files, calls, _ = counted(small_panet, plan_runs(datasets),
                                   cache_dir=tmp_path / "features")
    assert calls == calls_fresh > 0  # nothing served from the stale files
    assert np.array_equal(from_files, fresh)  # same images, same batches: same computation


def test_sharded_image_path_with_feature_files_equals_one_process_per_episode(synthetic_root,
                                                                             tmp_path):
    data = synthetic_data(synthetic_root, ways=2, shots=1, weak="bbox")
    settings = [f"data.{key}={value}" for key, value in data.items()] + [
        "model.encoder=small", "model.weights=None", "test.notrain=True", f"test.runs={RUNS}",
        f"test.episodes={EPISODES}", "test.encode=image", f"test.output_dir={tmp_path / 'ddp'}",
        f"test.cache_dir={tmp_path / 'features'}"]
    torchrun("test.py", *settings)
    sharded = json.loads((tmp_path / "ddp" / "results.json").read_text())
    single = results_json(tmp_path / "single", data, "episode")
    assert_results_close(single, sharded)
    (folder,) = (tmp_path / "features").iterdir()  # both processes wrote their images' features
    assert len(list(folder.glob("*.pt"))) == len(plan_runs(
        make_episode_dataset(synthetic_setting(synthetic_root, ways=2), EPISODES, 1234 + run,
                             train=False) for run in range(RUNS)).images())


def test_bad_values_are_refused_before_work(synthetic_root, small_panet):
    """The test settings refuse bad evaluation options (`TestSettings`: the one check, at the
    settings boundary); a plan of training episodes (flipped) is refused."""
    for key, value, message in (("encode", "batch", "must be one of 'image', 'episode'"),
                                ("cache_gb", -1, "must be a finite number >= 0"),
                                ("resolution", "full", "must be one of 'label', 'original'"),
                                ("batch_size", 0, "must be an integer >= 1")):
        assert TestSettings(**{key: value}).problems() == [
            f"test.{key}={value!r}: {message}"]
    training = make_episode_dataset(synthetic_setting(synthetic_root), 2, 0, train=True)
    with pytest.raises(ValueError, match="flips"):
        plan_runs([training])


def test_bench_counts_a_masks_only_tree(make_voc_tree):
    """scripts/bench_eval.py --count on a tree without JPEGs (a short protocol): today's calls are
    W*S + Q per episode, the distinct images those the sampler draws (no support vanishes at 417
    px here), the new calls lie between them."""
    root = make_voc_tree(blob_labels(40, classes=range(1, 11), per_image=3))
    for jpeg in (root / IMAGE_DIR).iterdir():
        jpeg.unlink()
    bench = load_script("bench_eval")
    row = bench.count_calls(root, fold=0, ways=2, shots=2, workers=0, cache_gb=0, episodes=12)
    lists = VocSource(root, "trainaug", images=False).class_images()
    drawn = {image for run in range(bench.PAPER_RUNS)
             for episode in sample_episodes(lists, fold_classes(20, 0, train=False), 2, 2, 1,
                                            12, bench.PAPER_SEED + run)
             for ids in (*episode.support_ids, *episode.query_ids) for image in ids}
    assert row["calls_episode"] == bench.PAPER_RUNS * 12 * (2 * 2 + 1)
    assert row["distinct_images"] == len(drawn)
    assert row["calls_new"] == row["support_images"] + row["query_images"]  # cache_gb=0
    assert row["distinct_images"] < row["calls_new"] < row["calls_episode"]
