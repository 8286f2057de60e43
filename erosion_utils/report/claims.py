"""The paper's claims as testable hypotheses, with a verdict computed from our results.

Each verdict follows fixed, stated thresholds (below); nothing here is tuned to the paper's figures. Every verdict
is also given per fine-tuning learning rate (its *regime*: "reproduced at lr 0.1, not at lr 0.01"), and a claim
whose results are missing is "not tested".
"""
from __future__ import annotations

import math

import pandas as pd

from .words import rates_phrase

EROSION_THRESHOLD = 0.10  # clean-accuracy loss relative to the control that we call erosion
FOLLOW_THRESHOLD = 0.90  # share of mismatched predictions that follow the pattern that we call reliance
FOLLOW_PARTIAL = 0.50
PROBE_THRESHOLD = 0.05  # per-layer probe-accuracy loss relative to the control that we call eroded features
PICKUP_THRESHOLD = 0.05  # rise of matched accuracy or follow rate over fine-tuning that we call picking up the pattern

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not tested")
# per learning rate: the claim holds, holds in part, or does not hold there
STATUS_WORDS = {"holds": "reproduced", "partly": "partly reproduced", "fails": "not reproduced"}

RULES = {
    1: f"at a fine-tuning learning rate, the claim holds when the lower end of the 95% confidence interval over "
       f"seeds of the erosion (control minus pattern-run final clean accuracy) exceeds {EROSION_THRESHOLD:g}; with "
       f"one seed there is no interval and the mean is used.",
    2: f"holds at a learning rate when the mean follow rate on mismatched test images is at least "
       f"{FOLLOW_THRESHOLD:g}, partly when it is at least {FOLLOW_PARTIAL:g}.",
    3: f"reproduced if every computed breadth setting shows erosion above {EROSION_THRESHOLD:g}, partly if some do "
       f"(one seed per setting; settings without results count for nothing).",
    4: f"holds at a learning rate when some layer's clean-label probe accuracy after pattern fine-tuning is more "
       f"than {PROBE_THRESHOLD:g} below the control's, and the mean loss over the deeper half of the layers exceeds "
       f"that over the shallower half.",
}


def _overall(holds: list[bool]) -> str:
    if not holds:
        return "not tested"
    return "reproduced" if all(holds) else "partly reproduced" if any(holds) else "not reproduced"


def _empty(frame) -> bool:
    return frame is None or len(frame) == 0


def _by_lr(frame: pd.DataFrame | None):
    """(lr, rows) groups of ``frame``; none for a missing or empty frame."""
    return [] if _empty(frame) else frame.groupby("finetune_lr")


def erosion_lower_bound(mean: float, ci_low: float) -> float:
    """What claim 1 compares with the threshold: the lower end of the CI, or the mean when there is no interval."""
    return ci_low if ci_low is not None and not math.isnan(ci_low) else mean


def erodes(mean: float, ci_low: float) -> bool:
    """Claim 1's rule at one learning rate."""
    return bool(erosion_lower_bound(mean, ci_low) > EROSION_THRESHOLD)


def picks_up_pattern(matched_start: float, matched_end: float, follow_start: float, follow_end: float) -> bool:
    """Whether fine-tuning picked the pattern up: matched accuracy or the follow rate rose by more than
    :data:`PICKUP_THRESHOLD` over the run."""
    return bool(matched_end - matched_start > PICKUP_THRESHOLD or follow_end - follow_start > PICKUP_THRESHOLD)


def claim_accuracy_drop(seeds: pd.DataFrame | None) -> dict:
    """Claim 1: continued training on patterned data lowers clean test accuracy relative to the clean control.
    Holds at a learning rate when the lower end of the 95% CI of the erosion exceeds the threshold."""
    per_lr, holds = {}, []
    for lr, g in _by_lr(None if _empty(seeds) else seeds[seeds.quantity == "erosion"]):
        row = g.iloc[0]
        ok = erodes(row["mean"], row.ci_low)
        holds.append(ok)
        per_lr[float(lr)] = {"erosion_mean": float(row["mean"]), "ci_low": float(row.ci_low),
                             "ci_high": float(row.ci_high), "seeds": int(row.seeds), "holds": ok,
                             "status": "holds" if ok else "fails"}
    return {"claim": "Continued training on patterned data sharply lowers clean test accuracy, relative to "
                     "continuing on clean data.", "verdict": _overall(holds), "per_lr": per_lr, "rule": RULES[1]}


