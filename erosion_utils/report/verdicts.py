"""How the analysis plan's rules (:mod:`erosion_utils.report.plan`) are applied: seed-level intervals, three-way
decisions against thresholds, the sensitivity of each verdict to its thresholds, and its label (confirmatory or
exploratory, from :mod:`erosion_utils.report.planlog`). Pure functions of numbers; no training.

Every verdict is a :class:`Verdict`: the rule, the outcome, the intervals behind it, a sensitivity line, whether it is
fragile, and the label. :func:`judge` builds one from a rule's statistics function and outcome function, so that the
sensitivity scan reuses the statistics (a threshold does not change an interval) and recomputes them only when the
interval level is what is varied.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
from scipy import stats as sps

from . import plan
from .planlog import label_for
from .words import fmt_value


# --------------------------------------------------------------------------------------------------- intervals

@dataclass(frozen=True)
class Interval:
    """A statistic's estimate (the mean over seeds, or a ratio or coefficient), its interval and its seed count."""

    estimate: float
    lo: float
    hi: float
    n: int
    method: str

    @property
    def known(self) -> bool:
        return self.n > 0 and not math.isnan(self.estimate)

    def text(self, digits: int = 3) -> str:
        """``0.307 [0.177, 0.437]``; with no interval ``0.307 (n seeds: no interval)``; ``n/a`` without a value."""
        if not self.known:
            return "n/a"
        if math.isnan(self.lo) or math.isnan(self.hi):
            return f"{self.estimate:.{digits}f} ({self.n} seed{'s' if self.n != 1 else ''}: no interval)"
        return f"{self.estimate:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


NO_VALUE = Interval(math.nan, math.nan, math.nan, 0, "none")


def _clean(values: Iterable) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None and not math.isnan(float(v))], dtype=float)


def t_interval(values: Iterable, level: float = plan.LEVEL, low: float | None = None, high: float | None = None,
               method: str = "t_mean") -> Interval:
    """Mean over seeds and its Student-t interval, clipped to [``low``, ``high``] (the quantity's range): clipping
    only removes impossible values, so the coverage is unchanged. One value: no interval; none: no value."""
    v = _clean(values)
    if len(v) == 0:
        return Interval(math.nan, math.nan, math.nan, 0, method)
    mean = float(v.mean())
    if len(v) < 2:
        return Interval(mean, math.nan, math.nan, 1, method)
    half = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    lo, hi = mean - half, mean + half
    if low is not None:
        lo, hi = max(lo, low), max(hi, low)
    if high is not None:
        lo, hi = min(lo, high), min(hi, high)
    return Interval(mean, lo, hi, len(v), method)


def paired(a: dict, b: dict, level: float = plan.LEVEL) -> Interval:
    """The paired difference ``a - b`` over the seeds both have (``{seed: value}``), with its t-interval in
    [-1, 1]."""
    seeds = sorted(set(a) & set(b))
    return t_interval([a[s] - b[s] for s in seeds], level, -1.0, 1.0, "paired_t")


def rate(values: dict | Iterable, level: float = plan.LEVEL) -> Interval:
    """The mean of a per-seed rate or accuracy with its t-interval in [0, 1]."""
    vals = values.values() if isinstance(values, dict) else values
    return t_interval(vals, level, 0.0, 1.0, "t_rate")


def loss(values: dict | Iterable, level: float = plan.LEVEL) -> Interval:
    """The mean of a per-seed loss with its t-interval (at least 0)."""
    vals = values.values() if isinstance(values, dict) else values
    return t_interval(vals, level, 0.0, None, "t_mean")


