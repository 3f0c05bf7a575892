"""The settings of a run: one frozen, typed object per concern, each field with its default, the
rule it must follow and what it means.

    EpisodeSetting  data.*   dataset, splits, fold, episode shape, size, weak supports (§5-8, §10)
    ModelSettings   model.*  encoder, its initialisation, the cosine scale (§1, §3), the model
                             (model.factory: PANet, or your own method)
    TrainSettings   train.*  optimisation schedule, PAR weight, checkpoints (§4-5)
    TestSettings    test.*   what to evaluate, runs x episodes, metric rule and resolution (§8-9)
    RunSettings     seed, device, tf32, precision, memory_format (top-level keys)

The defaults are the paper's (PANet on PASCAL-5i fold 0, 1-way 1-shot, VGG-16 from ImageNet,
SGD 1e-3 / 0.9 / 5e-4, 30,000 steps, PAR on, 5 runs x 1,000 test episodes, seed 1234). Each class
checks its own fields (`problems`: one line per bad value, naming the key); checks involving
files or several sections live in `panet.run.validation`. Nothing here imports sacred.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Union

from panet.data.datasets import DATASETS
from panet.data.episodes import COCO_LABELS, WEAK_KINDS
from panet.data.folds import FOLD_STYLES, split_classes
from panet.data.protocols import PROTOCOLS, REFERENCE
from panet.data.weak import BOX_CHOICES
from panet.evaluation.options import ENCODINGS, RESOLUTIONS, EvalOptions
from panet.evaluation.metrics import RULES as METRIC_RULES
from panet.models.encoders import ENCODERS, IMAGENET, imagenet_weights
from panet.models.factory import (DEFAULT_FACTORY, FACTORY_FORM, FactoryError, import_factory,
                             is_factory_spec)
from panet.models.numerics import MEMORY_FORMATS, PRECISIONS, Numerics
from panet.training import OPTIMIZERS, SCHEDULES
from panet.base.rules import (Rule, class_list, device, flag, integer, is_int, milestones, number,
                              one_of, optional, optional_path, problem, size, text)

MAX_SEED = 2 ** 32 - 1  # numpy's generators take seeds below 2**32
MAX_EPISODES = 10 ** 6  # per test run: the plan of the encode-once path keeps ~1 KB per image


def setting(default: Any, rule: Rule, doc: str) -> Any:
    """A settings field: its default, the `Rule` its values follow, its meaning (shown by
    `print_config`)."""
    return field(default=default, metadata={"rule": rule, "doc": doc})


def _frozen(value: Any) -> Any:
    """Lists (from YAML or the command line) as tuples, so that settings are hashable."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def plain(value: Any) -> Any:
    """Tuples as lists: the JSON-like form sacred and results.json hold."""
    return [plain(v) for v in value] if isinstance(value, tuple) else value


