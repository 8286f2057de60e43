"""The machinery of the analysis plan (issue 18, issue 25 items 2 and 3): seed-level intervals worked out by hand,
the three-way decisions exactly at, just inside and just outside a threshold (values from the plan's own constants),
the sensitivity scan and the fragile flag, and the exploratory/confirmatory label (from synthetic provenance times and
from the plan's real git history and ledger)."""
from __future__ import annotations

import datetime as dt
import math
import subprocess

import numpy as np
import pytest

from erosion_utils.report import plan, planlog
from erosion_utils.report import verdicts as V

P = plan.PRECISION
T_975_2 = 4.302652729911275  # Student-t 97.5% quantile, 2 degrees of freedom (tables: 4.303)
T_975_4 = 2.7764451051977987  # ... 4 degrees of freedom (tables: 2.776)


def iv(lo: float, hi: float, n: int = plan.MIN_SEEDS, est: float | None = None) -> V.Interval:
    return V.Interval((lo + hi) / 2 if est is None else est, lo, hi, n, "paired_t")


# ------------------------------------------------------------------------------------ intervals, by hand

def test_the_t_quantiles_used_below_are_scipys():
    from scipy import stats

    assert stats.t.ppf(0.975, 2) == pytest.approx(T_975_2, abs=1e-9)
    assert stats.t.ppf(0.975, 4) == pytest.approx(T_975_4, abs=1e-9)


def test_t_interval_of_three_different_seeds_by_hand():
    # 0.1, 0.2, 0.3: mean 0.2, sample sd 0.1, half-width t(0.975, 2) * 0.1 / sqrt(3)
    half = T_975_2 * 0.1 / math.sqrt(3)
    got = V.t_interval([0.1, 0.2, 0.3])
    assert (got.estimate, got.n, got.method) == (pytest.approx(0.2), 3, "t_mean")
    assert got.lo == pytest.approx(0.2 - half) and got.hi == pytest.approx(0.2 + half)
    assert got.lo == pytest.approx(-0.04841, abs=1e-5)  # below 0: a t-interval is not clipped unless asked
    # five seeds 0.50, 0.52, 0.55, 0.61, 0.62: mean 0.56, sd sqrt(0.0104 / 4)
    vals = [0.50, 0.52, 0.55, 0.61, 0.62]
    sd = math.sqrt(sum((v - 0.56) ** 2 for v in vals) / 4)
    five = V.t_interval(vals)
    assert five.estimate == pytest.approx(0.56) and five.n == 5
    assert five.hi - five.estimate == pytest.approx(T_975_4 * sd / math.sqrt(5))


def test_t_interval_level_and_missing_values():
    from scipy import stats

    wide, narrow = V.t_interval([0.1, 0.2, 0.3], level=0.99), V.t_interval([0.1, 0.2, 0.3], level=0.8)
    assert wide.hi - 0.2 == pytest.approx(stats.t.ppf(0.995, 2) * 0.1 / math.sqrt(3))
    assert narrow.hi - 0.2 == pytest.approx(stats.t.ppf(0.9, 2) * 0.1 / math.sqrt(3))
    same = V.t_interval([0.1, None, 0.2, float("nan"), 0.3])  # missing seeds are dropped, not counted
    assert (same.n, same.estimate, same.lo) == (3, pytest.approx(0.2), pytest.approx(V.t_interval([.1, .2, .3]).lo))
    one = V.t_interval([0.4])
    assert one.n == 1 and one.estimate == 0.4 and math.isnan(one.lo) and math.isnan(one.hi) and one.known
    assert "1 seed: no interval" in one.text()
    none = V.t_interval([])
    assert none.n == 0 and not none.known and none.text() == "n/a"


