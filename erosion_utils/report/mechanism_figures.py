"""Figures of the mechanism chapter (cheap, rerun freely), from the tables of :mod:`erosion_utils.report.mechanism`,
in the book's style (:func:`erosion_utils.report.plots.setup`): at most three panels per row, pattern and control in the
same colours on every page. Each returns None when there is nothing to draw."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .mechanism import SPIKE_LOSS, cell_stats, in_group
from .plots import CONDITION_LABELS, PALETTE, panel_grid


def _annot(mean: float, lo: float, hi: float) -> str:
    if np.isnan(mean):
        return ""
    if np.isnan(lo) or np.isnan(hi):
        return f"{mean:.2f}"
    return f"{mean:.2f}\n[{lo:.2f}, {hi:.2f}]"


def phase_map(frame: pd.DataFrame, steps: dict[int, int]) -> plt.Figure | None:
    """Heatmaps of mean erosion and mean follow rate over fine-tuning lr x batch size (fixed epochs), with the
    95% CI over seeds in each cell; the y labels give each batch size's steps."""
    stats = cell_stats(in_group(frame, "map"), ["batch_size", "finetune_lr"])
    if stats.empty:
        return None
    fig, axes = panel_grid(2, ncols=1, panel_height=0.5 * stats.batch_size.nunique() + 0.9,
                           width=min(6.9, 1.6 + 1.05 * stats.finetune_lr.nunique()))
    for ax, col, title, cmap in ((axes[0], "erosion", "erosion (control − pattern)", "magma_r"),
                                 (axes[1], "follow_pattern", "follow rate", "viridis")):
        mean = stats.pivot(index="batch_size", columns="finetune_lr", values=f"{col}_mean")
        lo = stats.pivot(index="batch_size", columns="finetune_lr", values=f"{col}_lo")
        hi = stats.pivot(index="batch_size", columns="finetune_lr", values=f"{col}_hi")
        labels = np.vectorize(_annot)(mean.values, lo.values, hi.values)
        sns.heatmap(mean, annot=labels, fmt="", cmap=cmap, vmin=0 if col == "follow_pattern" else -0.05,
                    vmax=1 if col == "follow_pattern" else 0.6, cbar=False, ax=ax, annot_kws={"fontsize": 9})
        ax.set_title(title)
        ax.set_xlabel("fine-tuning lr" if ax is axes[1] else "")
        ax.set_yticklabels([f"{b} ({steps.get(int(b), '?')} steps)" for b in mean.index], rotation=0)
        ax.set_ylabel("batch size")
        ax.set_xticklabels([f"{x:g}" for x in mean.columns])
    return fig


def controls(frame: pd.DataFrame, reference_batch: int) -> plt.Figure | None:
    """Mean erosion against batch size at each control rate: same epochs (the map), same steps as the reference
    batch, and same lr/batch (the rate scaled with the batch; x is the batch size, the panel the reference rate)."""
    ss = in_group(frame, "same_steps")
    if ss.empty:
        return None
    lrs = sorted(ss[ss.batch_size == reference_batch].finetune_lr.unique())
    fig, axes = panel_grid(len(lrs), panel_height=2.2)
    sn, grid = in_group(frame, "same_noise"), in_group(frame, "map")
    styles = {"same epochs": ("#555555", "o"), "same steps": ("#2ca02c", "s"), "same lr/batch": ("#9467bd", "^")}
    for ax, lr in zip(axes, lrs):
        for label, runs in (("same epochs", grid[np.isclose(grid.finetune_lr, lr)] if len(grid) else grid),
                            ("same steps", ss[np.isclose(ss.finetune_lr, lr)]),
                            ("same lr/batch", sn[np.isclose(sn.finetune_lr * reference_batch / sn.batch_size, lr)]
                             if len(sn) else sn)):
            if runs.empty:
                continue
            color, marker = styles[label]
            sns.lineplot(data=runs, x="batch_size", y="erosion", errorbar=("ci", 95), seed=0, marker=marker,
                         color=color, label=label, ax=ax, legend=ax is axes[0])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ss.batch_size.unique()), [str(b) for b in sorted(ss.batch_size.unique())])
        ax.minorticks_off()
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylim(-0.1, 0.8)
        ax.set_title(f"lr {lr:g} at batch {reference_batch}")
        ax.set_xlabel("batch size")
        ax.set_ylabel("erosion" if ax is axes[0] else "")
        ax.grid(alpha=0.3)
    if axes and axes[0].get_legend():
        axes[0].legend(fontsize=9, loc="upper left", frameon=False)
    return fig


