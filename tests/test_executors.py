"""Executors: in-process, worker processes and Ray (a local ``ray.init(num_cpus=2)``) give the same cache; failing,
raising and dying units are reported (and on Ray retried) without losing the others."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from erosion_utils import executors, profiles
from erosion_utils.cache import CheckpointCache, ResultCache, provenance
from erosion_utils.executors import LocalExecutor, RayExecutor, WorkerExecutor, default_workers, make_executor, plan
from erosion_utils.experiments import CacheMissError, Context, finetune_run, representation_experiments
from erosion_utils.experiments.units import ContextSpec, Unit, experiment_unit
from erosion_utils.validation import ParameterError


# --- toy units: no training, so the scheduling itself is what is tested -------------------------------------------

def _toy_result(ctx, name: str, params: dict, compute) -> None:
    if ctx.results.load(name, params) is not None:
        return
    if not ctx.compute:
        raise CacheMissError(name)
    ctx.results.save(name, params, compute(), provenance(0, 0.0, "cpu"))


def toy_pretrain(tag: str, ctx, mult: float = 1.0) -> None:
    """Stage 0: a 'checkpoint' whose weights are 1..4 times len(tag) (times ``mult``, which its key does not name,
    as a checkpoint key does not name the data folder), and its result entry."""
    params = {"tag": tag}
    if ctx.checkpoints.path("toy", params).is_file():
        return
    w = torch.arange(1.0, 5.0) * len(tag) * mult
    ctx.checkpoints.save("toy", params, {"state_dict": {"w": w}, "summary": {"n": 4}, "provenance": {}})
    ctx.results.save("toy", params, {"n": 4}, provenance(0, 0.0, "cpu"))


def toy_finetune(tag: str, scale: float, ctx) -> None:
    """Stage 1: reads the pretraining's checkpoint (which must have reached this worker) and caches a number."""
    def compute():
        saved = ctx.checkpoints.load("toy", {"tag": tag})
        assert saved is not None, "the checkpoint did not reach this worker"
        return {"value": float(saved["state_dict"]["w"].sum()) * scale}

    _toy_result(ctx, "toy_ft", {"tag": tag, "scale": scale}, compute)


def toy_raises(counter: str, ctx) -> None:
    """Counts its attempts in ``counter``, then raises, every time."""
    def compute():
        with open(counter, "a") as f:
            f.write("x")
        return 1 / 0

    _toy_result(ctx, "toy_raise", {"c": counter}, compute)


def toy_dies_once(marker: str, ctx) -> None:
    """The first attempt kills its own worker process (os._exit, as a lost node would); the next one succeeds."""
    def compute():
        if not os.path.exists(marker):
            Path(marker).write_text("died")
            os._exit(1)
        return {"survived": True}

    _toy_result(ctx, "toy_die", {"m": marker}, compute)


def toy_interrupts(ctx) -> None:
    """Ctrl-C while it runs."""
    if not ctx.compute:
        raise CacheMissError("stop")
    raise KeyboardInterrupt


def _toy_units(tmp_path, mult: float = 1.0) -> list[Unit]:
    pre = {t: Unit(f"pretrain {t}", "pretrain", toy_pretrain, (t,), {"mult": mult}, stage=0,
                   checkpoint=("toy", {"tag": t})) for t in ("ab", "abc")}
    return [Unit(f"ft {t} x{s}", "finetune", toy_finetune, (t, s), needs=(pre[t],)) for t in pre for s in (1.0, 0.5)]


def _spec(tmp_path, name: str, data_root=None) -> ContextSpec:
    return ContextSpec(str(tmp_path / name / "results"), str(tmp_path / name / "checkpoints"), data_root, "cpu")


def _cache_contents(root: Path) -> dict[str, dict]:
    """Every cached entry under ``root`` without its provenance (results must match exactly, provenance may not)."""
    out = {}
    for p in sorted(root.rglob("*.json")):
        entry = json.loads(p.read_text())
        entry.pop("provenance")
        out[str(p.relative_to(root))] = json.dumps(entry, sort_keys=True)  # NaN-safe comparison
    return out