def test_rates_stay_in_their_range_and_losses_above_zero():
    near_one = V.rate({3: 0.97, 4: 1.0, 5: 0.99})
    near_zero = V.rate([0.0, 0.03, 0.01])
    assert near_one.hi == 1.0 and 0 <= near_one.lo < near_one.estimate
    assert near_zero.lo == 0.0 and near_zero.hi <= 1
    assert V.t_interval([0.97, 1.0, 0.99]).hi > 1 and V.t_interval([0.0, 0.03, 0.01]).lo < 0  # what clipping removes
    assert near_one.method == "t_rate" and near_one.estimate == pytest.approx(0.98667, abs=1e-5)
    lo_loss = V.loss([0.01, 0.02, 0.3])
    assert lo_loss.lo == 0.0 and lo_loss.hi == pytest.approx(V.t_interval([0.01, 0.02, 0.3]).hi)
    both_below = V.t_interval([-3.0, -2.0, -2.5], low=0.0)  # an interval entirely outside collapses onto the edge
    assert both_below.lo == both_below.hi == 0.0


def test_paired_difference_uses_the_seeds_both_have_in_order():
    a = {0: 0.60, 1: 0.62, 2: 0.58, 9: 0.99}  # seed 9 has no partner: left out
    b = {2: 0.38, 1: 0.32, 0: 0.40}
    got = V.paired(a, b)
    # differences 0.20, 0.30, 0.20: mean 0.7 / 3, sd sqrt(((1/30)^2 * 2 + (2/30)^2) / 2)
    mean = 0.7 / 3
    sd = math.sqrt((2 * (0.2 - mean) ** 2 + (0.3 - mean) ** 2) / 2)
    assert got.n == 3 and got.estimate == pytest.approx(mean)
    assert got.hi - got.estimate == pytest.approx(T_975_2 * sd / math.sqrt(3))
    assert V.paired(b, a).estimate == pytest.approx(-mean)  # the direction is a - b
    assert V.paired({0: 1.0, 1: 1.0, 2: 1.0}, {0: -1.0, 1: -0.2, 2: -0.6}).hi <= 1.0  # clipped to [-1, 1]


def test_bootstrap_ratio_keeps_pairs_and_is_reproducible():
    den = {0: 0.02, 1: 0.05, 2: 0.08, 3: 0.04}
    num = {s: 0.6 * d for s, d in den.items()}
    got = V.bootstrap_ratio(num, den)
    # every resample of pairs has ratio 0.6 exactly: pairs kept together
    assert got.estimate == pytest.approx(0.6) and got.lo == pytest.approx(0.6) and got.hi == pytest.approx(0.6)
    assert got.n == 4 and got.method == "bootstrap_ratio"
    varied = {0: 0.01, 1: 0.04, 2: 0.02, 3: 0.03}
    first, again = V.bootstrap_ratio(varied, den), V.bootstrap_ratio(varied, den)
    assert first == again  # seeded
    assert first.estimate == pytest.approx(0.1 / 0.19)  # mean(num) / mean(den) = (0.10 / 4) / (0.19 / 4)
    assert first.lo < first.estimate < first.hi
    assert math.isnan(V.bootstrap_ratio({0: 0.1}, {0: 0.0}).estimate)
    assert V.bootstrap_ratio({}, {}).n == 0 and math.isnan(V.bootstrap_ratio({0: 1.0}, {0: 2.0}).lo)
    flat = V.bootstrap_ratio({0: 0.1, 1: 0.0, 2: -0.1}, {0: 0.0, 1: 0.0, 2: 0.0})  # no gain in any seed
    assert math.isnan(flat.estimate) and math.isnan(flat.lo) and math.isnan(flat.hi) and flat.n == 3
    some = V.bootstrap_ratio({0: 0.1, 1: 0.05}, {0: 0.0, 1: 0.1})  # resamples of seed 0 alone are dropped
    assert some.estimate == pytest.approx(1.5) and some.lo == pytest.approx(0.5) and some.hi == pytest.approx(1.5)


