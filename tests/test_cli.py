"""train.py and test.py as a user types them: resuming from the checkpoint alone, run folders
(also under torchrun), every bad value refused before any work with the key named, files a
shared machine can read, logs a person can read."""

import json
from dataclasses import fields
import os
import shlex
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO_ROOT, blob_labels, load_script
from panet.weights.checkpoint import load_checkpoint
from panet.data.label_png import save_label_png
from conftest import load_experiment
from panet.run.experiments import run_from_command_line
from panet.settings import SECTIONS, RunSettings

TRAIN, TEST = load_experiment("train"), load_experiment("test")
SCRIPTS = {"train": TRAIN, "test": TEST}
pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]


def command(script, *updates, cwd):
    """Run `python <script>.py with <updates>` in this process from folder `cwd`, as the
    command line would; returns the exit status (0 when the run completed)."""
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        run_from_command_line(SCRIPTS[script], [f"{script}.py", "with", *updates])
        return 0
    except SystemExit as stop:
        return stop.code
    finally:
        os.chdir(previous)


def toy(root):
    return ["synthetic", "fast", f"data.root={root}"]


def tensorboard_steps(run_dir, tag):
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


@pytest.fixture(scope="module")
def fold0_run(synthetic_root, tmp_path_factory):
    """A 4-step training run recorded in <cwd>/runs/1, as `python train.py with ...` does."""
    cwd = tmp_path_factory.mktemp("cwd")
    assert command("train", *toy(synthetic_root), cwd=cwd) == 0
    return cwd / "runs" / "1"


def test_a_run_folder_holds_the_record_checkpoints_and_tensorboard(fold0_run):
    assert sorted(p.name for p in fold0_run.parent.iterdir() if p.name != "_sources") == ["1"]
    for name in ("config.json", "run.json", "cout.txt", "metrics.json", "checkpoints/final.pt"):
        assert (fold0_run / name).is_file(), name
    metrics = json.loads((fold0_run / "metrics.json").read_text())
    assert metrics["loss"]["steps"] == [1, 2, 3, 4]
    assert tensorboard_steps(fold0_run, "loss") == [1, 2, 3, 4]
    assert tensorboard_steps(fold0_run, "lr") == [1, 2, 3, 4]


def test_resume_from_the_checkpoint_alone_continues_in_its_run_folder(synthetic_root, fold0_run,
                                                                      tmp_path):
    cwd = tmp_path
    assert command("train", *toy(synthetic_root), "train.steps=2", cwd=cwd) == 0
    run = cwd / "runs" / "1"
    assert command("train", "train.resume=runs/1", "train.steps=4", cwd=cwd) == 0
    assert sorted(p.name for p in (cwd / "runs").iterdir() if p.name != "_sources") == ["1"]
    resumed, straight = (load_checkpoint(r / "checkpoints" / "final.pt") for r in (run, fold0_run))
    assert resumed["step"] == 4 and resumed["config"]["data"]["name"] == "synthetic"
    for key in straight["model"]:
        assert resumed["model"][key].equal(straight["model"][key]), key
    assert json.loads((run / "metrics.json").read_text())["loss"]["steps"] == [1, 2, 3, 4]
    assert tensorboard_steps(run, "loss") == [1, 2, 3, 4]


def test_resume_refuses_a_changed_setting_and_names_the_key(synthetic_root, fold0_run, tmp_path,
                                                            capsys):
    status = command("train", f"train.resume={fold0_run}", "train.steps=6", "data.shots=5",
                     "train.lr=0.5", cwd=tmp_path)
    err = capsys.readouterr().err
    assert status != 0
    assert "data.shots=5: the checkpoint was trained with 1" in err
    assert "train.lr=0.5: the checkpoint was trained with" in err
    assert load_checkpoint(fold0_run / "checkpoints" / "final.pt")["step"] == 4