def collapse(frame: pd.DataFrame) -> plt.Figure | None:
    """Erosion of every run of the chapter against lr/batch, coloured by batch size (cell means, with seeds
    as small dots); long runs and warm-up runs are marked apart."""
    done = frame[~frame.missing] if len(frame) else frame
    if done.empty:
        return None
    fig, (ax,) = panel_grid(1, panel_height=3.0, width=5.2)
    kind = np.where(done.groups.map(lambda g: "duration" in g) & (done.epochs > done.epochs.min()), "long run",
                    np.where(done.warmup_epochs > 0, "warm-up", "no warm-up"))
    data = done.assign(kind=kind)
    batches = sorted(data.batch_size.unique())
    palette = dict(zip([f"batch {b}" for b in batches], sns.color_palette("Dark2", len(batches))))
    data["batch"] = data.batch_size.map(lambda b: f"batch {b}")
    sns.scatterplot(data=data, x="lr_per_batch", y="erosion", hue="batch", hue_order=list(palette), palette=palette,
                    style="kind", style_order=["no warm-up", "warm-up", "long run"], markers=["o", "^", "s"], s=30,
                    alpha=0.7, ax=ax)
    ax.set_xscale("log")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("fine-tuning lr / batch size")
    ax.set_ylabel("erosion")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    keep = [(h, lab) for h, lab in zip(handles, labels) if lab not in ("batch", "kind")]
    ax.legend(*zip(*keep), fontsize=9, loc="upper left", frameon=False, ncols=2)
    return fig


def weight_decay(frame: pd.DataFrame) -> plt.Figure | None:
    """Erosion and follow rate against weight decay, one line per rate (mean and 95% CI over seeds)."""
    runs = in_group(frame, "weight_decay")
    if runs.empty:
        return None
    fig, axes = panel_grid(2, ncols=2, panel_height=2.2)
    lrs = sorted(runs.finetune_lr.unique())
    palette = dict(zip(lrs, sns.color_palette("rocket", len(lrs) + 1)[1:]))
    data = runs.assign(wd=runs.weight_decay.map(lambda w: f"{w:g}"))
    order = [f"{w:g}" for w in sorted(runs.weight_decay.unique())]
    for ax, col, title in ((axes[0], "erosion", "erosion"), (axes[1], "follow_pattern", "follow rate")):
        sns.pointplot(data=data, x="wd", y=col, hue="finetune_lr", order=order, palette=palette, errorbar=("ci", 95),
                      seed=0, dodge=0.2 if len(lrs) > 1 else False, ax=ax, legend=ax is axes[1])
        ax.set_xlabel("weight decay")
        ax.set_ylabel("")
        ax.set_title(title)
        ax.set_ylim(-0.1, 1.02)
        ax.grid(alpha=0.3)
    if axes[1].get_legend():
        axes[1].legend(title="lr", fontsize=9, frameon=False)
    return fig


def _trajectories(rows: list[dict], keep) -> pd.DataFrame:
    out = []
    for row in rows:
        if row.get("missing") or not keep(row):
            continue
        c = row["config"]
        for cond in ("pattern", "control"):
            for rec in row[cond]["result"]["records"]:
                out.append({"seed": c["seed"], "finetune_lr": c["finetune_lr"], "epochs": c["finetune_epochs"],
                            "warmup_epochs": c.get("finetune_warmup_epochs", 0.0), "condition": cond, **rec})
    return pd.DataFrame(out)


