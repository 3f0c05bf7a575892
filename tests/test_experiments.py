"""train.py and test.py end to end on the synthetic dataset: checkpoints, exact resume,
interruption, non-finite losses, settings read from checkpoints, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO_ROOT, load_script
from panet.weights.checkpoint import load_checkpoint
from panet.training import NonFiniteLossError
from panet.evaluation.metrics import iou_from_counts
from conftest import load_experiment
from panet.report.statistics import EpisodeRecords, mismatch
from tolerance import assert_counts_close, assert_results_close

QUIET = {"--loglevel": "ERROR"}
# Toy scale: a few episodes over the fixture's small val split leave classes out or unsampled.
pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]


TRAIN, TEST = load_experiment("train"), load_experiment("test")


def train(root, out, named=("synthetic", "fast"), **train_updates):
    """train.py on the CPU: runs compared bitwise must be the same computation on one device."""
    run = TRAIN.run(named_configs=list(named), options=QUIET, config_updates={
        "device": "cpu", "data": {"root": str(root)},
        "train": {"output_dir": str(out), **train_updates}})
    assert run.status == "COMPLETED"
    return out / "checkpoints"


def evaluate(checkpoint, out, named=("fast",), data=None, **test_updates):
    updates = {"test": {"checkpoint": str(checkpoint), "output_dir": str(out), **test_updates}}
    if data:
        updates["data"] = data
    run = TEST.run(named_configs=list(named), options=QUIET, config_updates=updates)
    assert run.status == "COMPLETED"
    return json.loads((out / "results.json").read_text())


def assert_same_state(a, b):
    """Model and optimizer states equal bit for bit."""
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][index]["momentum_buffer"])


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    return train(synthetic_root, tmp_path_factory.mktemp("trained"))


def test_training_writes_checkpoints_carrying_the_config(trained):
    final, last = load_checkpoint(trained / "final.pt"), load_checkpoint(trained / "last.pt")
    assert final["step"] == last["step"] == 4
    assert final["config"]["data"]["name"] == "synthetic"
    assert final["config"]["train"]["steps"] == 4
    assert final["scheduler"]["last_epoch"] == 4
    assert set(final["rng"]) == {"python", "numpy", "torch", "cuda"}


def test_resumed_run_ends_with_the_same_weights(synthetic_root, trained, tmp_path):
    first_half = train(synthetic_root, tmp_path / "a", steps=2)
    resumed = train(synthetic_root, tmp_path / "b", resume=str(first_half / "last.pt"))
    assert load_checkpoint(first_half / "final.pt")["step"] == 2
    assert_same_state(load_checkpoint(resumed / "final.pt"), load_checkpoint(trained / "final.pt"))


def test_resume_refuses_a_different_setting(synthetic_root, trained, tmp_path):
    with pytest.raises(ValueError, match=r"data\.shots=5: the checkpoint was trained with 1"):
        train(synthetic_root, tmp_path, named=("synthetic", "fast", "5shot"),
              resume=str(trained / "final.pt"))


def test_resume_onto_other_data_says_so(synthetic_root, tmp_path, capfd):
    """The checkpoint records what it trained on (the per-class lists); resuming with a data.root
    holding other data warns in one line, resuming on the same data does not."""
    from panet.data.synthetic import generate

    first_half = train(synthetic_root, tmp_path / "a", steps=2)
    capfd.readouterr()
    train(synthetic_root, tmp_path / "same", steps=3, resume=str(first_half / "last.pt"))
    assert "resuming on other data" not in capfd.readouterr().err
    other = generate(tmp_path / "other", n_images=120, size=(120, 160), seed=4, coco=False)
    run = TRAIN.run(options=QUIET, config_updates={
        "device": "cpu", "data": {"root": str(other)},
        "train": {"resume": str(first_half / "last.pt"), "steps": 3,
                  "output_dir": str(tmp_path / "other-run")}})
    assert run.status == "COMPLETED"
    warned = [line for line in capfd.readouterr().err.splitlines()
              if "resuming on other data" in line]
    assert len(warned) == 1 and f"data.root={other}" in warned[0]


def test_interrupted_process_saves_and_resumes_exactly(synthetic_root, tmp_path):
    """SIGTERM a real train.py process mid-run, resume it, compare with an uninterrupted run."""
    steps = 12
    command = [sys.executable, "train.py", "-u", "with", "synthetic", "fast", "device=cpu",
               f"data.root={synthetic_root}", f"train.steps={steps}"]
    process = subprocess.Popen(command + [f"train.output_dir={tmp_path / 'cut'}"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output
    assert "interrupted: saved" in output, output
    stopped_at = load_checkpoint(last)["step"]
    assert 2 <= stopped_at < steps
    resumed = train(synthetic_root, tmp_path / "resumed", steps=steps, resume=str(last))
    straight = train(synthetic_root, tmp_path / "straight", steps=steps)
    assert_same_state(load_checkpoint(resumed / "final.pt"), load_checkpoint(straight / "final.pt"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"the last good checkpoint is .*last\.pt"):
        train(synthetic_root, tmp_path, lr=1e8, steps=20, checkpoint_every=1)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert 1 <= state["step"] < 20
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "checkpoints" / "final.pt").exists()


def test_training_refuses_weak_supports(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="test-time setting"):
        train(synthetic_root, tmp_path, named=("synthetic", "fast", "bbox"))


def test_test_reads_the_setting_from_the_checkpoint(trained, synthetic_root, tmp_path):
    stored = evaluate(trained / "final.pt", tmp_path / "stored")
    setting = stored["setting"]
    assert setting["data"]["name"] == "synthetic" and setting["data"]["shots"] == 1
    assert setting["trained_steps"] == 4 and setting["runs"] == 2 and setting["episodes"] == 4
    assert len(stored["mean_iou_runs"]) == 2 and 0 <= stored["binary_iou"] <= 1
    assert sorted(stored["class_iou"]) == ["1", "2", "3", "4", "5"]  # fold 0's test classes
    overridden = evaluate(trained / "final.pt", tmp_path / "override", named=("fast", "5shot", "bbox"),
                          rule="corrected")
    assert overridden["setting"]["data"]["shots"] == 5
    assert overridden["setting"]["data"]["weak"] == "bbox"
    assert overridden["setting"]["rule"] == overridden["rule"] == "corrected"


def test_results_do_not_depend_on_the_test_batch_size(trained, tmp_path):
    """Within the contract's tolerance: the encoder sees other batches (tests/tolerance.py)."""
    one = evaluate(trained / "final.pt", tmp_path / "one", batch_size=1)
    three = evaluate(trained / "final.pt", tmp_path / "three", batch_size=3)
    assert_results_close(one, three)


