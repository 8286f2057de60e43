"""When and why erosion happens: per-run dynamics, cell statistics and the chapter's verdict rules, from cached
results of :mod:`erosion_utils.experiments.mechanism` (pure functions: no training, no plotting).

The two hypotheses (see the chapter):
- **instability (H1):** a jump to a large learning rate throws the network out of its minimum, and while it re-fits
  the training set the pattern wins; then erosion comes with a loss spike, and avoiding the spike (warm-up) prevents it;
- **drift (H2):** the pattern takes over gradually even when training is stable; then a long stable run erodes.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import mean_ci, run_summary
from .claims import EROSION_THRESHOLD, FOLLOW_PARTIAL
from .words import clip_interval, epochs

SPIKE_LOSS = 1.0  # largest batch loss that we call a spike (chance level on 10 classes is ln 10 = 2.30)
MATCH_MARGIN = 0.10  # two mean erosions closer than this count as the same
FOLLOW_RISE = 0.10  # rise of the follow rate, long run over short run, that we call creeping
GROUPS_SHORT = {"map": "map", "same_steps": "same steps", "same_noise": "same lr/batch", "weight_decay": "weight decay",
                "warmup": "warm-up", "duration": "long runs"}
SPIKE_SHARE = 0.9  # share of eroding runs with a spike that we call an association of erosion with instability


# --------------------------------------------------------------------------------------------- per-run dynamics

def _loss(rec: dict) -> float:
    value = rec.get("train_loss_max", rec.get("train_loss"))
    return float("nan") if value is None else float(value)


def peak_loss(records: list[dict]) -> tuple[float, int | None]:
    """The largest training loss over a run and the step of the record where it occurred ((nan, None) when no
    record has a loss). Uses the largest batch loss since the previous record where recorded, else the mean."""
    best, at = float("nan"), None
    for rec in records:
        v = _loss(rec)
        if not math.isnan(v) and (math.isnan(best) or v > best):
            best, at = v, rec["step"]
    return best, at


def first_crossing(records: list[dict], key: str = "follow_rate", threshold: float = 0.5) -> int | None:
    """The first evaluated step at which ``key`` exceeds ``threshold`` (None if it never does)."""
    return next((rec["step"] for rec in records if rec.get(key) is not None and rec[key] > threshold), None)


def largest_jump(records: list[dict], key: str = "weight_distance") -> tuple[float, int | None]:
    """The largest increase of ``key`` between consecutive evaluations and the step at which it ended
    ((nan, None) when ``key`` was not recorded)."""
    values = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    jumps = [(b - a, s) for (_, a), (s, b) in zip(values, values[1:])]
    if not jumps:
        return float("nan"), None
    return max(jumps)


# --------------------------------------------------------------------------------------------------- tables

def run_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per computed configuration of the chapter (missing ones flagged): settings, steps, the erosion
    summary of :func:`erosion_utils.report.analysis.run_summary` and the dynamics above for the pattern run and control."""
    out = []
    for row in rows:
        c = row["config"]
        base = {"groups": tuple(row["groups"]), "seed": c["seed"], "finetune_lr": c["finetune_lr"],
                "batch_size": c["finetune_batch_size"], "epochs": c["finetune_epochs"],
                "warmup_epochs": c.get("finetune_warmup_epochs", 0.0), "weight_decay": c["finetune_weight_decay"],
                "lr_per_batch": c["finetune_lr"] / c["finetune_batch_size"], "missing": bool(row.get("missing"))}
        if not row.get("missing"):
            p, q = row["pattern"]["result"], row["control"]["result"]
            base.update(run_summary(row["pattern"], row["control"]))
            base["steps"] = p["total_steps"]
            base["peak_loss_pattern"], base["peak_step_pattern"] = peak_loss(p["records"])
            base["peak_loss_control"], base["peak_step_control"] = peak_loss(q["records"])
            base["follow_cross_step"] = first_crossing(p["records"])
            base["weight_jump_pattern"], base["weight_jump_step"] = largest_jump(p["records"])
            base["weight_jump_control"], _ = largest_jump(q["records"])
            base["final_distance_pattern"] = p["records"][-1].get("weight_distance", float("nan"))
            base["spike_pattern"] = bool(base["peak_loss_pattern"] > SPIKE_LOSS)
            base["spike_control"] = bool(base["peak_loss_control"] > SPIKE_LOSS)
            base["eroded"] = bool(base["erosion"] > EROSION_THRESHOLD)
        out.append(base)
    frame = pd.DataFrame(out)
    return frame


