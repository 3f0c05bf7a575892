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

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

# sacred 0.8.7 imports pkg_resources, and setuptools warns about it on every start
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
import torch  # noqa: E402
from sacred import Experiment, Ingredient  # noqa: E402
from sacred.utils import get_by_dotted_path  # noqa: E402

from .checkpoint import find_checkpoint, load_checkpoint_header  # noqa: E402
from .data import make_episode_dataset, make_source  # noqa: E402
from .data.sources import Source  # noqa: E402
from .models import PANet, build_encoder  # noqa: E402
from .validation import ConfigError, config_problems, path_problems  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
TORCHVISION_CACHE_WEIGHTS = "~/.cache/torch/hub/checkpoints/vgg16-397923af.pth"

data_ingredient = Ingredient("data")
model_ingredient = Ingredient("model")
train_ingredient = Ingredient("train")
test_ingredient = Ingredient("test")


@data_ingredient.config
def data_config():
    name = "pascal"  # pascal | coco | synthetic | folder (your own dataset, `with folder`)
    root = "data/VOC2012"  # pascal: the VOC2012 folder; coco: holds annotations/, train2014/...
    fold = 0  # i of PASCAL-5i / COCO-20i: the paper's split-(i+1); 0..n_folds-1
    n_folds = 4  # folds of the class split (4 for PASCAL-5i / COCO-20i; any >= 2 for a folder)
    test_classes = None  # explicit test classes (ids or names; the rest train); None: by fold
    ways = 1  # C in the paper
    shots = 1  # K in the paper
    queries = 1  # N in the paper (1 in every experiment)
    size = 417  # images and labels are resized to size x size
    train_split = "trainaug"  # pascal: trainaug; coco: train; folder: all | <name> of splits/
    test_split = "trainaug"  # released code: trainaug / train; OSLSM protocol: val (`with val`)
    year = 2014  # coco annotation year
    fold_style = "contiguous"  # coco, folder: contiguous (PANet) | interleaved (later papers)
    cache_dir = None  # coco mask cache; None: <root>/.panet_cache or ~/.cache/panet
    lists_dir = None  # pascal/synthetic per-class lists; None: <root>/ImageSets/Segmentation
    workers = 4  # DataLoader processes
    weak = "dense"  # test-time supports: dense | scribble | bbox (Table 6)
    bbox_instance = "largest"  # released code: largest; paper text: random
    scribble_dilation = 0  # pixels of dilation applied to scribbles
    # coco, W > 1: class (released: an image is labelled for its own way's class only) | episode
    # (all the episode's classes painted into every image); pascal label maps are full either way
    coco_labels = "class"


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
    checkpoint_every = 1000  # steps between rewrites of checkpoints/last.pt (0: none)
    snapshot_every = 10000  # steps between kept snapshots (0: none)
    log_every = 100  # steps between plain log lines (when stdout is not a terminal)
    output_dir = None  # the run folder; None: a new runs/<id> (see panet/runs.py)
    resume = None  # a checkpoint (or run folder) to continue, in its own run folder


@test_ingredient.config
def test_config():
    checkpoint = None  # what to evaluate; its stored data/model config is the default setting
    notrain = False  # evaluate the ImageNet-initialised encoder (PANet-init) instead
    runs = 5
    episodes = 1000  # per run; run r samples its episodes with seed + r
    batch_size = 1  # episodes per forward pass, or (encode=image) their W*S + Q images per
    #                 encoder call; results do not depend on it
    encode = "image"  # image: each distinct image encoded once (twice if the cache is full) |
    #                   episode: every episode encodes its images, as released (the reference)
    cache_gb = 1.0  # image: GiB of encoder features kept from the support to the query step, per
    #                 process in memory (torchrun: each process its own); with cache_dir, of the folder
    cache_dir = None  # image: keep features as files here instead of in memory (cache_gb bounds
    #                   the folder); later tests of the same weights and size reuse them
    rule = "released"  # released | corrected (PROTOCOL §9)
    resolution = "label"  # label (417 x 417, PANet) | original (later FSS papers)
    bootstrap = 1000  # resamples of the 95% intervals over episodes (panet/statistics.py); 0: none
    output_dir = None  # the run folder (results.json, episodes.npz); None: a new runs/<id>