CURVE_METRICS = (("clean_acc", "clean accuracy"), ("follow_rate", "follow rate"),
                 ("train_loss_max", "largest batch loss"))


def _curve_rows(rows: list[tuple[str, pd.DataFrame, float]]) -> plt.Figure:
    """One row of three panels (clean accuracy, follow rate, largest batch loss over epochs; pattern run and control;
    line: mean, band: range over seeds) per ``(label, trajectories, shaded epochs)``."""
    fig, axes = panel_grid(3 * len(rows), panel_height=1.7)
    for i, (label, sub, shade) in enumerate(rows):
        for j, (metric, title) in enumerate(CURVE_METRICS):
            ax = axes[3 * i + j]
            if metric not in sub:
                ax.set_visible(False)
                continue
            sns.lineplot(data=sub, x="epoch", y=metric, hue="condition", hue_order=["pattern", "control"],
                         palette=PALETTE, errorbar=("pi", 100), ax=ax, legend=False)
            if metric == "train_loss_max":
                ax.set_yscale("log")
                ax.axhline(SPIKE_LOSS, color="k", lw=0.6, ls=":")
            else:
                ax.set_ylim(-0.02, 1.02)
            if shade > 0:
                ax.axvspan(0, shade, color="#cccccc", alpha=0.4, lw=0)
            ax.set_title(f"{title}, {label}" if j == 0 else title)
            ax.set_xlabel("fine-tuning epoch" if i == len(rows) - 1 else "")
            ax.set_ylabel("")
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=PALETTE[c], lw=2, label=CONDITION_LABELS[c]) for c in PALETTE]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return fig


def warmup_curves(rows: list[dict], eroding_lr: float) -> plt.Figure | None:
    """Clean accuracy, follow rate and the largest batch loss over fine-tuning epochs at ``eroding_lr``, one row of
    panels per warm-up (shaded: the warm-up)."""
    traj = _trajectories(rows, lambda r: "warmup" in r["groups"] and np.isclose(r["config"]["finetune_lr"],
                                                                                  eroding_lr))
    if traj.empty:
        return None
    return _curve_rows([(f"warm-up {w:g} ep", traj[traj.warmup_epochs == w], w)
                        for w in sorted(traj.warmup_epochs.unique())])


def duration_curves(rows: list[dict]) -> plt.Figure | None:
    """Clean accuracy, follow rate and the largest batch loss over epochs of the long stable runs, one row per rate."""
    long = _trajectories(rows, lambda r: "duration" in r["groups"])
    if long.empty:
        return None
    long = long[long.epochs == long.epochs.max()]
    return _curve_rows([(f"lr {lr:g}", long[np.isclose(long.finetune_lr, lr)], 0.0)
                        for lr in sorted(long.finetune_lr.unique())])


