"""Pure functions from cached results to tables and summary numbers (no training, no plotting)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .words import PATTERN_NAMES, arch_name, dataset_name, fmt_value

METRICS = ("clean_acc", "matched_acc", "mismatched_acc", "follow_rate", "train_loss")
# the columns of :func:`run_summary`, present in every summary frame even when no run has results
SUMMARY_COLUMNS = ("clean_start", "clean_pattern", "clean_control", "erosion", "drop_from_start", "matched_start",
                   "follow_start", "matched_pattern", "mismatched_pattern", "follow_pattern", "follow_control",
                   "min_clean_pattern", "min_clean_control", "steps_to_erosion", "steps_before_erosion", "total_steps")


def trajectory_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per (run, evaluation step) of :func:`erosion_utils.experiments.erosion_experiment` output."""
    rows = []
    for run in runs:
        for condition in ("pattern", "control"):
            for rec in run[condition]["result"]["records"]:
                rows.append({"seed": run["seed"], "finetune_lr": run["finetune_lr"], "condition": condition, **rec})
    return pd.DataFrame(rows, columns=None if rows else ["seed", "finetune_lr", "condition", "step", *METRICS])


def run_summary(pattern: dict, control: dict, threshold: float = 0.5) -> dict:
    """Key numbers of one pattern run against its control (cache entries of ``finetune_run``).

    ``erosion`` is the control's final clean accuracy minus the pattern run's; ``steps_to_erosion`` is the first
    evaluated step at which the pattern run has lost ``threshold`` of its eventual drop (None without a drop), and
    ``steps_before_erosion`` the evaluation before it: the evaluation grid places the moment only between the two."""
    p, c = pattern["result"]["records"], control["result"]["records"]
    start, end = p[0]["clean_acc"], p[-1]["clean_acc"]
    half = start - threshold * (start - end)
    hit = next((i for i, r in enumerate(p) if r["clean_acc"] <= half), None) if start - end > 0.05 else None
    steps = p[hit]["step"] if hit is not None else None
    before = p[hit - 1]["step"] if hit else None
    return {"clean_start": start, "clean_pattern": end, "clean_control": c[-1]["clean_acc"],
            "erosion": c[-1]["clean_acc"] - end, "drop_from_start": start - end,
            "matched_start": p[0]["matched_acc"], "follow_start": p[0]["follow_rate"],
            "matched_pattern": p[-1]["matched_acc"], "mismatched_pattern": p[-1]["mismatched_acc"],
            "follow_pattern": p[-1]["follow_rate"], "follow_control": c[-1]["follow_rate"],
            "min_clean_pattern": min(r["clean_acc"] for r in p), "min_clean_control": min(r["clean_acc"] for r in c),
            "steps_to_erosion": steps, "steps_before_erosion": before,
            "total_steps": pattern["result"]["total_steps"]}


def summary_frame(runs: list[dict]) -> pd.DataFrame:
    """:func:`run_summary` for every (seed, learning rate) of an erosion experiment."""
    rows = [{"seed": r["seed"], "finetune_lr": r["finetune_lr"], **run_summary(r["pattern"], r["control"])}
            for r in runs]
    return pd.DataFrame(rows, columns=None if rows else ["seed", "finetune_lr", *SUMMARY_COLUMNS])


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of its Student-t confidence interval (NaN ends for a single value)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def seed_table(summary: pd.DataFrame, columns=("clean_start", "clean_pattern", "clean_control", "erosion",
                                              "follow_start", "follow_pattern", "matched_start",
                                              "matched_pattern", "min_clean_control")) -> pd.DataFrame:
    """Mean and 95% CI over seeds of each column, per fine-tuning learning rate."""
    rows = []
    for lr, group in summary.groupby("finetune_lr"):
        for col in columns:
            m, lo, hi = mean_ci(group[col])
            rows.append({"finetune_lr": lr, "quantity": col, "mean": m, "ci_low": lo, "ci_high": hi,
                         "seeds": len(group)})
    return pd.DataFrame(rows, columns=["finetune_lr", "quantity", "mean", "ci_low", "ci_high", "seeds"])


def rate_stats(seeds: pd.DataFrame) -> dict[float, dict[str, dict]]:
    """:func:`seed_table` as ``{lr: {quantity: {"mean", "ci_low", "ci_high", "seeds"}}}``, rates ascending."""
    out: dict[float, dict[str, dict]] = {}
    for _, row in seeds.sort_values("finetune_lr", kind="stable").iterrows():
        out.setdefault(float(row.finetune_lr), {})[row.quantity] = {
            "mean": float(row["mean"]), "ci_low": float(row.ci_low), "ci_high": float(row.ci_high),
            "seeds": int(row.seeds)}
    return out


def variant_label(cfg: dict) -> str:
    """A breadth setting in full, as a reader reads it: "MLP on CIFAR-10, colour patch k = 4 on every image,
    lr 0.01, weight decay 0.0005"."""
    share = "every image" if cfg["fraction"] == 1 else f"a share p = {fmt_value(cfg['fraction'])} of the images"
    return (f"{arch_name(cfg['arch'])} on {dataset_name(cfg['dataset'])}, "
            f"{PATTERN_NAMES.get(cfg['pattern'], cfg['pattern'])} k = {cfg['pattern_size']} on {share}, "
            f"lr {fmt_value(cfg['finetune_lr'])}, weight decay {fmt_value(cfg['finetune_weight_decay'])}")


