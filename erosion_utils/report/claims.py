"""The paper's claims as testable hypotheses, with verdicts by the analysis plan (:mod:`.plan`: claims 1-4).

Every verdict compares a seed-level interval with the plan's threshold and has three outcomes (holds, does not hold,
inconclusive, and for claim 2 "partly"); it is given per fine-tuning learning rate (its *regime*: "reproduced at lr
0.1, not at lr 0.01"), labelled confirmatory or exploratory, and a claim whose results are missing is "not tested".
Nothing here is tuned to the paper's figures.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import verdicts as V
from .plan import rule
from .words import rates_phrase

EROSION_THRESHOLD = rule("claim1.erosion").thresholds["erosion"]  # erosion: control minus pattern run, clean acc.
FOLLOW_THRESHOLD = rule("claim2.reliance").thresholds["follows"]  # follow rate that we call reliance
FOLLOW_PARTIAL = rule("claim2.reliance").thresholds["partly"]
PROBE_THRESHOLD = rule("claim4.features").thresholds["probe"]  # per-layer probe-accuracy loss: eroded features
PICKUP_THRESHOLD = 0.05  # rise of matched accuracy or follow rate over fine-tuning that we call picking up the pattern

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive", "not tested")
# per learning rate: the claim holds, holds in part, does not hold, or the interval cannot tell
STATUS_WORDS = {"holds": "reproduced", "partly": "partly reproduced", "fails": "not reproduced",
                "inconclusive": "inconclusive"}
OUTCOME_STATUS = {"holds": "holds", "partly": "partly", "does not hold": "fails", "inconclusive": "inconclusive"}
RULES = {i: rule(rid).words() for i, rid in enumerate(("claim1.erosion", "claim2.reliance", "claim3.breadth",
                                                        "claim4.features"), 1)}


def _overall(statuses: list[str]) -> str:
    """A claim's verdict from its per-rate (or per-setting) statuses."""
    if not statuses:
        return "not tested"
    if all(s == "holds" for s in statuses):
        return "reproduced"
    if any(s in ("holds", "partly") for s in statuses):
        return "partly reproduced"
    if all(s == "fails" for s in statuses):
        return "not reproduced"
    return "inconclusive"


def _label(verdicts: list[V.Verdict]) -> str:
    return "exploratory" if not verdicts or any(v.label == "exploratory" for v in verdicts) else "confirmatory"


def _empty(frame) -> bool:
    return frame is None or len(frame) == 0


def _entries(runs: list[dict] | None, lr: float) -> list[dict]:
    return [e for r in runs or [] if math.isclose(r["finetune_lr"], lr) for e in (r["pattern"], r["control"],
                                                                                   r.get("pretrain"))]


def erosion_lower_bound(mean: float, ci_low: float) -> float:
    """The lower end of the CI, or the mean when there is no interval (the rule before the plan; kept for the
    exploratory designs that still quote it)."""
    return ci_low if ci_low is not None and not math.isnan(ci_low) else mean


def erodes(mean: float, ci_low: float) -> bool:
    """Claim 1's rule before the plan (lower CI end, or the mean with one seed, above the threshold): used only by
    the paper's-setting mitigation tables of the exploratory design."""
    return bool(erosion_lower_bound(mean, ci_low) > EROSION_THRESHOLD)


def picks_up_pattern(matched_start: float, matched_end: float, follow_start: float, follow_end: float) -> bool:
    """Whether fine-tuning picked the pattern up: matched accuracy or the follow rate rose by more than
    :data:`PICKUP_THRESHOLD` over the run."""
    return bool(matched_end - matched_start > PICKUP_THRESHOLD or follow_end - follow_start > PICKUP_THRESHOLD)


def erosion_verdict(control: dict, pattern: dict, entries: list[dict], rule_id: str = "claim1.erosion") -> V.Verdict:
    """Claim 1's rule on per-seed final clean accuracies (``{seed: value}``) of the controls and pattern runs."""
    def decide(ivs, th):
        return V.above(ivs["erosion"], th["erosion"]), {}

    return V.judge(rule_id, lambda lv: {"erosion": V.paired(control, pattern, lv)}, decide, entries=entries,
                   seeds=sorted(set(control) & set(pattern)))


