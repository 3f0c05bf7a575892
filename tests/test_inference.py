"""panet.inference.Segmenter: the same logits as the model on the episode dataset's tensors,
input encodings that must agree, the ignore value, and every bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

import reference
from tolerance import PIXEL_AGREEMENT
from panet.data import collate_episodes, make_episode_dataset
from panet.data.transforms import image_tensor, resize_nearest
from panet.models.factory import MODEL_INPUTS
from panet.inference import Segmenter
from panet.models import PANet, build_encoder
from toy_methods import BackgroundPANet
from panet.models.vgg import (SMALL_DILATED, TORCHVISION_VGG16_CONVS, VGG16_WEIGHTS_FILE,
                                  DilatedVGG)
from panet.models.prototypes import upsample
from panet.settings import EpisodeSetting

OTHER_WAY = 7  # mask value of another way's class: ignored, so that the background excludes it
SIZE = (56, 72)  # H x W, not square: catches swapped axes


def small_panet(seed=0):
    torch.manual_seed(seed)
    return PANet(DilatedVGG(SMALL_DILATED)).eval()


def episode_ways(source, item):
    """The supports of an episode item as Segmenter input: (image path, mask) per shot, the mask
    1 on the way's class, OTHER_WAY on the episode's other classes, 0 elsewhere (void
    included), which with ignore_value=OTHER_WAY gives PROTOCOL §2's support masks."""
    class_ids = item["class_ids"].tolist()
    ways = []
    for class_id, ids in zip(class_ids, item["support_ids"]):
        shots = []
        for image_id in ids:
            labels = source.label_map(image_id)
            others = np.isin(labels, [c for c in class_ids if c != class_id])
            mask = np.where(labels == class_id, 1, np.where(others, OTHER_WAY, 0))
            shots.append((source.image_path(image_id), mask.astype(np.uint8)))
        ways.append(shots)
    return ways


def assert_segmenter_matches_episodes(segmenter, dataset, n_items):
    """Prototypes, feature-resolution logits, original-size labels and probabilities of the
    Segmenter equal the model's on the first ``n_items`` items of an episode dataset (labels
    compared where the top two logits differ by more than float noise)."""
    source, device = dataset.source, segmenter.device
    for index in range(n_items):
        item = dataset[index]
        batch = collate_episodes([item])
        with torch.inference_mode():
            out = segmenter.model(*(batch[key].to(device) for key in MODEL_INPUTS))
        ways = episode_ways(source, item)
        queries = [source.image_path(image_id) for image_id in item["query_ids"]]
        supports = segmenter.supports(ways, ignore_value=OTHER_WAY)
        if segmenter.through_forward is None:
            torch.testing.assert_close(supports.prototypes, out.prototypes, rtol=1e-4, atol=1e-5)
        logits = segmenter.query_logits(supports, queries)
        torch.testing.assert_close(logits, out.logits_low[0], rtol=1e-4, atol=1e-4)
        results = segmenter.segment(ways, queries, ignore_value=OTHER_WAY, probabilities=True)
        for q, result in enumerate(results):
            expected = upsample(out.logits_low[0, q][None], result.labels.shape)[0].cpu()
            top = expected.topk(2, dim=0).values
            clear = (top[0] - top[1] > 1e-3).numpy()
            assert clear.mean() > 0.99
            assert np.array_equal(result.labels[clear], expected.argmax(0).numpy()[clear])
            np.testing.assert_allclose(result.probabilities, expected.softmax(0).numpy(),
                                       atol=1e-5)


@pytest.mark.filterwarnings("ignore:left out of the episodes")
def test_a_model_whose_forward_is_its_own_is_segmented_through_it(folder_root):
    """A model that overrides forward without declaring its fast paths (issue 25): the Segmenter
    runs its forward, whose logits are the model's own (here: background everywhere)."""
    setting = EpisodeSetting(name="folder", root=str(folder_root), ways=2, shots=1, queries=2,
                             size=65)
    dataset = make_episode_dataset(setting, 2, seed=3, train=False)
    segmenter = Segmenter(BackgroundPANet(build_encoder("small")), size=65, device="cpu")
    assert "overrides forward" in segmenter.through_forward
    assert_segmenter_matches_episodes(segmenter, dataset, 2)
    item = dataset[0]
    ways = episode_ways(dataset.source, item)
    queries = [dataset.source.image_path(image_id) for image_id in item["query_ids"]]
    assert all(not result.labels.any() for result in segmenter.segment(ways, queries,
                                                                        ignore_value=OTHER_WAY))
    with pytest.raises(ValueError, match="no prototypes to show"):
        segmenter.prototypes(ways, ignore_value=OTHER_WAY)