def test_test_accepts_a_run_folder_and_warns_on_classes_seen_in_training(fold0_run, tmp_path,
                                                                         capsys):
    assert command("test", "fast", f"test.checkpoint={fold0_run}", cwd=tmp_path) == 0
    out = capsys.readouterr().out
    assert f"is a run folder: testing {fold0_run / 'checkpoints' / 'final.pt'}" in out
    record = json.loads((tmp_path / "runs" / "1" / "results.json").read_text())
    assert record["setting"]["checkpoint"] == str(fold0_run / "checkpoints" / "final.pt")
    assert record["test_classes_seen_in_training"] is False
    assert tensorboard_steps(tmp_path / "runs" / "1", "test/mean_iou") == [4]

    with pytest.warns(UserWarning, match="testing on classes the checkpoint trained on"):
        assert command("test", "fast", f"test.checkpoint={fold0_run}", "data.fold=1",
                       cwd=tmp_path) == 0
    record = json.loads((tmp_path / "runs" / "2" / "results.json").read_text())
    assert record["test_classes_seen_in_training"] is True


def test_torchrun_without_an_output_dir_shares_rank_0s_run_folder(synthetic_root, tmp_path):
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(REPO_ROOT / "train.py"), "with", *toy(synthetic_root), "train.batch_size=2",
            "device=cpu"]  # 2 processes on any machine (one GPU would refuse them)
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = [p.name for p in (tmp_path / "runs").iterdir() if p.name != "_sources"]
    assert runs == ["1"]
    assert load_checkpoint(tmp_path / "runs" / "1" / "checkpoints" / "final.pt")["step"] == 4


