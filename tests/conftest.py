"""Shared fixtures of the data tests: real third-party data, tiny VOC trees, synthetic sets,
folder-layout datasets (generated, and converted from the real COCO images); and a one-node
Slurm cluster (tests/slurm_cluster.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from panet.data.label_png import save_label_png
from panet.data.synthetic import generate, generate_folder
from panet.data.voc import CLASS_DIR, IMAGE_DIR, INSTANCE_DIR, LIST_DIR, read_id_list
from panet.data.voc_prepare import write_class_lists
from slurm_cluster import slurm_cluster  # noqa: F401  (a one-node Slurm, session scope)

REPO_ROOT = Path(__file__).resolve().parents[1]

# torchvision's ImageNet files are fetched from here when absent (panet.models.encoders): a
# closed local port, so that no test (nor the train.py / test.py it starts, which inherit the
# environment) downloads from the internet, and an absent file fails at once
os.environ["PANET_TORCHVISION_URL"] = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The benchmarks' main() sets torch's thread count for the whole process; put it back after
    each test, so that a later test computes with the count its subprocesses get (runs compared
    bit for bit across processes need the same count)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def shared_data_dir() -> Path:
    """The real-data folder: $PANET_SHARED_DATA, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("PANET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def voc_aug() -> Path:
    """The real VOC 2012 + SBD class masks (no JPEGs); skips when absent."""
    path = shared_data_dir() / "voc_aug"
    if not (path / "SegmentationClassAug").is_dir():
        pytest.skip(f"real PASCAL masks not found at {path} (set PANET_SHARED_DATA to the folder "
                    f"holding voc_aug/)")
    return path


def load_experiment(script: str):
    """The sacred experiment of train.py or test.py (`script` "train" | "test"), with its main
    function: the script imported by path under another module name (`test` is also a
    standard-library package)."""
    spec = importlib.util.spec_from_file_location(f"panet_{script}_script",
                                                  REPO_ROOT / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ex


def composed(script: str, named=(), **updates) -> dict:
    """The config `python <script>.py print_config with <named> <updates>` runs with: composed
    (`panet.run.compose`) and checked (ConfigError), nothing run. `updates`: nested dicts by
    section, as sacred's config_updates."""
    from panet.run.compose import flatten
    from panet.run.experiments import compose_command
    from panet.run.validation import config_problems
    from panet.base.errors import ConfigError

    composition = compose_command(script, list(named), flatten(updates))
    problems = config_problems(composition)
    if problems:
        raise ConfigError(problems)
    return composition.config


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (the scripts folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_repo_python(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` (e.g. "train.py", "-u", "with", ...) in a subprocess from ``cwd``,
    importing this checkout's ``panet``; fails the test with the output when it fails."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def voc_aug_class_lists(voc_aug, tmp_path_factory) -> Dict[str, Dict[int, List[str]]]:
    """Per-class lists of the real masks (splits train_aug, val, train), written once per
    session by ``scripts/prepare_voc.py`` into a temporary folder and read back."""
    out = tmp_path_factory.mktemp("voc_aug_lists")
    status = load_script("prepare_voc").main(
        [str(voc_aug), "--lists", str(voc_aug / "ImageSets"), "--out", str(out)])
    assert status == 0
    return {split.name: {k: read_id_list(split / f"class{k}.txt") for k in range(1, 21)}
            for split in out.iterdir() if split.is_dir()}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small generated dataset (120 images of 120 x 160, VOC layout + COCO variant)."""
    root = tmp_path_factory.mktemp("synthetic")
    return generate(root, n_images=120, size=(120, 160), seed=3, coco=True)


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory) -> Path:
    """The synthetic set in the folder layout (60 images of 120 x 160, splits train/test,
    examples/), prepared by ``scripts/prepare_folder.py``."""
    root = generate_folder(tmp_path_factory.mktemp("folder") / "shapes", n_images=60,
                           size=(120, 160), seed=5)
    assert load_script("prepare_folder").main([str(root)]) == 0
    return root


def coco_to_folder(coco_root: Path, out: Path, year: int = 2017) -> Dict[str, np.ndarray]:
    """Convert COCO (both splits of ``coco_root``) into the folder layout with pycocotools:
    class k = the k-th category in id order; each image's mask paints its annotations (crowd
    included, PROTOCOL §7) largest first, so smaller objects stay visible on top. Splits
    ``train`` and ``test`` (= COCO val). Returns the label maps by image id."""
    from pycocotools.coco import COCO

    for folder in ("images", "masks", "splits"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    labels_of = {}
    for coco_split, split in (("train", "train"), ("val", "test")):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(coco_root / "annotations" / f"instances_{coco_split}{year}.json"))
        categories = sorted(coco.getCatIds())
        class_of = {category: k for k, category in enumerate(categories, start=1)}
        (out / "classes.txt").write_text("".join(coco.cats[c]["name"] + "\n" for c in categories))
        ids = []
        for image_id in sorted(coco.getImgIds()):
            info = coco.imgs[image_id]
            stem = Path(info["file_name"]).stem
            labels = np.zeros((info["height"], info["width"]), dtype=np.uint8)
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
            for annotation in sorted(annotations, key=lambda a: -a["area"]):
                labels[coco.annToMask(annotation) > 0] = class_of[annotation["category_id"]]
            shutil.copyfile(coco_root / f"{coco_split}{year}" / info["file_name"],
                            out / "images" / f"{stem}.jpg")
            save_label_png(out / "masks" / f"{stem}.png", labels)
            labels_of[stem] = labels
            ids.append(stem)
        (out / "splits" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    return labels_of


@pytest.fixture(scope="session")
def coco_folder(tmp_path_factory):
    """(root, label maps by id) of the real COCO images of ``coco_tiny`` (train + val, 160
    images, 80 classes) converted into the folder layout; skips when the data is absent."""
    coco_root = shared_data_dir() / "coco_tiny"
    if not (coco_root / "annotations").is_dir():
        pytest.skip(f"real COCO data not found at {coco_root} (set PANET_SHARED_DATA to the "
                    f"folder holding coco_tiny/)")
    root = tmp_path_factory.mktemp("coco_folder") / "coco"
    return root, coco_to_folder(coco_root, root)


def write_jpeg(path: Path, height: int, width: int, seed: int = 0) -> None:
    """A random-noise RGB JPEG of the given size."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_bomb_png(path: Path, side: int = 60000) -> Path:
    """A valid PNG whose header claims side x side 8-bit grey pixels (a decompression bomb:
    more than PIL's Image.MAX_IMAGE_PIXELS) and whose data is one empty row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))
    return path


VocTreeFactory = Callable[..., Path]


@pytest.fixture
def make_voc_tree(tmp_path) -> VocTreeFactory:
    """Build a VOC2012 folder from label maps: ``make_voc_tree({id: labels}, instances=None,
    split="trainaug", class_lists=True)`` writes random JPEGs of matching sizes, the masks, the
    split list and (optionally) the per-class lists, and returns the folder."""

    def build(labels: Dict[str, np.ndarray], instances: Optional[Dict[str, np.ndarray]] = None,
              split: str = "trainaug", class_lists: bool = True) -> Path:
        root = tmp_path / "VOC2012"
        for folder in (IMAGE_DIR, CLASS_DIR, str(LIST_DIR)):
            (root / folder).mkdir(parents=True, exist_ok=True)
        for k, (image_id, label) in enumerate(sorted(labels.items())):
            write_jpeg(root / IMAGE_DIR / f"{image_id}.jpg", *label.shape, seed=k)
            save_label_png(root / CLASS_DIR / f"{image_id}.png", label)
        if instances is not None:
            (root / INSTANCE_DIR).mkdir(exist_ok=True)
            for image_id, instance in instances.items():
                save_label_png(root / INSTANCE_DIR / f"{image_id}.png", instance)
        (root / LIST_DIR / f"{split}.txt").write_text("".join(i + "\n" for i in sorted(labels)))
        if class_lists:
            write_class_lists(root)
        return root

    return build


def blob_labels(n_images: int, size=(60, 80), classes=range(1, 21), seed: int = 0,
                per_image: int = 2) -> Dict[str, np.ndarray]:
    """Label maps with ``per_image`` rectangles of distinct classes each (plus a void border)."""
    rng = np.random.default_rng(seed)
    height, width = size
    maps = {}
    classes = list(classes)
    for index in range(n_images):
        label = np.zeros(size, dtype=np.uint8)
        for class_id in rng.choice(classes, size=per_image, replace=False):
            top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
            label[top:top + height // 3, left:left + width // 3] = class_id
        label[0, :] = 255
        maps[f"img_{index:03d}"] = label
    return maps


def load_checked(source, image_id: str, class_ids):
    """A source's RGB image and label map, checked to match in size (``Source.check_sizes``)."""
    image, labels = source.image(image_id), source.label_map(image_id, class_ids)
    source.check_sizes(image_id, image, labels.shape)
    return image, labels
