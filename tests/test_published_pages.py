"""What chapters 05 and 06 print from the verdict modules, recomputed from the committed cpu-profile results with
computing off and compared with a snapshot of what the book publishes (``published_pages.json``, beside this file):
every verdict's intervals, details, sensitivity line and label, the tables (the map's cells, the timing of peak and
crossing, the options, recovery per seed), the descriptive numbers (R², rank correlations) and the sentences glued
into the Key results box. A change to a rule, a verdict module, the evaluator's outputs or a committed result that
changes a published page fails here, listing what changed.

The snapshot is a regression record, not an expectation worked out by hand (``test_published.py`` pins the
outcomes; ``test_rules.py`` and ``test_verdicts.py`` the rules at their edges). After a change that is meant to alter
a page, rewrite it with ``UPDATE_PUBLISHED=1 pytest tests/test_published_pages.py`` and say why in the commit.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from erosion_utils.experiments import Context
from erosion_utils.experiments import mitigation as mit
from erosion_utils.experiments.mechanism import mechanism_experiment
from erosion_utils.profiles import resolve
from erosion_utils.report import mechanism_verdicts as mv
from erosion_utils.report import mitigation_verdicts as gv
from erosion_utils.report import plan
from erosion_utils.report import verdicts as V

SNAPSHOT = Path(__file__).with_name("published_pages.json")
DIGITS = 6


def _plain(x):
    """A JSON-comparable form: floats rounded to DIGITS (NaN as None), intervals as estimate/lo/hi/n/method and
    their page text, verdicts as every field a page shows, frames as records."""
    if isinstance(x, V.Interval):
        return {"text": x.text(), **{k: _plain(getattr(x, k)) for k in ("estimate", "lo", "hi", "n", "method")}}
    if isinstance(x, V.Verdict):
        return {"outcome": x.outcome, "label": x.label, "fragile": x.fragile, "sensitivity": x.sensitivity,
                "seeds": [int(s) for s in x.seeds], "intervals": _plain(x.intervals), "details": _plain(x.details),
                "describe": V.describe(x)}
    if isinstance(x, pd.DataFrame):
        return {"columns": [str(c) for c in x.columns], "rows": [_plain(list(r)) for r in x.itertuples(index=False)]}
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalars
        x = x.item()
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return None if math.isnan(x) else round(x, DIGITS)
    return str(x)


def published() -> dict:
    """Everything the two chapters derive from the verdict modules at the cpu profile."""
    ctx = Context(compute=False)
    out = {}
    r = resolve("mechanism", "cpu")
    ex, batch = r.extras, r.config.finetune_batch_size
    spike = plan.rule("mechanism.spike").thresholds["spike"]
    sets = mv.settings(mechanism_experiment(r.config, ex, ctx, confirmatory=True))
    cells = mv.cell_table(sets)
    inst, drift = mv.instability_verdict(sets, ex["eroding_lr"], batch), mv.drift_verdict(sets, ex["drift_lrs"], batch)
    noise = mv.noise_steps_verdict(sets, cells)
    runs = mv.regression_runs(sets, cells)
    out["mechanism"] = {
        "cells": cells, "instability": inst, "drift": drift, "noise": noise,
        "follow_fit": mv.noise_steps_verdict(sets, cells, y="follow"),
        "regression_runs": sorted((r["lr"], r["batch"], r["seed"], r["erosion"], r["follow"], r["log2_lr_per_batch"],
                                   r["log2_steps"]) for r in runs),
        "timing": mv.timing(sets, cells), "associations": mv.setting_associations(sets),
        "spikes": {f"{s.lr}/{s.batch}/{s.epochs}/{s.clip}/{s.warmup}": [mv.spike_verdict(s, w) for w in
                                                                       ("pattern", "control")]
                   for s in sets.values()},
        "key_result": mv.key_result(inst, drift, noise, "cpu scale"),
        "arms_text": mv.instability_arms_text(inst, spike), "caveats": mv.instability_caveats(inst, sets, spike),
        "discussion": mv.discussion(inst, drift, noise, cells, mv.timing(sets, cells), "cpu scale", sets, spike),
    }
    r = resolve("mitigation", "cpu")
    ex = r.extras
    transfer = gv.options(mit.transfer_experiment(r.config, ex, ctx))
    posthoc = gv.posthoc_options(mit.transfer_interpolation(r.config, ex, ctx))
    base = next(o for o in transfer if o.kind == "baseline")
    gain, erosion = gv.gain_verdict(base), gv.erosion_verdict(base)
    option_verdicts = {o.label: gv.option_verdict(o, gain) for o in transfer + posthoc}
    table = gv.option_table(transfer + posthoc, option_verdicts)
    answer = gv.practitioner_answer(table)
    rec_rows = mit.transfer_recovery_experiment(r.config, ex, ctx)
    rec = gv.recovery_verdict(rec_rows)
    same = {}
    for name, confirmatory in (("seeds 0-2", False), ("seeds 3-7", True)):
        opts = gv.options(mit.mitigation_experiment(r.config, ex, ctx, confirmatory=confirmatory))
        b = next(o for o in opts if o.kind == "baseline")
        erodes = gv.erosion_verdict(b, "claim1.erosion")
        same[name] = {"baseline": erodes, **{o.label: gv.same_data_option_verdict(o, b, erodes)
                                            for o in opts if o.kind != "baseline"}}
    same_rec = mit.recovery_experiment(r.config, ex, ctx)
    th = plan.rule("same_data.recovery").thresholds
    out["mitigation"] = {
        "options": {o.label: {"kind": o.kind, "seeds": [int(s) for s in o.seeds]} for o in transfer + posthoc},
        "gain": gain, "erosion": erosion, "option_verdicts": option_verdicts, "option_table": table,
        "answer": {k: v for k, v in answer.items() if k != "best_row"},
        "recovery": rec, "recovery_per_seed": gv.recovery_per_seed(rec_rows, plan.rule("transfer.recovery")
                                                                   .thresholds["target"]),
        "key_result": gv.key_result(answer, gain, erosion, rec, "cpu scale"),
        "same_data": same,
        "interpolation": {name: gv.same_data_interpolation_verdict(mit.interpolation_experiment(
            r.config, ex, ctx, confirmatory=c)) for name, c in (("seeds 0-2", False), ("seeds 3-7", True))},
        "same_data_recovery": {str(lr): gv.same_data_recovery_verdict(same_rec, lr) for lr in mit.recovery_lrs(ex)},
        "same_data_recovery_per_seed": gv.same_data_recovery_per_seed(same_rec, th["target"], th["fast"]),
    }
    return _plain(out)


def _differences(want, got, path="") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}/{k}: missing" for k in want if k not in got] + [f"{path}/{k}: new" for k in got if k not in want]
        for k in want:
            if k in got:
                out += _differences(want[k], got[k], f"{path}/{k}")
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in _differences(w, g, f"{path}[{i}]")]
    return [] if want == got else [f"{path}: published {str(want)[:200]!r}, now {str(got)[:200]!r}"]


@pytest.fixture(scope="module")
def now() -> dict:
    return published()


def test_the_pages_print_what_the_book_published(now):
    if os.environ.get("UPDATE_PUBLISHED") == "1":
        SNAPSHOT.write_text(json.dumps(now, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    want = json.loads(SNAPSHOT.read_text())
    diff = _differences(want, json.loads(json.dumps(now)))
    assert not diff, f"{len(diff)} published values changed:\n" + "\n".join(diff[:40])


def test_the_snapshot_holds_the_published_sentences(now):
    """The record is of the book as published: a few of its sentences and numbers, as the pages state them."""
    m, g = now["mechanism"], now["mitigation"]
    assert m["key_result"].startswith("by the plan's rule the loss spike is necessary")
    assert "(cpu scale, 5 seeds)" in m["key_result"]
    assert "about 36-fold" in m["caveats"] and "0.198 [0.176, 0.221]" in m["caveats"]
    assert [round(m["associations"][k], 2) for k in ("erosion_distance", "erosion_peak", "peak_distance")] == \
        [0.85, 0.81, 0.95]
    timing = pd.DataFrame(m["timing"]["rows"], columns=m["timing"]["columns"])
    assert len(timing) == 20 and set(timing.order) == {"peak first"}
    assert timing.peak_resolution.max() <= 0.05 and timing.crossing_resolution.max() <= 0.05  # issue 19: within 5%
    assert g["answer"]["recommended"] == [] and g["answer"]["near_miss"] == "patterned fraction 0.5"
    assert g["gain"]["intervals"]["gain"]["text"] == "0.053 [0.028, 0.079]"
