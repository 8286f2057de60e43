"""Result sentences generated from the results, for whatever parameters a chapter ran: any number of learning rates,
seeds and settings; one seed gives "no interval"; a sentence that states an outcome does so only where a rule of
:mod:`erosion_utils.report.claims` says it holds. Sentences are MyST Markdown (``{ref}`` roles allowed), except the
``*_key`` texts, which are plain text for the intro's "Key results" box.
"""
from __future__ import annotations

import pandas as pd

from . import claims
from .words import (PATTERN_NAMES, SCALE_WORDS, arch_name, ci_phrase, dataset_name, fmt, fmt_value, join_values,
                    layer_name, plural, rates_phrase)

FACTOR_WORDS = {"arch": "the architecture", "pattern": "the pattern kind", "pattern_size": "the pattern size *k*",
                "fraction": "the patched fraction *p*", "dataset": "the dataset"}
FACTOR_VALUES = {"arch": arch_name, "dataset": dataset_name, "pattern": lambda v: PATTERN_NAMES.get(v, v)}


# ------------------------------------------------------------------------------------------------------ erosion

def rates_sentence(lrs: list[float]) -> str:
    """Which fine-tuning learning rates this page ran."""
    lrs = sorted(lrs)
    if len(lrs) == 1:
        return f"This page ran one fine-tuning learning rate, {fmt_value(lrs[0])}."
    return f"This page ran {len(lrs)} fine-tuning learning rates: {join_values(lrs)}."


def pretrain_sentence(pretrain: list[dict]) -> str:
    """The pretrained networks (one per seed; ``pretrain``: cached pretraining results, duplicates allowed)."""
    by_seed = {}
    for entry in pretrain:
        by_seed[entry["provenance"]["seed"]] = entry["result"]
    results = list(by_seed.values())
    if not results:
        return "No pretrained network is cached for these parameters."
    reached = sum(bool(r["reached_target"]) for r in results)
    train = min(r["train_accuracy"] for r in results)
    test = sum(r["test_accuracy"] for r in results) / len(results)
    if len(results) == 1:
        what = ("classifies every training image correctly (the 100% target)" if train >= 1.0 else
                f"reaches a training accuracy of {fmt(train, 4)} ({'it reached' if reached else 'it did not reach'} "
                "the 100% target)")
        return f"The pretrained network (one seed) {what} and reaches a clean test accuracy of {fmt(test)}."
    if train >= 1.0:
        return (f"Over {plural(len(results), 'seed')}, every pretrained network classifies every training image "
                f"correctly (the 100% target) and reaches a clean test accuracy of {fmt(test)} on average.")
    target = ("all reached" if reached == len(results) else "none reached" if not reached
              else f"{reached} of {len(results)} reached")
    return (f"Over {plural(len(results), 'seed')}, the pretrained networks reach a training accuracy of at least "
            f"{fmt(train, 4)} ({target} the 100% target) and a clean test accuracy of {fmt(test)} on average.")


def _q(stats: dict, quantity: str) -> dict:
    return stats.get(quantity, {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "seeds": 0})


def erosion_paragraph(lr: float, stats: dict, claim1: dict | None = None) -> str:
    """One rate's result: final clean accuracy of pattern run and control, the erosion with its interval and the
    claim-1 verdict at this rate (``claim1``: :func:`claims.claim_accuracy_drop`; the analysis plan's rule), the
    follow rate and matched accuracy and whether the pattern was picked up."""
    ero = _q(stats, "erosion")
    n = ero["seeds"]
    m = {q: _q(stats, q)["mean"] for q in ("clean_start", "clean_pattern", "clean_control", "follow_start",
                                           "follow_pattern", "matched_start", "matched_pattern", "min_clean_control")}
    v = (claim1 or {}).get("per_lr", {}).get(float(lr))
    status = v["status"] if v else "inconclusive"
    verdict = {"holds": "is", "fails": "is not", "inconclusive": "cannot be called"}[status]
    label = f", {v['label']}" if v else ""
    picked = claims.picks_up_pattern(m["matched_start"], m["matched_pattern"], m["follow_start"], m["follow_pattern"])
    return (f"**At lr {fmt_value(lr)}** ({plural(n, 'seed', one_word=True)}): the pattern run ends at a clean test "
            f"accuracy of {fmt(m['clean_pattern'])}, the control at {fmt(m['clean_control'])} (both started at "
            f"{fmt(m['clean_start'])}; the control's lowest was {fmt(m['min_clean_control'])}). Erosion: "
            f"{ci_phrase(ero['mean'], ero['ci_low'], ero['ci_high'], n)}, so this {verdict} "
            f"erosion by the rule of the {{ref}}`plan` (the interval above {claims.EROSION_THRESHOLD:g}; inconclusive "
            f"when it reaches the threshold or with fewer than three seeds{label}). Follow rate: "
            f"{fmt(m['follow_pattern'])} ({fmt(m['follow_start'])} before fine-tuning); matched accuracy: "
            f"{fmt(m['matched_start'])} → {fmt(m['matched_pattern'])}. By the pick-up rule (either rising by more than "
            f"{claims.PICKUP_THRESHOLD:g}), the pattern {'was' if picked else 'was not'} picked up.")


