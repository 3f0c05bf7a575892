"""The encoder, the prototype functions and the network against PROTOCOL §1-3 references."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
import torchvision

import reference
from panet.models import PANet, vgg16_encoder
from panet.models.vgg import VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, Block, DilatedVGG
from panet.models.prototypes import (cosine_logits, masked_average_pool,
                                     prototypes_from_pools, upsample, upsampling_adjoint)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tiny_encoder(seed=0):
    """A small dilated VGG (output stride 2) in float64, so loop references stay fast."""
    torch.manual_seed(seed)
    return DilatedVGG([Block(1, 6, pool_stride=2), Block(2, 8, dilation=2)]).double()


def random_episode(B, W, S, Q, size=(23, 29), n_classes=5, seed=0):
    """Images, support masks built per PROTOCOL §2 from label maps with 255 pixels, and query
    labels per §3. Classes of way w: w + 1; other labels play other classes."""
    g = torch.Generator().manual_seed(seed)
    support_images = torch.randn(B, W, S, 3, *size, generator=g, dtype=torch.float64)
    query_images = torch.randn(B, Q, 3, *size, generator=g, dtype=torch.float64)
    support_maps = torch.randint(0, n_classes + 1, (B, W, S, *size), generator=g)
    support_maps[torch.rand(B, W, S, *size, generator=g) < 0.1] = 255
    way_class = torch.arange(1, W + 1).view(1, W, 1, 1, 1)
    fg = (support_maps == way_class).double()
    bg = ((support_maps == 0) | (support_maps > W)).double()  # none of the episode's classes
    query_labels = torch.randint(0, n_classes + 1, (B, Q, *size), generator=g)
    query_labels[query_labels > W] = 0
    query_labels[torch.rand(B, Q, *size, generator=g) < 0.1] = 255
    return support_images, fg, bg, query_images, query_labels


# ---------------------------------------------------------------- encoder (PROTOCOL §1)

def test_vgg16_parameter_count_and_layers():
    encoder = vgg16_encoder()
    assert sum(p.numel() for p in encoder.parameters()) == 14_714_688
    convs = encoder.convs()
    assert len(convs) == 13
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3
    assert all(c.padding == c.dilation and c.kernel_size == (3, 3) for c in convs)
    pools = [m for m in encoder.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 3 + [(3, 1, 1)]
    last = list(encoder.stages[-1])
    assert isinstance(last[-1], torch.nn.Conv2d), "no ReLU after the last conv"
    assert sum(isinstance(m, torch.nn.ReLU) for m in encoder.modules()) == 12


def test_vgg16_feature_size_at_417():
    with torch.no_grad():
        features = vgg16_encoder()(torch.randn(1, 3, 417, 417))
    assert features.shape == (1, 512, 53, 53)
    assert (features < 0).any(), "the last conv has no ReLU, so features can be negative"


def test_vgg16_init_is_kaiming_fan_in():
    torch.manual_seed(0)
    conv = vgg16_encoder().convs()[5]  # 256 x 256 x 3 x 3: fan_in 2304
    expected_std = (2.0 / (256 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.02)


@pytest.fixture
def torchvision_weights(tmp_path):
    """A state dict in torchvision's format (random weights: nothing is downloaded)."""
    torch.manual_seed(1)
    model = torchvision.models.vgg16()
    path = tmp_path / VGG16_WEIGHTS_FILE
    torch.save(model.state_dict(), path)
    return path, model


def test_loads_torchvision_weights_by_name(torchvision_weights):
    path, model = torchvision_weights
    encoder = vgg16_encoder(path)
    reference_convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    for ours, theirs in zip(encoder.convs(), reference_convs, strict=True):
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    # parity: the first two blocks (same layers in torchvision, up to the pool) give equal outputs
    x = torch.randn(1, 3, 37, 41)
    with torch.no_grad():
        assert torch.allclose(encoder.stages[0][:4](x), model.features[:4](x), atol=1e-6)