def claim_pattern_reliance(seeds: pd.DataFrame | None) -> dict:
    """Claim 2: predictions on images carrying another class's pattern follow the pattern."""
    per_lr, holds, partial = {}, [], []
    for lr, g in _by_lr(None if _empty(seeds) else seeds[seeds.quantity == "follow_pattern"]):
        m = float(g.iloc[0]["mean"])
        holds.append(m >= FOLLOW_THRESHOLD)
        partial.append(m >= FOLLOW_PARTIAL)
        per_lr[float(lr)] = {"follow_mean": m, "ci_low": float(g.iloc[0].ci_low), "ci_high": float(g.iloc[0].ci_high),
                             "seeds": int(g.iloc[0].seeds), "holds": m >= FOLLOW_THRESHOLD,
                             "status": "holds" if m >= FOLLOW_THRESHOLD else "partly" if m >= FOLLOW_PARTIAL
                             else "fails"}
    verdict = _overall(holds)
    if verdict == "not reproduced" and any(partial):
        verdict = "partly reproduced"
    return {"claim": "The fine-tuned network relies on the pattern: with another class's pattern, the prediction "
                     "follows the pattern.", "verdict": verdict, "per_lr": per_lr, "rule": RULES[2]}


def claim_breadth(breadth: pd.DataFrame | None) -> dict:
    """Claim 3: the phenomenon holds across architectures and pattern variants (one seed per setting)."""
    if _empty(breadth):
        return {"claim": "The phenomenon holds across architectures and pattern variants.", "verdict": "not tested",
                "computed": 0, "eroded": 0, "missing": 0, "per_lr": {}, "rule": RULES[3]}
    done = breadth[~breadth.missing]
    eroded = done[done.erosion > EROSION_THRESHOLD]
    by_lr = {}
    for lr, g in done.groupby("finetune_lr"):
        n_eroded = int((g.erosion > EROSION_THRESHOLD).sum())
        by_lr[float(lr)] = {"computed": int(len(g)), "eroded": n_eroded,
                            "eroded_settings": sorted(g[g.erosion > EROSION_THRESHOLD].label),
                            "status": "holds" if n_eroded == len(g) else "partly" if n_eroded else "fails"}
    return {"claim": "The phenomenon holds across architectures and pattern variants.",
            "verdict": _overall([bool(e > EROSION_THRESHOLD) for e in done.erosion]),
            "computed": int(len(done)), "eroded": int(len(eroded)), "missing": int(breadth.missing.sum()),
            "per_lr": by_lr, "rule": RULES[3]}


def claim_representations(layer_drop: pd.DataFrame | None) -> dict:
    """Claim 4: pre-learned features erode inside the network, and depth matters. Holds at a learning rate when
    some layer's probe accuracy falls by more than the threshold relative to the control and the mean fall in the
    deeper half of the network exceeds that in the shallower half."""
    per_lr, holds = {}, []
    for lr, g in _by_lr(layer_drop):
        deep = float(g[g.relative_depth >= 0.5].probe_drop.mean())
        shallow = float(g[g.relative_depth < 0.5].probe_drop.mean())
        worst = g.loc[g.probe_drop.idxmax()]
        ok = bool(worst.probe_drop > PROBE_THRESHOLD and deep > shallow)
        holds.append(ok)
        per_lr[float(lr)] = {"max_probe_drop": float(worst.probe_drop), "max_drop_layer": worst.layer,
                             "deep_mean_drop": deep, "shallow_mean_drop": shallow,
                             "last_rank_ratio": float(g.sort_values("depth").rank_ratio.iloc[-1]), "holds": ok,
                             "status": "holds" if ok else "fails"}
    return {"claim": "Pre-learned features erode inside the network (per-layer probe accuracy and rank change), and "
                     "it matters at which depth.", "verdict": _overall(holds), "per_lr": per_lr, "rule": RULES[4]}