@pytest.mark.filterwarnings("ignore:left out of the episodes")
@pytest.mark.parametrize("ways,shots,queries", [(1, 1, 1), (2, 2, 2)])
def test_segmenter_equals_the_model_on_episode_tensors(folder_root, ways, shots, queries):
    setting = EpisodeSetting(name="folder", root=str(folder_root), ways=ways, shots=shots,
                             queries=queries, size=SIZE)
    dataset = make_episode_dataset(setting, 3, seed=2, train=False)
    segmenter = Segmenter(small_panet(), size=SIZE, device="cpu", batch_size=3)
    assert_segmenter_matches_episodes(segmenter, dataset, n_items=3)


@pytest.fixture(scope="module")
def example(folder_root):
    """(segmenter, support image path, its 0/255 mask path, query paths)."""
    examples = folder_root / "examples"
    return (Segmenter(small_panet(), size=SIZE, device="cpu"), examples / "support.jpg",
            examples / "support_mask.png", sorted((examples / "queries").iterdir()))


def assert_same_prediction(a, b):
    """Two predictions of one query from images encoded in other batches: convolution kernels
    promise no batch invariance, so probabilities agree to float rounding and labels on all
    but the pixels whose top two probabilities are a near-tie (PIXEL_AGREEMENT)."""
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    assert (a.labels == b.labels).mean() >= PIXEL_AGREEMENT


def predict(segmenter, image, mask, queries, **options):
    return segmenter.segment([[(image, mask)]], queries, probabilities=True, **options)


def test_every_mask_encoding_gives_the_same_prediction(example):
    segmenter, image, mask_path, queries = example
    binary = np.array(Image.open(mask_path)) > 0
    encodings = {
        "0/255 png": mask_path,
        "0/1 uint8": binary.astype(np.uint8),
        "bool": binary,
        "0/1 float": binary.astype(np.float32),
        "0/255 PIL L": Image.fromarray(binary.astype(np.uint8) * 255),
        "PIL mode 1": Image.fromarray(binary.astype(np.uint8) * 255).convert("1"),
        "gray RGB": Image.fromarray(np.stack([binary.astype(np.uint8) * 200] * 3, axis=-1)),
        "0/1/255 with ignore 255 absent": binary.astype(np.uint8),
    }
    results = {name: predict(segmenter, image, mask, queries[:2],
                             ignore_value=255 if "ignore" in name else None)
               for name, mask in encodings.items()}
    first = results["0/255 png"]
    assert first[0].labels.any() and not first[0].labels.all()
    for name, result in results.items():
        for a, b in zip(result, first):
            assert np.array_equal(a.labels, b.labels), name
            assert np.array_equal(a.probabilities, b.probabilities), name


def test_image_inputs_agree_and_results_keep_the_original_size(example, tmp_path):
    segmenter, image, mask, queries = example
    rgb = np.asarray(Image.open(queries[0]))
    gray = Image.open(queries[0]).convert("L")
    gray_path = tmp_path / "gray.png"
    gray.save(gray_path)
    (by_path, by_pil, by_array, by_gray_path, by_gray_array) = predict(
        segmenter, Image.open(image), np.array(Image.open(mask)),
        [queries[0], Image.open(queries[0]), rgb, gray_path, np.asarray(gray)])
    assert by_path.labels.shape == rgb.shape[:2] and by_path.labels.dtype == np.uint8
    for other in (by_pil, by_array):  # the same pixels, in other places of the batch
        assert_same_prediction(other, by_path)
    assert_same_prediction(by_gray_path, by_gray_array)  # encoded in batches of 4 and 1
    assert by_path.probabilities.shape == (2, *rgb.shape[:2])
    np.testing.assert_allclose(by_path.probabilities.sum(axis=0), 1, atol=1e-5)
    assert np.array_equal(by_path.probabilities.argmax(axis=0), by_path.labels)