class PanetExperiment(Experiment):
    """The sacred experiment of train.py (`script="train"`) or test.py (`script="test"`).

    Before a run starts, its configuration is checked (`panet.validation`): bad values, and for
    the main function missing files and unwritable folders, stop it with one line per problem.
    train.py with `train.resume=PATH` takes the checkpoint's own data/model/train config and
    seed as its base, so `python train.py with train.resume=PATH` alone continues the run; keys
    given beside it may only be those in `panet.validation.RESUMABLE`.
    """

    def __init__(self, name: str, script: str):
        super().__init__(name, ingredients=[data_ingredient, model_ingredient,
                                            train_ingredient, test_ingredient])
        self.script = script
        # device: auto | cpu | cuda | cuda:N; tf32: TF32 in CUDA convs and matmuls (Ampere and
        # later GPUs: faster, 10 mantissa bits instead of float32's 23; off for the paper's numbers)
        self.add_config(seed=1234, device="auto", tf32=False)
        for path in sorted(CONFIG_DIR.glob("*.yaml")):
            self.add_named_config(path.stem, str(path))
        self.logger = _sacred_logger()

        def check(config, command_name, logger):  # the signature sacred's config hooks need
            problems = config_problems(config, script)
            if not problems and command_name == self.default_command:
                problems = path_problems(config, script)
            if problems:
                raise ConfigError(problems)
            return {}

        self.config_hook(check)

    def run(self, command_name=None, config_updates=None, named_configs=(), info=None,
            meta_info=None, options=None):
        resume = get_by_dotted_path(config_updates or {}, "train.resume")
        if self.script == "train" and resume:
            try:
                stored = load_checkpoint_header(find_checkpoint(resume))["config"]
            except (FileNotFoundError, ValueError):
                pass  # the config hook reports it
            else:
                self.named_configs.pop(RESUMED_CONFIG, None)  # a previous run's
                self.add_named_config(RESUMED_CONFIG, {key: stored[key] for key in
                                                       ("data", "model", "train", "seed")})
                named_configs = [RESUMED_CONFIG, *named_configs]
        return super().run(command_name, config_updates, named_configs, info, meta_info,
                           options)


RESUMED_CONFIG = "resumed_checkpoint"  # the named config holding a resumed checkpoint's config


class _ExpectedTypeChanges(logging.Filter):
    """Drops sacred's warning when a key that defaults to a value is set to None or back
    (model.weights=None, train.output_dir=..., test.checkpoint=...): that is how they are used."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Changed type of config entry") and "NoneType" in message)


def _sacred_logger() -> logging.Logger:
    logger = logging.getLogger("panet")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s - %(name)s - %(message)s"))
        handler.addFilter(_ExpectedTypeChanges())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger


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


def build_source(data_config: Dict[str, Any], *, train: bool) -> Source:
    """The configured dataset's training split (`train`) or test split."""
    return make_source(data_config["name"], Path(data_config["root"]).expanduser(),
                       data_config["train_split" if train else "test_split"], data_config["year"],
                       data_config["cache_dir"], data_config["lists_dir"])


def build_dataset(data_config: Dict[str, Any], *, train: bool, n_episodes: int, seed: int,
                  keep_original_labels: bool = False, source: Optional[Source] = None):
    """The episode dataset of the configured fold: training classes and split when `train`,
    otherwise test classes on `test_split`. `source`: that split's `build_source`, when several
    datasets share it (the runs of a test), so that it is read once."""
    return make_episode_dataset(
        data_config["name"], Path(data_config["root"]).expanduser(),
        data_config["train_split" if train else "test_split"], data_config["fold"],
        data_config["ways"], data_config["shots"], data_config["queries"], n_episodes, seed, train,
        size=data_config["size"], year=data_config["year"], fold_style=data_config["fold_style"],
        n_folds=data_config["n_folds"], test_classes=data_config["test_classes"],
        weak="dense" if train else data_config["weak"], bbox_instance=data_config["bbox_instance"],
        scribble_dilation=data_config["scribble_dilation"],
        keep_original_labels=keep_original_labels, cache_dir=data_config["cache_dir"],
        lists_dir=data_config["lists_dir"], coco_labels=data_config["coco_labels"],
        source=source if source is not None else build_source(data_config, train=train))
