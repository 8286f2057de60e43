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
    seeds = analysis.seed_table(analysis.summary_frame(runs))
    c1 = claims.claim_accuracy_drop(seeds)
    assert c1["per_lr"][0.1]["holds"] and not c1["per_lr"][0.01]["holds"]
    assert c1["verdict"] == "partly reproduced"
    c2 = claims.claim_pattern_reliance(seeds)
    assert c2["verdict"] == "partly reproduced" and c2["per_lr"][0.1]["follow_mean"] == pytest.approx(0.99)
    sentence = claims.lr_dependence_sentence(c1)
    assert "lr 0.1" in sentence and "does not at lr 0.01" in sentence
    all_hold = analysis.seed_table(analysis.summary_frame(runs_at(0.1, [0.6, 0.7, 0.65], 0.99)))
    assert claims.claim_accuracy_drop(all_hold)["verdict"] == "reproduced"
    none_hold = analysis.seed_table(analysis.summary_frame(runs_at(0.01, [0.0, 0.01, 0.0], 0.05)))
    assert claims.claim_accuracy_drop(none_hold)["verdict"] == "not reproduced"
    assert claims.claim_pattern_reliance(none_hold)["verdict"] == "not reproduced"
    assert "does not happen" in claims.lr_dependence_sentence(claims.claim_accuracy_drop(none_hold))


def test_claim_one_needs_the_confidence_interval_above_the_threshold():
    # mean erosion 0.2 but widely spread: the lower end of the CI falls below 0.1
    seeds = analysis.seed_table(analysis.summary_frame(runs_at(0.1, [0.0, 0.6, 0.0], 0.99)))
    assert claims.claim_accuracy_drop(seeds)["verdict"] == "not reproduced"


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
    assert (c3["computed"], c3["eroded"], c3["missing"]) == (4, 2, 1)
    assert c3["verdict"] == "partly reproduced"
    assert c3["per_lr"][0.1] == {"computed": 1, "eroded": 1, "status": "holds",
                                 "eroded_settings": [analysis.variant_label(breadth_rows()[3]["config"])]}
    assert c3["per_lr"][0.01]["status"] == "partly"  # 1 of 3 settings at lr 0.01 erodes
    assert claims.regime(c3) == "reproduced at lr 0.1 (1 of 1 setting), partly at lr 0.01 (1 of 3 settings)"


def test_claim_representations_depth_rule():
    rows = []
    for depth in range(4):
        for snap, acc in (("control", 0.8), ("pattern", 0.8 - 0.1 * depth)):
            rows.append({"finetune_lr": 0.1, "snapshot": snap, "depth": depth, "relative_depth": depth / 3,
                         "layer": f"l{depth}", "probe_accuracy": acc, "rank": 100 - 20 * depth * (snap == "pattern")})
    drop = analysis.layer_erosion(pd.DataFrame(rows))
    assert drop.probe_drop.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert drop.rank_ratio.iloc[-1] == pytest.approx(0.4)
    c4 = claims.claim_representations(drop)
    assert c4["verdict"] == "reproduced"
    assert c4["per_lr"][0.1]["max_drop_layer"] == "l3"
    shallow_only = drop.assign(probe_drop=[0.3, 0.2, 0.0, 0.0])
    assert claims.claim_representations(shallow_only)["verdict"] == "not reproduced"


def test_provenance_frame_drops_duplicates():
    e = entry([0.9, 0.1], [0, 1], wall=3.5)
    frame = analysis.provenance_frame([e, e])
    assert len(frame) == 1 and frame.wall_time_s.iloc[0] == 3.5
