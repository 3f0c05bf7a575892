"""The authors' released PANet snapshots: recognised, mapped to our PANet (same logits), their
settings read from their paths, converted both ways bit for bit, bad files refused in one line.

The released model is rebuilt here from its published layout (not from our code): FewShotSeg
holds `encoder = Sequential(backbone=Encoder)`, Encoder holds `features`, a Sequential of five
conv stages with max-pools between them; a stage is Conv2d, ReLU, ... with no ReLU after the
very last conv. Its state dict, saved through nn.DataParallel, is what released train.py wrote.
"""

import itertools
import json
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import reference
from conftest import load_script
from panet.weights.checkpoint import load_checkpoint, load_checkpoint_header, save_checkpoint
from panet.inference import Segmenter
from panet.weights.model_files import build_trained, model_input_size, read_model_file
from panet.models import PANet, vgg16_encoder
from panet.weights.released import (ReleasedSetting, panet_to_released, parse_released_path,
                            released_step, released_to_panet)

convert = load_script("convert_checkpoint")
RUN = "PANet_VOC_align_sets_2_2way_5shot_[train]"


def released_stage(n_convs, in_channels, out_channels, dilation=1, last_relu=True):
    layers = []
    for i in range(n_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation))
        if i < n_convs - 1 or last_relu:
            layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*layers)


class ReleasedEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            released_stage(2, 3, 64), nn.MaxPool2d(3, 2, 1),
            released_stage(2, 64, 128), nn.MaxPool2d(3, 2, 1),
            released_stage(3, 128, 256), nn.MaxPool2d(3, 2, 1),
            released_stage(3, 256, 512), nn.MaxPool2d(3, 1, 1),
            released_stage(3, 512, 512, dilation=2, last_relu=False))

    def forward(self, images):
        return self.features(images)


class ReleasedFewShotSeg(nn.Module):
    """The parameter-holding part of the release's FewShotSeg (its head has no parameters)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(OrderedDict([("backbone", ReleasedEncoder())]))


def released_model(seed=0):
    torch.manual_seed(seed)
    model = ReleasedFewShotSeg()
    with torch.no_grad():  # random biases of a visible size (PyTorch's default init is tiny)
        for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
            conv.bias.normal_(0, 0.1)
    return model


def save_released(model, path, data_parallel=True, legacy=True):
    """What released train.py writes (PyTorch 1.0: the legacy, non-zip file format)."""
    state = (nn.DataParallel(model) if data_parallel else model).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(model, its snapshot at .../<RUN>/1/snapshots/30000.pth)."""
    model = released_model()
    path = tmp_path_factory.mktemp("released") / RUN / "1" / "snapshots" / "30000.pth"
    return model, save_released(model, path)


# --- paths -----------------------------------------------------------------------------------


def released_rule(path):
    """How released config.py reads a snapshot path: substrings, the digit after `_sets_` and
    the `<n>way` / `<n>shot` patterns (our reference for what the release would run)."""
    return ("voc" if "VOC" in path else "coco", "align" in path,
            int(path.split("_sets_")[1][0]), int(re.search("[0-9]+way", path).group(0)[:-3]),
            int(re.search("[0-9]+shot", path).group(0)[:-4]))


def test_every_released_path_form_parses():
    forms = itertools.product(("VOC", "COCO"), (True, False), range(4), (1, 2), (1, 5),
                              ("_[train]", ""))
    for dataset, align, fold, ways, shots, suffix in forms:
        name = "_align" if align else ""
        run = f"PANet_{dataset}{name}_sets_{fold}_{ways}way_{shots}shot{suffix}"
        path = f"./runs/{run}/1/snapshots/30000.pth"
        setting = parse_released_path(path)
        assert setting == ReleasedSetting(dataset.lower(), align, fold, ways, shots), path
        assert tuple(setting) == released_rule(path), path
        assert parse_released_path(f"/data/{setting.run_name()}/3/snapshots/10000.pth") == setting
        assert released_step(path) == 30000


@pytest.mark.parametrize("path", ["runs/7/checkpoints/final.pt", "snapshots/30000.pth",
                                  "PANet_VOC_sets_x_1way_1shot_[train]/1/snapshots/1.pth",
                                  "PANet_KITTI_sets_0_1way_1shot_[train]/1/snapshots/1.pth"])
def test_a_path_without_the_released_form_names_no_setting(path):
    assert parse_released_path(path) is None


def test_the_step_comes_from_a_numeric_file_name_only():
    assert released_step("a/10000.pth") == 10000
    assert released_step("a/final.pth") is None


# --- names and logits ------------------------------------------------------------------------


