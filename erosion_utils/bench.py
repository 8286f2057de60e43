"""Training throughput of ResNet-18 fine-tuning, in one run on one device, at each batch size:

- ``naive_dataloader``: a torchvision ``DataLoader`` loop (per-image ``ToTensor``/``Normalize``, float32, batches
  copied to the device);
- ``eager``: our loop (uint8 data resident on the device; on CUDA bf16 autocast and channels_last);
- ``graphed``: the same step captured as a CUDA graph (:mod:`erosion_utils.graphs`; CUDA only);
- ``workers``: ``N`` processes running our loop at once (graphed where available), images/s summed over them.

:func:`graphs_selfcheck` (``python -m erosion_utils graphs``) compares 50 graphed steps with eager ones on a GPU.

``python -m erosion_utils bench --cpu-profile`` (:func:`run_cpu_bench`) times a whole cpu-profile fine-tuning run and
one evaluation pass on one CPU thread, on the reference path and on the fast path (``fast_path``: channels-last
training with bf16 autocast as on CUDA, batch norm folded for a float32 evaluation, one batched pass over the three
test views, normalised once per run), and on the fast path evaluating in bf16 (``fast-bf16``: ``eval_dtype``
``bfloat16``, as CUDA evaluates).

Each variant trains a fresh copy of the same network on the same images, after a short warm-up that is not timed.
"""
from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms as T

from .cache import dirty_files, provenance
from .data import ImageData
from .experiments.core import (Context, cpu_threads, eval_views, load_data, make_evaluator, new_model,
                               patterned_train_set)
from .graphs import TrainStep, compare_trajectories, graphs_available
from .models import build_model
from .profiles import resolve
from .train import eval_steps, resolve_device, train, with_normalization
from .validation import check_number


class _NaiveCIFAR(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std):
        self.x = x.permute(0, 2, 3, 1).numpy()  # HWC uint8, as torchvision's CIFAR10 stores it
        self.y = y.tolist()
        self.transform = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_loop(model: torch.nn.Module, data: ImageData, n: int, batch_size: int, device: torch.device,
               loader_workers: int, lr: float = 0.05) -> float:
    """Seconds for one epoch of ``n`` images through a torchvision DataLoader (float32, no autocast)."""
    mean, std = data.channel_stats()
    loader = torch.utils.data.DataLoader(_NaiveCIFAR(data.x_train[:n], data.y_train[:n], mean, std),
                                         batch_size=batch_size, shuffle=True, num_workers=loader_workers,
                                         drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    _sync(device)
    start = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - start


def our_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int,
             graphed: bool, seed: int = 0, warmup: int = 5, lr: float = 0.05, ready=None) -> float:
    """Seconds for ``steps`` training steps of our loop, data on the device, after ``warmup`` untimed steps (which
    include the graph's capture) and a call of ``ready()`` (the concurrent workers wait for each other there)."""
    device = x.device
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step = TrainStep(model, lr, enabled=graphed)
    gen = torch.Generator().manual_seed(seed)
    loss_sum = torch.zeros((), device=device)

    def run(k: int) -> None:
        nonlocal loss_sum
        for _ in range(k):
            idx = torch.randint(0, len(x), (batch_size,), generator=gen).to(device)
            xb = x[idx]
            if device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            step.set_lr(lr)
            loss_sum += step(xb, y[idx])

    run(warmup)
    _sync(device)
    if ready is not None:
        ready()
    start = time.perf_counter()
    run(steps)
    _sync(device)
    return time.perf_counter() - start


def _worker(rank: int, arch: str, width: float, num_classes: int, mean, std, x, y, batch_size: int, steps: int,
            graphed: bool, device: str, threads: int, barrier, queue) -> None:
    """One of the concurrent processes: build, warm up (and capture), wait for the others, time ``steps`` steps."""
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = with_normalization(build_model(arch, num_classes, width), mean, std).to(dev)
    x, y = x.to(dev), y.to(dev)
    starts = []
    seconds = our_loop(model, x, y, batch_size, steps, graphed, seed=rank,
                       ready=lambda: (barrier.wait(), starts.append(time.monotonic())))
    queue.put((rank, starts[0], starts[0] + seconds))


