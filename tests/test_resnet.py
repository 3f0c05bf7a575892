"""The dilated ResNet-50/101 encoders against torchvision's ResNet, their weight loading, and
their frozen BatchNorm under PANet training. Everything runs on the CPU."""

import logging
import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights, ResNet101_Weights

from panet.models.losses import panet_loss
from panet.models import PANet, vgg16_encoder
from panet.models.vgg import VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL
from panet.models.resnet import (RESNET50_WEIGHTS_FILE, RESNET50_WEIGHTS_URL,
                                 RESNET101_WEIGHTS_FILE, RESNET101_WEIGHTS_URL, DilatedResNet,
                                 FrozenBatchNorm2d, load_torchvision_resnet, resnet_encoder)

CPU = torch.device("cpu")
WEIGHTS = {50: (RESNET50_WEIGHTS_FILE, RESNET50_WEIGHTS_URL),
           101: (RESNET101_WEIGHTS_FILE, RESNET101_WEIGHTS_URL)}


def torchvision_resnet(depth: int) -> torchvision.models.ResNet:
    """torchvision's dilated ResNet (output stride 8), randomly initialised."""
    return getattr(torchvision.models, f"resnet{depth}")(
        replace_stride_with_dilation=[False, True, True])


def random_torchvision_resnet(depth: int, seed: int) -> torchvision.models.ResNet:
    """torchvision's dilated ResNet with random convs and random BN running statistics and
    affine values (so that BN is not the identity)."""
    torch.manual_seed(seed)
    model = torchvision_resnet(depth)
    randomize_batchnorm(model, seed)
    return model


def meta_resnet(depth: int) -> torchvision.models.ResNet:
    """torchvision's dilated ResNet on the meta device: shapes and names, no memory."""
    with torch.device("meta"):
        return torchvision_resnet(depth)


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Random BN scales in [0.2, 0.6] (activations keep a moderate size through 30 blocks),
    shifts, means and variances in [0.5, 1.5]: for BatchNorm2d and FrozenBatchNorm2d alike."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = module.running_mean.numel()
                module.weight.copy_(0.2 + 0.4 * torch.rand(n, generator=g))
                module.bias.copy_(0.1 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g))


def up_to(model: torchvision.models.ResNet, features: str) -> nn.Sequential:
    """torchvision's forward up to `features` (its avgpool and fc left out)."""
    stages = [model.layer1, model.layer2, model.layer3] + ([model.layer4] if features == "layer4"
                                                           else [])
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, *stages)


def encoder_keys_of(state, features):
    """The entries of a torchvision ResNet state dict that an encoder up to `features` holds
    (BatchNorm2d's `num_batches_tracked` counters are not among them)."""
    left_out = ("fc.",) if features == "layer4" else ("fc.", "layer4.")
    return {key: value for key, value in state.items()
            if not key.startswith(left_out) and not key.endswith("num_batches_tracked")}


def batchnorms(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, FrozenBatchNorm2d)]


def tiny_copy(state):
    """The same keys with 1-element tensors of the same number of dimensions (a cheap file
    that only its keys identify)."""
    return {key: torch.zeros((1,) * value.dim()) for key, value in state.items()}


def save(path, state):
    torch.save(state, path)
    return path


def one_line_error(call, match, *expected_fragments):
    """Run `call`, expect a one-line ValueError matching `match` and holding the fragments."""
    with pytest.raises(ValueError, match=match) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for fragment in expected_fragments:
        assert fragment in message
    return message


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """(path, state dict) of a torchvision-format ResNet-50 file with random weights (nothing
    is downloaded)."""
    state = random_torchvision_resnet(50, seed=3).state_dict()
    path = tmp_path_factory.mktemp("weights") / RESNET50_WEIGHTS_FILE
    return save(path, state), state


@pytest.fixture(scope="module")
def trimmed_resnet50_state(resnet50_file):
    """The ResNet-50 file's tensors without layer4 and fc (the ones the encoder needs)."""
    return encoder_keys_of(resnet50_file[1], "layer3")


# ---------------------------------------------------------------- architecture

@pytest.mark.parametrize("depth,features,size", [(50, "layer3", 33), (101, "layer3", 41),
                                                 (50, "layer4", 35)])