def test_released_names_map_to_ours_conv_by_conv():
    """The k-th conv of the released layout lands on the k-th conv of our encoder."""
    ours = PANet(vgg16_encoder())
    our_names = {id(m): n for n, m in ours.named_modules()}
    released_convs = [n for n, m in nn.DataParallel(ReleasedFewShotSeg()).named_modules()
                      if isinstance(m, nn.Conv2d)]
    assert len(released_convs) == len(ours.encoder.convs()) == 13
    state = nn.DataParallel(released_model()).state_dict()
    renamed = released_to_panet(state)
    assert set(renamed) == set(ours.state_dict())
    for released_conv, our_conv in zip(released_convs, ours.encoder.convs()):
        for kind in ("weight", "bias"):
            assert renamed[f"{our_names[id(our_conv)]}.{kind}"] is state[f"{released_conv}.{kind}"]


@pytest.mark.parametrize("data_parallel, legacy", [(True, True), (False, False)])
def test_a_released_snapshot_gives_the_released_models_logits(released, tmp_path, data_parallel,
                                                             legacy):
    """Our PANet holding a snapshot's weights = the released encoder + the protocol's head
    (tests/reference.py), on the same episode, in float64."""
    model, path = released
    if not (data_parallel and legacy):
        path = save_released(model, tmp_path / RUN / "1" / "snapshots" / "30000.pth",
                             data_parallel, legacy)
    model_file = read_model_file(path)
    assert model_file.format == "released" and model_file.config is None
    assert model_file.path_setting == ReleasedSetting("voc", True, 2, 2, 5)
    assert model_file.step == 30000 and model_input_size(model_file) == 417
    net = build_trained(model_file).double().eval()

    generator = torch.Generator().manual_seed(1)
    support = torch.randn(1, 2, 1, 3, 41, 41, generator=generator, dtype=torch.float64)
    fg = (torch.rand(1, 2, 1, 41, 41, generator=generator) > 0.6).double()
    bg = 1 - fg
    query = torch.randn(1, 1, 3, 41, 41, generator=generator, dtype=torch.float64)
    encoder = model.encoder.double().eval()
    with torch.no_grad():
        expected, expected_low, _, _ = reference.forward(encoder, support, fg, bg, query)
        out = net(support, fg, bg, query)
    model.float()
    torch.testing.assert_close(out.logits_low, expected_low, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.logits, expected, rtol=1e-10, atol=1e-10)


def test_segmenter_reads_a_released_snapshot_at_417(released):
    model, path = released
    segmenter = Segmenter.from_checkpoint(path, device="cpu")
    assert isinstance(segmenter.model, PANet) and segmenter.size == (417, 417)
    first_conv = model.encoder.backbone.features[0][0].weight
    assert torch.equal(segmenter.model.encoder.stages[0][0].weight, first_conv)


# --- bad files -------------------------------------------------------------------------------


def refusal(path, match):
    with pytest.raises(ValueError, match=match) as caught:
        read_model_file(path)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_truncated_snapshot_is_refused_in_one_line(released, tmp_path):
    for legacy in (True, False):
        whole = save_released(released[0], tmp_path / f"whole_{legacy}.pth", legacy=legacy)
        cut = tmp_path / f"cut_{legacy}.pth"
        cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
        refusal(cut, "is not a readable checkpoint")


def test_a_wrong_key_is_refused_naming_it(released, tmp_path):
    state = nn.DataParallel(released[0]).state_dict()
    state["module.encoder.backbone.features.8.5.bias"] = state.pop(
        "module.encoder.backbone.features.8.4.bias")
    torch.save(state, tmp_path / "keys.pth")
    message = refusal(tmp_path / "keys.pth", "not the released PANet's VGG-16 layout")
    assert "unexpected tensor module.encoder.backbone.features.8.5.bias" in message
    assert "missing module.encoder.backbone.features.8.4.bias" in message


