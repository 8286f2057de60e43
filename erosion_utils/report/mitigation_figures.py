"""Figures of the Mitigation and recovery chapter (cheap, rerun freely), from the tables of
:mod:`erosion_utils.report.mitigation`, in the book's style (:func:`erosion_utils.report.plots.setup`): at most three
panels per row, at most the page width, pattern and control in the same colours on every page. Each returns None
when there is nothing to draw."""
from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .claims import FOLLOW_PARTIAL
from .mitigation import ARM_TITLES, STATISTICS
from .words import fmt_value, is_nan
from .plots import PAGE_WIDTH_IN, PALETTE, panel_grid

ARM_COLOURS = {"pattern": PALETTE["pattern"], "control": PALETTE["control"], "scratch": "#7f7f7f"}
MARKERS = "osD^vP*Xhp<>"


def summary(stats: pd.DataFrame) -> plt.Figure | None:
    """Clean accuracy after fine-tuning on patterned images against the follow rate, mean and 95% CI over seeds
    (error bars), one marker per setting (the baseline in black); dashed line and band: the baseline control's clean
    accuracy (mean, CI)."""
    done = stats[stats.seeds > 0].reset_index(drop=True)
    if done.empty:
        return None
    fig = plt.figure(figsize=(PAGE_WIDTH_IN, 3.9), layout="constrained")
    ax = fig.add_subplot()
    base = stats.iloc[0]
    if base.seeds > 0:
        lo = base.clean_control if is_nan(base.clean_control_lo) else base.clean_control_lo
        hi = base.clean_control if is_nan(base.clean_control_hi) else base.clean_control_hi
        ax.axhspan(lo, hi, color=ARM_COLOURS["control"], alpha=0.12, lw=0)
        ax.axhline(base.clean_control, color=ARM_COLOURS["control"], lw=1, ls="--", label="baseline control")
    kinds = [k for k in dict.fromkeys(done.kind) if k != "baseline"]
    others = [c for c in sns.color_palette("tab10") if matplotlib.colors.to_hex(c) not in
              {PALETTE["pattern"], PALETTE["control"]}]  # red and blue mean pattern run and control on every page
    colours = {k: others[i % len(others)] for i, k in enumerate(kinds)}
    colours["baseline"] = "black"
    rank = done.groupby("kind").cumcount()  # the second setting of a kind: open marker
    for i, r in done.iterrows():
        def err(q):
            return None if is_nan(r[f"{q}_lo"]) else [[r[q] - r[f"{q}_lo"]], [r[f"{q}_hi"] - r[q]]]
        ax.errorbar(r.follow_pattern, r.clean_pattern, xerr=err("follow_pattern"), yerr=err("clean_pattern"),
                    fmt=MARKERS[rank[i] % len(MARKERS)], color=colours[r.kind], ms=6, capsize=2, lw=1,
                    mfc=colours[r.kind] if rank[i] == 0 else "white", mew=1.3, label=r.label)
    ax.axvline(FOLLOW_PARTIAL, color="grey", lw=0.6, ls=":")
    top = np.nanmax(np.r_[done.clean_pattern_hi.fillna(0).to_numpy(float), done.clean_pattern.to_numpy(float),
                          [base.clean_control_hi if not is_nan(base.clean_control_hi) else 0.0,
                           base.clean_control if not is_nan(base.clean_control) else 0.0]])
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0, min(1.0, max(0.1, float(top) * 1.12)))
    ax.set_xlabel("follow rate (reliance on the pattern)")
    ax.set_ylabel("clean test accuracy")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", frameon=False)
    return fig


