"""Your own method through model.factory: the example (examples/temperature.py) trained, tested,
used by predict.py and the Segmenter; a model's head honoured by both evaluation paths (and its
own prototypes sending it to the per-episode path); a model's own loss minimised by train_step;
every bad factory refused before any work, in one line. Toy scale: the small encoder at 65 px,
on the synthetic set; the heads are PANet-init models (random weights seeded by the config)."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

import panet.training
from conftest import load_script
from examples.temperature import TemperaturePANet
from panet.training import train_step
from panet.evaluation import encode_path
from panet.inference import Segmenter
from panet.models.losses import panet_loss
from panet.models import PANet, build_encoder
from panet.models.builder import build_model, model_with_weights
from panet.models.factory import MODEL_INPUTS
from panet.models.factory import (FactoryError, check_model, import_factory, make_model,
                                  fast_path_problem)
from panet.run.identity import method_sha256
from panet.settings import ModelSettings
from panet.reproduce import TABLES, Scale, jobs_for
from test_cli import command, toy
from test_evaluation import synthetic_data
from test_experiments import QUIET, TEST, TRAIN
from tolerance import assert_logits_close, assert_results_close, recorded_logits
from toy_methods import BackgroundPANet, FirstShotPANet, NegatedPANet, OwnLossPANet

TEMPERATURE = "examples.temperature:TemperaturePANet"
pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]


def small_model(kind=PANet, alpha=20.0):
    torch.manual_seed(0)
    return kind(build_encoder("small"), alpha=alpha)


def episode_batch(ways=1, shots=2, queries=1, size=33):
    """Random images and masks of one episode, with the model's input shapes."""
    generator = torch.Generator().manual_seed(1)
    fg = (torch.rand(1, ways, shots, size, size, generator=generator) > 0.6).float()
    return {"support_images": torch.randn(1, ways, shots, 3, size, size, generator=generator),
            "support_fg": fg, "support_bg": 1 - fg,
            "query_images": torch.randn(1, queries, 3, size, size, generator=generator),
            "query_labels": torch.randint(0, ways + 1, (1, queries, size, size),
                                          generator=generator),
            "query_ids": ["q"]}


# ---- the example, end to end ----------------------------------------------------------------

