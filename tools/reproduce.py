"""Recompute committed fast-path fine-tuning results and compare them with the committed files, to the bit: the check
that a change meant to be exact (a faster evaluation, a refactor) still reproduces what the fast path computed before.

    .venv/bin/python tools/reproduce.py [--sample N] [--seed S] [--eval-dtype bfloat16]

It draws ``N`` committed ``results/finetune`` entries computed on the fast path (``fast_path: true``) whose pretrained
network is in the local checkpoint cache (``.cache/checkpoints``, not committed: it holds the networks the sweeps on
this machine trained), at least one with a dense monitor and one without where there are such entries; recomputes
each in a temporary cache (the committed files are only read) and says whether the result equals the committed one
exactly (the JSON of every record). It exits with 1 when one differs, with 2 when there is nothing to check.

``--eval-dtype bfloat16`` recomputes the same entries evaluating in bf16 (``eval_dtype``: a new configuration, not
one meant to be exact) and measures what that changes at the chapters' own configurations: the training must be the
same to the bit (evaluation draws no random numbers and changes no weight), and every evaluation and monitor record
is compared with the committed float32 one (the largest change of an accuracy or follow rate, the largest relative
change of a monitor loss), against ``tests/test_fast_path.py``'s tolerance (0.01, 1%). It exits with 1 when the
training differs or a change exceeds the tolerance. ``--json PATH`` (a new file) keeps the comparison, with
provenance: ``results/bf16_eval_check.json`` is ``--sample 12 --seed 1 --eval-dtype bfloat16``.

Exact agreement is expected only on the machine kind and thread count that computed the results (other CPUs run other
kernels); the entries record ``device`` and ``torch`` in their provenance. Not part of ``make test`` (about 10 s a
run on one core).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("EROSION_PROGRESS", "0")

from erosion_utils.cache import (DEFAULT_CHECKPOINTS, CheckpointCache, ResultCache, atomic_write_bytes,  # noqa: E402
                                 provenance)
from erosion_utils.experiments.core import Context, cpu_threads, finetune_run, split_config  # noqa: E402


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


ACC_TOLERANCE, LOSS_TOLERANCE = 0.01, 0.01  # tests/test_fast_path.py's stated tolerance (loss: relative)
RATES = ("clean_acc", "matched_acc", "mismatched_acc", "follow_rate")
TRAINING = ("step", "epoch", "train_loss", "train_loss_max", "weight_distance", "weight_norm", "batch_loss_max",
            "grad_norm_max")  # what the training alone decides


def recompute(entry: dict, checkpoints: Path, eval_dtype: str = "float32") -> tuple[dict, float]:
    """One committed entry recomputed in a temporary cache (evaluating in ``eval_dtype``): its result, the seconds."""
    cfg, extra = split_config(entry["params"])
    cfg = replace(cfg, eval_dtype=eval_dtype)
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "checkpoints"
        ck.mkdir()
        source = CheckpointCache(checkpoints).path("pretrain", cfg.pretrain_params())
        shutil.copy(source, ck / source.name)
        ctx = Context(device="cpu", results=ResultCache(Path(tmp) / "results"), checkpoints=CheckpointCache(ck))
        start = time.perf_counter()
        got = finetune_run(cfg, extra["patterned"], ctx)["result"]
        seconds = time.perf_counter() - start
    return json.loads(json.dumps(got)), seconds


def _same(a, b) -> bool:
    """Equal, counting two NaNs (a loss before the first step) as equal."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _largest_change(pairs: list[tuple[dict, dict]]) -> float:
    """The largest absolute change of a rate over record pairs, rounded to 6 digits (the rates are stored as float32
    shares of whole images: two images of 200 read 0.0100000x)."""
    return round(max((abs(a[k] - b[k]) for a, b in pairs for k in RATES if k in a), default=0.0), 6)


def changes(committed: dict, got: dict) -> dict:
    """What another evaluation precision changed between two results of one run: whether the training records are
    the same (``training_same``), the largest absolute change of a rate over the test-view evaluations (``rate``) and
    over the monitor's (``monitor_rate``, on fewer images), and the largest relative change of a monitor loss
    (``loss``)."""
    views = list(zip(committed["records"], got["records"]))
    monitor = list(zip(committed.get("monitor", []), got.get("monitor", [])))
    same = (len(committed["records"]) == len(got["records"])
            and len(committed.get("monitor", [])) == len(got.get("monitor", []))
            and all(_same(a.get(k), b.get(k)) for a, b in views + monitor for k in TRAINING))
    loss = max((abs(a[k] - b[k]) / abs(a[k]) for a, b in monitor for k in ("loss_clean", "loss_patterned")
                if a[k]), default=0.0)
    return {"training_same": same, "rate": _largest_change(views), "monitor_rate": _largest_change(monitor),
            "loss": loss}