# --- planning and the in-process executor -------------------------------------------------------------------------

def test_plan_adds_needed_pretrainings_first_and_skips_cached_units(tmp_path):
    units = _toy_units(tmp_path)
    spec = _spec(tmp_path, "a")
    todo, reports = plan(units, spec.build())
    assert [u.name for u in todo] == ["pretrain ab", "pretrain abc", "ft ab x1.0", "ft ab x0.5", "ft abc x1.0",
                                      "ft abc x0.5"] and not reports
    LocalExecutor().run(units[:2], spec)  # only the "ab" units
    todo, reports = plan(units, spec.build())
    assert [u.name for u in todo] == ["pretrain abc", "ft abc x1.0", "ft abc x0.5"]
    assert reports["ft ab x1.0"].cached and reports["pretrain ab"].status == "skipped"


def ctx_first(ctx, tag: str) -> None:
    _toy_result(ctx, "toy_ctx_first", {"tag": tag}, lambda: {"tag": tag})


def test_unit_functions_take_ctx_first_or_by_keyword(tmp_path):
    spec = _spec(tmp_path, "a")
    reports = LocalExecutor().run([Unit("first", "x", ctx_first, ("t",))] + _toy_units(tmp_path)[:1], spec)
    assert [r.status for r in reports] == ["done"] * 3
    assert spec.build().results.load("toy_ctx_first", {"tag": "t"})["result"] == {"tag": "t"}


def test_unit_names_must_be_unique(tmp_path):
    u = _toy_units(tmp_path)[0]
    with pytest.raises(ParameterError, match="unique"):
        plan([u, replace(u, args=("ab", 3.0))], _spec(tmp_path, "a").build())


def test_local_executor_reports_every_unit_and_a_failure_loses_nothing(tmp_path):
    spec = _spec(tmp_path, "a")
    raising = Unit("raises", "finetune", toy_raises, (str(tmp_path / "count"),))
    seen = []
    reports = LocalExecutor().run([raising] + _toy_units(tmp_path), spec, on_done=seen.append)
    by = {r.name: r for r in reports}
    assert by["raises"].status == "failed" and "ZeroDivisionError" in by["raises"].error
    assert [r.status for r in reports if r.name != "raises"] == ["done"] * 6
    assert {r.name for r in seen} == set(by)
    results = _cache_contents(tmp_path / "a" / "results")
    assert len([k for k in results if k.startswith("toy_ft/")]) == 4
    assert sorted(json.loads(v)["result"]["value"] for k, v in results.items() if k.startswith("toy_ft/")) == \
        [10.0, 15.0, 20.0, 30.0]  # 1+2+3+4 times len(tag) (2 or 3), times 0.5 or 1
    again = LocalExecutor().run(_toy_units(tmp_path), spec)  # resumes: nothing runs again
    assert all(r.cached or "not needed" in r.error for r in again)


def test_local_executor_budget_and_ctrl_c(tmp_path):
    spec = _spec(tmp_path, "a")
    reports = LocalExecutor().run(_toy_units(tmp_path), spec, budget_s=0.0)
    assert {r.status for r in reports} == {"skipped"} and not (tmp_path / "a" / "results").exists()
    stop = Unit("stop", "finetune", toy_interrupts)
    reports = LocalExecutor().run([stop] + _toy_units(tmp_path), spec)
    assert {r.error for r in reports} == {"cancelled (Ctrl-C)"}


def test_failed_pretraining_fails_its_users_only(tmp_path):
    units = _toy_units(tmp_path)
    bad = Unit("pretrain bad", "pretrain", toy_raises, (str(tmp_path / "c"),), stage=0, checkpoint=("toy", {"x": 1}))
    user = Unit("ft bad", "finetune", toy_finetune, ("zz", 1.0), needs=(bad,))
    by = {r.name: r for r in LocalExecutor().run(units + [user], _spec(tmp_path, "a"))}
    assert by["pretrain bad"].status == "failed" and by["ft bad"].status == "failed"
    assert "pretrain bad" in by["ft bad"].error
    assert all(by[u.name].status == "done" for u in units)