@pytest.fixture(scope="module")
def temperature_run(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("temperature")
    run = TRAIN.run(named_configs=["synthetic", "fast"], options=QUIET, config_updates={
        "device": "cpu", "data": {"root": str(synthetic_root)}, "model": {"factory": TEMPERATURE},
        "train": {"output_dir": str(out)}})
    assert run.status == "COMPLETED"
    return out / "checkpoints" / "final.pt"


def test_the_example_trains_and_tests_with_its_extra_parameter(temperature_run, tmp_path):
    state = torch.load(temperature_run, weights_only=True)
    assert state["config"]["model"]["factory"] == TEMPERATURE
    assert state["model"]["log_alpha"].shape == ()
    run = TEST.run(named_configs=["fast"], options=QUIET, config_updates={
        "model": {"factory": TEMPERATURE},
        "test": {"checkpoint": str(temperature_run), "output_dir": str(tmp_path)}})
    assert run.status == "COMPLETED"
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["model"]["factory"] == TEMPERATURE
    assert result["model"]["method_sha256"] == method_sha256(TEMPERATURE)
    assert result["setting"]["trained"]["code"]["method_sha256"] == method_sha256(TEMPERATURE)
    assert result["setting"]["model"]["factory"] == TEMPERATURE
    assert result["config"]["model"]["factory"] == TEMPERATURE
    assert (result["setting"]["encode_used"], result["setting"]["encode_why"]) == ("image", None)
    assert result["setting"]["training_seed"] == 1234
    assert result["setting"]["training"]["model.factory"] == TEMPERATURE


def test_the_example_learns_its_temperature_through_both_losses():
    model, batch = small_model(TemperaturePANet), episode_batch()
    inputs = [batch[key] for key in ("support_images", "support_fg", "support_bg",
                                     "query_images")]
    out = model(*inputs)
    assert model.temperature().item() == pytest.approx(20.0)
    loss = panet_loss(out, batch["query_labels"], batch["support_fg"], batch["support_bg"],
                      model.score)
    seg_grad = torch.autograd.grad(loss.terms["seg"], model.log_alpha, retain_graph=True)[0]
    align_grad = torch.autograd.grad(loss.terms["align"], model.log_alpha)[0]
    assert seg_grad != 0 and align_grad != 0  # the head and PAR both score at the learned scale
    with torch.no_grad():  # the head: exp(log_alpha) * cos, PANet's head at alpha = 5
        model.log_alpha.fill_(math.log(5.0))
        features = torch.randn(1, 2, 8, 4, 4)
        prototypes = torch.randn(1, 2, 8)
        torch.testing.assert_close(model.score(features, prototypes),
                                   PANet(nn.Identity(), alpha=5.0).score(features, prototypes))


def test_the_segmenter_and_predict_use_the_checkpoints_model(temperature_run, folder_root,
                                                             tmp_path):
    segmenter = Segmenter.from_checkpoint(temperature_run, "cpu", factory=TEMPERATURE)
    assert isinstance(segmenter.model, TemperaturePANet)
    state = torch.load(temperature_run, weights_only=True)["model"]
    assert torch.equal(segmenter.model.log_alpha.detach(), state["log_alpha"])
    examples = folder_root / "examples"
    way = [[(examples / "support.jpg", examples / "support_mask.png")]]
    query = sorted((examples / "queries").iterdir())[:1]
    with torch.no_grad():
        segmenter.model.log_alpha.fill_(math.log(2.0))
    learned = segmenter.segment(way, query, probabilities=True)[0].probabilities
    plain = PANet(segmenter.model.encoder, alpha=2.0)  # the same head written as PANet's
    expected = Segmenter(plain, segmenter.size, "cpu").segment(way, query, probabilities=True)
    np.testing.assert_allclose(learned, expected[0].probabilities, atol=1e-5)
    at_20 = Segmenter(PANet(segmenter.model.encoder), segmenter.size, "cpu").segment(
        way, query, probabilities=True)[0].probabilities
    assert np.abs(learned - at_20).max() > 0.01  # the learned scale is visible

    out = tmp_path / "predictions"
    assert load_script("predict").main(
        ["--checkpoint", str(temperature_run), "--factory", TEMPERATURE, "--way",
         *map(str, way[0][0]), "--query", str(query[0]), "--out", str(out), "--device",
         "cpu"]) == 0
    assert (out / f"{query[0].stem}.png").is_file()


def test_weights_that_do_not_fit_the_factorys_model_are_named():
    state = small_model().state_dict()
    settings = ModelSettings(encoder="small", weights=None, factory=TEMPERATURE)
    with pytest.raises(ValueError, match=r"makes: missing \['log_alpha'\]$"):
        model_with_weights(settings, state)
    assert isinstance(model_with_weights(settings, {**state, "log_alpha": torch.tensor(1.0)}),
                      TemperaturePANet)
    name = next(iter(state))  # a weight of the wrong dtype, or holding NaN, is refused
    with pytest.raises(ValueError, match=rf"{name} is torch.int64 .*, the model's torch.float32"):
        model_with_weights(settings, {**state, name: state[name].long(),
                                      "log_alpha": torch.tensor(1.0)})
    poisoned = state[name].clone()
    poisoned.view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=rf"{name} holds NaN or infinite values"):
        model_with_weights(settings, {**state, name: poisoned, "log_alpha": torch.tensor(1.0)})


# ---- both evaluation paths compute the model's own head and prototypes ----------------------

def results_json(out, data, encode, factory="panet.models:PANet"):
    """test.py on the PANet-init of the small encoder made by `factory`."""
    run = TEST.run(options=QUIET, config_updates={
        "data": data, "model": {"encoder": "small", "weights": None, "factory": factory},
        "test": {"notrain": True, "runs": 2, "episodes": 3, "encode": encode,
                 "output_dir": str(out)}})
    assert run.status == "COMPLETED"
    return json.loads((out / "results.json").read_text())


def test_an_overridden_head_is_honoured_on_both_paths(synthetic_root, tmp_path, monkeypatch):
    data = synthetic_data(synthetic_root, ways=2, shots=2)
    negated = "toy_methods:NegatedPANet"
    with recorded_logits(monkeypatch) as image_logits:
        image = results_json(tmp_path / "image", data, "image", negated)
    with recorded_logits(monkeypatch) as episode_logits:
        episode = results_json(tmp_path / "episode", data, "episode", negated)
    assert image["setting"]["encode_used"] == "image"
    assert_logits_close(episode_logits, image_logits)
    assert_results_close(episode, image)
    with recorded_logits(monkeypatch) as plain_logits:
        plain = results_json(tmp_path / "plain", data, "image")
    assert_logits_close({key: -logits for key, logits in plain_logits.items()}, image_logits)
    assert abs(plain["binary_iou"] - image["binary_iou"]) > 0.05  # the override is visible


