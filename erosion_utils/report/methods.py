"""The book's methods table: per chapter, the scale (profile) it is built at, the network, the data, the training
lengths, the fine-tuning rates and batch sizes, the seeds and the device its results were computed on. Pure
functions of resolved parameters (:class:`erosion_utils.profiles.Resolved`, passed in) and the provenance of cached
results; nothing here trains or reads files.
"""
from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from .analysis import provenance_frame
from .pages import Html, table
from .words import SCALE_WORDS, arch_name, dataset_name, device_label, fmt_value, join_values

if TYPE_CHECKING:
    from ..profiles import Resolved

PROFILE_ORDER = ("smoke", "cpu", "paper")
# (keys of text columns that the shared table does not format as numbers)
COLUMNS = {"chapter": "chapter", "scale": "scale", "network": "network", "data": "images per class (train / test)",
           "lengths": "epochs (pretrain + fine-tune)", "rates": "fine-tuning lr", "batches": "batch",
           "seed_list": "seeds", "computed_on": "computed on"}


def chapter_profile(book_profile: str, page_profile: str) -> str:
    """The profile a chapter is shown at in a book built at ``page_profile``: the one its parameters file selects
    (``book_profile``), or ``page_profile`` where that is smaller (a smoke-scale book runs every chapter at smoke)."""
    order = {p: i for i, p in enumerate(PROFILE_ORDER)}
    return min(book_profile, page_profile, key=lambda p: order.get(p, len(order)))


def _numbers(extras: dict, suffixes: tuple[str, ...], single: tuple[str, ...] = ()) -> list:
    """Every number in the extras whose key ends with one of ``suffixes`` (lists) or is one of ``single``."""
    out = []
    for key, value in extras.items():
        if key.endswith(suffixes) and isinstance(value, (list, tuple)):
            out += [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        elif key in single and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(value)
    return sorted(set(out))


def _span(values: list, many: int = 4) -> str:
    """``"0.01, 0.1"``; more than ``many`` values: ``"0.003 to 0.2 (5 values)"``."""
    if not values:
        return "—"
    if len(values) <= many:
        return join_values(values, conjunction="and")
    return f"{fmt_value(values[0])} to {fmt_value(values[-1])} ({len(values)} values)"


def _seeds(values: list[int]) -> str:
    """``"0–2"``, ``"0–7, 100, 101"``: runs of three or more consecutive seeds as a range."""
    if not values:
        return "—"
    runs, start = [], values[0]
    for prev, cur in zip(values, values[1:] + [None]):
        if cur != prev + 1 if cur is not None else True:
            runs.append((start, prev))
            start = cur
    return ", ".join(f"{a}–{b}" if b - a >= 2 else ", ".join(str(v) for v in range(a, b + 1)) for a, b in runs)


def _device(entries: Iterable[dict] | None) -> str:
    entries = [e for e in entries or [] if e]
    if not entries:
        return "not computed"
    devices = sorted({device_label(d) for d in provenance_frame(entries).device})
    words = []
    for d in devices:  # "cpu (x86_64, 2 threads)" -> "CPU, 2 threads"
        threads = re.search(r"(\d+ threads?)", d)
        words.append(("CPU" + (f", {threads.group(1)}" if threads else "")) if d.lower().startswith("cpu") else d)
    return "; ".join(dict.fromkeys(words))


def methods_row(chapter: str, resolved: "Resolved", entries: Iterable[dict] | None = None) -> dict:
    """One chapter's row: what its resolved parameters run, and where its results (``entries``: cached entries
    with provenance) were computed."""
    cfg, extras = resolved.config, resolved.extras
    rates = _numbers(extras, ("lrs",), ("eroding_lr",)) or [cfg.finetune_lr]
    batches = sorted(set(_numbers(extras, ("batch_sizes",), ("confirm_wd_batch",))) | {cfg.finetune_batch_size})
    seeds = [int(s) for s in _numbers(extras, ("seeds",))] or [int(cfg.seed)]
    data = ("all" if cfg.train_per_class is None else
            f"{cfg.train_per_class} / {cfg.test_per_class if cfg.test_per_class is not None else 'all'}")
    return {"chapter": chapter, "scale": SCALE_WORDS.get(resolved.profile, resolved.profile).removesuffix(" scale"),
            "network": arch_name(cfg.arch, cfg.width), "data": f"{dataset_name(cfg.dataset)}: {data}",
            "lengths": f"{fmt_value(cfg.pretrain_epochs)} + {fmt_value(cfg.finetune_epochs)}",
            "rates": _span(rates), "batches": _span(batches), "seed_list": _seeds(sorted(set(seeds))),
            "computed_on": _device(entries)}


def methods_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per chapter (:func:`methods_row`)."""
    return pd.DataFrame(rows, columns=list(COLUMNS))


def methods_table(rows: list[dict], caption: str = "") -> Html:
    """The methods table as HTML (pasted into the introduction): one column per chapter, one row per quantity, so
    that it fits the text column; ``caption`` below it."""
    frame = methods_frame(rows)
    wide = pd.DataFrame({"": [COLUMNS[c] for c in COLUMNS if c != "chapter"],
                         **{r["chapter"]: [r[c] for c in COLUMNS if c != "chapter"] for r in rows}})
    shown = table(wide, {c: c for c in wide.columns}) if len(frame) else table(frame, COLUMNS)
    note = f'<p class="erosion-table-note">{html.escape(caption)}</p>' if caption else ""
    return Html(shown.body + note, shown.text)
