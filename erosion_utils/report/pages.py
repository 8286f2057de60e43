"""What the book's notebooks share to show results: tables that fit the page, folds for long tables, figures with
captions, provenance, and the "missing results" table (the wording of numbers is in :mod:`.words`).

Every chapter, present and future, uses these so that a rerun with any parameters gives a page that is still true:
sentences loop over whatever was run, one seed says "no interval", and a result that is not cached is listed as
missing instead of crashing the page.
"""
from __future__ import annotations

import html
import math
import time
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from ..cache import provenance as make_provenance
from .analysis import provenance_frame
from .words import DIGITS, MISSING, ci_phrase, fmt, fmt_value, join_values, plural, rates_phrase

if TYPE_CHECKING:
    from ..profiles import Resolved

PROFILE_NOTES = {
    "smoke": "the **smoke** profile (a few dozen images and a tiny network, seconds on a CPU: it tests the code "
             "path, and its numbers mean nothing)",
    "cpu": "the **cpu** profile (a CIFAR-10 subset and narrow networks, minutes on a CPU)",
    "paper": "the **paper** profile (full CIFAR-10 and full-width networks, computed on a GPU)",
}
# columns holding parameters: shown exactly as given (0.0005, not 0.001), never rounded
EXACT_COLUMNS = ("finetune_lr", "finetune_weight_decay", "fraction", "seed", "pattern_size", "width", "lr")
# counts (stored as floats when a value is missing): shown without decimals
INTEGER_COLUMNS = ("steps_to_erosion", "total_steps", "seeds", "depth", "rank_control", "rank_pattern", "computed",
                   "eroded", "missing_settings", "step", "epochs")

# human names of the columns the chapters show; anything else is shown with its underscores as spaces
COLUMN_NAMES = {
    "finetune_lr": "fine-tuning lr", "seed": "seed", "seeds": "seeds", "setting": "setting", "factor": "factor",
    "missing": "missing", "clean_start": "clean acc. (start)", "clean_pattern": "clean acc. (pattern run)",
    "clean_control": "clean acc. (control)", "erosion": "erosion", "drop_from_start": "drop from start",
    "matched_start": "matched acc. (start)", "matched_pattern": "matched acc. (pattern run)",
    "mismatched_pattern": "mismatched acc. (pattern run)", "follow_start": "follow rate (start)",
    "follow_pattern": "follow rate (pattern run)", "follow_control": "follow rate (control)",
    "min_clean_pattern": "lowest clean acc. (pattern run)", "min_clean_control": "lowest clean acc. (control)",
    "steps_to_erosion": "steps to half the drop", "total_steps": "steps", "wall_time_s": "wall time (s)",
    "depth": "depth", "relative_depth": "relative depth", "layer": "layer",
    "probe_accuracy_control": "probe acc. (control)", "probe_accuracy_pattern": "probe acc. (pattern run)",
    "probe_drop": "probe-acc. loss", "rank_control": "rank (control)", "rank_pattern": "rank (pattern run)",
    "rank_ratio": "rank ratio (pattern / control)", "quantity": "quantity", "mean": "mean",
    "ci_low": "95% CI low", "ci_high": "95% CI high", "holds": "holds", "erosion_mean": "mean erosion",
    "follow_mean": "mean follow rate", "computed": "computed settings", "eroded": "eroding settings",
    "eroded_settings": "eroding settings (list)", "max_probe_drop": "largest probe-acc. loss",
    "max_drop_layer": "at layer", "deep_mean_drop": "mean loss, deeper half",
    "shallow_mean_drop": "mean loss, shallower half", "last_rank_ratio": "rank ratio, last layer",
    "result": "result", "key": "cache key", "git_commit": "git commit", "dirty": "uncommitted changes",
    "device": "device", "torch": "torch", "utc_time": "computed (UTC)", "parameter": "parameter", "value": "value",
    "arch": "architecture", "dataset": "dataset", "pattern": "pattern", "pattern_size": "pattern size k",
    "fraction": "patched fraction p", "finetune_weight_decay": "fine-tuning weight decay", "label": "setting (full)",
}


def profile_note(profile: str, scope: str = "Every number and figure on this page") -> str:
    return f"{scope} was produced with {PROFILE_NOTES[profile]}."


# ------------------------------------------------------------------------------------------------------- tables

def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return fmt(value, digits) if math.isfinite(value) else MISSING
    if isinstance(value, (list, tuple)):
        return "; ".join(_cell(v, digits) for v in value) if value else MISSING
    try:
        if pd.isna(value):
            return MISSING
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item(), digits)
    return str(value)


