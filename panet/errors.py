"""Errors that stop a train.py / test.py run with their one-line message and no traceback:
sacred prints a `SacredError` that way (panet.validation.ConfigError is one too)."""

import warnings

# sacred 0.8.7 imports pkg_resources, and setuptools warns about it on every start; this module
# may be the first to import sacred (as panet.config does, it silences that first)
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
from sacred.utils import SacredError  # noqa: E402


class OneLineError(SacredError):
    """An error whose message says everything: printed alone, without a traceback."""

    def __init__(self, message: str):
        super().__init__(message, print_traceback=False)
