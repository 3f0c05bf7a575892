"""A full disk (panet/diskspace.py): a checkpoint that does not fit stops with one line (file,
size needed, space free, previous file intact, how to continue), and train.py warns at its
first step when its checkpoints will not fit. On a real 1 MiB tmpfs (root only)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT
from panet.base.files import DiskFullError, format_size
from panet.base.lock import RunFolderLock
from panet.run.folder import Checkpointer, RunFolder
from panet.settings import TrainSettings
from panet.weights.checkpoint import load_checkpoint


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted on tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def training_state(width):
    """(model, optimizer, scheduler) after one SGD step: `width` x `width` weights, with their
    momentum buffers."""
    torch.manual_seed(0)
    model = torch.nn.Linear(width, width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, width)).sum().backward()
    optimizer.step()
    return dict(model=model, optimizer=optimizer,
                scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 10))


def checkpointer(folder, width, start=0, **train):
    """The Checkpointer of a run in `folder` whose model is `width` x `width` weights."""
    state = training_state(width)
    return Checkpointer(RunFolder(folder), TrainSettings(**train), start,
                        lambda step: dict(step=step, config={"width": width}, **state))


def save(path, width, step=1):
    """Save checkpoint `path` (<run>/checkpoints/<name>.pt) of a `width` run at `step`."""
    return checkpointer(path.parent.parent, width).save(step, path)


def test_a_checkpoint_that_does_not_fit_says_so_in_one_line_and_keeps_the_previous(small_disk,
                                                                                    tmp_path):
    run = small_disk / "run"
    last = run / "checkpoints" / "last.pt"
    save(last, width=8)
    before = load_checkpoint(last)
    needed = save(tmp_path / "elsewhere.pt", width=600, step=2).stat().st_size  # > 2.7 MiB
    with pytest.raises(DiskFullError) as raised:
        save(last, width=600, step=2)
    message = str(raised.value)
    assert message == (
        f"could not write {last}: no space left on the device (it needs {format_size(needed)}, "
        f"{format_size(shutil.disk_usage(small_disk).free)} are free there); the previous "
        f"last.pt is intact; free some space, then continue with: python train.py with "
        f"train.resume={run}")
    after = load_checkpoint(last)
    assert after["step"] == 1 and torch.equal(after["model"]["weight"], before["model"]["weight"])
    assert sorted(path.name for path in last.parent.iterdir()) == ["last.pt"]  # no partial file


def test_a_first_checkpoint_that_does_not_fit_says_to_run_again(small_disk):
    final = small_disk / "run" / "checkpoints" / "final.pt"
    with pytest.raises(DiskFullError, match=r"nothing was overwritten \(there was no final\.pt "
                                            r"yet\); no checkpoint was saved yet: free some space, "
                                            r"then run the same command again$"):
        save(final, width=600)
    assert list(final.parent.iterdir()) == []


def test_train_py_warns_at_its_first_step_then_stops_at_the_save(small_disk, synthetic_root):
    run = small_disk / "run"
    argv = [sys.executable, "train.py", "with", "synthetic", "fast", f"data.root={synthetic_root}",
            f"train.output_dir={run}"]  # 4 steps, last.pt at step 2 (and final.pt): ~7 MiB each
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: {run / 'checkpoints'} has ") and " (2 files of " in warnings[0], result.stdout
    errors = [line for line in result.stderr.splitlines() if "could not write" in line]
    assert len(errors) == 1, result.stderr
    assert f"{run / 'checkpoints' / 'last.pt'}: no space left on the device (it needs " \
        in errors[0]
    assert errors[0].endswith("no checkpoint was saved yet: free some space, then run the same "
                              "command again")


def naive_checkpoint_count(start, steps, checkpoint_every, snapshot_every, last_exists):
    """The files the training loop writes, step by step, that were not there before (final.pt
    always: a new file or the new copy of one); last.pt at least every tenth of the run."""
    written = set()
    tenth = -(-steps // 10)
    for step in range(start + 1, steps + 1):
        if checkpoint_every and (step % checkpoint_every == 0 or step % tenth == 0):
            written.add("last.pt")
        if snapshot_every and step % snapshot_every == 0:
            written.add(f"snapshot_{step}.pt")
    if last_exists:
        written.discard("last.pt")
    return len(written) + 1


@pytest.mark.parametrize("last_exists", [False, True])
def test_the_files_to_write_are_counted_like_the_training_loop(tmp_path, last_exists):
    if last_exists:
        RunFolder(tmp_path).checkpoints.mkdir()
        RunFolder(tmp_path).last.touch()
    for start in (0, 3, 10, 29):
        for steps in (max(start, 1), start + 1, 30):
            for every in (0, 1, 4, 10):
                for snapshot_every in (0, 1, 7, 10):
                    expected = naive_checkpoint_count(start, steps, every, snapshot_every,
                                                      last_exists)
                    found = checkpointer(tmp_path, 2, start, steps=steps,
                                         checkpoint_every=every,
                                         snapshot_every=snapshot_every).files_to_write()
                    assert found == expected


def test_a_short_run_keeps_a_last_checkpoint_every_tenth_of_its_steps(tmp_path):
    """A 300-step toy run with the default checkpoint_every (1000) saves last.pt every 30 steps
    and can be resumed after a kill; checkpoint_every=0 keeps none."""
    assert checkpointer(tmp_path, 2, steps=300).last_every == 30
    assert checkpointer(tmp_path, 2, steps=30000).last_every == 1000  # the paper's run: as set
    assert checkpointer(tmp_path, 2, steps=300, checkpoint_every=0).last_every == 0
    saving = checkpointer(tmp_path, 2, steps=300)
    for step in range(1, 31):
        saving.step(step)
    assert load_checkpoint(RunFolder(tmp_path).last)["step"] == 30


def test_the_space_warning_compares_the_free_space_with_the_tensors(tmp_path, capsys,
                                                                    monkeypatch):
    """The estimate is the bytes of the model's and the optimizer's tensors: 600 x 600 float32
    weights, 600 biases, and as many momentum values."""
    size = 2 * 4 * (600 * 600 + 600)
    saving = checkpointer(tmp_path, 600, steps=30, checkpoint_every=10, snapshot_every=0)
    monkeypatch.setattr("panet.run.folder.free_space", lambda path: 2 * size)
    saving.warn_if_short_of_space(1)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr("panet.run.folder.free_space", lambda path: 2 * size - 1)
    saving.warn_if_short_of_space(1)
    assert capsys.readouterr().out == (
        f"warning: {tmp_path / 'checkpoints'} has {format_size(2 * size - 1)} free, but this "
        f"run's checkpoints need about {format_size(2 * size)} (2 files of {format_size(size)}): "
        "the first save that does not fit will stop it, keeping the previous checkpoint\n")


def fill(disk, leave: int) -> None:
    """Fill `disk` up to `leave` free bytes (a page or so more, tmpfs counts pages)."""
    free = shutil.disk_usage(disk).free
    if free > leave:
        (disk / "filler").write_bytes(b"\0" * (free - leave))


@pytest.mark.parametrize("leave", [0, 100_000])
def test_a_nearly_full_disk_at_start_up_says_so_in_one_line_and_leaves_nothing(
        small_disk, synthetic_root, leave):
    """test.py and train.py with their run folder on a disk with 0 or about 100 KB free: one
    line naming the key and the space needed, no record (run.json, config.json) begun."""
    fill(small_disk, leave)
    for script, key in (("test.py", "test.output_dir"), ("train.py", "train.output_dir")):
        out = small_disk / script
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / script), "with", "synthetic", "fast",
             f"data.root={synthetic_root}", "data.workers=0", f"{key}={out}",
             *(["test.notrain=True"] if script == "test.py" else [])],
            cwd=small_disk.parent, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(errors) == 1, result.stderr
        assert errors[0].startswith(f"{key}=") and "free there, and a run needs 512.0 KiB" in \
            errors[0], errors[0]
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_a_lock_on_a_full_disk_says_so_in_one_line(small_disk):
    folder = small_disk / "run"
    folder.mkdir()
    fill(small_disk, 0)
    with pytest.raises(DiskFullError, match=r"cannot write .*run/\.lock, which says who writes "
                                            r"the run folder: no space left on the device"):
        RunFolderLock(folder).acquire()


def test_format_size():
    assert [format_size(n) for n in (0, 1023, 1536, 5 * 2**20, 3 * 2**30, 2**50)] == [
        "0 bytes", "1023 bytes", "1.5 KiB", "5.0 MiB", "3.0 GiB", "1048576.0 GiB"]