def concurrent_rate(n_workers: int, arch: str, width: float, data: ImageData, n_images: int, batch_size: int,
                    steps: int, graphed: bool, device: str) -> float:
    """Images per second summed over ``n_workers`` processes training at once (spawned; each times ``steps``
    steps after a common start, the wall time runs from the first start to the last finish)."""
    import multiprocessing as mp
    import os

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n_workers), ctx.Queue()
    mean, std = data.channel_stats()
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    args = (arch, width, data.num_classes, mean, std, data.x_train[:n_images].clone(),
            data.y_train[:n_images].clone(), batch_size, steps, graphed, device, threads, barrier, queue)
    procs = [ctx.Process(target=_worker, args=(r, *args)) for r in range(n_workers)]
    for p in procs:
        p.start()
    try:
        times = [queue.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    wall = max(t[2] for t in times) - min(t[1] for t in times)
    return n_workers * steps * batch_size / wall


def run_bench(data: ImageData, arch: str = "resnet18", width: float = 1.0, n_images: int = 10000,
              batch_sizes: tuple[int, ...] = (128, 512), device: str = "auto", loader_workers: int = 4,
              n_workers: int = 4, graphs: bool | None = None, seed: int = 0) -> dict:
    """Every variant at every batch size (one epoch of ``n_images`` each); rows of images/s and the speed-up over
    our eager loop at the same batch size, with the provenance of the run and the issue's targets, as measured."""
    for b in batch_sizes:
        check_number("batch_size", b, low=1, high=n_images, integer=True)
    check_number("n_images", n_images, low=max(batch_sizes), high=len(data.x_train), integer=True)
    check_number("n_workers", n_workers, low=0, integer=True)
    dev = resolve_device(device)
    graphed = graphs_available(dev, graphs)
    mean, std = data.channel_stats()
    torch.manual_seed(seed)
    base = build_model(arch, data.num_classes, width)
    x, y = data.x_train[:n_images].to(dev), data.y_train[:n_images].to(dev)
    start = time.perf_counter()
    rows = []
    for b in batch_sizes:
        steps = max(1, n_images // b)
        rates = {}
        naive_loop(copy.deepcopy(base).to(dev), data, 4 * b, b, dev, loader_workers)  # warm-up
        rates["naive_dataloader"] = steps * b / naive_loop(copy.deepcopy(base).to(dev), data, n_images, b, dev,
                                                           loader_workers)
        rates["eager"] = steps * b / our_loop(with_normalization(copy.deepcopy(base), mean, std).to(dev), x, y, b,
                                              steps, graphed=False, seed=seed)
        if graphed:
            rates["graphed"] = steps * b / our_loop(with_normalization(copy.deepcopy(base), mean, std).to(dev), x,
                                                    y, b, steps, graphed=True, seed=seed)
        if n_workers > 0:
            rates["workers"] = concurrent_rate(n_workers, arch, width, data, n_images, b, steps, graphed, str(dev))
        for variant, rate in rates.items():
            row = {"variant": variant, "batch_size": b, "images_per_s": round(rate, 1),
                   "speedup_vs_eager": round(rate / rates["eager"], 3),
                   "ms_per_step": round(1000 * b / rate, 3)}
            if variant == "workers":
                row.update(workers=n_workers, step="graphed" if graphed else "eager")
            rows.append(row)
    return {"provenance": provenance(seed, time.perf_counter() - start, dev), "arch": arch, "width": width,
            "n_images": n_images, "loader_workers": loader_workers, "graphs": graphed, "rows": rows,
            "targets": targets(rows)}


def targets(rows: list[dict]) -> dict:
    """The issue's targets, as measured: graphed >= 2.5x eager at batch 128, workers >= 4x single-process eager,
    a graphed batch-128 step <= 3 ms (None where the variant was not run)."""
    at = {(r["variant"], r["batch_size"]): r for r in rows}
    graphed, workers = at.get(("graphed", 128)), at.get(("workers", 128))
    out = {"graphed_vs_eager_b128": graphed and graphed["speedup_vs_eager"],
           "workers_vs_eager_b128": workers and workers["speedup_vs_eager"],
           "graphed_ms_per_step_b128": graphed and graphed["ms_per_step"]}
    out["met"] = {"graphed_ge_2.5x": None if graphed is None else graphed["speedup_vs_eager"] >= 2.5,
                  "workers_ge_4x": None if workers is None else workers["speedup_vs_eager"] >= 4.0,
                  "step_le_3ms": None if graphed is None else graphed["ms_per_step"] <= 3.0}
    return out


def format_rows(result: dict) -> str:
    lines = [f"{'variant':<18}{'batch':>6}{'img/s':>12}{'ms/step':>10}{'vs eager':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['variant']:<18}{r['batch_size']:>6}{r['images_per_s']:>12.0f}{r['ms_per_step']:>10.2f}"
                     f"{r['speedup_vs_eager']:>9.2f}x")
    lines.append(f"on {result['provenance']['device']}; targets: {result['targets']}")
    return "\n".join(lines)


def graphs_selfcheck() -> int:
    """``python -m erosion_utils graphs``: the 50-step eager-vs-graphed check on this machine's GPU (no pytest)."""
    if not torch.cuda.is_available():
        print("no CUDA device: the graphed path is not used here (eager only); nothing to compare")
        return 0
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4096, 3, 32, 32), generator=gen, dtype=torch.uint8).cuda()
    y = torch.randint(0, 10, (4096,), generator=gen).cuda()
    res = compare_trajectories(lambda: with_normalization(build_model("resnet18", 10, 1.0), [0.5] * 3, [0.25] * 3),
                               x, y, steps=50, batch_size=128)
    ok = res["graphed_is_graphed"] and res["max_relative_difference"] < 0.05
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, list)} | {
        "first_losses": [res["eager"][:3], res["graphed"][:3]], "last_losses": [res["eager"][-3:], res["graphed"][-3:]],
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "ok": ok}, indent=1))
    return 0 if ok else 1