def reproduce(entry: dict, checkpoints: Path) -> tuple[bool, float]:
    """Recompute one entry in a temporary cache; whether it equals the committed result exactly, and the seconds."""
    got, seconds = recompute(entry, checkpoints)
    return got == entry["result"], seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=int, default=6, help="how many committed entries to recompute (default 6)")
    p.add_argument("--seed", type=int, default=0, help="draws the entries (default 0)")
    p.add_argument("--eval-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: measure what evaluating in bf16 changes instead (default float32: exact check)")
    p.add_argument("--json", help="with --eval-dtype bfloat16: write the comparison to this new file")
    args = p.parse_args(argv)
    out = Path(args.json).resolve() if args.json else None
    if out is not None and (out.exists() or args.eval_dtype == "float32"):
        p.error(f"--json {out}: " + ("exists (never overwritten)" if out.exists() else "only with --eval-dtype"))
    if args.sample < 1:
        p.error(f"--sample={args.sample} must be at least 1")
    found = candidates(REPO / "results", Path(DEFAULT_CHECKPOINTS))
    if not found:
        print(f"nothing to check: no committed fast-path entry has its pretrained network in {DEFAULT_CHECKPOINTS}")
        return 2
    chosen = pick(found, args.sample, args.seed)
    if args.eval_dtype != "float32":
        command = "tools/reproduce.py " + " ".join(sys.argv[1:] if argv is None else argv)
        return compare_precision(chosen, args.eval_dtype, len(found), out, command)
    same = 0
    for path, entry in chosen:
        ok, seconds = reproduce(entry, Path(DEFAULT_CHECKPOINTS))
        same += ok
        params = entry["params"]
        print(f"{path.name}  lr {params['finetune_lr']:<6} batch {params['finetune_batch_size']:<4} "
              f"monitor {params.get('monitor_per_class', 0):<3} {'identical' if ok else 'DIFFERENT'}  {seconds:.1f} s",
              flush=True)
    print(f"{same} of {len(chosen)} recomputed entries identical to the committed ones "
          f"({len(found)} committed fast-path entries have a local pretrained network)")
    return 0 if same == len(chosen) else 1


def compare_precision(chosen: list[tuple[Path, dict]], eval_dtype: str, n_found: int,
                      out: Path | None = None, command: str = "") -> int:
    """Recompute ``chosen`` evaluating in ``eval_dtype``; print each entry's :func:`changes`, the largest, and the
    time against the committed run's (and, given ``out``, write them there as JSON with provenance); 0 when the
    training is the same and every change is within the tolerance."""
    worst = {"rate": 0.0, "monitor_rate": 0.0, "loss": 0.0}
    ok = True
    rows = []
    start = time.perf_counter()
    for path, entry in chosen:
        got, seconds = recompute(entry, Path(DEFAULT_CHECKPOINTS), eval_dtype)
        c = changes(entry["result"], got)
        ok &= (c["training_same"] and max(c["rate"], c["monitor_rate"]) <= ACC_TOLERANCE
               and c["loss"] <= LOSS_TOLERANCE)
        worst = {k: max(worst[k], c[k]) for k in worst}
        params = entry["params"]
        rows.append({"file": f"results/finetune/{path.name}", "finetune_lr": params["finetune_lr"],
                     "finetune_batch_size": params["finetune_batch_size"],
                     "monitor_per_class": params.get("monitor_per_class", 0), **c, "seconds": round(seconds, 1)})
        print(f"{path.name}  lr {params['finetune_lr']:<6} batch {params['finetune_batch_size']:<4} "
              f"monitor {params.get('monitor_per_class', 0):<3} training {'same' if c['training_same'] else 'DIFFERS'}"
              f"  largest rate change: test views {c['rate']:.4f}, monitor {c['monitor_rate']:.4f}  monitor loss "
              f"change {100 * c['loss']:.3f}%  {seconds:.1f} s (committed {entry['provenance']['wall_time_s']:.1f} s)",
              flush=True)
    print(f"{len(chosen)} entries recomputed in {eval_dtype} ({n_found} committed fast-path entries have a local "
          f"pretrained network): largest rate change {worst['rate']:.4f} on the test views and "
          f"{worst['monitor_rate']:.4f} on the monitor (tolerance {ACC_TOLERANCE}), largest monitor loss change "
          f"{100 * worst['loss']:.3f}% (tolerance {100 * LOSS_TOLERANCE:.0f}%): "
          f"{'within' if ok else 'NOT within'} the tolerance")
    if out is not None:
        with cpu_threads("cpu"):  # the thread count the runs computed on, as their provenance names it
            prov = provenance(0, time.perf_counter() - start, "cpu")
        result = {"provenance": prov, "command": command,
                  "eval_dtype": eval_dtype, "tolerance": {"rate": ACC_TOLERANCE, "loss_relative": LOSS_TOLERANCE},
                  "candidates": n_found, "entries": rows, "largest": worst, "within_tolerance": ok}
        atomic_write_bytes(out, json.dumps(result, indent=1).encode())
        print(f"written: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
