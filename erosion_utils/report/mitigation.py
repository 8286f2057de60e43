"""The Mitigation and recovery chapter's analysis: tables, verdict rules and generated sentences, all pure functions
of cached results (no training; the figures are in :mod:`erosion_utils.report.mitigation_figures`).

Every verdict follows a stated rule with fixed thresholds (below, and those of :mod:`erosion_utils.report.claims`);
nothing is tuned to the results. Every sentence is generated from the numbers, so it stays true for any parameters:
one seed says "one seed: no interval", a missing result is reported as missing.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import mean_ci, run_summary
from .claims import (EROSION_THRESHOLD, FOLLOW_PARTIAL, FOLLOW_THRESHOLD, PICKUP_THRESHOLD, PROBE_THRESHOLD, erodes,
                     picks_up_pattern)
from .words import ci_phrase, clip_interval, fmt, fmt_value, is_nan, join_values, plural

KEEP_MARGIN = 0.03  # clean accuracy at most this far below the reference counts as kept
REDUCE_MARGIN = 0.05  # a mitigation reduces erosion when its mean erosion is this much below the baseline's
RECOVERY_TARGET = 0.9  # recovered: clean accuracy reaches this share of the control arm's final clean accuracy
FAST_RATIO = 0.5  # recovery is fast when it needs at most this share of the steps training from scratch needs
SLOW_RATIO = 0.8  # ... and as slow as training from scratch when it needs at least this share
AHEAD_MARGIN = 0.05  # neither reaches the target: the eroded network is ahead when it ends this much above scratch

RULES = {
    "mitigation": (f"erosion is the baseline control's final clean accuracy minus the mitigated pattern run's. A "
                   f"mitigation **prevents** erosion when the upper end of the 95% CI of its erosion (the mean, "
                   f"with one seed) is below {EROSION_THRESHOLD:g}; it **reduces** erosion when its mean erosion is "
                   f"more than {REDUCE_MARGIN:g} below the baseline's; otherwise it **does not prevent** erosion. "
                   f"When the baseline itself does not erode (claim 1's rule: lower CI end above "
                   f"{EROSION_THRESHOLD:g}), there is nothing to prevent. The network **follows the pattern** when "
                   f"the mean follow rate is at least {FOLLOW_THRESHOLD:g}, **partly** from {FOLLOW_PARTIAL:g}, and "
                   f"otherwise **ignores** it; an ignored pattern is still **learned** when matched accuracy or the "
                   f"follow rate rises by more than {PICKUP_THRESHOLD:g} over the run. It **keeps clean accuracy** "
                   f"when its mean erosion is at most {KEEP_MARGIN:g}."),
    "interpolation": (f"an interpolation weight α > 0 keeps clean accuracy when the mean clean accuracy at α is at "
                      f"most {KEEP_MARGIN:g} below that at α = 0 (the pretrained network), and drops the pattern when "
                      f"the mean follow rate is below {FOLLOW_PARTIAL:g}; batch-norm statistics re-estimated on clean "
                      f"training images at each α."),
    "recovery": (f"the recovery target is {RECOVERY_TARGET:g} times the control arm's clean accuracy at the end of "
                 f"recovery; steps to recover are the first evaluated recovery step at which the mean clean accuracy "
                 f"over seeds reaches it. Recovery is **fast** when the eroded network needs at most {FAST_RATIO:g} "
                 f"times the steps the network trained from scratch needs (or scratch does not reach the target "
                 f"within the run), and **as slow as scratch** when it needs at least {SLOW_RATIO:g} times scratch's "
                 f"steps, or does not reach the target while scratch does, or neither reaches it and the eroded "
                 f"network ends less than {AHEAD_MARGIN:g} above scratch. Probes **come back** when, at every probed "
                 f"layer, the eroded network's clean-label probe accuracy at the end of recovery is at most "
                 f"{PROBE_THRESHOLD:g} below the control arm's. **Suppression**: fast, and the probes come back. "
                 f"**Destruction**: as slow as scratch. **Partial**: everything in between (fast but some probe "
                 f"stays behind; between the two speeds; or neither reaches the target but the eroded network ends "
                 f"more than {AHEAD_MARGIN:g} above scratch). **Nothing to recover**: the eroded network starts at or "
                 f"above the target."),
}

RECOVERY_VERDICTS = ("suppression", "destruction", "partial", "nothing to recover")
EXTRA_COMPUTE = {"baseline": "—", "freeze": "less (fewer gradients)", "head_only": "less (fewer gradients at first)",
                 "l2sp": "a penalty per step", "erase": "corner noise per image", "lower_lr": "none", "warmup": "none",
                 "fraction": "none"}
ARM_TITLES = {"pattern": "eroded → clean", "control": "control → clean", "scratch": "from scratch"}


def seeds_scope(n: int) -> str:
    """"one seed" or "mean over 3 seeds": what a number averaged over ``n`` seeds is."""
    return "one seed" if n == 1 else f"mean over {plural(n, 'seed')}"


def upper_bound(mean: float, ci_high: float) -> float:
    """What "prevents" compares with the threshold: the upper CI end, or the mean when there is no interval."""
    return mean if is_nan(ci_high) else ci_high


# ------------------------------------------------------------------------------------------------- mitigations

MITIGATION_COLUMNS = ["kind", "label", "value", "seed", "missing", "clean_start", "clean_pattern", "clean_control",
                      "erosion", "matched_start", "matched_pattern", "follow_start", "follow_pattern",
                      "wall_time_s", "device", "control_start"]


def mitigation_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per (setting, seed) of :func:`erosion_utils.experiments.mitigation.mitigation_experiment`: the
    pattern run's final numbers against the baseline control, its wall time and device."""
    out = []
    for row in rows:
        base = {"kind": row["kind"], "label": row["label"], "value": row["value"], "seed": row["seed"],
                "missing": bool(row.get("missing"))}
        if not row.get("missing"):
            s = run_summary(row["pattern"], row["control"])
            base.update({k: s[k] for k in ("clean_start", "clean_pattern", "clean_control", "erosion",
                                           "matched_start", "matched_pattern", "follow_start", "follow_pattern")})
            base.update(wall_time_s=row["pattern"]["provenance"]["wall_time_s"],
                        device=row["pattern"]["provenance"]["device"],
                        control_start=row["control"]["result"]["records"][0]["clean_acc"])
        out.append(base)
    frame = pd.DataFrame(out, columns=MITIGATION_COLUMNS)
    frame["missing"] = frame["missing"].astype(bool)
    return frame


