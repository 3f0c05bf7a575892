"""The configuration of train.py and test.py, in one place: sacred ingredients and named configs.

Both scripts see the same tree, so any named config composes with either:

    data   dataset, fold and episode setting (PROTOCOL §5-8, §10)
    model  encoder and its initialisation (§1, §3)
    train  optimisation schedule, PAR weight, checkpoints (§4-5)
    test   checkpoint, runs x episodes, metric rule and resolution (§8-9)

Defaults are the paper's: PASCAL-5i fold 0, 1-way 1-shot, VGG-16 from ImageNet weights,
SGD 1e-3 / 0.9 / 5e-4, 30,000 steps, PAR on, 5 runs x 1,000 test episodes, seed 1234.
Named configs (configs/*.yaml) change one axis each: `python train.py with voc 5shot data.fold=2`.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

# sacred 0.8.7 imports pkg_resources, and setuptools warns about it on every start
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
import torch  # noqa: E402
from sacred import Experiment, Ingredient  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402

from .data import make_episode_dataset  # noqa: E402
from .models import PANet, build_encoder  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
TORCHVISION_CACHE_WEIGHTS = "~/.cache/torch/hub/checkpoints/vgg16-397923af.pth"

data_ingredient = Ingredient("data")
model_ingredient = Ingredient("model")
train_ingredient = Ingredient("train")
test_ingredient = Ingredient("test")


@data_ingredient.config
def data_config():
    name = "pascal"  # pascal | coco | synthetic
    root = "data/VOC2012"  # pascal: the VOC2012 folder; coco: holds annotations/, train2014/...
    fold = 0  # i of PASCAL-5i / COCO-20i: the paper's split-(i+1)
    ways = 1  # C in the paper
    shots = 1  # K in the paper
    queries = 1  # N in the paper (1 in every experiment)
    size = 417  # images and labels are resized to size x size
    train_split = "trainaug"  # pascal: trainaug; coco: train
    test_split = "trainaug"  # released code: trainaug / train; OSLSM protocol: val (`with val`)
    year = 2014  # coco annotation year
    fold_style = "contiguous"  # coco: contiguous (PANet) | interleaved (later papers)
    cache_dir = None  # coco mask cache; None: <root>/.panet_cache or ~/.cache/panet
    workers = 4  # DataLoader processes
    weak = "dense"  # test-time supports: dense | scribble | bbox (Table 6)
    bbox_instance = "largest"  # released code: largest; paper text: random
    scribble_dilation = 0  # pixels of dilation applied to scribbles


@model_ingredient.config
def model_config():
    encoder = "vgg16"  # vgg16 (PANet) | small (CPU demos)
    weights = TORCHVISION_CACHE_WEIGHTS  # torchvision's ImageNet VGG-16 file; None: random init
    alpha = 20.0  # scale of the cosine logits (PROTOCOL §3)


@train_ingredient.config
def train_config():
    steps = 30000
    batch_size = 1  # episodes per step, split over processes under torchrun
    optimizer = "sgd"  # sgd (PANet) | adam (CPU demos: trains a from-scratch encoder faster)
    lr = 1e-3
    momentum = 0.9  # sgd only
    weight_decay = 5e-4
    milestones = [10000, 20000, 30000]  # lr x gamma at each
    gamma = 0.1
    align_weight = 1.0  # lambda of L_PAR; 0 trains PANet w/o PAR (`with noalign`)
    checkpoint_every = 1000  # steps between rewrites of checkpoints/last.pt
    snapshot_every = 10000  # steps between kept snapshots (0: none)
    output_dir = None  # None: the run's observer directory (runs/<id>)
    resume = None  # a checkpoint to continue from


@test_ingredient.config
def test_config():
    checkpoint = None  # what to evaluate; its stored data/model config is the default setting
    notrain = False  # evaluate the ImageNet-initialised encoder (PANet-init) instead
    runs = 5
    episodes = 1000  # per run; run r samples its episodes with seed + r
    batch_size = 1  # episodes per forward pass (results do not depend on it)
    encode = "image"  # image: each distinct image encoded once (twice if the cache is full) |
    #                   episode: every episode encodes its images, as released (the reference)
    cache_gb = 1.0  # image: GiB of encoder features kept from the support to the query step
    cache_dir = None  # image: keep features as files here instead of in memory (cache_gb bounds
    #                   the folder); later tests of the same weights and size reuse them
    rule = "released"  # released | corrected (PROTOCOL §9)
    resolution = "label"  # label (417 x 417, PANet) | original (later FSS papers)
    output_dir = None  # where results.json goes; None: the run's observer directory


def make_experiment(name: str) -> Experiment:
    """An experiment with the four ingredients, the top-level keys and every named config."""
    ex = Experiment(name, ingredients=[data_ingredient, model_ingredient, train_ingredient,
                                       test_ingredient])
    ex.add_config(seed=1234, device="auto")  # device: auto | cpu | cuda | cuda:N
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        ex.add_named_config(path.stem, str(path))
    return ex


def run_from_command_line(ex: Experiment, runs_dir: str = "runs", is_main: bool = True):
    """Run `ex` from the command line; the main process records the run under `runs_dir`
    (config, git state, metrics, artefacts) unless the command line names its own observer."""
    if is_main and not any(flag in sys.argv for flag in ("-F", "--file_storage", "-u", "--unobserved")):
        ex.observers.append(FileStorageObserver(runs_dir))
    return ex.run_commandline()


def run_directory(run, configured: Optional[str]) -> Optional[Path]:
    """Where a run writes its files: the configured directory, else the one its file observer
    made (runs/<id>), else None."""
    if configured is not None:
        return Path(configured).expanduser()
    for observer in run.observers:
        if getattr(observer, "dir", None):
            return Path(observer.dir)
    return None


def build_model(model_config: Dict[str, Any]) -> PANet:
    """PANet with the configured encoder; ImageNet weights loaded when `weights` is set."""
    weights = model_config["weights"]
    try:
        encoder = build_encoder(model_config["encoder"],
                                None if weights is None else Path(weights).expanduser())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} Point the config key model.weights at it "
                                f"(`with model.weights=/path/to/{Path(weights).name}`), or "
                                "set model.weights=None to start from random weights.") from None
    return PANet(encoder, alpha=model_config["alpha"])


def trained_model(state: Dict[str, Any]) -> PANet:
    """The PANet of a train.py checkpoint (`panet.checkpoint.load_checkpoint` output): built
    from its stored model config, weights from the checkpoint (no ImageNet file needed)."""
    net = build_model({**state["config"]["model"], "weights": None})
    net.load_state_dict(state["model"])
    return net


def build_optimizer(parameters, train_config: Dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum (PROTOCOL §5), or Adam; both with L2 weight decay on every parameter."""
    name, lr, decay = train_config["optimizer"], train_config["lr"], train_config["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=train_config["momentum"],
                               weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=decay)
    raise ValueError(f"train.optimizer must be 'sgd' or 'adam', got {name!r}")


def build_dataset(data_config: Dict[str, Any], *, train: bool, n_episodes: int, seed: int,
                  keep_original_labels: bool = False):
    """The episode dataset of the configured fold: training classes and split when `train`,
    otherwise test classes on `test_split`."""
    return make_episode_dataset(
        data_config["name"], Path(data_config["root"]).expanduser(),
        data_config["train_split" if train else "test_split"], data_config["fold"],
        data_config["ways"], data_config["shots"], data_config["queries"], n_episodes, seed, train,
        size=data_config["size"], year=data_config["year"], fold_style=data_config["fold_style"],
        weak="dense" if train else data_config["weak"], bbox_instance=data_config["bbox_instance"],
        scribble_dilation=data_config["scribble_dilation"],
        keep_original_labels=keep_original_labels, cache_dir=data_config["cache_dir"])