def test_seed_bootstrap_fit_recovers_known_coefficients():
    rng = np.random.default_rng(7)
    runs = []
    for seed in range(5):
        offset = rng.normal(0, 0.05)  # a seed effect: every run of the seed shares it
        for x1 in (-3.0, -1.0, 0.0, 2.0):
            for x2 in (1.0, 2.0, 4.0):
                runs.append({"seed": seed, "x1": x1, "x2": x2, "noise": rng.normal(0, 1),
                             "y": 0.5 + 0.2 * x1 - 0.1 * x2 + offset + rng.normal(0, 0.005)})
    fit = V.seed_bootstrap_fit(runs, ("x1", "x2"), "y", resamples=400)
    assert fit["x1"].estimate == pytest.approx(0.2, abs=0.005) and fit["x2"].estimate == pytest.approx(-0.1, abs=0.005)
    assert fit["x1"].lo <= 0.2 <= fit["x1"].hi and fit["x2"].lo <= -0.1 <= fit["x2"].hi
    assert V.excludes_zero(fit["x1"]) == "yes" and V.excludes_zero(fit["x2"]) == "yes"
    assert fit["x1"].n == 5 and fit["x1"].method == "seed_bootstrap_coef"
    exact = V.seed_bootstrap_fit([{**r, "y": 1 + 2 * r["x1"] + 3 * r["x2"]} for r in runs], ("x1", "x2"), "y",
                                 resamples=200)
    assert (exact["x1"].lo, exact["x1"].hi) == (pytest.approx(2.0), pytest.approx(2.0))
    assert (exact["x2"].lo, exact["x2"].hi) == (pytest.approx(3.0), pytest.approx(3.0))
    unrelated = V.seed_bootstrap_fit(runs, ("x1", "noise"), "y", resamples=400)
    assert V.excludes_zero(unrelated["noise"]) == "no"  # a regressor with no effect: its interval holds 0
    assert all(math.isnan(i.estimate) for i in V.seed_bootstrap_fit(runs[:3], ("x1", "x2"), "y").values())
    collinear = [{**r, "x2": 2 * r["x1"]} for r in runs]
    assert all(math.isnan(i.estimate) for i in V.seed_bootstrap_fit(collinear, ("x1", "x2"), "y").values())


# ---------------------------------------------------------------------------------- decisions at the edges

EDGE_CASES = [  # (name, interval as offsets from the threshold, seeds, outcome of above())
    ("lower end beyond the precision above", (2 * P, 0.3), plan.MIN_SEEDS, "holds"),
    ("lower end exactly at threshold + precision", (P, 0.3), plan.MIN_SEEDS, "inconclusive"),
    ("lower end exactly at the threshold", (0.0, 0.3), plan.MIN_SEEDS, "inconclusive"),
    ("lower end within the precision below", (-P / 2, 0.3), plan.MIN_SEEDS, "inconclusive"),
    ("upper end beyond the precision below", (-0.3, -2 * P), plan.MIN_SEEDS, "does not hold"),
    ("upper end exactly at threshold - precision", (-0.3, -P), plan.MIN_SEEDS, "inconclusive"),
    ("upper end exactly at the threshold", (-0.3, 0.0), plan.MIN_SEEDS, "inconclusive"),
    ("straddling", (-0.05, 0.05), plan.MIN_SEEDS, "inconclusive"),
    ("far above with one seed too few", (0.3, 0.4), plan.MIN_SEEDS - 1, "inconclusive"),
    ("far below with one seed too few", (-0.4, -0.3), plan.MIN_SEEDS - 1, "inconclusive"),
    ("far above with many seeds", (0.3, 0.4), 8, "holds"),
]


@pytest.mark.parametrize("rule_id, name", [(r.id, k) for r in plan.RULES for k in r.thresholds
                                           if r.thresholds[k] != 0])
def test_above_and_below_at_every_threshold_of_the_plan(rule_id, name):
    t = plan.rule(rule_id).thresholds[name]
    flip = {"holds": "does not hold", "does not hold": "holds", "inconclusive": "inconclusive"}
    for case, (lo, hi), n, expected in EDGE_CASES:
        interval = iv(t + lo, t + hi, n)
        assert V.above(interval, t) == expected, (rule_id, name, t, case)
        assert V.below(interval, t) == flip[expected], (rule_id, name, t, case)
    assert V.above(V.Interval(t + 1, math.nan, math.nan, 3, "t_mean"), t) == "inconclusive"


