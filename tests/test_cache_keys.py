"""Committed results are precious: for every committed result file, the key that the current code computes for its
stored configuration must equal its file name (so a new parameter can never orphan an existing result). One test
reads every file and lists every mismatch at once (issue 25 item 5); a key rule that forgets a parameter that tells
two runs apart (``patterned``: the pattern run from its control) is caught."""
from __future__ import annotations

import json
from pathlib import Path

from erosion_utils import experiments  # noqa: F401  (chapter modules register their key rules on import)
from erosion_utils.cache import cache_key
from erosion_utils.experiments import core
from erosion_utils.experiments.core import current_key_params, finetune_params, split_config

RESULTS = Path(__file__).resolve().parents[1] / "results"
COMMITTED = sorted(p for p in RESULTS.glob("*/*.json") if p.parent.name != "runs")


def key_mismatches(paths: list[Path]) -> list[str]:
    """One line per result file whose name is not the key the current code computes for it."""
    out = []
    for path in paths:
        where = f"{path.parent.name}/{path.name}"
        try:
            entry = json.loads(path.read_text())
            stored = entry["key"]
            key = cache_key(entry["name"], current_key_params(entry["name"], entry["params"]))
        except (ValueError, KeyError, TypeError) as err:
            out.append(f"{where}: not a result entry the code can key ({type(err).__name__}: {err})")
            continue
        if stored != path.stem:
            out.append(f"{where}: its entry says key {stored}")
        if key != path.stem:
            out.append(f"{where}: the current code keys this configuration {key}")
    return out


def test_every_committed_result_still_hits_the_cache():
    assert len(COMMITTED) >= 98
    assert {p.parent.name for p in COMMITTED} >= {"finetune", "pretrain", "interpolation", "recovery",
                                                  "representations"}
    bad = key_mismatches(COMMITTED)
    assert not bad, f"{len(bad)} of {len(COMMITTED)} committed results no longer hit the cache:\n" + "\n".join(bad)


def test_a_key_rule_that_drops_patterned_is_caught(monkeypatch):
    finetune = [p for p in COMMITTED if p.parent.name == "finetune"]
    rule = core.KEY_PARAMS["finetune"]
    monkeypatch.setitem(core.KEY_PARAMS, "finetune",
                        lambda params: {k: v for k, v in rule(params).items() if k != "patterned"})
    bad = key_mismatches(finetune)
    assert len(bad) == len(finetune) and all("the current code keys" in line for line in bad)


def test_pattern_run_and_control_never_share_a_key():
    entries = [json.loads(p.read_text()) for p in COMMITTED if p.parent.name == "finetune"]
    assert {e["params"]["patterned"] for e in entries} == {True, False}
    for entry in entries:
        cfg, extra = split_config(entry["params"])
        assert extra == {"patterned": entry["params"]["patterned"]}, extra
        own = cache_key("finetune", finetune_params(cfg, entry["params"]["patterned"]))
        other = cache_key("finetune", finetune_params(cfg, not entry["params"]["patterned"]))
        assert own == entry["key"] and other != own


def test_the_seeds_outside_the_cache_key_keep_the_values_the_committed_results_used():
    """These seeds shape results but enter no cache key (they are the same for every configuration): the monitor
    images and the pretraining subset. A new value would leave every committed result under its old key while the
    code drew other images, so changing one means first adding it to the key (only where it differs)."""
    assert core.MONITOR_SEED == 54321 and core.PRETRAIN_SUBSET_SEED == 12345