def test_weights_missing_file_names_the_file_and_url(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        vgg16_encoder(tmp_path / "nowhere.pth")
    assert VGG16_WEIGHTS_FILE in str(error.value) and VGG16_WEIGHTS_URL in str(error.value)


def test_weights_with_wrong_shape_or_missing_key_are_refused(torchvision_weights, tmp_path):
    path, model = torchvision_weights
    state = model.state_dict()
    state["features.28.weight"] = torch.zeros(512, 512, 1, 1)
    del state["features.0.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"features\.28\.weight has shape.*missing key|missing key "
                                         r"features\.0\.bias.*features\.28\.weight"):
        vgg16_encoder(bad)


def test_weights_corrupt_file_is_refused(tmp_path):
    bad = tmp_path / VGG16_WEIGHTS_FILE
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Could not read"):
        vgg16_encoder(bad)


# ---------------------------------------------------------------- prototypes (PROTOCOL §2)

@pytest.mark.parametrize("feature_size,mask_size", [((53, 53), (417, 417)), ((7, 9), (23, 29)),
                                                    ((12, 15), (23, 29)), ((5, 5), (5, 5))])
def test_upsampling_adjoint_identity(feature_size, mask_size):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, *feature_size, generator=g, dtype=torch.float64)
    mask = torch.rand(*mask_size, generator=g, dtype=torch.float64)
    up = F.interpolate(features[None], size=mask_size, mode="bilinear", align_corners=False)[0]
    lhs = (up * mask).sum(dim=(1, 2))
    rhs = (features * upsampling_adjoint(mask, feature_size)).sum(dim=(1, 2))
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_masked_average_pool_matches_upsample_then_pool():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(4, 6, 12, 15, generator=g, dtype=torch.float64)
    masks = (torch.rand(4, 23, 29, generator=g) > 0.6).double()
    masks[3] = 0  # empty mask: pooled vector is 0 / (0 + eps) = 0
    pooled = masked_average_pool(features, masks)
    expected = torch.stack([reference.pool(f, m) for f, m in zip(features, masks)])
    assert torch.allclose(pooled, expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(pooled[3], torch.zeros(6, dtype=torch.float64))


def test_masked_average_pool_float32_at_paper_size():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(2, 512, 53, 53, generator=g)
    masks = (torch.rand(2, 417, 417, generator=g) > 0.7).float()
    expected = torch.stack([reference.pool(f.double(), m.double()) for f, m in zip(features, masks)])
    assert torch.allclose(masked_average_pool(features, masks).double(), expected, atol=1e-5)


@pytest.mark.parametrize("channels,feature,image", [(128, 26, 101), (512, 53, 417)])
def test_head_gives_each_episode_its_own_values_in_any_batch(channels, feature, image):
    """Pooling, prototype means, cosine logits and upsampling of one support / episode / query
    alone equal the same item inside a batch, to float32 rounding: batching never mixes items.
    Not bitwise: torch promises no batch invariance of its kernels (a matmul's BLAS blocking,
    for one, depends on the batch size and the CPU)."""
    def same(a, b):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)

    g = torch.Generator().manual_seed(channels)
    features = torch.randn(6, channels, feature, feature, generator=g)
    masks = (torch.rand(6, image, image, generator=g) > 0.5).float()
    pooled = masked_average_pool(features, masks)
    for i in range(6):
        same(masked_average_pool(features[i], masks[i]), pooled[i])
        same(masked_average_pool(features[i].expand(3, -1, -1, -1), masks[:3])[i % 3],
             masked_average_pool(features[i], masks[i % 3]))
    fg, bg = pooled.view(2, 1, 3, channels), pooled.flip(0).view(2, 1, 3, channels)
    prototypes = prototypes_from_pools(fg, bg)
    same(prototypes_from_pools(fg[1:], bg[1:])[0], prototypes[1])
    logits = cosine_logits(features[:2], prototypes, 20.0)
    same(cosine_logits(features[1:2], prototypes[1:], 20.0)[0], logits[1])
    many = cosine_logits(features, prototypes.repeat(3, 1, 1), 20.0)  # a batch of 6
    for first, count in ((0, 1), (1, 1), (2, 3), (3, 2)):
        same(cosine_logits(features[first:first + count],
                           prototypes.repeat(3, 1, 1)[first:first + count], 20.0),
             many[first:first + count])
    same(upsample(logits, (image, image))[1], upsample(logits[1:], (image, image))[0])


