"""Paper-scale compute as one plain command (the GPU machine has torch but no Jupyter stack, and no Ray).

Every chapter of the registry (:data:`erosion_utils.experiments.CHAPTERS`) contributes its units;
:func:`paper_units` lists them in book order, after the pretrainings they need. :func:`run_paper` hands them to an
executor (in-process, worker processes or Ray, see :mod:`erosion_utils.executors`): cached units are not
recomputed, so a rerun resumes. After each unit the results folder is packed into ``OUT/results.tar.gz``
(atomically), so a run that is cut off still returns what it finished.
"""
from __future__ import annotations

import io
import json
import math
import tarfile
import time
from pathlib import Path
from typing import Callable

from .cache import atomic_write_bytes
from .executors import ContextSpec, Executor, LocalExecutor, UnitReport, all_units
from .experiments import CHAPTERS
from .experiments.units import Unit
from .profiles import resolve


def paper_units(profile: str = "paper") -> list[Unit]:
    """Every unit of ``profile``: the pretrainings (stage 0), then every chapter's units in the order of
    :data:`~erosion_utils.experiments.CHAPTERS` (a run shared by two chapters once)."""
    units: list[Unit] = []
    seen: set[str] = set()
    for name, chapter in CHAPTERS.items():
        run = resolve(name, profile)
        for u in chapter.units(run.config, run.extras):
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