def test_a_model_with_its_own_prototypes_is_evaluated_per_episode(synthetic_root, tmp_path,
                                                                   monkeypatch, capfd):
    data = synthetic_data(synthetic_root, ways=1, shots=3)
    first_shot = "toy_methods:FirstShotPANet"
    with recorded_logits(monkeypatch) as asked_image:
        image = results_json(tmp_path / "image", data, "image", first_shot)
    said = capfd.readouterr().out
    assert ("test.encode=image: FirstShotPANet overrides prototypes without declaring its "
            "fast paths again (fast_paths), so it is evaluated through its own forward, per "
            "episode") in said
    assert image["setting"]["encode_used"] == "episode"
    assert "overrides prototypes" in image["setting"]["encode_why"]
    with recorded_logits(monkeypatch) as asked_episode:
        episode = results_json(tmp_path / "episode", data, "episode", first_shot)
    assert episode["setting"]["encode_why"] is None
    assert_logits_close(asked_episode, asked_image)  # the same path: the same computation
    assert all(torch.equal(asked_episode[key], asked_image[key]) for key in asked_image)
    assert_results_close(episode, image)
    with recorded_logits(monkeypatch) as plain_logits:
        results_json(tmp_path / "plain", data, "episode")
    worst = max(float((plain_logits[key] - asked_image[key]).abs().max()) for key in plain_logits)
    assert worst > 0.1  # the first shot's prototypes were used, not the mean over shots


def test_which_models_the_fast_paths_compute_exactly():
    """A fast path holds for the class declaring it: a subclass overriding forward, encode,
    prototypes, score or prototypes_from_pools without declaring again runs its forward."""
    for model in (small_model(), small_model(TemperaturePANet), small_model(NegatedPANet)):
        assert fast_path_problem(model, "parts") is None
        assert fast_path_problem(model, "pools") is None
    assert "overrides prototypes without declaring" in fast_path_problem(
        small_model(FirstShotPANet), "pools")
    assert "overrides forward without declaring" in fast_path_problem(
        small_model(BackgroundPANet), "parts")

    class Both(FirstShotPANet):  # says again that its prototypes come from the pools
        fast_paths = ("parts", "pools")

        def prototypes_from_pools(self, fg_pools, bg_pools):
            return super().prototypes_from_pools(fg_pools, bg_pools)

    class OptedOut(PANet):
        fast_paths = ("parts",)

    assert fast_path_problem(small_model(Both), "pools") is None
    assert "does not declare the 'pools'" in fast_path_problem(small_model(OptedOut), "pools")
    assert fast_path_problem(small_model(OptedOut), "parts") is None
    patched = small_model()
    patched.prototypes = lambda *args: None
    assert "overrides prototypes" in fast_path_problem(patched, "parts")
    assert encode_path(small_model(FirstShotPANet), "image")[0] == "episode"
    assert encode_path(small_model(FirstShotPANet), "episode") == ("episode", None)
    assert encode_path(small_model(), "image") == ("image", None)


# ---- a model's own loss ---------------------------------------------------------------------

def test_train_step_minimises_the_models_own_loss(monkeypatch):
    batch = episode_batch(ways=2, shots=1)
    inputs = [batch[key] for key in ("support_images", "support_fg", "support_bg",
                                     "query_images")]
    model, reference = small_model(OwnLossPANet), small_model(OwnLossPANet)
    out = reference(*inputs)  # the objective computed by hand: -mean of the true labels' logits
    labels = batch["query_labels"][:, :, None]
    objective = -out.logits.gather(2, labels).mean()
    gradients = torch.autograd.grad(objective, list(reference.parameters()))

    def not_panet_loss(*args, **kwargs):
        raise AssertionError("PANet's loss was used")

    monkeypatch.setattr(panet.training, "panet_loss", not_panet_loss)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = train_step(model, optimizer, batch, align_weight=1.0)
    assert losses.keys() == {"loss", "picked_loss"}  # its named term, logged by its name
    assert losses["loss"] == pytest.approx(objective.item(), rel=1e-5)
    assert losses["picked_loss"] == pytest.approx(objective.item(), rel=1e-5)
    for after, before, gradient in zip(model.parameters(), reference.parameters(), gradients):
        torch.testing.assert_close(after, before - 0.1 * gradient, rtol=1e-4, atol=1e-6)