def interpolation(frame: pd.DataFrame) -> plt.Figure | None:
    """Clean accuracy, matched accuracy and follow rate along alpha; solid: batch-norm statistics re-estimated on
    clean training images, dashed: interpolated with the weights. Line: mean over seeds; band: range."""
    if frame.empty:
        return None
    titles = {"clean_acc": "clean accuracy", "matched_acc": "matched accuracy", "follow_rate": "follow rate"}
    fig, axes = panel_grid(3, panel_height=2.2, sharey=True)
    styles = dict(zip(STATISTICS.values(), ("-", "--")))
    for ax, (col, title) in zip(axes, titles.items()):
        for stat, ls in styles.items():
            sel = frame[frame.statistics == stat]
            if sel.empty:
                continue
            g = sel.groupby("alpha")[col]
            ax.fill_between(g.min().index, g.min(), g.max(), color="#9467bd", alpha=0.15, lw=0)
            ax.plot(g.mean().index, g.mean(), ls=ls, marker="o", ms=3, color="#9467bd")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.set_xlabel("α")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy or rate")
    handles = [matplotlib.lines.Line2D([], [], color="#9467bd", ls=ls, label=f"batch-norm statistics {stat}")
               for stat, ls in styles.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return fig


def recovery(curves: pd.DataFrame, steps: pd.DataFrame) -> plt.Figure | None:
    """Clean accuracy over recovery steps (symlog), one panel per recovery rate (highest first, at most three): the
    eroded network, the control and the network trained from scratch, all on clean images; dotted: the target."""
    if curves.empty:
        return None
    lrs = sorted(curves.lr.unique(), reverse=True)[:3]
    fig, axes = panel_grid(len(lrs), panel_height=2.3, sharey=True)
    for ax, lr in zip(axes, lrs):
        sel = curves[np.isclose(curves.lr, lr)]
        for arm, colour in ARM_COLOURS.items():
            g = sel[sel.arm == arm].groupby("step").clean_acc
            if not len(g):
                continue
            ax.fill_between(g.min().index, g.min(), g.max(), color=colour, alpha=0.15, lw=0)
            ax.plot(g.mean().index, g.mean(), color=colour, marker="o", ms=2.5, lw=1.5)
        t = steps[(steps.seed == "mean") & np.isclose(steps.lr.astype(float), lr)]
        if len(t):
            ax.axhline(float(t.target.iloc[0]), color="k", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_ylim(0, 1)
        ax.set_title(f"recovery at lr {fmt_value(float(lr))}")
        ax.set_xlabel("recovery step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("clean test accuracy")
    handles = [matplotlib.lines.Line2D([], [], color=c, lw=2, label=ARM_TITLES[a]) for a, c in ARM_COLOURS.items()]
    handles.append(matplotlib.lines.Line2D([], [], color="k", lw=0.8, ls=":", label="target"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
    return fig


def probes(frame: pd.DataFrame) -> plt.Figure | None:
    """Clean-label probe accuracy per layer for the eroded and the control arm, at the start of recovery and at its
    end for each recovery rate (at most three panels). Line: mean over seeds; band: range."""
    if frame.empty:
        return None
    panels = ([("start", math.nan)] + [("end", lr) for lr in sorted(frame.lr.dropna().unique(), reverse=True)])[:3]
    fig, axes = panel_grid(len(panels), panel_height=2.2, sharey=True)
    for ax, (when, lr) in zip(axes, panels):
        sel = frame[frame.when == when] if when == "start" else frame[(frame.when == when) & np.isclose(
            frame.lr.fillna(-1.0), lr)]
        for arm in ("pattern", "control"):
            g = sel[sel.arm == arm].assign(layer_no=sel.depth + 1).groupby("layer_no").probe_accuracy
            if not len(g):
                continue
            ax.fill_between(g.min().index, g.min(), g.max(), color=ARM_COLOURS[arm], alpha=0.15, lw=0)
            ax.plot(g.mean().index, g.mean(), color=ARM_COLOURS[arm], marker="o", ms=3)
        ax.set_title("start of recovery" if when == "start" else f"end, lr {fmt_value(float(lr))}")
        ax.set_xlabel("layer (1: nearest the input)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probe accuracy")
    handles = [matplotlib.lines.Line2D([], [], color=ARM_COLOURS[a], lw=2, label=label)
               for a, label in (("pattern", "eroded network (recovering)"), ("control", "control network"))]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return fig


# --------------------------------------------------------------------------------------------- transfer setting

OPTION_MARKERS = "oDs^vP*XhpH<>d"


def _dodged(xs: list[float], ys: list[float], tol: float = 0.025) -> list[float]:
    """x positions nudged apart where two points would sit within ``tol`` of each other (in both axes)."""
    out = list(xs)
    for i in range(len(xs)):
        clash = [j for j in range(i) if abs(out[j] - out[i]) < tol and abs(ys[j] - ys[i]) < tol]
        if clash:
            out[i] = out[i] + tol * len(clash)
    return out


def tradeoff(table: pd.DataFrame, x_range: tuple[float, float] = (-1.5, 1.5)) -> plt.Figure | None:
    """Gain kept (x) against follow rate (y) with their 95% intervals: one marker per training option (filled where
    recommended by the plan's rule, open otherwise), and the path of weight interpolation towards the pretrained
    network (post-hoc options: a line through its alphas, batch-norm re-estimation at its end). Points beyond
    ``x_range`` are drawn at its edge as arrows, their value in the legend; markers that would coincide are nudged."""
    done = table[table["gain kept"].map(lambda i: i.known)] if len(table) else table
    if done.empty:
        return None
    fig, (ax,) = panel_grid(1, panel_height=3.6, width=6.8)
    lo_x, hi_x = x_range
    train = done[~done.posthoc]
    xs = [min(max(r["gain kept"].estimate, lo_x), hi_x) for _, r in train.iterrows()]
    ys = [r["follow rate"].estimate for _, r in train.iterrows()]
    xs_d = _dodged(xs, ys)
    colours = sns.color_palette("colorblind", len(train))
    for k, ((_, r), x, y) in enumerate(zip(train.iterrows(), xs_d, ys)):
        g, f = r["gain kept"], r["follow rate"]
        filled = r["verdict"] == "recommended"
        off = g.estimate < lo_x or g.estimate > hi_x
        label = r["option"] + (" (recommended)" if filled else "") + (f" (gain kept {g.estimate:.1f}, off scale)"
                                                                       if off else "")
        xerr = None if off or math.isnan(g.lo) else [[max(0.0, g.estimate - max(g.lo, lo_x))],
                                                      [max(0.0, min(g.hi, hi_x) - g.estimate)]]
        yerr = None if math.isnan(f.lo) else [[max(0.0, f.estimate - f.lo)], [max(0.0, f.hi - f.estimate)]]
        marker = "<" if g.estimate < lo_x else ">" if g.estimate > hi_x else OPTION_MARKERS[k % len(OPTION_MARKERS)]
        ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt=marker, ms=7, color=colours[k],
                    mfc=colours[k] if filled else "white", mew=1.5, capsize=2, lw=1, label=label)
    post = done[done.posthoc].sort_values("option")
    if len(post):
        path = sorted(((r["gain kept"].estimate, r["follow rate"].estimate, r["option"]) for _, r in post.iterrows()),
                      key=lambda t: -t[1])
        px = [min(max(x, lo_x), hi_x) for x, _, _ in path]
        ax.plot(px, [y for _, y, _ in path], color="#555555", lw=1, ls="--", marker=".", ms=5,
                label="after fine-tuning: WiSE-FT α from 1 (top) to 0.1, with batch-norm re-estimation")
    ax.axvline(0, color="k", lw=0.5)
    ax.axvline(1, color="k", lw=0.5, ls=":")
    ax.axhline(0.5, color="k", lw=0.5, ls=":")
    ax.set_xlim(lo_x - 0.1, hi_x + 0.1)
    ax.set_xlabel("gain kept (share of the control's gain in clean accuracy)")
    ax.set_ylabel("follow rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=1, frameon=False, fontsize=9)
    return fig


TRANSFER_ARM_NAMES = {"eroded": "eroded → clean", "control": "control → clean", "reinit_1": "last stage re-initialised",
             "reinit_2": "last two stages re-initialised", "scratch": "from scratch"}
TRANSFER_ARM_COLOURS = {"eroded": PALETTE["pattern"], "control": PALETTE["control"], "reinit_1": "#009E73",
               "reinit_2": "#CC79A7", "scratch": "#7f7f7f"}


def transfer_recovery(rows: list[dict]) -> plt.Figure | None:
    """Clean accuracy over recovery steps on clean data for each arm (mean over seeds, band: range), against the
    target (dotted: the pretrained network's clean accuracy, mean over seeds); the scratch arm runs longer (right)."""
    data = []
    targets = []
    for row in rows:
        if row.get("missing"):
            continue
        res = row["recovery"]["result"]
        targets.append(res["pretrained"]["clean_acc"])
        for arm, a in res["arms"].items():
            data += [{"seed": row["seed"], "arm": arm, "step": r["step"], "clean_acc": r["clean_acc"]}
                     for r in a["records"]]
    if not data:
        return None
    frame = pd.DataFrame(data)
    fig, axes = panel_grid(2, ncols=2, panel_height=2.6)
    short = frame[frame.arm != "scratch"]
    for ax, sub, title in ((axes[0], short, "recovery runs"), (axes[1], frame, "with the run from scratch")):
        arms = [a for a in TRANSFER_ARM_NAMES if a in set(sub.arm)]
        sns.lineplot(data=sub, x="step", y="clean_acc", hue="arm", hue_order=arms, palette=TRANSFER_ARM_COLOURS,
                     errorbar=("pi", 100), ax=ax, legend=False)
        ax.axhline(float(np.mean(targets)), color="k", lw=0.6, ls=":")
        ax.set_title(title)
        ax.set_xlabel("recovery step")
        ax.set_ylabel("clean accuracy" if ax is axes[0] else "")
        ax.set_ylim(-0.02, max(0.8, float(frame.clean_acc.max()) + 0.05))
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=TRANSFER_ARM_COLOURS[a], lw=2, label=TRANSFER_ARM_NAMES[a]) for a in TRANSFER_ARM_NAMES
               if a in set(frame.arm)]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False, fontsize=9)
    return fig
