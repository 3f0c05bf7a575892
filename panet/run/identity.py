"""What makes two trained models, or two results, "the same": decided here and nowhere else.

A **model** is identified by what computes its numbers (`model_identity`):
    model_sha256    the evaluated model's tensors (names, dtypes, shapes, bytes), factory and
                    method source: two models with equal digests segment alike
    factory         model.factory, the callable that made it
    method_sha256   for a method outside the panet package, the SHA-256 of its source files
                    (`method_files`); None for PANet itself, whose code the commit identifies
How a trained model came to be (`training_identity`, stored in its checkpoint):
    training        the settings that determined its training (`fingerprint(config, "train")`)
    data            the data it trained on (`Source.identity`: the per-class image lists)
    code            the commit and dirty state of this checkout, and the method's source SHA-256
    loss_terms      the loss terms the method reported (PANet: seg, align), filled in by train.py
A **test** is identified by its model (the checkpoint's SHA-256 or PANet-init's settings, and the
method source), its protocol (`fingerprint(config, "test")`) and its numerics (precision, memory
format, the evaluation path that ran) (`test_identity`).

Consumers: train.py, test.py (results.json, the feature cache key), scripts/compare.py (the same
model on both sides), scripts/reproduce.py (a job is done when its output's identity is the one
it would make now).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

import torch

from panet.models.factory import DEFAULT_FACTORY, import_factory
from panet.settings import SCRIPT_SECTIONS, ModelSettings, Settings

CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout panet runs from
# keys that do not change what a run computes: where it reads and writes, how fast and on what
# it computes (numbers agree within the exactness contract; `precision` is in), how often it
# saves and logs
NOT_IN_FINGERPRINT = frozenset((
    "device", "tf32", "memory_format", "data.workers", "data.cache_dir", "data.lists_dir",
    "train.output_dir", "train.resume", "train.checkpoint_every", "train.snapshot_every",
    "train.log_every", "test.checkpoint", "test.output_dir", "test.cache_gb", "test.cache_dir",
    "test.batch_size", "test.encode", "test.overwrite"))
# the protocol of a test: what fixes its episodes and its metric (dotted keys)
PROTOCOL_KEYS = tuple(f"data.{name}" for name in (
    "name", "test_split", "fold", "n_folds", "fold_style", "test_classes", "year", "ways",
    "shots", "queries", "weak", "bbox_instance", "scribble_dilation", "coco_labels", "size")) + (
    "test.rule", "test.resolution", "test.runs", "test.episodes", "seed")


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=CODE_ROOT, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def code_version() -> Dict[str, Any]:
    """The code that runs: `commit` (hex; None outside a git checkout) and `dirty` (tracked
    files differ from it; None when unknown)."""
    commit = _git("rev-parse", "HEAD")
    status = None if commit is None else _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def fingerprint(config: Mapping[str, Any], script: str) -> Dict[str, Any]:
    """What determines the results of a `script` run of `config`: every key of the sections it
    reads but `NOT_IN_FINGERPRINT`, by dotted key, the data splits resolved."""
    settings = Settings.from_config(config)
    found = {}
    for name in SCRIPT_SECTIONS[script]:
        section = settings.section(name)
        found.update({section.key(key): value for key, value in section.as_config().items()})
    found["data.train_split"] = settings.data.split(train=True)
    found["data.test_split"] = settings.data.split(train=False)
    return {key: value for key, value in found.items() if key not in NOT_IN_FINGERPRINT}


def differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> List[str]:
    """'key: recorded -> wanted' for every key whose value differs (how identities compare)."""
    return [f"{key}: {recorded.get(key)!r} -> {wanted.get(key)!r}"
            for key in sorted(recorded.keys() | wanted.keys())
            if recorded.get(key) != wanted.get(key)]


def method_files(factory: str) -> Dict[str, Path]:
    """The source files of a method outside the panet package, by name relative to the folder
    holding it: its factory's module and every .py file of its top-level package ({} for
    panet's own factories). Imports the module, which the user named."""
    module_name = factory.partition(":")[0]
    top = module_name.split(".")[0]
    if top == "panet":
        return {}
    if module_name not in sys.modules:
        import_factory(factory)
    folders = [Path(path).resolve() for path in getattr(sys.modules[top], "__path__", [])]
    if not folders:  # a module of its own, not in a package
        module_file = Path(sys.modules[module_name].__file__).resolve()
        return {module_file.name: module_file}
    return dict(sorted((str(path.relative_to(folder.parent)), path)
                       for folder in folders for path in folder.rglob("*.py")
                       if "__pycache__" not in path.parts))


