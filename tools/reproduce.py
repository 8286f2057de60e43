"""Recompute committed fast-path fine-tuning results and compare them with the committed files, to the bit: the check
that a change meant to be exact (a faster evaluation, a refactor) still reproduces what the fast path computed before.

    .venv/bin/python tools/reproduce.py [--sample N] [--seed S]

It draws ``N`` committed ``results/finetune`` entries computed on the fast path (``fast_path: true``) whose pretrained
network is in the local checkpoint cache (``.cache/checkpoints``, not committed: it holds the networks the sweeps on
this machine trained), at least one with a dense monitor and one without where there are such entries; recomputes
each in a temporary cache (the committed files are only read) and says whether the result equals the committed one
exactly (the JSON of every record). It exits with 1 when one differs, with 2 when there is nothing to check.

Exact agreement is expected only on the machine kind and thread count that computed the results (other CPUs run other
kernels); the entries record ``device`` and ``torch`` in their provenance. Not part of ``make test`` (about 10 s a
run on one core).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("EROSION_PROGRESS", "0")

from erosion_utils.cache import DEFAULT_CHECKPOINTS, CheckpointCache, ResultCache  # noqa: E402
from erosion_utils.experiments.core import Context, finetune_run, split_config  # noqa: E402


def candidates(results: Path, checkpoints: Path) -> list[tuple[Path, dict]]:
    """Committed fast-path fine-tuning entries (plain runs: no experiment-specific fields) with a local pretrained
    checkpoint."""
    committed = ResultCache(results)
    found = []
    for path in sorted((results / "finetune").glob("*.json")):
        entry = json.loads(path.read_text())
        cfg, extra = split_config(entry["params"])
        if not cfg.fast_path or set(extra) != {"patterned"}:
            continue
        if CheckpointCache(checkpoints).path("pretrain", cfg.pretrain_params()).exists():
            found.append((path, entry))
    assert all(committed.path("finetune", e["params"]) == p for p, e in found), "a committed file is misnamed"
    return found


def pick(found: list[tuple[Path, dict]], n: int, seed: int) -> list[tuple[Path, dict]]:
    """``n`` entries drawn with ``seed``: one with a monitor and one without first, where there are such."""
    order = found[:]
    random.Random(seed).shuffle(order)
    monitored = [c for c in order if c[1]["params"].get("monitor_per_class")]
    plain = [c for c in order if not c[1]["params"].get("monitor_per_class")]
    first = monitored[:1] + plain[:1]
    return (first + [c for c in order if c not in first])[:n]


def reproduce(path: Path, entry: dict, checkpoints: Path) -> tuple[bool, float]:
    """Recompute one entry in a temporary cache; whether it equals the committed result exactly, and the seconds."""
    cfg, extra = split_config(entry["params"])
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "checkpoints"
        ck.mkdir()
        source = CheckpointCache(checkpoints).path("pretrain", cfg.pretrain_params())
        shutil.copy(source, ck / source.name)
        ctx = Context(device="cpu", results=ResultCache(Path(tmp) / "results"), checkpoints=CheckpointCache(ck))
        start = time.perf_counter()
        got = finetune_run(cfg, extra["patterned"], ctx)["result"]
        seconds = time.perf_counter() - start
    return json.loads(json.dumps(got)) == entry["result"], seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=int, default=6, help="how many committed entries to recompute (default 6)")
    p.add_argument("--seed", type=int, default=0, help="draws the entries (default 0)")
    args = p.parse_args(argv)
    if args.sample < 1:
        p.error(f"--sample={args.sample} must be at least 1")
    found = candidates(REPO / "results", Path(DEFAULT_CHECKPOINTS))
    if not found:
        print(f"nothing to check: no committed fast-path entry has its pretrained network in {DEFAULT_CHECKPOINTS}")
        return 2
    chosen = pick(found, args.sample, args.seed)
    same = 0
    for path, entry in chosen:
        ok, seconds = reproduce(path, entry, Path(DEFAULT_CHECKPOINTS))
        same += ok
        params = entry["params"]
        print(f"{path.name}  lr {params['finetune_lr']:<6} batch {params['finetune_batch_size']:<4} "
              f"monitor {params.get('monitor_per_class', 0):<3} {'identical' if ok else 'DIFFERENT'}  {seconds:.1f} s",
              flush=True)
    print(f"{same} of {len(chosen)} recomputed entries identical to the committed ones "
          f"({len(found)} committed fast-path entries have a local pretrained network)")
    return 0 if same == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