def test_default_workers_follow_the_machine():
    assert default_workers(cpu_count=16, gpu_memory_gib=79.2) == 8
    assert default_workers(cpu_count=16, gpu_memory_gib=10.0) == 2
    assert default_workers(cpu_count=2, gpu_memory_gib=139.0) == 1
    assert default_workers("cpu", cpu_count=6) == 3
    assert default_workers("cpu", cpu_count=64) == 8


def test_bad_executor_parameters_fail_before_anything_runs():
    with pytest.raises(ParameterError, match="executor.*local"):
        make_executor("slurm")
    with pytest.raises(ParameterError, match="workers"):
        make_executor("workers", workers=0)
    with pytest.raises(ParameterError, match="gpus_per_unit"):
        make_executor("ray", gpus_per_unit=-1)


# --- worker processes and Ray on a smoke sweep: the same cache as in-process --------------------------------------

def _smoke_units() -> list[Unit]:
    """A small smoke sweep with two pretrainings: Fig. 1 at two rates, the representations, the mlp breadth pair."""
    ero = profiles.resolve("erosion", "smoke").config
    rep = profiles.resolve("representations", "smoke")
    mlp = replace(ero, arch="mlp")
    units = [experiment_unit(f"erosion lr={lr} {k}", "finetune", finetune_run, replace(ero, finetune_lr=lr), k == "p")
             for lr in (0.01, 0.1) for k in ("p", "c")]
    units.append(experiment_unit("representations", "representations", representation_experiments, rep.config,
                                 **rep.extras))
    units += [experiment_unit(f"mlp {k}", "finetune", finetune_run, mlp, k == "p") for k in ("p", "c")]
    return units


@pytest.fixture(scope="module")
def in_process(cifar10_slice_npz, tmp_path_factory):
    """The smoke sweep in this process, for the reference cache, with this process set to two torch threads (the
    workers below run one each): the results must not depend on the executor or its threads (issue 21)."""
    tmp = tmp_path_factory.mktemp("in_process")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        reports = LocalExecutor().run(_smoke_units(), _spec(tmp, "local", str(cifar10_slice_npz)))
    finally:
        torch.set_num_threads(threads)
    assert [r.status for r in reports] == ["done"] * len(reports), [r.error for r in reports]
    return _cache_contents(tmp / "local" / "results")


def test_worker_processes_give_the_in_process_cache(in_process, cifar10_slice_npz, tmp_path):
    spec = _spec(tmp_path, "workers", str(cifar10_slice_npz))
    reports = WorkerExecutor(2).run(_smoke_units(), spec)
    assert [r.status for r in reports] == ["done"] * 9, [r.error for r in reports]
    assert {r.host for r in reports} and all(r.device.startswith("cpu") for r in reports)
    got = _cache_contents(tmp_path / "workers" / "results")
    assert len(got) == len(in_process) == 9 and got == in_process  # 7 units + 2 pretraining entries
    # each pretraining ran once, before its users: one checkpoint each, no temporary files
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "workers" / "checkpoints").iterdir()) == ["pretrain"] * 2


