"""scripts/predict.py: label PNGs and overlays per query, and a one-line reason with a non-zero
exit for every bad input."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_script, write_bomb_png
from panet.weights.checkpoint import save_checkpoint
from panet.inference import Segmenter
from panet.models import PANet
from panet.models.vgg import SMALL_DILATED, DilatedVGG
from panet.report.figures import OUTSIDE_DIM, label_palette, overlay, prediction_overlay, way_colour

PREDICT = load_script("predict")
SIZE = 48


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A train.py-style checkpoint of a random small PANet trained at 48 x 48."""
    torch.manual_seed(0)
    model = PANet(DilatedVGG(SMALL_DILATED))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return save_checkpoint(
        tmp_path_factory.mktemp("checkpoint") / "final.pt", step=1, model=model,
        optimizer=optimizer, scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1),
        config={"model": {"encoder": "small", "weights": None, "alpha": 20.0},
                "data": {"size": SIZE}})


@pytest.fixture
def examples(folder_root):
    return folder_root / "examples"


def test_writes_an_indexed_label_png_and_an_overlay_per_query(checkpoint, examples, tmp_path,
                                                              capsys):
    support, mask = examples / "support.jpg", examples / "support_mask.png"
    queries = sorted((examples / "queries").iterdir())
    out = tmp_path / "out"
    assert PREDICT.main(["--checkpoint", str(checkpoint), "--way", str(support), str(mask),
                         "--query", str(examples / "queries"), "--out", str(out),
                         "--device", "cpu", "--batch-size", "2"]) == 0
    expected = Segmenter.from_checkpoint(checkpoint, "cpu", batch_size=2).segment(  # same batches
        [[(support, mask)]], queries)
    for query, result in zip(queries, expected):
        with Image.open(out / f"{query.stem}.png") as written:
            assert written.mode == "P" and written.size == Image.open(query).size
            assert written.getpalette()[:9] == label_palette()[:9]
            assert np.array_equal(np.array(written), result.labels)
        with Image.open(out / f"{query.stem}_overlay.png") as picture:
            assert picture.mode == "RGB"
            assert picture.width >= 256 and picture.height > picture.width * 120 / 160
    assert set(np.unique(expected[0].labels)) == {0, 1}
    assert f"3 label maps (<stem>.png) and overlays (<stem>_overlay.png) written to {out}" in \
        capsys.readouterr().out


def test_several_ways_shots_and_an_ignore_value(checkpoint, examples, tmp_path, capsys):
    support, mask = examples / "support.jpg", examples / "support_mask.png"
    labels = np.array(Image.open(mask)) // 255
    binary = tmp_path / "binary.png"
    Image.fromarray(labels.astype(np.uint8)).save(binary)
    labels[:10] = 255
    with_void = tmp_path / "with_void.png"
    Image.fromarray(labels.astype(np.uint8)).save(with_void)
    query = sorted((examples / "queries").iterdir())[0]
    assert PREDICT.main(["--checkpoint", str(checkpoint), "--way", str(support), str(binary),
                         str(support), str(with_void), "--way", str(query), str(binary),
                         str(query), str(with_void), "--query", str(query),
                         "--out", str(tmp_path / "out"),
                         "--ignore-value", "255"]) == 0
    written = np.array(Image.open(tmp_path / "out" / f"{query.stem}.png"))
    assert set(np.unique(written)) <= {0, 1, 2}
    assert f"overlay: {tmp_path / 'out' / (query.stem + '_overlay.png')}" in capsys.readouterr().out


def test_bad_input_exits_with_a_one_line_reason(checkpoint, examples, tmp_path, capsys):
    support, mask = str(examples / "support.jpg"), str(examples / "support_mask.png")
    multi = tmp_path / "multi.png"
    Image.fromarray(np.arange(120 * 160).reshape(120, 160).astype(np.uint8) % 3).save(multi)
    (tmp_path / "empty").mkdir()
    (tmp_path / "clash").mkdir()
    Image.open(support).save(tmp_path / "clash" / "a.jpg")
    Image.open(support).save(tmp_path / "clash" / "a.png")
    out = tmp_path / "out"
    common = ["--checkpoint", str(checkpoint), "--out", str(out)]
    cases = [
        (["--way", support, "--query", support], r"--way 1 has an odd number of paths \(1\)"),
        (["--way", support, str(tmp_path / "gone.png"), "--query", support],
         r"--way 1: .*gone\.png does not exist"),
        (["--way", support, str(multi), "--query", support],
         r"way 1 shot 1 mask \(.*multi\.png\): 3 values \(0, 1, 2\)"),
        (["--way", support, mask, "--query", str(tmp_path / "empty")],
         r"--query folder .*empty holds no"),
        (["--way", support, mask, "--query", str(tmp_path / "clash")],
         r"a\.jpg and .*a\.png would both write .*/out/a\.png"),
        (["--way", support, mask, "--way", support, mask, support, mask, "--query", support],
         "way 2 has 2 shots but way 1 has 1"),
        (["--way", support, mask, "--query", support, "--checkpoint", str(tmp_path / "no.pt")],
         r"checkpoint .*no\.pt' does not exist"),
    ]
    for args, message in cases:
        assert PREDICT.main(common + args) == 1, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("predict.py: error: "), err
        assert re.search(message, err), (message, err)
        assert not out.exists()
    for args in (["--way", support, mask, "--query", support],  # neither model given
                 ["--weights", "w.pth", "--checkpoint", "c.pt", "--way", support, mask,
                  "--query", support, "--out", str(out)]):
        with pytest.raises(SystemExit) as stop:
            PREDICT.main(args)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "(see --help)" in err