def test_the_plan_constants_are_the_ones_its_rules_state():
    assert plan.MIN_SEEDS == 3 and plan.LEVEL == 0.95 and plan.PRECISION == 0.0005
    assert plan.SENSITIVITY == 0.5 and plan.FRAGILE == 0.1 and plan.BOOTSTRAP == 10_000
    assert plan.rule("mechanism.cell").thresholds == {"erosion": 0.10}
    assert plan.rule("claim2.reliance").thresholds == {"follows": 0.90, "partly": 0.50}
    assert plan.rule("transfer.option").thresholds == {"keeps": 0.5, "ignores": 0.2, "follows": 0.5}
    assert plan.rule("same_data.recovery").thresholds == {"target": 0.9, "fast": 0.5}
    assert "at least 3" not in plan.rule("mechanism.cell").words() and "fewer than 3 seeds" in \
        plan.rule("mechanism.cell").words()
    assert "0.1" in plan.rule("mechanism.cell").words() and "{" not in plan.rule("transfer.option").words()
    with pytest.raises(KeyError, match="no rule 'nope'"):
        plan.rule("nope")
    assert len({r.id for r in plan.RULES}) == len(plan.RULES)
    for r in plan.RULES:
        assert r.interval in plan.INTERVALS, r.id
        assert "{" not in r.words() and "{" not in r.statistic_words(), r.id


def test_excludes_zero_with_the_plans_precision():
    """Zero is the threshold of the regression's rule: an interval end within the precision of it touches it, so the
    outcome is inconclusive (the plan: no verdict hinges on a float comparison closer than the precision)."""
    assert V.excludes_zero(iv(2 * P, 0.2)) == "yes" and V.excludes_zero(iv(-0.2, -2 * P)) == "yes"
    assert V.excludes_zero(iv(-2 * P, 0.2)) == "no" and V.excludes_zero(iv(-0.2, 2 * P)) == "no"
    assert V.excludes_zero(iv(-0.1, 0.1)) == "no"
    for lo, hi in ((0.0, 0.2), (P, 0.2), (P / 2, 0.2), (-P, 0.2), (-0.2, 0.0), (-0.2, -P), (-0.2, P / 2),
                   (-P / 2, P / 2)):
        assert V.excludes_zero(iv(lo, hi)) == "inconclusive", (lo, hi)
    assert V.excludes_zero(iv(0.1, 0.2, n=plan.MIN_SEEDS - 1)) == "inconclusive"
    assert V.excludes_zero(V.Interval(0.1, math.nan, math.nan, 5, "x")) == "inconclusive"


# ------------------------------------------------------------------------------- sensitivity, fragile, label

def _judge_erosion(lo: float, hi: float, n: int = 3) -> V.Verdict:
    """A verdict of the cell rule on one fixed interval (the rule's own threshold)."""
    def decide(ivs, th):
        o = V.above(ivs["erosion"], th["erosion"])
        return {"holds": "erodes", "does not hold": "does not erode"}.get(o, "inconclusive"), {}

    return V.judge("mechanism.cell", lambda lv: {"erosion": iv(lo, hi, n)}, decide)


def test_a_verdict_that_flips_at_five_percent_above_its_threshold_is_fragile():
    t = plan.rule("mechanism.cell").thresholds["erosion"]
    close = _judge_erosion(1.04 * t, 0.5)  # holds at t, inconclusive from 1.035 t on
    assert close.outcome == "erodes" and close.fragile
    assert "reads 'inconclusive' above" in close.sensitivity and "reads" in close.sensitivity.split(";", 1)[1]
    far = _judge_erosion(1.3 * t, 0.5)  # flips at +29.5%: shown, not fragile
    assert far.outcome == "erodes" and not far.fragile and "reads 'inconclusive' above 0.129" in far.sensitivity
    never = _judge_erosion(2 * t, 0.5)  # the same over +-50%
    assert not never.fragile and never.sensitivity == "erosion: the same from 0.05 to 0.15 (±50%)"
    below = _judge_erosion(0.0, 0.96 * t)  # does not erode at t, inconclusive from 0.965 t down
    assert below.outcome == "does not erode" and below.fragile and "reads 'inconclusive' below" in below.sensitivity
    lower = _judge_erosion(0.0, 0.85 * t)
    assert lower.outcome == "does not erode" and not lower.fragile
    assert "the same from 0.086 to 0.15" in lower.sensitivity


