"""Every rule of the analysis plan as the chapters apply it (issue 25 items 2 and 3, issue 18's acceptance), on
synthetic results in the shape the experiments return (rows of ``mechanism_experiment``, ``transfer_experiment``,
``transfer_interpolation``, ``transfer_recovery_experiment``, ``mitigation_experiment``, ``interpolation_experiment``
and ``recovery_experiment``): each threshold exactly at, just above and just below (beyond the plan's precision), a
straddling interval and two seeds (inconclusive), a verdict that flips within +5% of its threshold (fragile), every
outcome branch of every rule function, seeds that differ (means and intervals worked out by hand), and the label: one
result computed before the rule took its form makes the verdict exploratory, whichever result it is.

The values come from the plan's own constants (``plan.rule(id).thresholds``, ``plan.PRECISION``), so these tests
follow a deliberate change of a threshold; ``test_the_published_thresholds`` pins the thresholds the book publishes.
The old rules still shown on the pages (claim 2, the exploratory mechanism design) are tested at their edges at the
end.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pandas as pd
import pytest

from erosion_utils.report import mechanism_verdicts as mv
from erosion_utils.report import mitigation_verdicts as gv
from erosion_utils.report import plan, planlog
from erosion_utils.report import verdicts as V

P = plan.PRECISION
T_975_2 = 4.302652729911275  # Student-t 97.5% quantile, 2 degrees of freedom
LATE, EARLY = "2030-01-01T00:00:00+00:00", "2020-01-01T00:00:00+00:00"
SINCE = "2026-12-01T14:46:43+00:00"
SEEDS = (3, 4, 5)


def th(rule_id: str, name: str) -> float:
    return plan.rule(rule_id).thresholds[name]


@pytest.fixture(autouse=True)
def committed_plan(monkeypatch):
    """Every rule dated at the plan's commit, whatever the working tree holds (a rule being edited has no date)."""
    table = {r.id: {"fingerprint": "x", "commit": "c5cd03f", "since": SINCE} for r in plan.RULES}
    monkeypatch.setattr(planlog, "history", lambda: table)


@pytest.fixture
def fast_bootstrap(monkeypatch):
    """The regression's seed bootstrap with 400 resamples instead of 10,000 (the same code, quicker)."""
    monkeypatch.setattr(V, "seed_bootstrap_fit", functools.partial(V.seed_bootstrap_fit, resamples=400))


def test_the_published_thresholds():
    """The thresholds the Analysis plan page publishes; changing one is a change of the plan (it dates the rule anew
    and makes its verdicts exploratory), never a side effect."""
    assert {r.id: r.thresholds for r in plan.RULES} == {
        "claim1.erosion": {"erosion": 0.10}, "claim2.reliance": {"follows": 0.90, "partly": 0.50},
        "claim3.breadth": {"erosion": 0.10}, "claim4.features": {"probe": 0.05, "depth": 0.0},
        "mechanism.collapse": {"collapse": 0.10}, "mechanism.cell": {"erosion": 0.10},
        "mechanism.spike": {"spike": 1.0}, "mechanism.instability": {"erosion": 0.10, "spike": 1.0, "move": 0.5},
        "mechanism.drift": {"erosion": 0.10, "slope": 0.01, "spike": 1.0}, "mechanism.noise_steps": {},
        "transfer.recipe": {}, "transfer.gain": {"gain": 0.01}, "transfer.erosion": {"erosion": 0.10},
        "transfer.option": {"keeps": 0.5, "ignores": 0.2, "follows": 0.5}, "transfer.recovery": {"target": 1.0},
        "same_data.option": {"erosion": 0.10, "reduce": 0.05},
        "same_data.interpolation": {"moved": 0.05, "keep": 0.03, "drops": 0.5},
        "same_data.recovery": {"target": 0.9, "fast": 0.5}}


# ============================================================================================ mechanism rows

def _entry(records, monitor=None, total=96, per_epoch=32, time=LATE) -> dict:
    result = {"records": records, "total_steps": total, "steps_per_epoch": per_epoch}
    if monitor is not None:
        result["monitor"] = monitor
    return {"provenance": {"utc_time": time}, "result": result}


