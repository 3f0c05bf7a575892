"""Checkpoints are data only: generator states restored exactly (on any number of GPUs), the old
pickled format refused with its conversion, crafted files refused in one line by every reader
and command line, running nothing."""

import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sacred.config.custom_containers import ReadOnlyDict, ReadOnlyList

from conftest import REPO_ROOT, load_script
from panet.run.folder import checkpoint_file
from panet.weights.checkpoint import (load_checkpoint, load_checkpoint_header,
                              restore_rng_states, rng_states, save_checkpoint)
from panet.inference import Segmenter
from panet.weights.model_files import read_model_file
from panet.models import DilatedVGG, PANet
from panet.models.vgg import Block

TINY = (Block(1, 4, pool_stride=2), Block(1, 4))


def tiny_run(seed=0):
    torch.manual_seed(seed)
    net = PANet(DilatedVGG(TINY))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(*episode()).logits.sum().backward()
    optimizer.step()
    return net, optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, [5, 9], 0.5)


def episode():
    generator = torch.Generator().manual_seed(0)
    fg = (torch.rand(1, 1, 1, 9, 9, generator=generator) > 0.5).float()
    return (torch.randn(1, 1, 1, 3, 9, 9, generator=generator), fg, 1 - fg,
            torch.randn(1, 1, 3, 9, 9, generator=generator))


def draws():
    """A few numbers from every generator, including the cached Gaussians' paths."""
    return (random.random(), random.gauss(0, 1), random.gauss(0, 1),
            np.random.random_sample(3).tolist(), np.random.standard_normal(3).tolist(),
            torch.rand(3).tolist(), torch.randn(2).tolist())


def scramble():
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)


def mid_stream_generators():
    """Seed every generator and leave a Gaussian cached in Python's and numpy's."""
    random.seed(5)
    random.gauss(0, 1)
    np.random.seed(6)
    np.random.standard_normal()
    torch.manual_seed(7)


def test_restored_generators_continue_exactly_where_they_were_saved(tmp_path):
    net, optimizer, scheduler = tiny_run()
    mid_stream_generators()
    states = rng_states()
    assert states["python"]["gauss_next"] is not None and states["numpy"]["has_gauss"] == 1
    save_checkpoint(tmp_path / "c.pt", step=3, model=net, optimizer=optimizer,
                    scheduler=scheduler, config={})
    mid_stream_generators()  # the same states again, without any save or restore
    expected = draws()

    scramble()
    restore_rng_states(states)
    assert draws() == expected
    scramble()
    restore_rng_states(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert draws() == expected


@pytest.mark.parametrize("saved, visible", [(2, 1), (1, 3), (2, 2), (3, 0), (0, 2)])
def test_cuda_states_go_to_the_gpus_visible_now(monkeypatch, saved, visible):
    """GPU i gets the state saved from GPU i, for the GPUs that exist now and had one saved."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device="cuda": calls.append((int(state[0]), device)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", None)  # not the call to use
    mid_stream_generators()
    states = {**rng_states(), "cuda": [torch.full((8,), 10 + i, dtype=torch.uint8)
                                       for i in range(saved)]}
    restore_rng_states(states)
    assert calls == [(10 + i, i) for i in range(min(saved, visible))]


def test_a_checkpoint_holds_only_tensors_and_plain_data(tmp_path):
    net, optimizer, scheduler = tiny_run()
    config = ReadOnlyDict({"data": ReadOnlyDict({"fold": 1, "classes": ReadOnlyList([3, 4])}),
                           "model": {"weights": None, "alpha": 20.0}})
    path = save_checkpoint(tmp_path / "c.pt", step=4, model=net, optimizer=optimizer,
                           scheduler=scheduler, config=config)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    state = load_checkpoint(path)
    assert state["config"] == {"data": {"fold": 1, "classes": [3, 4]},
                               "model": {"weights": None, "alpha": 20.0}}
    assert type(state["config"]["data"]) is dict
    assert type(state["config"]["data"]["classes"]) is list
    assert all(torch.equal(state["model"][k], v) for k, v in net.state_dict().items())
    momentum = [s["momentum_buffer"] for s in optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a["momentum_buffer"], b)
               for a, b in zip(state["optimizer"]["state"].values(), momentum))
    assert state["scheduler"]["milestones"] == scheduler.state_dict()["milestones"]
    assert load_checkpoint_header(path) == {"step": 4, "config": state["config"]}


def test_a_config_value_that_is_not_plain_data_is_named(tmp_path):
    net, optimizer, scheduler = tiny_run()
    with pytest.raises(TypeError, match=r"config\.data\.root is a PosixPath"):
        save_checkpoint(tmp_path / "c.pt", step=1, model=net, optimizer=optimizer,
                        scheduler=scheduler, config={"data": {"root": tmp_path}})
    assert not (tmp_path / "c.pt").exists()


def test_a_checkpoint_missing_its_parts_is_named_damaged(tmp_path):
    torch.save({"format_version": 2, "step": 1, "config": {}}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"damaged panet checkpoint \(missing or wrong: model, "
                                         r"optimizer, scheduler, rng\)"):
        load_checkpoint_header(tmp_path / "c.pt")


# --- format 1 --------------------------------------------------------------------------------


def save_format_1(path):
    """A checkpoint as format 1 wrote it: numpy's state tuple and sacred's config objects
    pickled; returns the draws that follow its generator states."""
    net, optimizer, scheduler = tiny_run()
    mid_stream_generators()
    state = {"format_version": 1, "step": 6, "model": net.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                     "torch": torch.get_rng_state(), "cuda": []},
             "config": ReadOnlyDict({"data": ReadOnlyDict({"ways": ReadOnlyList([1])})})}
    torch.save(state, path)
    return draws(), net


def test_a_format_1_checkpoint_is_refused_with_the_command_converting_it(tmp_path):
    save_format_1(tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"format 1 .* convert it once: python scripts/"
                                         r"convert_checkpoint\.py --upgrade --trust-pickle") as err:
        load_checkpoint(tmp_path / "old.pt")
    assert "\n" not in str(err.value)


def test_upgrade_converts_format_1_only_when_trusted(tmp_path, capsys):
    expected, net = save_format_1(tmp_path / "old.pt")
    upgrade = load_script("convert_checkpoint").main
    assert upgrade(["--upgrade", str(tmp_path / "old.pt"), str(tmp_path / "new.pt")]) == 1
    assert "pass --trust-pickle" in capsys.readouterr().err
    assert not (tmp_path / "new.pt").exists()

    assert upgrade(["--upgrade", "--trust-pickle", str(tmp_path / "old.pt"),
                    str(tmp_path / "new.pt")]) == 0
    state = load_checkpoint(tmp_path / "new.pt")
    assert state["step"] == 6 and state["config"] == {"data": {"ways": [1]}}
    assert all(torch.equal(state["model"][k], v) for k, v in net.state_dict().items())
    scramble()
    restore_rng_states(state["rng"])
    assert draws() == expected


# --- crafted files ---------------------------------------------------------------------------


class Payload:
    """Unpickled, it runs `touch <flag>`."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return os.system, (f"touch {self.flag}",)


@pytest.fixture(params=["torch.save", "pickle"])
def crafted(request, tmp_path):
    """(a crafted checkpoint at <tmp>/run/checkpoints/last.pt, the file its payload creates)."""
    flag = tmp_path / "PWNED"
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True)
    content = {"format_version": 2, "step": 9, "config": {}, "model": Payload(flag)}
    if request.param == "pickle":
        path.write_bytes(pickle.dumps(content))
    else:
        torch.save(content, path)
    return path, flag


