"""The mechanism chapter's verdicts by the analysis plan (:mod:`erosion_utils.report.plan`): which settings erode,
collapse or spike, whether the instability is necessary (the intervention arms), whether erosion drifts in at calm
rates, and whether the batch-size effect follows the noise scale or the number of steps (a regression). Pure
functions of cached results (the rows of :func:`erosion_utils.experiments.mechanism.mechanism_experiment`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import plan
from . import verdicts as V

# the parts of a configuration that make a setting (the seed varies within it)
SETTING = ("finetune_lr", "finetune_batch_size", "finetune_epochs", "finetune_warmup_epochs", "finetune_clip_norm",
           "finetune_weight_decay")


def _get(cfg: dict, key: str) -> float:
    return cfg.get(key, 0.0) if key in ("finetune_warmup_epochs", "finetune_clip_norm") else cfg[key]


def setting_of(cfg: dict) -> tuple:
    """The setting of a configuration (rate, batch, epochs, warm-up, clipping, weight decay)."""
    return tuple(float(_get(cfg, k)) for k in SETTING)


@dataclass
class Setting:
    """The runs of one setting over seeds: per seed the pattern run's and the control's cached entries."""

    key: tuple
    groups: set
    pattern: dict  # seed -> entry
    control: dict
    pretrain: dict

    @property
    def lr(self) -> float:
        return self.key[0]

    @property
    def batch(self) -> int:
        return int(self.key[1])

    @property
    def epochs(self) -> float:
        return self.key[2]

    @property
    def warmup(self) -> float:
        return self.key[3]

    @property
    def clip(self) -> float:
        return self.key[4]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.pattern)

    def entries(self) -> list[dict]:
        return [*self.pattern.values(), *self.control.values(), *self.pretrain.values()]

    def final(self, which: str, key: str) -> dict:
        runs = self.pattern if which == "pattern" else self.control
        return {s: e["result"]["records"][-1][key] for s, e in runs.items()}

    def start(self, key: str) -> dict:
        return {s: e["result"]["records"][0][key] for s, e in self.control.items()}

    def monitor_peak(self, which: str) -> dict:
        """Per seed, the peak monitor loss on the run's own training distribution (NaN without a monitor)."""
        runs, own = (self.pattern, "loss_patterned") if which == "pattern" else (self.control, "loss_clean")
        return {s: max(m[own] for m in e["result"]["monitor"]) if e["result"].get("monitor") else math.nan
                for s, e in runs.items()}


def settings(rows: list[dict]) -> dict[tuple, Setting]:
    """The computed rows grouped by setting (rows of :func:`mechanism_experiment`; missing rows are left out)."""
    out: dict[tuple, Setting] = {}
    for row in rows:
        if row.get("missing"):
            continue
        key = setting_of(row["config"])
        s = out.setdefault(key, Setting(key, set(), {}, {}, {}))
        s.groups |= set(row["groups"])
        s.pattern[row["seed"]], s.control[row["seed"]], s.pretrain[row["seed"]] = (row["pattern"], row["control"],
                                                                                  row["pretrain"])
    return out


# ------------------------------------------------------------------------------------------- one setting's rules

def collapse_verdict(s: Setting) -> V.Verdict:
    """mechanism.collapse: does the clean control itself lose accuracy (pretrained minus control's final)?"""
    start, final = s.start("clean_acc"), s.final("control", "clean_acc")

    def decide(ivs, th):
        o = V.above(ivs["control_loss"], th["collapse"])
        return {"holds": "both collapse", "does not hold": "control keeps"}.get(o, "inconclusive"), {}

    return V.judge("mechanism.collapse", lambda lv: {"control_loss": V.paired(start, final, lv)}, decide,
                   entries=s.entries(), seeds=s.seeds)