def human_column(name: str) -> str:
    return COLUMN_NAMES.get(name, str(name).replace("_", " "))


def table_frame(frame: pd.DataFrame, columns: Iterable[str] | dict | None = None, digits: int = DIGITS,
                index: bool = False) -> pd.DataFrame:
    """The frame as a table shows it: only ``columns`` (a list, or a dict of column -> heading), every value as
    text (``digits`` decimals, "—" for a missing value), human column names, the index dropped unless ``index``."""
    frame = frame.reset_index() if index else frame
    if columns is None:
        names = {c: human_column(c) for c in frame.columns}
    elif isinstance(columns, dict):
        names = {c: h for c, h in columns.items() if c in frame.columns}
    else:
        names = {c: human_column(c) for c in columns if c in frame.columns}
    shown = frame[list(names)].copy()
    for c in shown.columns:
        if c in INTEGER_COLUMNS:
            shown[c] = [MISSING if v is None or pd.isna(v) else str(int(round(float(v)))) for v in shown[c]]
            continue
        exact = c in EXACT_COLUMNS
        shown[c] = [fmt_value(v.item() if hasattr(v, "item") else v) if exact and not pd.isna(v) else _cell(v, digits)
                    for v in shown[c]]
    return shown.rename(columns=names).reset_index(drop=True)


class Html:
    """Raw HTML for a notebook output (``text/html``, with a short ``text/plain`` for other readers)."""

    def __init__(self, body: str, text: str = ""):
        self.body, self.text = body, text

    def _repr_html_(self) -> str:
        return self.body

    def __repr__(self) -> str:
        return self.text or "(HTML output)"


def table(frame: pd.DataFrame, columns: Iterable[str] | dict | None = None, digits: int = DIGITS,
          caption: str | None = None, index: bool = False) -> Html:
    """A table that fits the page: ``digits`` decimals, human column names, no pandas index; wider than the text,
    it scrolls sideways inside its own box."""
    shown = table_frame(frame, columns, digits, index)
    body = shown.to_html(index=False, border=0, escape=True, classes=["table", "erosion-table"])
    if caption:
        body = body.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)
    return Html(f'<div class="erosion-table-scroll" style="overflow-x:auto;max-width:100%">{body}</div>',
                f"table: {len(shown)} rows x {len(shown.columns)} columns")


def fold(content: Any, summary: str) -> Html:
    """``content`` (a table, a DataFrame or HTML) behind a toggle labelled ``summary``, closed by default."""
    if isinstance(content, pd.DataFrame):
        content = table(content)
    inner = content._repr_html_() if hasattr(content, "_repr_html_") else html.escape(str(content))
    return Html(f'<details class="erosion-fold"><summary>{html.escape(summary)}</summary>{inner}</details>',
                f"(folded) {summary}")


def parameters_frame(resolved: "Resolved") -> pd.DataFrame:
    """All parameters of the run, as shown beside its figures."""
    return pd.DataFrame([{"parameter": r["parameter"], "value": fmt_value(r["value"]) if not isinstance(r["value"], list)
                          else "[" + ", ".join(fmt_value(v) for v in r["value"]) + "]"} for r in resolved.table()])


def parameters_table(resolved: "Resolved") -> Html:
    """The run's parameters, folded."""
    frame = parameters_frame(resolved)
    return fold(table(frame), f"Parameters of this page ({resolved.profile} profile, {plural(len(frame), 'parameter')})")


def provenance(entries: list[dict]) -> pd.DataFrame:
    """Provenance of the cached results a page used (git commit, device, torch, wall time, seed)."""
    return provenance_frame(entries)


def provenance_table(entries: list[dict], what: str = "the cached results this page uses") -> Html:
    """The provenance of every cached result used, folded (a note when there is none)."""
    if not entries:
        return Html(f"<p>No cached results: nothing to show for {html.escape(what)}.</p>", "no cached results")
    frame = provenance_frame(entries)
    cols = ["result", "key", "git_commit", "dirty", "device", "torch", "wall_time_s", "seed", "utc_time"]
    return fold(table(frame, cols, digits=1), f"Provenance of {what} ({plural(len(frame), 'result')})")


# ------------------------------------------------------------------------------------------------------ figures

