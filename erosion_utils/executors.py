"""Where units of work run: in-process, in worker processes sharing one machine (and its GPU), or on a Ray cluster.

Executors know units, not chapters. A unit (:class:`erosion_utils.experiments.units.Unit`) is a picklable
description plus the module-level experiment function that computes and caches it: it runs as
``fn(*args, ctx=ctx, **kwargs)``, or ``fn(ctx, *args, **kwargs)`` when ``fn``'s first parameter is named ``ctx``.
Stage-0 units are pretrainings (they produce a checkpoint); a stage-1 unit lists the pretrainings it ``needs``, which always run first, once.
Before anything runs, every unit is dry-run against the cache with computing switched off: cached units are
reported as such and never recomputed, so a rerun resumes. A failing unit is reported; the others go on. A checkpoint
is checked by the safe loader before it is used or shipped; a corrupt one is moved aside and recomputed.

Only torch, tqdm and the standard library are imported here; Ray is imported when the Ray executor is used.
"""
from __future__ import annotations

import math
import os
import re
import socket
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from tqdm import tqdm

from .cache import atomic_write_bytes, device_name
from .experiments.units import ContextSpec, Unit, is_cached
from .train import resolve_device
from .validation import ParameterError, check_choice, check_number

GUESS_S = {"pretrain": 30.0, "finetune": 30.0, "representations": 70.0}  # before any unit of a kind has run


@dataclass
class UnitReport:
    name: str
    kind: str
    status: str  # done | failed | skipped
    seconds: float = 0.0
    cached: bool = False
    error: str = ""
    host: str = ""
    device: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not (v == "" or (k == "cached" and not v))}


class Executor(Protocol):
    def run(self, units: list[Unit], spec: ContextSpec, budget_s: float = math.inf,
            on_done: Callable[[UnitReport], None] | None = None) -> list[UnitReport]:
        """Run ``units`` (stage 0 before the units that need it), return one report per unit in input order."""


# --- planning -----------------------------------------------------------------------------------------------------

def all_units(units: list[Unit]) -> list[Unit]:
    """``units`` with every needed stage-0 unit included once, stage 0 first, otherwise in the given order."""
    seen: dict[str, Unit] = {}
    for u in units:
        for dep in u.needs:
            seen.setdefault(dep.name, dep)
    for u in units:
        if u.name in seen and u.stage == 0:
            continue
        if u.name in seen:
            raise ParameterError(f"two units are named {u.name!r}; unit names must be unique")
        seen[u.name] = u
    return sorted(seen.values(), key=lambda u: u.stage)  # stable: keeps the priority order within a stage


def plan(units: list[Unit], ctx) -> tuple[list[Unit], dict[str, UnitReport]]:
    """The units to run, in order, and reports for the others: cached stage-1 units, and pretrainings that no
    pending unit needs and whose result entry (cached under the checkpoint's name and parameters) exists."""
    units = all_units(units)
    reports: dict[str, UnitReport] = {}
    pending1 = []
    for u in units:
        if u.stage > 0:
            if is_cached(u, ctx):
                reports[u.name] = UnitReport(u.name, u.kind, "done", cached=True)
            else:
                pending1.append(u)
    needed = {d.name for u in pending1 for d in u.needs}
    needed |= {u.name for u in units if u.stage == 0 and ctx.results.load(*u.checkpoint) is None}
    todo = []
    for u in units:
        if u.stage == 0 and u.name not in needed:
            reports[u.name] = UnitReport(u.name, u.kind, "skipped", error="not needed: every unit that needs it "
                                                                             "is cached")
        elif u.stage == 0 or u.name not in reports:
            todo.append(u)
    return todo, reports


class _Estimates:
    """Mean measured seconds per kind (a guess until one has run); units that took under a second say nothing."""

    def __init__(self):
        self.seen: dict[str, list[float]] = {}

    def add(self, kind: str, seconds: float) -> None:
        if seconds > 1.0:
            self.seen.setdefault(kind, []).append(seconds)

    def __call__(self, kind: str) -> float:
        s = self.seen.get(kind)
        return sum(s) / len(s) if s else GUESS_S.get(kind, 60.0)