def in_group(frame: pd.DataFrame, group: str) -> pd.DataFrame:
    """The computed runs of ``group`` (a run may belong to several groups)."""
    if frame.empty:
        return frame
    return frame[frame.groups.map(lambda g: group in g) & ~frame.missing]


def cell_stats(frame: pd.DataFrame, by: list[str], columns=("erosion", "follow_pattern")) -> pd.DataFrame:
    """Mean, 95% CI and seed count of ``columns`` per cell ``by``."""
    rows = []
    if frame.empty:
        return pd.DataFrame(columns=[*by, "seeds"] + [f"{c}_{s}" for c in columns for s in ("mean", "lo", "hi")])
    for key, g in frame.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key), seeds=len(g))
        for col in columns:
            m, lo, hi = mean_ci(g[col].astype(float))
            row[f"{col}_mean"] = m
            row[f"{col}_lo"], row[f"{col}_hi"] = clip_interval(col, lo, hi)
        rows.append(row)
    return pd.DataFrame(rows)


def steps_by_batch(frame: pd.DataFrame) -> dict[int, int]:
    """Optimiser steps of the phase map's runs per batch size (the map keeps the epochs fixed)."""
    grid = in_group(frame, "map")
    return {int(b): int(g.steps.iloc[0]) for b, g in grid.groupby("batch_size")} if len(grid) else {}


# --------------------------------------------------------------------------------------------- noise vs steps

def control_pairs(frame: pd.DataFrame, reference_batch: int) -> pd.DataFrame:
    """For each control rate and batch size other than the reference: mean erosion at the reference batch, at the
    same epochs (the map), at the same steps, and at the same lr/batch (linear scaling)."""
    ss, sn, grid = in_group(frame, "same_steps"), in_group(frame, "same_noise"), in_group(frame, "map")

    def mean_at(runs: pd.DataFrame, lr: float, b: int) -> float:
        sel = runs[(np.isclose(runs.finetune_lr, lr)) & (runs.batch_size == b)]
        return float(sel.erosion.mean()) if len(sel) else float("nan")

    ref_rows = ss[ss.batch_size == reference_batch]
    out = []
    for lr in sorted(ref_rows.finetune_lr.unique()):
        ref = mean_at(ref_rows, lr, reference_batch)
        for b in sorted(set(ss.batch_size) - {reference_batch}):
            out.append({"finetune_lr": lr, "batch_size": b, "reference": ref,
                        "same_epochs": mean_at(grid, lr, b) if len(grid) else float("nan"),
                        "same_steps": mean_at(ss, lr, b),
                        "same_noise": mean_at(sn, lr * b / reference_batch, b)})
    return pd.DataFrame(out, columns=["finetune_lr", "batch_size", "reference", "same_epochs", "same_steps",
                                      "same_noise"])