def bootstrap_ratio(num: dict, den: dict, level: float = plan.LEVEL, resamples: int = plan.BOOTSTRAP,
                    seed: int = 0) -> Interval:
    """mean(num) / mean(den) over the seeds both have, with a seed-bootstrap percentile interval (pairs kept);
    resamples whose denominator is 0 are dropped (no interval when every one is)."""
    seeds = sorted(set(num) & set(den))
    n = len(seeds)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "bootstrap_ratio")
    x = np.array([num[s] for s in seeds], dtype=float)
    y = np.array([den[s] for s in seeds], dtype=float)
    est = float(x.mean() / y.mean()) if y.mean() != 0 else math.nan
    if n < 2:
        return Interval(est, math.nan, math.nan, n, "bootstrap_ratio")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    dx, dy = x[idx].mean(1), y[idx].mean(1)
    ok = dy != 0
    if not ok.any():  # every denominator is 0 (no gain in any seed): no ratio, no interval
        return Interval(est, math.nan, math.nan, n, "bootstrap_ratio")
    ratios = dx[ok] / dy[ok]
    lo, hi = np.quantile(ratios, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(est, float(lo), float(hi), n, "bootstrap_ratio")


def seed_bootstrap_fit(runs: list[dict], x_keys: tuple[str, ...], y_key: str, level: float = plan.LEVEL,
                       resamples: int = plan.BOOTSTRAP, seed: int = 0) -> dict[str, Interval]:
    """Least-squares ``y = a + sum_k b_k x_k`` over ``runs`` (dicts with a ``seed``), and a seed-bootstrap percentile
    interval of each coefficient: all runs of a seed are drawn together."""
    seeds = sorted({r["seed"] for r in runs})
    by_seed = {s: [r for r in runs if r["seed"] == s] for s in seeds}

    def fit(rows: list[dict]) -> np.ndarray | None:
        if len(rows) <= len(x_keys) + 1:
            return None
        design = np.column_stack([np.ones(len(rows))] + [[r[k] for r in rows] for k in x_keys])
        y = np.array([r[y_key] for r in rows], dtype=float)
        if np.linalg.matrix_rank(design) < design.shape[1]:
            return None
        return np.linalg.lstsq(design, y, rcond=None)[0][1:]

    point = fit(runs)
    if point is None:
        return {k: Interval(math.nan, math.nan, math.nan, len(seeds), "seed_bootstrap_coef") for k in x_keys}
    if len(seeds) < 2:
        return {k: Interval(float(b), math.nan, math.nan, len(seeds), "seed_bootstrap_coef")
                for k, b in zip(x_keys, point)}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(seeds), len(seeds))
        b = fit([r for i in pick for r in by_seed[seeds[i]]])
        if b is not None:
            draws.append(b)
    draws = np.array(draws)
    out = {}
    for j, k in enumerate(x_keys):
        lo, hi = np.quantile(draws[:, j], [0.5 - level / 2, 0.5 + level / 2])
        out[k] = Interval(float(point[j]), float(lo), float(hi), len(seeds), "seed_bootstrap_coef")
    return out


# --------------------------------------------------------------------------------------------------- decisions

def above(iv: Interval, threshold: float, min_seeds: int = plan.MIN_SEEDS) -> str:
    """"holds" when the interval lies above ``threshold`` (its lower end more than :data:`plan.PRECISION` above),
    "does not hold" when it lies below, else (or with fewer than ``min_seeds`` seeds, or no interval)
    "inconclusive"."""
    if iv.n < min_seeds or math.isnan(iv.lo) or math.isnan(iv.hi):
        return "inconclusive"
    if iv.lo > threshold + plan.PRECISION:
        return "holds"
    if iv.hi < threshold - plan.PRECISION:
        return "does not hold"
    return "inconclusive"


def below(iv: Interval, threshold: float, min_seeds: int = plan.MIN_SEEDS) -> str:
    """"holds" when the interval lies below ``threshold``, "does not hold" when above, else "inconclusive"."""
    return {"holds": "does not hold", "does not hold": "holds"}.get(above(iv, threshold, min_seeds), "inconclusive")


def excludes_zero(iv: Interval, min_seeds: int = plan.MIN_SEEDS) -> str:
    """"yes" when the interval excludes 0 (an end more than :data:`plan.PRECISION` beyond it), "no" when it holds 0
    inside, "inconclusive" with too few seeds, no interval, or an end within the precision of 0 (it touches it)."""
    if iv.n < min_seeds or math.isnan(iv.lo) or math.isnan(iv.hi):
        return "inconclusive"
    if iv.lo > plan.PRECISION or iv.hi < -plan.PRECISION:
        return "yes"
    if iv.lo < -plan.PRECISION and iv.hi > plan.PRECISION:
        return "no"
    return "inconclusive"


# ----------------------------------------------------------------------------------------------------- verdicts

@dataclass
class Verdict:
    """One verdict of one rule: its outcome, the intervals behind it, the sensitivity to the rule's thresholds, and
    the label (confirmatory or exploratory) from the results it uses."""

    rule: str
    outcome: str
    intervals: dict[str, Interval] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    sensitivity: str = ""
    fragile: bool = False
    label: str = "exploratory"
    label_reason: str = ""
    seeds: tuple = ()

    @property
    def title(self) -> str:
        return plan.rule(self.rule).title

    def tag(self) -> str:
        """``"**holds** (confirmatory)"`` (``fragile`` added where it is)."""
        extra = ", fragile" if self.fragile else ""
        return f"**{self.outcome}** ({self.label}{extra})"


def _grid(threshold: float, points: int = 101) -> np.ndarray:
    return np.linspace((1 - plan.SENSITIVITY) * threshold, (1 + plan.SENSITIVITY) * threshold, points)


