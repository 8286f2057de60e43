"""What the book's notebooks share to show results: tables that fit the page, folds for long tables, figures with
captions, provenance, and the "missing results" table (the wording of numbers is in :mod:`.words`).

Every chapter, present and future, uses these so that a rerun with any parameters gives a page that is still true:
sentences loop over whatever was run, one seed says "no interval", and a result that is not cached is listed as
missing instead of crashing the page.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
import time
from typing import TYPE_CHECKING, Any, Iterable

import matplotlib.pyplot as plt
import pandas as pd
import yaml

from ..cache import provenance as make_provenance
from .analysis import provenance_frame
from .words import (DIGITS, MISSING, SCALE_WORDS, ci_phrase, device_label, device_words, duration, fmt, fmt_value,
                    join_values, plural, rates_phrase)

if TYPE_CHECKING:
    from ..profiles import Resolved

PROFILE_NOTES = {
    "smoke": "the **smoke** scale (profile `smoke`: a few dozen images and a tiny network; it tests the code path, "
             "and its numbers mean nothing)",
    "cpu": "the **cpu** scale (profile `cpu`: a class-balanced subset of the data and narrow networks, minutes on a "
           "CPU; it shows the phenomenon, but its numbers are not comparable with the paper's)",
    "paper": "the **paper** scale (profile `paper`: the full datasets and full-width networks, the scale meant for "
             "comparison with the paper)",
}
# columns holding parameters: shown exactly as given (0.0005, not 0.001), never rounded
EXACT_COLUMNS = ("finetune_lr", "finetune_weight_decay", "fraction", "seed", "pattern_size", "width", "lr",
                 "weight_decay", "batch_size", "warmup_epochs")
# lengths that need not be whole: three significant digits (1.48 epochs, not 1)
SIGNIFICANT_COLUMNS = ("epochs",)
# counts (stored as floats when a value is missing): shown without decimals
INTEGER_COLUMNS = ("steps_to_erosion", "total_steps", "seeds", "depth", "rank_control", "rank_pattern", "computed",
                   "eroded", "missing_settings", "step")

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
    "eroded_settings": "eroding settings (list)", "max_probe_drop": "largest loss",
    "max_drop_layer": "at layer", "deepest_drop": "loss, deepest layer", "deep_mean_drop": "mean loss, deep half",
    "shallow_mean_drop": "mean loss, shallow half", "last_rank_ratio": "rank ratio, last layer",
    "half_drop": "half the drop, between steps",
    "result": "result", "key": "cache key", "git_commit": "git commit", "dirty": "uncommitted changes",
    "device": "device", "torch": "torch", "utc_time": "computed (UTC)", "parameter": "parameter", "value": "value",
    "arch": "architecture", "dataset": "dataset", "pattern": "pattern", "pattern_size": "pattern size k",
    "fraction": "patched fraction p", "finetune_weight_decay": "fine-tuning weight decay", "label": "setting (full)",
}


def profile_note(profile: str, scope: str = "Every number and figure on this page") -> str:
    return f"{scope} was produced at {PROFILE_NOTES[profile]}."


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
        if c in SIGNIFICANT_COLUMNS:
            shown[c] = [MISSING if v is None or pd.isna(v) else f"{float(v):.3g}" for v in shown[c]]
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
          caption: str | None = None, index: bool = False, names_column: bool = False) -> Html:
    """A table that fits the page: ``digits`` decimals, human column names, no pandas index; wider than the text,
    it scrolls sideways inside its own box. ``names_column``: the first column holds short names (a layer, a
    setting) that are kept on one line."""
    shown = table_frame(frame, columns, digits, index)
    classes = ["table", "erosion-table"] + (["erosion-names"] if names_column else [])
    body = shown.to_html(index=False, border=0, escape=True, classes=classes)
    if caption:
        body = body.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)
    return Html(f'<div class="erosion-table-scroll" style="overflow-x:auto;max-width:100%">{body}</div>',
                f"table: {len(shown)} rows x {len(shown.columns)} columns")


def compact_ci(frame: pd.DataFrame, low: str = "ci_low", high: str = "ci_high", into: str = "95% CI",
               digits: int = DIGITS) -> pd.DataFrame:
    """``frame`` with its two interval columns merged into one text column, "0.610 to 0.657" ("—" without an
    interval), placed where the lower end was: one narrow column instead of two."""
    if low not in frame or high not in frame:
        return frame
    text = [MISSING if pd.isna(lo) or pd.isna(hi) else f"{fmt(lo, digits)} to {fmt(hi, digits)}"
            for lo, hi in zip(frame[low], frame[high])]
    out = frame.copy()
    out.insert(list(frame.columns).index(low), into, text)
    return out.drop(columns=[low, high])


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
    # five columns, so that the table fits the text column: what, where, how long, which seed, and the record
    frame["computed_on"] = [f"{device_label(d)}, torch {t}" for d, t in zip(frame.device, frame.torch)]
    frame["record"] = [f"key {k} · commit {c}{' (uncommitted changes)' if dirty else ''} · {u}"
                       for k, c, dirty, u in zip(frame.key, frame.git_commit, frame.dirty, frame.utc_time)]
    cols = {"result": "result", "computed_on": "computed on", "wall_time_s": "wall time (s)", "seed": "seed",
            "record": "cache key, code commit, time (UTC)"}
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
    how = ("Results at the paper scale are computed on a GPU; the commands that compute them are in the box "
           "<em>Rerun this chapter</em> at the end of this page." if profile == "paper" else
           "The commands that compute them are in the box <em>Rerun this chapter</em> at the end of this page.")
    n = len(frame)
    note = (f'<p class="erosion-missing"><strong>Missing results.</strong> {plural(n, "result")} this page needs '
            f"{'is' if n == 1 else 'are'} not cached, so the numbers and figures that depend on "
            f"{'it' if n == 1 else 'them'} are not shown. {how}</p>")
    listed = table(frame, {"result": "missing result", "why": "why"})
    body = listed._repr_html_() if n <= shown_rows else fold(listed, f"The {n} missing results")._repr_html_()
    return Html(note + body, f"missing results: {', '.join(frame.result)}")


def pending_note(total: int, missing: int, word: str, profile: str, what: str = "") -> str:
    """The sentence a chapter shown at a smaller profile adds when its paper-profile results are not all computed:
    how many of its ``total`` paper-profile ``word``-s (``what``: what they are) are still missing."""
    if not missing or profile == "paper":
        return ""
    scope = f"{plural(total, word)}" + (f": {what}" if what else "")
    return (f" The paper-scale runs of this chapter ({scope}) are registered, but {missing} of them "
            f"{'is' if missing == 1 else 'are'} not computed yet (they need a GPU), so this page shows the "
            f"{SCALE_WORDS.get(profile, profile)}.")


def missing_sentence(what: str) -> str:
    """Prose in place of a result that is missing."""
    return f"The {what} could not be shown: its results are missing (see the table of missing results)."


# ------------------------------------------------------------------------------------------------------ compute

def compute_note(entries: list[dict]) -> str:
    """One sentence: how many cached results a page used, their total compute time and the devices they ran on."""
    if not entries:
        return "It uses no cached results."
    frame = provenance_frame(entries)
    devices = join_values(sorted({device_words(d) for d in frame.device}), formatter=str)
    return (f"Its {plural(len(frame), 'result')} took {duration(frame.wall_time_s.sum())} of computing in all, on "
            f"{devices}.")


def execution_provenance(seed: int, started: float) -> pd.DataFrame:
    """Provenance of a page computed while it executes (no cached result): commit, device, torch, wall time."""
    prov = make_provenance(seed, time.perf_counter() - started, "cpu")
    return pd.DataFrame([{"parameter": k, "value": fmt_value(v)} for k, v in prov.items()])


# ------------------------------------------------------------------------------------------------------- rerun

def given_parameters(namespace: dict, names: Iterable[str]) -> dict:
    """The parameters a notebook was given explicitly (not None), among ``names``, in that order: what a command
    must pass to rerun it as shown (the rest take the profile's values)."""
    return {k: namespace[k] for k in names if namespace.get(k) is not None}


def _yaml_flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _shell_value(value) -> str:
    text = _yaml_flow(value)
    return f"'{text}'" if any(ch in text for ch in " [],{}:'\"*?$&;|<>()") else text


def _wrap(command: str, width: int = 64) -> str:
    """A shell command broken before its options (`` \\`` continuations) when it is longer than ``width``."""
    if len(command) <= width:
        return command
    parts = re.split(r" (?=-p |-y |-o |book/executed/)", command)
    return " \\\n    ".join(parts)


def rerun_commands(notebook: str, profile: str, params: dict | None = None) -> tuple[str, str]:
    """The two ways to rerun ``notebook`` with ``profile`` and the explicit ``params``: the project's command, and
    jupytext + papermill (the notebook is a jupytext ``.py`` file)."""
    params = dict(params or {})
    run = f"python -m erosion_utils run {notebook} --profile {profile}"
    run += "".join(f" -p {k}={_shell_value(v)}" for k, v in params.items())
    given = "{" + ", ".join(f"{k}: {_yaml_flow(v)}" for k, v in params.items()) + "}"
    papermill = (_wrap(f"jupytext --to ipynb notebooks/{notebook}.py -o {notebook}.ipynb") + "\n"
                 + _wrap(f"papermill {notebook}.ipynb book/executed/{notebook}.ipynb -p profile {profile}"
                         + (f" -y '{given}'" if params else "")) + "\njupyter-book build .")
    return _wrap(run), papermill


def _pre(command: str) -> str:
    """A shell command as the book shows code (a copy button is added by the theme)."""
    return f'<div class="highlight-bash notranslate"><div class="highlight"><pre>{html.escape(command)}</pre></div></div>'


def _compute_time(entries: list[dict] | None) -> tuple[float, str] | None:
    if not entries:
        return None
    frame = provenance_frame(entries)
    return float(frame.wall_time_s.sum()), join_values(sorted({device_words(d) for d in frame.device}), formatter=str)


def rerun_box(notebook: str, profile: str, params: dict | None = None, cpu_entries: list[dict] | None = None,
              cpu_missing: int = 0, entries: list[dict] | None = None, trains: bool = True, note: str = "") -> Html:
    """The box "Rerun this chapter": the ``run`` command and the papermill commands for ``profile`` and the explicit
    ``params`` shown on the page, and how long the chapter takes at the cpu scale, summed from the provenance of its
    cpu-scale results (``cpu_entries``; ``cpu_missing`` of them not cached). ``entries``: the page's own results, for
    its time at a scale other than cpu; ``trains`` False for a chapter that only reads other chapters' results
    (``note`` says which)."""
    run, papermill = rerun_commands(notebook, profile, params)
    times = []
    cpu = _compute_time(cpu_entries)
    n_cpu = len(provenance_frame(cpu_entries)) if cpu_entries else 0
    pending = (f" ({cpu_missing} more {'is' if cpu_missing == 1 else 'are'} not cached and would add to this)"
               if cpu_missing else "")
    if not trains:
        times.append("It trains nothing itself" + (f": {note}" if note else "."))
        if cpu:
            times.append(f"At the cpu scale, the {plural(n_cpu, 'result')} it reads took {duration(cpu[0])} of "
                         f"computing in all, on {cpu[1]} (the wall times in their provenance){pending}.")
    else:
        if cpu:
            times.append(f"At the cpu scale, its {plural(n_cpu, 'result')} took {duration(cpu[0])} of computing in "
                         f"all, on {cpu[1]} (the wall times recorded in their provenance){pending}.")
        else:
            times.append("No cpu-scale result of this chapter is cached, so its time at the cpu scale is not known.")
        own = _compute_time(entries) if profile != "cpu" else None
        if own:
            times.append(f"At the {SCALE_WORDS.get(profile, profile)} shown here, its results took {duration(own[0])} "
                         f"on {own[1]}.")
        if note:
            times.append(note)
    if profile == "paper" and (trains or cpu_entries is not None):
        times.append("The paper scale needs a GPU: on a machine without one, results that are not cached are "
                     "reported missing, never trained.")
    times.append("Cached results are read, not recomputed; either command rebuilds this page.")
    given = ("with the parameters shown on this page" if params else "as shown") + f" ({SCALE_WORDS.get(profile, profile)})"
    body = (f'<div class="admonition erosion-rerun"><p class="admonition-title">Rerun this chapter</p>'
            f"<p>{html.escape(' '.join(times))}</p>"
            f"<p>From the repository, {html.escape(given)}:</p>{_pre(run)}"
            f"<p>or with jupytext and papermill:</p>{_pre(papermill)}"
            + ("" if profile == "cpu" else
               f"<p>At the cpu scale:</p>{_pre(rerun_commands(notebook, 'cpu', params)[0])}")
            + "</div>")
    return Html(body, f"Rerun this chapter: {run}")


# ------------------------------------------------------------------------------------------ figures as HTML

def svg_data_uri(fig) -> str:
    """``fig`` as an SVG data URI (tight, as notebooks show figures), for HTML pasted into another page."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.1)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def html_figure(fig, caption: str, alt: str) -> Html:
    """A figure with its caption as HTML (an SVG image at its natural size), for pages that paste it from another
    notebook (myst-nb pastes HTML across documents, not figures); ``fig`` None gives a "missing" note."""
    if fig is None:
        return Html(f'<p class="erosion-missing"><strong>Missing.</strong> {html.escape(caption)}</p>',
                    "missing figure")
    uri = svg_data_uri(fig)
    plt.close(fig)
    return Html(f'<figure class="erosion-figure"><img src="{uri}" alt="{html.escape(alt)}">'
                f"<figcaption><p>{caption}</p></figcaption></figure>", f"figure: {alt}")