def method_sha256(factory: str) -> Optional[str]:
    """SHA-256 of `method_files` (names and contents), or None for panet's own factories."""
    files = method_files(factory)
    if not files:
        return None
    digest = hashlib.sha256()
    for name, path in files.items():
        digest.update(f"{name}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()


def tensors_sha256(tensors: Iterable, *extra: str) -> str:
    """SHA-256 of named tensors (name, dtype, shape and bytes of each) and `extra` strings."""
    digest = hashlib.sha256("\0".join(extra).encode())
    for name, tensor in tensors:
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_identity(model: torch.nn.Module, settings: Optional[ModelSettings] = None
                   ) -> Dict[str, Any]:
    """The identity of a model as it evaluates (module docstring); `settings`: what it was built
    with (default PANet's)."""
    settings = (settings or ModelSettings()).replace(weights=None)
    method = method_sha256(settings.factory)
    built = json.dumps(settings.as_config(), sort_keys=True)
    return {"model_sha256": tensors_sha256(model.state_dict().items(), built, method or ""),
            "factory": settings.factory, "method_sha256": method}


def training_identity(config: Mapping[str, Any], data: Optional[str]) -> Dict[str, Any]:
    """How a trained model came to be (module docstring): stored in its checkpoints."""
    factory = config.get("model", {}).get("factory", DEFAULT_FACTORY)
    return {"training": fingerprint(config, "train"), "data": data,
            "code": {**code_version(), "method_sha256": method_sha256(factory)},
            "loss_terms": []}


def test_identity(config: Mapping[str, Any], checkpoint_sha256: Optional[str],
                  encode: str) -> Dict[str, Any]:
    """What a test of `config` computes (module docstring); `checkpoint_sha256` None:
    PANet-init; `encode`: the evaluation path that ran."""
    settings = Settings.from_config(config)
    run = settings.run
    return {"checkpoint_sha256": checkpoint_sha256,
            "method_sha256": method_sha256(settings.model.factory),
            "settings": fingerprint(config, "test"),
            "numerics": {"precision": run.precision, "memory_format": run.memory_format,
                         "encode": encode}}


def protocol(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The `PROTOCOL_KEYS` of a test's fingerprint (None where an older record lacks one)."""
    return {key: settings.get(key) for key in PROTOCOL_KEYS}


def recorded_model(record: Mapping[str, Any]) -> tuple:
    """What tells the models of two results.json records apart: the evaluated model's digest;
    in older records, the checkpoint's SHA-256, or PANet-init's model settings and seed."""
    model, setting = record.get("model") or {}, record["setting"]
    if model.get("model_sha256"):
        return ("model", model["model_sha256"])
    if setting.get("checkpoint_sha256"):
        return ("checkpoint", setting["checkpoint_sha256"])
    return ("init", json.dumps(setting.get("model"), sort_keys=True), setting.get("seed"))


def recorded_numerics(record: Mapping[str, Any]) -> Dict[str, Any]:
    """How a recorded test computed: precision, memory format and the evaluation path used."""
    setting = record["setting"]
    return {"precision": setting.get("precision", "fp32"),
            "memory_format": setting.get("memory_format", "contiguous"),
            "encode": setting.get("encode_used", setting.get("encode"))}


def method_change(trained: Optional[Mapping[str, Any]], factory: str) -> Optional[str]:
    """One line when the source of `factory` differs from the one a checkpoint was trained with
    (`trained`: its stored training identity; None: unknown), else None."""
    then = ((trained or {}).get("code") or {}).get("method_sha256")
    now = method_sha256(factory)
    if trained is None or then == now:
        return None
    return (f"warning: the source of model.factory={factory} ({', '.join(method_files(factory))}"
            f") differs from the code the checkpoint was trained with (method sha256 "
            f"{str(then)[:12]} -> {str(now)[:12]}): the results are this code's, not the trained "
            "one's")