def test_features_equal_torchvision_up_to_the_stage(depth, features, size):
    reference = random_torchvision_resnet(depth, seed=depth).double().eval()
    encoder = DilatedResNet(depth, features).double()
    encoder.load_state_dict(encoder_keys_of(reference.state_dict(), features))  # strict: same keys
    encoder.train()  # frozen BN: training mode computes what torchvision's eval mode does
    images = torch.randn(2, 3, size, size + 8, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = encoder(images), up_to(reference, features)(images)
    assert ours.shape == (2, encoder.out_channels, math.ceil(size / 8), math.ceil((size + 8) / 8))
    assert (ours - theirs).abs().max() <= 1e-10 * theirs.abs().max()


@pytest.mark.parametrize("depth,features,channels", [(50, "layer3", 1024), (101, "layer3", 1024),
                                                     (50, "layer4", 2048)])
def test_feature_size_is_ceil_of_an_eighth(depth, features, channels):
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        encoder = resnet_encoder(depth, features=features)
        for height, width in [(417, 417), (321, 473), (65, 64)]:
            shape = encoder(torch.empty(1, 3, height, width)).shape
            assert shape == (1, channels, math.ceil(height / 8), math.ceil(width / 8))
    assert encoder.out_channels == channels


def test_dilations_follow_torchvision():
    with torch.device("meta"):
        encoder = resnet_encoder(50, features="layer4")
    reference = meta_resnet(50)
    ours = {name: (m.stride, m.dilation, m.padding) for name, m in encoder.named_modules()
            if isinstance(m, nn.Conv2d)}
    theirs = {name: (m.stride, m.dilation, m.padding) for name, m in reference.named_modules()
              if isinstance(m, nn.Conv2d)}
    assert ours == theirs
    assert ours["layer3.0.conv2"][1] == (1, 1) and ours["layer3.1.conv2"][1] == (2, 2)
    assert ours["layer4.0.conv2"][1] == (2, 2) and ours["layer4.2.conv2"][1] == (4, 4)


@pytest.mark.parametrize("depth,weights", [(50, ResNet50_Weights), (101, ResNet101_Weights)])
def test_parameter_counts(depth, weights):
    reference = meta_resnet(depth)
    with torch.device("meta"):
        encoders = {features: resnet_encoder(depth, features=features)
                    for features in ("layer3", "layer4")}
    for features, encoder in encoders.items():
        parts = [reference.conv1, reference.bn1, reference.layer1, reference.layer2,
                 reference.layer3] + ([reference.layer4] if features == "layer4" else [])
        modules = [m for part in parts for m in part.modules()]
        conv_weights = sum(m.weight.numel() for m in modules if isinstance(m, nn.Conv2d))
        bn_channels = sum(m.num_features for m in modules if isinstance(m, nn.BatchNorm2d))
        assert sum(p.numel() for p in encoder.parameters()) == conv_weights  # only convs train
        assert sum(b.numel() for b in encoder.buffers()) == 4 * bn_channels  # frozen BN values
    # with torchvision's BN affine values and fc, layer4's encoder is the whole published net
    full = encoders["layer4"]
    affine = sum(bn.weight.numel() + bn.bias.numel() for bn in batchnorms(full))
    fc = 2048 * 1000 + 1000
    assert sum(p.numel() for p in full.parameters()) + affine + fc == \
        weights.IMAGENET1K_V1.meta["num_params"]


def test_weight_constants_are_torchvision_imagenet_v1():
    assert ResNet50_Weights.IMAGENET1K_V1.url == RESNET50_WEIGHTS_URL
    assert ResNet101_Weights.IMAGENET1K_V1.url == RESNET101_WEIGHTS_URL
    assert RESNET50_WEIGHTS_URL.endswith("/" + RESNET50_WEIGHTS_FILE)
    assert RESNET101_WEIGHTS_URL.endswith("/" + RESNET101_WEIGHTS_FILE)


def test_bad_depth_or_features_are_refused():
    with pytest.raises(ValueError, match="depth 34.*50 or 101"):
        DilatedResNet(34)
    with pytest.raises(ValueError, match="features='layer5'"):
        DilatedResNet(50, "layer5")


# ---------------------------------------------------------------- frozen BatchNorm

def test_frozen_batchnorm_is_batchnorm_in_eval_mode_and_stays_there():
    frozen, reference = FrozenBatchNorm2d(5).double(), nn.BatchNorm2d(5).double().eval()
    randomize_batchnorm(frozen, seed=0)
    randomize_batchnorm(reference, seed=0)
    frozen.train()
    assert not frozen.training and not list(frozen.parameters())
    assert [name for name, _ in frozen.named_buffers()] == [
        "weight", "bias", "running_mean", "running_var"]
    x = torch.randn(4, 5, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = ((x - reference.running_mean[:, None, None])
                / torch.sqrt(reference.running_var[:, None, None] + reference.eps)
                * reference.weight[:, None, None] + reference.bias[:, None, None])
    with torch.no_grad():
        assert torch.allclose(frozen(x), expected, rtol=1e-12, atol=1e-12)
        assert torch.allclose(reference(x), expected, rtol=1e-12, atol=1e-12)


def test_features_of_an_image_do_not_depend_on_its_batch():
    torch.manual_seed(0)
    encoder = resnet_encoder(50).double().train()
    randomize_batchnorm(encoder, seed=1)
    images = torch.randn(3, 3, 33, 33, dtype=torch.float64)
    with torch.no_grad():
        batched = encoder(images)
        alone = torch.cat([encoder(image[None]) for image in images])
    assert torch.allclose(batched, alone, rtol=1e-12, atol=1e-12 * alone.abs().max().item())


def test_training_panet_leaves_batchnorm_unchanged_and_trains_every_conv():
    torch.manual_seed(0)
    model = PANet(resnet_encoder(50)).to(CPU)
    randomize_batchnorm(model, seed=2)
    bn_before = {name: tensor.clone() for name, tensor in model.named_buffers()}
    conv_before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    model.eval()
    model.train()
    assert all(not bn.training for bn in batchnorms(model))
    assert all(m.training for m in model.modules() if isinstance(m, nn.Conv2d))
    assert {id(p) for group in optimizer.param_groups for p in group["params"]}.isdisjoint(
        id(b) for b in model.buffers())

    g = torch.Generator().manual_seed(0)
    size = 65
    for _ in range(3):  # 1-way 1-shot episodes: a random support mask, random query labels
        support_images = torch.randn(1, 1, 1, 3, size, size, generator=g)
        query_images = torch.randn(1, 1, 3, size, size, generator=g)
        support_fg = (torch.rand(1, 1, 1, size, size, generator=g) < 0.4).float()
        query_labels = torch.randint(0, 2, (1, 1, size, size), generator=g)
        optimizer.zero_grad()
        out = model(support_images, support_fg, 1 - support_fg, query_images)
        loss = panet_loss(out, query_labels, support_fg, 1 - support_fg, model.score)
        assert torch.isfinite(loss.total)
        loss.total.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        optimizer.step()

    for name, tensor in model.named_buffers():
        assert torch.equal(tensor, bn_before[name]), name
    assert all(not torch.equal(p, conv_before[name]) for name, p in model.named_parameters())
    assert all(not bn.training for bn in batchnorms(model))


# ---------------------------------------------------------------- weight loading

@pytest.mark.parametrize("features", ["layer3", "layer4"])
def test_loads_torchvision_file_by_name(resnet50_file, features, caplog):
    path, state = resnet50_file
    with caplog.at_level(logging.INFO, logger="panet.models.resnet"):
        encoder = resnet_encoder(50, path, features=features)
    loaded = encoder.state_dict()
    for key, tensor in loaded.items():
        assert torch.equal(tensor, state[key]), key
    expected_ignored = {key for key in state
                        if key.startswith("fc.") or key.endswith(".num_batches_tracked")
                        or (features == "layer3" and key.startswith("layer4."))}
    assert set(state) == set(loaded) | expected_ignored
    [record] = caplog.records  # one line naming what was ignored
    message = record.getMessage()
    assert "\n" not in message and "fc.* (2)" in message
    n_layer4 = sum(key.startswith("layer4.") and not key.endswith("num_batches_tracked")
                   for key in state)
    assert (f"layer4.* ({n_layer4})" in message) == (features == "layer3")


def test_load_returns_the_ignored_keys_and_reads_its_own_state_dict(resnet50_file, tmp_path):
    path, state = resnet50_file
    encoder = DilatedResNet(50)
    ignored = load_torchvision_resnet(encoder, path)
    assert sorted(ignored) == sorted(key for key in state if key not in encoder.state_dict())
    again = DilatedResNet(50)
    assert load_torchvision_resnet(again, save(tmp_path / "own.pth", encoder.state_dict())) == []
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 encoder.state_dict().values()))