def cell_verdict(s: Setting, collapse: V.Verdict | None = None) -> V.Verdict:
    """mechanism.cell: does the setting erode (both-collapse settings are not judged)?"""
    collapse = collapse or collapse_verdict(s)
    control, pattern = s.final("control", "clean_acc"), s.final("pattern", "clean_acc")

    def decide(ivs, th):
        if collapse.outcome == "both collapse":
            return "both collapse", {}
        o = V.above(ivs["erosion"], th["erosion"])
        return {"holds": "erodes", "does not hold": "does not erode"}.get(o, "inconclusive"), {}

    return V.judge("mechanism.cell", lambda lv: {"erosion": V.paired(control, pattern, lv)}, decide,
                   entries=s.entries(), seeds=s.seeds)


def spike_verdict(s: Setting, which: str) -> V.Verdict:
    """mechanism.spike for the pattern runs or the controls of a setting (needs the monitor)."""
    peaks = s.monitor_peak(which)

    def decide(ivs, th):
        o = V.above(ivs["peak"], th["spike"])
        return {"holds": "spikes", "does not hold": "calm"}.get(o, "inconclusive"), {}

    return V.judge("mechanism.spike", lambda lv: {"peak": V.loss(peaks, lv)}, decide,
                   entries=(s.pattern if which == "pattern" else s.control).values(), seeds=s.seeds)


def cell_table(sets: dict[tuple, Setting]) -> pd.DataFrame:
    """One row per setting: its groups, seeds, erosion and control loss intervals, follow rate, and its verdicts
    (cell, collapse, spike of pattern runs and of controls where there is a monitor)."""
    rows = []
    for key, s in sorted(sets.items()):
        col = collapse_verdict(s)
        cell = cell_verdict(s, col)
        row = {**dict(zip(SETTING, key)), "groups": tuple(sorted(s.groups)), "seeds": len(s.seeds),
               "erosion": cell.intervals["erosion"], "control_loss": col.intervals["control_loss"],
               "follow": V.rate(s.final("pattern", "follow_rate")), "cell": cell.outcome, "cell_label": cell.label,
               "cell_fragile": cell.fragile, "cell_sensitivity": cell.sensitivity, "collapse": col.outcome,
               "distance_control": float(np.mean(list(s.final("control", "weight_distance").values())))
               if all("weight_distance" in e["result"]["records"][-1] for e in s.control.values()) else math.nan}
        if all(e["result"].get("monitor") for e in [*s.pattern.values(), *s.control.values()]):
            sp, sc = spike_verdict(s, "pattern"), spike_verdict(s, "control")
            row.update(spike_pattern=sp.outcome, spike_control=sc.outcome, peak_pattern=sp.intervals["peak"],
                       peak_control=sc.intervals["peak"])
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ instability

REFERENCE_LR = 0.03  # the calm rate whose controls' weight distance says whether an arm still trains (the plan's rule)