def noise_or_steps(pairs: pd.DataFrame, margin: float = MATCH_MARGIN) -> dict:
    """Which variable the controls point to. A pair is informative when the fixed-epoch run differs from the
    reference by more than ``margin``; a control restores it when it comes within ``margin`` of the reference.
    The variable is the one whose control restores at least two thirds of the informative pairs."""
    full = pairs.dropna(subset=["reference", "same_epochs", "same_steps", "same_noise"])
    informative = full[(full.same_epochs - full.reference).abs() > margin]
    n = len(informative)
    steps_ok = int(((informative.same_steps - informative.reference).abs() <= margin).sum())
    noise_ok = int(((informative.same_noise - informative.reference).abs() <= margin).sum())
    if full.empty:
        verdict = "not tested"
    elif n == 0:
        verdict = "batch size does not matter here"
    else:
        steps, noise = steps_ok >= 2 * n / 3, noise_ok >= 2 * n / 3
        verdict = ("both" if steps and noise else "number of steps" if steps else "noise scale" if noise
                   else "neither")
    return {"verdict": verdict, "pairs": int(len(full)), "informative": n, "restored_by_steps": steps_ok,
            "restored_by_noise": noise_ok, "margin": margin}


def collapse_spread(frame: pd.DataFrame, decimals: int = 6) -> dict:
    """How well lr/batch alone predicts erosion over the fixed-epoch and same-noise runs: the mean within-value
    standard deviation of cell means that share an lr/batch value, against the standard deviation of all cell
    means (1 would mean lr/batch explains nothing; 0 a perfect collapse). NaN when no lr/batch value is shared."""
    runs = pd.concat([in_group(frame, "map"), in_group(frame, "same_noise")]).drop_duplicates(
        subset=["finetune_lr", "batch_size", "epochs", "seed", "warmup_epochs", "weight_decay"])
    if runs.empty:
        return {"shared_values": 0, "within_sd": float("nan"), "total_sd": float("nan"), "ratio": float("nan")}
    cells = runs.groupby(["finetune_lr", "batch_size"]).erosion.mean().reset_index()
    cells["ratio"] = (cells.finetune_lr / cells.batch_size).round(decimals + 6)
    shared = [g.erosion.std(ddof=0) for _, g in cells.groupby("ratio") if len(g) > 1]
    total = float(cells.erosion.std(ddof=0))
    within = float(np.mean(shared)) if shared else float("nan")
    return {"shared_values": len(shared), "within_sd": within, "total_sd": total,
            "ratio": within / total if shared and total > 0 else float("nan")}


# --------------------------------------------------------------------------------------------------- verdicts

def instability_verdict(frame: pd.DataFrame, eroding_lr: float) -> dict:
    """H1, from two tests. *Association*: the share of eroding runs whose pattern run has a loss spike. *Removal*:
    warm-ups of at least one epoch at ``eroding_lr`` — do they remove the spike (most of their runs without one), and
    do they then prevent erosion (mean erosion at or below the threshold)?

    - **supported**: at least SPIKE_SHARE of eroding runs spike, and a warm-up that removes the spike prevents erosion;
    - **not supported**: fewer than two thirds of eroding runs spike, or a warm-up removes the spike and erosion
      stays;
    - **partly supported**: the association holds only in part (two thirds to SPIKE_SHARE), or warm-up did not remove
      the spike, so it could not test whether avoiding the spike prevents erosion.
    """
    done = frame[~frame.missing] if len(frame) else frame
    eroding = done[done.eroded] if len(done) else done
    spiking = int(eroding.spike_pattern.sum()) if len(eroding) else 0
    share = spiking / len(eroding) if len(eroding) else float("nan")
    warm = in_group(frame, "warmup")
    warm = warm[np.isclose(warm.finetune_lr, eroding_lr)] if len(warm) else warm
    by_w = warm.groupby("warmup_epochs").erosion.mean() if len(warm) else pd.Series(dtype=float)
    no_warm = float(by_w.get(0.0, float("nan")))
    long_runs = warm[warm.warmup_epochs >= 1.0] if len(warm) else warm
    removes = bool(len(long_runs)) and float((~long_runs.spike_pattern).mean()) >= 0.5
    prevents = bool(len(long_runs)) and float(long_runs.erosion.mean()) <= EROSION_THRESHOLD
    crossings = eroding.dropna(subset=["follow_cross_step", "peak_step_pattern"]) if len(eroding) else eroding
    precedes = int((crossings.peak_step_pattern <= crossings.follow_cross_step).sum()) if len(crossings) else 0
    if not len(done):
        verdict = "not tested"
    elif not len(eroding):
        verdict = "no erosion to explain"
    elif share < 2 / 3 or (removes and not prevents):
        verdict = "not supported"
    elif share >= SPIKE_SHARE and removes and prevents:
        verdict = "supported"
    else:
        verdict = "partly supported"
    return {"verdict": verdict, "eroding_runs": int(len(eroding)), "eroding_with_spike": spiking,
            "spike_share": share, "warmup_tested": bool(len(long_runs)), "warmup_removes_spike": removes,
            "warmup_prevents": prevents, "erosion_without_warmup": no_warm,
            "erosion_by_warmup": {float(k): float(v) for k, v in by_w.items()},
            "crossings": int(len(crossings)), "peak_precedes_crossing": precedes}


