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
from .executors import ContextSpec, Executor, LocalExecutor, UnitReport, all_units, plan
from .experiments import CHAPTERS
from .experiments.units import Unit
from .profiles import resolve


def paper_units(profile: str = "paper") -> list[Unit]:
    """Every unit of ``profile``: the pretrainings (stage 0), then every chapter's units, chapters in the order of
    their ``paper_rank`` in :data:`~erosion_utils.experiments.CHAPTERS` (what a paper run should decide first: the
    erosion curve, breadth, the mechanism, mitigation, representations), each chapter's most important first (a run
    shared by two chapters once)."""
    units: list[Unit] = []
    seen: set[str] = set()
    for name, chapter in sorted(CHAPTERS.items(), key=lambda kv: kv[1].paper_rank):
        run = resolve(name, profile)
        for u in chapter.units(run.config, run.extras):
            if u.name not in seen:  # two chapters may share a run
                seen.add(u.name)
                units.append(u)
    return all_units(units)


# GPU seconds per epoch of the full CIFAR-10 training set (50,000 images) of a ResNet-18 fine-tuning run, when no
# committed GPU result says better (the median over the committed H200 runs is about 4)
FALLBACK_EPOCH_S = 4.0


def epoch_seconds(results: Path, arch: str = "resnet18") -> float:
    """Measured GPU seconds per 50,000-image epoch of ``arch`` fine-tuning: the median over the committed GPU
    fine-tuning results (wall time over epochs and images), or :data:`FALLBACK_EPOCH_S` without any."""
    rates = []
    for path in Path(results).glob("finetune/*.json"):
        entry = json.loads(path.read_text())
        prov, params = entry.get("provenance", {}), entry.get("params", {})
        if "cpu" in str(prov.get("device", "cpu")) or params.get("arch") != arch:
            continue
        images = (params.get("train_per_class") or 5000) * 10
        rates.append(prov["wall_time_s"] / (params["finetune_epochs"] * images / 50000))
    return float(sorted(rates)[len(rates) // 2]) if rates else FALLBACK_EPOCH_S


def estimate_seconds(unit: Unit, epoch_s: float) -> float:
    """A unit's GPU seconds, from the epochs it trains (images scaled to a 50,000-image epoch) at ``epoch_s``."""
    cfg = unit.args[0]
    scale = ((cfg.train_per_class or 5000) * 10) / 50000
    if unit.kind == "pretrain":
        return (cfg.pretrain_epochs + cfg.pretrain_extra_epochs) * scale * epoch_s * (cfg.pretrain_per_class or 5000) \
            / (cfg.train_per_class or 5000)
    ft = cfg.finetune_epochs * scale * epoch_s
    name = getattr(unit.fn, "__name__", "")
    if name == "compute_mechanism_pair":
        return 2 * ft
    if name == "interpolation_run":
        return ft + 15.0
    if name == "transfer_recovery_run":
        rec, scratch, reinit = unit.args[1], unit.args[2], unit.args[3]
        return 2 * ft + ((2 + len(reinit)) * rec + scratch) * scale * epoch_s
    if name == "recovery_run":
        return 2 * ft + 3 * len(unit.args[2]) * unit.args[1] * scale * epoch_s + 60.0
    if name == "representation_experiments":
        return 2 * ft + 120.0
    return ft


def dry_run(ctx, profile: str = "paper", units: list[Unit] | None = None) -> list[dict]:
    """The units of ``profile`` that are not cached, in run order, each with its estimated GPU seconds (pretrainings
    only where a pending unit needs them); nothing runs."""
    todo, _ = plan(paper_units(profile) if units is None else units, ctx)
    epoch_s = epoch_seconds(ctx.results.root)
    return [{"name": u.name, "kind": u.kind, "estimated_gpu_s": round(estimate_seconds(u, epoch_s), 1)}
            for u in todo]


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
