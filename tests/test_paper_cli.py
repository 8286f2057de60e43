"""The GPU-side entry points, exercised on CPU: the budgeted paper runner and the self-check (the benchmark:
tests/test_bench.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest
import torch

from erosion_utils.cache import ResultCache
from erosion_utils.executors import all_units
from erosion_utils.experiments import CHAPTERS, Context
from erosion_utils.paper import paper_units, run_paper
from erosion_utils.profiles import resolve


def test_paper_units_cover_every_profile_result_in_priority_order():
    units = paper_units("smoke")
    names = [u.name for u in units]
    pretrain = [u for u in units if u.stage == 0]
    assert pretrain == units[:len(pretrain)] and {u.kind for u in pretrain} == {"pretrain"}
    assert {u.checkpoint[1]["arch"] for u in pretrain} == {"resnet18", "mlp"}  # the breadth sweep adds the mlp
    rest = units[len(pretrain):]
    assert rest[0].name == "erosion lr=0.01 pattern seed 0"
    assert len(names) == len(set(names))
    for u in rest:  # every unit names the pretraining it reads, and that pretraining is listed first
        assert u.stage == 1 and len(u.needs) == 1 and u.needs[0] in pretrain
        assert u.needs[0].checkpoint[1] == u.args[0].pretrain_params()


def test_paper_units_follow_the_chapter_registry():
    """Every chapter of the registry contributes its own units, chapters by their paper_rank (erosion, breadth, the
    mechanism, mitigation, representations: what decides most first), each chapter's own order kept; a unit shared
    by two chapters appears once."""
    names = [u.name for u in paper_units("paper") if u.stage == 1]
    expected = []
    for name, chapter in sorted(CHAPTERS.items(), key=lambda kv: kv[1].paper_rank):
        run = resolve(name, "paper")
        expected += [u.name for u in chapter.units(run.config, run.extras) if u.name not in expected]
    assert names == expected
    assert names[:12] == [f"erosion lr={lr} {k} seed {s}" for s in (0, 1, 2) for lr in (0.01, 0.1)
                          for k in ("pattern", "control")]
    breadth = [n for n in names if n.startswith("breadth ")]
    assert names[12:12 + len(breadth)] == breadth and len(breadth) == 52
    assert names[12 + len(breadth)].startswith("mechanism confirm_map")
    assert names[-2:] == ["representations lr=0.01", "representations lr=0.1"]


def test_dry_run_lists_pending_units_with_estimated_gpu_seconds(tmp_path):
    from erosion_utils.paper import dry_run, estimate_seconds, epoch_seconds

    ctx = Context(device="cpu", results=ResultCache(tmp_path / "results"), compute=False)
    rows = dry_run(ctx, "smoke")
    assert [r["name"] for r in rows] == [u.name for u in all_units(paper_units("smoke"))]  # nothing cached
    paper = dry_run(ctx, "paper")
    assert len(paper) == len(all_units(paper_units("paper"))) and all(r["estimated_gpu_s"] > 1 for r in paper)
    assert epoch_seconds(tmp_path / "results") == 4.0  # no committed GPU result: the stated fallback
    pair = next(u for u in paper_units("paper") if getattr(u.fn, "__name__", "") == "compute_mechanism_pair")
    single = next(u for u in paper_units("paper") if u.kind == "finetune" and u.fn.__name__ == "finetune_run")
    assert estimate_seconds(pair, 4.0) == pytest.approx(2 * 4.0 * pair.args[0].finetune_epochs)
    assert estimate_seconds(single, 4.0) == pytest.approx(4.0 * single.args[0].finetune_epochs)


def test_zero_budget_skips_everything_but_still_reports(cpu_context, tmp_path):
    report = run_paper(cpu_context, 0.0, tmp_path / "out", "smoke", log=lambda _: None)
    assert report["units"] and all(u["status"] == "skipped" for u in report["units"])
    assert json.loads((tmp_path / "out" / "paper_run.json").read_text())["budget_s"] == 0.0
    assert not list(cpu_context.results.root.rglob("*.json"))


def test_smoke_paper_run_caches_every_unit_and_packs_them(cpu_context, tmp_path):
    logs: list[str] = []
    report = run_paper(cpu_context, 600.0, tmp_path / "out", "smoke", log=logs.append)
    assert all(u["status"] == "done" for u in report["units"]), logs
    with tarfile.open(tmp_path / "out" / "results.tar.gz") as tar:
        packed = {m.name for m in tar.getmembers() if m.name.endswith(".json")}
    on_disk = {f"results/{p.relative_to(cpu_context.results.root)}" for p in cpu_context.results.root.rglob("*.json")}
    assert packed == on_disk and any("representations/" in n for n in packed)
    again = run_paper(cpu_context, 600.0, tmp_path / "out2", "smoke", log=lambda _: None)  # resumes: all cached
    assert sum(u["seconds"] for u in again["units"]) == 0.0
    assert all(u.get("cached") for u in again["units"] if u["kind"] != "pretrain")
    assert all(u["status"] == "skipped" and "not needed" in u["error"]  # nothing needs the pretrained weights
               for u in again["units"] if u["kind"] == "pretrain")
    assert len(report["units"]) == len(again["units"]) == len(paper_units("smoke"))


def test_selfcheck_command_runs_on_cpu():
    out = subprocess.run([sys.executable, "-m", "erosion_utils", "selfcheck", "--device", "cpu", "--archs", "mlp"],
                         capture_output=True, text=True, timeout=300, env={"EROSION_PROGRESS": "0",
                                                                           "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "mlp: 4 evals" in out.stdout and "4 layers" in out.stdout


def test_context_for_paper_profile_computes_only_with_cuda():
    assert Context.for_profile("smoke").compute
    assert Context.for_profile("paper").compute is torch.cuda.is_available()


def test_paper_profile_on_cpu_trains_nothing_and_shows_what_is_missing(tmp_path, monkeypatch):
    """Without CUDA the paper profile never trains: the page renders, listing the missing results (issue 9)."""
    import pytest

    from erosion_utils import runner

    if torch.cuda.is_available():
        pytest.skip("with CUDA the paper profile computes")
    monkeypatch.setenv("EROSION_RESULTS", str(tmp_path / "empty-results"))
    monkeypatch.setenv("EROSION_CHECKPOINTS", str(tmp_path / "checkpoints"))
    out = runner.execute("01_erosion", {"profile": "paper", "finetune_lrs": [0.05]}, tmp_path)
    text = out.read_text()
    assert "erosion-missing" in text and "Traceback" not in text
    assert not list((tmp_path / "empty-results").rglob("*.json"))
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))


def test_paper_dry_run_command_lists_units_and_runs_nothing(tmp_path):
    env = {**__import__("os").environ, "EROSION_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-m", "erosion_utils", "paper", "--dry-run", "--profile", "smoke",
                          "--results", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "ck")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith(f"{len(all_units(paper_units('smoke')))} units not cached")
    assert " s  pretrain " in lines[0] and not (tmp_path / "results").exists()
