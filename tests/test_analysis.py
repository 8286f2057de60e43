"""Summaries, confidence intervals and claim verdicts on hand-built results with known answers."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from erosion_utils.report import analysis, claims


def entry(clean: list[float], follow: list[float], matched: list[float] | None = None, wall: float = 1.0) -> dict:
    matched = matched or clean
    records = [{"step": 10 * i, "epoch": i / 10, "train_loss": 0.1, "clean_acc": c, "matched_acc": m,
                "mismatched_acc": c, "follow_rate": f} for i, (c, f, m) in enumerate(zip(clean, follow, matched))]
    return {"name": "finetune", "key": f"k{hash((tuple(clean), tuple(follow))) & 0xffff}",
            "params": {}, "result": {"records": records, "total_steps": 10 * (len(clean) - 1)},
            "provenance": {"git_commit": "abc", "git_dirty": False, "device": "cpu", "torch": "x",
                           "wall_time_s": wall, "seed": 0, "utc_time": "t"}}


def runs_at(lr: float, drops: list[float], follow: float) -> list[dict]:
    return [{"seed": s, "finetune_lr": lr, "pattern": entry([0.9, 0.9, 0.9 - d], [0.0, 0.1, follow]),
             "control": entry([0.9, 0.9, 0.9], [0.0, 0.0, 0.02])} for s, d in enumerate(drops)]


def test_run_summary_numbers():
    s = analysis.run_summary(entry([0.8, 0.7, 0.3, 0.2], [0.0, 0.2, 0.8, 0.9], [0.8, 0.9, 1.0, 1.0]),
                             entry([0.8, 0.8, 0.79, 0.78], [0.0, 0.0, 0.0, 0.01]))
    assert s["clean_start"] == 0.8 and s["clean_pattern"] == 0.2 and s["clean_control"] == 0.78
    assert s["erosion"] == pytest.approx(0.58)
    assert s["drop_from_start"] == pytest.approx(0.6)
    assert s["follow_pattern"] == 0.9 and s["follow_control"] == 0.01
    assert s["matched_start"] == 0.8 and s["matched_pattern"] == 1.0
    assert s["steps_to_erosion"] == 20  # first step at or below 0.8 - 0.5 * 0.6 = 0.5
    assert s["steps_before_erosion"] == 10  # the evaluation before: the grid places the moment in (10, 20]
    assert s["min_clean_control"] == 0.78
    frame = pd.DataFrame([s, analysis.run_summary(entry([0.8, 0.79, 0.8], [0, 0, 0]), entry([0.8, 0.8, 0.8], [0, 0, 0]))])
    assert analysis.half_drop_interval(frame) == ["10–20", "no drop"]


def test_run_summary_without_drop_has_no_erosion_step():
    s = analysis.run_summary(entry([0.8, 0.79, 0.8], [0, 0, 0]), entry([0.8, 0.8, 0.8], [0, 0, 0]))
    assert s["steps_to_erosion"] is None
    assert s["erosion"] == pytest.approx(0.0)


def test_mean_ci_matches_student_t():
    m, lo, hi = analysis.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0
    assert hi - m == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))  # t(0.975, 2) * sd / sqrt(n)
    assert m - lo == pytest.approx(hi - m)
    single = analysis.mean_ci([0.5])
    assert single[0] == 0.5 and math.isnan(single[1]) and math.isnan(single[2])
    assert all(math.isnan(v) for v in analysis.mean_ci([]))


def test_trajectory_frame_and_seed_table():
    runs = runs_at(0.1, [0.6, 0.7, 0.65], 1.0) + runs_at(0.01, [0.0, 0.01, 0.0], 0.05)
    traj = analysis.trajectory_frame(runs)
    assert len(traj) == 6 * 2 * 3  # runs x conditions x records
    assert set(traj.condition) == {"pattern", "control"}
    table = analysis.seed_table(analysis.summary_frame(runs))
    erosion = table[table.quantity == "erosion"].set_index("finetune_lr")
    assert erosion.loc[0.1, "mean"] == pytest.approx(0.65)
    assert erosion.loc[0.1, "seeds"] == 3
    assert erosion.loc[0.01, "mean"] == pytest.approx(0.01 / 3)


def test_claim_one_and_two_verdicts_per_learning_rate():
    runs = runs_at(0.1, [0.6, 0.7, 0.65], 0.99) + runs_at(0.01, [0.0, 0.01, 0.0], 0.05)
    summary = analysis.summary_frame(runs)
    c1 = claims.claim_accuracy_drop(summary, runs)
    assert c1["per_lr"][0.1]["holds"] and not c1["per_lr"][0.01]["holds"]
    assert c1["per_lr"][0.01]["status"] == "fails"  # the interval lies below 0.1: decided, not inconclusive
    assert c1["verdict"] == "partly reproduced" and c1["label"] in ("confirmatory", "exploratory")
    # the paired t-interval of (0.6, 0.7, 0.65) by hand: mean 0.65, half-width t(0.975, 2) * 0.05 / sqrt(3)
    assert c1["per_lr"][0.1]["ci_low"] == pytest.approx(0.65 - 4.302652729911275 * 0.05 / math.sqrt(3))
    c2 = claims.claim_pattern_reliance(summary, runs)
    assert c2["verdict"] == "partly reproduced" and c2["per_lr"][0.1]["follow_mean"] == pytest.approx(0.99)
    sentence = claims.lr_dependence_sentence(c1)
    assert "lr 0.1" in sentence and "does not at lr 0.01" in sentence
    all_hold = analysis.summary_frame(runs_at(0.1, [0.6, 0.7, 0.65], 0.99))
    assert claims.claim_accuracy_drop(all_hold)["verdict"] == "reproduced"
    none_hold = analysis.summary_frame(runs_at(0.01, [0.0, 0.01, 0.0], 0.05))
    assert claims.claim_accuracy_drop(none_hold)["verdict"] == "not reproduced"
    assert claims.claim_pattern_reliance(none_hold)["verdict"] == "not reproduced"
    assert "does not happen" in claims.lr_dependence_sentence(claims.claim_accuracy_drop(none_hold))


def test_claim_one_is_inconclusive_when_the_interval_reaches_the_threshold():
    # mean erosion 0.2 but widely spread: the interval straddles 0.1, so the rate cannot be called either way
    summary = analysis.summary_frame(runs_at(0.1, [0.0, 0.6, 0.0], 0.99))
    c1 = claims.claim_accuracy_drop(summary)
    assert c1["verdict"] == "inconclusive" and c1["per_lr"][0.1]["status"] == "inconclusive"
    assert "inconclusive" in claims.lr_dependence_sentence(c1)
    # two seeds: inconclusive whatever the values
    assert claims.claim_accuracy_drop(analysis.summary_frame(runs_at(0.1, [0.6, 0.6], 0.99)))["verdict"] == \
        "inconclusive"


def breadth_rows() -> list[dict]:
    def cfg(**kw):
        base = dict(arch="resnet18", dataset="cifar10", pattern="colour", pattern_size=4, fraction=1.0,
                    finetune_lr=0.01, finetune_weight_decay=5e-4)
        return {**base, **kw}

    eroding = {"pattern": entry([0.9, 0.2], [0, 1]), "control": entry([0.9, 0.85], [0, 0])}
    flat = {"pattern": entry([0.9, 0.9], [0, 0]), "control": entry([0.9, 0.9], [0, 0])}
    return [{"factor": "base", "config": cfg(), **flat},
            {"factor": "arch", "config": cfg(arch="mlp"), **eroding},
            {"factor": "pattern_size", "config": cfg(pattern_size=8), **flat},
            {"factor": "base", "config": cfg(finetune_lr=0.1), **eroding},
            {"factor": "pattern", "config": cfg(pattern="noise", finetune_lr=0.1), "missing": True}]


def test_breadth_frame_labels_and_missing():
    frame = analysis.breadth_frame(breadth_rows())
    assert list(frame.setting) == ["base", "network: MLP", "pattern size k = 8", "base", "pattern: noise code"]
    assert frame.label.iloc[1].startswith("MLP on CIFAR-10, colour patch k = 4 on every image, lr ")
    assert "/" not in "".join(frame.label) and "=0" not in "".join(frame.label)  # words, not internal keys
    assert frame.missing.tolist() == [False, False, False, False, True]
    assert math.isnan(frame.erosion.iloc[-1])
    assert frame.erosion.iloc[1] == pytest.approx(0.65)
    c3 = claims.claim_breadth(frame)
    assert (c3["computed"], c3["eroded"], c3["missing"]) == (4, 2, 1)  # descriptive counts: one seed each
    assert c3["per_lr"][0.1]["eroded_settings"] == [analysis.variant_label(breadth_rows()[3]["config"])]
    # one seed per setting: no interval, so no setting is decided and the claim is inconclusive
    assert c3["verdict"] == "inconclusive" and c3["per_lr"][0.1]["status"] == "inconclusive"
    assert c3["per_lr"][0.1]["seeds_per_setting"] == 1
    assert claims.regime(c3) == ("inconclusive at every rate tested (lr 0.01 and 0.1)")


def rep_entry(seed: int, drops: list[float], lr: float = 0.1) -> dict:
    """A representation result whose pattern run ends ``drops[d]`` below the control's probe accuracy at depth d."""
    n = len(drops)

    def layers(model: str) -> list[dict]:
        return [{"layer": f"l{d}", "depth": d, "relative_depth": d / (n - 1),
                 "probe_accuracy": 0.8 - (drops[d] if model == "pattern" else 0.0),
                 "rank": 100 - 20 * d * (model == "pattern")} for d in range(n)]

    return {"name": "representations", "key": f"r{seed}", "params": {"finetune_lr": lr, "seed": seed},
            "provenance": {"utc_time": "2026-01-01T00:00:00+00:00", "seed": seed},
            "result": {"total_steps": 10, "snapshots": [{"model": "pattern", "step": 10, "layers": layers("pattern")},
                                                        {"model": "control", "step": 10, "layers": layers("control")}]}}