def test_vgg_file_to_resnet_says_what_it_holds(tmp_path):
    with torch.device("meta"):
        vgg = torchvision.models.vgg16().state_dict()
    path = save(tmp_path / VGG16_WEIGHTS_FILE, tiny_copy(vgg))
    one_line_error(lambda: resnet_encoder(50, path), r"holds VGG-16 weights .*not ResNet-50's",
                   RESNET50_WEIGHTS_FILE, RESNET50_WEIGHTS_URL)


@pytest.mark.parametrize("file_depth,encoder_depth", [(50, 101), (101, 50)])
def test_resnet_file_of_another_depth_says_what_it_holds(tmp_path, file_depth, encoder_depth):
    state = meta_resnet(file_depth).state_dict()
    path = save(tmp_path / WEIGHTS[file_depth][0], tiny_copy(state))
    one_line_error(lambda: resnet_encoder(encoder_depth, path),
                   rf"holds ResNet-{file_depth} weights .*not ResNet-{encoder_depth}'s",
                   *WEIGHTS[encoder_depth])


def test_wrong_shape_is_refused(trimmed_resnet50_state, tmp_path):
    state = dict(trimmed_resnet50_state, **{"layer2.0.conv2.weight": torch.zeros(128, 128, 1, 1)})
    path = save(tmp_path / "shape.pth", state)
    one_line_error(lambda: resnet_encoder(50, path),
                   r"layer2\.0\.conv2\.weight has shape \(128, 128, 1, 1\), "
                   r"expected \(128, 128, 3, 3\)", RESNET50_WEIGHTS_URL)