def all_claims(seeds: pd.DataFrame | None, breadth: pd.DataFrame | None,
               layer_drop: pd.DataFrame | None) -> list[dict]:
    return [claim_accuracy_drop(seeds), claim_pattern_reliance(seeds), claim_breadth(breadth),
            claim_representations(layer_drop)]


def per_lr_frame(claim: dict) -> pd.DataFrame:
    """A claim's per-learning-rate evidence as a table (one row per rate, the rate as a column)."""
    if not claim["per_lr"]:
        return pd.DataFrame(columns=["finetune_lr"])
    frame = pd.DataFrame(claim["per_lr"]).T.rename_axis("finetune_lr").reset_index()
    frame["status"] = frame["status"].map(STATUS_WORDS)
    return frame.rename(columns={"status": "verdict at this rate"}).drop(columns=["holds"], errors="ignore")


def _lrs(lrs) -> str:
    return rates_phrase(lrs)


def regime(claim: dict) -> str:
    """Where the claim holds: "reproduced at lr 0.1, not at lr 0.01", "reproduced at every rate tested
    (lr 0.01 and 0.1)", "not tested (no results)"; breadth counts settings per rate."""
    per_lr = claim["per_lr"]
    if not per_lr:
        return "not tested (no results)"
    groups: dict[str, list[float]] = {}
    for lr, v in sorted(per_lr.items()):
        groups.setdefault(v["status"], []).append(lr)
    if len(groups) == 1:
        status = next(iter(groups))
        if len(per_lr) == 1:
            return f"{STATUS_WORDS[status]} at the one rate tested ({_lrs(per_lr)})"
        scope = "at any rate tested" if status == "fails" else "at every rate tested"
        return f"{STATUS_WORDS[status]} {scope} ({_lrs(per_lr)})"

    def counts(lrs) -> str:
        if "computed" not in per_lr[lrs[0]]:
            return ""
        n = [f"{per_lr[lr]['eroded']} of {per_lr[lr]['computed']}" for lr in lrs]
        return f" ({', '.join(n)} {'setting' if [per_lr[lr]['computed'] for lr in lrs] == [1] else 'settings'})"

    words = {"holds": "reproduced at", "partly": "partly at", "fails": "not at"}
    return ", ".join(f"{words[s]} {_lrs(groups[s])}{counts(groups[s])}" for s in ("holds", "partly", "fails")
                     if s in groups)


def lr_dependence_sentence(claim: dict) -> str:
    """One sentence on whether claim 1 depends on the fine-tuning learning rate, from the evidence."""
    holds = sorted(lr for lr, v in claim["per_lr"].items() if v["holds"])
    fails = sorted(lr for lr, v in claim["per_lr"].items() if not v["holds"])
    if not holds and not fails:
        return "Without results for claim 1, whether erosion depends on the fine-tuning learning rate was not tested."
    if holds and fails:
        return (f"In our reconstruction, whether erosion happens depends on the fine-tuning learning rate: it does at "
                f"{_lrs(holds)} and does not at {_lrs(fails)}.")
    if len(claim["per_lr"]) == 1:
        lr = next(iter(claim["per_lr"]))
        return (f"In our reconstruction, erosion {'happens' if holds else 'does not happen'} at the one fine-tuning "
                f"learning rate tested (lr {lr:g}); whether it depends on the rate was not tested.")
    if holds:
        return f"In our reconstruction, erosion happens at every fine-tuning learning rate tested ({_lrs(holds)})."
    return f"In our reconstruction, erosion does not happen at any fine-tuning learning rate tested ({_lrs(fails)})."
