"""How the book words numbers: decimals, exact parameter values, plurals, lists and intervals (no torch, no pandas).
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable

MISSING = "—"  # how a table shows a value that does not exist
DIGITS = 3


def is_nan(x) -> bool:
    """Whether ``x`` is no value: None or a float NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


# the range of each kind of quantity a page shows an interval for: an interval is never shown outside it
RATE_PREFIXES = ("clean", "matched", "mismatched", "follow", "acc")
DIFFERENCE_NAMES = ("erosion", "drop_from_start", "control_loss", "gain", "reduction")


def quantity_range(name: str) -> tuple[float | None, float | None]:
    """(low, high) of the quantity ``name`` (a column name): accuracies and rates [0, 1], their differences
    [-1, 1], losses and other quantities [0, inf) or unbounded."""
    if name.startswith(DIFFERENCE_NAMES):
        return -1.0, 1.0
    if name.startswith(RATE_PREFIXES):
        return 0.0, 1.0
    if "loss" in name:
        return 0.0, None
    return None, None


def clip_interval(name: str, lo: float, hi: float) -> tuple[float, float]:
    """The interval ``(lo, hi)`` of quantity ``name`` clipped to :func:`quantity_range` (an impossible value is
    never shown; the coverage is unchanged)."""
    low, high = quantity_range(name)
    if low is not None:
        lo, hi = (max(lo, low) if not math.isnan(lo) else lo), (max(hi, low) if not math.isnan(hi) else hi)
    if high is not None:
        lo, hi = (min(lo, high) if not math.isnan(lo) else lo), (min(hi, high) if not math.isnan(hi) else hi)
    return lo, hi


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


# ------------------------------------------------------------------------------------------- names for readers

ARCH_NAMES = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "vgg11": "VGG-11", "vgg16": "VGG-16",
              "vgg19": "VGG-19", "mlp": "MLP"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST"}
PATTERN_NAMES = {"colour": "colour patch", "position": "position code", "noise": "noise code"}
# convolutions per block of the VGG configurations (torchvision's A, D, E), each conv followed by BN and ReLU
VGG_BLOCKS = {"vgg11": (1, 1, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
SCALE_WORDS = {"smoke": "smoke scale", "cpu": "cpu scale", "paper": "paper scale"}


def arch_name(arch: str, width: float | None = None) -> str:
    """``"ResNet-18"``; with a width multiplier other than 1, ``"VGG-11 at width 0.25"``."""
    name = ARCH_NAMES.get(arch, str(arch))
    return name if width in (None, 1, 1.0) else f"{name} at width {fmt_value(width)}"


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, str(dataset))


def scale_suffix(profile: str) -> str:
    """What a chapter title adds for the scale it is built at: ``" (cpu scale)"``; nothing at the paper scale."""
    return "" if profile == "paper" else f" ({SCALE_WORDS.get(profile, profile + ' scale')})"


def device_words(device: str) -> str:
    """A provenance device as prose shows it: ``"a CPU (x86_64, 1 thread)"``, ``"an NVIDIA H200"``."""
    text = device_label(device)
    if text.lower().startswith("cpu"):
        return "a CPU" + text[3:]
    if text.lower() in ("cuda", "gpu") or text.lower().startswith("cuda:"):
        return "a GPU"
    return f"an {text}" if text[:1].lower() in "aeiou" or text.startswith("NVIDIA") else text


def duration(seconds: float) -> str:
    """``"40 s"``, ``"5 min"``, ``"1.5 h"``: a wall time, rounded as a reader needs it."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "an unknown time"
    s = float(seconds)
    if s < 90:
        return f"{max(1, round(s))} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    return f"{s / 3600:.1f} h"


def layer_name(tap: str, arch: str | None = None, short: bool = False) -> str:
    """The human name of a probed layer (a tap such as ``net.layer4.1``), numbered from 1 everywhere:

    - ResNet: ``relu`` → "stem", ``layer4.1`` → "stage 4, block 2", ``avgpool`` → "global pool";
    - VGG (needs ``arch``): ``features.k`` (a ReLU) → "block 3, conv 2", ``flatten`` → "pooled output";
    - MLP: ``hidden.0`` → "hidden block 1".

    ``short`` gives axis labels: "stem", "4.2", "pool", "3.2", "out", "1". A name it does not know is returned
    without the ``net.`` prefix."""
    name = str(tap).removeprefix("net.")
    m = re.fullmatch(r"layer(\d+)\.(\d+)", name)
    if m:
        stage, block = int(m.group(1)), int(m.group(2)) + 1
        return f"{stage}.{block}" if short else f"stage {stage}, block {block}"
    if name == "relu":
        return "stem"
    if name == "avgpool":
        return "pool" if short else "global pool"
    if name == "flatten":
        return "out" if short else "pooled output"
    m = re.fullmatch(r"hidden\.(\d+)", name)
    if m:
        return str(int(m.group(1)) + 1) if short else f"hidden block {int(m.group(1)) + 1}"
    m = re.fullmatch(r"features\.(\d+)", name)
    if m and arch in VGG_BLOCKS:
        index, position = int(m.group(1)), 0
        for b, n_convs in enumerate(VGG_BLOCKS[arch], 1):
            for c in range(1, n_convs + 1):
                if position + 2 == index:  # conv, batch norm, ReLU
                    return f"{b}.{c}" if short else f"block {b}, conv {c}"
                position += 3
            position += 1  # the max-pool closing the block
    if m:
        return name if short else f"layer {int(m.group(1))}"
    return name


def layer_axis_label(arch: str | None) -> str:
    """The axis label for :func:`layer_name` (``short``) tick labels."""
    if arch and arch.startswith("resnet"):
        return "layer (stage.block)"
    if arch in VGG_BLOCKS:
        return "layer (block.conv)"
    return "layer (hidden block)" if arch == "mlp" else "layer (input → output)"


def device_label(device: str) -> str:
    """A provenance device without an article, one thread singular: ``"cpu (x86_64, 1 thread)"``."""
    return re.sub(r"\b1 threads\b", "1 thread", str(device).strip())