def test_a_zero_threshold_verdict_is_scanned_over_interval_levels():
    widths = {0.8: 0.05, 0.9: 0.09, 0.95: 0.11, 0.99: 0.2}  # the interval widens with the level

    def stats(level):
        return {"coef": iv(0.1 - widths[level], 0.1 + widths[level])}

    def decide(ivs, th):
        return {"yes": "noise scale", "no": "neither"}.get(V.excludes_zero(ivs["coef"]), "inconclusive"), {}

    v = V.judge("mechanism.noise_steps", stats, decide)
    assert v.outcome == "neither" and v.sensitivity == "interval level: 'noise scale' at 80%, 'noise scale' at 90%, " \
                                                       "'neither' at 95%, 'neither' at 99%"
    assert v.fragile  # it changes at 90%
    steady = V.judge("mechanism.noise_steps", lambda lv: {"coef": iv(0.2, 0.3)}, decide)
    assert steady.outcome == "noise scale" and not steady.fragile
    assert steady.sensitivity == "interval level: the same at 80%, 90%, 95%, 99%"


def test_judge_uses_thresholds_given_instead_of_the_plans():
    v = V.judge("mechanism.cell", lambda lv: {"erosion": iv(0.15, 0.3)},
                lambda ivs, th: (V.above(ivs["erosion"], th["erosion"]), {}), thresholds={"erosion": 0.2})
    assert v.outcome == "inconclusive"
    assert V.judge("mechanism.cell", lambda lv: {"erosion": iv(0.15, 0.3)},
                   lambda ivs, th: (V.above(ivs["erosion"], th["erosion"]), {})).outcome == "holds"


def test_describe_gives_outcome_label_intervals_sensitivity_and_reason():
    v = _judge_erosion(0.104, 0.3)
    v.seeds = (3, 4, 5)
    text = V.describe(v)
    assert text.startswith(f"**erodes** ({v.label}, fragile): erosion 0.202 [0.104, 0.300] (95% intervals over 3 "
                           f"seeds)")
    assert "Sensitivity: erosion: the same from" in text and "— **fragile**" in text and text.endswith(".")
    assert V.intervals_text(v, ["nothing"]) == "" and V.intervals_text(v) == "erosion 0.202 [0.104, 0.300]"


ISO = "%Y-%m-%dT%H:%M:%S+00:00"


def _at(when: dt.datetime) -> dict:
    return {"provenance": {"utc_time": when.strftime(ISO)}}


