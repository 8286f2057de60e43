"""Paper-scale compute as one plain command (the GPU machine has torch but no Jupyter stack, and no Ray).

Every chapter contributes units (:data:`CHAPTER_UNITS`); :func:`paper_units` lists them most important first,
after the pretrainings they need. :func:`run_paper` hands them to an executor (in-process, worker processes or Ray,
see :mod:`erosion_utils.executors`): cached units are not recomputed, so a rerun resumes. After each unit the
results folder is packed into ``OUT/results.tar.gz`` (atomically), so a run that is cut off still returns what it
finished.
"""
from __future__ import annotations

import io
import json
import math
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .cache import atomic_write_bytes
from .executors import ContextSpec, Executor, LocalExecutor, Unit, UnitReport, experiment_unit
from .experiments import breadth_variants, control_for, finetune_run, representation_experiments
from .profiles import resolve


def erosion_units(profile: str) -> list[Unit]:
    """Fig. 1 for the first seed at each rate, then the representations at each rate, then the other seeds."""
    ero = resolve("erosion", profile)
    rep = resolve("representations", profile)
    units: list[Unit] = []

    def add_erosion(seed: int) -> None:
        for lr in ero.extras["finetune_lrs"]:
            c = replace(ero.config, seed=seed, finetune_lr=lr)
            for patterned, label in ((True, "pattern"), (False, "control")):
                units.append(experiment_unit(f"erosion lr={lr} {label} seed {seed}", "finetune", finetune_run, c,
                                             patterned))

    seeds = ero.extras["seeds"]
    add_erosion(seeds[0])
    rep_seeds = rep.extras.get("seeds", [rep.config.seed])
    for seed in rep_seeds:
        for lr in rep.extras["finetune_lrs"]:
            c = replace(rep.config, seed=seed)
            kwargs = {k: v for k, v in rep.extras.items() if k != "seeds"}
            units.append(experiment_unit(f"representations lr={lr}" + (f" seed {seed}" if len(rep_seeds) > 1 else ""),
                                         "representations", representation_experiments, c,
                                         **{**kwargs, "finetune_lrs": [lr]}))
    for s in seeds[1:]:
        add_erosion(s)
    return units


def breadth_units(profile: str) -> list[Unit]:
    """Each breadth setting's pattern run and its control (for each seed in the profile's ``seeds``, if any)."""
    bre = resolve("breadth", profile)
    base = bre.config
    units: list[Unit] = []
    seeds = bre.extras.get("seeds", [base.seed])
    for seed in seeds:
        for factor, c in breadth_variants(replace(base, seed=seed), bre.sweeps(), bre.extras["around_lrs"]):
            label = f"breadth {factor}: {c.arch} {c.dataset} {c.pattern} k={c.pattern_size} p={c.fraction} " \
                    f"lr={c.finetune_lr} wd={c.finetune_weight_decay}" + (f" seed {seed}" if len(seeds) > 1 else "")
            units.append(experiment_unit(label + " pattern", "finetune", finetune_run, c, True))
            units.append(experiment_unit(label + " control", "finetune", finetune_run,
                                         control_for(c, replace(base, seed=seed)), False))
    return units


# One builder per chapter, in priority order: profile -> stage-1 units. A chapter appends its own
# (``CHAPTER_UNITS.append(mechanism.paper_units)``); the pretrainings they need are added by paper_units.
CHAPTER_UNITS: list[Callable[[str], list[Unit]]] = [erosion_units, breadth_units]


def _chapter_builders() -> list[Callable[[str], list[Unit]]]:
    builders = list(CHAPTER_UNITS)
    from . import experiments

    for name in ("mechanism", "mitigation"):  # chapters that have landed contribute their paper units
        module = getattr(experiments, name, None)
        if module is None:
            try:
                module = __import__(f"{experiments.__name__}.{name}", fromlist=["paper_units"])
            except ImportError:
                continue
        fn = getattr(module, "paper_units", None)
        if fn is not None and fn not in builders:
            builders.append(fn)
    return builders


def paper_units(profile: str = "paper") -> list[Unit]:
    """Every unit of ``profile``: the pretrainings (stage 0), then every chapter's units in priority order."""
    from .executors import all_units

    units: list[Unit] = []
    seen: set[str] = set()
    for build in _chapter_builders():
        for u in build(profile):
            if u.name not in seen:  # two chapters may share a run
                seen.add(u.name)
                units.append(u)
    return all_units(units)


def pack_results(results_dir: Path, out: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if results_dir.is_dir():
            tar.add(results_dir, arcname="results")
    atomic_write_bytes(out, buf.getvalue())


def run_paper(ctx, budget_s: float, out_dir: Path, profile: str = "paper", log: Callable[[str], None] = print,
              executor: Executor | None = None, units: list[Unit] | None = None) -> dict:
    """Run the units of ``profile`` that are not cached, within ``budget_s`` seconds (local and worker executors);
    write ``results.tar.gz`` and ``paper_run.json`` (one report per unit) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    units = paper_units(profile) if units is None else units
    start = time.perf_counter()

    def on_done(rep: UnitReport) -> None:
        what = rep.status + (" (cached)" if rep.cached else "")
        log(f"[{time.perf_counter() - start:6.1f}s] {what} {rep.name}" + (f" in {rep.seconds:.1f}s" if rep.seconds
                                                                            else "")
            + (f": {rep.error.strip().splitlines()[-1]}" if rep.error and rep.status != "done" else ""))
        if rep.status == "done" and not rep.cached:
            pack_results(ctx.results.root, out_dir / "results.tar.gz")

    spec = ContextSpec.of(ctx)
    if isinstance(executor, LocalExecutor):
        reports = executor.run(units, spec, budget_s, on_done, ctx=ctx)
    else:
        reports = executor.run(units, spec, budget_s, on_done)
    for rep in reports:
        if rep.cached:
            on_done(rep)
    pack_results(ctx.results.root, out_dir / "results.tar.gz")
    report = {"budget_s": budget_s if math.isfinite(budget_s) else None, "executor": type(executor).__name__,
              "units": [r.as_dict() for r in reports], "total_s": round(time.perf_counter() - start, 1)}
    atomic_write_bytes(out_dir / "paper_run.json", json.dumps(report, indent=1).encode())
    return report