def erosion_paragraphs(rate_stats: dict[float, dict], claim1: dict | None = None) -> str:
    """:func:`erosion_paragraph` for every rate, ascending (``rate_stats``: :func:`analysis.rate_stats`)."""
    return "\n\n".join(erosion_paragraph(lr, s, claim1) for lr, s in sorted(rate_stats.items()))


def erosion_key(rate_stats: dict[float, dict], profile: str, claim1: dict | None = None) -> str:
    """Plain text for the Key results box: erosion (with its interval), claim 1's outcome and label by the analysis
    plan, and the follow rate at every rate, with the scale."""
    if not rate_stats:
        return f"missing: no cached results for this chapter's parameters ({_scale(profile)})"
    parts = []
    words = {"holds": "erodes", "fails": "does not erode", "inconclusive": "inconclusive"}
    for lr, s in sorted(rate_stats.items()):
        ero = _q(s, "erosion")
        v = (claim1 or {}).get("per_lr", {}).get(float(lr))
        verdict = f" ({words[v['status']]}, {v['label']})" if v else ""
        parts.append(f"at lr {fmt_value(lr)}, erosion {ci_phrase(ero['mean'], ero['ci_low'], ero['ci_high'], ero['seeds'])}"
                     f"{verdict} and follow rate {fmt(_q(s, 'follow_pattern')['mean'])}")
    return "; ".join(parts) + f" ({_scale(profile)})"


# ------------------------------------------------------------------------------------------------------ breadth

def breadth_design(sweeps: dict[str, list], around_lrs: list[float], frame: pd.DataFrame | None = None) -> str:
    """What the breadth page varied (``sweeps``: :meth:`Resolved.sweeps`; ``frame``: :func:`analysis.breadth_frame`,
    whose grid rows say whether the learning rate x weight decay grid added any setting)."""
    factors = [f"{FACTOR_WORDS[f]} ({join_values(v, formatter=FACTOR_VALUES.get(f, fmt_value))})"
               for f, v in sweeps.items() if f in FACTOR_WORDS and v]
    around = rates_phrase(around_lrs)
    if factors:
        text = f"Around {around}, this page changes one factor at a time: {join_values(factors, formatter=str)}."
    else:
        text = f"No factor is varied: only the base setting is run, at {around}."
    lrs, wds = sweeps.get("finetune_lr"), sweeps.get("finetune_weight_decay")
    grid_rows = None if frame is None else int((frame.factor == "finetune_lr x weight_decay").sum())
    if (lrs or wds) and grid_rows != 0:
        text += (f" It also runs the grid of fine-tuning learning rate ({join_values(lrs or ['the base rate'])}) x "
                 f"weight decay ({join_values(wds or ['the base decay'])}) for the base setting.")
    return text


def breadth_results(frame: pd.DataFrame, threshold: float = claims.EROSION_THRESHOLD) -> str:
    """How many settings have results, how many erode (by the claims' threshold), which, and per learning rate."""
    if frame.empty:
        return "No breadth setting was requested."
    done = frame[~frame.missing]
    n_missing = int(frame.missing.sum())
    text = f"Of {plural(len(frame), 'setting')}, {len(done)} {'has' if len(done) == 1 else 'have'} results"
    text += f" and {n_missing} {'is' if n_missing == 1 else 'are'} missing (listed below)." if n_missing else "."
    if done.empty:
        return text
    eroded = done[done.erosion > threshold]
    text += (f" Erosion above {threshold:g} appears in {len(eroded)} of the {len(done)} computed"
             + (f": {'; '.join(eroded.setting + ' at lr ' + eroded.finetune_lr.map(fmt_value))}." if len(eroded)
                else "."))
    if done.finetune_lr.nunique() > 1:
        per = [f"{int((g.erosion > threshold).sum())} of {len(g)} at lr {fmt_value(lr)}"
               for lr, g in done.groupby("finetune_lr")]
        text += f" By learning rate, eroding settings: {join_values(per, formatter=str)}."
    return text


