"""Reading torch files that others wrote (checkpoints, released snapshots) as data, never code.

Unpickling can call any Python function the file names, so every torch file is read with
`torch.load(weights_only=True)`: tensors and plain data come back; anything else is refused
before it is built, in one line naming the Python objects the file refers to. Files we write
hold only such data (`plain_data` converts a config).
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch
from panet.base.files import PathLike

PLAIN_SCALARS = (str, int, float, bool, type(None))
# Globals of tensors and plain containers in torch files (legacy pickles name them directly).
DATA_GLOBALS = ("collections.OrderedDict", "collections.Counter", "_codecs.encode",
                "builtins.set", "builtins.frozenset", "builtins.bytearray")
MAX_MESSAGE = 160  # characters of a library's error message kept in ours


class UnsafeFileError(ValueError):
    """A file holding pickled Python objects beyond tensors and plain data (`names`: the
    module.name of each, e.g. 'posix.system'); refused unread."""

    def __init__(self, path: PathLike, names: List[str], advice: str = ""):
        self.path, self.names = Path(path), list(names)
        shown = ", ".join(self.names[:4]) + (", ..." if len(self.names) > 4 else "")
        super().__init__(f"'{path}' refused: it holds pickled Python objects ({shown}), which "
                         f"could run code when read; only tensors and plain data are read"
                         + (f". {advice}" if advice else ""))


def gist(error: BaseException) -> str:
    """An error message's first line, cut to one sentence of at most MAX_MESSAGE characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    cut = text.find(". ", 40)
    text = text[:cut] if cut > 0 else text
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


class _GlobalFinder(pickle.Unpickler):
    """Reads a pickle up to its first global beyond tensors and plain data, kept as `unsafe`
    (`find_class`, the standard library's way of restricting globals). Nothing of the file
    runs: allowed globals become a function building an empty dict."""

    unsafe: Optional[str] = None

    def find_class(self, module: str, name: str) -> Callable[..., dict]:
        full = f"{module}.{name}"
        if module == "torch" or module.startswith("torch.") or full in DATA_GLOBALS:
            return lambda *args, **kwargs: {}
        self.unsafe = full
        raise pickle.UnpicklingError(f"{full} refused")


def _unsafe_globals(path: Path, refusal: pickle.UnpicklingError) -> List[str]:
    """The globals beyond tensors and plain data that made torch refuse `path`: all of them for
    a zip file; for a legacy file, the one torch's `refusal` names; for a pickle of protocol 4
    or later (torch says only "Unsupported operand"), the first one `_GlobalFinder` meets.
    Empty when the refusal is about something else (a damaged file)."""
    if zipfile.is_zipfile(path):
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    named = re.search(r"GLOBAL ([\w.]+)", str(refusal))
    if named:
        return [named.group(1)]
    with open(path, "rb") as stream:
        finder = _GlobalFinder(stream)
        with contextlib.suppress(pickle.UnpicklingError, EOFError, ValueError, TypeError,
                                 AttributeError):
            finder.load()
    return [finder.unsafe] if finder.unsafe else []


def load_data(path: PathLike, what: str, *, mmap: bool = False) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU. Raises FileNotFoundError, or a one-line
    ValueError: `UnsafeFileError`, or "not a readable `what`" (truncated, damaged, not a torch
    file). `mmap` maps the tensors of a zip-format file (legacy files cannot be mapped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' does not exist")
    try:
        with warnings.catch_warnings():  # a refused file's protocol is refused below anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        names = _unsafe_globals(path, error)
        if names:
            raise UnsafeFileError(path, names) from None
        reason = str(error).partition("WeightsUnpickler error:")[2] or str(error)
        raise ValueError(f"'{path}' is not a readable {what} (the tensors-only reader stopped: "
                         f"{gist(RuntimeError(reason))})") from None
    except Exception as error:  # truncated zip, not a torch file at all, ...
        raise ValueError(f"'{path}' is not a readable {what}: truncated or damaged? "
                         f"({gist(error)})") from None


def plain_data(value: Any, where: str = "value") -> Any:
    """`value` as plain data that `load_data` reads back: mappings become dicts, lists lists,
    tuples stay tuples. Raises TypeError naming the entry (`where`.key...) of any other type."""
    if isinstance(value, Mapping):
        return {key: plain_data(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, PLAIN_SCALARS):
        return value
    raise TypeError(f"{where} is a {type(value).__name__}; a checkpoint stores only dicts, lists, "
                    "tuples, strings, numbers, booleans and None")


def describe_contents(obj: Any) -> str:
    """What a loaded file holds: 'a dict of 13 tensors named conv1.*, bn1.*', 'a dict with keys
    step, model', 'a list', ..."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            heads = list(dict.fromkeys(str(key).split(".")[0] + ".*" if "." in str(key)
                                       else str(key) for key in obj))
            shown = ", ".join(heads[:5]) + (", ..." if len(heads) > 5 else "")
            return f"{len(obj)} tensors named {shown}"
        keys = [str(key) for key in obj]
        return ("an empty dict" if not keys else
                "a dict with keys " + ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else ""))
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"
