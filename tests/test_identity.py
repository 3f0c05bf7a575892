"""One identity for every result (panet/run/identity.py, panet/run/compose.py): a checkpoint
supplies settings, never code to import or places to write; every path scores a model's own
forward; a test's record says which code computed it; one writer per run folder, whatever
records the run; named configs of the other script are refused."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, composed, load_script
from panet.base.errors import ConfigError
from panet.base.lock import RunFolderLock
from panet.base.files import file_sha256
from panet.data.label_png import load_label_png
from panet.models import PANet, build_encoder
from panet.run.identity import method_sha256, model_identity
from panet.settings import ModelSettings
from panet.weights.checkpoint import load_checkpoint, save_checkpoint
from test_cli import command, toy
from test_released import released  # noqa: F401  (fixture)

pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]


def small_checkpoint(path, **model):
    """A train.py checkpoint of a small PANet whose stored model settings are `model`."""
    config = composed("train", ("synthetic", "fast"))
    config["model"].update(model)
    net = PANet(build_encoder("small"))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    return save_checkpoint(path, step=4, model=net, optimizer=optimizer, config=config,
                           scheduler=torch.optim.lr_scheduler.MultiStepLR(optimizer, [10]))


# ---- a checkpoint supplies settings, never code ---------------------------------------------

@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A dataset folder under data/ shipping `payload.py`, which writes a marker file when it is
    imported; the current folder is the one holding data/ (as a user's repository)."""
    folder = tmp_path / "data" / "shipped"
    folder.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    (folder / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\nx = None\n")
    monkeypatch.chdir(tmp_path)
    return marker


@pytest.mark.parametrize("stored", ["data.shipped.payload:x", "this:s", "setup:x"])
def test_a_stored_factory_is_never_imported_by_test_resume_or_predict(
        synthetic_root, tmp_path, planted, capsys, stored):
    checkpoint = small_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt", factory=stored)
    expected = (f"its model was made by model.factory={stored!r}, and a checkpoint supplies "
                f"settings, never code to import: add model.factory={stored} to the command "
                "line to run that code")
    for script, key in (("test", "test.checkpoint"), ("train", "train.resume")):
        assert command(script, f"{key}={checkpoint}", f"data.root={synthetic_root}",
                       cwd=tmp_path) == 1
        error = capsys.readouterr().err.strip()
        assert error == f"{key}: {expected}", error
    example = synthetic_root / "VOC2012"
    image = sorted((example / "JPEGImages").iterdir())[0]
    mask = example / "SegmentationClassAug" / f"{image.stem}.png"
    assert load_script("predict").main(["--checkpoint", str(checkpoint), "--way", str(image),
                                        str(mask), "--query", str(image), "--out",
                                        str(tmp_path / "out"), "--device", "cpu"]) == 1
    assert f"--factory {stored}" in capsys.readouterr().err
    assert not planted.exists() and "The Zen of Python" not in capsys.readouterr().out


# ---- a checkpoint supplies no place to write ------------------------------------------------

@pytest.fixture(scope="module")
def toy_run(synthetic_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("toy") / "t1"
    assert command("train", *toy(synthetic_root), "train.steps=2",
                   f"train.output_dir={run}", cwd=run.parent) == 0
    return run


def test_a_copied_run_folder_resumes_in_place(synthetic_root, toy_run, tmp_path):
    """`cp -r runs/t1 /tmp/copy; train.resume=/tmp/copy`: the copy goes on, the original stays."""
    copy = tmp_path / "copy"
    shutil.copytree(toy_run, copy)
    original = file_sha256(toy_run / "checkpoints" / "final.pt")
    assert command("train", f"train.resume={copy}", "train.steps=4", cwd=tmp_path) == 0
    assert file_sha256(toy_run / "checkpoints" / "final.pt") == original
    assert load_checkpoint(copy / "checkpoints" / "final.pt")["step"] == 4
    steps = {run: json.loads((run / "metrics.json").read_text())["loss"]["steps"]
             for run in (toy_run, copy)}
    assert steps == {toy_run: [1, 2], copy: [1, 2, 3, 4]}  # the copy's record goes on


def test_a_stored_output_folder_is_never_written(synthetic_root, toy_run, tmp_path):
    """A checkpoint whose stored train.output_dir names another run folder: a resume writes
    into the folder holding the checkpoint, never the stored one."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.json").write_text("{}")
    crafted = tmp_path / "crafted"
    shutil.copytree(toy_run, crafted)
    last = crafted / "checkpoints" / "final.pt"
    state = load_checkpoint(last)
    state["config"]["train"]["output_dir"] = str(victim)
    torch.save(state, last)
    assert command("train", f"train.resume={crafted}", "train.steps=3", cwd=tmp_path) == 0
    assert sorted(p.name for p in victim.iterdir()) == ["config.json"]
    assert (victim / "config.json").read_text() == "{}"
    assert load_checkpoint(last)["step"] == 3


# ---- every path scores the model's own forward ----------------------------------------------

BACKGROUND = "toy_methods:BackgroundPANet"


def test_the_default_test_path_and_predict_score_the_models_forward(synthetic_root, folder_root,
                                                                   tmp_path):
    """A method whose forward pushes every pixel to background (its parts are PANet's): the
    default test path evaluates it through forward (foreground IoU 0), and so does predict.py
    (every label 0)."""
    run = tmp_path / "run"
    assert command("train", *toy(synthetic_root), "train.steps=1", f"model.factory={BACKGROUND}",
                   f"train.output_dir={run}", cwd=tmp_path) == 0
    assert command("test", f"test.checkpoint={run}", f"model.factory={BACKGROUND}",
                   "test.runs=1", "test.episodes=4", f"test.output_dir={tmp_path / 'test'}",
                   cwd=tmp_path) == 0
    result = json.loads((tmp_path / "test" / "results.json").read_text())
    assert result["setting"]["encode_used"] == "episode"
    assert "overrides forward" in result["setting"]["encode_why"]
    assert result["foreground_iou"] == 0.0 and result["mean_iou"] == 0.0
    examples = folder_root / "examples"
    query = sorted((examples / "queries").iterdir())[0]
    out = tmp_path / "predictions"
    assert load_script("predict").main(
        ["--checkpoint", str(run), "--factory", BACKGROUND, "--way",
         str(examples / "support.jpg"), str(examples / "support_mask.png"), "--query",
         str(query), "--out", str(out), "--device", "cpu"]) == 0
    assert not load_label_png(out / f"{query.stem}.png").any()


# ---- model.* beside a released snapshot are applied ------------------------------------------

def test_model_settings_beside_a_released_snapshot_are_applied(released, synthetic_root,  # noqa
                                                               tmp_path):
    """model.alpha and model.factory given beside a released snapshot change what is tested, and
    results.json records what ran; another encoder is refused."""
    logits = {}
    for name, given in (("plain", []), ("alpha", ["model.alpha=5.0"]),
                        ("negated", ["model.factory=toy_methods:NegatedPANet"])):
        out = tmp_path / name
        assert command("test", f"test.checkpoint={released[1]}",
                       f"data.root={synthetic_root / 'VOC2012'}", "data.size=65", "data.shots=2",
                       "data.workers=0",
                       "test.runs=1", "test.episodes=2", f"test.output_dir={out}", *given,
                       "test.bootstrap=0", cwd=tmp_path) == 0
        logits[name] = json.loads((out / "results.json").read_text())
    assert logits["alpha"]["setting"]["model"]["alpha"] == 5.0
    assert logits["negated"]["model"]["factory"] == "toy_methods:NegatedPANet"
    assert logits["negated"]["mean_iou"] != logits["plain"]["mean_iou"]
    assert len({r["model"]["model_sha256"] for r in logits.values()}) == 3
    with pytest.raises(ConfigError, match="a released snapshot is PANet's VGG-16: drop "
                                          "model.encoder"):
        composed("test", **{"test": {"checkpoint": str(released[1])},
                            "model": {"encoder": "small"}})


# ---- which code computed a result ------------------------------------------------------------

def test_a_method_edited_between_training_and_testing_leaves_a_trace(synthetic_root, tmp_path,
                                                                    capsys, monkeypatch):
    package = tmp_path / "mymethod"
    package.mkdir()
    source = ("from panet.models import PANet\n\n\nclass Scaled(PANet):\n"
              "    fast_paths = ('parts', 'pools')\n    SCALE = {}\n\n"
              "    def score(self, query, prototypes):\n"
              "        return self.SCALE * super().score(query, prototypes)\n")
    (package / "__init__.py").write_text(source.format(1.0))
    factory = "mymethod:Scaled"
    run = tmp_path / "run"
    assert command("train", *toy(synthetic_root), "train.steps=1", f"model.factory={factory}",
                   f"train.output_dir={run}", cwd=tmp_path) == 0
    trained = load_checkpoint(run / "checkpoints" / "final.pt")["identity"]["code"]
    monkeypatch.syspath_prepend(str(tmp_path))
    assert trained["method_sha256"] == method_sha256(factory)
    (package / "__init__.py").write_text(source.format(-1.0))
    sys.modules.pop("mymethod", None)
    capsys.readouterr()
    assert command("test", f"test.checkpoint={run}", f"model.factory={factory}", "test.runs=1",
                   "test.episodes=2", f"test.output_dir={tmp_path / 'test'}", cwd=tmp_path) == 0
    assert "differs from the code the checkpoint was trained with" in capsys.readouterr().err
    result = json.loads((tmp_path / "test" / "results.json").read_text())
    assert result["model"]["method_sha256"] == method_sha256(factory) != trained["method_sha256"]
    assert result["setting"]["trained"]["code"]["method_sha256"] == trained["method_sha256"]


def test_the_model_identity_tells_weights_methods_and_settings_apart():
    torch.manual_seed(0)
    model = PANet(build_encoder("small"))
    same = PANet(build_encoder("small"))
    same.load_state_dict(model.state_dict())
    small = ModelSettings(encoder="small")

    def digest(net, **changes):
        return model_identity(net, small.replace(**changes))["model_sha256"]

    assert model_identity(model, small) == model_identity(same, small)
    assert len({digest(model), digest(PANet(build_encoder("small"))),
                digest(model, factory="toy_methods:NegatedPANet"), digest(model, alpha=5.0)}) == 4
    assert model_identity(model, small)["method_sha256"] is None  # panet's: the commit says it
    assert model_identity(model, small.replace(factory="toy_methods:NegatedPANet"))[
        "method_sha256"] == method_sha256("toy_methods:NegatedPANet")


# ---- one writer per run folder, whatever the observer ----------------------------------------

@pytest.mark.parametrize("observer", [["-u"], ["-F", "elsewhere"]])
def test_a_second_writer_is_refused_whatever_the_observer(synthetic_root, tmp_path, observer):
    folder = tmp_path / "run"
    observer = [str(tmp_path / arg) if arg == "elsewhere" else arg for arg in observer]
    with RunFolderLock(folder):  # this process writes the folder
        result = subprocess.run(
            [sys.executable, "train.py", *observer, "with", *toy(synthetic_root),
             f"train.output_dir={folder}"], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=300, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stderr
    assert f"{folder} is being written by pid" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (folder / "checkpoints").exists()


# ---- named configs of the other script --------------------------------------------------------

@pytest.mark.parametrize("script,named", [("test", "noalign"), ("test", "align"),
                                          ("train", "notrain")])
def test_named_configs_of_the_other_script_are_refused(script, named):
    other = "train" if script == "test" else "test"
    with pytest.raises(ConfigError, match=rf"named config '{named}' sets only keys that "
                                          rf"{script}\.py does not read \({other}\."):
        composed(script, (named, "notrain") if script == "test" else (named,))


def test_a_boolean_is_read_as_people_type_it():
    assert composed("test", ("notrain",), test={"overwrite": "true"})["test"]["overwrite"] is True
    assert composed("test", ("notrain",), tf32="False")["tf32"] is False
    np.testing.assert_equal(composed("test", ("notrain",))["test"]["overwrite"], False)