# ----------------------------------------------------------------------------------------------- representations

def representation_paragraph(lr: float, v: dict, arch: str | None = None) -> str:
    """One rate's per-layer result and the claim-4 verdict at that rate (``v``: a ``per_lr`` entry of
    :func:`claims.claim_representations`; ``arch`` names the layers)."""
    return (f"**At lr {fmt_value(lr)}**, the pattern run's largest loss of clean-label probe accuracy against the "
            f"control is {fmt(v['max_probe_drop'])} (at {layer_name(v['max_drop_layer'], arch)}); the mean loss is "
            f"{fmt(v['deep_mean_drop'])} over the deeper half of the layers and {fmt(v['shallow_mean_drop'])} over the "
            f"shallower half, and the rank of the last tapped layer is {fmt(v['last_rank_ratio'], 2)} times the "
            f"control's. By the rule of the {{ref}}`plan` (the deepest layer's loss above {claims.PROBE_THRESHOLD:g} "
            f"and more loss in the deeper half, both by their intervals over seeds), whether features erode inside "
            f"the network at this rate is "
            f"**{ {'holds': 'yes', 'fails': 'no', 'inconclusive': 'inconclusive'}[v['status']]}** "
            f"({v['label']}; {plural(v['seeds'], 'seed')}).")


def representation_paragraphs(claim4: dict, arch: str | None = None) -> str:
    return "\n\n".join(representation_paragraph(lr, v, arch) for lr, v in sorted(claim4["per_lr"].items()))


def pattern_visibility_sentence(layers: pd.DataFrame) -> str:
    """How readable the pattern is at the first tapped layer of the pretrained network (the third panel's start)."""
    first = layers[(layers.snapshot == "pretrained") & (layers.depth == layers.depth.min())]
    if first.empty:
        return ""
    return (f"Here the pattern-class probe on the first tapped layer of the pretrained network reaches "
            f"{fmt(first.pattern_probe_accuracy.mean())}.")


def representation_key(claim4: dict, profile: str, arch: str | None = None) -> str:
    """Plain text for the Key results box: the largest per-layer probe loss at every rate."""
    if not claim4["per_lr"]:
        return f"missing: no cached results for this chapter's parameters ({_scale(profile)})"
    words = {"holds": "features erode", "fails": "no erosion of features", "inconclusive": "inconclusive"}
    parts = [f"at lr {fmt_value(lr)}, {fmt(v['max_probe_drop'])} at {layer_name(v['max_drop_layer'], arch)} "
             f"({words[v['status']]}, {plural(v['seeds'], 'seed')}, {v['label']})"
             for lr, v in sorted(claim4["per_lr"].items())]
    return "largest per-layer loss of clean-label probe accuracy against the control: " + "; ".join(parts) + \
        f" ({_scale(profile)})"


# ------------------------------------------------------------------------------------------------------- claims

def verdict_line(claim: dict) -> str:
    """``"**Verdict: partly reproduced** (exploratory): reproduced at lr 0.1, not at lr 0.01."``"""
    return f"**Verdict: {claim['verdict']}** ({claim.get('label', 'exploratory')}): {claims.regime(claim)}."


def claim1_evidence(claim: dict) -> str:
    if not claim["per_lr"]:
        return "No results: the erosion experiment's results are missing."
    return "Erosion " + "; ".join(f"at lr {fmt_value(lr)}: {ci_phrase(v['erosion_mean'], v['ci_low'], v['ci_high'], v['seeds'])}"
                                  for lr, v in sorted(claim["per_lr"].items())) + "."


def claim2_evidence(claim: dict) -> str:
    if not claim["per_lr"]:
        return "No results: the erosion experiment's results are missing."
    return "Follow rate " + "; ".join(
        f"at lr {fmt_value(lr)}: {ci_phrase(v['follow_mean'], v['ci_low'], v['ci_high'], v['seeds'])}"
        + (" (every seed at the same value to three decimals: the interval is degenerate, not precise)"
           if v["seeds"] > 1 and v["ci_high"] - v["ci_low"] < 0.001 else "")
        for lr, v in sorted(claim["per_lr"].items())) + "."


