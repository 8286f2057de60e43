"""Command line: ``python -m erosion_utils {book,run,params,paper,bench,graphs,selfcheck} ...``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .validation import ParameterError, check_number

REPO = Path(__file__).resolve().parents[1]


def _book(args) -> int:
    from . import runner

    try:
        index = runner.run_all(profile=args.profile)
    except runner.BookFailures as err:
        if err.index is not None:
            print(f"book built: {err.index} (with the previous pages of the chapters that failed, where they exist)")
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"book built: {index}")
    return 0


def _run(args) -> int:
    from . import runner

    params = {**runner.params_file(args.notebook), **runner.parse_assignments(args.p)}
    if args.profile:
        params["profile"] = args.profile
    runner.validate(args.notebook, params)  # fails here, before anything runs
    out = runner.execute(args.notebook, params)
    print(f"executed: {out}")
    if args.no_build:
        return 0
    for name in runner.notebook_names():
        if not (runner.REPO / runner.EXECUTED / f"{name}.ipynb").exists():
            runner.execute(name, runner.params_file(name))
    print(f"book built: {runner.build()}")
    return 0


def _params(args) -> int:
    from . import runner

    rows = runner.describe(args.notebook, args.profile)
    width = max(len(r[0]) for r in rows)
    print(f"{'parameter':<{width}}  {'notebook default':<18}  value under the profile")
    for name, default, value in rows:
        print(f"{name:<{width}}  {default!r:<18}  {value!r}")
    return 0


def _folder(option: str, path: str) -> Path:
    """``path`` as a folder to write into: refused (naming ``option``) when it is a file or cannot be created."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"{option} {folder} is a file: it must name a folder (new or existing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ParameterError(f"{option} {folder}: cannot create the folder ({err.strerror or err})") from None
    return folder


def _paper(args) -> int:
    import torch

    from .cache import CheckpointCache, ResultCache, results_root
    from .executors import make_executor
    from .experiments import Context
    from .paper import dry_run, run_paper

    if args.dry_run:  # what a run would compute, in order, with its estimated GPU seconds; nothing runs
        ctx = Context(device="cpu", results=ResultCache(args.results or str(results_root(args.profile))),
                      checkpoints=CheckpointCache(args.checkpoints), compute=False)
        rows = dry_run(ctx, args.profile)
        for r in rows:
            print(f"{r['estimated_gpu_s']:9.1f} s  {r['name']}")
        total = sum(r["estimated_gpu_s"] for r in rows)
        print(f"{len(rows)} units not cached; about {total:.0f} GPU seconds one after another ({total / 3600:.1f} h; "
              f"the workers executor shares the GPU between processes)")
        return 0
    check_number("--budget-s", args.budget_s, low=0, low_inclusive=False)
    if args.device == "cuda" and args.executor != "ray" and not torch.cuda.is_available():
        raise ParameterError("--device cuda: no CUDA device is available on this machine (torch.cuda.is_available() "
                             "is False); choose one of ['auto', 'cpu'], or --executor ray for a cluster's GPUs")
    executor = make_executor(args.executor, args.workers, args.address, args.gpus_per_unit, args.max_retries)
    out = _folder("--out", args.out)
    results = _folder("--results", args.results or str(results_root(args.profile)))
    ctx = Context(device=args.device, results=ResultCache(results),
                  checkpoints=CheckpointCache(_folder("--checkpoints", args.checkpoints)), data_root=args.data)
    report = run_paper(ctx, args.budget_s, out, args.profile, executor=executor)
    count = {s: sum(u["status"] == s for u in report["units"]) for s in ("done", "failed", "skipped")}
    cached = sum(bool(u.get("cached")) for u in report["units"])
    print(f"paper run ({args.executor}): {count['done'] - cached} computed, {cached} cached, {count['skipped']} "
          f"skipped, {count['failed']} failed, of {len(report['units'])} units in {report['total_s']} s")
    return 0 if count["failed"] == 0 else 1


def _bench(args) -> int:
    from .bench import earlier_measurements, format_cpu_rows, format_rows, run_bench, run_cpu_bench
    from .cache import atomic_write_bytes
    from .data import load_dataset
    from .executors import default_workers
    from .train import resolve_device

    if args.cpu_profile:
        out = Path(args.json) if args.json else REPO / "results" / "bench_cpu.json"
        if out.exists() and not args.overwrite:
            raise ParameterError(f"{out} exists (a committed result is never overwritten): pass --json PATH, or "
                                 f"--overwrite")
        result = run_cpu_bench(args.repeats, data_root=args.data)
        if out.exists():  # --overwrite: the earlier measurements stay in the file, newest first
            result["previous"] = earlier_measurements(json.loads(out.read_text()))
        print(format_cpu_rows(result))
        atomic_write_bytes(out, json.dumps(result, indent=1).encode())
        print(f"written: {out}")
        return 0
    dev = resolve_device(args.device)
    out = Path(args.json) if args.json else None
    if out is None:  # the committed GPU measurement is never overwritten by a CPU run or by accident
        if dev.type != "cuda":
            raise ParameterError("bench on a CPU writes no file under results/: pass --json PATH to keep the result")
        out = REPO / "results" / "bench.json"
    if out.exists() and not args.overwrite:
        raise ParameterError(f"{out} exists (a committed result is never overwritten): pass --json PATH, or "
                             f"--overwrite")
    check_number("--images", args.images, low=1, integer=True)
    for b in args.batch_sizes:
        check_number(f"--batch-sizes item (at most --images {args.images})", b, low=1, high=args.images, integer=True)
    n_workers = default_workers(args.device) if args.workers is None else args.workers
    data = load_dataset(args.dataset, args.data)
    result = run_bench(data, args.arch, args.width, args.images, tuple(args.batch_sizes), args.device,
                       args.loader_workers, n_workers, graphs=False if args.no_graphs else None)
    print(format_rows(result))
    atomic_write_bytes(out, json.dumps(result, indent=1).encode())
    print(f"written: {out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m erosion_utils", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("book", help="execute every notebook (params/*.yaml) and build the Jupyter Book")
    b.add_argument("--profile", choices=["smoke", "cpu", "paper"], help="override every notebook's profile")
    b.set_defaults(func=_book)
    r = sub.add_parser("run", help="rerun one notebook with new parameters, then rebuild the book")
    r.add_argument("notebook", help="e.g. 01_erosion")
    r.add_argument("-p", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter (YAML-typed: 0.1, [0, 1], resnet18); repeatable")
    r.add_argument("--profile", choices=["smoke", "cpu", "paper"])
    r.add_argument("--no-build", action="store_true", help="execute only; do not rebuild the book")
    r.set_defaults(func=_run)
    q = sub.add_parser("params", help="list a notebook's parameters and their defaults")
    q.add_argument("notebook")
    q.add_argument("--profile", choices=["smoke", "cpu", "paper"])
    q.set_defaults(func=_params)
    g = sub.add_parser("paper", help="paper-scale compute (GPU) into the results cache, within a time budget")
    g.add_argument("--budget-s", type=float, default=520.0)
    g.add_argument("--dry-run", action="store_true",
                   help="list the units a run would compute, in order, with their estimated GPU seconds; run nothing")
    g.add_argument("--out", default="paper-out", help="folder for results.tar.gz and paper_run.json")
    g.add_argument("--results", default=None,
                   help="results folder (default: results/; for --profile smoke the ignored .cache/smoke-results/)")
    g.add_argument("--checkpoints", default=str(REPO / ".cache" / "checkpoints"))
    g.add_argument("--data", default=None, help="dataset folder (default: $EROSION_DATA, then the usual places)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--profile", default="paper", choices=["smoke", "cpu", "paper"])
    g.add_argument("--executor", default="local", choices=["local", "workers", "ray"],
                   help="local: in this process; workers: N processes sharing this machine's GPU; ray: a Ray cluster")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per two CPU cores, at most one per 4 GiB of GPU memory, <= 8)")
    g.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    g.add_argument("--gpus-per-unit", type=float, default=None,
                   help="GPUs per Ray task (0.25: four units share a GPU; default 1; CPU-only clusters use CPUs)")
    g.add_argument("--max-retries", type=int, default=2,
                   help="retries of a unit whose worker process was lost (workers, ray) or that raised (ray)")
    g.set_defaults(func=_paper)
    n = sub.add_parser("bench", help="training throughput: DataLoader loop, our eager and graphed loops, N workers")
    n.add_argument("--arch", default="resnet18")
    n.add_argument("--width", type=float, default=1.0)
    n.add_argument("--images", type=int, default=10000, help="images per timed epoch")
    n.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    n.add_argument("--workers", type=int, default=None,
                   help="concurrent processes for the 'workers' row (default: as paper --executor workers; 0: none)")
    n.add_argument("--loader-workers", type=int, default=4, help="DataLoader processes of the naive loop")
    n.add_argument("--no-graphs", action="store_true", help="leave CUDA graphs off (eager only)")
    n.add_argument("--dataset", default="cifar10")
    n.add_argument("--data", default=None)
    n.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    n.add_argument("--json", default=None,
                   help="where to write the result (default on CUDA: results/bench.json; required on a CPU)")
    n.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    n.add_argument("--cpu-profile", action="store_true",
                   help="time a cpu-profile fine-tuning run and an evaluation pass on one CPU thread, reference path "
                        "against fast path (default file: results/bench_cpu.json)")
    n.add_argument("--repeats", type=int, default=5,
                   help="--cpu-profile: rounds, each timing every variant once in turn (the median is kept)")
    n.set_defaults(func=_bench)
    h = sub.add_parser("graphs", help="50 CUDA-graphed training steps against eager ones on this GPU (same losses?)")
    h.set_defaults(func=lambda args: _graphs())
    c = sub.add_parser("selfcheck", help="seconds-long end-to-end check of training and probing on synthetic data")
    c.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    c.add_argument("--archs", nargs="+", default=["resnet18", "vgg19", "mlp"])
    c.set_defaults(func=_selfcheck)
    return p


def _graphs() -> int:
    from .bench import graphs_selfcheck

    return graphs_selfcheck()


def _is_notebook_failure(err: Exception) -> bool:
    try:  # papermill is absent on the GPU machine, where no notebook runs
        from papermill.exceptions import PapermillExecutionError
    except ImportError:
        return False
    return isinstance(err, PapermillExecutionError)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a notebook that failed inside papermill: say why in one line, not a traceback
        if not _is_notebook_failure(err):
            raise
        print(f"error: notebook failed in cell {err.exec_count}: {err.ename}: {err.evalue}", file=sys.stderr)
        return 1


def _selfcheck(args) -> int:
    """A seconds-long end-to-end check of the training, evaluation and probing path on synthetic images."""
    import time

    import torch

    from .data import ImageData
    from .experiments import ErosionConfig, make_evaluator, new_model
    from .patterns import make_codes, stamp, test_views
    from .probes import layer_report
    from .train import TrainConfig, eval_steps, resolve_device, train

    dev = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2048, 3, 32, 32), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (2048,), generator=gen)
    data = ImageData("cifar10", x[:1536], y[:1536], x[1536:], y[1536:], 10, "synthetic")
    for arch in args.archs:
        start = time.perf_counter()
        cfg = ErosionConfig(arch=arch, width=0.25)
        model = new_model(cfg, data).to(dev)
        codes = make_codes(cfg.pattern_spec(), 10)
        views = {k: (a.to(dev), b.to(dev)) for k, (a, b) in test_views(data.x_test, data.y_test, codes, 10, 1).items()}
        xs = stamp(data.x_train, data.y_train, codes)
        recs = train(model, xs.to(dev), data.y_train.to(dev), TrainConfig(epochs=2, lr=0.05, batch_size=128), 0,
                     eval_at=eval_steps(24, 4), eval_fn=make_evaluator(views, views["clean"][1]), desc=arch)
        rows = layer_report(model, (data.x_train[:500], data.y_train[:500]), (data.x_test[:200], data.y_test[:200]),
                            10, (xs[:500], data.y_train[:500]), (views["matched"][0][:200].cpu(), data.y_test[:200]),
                            probe_epochs=2)
        print(f"{arch}: {len(recs)} evals, final {recs[-1]}, {len(rows)} layers, ranks {[r['rank'] for r in rows]}, "
              f"{time.perf_counter() - start:.1f}s on {dev}", flush=True)
    return 0