def test_missing_key_is_refused(trimmed_resnet50_state, tmp_path):
    state = {k: v for k, v in trimmed_resnet50_state.items() if k != "layer3.5.bn3.running_var"}
    path = save(tmp_path / "missing.pth", state)
    one_line_error(lambda: resnet_encoder(50, path), r"missing key layer3\.5\.bn3\.running_var",
                   RESNET50_WEIGHTS_FILE)


def test_unexpected_key_is_refused(trimmed_resnet50_state, tmp_path):
    state = dict(trimmed_resnet50_state, **{"layer2.0.se.weight": torch.zeros(3)})
    path = save(tmp_path / "unexpected.pth", state)
    one_line_error(lambda: resnet_encoder(50, path), r"unexpected key layer2\.0\.se\.weight",
                   RESNET50_WEIGHTS_FILE)


def test_many_problems_stay_one_line(trimmed_resnet50_state, tmp_path):
    path = save(tmp_path / "tiny.pth", tiny_copy(trimmed_resnet50_state))
    message = one_line_error(lambda: resnet_encoder(50, path), "does not match ResNet-50")
    assert f"and {len(trimmed_resnet50_state) - 4} more" in message  # all misshapen, 4 shown


def test_truncated_non_dict_and_nested_files_are_refused(tmp_path):
    whole = save(tmp_path / "whole.pth", {"conv1.weight": torch.zeros(64, 3, 7, 7)})
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    one_line_error(lambda: resnet_encoder(50, truncated), "Could not read", RESNET50_WEIGHTS_URL)
    not_a_dict = save(tmp_path / "list.pth", [torch.zeros(3)])
    one_line_error(lambda: resnet_encoder(50, not_a_dict), "holds a list, not a state dict",
                   RESNET50_WEIGHTS_URL)
    nested = save(tmp_path / "checkpoint.pth", {"model": {"conv1.weight": torch.zeros(1)}})
    one_line_error(lambda: resnet_encoder(50, nested), "not a flat state dict",
                   RESNET50_WEIGHTS_URL)


def test_missing_file_names_the_file_and_url(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        resnet_encoder(101, tmp_path / "nowhere.pth")
    assert RESNET101_WEIGHTS_FILE in str(error.value) and RESNET101_WEIGHTS_URL in str(error.value)


def test_vgg_loader_says_a_file_holds_resnet_weights(tmp_path):
    state = meta_resnet(50).state_dict()
    path = save(tmp_path / RESNET50_WEIGHTS_FILE, tiny_copy(state))
    one_line_error(lambda: vgg16_encoder(path), r"holds ResNet-50 weights .*not VGG-16's",
                   VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL)


# --- PANet with a ResNet through the commands --------------------------------------------------


def test_resnet_panet_trains_on_two_processes_then_tests_and_predicts(synthetic_root, tmp_path,
                                                                      folder_root):
    """`with resnet50` (random weights here: no ImageNet file) at a small size: train.py on 2
    CPU processes (DDP over gloo), then test.py and predict.py on its checkpoint; a ResNet-50
    file given to the VGG-16 encoder is refused before any work."""
    from conftest import run_repo_python
    from test_experiments import torchrun

    run = tmp_path / "run"
    torchrun("train.py", "synthetic", "fast", "resnet50", f"data.root={synthetic_root}",
             "model.weights=None", "train.batch_size=2", "train.steps=2",
             f"train.output_dir={run}")
    state = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    assert state["config"]["model"]["encoder"] == "resnet50" and state["step"] == 2
    assert any(key.startswith("encoder.layer3.") for key in state["model"])
    run_repo_python("test.py", "with", "fast", "device=cpu", f"test.checkpoint={run}",
                    f"test.output_dir={tmp_path / 'test'}")
    examples = folder_root / "examples"
    run_repo_python("scripts/predict.py", "--checkpoint", str(run / "checkpoints" / "final.pt"),
                    "--way", str(examples / "support.jpg"), str(examples / "support_mask.png"),
                    "--query", str(examples / "queries"), "--out", str(tmp_path / "predict"),
                    "--device", "cpu")
    assert len(list((tmp_path / "predict").glob("*_overlay.png"))) == 3
