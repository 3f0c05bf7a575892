"""Your own dataset, on real images: the COCO images of ../shared/data/coco_tiny converted with
pycocotools into the folder layout (conftest.coco_folder), then prepare_folder.py, a few training
steps of the small encoder, test.py and predict.py as commands, and the Segmenter against the
episode pipeline on the trained model."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import load_script, run_repo_python
from panet.weights.checkpoint import load_checkpoint
from panet.data import make_episode_dataset
from panet.settings import EpisodeSetting
from panet.inference import Segmenter
from test_inference import assert_segmenter_matches_episodes

TEST_CLASSES = ["person", "cup", "dining table", "bottle", "chair"]  # many images in both splits
# toy scale: classes with fewer than 2 images, and test classes the few episodes never draw
pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]


@pytest.fixture(scope="module")
def prepared(coco_folder):
    root, labels = coco_folder
    assert load_script("prepare_folder").main([str(root)]) == 0
    return root, labels


def test_lists_of_the_real_masks_equal_a_recount(prepared):
    root, labels = prepared
    names = (root / "classes.txt").read_text().splitlines()
    assert len(names) == 80 and names[0] == "person" and "dining table" in names
    for split in ("train", "test"):
        ids = (root / "splits" / f"{split}.txt").read_text().split()
        assert len(ids) == 80
        for class_id in range(1, 81):
            expected = sorted(i for i in ids if (labels[i] == class_id).any())
            listed = (root / "lists" / split / f"class{class_id}.txt").read_text().split()
            assert listed == expected, (split, names[class_id - 1])


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    root, _ = prepared
    out = tmp_path_factory.mktemp("coco_run")
    run_repo_python("train.py", "-u", "with", "folder", "fast", f"data.root={root}",
                    "data.train_split=train", "data.test_split=test",
                    f"data.test_classes={json.dumps(TEST_CLASSES)}", f"train.output_dir={out}")
    return out / "checkpoints" / "final.pt"


def test_train_test_and_predict_commands_on_real_images(prepared, trained, tmp_path):
    root, labels = prepared
    state = load_checkpoint(trained)
    assert state["step"] == 4 and state["config"]["data"]["test_classes"] == TEST_CLASSES
    run_repo_python("test.py", "-u", "with", "fast", f"test.checkpoint={trained}",
                    f"test.output_dir={tmp_path / 'test'}")
    results = json.loads((tmp_path / "test" / "results.json").read_text())
    names = (root / "classes.txt").read_text().splitlines()
    assert sorted(results["class_iou"], key=int) == [
        str(names.index(name) + 1) for name in sorted(TEST_CLASSES, key=names.index)]
    assert 0 <= results["binary_iou"] <= 1

    person = names.index("person") + 1
    support = next(i for i in (root / "splits" / "train.txt").read_text().split()
                   if (labels[i] == person).mean() > 0.1)
    mask = tmp_path / "person.png"
    Image.fromarray(((labels[support] == person) * 255).astype(np.uint8)).save(mask)
    queries = (root / "splits" / "test.txt").read_text().split()[:2]
    run_repo_python("scripts/predict.py", "--checkpoint", str(trained), "--way",
                    str(root / "images" / f"{support}.jpg"), str(mask), "--query",
                    *[str(root / "images" / f"{q}.jpg") for q in queries],
                    "--out", str(tmp_path / "predictions"))
    for query in queries:
        with Image.open(tmp_path / "predictions" / f"{query}.png") as written:
            assert written.mode == "P" and written.size[::-1] == labels[query].shape
            assert set(np.unique(np.array(written))) <= {0, 1}
        assert (tmp_path / "predictions" / f"{query}_overlay.png").is_file()


def test_segmenter_equals_the_trained_model_on_real_episodes(trained):
    state = load_checkpoint(trained)
    setting = EpisodeSetting.from_config(state["config"]["data"])
    dataset = make_episode_dataset(setting, 3, seed=1234, train=False)
    assert_segmenter_matches_episodes(Segmenter.from_checkpoint(trained, "cpu"), dataset, 3)