def instability_verdict(sets: dict[tuple, Setting], eroding_lr: float, ref_batch: int,
                        reference_lr: float = REFERENCE_LR) -> V.Verdict:
    """mechanism.instability: at (``eroding_lr``, ``ref_batch``), the arm without intervention and the clipping and
    long warm-up arms; an arm qualifies when its pattern runs and controls are calm and its control moved at least
    ``move`` times as far as the control at ``reference_lr`` (same batch, usual length)."""
    arms = {k: s for k, s in sets.items() if ({"clip", "long_warmup"} & s.groups) and np.isclose(s.lr, eroding_lr)
            and s.batch == ref_batch}
    plain = next((s for s in arms.values() if not s.clip and not s.warmup), None)
    ref = next((s for s in sets.values() if "confirm_map" in s.groups and np.isclose(s.lr, reference_lr)
                and s.batch == ref_batch), None)
    ref_distance = float(np.mean(list(ref.final("control", "weight_distance").values()))) if ref else math.nan
    names = {k: ("no intervention" if not s.clip and not s.warmup else
                 f"clip {s.clip:g}" if s.clip else f"warm-up {s.warmup:g} epochs") for k, s in arms.items()}
    entries = [e for s in arms.values() for e in s.entries()] + (ref.entries() if ref else [])

    def statistics(level: float) -> dict[str, V.Interval]:
        out = {}
        for k, s in arms.items():
            out[f"{names[k]}: erosion"] = V.paired(s.final("control", "clean_acc"), s.final("pattern", "clean_acc"),
                                                   level)
            out[f"{names[k]}: peak (pattern)"] = V.loss(s.monitor_peak("pattern"), level)
            out[f"{names[k]}: peak (control)"] = V.loss(s.monitor_peak("control"), level)
            out[f"{names[k]}: distance (control)"] = V.t_interval(s.final("control", "weight_distance").values(),
                                                                  level, 0.0)
        return out

    def decide(ivs, th):
        if plain is None:
            return "not tested", {"why": "the arm without intervention is missing"}
        p = names[next(k for k, s in arms.items() if s is plain)]
        if not (V.above(ivs[f"{p}: erosion"], th["erosion"]) == "holds"
                and V.above(ivs[f"{p}: peak (pattern)"], th["spike"]) == "holds"):
            return "nothing to explain", {}
        qualifying, arm_outcomes = [], {}
        for k, s in arms.items():
            if s is plain:
                continue
            n = names[k]
            calm = all(V.above(ivs[f"{n}: peak ({w})"], th["spike"]) == "does not hold" for w in ("pattern", "control"))
            moved = ivs[f"{n}: distance (control)"].estimate >= th["move"] * ref_distance
            erodes = V.above(ivs[f"{n}: erosion"], th["erosion"])
            arm_outcomes[n] = {"calm": calm, "moved": bool(moved), "erosion": erodes}
            if calm and moved:
                qualifying.append(erodes)
        details = {"arms": arm_outcomes, "reference_distance": ref_distance}
        if not qualifying:
            return "not tested", details
        if "holds" in qualifying:
            return "not necessary", details
        if all(q == "does not hold" for q in qualifying):
            return "necessary", details
        return "inconclusive", details

    seeds = sorted({x for s in arms.values() for x in s.seeds})
    return V.judge("mechanism.instability", statistics, decide, entries=entries, seeds=seeds)


def counted_arms(v: V.Verdict) -> list[str]:
    """The intervention arms the instability verdict counts: calm (no loss spike) and still training (moved)."""
    return [a for a, d in v.details.get("arms", {}).items() if d["calm"] and d["moved"]]


# ------------------------------------------------------------------------------------------------------ drift