def test_claim_representations_depth_rule():
    deep = [rep_entry(s, [0.0, 0.1 + e, 0.2 + e, 0.3 + e]) for s, e in enumerate((0.0, 0.01, -0.01))]
    c4 = claims.claim_representations(deep)
    assert c4["verdict"] == "reproduced" and c4["per_lr"][0.1]["status"] == "holds"
    assert c4["per_lr"][0.1]["max_drop_layer"] == "l3"
    assert c4["per_lr"][0.1]["deepest_drop"] == pytest.approx(0.3)
    assert c4["per_lr"][0.1]["last_rank_ratio"] == pytest.approx(0.4)
    shallow_only = [rep_entry(s, [0.3 + e, 0.2, 0.0, 0.0 + e / 10]) for s, e in enumerate((0.0, 0.01, -0.01))]
    assert claims.claim_representations(shallow_only)["verdict"] == "not reproduced"
    one_seed = claims.claim_representations(deep[:1])
    assert one_seed["verdict"] == "inconclusive"  # one seed: no interval


def test_provenance_frame_drops_duplicates():
    e = entry([0.9, 0.1], [0, 1], wall=3.5)
    frame = analysis.provenance_frame([e, e])
    assert len(frame) == 1 and frame.wall_time_s.iloc[0] == 3.5