def test_a_forward_of_logits_alone_trains_on_l_seg():
    """A forward that returns the logits tensor has no PAR: the step minimises L_seg, the
    cross-entropy of its logits upsampled to the labels, and logs it alone."""
    batch = episode_batch()
    model = make_model("toy_methods:tensor_forward", build_encoder("small"), 20.0)
    reference = make_model("toy_methods:tensor_forward", build_encoder("small"), 20.0)
    reference.load_state_dict(model.state_dict())
    logits = reference(*(batch[key] for key in MODEL_INPUTS))
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                 batch["query_labels"].flatten(0, 1))
    losses = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), batch, 1.0)
    assert losses.keys() == {"loss", "seg_loss"}
    assert losses["seg_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_a_loss_outside_the_interface_stops_with_one_line():
    batch = episode_batch()

    class TensorLoss(PANet):
        def loss(self, out, *targets):
            return out.logits.mean()

    model = small_model(TensorLoss)
    with pytest.raises(TypeError, match="`loss` returned a Tensor: it returns a dict of named "
                                        "scalar terms, or a panet.models.losses.Loss"):
        train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), batch, 1.0)


# ---- bad factories are refused before any work ----------------------------------------------

BAD_FACTORIES = [
    ("model.factory=PANet", "must be a 'package.module:callable' string"),
    ("model.factory=no_such_package.module:Model", "cannot import module 'no_such_package"),
    ("model.factory=toy_methods:Missing", "has no 'Missing'"),
    ("model.factory=toy_methods:NOT_CALLABLE", "is a int, not a callable"),
    ("model.factory=toy_methods:not_a_model", "its forward on a 1-way 1-shot episode raised "
                                              "TypeError"),
    ("model.factory=toy_methods:raising", "raised RuntimeError: this factory always fails"),
]


@pytest.mark.parametrize("script", ["train", "test"])
@pytest.mark.parametrize("update,said", BAD_FACTORIES, ids=[u for u, _ in BAD_FACTORIES])
def test_a_bad_factory_stops_before_any_work_in_one_line(synthetic_root, tmp_path, capsys,
                                                         script, update, said):
    extra = ["notrain"] if script == "test" else []
    status = command(script, *toy(synthetic_root), *extra, update, cwd=tmp_path)
    err = capsys.readouterr().err.strip()
    assert status not in (0, None)
    assert "model.factory=" in err and said in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder


def test_a_model_with_its_own_loss_refuses_noalign_and_a_changed_factory_is_refused(
        synthetic_root, temperature_run, tmp_path, capsys):
    own = "model.factory=toy_methods:OwnLossPANet"
    assert command("train", *toy(synthetic_root), own, "noalign", cwd=tmp_path) not in (0, None)
    assert "train.align_weight=0.0: the model of model.factory='toy_methods:OwnLossPANet' " \
           "defines its own `loss`" in capsys.readouterr().err
    assert command("test", *toy(synthetic_root), f"test.checkpoint={temperature_run}",
                   "model.factory=panet.models:PANet", cwd=tmp_path) not in (0, None)
    assert "a trained model's architecture cannot change" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_factories_are_checked_and_imported_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "my_method.py").write_text(
        "from panet.models import PANet\n\n\ndef make(encoder, alpha):\n"
        "    return PANet(encoder, alpha=alpha * 2)\n")
    monkeypatch.chdir(tmp_path)
    model = build_model(ModelSettings(encoder="small", weights=None, factory="my_method:make"))
    assert type(model) is PANet and model.alpha == 40.0
    assert str(tmp_path) not in sys.path  # only while importing
    assert import_factory("panet.models:PANet") is PANet
    with pytest.raises(FactoryError, match="not a torch.nn.Module"):
        check_model(object(), "x:y")
    with pytest.raises(FactoryError, match="`loss` is a int, not a method"):
        model = small_model()
        model.loss = 3
        check_model(model, "x:y")

    class NoParts(nn.Module):  # declares a fast path without its methods
        fast_paths = ("parts",)

    with pytest.raises(FactoryError, match="fast path 'parts' declared without encode, "
                                           "prototypes, score"):
        check_model(NoParts(), "x:y")

    with pytest.raises(FactoryError, match=r"feature_levels \['conv9'\] are not levels of its "
                                           r"encoder \(conv1, conv2, conv3, conv4\)"):
        make_model("toy_methods:DeepLevelsPANet", build_encoder("small"), 20.0)


def test_reproduce_gives_the_factory_to_every_model_it_makes(tmp_path):
    scale = Scale(tmp_path, synthetic=True, data_root=tmp_path, seeds=2, factory=TEMPERATURE)
    jobs = jobs_for(TABLES["1"].settings(scale.training_seeds, None), scale)
    assert any(job.trains for job in jobs) and any("notrain" in job.argv for job in jobs)
    for job in jobs:  # every job names it: a checkpoint supplies settings, never code
        assert f"model.factory={TEMPERATURE}" in job.argv