def claim3_evidence(claim: dict) -> str:
    if claim["computed"] == 0:
        return (f"No breadth setting has results ({plural(claim['missing'], 'setting')} missing)." if claim["missing"]
                else "No breadth setting was run.")
    names = [s for v in claim["per_lr"].values() for s in v["eroded_settings"]]
    seeds = min((v.get("seeds_per_setting", 1) for v in claim["per_lr"].values()), default=1)
    text = (f"Of {plural(claim['computed'], 'computed setting')}, {claim['eroded']} "
            f"{'shows' if claim['eroded'] == 1 else 'show'} an erosion above {claims.EROSION_THRESHOLD:g}"
            + (f": {'; '.join(names)}." if names else "."))
    if seeds < 3:
        text += (f" With {plural(seeds, 'seed', one_word=True)} per setting there is no interval, so by the rule of "
                 f"the {{ref}}`plan` no setting is decided: these counts describe, they do not judge.")
    if claim["missing"]:
        text += (f" {plural(claim['missing'], 'setting')} {'was' if claim['missing'] == 1 else 'were'} not computed and "
                 f"count for nothing.")
    return text


def claim4_evidence(claim: dict, arch: str | None = None) -> str:
    if not claim["per_lr"]:
        return "No results: the representation experiment's results are missing."
    return " ".join(
        f"At lr {fmt_value(lr)}: largest loss {fmt(v['max_probe_drop'])} (at {layer_name(v['max_drop_layer'], arch)}), mean loss "
        f"{fmt(v['deep_mean_drop'])} in the deeper half against {fmt(v['shallow_mean_drop'])} in the shallower half; "
        f"the rank of the last layer is {fmt(v['last_rank_ratio'], 2)} times the control's."
        for lr, v in sorted(claim["per_lr"].items()))


def verdicts_key(results: list[dict]) -> str:
    """Plain text for the Key results box: every claim's verdict and regime."""
    names = ("accuracy drops", "the pattern decides", "breadth", "erosion inside the network")
    return "; ".join(f"({i}) {name}: {claims.regime(c)} ({c.get('label', 'exploratory')})"
                     for i, (name, c) in enumerate(zip(names, results), 1))


# ---------------------------------------------------------------------------------------------------- discussion
# Plain-text sentences the Discussion pastes: each names its scale, its seeds and the chapters its numbers come from,
# and says "missing" when a number it needs is not there.

def _scale(profile: str) -> str:
    return SCALE_WORDS.get(profile, f"{profile} scale")


def readout_text(layers: pd.DataFrame, summary: pd.DataFrame, profile: str, arch: str | None = None) -> str:
    """Features or readout: at the rate with the largest erosion, the last probed layer's clean-label probe accuracy
    (pattern run, control, pretrained; Representations) against the pattern run's own clean accuracy (Feature
    erosion), and what the difference says."""
    if layers.empty or summary.empty:
        return (f"missing: the comparison of probes with the network's own accuracy needs the results of both the "
                f"Feature erosion and the Representations chapters ({_scale(profile)})")
    means = summary.groupby("finetune_lr").erosion.mean()
    probed = set(layers.finetune_lr.unique())
    candidates = means[means.index.isin(probed)]
    if candidates.empty:
        return (f"missing: no fine-tuning rate has both per-layer probes and full runs ({_scale(profile)}; probed at "
                f"{rates_phrase(sorted(probed))}, run at {rates_phrase(sorted(means.index))})")
    lr = float(candidates.idxmax())
    sub = layers[layers.finetune_lr == lr]
    last = sub[sub.depth == sub.depth.max()]
    value = {snap: float(last[last.snapshot == snap].probe_accuracy.mean()) for snap in ("pattern", "control", "pretrained")}
    runs = summary[summary.finetune_lr == lr]
    own, own_control, n = float(runs.clean_pattern.mean()), float(runs.clean_control.mean()), len(runs)
    layer = layer_name(last.layer.iloc[0], arch)
    text = (f"At the {_scale(profile)}, at lr {fmt_value(lr)} (the rate with the largest mean erosion, "
            f"{fmt(means[lr])}), a linear probe on the last probed layer ({layer}) of the pattern-fine-tuned network "
            f"still reaches a clean-label accuracy of {fmt(value['pattern'])} (control {fmt(value['control'])}, "
            f"pretrained network {fmt(value['pretrained'])}; Representations chapter, one run), while the network's "
            f"own clean accuracy ends at {fmt(own)} (control {fmt(own_control)}; Feature erosion chapter, mean of "
            f"{plural(n, 'seed')}).")
    gap = value["pattern"] - own
    if gap > claims.EROSION_THRESHOLD:
        text += (f" The probe reads {fmt(gap)} more from the features than the network's own classifier does: much of "
                 f"the class information survives up to the last layer, and a large part of the loss is in the readout.")
        if value["control"] - value["pattern"] > claims.PROBE_THRESHOLD:
            text += (f" The features do not survive intact either: the probe itself is {fmt(value['control'] - value['pattern'])} "
                     f"below the control's.")
    else:
        text += (" The probe does no better than the network's own classifier: at this layer the information is lost "
                 "in the features, not only in the readout.")
    return text