def drift_verdict(frame: pd.DataFrame) -> dict:
    """H2 holds at a rate whose runs of the usual length do not erode (mean erosion at or below the threshold and
    mean follow rate at or below FOLLOW_PARTIAL) when its long runs have no loss spike and erode; it is 'creeping'
    when the follow rate of the long runs exceeds the short runs' by more than FOLLOW_RISE without that. A rate whose
    short runs erode already, or whose long runs spike, does not test drift."""
    runs = in_group(frame, "duration")
    per_lr = {}
    for lr, g in runs.groupby("finetune_lr") if len(runs) else []:
        short, long = g[g.epochs == g.epochs.min()], g[g.epochs == g.epochs.max()]
        if short.epochs.iloc[0] == long.epochs.iloc[0]:
            continue
        stable = not bool(long.spike_pattern.any())
        short_erodes = bool(short.erosion.mean() > EROSION_THRESHOLD or short.follow_pattern.mean() > FOLLOW_PARTIAL)
        erodes = bool(long.erosion.mean() > EROSION_THRESHOLD or long.follow_pattern.mean() > FOLLOW_PARTIAL)
        rise = float(long.follow_pattern.mean() - short.follow_pattern.mean())
        state = ("unstable" if not stable else "erodes already" if short_erodes
                 else "drifts to erosion" if erodes else "creeping" if rise > FOLLOW_RISE else "no drift")
        per_lr[float(lr)] = {"short_epochs": float(short.epochs.iloc[0]), "long_epochs": float(long.epochs.iloc[0]),
                             "follow_short": float(short.follow_pattern.mean()),
                             "follow_long": float(long.follow_pattern.mean()), "follow_rise": rise,
                             "erosion_short": float(short.erosion.mean()), "erosion_long": float(long.erosion.mean()),
                             "stable": stable, "state": state, "seeds": int(len(long))}
    states = [v["state"] for v in per_lr.values()]
    informative = [st for st in states if st not in ("unstable", "erodes already")]
    verdict = ("not tested" if not states else "supported" if "drifts to erosion" in states
               else "partly supported" if "creeping" in states
               else "inconclusive (no long run at a stable, non-eroding rate)" if not informative
               else "not supported")
    return {"verdict": verdict, "per_lr": per_lr}


# ------------------------------------------------------------- the rules as they were before the data (6905857)

ORIGINAL_RULES_COMMIT = "6905857"  # the mechanism rules as first committed, before 44 of the 93 cpu configurations
REFINED_RULES_COMMIT = "6314841"  # the refinement, committed after those 44 had finished