def _timed_in_turns(fns: dict, repeats: int) -> dict:
    """``repeats`` timings of each function of ``fns`` (in round order), taken in turns after one untimed call of
    each: every round calls each function once, in an order reversed from one round to the next, so that a machine
    that slows down or speeds up during the benchmark affects every variant alike, and two variants timed in the same
    round pair."""
    for fn in fns.values():
        fn()
    times: dict = {name: [] for name in fns}
    for round_ in range(repeats):
        for name in (list(fns) if round_ % 2 == 0 else list(fns)[::-1]):
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def speedup_verdict(by_round: list[float], target: float) -> str:
    """``met`` when the speed-up of every round (reference time over fast time, paired by round) reaches ``target``,
    ``not met`` when none does, ``inconclusive`` otherwise: a sign test on the rounds (were the median speed-up at the
    target, all of 5 rounds would fall on one side of it with probability 2/32), not a bare median at a threshold."""
    if all(r >= target for r in by_round):
        return "met"
    if all(r < target for r in by_round):
        return "not met"
    return "inconclusive"


RUN_TARGET = 2.5  # issue 23: a whole cpu-profile run at least this much faster on the fast path
DENSE_TARGET = 1.5  # issue 23: 25 evaluations on the fast path cost at most this many times the reference's 12
# the paths the CPU benchmark times: (fast, eval_dtype); each fast path is judged against issue 23's targets
PATHS = {"reference": (False, "float32"), "fast": (True, "float32"), "fast-bf16": (True, "bfloat16")}
FAST_PATHS = ("fast", "fast-bf16")


