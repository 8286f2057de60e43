"""Figures (cheap, rerun freely) from the tables of :mod:`erosion_utils.report.analysis`, legible at the book's page width.

Every figure is at most :data:`PAGE_WIDTH_IN` wide with at most :data:`MAX_COLS` panels per row and no text below
:data:`MIN_FONT_PT`, and the book shows it as SVG at its natural size, so fonts render at their point size
(:func:`legibility_problems` checks a figure). Pattern run and control have the same colours on every page
(:data:`PALETTE`). Figure functions return None when there is nothing to draw.
"""
from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

TEXT_WIDTH_IN = 7.0  # the text width of the book's pages (sphinx-book-theme at 1280 px: 672 CSS px, 96 px per inch)
SAVE_PAD_IN = 0.1  # the padding the notebook's inline backend adds around a figure (bbox_inches="tight")
PAGE_WIDTH_IN = TEXT_WIDTH_IN - 2 * SAVE_PAD_IN  # the widest figure that is shown at its natural size
MAX_COLS = 3  # panels per row
MIN_FONT_PT = 9
DPI = 150  # raster content (images inside a figure; PNG where SVG is not used)
RC = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
      "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 11, "figure.dpi": DPI,
      "savefig.dpi": DPI, "svg.fonttype": "path", "axes.spines.top": False, "axes.spines.right": False}

METRIC_TITLES = {"clean_acc": "clean accuracy", "matched_acc": "matched accuracy",
                 "mismatched_acc": "mismatched: true label", "follow_rate": "mismatched: follows pattern",
                 "train_loss": "training loss"}
PALETTE = {"pattern": "#d62728", "control": "#1f77b4"}  # the same on every page
CONDITION_LABELS = {"pattern": "pattern run", "control": "control (clean)"}


def setup() -> None:
    """The book's figure style: font sizes, SVG output in notebooks (fonts render at their point size), 150 dpi
    for raster content. Call once at the top of every chapter."""
    plt.rcParams.update(RC)
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")
    except (ImportError, AttributeError, NameError):  # outside IPython: nothing to configure
        pass