def test_plain_log_lines_when_output_is_not_a_terminal(synthetic_root, tmp_path):
    argv = [sys.executable, str(REPO_ROOT / "train.py"), "with", *toy(synthetic_root),
            "train.log_every=2", f"train.output_dir={tmp_path / 'run'}"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("train step ")]
    assert [line.split()[2] for line in lines] == ["2/4", "4/4"]
    assert all(" loss " in line and " lr " in line and "s/step" in line and "ETA" in line
               for line in lines)
    assert "\r" not in result.stdout + result.stderr
    assert "train step 4/4" in (tmp_path / "run" / "cout.txt").read_text()  # sacred's record
    assert "Changed type of config entry" not in result.stderr  # model.weights=None is expected


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(synthetic_root, tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert command("train", *toy(synthetic_root), "train.steps=2", cwd=tmp_path) == 0
        assert command("test", "fast", "test.checkpoint=runs/1", cwd=tmp_path) == 0
    finally:
        os.umask(previous)
    for path in (tmp_path / "runs" / "1" / "checkpoints" / "final.pt",
                 tmp_path / "runs" / "1" / "checkpoints" / "last.pt",
                 tmp_path / "runs" / "2" / "results.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_non_finite_loss_before_any_checkpoint_names_none(synthetic_root, tmp_path):
    argv = [sys.executable, str(REPO_ROOT / "train.py"), "with", *toy(synthetic_root),
            "train.lr=1e8", "train.steps=20", "train.checkpoint_every=0",
            f"train.output_dir={tmp_path}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "no checkpoint had been saved yet" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_interrupt_hint_is_a_command_that_works_as_printed(synthetic_root, tmp_path):
    out = tmp_path / "cut"
    argv = [sys.executable, str(REPO_ROOT / "train.py"), "with", *toy(synthetic_root),
            "train.steps=400", "train.checkpoint_every=1", f"train.output_dir={out}"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.terminate()  # SIGTERM once training has started
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130 and "Traceback" not in output, output
    hint = output[output.index("continue with") + len("continue with"):].strip().splitlines()[0]
    assert hint.startswith("python train.py with train.resume=")
    assert hint in (out / "cout.txt").read_text()  # where a cluster job's output is read
    words = shlex.split(hint)
    stopped_at = load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert stopped_at < 400
    resumed = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *words[2:],
                              "train.steps=" + str(stopped_at + 2)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(out / "checkpoints" / "final.pt")["step"] == stopped_at + 2


# ---- every bad value stops the run at once, naming the key -----------------------------------

NOT_WRITABLE = "/proc/panet-test"
# (script, config updates, the key the message must name); every key a settings rule checks
# appears at least once (checked below)
BAD_VALUES = [
    ("train", ["seed=-1"], "seed"),
    ("train", ["device=gpu"], "device"),
    ("train", ["tf32=yes"], "tf32"),
    ("train", ["precision=fp64"], "precision"),
    ("test", ["notrain", "memory_format=nhwc"], "memory_format"),
    ("train", ["data.name=imagenet"], "data.name"),
    ("train", ["data.root=''"], "data.root"),
    ("train", ["data.root=/nonexistent/VOC2012"], "data.root"),
    ("test", ["notrain", "data.root=/nonexistent/VOC2012"], "data.root"),
    ("train", ["data.fold=4"], "data.fold"),
    ("train", ["data.fold=-1"], "data.fold"),
    ("train", ["data.n_folds=5"], "data.n_folds"),  # PASCAL-5i has 4
    ("train", ["data.n_folds=1"], "data.n_folds"),
    ("train", ["data.test_classes=[2,2]"], "data.test_classes"),
    ("train", ["data.test_classes=[]"], "data.test_classes"),
    ("train", ["data.ways=0"], "data.ways"),
    ("train", ["data.shots=0"], "data.shots"),
    ("train", ["data.queries=0"], "data.queries"),
    ("train", ["data.size=0"], "data.size"),
    ("train", ["data.train_split=''"], "data.train_split"),
    ("test", ["data.test_split=''"], "data.test_split"),
    ("train", ["data.year=0"], "data.year"),
    ("train", ["data.fold_style=random"], "data.fold_style"),
    ("train", ["data.fold_style=interleaved"], "data.fold_style"),  # PASCAL has no such split
    ("train", ["data.cache_dir=3"], "data.cache_dir"),
    ("train", ["data.lists_dir=''"], "data.lists_dir"),
    ("train", ["data.workers=-1"], "data.workers"),
    ("train", ["data.weak=bbox"], "data.weak"),  # a test-time setting
    ("test", ["data.weak=points"], "data.weak"),
    ("test", ["data.bbox_instance=smallest"], "data.bbox_instance"),
    ("test", ["data.scribble_dilation=-2"], "data.scribble_dilation"),
    ("test", ["data.coco_labels=all"], "data.coco_labels"),
    ("train", ["data.protocol=pascal"], "data.protocol"),
    ("test", ["notrain", "data.protocol=patnet"], "data.protocol"),  # PASCAL has panet's only
    ("test", ["notrain", "test.episodes_file=/nonexistent/episodes.csv"], "test.episodes_file"),
    ("test", ["notrain", "data.name=deepglobe", "data.fold_style=all", "test.rule=released"],
     "test.rule"),  # PATNet's metric counts every label
    ("test", ["notrain", "data.name=deepglobe", "data.fold_style=all", "test.rule=corrected",
              "data.ways=2"], "data.ways"),  # PATNet's episodes are 1-way
    ("test", ["notrain", "data.name=deepglobe", "test.rule=corrected"],
     "data.fold_style"),  # every class of a target is tested
    ("train", ["model.encoder=alexnet"], "model.encoder"),
    ("train", ["model.weights=/nonexistent/vgg16-397923af.pth", "model.encoder=vgg16"],
     "model.weights"),
    ("train", ["model.weights=vgg16-397923af.pth"], "model.weights"),  # small encoder
    ("train", ["model.alpha=0"], "model.alpha"),
    ("train", ["model.factory=PANet"], "model.factory"),  # more in tests/test_method.py
    ("train", ["train.steps=0"], "train.steps"),
    ("train", ["train.steps=-5"], "train.steps"),
    ("train", ["train.batch_size=0"], "train.batch_size"),
    ("train", ["train.optimizer=lbfgs"], "train.optimizer"),
    ("train", ["train.lr=-0.1"], "train.lr"),
    ("train", ["train.momentum=1.5"], "train.momentum"),
    ("train", ["train.weight_decay=-1"], "train.weight_decay"),
    ("train", ["train.milestones=[20,10]"], "train.milestones"),
    ("train", ["train.gamma=0"], "train.gamma"),
    ("train", ["train.schedule=step"], "train.schedule"),
    ("train", ["train.freeze_encoder=conv9"], "train.freeze_encoder"),
    ("train", ["train.grad_clip=-1"], "train.grad_clip"),
    ("train", ["train.align_weight=-1"], "train.align_weight"),
    ("train", ["train.checkpoint_every=-1"], "train.checkpoint_every"),
    ("train", ["train.snapshot_every=-1"], "train.snapshot_every"),
    ("train", ["train.log_every=0"], "train.log_every"),
    ("train", [f"train.output_dir={NOT_WRITABLE}"], "train.output_dir"),
    ("train", ["train.resume=runs/99"], "train.resume"),
    ("test", ["test.checkpoint=runs/10"], "test.checkpoint"),
    ("test", [], "test.checkpoint"),  # nothing to evaluate
    ("test", ["notrain", "test.checkpoint=x.pt"], "test.checkpoint"),
    ("test", ["test.notrain=yes"], "test.notrain"),
    ("test", ["test.runs=0"], "test.runs"),
    ("test", ["test.episodes=0"], "test.episodes"),
    ("test", ["test.batch_size=0"], "test.batch_size"),
    ("test", ["test.rule=strict"], "test.rule"),
    ("test", ["test.resolution=foo"], "test.resolution"),
    ("test", ["test.bootstrap=-1"], "test.bootstrap"),
    ("test", ["notrain", f"test.output_dir={NOT_WRITABLE}"], "test.output_dir"),
    ("test", ["test.encode=batch"], "test.encode"),
    ("test", ["test.cache_gb=-1"], "test.cache_gb"),
    ("test", ["notrain", f"test.cache_dir={NOT_WRITABLE}"], "test.cache_dir"),
    ("test", ["notrain", "test.overwrite=1"], "test.overwrite"),
    # values that only the data, the hardware or numpy can refuse: found before any work too
    ("train", ["data.ways=50"], "data.ways"),  # more ways than the fold's training classes
    ("test", ["notrain", "data.ways=6"], "data.ways"),  # than its 5 test classes
    ("train", ["data.queries=1000000"], "data.queries"),
    ("train", [f"seed={2 ** 40}"], "seed"),
    ("train", ["device=cuda:99"], "device"),
    ("test", ["notrain", f"test.episodes={10 ** 12}"], "test.episodes"),
]


def test_every_validated_key_has_a_bad_value_case():
    covered = {key for _, _, key in BAD_VALUES}
    keys = {kind.key(f.name) for kind in (RunSettings, *SECTIONS.values()) for f in fields(kind)}
    assert keys <= covered, sorted(keys - covered)


@pytest.mark.parametrize("script,updates,key", BAD_VALUES,
                         ids=[" ".join(u) or "no-checkpoint" for _, u, _ in BAD_VALUES])
def test_bad_value_stops_before_any_work_naming_the_key(synthetic_root, tmp_path, capsys, script,
                                                        updates, key):
    status = command(script, *toy(synthetic_root), *updates, cwd=tmp_path)
    err = capsys.readouterr().err
    assert status not in (0, None)
    assert f"{key}=" in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder, checkpoint or results.json


def test_a_bad_value_exits_within_seconds_with_one_line(tmp_path):
    argv = [sys.executable, str(REPO_ROOT / "test.py"), "with", "test.resolution=foo"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "test.resolution='foo': must be one of 'label', 'original'" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_an_output_dir_holding_a_run_is_not_overwritten(synthetic_root, fold0_run, tmp_path,
                                                         capsys):
    status = command("train", *toy(synthetic_root), f"train.output_dir={fold0_run}", cwd=tmp_path)
    assert status != 0
    assert f"continue it with train.resume={fold0_run}" in capsys.readouterr().err


def test_test_refuses_a_training_run_folder_or_earlier_results_as_its_output(
        fold0_run, tmp_path, capsys):
    """test.output_dir must not be a training run (its config.json, run.json and metrics.json
    would be overwritten) nor a folder holding results, unless test.overwrite."""
    before = (fold0_run / "metrics.json").read_bytes()
    status = command("test", "fast", f"test.checkpoint={fold0_run}",
                     f"test.output_dir={fold0_run}", cwd=tmp_path)
    assert status != 0 and "holds a training run" in capsys.readouterr().err
    assert (fold0_run / "metrics.json").read_bytes() == before
    out = tmp_path / "test"
    assert command("test", "fast", f"test.checkpoint={fold0_run}", f"test.output_dir={out}",
                   cwd=tmp_path) == 0
    first = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert command("test", "fast", f"test.checkpoint={fold0_run}", f"test.output_dir={out}",
                   "test.episodes=3", cwd=tmp_path) != 0
    assert "already holds results" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == first
    assert command("test", "fast", f"test.checkpoint={fold0_run}", f"test.output_dir={out}",
                   "test.episodes=3", "test.overwrite=True", cwd=tmp_path) == 0
    assert json.loads((out / "results.json").read_text())["setting"]["episodes"] == 3


def test_bad_values_leave_nothing_behind(fold0_run, tmp_path, capsys):
    """A bad data.root with a checkpoint (checked after the checkpoint's settings are merged),
    and an output folder whose parents do not exist yet (the writability probe removes the
    folders it made), stop before sacred makes a run folder."""
    assert command("test", "fast", f"test.checkpoint={fold0_run}", "data.root=/nonexistent",
                   cwd=tmp_path) != 0
    assert "data.root='/nonexistent': no such folder" in capsys.readouterr().err
    assert command("train", "synthetic", "fast", "data.root=/nonexistent",
                   f"train.output_dir={tmp_path / 'a' / 'b' / 'c'}", cwd=tmp_path) != 0
    assert list(tmp_path.iterdir()) == []


def test_a_data_root_missing_its_parts_is_refused_naming_them(tmp_path, capsys):
    """An existing but empty PASCAL root: one line naming the folder expected and where the
    official files come from, and nothing made."""
    root = tmp_path / "VOC2012"
    root.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert command("test", "voc", "notrain", "model.encoder=small", "model.weights=None",
                   f"data.root={root}", cwd=cwd) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"data.root='{root}': expected folder" in error
    assert "host.robots.ox.ac.uk" in error and list(cwd.iterdir()) == []


def test_a_checkpoint_whose_tensors_do_not_fit_is_refused_before_work(fold0_run, tmp_path,
                                                                      capsys):
    """A checkpoint with a tensor of another shape, of another dtype, or holding NaN: one line
    naming it, before any folder is made."""
    state = load_checkpoint(fold0_run / "checkpoints" / "final.pt")
    name = next(iter(state["model"]))
    for index, (change, said) in enumerate(((lambda t: t[:1], "is torch.float32 (1,"),
                                            (lambda t: t.long(), "is torch.int64"),
                                            (lambda t: t * float("nan"), "holds NaN or"))):
        broken = tmp_path / f"broken-{index}.pt"
        torch.save({**state, "model": {**state["model"], name: change(state["model"][name])}},
                   broken)
        cwd = tmp_path / f"cwd-{index}"
        cwd.mkdir()
        assert command("test", "fast", f"test.checkpoint={broken}", cwd=cwd) != 0
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and f"{name} {said}" in error, error
        assert list(cwd.iterdir()) == []


def test_a_wrong_weights_file_is_named_with_its_key(tmp_path, capsys):
    """A file that is not the encoder's ImageNet weights: the error names model.weights."""
    wrong = tmp_path / "vgg16-397923af.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    from panet.models.builder import build_model
    from panet.settings import ModelSettings

    with pytest.raises(ValueError, match=r"^model\.weights='.*vgg16-397923af\.pth': .*Point "
                                         r"model\.weights at torchvision's ImageNet file"):
        build_model(ModelSettings(weights=str(wrong)))


# ---- scripts/prepare_voc.py ---------------------------------------------------------------


def test_prepare_voc_lists_every_bad_mask_and_writes_nothing(make_voc_tree, capsys):
    labels = blob_labels(4, classes=[1, 2])
    root = make_voc_tree(labels, class_lists=False)
    (root / "SegmentationClassAug" / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    bad = labels["img_003"].copy()
    bad[3, 3] = 42
    save_label_png(root / "SegmentationClassAug" / "img_003.png", bad)
    status = load_script("prepare_voc").main([str(root)])
    out = capsys.readouterr().out
    assert status == 2
    assert "2 of 4 masks cannot be used" in out
    assert "img_001.png" in out and "img_003.png holds labels [42]" in out
    assert not (root / "ImageSets" / "Segmentation" / "trainaug").exists()


def test_prepare_voc_out_folder_is_read_through_data_lists_dir(make_voc_tree, tmp_path, capsys):
    root = make_voc_tree(blob_labels(12, classes=[1, 2, 3, 4]), class_lists=False)
    out = tmp_path / "lists"
    assert load_script("prepare_voc").main([str(root), "--out", str(out)]) == 0
    assert f"data.lists_dir={out}" in capsys.readouterr().out
    from panet.data import make_episode_dataset
    from panet.settings import EpisodeSetting

    setting = EpisodeSetting(root=str(root), size=32, lists_dir=str(out))
    dataset = make_episode_dataset(setting, 3, 0, False)
    assert len(dataset) == 3 and np.all([e.class_ids[0] in (1, 2, 3, 4) for e in dataset.episodes])