def follow_slope(entry: dict, after_epoch: float) -> float:
    """Least-squares slope (per epoch) of the monitor follow rate of one run after ``after_epoch`` epochs."""
    res = entry["result"]
    per_epoch = res["steps_per_epoch"]
    pts = [(m["step"] / per_epoch, m["follow_rate"]) for m in res["monitor"] if m["step"] / per_epoch >= after_epoch]
    if len(pts) < 3:
        return math.nan
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def drift_verdict(sets: dict[tuple, Setting], candidates: list[float], ref_batch: int) -> V.Verdict:
    """mechanism.drift at the calm candidate rates (usual-length and long runs at ``ref_batch``)."""
    pairs = {}
    for lr in candidates:
        runs = [s for s in sets.values() if "drift" in s.groups and np.isclose(s.lr, lr) and s.batch == ref_batch]
        if len(runs) == 2:
            short, long = sorted(runs, key=lambda s: s.epochs)
            pairs[lr] = (short, long)
    entries = [e for short, long in pairs.values() for e in short.entries() + long.entries()]

    def statistics(level: float) -> dict[str, V.Interval]:
        out = {}
        for lr, (short, long) in pairs.items():
            tag = f"lr {lr:g}"
            out[f"{tag}: short erosion"] = V.paired(short.final("control", "clean_acc"),
                                                    short.final("pattern", "clean_acc"), level)
            out[f"{tag}: long erosion"] = V.paired(long.final("control", "clean_acc"),
                                                   long.final("pattern", "clean_acc"), level)
            for which, s in (("short", short), ("long", long)):
                for run in ("pattern", "control"):
                    out[f"{tag}: {which} peak ({run})"] = V.loss(s.monitor_peak(run), level)
            out[f"{tag}: slope"] = V.t_interval([follow_slope(e, short.epochs) for e in long.pattern.values()],
                                                level, method="t_mean")
            out[f"{tag}: long follow"] = V.rate(long.final("pattern", "follow_rate"), level)
        return out

    def decide(ivs, th):
        states = {}
        for lr in pairs:
            tag = f"lr {lr:g}"
            short_calm = all(V.above(ivs[f"{tag}: short peak ({r})"], th["spike"]) == "does not hold"
                             for r in ("pattern", "control"))
            short_erodes = V.above(ivs[f"{tag}: short erosion"], th["erosion"]) == "holds"
            if not short_calm or short_erodes:
                states[lr] = "does not qualify"
                continue
            long_spikes = any(V.above(ivs[f"{tag}: long peak ({r})"], th["spike"]) == "holds"
                              for r in ("pattern", "control"))
            long_calm = all(V.above(ivs[f"{tag}: long peak ({r})"], th["spike"]) == "does not hold"
                            for r in ("pattern", "control"))
            erosion = V.above(ivs[f"{tag}: long erosion"], th["erosion"])
            slope = V.above(ivs[f"{tag}: slope"], th["slope"])
            if long_spikes:
                states[lr] = "unstable"
            elif long_calm and erosion == "holds":
                states[lr] = "drifts to erosion"
            elif slope == "holds":
                states[lr] = "creeps"
            elif erosion == "does not hold" and slope == "does not hold":
                states[lr] = "no drift"
            else:
                states[lr] = "inconclusive"
        qual = {lr: st for lr, st in states.items() if st != "does not qualify"}
        if not qual:
            return "not tested", {"rates": states}
        if "drifts to erosion" in qual.values():
            return "supported", {"rates": states}
        if "creeps" in qual.values():
            return "partly supported", {"rates": states}
        if all(st == "no drift" for st in qual.values()):
            return "not supported", {"rates": states}
        return "inconclusive", {"rates": states}

    seeds = sorted({x for short, long in pairs.values() for x in long.seeds})
    return V.judge("mechanism.drift", statistics, decide, entries=entries, seeds=seeds)


# ------------------------------------------------------------------------------------------- noise or steps

COEFFICIENT_NAMES = ("per doubling of lr/batch", "per doubling of the steps")


def r_squared(runs: list[dict], keys: tuple[str, ...], y: str) -> float:
    """The share of the variance of ``y`` over ``runs`` that the least-squares fit on ``keys`` explains."""
    if len(runs) <= len(keys) + 1:
        return math.nan
    design = np.column_stack([np.ones(len(runs))] + [[r[k] for r in runs] for k in keys])
    target = np.array([r[y] for r in runs], dtype=float)
    residual = target - design @ np.linalg.lstsq(design, target, rcond=None)[0]
    total = float(((target - target.mean()) ** 2).sum())
    return 1 - float((residual ** 2).sum()) / total if total > 0 else math.nan


def regression_runs(sets: dict[tuple, Setting], table: pd.DataFrame) -> list[dict]:
    """One point per map run outside both-collapse settings: seed, erosion, log2(lr/batch), log2(steps)."""
    collapsed = {tuple(r[k] for k in SETTING) for _, r in table.iterrows() if r["cell"] == "both collapse"}
    out = []
    for key, s in sets.items():
        if "confirm_map" not in s.groups or key in collapsed:
            continue
        for seed in s.seeds:
            p, c = s.pattern[seed]["result"], s.control[seed]["result"]
            out.append({"seed": seed, "lr": s.lr, "batch": s.batch,
                        "erosion": c["records"][-1]["clean_acc"] - p["records"][-1]["clean_acc"],
                        "follow": p["records"][-1]["follow_rate"],
                        "log2_lr_per_batch": math.log2(s.lr / s.batch), "log2_steps": math.log2(p["total_steps"])})
    return out