STAT_COLUMNS = ("clean_pattern", "clean_control", "erosion", "follow_pattern", "matched_pattern", "clean_start",
                "matched_start", "follow_start", "wall_time_s")


def mitigation_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting (in the frame's order): seeds with results, and mean and 95% CI over seeds of each quantity
    (``<q>``, ``<q>_lo``, ``<q>_hi``)."""
    rows = []
    for label in dict.fromkeys(frame.label):
        g = frame[(frame.label == label)]
        done = g[~g.missing]
        row = {"kind": g.kind.iloc[0], "label": label, "value": g.value.iloc[0], "seeds": len(done),
               "missing_seeds": int(g.missing.sum()), "devices": sorted(set(done.device.dropna()))}
        for q in STAT_COLUMNS:
            m, lo, hi = mean_ci(done[q].astype(float)) if len(done) else (math.nan,) * 3
            lo, hi = clip_interval(q, lo, hi)
            row.update({q: m, f"{q}_lo": lo, f"{q}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def mitigation_verdict(row: pd.Series | dict, baseline: pd.Series | dict) -> dict:
    """The verdict on one setting (a row of :func:`mitigation_stats`) against the baseline's row, by
    ``RULES["mitigation"]``: ``erosion`` (prevents / reduces / does not prevent / nothing to prevent / no result),
    ``pattern`` (follows / partly follows / does not follow), ``learns`` (matched accuracy or follow rate rose),
    ``keeps`` (clean accuracy within :data:`KEEP_MARGIN`), and ``text``."""
    if row["seeds"] == 0:
        return {"erosion": "no result", "pattern": "no result", "learns": None, "keeps": None,
                "text": "no result (missing)"}
    follow = row["follow_pattern"]
    pattern = "follows" if follow >= FOLLOW_THRESHOLD else "partly follows" if follow >= FOLLOW_PARTIAL \
        else "does not follow"
    learns = picks_up_pattern(row["matched_start"], row["matched_pattern"], row["follow_start"], follow)
    keeps = bool(row["erosion"] <= KEEP_MARGIN)
    if row["kind"] == "baseline":
        status = "erodes" if erodes(row["erosion"], row["erosion_lo"]) else "does not erode"
    elif baseline["seeds"] == 0:
        status = "no baseline"
    elif not erodes(baseline["erosion"], baseline["erosion_lo"]):
        status = "nothing to prevent"
    elif upper_bound(row["erosion"], row["erosion_hi"]) < EROSION_THRESHOLD:
        status = "prevents"
    elif baseline["erosion"] - row["erosion"] > REDUCE_MARGIN:
        status = "reduces"
    else:
        status = "does not prevent"
    words = {"erodes": "erodes", "does not erode": "does not erode",
             "no baseline": "no baseline to compare with", "nothing to prevent": "nothing to prevent",
             "prevents": "prevents erosion", "reduces": "reduces erosion", "does not prevent": "does not prevent it"}
    pattern_words = {"follows": "follows the pattern", "partly follows": "partly follows the pattern",
                     "does not follow": "ignores the pattern"}
    text = f"{words[status]}; {pattern_words[pattern]}"
    if pattern == "does not follow":
        text += " (learns it)" if learns else " (does not learn it)"
    return {"erosion": status, "pattern": pattern, "learns": learns, "keeps": keeps, "text": text}


def _ci_cell(row, q: str) -> str:
    m, lo, hi = row[q], row[f"{q}_lo"], row[f"{q}_hi"]
    if is_nan(m):
        return "—"
    if is_nan(lo) or is_nan(hi):
        return fmt(m)
    return f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"


def mitigation_table(stats: pd.DataFrame) -> pd.DataFrame:
    """The chapter's table: per setting, erosion, clean accuracy, follow rate and matched accuracy (mean [95% CI]),
    extra compute and the verdict (wall times, measured on different devices and loads, are in the per-run table)."""
    if stats.empty:
        return pd.DataFrame(columns=["setting", "seeds", "erosion", "clean acc.", "follow rate", "matched acc.",
                                     "extra compute", "verdict"])
    base = stats.iloc[0]
    rows = []
    for _, r in stats.iterrows():
        rows.append({"setting": r.label, "seeds": int(r.seeds), "erosion": _ci_cell(r, "erosion"),
                     "clean acc.": _ci_cell(r, "clean_pattern"), "follow rate": _ci_cell(r, "follow_pattern"),
                     "matched acc.": _ci_cell(r, "matched_pattern"), "extra compute": EXTRA_COMPUTE[r.kind],
                     "verdict": mitigation_verdict(r, base)["text"]})
    return pd.DataFrame(rows)


def recommendation(stats: pd.DataFrame) -> str:
    """The recommendation paragraph: which settings keep clean accuracy within :data:`KEEP_MARGIN` of the control
    (mean over seeds), which of those also stop following the pattern, and what the baseline loses."""
    if stats.empty or stats.iloc[0]["seeds"] == 0:
        return "Without results for the baseline, no recommendation can be made."
    base = stats.iloc[0]
    done = stats.iloc[1:][stats.iloc[1:].seeds > 0]
    missing = stats.iloc[1:][stats.iloc[1:].seeds == 0]
    verdicts = {r.label: mitigation_verdict(r, base) for _, r in done.iterrows()}
    n = int(base.seeds)
    parts = [f"The baseline's erosion (control minus pattern-run clean accuracy) is "
             f"{ci_phrase(base.erosion, base.erosion_lo, base.erosion_hi, n)}, and its mean follow rate is "
             f"{fmt(base.follow_pattern)}."]
    if not erodes(base.erosion, base.erosion_lo):
        parts.append("By claim 1's rule the baseline does not erode, so no option is needed here; the settings "
                     "below are compared for completeness.")
    kept = [label for label, v in verdicts.items() if v["keeps"]]
    kept_clean = [label for label in kept if verdicts[label]["pattern"] == "does not follow"]
    if kept:
        parts.append(f"Within a margin of {fmt_value(KEEP_MARGIN)} of the control's clean accuracy (mean over seeds), "
                     f"{join_values(kept, formatter=str)} {'keeps' if len(kept) == 1 else 'keep'} clean accuracy.")
        if kept_clean:
            parts.append(f"Of {'it' if len(kept) == 1 else 'these'}, {join_values(kept_clean, formatter=str)} "
                         f"{'does' if len(kept_clean) == 1 else 'also do'} not follow the pattern (mean follow rate "
                         f"below {fmt_value(FOLLOW_PARTIAL)}): the options to prefer when the shortcut must be "
                         f"ignored.")
        else:
            parts.append(f"None of {'it' if len(kept) == 1 else 'them'} stops the network from following the "
                         f"pattern (mean follow rate {fmt_value(FOLLOW_PARTIAL)} or more): they keep the features "
                         f"but not the decision.")
    elif len(done):
        best = done.sort_values("erosion").iloc[0]
        parts.append(f"No option tested keeps clean accuracy within {fmt_value(KEEP_MARGIN)} of the control's; the "
                     f"smallest mean erosion is {fmt(best.erosion)} ({best.label}).")
    if "erase" in set(done.kind):
        parts.append("Erasing corners works only against a shortcut that sits in a corner, as ours does.")
    if len(missing):
        parts.append(f"{plural(len(missing), 'setting')} {'has' if len(missing) == 1 else 'have'} no results: "
                     f"{join_values(list(missing.label), formatter=str)}.")
    return " ".join(parts)


def kept_settings(stats: pd.DataFrame) -> list[str]:
    """The mitigations (not the baseline) that keep clean accuracy within :data:`KEEP_MARGIN` of the control."""
    if stats.empty or stats.iloc[0]["seeds"] == 0:
        return []
    base = stats.iloc[0]
    return [r.label for _, r in stats.iloc[1:].iterrows() if r.seeds > 0 and mitigation_verdict(r, base)["keeps"]]


def key_result(stats: pd.DataFrame, interpolation: dict, recovery: dict[float, dict], profile: str) -> str:
    """One line for the book's Key results box: what keeps clean accuracy, the interpolation answer and the recovery
    verdicts, with the profile."""
    done = stats.iloc[1:][stats.iloc[1:].seeds > 0] if len(stats) else stats
    if done.empty:
        return f"no results at the {profile} profile"
    kept = kept_settings(stats)
    text = (f"at the {profile} profile, {len(kept)} of {plural(len(done), 'mitigation')} "
            f"{'keeps' if len(kept) == 1 else 'keep'} clean accuracy within {fmt_value(KEEP_MARGIN)} of the control"
            + (f" ({join_values(kept, formatter=str)})" if kept else ""))
    if interpolation.get("window") is not None and "reference" in interpolation:
        text += f"; weight interpolation: {'an' if interpolation['window'] else 'no'} α > 0 keeps clean accuracy " \
                f"without following the pattern"
    if recovery:
        text += "; recovery: " + ", ".join(f"{v['verdict']} at lr {fmt_value(lr)}" for lr, v in recovery.items())
    return text


# ----------------------------------------------------------------------------------------------- interpolation

INTERP_COLUMNS = ["seed", "alpha", "statistics", "clean_acc", "matched_acc", "mismatched_acc", "follow_rate"]
STATISTICS = {"reestimated": "re-estimated on clean images", "raw": "interpolated"}


def interpolation_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per (seed, alpha, batch-norm statistics) of
    :func:`erosion_utils.experiments.mitigation.interpolation_experiment`."""
    out = []
    for row in rows:
        if row.get("missing"):
            continue
        for p in row["interpolation"]["result"]["points"]:
            for which, title in STATISTICS.items():
                out.append({"seed": row["seed"], "alpha": p["alpha"], "statistics": title,
                            **{k: p[which][k] for k in INTERP_COLUMNS[3:]}})
    return pd.DataFrame(out, columns=INTERP_COLUMNS)


def interpolation_answer(frame: pd.DataFrame) -> dict:
    """Is there an alpha > 0 that keeps clean accuracy and drops the pattern (``RULES["interpolation"]``)? On the
    mean over seeds with re-estimated statistics: the alphas that do both, the largest, the first alpha whose follow
    rate reaches :data:`FOLLOW_PARTIAL` and the first that loses clean accuracy, and a sentence."""
    curve = frame[frame.statistics == STATISTICS["reestimated"]].groupby("alpha")[
        ["clean_acc", "matched_acc", "follow_rate"]].mean().sort_index()
    if curve.empty or 0.0 not in curve.index:
        return {"window": [], "sentence": "The interpolation could not be evaluated: its results, or its alpha = 0 "
                                          "point, are missing."}
    ref = float(curve.loc[0.0, "clean_acc"])
    keeps = curve.clean_acc >= ref - KEEP_MARGIN
    drops = curve.follow_rate < FOLLOW_PARTIAL
    window = [float(a) for a in curve.index if a > 0 and keeps[a] and drops[a]]
    first_follow = next((float(a) for a in curve.index if not drops[a]), None)
    first_loss = next((float(a) for a in curve.index if a > 0 and not keeps[a]), None)
    scope = seeds_scope(frame.seed.nunique())
    if window:
        best = max(window)
        at = "" if len(window) == 1 else f"; at the largest, α = {fmt_value(best)},"
        sentence = (f"Yes, on this grid: at α = {join_values(window)} the interpolated network keeps clean "
                    f"accuracy within {fmt_value(KEEP_MARGIN)} of the pretrained network's ({fmt(ref)}) and follows "
                    f"the pattern in fewer than {fmt_value(FOLLOW_PARTIAL)} of mismatched images ({scope}){at} "
                    f"clean accuracy is {fmt(curve.loc[best, 'clean_acc'])}, the follow rate "
                    f"{fmt(curve.loc[best, 'follow_rate'])} and matched accuracy "
                    f"{fmt(curve.loc[best, 'matched_acc'])}.").replace(f"({scope}) clean", f"({scope}): clean")
    else:
        sentence = (f"No: no α > 0 on this grid keeps clean accuracy within {fmt_value(KEEP_MARGIN)} of the "
                    f"pretrained network's ({fmt(ref)}) while the follow rate stays below "
                    f"{fmt_value(FOLLOW_PARTIAL)} ({scope}).")
    order = []
    if first_loss is not None:
        order.append(f"clean accuracy first falls out of the margin at α = {fmt_value(first_loss)}")
    else:
        order.append("clean accuracy stays within the margin up to α = 1")
    if first_follow is not None:
        order.append(f"the follow rate first reaches {fmt_value(FOLLOW_PARTIAL)} at α = {fmt_value(first_follow)}")
    else:
        order.append(f"the follow rate stays below {fmt_value(FOLLOW_PARTIAL)} up to α = 1")
    sentence += " Along the path (re-estimated statistics), " + " and ".join(order) + "."
    return {"window": window, "reference": ref, "first_follow": first_follow, "first_loss": first_loss,
            "sentence": sentence}


def bn_effect_sentence(frame: pd.DataFrame) -> str:
    """What re-estimating batch-norm statistics on clean images does to the fine-tuned network itself (alpha = 1)."""
    end = frame[frame.alpha == 1.0].groupby("statistics")[["clean_acc", "follow_rate", "matched_acc"]].mean()
    if len(end) < 2:
        return ""
    raw, new = end.loc[STATISTICS["raw"]], end.loc[STATISTICS["reestimated"]]
    return (f"At α = 1 (the fine-tuned network), re-estimating its batch-norm statistics on clean training "
            f"images alone moves clean accuracy from {fmt(raw.clean_acc)} to {fmt(new.clean_acc)}, the follow rate "
            f"from {fmt(raw.follow_rate)} to {fmt(new.follow_rate)} and matched accuracy from {fmt(raw.matched_acc)} "
            f"to {fmt(new.matched_acc)} ({seeds_scope(frame.seed.nunique())}).")


# ---------------------------------------------------------------------------------------------------- recovery

CURVE_COLUMNS = ["seed", "lr", "arm", "step", "clean_acc", "follow_rate"]


def recovery_curves(rows: list[dict]) -> pd.DataFrame:
    """One row per (seed, recovery rate, arm, evaluated recovery step)."""
    out = []
    for row in rows:
        if row.get("missing"):
            continue
        for run in row["recovery"]["result"]["runs"]:
            for arm, a in run["arms"].items():
                for rec in a["records"]:
                    out.append({"seed": row["seed"], "lr": run["lr"], "arm": arm, "step": rec["step"],
                                "clean_acc": rec["clean_acc"], "follow_rate": rec["follow_rate"]})
    return pd.DataFrame(out, columns=CURVE_COLUMNS)


def first_reaching(steps, values, target: float) -> int | None:
    """The first step whose value reaches ``target`` (None if none does)."""
    return next((int(s) for s, v in zip(steps, values) if v >= target), None)


def recovery_steps(curves: pd.DataFrame) -> pd.DataFrame:
    """Per recovery rate, for each seed and for the mean over seeds: the target (:data:`RECOVERY_TARGET` times the
    control arm's final clean accuracy), and the steps the eroded network and the network trained from scratch
    need to reach it (None: not within the run)."""
    rows = []
    for lr, g in curves.groupby("lr"):
        mean = g.groupby(["arm", "step"]).clean_acc.mean().reset_index().assign(seed="mean")
        for seed, s in list(g.groupby("seed")) + [("mean", mean)]:
            arms = {arm: a.sort_values("step") for arm, a in s.groupby("arm")}
            if not {"pattern", "control", "scratch"} <= set(arms):
                continue
            target = RECOVERY_TARGET * float(arms["control"].clean_acc.iloc[-1])
            rows.append({"lr": lr, "seed": seed, "target": target,
                         "start_pattern": float(arms["pattern"].clean_acc.iloc[0]),
                         "end_pattern": float(arms["pattern"].clean_acc.iloc[-1]),
                         "end_control": float(arms["control"].clean_acc.iloc[-1]),
                         "end_scratch": float(arms["scratch"].clean_acc.iloc[-1]),
                         "steps_pattern": first_reaching(arms["pattern"].step, arms["pattern"].clean_acc, target),
                         "steps_scratch": first_reaching(arms["scratch"].step, arms["scratch"].clean_acc, target),
                         "total_steps": int(arms["pattern"].step.max())})
    return pd.DataFrame(rows, columns=["lr", "seed", "target", "start_pattern", "end_pattern", "end_control",
                                       "end_scratch", "steps_pattern", "steps_scratch", "total_steps"])


PROBE_COLUMNS = ["seed", "when", "lr", "arm", "layer", "depth", "probe_accuracy"]


def recovery_probes(rows: list[dict]) -> pd.DataFrame:
    """Clean-label probe accuracy per layer: at the start of recovery (``when`` = "start") and at its end, per
    recovery rate, for the eroded and the control arm."""
    out = []
    for row in rows:
        if row.get("missing"):
            continue
        res = row["recovery"]["result"]
        for arm, layers in res["start_probes"].items():
            out += [{"seed": row["seed"], "when": "start", "lr": math.nan, "arm": arm, "layer": x["layer"],
                     "depth": x["depth"], "probe_accuracy": x["probe_accuracy"]} for x in layers]
        for run in res["runs"]:
            for arm, a in run["arms"].items():
                out += [{"seed": row["seed"], "when": "end", "lr": run["lr"], "arm": arm, "layer": x["layer"],
                         "depth": x["depth"], "probe_accuracy": x["probe_accuracy"]} for x in a["probes"] or []]
    return pd.DataFrame(out, columns=PROBE_COLUMNS)


def probe_gaps(probes: pd.DataFrame) -> pd.DataFrame:
    """Per (when, recovery rate) and layer: control arm minus eroded arm probe accuracy, mean over seeds."""
    if probes.empty:
        return pd.DataFrame(columns=["when", "lr", "depth", "layer", "gap"])
    p = probes.assign(lr=probes.lr.fillna(-1.0))
    wide = p.pivot_table(index=["when", "lr", "depth", "layer", "seed"], columns="arm",
                         values="probe_accuracy").reset_index()
    wide["gap"] = wide["control"] - wide["pattern"]
    out = wide.groupby(["when", "lr", "depth", "layer"]).gap.mean().reset_index()
    out["lr"] = out.lr.replace(-1.0, math.nan)
    return out


def recovery_speed(rec: int | None, scr: int | None, end_pattern: float, end_scratch: float) -> str:
    """"fast", "slow" (as slow as scratch) or "between", by ``RULES["recovery"]``, from the steps the eroded network
    (``rec``) and the network trained from scratch (``scr``) need to reach the target (None: not within the run)."""
    if rec is not None and (scr is None or rec <= FAST_RATIO * scr):
        return "fast"
    if scr is not None and (rec is None or rec >= SLOW_RATIO * scr):
        return "slow"
    if rec is None and scr is None and end_pattern - end_scratch < AHEAD_MARGIN:
        return "slow"
    return "between"


def recovery_verdicts(steps: pd.DataFrame, gaps: pd.DataFrame) -> dict[float, dict]:
    """Per recovery rate, by ``RULES["recovery"]`` on the mean over seeds: suppression, destruction, partial or
    nothing to recover, with the numbers behind it and a sentence."""
    out = {}
    start = gaps[gaps.when == "start"]
    start_gap = float(start.gap.max()) if len(start) else math.nan
    for _, r in steps[steps.seed == "mean"].sort_values("lr", ascending=False, kind="stable").iterrows():
        lr = float(r.lr)
        end = gaps[(gaps.when == "end") & np.isclose(gaps.lr.astype(float), lr)]
        end_gap = float(end.gap.max()) if len(end) else math.nan
        n_layers = int(gaps.depth.max()) + 1 if len(gaps) else 0
        worst = (f"layer {int(end.loc[end.gap.idxmax()].depth) + 1} of {n_layers}, "
                 f"{end.loc[end.gap.idxmax()].layer}") if len(end) else None
        rec = None if is_nan(r.steps_pattern) else int(r.steps_pattern)
        scr = None if is_nan(r.steps_scratch) else int(r.steps_scratch)
        speed = recovery_speed(rec, scr, r.end_pattern, r.end_scratch)
        probes_back = not is_nan(end_gap) and end_gap <= PROBE_THRESHOLD
        if rec == 0:
            verdict = "nothing to recover"
        elif speed == "slow":
            verdict = "destruction"
        elif speed == "fast" and probes_back:
            verdict = "suppression"
        else:
            verdict = "partial"

        def reach(s: int | None, who: str) -> str:
            return f"{who} does not reach it within the run" if s is None else f"{who} reaches it after {s} steps"

        sentence = (f"At recovery rate {fmt_value(lr)} (target: {fmt_value(RECOVERY_TARGET)} of the control arm's "
                    f"final clean accuracy, {fmt(r.target)}; {int(r.total_steps)} recovery steps), "
                    f"{reach(rec, 'the eroded network')} and {reach(scr, 'the network trained from scratch')}; "
                    f"at the end, clean accuracy is {fmt(r.end_pattern)} for the eroded network, "
                    f"{fmt(r.end_control)} for the control and {fmt(r.end_scratch)} for scratch. ")
        if not is_nan(end_gap):
            sentence += (f"The largest per-layer probe deficit of the eroded network against the control is "
                         f"{fmt(start_gap)} at the start of recovery and {fmt(end_gap)} ({worst}) at its end. ")
        why = {"fast": ("the eroded network reaches the target and scratch does not" if scr is None else
                        "the eroded network needs at most half of scratch's steps"),
               "slow": "recovery is as slow as learning from scratch",
               "between": ("neither network reaches the target, but the eroded network ends ahead of scratch"
                           if rec is None and scr is None else "recovery is faster than scratch, but not by half")}
        probe_words = "the probes come back" if probes_back else "some layer's probes stay behind"
        sentence += {"suppression": f"Verdict: **suppression**: {why[speed]}; {probe_words}.",
                     "destruction": f"Verdict: **destruction**: {why[speed]}.",
                     "partial": f"Verdict: **partial**: {why[speed]}; {probe_words}.",
                     "nothing to recover": "Verdict: **nothing to recover**: the eroded network starts at or above "
                                           "the target."}[verdict]
        out[lr] = {"verdict": verdict, "speed": speed, "steps_pattern": rec, "steps_scratch": scr,
                   "end_gap": end_gap, "start_gap": start_gap, "probes_back": probes_back, "worst_layer": worst,
                   "target": float(r.target), "sentence": sentence}
    return out


def recovery_steps_table(steps: pd.DataFrame) -> pd.DataFrame:
    """:func:`recovery_steps` as the page shows it."""
    def cell(v, total):
        return f"> {int(total)}" if is_nan(v) else str(int(v))

    steps = steps.sort_values("lr", ascending=False, kind="stable")
    return pd.DataFrame([{"recovery lr": fmt_value(float(r.lr)), "seed": str(r.seed),
                          "target clean acc.": fmt(r.target),
                          "eroded at start": fmt(r.start_pattern), "steps: eroded → target": cell(r.steps_pattern, r.total_steps),
                          "steps: scratch → target": cell(r.steps_scratch, r.total_steps), "end: eroded": fmt(r.end_pattern),
                          "end: control": fmt(r.end_control), "end: scratch": fmt(r.end_scratch)}
                         for _, r in steps.iterrows()])