class Section:
    """What every settings class shares: reading a config section, its defaults and docs, and
    its checks."""

    SECTION: ClassVar[str]  # the config section ("" for the top-level keys)

    @classmethod
    def from_config(cls, values: Mapping[str, Any]):
        """The settings of a config section (unknown keys ignored, absent ones defaulted)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: _frozen(v) for k, v in values.items() if k in known})

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        return {f.name: plain(f.default) for f in fields(cls)}

    @classmethod
    def docs(cls) -> Dict[str, str]:
        return {f.name: f.metadata["doc"] for f in fields(cls)}

    @classmethod
    def key(cls, name: str) -> str:
        return f"{cls.SECTION}.{name}" if cls.SECTION else name

    def as_config(self) -> Dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def problems(self) -> List[str]:
        """One line per field that breaks its rule, then the checks across fields."""
        found = [problem(self.key(f.name), getattr(self, f.name),
                         f"must be {f.metadata['rule'].allowed}")
                 for f in fields(self) if not f.metadata["rule"].accepts(getattr(self, f.name))]
        return found or self.cross_problems()

    def cross_problems(self) -> List[str]:
        return []


@dataclass(frozen=True)
class EpisodeSetting(Section):
    """The data section: which dataset, which classes and how episodes look (PROTOCOL §5-8)."""

    SECTION: ClassVar[str] = "data"
    name: str = setting("pascal", one_of(DATASETS),
                        f"the dataset: {' | '.join(DATASETS)} (folder: your own data)")
    root: str = setting("data/VOC2012", text(), "the dataset's folder (see panet/data/datasets.py)")
    fold: int = setting(0, integer(0), "i of PASCAL-5i / COCO-20i (the paper's split-(i+1))")
    n_folds: int = setting(4, integer(2), "folds of the class split (4 for the benchmarks)")
    test_classes: Optional[Tuple[Union[int, str], ...]] = setting(
        None, class_list(), "explicit test classes (ids or names; the rest train); None: by fold")
    ways: int = setting(1, integer(1), "C in the paper")
    shots: int = setting(1, integer(1), "K in the paper")
    queries: int = setting(1, integer(1), "N in the paper (1 in every experiment)")
    size: Union[int, Tuple[int, int]] = setting(417, size(), "images and labels are resized to "
                                                             "size x size (or [H, W])")
    train_split: Optional[str] = setting(None, optional(text()),
                                         "None: the dataset's training split (trainaug, train)")
    test_split: Optional[str] = setting(None, optional(text()),
                                        "None: the dataset's default, as released (its training "
                                        "split; synthetic: val); `with val`: the held-out split")
    year: int = setting(2014, integer(1), "coco annotation year")
    fold_style: str = setting("contiguous", one_of(FOLD_STYLES),
                              "contiguous (PANet) | interleaved (coco, folder: later papers) | all "
                              "(every class trains and tests: cross-domain)")
    cache_dir: Optional[str] = setting(None, optional_path(),
                                       "coco mask cache; None: the user's cache "
                                       "($XDG_CACHE_HOME/panet or ~/.cache/panet), a folder "
                                       "per data root")
    lists_dir: Optional[str] = setting(None, optional_path(),
                                       "per-class lists; None: <root>/ImageSets/Segmentation")
    workers: int = setting(4, integer(0), "DataLoader processes")
    weak: str = setting("dense", one_of(WEAK_KINDS),
                        "test-time supports: dense | scribble | bbox (Table 6)")
    bbox_instance: str = setting("largest", one_of(BOX_CHOICES),
                                 "released code: largest; paper text: random")
    scribble_dilation: int = setting(0, integer(0), "pixels of dilation applied to scribbles")
    protocol: Optional[str] = setting(None, optional(one_of(PROTOCOLS)),
                                      "None (the dataset's) | panet | patnet | hsnet: the "
                                      "episode rule (panet/data/protocols.py)")
    coco_labels: str = setting("class", one_of(COCO_LABELS),
                               "coco, W > 1: class (released: an image is labelled for its own "
                               "way's class only) | episode (all the episode's classes)")

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    @property
    def episode_rule(self) -> str:  # `protocol`, else the dataset's
        return self.protocol if self.protocol is not None else DATASETS[self.name].protocol

    def split(self, train: bool) -> str:
        """The training or test split, the dataset's default where the setting says None."""
        chosen = self.train_split if train else self.test_split
        spec = DATASETS[self.name]
        return chosen if chosen is not None else (spec.train_split if train else spec.test_split)

    def source_key(self, train: bool) -> tuple:
        """What opens the source of its training or test split: equal keys, same data."""
        return (self.name, str(self.root_path), str(self.lists_dir), self.year,
                str(self.cache_dir), self.split(train))

    def classes(self, source, train: bool) -> List[int]:
        """The training (`train`) or test classes on `source` (`panet.data.folds`)."""
        return split_classes(source, train, self.fold, n_folds=self.n_folds,
                             fold_style=self.fold_style, test_classes=self.test_classes)

    def cross_problems(self) -> List[str]:
        spec, found = DATASETS[self.name], []
        if spec.n_folds is not None and self.n_folds != spec.n_folds:
            found.append(problem("data.n_folds", self.n_folds,
                                 f"must be {spec.n_folds} for {self.name} (its benchmark has "
                                 f"{spec.n_folds} folds); other fold counts are for folder "
                                 "datasets"))
        elif self.fold >= self.n_folds:
            found.append(problem("data.fold", self.fold,
                                 f"must be in 0..{self.n_folds - 1} (data.n_folds="
                                 f"{self.n_folds})"))
        if self.fold_style not in spec.fold_styles:
            found.append(problem("data.fold_style", self.fold_style,
                                 f"{self.name} has the {' / '.join(spec.fold_styles)} split "
                                 "only (see panet/data/folds.py)"))
        if self.episode_rule not in spec.protocols:
            found.append(problem("data.protocol", self.protocol,
                                 f"{self.name} has the {' / '.join(spec.protocols)} episode "
                                 "rules (panet/data/protocols.py)"))
        elif self.episode_rule in REFERENCE:
            found += [problem(f"data.{key}", getattr(self, key),
                              f"must be 1 with data.protocol={self.episode_rule} (its episodes "
                              "are 1-way, 1 query)")
                      for key in ("ways", "queries") if getattr(self, key) != 1]
        if not spec.lists and self.lists_dir is not None:
            found.append(problem("data.lists_dir", self.lists_dir,
                                 f"must be None for {self.name} (its image lists come from its "
                                 "annotations)"))
        return found