def noise_steps_verdict(sets: dict[tuple, Setting], table: pd.DataFrame, y: str = "erosion") -> V.Verdict:
    """mechanism.noise_steps: which coefficient's seed-bootstrap interval excludes zero."""
    runs = regression_runs(sets, table)
    used = [e for key, s in sets.items() if "confirm_map" in s.groups for e in s.entries()]
    keys = ("log2_lr_per_batch", "log2_steps")
    names = dict(zip(keys, COEFFICIENT_NAMES))

    def statistics(level: float) -> dict[str, V.Interval]:
        fit = V.seed_bootstrap_fit(runs, keys, y, level) if runs else {k: V.NO_VALUE for k in keys}
        return {names[k]: iv for k, iv in fit.items()}

    def decide(ivs, th):
        noise, steps = (V.excludes_zero(ivs[names[k]]) for k in keys)
        if "inconclusive" in (noise, steps):
            return "inconclusive", {}
        return {("yes", "no"): "noise scale", ("no", "yes"): "number of steps", ("yes", "yes"): "both",
                ("no", "no"): "neither"}[(noise, steps)], {"runs": len(runs), "r2": r_squared(runs, keys, y)}

    return V.judge("mechanism.noise_steps", statistics, decide, entries=used,
                   seeds=sorted({r["seed"] for r in runs}))


# ------------------------------------------------------------------------------------------------------ timing

def timing(sets: dict[tuple, Setting], table: pd.DataFrame, follow: float = 0.5) -> pd.DataFrame:
    """For every pattern run of an eroding confirmatory map setting: when (as a share of the run's steps) its
    monitor loss peaks and when its monitor follow rate first exceeds ``follow``, with the resolution of the monitor
    grid around each (the gap to the previous monitor step), and their order."""
    eroding = {tuple(r[k] for k in SETTING) for _, r in table.iterrows() if r["cell"] == "erodes"}
    out = []
    for key, s in sets.items():
        if key not in eroding or "confirm_map" not in s.groups:
            continue
        for seed, entry in s.pattern.items():
            res = entry["result"]
            mon = res.get("monitor") or []
            if not mon:
                continue
            total = res["total_steps"]
            steps = [m["step"] for m in mon]
            peak_i = int(np.argmax([m["loss_patterned"] for m in mon]))
            cross_i = next((i for i, m in enumerate(mon) if m["follow_rate"] > follow), None)

            def gap(i: int) -> float:
                return (steps[i] - steps[i - 1]) / total if i > 0 else 0.0

            row = {"finetune_lr": s.lr, "batch": s.batch, "seed": seed, "total_steps": total,
                   "peak": steps[peak_i] / total, "peak_resolution": gap(peak_i),
                   "crossing": steps[cross_i] / total if cross_i is not None else math.nan,
                   "crossing_resolution": gap(cross_i) if cross_i is not None else math.nan}
            if cross_i is None:
                row["order"] = "no crossing"
            elif peak_i < cross_i:
                row["order"] = "peak first"
            elif peak_i > cross_i:
                row["order"] = "crossing first"
            else:
                row["order"] = "same monitor step"
            out.append(row)
    return pd.DataFrame(out, columns=["finetune_lr", "batch", "seed", "total_steps", "peak", "peak_resolution",
                                      "crossing", "crossing_resolution", "order"])


# ------------------------------------------------------------------------------------------------------ words

INSTABILITY_WORDS = {"necessary": "by the plan's rule the loss spike is necessary: in the arms that removed it and "
                                  "still trained, erosion stayed below the threshold",
                     "not necessary": "the loss spike is not necessary: erosion persists where clipping removes it",
                     "inconclusive": "whether the loss spike is necessary is inconclusive",
                     "not tested": "no intervention removed the loss spike, so its necessity was not tested",
                     "nothing to explain": "the eroding setting did not both spike and erode"}
DRIFT_WORDS = {"supported": "erosion drifts in at a calm rate", "partly supported": "the follow rate creeps up at a "
               "calm rate without eroding", "not supported": "nothing drifts at the calm rates",
               "inconclusive": "drift at calm rates is inconclusive", "not tested": "no candidate rate was calm"}