def test_a_dead_worker_process_is_reported_and_the_rest_go_on(tmp_path):
    dies = Unit("dies", "finetune", toy_dies_once, (str(tmp_path / "marker"),))
    reports = {r.name: r for r in WorkerExecutor(1, max_retries=0).run([dies] + _toy_units(tmp_path),
                                                                       _spec(tmp_path, "w"))}
    assert reports["dies"].status == "failed" and "died" in reports["dies"].error
    assert all(r.status == "done" for n, r in reports.items() if n != "dies")
    assert len(list((tmp_path / "w" / "results" / "toy_ft").glob("*.json"))) == 4


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import this test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_in_process_cache(ray_local, in_process, cifar10_slice_npz, tmp_path):
    spec = _spec(tmp_path, "ray", str(cifar10_slice_npz))
    reports = RayExecutor().run(_smoke_units(), spec)
    assert [r.status for r in reports] == ["done"] * 9, [r.error for r in reports]
    got = _cache_contents(tmp_path / "ray" / "results")
    assert got == in_process
    for p in (tmp_path / "ray" / "results").rglob("*.json"):  # each unit's own provenance, with its worker
        prov = json.loads(p.read_text())["provenance"]
        assert prov["executor"] == "ray" and prov["worker_host"] and prov["worker_device"].startswith("cpu")
    # the checkpoints came back through the object store into the driver's cache, and load safely
    ckpts = CheckpointCache(tmp_path / "ray" / "checkpoints")
    for u in executors.all_units(_smoke_units())[:2]:
        assert ckpts.load(*u.checkpoint)["state_dict"]
    again = RayExecutor().run(_smoke_units(), spec)  # resumes from the driver's cache: nothing is sent to Ray
    assert all(r.cached or "not needed" in r.error for r in again)


def test_ray_retries_a_raising_unit_then_reports_it_and_loses_nothing(ray_local, tmp_path):
    counter = tmp_path / "attempts"
    raising = Unit("raises", "finetune", toy_raises, (str(counter),))
    reports = {r.name: r for r in RayExecutor(max_retries=2).run(_toy_units(tmp_path) + [raising],
                                                                  _spec(tmp_path, "r"))}
    assert counter.read_text() == "xxx"  # the first try and two retries
    assert reports["raises"].status == "failed" and "ZeroDivisionError" in reports["raises"].error
    assert all(r.status == "done" for n, r in reports.items() if n != "raises")
    values = sorted(json.loads(p.read_text())["result"]["value"]
                    for p in (tmp_path / "r" / "results" / "toy_ft").glob("*.json"))
    assert values == [10.0, 15.0, 20.0, 30.0]  # both checkpoints reached the workers through the object store


def test_ray_workers_keep_no_checkpoint_between_runs(ray_local, tmp_path):
    """A checkpoint's key does not name the data it was trained on: a worker must use only what the driver sends."""
    RayExecutor().run(_toy_units(tmp_path), _spec(tmp_path, "first"))
    RayExecutor().run(_toy_units(tmp_path, mult=10.0), _spec(tmp_path, "second"))  # a fresh driver cache
    values = sorted(json.loads(p.read_text())["result"]["value"]
                    for p in (tmp_path / "second" / "results" / "toy_ft").glob("*.json"))
    assert values == [100.0, 150.0, 200.0, 300.0]


def test_ray_retries_a_unit_whose_worker_was_killed(ray_local, tmp_path):
    marker = tmp_path / "marker"
    dies = Unit("dies", "finetune", toy_dies_once, (str(marker),))
    reports = {r.name: r for r in RayExecutor(max_retries=2).run([dies] + _toy_units(tmp_path)[:1],
                                                                  _spec(tmp_path, "k"))}
    assert marker.read_text() == "died"  # the first attempt did die
    assert reports["dies"].status == "done" and reports["ft ab x1.0"].status == "done"
    entry = json.loads(next((tmp_path / "k" / "results" / "toy_die").glob("*.json")).read_text())
    assert entry["result"] == {"survived": True}


def test_context_spec_rebuilds_the_context(tmp_path):
    ctx = Context(device="cpu", results=ResultCache(tmp_path / "r"), checkpoints=CheckpointCache(tmp_path / "c"),
                  data_root="/data")
    spec = ContextSpec.of(ctx)
    again = spec.build()
    assert (again.results.root, again.checkpoints.root, again.data_root, again.device) == \
        (ctx.results.root, ctx.checkpoints.root, "/data", "cpu")