def claim_accuracy_drop(summary: pd.DataFrame | None, runs: list[dict] | None = None) -> dict:
    """Claim 1: continued training on patterned data lowers clean test accuracy relative to the clean control, per
    learning rate (``summary``: :func:`analysis.summary_frame`, one row per seed and rate; ``runs`` its entries)."""
    per_lr = {}
    for lr, g in ([] if _empty(summary) else summary.groupby("finetune_lr")):
        v = erosion_verdict(dict(zip(g.seed, g.clean_control)), dict(zip(g.seed, g.clean_pattern)),
                            _entries(runs, lr))
        per_lr[float(lr)] = _rate_entry(v, "erosion", "erosion_mean")
    return {"claim": "Continued training on patterned data sharply lowers clean test accuracy, relative to "
                     "continuing on clean data.", **_overall_of(per_lr), "per_lr": per_lr, "rule": RULES[1]}


def _rate_entry(v: V.Verdict, interval: str, mean_key: str) -> dict:
    """One rate's evidence for claims 1 and 2: the interval named ``interval`` (its estimate as ``mean_key``), the
    status in the pages' words, the label, fragility, sensitivity and the verdict itself."""
    iv, status = v.intervals[interval], OUTCOME_STATUS[v.outcome]
    return {mean_key: iv.estimate, "ci_low": iv.lo, "ci_high": iv.hi, "seeds": iv.n, "holds": status == "holds",
            "status": status, "label": v.label, "fragile": v.fragile, "sensitivity": v.sensitivity, "verdict": v}


def _overall_of(per_lr: dict) -> dict:
    """The claim's verdict and label over its rates (in their order)."""
    return {"verdict": _overall([e["status"] for e in per_lr.values()]),
            "label": _label([e["verdict"] for e in per_lr.values()])}


def claim_pattern_reliance(summary: pd.DataFrame | None, runs: list[dict] | None = None) -> dict:
    """Claim 2: predictions on images carrying another class's pattern follow the pattern."""
    per_lr = {}
    for lr, g in ([] if _empty(summary) else summary.groupby("finetune_lr")):
        follow = dict(zip(g.seed, g.follow_pattern))

        def decide(ivs, th):
            iv = ivs["follow"]
            if V.above(iv, th["follows"]) == "holds":
                return "holds", {}
            if V.above(iv, th["partly"]) == "holds" and V.below(iv, th["follows"]) == "holds":
                return "partly", {}
            if V.below(iv, th["partly"]) == "holds":
                return "does not hold", {}
            return "inconclusive", {}

        v = V.judge("claim2.reliance", lambda lv, follow=follow: {"follow": V.rate(follow, lv)}, decide,
                    entries=_entries(runs, lr), seeds=sorted(follow))
        per_lr[float(lr)] = _rate_entry(v, "follow", "follow_mean")
    return {"claim": "The fine-tuned network relies on the pattern: with another class's pattern, the prediction "
                     "follows the pattern.", **_overall_of(per_lr), "per_lr": per_lr, "rule": RULES[2]}


def claim_breadth(breadth: pd.DataFrame | None, rows: list[dict] | None = None) -> dict:
    """Claim 3: the phenomenon holds across architectures and pattern variants. Each setting is judged by claim 1's
    rule on its seeds (one seed per setting: inconclusive); the descriptive counts of settings whose single-seed
    erosion exceeds the threshold are kept for the text."""
    empty = {"claim": "The phenomenon holds across architectures and pattern variants.", "verdict": "not tested",
             "label": "exploratory", "computed": 0, "eroded": 0, "missing": 0, "per_lr": {}, "rule": RULES[3]}
    if _empty(breadth):
        return empty
    done = breadth[~breadth.missing]
    by_row = {}
    for row in rows or []:
        if not row.get("missing"):
            by_row.setdefault(row["config"]["finetune_lr"], []).extend([row["pattern"], row["control"]])
    per_lr, statuses, verdicts = {}, [], []
    for lr, g in done.groupby("finetune_lr"):
        setting_status, rate_verdicts = [], []
        for label, s in g.groupby("label", sort=False):
            seeds = list(range(len(s))) if "seed" not in s else list(s.seed)
            v = erosion_verdict(dict(zip(seeds, s.clean_control)), dict(zip(seeds, s.clean_pattern)),
                                by_row.get(lr, []), "claim3.breadth")
            setting_status.append(OUTCOME_STATUS[v.outcome])
            rate_verdicts.append(v)
        verdicts.extend(rate_verdicts)
        n_eroded = int((g.erosion > EROSION_THRESHOLD).sum())
        status = _overall(setting_status)
        status = {"reproduced": "holds", "partly reproduced": "partly", "not reproduced": "fails"}.get(status,
                                                                                                         "inconclusive")
        statuses.append(status)
        per_lr[float(lr)] = {"computed": int(len(g)), "eroded": n_eroded,
                             "eroded_settings": sorted(g[g.erosion > EROSION_THRESHOLD].label),
                             "seeds_per_setting": int(g.groupby("label").size().min()), "status": status,
                             "label": _label(rate_verdicts)}
    return {**empty, "verdict": _overall(statuses), "label": _label(verdicts), "computed": int(len(done)),
            "eroded": int((done.erosion > EROSION_THRESHOLD).sum()), "missing": int(breadth.missing.sum()),
            "per_lr": per_lr}


