"""Parameter checks that fail early, naming the parameter and what it may be."""
from __future__ import annotations

import math
from typing import Any, Iterable


class ParameterError(ValueError):
    """A parameter is invalid. The message names it and lists the allowed values."""


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = list(allowed)
    if value not in allowed:
        raise ParameterError(f"{name}={value!r} is not allowed; choose one of {allowed}")
    return value


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_inclusive: bool = True, high_inclusive: bool = True, integer: bool = False) -> Any:
    """Check that ``value`` is a number in the given interval."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise ParameterError(f"{name}={value!r} must be {kind}{_interval(low, high, low_inclusive, high_inclusive)}")
    if not math.isfinite(value):
        raise ParameterError(f"{name}={value!r} must be a finite number{_interval(low, high, low_inclusive, high_inclusive)}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        allowed = _interval(low, high, low_inclusive, high_inclusive)
        raise ParameterError(f"{name}={value!r} is out of range; allowed{allowed}")
    return value


def _interval(low, high, low_inclusive, high_inclusive) -> str:
    if low is None and high is None:
        return ""
    left = ("[" if low_inclusive else "(") + ("-inf" if low is None else f"{low:g}")
    right = ("inf" if high is None else f"{high:g}") + ("]" if high_inclusive else ")")
    return f" in {left}, {right}"


def check_keys(name: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Fail on unknown keys, listing the known ones."""
    allowed = sorted(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ParameterError(f"unknown {name} {unknown}; known: {allowed}")