def instability_verdict_original(frame: pd.DataFrame, eroding_lr: float) -> dict:
    """H1 as first committed (commit 6905857, kept verbatim so the book can show what the refinement changed):
    holds when (a) every eroding run of the chapter has a loss spike in its pattern run, and (b) warm-up of at least
    one epoch at ``eroding_lr`` keeps mean erosion at or below the threshold while no warm-up erodes."""
    done = frame[~frame.missing] if len(frame) else frame
    eroding = done[done.eroded] if len(done) else done
    spiking = int(eroding.spike_pattern.sum()) if len(eroding) else 0
    warm = in_group(frame, "warmup")
    warm = warm[np.isclose(warm.finetune_lr, eroding_lr)] if len(warm) else warm
    by_w = warm.groupby("warmup_epochs").erosion.mean() if len(warm) else pd.Series(dtype=float)
    no_warm = float(by_w.get(0.0, float("nan")))
    long_warm = by_w[by_w.index >= 1.0]
    prevents = bool(len(long_warm) and no_warm > EROSION_THRESHOLD and (long_warm <= EROSION_THRESHOLD).mean() >= 1.0)
    all_spike = bool(len(eroding)) and spiking == len(eroding)
    if not len(eroding) or not len(warm):
        verdict = "not tested" if not len(done) else ("no erosion to explain" if not len(eroding) else "partly tested")
    else:
        verdict = "supported" if all_spike and prevents else "partly supported" if all_spike or prevents \
            else "not supported"
    return {"verdict": verdict, "eroding_runs": int(len(eroding)), "eroding_with_spike": spiking,
            "warmup_prevents": prevents}


def drift_verdict_original(frame: pd.DataFrame) -> dict:
    """H2 as first committed (commit 6905857): holds at a stable rate when its long runs have no loss spike and still
    erode (mean erosion above the threshold, or mean follow rate above FOLLOW_PARTIAL); creeping when the long run's
    follow rate exceeds the short run's by more than FOLLOW_RISE without that."""
    runs = in_group(frame, "duration")
    per_lr = {}
    for lr, g in runs.groupby("finetune_lr") if len(runs) else []:
        short, long = g[g.epochs == g.epochs.min()], g[g.epochs == g.epochs.max()]
        if short.epochs.iloc[0] == long.epochs.iloc[0]:
            continue
        stable = not bool(long.spike_pattern.any())
        erodes = bool(long.erosion.mean() > EROSION_THRESHOLD or long.follow_pattern.mean() > FOLLOW_PARTIAL)
        rise = float(long.follow_pattern.mean() - short.follow_pattern.mean())
        per_lr[float(lr)] = ("drifts to erosion" if stable and erodes else "creeping" if stable and rise > FOLLOW_RISE
                             else "unstable" if not stable else "no drift")
    states = list(per_lr.values())
    verdict = ("not tested" if not states else "supported" if "drifts to erosion" in states
               else "partly supported" if "creeping" in states
               else "inconclusive (no long run was stable)" if set(states) == {"unstable"} else "not supported")
    return {"verdict": verdict, "per_lr": per_lr}


# ---------------------------------------------------------------------------------------------------- prose

def _lr(x: float) -> str:
    return f"{x:g}"


def _seeds(n: int) -> str:
    return "one seed" if n == 1 else f"{n} seeds"


def _pairs(n: int) -> str:
    return "one pair" if n == 1 else f"{n} pairs"


def instability_sentence(v: dict, eroding_lr: float) -> str:
    """The instability verdict in words, from its numbers."""
    if v["verdict"] == "not tested":
        return "The instability hypothesis could not be tested: the runs it needs are missing."
    if v["verdict"] == "no erosion to explain":
        return ("No run of this chapter eroded by more than the threshold, so there is no erosion for the "
                "instability hypothesis to explain.")
    n, s = v["eroding_runs"], v["eroding_with_spike"]
    spikes = (f"all {n} eroding runs" if s == n and n > 1 else "the one eroding run" if n == 1 and s == 1
              else f"{s} of {n} eroding runs")
    first = (f"A loss spike (largest batch loss above {SPIKE_LOSS:g}) came with {spikes}" if s else
             f"None of the {n} eroding runs had a loss spike (largest batch loss above {SPIKE_LOSS:g})")
    warm = {k: val for k, val in v["erosion_by_warmup"].items() if k >= 1.0}
    if not v["warmup_tested"]:
        second = "no warm-up of one epoch or more was run"
    else:
        levels = ", ".join(f"{val:.3f} with {epochs(k)}" for k, val in sorted(warm.items()))
        removed = ("removed the spike" if v["warmup_removes_spike"] else "did not remove the spike (it came when the "
                   "rate approached its full value, so the jump alone does not cause it)")
        kept = ("kept mean erosion at or below" if v["warmup_prevents"] else "left mean erosion above")
        second = (f"at lr {_lr(eroding_lr)}, a warm-up of one epoch or more {removed} and {kept} "
                  f"{EROSION_THRESHOLD:g} ({levels}; without warm-up {v['erosion_without_warmup']:.3f})")
    return f"{first}; {second}. Verdict on instability: **{v['verdict']}**."