def _error_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="unit", disable=os.environ.get("EROSION_PROGRESS", "1") == "0",
                bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed} elapsed, ETA {remaining}]")


def _ordered(units: list[Unit], reports: dict[str, UnitReport]) -> list[UnitReport]:
    return [reports[u.name] for u in all_units(units)]


def _mark_cancelled(todo: list[Unit], reports: dict[str, UnitReport]) -> None:
    """After Ctrl-C: every unit without a report is reported as skipped (cancelled)."""
    for u in todo:
        reports.setdefault(u.name, UnitReport(u.name, u.kind, "skipped", error="cancelled (Ctrl-C)"))


# --- in-process -------------------------------------------------------------------------------------------------

class LocalExecutor:
    """In this process, one unit at a time in priority order; a pretraining runs just before its first user, so a
    budgeted run spends its time on the most important units."""

    def run(self, units: list[Unit], spec: ContextSpec, budget_s: float = math.inf,
            on_done: Callable[[UnitReport], None] | None = None, ctx=None) -> list[UnitReport]:
        ctx = ctx if ctx is not None else spec.build()
        todo, reports = plan(units, ctx)
        start, estimate = time.perf_counter(), _Estimates()
        order = [u for u in todo if u.stage > 0]
        stage0 = {u.name: u for u in todo if u.stage == 0}
        bar = _bar(len(todo), "units")
        try:
            for unit in order:
                for dep in unit.needs:
                    if dep.name in stage0 and dep.name not in reports:
                        self._one(dep, ctx, start, budget_s, estimate, reports, on_done, bar)
                failed = [d.name for d in unit.needs if reports.get(d.name) and reports[d.name].status != "done"]
                if failed:
                    reports[unit.name] = UnitReport(unit.name, unit.kind, "skipped" if all(
                        reports[f].status == "skipped" for f in failed) else "failed",
                        error=f"not run: its pretraining {failed[0]} did not complete")
                    bar.update(1)
                    if on_done:
                        on_done(reports[unit.name])
                    continue
                self._one(unit, ctx, start, budget_s, estimate, reports, on_done, bar)
            for name, u in stage0.items():  # needed for its own result only, or its users were all skipped
                if name not in reports:
                    if ctx.results.load(*u.checkpoint) is None:
                        self._one(u, ctx, start, budget_s, estimate, reports, on_done, bar)
                    else:
                        reports[name] = UnitReport(name, u.kind, "skipped", error="not needed by any unit that ran")
                        bar.update(1)
        except KeyboardInterrupt:
            _mark_cancelled(todo, reports)
        finally:
            bar.close()
        return _ordered(units, reports)

    @staticmethod
    def _one(unit, ctx, start, budget_s, estimate, reports, on_done, bar) -> None:
        elapsed = time.perf_counter() - start
        if elapsed + estimate(unit.kind) > budget_s:
            rep = UnitReport(unit.name, unit.kind, "skipped",
                             error=f"estimate {estimate(unit.kind):.0f}s exceeds the budget")
        else:
            t0 = time.perf_counter()
            try:
                unit.run(ctx)
                rep = UnitReport(unit.name, unit.kind, "done")
            except Exception as err:  # one failing unit must not lose the others
                rep = UnitReport(unit.name, unit.kind, "failed", error=_error_text(err))
            rep.seconds = round(time.perf_counter() - t0, 2)
            rep.host, rep.device = socket.gethostname(), str(ctx.device)
            if rep.status == "done":
                estimate.add(unit.kind, rep.seconds)
        reports[unit.name] = rep
        bar.update(1)
        if on_done:
            on_done(rep)


# --- worker processes on this machine ---------------------------------------------------------------------------

