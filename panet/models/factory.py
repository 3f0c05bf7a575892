"""The model of a run, made by `model.factory`, and what the rest of the code asks of it.

`model.factory` names a callable "package.module:callable" (default "panet.models:PANet"),
called as `factory(encoder, alpha=alpha)` with the registry's encoder (with the levels its
`feature_levels` asks for) and the cosine scale `model.alpha`. It returns an nn.Module whose

    forward(support_images, support_fg, support_bg, query_images) -> logits
        B x Q x (1 + W) x H' x W' (channel 0 background), or an object holding them as
        `logits` (and `logits_low`), e.g. PANetOutput

and which may define `loss`, `score`, `use_numerics`, `encode`, `prototypes`,
`prototypes_from_pools`, `fast_paths`, `feature_levels` and `param_groups`, each used where it
exists (docs/your-own-method.md lists them with their shapes). Every model is made here
(`make_model`), so every command runs any factory alike. Importing a factory runs its module's
code, on purpose: it is a config value the user wrote. A checkpoint supplies settings, never
code (`panet.run.compose`).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Callable, Optional, Sequence, Tuple

import torch
from torch import nn

from panet.base.errors import one_line
from panet.models.encoders import build_encoder

DEFAULT_FACTORY = "panet.models:PANet"
MODEL_INPUTS = ("support_images", "support_fg", "support_bg", "query_images")  # forward's
_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
FACTORY_SPEC = re.compile(rf"{_NAME}:{_NAME}")  # package.module:callable (or Class.method)
FACTORY_FORM = "a 'package.module:callable' string (e.g. 'examples.temperature:TemperaturePANet')"
INTERFACE_DOC = "docs/your-own-method.md"


class FactoryError(ValueError):
    """model.factory cannot make a model; the message (one line) says why."""


def is_factory_spec(value: Any) -> bool:
    """Whether `value` has the form package.module:callable."""
    return isinstance(value, str) and FACTORY_SPEC.fullmatch(value) is not None


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {one_line(error)}"


def import_factory(spec: str) -> Callable[..., Any]:
    """The callable `spec` names, imported from the import path or the current folder; else a
    one-line FactoryError."""
    if not is_factory_spec(spec):
        raise FactoryError(f"must be {FACTORY_FORM}")
    module_name, _, attribute = spec.partition(":")
    folder = os.getcwd()  # first on the import path while importing, as `python -m` has it
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:  # the module is the user's code: any error is a reason to stop
        raise FactoryError(f"cannot import module {module_name!r} ({_one_line(error)}); run "
                           "from the folder holding its package, or add that folder to "
                           "PYTHONPATH") from error
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    where = getattr(found, "__file__", module_name)
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise FactoryError(f"module {module_name!r} ({where}) has no {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise FactoryError(f"{attribute!r} of module {module_name!r} is a "
                           f"{type(found).__name__}, not a callable making the model")
    return found


OPTIONAL_METHODS = ("loss", "score", "use_numerics", "encode", "prototypes",
                    "prototypes_from_pools", "param_groups")
FAST_PATH_METHODS = {  # what each fast path computes forward's logits with
    "parts": ("encode", "prototypes", "score"),  # prototypes made once (Segmenter, predict.py)
    "pools": ("encode", "prototypes_from_pools", "score"),  # test.py's encode-once path
}


def check_model(model: Any, spec: str, levels: Sequence[str] = ()) -> nn.Module:
    """`model` when it follows the method interface (module docstring), else FactoryError
    naming what is wrong (`levels`: the encoder's)."""
    made = f"{spec} returned a {type(model).__name__}"
    if not isinstance(model, nn.Module):
        raise FactoryError(f"{made}, not a torch.nn.Module with a forward ({INTERFACE_DOC})")
    wrong = [f"`{name}` is a {type(getattr(model, name)).__name__}, not a method"
             for name in OPTIONAL_METHODS
             if getattr(model, name, None) is not None and not callable(getattr(model, name))]
    for path in getattr(model, "fast_paths", ()):
        lacks = [name for name in FAST_PATH_METHODS.get(path, ())
                 if not callable(getattr(model, name, None))]
        if path not in FAST_PATH_METHODS or lacks:
            wrong.append(f"fast path {path!r} declared without {', '.join(lacks)}" if lacks else
                         f"unknown fast path {path!r} (the fast paths: "
                         f"{', '.join(FAST_PATH_METHODS)})")
    unknown = [level for level in getattr(model, "feature_levels", ()) if level not in levels]
    if unknown:
        wrong.append(f"feature_levels {unknown} are not levels of its encoder "
                     f"({', '.join(levels)})")
    if wrong:
        raise FactoryError(f"{made} that does not follow the method interface ({INTERFACE_DOC})"
                           f": {'; '.join(wrong)}")
    return model


def factory_levels(spec: str) -> Tuple[str, ...]:
    """The encoder levels the factory's models read (its `feature_levels`; () for none)."""
    return tuple(getattr(import_factory(spec), "feature_levels", ()))


def with_numerics(model: nn.Module, numerics) -> nn.Module:
    """The model set to compute in `numerics` (`use_numerics`; without it, the default only)."""
    return model.use_numerics(numerics) if callable(getattr(model, "use_numerics", None)) \
        else model


def make_model(spec: str, encoder: nn.Module, alpha: float) -> nn.Module:
    """`factory(encoder, alpha=alpha)`, checked (`check_model`); else a one-line FactoryError,
    the factory's own error chained."""
    factory = import_factory(spec)
    try:
        model = factory(encoder, alpha=alpha)
    except Exception as error:
        raise FactoryError(f"{spec}(encoder, alpha={alpha!r}) raised {_one_line(error)}"
                           ) from error
    return check_model(model, spec, tuple(getattr(encoder, "levels", {})))


def trial_model(spec: str, encoder: str, alpha: float) -> nn.Module:
    """The model `spec` makes around the registry's `encoder` on the meta device (no memory, no
    arithmetic): a factory checked before a run does any work."""
    with torch.device("meta"):
        return make_model(spec, build_encoder(encoder, None, factory_levels(spec)), alpha)


PART_METHODS = ("forward", "encode", "prototypes", "score", "prototypes_from_pools")


def _defined_at(model: nn.Module, name: str) -> int:
    """`name`'s depth in the model's class hierarchy (-1: on the instance; len(mro): nowhere)."""
    if name in vars(model):
        return -1
    mro = type(model).__mro__
    return next((depth for depth, kind in enumerate(mro) if name in vars(kind)), len(mro))


def fast_path_problem(model: nn.Module, path: str) -> Optional[str]:
    """None when `model` may be evaluated through fast path `path` (`FAST_PATH_METHODS`), else why
    not. A declaration (`fast_paths`) holds for the class making it: a subclass overriding one of
    `PART_METHODS` without declaring again is evaluated through its own forward."""
    name = type(model).__name__
    if path not in getattr(model, "fast_paths", ()):
        return f"{name} does not declare the {path!r} fast path (fast_paths)"
    declared = _defined_at(model, "fast_paths")
    newer = [method for method in PART_METHODS if _defined_at(model, method) < declared]
    if newer:
        return (f"{name} overrides {', '.join(newer)} without declaring its fast paths again "
                "(fast_paths)")
    if path == "pools" and not callable(getattr(model, "prototypes_from_pools", None)):
        return f"{name} declares the 'pools' fast path but has no `prototypes_from_pools`"
    return None


def own_loss(model: nn.Module) -> Optional[Callable[..., Any]]:
    """The model's `loss` method (through a DDP wrapper), or None: PANet's loss."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    loss = getattr(model, "loss", None)
    return loss if callable(loss) else None


def query_logits(out: Any, model: nn.Module) -> torch.Tensor:
    """The B x Q x (1 + W) x h x w query logits of a forward's output at its lowest resolution:
    `logits_low`, else `logits`, else the output itself; a one-line TypeError otherwise."""
    for found in (getattr(out, "logits_low", None), getattr(out, "logits", None), out):
        if torch.is_tensor(found) and found.dim() == 5:
            return found
    raise TypeError(f"{type(model).__name__}.forward returned a {type(out).__name__}: a model "
                    "returns B x Q x (1 + W) x H x W logits, or an object holding them as "
                    f"`logits` ({INTERFACE_DOC})")