def spike_vs_erosion(frame: pd.DataFrame) -> plt.Figure | None:
    """Over every run: the pattern run's and the control's largest training loss against erosion; the largest jump
    of the weight distance against erosion; for eroding runs, the step of the loss peak against the step at which
    the follow rate first exceeds 0.5."""
    done = frame[~frame.missing] if len(frame) else frame
    if done.empty:
        return None
    fig, axes = panel_grid(3, panel_height=2.3)
    ax = axes[0]
    ax.scatter(done.peak_loss_pattern, done.erosion, s=14, color=PALETTE["pattern"], alpha=0.7,
               label=CONDITION_LABELS["pattern"])
    ax.scatter(done.peak_loss_control, done.erosion, s=14, color=PALETTE["control"], alpha=0.7, marker="x",
               label=CONDITION_LABELS["control"])
    ax.axvline(SPIKE_LOSS, color="k", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("largest training loss")
    ax.set_ylabel("erosion")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    ax = axes[1]
    ax.scatter(done.weight_jump_pattern, done.erosion, s=14, color=PALETTE["pattern"], alpha=0.7)
    ax.scatter(done.weight_jump_control, done.erosion, s=14, color=PALETTE["control"], alpha=0.7, marker="x")
    ax.set_xlabel("largest jump of ‖θ−θ₀‖/‖θ₀‖")
    ax = axes[2]
    er = done[done.eroded].dropna(subset=["follow_cross_step", "peak_step_pattern"])
    if len(er):
        ax.scatter(er.peak_step_pattern + 1, er.follow_cross_step + 1, s=16, color=PALETTE["pattern"], alpha=0.8)
        top = float(max(er.peak_step_pattern.max(), er.follow_cross_step.max()) + 1) * 1.5
        ax.plot([1, top], [1, top], color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("step of loss peak (+1)")
    ax.set_ylabel("step follow rate > 0.5 (+1)")
    ax.set_title("eroding runs", fontsize=10)
    for a in axes:
        a.grid(alpha=0.3)
    return fig


# ------------------------------------------------------------------------------------- the confirmatory design

VERDICT_MARKS = {"erodes": "●", "does not erode": "○", "inconclusive": "?", "both collapse": "×"}


def verdict_map(table: pd.DataFrame) -> plt.Figure | None:
    """The confirmatory phase map: mean erosion per (batch size, lr) with its 95% interval in each cell and the
    cell rule's verdict mark (● erodes, ○ does not, ? inconclusive); both-collapse cells hatched and marked ×."""
    grid = table[table.groups.map(lambda g: "confirm_map" in g)] if len(table) else table
    if grid.empty:
        return None
    lrs = sorted(grid.finetune_lr.unique())
    batches = sorted(grid.finetune_batch_size.unique())
    fig, (ax,) = panel_grid(1, panel_height=0.62 * len(batches) + 0.8, width=min(6.9, 1.7 + 1.05 * len(lrs)))
    mean = np.full((len(batches), len(lrs)), np.nan)
    for _, r in grid.iterrows():
        mean[batches.index(r.finetune_batch_size), lrs.index(r.finetune_lr)] = r.erosion.estimate
    sns.heatmap(pd.DataFrame(mean, index=[int(b) for b in batches], columns=[f"{x:g}" for x in lrs]), cmap="magma_r",
                vmin=-0.05, vmax=0.6, cbar=False, ax=ax, annot=False)
    for _, r in grid.iterrows():
        i, j = batches.index(r.finetune_batch_size), lrs.index(r.finetune_lr)
        text = f"{VERDICT_MARKS.get(r.cell, '')} {r.erosion.estimate:.2f}\n[{r.erosion.lo:.2f}, {r.erosion.hi:.2f}]"
        dark = r.erosion.estimate > 0.35
        ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
        if r.cell == "both collapse":
            ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, hatch="///", edgecolor="#444444", lw=0))
    ax.set_xlabel("fine-tuning lr")
    ax.set_ylabel("batch size")
    ax.set_title("erosion (control − pattern run), mean [95% interval]")
    ax.tick_params(axis="y", rotation=0)
    return fig


def _monitor_frame(setting, label: str) -> pd.DataFrame:
    rows = []
    for which, runs, own in (("pattern", setting.pattern, "loss_patterned"), ("control", setting.control,
                                                                              "loss_clean")):
        for seed, entry in runs.items():
            res = entry["result"]
            for m in res.get("monitor", []):
                rows.append({"arm": label, "condition": which, "seed": seed, "fraction": m["step"] / res["total_steps"],
                             "loss": max(m[own], 1e-4), "follow_rate": m["follow_rate"], "clean_acc": m["clean_acc"]})
    return pd.DataFrame(rows)