def test_a_wrong_shape_is_refused_naming_it(released, tmp_path):
    state = nn.DataParallel(released[0]).state_dict()
    state["module.encoder.backbone.features.2.0.weight"] = torch.zeros(128, 32, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    refusal(tmp_path / "shape.pth", r"features\.2\.0\.weight has shape \(128, 32, 3, 3\), "
                                    r"expected \(128, 64, 3, 3\)")


def test_other_architectures_are_refused_saying_what_they_hold(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet.pth")
    refusal(tmp_path / "resnet.pth", r"holds 122 tensors named conv1\.\*, bn1\.\*, layer1\.\*, "
                                     r".*: not a panet checkpoint nor a released PANet snapshot")
    convs = {f"conv1.{i}.weight": torch.zeros(1) for i in range(13)}
    torch.save(convs, tmp_path / "convs.pth")
    refusal(tmp_path / "convs.pth", r"holds 13 tensors named conv1\.\*: not a panet")
    torch.save(torchvision.models.vgg11().state_dict(), tmp_path / "vgg.pth")
    refusal(tmp_path / "vgg.pth", r"torchvision's ImageNet VGG-16\?")
    torch.save([1, 2], tmp_path / "list.pth")
    refusal(tmp_path / "list.pth", "holds a list: not a panet")


# --- conversion ------------------------------------------------------------------------------


def run_convert(*args):
    return convert.main([str(a) for a in args])


def test_released_to_panet_and_back_is_bitwise(released, tmp_path, capsys):
    _, path = released
    ours = tmp_path / "ours.pt"
    assert run_convert("--to", "panet", path, ours) == 0
    state = load_checkpoint(ours)
    assert state["step"] == 30000
    data, train = state["config"]["data"], state["config"]["train"]
    assert (data["name"], data["fold"], data["ways"], data["shots"], data["size"]) == (
        "pascal", 2, 2, 5, 417)
    assert train["align_weight"] == 1.0 and state["config"]["model"]["encoder"] == "vgg16"
    assert state["origin"]["setting_from"] == dict.fromkeys(ReleasedSetting._fields, "path")
    assert state["scheduler"]["last_epoch"] == 30000
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.1 ** 3)

    back = tmp_path / RUN / "1" / "snapshots" / "30000.pth"
    assert run_convert("--to", "released", ours, back) == 0
    assert f"{RUN}/1/snapshots/30000.pth" in capsys.readouterr().out
    original = torch.load(path, weights_only=True)
    again = torch.load(back, weights_only=True)
    assert list(again) == list(original)
    assert all(torch.equal(again[key], original[key]) for key in original)
    assert not back.read_bytes().startswith(b"PK")  # legacy format, for the release's PyTorch
    nn.DataParallel(ReleasedFewShotSeg()).load_state_dict(again)  # strict: every key and shape


def test_panet_to_released_and_back_is_bitwise(tmp_path):
    config = convert.training_config(ReleasedSetting("coco", False, 3, 1, 1))
    net = PANet(vgg16_encoder())
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [10])
    save_checkpoint(tmp_path / "a.pt", step=20000, model=net, optimizer=optimizer,
                    scheduler=scheduler, config=config)
    snapshot = tmp_path / "PANet_COCO_sets_3_1way_1shot_[train]" / "1" / "snapshots" / "20000.pth"
    assert run_convert("--to", "released", tmp_path / "a.pt", snapshot) == 0
    assert run_convert("--to", "panet", snapshot, tmp_path / "b.pt") == 0
    before, after = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert list(after["model"]) == list(before["model"])
    assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
    assert after["step"] == 20000
    assert after["config"]["data"] == before["config"]["data"]
    assert after["config"]["train"]["align_weight"] == 0.0


def test_options_give_or_override_the_setting(released, tmp_path, capsys):
    plain = tmp_path / "snapshot.pth"
    plain.write_bytes(released[1].read_bytes())
    assert run_convert("--to", "panet", plain, tmp_path / "x.pt") == 1
    error = capsys.readouterr().err
    assert "names no setting in its path" in error and "give --dataset, --align or --no-align, " \
        "--fold, --ways, --shots" in error and "\n" not in error.strip()
    assert run_convert("--to", "panet", plain, tmp_path / "x.pt", "--dataset", "coco",
                       "--no-align", "--fold", "1", "--ways", "1", "--shots", "1") == 1
    assert "is not named <step>.pth: give --step" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()

    assert run_convert("--to", "panet", released[1], tmp_path / "y.pt", "--shots", "1",
                       "--no-align") == 0
    state = load_checkpoint(tmp_path / "y.pt")
    assert state["config"]["data"]["shots"] == 1 and state["config"]["data"]["ways"] == 2
    assert state["config"]["train"]["align_weight"] == 0.0
    assert state["origin"]["setting_from"]["shots"] == "option"
    assert state["origin"]["setting_from"]["fold"] == "path"
    assert state["origin"]["sha256"] == read_model_file(released[1]).sha256


def test_only_a_vgg16_panet_converts_to_the_released_format(tmp_path, capsys):
    config = convert.training_config(ReleasedSetting("voc", True, 0, 1, 1))
    config["model"]["encoder"] = "small"
    from panet.models import build_encoder
    net = PANet(build_encoder("small"))
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    save_checkpoint(tmp_path / "small.pt", step=1, model=net, optimizer=optimizer,
                    scheduler=torch.optim.lr_scheduler.MultiStepLR(optimizer, [10]),
                    config=config)
    assert run_convert("--to", "released", tmp_path / "small.pt", tmp_path / "s.pth") == 1
    assert "has model.encoder='small'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="only a VGG-16 PANet has a released counterpart"):
        panet_to_released(net.state_dict())


