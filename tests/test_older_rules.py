"""The rules that predate the analysis plan and still shape pages (the claims module's helpers, the mechanism
chapter's exploratory design, the mitigation chapter's recovery figure): their constants as the pages state them, and
their comparisons at the edges (issue 25: thresholds moved, ``>`` made ``>=``, a mean over seeds taken from one
seed)."""
from __future__ import annotations

import pandas as pd
import pytest

from erosion_utils.report import claims
from erosion_utils.report import mechanism as mr
from erosion_utils.report import mitigation as mit


def test_the_older_constants_are_the_ones_the_pages_state():
    assert (claims.EROSION_THRESHOLD, claims.FOLLOW_THRESHOLD, claims.FOLLOW_PARTIAL, claims.PROBE_THRESHOLD,
            claims.PICKUP_THRESHOLD) == (0.10, 0.90, 0.50, 0.05, 0.05)
    assert (mr.SPIKE_LOSS, mr.MATCH_MARGIN, mr.FOLLOW_RISE, mr.SPIKE_SHARE) == (1.0, 0.10, 0.10, 0.9)
    assert (mit.KEEP_MARGIN, mit.REDUCE_MARGIN, mit.RECOVERY_TARGET, mit.FAST_RATIO, mit.SLOW_RATIO,
            mit.AHEAD_MARGIN) == (0.03, 0.05, 0.9, 0.5, 0.8, 0.05)
    for rule in claims.RULES.values():  # the claims page states each rule with its numbers
        assert "{" not in rule
    assert f"{claims.EROSION_THRESHOLD:g}" in claims.RULES[1] and f"{claims.FOLLOW_PARTIAL:g}" in claims.RULES[2]


def test_claim_1_needs_the_lower_end_strictly_above_the_threshold():
    t = claims.EROSION_THRESHOLD
    assert claims.erodes(0.5, t + 1e-9) and not claims.erodes(0.5, t)
    assert claims.erodes(t + 1e-9, float("nan")) and not claims.erodes(t, float("nan"))  # one seed: the mean
    assert claims.erodes(t + 1e-9, None)
    assert claims.picks_up_pattern(0.1, 0.1 + claims.PICKUP_THRESHOLD + 1e-9, 0.0, 0.0)
    assert not claims.picks_up_pattern(0.0, claims.PICKUP_THRESHOLD, 0.0, claims.PICKUP_THRESHOLD)
    assert claims.picks_up_pattern(0.1, 0.1, 0.0, claims.PICKUP_THRESHOLD + 1e-9)


def test_the_old_recovery_speed_at_its_ratios():
    assert mit.recovery_speed(50, 100, 0.5, 0.4) == "fast"  # at most half of scratch's steps
    assert mit.recovery_speed(51, 100, 0.5, 0.4) == "between"
    assert mit.recovery_speed(79, 100, 0.5, 0.4) == "between"
    assert mit.recovery_speed(80, 100, 0.5, 0.4) == "slow"  # at least 0.8 of scratch's
    assert mit.recovery_speed(10, None, 0.5, 0.4) == "fast" and mit.recovery_speed(None, 100, 0.5, 0.4) == "slow"
    assert mit.recovery_speed(None, None, 0.5, 0.5 - mit.AHEAD_MARGIN + 1e-9) == "slow"
    assert mit.recovery_speed(None, None, 0.5, 0.5 - mit.AHEAD_MARGIN - 1e-3) == "between"


def test_the_recovery_figures_mean_is_over_every_seed():
    def row(seed, pattern, control, scratch):
        arms = {arm: {"records": [{"step": s, "clean_acc": v, "follow_rate": 0.1} for s, v in zip((0, 10, 20), vals)]}
                for arm, vals in (("pattern", pattern), ("control", control), ("scratch", scratch))}
        return {"seed": seed, "recovery": {"result": {"runs": [{"lr": 0.1, "arms": arms}]}}}

    rows = [row(0, (0.1, 0.30, 0.60), (0.5, 0.5, 0.50), (0.1, 0.2, 0.30)),
            row(1, (0.1, 0.50, 0.70), (0.5, 0.5, 0.70), (0.1, 0.2, 0.50)),
            row(2, (0.1, 0.20, 0.50), (0.5, 0.5, 0.60), (0.1, 0.2, 0.40)),
            {"seed": 3, "missing": True}]
    steps = mit.recovery_steps(mit.recovery_curves(rows)).set_index("seed")
    mean = steps.loc["mean"]
    assert mean.end_pattern == pytest.approx(0.6) and mean.end_control == pytest.approx(0.6)
    assert mean.target == pytest.approx(mit.RECOVERY_TARGET * 0.6) and mean.end_scratch == pytest.approx(0.4)
    assert mean.steps_pattern == 20 and pd.isna(mean.steps_scratch)  # the mean curve: 0.333 at 10, 0.6 at 20
    assert steps.loc[0].steps_pattern == 20 and steps.loc[0].target == pytest.approx(0.45)
    assert pd.isna(steps.loc[2].steps_pattern)  # 0.5 < 0.9 x 0.6
    assert sorted(k for k in steps.index if k != "mean") == [0, 1, 2]


def test_the_old_drift_rule_calls_a_rise_of_exactly_follow_rise_no_drift():
    """'creeping' needs the long runs' follow rate to exceed the short runs' by more than FOLLOW_RISE."""
    def frame(rise):
        rows = [{"groups": ("duration",), "missing": False, "finetune_lr": 0.01, "epochs": ep, "seed": s,
                 "spike_pattern": False, "erosion": 0.0, "follow_pattern": 0.0 + (rise if ep == 6 else 0.0)}
                for ep in (3, 6) for s in (0, 1)]  # two seeds: the mean of 0.1 twice is 0.1 exactly
        return pd.DataFrame(rows)

    state = lambda rise: mr.drift_verdict(frame(rise))["per_lr"][0.01]["state"]  # noqa: E731
    assert mr.FOLLOW_RISE < mr.FOLLOW_PARTIAL
    assert state(mr.FOLLOW_RISE) == "no drift"
    assert state(mr.FOLLOW_RISE + 0.01) == "creeping"
    assert state(mr.FOLLOW_RISE - 0.01) == "no drift"
