"""Checks of a train.py / test.py configuration, run before any work starts.

One rule per configuration key, grouped by ingredient (`RULES`), plus the checks that involve
several keys or the file system. Every problem becomes one line naming the key, the value given
and what is allowed, e.g.

    train.batch_size=0: must be an integer >= 1
    test.resolution='foo': must be one of 'label', 'original'

`panet.config` runs `config_problems` on every command (print_config included) and
`path_problems` before a run's main function; any problem stops the run with a `ConfigError`,
which sacred prints as those lines alone (no traceback) with a non-zero exit status.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from sacred.utils import SacredError

from .checkpoint import find_checkpoint, load_checkpoint_header
from .data.builder import DATASETS
from .data.episodes import COCO_LABELS, WEAK_KINDS
from .data.folds import FOLD_STYLES, N_FOLDS
from .data.weak import BOX_CHOICES
from .device import DEVICE_CHOICES, is_device_name, torchrun_problem
from .engine import RESOLUTIONS
from .evaluation import ENCODINGS
from .files import check_writable_dir
from .metrics import RULES as METRIC_RULES
from .models.encoder import ENCODERS
from .runs import planned_run_dir

OPTIMIZERS = ("sgd", "adam")
SCRIPTS = ("train", "test")


class ConfigError(SacredError, ValueError):
    """A configuration that cannot run; sacred prints the message without a traceback."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems), print_traceback=False)
        self.problems = list(problems)


@dataclass(frozen=True)
class Rule:
    """What one key accepts: `accepts(value)`, described for people by `allowed`."""

    accepts: Callable[[Any], bool]
    allowed: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def integer(minimum: int) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= minimum, f"an integer >= {minimum}")


def number(minimum: float, inclusive: bool = True, maximum: Optional[float] = None) -> Rule:
    def accepts(value: Any) -> bool:
        if not _is_number(value):
            return False
        above = value >= minimum if inclusive else value > minimum
        return above and (maximum is None or value < maximum)

    bound = f"{'>=' if inclusive else '>'} {minimum}"
    if maximum is not None:
        bound += f" and < {maximum}"
    return Rule(accepts, f"a finite number {bound}")


def one_of(options: Sequence[str]) -> Rule:
    return Rule(lambda v: v in options, "one of " + ", ".join(repr(o) for o in options))


def text() -> Rule:
    return Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")


def optional_path() -> Rule:
    return Rule(lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
                "a path or None")


def flag() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false")


def class_list() -> Rule:
    def accepts(value: Any) -> bool:
        if value is None:
            return True
        entries = list(value) if isinstance(value, (list, tuple)) else None
        return (bool(entries) and len(set(map(str, entries))) == len(entries)
                and all((_is_int(v) and v >= 1) or (isinstance(v, str) and v) for v in entries))

    return Rule(accepts, "None or a non-empty list of distinct class ids (>= 1) or names")


def size() -> Rule:
    def accepts(value: Any) -> bool:
        if _is_int(value):
            return value >= 1
        return (isinstance(value, (list, tuple)) and len(value) == 2
                and all(_is_int(v) and v >= 1 for v in value))

    return Rule(accepts, "an integer >= 1 or a pair [H, W] of them")


def milestones() -> Rule:
    def accepts(value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and all(_is_int(v) and v >= 1 for v in value)
                and list(value) == sorted(set(value)))

    return Rule(accepts, "an ascending list of distinct integers >= 1")


def device() -> Rule:
    return Rule(is_device_name, DEVICE_CHOICES)


RULES: Dict[str, Dict[str, Rule]] = {
    "": {"seed": integer(0), "device": device(), "tf32": flag()},
    "data": {
        "name": one_of(DATASETS), "root": text(), "fold": integer(0), "n_folds": integer(2),
        "test_classes": class_list(), "ways": integer(1),
        "shots": integer(1), "queries": integer(1), "size": size(), "train_split": text(),
        "test_split": text(), "year": integer(1), "fold_style": one_of(FOLD_STYLES),
        "cache_dir": optional_path(), "lists_dir": optional_path(), "workers": integer(0),
        "weak": one_of(WEAK_KINDS), "bbox_instance": one_of(BOX_CHOICES),
        "scribble_dilation": integer(0), "coco_labels": one_of(COCO_LABELS),
    },
    "model": {"encoder": one_of(ENCODERS), "weights": optional_path(),
              "alpha": number(0, inclusive=False)},
    "train": {
        "steps": integer(1), "batch_size": integer(1), "optimizer": one_of(OPTIMIZERS),
        "lr": number(0, inclusive=False), "momentum": number(0, maximum=1),
        "weight_decay": number(0), "milestones": milestones(), "gamma": number(0, False),
        "align_weight": number(0), "checkpoint_every": integer(0), "snapshot_every": integer(0),
        "log_every": integer(1), "output_dir": optional_path(), "resume": optional_path(),
    },
    "test": {
        "checkpoint": optional_path(), "notrain": flag(), "runs": integer(1),
        "episodes": integer(1), "batch_size": integer(1), "rule": one_of(METRIC_RULES),
        "resolution": one_of(RESOLUTIONS), "bootstrap": integer(0),
        "output_dir": optional_path(),
        "encode": one_of(ENCODINGS), "cache_gb": number(0), "cache_dir": optional_path(),
    },
}
# keys that may differ between a checkpoint and the run resuming it: where the data is, how
# fast it is read, how long the run goes on and where and how often it writes
RESUMABLE = ("device", "tf32", "data.root", "data.workers", "data.cache_dir", "data.lists_dir",
             "train.steps", "train.resume", "train.output_dir", "train.checkpoint_every",
             "train.snapshot_every", "train.log_every")