def test_predict_segments_with_a_released_snapshot(released, tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8)).save(image)
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    status = load_script("predict").main(
        ["--checkpoint", str(released[1]), "--way", str(image), str(tmp_path / "mask.png"),
         "--query", str(image), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert status == 0
    assert np.array(Image.open(tmp_path / "out" / "image.png")).shape == (30, 40)


def test_train_py_readers_send_a_released_snapshot_to_the_converter(released):
    with pytest.raises(ValueError, match=r"is a released PANet snapshot, not a train\.py "
                                         r"checkpoint: convert it with python scripts/"
                                         r"convert_checkpoint\.py --to panet") as caught:
        load_checkpoint_header(released[1])
    assert "\n" not in str(caught.value)


# --- test.py and reproduce.py on released snapshots -------------------------------------------


@pytest.mark.filterwarnings("ignore:classes never evaluated")  # 2 episodes of 5 classes
def test_test_py_evaluates_a_released_snapshot_with_its_path_setting(released, synthetic_root,
                                                                   tmp_path):
    """The setting comes from the path (PASCAL, fold 2, 2-way 5-shot here), what is given on the
    command line wins, and results.json says where each came from, the format and the sha256."""
    from conftest import load_experiment
    from panet.base.files import file_sha256

    run = load_experiment("test").run(options={"--loglevel": "ERROR"}, config_updates={
        "device": "cpu", "data": {"root": str(synthetic_root / "VOC2012"), "size": 65,
                                  "workers": 0, "shots": 2},
        "test": {"checkpoint": str(released[1]), "runs": 1, "episodes": 2,
                 "output_dir": str(tmp_path / "test")}})
    assert run.status == "COMPLETED"
    setting = json.loads((tmp_path / "test" / "results.json").read_text())["setting"]
    assert setting["checkpoint_format"] == "released" and setting["trained_steps"] == 30000
    assert setting["checkpoint_sha256"] == file_sha256(released[1])
    assert setting["data"]["name"] == "pascal" and setting["data"]["shots"] == 2
    sources = setting["sources"]
    assert sources["data.fold"] == sources["data.name"] == "path"
    assert sources["data.shots"] == sources["data.root"] == "command line"


def test_a_released_snapshot_without_a_setting_needs_one(released, tmp_path):
    from conftest import load_experiment
    from panet.base.errors import ConfigError

    anonymous = tmp_path / "model.pth"
    anonymous.write_bytes(released[1].read_bytes())
    test = load_experiment("test")
    with pytest.raises(ConfigError, match=r"a released PANet snapshot whose path names no "
                                          r"setting.*give it: voc or coco data\.fold=<i> 1shot "
                                          r"or 5shot"):
        test.run(options={"--loglevel": "ERROR"},
                 config_updates={"test": {"checkpoint": str(anonymous)}})
    composed = test.run("print_config", named_configs=["voc", "5shot"],
                        options={"--loglevel": "ERROR"},
                        config_updates={"test": {"checkpoint": str(anonymous)},
                                        "data": {"fold": 2}})
    assert composed.config["data"]["shots"] == 5 and composed.config["data"]["fold"] == 2


def test_reproduce_tests_a_folder_of_released_snapshots(released, tmp_path, capsys):
    """--released DIR: one test job per table cell whose setting has a snapshot (the latest
    step), no training; the other cells stay empty."""
    folder = tmp_path / "snapshots"
    for fold in range(4):
        for step in (10000, 30000):
            save_released(released[0], folder / f"PANet_VOC_align_sets_{fold}_1way_5shot_[train]"
                          / "1" / "snapshots" / f"{step}.pth")
    reproduce = load_script("reproduce")
    out = tmp_path / "out"
    assert reproduce.main(["--table", "1", "--released", str(folder), "--out", str(out),
                           "--dry-run"]) == 0
    printed = capsys.readouterr().out
    commands = [line.strip() for line in printed.splitlines() if line.startswith("    python")]
    trained = [c for c in commands if "test.checkpoint=" in c]
    assert len(trained) == 4 and not any("train.py" in c for c in commands)
    for fold in range(4):
        assert any(f"PANet_VOC_align_sets_{fold}_1way_5shot_[train]/1/snapshots/30000.pth" in c
                   for c in trained)
    assert sum("notrain" in c for c in commands) == 8  # PANet-init still runs
