"""Figures (cheap, rerun freely) from the tables of :mod:`erosion_utils.report.analysis`, legible at the book's page width.

Every figure is at most :data:`PAGE_WIDTH_IN` wide with at most :data:`MAX_COLS` panels per row and no text below
:data:`MIN_FONT_PT`, and the book shows it as SVG at its natural size, so fonts render at their point size
(:func:`legibility_problems` checks a figure). Colours come from the Okabe-Ito palette, which stays distinguishable
under the common colour-vision deficiencies; pattern run and control have the same colours on every page
(:data:`PALETTE`), and lines that may coincide differ also in width, style or marker, so none hides another. Figure
functions return None when there is nothing to draw.
"""
from __future__ import annotations

import contextlib
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from .words import layer_axis_label, layer_name

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
# Okabe & Ito's colour-blind-safe palette
OKABE_ITO = {"black": "#000000", "orange": "#e69f00", "sky": "#56b4e9", "green": "#009e73", "yellow": "#f0e442",
             "blue": "#0072b2", "vermillion": "#d55e00", "purple": "#cc79a7"}
PALETTE = {"pattern": OKABE_ITO["vermillion"], "control": OKABE_ITO["blue"]}  # the same on every page
CONDITION_LABELS = {"pattern": "pattern run", "control": "control (clean)"}
# how each run is drawn, so that coinciding curves stay visible: the control as a wide, translucent line, the pattern
# run as a narrow line with a marker at every evaluation, on top
CONDITION_STYLE = {"control": dict(lw=3.2, alpha=0.45, zorder=2),
                   "pattern": dict(lw=1.3, marker="o", markersize=2.6, zorder=3)}
# categorical colours and markers for learning rates (never the pattern/control colours)
LR_COLOURS = [OKABE_ITO[c] for c in ("sky", "orange", "green", "purple", "black", "yellow")]
LR_MARKERS = ["o", "s", "D", "^", "v", "P"]
MISSING_COLOUR = "#666666"


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


def _curves(ax: plt.Axes, data: pd.DataFrame, metric: str, conditions=("control", "pattern"),
            linestyle: str = "-") -> None:
    """Mean over seeds (line) and range (band) of ``metric`` per fine-tuning step, one line per condition, styled by
    :data:`CONDITION_STYLE` so that a pattern run on top of its control stays visible."""
    for condition in conditions:
        sub = data[data.condition == condition]
        if sub.empty:
            continue
        style = dict(CONDITION_STYLE[condition])
        if linestyle != "-":
            style.update(lw=min(style["lw"], 1.6), alpha=1.0 if condition == "pattern" else 0.7, marker=None)
        sns.lineplot(data=sub, x="step", y=metric, color=PALETTE[condition], errorbar=("pi", 100), ax=ax,
                     legend=False, linestyle=linestyle, err_kws={"alpha": 0.15, "linewidth": 0},
                     markeredgewidth=0, **style)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if metric != "train_loss":
        ax.set_ylim(-0.02, 1.02)  # accuracies on their full scale, so small changes look small
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("")


def _condition_handles() -> list:
    return [matplotlib.lines.Line2D([], [], color=PALETTE[c], label=CONDITION_LABELS[c],
                                    **{k: v for k, v in CONDITION_STYLE[c].items() if k != "zorder"})
            for c in ("pattern", "control")]


def _condition_legend(fig: plt.Figure) -> None:
    fig.legend(handles=_condition_handles(), loc="outside lower center", ncols=2, frameon=False)


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