def glue(name: str, value) -> None:
    """myst-nb ``glue`` without display; numpy scalars become Python numbers so format specs apply."""
    import numpy as np
    from myst_nb import glue as myst_glue

    if isinstance(value, np.generic):
        value = value.item()
    figure = getattr(value, "figure", value)  # a seaborn grid carries its figure
    myst_glue(name, figure, display=False)
    if hasattr(figure, "savefig"):
        import matplotlib.pyplot as plt

        plt.close(figure)  # shown where the text pastes it, not again at the end of the cell


def figure_markdown(key: str, caption: str, name: str | None = None) -> str:
    """MyST for a numbered figure pasting the glued figure ``key`` with ``caption`` (MyST allowed)."""
    label = f":name: {name}\n" if name else ""
    return f"```{{glue:figure}} {key}\n{label}\n{caption}\n```"


def figure(key: str, fig, caption: str, name: str | None = None):
    """Glue ``fig`` as ``key`` and show it here as a numbered figure with ``caption``; returns the Markdown output
    (display it, or let it be the cell's last value). With ``fig`` None (no results), nothing is shown."""
    from IPython.display import Markdown

    if fig is None:
        return Markdown("")
    glue(key, fig)
    return Markdown(figure_markdown(key, caption, name))


# -------------------------------------------------------------------------------------------- missing results

def missing_frame(missing: dict[str, str | None]) -> pd.DataFrame:
    """One row per missing result: what it is, and why it is missing (``missing``: what -> reason or None)."""
    return pd.DataFrame([{"result": what, "why": why} for what, why in missing.items() if why],
                        columns=["result", "why"])


def missing_table(missing: dict[str, str | None], profile: str, shown_rows: int = 3) -> Html:
    """The "missing results" note a page shows in place of what it could not load, with the list of what is missing
    (folded beyond ``shown_rows`` rows); empty when nothing is missing. It says how to compute them."""
    frame = missing_frame(missing)
    if frame.empty:
        return Html("", "nothing missing")
    how = ("Results of the paper profile are computed only on a GPU (<code>python -m erosion_utils paper</code>); on a "
           "CPU, rerun the chapter with <code>--profile cpu</code> or <code>--profile smoke</code>."
           if profile == "paper" else
           f"Rerun the chapter with <code>python -m erosion_utils run &lt;chapter&gt; --profile {html.escape(profile)}"
           "</code> to compute them.")
    n = len(frame)
    note = (f'<p class="erosion-missing"><strong>Missing results.</strong> {plural(n, "result")} this page needs '
            f"{'is' if n == 1 else 'are'} not cached, so the numbers and figures that depend on "
            f"{'it' if n == 1 else 'them'} are not shown. {how}</p>")
    listed = table(frame, {"result": "missing result", "why": "why"})
    body = listed._repr_html_() if n <= shown_rows else fold(listed, f"The {n} missing results")._repr_html_()
    return Html(note + body, f"missing results: {', '.join(frame.result)}")


def pending_note(total: int, missing: int, word: str, profile: str, what: str = "") -> str:
    """The sentence a chapter shown at a smaller profile adds when its paper-profile results are not all computed:
    how many of its ``total`` paper-profile ``word``\ s (``what``: what they are) are still missing."""
    if not missing or profile == "paper":
        return ""
    scope = f"{plural(total, word)}" + (f": {what}" if what else "")
    return (f" The paper-profile runs of this chapter ({scope}) are registered with `python -m erosion_utils paper`; "
            f"{missing} of them {'is' if missing == 1 else 'are'} not computed yet (a GPU run), so this page shows the "
            f"{profile} profile.")


def missing_sentence(what: str) -> str:
    """Prose in place of a result that is missing."""
    return f"The {what} could not be shown: its results are missing (see the table of missing results)."


# ------------------------------------------------------------------------------------------------------ compute

def compute_note(entries: list[dict]) -> str:
    """One line: how many cached results a page used, their total compute time and the devices they ran on."""
    if not entries:
        return "It uses no cached results."
    frame = provenance_frame(entries)
    devices = join_values(sorted(frame.device.unique()))
    return (f"It uses {plural(len(frame), 'cached result')}, computed in {frame.wall_time_s.sum():.0f} s in total "
            f"on {devices}.")


def execution_provenance(seed: int, started: float) -> pd.DataFrame:
    """Provenance of a page computed while it executes (no cached result): commit, device, torch, wall time."""
    prov = make_provenance(seed, time.perf_counter() - started, "cpu")
    return pd.DataFrame([{"parameter": k, "value": fmt_value(v)} for k, v in prov.items()])