def describe_setting(data: "EpisodeSetting") -> str:
    """One line naming the benchmark and episode setting, e.g. 'pascal fold 0, 1-way 1-shot,
    test split trainaug, dense supports' (or 'folder test classes [3, 7], ...')."""
    classes = (f"test classes {list(data.test_classes)}" if data.test_classes
               else "all classes" if data.fold_style == "all" else f"fold {data.fold}")
    return (f"{data.name} {classes}, {data.ways}-way {data.shots}-shot, "
            f"test split {data.split(False)}, {data.weak} supports")


@dataclass(frozen=True)
class ModelSettings(Section):
    """The model section: PANet's encoder and initialisation (PROTOCOL §1, §3)."""

    SECTION: ClassVar[str] = "model"
    encoder: str = setting("vgg16", one_of(ENCODERS),
                           f"{' | '.join(ENCODERS)} (panet/models/encoders.py)")
    weights: Optional[str] = setting(
        IMAGENET, optional_path(),
        f"'{IMAGENET}': torchvision's ImageNet file of the encoder, in $TORCH_HOME/hub/"
        "checkpoints (downloaded when absent; $PANET_TORCHVISION_URL); a path to one; None: random")
    alpha: float = setting(20.0, number(0, inclusive=False),
                           "scale of the cosine logits (PROTOCOL §3)")
    factory: str = setting(DEFAULT_FACTORY, Rule(is_factory_spec, FACTORY_FORM),
                           "the model: package.module:callable, called as callable(encoder, "
                           "alpha=alpha) (default PANet; your own method: "
                           "docs/your-own-method.md)")

    @property
    def weights_path(self) -> Optional[Path]:
        """The ImageNet file to load (None: random init)."""
        if self.weights == IMAGENET:
            return imagenet_weights(self.encoder)
        return None if self.weights is None else Path(self.weights).expanduser()

    def cross_problems(self) -> List[str]:
        found = []
        if self.weights is not None and ENCODERS[self.encoder].weights_file is None:
            found.append(problem("model.weights", self.weights,
                                 f"must be None: the {self.encoder!r} encoder has no pretrained "
                                 "weights"))
        try:
            import_factory(self.factory)  # what the factory makes: panet.run.validation
        except FactoryError as error:
            found.append(problem("model.factory", self.factory, str(error)))
        return found