READERS = {
    "load_checkpoint": load_checkpoint,
    "load_checkpoint_header": load_checkpoint_header,
    "checkpoint_file of its run folder": lambda path: checkpoint_file(path.parent.parent),
    "Segmenter.from_checkpoint": lambda path: Segmenter.from_checkpoint(path, device="cpu"),
    "read_model_file": read_model_file,
}


@pytest.mark.parametrize("reader", READERS)
def test_a_crafted_file_is_refused_in_one_line_and_runs_nothing(crafted, reader):
    path, flag = crafted
    with pytest.raises(ValueError, match=r"refused: it holds pickled Python objects "
                                         r"\(posix\.system\), which could run code") as err:
        READERS[reader](path)
    assert "\n" not in str(err.value)
    assert not flag.exists()


def run_command(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_command_lines_refuse_a_crafted_checkpoint_and_run_nothing(tmp_path):
    flag = tmp_path / "PWNED"
    torch.save({"format_version": 2, "step": 1, "payload": Payload(flag)}, tmp_path / "evil.pt")
    Image.new("RGB", (8, 8)).save(tmp_path / "image.png")
    Image.new("L", (8, 8), 1).save(tmp_path / "mask.png")
    np.savez(tmp_path / "episodes.npz", run=np.array([Payload(flag)], dtype=object))
    (tmp_path / "results.json").write_text('{"rule": "released", "class_iou": {}, "setting": {}}')
    commands = {
        "test.py": [REPO_ROOT / "test.py", "with", "test.checkpoint=evil.pt"],
        "train.py": [REPO_ROOT / "train.py", "with", "train.resume=evil.pt"],
        "predict.py": [REPO_ROOT / "scripts" / "predict.py", "--checkpoint", "evil.pt", "--way",
                       "image.png", "mask.png", "--query", "image.png", "--out", "out"],
        "compare.py": [REPO_ROOT / "scripts" / "compare.py", "results.json", "results.json"],
        "convert_checkpoint.py": [REPO_ROOT / "scripts" / "convert_checkpoint.py", "--to",
                                  "released", "evil.pt", "out.pth"],
        "bench_model.py": [REPO_ROOT / "scripts" / "bench_model.py", "--device", "cpu",
                           "--memory-format", "channels_last", "--checkpoint", "evil.pt"],
    }
    for name, command in commands.items():
        result = run_command(tmp_path, *command)
        assert result.returncode != 0, name
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        reason = "refused" if name != "compare.py" else "allow_pickle=False"
        assert len(errors) == 1 and reason in errors[0], (name, result.stderr)
        assert not flag.exists(), name
