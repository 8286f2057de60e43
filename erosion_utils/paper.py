"""Paper-scale compute as one plain command (the GPU machine has torch but no Jupyter stack).

Runs the ``paper`` profile of every experiment, most important first, one cached unit at a time, within a
wall-time budget; it skips what would not fit and can be rerun to resume (cached units are not recomputed).
After each unit the results folder is packed into ``OUT/results.tar.gz`` (atomically), so a run that is cut off
still returns what it finished.
"""
from __future__ import annotations

import io
import json
import tarfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .cache import atomic_write_bytes
from .experiments import Context, breadth_variants, control_for, finetune_run, representation_experiments
from .profiles import resolve


def paper_units(ctx: Context, profile: str = "paper") -> list[tuple[str, str, Callable[[], object]]]:
    """(unit name, kind, thunk) in priority order: Fig. 1 (first seed, each lr), representations, the other seeds,
    breadth. Pretraining happens inside the first unit that needs it (checkpoint-cached)."""
    ero = resolve("erosion", profile)
    rep = resolve("representations", profile)
    bre = resolve("breadth", profile)
    units: list[tuple[str, str, Callable]] = []

    def add_erosion(seed: int) -> None:
        for lr in ero.extras["finetune_lrs"]:
            c = replace(ero.config, seed=seed, finetune_lr=lr)
            units.append((f"erosion lr={lr} pattern seed {seed}", "finetune", lambda c=c: finetune_run(c, True, ctx)))
            units.append((f"erosion lr={lr} control seed {seed}", "finetune", lambda c=c: finetune_run(c, False, ctx)))

    seeds = ero.extras["seeds"]
    add_erosion(seeds[0])
    for lr in rep.extras["finetune_lrs"]:
        units.append((f"representations lr={lr}", "representations", lambda lr=lr: representation_experiments(
            rep.config, ctx, **{**rep.extras, "finetune_lrs": [lr]})))
    for s in seeds[1:]:
        add_erosion(s)
    base = bre.config
    for factor, c in breadth_variants(base, bre.sweeps(), bre.extras["around_lrs"]):
        label = f"breadth {factor}: {c.arch} {c.dataset} {c.pattern} k={c.pattern_size} p={c.fraction} " \
                f"lr={c.finetune_lr} wd={c.finetune_weight_decay}"
        units.append((label + " pattern", "finetune", lambda c=c: finetune_run(c, True, ctx)))
        units.append((label + " control", "finetune", lambda c=c: finetune_run(control_for(c, base), False, ctx)))
    return units


def pack_results(results_dir: Path, out: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if results_dir.is_dir():
            tar.add(results_dir, arcname="results")
    atomic_write_bytes(out, buf.getvalue())


def run_paper(ctx: Context, budget_s: float, out_dir: Path, profile: str = "paper",
              log: Callable[[str], None] = print) -> dict:
    """Run the units that fit in ``budget_s`` seconds; write ``results.tar.gz`` and ``paper_run.json`` to
    ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    durations: dict[str, list[float]] = {}
    report = {"budget_s": budget_s, "units": []}
    guess = {"finetune": 30.0, "representations": 70.0}
    for name, kind, thunk in paper_units(ctx, profile):
        elapsed = time.perf_counter() - start
        seen = durations.get(kind)
        estimate = sum(seen) / len(seen) if seen else guess[kind]
        if elapsed + estimate > budget_s:
            log(f"[{elapsed:6.1f}s] skip {name} (estimate {estimate:.0f}s exceeds the budget)")
            report["units"].append({"name": name, "status": "skipped", "estimate_s": estimate})
            continue
        t0 = time.perf_counter()
        try:
            thunk()
            status = "done"
        except Exception:  # one failing unit must not lose the others
            status = "failed"
            log(traceback.format_exc())
        dt = time.perf_counter() - t0
        if dt > 1.0:  # cache hits take no time and say nothing about cost
            durations.setdefault(kind, []).append(dt)
        report["units"].append({"name": name, "status": status, "seconds": round(dt, 2)})
        log(f"[{time.perf_counter() - start:6.1f}s] {status} {name} in {dt:.1f}s")
        pack_results(ctx.results.root, out_dir / "results.tar.gz")
    report["total_s"] = round(time.perf_counter() - start, 1)
    atomic_write_bytes(out_dir / "paper_run.json", json.dumps(report, indent=1).encode())
    return report