def probe_drops(entries: list[dict]) -> pd.DataFrame:
    """Per (rate, seed, layer): the control's final clean-label probe accuracy minus the pattern run's, with the
    layer's depth and relative depth (from representation results)."""
    out = []
    for e in entries:
        lr, seed = e["params"]["finetune_lr"], e["params"]["seed"]
        snaps = e["result"]["snapshots"]
        total = e["result"]["total_steps"]
        pattern = next((s for s in snaps if s["model"] == "pattern" and s["step"] == total), None)
        control = next((s for s in snaps if s["model"] == "control"), None)
        if pattern is None or control is None:
            continue
        by_layer = {x["layer"]: x for x in control["layers"]}
        for x in pattern["layers"]:
            c = by_layer[x["layer"]]
            out.append({"finetune_lr": lr, "seed": seed, "layer": x["layer"], "depth": x["depth"],
                        "relative_depth": x["relative_depth"], "probe_drop": c["probe_accuracy"] - x["probe_accuracy"],
                        "rank_ratio": x["rank"] / c["rank"] if c["rank"] else float("nan")})
    return pd.DataFrame(out, columns=["finetune_lr", "seed", "layer", "depth", "relative_depth", "probe_drop",
                                      "rank_ratio"])


def claim_representations(entries: list[dict] | None) -> dict:
    """Claim 4: pre-learned features erode inside the network, and depth matters: per rate, the deepest probed
    layer's probe-accuracy loss against the control and the deeper-minus-shallower mean loss, per seed (plan rule
    claim4.features); the descriptive numbers of the largest loss are kept for the text."""
    drops = probe_drops(entries or [])
    per_lr, statuses, verdicts = {}, [], []
    for lr, g in ([] if drops.empty else drops.groupby("finetune_lr")):
        deepest = g[g.depth == g.depth.max()]
        last = dict(zip(deepest.seed, deepest.probe_drop))
        depth = {s: float(x[x.relative_depth >= 0.5].probe_drop.mean() - x[x.relative_depth < 0.5].probe_drop.mean())
                 for s, x in g.groupby("seed")}

        def decide(ivs, th):
            deep, slope = V.above(ivs["deepest layer"], th["probe"]), V.above(ivs["deeper minus shallower"],
                                                                                th["depth"])
            if deep == "holds" and slope == "holds":
                return "holds", {}
            if deep == "does not hold":
                return "does not hold", {}
            return "inconclusive", {}

        used = [e for e in entries if math.isclose(e["params"]["finetune_lr"], lr)]
        v = V.judge("claim4.features", lambda lv, last=last, depth=depth: {
            "deepest layer": V.t_interval(last.values(), lv, -1.0, 1.0, "paired_t"),
            "deeper minus shallower": V.t_interval(depth.values(), lv, -1.0, 1.0, "paired_t")}, decide,
            entries=used, seeds=sorted(last))
        mean = g.groupby(["layer", "depth", "relative_depth"]).probe_drop.mean().reset_index()
        worst = mean.loc[mean.probe_drop.idxmax()]
        status = OUTCOME_STATUS[v.outcome]
        statuses.append(status)
        verdicts.append(v)
        per_lr[float(lr)] = {"max_probe_drop": float(worst.probe_drop), "max_drop_layer": worst.layer,
                             "deep_mean_drop": float(mean[mean.relative_depth >= 0.5].probe_drop.mean()),
                             "shallow_mean_drop": float(mean[mean.relative_depth < 0.5].probe_drop.mean()),
                             "last_rank_ratio": float(np.nanmean(g[g.depth == g.depth.max()].rank_ratio)),
                             "deepest_drop": v.intervals["deepest layer"].estimate, "seeds": len(last),
                             "holds": status == "holds", "status": status, "label": v.label, "fragile": v.fragile,
                             "sensitivity": v.sensitivity, "verdict": v}
    return {"claim": "Pre-learned features erode inside the network (per-layer probe accuracy and rank change), and "
                     "it matters at which depth.", "verdict": _overall(statuses), "label": _label(verdicts),
            "per_lr": per_lr, "rule": RULES[4]}