def test_nothing_is_written_over_an_input_or_an_existing_file(checkpoint, examples, tmp_path,
                                                              capsys):
    """--out the queries' folder (PNG queries: photo.png would become a label map) is refused;
    an existing <stem>.png (a ground-truth mask) is kept unless --overwrite."""
    queries = tmp_path / "queries"
    queries.mkdir()
    photo = queries / "photo.png"
    Image.open(sorted((examples / "queries").iterdir())[0]).save(photo)
    before = photo.read_bytes()
    way = ["--way", str(examples / "support.jpg"), str(examples / "support_mask.png")]
    base = ["--checkpoint", str(checkpoint), *way, "--query", str(photo), "--device", "cpu"]
    assert PREDICT.main([*base, "--out", str(queries)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"predict.py: error: {photo} is an input: --out must be another folder than the "
        "queries' and the supports'")
    assert photo.read_bytes() == before
    out = tmp_path / "out"
    out.mkdir()
    truth = out / "photo.png"
    truth.write_bytes(b"ground truth")
    assert PREDICT.main([*base, "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"predict.py: error: {truth} exists: choose another --out, or add --overwrite to "
        "replace it")
    assert truth.read_bytes() == b"ground truth" and sorted(out.iterdir()) == [truth]
    assert PREDICT.main([*base, "--out", str(out), "--overwrite"]) == 0
    with Image.open(truth) as written:
        assert written.mode == "P" and photo.read_bytes() == before


def test_a_decompression_bomb_is_refused_in_one_line(checkpoint, examples, tmp_path, capsys):
    """A PNG whose header says 60000 x 60000 pixels: one line, nothing written."""
    bomb = write_bomb_png(tmp_path / "bomb.png")
    out = tmp_path / "out"
    assert PREDICT.main(["--checkpoint", str(checkpoint), "--way", str(examples / "support.jpg"),
                         str(examples / "support_mask.png"), "--query", str(bomb), "--out",
                         str(out), "--device", "cpu"]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "decompression bomb" in error, error
    assert not out.exists()


def test_overlay_enlarges_small_images_outlines_ways_and_adds_a_legend():
    image = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    labels = np.zeros((10, 12), dtype=np.uint8)
    labels[2:8, 3:9] = 1
    labels[0, 11] = 2
    picture = np.asarray(prediction_overlay(image, labels, ["dog", "cat"]))
    factor = 26  # ceil(256 / 10): the short side becomes at least 256 pixels
    assert picture.shape[1] == 12 * factor and picture.shape[0] > 10 * factor  # legend below
    big_image = np.repeat(np.repeat(image, factor, 0), factor, 1)
    big_labels = np.repeat(np.repeat(labels, factor, 0), factor, 1)
    blended = overlay(big_image, big_labels)
    top = picture[:10 * factor]
    thickness = round(10 * factor / 150)
    assert np.array_equal(top[0, 0], blended[0, 0])  # background: dimmed image
    assert np.allclose(top[0, 0], image[0, 0] * (1 - OUTSIDE_DIM), atol=1)
    assert (top[2 * factor, 3 * factor:9 * factor] == way_colour(1)).all()  # outline of way 1
    assert (top[2 * factor + thickness - 1, 5 * factor] == way_colour(1)).all()
    inside = (5 * factor, 6 * factor)
    assert np.array_equal(top[inside], blended[inside])  # interior: blended, not outlined
    assert (top[:factor, 11 * factor] == way_colour(2)).all()  # its left edge is outlined,
    corner = (factor // 2, 11 * factor + factor // 2)  # the image border is no boundary
    assert np.array_equal(top[corner], blended[corner])
    legend = picture[10 * factor:]
    assert (legend == way_colour(1)).all(axis=-1).any() and (legend == 0).all(axis=-1).any()
