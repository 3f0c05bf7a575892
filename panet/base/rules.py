"""What a setting accepts: one `Rule` per kind of value, its `allowed` text completing "must be
..." (`section.name=value: must be <allowed>`); `panet.settings` attaches one to every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from panet.base.device import DEVICE_CHOICES, is_device_name


@dataclass(frozen=True)
class Rule:
    """What one key accepts: `accepts(value)`, described for people by `allowed`."""

    accepts: Callable[[Any], bool]
    allowed: str


def problem(key: str, value: Any, allowed: str) -> str:
    """One line: `key=value: allowed`."""
    return f"{key}={value!r}: {allowed}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def integer(minimum: int) -> Rule:
    return Rule(lambda v: is_int(v) and v >= minimum, f"an integer >= {minimum}")


def number(minimum: float, inclusive: bool = True, maximum: float = math.inf) -> Rule:
    def accepts(value: Any) -> bool:
        if not is_number(value):
            return False
        return (value >= minimum if inclusive else value > minimum) and value < maximum

    bound = f"{'>=' if inclusive else '>'} {minimum}"
    if maximum != math.inf:
        bound += f" and < {maximum}"
    return Rule(accepts, f"a finite number {bound}")


def one_of(options: Iterable[str]) -> Rule:
    """One of `options` (a sequence, or a registry: its keys, read when a value is checked)."""
    return Rule(lambda v: isinstance(v, str) and v in options,
                "one of " + ", ".join(repr(o) for o in options))


def text() -> Rule:
    return Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.accepts(v), f"None or {rule.allowed}")


def optional_path() -> Rule:
    return optional(Rule(text().accepts, "a path"))


def flag() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false")


def class_list() -> Rule:
    def accepts(value: Any) -> bool:
        if value is None:
            return True
        entries = list(value) if isinstance(value, (list, tuple)) else None
        return (bool(entries) and len(set(map(str, entries))) == len(entries)
                and all((is_int(v) and v >= 1) or (isinstance(v, str) and v) for v in entries))

    return Rule(accepts, "None or a non-empty list of distinct class ids (>= 1) or names")


def size() -> Rule:
    def accepts(value: Any) -> bool:
        if is_int(value):
            return value >= 1
        return (isinstance(value, (list, tuple)) and len(value) == 2
                and all(is_int(v) and v >= 1 for v in value))

    return Rule(accepts, "an integer >= 1 or a pair [H, W] of them")


def milestones() -> Rule:
    def accepts(value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and all(is_int(v) and v >= 1 for v in value)
                and list(value) == sorted(set(value)))

    return Rule(accepts, "an ascending list of distinct integers >= 1")


def device() -> Rule:
    return Rule(is_device_name, DEVICE_CHOICES)