def all_claims(summary: pd.DataFrame | None, breadth: pd.DataFrame | None, rep_entries: list[dict] | None,
               runs: list[dict] | None = None, breadth_rows: list[dict] | None = None) -> list[dict]:
    return [claim_accuracy_drop(summary, runs), claim_pattern_reliance(summary, runs),
            claim_breadth(breadth, breadth_rows), claim_representations(rep_entries)]


def per_lr_frame(claim: dict) -> pd.DataFrame:
    """A claim's per-learning-rate evidence as a table (one row per rate, the rate as a column)."""
    if not claim["per_lr"]:
        return pd.DataFrame(columns=["finetune_lr"])
    frame = pd.DataFrame(claim["per_lr"]).T.rename_axis("finetune_lr").reset_index()
    frame["status"] = [STATUS_WORDS[s] + (f" ({lab})" if lab else "") for s, lab in
                       zip(frame["status"], frame.get("label", [""] * len(frame)))]
    return frame.rename(columns={"status": "verdict at this rate"}).drop(
        columns=["holds", "verdict", "label", "sensitivity", "fragile"], errors="ignore")


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

    words = {"holds": "reproduced at", "partly": "partly at", "fails": "not at", "inconclusive": "inconclusive at"}
    return ", ".join(f"{words[s]} {_lrs(groups[s])}{counts(groups[s])}"
                     for s in ("holds", "partly", "fails", "inconclusive") if s in groups)


def lr_dependence_sentence(claim: dict) -> str:
    """One sentence on whether claim 1 depends on the fine-tuning learning rate, from the evidence (a rate whose
    interval cannot tell is said to be inconclusive, never counted either way)."""
    holds = sorted(lr for lr, v in claim["per_lr"].items() if v["status"] == "holds")
    fails = sorted(lr for lr, v in claim["per_lr"].items() if v["status"] == "fails")
    open_ = sorted(lr for lr, v in claim["per_lr"].items() if v["status"] == "inconclusive")
    tail = f" At {_lrs(open_)} the interval cannot tell (inconclusive)." if open_ else ""
    if not holds and not fails:
        if not open_:
            return "Without results for claim 1, whether erosion depends on the fine-tuning learning rate was not tested."
        if len(open_) == 1:
            return (f"In our reconstruction, whether erosion happens at the one fine-tuning learning rate tested "
                    f"(lr {open_[0]:g}) is inconclusive; whether it depends on the rate was not tested.")
        return f"Whether erosion happens is inconclusive at every rate tested ({_lrs(open_)})."
    if holds and fails:
        return (f"In our reconstruction, whether erosion happens depends on the fine-tuning learning rate: it does at "
                f"{_lrs(holds)} and does not at {_lrs(fails)}.{tail}")
    if len(claim["per_lr"]) == 1:
        lr = next(iter(claim["per_lr"]))
        return (f"In our reconstruction, erosion {'happens' if holds else 'does not happen'} at the one fine-tuning "
                f"learning rate tested (lr {lr:g}); whether it depends on the rate was not tested.")
    if holds:
        return f"In our reconstruction, erosion happens at {_lrs(holds)}.{tail}"
    return f"In our reconstruction, erosion does not happen at {_lrs(fails)}.{tail}"