def _scan(outcome_at: Callable[[float], str], threshold: float, name: str, outcome: str) -> tuple[str, bool]:
    """The sensitivity line for one threshold and whether the verdict is fragile there."""
    grid = _grid(threshold)
    values = [outcome_at(float(t)) for t in grid]
    centre = int(np.argmin(np.abs(grid - threshold)))
    lo_i = centre
    while lo_i > 0 and values[lo_i - 1] == outcome:
        lo_i -= 1
    hi_i = centre
    while hi_i < len(grid) - 1 and values[hi_i + 1] == outcome:
        hi_i += 1
    lo_t, hi_t = float(grid[lo_i]), float(grid[hi_i])
    fragile = lo_t > (1 - plan.FRAGILE) * threshold + 1e-12 or hi_t < (1 + plan.FRAGILE) * threshold - 1e-12
    if lo_i == 0 and hi_i == len(grid) - 1:
        return (f"{name}: the same from {fmt_value(round(lo_t, 4))} to {fmt_value(round(hi_t, 4))} (±50%)", False)
    parts = [f"{name}: the same from {fmt_value(round(lo_t, 4))} to {fmt_value(round(hi_t, 4))}"]
    if lo_i > 0:
        parts.append(f"reads '{values[lo_i - 1]}' below {fmt_value(round(lo_t, 4))}")
    if hi_i < len(grid) - 1:
        parts.append(f"reads '{values[hi_i + 1]}' above {fmt_value(round(hi_t, 4))}")
    return "; ".join(parts), fragile


def judge(rule_id: str, statistics: Callable[[float], dict[str, Interval]],
          decide: Callable[[dict[str, Interval], dict], tuple[str, dict]], thresholds: dict | None = None,
          entries: Iterable[dict] = (), seeds: Iterable = ()) -> Verdict:
    """Apply rule ``rule_id``: ``statistics(level)`` gives its intervals, ``decide(intervals, thresholds)`` its
    outcome (and details). The sensitivity scan moves each nonzero threshold over +-50% of its value (a zero
    threshold: the interval level over :data:`plan.LEVELS`); the label comes from the ``entries`` (cache entries)
    the verdict uses."""
    rule = plan.rule(rule_id)
    th = dict(rule.thresholds if thresholds is None else thresholds)
    ivs = statistics(plan.LEVEL)
    outcome, details = decide(ivs, th)
    lines, fragile = [], False
    for name, value in th.items():
        if value == 0:
            continue
        line, frag = _scan(lambda t, name=name: decide(ivs, {**th, name: t})[0], value, name, outcome)
        lines.append(line)
        fragile |= frag
    if any(v == 0 for v in th.values()) or not th:
        by_level = {lv: decide(statistics(lv), th)[0] for lv in plan.LEVELS}
        same = [lv for lv, o in by_level.items() if o == outcome]
        if len(same) == len(by_level):
            lines.append(f"interval level: the same at {', '.join(f'{lv:.0%}' for lv in plan.LEVELS)}")
        else:
            lines.append("interval level: " + ", ".join(f"'{o}' at {lv:.0%}" for lv, o in by_level.items()))
            fragile |= by_level.get(0.9) != outcome or by_level.get(0.99) != outcome
    label, reason = label_for(rule_id, entries)
    return Verdict(rule_id, outcome, ivs, details, "; ".join(lines), fragile, label, reason, tuple(seeds))


# ----------------------------------------------------------------------------------------------------- wording

def intervals_text(v: Verdict, names: Iterable[str] | None = None) -> str:
    """``erosion 0.307 [0.177, 0.437]; follow rate 0.9 [0.8, 1.0]`` for the named intervals (all by default)."""
    keys = list(v.intervals) if names is None else [k for k in names if k in v.intervals]
    return "; ".join(f"{k} {v.intervals[k].text()}" for k in keys)


def describe(v: Verdict, names: Iterable[str] | None = None, seeds: bool = True) -> str:
    """One Markdown line for a verdict: outcome and label, the intervals behind it (95%, over seeds), its
    sensitivity, and why it carries its label."""
    n = len(v.seeds)
    scope = f" over {n} seed{'s' if n != 1 else ''}" if seeds and n else ""
    ivs = intervals_text(v, names)
    parts = [f"{v.tag()}" + (f": {ivs} (95% intervals{scope})" if ivs else scope)]
    if v.sensitivity:
        parts.append(f"sensitivity: {v.sensitivity}" + (" — **fragile**" if v.fragile else ""))
    parts.append(f"{v.label}: {v.label_reason}")
    return ". ".join(p[0].upper() + p[1:] if p else p for p in parts) + "."