def panel_grid(n_panels: int, ncols: int = MAX_COLS, panel_height: float = 2.1, width: float | None = None,
               **subplot_kw) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``n_panels`` panels, at most ``ncols`` (<= 3) per row, :data:`PAGE_WIDTH_IN` wide (narrower for
    one or two panels); unused cells are hidden. Returns the figure and the panels in reading order."""
    ncols = max(1, min(ncols, MAX_COLS, n_panels))
    nrows = math.ceil(n_panels / ncols)
    width = width or (PAGE_WIDTH_IN if ncols == MAX_COLS else min(PAGE_WIDTH_IN, 1.0 + 2.6 * ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel_height * nrows + 0.5), squeeze=False,
                             layout="constrained", **subplot_kw)
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def legibility_problems(fig: plt.Figure) -> list[str]:
    """What makes ``fig`` hard to read at the page width: wider than :data:`PAGE_WIDTH_IN` (as saved, tight),
    more than :data:`MAX_COLS` panels in a row, or visible text below :data:`MIN_FONT_PT`."""
    problems = []
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width = fig.get_tightbbox(renderer).width + 2 * SAVE_PAD_IN  # inches, as the page shows it
    if width > TEXT_WIDTH_IN + 0.02:
        problems.append(f"{width:.2f} in wide as shown, more than the page's {TEXT_WIDTH_IN} in: it would be shrunk")
    rows: dict[float, int] = {}
    for ax in fig.axes:
        if ax.get_visible() and ax.get_label() != "<colorbar>" and not getattr(ax, "_colorbar", None):
            top = round(ax.get_position().y1, 2)
            rows[top] = rows.get(top, 0) + 1
    if rows and max(rows.values()) > MAX_COLS and not getattr(fig, "_image_grid", False):
        problems.append(f"{max(rows.values())} panels in a row (at most {MAX_COLS})")
    small = sorted({(t.get_text()[:20], t.get_fontsize()) for t in fig.findobj(matplotlib.text.Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT - 1e-6})
    if small:
        problems.append(f"text below {MIN_FONT_PT} pt: {small[:5]}")
    return problems


def pattern_gallery(rows: dict[str, torch.Tensor], titles: list[str]) -> plt.Figure:
    """A grid of uint8 images (N, C, H, W): one row per entry of ``rows``, one column per image. An image grid (not
    plot panels): up to six images per row, each about an inch wide, labels at 9 pt."""
    n = len(titles)
    cell = min(1.0, (PAGE_WIDTH_IN - 1.3) / n)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 + cell * n, 0.45 + cell * 1.02 * len(rows)), squeeze=False,
                             layout="constrained")
    fig._image_grid = True
    for i, (name, images) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(images[j].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=MIN_FONT_PT)
            if j == 0:
                ax.set_ylabel(name.replace(" (", "\n("), fontsize=MIN_FONT_PT, rotation=0, ha="right", va="center")
    return fig


def _curves(ax: plt.Axes, data: pd.DataFrame, metric: str) -> None:
    sns.lineplot(data=data, x="step", y=metric, hue="condition", hue_order=["pattern", "control"], palette=PALETTE,
                 errorbar=("pi", 100), ax=ax, legend=False)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if metric != "train_loss":
        ax.set_ylim(-0.02, 1.02)  # accuracies on their full scale, so small changes look small
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("")


def _condition_legend(fig: plt.Figure) -> None:
    handles = [matplotlib.lines.Line2D([], [], color=PALETTE[c], lw=2, label=CONDITION_LABELS[c]) for c in PALETTE]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)


def erosion_headline(traj: pd.DataFrame) -> plt.Figure | None:
    """The headline figure (the paper's Fig. 1): clean test accuracy over fine-tuning steps (symlog x), pattern run
    against control, one panel per learning rate (at most three per row); line: mean over seeds, band: range."""
    if traj.empty:
        return None
    lrs = sorted(traj.finetune_lr.unique())
    fig, axes = panel_grid(len(lrs), panel_height=2.2, sharey=True)
    for ax, lr in zip(axes, lrs):
        _curves(ax, traj[traj.finetune_lr == lr], "clean_acc")
        ax.set_title(f"lr = {lr:g}")
    for i, ax in enumerate(axes):
        if i % MAX_COLS == 0:
            ax.set_ylabel("clean test accuracy")
    _condition_legend(fig)
    return fig


def erosion_metrics(traj: pd.DataFrame, metrics=("matched_acc", "follow_rate", "mismatched_acc",
                                                 "train_loss")) -> plt.Figure | None:
    """The other metrics over fine-tuning steps: one row per metric (titled), one panel per learning rate (rates
    beyond three wrap onto further rows of the same metric); with one rate, the metrics two per row."""
    if traj.empty:
        return None
    lrs = sorted(traj.finetune_lr.unique())
    if len(lrs) == 1:  # one rate: the metrics side by side, two per row
        fig, axes = panel_grid(len(metrics), ncols=2, panel_height=1.9)
        for ax, metric in zip(axes, metrics):
            _curves(ax, traj, metric)
            ax.set_title(METRIC_TITLES[metric])
        _condition_legend(fig)
        return fig
    ncols = min(MAX_COLS, len(lrs))
    per_metric = math.ceil(len(lrs) / ncols)
    fig, axes = panel_grid(ncols * per_metric * len(metrics), ncols=ncols, panel_height=1.75)
    for m, metric in enumerate(metrics):
        block = axes[m * ncols * per_metric:(m + 1) * ncols * per_metric]
        for k, ax in enumerate(block):
            if k >= len(lrs):
                ax.set_visible(False)
                continue
            _curves(ax, traj[traj.finetune_lr == lrs[k]], metric)
            ax.set_title(f"lr = {lrs[k]:g}")
            if k % ncols == 0:
                ax.set_ylabel(METRIC_TITLES[metric].replace(": ", ":\n"))
            if m < len(metrics) - 1 or k < len(block) - ncols:
                ax.set_xlabel("")
    _condition_legend(fig)
    return fig


def seed_bars(summary: pd.DataFrame) -> plt.Figure | None:
    """Per seed and learning rate: final clean accuracy of the pattern run and of the control."""
    if summary.empty:
        return None
    long = summary.melt(id_vars=["seed", "finetune_lr"], value_vars=["clean_pattern", "clean_control"],
                        var_name="run", value_name="clean accuracy")
    long["run"] = long["run"].str.replace("clean_", "")
    long["finetune_lr"] = long["finetune_lr"].map(lambda v: f"{v:g}")
    order = [f"{v:g}" for v in sorted(summary.finetune_lr.unique())]
    fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH_IN, 2.6 + 1.1 * len(order)), 2.6), layout="constrained")
    sns.barplot(data=long, x="finetune_lr", y="clean accuracy", hue="run", hue_order=["pattern", "control"],
                order=order, palette=PALETTE, errorbar=None, ax=ax, alpha=0.6)
    sns.stripplot(data=long, x="finetune_lr", y="clean accuracy", hue="run", hue_order=["pattern", "control"],
                  order=order, palette=PALETTE, dodge=True, ax=ax, legend=False)
    ax.set_xlabel("fine-tuning learning rate")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend():
        ax.get_legend().remove()
    fig.legend(handles=[matplotlib.patches.Patch(color=PALETTE[c], alpha=0.6, label=CONDITION_LABELS[c])
                        for c in PALETTE], loc="outside right upper", frameon=False)
    return fig


def breadth_summary(frame: pd.DataFrame) -> plt.Figure | None:
    """Erosion (control minus pattern clean accuracy) and follow rate per setting, one bar per fine-tuning learning
    rate; settings without results are left empty."""
    done = frame[~frame.missing]
    if done.empty:
        return None
    order = list(dict.fromkeys(frame.setting))
    hue = done.finetune_lr.map(lambda v: f"{v:g}")
    lr_order = [f"{v:g}" for v in sorted(done.finetune_lr.unique())]
    colours = dict(zip(lr_order, sns.color_palette("viridis", len(lr_order))))
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 0.32 * len(order) * max(1, len(lr_order)) ** 0.5 + 1.3),
                             sharey=True, layout="constrained")
    for ax, col, title in ((axes[0], "erosion", "erosion (control − pattern)"),
                           (axes[1], "follow_pattern", "follow rate (pattern run)")):
        sns.barplot(data=done.assign(lr=hue), y="setting", x=col, hue="lr", hue_order=lr_order, order=order,
                    palette=colours, ax=ax, orient="h", legend=False)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlim(min(-0.05, float(done[col].min()) - 0.02), 1.0)
        ax.set_title(title)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.grid(axis="x", alpha=0.3)
    fig.legend(handles=[matplotlib.patches.Patch(color=colours[v], label=v) for v in lr_order],
               title="fine-tuning lr", loc="outside lower center", ncols=len(lr_order), frameon=False)
    return fig


def lr_wd_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """The base-setting rows of the fine-tuning learning rate x weight decay grid that have results."""
    if frame.empty:
        return frame
    grid = frame[(frame.factor.isin(["base", "finetune_lr x weight_decay"])) & ~frame.missing]
    return grid[(grid.arch == frame.arch.iloc[0]) & (grid.dataset == frame.dataset.iloc[0])]


def lr_wd_heatmaps(frame: pd.DataFrame) -> plt.Figure | None:
    """Erosion and follow rate over the fine-tuning learning rate x weight decay grid (base architecture and
    pattern), side by side; None without a grid of at least two cells."""
    grid = lr_wd_grid(frame)
    if len(grid) < 2 or (grid.finetune_lr.nunique() < 2 and grid.finetune_weight_decay.nunique() < 2):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 0.5 * grid.finetune_weight_decay.nunique() + 1.7),
                             layout="constrained")
    for ax, value, title in ((axes[0], "erosion", "erosion"), (axes[1], "follow_pattern", "follow rate")):
        table = grid.pivot_table(index="finetune_weight_decay", columns="finetune_lr", values=value)
        table.index = [f"{v:g}" for v in table.index]
        table.columns = [f"{v:g}" for v in table.columns]
        labels = table.map(lambda v: "" if pd.isna(v) else f"{round(v, 2) + 0.0:.2f}")  # never "-0.00"
        sns.heatmap(table, annot=labels, fmt="", cmap="magma_r", vmin=0, vmax=1, ax=ax, cbar=ax is axes[1],
                    annot_kws={"fontsize": MIN_FONT_PT})
        ax.set_title(title)
        ax.set_xlabel("fine-tuning learning rate")
        ax.set_ylabel("weight decay" if ax is axes[0] else "")
    return fig


def layer_profiles(layers: pd.DataFrame) -> plt.Figure | None:
    """Probe accuracy, numerical rank and pattern readability per layer, for every snapshot; one row per lr."""
    if layers.empty:
        return None
    cols = {"probe_accuracy": "clean-label probe acc.", "rank": "numerical rank",
            "pattern_probe_accuracy": "pattern-class probe acc."}
    lrs = sorted(layers.finetune_lr.unique())
    order = sorted(layers.snapshot.unique(), key=lambda s: (s != "pretrained", s == "control", s == "pattern",
                                                             int(s.split("@ ")[1]) if "@" in s else 0))
    steps = [s for s in order if s not in ("pretrained", "control")]
    ramp = sns.light_palette(PALETTE["pattern"], n_colors=len(steps) + 1)[1:]  # light to the shared pattern red
    palette = dict(zip(steps, ramp))
    palette.update(pretrained="black", control=PALETTE["control"])
    fig, axes = panel_grid(len(cols) * len(lrs), panel_height=1.9)
    for r, lr in enumerate(lrs):
        sub = layers[layers.finetune_lr == lr]
        for c, (col, title) in enumerate(cols.items()):
            ax = axes[r * len(cols) + c]
            sns.lineplot(data=sub, x="depth", y=col, hue="snapshot", hue_order=order, palette=palette, marker="o",
                         markersize=4, ax=ax, legend=False)
            ax.set_title(title if r == 0 else "")
            ax.set_xlabel("layer (input → output)" if r == len(lrs) - 1 else "")
            ax.set_ylabel(f"lr = {lr:g}" if c == 0 else "")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    handles = [matplotlib.lines.Line2D([], [], color=palette[s], marker="o", markersize=4, label=s) for s in order]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(order)), frameon=False)
    return fig
