"""How the book words numbers: decimals, exact parameter values, plurals, lists and intervals (no torch, no pandas).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

MISSING = "—"  # how a table shows a value that does not exist
DIGITS = 3


def is_nan(x) -> bool:
    """Whether ``x`` is no value: None or a float NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(value: Any, digits: int = DIGITS) -> str:
    """A number as prose shows it: ``digits`` decimals for floats (never "-0.000"), integers as they are;
    None, nan and inf (which prose must never show) become "n/a"."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return "n/a"
    return f"{round(x, digits) + 0.0:.{digits}f}"


def fmt_value(value: Any) -> str:
    """A parameter value as prose shows it: ``0.1``, ``0.0005``, ``resnet18`` (shortest exact form, no rounding)."""
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else "n/a"
    return str(value)


def epochs(values) -> str:
    """``"1 epoch"``, ``"0.25 epochs"``, ``"1 and 2 epochs"``: one length or a list of lengths, in epochs (three
    significant digits)."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    return join_values(values, formatter=lambda v: f"{v:.3g}") + (" epoch" if values == [1] else " epochs")


def plural(n: int, word: str, many: str | None = None, *, one_word: bool = False) -> str:
    """``"1 seed"``, ``"3 seeds"`` (``many`` for irregular plurals; ``one_word`` writes "one seed")."""
    if n == 1:
        return f"one {word}" if one_word else f"1 {word}"
    return f"{n} {many or word + 's'}"


def join_values(values: Iterable[Any], conjunction: str = "and", formatter: Callable[[Any], str] = fmt_value) -> str:
    """``"0.01"``, ``"0.01 and 0.1"``, ``"0.01, 0.05 and 0.1"`` (values formatted with ``formatter``)."""
    items = [formatter(v) for v in values]
    if not items:
        return "none"
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def rates_phrase(lrs: Iterable[float], prefix: str = "lr ") -> str:
    """``"lr 0.05"`` for one rate, ``"lr 0.01 and 0.1"`` for several (sorted)."""
    return prefix + join_values(sorted(lrs))


def ci_phrase(mean: float, lo: float, hi: float, n_seeds: int, digits: int = DIGITS) -> str:
    """``"0.307 (95% CI 0.177 to 0.437, 3 seeds)"``; with one seed ``"0.307 (one seed: no interval)"``; without a
    value ``"n/a (no result)"``."""
    if mean is None or not math.isfinite(float(mean)):
        return "n/a (no result)"
    if n_seeds < 2 or lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        why = "one seed: no interval" if n_seeds < 2 else f"{plural(n_seeds, 'seed')}: no interval"
        return f"{fmt(mean, digits)} ({why})"
    return f"{fmt(mean, digits)} (95% CI {fmt(lo, digits)} to {fmt(hi, digits)}, {plural(n_seeds, 'seed')})"