def unstable_control_text(summary: pd.DataFrame, profile: str) -> str:
    """The control's own course at every rate: its lowest and final clean accuracy against its start, and whether the
    rates that erode are those at which plain continued training dips by more than the erosion threshold."""
    if summary.empty:
        return f"missing: the Feature erosion chapter has no results ({_scale(profile)})"
    parts, dips, erodes = [], [], []
    for lr, g in summary.groupby("finetune_lr"):
        start, low, end = float(g.clean_start.mean()), float(g.min_clean_control.mean()), float(g.clean_control.mean())
        parts.append(f"at lr {fmt_value(lr)} it starts at {fmt(start)}, falls to {fmt(low)} at its lowest and ends at "
                     f"{fmt(end)}")
        if start - low > claims.EROSION_THRESHOLD:
            dips.append(float(lr))
        if float(g.erosion.mean()) > claims.EROSION_THRESHOLD:
            erodes.append(float(lr))
    n = summary.groupby("finetune_lr").size().min()
    text = (f"The control (continued training on clean images) at the {_scale(profile)}, mean of "
            f"{plural(int(n), 'seed')}: " + "; ".join(parts) + ".")
    if dips and set(erodes) <= set(dips):
        text += (f" The control itself loses more than {claims.EROSION_THRESHOLD:g} of clean accuracy at "
                 f"{rates_phrase(dips)} before it recovers"
                 + (f", and erosion (a mean above {claims.EROSION_THRESHOLD:g}) appears only there: the pattern takes "
                    f"over where plain continued training is already unstable." if erodes else
                    f"; no rate erodes by more than {claims.EROSION_THRESHOLD:g}."))
    elif dips:
        text += (f" The control dips by more than {claims.EROSION_THRESHOLD:g} at {rates_phrase(dips)}, but erosion "
                 f"also appears at {rates_phrase(sorted(set(erodes) - set(dips)))}, where it does not.")
    else:
        text += (f" The control never loses more than {claims.EROSION_THRESHOLD:g} of clean accuracy"
                 + (f", yet erosion appears at {rates_phrase(erodes)}." if erodes else "."))
    return text


def weight_decay_text(grid: pd.DataFrame, profile: str) -> str:
    """Erosion with and without weight decay at each rate of the learning rate x weight decay grid (``grid``:
    :func:`plots.lr_wd_grid`, one seed per cell): every cell at a rate where some cell erodes, the range elsewhere."""
    missing = f"missing: no rate was run with more than one weight decay ({_scale(profile)})"
    if grid.empty or grid.finetune_weight_decay.nunique() < 2:
        return missing
    eroding, calm, without = [], [], []
    for lr, g in grid.groupby("finetune_lr"):
        if g.finetune_weight_decay.nunique() < 2:
            continue
        cells = g.sort_values("finetune_weight_decay")
        if (cells.erosion > claims.EROSION_THRESHOLD).any():
            eroding.append(f"at lr {fmt_value(lr)}, " + join_values(
                [f"{fmt(r.erosion)} with weight decay {fmt_value(r.finetune_weight_decay)}" for _, r in cells.iterrows()],
                formatter=str))
        else:
            calm.append((float(lr), float(cells.erosion.min()), float(cells.erosion.max())))
        zero = cells[cells.finetune_weight_decay == 0]
        if len(zero) and float(zero.erosion.iloc[0]) > claims.EROSION_THRESHOLD:
            without.append(float(lr))
    if not eroding and not calm:
        return missing
    text = f"Erosion by fine-tuning weight decay at the {_scale(profile)} (Breadth chapter, one seed per cell): "
    parts = list(eroding)
    if calm:
        parts.append(f"at {rates_phrase([c[0] for c in calm])} no weight decay erodes (erosion from "
                     f"{fmt(min(c[1] for c in calm))} to {fmt(max(c[2] for c in calm))})")
    text += "; ".join(parts) + "."
    if without:
        text += (f" Without any weight decay the network still erodes at {rates_phrase(without)}: weight decay is not "
                 f"needed for erosion.")
    return text