def test_results_do_not_depend_on_the_batch_size(example):
    segmenter, image, mask, queries = example
    one = predict(segmenter, image, mask, queries, batch_size=1)
    three = predict(segmenter, image, mask, queries, batch_size=3)
    two = list(segmenter.iter_segment([[(image, mask)]], queries, batch_size=2,
                                      probabilities=True))
    for a, b, c in zip(one, three, two):  # within the exactness contract (tests/tolerance.py)
        assert_same_prediction(a, b)
        assert_same_prediction(a, c)


def test_ignored_pixels_are_neither_foreground_nor_background(example):
    """Prototypes against the loop reference of PROTOCOL §2 (upsample, then pool) with the
    ignored pixels left out of both masks."""
    segmenter, image_path, _, _ = example
    image = Image.open(image_path)
    mask = np.zeros((image.height, image.width), dtype=np.int64)
    mask[20:70, 30:90] = 3
    mask[60:100, 80:150] = 200  # overlaps the foreground: ignore wins where it is set
    prototypes = segmenter.prototypes([[(image, mask)]], ignore_value=200)[0]
    resized = resize_nearest(mask, SIZE)
    fg = torch.from_numpy(resized == 3).double()[None, None]
    bg = torch.from_numpy(resized == 0).double()[None, None]
    with torch.inference_mode():
        features = segmenter.model.encoder(image_tensor(image, SIZE)[None]).double()
    expected = reference.prototypes([[features[0]]], fg, bg)
    torch.testing.assert_close(prototypes.double(), torch.stack(expected), rtol=1e-5,
                               atol=1e-6)
    unmasked = segmenter.prototypes([[(image, mask > 0)]])[0]
    assert not torch.allclose(unmasked, prototypes, atol=1e-3)


def broken_files(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    truncated = tmp_path / "truncated.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])  # header intact, pixels cut
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((120, 160), 4000, dtype=np.uint16)).save(deep)
    return corrupt, truncated, deep


