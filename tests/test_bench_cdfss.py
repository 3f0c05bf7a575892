"""scripts/bench_eval.py --dataset: encoder calls of a cross-domain target's reference test
episodes, per-episode path against encode-once, on generated data in the targets' real layouts
(panet.data.synthetic_cdfss), checked against counts made here from the episode lists."""

import json

import pytest

from panet.data import make_episode_dataset
from panet.data.synthetic_cdfss import (DEFAULT_IMAGES_PER_CLASS, DEFAULT_LUNG_IMAGES,
                                        FSS_IMAGES, FSS_SPLITS, generate_cdfss)
from panet.settings import EpisodeSetting

from conftest import load_script

bench = load_script("bench_eval")
FOLDERS = {"deepglobe": "Deepglobe", "isic2018": "ISIC", "chestxray": "LungSegmentation",
           "fss1000": "FSS-1000"}
CONFIG_EPISODES = {"deepglobe": 600, "isic2018": 600, "chestxray": 600}  # configs/<target>.yaml
IMAGES = {"deepglobe": 6 * DEFAULT_IMAGES_PER_CLASS, "isic2018": 3 * DEFAULT_IMAGES_PER_CLASS,
          "chestxray": DEFAULT_LUNG_IMAGES, "fss1000": FSS_SPLITS["test"] * FSS_IMAGES}


@pytest.fixture(scope="module")
def cdfss(tmp_path_factory):
    return generate_cdfss(tmp_path_factory.mktemp("bench_cdfss") / "cdfss", seed=1)


def counted_here(root, dataset, shots, episodes):
    """Per-episode calls, distinct images, distinct supports and distinct queries of the episode
    lists drawn for the named config's seed (0), counted from the lists themselves."""
    setting = EpisodeSetting(name=dataset, root=str(root), fold_style="all", shots=shots,
                             size=400)
    drawn = make_episode_dataset(setting, episodes, 0, train=False).episodes
    supports = {image for episode in drawn for way in episode.support_ids for image in way}
    queries = {image for episode in drawn for way in episode.query_ids for image in way}
    per_episode = sum(len(episode.support_ids[0]) + len(episode.query_ids[0])
                      for episode in drawn)
    assert all(len(e.support_ids) == 1 and len(e.support_ids[0]) == shots
               and len(e.query_ids[0]) == 1 for e in drawn)
    return per_episode, len(supports | queries), len(supports), len(queries)


@pytest.mark.parametrize("dataset", sorted(FOLDERS))
@pytest.mark.parametrize("shots", [1, 5])
def test_counts_match_the_episode_lists(cdfss, dataset, shots):
    root = cdfss / FOLDERS[dataset]
    row = bench.count_target(dataset, shots, root)
    episodes = CONFIG_EPISODES.get(dataset, IMAGES["fss1000"])  # FSS-1000: every test image
    per_episode, distinct, supports, queries = counted_here(root, dataset, shots, episodes)
    assert row["episodes"] == episodes and row["seed"] == 0 and row["size"] == 400
    assert row["protocol"] == "patnet"
    assert row["calls_episode"] == per_episode == episodes * (shots + 1)
    assert row["distinct_images"] == distinct <= IMAGES[dataset]
    assert (row["support_images"], row["query_images"]) == (supports, queries)
    assert row["calls_new"] == distinct  # a 1 GiB cache holds every feature of these few images
    assert row["ratio"] == pytest.approx(per_episode / distinct)
    # without a cache an image that is a support and a query is encoded in both steps
    uncached = bench.count_target(dataset, shots, root, cache_gb=0)
    assert uncached["calls_new"] == supports + queries


def test_fss1000_every_test_image_is_a_query_and_supports_add_none(cdfss):
    """FSS-1000: the queries are the split's images and the supports come from the queries'
    own folders, so encode-once encodes each test image once: ratio S + 1."""
    rows = [bench.count_target("fss1000", shots, cdfss / "FSS-1000") for shots in (1, 5)]
    for shots, row in zip((1, 5), rows):
        assert row["query_images"] == row["distinct_images"] == IMAGES["fss1000"]
        assert row["ratio"] == shots + 1


def test_the_command_prints_the_counts(cdfss, capsys):
    root = cdfss / "Deepglobe"
    assert bench.main(["--dataset", "deepglobe", "--data-root", str(root), "--shots", "1", "5",
                       "--episodes", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("deepglobe (patnet episodes, seed 0, 400 px)")
    for shots, line in zip((1, 5), lines[-2:]):
        per_episode, distinct, supports, queries = counted_here(root, "deepglobe", shots, 60)
        cells = [cell.strip().replace(",", "") for cell in line.strip("|").split("|")]
        assert cells[:6] == [str(shots), "60", str(per_episode), str(distinct), str(distinct),
                             str(supports + queries)]
        assert float(cells[6]) == pytest.approx(per_episode / distinct, abs=0.005)
    assert bench.main(["--dataset", "chestxray", "--data-root", str(cdfss / "LungSegmentation"),
                       "--shots", "1", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["calls_episode"] == 1200 and row["distinct_images"] <= DEFAULT_LUNG_IMAGES


def test_refusals(cdfss, tmp_path, capsys):
    assert bench.main(["--dataset", "fss1000", "--data-root", str(tmp_path)]) == 2
    assert "splits/test.txt does not exist" in capsys.readouterr().err
    assert bench.main(["--dataset", "fss1000", "--data-root", str(cdfss / "FSS-1000"),
                       "--episodes", str(IMAGES["fss1000"] + 1), "--shots", "1"]) == 2
    assert "must be at most 30" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--dataset", "deepglobe", "--count", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["--data-root", str(tmp_path)])