def run_cpu_bench(repeats: int = 5, lr: float = 0.1, dense_evals: int = 25, data_root: str | None = None) -> dict:
    """The cpu profile's fine-tuning run (the erosion chapter's configuration at ``lr``: VGG-11 at width 0.25,
    300 training and 100 test images per class, batch 64, 3 epochs, 12 evaluations of the three test views) on one
    thread, on the reference path and each of :data:`FAST_PATHS`, from a freshly initialised network (the weights
    do not change the cost); one evaluation pass alone (on a fast path, of an evaluator that has prepared its images:
    a run's time includes preparing them); and each fast path with ``dense_evals`` evaluations. Median of
    ``repeats`` rounds, the variants timed in turns (:func:`_timed_in_turns`); each fast path's targets as
    :func:`path_targets` judges them (``targets``: the fast path's; ``targets["fast-bf16"]``: with bf16
    evaluation)."""
    check_number("repeats", repeats, low=1, integer=True)
    check_number("dense_evals", dense_evals, low=2, integer=True)
    cfg = resolve("erosion", "cpu").config
    cfg = replace(cfg, finetune_lr=lr)
    ctx = Context(device="cpu", data_root=data_root)
    data = load_data(cfg, ctx)
    views = eval_views(cfg, data, torch.device("cpu"))
    x, y = patterned_train_set(cfg, data)
    ft = cfg.finetune_config()
    total = max(1, round(ft.epochs * max(1, len(x) // ft.batch_size)))
    eval_images = sum(len(v[0]) for v in views.values())
    dirty = set(dirty_files())
    start = time.perf_counter()

    dense_at = next(eval_steps(total, n) for n in range(dense_evals, 10 * dense_evals)
                    if len(eval_steps(total, n)) >= dense_evals)

    def finetune(path: str, at: list[int]):  # a run's whole cost: its evaluator prepares its images anew
        model = new_model(cfg, data)
        fast, dtype = PATHS[path]
        return lambda: train(copy.deepcopy(model), x, y, ft, 1, eval_at=at,
                             eval_fn=make_evaluator(views, fast=fast, eval_dtype=dtype), desc="bench", fast=fast)

    def evaluation(path: str):  # one pass of a run's evaluator (the fast path's images already prepared)
        model = new_model(cfg, data).eval()
        fast, dtype = PATHS[path]
        evaluate = make_evaluator(views, fast=fast, eval_dtype=dtype)
        return lambda: evaluate(model)

    rows = []
    with cpu_threads(torch.device("cpu")):
        usual_at = eval_steps(total, cfg.n_evals)
        n_evals, n_dense = len(usual_at), len(dense_at)
        variants = {("run", "reference"): finetune("reference", usual_at),
                    ("eval", "reference"): evaluation("reference")}
        for path in FAST_PATHS:
            variants.update({("run", path): finetune(path, usual_at), ("eval", path): evaluation(path),
                             ("dense run", path): finetune(path, dense_at)})
        rounds = _timed_in_turns(variants, repeats)
        seconds = {variant: _median(times) for variant, times in rounds.items()}
        work = {"run": total * ft.batch_size + n_evals * eval_images, "eval": eval_images,
                "dense run": total * ft.batch_size + n_dense * eval_images}
        for (what, path), sec in seconds.items():
            ref = seconds.get((what, "reference"), seconds[("run", "reference")])
            rows.append({"what": what, "path": path, "seconds": round(sec, 3),
                         "images_per_s": round(work[what] / sec, 1), "speedup_vs_reference": round(ref / sec, 3)})
        prov = provenance(0, time.perf_counter() - start, torch.device("cpu"))
        threads = torch.get_num_threads()
    judged = {path: path_targets(seconds, rounds, path, n_evals) for path in FAST_PATHS}
    dirty |= set(dirty_files())
    return {"provenance": {**prov, "cpu_model": _cpu_model(), "threads": threads, "dirty_files": sorted(dirty)},
            "config": {"arch": cfg.arch, "width": cfg.width, "train_per_class": cfg.train_per_class,
                       "test_per_class": cfg.test_per_class, "finetune_lr": lr, "batch_size": ft.batch_size,
                       "epochs": ft.epochs, "steps": total, "evaluations": n_evals, "dense_evaluations": n_dense,
                       "images_per_evaluation": eval_images, "initialisation": "random (timing only)",
                       "timing": f"median of {repeats} rounds, the variants timed in turns; the run's speed-up "
                                 f"judged round by round (speedup_verdict)"},
            "rows": rows,
            "rounds": {f"{what} {path}": [round(t, 3) for t in times] for (what, path), times in rounds.items()},
            "targets": {**judged["fast"], "fast-bf16": judged["fast-bf16"]}}


def path_targets(seconds: dict, rounds: dict, path: str, n_evals: int) -> dict:
    """Issue 23's targets for the fast path ``path`` from a benchmark's median ``seconds`` and ``rounds`` (keyed by
    ``(what, path)``): the whole run's speed-up over the reference, round by round and judged by
    :func:`speedup_verdict` against :data:`RUN_TARGET`; and the cost of its dense evaluations (its dense run less its
    usual run's training, i.e. the usual run less ``n_evals`` evaluation passes) over ``n_evals`` reference passes,
    at most :data:`DENSE_TARGET`."""
    by_round = [r / f for r, f in zip(rounds[("run", "reference")], rounds[("run", path)])]
    verdict = speedup_verdict(by_round, RUN_TARGET)
    dense_cost = seconds[("dense run", path)] - (seconds[("run", path)] - n_evals * seconds[("eval", path)])
    dense_ratio = dense_cost / (n_evals * seconds[("eval", "reference")])
    return {"run_speedup": seconds[("run", "reference")] / seconds[("run", path)], "run_speedup_by_round": by_round,
            "run_verdict": verdict, "dense_eval_vs_reference_12": dense_ratio,
            "met": {"run_ge_2.5x": verdict == "met", "dense_eval_le_1.5x": dense_ratio <= DENSE_TARGET}}


def earlier_measurements(old: dict) -> list[dict]:
    """The history to keep when a CPU benchmark replaces ``old`` (a file of :func:`run_cpu_bench`): ``old``'s
    provenance, rows and targets, then the measurements ``old`` kept itself, newest first."""
    return [{k: old[k] for k in ("provenance", "rows", "targets") if k in old}] + old.get("previous", [])


def _cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_cpu_rows(result: dict) -> str:
    lines = [f"{'what':<12}{'path':<11}{'seconds':>9}{'img/s':>10}{'speed-up':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['what']:<12}{r['path']:<11}{r['seconds']:>9.2f}{r['images_per_s']:>10.0f}"
                     f"{r['speedup_vs_reference']:>9.2f}x")
    lines.append(f"on {result['provenance']['cpu_model']}, {result['provenance']['threads']} thread")
    judged = result["targets"]  # the fast path's targets, and each other fast path's under its name
    for path, t in [("fast", judged)] + [(p, judged[p]) for p in FAST_PATHS if p != "fast" and p in judged]:
        by_round = t.get("run_speedup_by_round")
        rounds = (f" ({t['run_verdict']}: {min(by_round):.2f}x to {max(by_round):.2f}x over {len(by_round)} rounds)"
                  if by_round else "")
        lines.append(f"{path}: run {t['run_speedup']:.2f}x (target {RUN_TARGET}x){rounds}, "
                     f"{result['config']['dense_evaluations']} evaluations cost {t['dense_eval_vs_reference_12']:.2f}x "
                     f"the reference's {result['config']['evaluations']} (target at most {DENSE_TARGET}x)")
    return "\n".join(lines)