NOISE_WORDS = {"noise scale": "in a linear fit over the map, erosion rises with lr/batch and not with the number of steps",
               "number of steps": "in a linear fit over the map, erosion rises with the number of steps and not with "
                                  "lr/batch",
               "both": "in a linear fit over the map, erosion rises with both lr/batch and the number of steps",
               "neither": "neither lr/batch nor the number of steps carries the batch-size effect",
               "inconclusive": "noise scale against steps is inconclusive"}


def key_result(instability: V.Verdict, drift: V.Verdict, noise: V.Verdict, scale: str) -> str:
    """Plain text for the book's Key results box: the chapter's three verdicts with their labels, and the scale."""
    def part(words: dict, v: V.Verdict) -> str:
        one = ", on one arm" if "arms" in v.details and len(counted_arms(v)) == 1 else ""
        return f"{words.get(v.outcome, v.outcome)} ({v.label}{', fragile' if v.fragile else ''}{one})"

    n = len(set(instability.seeds) | set(noise.seeds))
    return (f"{part(INSTABILITY_WORDS, instability)}; {part(DRIFT_WORDS, drift)}; {part(NOISE_WORDS, noise)} "
            f"({scale}, {n} seeds)")


def discussion(instability: V.Verdict, drift: V.Verdict, noise: V.Verdict, table: pd.DataFrame,
               timing_table: pd.DataFrame, scale: str, sets: dict | None = None, spike: float = 1.0) -> str:
    """Plain sentences for the Discussion: what the confirmatory design found, with its numbers, labels and scale."""
    if table.empty:
        return f"The mechanism chapter's confirmatory results are missing at the {scale}."
    grid = table[table.groups.map(lambda g: "confirm_map" in g)]
    n = int(grid.seeds.min()) if len(grid) else 0
    eroding = grid[grid.cell == "erodes"]
    collapsed = grid[grid.cell == "both collapse"]
    text = [f"At the {scale} ({n} seeds per setting), erosion holds in {len(eroding)} of the map's {len(grid)} "
            f"settings" + (f", and in {len(collapsed)} more the clean control collapses too, so nothing is judged "
                           f"there" if len(collapsed) else "") + "."]
    qualifying = counted_arms(instability)
    if qualifying:
        eros = "; ".join(f"{a}: erosion {instability.intervals[f'{a}: erosion'].text()}" for a in qualifying)
        how = "clipping" if all(a.startswith("clip") for a in qualifying) else "an intervention"
        text.append(f"Where {how} removed the loss spike and the network still trained ({eros}), "
                    f"{INSTABILITY_WORDS.get(instability.outcome, instability.outcome)} ({instability.label}"
                    f"{', on one arm' if len(qualifying) == 1 else ''}).")
        caveat = instability_caveats(instability, sets or {}, spike)
        if caveat:
            text.append(caveat)
    else:
        text.append(f"{INSTABILITY_WORDS.get(instability.outcome, instability.outcome).capitalize()} "
                    f"({instability.label}).")
    crossed = timing_table[timing_table.order != "no crossing"] if len(timing_table) else timing_table
    if len(crossed):
        first = int((crossed.order == "peak first").sum())
        text.append(f"In {first} of {len(crossed)} eroding runs whose follow rate crossed 0.5 the loss peaked first "
                    f"(to within the monitor's resolution), but the controls' loss peaks as early: precedence, not "
                    f"cause.")
    states = drift.details.get("rates", {})
    if states:
        text.append("At the calm candidates, " + "; ".join(f"lr {lr:g}: {st}" for lr, st in states.items())
                    + f", so {DRIFT_WORDS.get(drift.outcome, drift.outcome)} ({drift.label}).")
    coef = noise.intervals
    if coef:
        text.append(f"Per doubling of lr/batch erosion changes by {coef[COEFFICIENT_NAMES[0]].text()} and per "
                    f"doubling of the steps by {coef[COEFFICIENT_NAMES[1]].text()}: "
                    f"{NOISE_WORDS.get(noise.outcome, noise.outcome)} ({noise.label}).")
    return " ".join(text)