def test_original_resolution_evaluation_runs(trained, tmp_path):
    result = evaluate(trained / "final.pt", tmp_path, resolution="original")
    assert result["setting"]["resolution"] == "original" and 0 <= result["binary_iou"] <= 1


def test_missing_imagenet_weights_name_the_file_and_the_config_key(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match=r"model\.weights=.*no such file.*vgg16-397923af\.pth"):
        TEST.run(named_configs=["synthetic", "fast", "notrain"], options=QUIET, config_updates={
            "data": {"root": str(synthetic_root)},
            "model": {"encoder": "vgg16", "weights": str(tmp_path / "vgg16-397923af.pth")}})


def test_test_without_checkpoint_says_what_to_do():
    with pytest.raises(ValueError, match="test.checkpoint"):
        TEST.run(named_configs=["fast"], options=QUIET)


def torchrun(script, *args, cwd=REPO_ROOT):
    """`script` under torchrun with 2 processes on the CPU (gloo), whatever GPUs exist."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               script, "-u", "with", "device=cpu", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_distributed_training_matches_one_process(synthetic_root, tmp_path):
    common = ["synthetic", "fast", f"data.root={synthetic_root}", "train.batch_size=2"]
    torchrun("train.py", *common, f"train.output_dir={tmp_path / 'ddp'}")
    single = train(synthetic_root, tmp_path / "single", batch_size=2)
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "final.pt")
    single = load_checkpoint(single / "final.pt")
    for key in single["model"]:
        assert torch.allclose(ddp["model"][key], single["model"][key], rtol=1e-4, atol=1e-6), key


def test_sharded_testing_equals_one_process(trained, tmp_path):
    """The same episodes and queries, numbers within the contract's tolerance (two processes
    batch the images differently)."""
    torchrun("test.py", "fast", f"test.checkpoint={trained / 'final.pt'}",
             f"test.output_dir={tmp_path / 'ddp'}", "test.episodes=5")
    sharded = json.loads((tmp_path / "ddp" / "results.json").read_text())
    single = evaluate(trained / "final.pt", tmp_path / "single", episodes=5)
    assert_results_close(sharded, single)
    records = [EpisodeRecords.load(tmp_path / side / "episodes.npz") for side in ("ddp", "single")]
    assert mismatch(*records) is None  # every rank's records gathered, the same episodes
    assert_counts_close(records[0].counts, records[1].counts)


def test_episode_records_recompute_the_results_and_compare_models(trained, tmp_path, capsys):
    image = evaluate(trained / "final.pt", tmp_path / "image")
    records = EpisodeRecords.load(tmp_path / "image" / "episodes.npz")
    classes = sorted(int(c) for c in image["class_iou"])
    assert len(records.run) == 2 * 4  # runs x episodes x 1 query
    recomputed = iou_from_counts(records.class_counts(classes).sum(axis=1))
    assert recomputed["mean_iou"].tolist() == image["mean_iou_runs"]
    assert recomputed["binary_iou"].tolist() == image["binary_iou_runs"]
    for name in ("mean_iou", "binary_iou"):
        low, high = image[f"{name}_ci"]
        assert 0 <= low <= high <= 1
    assert image["bootstrap"]["resamples"] == 1000

    evaluate(trained / "final.pt", tmp_path / "episode", encode="episode")
    compare = load_script("compare")
    capsys.readouterr()
    assert compare.main([str(tmp_path / "image"), str(tmp_path / "episode"),
                         "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "identical episodes in every test: 2 run(s), 8 queries" in out
    mean_line = next(line for line in out.splitlines() if line.startswith("| mean-IoU"))
    assert mean_line.split(" | ")[3] in ("+0.0", "-0.0")  # one model, two paths: float rounding

    other = evaluate(trained / "final.pt", tmp_path / "fold1", named=("fast", "2way"))
    assert other["setting"]["data"]["ways"] == 2
    assert compare.main([str(tmp_path / "image" / "results.json"), str(tmp_path / "fold1")]) == 2
    assert "data.ways: 1 (A1), 2 (B1)" in capsys.readouterr().err