def dynamics(arms: list[tuple[str, object]], spike: float) -> plt.Figure | None:
    """The dense monitor over the run (x: share of the run's steps) for each arm (``(label, Setting)``): the loss on
    the run's own training distribution (log scale, dotted: the spike threshold) and the follow rate, pattern run
    against control (line: mean over seeds, band: range)."""
    frames = [_monitor_frame(s, label) for label, s in arms if s is not None]
    data = pd.concat(frames) if frames else pd.DataFrame()
    if data.empty:
        return None
    labels = [label for label, s in arms if s is not None]
    fig, axes = panel_grid(2 * len(labels), ncols=2, panel_height=1.8)
    for i, label in enumerate(labels):
        sub = data[data.arm == label]
        for j, (metric, title) in enumerate((("loss", "monitor loss"), ("follow_rate", "follow rate"))):
            ax = axes[2 * i + j]
            sns.lineplot(data=sub, x="fraction", y=metric, hue="condition", hue_order=["pattern", "control"],
                         palette=PALETTE, errorbar=("pi", 100), ax=ax, legend=False)
            if metric == "loss":
                ax.set_yscale("log")
                ax.axhline(spike, color="k", lw=0.6, ls=":")
            else:
                ax.set_ylim(-0.02, 1.02)
                ax.axhline(0.5, color="k", lw=0.4, ls=":")
            ax.set_title(f"{title}: {label}")
            ax.set_xlabel("share of the run's steps" if i == len(labels) - 1 else "")
            ax.set_ylabel("")
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=PALETTE[c], lw=2, label=CONDITION_LABELS[c]) for c in ("pattern", "control")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return fig


def drift_curves(pairs: dict[float, tuple], spike: float) -> plt.Figure | None:
    """The long runs at the calm candidate rates: monitor loss and follow rate over epochs (shaded: the usual
    length), pattern run against control."""
    if not pairs:
        return None
    fig, axes = panel_grid(2 * len(pairs), ncols=2, panel_height=1.8)
    for i, (lr, (short, long)) in enumerate(sorted(pairs.items())):
        sub = _monitor_frame(long, f"lr {lr:g}")
        if sub.empty:
            continue
        sub["epoch"] = sub.fraction * long.epochs
        for j, (metric, title) in enumerate((("loss", "monitor loss"), ("follow_rate", "follow rate"))):
            ax = axes[2 * i + j]
            sns.lineplot(data=sub, x="epoch", y=metric, hue="condition", hue_order=["pattern", "control"],
                         palette=PALETTE, errorbar=("pi", 100), ax=ax, legend=False)
            ax.axvspan(0, short.epochs, color="#cccccc", alpha=0.4, lw=0)
            if metric == "loss":
                ax.set_yscale("log")
                ax.axhline(spike, color="k", lw=0.6, ls=":")
            else:
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{title}: lr {lr:g}")
            ax.set_xlabel("fine-tuning epoch" if i == len(pairs) - 1 else "")
            ax.set_ylabel("")
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=PALETTE[c], lw=2, label=CONDITION_LABELS[c]) for c in ("pattern", "control")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return fig


def regression_scatter(runs: list[dict]) -> plt.Figure | None:
    """Every confirmatory map run outside both-collapse settings: erosion against lr/batch (left) and against the
    number of optimiser steps (right), coloured by batch size."""
    if not runs:
        return None
    data = pd.DataFrame(runs)
    data["lr/batch"] = 2.0 ** data.log2_lr_per_batch
    data["steps"] = 2.0 ** data.log2_steps
    batches = sorted(data.batch.unique())
    palette = dict(zip([f"batch {b}" for b in batches], sns.color_palette("colorblind", len(batches))))
    data["batch size"] = data.batch.map(lambda b: f"batch {b}")
    fig, axes = panel_grid(2, ncols=2, panel_height=2.6)
    for ax, x in zip(axes, ("lr/batch", "steps")):
        sns.scatterplot(data=data, x=x, y="erosion", hue="batch size", hue_order=list(palette), palette=palette,
                        s=22, alpha=0.75, ax=ax, legend=ax is axes[0])
        ax.set_xscale("log")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("fine-tuning lr / batch size" if x == "lr/batch" else "optimiser steps")
        ax.set_ylabel("erosion" if ax is axes[0] else "")
        ax.grid(alpha=0.3)
    if axes[0].get_legend():
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)), frameon=False)
    return fig