@pytest.mark.parametrize("B,W,S", list(itertools.product([1, 2], [1, 2], [1, 5])))
def test_panet_prototypes_match_loops(B, W, S):
    g = torch.Generator().manual_seed(B * 100 + W * 10 + S)
    features = torch.randn(B, W, S, 6, 12, 15, generator=g, dtype=torch.float64)
    fg = (torch.rand(B, W, S, 23, 29, generator=g) > 0.5).double()
    bg = 1 - fg
    protos = PANet(nn.Identity()).prototypes(features, fg, bg)
    assert protos.shape == (B, 1 + W, 6)
    for b in range(B):
        support = [[features[b, w, s] for s in range(S)] for w in range(W)]
        expected = torch.stack(reference.prototypes(support, fg[b], bg[b]))
        assert torch.allclose(protos[b], expected, rtol=1e-10, atol=1e-12)


def test_cosine_logits_match_cosine_similarity():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(3, 8, 5, 7, generator=g, dtype=torch.float64)
    protos = torch.randn(3, 4, 8, generator=g, dtype=torch.float64)
    protos[0, 2] = 0  # a zero prototype (empty mask): cosine 0, as F.cosine_similarity gives
    features[1, :, 2, 3] = 0
    logits = cosine_logits(features, protos, alpha=20.0)
    for n, p in itertools.product(range(3), range(4)):
        assert torch.allclose(logits[n, p], reference.cosine_map(features[n], protos[n, p]),
                              rtol=1e-12, atol=1e-12)
    assert torch.equal(logits[0, 2], torch.zeros(5, 7, dtype=torch.float64))


# ---------------------------------------------------------------- network (PROTOCOL §2-3)

@pytest.mark.parametrize("B,W,S,Q", list(itertools.product([1, 2], [1, 2], [1, 5], [1, 2])))
def test_forward_matches_loop_reference(B, W, S, Q):
    encoder = tiny_encoder()
    support_images, fg, bg, query_images, _ = random_episode(B, W, S, Q, seed=B + 2 * W + 4 * S + 8 * Q)
    out = PANet(encoder)(support_images, fg, bg, query_images)
    with torch.no_grad():
        logits, logits_low, _, _ = reference.forward(encoder, support_images, fg, bg, query_images)
    assert out.logits.shape == (B, Q, 1 + W, 23, 29)
    assert out.logits_low.shape == (B, Q, 1 + W, 12, 15)
    assert out.support_features.shape == (B, W, S, 8, 12, 15)
    assert torch.allclose(out.logits_low, logits_low, rtol=1e-9, atol=1e-9)
    assert torch.allclose(out.logits, logits, rtol=1e-9, atol=1e-9)


def test_forward_does_not_mix_episodes_of_a_batch():
    encoder = tiny_encoder()
    batch = random_episode(2, 2, 1, 1, seed=5)
    model = PANet(encoder)
    together = model(*batch[:4]).logits
    alone = model(*[x[1:] for x in batch[:4]]).logits
    assert torch.allclose(together[1:], alone, rtol=1e-12, atol=1e-12)


def test_model_adds_no_parameters():
    encoder = vgg16_encoder()
    assert sum(p.numel() for p in PANet(encoder).parameters()) == 14_714_688


@pytest.mark.parametrize("device", DEVICES)
def test_forward_runs_on_device_in_float32(device):
    torch.manual_seed(0)
    model = PANet(DilatedVGG([Block(1, 8, pool_stride=2), Block(1, 8, dilation=2)])).to(device)
    support_images, fg, bg, query_images, _ = [x.to(device) for x in random_episode(1, 2, 1, 1)]
    out = model(support_images.float(), fg.float(), bg.float(), query_images.float())
    assert out.logits.device.type == device and out.logits.dtype == torch.float32
    cpu_model = PANet(model.encoder.cpu().double())
    expected = cpu_model(*[x.cpu() for x in (support_images, fg, bg, query_images)]).logits
    assert torch.allclose(out.logits.cpu().double(), expected, atol=1e-4)
