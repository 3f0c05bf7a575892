"""The three kinds of method of docs/your-own-method.md, each through the same commands as PANet
at toy scale (the small encoder at 65 px on generated data): trained with two seeds, tested
(both paths where it declares the fast one), segmenting images through the Segmenter and
predict.py, and compared with PANet over two seeds per side; the forward-only one also through
scripts/reproduce.py --synthetic --factory."""

import json

import numpy as np
import pytest
import torch

from conftest import load_script
from panet.data.label_png import load_label_png
from panet.data.transforms import image_tensor
from panet.inference import Segmenter, load_image
from panet.models.factory import query_logits
from panet.weights.checkpoint import load_checkpoint
from test_cli import command, toy

pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]
PANET = "panet.models:PANet"
METHODS = {"temperature": "examples.temperature:TemperaturePANet",  # a PANet variant
           "prior_decoder": "examples.prior_decoder:PriorDecoder",  # forward-only, multi-level
           "multi_prototype": "examples.multi_prototype:MultiPrototype"}  # several prototypes
SEEDS = (1234, 1235)
TEST = ["test.runs=1", "test.episodes=6", "data.workers=0"]


@pytest.fixture(scope="module")
def runs(synthetic_root, tmp_path_factory):
    """{(factory, seed): its training run folder}, trained with Adam (the small encoder from
    scratch), 4 steps each."""
    out = tmp_path_factory.mktemp("methods")
    found = {}
    for factory in (PANET, *METHODS.values()):
        for seed in SEEDS:
            run = out / f"{factory.split(':')[1]}-{seed}"
            assert command("train", *toy(synthetic_root), "train.optimizer=adam",
                           f"model.factory={factory}", f"seed={seed}",
                           f"train.output_dir={run}", cwd=out) == 0
            found[factory, seed] = run
    return found


def evaluated(runs, factory, seed, tmp_path, *extra):
    out = tmp_path / f"{factory.split(':')[1]}-{seed}-{'-'.join(extra) or 'default'}"
    assert command("test", f"test.checkpoint={runs[factory, seed]}", f"model.factory={factory}",
                   *TEST, *extra, f"test.output_dir={out}", cwd=tmp_path) == 0
    return out


@pytest.mark.parametrize("name", METHODS)
def test_each_method_trains_tests_and_compares_with_panet(runs, name, tmp_path, capsys):
    factory = METHODS[name]
    state = load_checkpoint(runs[factory, SEEDS[0]] / "checkpoints" / "final.pt")
    assert state["config"]["model"]["factory"] == factory
    assert state["identity"]["code"]["method_sha256"] is not None  # its source, recorded
    losses = json.loads((runs[factory, SEEDS[0]] / "metrics.json").read_text())
    terms = {"prior_decoder": ["seg", "aux"], "multi_prototype": ["seg"]}.get(
        name, ["seg", "align"])  # the terms of the method's loss (PANet's: its own)
    assert {f"{term}_loss" for term in terms} <= set(losses)  # logged by name
    mine = [evaluated(runs, factory, seed, tmp_path) for seed in SEEDS]
    record = json.loads((mine[0] / "results.json").read_text())
    # the method's training recipe and loss terms, in the checkpoint and in results.json
    for trained in (state["identity"], record["setting"]["trained"]):
        assert trained["loss_terms"] == terms
        assert (trained["training"]["train.optimizer"],
                trained["training"]["train.schedule"]) == ("adam", "multistep")
    declares_pools = name == "temperature"
    assert record["setting"]["encode_used"] == ("image" if declares_pools else "episode")
    if declares_pools:  # both paths where it declares the fast one
        per_episode = evaluated(runs, factory, SEEDS[0], tmp_path, "test.encode=episode")
        other = json.loads((per_episode / "results.json").read_text())
        assert abs(other["mean_iou"] - record["mean_iou"]) <= 1e-3
    panet = [evaluated(runs, PANET, seed, tmp_path) for seed in SEEDS]
    capsys.readouterr()
    assert load_script("compare").main([*map(str, mine), "--vs", *map(str, panet),
                                        "--resamples", "200"]) == 0
    report = capsys.readouterr().out
    assert factory in report and "2 trained models" in report


@pytest.mark.parametrize("name", METHODS)
def test_each_method_segments_images_as_its_forward_does(runs, name, folder_root, tmp_path):
    """The Segmenter's labels equal those of the model's forward on the same supports and
    query at the input size (through its parts or its forward, whichever it declares), and
    predict.py writes them."""
    factory = METHODS[name]
    checkpoint = runs[factory, SEEDS[0]] / "checkpoints" / "final.pt"
    segmenter = Segmenter.from_checkpoint(checkpoint, "cpu", factory=factory)
    assert (segmenter.through_forward is None) == (name != "prior_decoder")
    examples = folder_root / "examples"
    way = [[(examples / "support.jpg", examples / "support_mask.png")]]
    query = sorted((examples / "queries").iterdir())[:1]
    supports = segmenter.supports(way)
    found = segmenter.query_logits(supports, query)
    with torch.inference_mode():  # the model's forward on the same tensors
        support_images = supports.images.view(1, 1, 1, *supports.images.shape[1:])
        query_images = image_tensor(load_image(query[0]), segmenter.size)[None, None]
        out = segmenter.model(support_images, supports.fg[None], supports.bg[None], query_images)
    torch.testing.assert_close(found, query_logits(out, segmenter.model)[0], rtol=1e-4,
                               atol=1e-4)
    out_dir = tmp_path / "predicted"
    assert load_script("predict").main(
        ["--checkpoint", str(checkpoint), "--factory", factory, "--way",
         *map(str, way[0][0]), "--query", str(query[0]), "--out", str(out_dir), "--device",
         "cpu"]) == 0
    labels = load_label_png(out_dir / f"{query[0].stem}.png")
    assert np.array_equal(labels, segmenter.segment(way, query)[0].labels)


def test_a_forward_only_method_reproduces_a_table(synthetic_root, tmp_path):
    """scripts/reproduce.py --synthetic --factory: Table 3's jobs (2-way) train and test the
    forward-only method, and its table is written with its rows."""
    out = tmp_path / "prior"
    status = load_script("reproduce").main(
        ["--table", "3", "--synthetic", "--data-root", str(synthetic_root), "--out", str(out),
         "--steps", "1", "--test-episodes", "2", "--factory", METHODS["prior_decoder"]])
    assert status == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
            for line in (out / "table3.md").read_text().splitlines() if line.startswith("| ")}
    assert all(cell.strip() != "—" for cell in rows["PriorDecoder (ours)"])  # named, filled
    # the same runs, named, beside another method's rows (here: the same folder's)
    assert load_script("reproduce").main(
        ["--table", "3", "--synthetic", "--data-root", str(synthetic_root), "--out", str(out),
         "--steps", "1", "--test-episodes", "2", "--factory", METHODS["prior_decoder"],
         "--name", "Prior", "--also", f"Again={out}"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
            for line in (out / "table3.md").read_text().splitlines() if line.startswith("| ")}
    assert rows["Prior (ours)"] == rows["Again (ours)"] and "PANet (paper)" in rows