def drift_sentence(v: dict) -> str:
    """The drift verdict in words, from its numbers."""
    if not v["per_lr"]:
        return "The drift hypothesis could not be tested: the long runs are missing."
    parts = []
    for lr, d in sorted(v["per_lr"].items()):
        what = {"drifts to erosion": "eroded without a loss spike", "creeping": "stayed stable while the follow "
                "rate crept up", "unstable": "had a loss spike, so they do not isolate drift",
                "erodes already": "add little: this rate erodes already in the usual number of epochs",
                "no drift": "stayed stable with no rise of the follow rate"}[d["state"]]
        parts.append(f"at lr {_lr(lr)}, the runs of {epochs(d['long_epochs'])} (against {epochs(d['short_epochs'])}) "
                     f"{what} (follow rate {d['follow_short']:.3f} → {d['follow_long']:.3f}, erosion "
                     f"{d['erosion_short']:.3f} → {d['erosion_long']:.3f}, mean over {_seeds(d['seeds'])})")
    return "Long runs: " + "; ".join(parts) + f". Verdict on drift: **{v['verdict']}**."


def noise_sentence(v: dict, collapse: dict) -> str:
    """What the same-steps and same-noise controls show, in words."""
    if v["verdict"] == "not tested":
        return "The same-steps and same-noise controls are missing, so noise and duration cannot be separated here."
    if v["verdict"] == "batch size does not matter here":
        text = (f"At the same number of epochs, no batch size changed mean erosion by more than {v['margin']:g} "
                f"from the reference batch at the control rates ({_pairs(v['pairs'])} of rate and batch), so there "
                f"is no batch effect for the controls to explain.")
    else:
        which = {"number of steps": "the number of optimiser steps", "noise scale": "the noise scale lr/batch",
                 "both": "both the number of steps and the noise scale (each restores the reference)",
                 "neither": "neither the number of steps nor the noise scale alone"}[v["verdict"]]
        text = (f"Of {_pairs(v['pairs'])} of rate and batch, {v['informative']} changed erosion by more than "
                f"{v['margin']:g} when only the batch size changed. Matching the reference's steps brought "
                f"{v['restored_by_steps']} of them back within {v['margin']:g} of the reference, matching lr/batch "
                f"brought {v['restored_by_noise']}: the data point to {which}.")
    if collapse["shared_values"]:
        text += (f" Runs that share an lr/batch value differ in mean erosion by a standard deviation of "
                 f"{collapse['within_sd']:.3f}, against {collapse['total_sd']:.3f} over all cells.")
    return text


def key_result(instability: dict, drift: dict, noise: dict, profile: str) -> str:
    """Plain text for the book's Key results box: the three verdicts of the chapter and the profile."""
    carried = {"both": "both the number of steps and the noise scale", "number of steps": "the number of steps",
               "noise scale": "the noise scale lr/batch", "neither": "neither steps nor noise scale alone"}
    return (f"instability (a loss spike, and a calm warm-up preventing erosion) {instability['verdict']}; slow drift "
            f"{drift['verdict']}; the batch-size effect is carried by {carried.get(noise['verdict'], noise['verdict'])} "
            f"({profile} profile)")
