"""Parameter checks that fail early, naming the parameter and what it may be, and the one reader of values given as
text (command-line ``-p`` values, papermill's text parameters, params files): :func:`parse_value`."""
from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable

import yaml


MAX_EPOCHS = 1000  # the most epochs of one training phase a parameter may ask for (the paper's runs take 4 to 30)
MAX_EVALS = 1000  # the most test-set evaluations along one fine-tuning run (the paper profile: 30)


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


def check_unique(name: str, values: Iterable[Any]) -> list:
    """Fail when ``values`` lists an item twice, naming it."""
    values = list(values)
    twice = sorted({repr(v) for v in values if values.count(v) > 1})
    if twice:
        raise ParameterError(f"{name}={values!r} lists {', '.join(twice)} more than once; each value must appear once")
    return values


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1) that also reads exponent notation without a dot (``1e9``, ``5E-4``) as a
    number, as YAML 1.2 and Python do; YAML 1.1 reads it as text. A key given twice in a mapping is an error."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool, type(None))):
                continue  # PyYAML's own check names an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                        f"the key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))


def parse_value(text: str) -> Any:
    """Typed value of a parameter given as text: YAML (0.1 and 1e9 are floats, [0, 1] a list, null is None); raises
    :class:`yaml.YAMLError` on malformed text."""
    return yaml.load(text, Loader=_Loader)


def load_params_file(path: str | os.PathLike) -> dict:
    """The parameters in a YAML file (a mapping of names to values, read as :func:`parse_value` reads text); an empty
    file is ``{}``. Raises :class:`ParameterError` naming the file (and the line of a syntax error) otherwise."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as err:
        raise ParameterError(f"params file {path} cannot be read: {err}") from None
    try:
        values = parse_value(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = " ".join(str(x) for x in (getattr(err, "context", None), getattr(err, "problem", None)) if x)
        raise ParameterError(f"params file {where}: not valid YAML ({problem or err}); it must be a mapping of "
                             f"parameter names to values, e.g. 'profile: cpu'") from None
    if values is None:
        return {}
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise ParameterError(f"params file {path} must be a mapping of parameter names to values (e.g. 'profile: "
                             f"cpu'), not {type(values).__name__} {values!r:.80}")
    return values
