"""The paper's claims as testable hypotheses, with a verdict computed from our results.

Each verdict follows fixed, stated thresholds (below); nothing here is tuned to the paper's figures.
"""
from __future__ import annotations

import math

import pandas as pd

EROSION_THRESHOLD = 0.10  # clean-accuracy loss relative to the control that we call erosion
FOLLOW_THRESHOLD = 0.90  # share of mismatched predictions that follow the pattern that we call reliance
FOLLOW_PARTIAL = 0.50
PROBE_THRESHOLD = 0.05  # per-layer probe-accuracy loss relative to the control that we call eroded features

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not tested")


def _overall(holds: list[bool]) -> str:
    if not holds:
        return "not tested"
    return "reproduced" if all(holds) else "partly reproduced" if any(holds) else "not reproduced"


def claim_accuracy_drop(seeds: pd.DataFrame) -> dict:
    """Claim 1: continued training on patterned data lowers clean test accuracy relative to the clean control.
    Holds at a learning rate when the lower end of the 95% CI of the erosion exceeds the threshold."""
    per_lr, holds = {}, []
    for lr, g in seeds[seeds.quantity == "erosion"].groupby("finetune_lr"):
        row = g.iloc[0]
        lower = row.ci_low if not math.isnan(row.ci_low) else row["mean"]
        ok = bool(lower > EROSION_THRESHOLD)
        holds.append(ok)
        per_lr[lr] = {"erosion_mean": row["mean"], "ci_low": row.ci_low, "ci_high": row.ci_high,
                      "seeds": int(row.seeds), "holds": ok}
    return {"claim": "Continued training on patterned data sharply lowers clean test accuracy, relative to "
                     "continuing on clean data.", "verdict": _overall(holds), "per_lr": per_lr}


def claim_pattern_reliance(seeds: pd.DataFrame) -> dict:
    """Claim 2: predictions on images carrying another class's pattern follow the pattern."""
    per_lr, holds, partial = {}, [], []
    for lr, g in seeds[seeds.quantity == "follow_pattern"].groupby("finetune_lr"):
        m = float(g.iloc[0]["mean"])
        holds.append(m >= FOLLOW_THRESHOLD)
        partial.append(m >= FOLLOW_PARTIAL)
        per_lr[lr] = {"follow_mean": m, "ci_low": g.iloc[0].ci_low, "ci_high": g.iloc[0].ci_high,
                      "holds": m >= FOLLOW_THRESHOLD}
    verdict = _overall(holds)
    if verdict == "not reproduced" and any(partial):
        verdict = "partly reproduced"
    return {"claim": "The fine-tuned network relies on the pattern: with another class's pattern, the prediction "
                     "follows the pattern.", "verdict": verdict, "per_lr": per_lr}


def claim_breadth(breadth: pd.DataFrame) -> dict:
    """Claim 3: the phenomenon holds across architectures and pattern variants (one seed per setting)."""
    done = breadth[~breadth.missing]
    eroded = done[done.erosion > EROSION_THRESHOLD]
    by_lr = {lr: {"computed": int(len(g)), "eroded": int((g.erosion > EROSION_THRESHOLD).sum()),
                  "eroded_settings": sorted(g[g.erosion > EROSION_THRESHOLD].label)}
             for lr, g in done.groupby("finetune_lr")}
    return {"claim": "The phenomenon holds across architectures and pattern variants.",
            "verdict": _overall([bool(e > EROSION_THRESHOLD) for e in done.erosion]),
            "computed": int(len(done)), "eroded": int(len(eroded)), "missing": int(breadth.missing.sum()),
            "per_lr": by_lr}


def claim_representations(layer_drop: pd.DataFrame) -> dict:
    """Claim 4: pre-learned features erode inside the network, and depth matters. Holds at a learning rate when
    some layer's probe accuracy falls by more than the threshold relative to the control and the mean fall in the
    deeper half of the network exceeds that in the shallower half."""
    per_lr, holds = {}, []
    for lr, g in layer_drop.groupby("finetune_lr"):
        deep = g[g.relative_depth >= 0.5].probe_drop.mean()
        shallow = g[g.relative_depth < 0.5].probe_drop.mean()
        worst = g.loc[g.probe_drop.idxmax()]
        ok = bool(worst.probe_drop > PROBE_THRESHOLD and deep > shallow)
        holds.append(ok)
        per_lr[lr] = {"max_probe_drop": float(worst.probe_drop), "max_drop_layer": worst.layer,
                      "deep_mean_drop": float(deep), "shallow_mean_drop": float(shallow),
                      "last_rank_ratio": float(g.sort_values("depth").rank_ratio.iloc[-1]), "holds": ok}
    return {"claim": "Pre-learned features erode inside the network (per-layer probe accuracy and rank change), and "
                     "it matters at which depth.", "verdict": _overall(holds), "per_lr": per_lr}


def all_claims(seeds: pd.DataFrame, breadth: pd.DataFrame, layer_drop: pd.DataFrame) -> list[dict]:
    return [claim_accuracy_drop(seeds), claim_pattern_reliance(seeds), claim_breadth(breadth),
            claim_representations(layer_drop)]


def per_lr_frame(claim: dict) -> pd.DataFrame:
    """A claim's per-learning-rate evidence as a table."""
    return pd.DataFrame(claim["per_lr"]).T.rename_axis("finetune_lr")


def lr_dependence_sentence(claim: dict) -> str:
    """One sentence on whether claim 1 depends on the fine-tuning learning rate, from the evidence."""
    holds = [lr for lr, v in claim["per_lr"].items() if v["holds"]]
    fails = [lr for lr, v in claim["per_lr"].items() if not v["holds"]]
    if holds and fails:
        return (f"In our reconstruction, whether erosion happens depends on the fine-tuning learning rate: it does at "
                f"lr {', '.join(map(str, sorted(holds)))} and does not at lr {', '.join(map(str, sorted(fails)))}.")
    if holds:
        return "In our reconstruction, erosion happens at every fine-tuning learning rate tested."
    return "In our reconstruction, erosion does not happen at any fine-tuning learning rate tested."