# the ingredients each script reads (the others are carried along but never used)
SECTIONS = {"train": ("", "data", "model", "train"), "test": ("", "data", "model", "test")}


def _key(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def problem(section: str, name: str, value: Any, allowed: str) -> str:
    """One line: `section.name=value: allowed`."""
    return f"{_key(section, name)}={value!r}: {allowed}"


def config_problems(config: Mapping[str, Any], script: str) -> List[str]:
    """Every key of the ingredients `script` ("train" | "test") reads that breaks its rule, and
    the combinations of keys that cannot work."""
    problems = []
    for section in SECTIONS[script]:
        values = config[section] if section else config
        for name, rule in RULES[section].items():
            if name in values and not rule.accepts(values[name]):
                problems.append(problem(section, name, values[name], f"must be {rule.allowed}"))
    data, model = config["data"], config["model"]
    shared_gpus = torchrun_problem(config["device"])
    if shared_gpus:
        problems.append(shared_gpus)
    n_folds = data["n_folds"]
    if data["name"] != "folder" and n_folds != N_FOLDS:
        problems.append(problem("data", "n_folds", n_folds,
                                f"must be {N_FOLDS} for {data['name']} (PASCAL-5i and COCO-20i "
                                "have 4 folds); other fold counts are for folder datasets"))
    elif _is_int(data["fold"]) and _is_int(n_folds) and data["fold"] >= n_folds:
        problems.append(problem("data", "fold", data["fold"],
                                f"must be in 0..{n_folds - 1} (data.n_folds={n_folds})"))
    if data["fold_style"] == "interleaved" and data["name"] not in ("coco", "folder"):
        problems.append(problem("data", "fold_style", data["fold_style"],
                                "'interleaved' is a COCO-20i (or folder dataset) split; "
                                "PASCAL-5i and the synthetic set use 'contiguous'"))
    if data["name"] == "coco" and data["lists_dir"] is not None:
        problems.append(problem("data", "lists_dir", data["lists_dir"],
                                "must be None for COCO (its image lists come from the "
                                "annotation json)"))
    if model["encoder"] != "vgg16" and model["weights"] is not None:
        problems.append(problem("model", "weights", model["weights"],
                                f"must be None: the {model['encoder']!r} encoder has no "
                                "pretrained weights (ImageNet weights fit 'vgg16' only)"))
    if script == "train":
        problems += _train_problems(config)
    else:
        problems += _test_problems(config)
    return problems


def _train_problems(config: Mapping[str, Any]) -> List[str]:
    train, data = config["train"], config["data"]
    problems = []
    if data["weak"] != "dense":
        problems.append(problem("data", "weak", data["weak"],
                                "must be 'dense' for training: weak supports are a test-time "
                                "setting (Table 6)"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if _is_int(train["batch_size"]) and train["batch_size"] % world_size:
        problems.append(problem("train", "batch_size", train["batch_size"],
                                f"must be a multiple of the {world_size} processes"))
    return problems


def _test_problems(config: Mapping[str, Any]) -> List[str]:
    test = config["test"]
    if test["notrain"] and test["checkpoint"]:
        return [problem("test", "checkpoint", test["checkpoint"],
                        "must be None with test.notrain=True (PANet-init evaluates the "
                        "ImageNet encoder): drop one of the two")]
    return []


def path_problems(config: Mapping[str, Any], script: str) -> List[str]:
    """What a run would find missing or unwritable on disk: checkpoints, weights, output
    folders. Run before a run's main function, so nothing is trained or written first."""
    if script == "train":
        return _train_path_problems(config)
    return _test_path_problems(config)


def _weights_problems(model: Mapping[str, Any]) -> List[str]:
    weights = model["weights"]
    if weights is None or Path(weights).expanduser().is_file():
        return []
    return [problem("model", "weights", weights,
                    "no such file; it must be torchvision's ImageNet VGG-16 "
                    "(vgg16-397923af.pth, https://download.pytorch.org/models/vgg16-397923af.pth)"
                    ", or None to start from random weights")]


# what data.root must be, per dataset
DATA_ROOTS = {
    "pascal": "the VOC2012 folder (JPEGImages/, SegmentationClassAug/, ImageSets/)",
    "coco": "the COCO folder (annotations/, train2014/, val2014/)",
    "synthetic": "the folder written by scripts/make_synthetic.py (VOC2012/, coco/)",
    "folder": "your dataset folder (images/, masks/, classes.txt; see the README)",
}


def data_root_problems(data: Mapping[str, Any]) -> List[str]:
    """data.root must be an existing folder (its contents are checked by the dataset)."""
    if Path(data["root"]).expanduser().is_dir():
        return []
    return [problem("data", "root", data["root"],
                    f"no such folder; it must be {DATA_ROOTS.get(data['name'], 'the dataset')}")]


def _writable_problems(section: str, name: str, folder: Optional[str]) -> List[str]:
    if folder is None:
        return []
    try:
        check_writable_dir(Path(folder).expanduser())
    except OSError as error:
        return [problem(section, name, folder, f"cannot write there ({error.strerror or error})")]
    return []


def _read_checkpoint(section: str, name: str, value: str
                     ) -> Tuple[Optional[Path], Optional[Dict[str, Any]], List[str]]:
    """(checkpoint file, its header, []) of a checkpoint key, or (None, None, [the problem])."""
    try:
        checkpoint = find_checkpoint(value)
        return checkpoint, load_checkpoint_header(checkpoint), []
    except (FileNotFoundError, ValueError) as error:
        return None, None, [problem(section, name, value, str(error))]


def _train_path_problems(config: Mapping[str, Any]) -> List[str]:
    train = config["train"]
    if train["resume"] is not None:
        checkpoint, header, problems = _read_checkpoint("train", "resume", train["resume"])
        if problems:
            return problems
        step = header["step"]
        problems += resume_problems(header["config"], config)
        if train["steps"] < step:
            problems.append(problem("train", "steps", train["steps"],
                                    f"must be >= {step}, the step {checkpoint} was saved at"))
        target = planned_run_dir(config, "train")  # None: a new runs/<id>
        return (problems + data_root_problems(config["data"])
                + _writable_problems("train", "output_dir", target and str(target)))
    problems = _weights_problems(config["model"]) + data_root_problems(config["data"])
    output_dir = train["output_dir"]
    if output_dir is not None:
        problems += _writable_problems("train", "output_dir", output_dir)
        held = sorted(Path(output_dir).expanduser().glob("checkpoints/*.pt"))
        if held:
            problems.append(problem("train", "output_dir", output_dir,
                                    f"already holds a run ({held[0]}): continue it with "
                                    f"train.resume={output_dir}, or choose another folder"))
    return problems


def resume_problems(stored: Mapping[str, Any], config: Mapping[str, Any]) -> List[str]:
    """The keys of `config` that differ from the checkpoint's `stored` config but may not
    change when resuming (anything outside `RESUMABLE`)."""
    problems = []
    for section in ("", "data", "model", "train"):
        now, then = (config, stored) if not section else (config[section], stored[section])
        for name in RULES[section]:
            if (_key(section, name) in RESUMABLE or name not in then  # a key newer than it
                    or now.get(name) == then[name]):
                continue
            problems.append(problem(section, name, now.get(name),
                                    f"the checkpoint was trained with {then.get(name)!r}; a "
                                    "resumed run keeps its setting, resuming would mix two runs "
                                    f"(only {', '.join(RESUMABLE)} may change)"))
    return problems


def _test_path_problems(config: Mapping[str, Any]) -> List[str]:
    test = config["test"]
    if test["notrain"]:
        problems = _weights_problems(config["model"]) + data_root_problems(config["data"])
    elif test["checkpoint"] is None:
        problems = [problem("test", "checkpoint", None,
                            "nothing to evaluate: set test.checkpoint=<a train.py checkpoint or "
                            "run folder>, or add `notrain` to evaluate the ImageNet-initialised "
                            "encoder (PANet-init)")]
    else:
        problems = _read_checkpoint("test", "checkpoint", test["checkpoint"])[2]
    return (problems + _writable_problems("test", "output_dir", test["output_dir"])
            + _writable_problems("test", "cache_dir", test["cache_dir"]))