@contextlib.contextmanager
def fixed_global_rng(seed: int = 0):
    """numpy's global random state seeded with ``seed`` within the block, and restored after it: seaborn's stripplot
    draws its jitter from that state, so the same results draw the same figure in every build."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


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
    with fixed_global_rng():
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
    """Erosion (control minus pattern clean accuracy) and follow rate per setting, one marker per fine-tuning learning
    rate (colour and shape), on axes that include negative values; a setting without a result at a rate says so
    ("no result") on its line. None when no setting has a result."""
    done = frame[~frame.missing]
    if done.empty:
        return None
    order = list(dict.fromkeys(frame.setting))
    lr_order = sorted(frame.finetune_lr.unique())
    n = len(lr_order)
    colours = {lr: LR_COLOURS[i % len(LR_COLOURS)] for i, lr in enumerate(lr_order)}
    markers = {lr: LR_MARKERS[i % len(LR_MARKERS)] for i, lr in enumerate(lr_order)}
    offsets = {lr: (i - (n - 1) / 2) * (0.62 / max(n, 1)) for i, lr in enumerate(lr_order)}
    row_height = 0.13 * n + 0.14
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, row_height * len(order) + 1.2), sharey=True,
                             layout="constrained")
    for ax, col, title in ((axes[0], "erosion", "erosion (control − pattern run)"),
                           (axes[1], "follow_pattern", "follow rate (pattern run)")):
        low = min(-0.1, float(done[col].min()) - 0.05)
        ax.set_xlim(low, 1.02)
        for i in range(len(order)):
            if i % 2 == 0:
                ax.axhspan(i - 0.5, i + 0.5, color="#f2f2f2", zorder=0, lw=0)
        ax.axvline(0, color="k", lw=0.8, zorder=1)
        for _, r in frame.iterrows():
            y = order.index(r.setting) + offsets[r.finetune_lr]
            if r.missing or pd.isna(r[col]):
                ax.text(0.5 * (low + 1.02), y, f"lr {r.finetune_lr:g}: no result", color=MISSING_COLOUR,
                        fontsize=MIN_FONT_PT, fontstyle="italic", ha="center", va="center", zorder=2)
                continue
            ax.plot([0, r[col]], [y, y], color=colours[r.finetune_lr], lw=1.0, alpha=0.6, zorder=2)
            ax.plot(r[col], y, marker=markers[r.finetune_lr], color=colours[r.finetune_lr], markersize=5.5,
                    markeredgecolor="black", markeredgewidth=0.5, linestyle="none", zorder=3)
        ax.set_title(title)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_yticks(range(len(order)), order)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="y", length=0)
    handles = [matplotlib.lines.Line2D([], [], color=colours[v], marker=markers[v], markeredgecolor="black",
                                       markeredgewidth=0.5, linestyle="none", label=f"{v:g}") for v in lr_order]
    fig.legend(handles=handles, title="fine-tuning learning rate", loc="outside lower center", ncols=len(lr_order),
               frameon=False)
    return fig


def lr_wd_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """The base-setting rows of the fine-tuning learning rate x weight decay grid that have results."""
    if frame.empty:
        return frame
    grid = frame[(frame.factor.isin(["base", "finetune_lr x weight_decay"])) & ~frame.missing]
    return grid[(grid.arch == frame.arch.iloc[0]) & (grid.dataset == frame.dataset.iloc[0])]


def lr_wd_heatmaps(frame: pd.DataFrame) -> plt.Figure | None:
    """Erosion and follow rate over the fine-tuning learning rate x weight decay grid (base architecture and
    pattern), side by side, on a colour-blind-safe sequential scale that starts at or below zero; a cell without a
    result says "missing". None without a grid of at least two cells."""
    grid = lr_wd_grid(frame)
    if len(grid) < 2 or (grid.finetune_lr.nunique() < 2 and grid.finetune_weight_decay.nunique() < 2):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 0.5 * grid.finetune_weight_decay.nunique() + 1.7),
                             layout="constrained")
    for ax, value, title in ((axes[0], "erosion", "erosion"), (axes[1], "follow_pattern", "follow rate")):
        table = grid.pivot_table(index="finetune_weight_decay", columns="finetune_lr", values=value)
        table.index = [f"{v:g}" for v in table.index]
        table.columns = [f"{v:g}" for v in table.columns]
        labels = table.map(lambda v: "missing" if pd.isna(v) else f"{round(v, 2) + 0.0:.2f}")  # never "-0.00"
        low = min(0.0, float(table.min().min()))
        sns.heatmap(table, annot=labels, fmt="", cmap="magma_r", vmin=low, vmax=1, ax=ax, cbar=ax is axes[1],
                    annot_kws={"fontsize": MIN_FONT_PT}, linewidths=0.5, linecolor="white")
        for text in ax.texts:
            if text.get_text() == "missing":
                text.set_color(MISSING_COLOUR)
        ax.set_title(title)
        ax.set_xlabel("fine-tuning learning rate")
        ax.set_ylabel("weight decay" if ax is axes[0] else "")
    return fig


def _snapshot_styles(order: list[str]) -> dict[str, dict]:
    """How each snapshot of :func:`layer_profiles` is drawn: the pretrained network black, dashed, hollow squares, on
    top (it often coincides with the early snapshots); the control as the control everywhere; the pattern run's
    snapshots along fine-tuning from light to dark orange, each with its own marker; its end in the pattern colour."""
    steps = [s for s in order if s not in ("pretrained", "control", "pattern")]
    ramp = sns.blend_palette(["#F3C46B", OKABE_ITO["orange"], "#8C4A00"], max(len(steps), 2))[:len(steps)]
    shapes = ["v", "^", "<", ">", "p", "h", "*"]
    styles = {s: dict(color=ramp[i], marker=shapes[i % len(shapes)], lw=1.0, markersize=4, zorder=3)
              for i, s in enumerate(steps)}
    styles["pattern"] = dict(color=PALETTE["pattern"], marker="o", lw=1.8, markersize=4, zorder=4)
    styles["control"] = dict(color=PALETTE["control"], marker="D", lw=1.8, markersize=3.5, zorder=4)
    styles["pretrained"] = dict(color="black", marker="s", lw=1.2, markersize=5, linestyle="--",
                                markerfacecolor="none", zorder=5)
    return styles


def _dodge(order: list[str], spread: float = 0.5) -> dict[str, float]:
    """A sideways offset (in layers) per line, centred on zero, so that lines with equal values stay visible."""
    k = len(order)
    step = min(0.09, spread / max(k, 1))
    return {s: (i - (k - 1) / 2) * step for i, s in enumerate(order)}


def _snapshot_label(name: str, total: int | None = None) -> str:
    if name == "pretrained":
        return "pretrained"
    if name == "control":
        return "control, end"
    if name == "pattern":
        return "pattern run, end" + (f" (step {total})" if total else "")
    return "pattern run, step " + name.split("@ ")[1] if "@ " in name else name


def _layer_ticks(ax: plt.Axes, layers: pd.DataFrame, arch: str | None) -> None:
    taps = layers.drop_duplicates("depth").sort_values("depth")
    labels = [layer_name(t, arch, short=True) for t in taps.layer]
    step = 1 if len(labels) <= 11 else 2
    ax.set_xticks(list(taps.depth)[::step], labels[::step], rotation=90 if len(labels) > 6 else 0)


def layer_profiles(layers: pd.DataFrame, arch: str | None = None) -> plt.Figure | None:
    """Probe accuracy, numerical rank and pattern readability per layer, for every snapshot; one row per lr. Layers
    are named as :func:`erosion_utils.report.words.layer_name` names them (``arch``: the network)."""
    if layers.empty:
        return None
    cols = {"probe_accuracy": "clean-label probe acc.", "rank": "numerical rank",
            "pattern_probe_accuracy": "pattern-class probe acc."}
    lrs = sorted(layers.finetune_lr.unique())
    order = sorted(layers.snapshot.unique(), key=lambda s: (s != "pretrained", s == "control", s == "pattern",
                                                             int(s.split("@ ")[1]) if "@" in s else 0))
    styles = _snapshot_styles(order)
    dodge = _dodge(order)
    ends = layers[layers.snapshot == "pattern"].step
    total = int(ends.max()) if len(ends) and ends.nunique() == 1 else None
    fig, axes = panel_grid(len(cols) * len(lrs), panel_height=2.0)
    for r, lr in enumerate(lrs):
        sub = layers[layers.finetune_lr == lr]
        for c, (col, title) in enumerate(cols.items()):
            ax = axes[r * len(cols) + c]
            for snap in order:
                rows = sub[sub.snapshot == snap].sort_values("depth")
                if len(rows):  # each snapshot a little to the side, so that coinciding values stay visible
                    ax.plot(rows.depth + dodge[snap], rows[col], markeredgewidth=0.8 if snap == "pretrained" else 0,
                            **styles[snap])
            ax.set_title(title if r == 0 else "")
            _layer_ticks(ax, sub, arch)
            ax.set_xlabel(layer_axis_label(arch) if r == len(lrs) - 1 else "")
            ax.set_ylabel(f"lr = {lr:g}" if c == 0 else "")
            if col != "rank":
                ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    handles = [matplotlib.lines.Line2D([], [], label=_snapshot_label(s, total),
                                       **{k: v for k, v in styles[s].items() if k != "zorder"}) for s in order]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(order)), frameon=False)
    return fig


def overview_rates(traj: pd.DataFrame, summary: pd.DataFrame) -> tuple[float | None, float | None]:
    """The two rates the overview figure shows: the calm one (the lowest) and the eroding one (the largest mean
    erosion, if another rate); None where there is no such rate."""
    if traj.empty:
        return None, None
    lrs = sorted(traj.finetune_lr.unique())
    calm = lrs[0]
    if len(lrs) == 1 or summary.empty:
        return calm, None
    means = summary.groupby("finetune_lr").erosion.mean().drop(calm, errors="ignore")
    return calm, (float(means.idxmax()) if len(means) else None)


def overview(traj: pd.DataFrame, layers: pd.DataFrame, summary: pd.DataFrame, arch: str | None = None
             ) -> plt.Figure | None:
    """The phenomenon in one picture: clean accuracy (solid) and follow rate (dotted) over fine-tuning, pattern run
    against control, at the calm and at the eroding rate (:func:`overview_rates`); beside them, at the eroding rate
    (or the highest rate probed), the clean-label probe accuracy per layer of the pretrained network, the control
    and the pattern run at the end, with the pattern run's own clean accuracy as a dotted line. None without results."""
    calm, eroding = overview_rates(traj, summary)
    rates = [lr for lr in (calm, eroding) if lr is not None]
    probe_lr = None
    if not layers.empty:
        probed = sorted(layers.finetune_lr.unique())
        probe_lr = eroding if eroding in probed else probed[-1]
    n = len(rates) + (probe_lr is not None)
    if n == 0:
        return None
    fig, axes = panel_grid(n, panel_height=2.3)
    for ax, lr in zip(axes, rates):
        sub = traj[traj.finetune_lr == lr]
        _curves(ax, sub, "clean_acc")
        _curves(ax, sub, "follow_rate", linestyle=":")
        ax.set_title(f"lr = {lr:g}" + (" (calm)" if lr == calm and eroding is not None else
                                       " (eroding)" if lr == eroding else ""))
        ax.set_ylabel("accuracy / follow rate" if ax is axes[0] else "")
    if probe_lr is not None:
        ax = axes[-1]
        sub = layers[layers.finetune_lr == probe_lr]
        styles = _snapshot_styles(["pretrained", "control", "pattern"])
        styles["control"] = dict(color=PALETTE["control"], **CONDITION_STYLE["control"])
        styles["pattern"] = dict(color=PALETTE["pattern"], **CONDITION_STYLE["pattern"])
        for snap in ("control", "pattern", "pretrained"):
            rows = sub[sub.snapshot == snap].sort_values("depth")
            if len(rows):
                ax.plot(rows.depth, rows.probe_accuracy, markeredgewidth=0.8 if snap == "pretrained" else 0,
                        **styles[snap])
        own = summary[summary.finetune_lr == probe_lr].clean_pattern if not summary.empty else pd.Series([], dtype=float)
        if own.notna().any():
            ax.axhline(float(own.mean()), color=PALETTE["pattern"], lw=1.2, linestyle=":", zorder=2)
            ax.annotate("pattern run's own\nclean accuracy", (0.02, float(own.mean())), xycoords=("axes fraction", "data"),
                        xytext=(0, 4), textcoords="offset points", fontsize=MIN_FONT_PT, color=PALETTE["pattern"],
                        va="bottom")
        ax.set_ylim(-0.02, 1.02)
        _layer_ticks(ax, sub, arch)
        ax.set_xlabel(layer_axis_label(arch))
        ax.set_title(f"probe per layer, lr = {probe_lr:g}")
        ax.grid(alpha=0.3)
    handles = _condition_handles() + [
        matplotlib.lines.Line2D([], [], color="#444444", lw=1.4, label="clean accuracy"),
        matplotlib.lines.Line2D([], [], color="#444444", lw=1.4, linestyle=":", label="follow rate")]
    if probe_lr is not None:
        pre = {k: v for k, v in _snapshot_styles(["pretrained"])["pretrained"].items() if k != "zorder"}
        handles.append(matplotlib.lines.Line2D([], [], label="pretrained (probe)", **pre))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return fig