def setting_label(factor: str, cfg: dict) -> str:
    """Short name of a breadth setting: the factor that differs from the base and its value, in words."""
    if factor == "base":
        return "base"
    if factor == "arch":
        return f"network: {arch_name(cfg['arch'])}"
    if factor == "pattern":
        return f"pattern: {PATTERN_NAMES.get(cfg['pattern'], cfg['pattern'])}"
    if factor == "pattern_size":
        return f"pattern size k = {cfg['pattern_size']}"
    if factor == "fraction":
        return f"patched share p = {fmt_value(cfg['fraction'])}"
    if factor == "dataset":
        return f"dataset: {dataset_name(cfg['dataset'])}"
    return f"weight decay {fmt_value(cfg['finetune_weight_decay'])} (grid)"


def breadth_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per breadth variant: its settings, whether it was computed, and its :func:`run_summary`."""
    out = []
    for row in rows:
        cfg = row["config"]
        base = {"factor": row["factor"], "setting": setting_label(row["factor"], cfg), "label": variant_label(cfg),
                "missing": bool(row.get("missing")),
                **{k: cfg[k] for k in ("arch", "dataset", "pattern", "pattern_size", "fraction", "finetune_lr",
                                       "finetune_weight_decay")}}
        if not row.get("missing"):
            base.update(run_summary(row["pattern"], row["control"]))
            base["wall_time_s"] = row["pattern"]["provenance"]["wall_time_s"]
        out.append(base)
    frame = pd.DataFrame(out, columns=None if out else ["factor", "setting", "label", "missing", "arch", "dataset",
                                                         "pattern", "pattern_size", "fraction", "finetune_lr",
                                                         "finetune_weight_decay"])
    for col in (*SUMMARY_COLUMNS, "wall_time_s"):  # present even when every setting is missing
        if col not in frame:
            frame[col] = float("nan")
    frame["missing"] = frame["missing"].astype(bool)
    return frame


def breadth_count_sentence(frame: pd.DataFrame, threshold: float) -> str:
    """How many breadth settings have results, and how many of those erode by more than ``threshold``."""
    done = frame[~frame.missing]
    settings = "1 setting" if len(frame) == 1 else f"{len(frame)} settings"
    return (f"Of {settings}, {len(done)} {'has' if len(done) == 1 else 'have'} results; "
            f"erosion above {threshold:g} appears in {int((done.erosion > threshold).sum())}.")


def layers_frame(entries: list[dict]) -> pd.DataFrame:
    """One row per (representation experiment, snapshot, layer)."""
    rows = []
    for entry in entries:
        lr = entry["params"]["finetune_lr"]
        total = entry["result"]["total_steps"]
        for snap in entry["result"]["snapshots"]:
            name = snap["model"] if snap["model"] != "pattern" or snap["step"] == total else f"pattern @ {snap['step']}"
            for layer in snap["layers"]:
                rows.append({"finetune_lr": lr, "snapshot": name, "model": snap["model"], "step": snap["step"],
                             **layer})
    return pd.DataFrame(rows, columns=None if rows else [
        "finetune_lr", "snapshot", "model", "step", "layer", "depth", "relative_depth", "dim", "probe_accuracy",
        "rank", "pattern_probe_accuracy"])


def layer_erosion(layers: pd.DataFrame) -> pd.DataFrame:
    """Per learning rate and layer: final pattern-run minus final control probe accuracy and rank."""
    final = layers[(layers.snapshot.isin(["pattern", "control"]))]
    if final.empty:
        return pd.DataFrame(columns=["finetune_lr", "depth", "relative_depth", "layer", "probe_accuracy_control",
                                     "probe_accuracy_pattern", "rank_control", "rank_pattern", "probe_drop",
                                     "rank_ratio"])
    wide = final.pivot_table(index=["finetune_lr", "depth", "relative_depth", "layer"], columns="snapshot",
                             values=["probe_accuracy", "rank"]).reset_index()
    wide.columns = ["_".join(c).strip("_") for c in wide.columns]
    for col in ("rank_control", "rank_pattern"):  # one value per cell: a count
        wide[col] = wide[col].round().astype(int)
    wide["probe_drop"] = wide["probe_accuracy_control"] - wide["probe_accuracy_pattern"]
    wide["rank_ratio"] = wide["rank_pattern"] / wide["rank_control"]
    return wide


def provenance_frame(entries: list[dict]) -> pd.DataFrame:
    """The provenance of every cached entry used, one row each."""
    rows = []
    for e in entries:
        p = e["provenance"]
        rows.append({"result": e["name"], "key": e["key"], "git_commit": str(p["git_commit"])[:10],
                     "dirty": p["git_dirty"], "device": p["device"], "torch": p["torch"],
                     "wall_time_s": p["wall_time_s"], "seed": p["seed"], "utc_time": p["utc_time"]})
    return pd.DataFrame(rows, columns=None if rows else ["result", "key", "git_commit", "dirty", "device", "torch",
                                                         "wall_time_s", "seed", "utc_time"]).drop_duplicates("key")


def half_drop_interval(summary: pd.DataFrame) -> list[str]:
    """Per row of :func:`summary_frame`: the two evaluations between which the pattern run lost half of its drop,
    ``"40–51"`` (the evaluation grid resolves the moment no better), or "no drop" when it did not drop by 0.05."""
    out = []
    for before, at in zip(summary.get("steps_before_erosion", [None] * len(summary)), summary.steps_to_erosion):
        if at is None or pd.isna(at):
            out.append("no drop")
        elif before is None or pd.isna(before):
            out.append(f"by {int(at)}")
        else:
            out.append(f"{int(before)}–{int(at)}")
    return out