def _monitor(own_key: str, own_peak: float, total: int, follow=lambda epoch: 0.1, per_epoch: int = 32) -> list[dict]:
    """Monitor records whose loss on the run's own distribution peaks at ``own_peak``; the other distribution's loss
    peaks on the other side of the spike threshold, so that reading the wrong one gives the other verdict."""
    other_key = "loss_clean" if own_key == "loss_patterned" else "loss_patterned"
    decoy = 0.1 if own_peak > 1.0 else 3.0
    steps = sorted({0, *range(0, total + 1, max(1, total // 12)), total})
    out = []
    for i, s in enumerate(steps):
        out.append({"step": s, own_key: own_peak if i == 2 else 0.001, other_key: decoy if i == 3 else 0.001,
                    "follow_rate": follow(s / per_epoch), "clean_acc": 0.5})
    return out


def mech_row(seed, *, lr=0.1, batch=64, epochs=3.0, warmup=0.0, clip=0.0, wd=5e-4, groups=("confirm_map",),
             start=0.6, control=0.6, erosion=0.3, follow=0.9, peak=None, cpeak=None, distance=0.2, cdistance=None,
             slope_follow=None, times=None) -> dict:
    """One row of ``mechanism_experiment``: a pattern run and its control (final clean accuracy ``control`` and
    ``control - erosion``), their pretraining, monitors when ``peak`` (pattern run) is given."""
    per_epoch = 3200 // batch
    total = round(epochs * per_epoch)
    times = {"pattern": LATE, "control": LATE, "pretrain": LATE, **(times or {})}
    cfg = dict(finetune_lr=lr, finetune_batch_size=batch, finetune_epochs=epochs, finetune_warmup_epochs=warmup,
               finetune_clip_norm=clip, finetune_weight_decay=wd, seed=seed)
    pat = [{"step": 0, "clean_acc": start, "follow_rate": 0.05, "weight_distance": 0.0},
           {"step": total, "clean_acc": control - erosion, "follow_rate": follow, "weight_distance": distance}]
    con = [{"step": 0, "clean_acc": start, "follow_rate": 0.05, "weight_distance": 0.0},
           {"step": total, "clean_acc": control, "follow_rate": 0.05,
            "weight_distance": distance if cdistance is None else cdistance}]
    pmon = cmon = None
    if peak is not None:
        pmon = _monitor("loss_patterned", peak, total, slope_follow or (lambda e: 0.1), per_epoch)
        cmon = _monitor("loss_clean", peak if cpeak is None else cpeak, total, per_epoch=per_epoch)
    return {"groups": list(groups), "config": cfg, "seed": seed,
            "pattern": _entry(pat, pmon, total, per_epoch, times["pattern"]),
            "control": _entry(con, cmon, total, per_epoch, times["control"]),
            "pretrain": {"provenance": {"utc_time": times["pretrain"]}, "result": {"train_accuracy": 1.0}}}


def one_setting(seeds=SEEDS, **kw) -> mv.Setting:
    sets = mv.settings([mech_row(s, **kw) for s in seeds])
    assert len(sets) == 1
    return next(iter(sets.values()))


def test_settings_group_a_settings_seeds_and_leave_missing_rows_out():
    rows = [mech_row(s, groups=("confirm_map", "clip") if s == 4 else ("confirm_map",)) for s in SEEDS]
    rows += [{"groups": ["confirm_map"], "config": rows[0]["config"], "seed": 9, "missing": True},
             mech_row(3, lr=0.03)]
    sets = mv.settings(rows)
    assert len(sets) == 2
    s = sets[mv.setting_of(rows[0]["config"])]
    assert s.seeds == [3, 4, 5] and s.groups == {"confirm_map", "clip"} and (s.lr, s.batch, s.epochs) == (0.1, 64, 3)
    assert len(s.entries()) == 9 and s.final("pattern", "clean_acc") == {3: pytest.approx(0.3)} | {
        4: pytest.approx(0.3), 5: pytest.approx(0.3)}
    no_clip = {k: v for k, v in rows[0]["config"].items() if k not in ("finetune_clip_norm", "finetune_warmup_epochs")}
    assert mv.setting_of(no_clip) == mv.setting_of(rows[0]["config"])  # later fields default to 0


COLLAPSE_CELL = [  # (control's own loss, erosion, seeds, collapse verdict, cell verdict)
    (th("mechanism.collapse", "collapse") + 2 * P, 0.5, 3, "both collapse", "both collapse"),
    (th("mechanism.collapse", "collapse"), th("mechanism.cell", "erosion") + 2 * P, 3, "inconclusive", "erodes"),
    (th("mechanism.collapse", "collapse") - 2 * P, th("mechanism.cell", "erosion"), 3, "control keeps",
     "inconclusive"),
    (0.0, th("mechanism.cell", "erosion") - 2 * P, 3, "control keeps", "does not erode"),
    (0.0, th("mechanism.cell", "erosion") + 2 * P, 3, "control keeps", "erodes"),
    (th("mechanism.collapse", "collapse") + 0.3, 0.5, 2, "inconclusive", "inconclusive"),
    (0.0, 0.5, 2, "inconclusive", "inconclusive"),
]


@pytest.mark.parametrize("loss, erosion, n, collapse, cell", COLLAPSE_CELL)
def test_collapse_and_cell_rules_at_their_edges(loss, erosion, n, collapse, cell):
    s = one_setting(SEEDS[:n], start=0.6, control=0.6 - loss, erosion=erosion)
    col = mv.collapse_verdict(s)
    assert col.outcome == collapse and col.intervals["control_loss"].estimate == pytest.approx(loss)
    got = mv.cell_verdict(s)
    assert got.outcome == cell and got.intervals["erosion"].estimate == pytest.approx(erosion)
    assert got.label == "confirmatory" and got.seeds == tuple(SEEDS[:n])


def test_cell_erosion_over_seeds_that_differ_by_hand():
    erosions = {3: 0.25, 4: 0.30, 5: 0.41}
    follows = {3: 0.80, 4: 0.95, 5: 0.99}
    sets = mv.settings([mech_row(s, erosion=erosions[s], follow=follows[s], control=0.6 + 0.01 * (s - 4),
                                 distance=0.1 * (s - 2)) for s in SEEDS])
    s = next(iter(sets.values()))
    ero = mv.cell_verdict(s).intervals["erosion"]
    mean = 0.96 / 3
    sd = math.sqrt(sum((e - mean) ** 2 for e in erosions.values()) / 2)
    assert ero.estimate == pytest.approx(mean) and ero.hi - mean == pytest.approx(T_975_2 * sd / math.sqrt(3))
    assert mv.cell_verdict(s).outcome == ("erodes" if mean - T_975_2 * sd / math.sqrt(3) > 0.1 + P else "inconclusive")
    row = mv.cell_table(sets).iloc[0]
    assert row["seeds"] == 3 and row["erosion"] == ero and row["cell"] == mv.cell_verdict(s).outcome
    assert row["follow"].estimate == pytest.approx(2.74 / 3) and row["follow"].hi == 1.0  # a rate: clipped at 1
    assert row["distance_control"] == pytest.approx(0.2)  # mean of 0.1, 0.2, 0.3
    assert "spike_pattern" not in row.index or pd.isna(row["spike_pattern"])  # no monitor: no spike verdict


def test_a_cell_verdict_close_to_its_threshold_is_fragile():
    t = th("mechanism.cell", "erosion")
    close = mv.cell_verdict(one_setting(erosion=1.04 * t))
    assert close.outcome == "erodes" and close.fragile and "reads 'inconclusive' above" in close.sensitivity
    clear = mv.cell_verdict(one_setting(erosion=2 * t))
    assert clear.outcome == "erodes" and not clear.fragile
    collapse = mv.collapse_verdict(one_setting(control=0.6 - 1.04 * th("mechanism.collapse", "collapse")))
    assert collapse.outcome == "both collapse" and collapse.fragile


@pytest.mark.parametrize("which", ["pattern", "control", "pretrain"])
def test_one_early_result_makes_a_cell_verdict_exploratory(which):
    assert mv.cell_verdict(one_setting()).label == "confirmatory"
    rows = [mech_row(s, times={which: EARLY} if s == 5 else None) for s in SEEDS]
    s = next(iter(mv.settings(rows).values()))
    got = mv.cell_verdict(s)
    assert got.label == "exploratory" and got.label_reason.startswith("1 of its 9 results")
    assert mv.collapse_verdict(s).label == "exploratory"


SPIKES = [(1.0 + 2 * P, "spikes"), (1.0, "inconclusive"), (1.0 - 2 * P, "calm"), (25.0, "spikes"), (0.01, "calm")]


@pytest.mark.parametrize("peak, outcome", SPIKES)
def test_the_spike_rule_reads_each_runs_own_training_distribution(peak, outcome):
    assert th("mechanism.spike", "spike") == 1.0  # SPIKES is written around it
    other = 0.01 if peak > 1 else 25.0
    s = one_setting(peak=peak, cpeak=other)
    pattern, control = mv.spike_verdict(s, "pattern"), mv.spike_verdict(s, "control")
    assert pattern.outcome == outcome and pattern.intervals["peak"].estimate == pytest.approx(peak)
    assert control.outcome == ("calm" if other < 1 else "spikes")
    row = mv.cell_table(mv.settings([mech_row(x, peak=peak, cpeak=other) for x in SEEDS])).iloc[0]
    assert (row["spike_pattern"], row["spike_control"]) == (outcome, control.outcome)
    two = one_setting(SEEDS[:2], peak=5.0)
    assert mv.spike_verdict(two, "pattern").outcome == "inconclusive"


def test_peak_losses_over_seeds_that_differ_by_hand():
    rows = [mech_row(s, peak=p) for s, p in zip(SEEDS, (0.4, 0.6, 0.65))]
    peak = mv.spike_verdict(next(iter(mv.settings(rows).values())), "pattern").intervals["peak"]
    sd = math.sqrt(((0.4 - 0.55) ** 2 + 0.05 ** 2 + 0.1 ** 2) / 2)
    assert peak.estimate == pytest.approx(0.55) and peak.hi == pytest.approx(0.55 + T_975_2 * sd / math.sqrt(3))
    assert peak.lo == pytest.approx(0.55 - T_975_2 * sd / math.sqrt(3))
    wide = [mech_row(s, peak=p) for s, p in zip(SEEDS, (0.1, 0.6, 0.95))]
    assert mv.spike_verdict(next(iter(mv.settings(wide).values())), "pattern").intervals["peak"].lo == 0.0  # a loss
    assert peak.method == "t_mean"


# ------------------------------------------------------------------------------------------------ instability

ERODING, REF_BATCH, REF_LR = 0.1, 64, 0.03


def inst_rows(plain=dict(erosion=0.3, peak=5.0), arms=(), ref_distance=0.2, seeds=SEEDS, with_ref=True):
    """The arm without intervention (``plain``; None: missing), the intervention arms (each a dict of mech_row
    arguments, with ``clip`` or ``warmup``), and the reference control at lr 0.03 on the map."""
    rows = []
    for s in seeds:
        if plain is not None:
            rows.append(mech_row(s, lr=ERODING, groups=("clip", "long_warmup", "confirm_map"), **plain))
        for arm in arms:
            group = ("clip",) if arm.get("clip") else ("long_warmup",)
            rows.append(mech_row(s, lr=ERODING, groups=group, **arm))
        if with_ref:
            rows.append(mech_row(s, lr=REF_LR, groups=("confirm_map",), erosion=0.0, peak=0.1, distance=ref_distance))
    return mv.settings(rows)


def instability(sets):
    return mv.instability_verdict(sets, ERODING, REF_BATCH, REF_LR)


def calm_arm(erosion, **kw):
    return {**dict(clip=1.0, erosion=erosion, peak=0.2, distance=0.2), **kw}


def test_instability_every_outcome():
    t = th("mechanism.instability", "erosion")
    assert instability(inst_rows(plain=None, arms=[calm_arm(0.0)])).outcome == "not tested"
    assert instability(inst_rows(plain=dict(erosion=t - 2 * P, peak=5.0), arms=[calm_arm(0.0)])).outcome == \
        "nothing to explain"
    assert instability(inst_rows(plain=dict(erosion=0.3, peak=0.5), arms=[calm_arm(0.0)])).outcome == \
        "nothing to explain"  # erodes without a spike: nothing for the spike to explain
    assert instability(inst_rows(plain=dict(erosion=t, peak=5.0), arms=[calm_arm(0.0)])).outcome == \
        "nothing to explain"  # erosion not established (at the threshold)
    assert instability(inst_rows(arms=[dict(clip=1.0, erosion=0.0, peak=3.0)])).outcome == "not tested"
    assert instability(inst_rows(arms=[calm_arm(0.0, cpeak=3.0)])).outcome == "not tested"  # its control spikes
    nec = instability(inst_rows(arms=[calm_arm(t - 2 * P)]))
    assert nec.outcome == "necessary" and nec.details["arms"]["clip 1"] == {"calm": True, "moved": True,
                                                                           "erosion": "does not hold"}
    assert instability(inst_rows(arms=[calm_arm(t + 2 * P)])).outcome == "not necessary"
    assert instability(inst_rows(arms=[calm_arm(t)])).outcome == "inconclusive"
    both = instability(inst_rows(arms=[calm_arm(0.0), calm_arm(0.3, clip=0.5)]))
    assert both.outcome == "not necessary" and set(both.details["arms"]) == {"clip 1", "clip 0.5"}
    warm = instability(inst_rows(arms=[dict(warmup=2.5, erosion=0.0, peak=0.2, distance=0.2)]))
    assert warm.outcome == "necessary" and "warm-up 2.5 epochs" in warm.details["arms"]
    two = instability(inst_rows(arms=[calm_arm(0.0)], seeds=SEEDS[:2]))
    assert two.outcome == "nothing to explain"  # with two seeds nothing is established
    assert nec.label == "confirmatory" and nec.seeds == SEEDS


def test_an_arm_still_trains_when_its_control_moves_at_least_half_as_far_as_the_reference():
    move = th("mechanism.instability", "move")
    at = instability(inst_rows(arms=[calm_arm(0.0, distance=move * 0.2, cdistance=move * 0.2)], ref_distance=0.2))
    assert at.outcome == "necessary" and at.details["reference_distance"] == pytest.approx(0.2)
    short = instability(inst_rows(arms=[calm_arm(0.0, cdistance=move * 0.2 - 0.002)], ref_distance=0.2))
    assert short.outcome == "not tested" and short.details["arms"]["clip 1"]["moved"] is False
    pattern_only = instability(inst_rows(arms=[calm_arm(0.0, distance=0.5, cdistance=0.05)], ref_distance=0.2))
    assert pattern_only.outcome == "not tested"  # the control's distance decides, not the pattern run's
    no_ref = instability(inst_rows(arms=[calm_arm(0.0)], with_ref=False))
    assert no_ref.outcome == "not tested" and math.isnan(no_ref.details["reference_distance"])


def test_one_early_result_makes_the_instability_verdict_exploratory():
    rows = inst_rows(arms=[calm_arm(0.0)])
    assert instability(rows).label == "confirmatory"
    for which in ("pattern", "control", "pretrain"):
        sets = mv.settings([mech_row(s, lr=ERODING, groups=("clip",), **calm_arm(0.0),
                                     times={which: EARLY} if s == 4 else None) for s in SEEDS]
                           + [mech_row(s, lr=ERODING, groups=("clip", "confirm_map"), erosion=0.3, peak=5.0)
                              for s in SEEDS]
                           + [mech_row(s, lr=REF_LR, erosion=0.0, peak=0.1) for s in SEEDS])
        assert instability(sets).label == "exploratory", which
    ref_early = mv.settings([mech_row(s, lr=ERODING, groups=("clip",), **calm_arm(0.0)) for s in SEEDS]
                            + [mech_row(s, lr=ERODING, groups=("clip", "confirm_map"), erosion=0.3, peak=5.0)
                               for s in SEEDS]
                            + [mech_row(s, lr=REF_LR, erosion=0.0, peak=0.1, times={"control": EARLY} if s == 3
                                        else None) for s in SEEDS])
    assert instability(ref_early).label == "exploratory"  # the reference distance is a result it uses


# ------------------------------------------------------------------------------------------------------ drift

CALM_LR = 0.01


def drift_rows(short=dict(erosion=0.0, peak=0.2), long=dict(erosion=0.0, peak=0.2), slope=0.0, seeds=SEEDS,
               long_times=None):
    rows = []
    for s in seeds:
        rows.append(mech_row(s, lr=CALM_LR, groups=("drift", "confirm_map"), epochs=3.0, **short))
        rows.append(mech_row(s, lr=CALM_LR, groups=("drift",), epochs=15.0,
                             slope_follow=lambda e: 0.3 + slope * e if e >= 3 else 0.9 - 0.1 * e,
                             times=long_times if s == 4 else None, **long))
    return mv.settings(rows)


def drift(sets):
    return mv.drift_verdict(sets, [CALM_LR, 0.02], REF_BATCH)


def test_follow_slope_by_hand():
    s = next(s for s in drift_rows(slope=0.03).values() if s.epochs == 15)
    for entry in s.pattern.values():
        assert mv.follow_slope(entry, 3.0) == pytest.approx(0.03)  # the points before epoch 3 are left out
        assert mv.follow_slope(entry, 0.0) != pytest.approx(0.03)
        assert math.isnan(mv.follow_slope(entry, 14.9))  # fewer than three points


def test_drift_every_outcome():
    t, sl = th("mechanism.drift", "erosion"), th("mechanism.drift", "slope")
    sup = drift(drift_rows(long=dict(erosion=t + 2 * P, peak=0.2)))
    assert sup.outcome == "supported" and sup.details["rates"] == {CALM_LR: "drifts to erosion"}
    assert drift(drift_rows(slope=sl + 2 * P)).outcome == "partly supported"
    none = drift(drift_rows(long=dict(erosion=t - 2 * P, peak=0.2), slope=sl - 2 * P))
    assert none.outcome == "not supported" and none.details["rates"] == {CALM_LR: "no drift"}
    assert drift(drift_rows(long=dict(erosion=t, peak=0.2))).outcome == "inconclusive"
    assert drift(drift_rows(slope=sl)).outcome == "inconclusive"
    unstable = drift(drift_rows(long=dict(erosion=0.3, peak=5.0)))
    assert unstable.outcome == "inconclusive" and unstable.details["rates"] == {CALM_LR: "unstable"}
    assert drift(drift_rows(short=dict(erosion=t + 2 * P, peak=0.2))).outcome == "not tested"  # erodes already
    assert drift(drift_rows(short=dict(erosion=0.0, peak=5.0))).outcome == "not tested"  # the short runs spike
    assert drift(drift_rows(short=dict(erosion=0.0, peak=0.2, cpeak=5.0))).outcome == "not tested"
    assert drift(drift_rows(seeds=SEEDS[:2], long=dict(erosion=0.3, peak=0.2))).outcome == "not tested"
    assert mv.drift_verdict(drift_rows(), [0.02], REF_BATCH).outcome == "not tested"  # no pair at that rate
    assert sup.label == "confirmatory"
    assert drift(drift_rows(long=dict(erosion=t + 2 * P, peak=0.2), long_times={"control": EARLY})).label == \
        "exploratory"


def test_drift_to_erosion_needs_calm_long_runs():
    t = th("mechanism.drift", "erosion")
    spiky_control = drift(drift_rows(long=dict(erosion=0.3, peak=0.2, cpeak=5.0)))
    assert spiky_control.details["rates"] == {CALM_LR: "unstable"}
    borderline = drift(drift_rows(long=dict(erosion=t + 2 * P, peak=1.0)))  # long peak at the threshold: not calm
    assert borderline.details["rates"] == {CALM_LR: "inconclusive"}


# -------------------------------------------------------------------------------------------- noise or steps

MAP_LRS, MAP_BATCHES = (0.01, 0.03, 0.1), (32, 64, 128)


def map_rows(effect, seeds=(3, 4, 5, 6, 7), collapse=None, noise_sd=0.01):
    """The confirmatory map with erosion = effect(log2(lr/batch), log2(steps)) + noise that differs by seed and cell;
    ``collapse`` = an (lr, batch) cell whose control loses 0.3 (both collapse), with an absurd erosion."""
    rng = np.random.default_rng(11)
    rows = []
    for s in seeds:
        for lr in MAP_LRS:
            for b in MAP_BATCHES:
                steps = round(3.0 * (3200 // b))
                e = effect(math.log2(lr / b), math.log2(steps)) + rng.normal(0, noise_sd)
                if (lr, b) == collapse:
                    rows.append(mech_row(s, lr=lr, batch=b, control=0.3, erosion=0.95))
                else:
                    rows.append(mech_row(s, lr=lr, batch=b, erosion=e))
    return mv.settings(rows)


@pytest.mark.parametrize("effect, outcome", [
    (lambda noise, steps: 0.3 + 0.05 * noise, "noise scale"),
    (lambda noise, steps: 0.3 + 0.05 * steps, "number of steps"),
    (lambda noise, steps: 0.3 + 0.05 * noise + 0.05 * steps, "both"),
    (lambda noise, steps: 0.3, "neither"),
])
def test_noise_or_steps_every_outcome(fast_bootstrap, effect, outcome):
    sets = map_rows(effect)
    got = mv.noise_steps_verdict(sets, mv.cell_table(sets))
    assert got.outcome == outcome and got.details["runs"] == 45 and got.seeds == (3, 4, 5, 6, 7)
    assert "interval level" in got.sensitivity and got.label == "confirmatory"


def test_noise_or_steps_known_coefficients_and_two_seeds(fast_bootstrap):
    sets = map_rows(lambda noise, steps: 0.3 + 0.04 * noise - 0.02 * steps, noise_sd=0.002)
    got = mv.noise_steps_verdict(sets, mv.cell_table(sets))
    assert got.intervals[mv.COEFFICIENT_NAMES[0]].estimate == pytest.approx(0.04, abs=0.002)
    assert got.intervals[mv.COEFFICIENT_NAMES[1]].estimate == pytest.approx(-0.02, abs=0.002)
    two = map_rows(lambda noise, steps: 0.3 + 0.05 * noise, seeds=(3, 4))
    assert mv.noise_steps_verdict(two, mv.cell_table(two)).outcome == "inconclusive"
    empty = mv.noise_steps_verdict({}, pd.DataFrame(columns=[*mv.SETTING, "cell"]))
    assert empty.outcome == "inconclusive" and empty.seeds == ()


def test_a_both_collapse_cell_is_left_out_of_the_regression_and_of_erosion(fast_bootstrap):
    sets = map_rows(lambda noise, steps: 0.3 + 0.05 * noise, collapse=(0.1, 32))
    table = mv.cell_table(sets)
    cell = table[(table.finetune_lr == 0.1) & (table.finetune_batch_size == 32)].iloc[0]
    assert cell["cell"] == "both collapse" and cell["collapse"] == "both collapse"
    assert cell["erosion"].estimate == pytest.approx(0.95, abs=0.05)  # large, and not judged
    runs = mv.regression_runs(sets, table)
    assert len(runs) == 40 and not any(r["lr"] == 0.1 and r["batch"] == 32 for r in runs)
    assert mv.noise_steps_verdict(sets, table).outcome == "noise scale"
    assert not ((mv.timing(sets, table).finetune_lr == 0.1) & (mv.timing(sets, table).batch == 32)).any()
    other = [r for r in runs if r["lr"] == 0.03 and r["batch"] == 64 and r["seed"] == 4][0]
    assert other["log2_lr_per_batch"] == pytest.approx(math.log2(0.03 / 64))
    assert other["log2_steps"] == pytest.approx(math.log2(150))


def test_timing_orders_the_peak_and_the_crossing():
    def row(seed, peak_at, cross_at):
        r = mech_row(seed, peak=0.2, erosion=0.3)
        for i, m in enumerate(r["pattern"]["result"]["monitor"]):
            m["loss_patterned"] = 5.0 if i == peak_at else 0.1
            m["follow_rate"] = 0.9 if cross_at is not None and i >= cross_at else 0.1
        return r

    sets = mv.settings([row(3, 2, 5), row(4, 6, 3), row(5, 4, 4), row(6, 4, None)])
    got = mv.timing(sets, mv.cell_table(sets)).set_index("seed")
    assert list(got.order) == ["peak first", "crossing first", "same monitor step", "no crossing"]
    mon = sets[next(iter(sets))].pattern[3]["result"]["monitor"]
    assert got.loc[3, "peak"] == pytest.approx(mon[2]["step"] / 150)
    assert got.loc[3, "peak_resolution"] == pytest.approx((mon[2]["step"] - mon[1]["step"]) / 150)
    assert math.isnan(got.loc[6, "crossing"])


def test_mechanism_key_result_carries_every_label():
    inst = instability(inst_rows(arms=[calm_arm(0.0)]))
    dr = drift(drift_rows())
    sets = map_rows(lambda a, b: 0.3, seeds=(3, 4))
    noise = mv.noise_steps_verdict(sets, pd.DataFrame(columns=[*mv.SETTING, "cell"]))
    text = mv.key_result(inst, dr, noise, "cpu scale")
    assert text.startswith(mv.INSTABILITY_WORDS["necessary"] + " (confirmatory")
    assert mv.DRIFT_WORDS["not supported"] in text and "(cpu scale, 3 seeds)" in text


# ============================================================================================ mitigation rows

def mit_row(seed, label="baseline (lr 0.03)", kind="baseline", value=None, start=0.50, control=0.56, clean=0.55,
            follow=0.1, matched=0.9, times=None) -> dict:
    """One row of ``transfer_experiment`` / ``mitigation_experiment``: the option's pattern run, the baseline's
    control and the pretraining."""
    times = {"pattern": LATE, "control": LATE, "pretrain": LATE, **(times or {})}
    pat = [{"step": 0, "clean_acc": start, "follow_rate": 0.05, "matched_acc": start},
           {"step": 96, "clean_acc": clean, "follow_rate": follow, "matched_acc": matched}]
    con = [{"step": 0, "clean_acc": start, "follow_rate": 0.05, "matched_acc": start},
           {"step": 96, "clean_acc": control, "follow_rate": 0.05, "matched_acc": control}]
    return {"kind": kind, "label": label, "value": value, "seed": seed,
            "pattern": _entry(pat, time=times["pattern"]), "control": _entry(con, time=times["control"]),
            "pretrain": {"provenance": {"utc_time": times["pretrain"]}, "result": {"train_accuracy": 1.0}}}


def test_options_read_each_seeds_start_control_and_final():
    rows = [mit_row(s, start=0.5 + 0.01 * s, control=0.6 + 0.01 * s, clean=0.4 + 0.01 * s) for s in SEEDS]
    rows += [mit_row(s, "freeze 2 of 5 stages", "freeze", 2, clean=0.52) for s in SEEDS]
    rows += [{**mit_row(9, "freeze 2 of 5 stages", "freeze", 2), "missing": True}]
    base, freeze = gv.options(rows)
    assert (base.label, freeze.label, freeze.value, freeze.seeds) == ("baseline (lr 0.03)", "freeze 2 of 5 stages",
                                                                      2, [3, 4, 5])
    assert base.start == {s: pytest.approx(0.5 + 0.01 * s) for s in SEEDS}
    assert base.control == {s: pytest.approx(0.6 + 0.01 * s) for s in SEEDS}
    assert base.metric("clean_acc") == {s: pytest.approx(0.4 + 0.01 * s) for s in SEEDS}
    assert base.final[4] == {"clean_acc": pytest.approx(0.44), "follow_rate": 0.1, "matched_acc": 0.9}
    assert len(base.entries) == 9 and not base.posthoc


def baseline(gain=0.06, erosion=0.3, n=3, **kw) -> gv.Option:
    rows = [mit_row(s, start=0.5, control=0.5 + gain, clean=0.5 + gain - erosion, **kw) for s in SEEDS[:n]]
    return gv.options(rows)[0]


GAINS = [(th("transfer.gain", "gain") + 2 * P, 3, "something to learn"),
         (th("transfer.gain", "gain"), 3, "inconclusive"),
         (th("transfer.gain", "gain") - 2 * P, 3, "nothing to learn"),
         (0.2, 2, "inconclusive")]


@pytest.mark.parametrize("gain, n, outcome", GAINS)
def test_gain_at_its_edges(gain, n, outcome):
    got = gv.gain_verdict(baseline(gain=gain, n=n))
    assert got.outcome == outcome and got.intervals["gain"].estimate == pytest.approx(gain)


@pytest.mark.parametrize("rule", ["transfer.erosion", "claim1.erosion"])
def test_baseline_erosion_at_its_edges(rule):
    t = th(rule, "erosion")
    cases = [(t + 2 * P, 3, "erodes"), (t, 3, "inconclusive"), (t - 2 * P, 3, "does not erode"),
             (0.5, 2, "inconclusive")]
    for erosion, n, outcome in cases:
        got = gv.erosion_verdict(baseline(erosion=erosion, n=n), rule)
        assert got.outcome == outcome and got.rule == rule, (erosion, n)
        assert got.intervals["erosion"].estimate == pytest.approx(erosion)
    assert gv.erosion_verdict(baseline(erosion=1.04 * t)).fragile


def test_gain_and_erosion_over_seeds_that_differ_by_hand():
    rows = [mit_row(s, start=0.50, control=c, clean=p) for s, c, p in zip(SEEDS, (0.54, 0.56, 0.61), (0.2, 0.3, 0.25))]
    b = gv.options(rows)[0]
    gain = gv.gain_verdict(b).intervals["gain"]
    sd = math.sqrt(((0.04 - 0.07) ** 2 + (0.06 - 0.07) ** 2 + (0.11 - 0.07) ** 2) / 2)
    assert gain.estimate == pytest.approx(0.07) and gain.lo == pytest.approx(0.07 - T_975_2 * sd / math.sqrt(3))
    erosion = gv.erosion_verdict(b).intervals["erosion"]  # 0.34, 0.26, 0.36
    sd = math.sqrt(((0.34 - 0.32) ** 2 + (0.26 - 0.32) ** 2 + (0.36 - 0.32) ** 2) / 2)
    assert erosion.estimate == pytest.approx(0.32) and erosion.hi == pytest.approx(0.32 + T_975_2 * sd / math.sqrt(3))


def option_rows(kept, follow, label="freeze 4 of 5 stages", kind="freeze", seeds=SEEDS, times=None):
    """An option keeping exactly ``kept`` of each seed's gain (gains differ by seed) with follow rate ``follow``."""
    gains = {3: 0.04, 4: 0.05, 5: 0.07, 6: 0.06}
    return [mit_row(s, label, kind, 4, start=0.5, control=0.5 + gains[s], clean=0.5 + kept * gains[s],
                    follow=follow if not isinstance(follow, dict) else follow[s], times=times if s == 4 else None)
            for s in seeds]


def judge_option(kept, follow, gain=None, **kw):
    gain = gain or gv.gain_verdict(baseline())
    opt = gv.options(option_rows(kept, follow, **kw))[0]
    return gv.option_verdict(opt, gain)


def test_option_every_outcome_at_the_edges():
    keeps, ignores, follows = (th("transfer.option", k) for k in ("keeps", "ignores", "follows"))
    assert gv.gain_verdict(baseline()).outcome == "something to learn"
    cases = [
        (keeps + 2 * P, ignores - 2 * P, "recommended"),
        (keeps + 2 * P, follows + 2 * P, "keeps the gain, follows the shortcut"),
        (keeps - 2 * P, ignores - 2 * P, "ignores the shortcut, loses the gain"),
        (keeps - 2 * P, follows + 2 * P, "loses the gain and follows the shortcut"),
        (keeps, ignores - 2 * P, "inconclusive"),
        (keeps + 2 * P, ignores, "inconclusive"),
        (keeps - 2 * P, follows, "inconclusive"),
        (keeps + 2 * P, (ignores + follows) / 2, "inconclusive"),
        (1.5, 0.0, "recommended"),
    ]
    for kept, follow, outcome in cases:
        got = judge_option(kept, follow)
        assert got.outcome == outcome, (kept, follow)
        assert got.intervals["gain kept"].estimate == pytest.approx(kept)
    nothing = gv.gain_verdict(baseline(gain=0.0))
    assert judge_option(0.9, 0.0, gain=nothing).outcome == "not tested"
    unsure = gv.gain_verdict(baseline(gain=th("transfer.gain", "gain")))
    assert judge_option(0.9, 0.0, gain=unsure).outcome == "not tested"
    assert judge_option(0.9, 0.0, seeds=(3, 4)).outcome == "inconclusive"
    fragile = judge_option(1.04 * keeps, 0.0)
    assert fragile.outcome == "recommended" and fragile.fragile
    assert "keeps: the same from" in fragile.sensitivity and "ignores: the same from 0.1 to 0.3" in \
        fragile.sensitivity


def test_gain_kept_and_follow_over_seeds_that_differ_by_hand():
    follow = {3: 0.02, 4: 0.05, 5: 0.11}
    rows = [mit_row(s, "L2-SP α=0.1", "l2sp", 0.1, start=0.5, control=c, clean=p, follow=follow[s])
            for s, c, p in zip(SEEDS, (0.54, 0.55, 0.57), (0.53, 0.52, 0.56))]
    got = gv.option_verdict(gv.options(rows)[0], gv.gain_verdict(baseline()))
    assert got.intervals["gain kept"].estimate == pytest.approx(0.11 / 0.16)  # mean(0.03, .02, .06) / mean(.04, .05, .07)
    assert got.intervals["follow rate"].estimate == pytest.approx(0.06) and got.intervals["follow rate"].lo == 0.0
    assert got.intervals["clean accuracy"].estimate == pytest.approx(1.61 / 3)


def interp_rows(alpha_points, seeds=SEEDS, times=None):
    """Rows of ``transfer_interpolation`` / ``interpolation_experiment``: ``alpha_points(seed)`` = {alpha:
    (clean, follow, matched)} (re-estimated statistics)."""
    rows = []
    for s in seeds:
        row = mit_row(s, times=times if s == 4 else None)
        pts = [{"alpha": a, "raw": {"clean_acc": 0.0, "follow_rate": 1.0, "matched_acc": 0.0},
                "reestimated": {"clean_acc": c, "follow_rate": f, "matched_acc": m}}
               for a, (c, f, m) in alpha_points(s).items()]
        row["interpolation"] = {"provenance": {"utc_time": times.get("interpolation", LATE) if times and s == 4
                                               else LATE}, "result": {"points": pts}}
        rows.append(row)
    return rows


def test_posthoc_options_count_only_where_the_network_has_moved():
    keeps = th("transfer.option", "keeps")
    gains = {3: 0.04, 4: 0.05, 5: 0.07}

    def points(s):  # pretrained clean 0.5 (mit_row's start); alpha 1 keeps 80% of the gain, alpha 0.1 nothing
        return {0.0: (0.5, 0.05, 0.5), 0.1: (0.5, 0.05, 0.55), 0.5: (0.5 + keeps * 1.2 * gains[s], 0.1, 0.7),
                1.0: (0.5 + 0.8 * gains[s], 0.15, 0.9)}

    rows = interp_rows(points)
    for r, s in zip(rows, SEEDS):
        r["control"]["result"]["records"][-1]["clean_acc"] = 0.5 + gains[s]
    opts = gv.posthoc_options(rows)
    assert [o.label for o in opts] == ["batch-norm re-estimation", "WiSE-FT α=0.5", "WiSE-FT α=0.1"]
    assert [o.kind for o in opts] == ["bn_reestimate", "interpolation", "interpolation"] and opts[0].posthoc
    assert opts[0].metric("follow_rate") == {3: 0.15, 4: 0.15, 5: 0.15}  # the re-estimated point, not the raw one
    gain = gv.gain_verdict(gv.options(rows)[0])
    verdicts = {o.label: gv.option_verdict(o, gain) for o in opts}
    assert verdicts["batch-norm re-estimation"].outcome == "recommended"
    assert verdicts["WiSE-FT α=0.5"].outcome == "recommended"
    stuck = verdicts["WiSE-FT α=0.1"]
    assert stuck.outcome == "not tested" and stuck.details["moved"] is False
    assert [o.label for o in gv.posthoc_options(rows, alphas=[0.5])] == ["WiSE-FT α=0.5"]
    table = gv.option_table(opts, verdicts)
    answer = gv.practitioner_answer(table)
    assert answer["recommended"] == ["batch-norm re-estimation", "WiSE-FT α=0.5"]  # largest mean gain kept first
    assert answer["best"] == "batch-norm re-estimation" and answer["best_row"]["verdict"] == "recommended"
    assert gv.practitioner_answer(table[table.verdict != "recommended"])["best"] is None
    early = gv.posthoc_options(interp_rows(points, times={"interpolation": EARLY}))[0]
    assert gv.option_verdict(early, gain).label == "exploratory"


@pytest.mark.parametrize("which", ["pattern", "control", "pretrain"])
def test_one_early_result_makes_an_option_verdict_exploratory(which):
    assert judge_option(0.9, 0.0).label == "confirmatory"
    assert judge_option(0.9, 0.0, times={which: EARLY}).label == "exploratory"
    assert gv.gain_verdict(gv.options([mit_row(s, times={which: EARLY} if s == 5 else None)
                                       for s in SEEDS])[0]).label == "exploratory"


# ------------------------------------------------------------------------------------- recovery (transfer)

ARMS = ("eroded", "control", "reinit_1", "reinit_2", "scratch")


def rec_row(seed, reach: dict, pretrained=0.5, start=0.3, times=None):
    """A row of ``transfer_recovery_experiment``: each arm's clean accuracy reaches the target (``target share`` x
    ``pretrained``, exactly) at the step ``reach[arm]`` (None: never) on the grid 0, 10, ..., 60."""
    target = th("transfer.recovery", "target") * pretrained
    arms = {}
    for arm in ARMS:
        at = reach.get(arm)
        recs = [{"step": s, "clean_acc": (target if at is not None and s >= at else target - 0.05)
                 if s > 0 or arm != "eroded" else start, "follow_rate": 0.1} for s in range(0, 70, 10)]
        arms[arm] = {"records": recs, "total_steps": 60, "steps_per_epoch": 20}
    row = mit_row(seed, times=times)
    row["recovery"] = {"provenance": {"utc_time": (times or {}).get("recovery", LATE)},
                       "result": {"pretrained": {"clean_acc": pretrained}, "arms": arms}}
    return row


RECOVERY = [
    ({"eroded": 0, "reinit_1": 20, "reinit_2": 30}, "nothing to recover", dict(start=0.5)),
    ({"eroded": 20, "reinit_1": 20, "reinit_2": 30}, "suppression", {}),
    ({"eroded": 10, "reinit_1": 20, "reinit_2": 30}, "suppression", {}),
    ({"eroded": 20, "reinit_1": None, "reinit_2": 30}, "suppression", {}),
    ({"eroded": 30, "reinit_1": 20, "reinit_2": 30}, "partial", {}),
    ({"eroded": 40, "reinit_1": 20, "reinit_2": 30}, "destruction", {}),
    ({"eroded": None, "reinit_1": 20, "reinit_2": 30}, "destruction", {}),
    ({"eroded": None, "reinit_1": None, "reinit_2": None}, "not resolved", {}),
    ({"eroded": None, "reinit_1": 20, "reinit_2": None}, "partial", {}),
]


@pytest.mark.parametrize("reach, verdict, kw", RECOVERY)
def test_recovery_per_seed_every_branch(reach, verdict, kw):
    table = gv.recovery_per_seed([rec_row(3, {**reach, "control": 10, "scratch": 50}, **kw)],
                                 th("transfer.recovery", "target"))
    row = table.iloc[0]
    assert row.verdict == verdict and row.target == pytest.approx(th("transfer.recovery", "target") * 0.5)
    if reach["eroded"] is None:
        assert pd.isna(row.steps_eroded)
    else:
        assert row.steps_eroded == reach["eroded"]


def test_recovery_counts_every_seed():
    rows = [rec_row(3, {"eroded": 10, "reinit_1": 20}), rec_row(4, {"eroded": 10, "reinit_1": 20}),
            rec_row(5, {"eroded": 50, "reinit_1": 20, "reinit_2": 30}), {"seed": 6, "missing": True}]
    got = gv.recovery_verdict(rows)
    assert got.outcome == "mixed: 2 suppression, 1 destruction"
    assert got.details == {"counts": {"suppression": 2, "destruction": 1}, "seeds": 3} and got.seeds == (3, 4, 5)
    assert gv.recovery_verdict(rows[:2]).outcome == "suppression"
    assert gv.recovery_verdict([]).outcome == "not tested"
    assert got.label == "confirmatory"
    early = [rec_row(3, {"eroded": 10}, times={"recovery": EARLY})] + rows[1:3]
    assert gv.recovery_verdict(early).label == "exploratory"
    # the arms reach exactly the target: any higher target is missed, so the verdict is fragile
    assert got.sensitivity.startswith("target: the same from 0.91 to 1;") and got.fragile
    assert "reads 'not resolved' above 1" in got.sensitivity


# ------------------------------------------------------------------------------------ the paper's setting

def same_data(option_erosion, base_erosion=0.3, n=3, base_erodes=True, seeds=SEEDS):
    rows = [mit_row(s, control=0.6, clean=0.6 - base_erosion) for s in seeds[:n]]
    rows += [mit_row(s, "lower rate 0.01", "lower_lr", 0.01, control=0.6,
                     clean=0.6 - (option_erosion[s] if isinstance(option_erosion, dict) else option_erosion))
             for s in seeds[:n]]
    base, opt = gv.options(rows)
    erodes = gv.erosion_verdict(base, "claim1.erosion")
    if not base_erodes:
        erodes.outcome = "does not erode"
    return gv.same_data_option_verdict(opt, base, erodes)


def test_same_data_option_every_outcome():
    e, r = th("same_data.option", "erosion"), th("same_data.option", "reduce")
    assert same_data(0.0).outcome == "prevents"
    assert same_data(e - 2 * P).outcome == "prevents"
    assert same_data(0.3 - r - 2 * P).outcome == "reduces"
    assert same_data(0.3 - r).outcome == "inconclusive"
    assert same_data(0.3 - r + 2 * P).outcome == "does not reduce"
    assert same_data(0.35).outcome == "does not reduce"
    assert same_data(e).outcome == "reduces"  # not below the threshold, but clearly reduced
    assert same_data(0.0, base_erodes=False).outcome == "nothing to prevent"
    assert same_data(0.0, n=2).outcome == "nothing to prevent"  # the baseline's erosion is not established
    spread = same_data({3: 0.05, 4: 0.12, 5: 0.25})  # reduction 0.25, 0.18, 0.05 by seed
    red = spread.intervals["reduction"]
    sd = math.sqrt(((0.25 - 0.16) ** 2 + (0.18 - 0.16) ** 2 + (0.05 - 0.16) ** 2) / 2)
    assert red.estimate == pytest.approx(0.16) and red.lo == pytest.approx(0.16 - T_975_2 * sd / math.sqrt(3))
    assert spread.outcome == "inconclusive"  # straddles 0.05
    assert spread.label == "confirmatory"


def interpolation(points, seeds=SEEDS, times=None):
    return gv.same_data_interpolation_verdict(interp_rows(lambda s: points, seeds=seeds, times=times))


def test_interpolation_every_outcome_at_the_edges():
    moved, keep, drops = (th("same_data.interpolation", k) for k in ("moved", "keep", "drops"))
    pre = (0.6, 0.05, 0.5)  # alpha 0: clean, follow, matched

    def at(matched_gain, clean_drop, follow):
        return {0.0: pre, 0.5: (0.6 - clean_drop, follow, 0.5 + matched_gain), 1.0: (0.2, 0.95, 0.99)}

    ok = interpolation(at(moved + 2 * P, keep - 2 * P, drops - 2 * P))
    assert ok.outcome == "an alpha qualifies" and ok.details["window"] == [0.5]
    assert interpolation(at(moved, 0.0, 0.1)).outcome == "inconclusive"  # moved? at the threshold
    assert interpolation(at(moved - 2 * P, 0.0, 0.1)).outcome == "no alpha qualifies"  # has not moved
    assert interpolation(at(0.3, keep, 0.1)).outcome == "inconclusive"
    assert interpolation(at(0.3, keep + 2 * P, 0.1)).outcome == "no alpha qualifies"
    assert interpolation(at(0.3, 0.0, drops)).outcome == "inconclusive"
    assert interpolation(at(0.3, 0.0, drops + 2 * P)).outcome == "no alpha qualifies"
    assert interpolation(at(0.3, 0.0, 0.1), seeds=SEEDS[:2]).outcome == "inconclusive"
    # the network that has not moved does not pass by staying the pretrained one (issue 18)
    same = {0.0: pre, 0.1: pre, 1.0: (0.2, 0.95, 0.99)}
    assert interpolation(same).outcome == "no alpha qualifies"
    assert interpolation({0.5: pre}).outcome == "inconclusive"  # no alpha 0: nothing to compare with
    assert ok.label == "confirmatory"
    assert interpolation(at(0.3, 0.0, 0.1), times={"interpolation": EARLY}).label == "exploratory"


def test_interpolation_intervals_over_seeds_that_differ_by_hand():
    pts = {3: (0.60, 0.10, 0.60), 4: (0.57, 0.20, 0.62), 5: (0.56, 0.30, 0.70)}
    got = gv.same_data_interpolation_verdict(interp_rows(lambda s: {0.0: (0.6, 0.05, 0.5), 0.5: pts[s]}))
    drop, follow = got.intervals["α=0.5: clean drop"], got.intervals["α=0.5: follow rate"]
    assert drop.estimate == pytest.approx(0.07 / 3) and follow.estimate == pytest.approx(0.2)
    assert follow.hi == pytest.approx(0.2 + T_975_2 * 0.1 / math.sqrt(3))
    assert got.intervals["α=0.5: matched gain"].estimate == pytest.approx(0.14)


def srec_row(seed, eroded, scratch, pretrained=0.6, start=0.3, lrs=(0.1,)):
    target = th("same_data.recovery", "target") * pretrained
    row = mit_row(seed, start=pretrained)
    runs = []
    for lr in lrs:
        arms = {}
        for arm, at in (("pattern", eroded), ("scratch", scratch)):
            arms[arm] = {"records": [{"step": s, "clean_acc": (target if at is not None and s >= at else target - 0.1)
                                      if s > 0 or arm == "scratch" else start} for s in range(0, 110, 10)]}
        runs.append({"lr": lr, "total_steps": 100, "arms": arms})
    row["recovery"] = {"provenance": {"utc_time": LATE}, "result": {"runs": runs}}
    return row


SAME_DATA_RECOVERY = [(20, 40, "fast"), (20, 50, "fast"), (30, 50, "in between"), (50, 50, "in between"),
                      (60, 50, "as slow as scratch"), (None, 50, "as slow as scratch"), (90, None, "fast"),
                      (None, None, "not resolved")]


def test_same_data_recovery_every_branch_and_counts():
    assert th("same_data.recovery", "fast") == 0.5  # the table is written around it
    for eroded, scratch, verdict in SAME_DATA_RECOVERY:
        table = gv.same_data_recovery_per_seed([srec_row(3, eroded, scratch)], th("same_data.recovery", "target"),
                                               th("same_data.recovery", "fast"))
        assert table.verdict.tolist() == [verdict], (eroded, scratch)
    nothing = gv.same_data_recovery_per_seed([srec_row(3, 10, 50, start=0.6)], 0.9, 0.5)
    assert nothing.verdict.tolist() == ["nothing to recover"]
    rows = [srec_row(3, 20, 50, lrs=(0.1, 0.01)), srec_row(4, 20, 50, lrs=(0.1, 0.01)),
            srec_row(5, 60, 50, lrs=(0.1, 0.01))]
    got = gv.same_data_recovery_verdict(rows, 0.1)
    assert got.outcome == "mixed: 2 fast, 1 as slow as scratch" and got.details["seeds"] == 3
    assert gv.same_data_recovery_verdict(rows[:2], 0.01).outcome == "fast"
    assert gv.same_data_recovery_verdict(rows, 0.5).outcome == "not tested"


def test_mitigation_key_result_carries_every_label():
    gain = gv.gain_verdict(baseline())
    ero = gv.erosion_verdict(baseline())
    rec = gv.recovery_verdict([rec_row(s, {"eroded": 10, "reinit_1": 20}) for s in SEEDS])
    opt = gv.options(option_rows(0.9, 0.0))[0]
    table = gv.option_table([opt], {opt.label: gv.option_verdict(opt, gain)})
    text = gv.key_result(gv.practitioner_answer(table), gain, ero, rec, "cpu scale")
    assert text.startswith("in the transfer setting (cpu scale, 3 seeds) the baseline erodes (confirmatory)")
    assert "freeze 4 of 5 stages keeps 0.900 [0.900, 0.900] of the gain while ignoring the shortcut (confirmatory)" \
        in text and text.endswith(f"recovery: suppression (confirmatory{', fragile' if rec.fragile else ''})")
    none = gv.key_result(gv.practitioner_answer(table.iloc[0:0]), gain, ero, rec, "cpu scale")
    assert "no option both keeps half the gain and ignores the shortcut" in none
    flat = gv.key_result({}, gv.gain_verdict(baseline(gain=0.0)), ero, rec, "cpu scale")
    assert flat == "in the transfer setting (cpu scale, 3 seeds) fine-tuning gained nothing measurable (confirmatory)"


def transfer_answer(*options, gain=0.06):
    """The page's answer for the baseline and options given as (kept, follow, label, kind)."""
    rows = [mit_row(s, start=0.5, control=0.5 + gain, clean=0.5 + gain - 0.3, follow=0.7) for s in SEEDS]
    for kept, follow, label, kind in options:
        rows += option_rows(kept, follow, label, kind)
    opts = gv.options(rows)
    base, gain_v = opts[0], gv.gain_verdict(opts[0])
    table = gv.option_table(opts, {o.label: gv.option_verdict(o, gain_v) for o in opts})
    answer = gv.practitioner_answer(table)
    return gv.answer_text(base, gain_v, table, answer, "cpu scale"), answer


def test_the_transfer_answer_in_every_case():
    ign = th("transfer.option", "ignores")
    assert gv.answer_text(None, None, pd.DataFrame(), {}, "cpu scale") == (
        "The transfer setting's results are missing, so this page cannot answer yet.")
    flat, _ = transfer_answer((0.9, 0.0, "freeze 4 of 5 stages", "freeze"), gain=0.0)
    assert flat.startswith("In the transfer setting (cpu scale, 3 seeds), fine-tuning did not measurably gain")
    one, _ = transfer_answer((0.9, 0.0, "freeze 4 of 5 stages", "freeze"))
    assert one.startswith("In the transfer setting (cpu scale, 3 seeds), plain fine-tuning on the patterned images "
                          "ends at a clean test accuracy of 0.260 [")
    assert one.endswith("**freeze 4 of 5 stages** keeps 0.900 [0.900, 0.900] of the gain while following the pattern "
                        "in only 0.000 [0.000, 0.000] (confirmatory); it is the only option that qualifies.")
    two, _ = transfer_answer((0.9, 0.0, "freeze 4 of 5 stages", "freeze"), (1.2, 0.0, "L2-SP α=0.1", "l2sp"))
    assert "**L2-SP α=0.1** keeps 1.200" in two and two.endswith("1 other option also qualifies: freeze 4 of 5 stages.")
    none, answer = transfer_answer((-0.2, 0.0, "freeze 4 of 5 stages", "freeze"),
                                   (0.9, 0.6, "lower rate 0.003", "lower_lr"))
    assert answer["best"] is None and answer["near_miss"] is None
    assert ("No option both keeps at least half of the gain and clearly ignores the shortcut (the plan's rule): those "
            "that ignore it give up what fine-tuning adds (gain kept: freeze 4 of 5 stages, -0.200 [-0.200, -0.200]), "
            "and the one that keeps the most of the gain, lower rate 0.003 (0.900 [0.900, 0.900]), still follows the "
            "pattern in 0.600 [0.600, 0.600] of mismatched images (keeps the gain, follows the shortcut by the "
            "rule).") in none and "fragile" not in none
    # just above the 'ignores' threshold: the answer's near miss, and the page says by how much and that it is fragile
    near, answer = transfer_answer((0.9, 1.02 * ign, "patterned fraction 0.5", "fraction"))
    assert answer["near_miss"] == "patterned fraction 0.5"
    assert near.endswith(f"(inconclusive by the rule; it misses 'ignores the shortcut' by {0.02 * ign:.3f}, so this "
                         f"answer is fragile).")
    far, answer = transfer_answer((0.9, 1.5 * ign, "patterned fraction 0.5", "fraction"))
    assert answer["near_miss"] is None and far.endswith("(inconclusive by the rule).")
    # the option keeping the most of the gain is itself one that ignores the shortcut: no second clause
    only, _ = transfer_answer((-0.2, 0.0, "freeze 4 of 5 stages", "freeze"), (-0.5, 0.0, "lower rate 0.003", "lower_lr"))
    assert only.endswith("(gain kept: freeze 4 of 5 stages, -0.200 [-0.200, -0.200]; lower rate 0.003, -0.500 "
                         "[-0.500, -0.500]).")
    # the keeper is the best option, never the baseline (whose own 'gain kept' may be larger)
    worst, _ = transfer_answer((-5.0, 0.6, "lower rate 0.003", "lower_lr"))
    assert "the one that keeps the most of the gain, lower rate 0.003 (-5.000" in worst and "baseline" not in worst
    base = gv.options([mit_row(s, start=0.5, control=0.56, clean=0.26) for s in SEEDS])[0]
    assert gv.answer_text(base, None, pd.DataFrame(), {}, "cpu scale").startswith("The transfer setting's results")


def test_the_transfer_answer_at_the_near_miss_edge():
    """A near miss whose follow rate ends exactly at the threshold has missed by nothing: the page says it narrowly
    misses the rule instead of quoting a margin of 0."""
    ign = th("transfer.option", "ignores")
    base = gv.options([mit_row(s, start=0.5, control=0.56, clean=0.26, follow=0.7) for s in SEEDS])[0]
    gain = gv.gain_verdict(base)

    def row(option, kind, kept, follow, verdict):
        return {"option": option, "kind": kind, "gain kept": V.Interval(kept, kept, kept, 3, "bootstrap_ratio"),
                "follow rate": V.Interval(follow, follow, follow, 3, "t"), "clean acc.": V.Interval(
                    0.5, 0.5, 0.5, 3, "t"), "verdict": verdict}

    table = pd.DataFrame([row("baseline (lr 0.03)", "baseline", -4.0, 0.7, "loses the gain and follows the shortcut"),
                          row("patterned fraction 0.5", "fraction", 0.9, ign, "inconclusive")])
    answer = {"best": None, "near_miss": "patterned fraction 0.5"}
    assert gv.answer_text(base, gain, table, answer, "cpu scale").endswith(
        "(inconclusive by the rule; it narrowly misses the rule, so this answer is fragile).")


def test_recovery_notes_count_ties_and_a_falling_control(monkeypatch):
    rows = [rec_row(3, {"eroded": 20, "reinit_1": 20}), rec_row(4, {"eroded": 10, "reinit_1": 20}),
            rec_row(5, {"eroded": None, "reinit_1": None}), {"seed": 6, "missing": True}]
    per_seed = gv.recovery_per_seed(rows, th("transfer.recovery", "target"))
    assert gv.recovery_ties(per_seed) == 1  # seed 5 never reaches the target with either: not a tie
    assert gv.recovery_ties(per_seed.iloc[0:0]) == 0
    assert gv.control_drop(rows) == 0.0 and gv.control_drop([]) == 0.0
    assert gv.recovery_notes(per_seed, rows) == (
        " 1 seed is a tie on the evaluation grid (the eroded network and the one with its last stage re-initialised "
        "reach the target at the same evaluated step).")
    records = rows[1]["recovery"]["result"]["arms"]["control"]["records"]
    records[1]["clean_acc"] = records[0]["clean_acc"] - 0.01
    records[3]["clean_acc"] = records[0]["clean_acc"] - 0.04
    assert gv.control_drop(rows) == pytest.approx(0.04)  # from where the control started, not from a later step
    assert gv.recovery_notes(per_seed, rows).endswith(
        "The clean control itself loses up to 0.040 of clean accuracy during recovery, so first-passage times on these "
        "curves are noisy.")
    monkeypatch.setattr(gv, "CONTROL_DROP_NOTE", gv.control_drop(rows))  # a drop at the threshold is no note
    assert "control" not in gv.recovery_notes(per_seed, rows)
    assert gv.recovery_notes(per_seed.iloc[1:2], rows[1:2]) == ""


def test_the_same_data_table_and_the_unpaired_starts(monkeypatch):
    rows = [mit_row(s, control=0.6, clean=0.3) for s in SEEDS]
    rows += [mit_row(s, "lower rate 0.01", "lower_lr", 0.01, control=0.6, clean=0.6) for s in SEEDS]
    got = gv.same_data_verdicts(rows)
    assert list(got) == ["baseline", "lower rate 0.01"]
    assert got["baseline"][1].outcome == "erodes" and got["baseline"][1].rule == "claim1.erosion"
    assert got["lower rate 0.01"][1].outcome == "prevents"
    assert gv.same_data_verdicts(rows[3:]) == {}  # no baseline
    assert gv.same_data_cell(got, "freeze 4 of 5 stages", "verdict") == "missing"
    assert gv.same_data_cell(got, "baseline", "erosion") == "0.300 [0.300, 0.300]"
    assert gv.same_data_cell(got, "lower rate 0.01", "erosion") == "0.000 [0.000, 0.000]"
    assert gv.same_data_cell(got, "lower rate 0.01", "verdict") == "prevents (confirmatory)"
    option, verdict = got["baseline"]
    bare = {"baseline": (option, dataclasses.replace(verdict, intervals={}))}  # no interval kept: computed from the runs
    assert gv.same_data_cell(bare, "baseline", "erosion") == "0.300 [0.300, 0.300]"
    assert gv.unpaired_starts(rows) == []
    moved = mit_row(3, "lower rate 0.01", "lower_lr", 0.01)
    moved["pattern"]["result"]["records"][0]["clean_acc"] += 0.004
    small = mit_row(4, "lower rate 0.01", "lower_lr", 0.01)
    small["pattern"]["result"]["records"][0]["clean_acc"] += gv.UNPAIRED_START / 2
    gone = mit_row(5, "lower rate 0.01", "lower_lr", 0.01)
    gone["pattern"]["result"]["records"][0]["clean_acc"] += 0.2
    assert gv.unpaired_starts([moved, small, {**gone, "missing": True}]) == [pytest.approx(0.004)]
    monkeypatch.setattr(gv, "UNPAIRED_START", gv.unpaired_starts([moved])[0])  # a gap at the threshold is paired
    assert gv.unpaired_starts([moved]) == []


# =============================================================== the older rules still on the pages, at their edges

def _summary(follow_by_lr: dict, seeds=SEEDS) -> pd.DataFrame:
    """Rows of ``analysis.summary_frame`` (one per seed and rate): the pattern run's final follow rate, per seed."""
    return pd.DataFrame([{"finetune_lr": lr, "seed": s, "follow_pattern": f[i] if isinstance(f, tuple) else f,
                          "clean_control": 0.6, "clean_pattern": 0.3}
                         for lr, f in follow_by_lr.items() for i, s in enumerate(seeds)])


def test_claim_2_holds_partly_and_fails_at_its_edges():
    from erosion_utils.report import claims

    follows, partly = th("claim2.reliance", "follows"), th("claim2.reliance", "partly")
    c = claims.claim_pattern_reliance
    assert c(_summary({0.1: follows + 2 * P}))["verdict"] == "reproduced"
    assert c(_summary({0.1: follows}))["verdict"] == "inconclusive"
    assert c(_summary({0.1: follows - 2 * P}))["verdict"] == "partly reproduced"
    assert c(_summary({0.1: partly + 2 * P}))["verdict"] == "partly reproduced"
    assert c(_summary({0.1: partly}))["verdict"] == "inconclusive"
    assert c(_summary({0.1: partly - 2 * P}))["verdict"] == "not reproduced"
    assert c(_summary({0.1: 0.99}, seeds=(3, 4)))["verdict"] == "inconclusive"
    mixed = c(_summary({0.01: 0.3, 0.1: 0.95}))
    assert mixed["verdict"] == "partly reproduced"
    assert mixed["per_lr"][0.01]["status"] == "fails" and mixed["per_lr"][0.1]["status"] == "holds"
    assert c(_summary({0.01: 0.3, 0.1: 0.6}))["per_lr"][0.1]["status"] == "partly"
    spread = c(_summary({0.1: (0.85, 0.95, 0.99)}))["per_lr"][0.1]  # seeds that differ: by hand
    sd = math.sqrt(((0.85 - 0.93) ** 2 + (0.95 - 0.93) ** 2 + (0.99 - 0.93) ** 2) / 2)
    assert spread["follow_mean"] == pytest.approx(0.93) and spread["ci_high"] == 1.0
    assert spread["ci_low"] == pytest.approx(0.93 - T_975_2 * sd / math.sqrt(3))
    assert spread["status"] == "inconclusive"  # 0.77 to 1: straddles 0.9
    # at the plan's stated numbers (follows 0.90, partly 0.50), written out: a moved threshold fails here even if the
    # tests that read it from the plan move with it
    assert c(_summary({0.1: 0.45}))["verdict"] == "not reproduced"
    assert c(_summary({0.1: 0.55}))["verdict"] == "partly reproduced"
    assert c(_summary({0.1: 0.85}))["verdict"] == "partly reproduced"
    assert c(_summary({0.1: 0.95}))["verdict"] == "reproduced"


def test_claim_1_at_its_edges():
    from erosion_utils.report import claims

    t = th("claim1.erosion", "erosion")
    for erosion, outcome in ((t + 2 * P, "holds"), (t, "inconclusive"), (t - 2 * P, "does not hold")):
        got = claims.erosion_verdict({s: 0.6 for s in SEEDS}, {s: 0.6 - erosion for s in SEEDS}, [])
        assert got.outcome == outcome, erosion
    assert claims.erosion_verdict({3: 0.9, 4: 0.9}, {3: 0.1, 4: 0.1}, []).outcome == "inconclusive"


def test_exploratory_instability_rule_at_its_spike_share_and_two_thirds():
    from erosion_utils.report import mechanism as mr

    assert mr.SPIKE_SHARE == 0.9 and mr.SPIKE_LOSS == 1.0

    def frame(spiking, eroding, warm_erosion=0.02):
        rows = [{"groups": ("map",), "missing": False, "finetune_lr": 0.1, "warmup_epochs": 0.0, "erosion": 0.4,
                 "eroded": True, "spike_pattern": i < spiking, "follow_cross_step": 50.0, "peak_step_pattern": 10.0}
                for i in range(eroding)]
        rows += [{"groups": ("warmup",), "missing": False, "finetune_lr": 0.1, "warmup_epochs": 1.0,
                  "erosion": warm_erosion, "eroded": warm_erosion > 0.1, "spike_pattern": False,
                  "follow_cross_step": math.nan, "peak_step_pattern": 10.0} for _ in range(3)]
        return pd.DataFrame(rows)

    assert mr.instability_verdict(frame(9, 10), 0.1)["verdict"] == "supported"  # 0.9: at least the share
    assert mr.instability_verdict(frame(8, 9), 0.1)["verdict"] == "partly supported"  # 0.889
    assert mr.instability_verdict(frame(2, 3), 0.1)["verdict"] == "partly supported"  # two thirds: associated
    assert mr.instability_verdict(frame(3, 5), 0.1)["verdict"] == "not supported"  # 0.6 < two thirds
    assert mr.instability_verdict(frame(9, 10, warm_erosion=0.3), 0.1)["verdict"] == "not supported"


def test_exploratory_noise_or_steps_needs_two_thirds_of_the_informative_pairs():
    from erosion_utils.report import mechanism as mr

    def pairs(restored_by_steps: int, informative: int) -> pd.DataFrame:
        return pd.DataFrame([{"finetune_lr": 0.1, "batch_size": b, "reference": 0.4, "same_epochs": 0.0,
                              "same_steps": 0.4 if i < restored_by_steps else 0.0, "same_noise": 0.0}
                             for i, b in enumerate([32, 256, 512, 1024][:informative])])

    assert mr.noise_or_steps(pairs(2, 3))["verdict"] == "number of steps"  # exactly two thirds
    assert mr.noise_or_steps(pairs(1, 2))["verdict"] == "neither"  # a half is not enough
    assert mr.noise_or_steps(pairs(3, 4))["verdict"] == "number of steps"
    margin = mr.MATCH_MARGIN
    edge = pd.DataFrame([{"finetune_lr": 0.1, "batch_size": 32, "reference": 0.5, "same_epochs": 0.5 - margin - 0.01,
                          "same_steps": 0.5 - margin, "same_noise": 0.5 - margin - 0.01}])
    assert mr.noise_or_steps(edge)["verdict"] == "number of steps"  # within the margin (inclusive) restores


def test_exploratory_cell_statistics_use_every_seed():
    from erosion_utils.report import mechanism as mr

    frame = pd.DataFrame([{"batch_size": 64, "finetune_lr": 0.1, "erosion": e, "follow_pattern": f}
                          for e, f in ((0.1, 0.97), (0.2, 1.0), (0.3, 0.99))])
    row = mr.cell_stats(frame, ["batch_size", "finetune_lr"]).iloc[0]
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert row.seeds == 3 and row.erosion_mean == pytest.approx(0.2) and row.erosion_hi == pytest.approx(0.2 + half)
    assert row.follow_pattern_hi == 1.0 and row.follow_pattern_lo >= 0  # a rate's interval stays in [0, 1]


# ------------------------------------------------------------- descriptive numbers the mechanism page prints

def test_r_squared_known_answers():
    exact = [{"a": a, "b": b, "y": 1 + 2 * a - b} for a, b in ((0, 0), (1, 0), (0, 1), (2, 3), (3, 1))]
    assert mv.r_squared(exact, ("a", "b"), "y") == pytest.approx(1.0)
    # one regressor: R^2 is the squared correlation, worked out independently
    pts = [{"a": a, "y": y} for a, y in ((0, 0.0), (1, 1.0), (2, 0.0), (3, 2.0), (4, 1.5))]
    r = np.corrcoef([p["a"] for p in pts], [p["y"] for p in pts])[0, 1]
    assert mv.r_squared(pts, ("a",), "y") == pytest.approx(r ** 2)
    assert 0 < r ** 2 < 1
    # as many runs as parameters (a line through two points): no R^2; one more run: a value
    assert math.isnan(mv.r_squared(pts[:2], ("a",), "y"))
    assert not math.isnan(mv.r_squared(pts[:3], ("a",), "y"))
    assert math.isnan(mv.r_squared([{"a": a, "y": 0.5} for a in range(5)], ("a",), "y"))  # nothing to explain


def test_follow_slope_reads_the_monitor_after_its_epoch():
    def entry(points):
        return {"result": {"steps_per_epoch": 10, "monitor": [{"step": s, "follow_rate": f} for s, f in points]}}
    # slope 0.1 per epoch from epoch 1 on; the early points (a different slope) are left out; epoch 1 itself counts
    pts = [(0, 0.9), (5, 0.0), (10, 0.1), (20, 0.2), (30, 0.3)]
    assert mv.follow_slope(entry(pts), 1.0) == pytest.approx(0.1)
    assert math.isnan(mv.follow_slope(entry(pts[:4]), 1.0))  # two points after epoch 1: no slope
    assert mv.follow_slope(entry(pts[1:4] + [(40, 0.6)]), 1.0) == pytest.approx(np.polyfit([1, 2, 4], [0.1, 0.2, 0.6], 1)[0])