def test_a_result_computed_before_its_rule_is_never_confirmatory(monkeypatch):
    since = dt.datetime(2026, 12, 1, 14, 46, 43, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(planlog, "history", lambda: {"mechanism.cell": {"fingerprint": "f", "commit": "c",
                                                                        "since": since.isoformat()}})
    second = dt.timedelta(seconds=1)
    after = [_at(since + second), _at(since + 3600 * second)]
    assert planlog.label_for("mechanism.cell", after)[0] == "confirmatory"
    label, why = planlog.label_for("mechanism.cell", after + [_at(since - second)])
    assert label == "exploratory" and why.startswith("1 of its 3 results were computed before")
    assert "2026-12-01 14:46 UTC" in why
    assert planlog.label_for("mechanism.cell", after + [_at(since)])[0] == "exploratory"  # at the commit: not after
    assert planlog.label_for("mechanism.cell", [None, *after])[0] == "confirmatory"  # a missing entry adds nothing
    assert planlog.label_for("mechanism.cell", []) == ("exploratory", "it uses no results")
    assert planlog.label_for("mechanism.spike", after)[0] == "exploratory"  # a rule with no committed form
    # the label reaches the verdict: judge passes the entries on
    verdict = V.judge("mechanism.cell", lambda lv: {"erosion": iv(0.3, 0.4)},
                      lambda ivs, th: ("erodes", {}), entries=after + [_at(since - second)])
    assert verdict.label == "exploratory" and "1 of its 3" in verdict.label_reason


def test_a_rule_changed_and_not_committed_has_no_date(monkeypatch):
    changed = plan.Rule("mechanism.cell", "mechanism", "t", "s", "paired_t", {"erosion": 0.12})
    fp = planlog.current_fingerprints()["mechanism.cell"]
    monkeypatch.setattr(plan, "RULES", tuple(changed if r.id == "mechanism.cell" else r for r in plan.RULES))
    assert planlog.current_fingerprints()["mechanism.cell"] != fp  # a moved threshold is a new form
    constants = planlog._constants(plan)
    assert planlog.fingerprint(plan.rule("mechanism.spike"), {**constants, "PRECISION": 0.001}) != \
        planlog.fingerprint(plan.rule("mechanism.spike"), constants)  # so is a changed constant


def _plan_committed_as_is() -> bool:
    rel = planlog.PLAN_FILE.relative_to(planlog.REPO).as_posix()
    return subprocess.run(["git", "diff", "--quiet", "HEAD", "--", rel], cwd=planlog.REPO).returncode == 0


@pytest.mark.skipif(not planlog.git_history_available(), reason="no full git history here (a shallow clone)")
def test_the_ledger_matches_git_log():
    if not _plan_committed_as_is():
        pytest.skip("the plan has uncommitted changes: its ledger records committed forms only")
    from_git = planlog.history_from_git()
    assert from_git == planlog.ledger(), "plan_ledger.json is out of date: run planlog.write_ledger() and commit it"
    assert set(from_git) == {r.id for r in plan.RULES}
    dates = {rid: h["since"] for rid, h in from_git.items()}
    for rid, h in from_git.items():
        shown = subprocess.run(["git", "log", "-1", "--format=%cI", h["commit"]], cwd=planlog.REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        assert shown == dates[rid], rid


def test_without_git_the_ledger_dates_the_rules(monkeypatch):
    ledger = planlog.ledger()
    assert set(ledger) == {r.id for r in plan.RULES}
    monkeypatch.setattr(planlog, "git_history_available", lambda: False)
    planlog.history.cache_clear()
    try:
        table = planlog.history()
        current = planlog.current_fingerprints()
        for rid, entry in table.items():
            if ledger[rid]["fingerprint"] == current[rid]:
                assert entry == ledger[rid]
            else:  # a rule changed since the ledger was written: no date, so exploratory
                assert entry["since"] is None
    finally:
        planlog.history.cache_clear()


# ------------------------------------------------------------- the intervals' edges (from the mutation run)

T_975_1 = 12.706204736174698  # Student-t 97.5% quantile, 1 degree of freedom (tables: 12.71)


def test_two_seeds_give_an_interval_and_every_method_is_named():
    two = V.t_interval([0.1, 0.3])
    assert two.n == 2 and two.hi - 0.2 == pytest.approx(T_975_1 * math.sqrt(0.02) / math.sqrt(2))
    assert V.paired({0: 0.5, 1: 0.4}, {0: 0.1, 1: 0.2}).method == "paired_t"
    low = V.paired({0: 0.0, 1: 0.0, 2: 0.0}, {0: 1.0, 1: 0.4, 2: 0.9})  # differences -1, -0.4, -0.9
    assert low.lo == -1.0 and low.estimate == pytest.approx(-2.3 / 3)
    assert V.bootstrap_ratio({}, {}).method == V.bootstrap_ratio({0: 1.0}, {0: 2.0}).method == "bootstrap_ratio"
    one = V.bootstrap_ratio({0: 1.0}, {0: 2.0})
    assert one.n == 1 and one.estimate == 0.5
    unit = V.bootstrap_ratio({0: 0.2, 1: 0.4, 2: 0.3}, {0: 0.5, 1: 1.5, 2: 1.0})  # the denominators' mean is 1
    assert unit.estimate == pytest.approx(0.3)
    assert V.Interval(0.3, math.nan, 0.5, 2, "x").text() == "0.300 (2 seeds: no interval)"
    assert V.Interval(0.3, 0.1, math.nan, 2, "x").text() == "0.300 (2 seeds: no interval)"


def test_bootstrap_ratio_is_the_percentile_interval_of_seeded_pair_resamples():
    num = {0: 0.01, 1: 0.05, 2: 0.02, 3: 0.06, 4: 0.03}
    den = {0: 0.04, 1: 0.05, 2: 0.06, 3: 0.07, 4: 0.03}
    got = V.bootstrap_ratio(num, den, resamples=2000, seed=3)
    x, y = np.array(list(num.values())), np.array(list(den.values()))
    idx = np.random.default_rng(3).integers(0, 5, size=(2000, 5))
    ratios = x[idx].mean(1) / y[idx].mean(1)
    assert (got.lo, got.hi) == (pytest.approx(np.quantile(ratios, 0.025)), pytest.approx(np.quantile(ratios, 0.975)))
    both = V.bootstrap_ratio({0: 0.0, 1: 1.0}, {0: 1.0, 1: 1.0})  # resamples: 0, 0.5 or 1
    assert (both.lo, both.hi) == (0.0, 1.0)
    two = V.bootstrap_ratio({0: 0.1, 1: 0.3}, {0: 0.2, 1: 0.4})
    assert two.n == 2 and not math.isnan(two.lo)


def test_seed_bootstrap_fit_is_the_percentile_interval_of_whole_seeds():
    rng = np.random.default_rng(5)
    runs = [{"seed": s, "x": x, "y": (0.5 + 0.1 * s) * x + rng.normal(0, 0.01)} for s in range(3) for x in (0, 1, 2)]
    got = V.seed_bootstrap_fit(runs, ("x",), "y", resamples=300, seed=2)["x"]
    slopes = {s: np.polyfit([r["x"] for r in runs if r["seed"] == s], [r["y"] for r in runs if r["seed"] == s], 1)[0]
              for s in range(3)}
    draws, pick_rng = [], np.random.default_rng(2)
    for _ in range(300):
        pick = pick_rng.integers(0, 3, 3)
        rows = [r for i in pick for r in runs if r["seed"] == i]
        draws.append(np.polyfit([r["x"] for r in rows], [r["y"] for r in rows], 1)[0])
    assert got.lo == pytest.approx(np.quantile(draws, 0.025)) and got.hi == pytest.approx(np.quantile(draws, 0.975))
    assert min(slopes.values()) - 1e-9 <= got.lo < got.hi <= max(slopes.values()) + 1e-9  # whole seeds resampled
    two = V.seed_bootstrap_fit([r for r in runs if r["seed"] < 2], ("x",), "y", resamples=100)["x"]
    assert two.n == 2 and not math.isnan(two.lo)
    three_rows = V.seed_bootstrap_fit(runs[:2] + runs[3:4], ("x",), "y")["x"]  # 3 rows, 2 coefficients: fits
    assert not math.isnan(three_rows.estimate)
    just = V.seed_bootstrap_fit(runs[:2], ("x",), "y")["x"]  # 2 rows for 2 coefficients: no residual, no fit
    assert math.isnan(just.estimate) and just.method == "seed_bootstrap_coef"
    one_seed = V.seed_bootstrap_fit(runs[:3], ("x",), "y")["x"]
    assert one_seed.n == 1 and one_seed.method == "seed_bootstrap_coef" and math.isnan(one_seed.lo)


def _flip_at(grid_index: int, below: bool):
    """A decision that reads 'a' from the sensitivity grid point ``grid_index`` on (or, ``below``, up to it)."""
    t = plan.rule("mechanism.cell").thresholds["erosion"]
    cut = float(np.linspace((1 - plan.SENSITIVITY) * t, (1 + plan.SENSITIVITY) * t, 101)[grid_index])

    def decide(ivs, th):
        inside = th["erosion"] <= cut if below else th["erosion"] >= cut
        return ("a" if inside else "b"), {}

    return V.judge("mechanism.cell", lambda lv: {}, decide)


def test_fragile_exactly_at_ten_percent_and_the_sensitivity_words():
    assert not _flip_at(40, below=False).fragile  # the same from 0.9 t up: it changes outside +-10%
    assert _flip_at(41, below=False).fragile
    assert not _flip_at(60, below=True).fragile  # the same up to 1.1 t
    assert _flip_at(59, below=True).fragile
    up = _flip_at(40, below=False)
    assert up.sensitivity == "erosion: the same from 0.09 to 0.15; reads 'b' below 0.09"
    down = _flip_at(99, below=True)
    assert down.sensitivity == "erosion: the same from 0.05 to 0.149; reads 'b' above 0.149"


def test_level_scan_fragile_only_at_90_and_99_percent():
    def at(outcomes: dict):
        return V.judge("mechanism.noise_steps", lambda lv: {"lv": iv(lv, lv)},
                       lambda ivs, th: (outcomes[ivs["lv"].lo], {}))

    assert not at({0.8: "x", 0.9: "y", 0.95: "y", 0.99: "y"}).fragile  # changes only at 80%
    assert at({0.8: "y", 0.9: "y", 0.95: "y", 0.99: "x"}).fragile
    assert at({0.8: "y", 0.9: "x", 0.95: "y", 0.99: "y"}).fragile
    mixed = V.judge("claim4.features", lambda lv: {"probe": iv(0.2, 0.3)},  # a zero and a nonzero threshold
                    lambda ivs, th: (V.above(ivs["probe"], th["probe"]), {}))
    assert mixed.sensitivity == ("probe: the same from 0.025 to 0.075 (±50%); "
                                 "interval level: the same at 80%, 90%, 95%, 99%")


def test_tag_describe_and_intervals_text_word_for_word():
    v = V.Verdict("mechanism.cell", "erodes", {"erosion": V.Interval(0.2, 0.15, 0.25, 3, "paired_t"),
                                              "follow rate": V.Interval(0.9, 0.8, 1.0, 3, "t_rate")},
                  sensitivity="erosion: the same from 0.05 to 0.15 (±50%)", label="confirmatory",
                  label_reason="all 6 of its results were computed after its rule took its current form", seeds=(3, 4, 5))
    assert v.tag() == "**erodes** (confirmatory)" and v.title == "A setting erodes"
    assert V.intervals_text(v) == "erosion 0.200 [0.150, 0.250]; follow rate 0.900 [0.800, 1.000]"
    assert V.describe(v) == ("**erodes** (confirmatory): erosion 0.200 [0.150, 0.250]; follow rate 0.900 [0.800, "
                             "1.000] (95% intervals over 3 seeds). Sensitivity: erosion: the same from 0.05 to 0.15 "
                             "(±50%). Confirmatory: all 6 of its results were computed after its rule took its "
                             "current form.")
    assert V.describe(v, ["erosion"], seeds=False) == (
        "**erodes** (confirmatory): erosion 0.200 [0.150, 0.250] (95% intervals). Sensitivity: erosion: the same "
        "from 0.05 to 0.15 (±50%). Confirmatory: all 6 of its results were computed after its rule took its current "
        "form.")
    bare = V.Verdict("mechanism.cell", "inconclusive", fragile=True, label_reason="it uses no results")
    assert bare.tag() == "**inconclusive** (exploratory, fragile)"
    assert V.describe(bare) == "**inconclusive** (exploratory, fragile). Exploratory: it uses no results."
    bare.sensitivity = "erosion: x"
    assert V.describe(bare, [], seeds=True) == ("**inconclusive** (exploratory, fragile). Sensitivity: erosion: x — "
                                                "**fragile**. Exploratory: it uses no results.")
    one = V.Verdict("mechanism.cell", "erodes", seeds=(3,), label_reason="r")
    assert V.describe(one).startswith("**erodes** (exploratory) over 1 seed.")


def test_each_breadth_rate_is_labelled_by_its_own_results(monkeypatch):
    """Claim 3's label per rate reads only that rate's settings: an early result at one rate does not make
    another rate's verdict exploratory."""
    import pandas as pd

    from erosion_utils.report import claims

    since = dt.datetime(2026, 12, 1, 14, 46, 43, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(planlog, "history", lambda: {r: {"fingerprint": "f", "commit": "c", "since": since.isoformat()}
                                                     for r in ("claim3.breadth", "claim1.erosion")})
    second = dt.timedelta(seconds=1)
    early, late = _at(since - second), _at(since + 60 * second)
    frame = pd.DataFrame([{"finetune_lr": lr, "label": f"setting {k}", "seed": s, "missing": False,
                           "clean_control": 0.8, "clean_pattern": 0.3, "erosion": 0.5}
                          for lr in (0.001, 0.1) for k in (0, 1) for s in (0, 1, 2)])
    rows = [{"config": {"finetune_lr": lr}, "pattern": when, "control": when}
            for lr, when in ((0.001, early), (0.1, late))]
    got = claims.claim_breadth(frame, rows)
    assert got["per_lr"][0.001]["label"] == "exploratory"
    assert got["per_lr"][0.1]["label"] == "confirmatory"
    assert got["label"] == "exploratory"  # the claim as a whole uses the early result