def default_workers(device: str = "auto", cpu_count: int | None = None, gpu_memory_gib: float | None = None) -> int:
    """Worker processes for this machine: one per two CPU cores (a launch-bound process keeps one core busy, and
    its data and progress threads need some of another), and on CUDA at most one per 4 GiB of GPU memory (a
    ResNet-18 unit with CIFAR-10 resident on the GPU needs about 2 GiB, plus the CUDA context), at most 8."""
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = cpu_count
    n = max(1, cpus // 2)
    if gpu_memory_gib is None:
        if resolve_device(device).type == "cuda":
            gpu_memory_gib = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
    if gpu_memory_gib is not None:
        n = min(n, max(1, int(gpu_memory_gib // 4)))
    return max(1, min(n, 8))


_WORKER_CTX = None


def _init_worker(spec: ContextSpec, threads: int) -> None:
    global _WORKER_CTX
    torch.set_num_threads(threads)
    _WORKER_CTX = spec.build()


def _run_in_worker(unit: Unit) -> UnitReport:
    t0 = time.perf_counter()
    try:
        unit.run(_WORKER_CTX)
        rep = UnitReport(unit.name, unit.kind, "done")
    except Exception as err:  # reported, never lost: the pool goes on
        rep = UnitReport(unit.name, unit.kind, "failed", error=_error_text(err))
    rep.seconds = round(time.perf_counter() - t0, 2)
    rep.host, rep.device = socket.gethostname(), _device_name(_WORKER_CTX.device)
    return rep


def _device_name(device: str) -> str:
    return device_name(resolve_device(device))


class WorkerExecutor:
    """``n`` worker processes (spawned) sharing this machine's GPU and its local caches: a pretraining runs once,
    before the units that need it; results and checkpoints are written atomically by the worker that computed them.
    A unit is started only if its estimated time fits in what is left of the budget. Each worker process is a pool of
    its own, so a process that dies (killed, out of memory) loses only the unit it ran: that unit is retried in a
    fresh process up to ``max_retries`` times, and the units running beside it go on."""

    def __init__(self, n: int | None = None, max_retries: int = 2):
        if n is not None:
            check_number("workers", n, low=1, integer=True)
        check_number("max_retries", max_retries, low=0, integer=True)
        self.n, self.max_retries = n, max_retries

    def run(self, units: list[Unit], spec: ContextSpec, budget_s: float = math.inf,
            on_done: Callable[[UnitReport], None] | None = None) -> list[UnitReport]:
        import concurrent.futures as cf
        import multiprocessing as mp

        n = self.n or default_workers(spec.device)
        ctx = spec.build()
        todo, reports = plan(units, ctx)
        threads = max(1, (os.cpu_count() or 1) // n)
        start, estimate = time.perf_counter(), _Estimates()
        waiting = list(todo)
        running: dict[cf.Future, tuple[Unit, int]] = {}  # future -> (unit, the slot whose process runs it)
        slots: list[cf.ProcessPoolExecutor | None] = [None] * n  # one single-process pool per slot, made when used
        lost: dict[str, int] = {}  # unit name -> worker processes that died running it
        bar = _bar(len(todo), f"units ({n} workers)")

        def finish(rep: UnitReport) -> None:
            reports[rep.name] = rep
            if rep.status == "done":
                estimate.add(rep.kind, rep.seconds)
            bar.update(1)
            if on_done:
                on_done(rep)

        def submit(unit: Unit) -> None:
            slot = next(i for i in range(n) if i not in {s for _, s in running.values()})
            if slots[slot] is None:
                slots[slot] = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                                     initargs=(spec, threads))
            running[slots[slot].submit(_run_in_worker, unit)] = (unit, slot)

        interrupted = False
        try:
            while waiting or running:
                started = len(running)
                for unit in list(waiting):  # start what is ready, most important first
                    if len(running) >= n:
                        break
                    deps = [reports.get(d.name) for d in unit.needs]
                    if any(d is None for d in deps):
                        continue  # its pretraining is still running
                    waiting.remove(unit)
                    bad = [d for d in deps if d.status != "done"]
                    if bad:
                        finish(UnitReport(unit.name, unit.kind, "skipped" if bad[0].status == "skipped" else "failed",
                                          error=f"not run: its pretraining {bad[0].name} did not complete"))
                    elif time.perf_counter() - start + estimate(unit.kind) > budget_s:
                        finish(UnitReport(unit.name, unit.kind, "skipped",
                                          error=f"estimate {estimate(unit.kind):.0f}s exceeds the budget"))
                    else:
                        submit(unit)
                if not running:
                    if waiting and len(running) == started:
                        for unit in waiting:  # cannot happen with a consistent plan; never spin
                            finish(UnitReport(unit.name, unit.kind, "failed", error="its pretraining was never run"))
                        waiting.clear()
                    continue
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    unit, slot = running.pop(fut)
                    try:
                        finish(fut.result())
                    except Exception as err:  # its worker process died (killed, out of memory, os._exit)
                        slots[slot].shutdown(wait=False, cancel_futures=True)
                        slots[slot] = None  # only this slot: the units in the other processes go on
                        lost[unit.name] = lost.get(unit.name, 0) + 1
                        if lost[unit.name] <= self.max_retries:
                            waiting.insert(0, unit)  # retried first, in a fresh process
                        else:
                            finish(UnitReport(unit.name, unit.kind, "failed",
                                              error=f"worker process died ({lost[unit.name]} times, "
                                                    f"max_retries={self.max_retries}): {err!r}"))
        except KeyboardInterrupt:
            interrupted = True
            for pool in slots:
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
            _mark_cancelled(todo, reports)
        finally:
            for pool in slots:
                if pool is not None:
                    pool.shutdown(wait=not interrupted, cancel_futures=True)
            bar.close()
        return _ordered(units, reports)


# --- Ray --------------------------------------------------------------------------------------------------------

_RESULT_PATH = re.compile(r"^[A-Za-z0-9_.-]+/[0-9a-f]{20}\.json$")


def _ray_execute(unit: Unit, spec: ContextSpec, needs: list[tuple[str, dict]], *checkpoints: bytes) -> dict:
    """Runs on a Ray worker, in a fresh folder: store the received checkpoints there (checked by the safe loader),
    compute ``unit``, and return its result files (and, for a pretraining, its checkpoint bytes). Nothing is read
    from or left on the worker's disk: a checkpoint key does not name the data it was trained on."""
    with tempfile.TemporaryDirectory(prefix="erosion-ray-") as tmp:
        ctx = spec.build(results=str(Path(tmp) / "results"), checkpoints=str(Path(tmp) / "checkpoints"))
        for (name, params), data in zip(needs, checkpoints):
            ctx.checkpoints.write_bytes(name, params, data)
        t0 = time.perf_counter()
        unit.run(ctx)
        files = {str(p.relative_to(ctx.results.root)): p.read_bytes() for p in ctx.results.root.rglob("*.json")}
        out = {"files": files, "seconds": round(time.perf_counter() - t0, 2), "host": socket.gethostname(),
               "device": _device_name(spec.device)}
        if unit.checkpoint is not None:
            out["checkpoint"] = ctx.checkpoints.read_bytes(*unit.checkpoint)
    return out


def _ray_pretrain(unit: Unit, spec: ContextSpec) -> tuple[bytes, dict]:
    """A pretraining on a Ray worker: (checkpoint bytes, for the object store; the rest, for the driver)."""
    out = _ray_execute(unit, spec, [])
    return out.pop("checkpoint"), out


class RayExecutor:
    """Each unit is a Ray task (``num_gpus=gpus_per_unit`` on a cluster with GPUs, else ``num_cpus``).

    Pretrainings run first; a fine-tuning task receives its pretrained checkpoint as an object ref, so checkpoints
    travel through Ray's object store (no shared filesystem; each node needs the dataset). Result files come back to
    the driver, which writes the ones it lacks into its result cache atomically, adding the worker's host and device
    to their provenance, and keeps the checkpoints in its own checkpoint cache. ``max_retries`` covers lost workers
    and raising units; a unit that still fails is reported and the others go on. Ctrl-C cancels every task."""

    def __init__(self, address: str | None = None, gpus_per_unit: float | None = None, cpus_per_unit: float = 1.0,
                 max_retries: int = 2):
        if gpus_per_unit is not None:
            check_number("gpus_per_unit", gpus_per_unit, low=0, high=64, low_inclusive=False)
        check_number("cpus_per_unit", cpus_per_unit, low=0, low_inclusive=False)
        check_number("max_retries", max_retries, low=0, integer=True)
        self.address, self.gpus, self.cpus, self.max_retries = address, gpus_per_unit, cpus_per_unit, max_retries

    def _ray(self):
        try:
            import ray
        except ImportError as err:
            raise ParameterError("executor='ray' needs Ray: pip install -e '.[cluster]'") from err
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        return ray

    def run(self, units: list[Unit], spec: ContextSpec, budget_s: float = math.inf,
            on_done: Callable[[UnitReport], None] | None = None) -> list[UnitReport]:
        ray = self._ray()
        ctx = spec.build()
        todo, reports = plan(units, ctx)
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        resources = {"num_gpus": self.gpus or 1, "num_cpus": self.cpus} if has_gpu else {"num_cpus": self.cpus}
        opts = dict(max_retries=self.max_retries, retry_exceptions=True, **resources)
        task = ray.remote(_ray_execute).options(**opts)
        task0 = ray.remote(_ray_pretrain).options(num_returns=2, **opts)
        ckpt_refs: dict[str, Any] = {}
        inflight: dict[Any, Unit] = {}
        bar = _bar(len(todo), "units (ray)")

        def finish(rep: UnitReport) -> None:
            reports[rep.name] = rep
            bar.update(1)
            if on_done:
                on_done(rep)

        for unit in todo:
            if unit.stage == 0:
                local = ctx.checkpoints.verified_bytes(*unit.checkpoint)  # a corrupt file is moved aside: retrained
                if local is not None:  # the driver has it already: ship it, train nothing
                    ckpt_refs[unit.name] = ray.put(local)
                    finish(UnitReport(unit.name, unit.kind, "done", cached=True))
                    continue
                ckpt_refs[unit.name], ref = task0.remote(unit, spec)
            else:
                needs = [d.checkpoint for d in unit.needs]
                ref = task.remote(unit, spec, needs, *[ckpt_refs[d.name] for d in unit.needs])
            inflight[ref] = unit
        try:
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    unit = inflight.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as err:  # raised after its retries, or its pretraining failed
                        finish(UnitReport(unit.name, unit.kind, "failed", error=_ray_error(err)))
                        continue
                    if unit.checkpoint is not None:
                        out["checkpoint"] = ray.get(ckpt_refs[unit.name])
                    self._store(ctx, unit, out)
                    finish(UnitReport(unit.name, unit.kind, "done", seconds=out["seconds"], host=out["host"],
                                      device=out["device"]))
        except KeyboardInterrupt:
            for ref in inflight:
                ray.cancel(ref, force=True)
            _mark_cancelled(todo, reports)
        finally:
            bar.close()
        return _ordered(units, reports)

    @staticmethod
    def _store(ctx, unit: Unit, out: dict) -> None:
        import json

        for rel, data in sorted(out["files"].items()):
            if not _RESULT_PATH.match(rel):
                raise ValueError(f"unexpected result path {rel!r} from a worker")
            path = ctx.results.root / rel
            if path.exists():  # never rewrite an entry the driver has (committed results stay as they are)
                continue
            entry = json.loads(data)
            entry["provenance"] = {**entry.get("provenance", {}), "worker_host": out["host"],
                                   "worker_device": out["device"], "executor": "ray"}
            atomic_write_bytes(path, json.dumps(entry, indent=1, default=str).encode())
        if unit.checkpoint is not None and ctx.checkpoints.read_bytes(*unit.checkpoint) is None:
            ctx.checkpoints.write_bytes(*unit.checkpoint, out["checkpoint"])


def _ray_error(err: Exception) -> str:
    text = str(err)
    return text[-4000:] if text else repr(err)


EXECUTORS = ("local", "workers", "ray")


def make_executor(name: str, workers: int | None = None, address: str | None = None,
                  gpus_per_unit: float | None = None, max_retries: int = 2) -> Executor:
    """The executor called ``name`` (``local``, ``workers`` or ``ray``), validated before anything runs."""
    check_choice("executor", name, EXECUTORS)
    if name == "local":
        return LocalExecutor()
    if name == "workers":
        return WorkerExecutor(workers, max_retries)
    return RayExecutor(address, gpus_per_unit, max_retries=max_retries)
