"""Committed results are precious: for every committed result file, the key that the current code computes for its
stored configuration must equal its file name (so a new parameter can never orphan an existing result)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from erosion_utils import experiments  # noqa: F401  (chapter modules register their key rules on import)
from erosion_utils.cache import cache_key
from erosion_utils.experiments.core import current_key_params

RESULTS = Path(__file__).resolve().parents[1] / "results"
COMMITTED = sorted(p for p in RESULTS.glob("*/*.json") if p.parent.name != "runs")


def test_there_are_committed_results():
    assert len(COMMITTED) >= 98


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_result_still_hits_the_cache(path):
    entry = json.loads(path.read_text())
    assert entry["key"] == path.stem
    assert cache_key(entry["name"], current_key_params(entry["name"], entry["params"])) == path.stem