@dataclass(frozen=True)
class TrainSettings(Section):
    """The train section: optimisation schedule, PAR weight, checkpoints (PROTOCOL §4-5)."""

    SECTION: ClassVar[str] = "train"
    steps: int = setting(30000, integer(1), "training steps (episodes per step: batch_size)")
    batch_size: int = setting(1, integer(1), "episodes per step, split over processes "
                                             "under torchrun")
    optimizer: str = setting("sgd", one_of(OPTIMIZERS),
                             "sgd (PANet) | adam (CPU demos: a from-scratch encoder) | adamw")
    lr: float = setting(1e-3, number(0, inclusive=False), "learning rate")
    momentum: float = setting(0.9, number(0, maximum=1), "sgd only")
    weight_decay: float = setting(5e-4, number(0), "L2 weight decay on every parameter")
    milestones: Tuple[int, ...] = setting((10000, 20000, 30000), milestones(),
                                          "lr x gamma at each")
    gamma: float = setting(0.1, number(0, inclusive=False), "lr factor at each milestone")
    schedule: str = setting("multistep", one_of(SCHEDULES),
                            "multistep (PANet: lr x gamma at each milestone) | poly (lr x (1 - "
                            "t / steps)^0.9) | cosine (to 0 over the steps)")
    freeze_encoder: str = setting("none", text(), "none | all | an encoder level (e.g. conv3, "
                                                  "layer2): its parameters and those before it "
                                                  "stay fixed")
    grad_clip: float = setting(0.0, number(0), "clip the gradients' global norm to this (0: "
                                               "never)")
    align_weight: float = setting(1.0, number(0), "lambda of L_PAR; 0: PANet w/o PAR "
                                                  "(`with noalign`)")
    checkpoint_every: int = setting(1000, integer(0), "steps between rewrites of "
                                                      "checkpoints/last.pt (0: none)")
    snapshot_every: int = setting(10000, integer(0), "steps between kept snapshots (0: none)")
    log_every: int = setting(100, integer(1), "steps between plain log lines (off a terminal)")
    output_dir: Optional[str] = setting(None, optional_path(),
                                        "the run folder; None: a new runs/<id>")
    resume: Optional[str] = setting(None, optional_path(),
                                    "a checkpoint (or run folder) to continue, in its own run "
                                    "folder")


@dataclass(frozen=True)
class TestSettings(Section):
    """The test section: what to evaluate and how (PROTOCOL §8-9)."""

    __test__ = False  # a settings class, not a test for pytest to collect
    SECTION: ClassVar[str] = "test"
    checkpoint: Optional[str] = setting(None, optional_path(),
                                        "what to evaluate: a checkpoint, a run folder or a "
                                        "released snapshot; its settings are the defaults")
    notrain: bool = setting(False, flag(), "evaluate the ImageNet-initialised encoder "
                                           "(PANet-init) instead")
    runs: int = setting(5, integer(1), "test runs; run r samples its episodes with seed + r")
    episodes: int = setting(1000, Rule(lambda v: is_int(v) and 1 <= v <= MAX_EPISODES,
                                       f"an integer from 1 to {MAX_EPISODES:,} (each episode's "
                                       "plan is kept in memory)"), "episodes per run")
    batch_size: int = setting(1, integer(1), "episodes per forward pass, or (encode=image) their "
                                             "W*S + Q images per encoder call")
    encode: str = setting("image", one_of(ENCODINGS),
                          "image: each distinct image encoded once | episode: every episode "
                          "encodes its images, as released (the reference)")
    cache_gb: float = setting(1.0, number(0),
                              "image: GiB of features kept from the support to the query step, "
                              "per process in memory; with cache_dir, of the folder")
    cache_dir: Optional[str] = setting(None, optional_path(),
                                       "image: keep features as files here (later tests of the "
                                       "same weights and size reuse them)")
    episodes_file: Optional[str] = setting(None, optional_path(), "the episodes to evaluate, "
                                           "all of them, in a .csv / .jsonl (scripts/episodes.py)")
    rule: str = setting("released", one_of(METRIC_RULES), "released | corrected (PROTOCOL §9)")
    resolution: str = setting("label", one_of(RESOLUTIONS),
                              "label (417 x 417, PANet) | original (later FSS papers)")
    bootstrap: int = setting(1000, integer(0), "resamples of the 95% intervals over episodes; "
                                               "0: none")
    output_dir: Optional[str] = setting(None, optional_path(),
                                        "the run folder (results.json, episodes.npz); None: a "
                                        "new runs/<id>")
    overwrite: bool = setting(False, flag(), "replace the results an output_dir already holds")

    def eval_options(self, workers: int, cache_key: Optional[str] = None) -> EvalOptions:
        """How `panet.evaluation` runs this test; `cache_key`: the model's identity, for the
        feature cache."""
        return EvalOptions(encode=self.encode, batch_size=self.batch_size,
                           resolution=self.resolution, cache_gb=self.cache_gb,
                           cache_dir=self.cache_dir, cache_key=cache_key, workers=workers)


