"""Errors a user can act on, in one line each: the entry points print a `OneLineError` alone
(no traceback) and exit with status 1; programming errors keep their tracebacks.
"""

from __future__ import annotations

import argparse
from typing import Sequence


class OneLineError(Exception):
    """An error whose message says everything: printed alone, without a traceback."""


class ConfigError(OneLineError, ValueError):
    """A configuration that cannot run: one line per problem, `key=value: must be ...`."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def one_line(error: BaseException) -> str:
    """An error's message folded onto one line."""
    return " ".join(str(error).split())


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), pointing at --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