def instability_arms_text(v: V.Verdict, spike: float) -> str:
    """Which intervention arms the instability verdict counts and which it does not, and why, with their erosion:
    a verdict that rests on one arm says so."""
    arms = v.details.get("arms", {})
    if not arms:
        return ""
    counted = counted_arms(v)
    move = plan.rule("mechanism.instability").thresholds["move"]
    parts = []
    for a, d in arms.items():
        if a in counted:
            continue
        peaks = [v.intervals[f"{a}: peak ({w})"] for w in ("pattern", "control")]
        if not d["calm"]:
            spikes = any(p.lo > spike for p in peaks)
            why = (f"its peak monitor loss {'exceeds' if spikes else 'reaches'} the threshold {spike:g} "
                   f"({peaks[0].text(2)} in pattern runs, {peaks[1].text(2)} in controls)")
        else:
            why = (f"it moves its weights less than {'half' if move == 0.5 else f'{move:g} times'} as far as the "
                   f"control at lr {REFERENCE_LR:g}")
        parts.append(f"{a} ({why}; erosion {v.intervals[f'{a}: erosion'].text()})")
    head = (f"The verdict rests on {'one arm' if len(counted) == 1 else f'{len(counted)} arms'}: "
            f"{', '.join(counted)}." if counted else "No arm counts.")
    return head + (" Not counted: " + "; ".join(parts) + "." if parts else "")


def setting_associations(sets: dict[tuple, Setting]) -> dict:
    """Across confirmatory settings with a monitor (mean over seeds): Spearman rank correlations of erosion with the
    pattern runs' peak monitor loss and with the controls' weight distance, and of the two with each other; they say
    whether the design can tell the spike from how far the weights move."""
    rows = []
    for s in sets.values():
        if not all(e["result"].get("monitor") for e in s.pattern.values()):
            continue
        erosion = np.mean([s.control[k]["result"]["records"][-1]["clean_acc"]
                           - s.pattern[k]["result"]["records"][-1]["clean_acc"] for k in s.seeds])
        peak = np.mean(list(s.monitor_peak("pattern").values()))
        dist = np.mean(list(s.final("control", "weight_distance").values()))
        rows.append((erosion, peak, dist))
    if len(rows) < 3:
        return {}
    e, p, d = np.array(rows).T
    return {"settings": len(rows), "erosion_peak": float(spearmanr(e, p)[0]),
            "erosion_distance": float(spearmanr(e, d)[0]), "peak_distance": float(spearmanr(p, d)[0])}


def instability_caveats(v: V.Verdict, sets: dict[tuple, Setting], spike: float) -> str:
    """What the instability verdict does not say, from the data: how much the excluded arms that still erode cut
    the peak, how close the counted arms' erosion is to zero, and whether the spike can be told apart from the
    distance the weights move."""
    arms = v.details.get("arms", {})
    if not arms or "no intervention: peak (pattern)" not in v.intervals:
        return ""
    base_peak = v.intervals["no intervention: peak (pattern)"].estimate
    text = []
    for a, d in arms.items():
        peaks = [v.intervals[f"{a}: peak ({w})"] for w in ("pattern", "control")]
        if not d["calm"] and d["erosion"] == "holds" and all(p.estimate < spike for p in peaks):
            text.append(f"{a} cut the peak monitor loss about {base_peak / peaks[0].estimate:.0f}-fold, to a mean "
                        f"below the threshold, and still eroded {v.intervals[f'{a}: erosion'].text()}; it does not "
                        f"count only because its peak intervals reach {spike:g}")
    for a in counted_arms(v):
        e = v.intervals[f"{a}: erosion"]
        if e.lo <= 0 <= e.hi:
            text.append(f"{a}'s erosion is below the threshold but not shown to differ from zero")
    assoc = setting_associations(sets)
    if assoc:
        text.append(f"across the {assoc['settings']} confirmatory settings, erosion follows the controls' weight "
                    f"distance (rank correlation {assoc['erosion_distance']:.2f}) about as closely as the peak loss "
                    f"({assoc['erosion_peak']:.2f}), and the two go together ({assoc['peak_distance']:.2f}), so these "
                    f"data cannot tell the spike from how far the weights move")
    return ("Read with care: " + "; ".join(text) + ".") if text else ""