@dataclass(frozen=True)
class RunSettings(Section):
    """The top-level keys."""

    SECTION: ClassVar[str] = ""
    seed: int = setting(1234, Rule(lambda v: is_int(v) and 0 <= v <= MAX_SEED,
                                    f"an integer from 0 to {MAX_SEED} (numpy's seeds)"),
                        "seeds training; test run r draws episodes from seed + r")
    device: str = setting("auto", device(), "auto (CUDA when present) | cpu | cuda | cuda:N")
    tf32: bool = setting(False, flag(), "TF32 in CUDA convs and matmuls (Ampere+: faster, 10 "
                                        "mantissa bits instead of 23); off: the paper's float32")
    precision: str = setting("fp32", one_of(PRECISIONS),
                             "fp32 (the paper's) | bf16 (encoder under bfloat16 autocast: CPUs "
                             "with AVX512-BF16/AMX, recent GPUs) | fp16 (CUDA, loss scaling); "
                             "docs/precision.md")
    memory_format: str = setting("contiguous", one_of(MEMORY_FORMATS),
                                 "contiguous | channels_last (encoder weights and input NHWC: "
                                 "faster on some CPUs and GPUs, slower on others)")

    def numerics(self) -> Numerics:
        """How the encoder computes (`PANet.use_numerics`)."""
        return Numerics(self.precision, self.memory_format)


SECTIONS = {"data": EpisodeSetting, "model": ModelSettings, "train": TrainSettings,
            "test": TestSettings}


@dataclass(frozen=True)
class Settings:
    """Every section of a run's configuration, built once from sacred's config."""

    data: EpisodeSetting
    model: ModelSettings
    train: TrainSettings
    test: TestSettings
    run: RunSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Settings":
        return cls(run=RunSettings.from_config(config),
                   **{name: kind.from_config(config.get(name, {}))
                      for name, kind in SECTIONS.items()})

    @staticmethod
    def defaults() -> Dict[str, Any]:
        """The whole config tree of defaults: top-level keys, then one dict per section."""
        return {**RunSettings.defaults(),
                **{name: kind.defaults() for name, kind in SECTIONS.items()}}

    @staticmethod
    def docs() -> Dict[str, str]:
        """Each key's meaning, by dotted key."""
        return {kind.key(name): doc for kind in (RunSettings, *SECTIONS.values())
                for name, doc in kind.docs().items()}

    def section(self, name: str) -> Section:
        return self.run if name == "" else getattr(self, name)

    def value(self, key: str) -> Any:
        """The value of a dotted key (`data.fold`, `seed`)."""
        section, _, name = key.rpartition(".")
        return getattr(self.section(section), name)


SCRIPT_SECTIONS = {"train": ("", "data", "model", "train"), "test": ("", "data", "model", "test")}