def test_bad_input_is_a_value_error_naming_the_input(example, tmp_path):
    segmenter, image, mask, queries = example
    corrupt, truncated, deep = broken_files(tmp_path)
    good = np.array(Image.open(mask))
    one_pixel = np.zeros_like(good)
    rows_kept = resize_nearest(np.arange(good.shape[0])[:, None], (SIZE[0], 1)).ravel()
    one_pixel[min(set(range(good.shape[0])) - set(rows_kept)), 50] = 1  # a row resizing drops
    three = good.copy() // 255
    three[:5] = 2
    four = three.copy()
    four[-5:] = 3
    colour = np.stack([good, good, np.zeros_like(good)], axis=-1)
    nan = good.astype(np.float32)
    nan[0, 0] = np.nan
    cases = [
        ([[(image, np.pad(good, ((0, 10), (0, 0))))]], queries, {},
         r"way 1 shot 1: the image is 120 x 160 \(H x W\) but its mask is 130 x 160"),
        ([[(image, np.zeros_like(good))]], queries, {}, "way 1 shot 1 mask: no foreground"),
        ([[(image, good)]], queries, {"ignore_value": 255}, "no foreground"),
        ([[(image, one_pixel)]], queries, {}, r"way 1 shot 1: the mask's 1 foreground pixels "
                                              r"vanish when it is resized to the model's 56 x 72"),
        ([[(image, three)]], queries, {}, r"way 1 shot 1 mask: 3 values \(0, 1, 2\).*ignore_value"),
        ([[(image, four)]], queries, {"ignore_value": 1},
         r"3 values \(0, 2, 3\) besides ignore_value=1"),
        ([[(image, three)]], queries, {"ignore_value": 255}, "besides ignore_value=255"),
        ([[(image, colour)]], queries, {}, "mask: a colour image with differing channels"),
        ([[(image, nan)]], queries, {}, "NaN"),
        ([[(corrupt, mask)]], queries, {},
         r"way 1 shot 1 image \(.*corrupt\.jpg\): not a readable image"),
        ([[(truncated, mask)]], queries, {}, r"truncated\.jpg\): cannot decode"),
        ([[(image, tmp_path / "absent.png")]], queries, {},
         r"way 1 shot 1 mask \(.*absent\.png\): the file does not exist"),
        ([[(deep, mask)]], queries, {}, r"deep\.png\): I;16 image"),
        ([[(image, mask)]], [queries[0], corrupt], {},
         r"query 2 \(.*corrupt\.jpg\): not a readable image"),
        ([[(image, mask)]], [tmp_path / "nope.jpg"], {},
         r"query 1 \(.*nope\.jpg\): the file does not exist"),
        ([[(image, mask)]], [], {}, "non-empty list of images"),
        ([[(image, mask)], [(image, mask), (image, mask)]], queries, {},
         "way 2 has 2 shots but way 1 has 1"),
        ([[image, mask]], queries, {}, r"way 1 shot 1: expected an \(image, mask\) pair"),
        ([], queries, {}, "non-empty list of ways"),
        ([[(image, mask)]], queries, {"batch_size": 0}, "batch_size must be >= 1"),
    ]
    for ways, query_list, options, message in cases:
        with pytest.raises(ValueError, match=message):
            segmenter.segment(ways, query_list, **options)
    for options, message in (({"precision": "fp64"}, r"^precision='fp64': must be one of"),
                             ({"memory_format": "nhwc"}, r"^memory_format='nhwc': must be one"),
                             ({"size": 0}, r"^size=0: must be an integer >= 1"),
                             ({"batch_size": 0}, r"^batch_size=0: must be an integer >= 1"),
                             ({"device": "gpu"}, r"^device='gpu': must be")):
        with pytest.raises(ValueError, match=message):  # the Segmenter's own arguments
            Segmenter(segmenter.model, **{"device": "cpu", **options})


def test_inputs_are_checked_before_any_image_is_encoded(example, tmp_path, monkeypatch):
    segmenter, image, mask, queries = example
    corrupt, truncated, _ = broken_files(tmp_path)
    calls = []
    monkeypatch.setattr(segmenter, "_encode", lambda images, *_: calls.append(len(images)))
    for ways, query_list in (([[(image, mask)]], [queries[0], corrupt]),
                             ([[(image, mask)], [(truncated, mask)]], queries)):
        with pytest.raises(ValueError):
            segmenter.iter_segment(ways, query_list)
    assert calls == []


def test_from_checkpoint_and_from_weights(tmp_path, example):
    from panet.weights.checkpoint import save_checkpoint

    model = small_panet(seed=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    config = {"model": {"encoder": "small", "weights": None, "alpha": 20.0},
              "data": {"size": 40}}
    path = save_checkpoint(tmp_path / "final.pt", step=1, model=model, optimizer=optimizer,
                           scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1), config=config)
    restored = Segmenter.from_checkpoint(path, device="cpu")
    assert restored.size == (40, 40) and restored.device == torch.device("cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[key], value)

    vgg = DilatedVGG()  # torchvision's file format: features.{i}.weight / .bias
    state = {f"features.{index}.{name}": getattr(conv, name).detach()
             for conv, index in zip(vgg.convs(), TORCHVISION_VGG16_CONVS)
             for name in ("weight", "bias")}
    torch.save(state, tmp_path / VGG16_WEIGHTS_FILE)
    init = Segmenter.from_weights(tmp_path / VGG16_WEIGHTS_FILE, device="cpu", size=33)
    assert init.size == (33, 33)
    assert torch.equal(init.model.encoder.convs()[12].weight, vgg.convs()[12].weight)
    _, image, mask, queries = example
    (result,) = init.segment([[(image, mask)]], queries[:1])
    assert result.labels.shape == (120, 160)
    with pytest.raises(FileNotFoundError, match=VGG16_WEIGHTS_FILE):
        Segmenter.from_weights(tmp_path / "elsewhere" / VGG16_WEIGHTS_FILE)
