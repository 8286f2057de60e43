"""The mitigation chapter's verdicts by the analysis plan (:mod:`erosion_utils.report.plan`): in the transfer setting
(something to learn, the baseline's erosion, what each option keeps and drops, recovery against references that
arrive), and in the paper's (same-data) setting (prevents / reduces, weight interpolation, recovery), with the
sentences the page builds from them (the answer, the recovery notes, the same-data table's cells). Pure functions of
cached results (the rows of :mod:`erosion_utils.experiments.mitigation`'s experiments).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import verdicts as V
from .plan import rule
from .words import join_values, plural


@dataclass
class Option:
    """One setting (the baseline or an option) over seeds: per seed its pattern run, the control and the
    pretraining (cached entries); post-hoc options carry per-seed final metrics instead of a run."""

    kind: str
    label: str
    value: float | None
    final: dict  # seed -> {"clean_acc", "follow_rate", "matched_acc"} at the end
    start: dict  # seed -> the pretrained network's clean accuracy
    control: dict  # seed -> the control's final clean accuracy
    entries: list
    posthoc: bool = False

    @property
    def seeds(self) -> list[int]:
        return sorted(self.final)

    def metric(self, key: str) -> dict:
        return {s: v[key] for s, v in self.final.items()}


def options(rows: list[dict]) -> list[Option]:
    """The settings of :func:`transfer_experiment` (or :func:`mitigation_experiment`) rows, in their order."""
    out: dict[str, Option] = {}
    for row in rows:
        if row.get("missing"):
            continue
        o = out.setdefault(row["label"], Option(row["kind"], row["label"], row["value"], {}, {}, {}, []))
        p, c = row["pattern"]["result"]["records"], row["control"]["result"]["records"]
        o.final[row["seed"]] = {k: p[-1][k] for k in ("clean_acc", "follow_rate", "matched_acc")}
        o.start[row["seed"]] = c[0]["clean_acc"]
        o.control[row["seed"]] = c[-1]["clean_acc"]
        o.entries += [row["pattern"], row["control"], row.get("pretrain")]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    return [out[label] for label in labels if label in out]


def posthoc_options(rows: list[dict], alphas: list[float] | None = None) -> list[Option]:
    """Options that act after fine-tuning, from :func:`transfer_interpolation` rows: batch-norm re-estimation on
    clean images (alpha = 1) and weight interpolation towards the pretrained network (each alpha in ``alphas``,
    with re-estimated statistics)."""
    out: dict[float, Option] = {}
    for row in rows:
        if row.get("missing"):
            continue
        c = row["control"]["result"]["records"]
        for point in row["interpolation"]["result"]["points"]:
            a = float(point["alpha"])
            if a == 0 or (alphas is not None and a not in alphas):
                continue
            label = "batch-norm re-estimation" if a == 1 else f"WiSE-FT α={a:g}"
            o = out.setdefault(a, Option("bn_reestimate" if a == 1 else "interpolation", label, a, {}, {}, {}, [],
                                         posthoc=True))
            o.final[row["seed"]] = {k: point["reestimated"][k] for k in ("clean_acc", "follow_rate", "matched_acc")}
            o.start[row["seed"]] = c[0]["clean_acc"]
            o.control[row["seed"]] = c[-1]["clean_acc"]
            o.entries += [row["interpolation"], row["pattern"], row["control"], row.get("pretrain")]
    return [out[a] for a in sorted(out, reverse=True)]


def _diff(a: dict, b: dict) -> dict:
    return {s: a[s] - b[s] for s in a if s in b}


# ------------------------------------------------------------------------------------------- transfer setting

def gain_verdict(control: Option) -> V.Verdict:
    """transfer.gain: does the control gain clean accuracy over the pretrained network?"""

    def decide(ivs, th):
        o = V.above(ivs["gain"], th["gain"])
        return {"holds": "something to learn", "does not hold": "nothing to learn"}.get(o, "inconclusive"), {}

    return V.judge("transfer.gain", lambda lv: {"gain": V.paired(control.control, control.start, lv)}, decide,
                   entries=control.entries, seeds=control.seeds)


def erosion_verdict(baseline: Option, rule: str = "transfer.erosion") -> V.Verdict:
    """transfer.erosion (or claim 1's rule): the baseline's erosion."""
    pattern = baseline.metric("clean_acc")

    def decide(ivs, th):
        o = V.above(ivs["erosion"], th["erosion"])
        return {"holds": "erodes", "does not hold": "does not erode"}.get(o, "inconclusive"), {}

    return V.judge(rule, lambda lv: {"erosion": V.paired(baseline.control, pattern, lv)}, decide,
                   entries=baseline.entries, seeds=baseline.seeds)


def option_verdict(option: Option, gain: V.Verdict) -> V.Verdict:
    """transfer.option: the gain the option keeps and whether it follows the shortcut."""
    num = _diff(option.metric("clean_acc"), option.start)
    den = _diff(option.control, option.start)

    def statistics(level: float) -> dict[str, V.Interval]:
        return {"gain kept": V.bootstrap_ratio(num, den, level), "follow rate": V.rate(option.metric("follow_rate"),
                                                                                       level),
                "clean accuracy": V.rate(option.metric("clean_acc"), level)}

    def decide(ivs, th):
        if gain.outcome != "something to learn":
            return "not tested", {"why": "fine-tuning has no measurable gain to keep"}
        kept, follow = ivs["gain kept"], ivs["follow rate"]
        keeps = V.above(kept, th["keeps"])
        ignores = V.below(follow, th["ignores"]) == "holds"
        follows = V.above(follow, th["follows"]) == "holds"
        moved = not option.posthoc or V.above(kept, 0.0) == "holds"
        details = {"keeps": keeps, "ignores": ignores, "follows": follows, "moved": moved}
        if not moved:
            return "not tested", {**details, "why": "the network has not measurably moved from the pretrained one"}
        if keeps == "holds" and ignores:
            return "recommended", details
        if keeps == "holds" and follows:
            return "keeps the gain, follows the shortcut", details
        if keeps == "does not hold" and ignores:
            return "ignores the shortcut, loses the gain", details
        if keeps == "does not hold" and follows:
            return "loses the gain and follows the shortcut", details
        return "inconclusive", details

    return V.judge("transfer.option", statistics, decide, entries=option.entries, seeds=option.seeds)


def option_table(opts: list[Option], verdicts: dict[str, V.Verdict]) -> pd.DataFrame:
    """One row per option: seeds, gain kept, follow rate, clean accuracy (intervals), verdict and label."""
    rows = []
    for o in opts:
        v = verdicts[o.label]
        rows.append({"option": o.label, "kind": o.kind, "seeds": len(o.seeds),
                     "gain kept": v.intervals["gain kept"], "follow rate": v.intervals["follow rate"],
                     "clean acc.": v.intervals["clean accuracy"], "verdict": v.outcome, "label": v.label,
                     "fragile": v.fragile, "sensitivity": v.sensitivity, "posthoc": o.posthoc})
    return pd.DataFrame(rows)


def practitioner_answer(table: pd.DataFrame) -> dict:
    """The recommended options, best first (largest mean gain kept), with the numbers the page quotes."""
    rec = [row for _, row in table.iterrows() if row["verdict"] == "recommended"]
    order = sorted(rec, key=lambda r: -r["gain kept"].estimate)
    near = [row["option"] for _, row in table.iterrows() if row["verdict"] != "recommended" and row["fragile"]
            and row["gain kept"].lo > 0.5]
    return {"recommended": [r["option"] for r in order], "best": order[0]["option"] if order else None,
            "best_row": order[0] if order else None, "near_miss": near[0] if near and not order else None}


def answer_text(baseline: Option | None, gain: V.Verdict | None, table: pd.DataFrame, answer: dict,
                scale: str) -> str:
    """The page's answer in the transfer setting, from the baseline, the gain verdict, the option table
    (:func:`option_table`) and :func:`practitioner_answer`: the recommended option, or why none qualifies (those that
    ignore the shortcut and what they give up; the one that keeps the most of the gain and what it still follows,
    flagged as fragile when it is the answer's near miss)."""
    if baseline is None or gain is None:
        return "The transfer setting's results are missing, so this page cannot answer yet."
    n = len(baseline.seeds)
    if gain.outcome != "something to learn":
        return (f"In the transfer setting ({scale}, {plural(n, 'seed')}), fine-tuning did not measurably gain clean "
                f"accuracy (gain {gain.intervals['gain'].text()}), so no option can be judged on what it keeps.")
    base_row = table[table.kind == "baseline"].iloc[0]
    lead = (f"In the transfer setting ({scale}, {plural(n, 'seed')}), plain fine-tuning on the patterned images "
            f"ends at a clean test accuracy of {base_row['clean acc.'].text()}, below the pretrained network's "
            f"{V.rate(baseline.start).text()} (the control gains {gain.intervals['gain'].text()} over it), and follows "
            f"the pattern in {base_row['follow rate'].text()} of mismatched test images.")
    if answer["best"] is None:
        opts = table[(table.kind != "baseline") & (table.verdict != "not tested")]
        ignoring = opts[opts.verdict == "ignores the shortcut, loses the gain"]
        keeper = opts.loc[opts["gain kept"].map(lambda i: i.estimate).idxmax()] if len(opts) else None
        text = lead + (" No option both keeps at least half of the gain and clearly ignores the shortcut (the "
                       "plan's rule)")
        if len(ignoring):
            text += (": those that ignore it give up what fine-tuning adds (gain kept: " + "; ".join(
                f"{r['option']}, {r['gain kept'].text()}" for _, r in ignoring.iterrows()) + ")")
        if keeper is not None and keeper["option"] not in set(ignoring.option):
            miss = keeper["follow rate"].hi - rule("transfer.option").thresholds["ignores"]
            near = keeper["option"] == answer.get("near_miss")
            text += (f", and the one that keeps the most of the gain, {keeper['option']} "
                     f"({keeper['gain kept'].text()}), still follows the pattern in {keeper['follow rate'].text()} "
                     f"of mismatched images "
                     f"({keeper['verdict']} by the rule"
                     + ((f"; it misses 'ignores the shortcut' by {miss:.3f}" if miss > 0 else "; it narrowly misses "
                         "the rule") + ", so this answer is fragile" if near else "") + ")")
        return text + "."
    b = answer["best_row"]
    return lead + (f" **{b['option']}** keeps {b['gain kept'].text()} of the gain while following the pattern in only "
                   f"{b['follow rate'].text()} ({b['label']}); "
                   + (f"{plural(len(answer['recommended']) - 1, 'other option')} also qualif"
                      f"{'ies' if len(answer['recommended']) == 2 else 'y'}: "
                      + join_values(answer['recommended'][1:], formatter=str) + "."
                      if len(answer["recommended"]) > 1 else "it is the only option that qualifies."))


# -------------------------------------------------------------------------------------------------- recovery

RECOVERY_ARMS = ("eroded", "control", "reinit_1", "reinit_2", "scratch")


def first_reaching(records: list[dict], target: float) -> int | None:
    return next((r["step"] for r in records if r["clean_acc"] >= target), None)


def recovery_per_seed(rows: list[dict], target_share: float) -> pd.DataFrame:
    """Per seed: the target (``target_share`` times the pretrained network's clean accuracy) and each arm's steps to
    reach it (None: not within its run), the eroded network's start, and the verdict of ``transfer.recovery``."""
    out = []
    for row in rows:
        if row.get("missing"):
            continue
        res = row["recovery"]["result"]
        target = target_share * res["pretrained"]["clean_acc"]
        steps = {arm: first_reaching(a["records"], target) for arm, a in res["arms"].items()}
        start = res["arms"]["eroded"]["records"][0]["clean_acc"]
        e, r1, r2 = steps.get("eroded"), steps.get("reinit_1"), steps.get("reinit_2")
        if start >= target:
            verdict = "nothing to recover"
        elif e is not None and (r1 is None or e <= r1):
            verdict = "suppression"
        elif r2 is not None and (e is None or e > r2):
            verdict = "destruction"
        elif e is None and r1 is None and r2 is None:
            verdict = "not resolved"
        else:
            verdict = "partial"
        out.append({"seed": row["seed"], "target": target, "start": start, "verdict": verdict,
                    "recovery_steps": res["arms"]["eroded"]["total_steps"],
                    "scratch_steps": res["arms"]["scratch"]["total_steps"],
                    **{f"steps_{arm}": steps.get(arm) for arm in RECOVERY_ARMS},
                    **{f"end_{arm}": a["records"][-1]["clean_acc"] for arm, a in res["arms"].items()}})
    return pd.DataFrame(out)


def recovery_verdict(rows: list[dict]) -> V.Verdict:
    """transfer.recovery: per-seed verdicts and their counts (the sensitivity scan moves the target share)."""
    entries = [e for r in rows if not r.get("missing") for e in (r["recovery"], r["pattern"], r["control"],
                                                                 r.get("pretrain"))]

    def decide(ivs, th):
        per_seed = recovery_per_seed(rows, th["target"])
        if per_seed.empty:
            return "not tested", {"counts": {}}
        counts = per_seed.verdict.value_counts().to_dict()
        top = max(counts.items(), key=lambda kv: kv[1])[0]
        summary = top if counts[top] == len(per_seed) else "mixed: " + ", ".join(
            f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        return summary, {"counts": counts, "seeds": len(per_seed)}

    return V.judge("transfer.recovery", lambda lv: {}, decide, entries=entries,
                   seeds=sorted(r["seed"] for r in rows if not r.get("missing")))


def recovery_ties(per_seed: pd.DataFrame) -> int:
    """Seeds where the eroded network and the one with its last stage re-initialised reach the target at the same
    evaluated step (both reaching it)."""
    if per_seed.empty:
        return 0
    both = per_seed.steps_eroded.notna() & per_seed.steps_reinit_1.notna()
    return int((both & (per_seed.steps_eroded == per_seed.steps_reinit_1)).sum())


def control_drop(rows: list[dict]) -> float:
    """The largest fall of the clean control's clean accuracy during recovery below where it started, over seeds."""
    drops = [rs[0]["clean_acc"] - min(r["clean_acc"] for r in rs) for row in rows if not row.get("missing")
             for rs in [row["recovery"]["result"]["arms"]["control"]["records"]]]
    return max(drops, default=0.0)


CONTROL_DROP_NOTE = 0.03  # a clean control that falls more than this during recovery makes first passages noisy


def recovery_notes(per_seed: pd.DataFrame, rows: list[dict]) -> str:
    """Sentences after the recovery verdict: ties on the evaluation grid, and a clean control that itself falls."""
    ties, drop = recovery_ties(per_seed), control_drop(rows)
    return ((f" {plural(ties, 'seed')} {'is a tie' if ties == 1 else 'are ties'} on the evaluation grid (the eroded "
             f"network and the one with its last stage re-initialised reach the target at the same evaluated step)."
             if ties else "")
            + (f" The clean control itself loses up to {drop:.3f} of clean accuracy during recovery, so first-passage "
               f"times on these curves are noisy." if drop > CONTROL_DROP_NOTE else ""))


# --------------------------------------------------------------------------------------- the paper's setting

def same_data_option_verdict(option: Option, baseline: Option, baseline_erodes: V.Verdict) -> V.Verdict:
    """same_data.option: does an option prevent (or reduce) erosion against the baseline, paired by seed?"""
    erosion = _diff(option.control, option.metric("clean_acc"))
    base_erosion = _diff(baseline.control, baseline.metric("clean_acc"))

    def statistics(level: float) -> dict[str, V.Interval]:
        return {"erosion": V.t_interval(erosion.values(), level, -1.0, 1.0, "paired_t"),
                "reduction": V.paired(base_erosion, erosion, level),
                "follow rate": V.rate(option.metric("follow_rate"), level)}

    def decide(ivs, th):
        if baseline_erodes.outcome != "erodes":
            return "nothing to prevent", {}
        if V.below(ivs["erosion"], th["erosion"]) == "holds":
            return "prevents", {}
        red = V.above(ivs["reduction"], th["reduce"])
        return {"holds": "reduces", "does not hold": "does not reduce"}.get(red, "inconclusive"), {}

    return V.judge("same_data.option", statistics, decide, entries=option.entries + baseline.entries,
                   seeds=option.seeds)


def same_data_verdicts(rows: list[dict]) -> dict[str, tuple[Option, V.Verdict]]:
    """The paper's setting, one design (the exploratory or the confirmatory seeds): option label -> (the option, its
    verdict), the baseline first with its erosion verdict (claim 1's rule: ``erodes``, ``does not erode`` or
    ``inconclusive``); empty without a baseline."""
    opts = options(rows)
    base = next((o for o in opts if o.kind == "baseline"), None)
    if base is None:
        return {}
    erodes = erosion_verdict(base, "claim1.erosion")
    return {"baseline": (base, erodes), **{o.label: (o, same_data_option_verdict(o, base, erodes))
                                           for o in opts if o.kind != "baseline"}}


def same_data_cell(verdicts: dict[str, tuple[Option, V.Verdict]], label: str, key: str) -> str:
    """One cell of the paper's-setting table: the option's erosion interval (``key`` "erosion") or its verdict with
    label; "missing" where the design has no such option."""
    if label not in verdicts:
        return "missing"
    option, verdict = verdicts[label]
    if key == "erosion":
        return (verdict.intervals.get("erosion") or V.paired(option.control, option.metric("clean_acc"))).text()
    return f"{verdict.outcome} ({verdict.label}{', fragile' if verdict.fragile else ''})"


UNPAIRED_START = 0.0005  # a pattern run whose step-0 clean accuracy differs more from its control's is not paired


def unpaired_starts(rows: list[dict]) -> list[float]:
    """The step-0 clean-accuracy gaps between pattern runs and their controls that exceed :data:`UNPAIRED_START`:
    runs that did not start from the control's pretrained network, so their comparison with it is not paired."""
    gaps = [abs(r["pattern"]["result"]["records"][0]["clean_acc"] - r["control"]["result"]["records"][0]["clean_acc"])
            for r in rows if not r.get("missing") and r.get("pattern")]
    return [g for g in gaps if g > UNPAIRED_START]


def same_data_interpolation_verdict(rows: list[dict]) -> V.Verdict:
    """same_data.interpolation: an alpha > 0 that has moved (matched accuracy up), keeps clean accuracy and drops
    the pattern, by paired intervals against alpha = 0."""
    per_alpha: dict[float, dict] = {}
    entries = []
    for row in rows:
        if row.get("missing"):
            continue
        entries += [row["interpolation"], row["pattern"], row["control"]]
        pts = {float(p["alpha"]): p["reestimated"] for p in row["interpolation"]["result"]["points"]}
        if 0.0 not in pts:
            continue
        for a, p in pts.items():
            if a > 0:
                d = per_alpha.setdefault(a, {"matched": {}, "drop": {}, "follow": {}})
                d["matched"][row["seed"]] = p["matched_acc"] - pts[0.0]["matched_acc"]
                d["drop"][row["seed"]] = pts[0.0]["clean_acc"] - p["clean_acc"]
                d["follow"][row["seed"]] = p["follow_rate"]

    def statistics(level: float) -> dict[str, V.Interval]:
        out = {}
        for a, d in sorted(per_alpha.items()):
            out[f"α={a:g}: matched gain"] = V.t_interval(d["matched"].values(), level, -1.0, 1.0, "paired_t")
            out[f"α={a:g}: clean drop"] = V.t_interval(d["drop"].values(), level, -1.0, 1.0, "paired_t")
            out[f"α={a:g}: follow rate"] = V.rate(d["follow"], level)
        return out

    def decide(ivs, th):
        window, open_ = [], False
        for a in sorted(per_alpha):
            moved = V.above(ivs[f"α={a:g}: matched gain"], th["moved"])
            if moved != "holds":
                open_ |= moved == "inconclusive"
                continue
            keeps = V.below(ivs[f"α={a:g}: clean drop"], th["keep"])
            drops = V.below(ivs[f"α={a:g}: follow rate"], th["drops"])
            if keeps == "holds" and drops == "holds":
                window.append(a)
            elif "inconclusive" in (keeps, drops):
                open_ = True
        if window:
            return "an alpha qualifies", {"window": window}
        return ("inconclusive" if open_ or not per_alpha else "no alpha qualifies"), {"window": []}

    seeds = sorted({r["seed"] for r in rows if not r.get("missing")})
    return V.judge("same_data.interpolation", statistics, decide, entries=entries, seeds=seeds)


def same_data_recovery_per_seed(rows: list[dict], target_share: float, fast: float) -> pd.DataFrame:
    """Per seed and recovery rate of the paper's setting: the target (``target_share`` times the pretrained
    network's clean accuracy), steps of the eroded network and of scratch, and the verdict of same_data.recovery."""
    out = []
    for row in rows:
        if row.get("missing"):
            continue
        pretrained = row["control"]["result"]["records"][0]["clean_acc"]
        target = target_share * pretrained
        for run in row["recovery"]["result"]["runs"]:
            arms = run["arms"]
            e = first_reaching(arms["pattern"]["records"], target)
            s = first_reaching(arms["scratch"]["records"], target)
            start = arms["pattern"]["records"][0]["clean_acc"]
            if start >= target:
                verdict = "nothing to recover"
            elif e is not None and (s is None or e <= fast * s):
                verdict = "fast"
            elif s is not None and (e is None or e > s):
                verdict = "as slow as scratch"
            elif e is None and s is None:
                verdict = "not resolved"
            else:
                verdict = "in between"
            out.append({"seed": row["seed"], "lr": run["lr"], "target": target, "steps_eroded": e, "steps_scratch": s,
                        "total_steps": run["total_steps"], "verdict": verdict})
    return pd.DataFrame(out)


def same_data_recovery_verdict(rows: list[dict], lr: float) -> V.Verdict:
    """same_data.recovery at one recovery rate: per-seed verdicts and their counts."""
    entries = [e for r in rows if not r.get("missing") for e in (r["recovery"], r["pattern"], r["control"])]

    def decide(ivs, th):
        table = same_data_recovery_per_seed(rows, th["target"], th["fast"])
        table = table[np.isclose(table.lr.astype(float), lr)] if len(table) else table
        if table.empty:
            return "not tested", {"counts": {}}
        counts = table.verdict.value_counts().to_dict()
        top = max(counts.items(), key=lambda kv: kv[1])[0]
        summary = top if counts[top] == len(table) else "mixed: " + ", ".join(
            f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        return summary, {"counts": counts, "seeds": len(table)}

    return V.judge("same_data.recovery", lambda lv: {}, decide, entries=entries,
                   seeds=sorted(r["seed"] for r in rows if not r.get("missing")))



def key_result(answer: dict, gain: V.Verdict, erosion: V.Verdict, recovery: V.Verdict, scale: str) -> str:
    """Plain text for the book's Key results box: the transfer setting's answer, erosion and recovery, with labels."""
    n = len(gain.seeds)
    if gain.outcome != "something to learn":
        return f"in the transfer setting ({scale}, {n} seeds) fine-tuning gained nothing measurable ({gain.label})"
    best = answer["best"]
    near = answer.get("near_miss")
    head = (f"in the transfer setting ({scale}, {n} seeds) the baseline {erosion.outcome} ({erosion.label}); "
            + (f"{best} keeps {answer['best_row']['gain kept'].text()} of the gain while ignoring the shortcut "
               f"({answer['best_row']['label']})" if best else "no option both keeps half the gain and ignores the "
               "shortcut" + (f" (fragile: {near} narrowly misses)" if near else "")))
    return head + f"; recovery: {recovery.outcome} ({recovery.label}{', fragile' if recovery.fragile else ''})"


def discussion(answer_text: str, recovery: V.Verdict, same_data: dict, scale: str) -> str:
    """Plain sentences for the Discussion: the transfer setting's answer, recovery, and what the paper's setting
    shows by contrast (``same_data``: option label -> its Verdict in the confirmatory seeds)."""
    text = [answer_text]
    counts = recovery.details.get("counts", {})
    if counts:
        text.append("After erosion, on clean data, " + ", ".join(f"{n} of {recovery.details['seeds']} seeds show "
                                                                  f"{v}" for v, n in counts.items())
                    + f" ({recovery.label}{'; fragile: it holds only near the target the rule fixes' if recovery.fragile else ''}).")
    prevent = [label for label, v in same_data.items() if v.outcome == "prevents"]
    if prevent:
        text.append(f"In the paper's setting, where fine-tuning has nothing to teach, {', '.join(prevent)} "
                    f"{'prevents' if len(prevent) == 1 else 'prevent'} erosion by the plan's rule ({scale}); the "
                    f"transfer setting shows what that costs.")
    return " ".join(t for t in text if t)
