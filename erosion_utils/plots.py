"""Figures (cheap, rerun freely) from the tables of :mod:`erosion_utils.analysis`."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

METRIC_TITLES = {"clean_acc": "clean accuracy", "matched_acc": "matched accuracy",
                 "mismatched_acc": "mismatched: true label", "follow_rate": "mismatched: follows pattern",
                 "train_loss": "training loss"}
PALETTE = {"pattern": "#d62728", "control": "#1f77b4"}


def pattern_gallery(rows: dict[str, torch.Tensor], titles: list[str]) -> plt.Figure:
    """A grid of uint8 images (N, C, H, W): one row per entry of ``rows``, one column per image."""
    n = len(titles)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.75 * len(rows)), squeeze=False)
    for i, (name, images) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(images[j].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig


def erosion_curves(traj: pd.DataFrame, metrics=("clean_acc", "matched_acc", "mismatched_acc", "follow_rate",
                                                "train_loss")) -> sns.FacetGrid:
    """Fig. 1: each metric over fine-tuning steps (symlog x), pattern vs control, one row per learning rate;
    line = mean over seeds, band = range over seeds."""
    long = traj.melt(id_vars=["seed", "finetune_lr", "condition", "step"], value_vars=list(metrics),
                     var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(METRIC_TITLES)
    g = sns.relplot(data=long, x="step", y="value", hue="condition", col="metric", row="finetune_lr", kind="line",
                    errorbar=("pi", 100), palette=PALETTE, height=2.4, aspect=1.1,
                    facet_kws={"sharey": False, "margin_titles": True})
    for (_, metric), ax in g.axes_dict.items():
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        if metric != METRIC_TITLES["train_loss"]:
            ax.set_ylim(-0.02, 1.02)  # accuracies on their full scale, so small changes look small
    g.set_titles(col_template="{col_name}", row_template="lr = {row_name}")
    g.set_axis_labels("fine-tuning step", "")
    return g


def breadth_summary(frame: pd.DataFrame) -> plt.Figure:
    """Erosion (control minus pattern clean accuracy) and follow rate per setting, one bar per fine-tuning learning
    rate; settings without results are left empty."""
    done = frame[~frame.missing]
    order = list(dict.fromkeys(frame.setting))
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(order) + 1.6), sharey=True)
    for ax, col, title in ((axes[0], "erosion", "erosion: control − pattern clean accuracy"),
                           (axes[1], "follow_pattern", "mismatched predictions following the pattern")):
        sns.barplot(data=done, y="setting", x=col, hue="finetune_lr", order=order, palette="viridis", ax=ax,
                    orient="h", legend=ax is axes[1])
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlim(min(-0.05, float(done[col].min()) - 0.02), 1.0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.grid(axis="x", alpha=0.3)
    axes[1].legend(title="fine-tuning lr", loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def lr_wd_heatmap(frame: pd.DataFrame, value: str = "erosion") -> plt.Figure:
    """``value`` over the fine-tuning learning rate x weight decay grid (default pattern and architecture)."""
    grid = frame[(frame.factor.isin(["base", "finetune_lr x weight_decay"])) & ~frame.missing]
    grid = grid[(grid.arch == frame.arch.iloc[0]) & (grid.dataset == frame.dataset.iloc[0])]
    table = grid.pivot_table(index="finetune_weight_decay", columns="finetune_lr", values=value)
    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="magma_r", vmin=0, vmax=1, ax=ax, cbar_kws={"label": value})
    ax.set_xlabel("fine-tuning learning rate")
    ax.set_ylabel("weight decay")
    fig.tight_layout()
    return fig


def layer_profiles(layers: pd.DataFrame) -> sns.FacetGrid:
    """Probe accuracy, numerical rank and pattern readability per layer, for every snapshot; one row per lr."""
    cols = {"probe_accuracy": "clean-label probe accuracy", "rank": "numerical rank",
            "pattern_probe_accuracy": "pattern-class probe accuracy"}
    long = layers.melt(id_vars=["finetune_lr", "snapshot", "step", "depth"], value_vars=list(cols),
                       var_name="quantity", value_name="value")
    long["quantity"] = long["quantity"].map(cols)
    order = sorted(layers.snapshot.unique(), key=lambda s: (s != "pretrained", s == "control", s == "pattern",
                                                             int(s.split("@ ")[1]) if "@" in s else 0))
    palette = dict(zip(order, sns.color_palette("rocket_r", len(order) - 1) + [PALETTE["control"]]))
    palette["pretrained"] = "black"
    g = sns.relplot(data=long, x="depth", y="value", hue="snapshot", hue_order=order, col="quantity",
                    row="finetune_lr", kind="line", marker="o", palette=palette, height=2.6, aspect=1.2,
                    facet_kws={"sharey": False, "margin_titles": True})
    g.set_titles(col_template="{col_name}", row_template="lr = {row_name}")
    g.set_axis_labels("layer (input → output)", "")
    for ax in g.axes.flat:
        ax.grid(alpha=0.3)
    return g


def seed_bars(summary: pd.DataFrame) -> plt.Figure:
    """Per seed and learning rate: final clean accuracy of the pattern run and of the control."""
    long = summary.melt(id_vars=["seed", "finetune_lr"], value_vars=["clean_pattern", "clean_control"],
                        var_name="run", value_name="clean accuracy")
    long["run"] = long["run"].str.replace("clean_", "")
    fig, ax = plt.subplots(figsize=(5, 2.8))
    sns.barplot(data=long, x="finetune_lr", y="clean accuracy", hue="run", palette=PALETTE, errorbar=None, ax=ax,
                alpha=0.6)
    sns.stripplot(data=long, x="finetune_lr", y="clean accuracy", hue="run", palette=PALETTE, dodge=True, ax=ax,
                  legend=False)
    ax.set_xlabel("fine-tuning learning rate")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig

