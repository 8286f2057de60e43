"""End to end on real CIFAR-10 slices with the ``smoke`` profile, plus the breadth-sweep bookkeeping."""
from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest

from erosion_utils import experiments, profiles
from erosion_utils.cache import CheckpointCache, ResultCache
from erosion_utils.experiments import (PATTERN_FIELDS, CacheMissError, Context, ErosionConfig, breadth_variants,
                                       control_for, erosion_experiment, representation_experiment)
from erosion_utils.validation import ParameterError

METRICS = ("clean_acc", "matched_acc", "mismatched_acc", "follow_rate")


@pytest.fixture(scope="module")
def smoke_ctx(cifar10_slice_npz, tmp_path_factory) -> Context:
    """CPU, fresh caches, data from a slice of the real CIFAR-10 (first 2000 train / 1000 test images)."""
    root = tmp_path_factory.mktemp("smoke_caches")
    return Context(device="cpu", results=ResultCache(root / "results"),
                   checkpoints=CheckpointCache(root / "checkpoints"), data_root=str(cifar10_slice_npz))


@pytest.fixture(scope="module")
def erosion_smoke(smoke_ctx):
    resolved = profiles.resolve("erosion", "smoke")
    runs = erosion_experiment(resolved.config, resolved.extras["seeds"], smoke_ctx)
    return resolved, runs


def test_erosion_records(erosion_smoke):
    resolved, runs = erosion_smoke
    cfg = resolved.config
    assert [r["seed"] for r in runs] == resolved.extras["seeds"] == [0]
    run = runs[0]
    assert set(run) == {"seed", "finetune_lr", "pattern", "control", "pretrain"}
    assert run["finetune_lr"] == cfg.finetune_lr
    for kind in ("pattern", "control"):
        entry = run[kind]
        assert {"params", "provenance", "result"} <= set(entry)
        assert entry["params"]["patterned"] is (kind == "pattern")
        result = entry["result"]
        # smoke: 16 images per class, batch 32 -> 5 steps per epoch, 1 epoch
        assert result["steps_per_epoch"] == 10 * cfg.train_per_class // cfg.finetune_batch_size == 5
        assert result["total_steps"] == 5
        steps = [r["step"] for r in result["records"]]
        assert steps[0] == 0 and steps[-1] == result["total_steps"]
        assert all(a < b for a, b in zip(steps, steps[1:]))
        assert len(steps) <= cfg.n_evals
        for rec in result["records"]:
            for m in METRICS:
                assert 0.0 <= rec[m] <= 1.0
                assert rec[m] * 10 * cfg.test_per_class == pytest.approx(round(rec[m] * 80), abs=1e-4)
    # both runs start from the same pretrained weights: identical step-0 evaluation on the clean view
    assert run["pattern"]["result"]["records"][0]["clean_acc"] == run["control"]["result"]["records"][0]["clean_acc"]
    pretrain = run["pretrain"]["result"]
    assert 0.0 <= pretrain["train_accuracy"] <= 1.0 and 0.0 <= pretrain["test_accuracy"] <= 1.0
    assert pretrain["epochs"] == cfg.pretrain_epochs + pretrain["extra_epochs"]
    assert run["pretrain"]["params"] == cfg.pretrain_params()


def test_erosion_second_call_is_served_from_the_cache(erosion_smoke, smoke_ctx, monkeypatch):
    resolved, first = erosion_smoke

    def no_training(*_args, **_kwargs):
        raise AssertionError("the second call must not train")

    monkeypatch.setattr(experiments.core, "train", no_training)
    monkeypatch.setattr(experiments.core, "train_until_perfect", no_training)
    second = erosion_experiment(resolved.config, resolved.extras["seeds"], smoke_ctx)
    # compare as JSON: the step-0 training loss is NaN, which never equals itself
    assert json.dumps(second, sort_keys=True) == json.dumps(first, sort_keys=True)
    offline = replace(smoke_ctx, compute=False)
    assert json.dumps(erosion_experiment(resolved.config, [0], offline), sort_keys=True) == \
        json.dumps(first, sort_keys=True)
    with pytest.raises(CacheMissError):
        erosion_experiment(resolved.config, [1], offline)


def test_cache_files_written(erosion_smoke, smoke_ctx):
    results = sorted(p.parent.name for p in smoke_ctx.results.root.rglob("*.json"))
    assert [r for r in results if r != "representations"] == ["finetune", "finetune", "pretrain"]
    assert len(list(smoke_ctx.checkpoints.root.glob("pretrain-*.pt"))) == 1
    assert not [p for p in smoke_ctx.results.root.rglob(".*") if p.is_file()], "no temporary files left"


def test_pretrain_summary_with_checkpoint_but_no_result(erosion_smoke, smoke_ctx, tmp_path):
    resolved, _ = erosion_smoke
    ctx = replace(smoke_ctx, results=ResultCache(tmp_path / "fresh_results"))
    summary = experiments.pretrain_summary(resolved.config, ctx)
    assert "train_accuracy" in summary["result"]


def test_representation_experiment_smoke(erosion_smoke, smoke_ctx):
    resolved = profiles.resolve("representations", "smoke")
    assert resolved.config == erosion_smoke[0].config  # shares the pretrained checkpoint
    extras = {k: v for k, v in resolved.extras.items() if k != "finetune_lrs"}
    entry = representation_experiment(resolved.config, smoke_ctx, **extras)
    result = entry["result"]
    taps = result["taps"]
    assert taps[0] == "net.relu" and taps[-1] == "net.avgpool" and len(taps) == 10  # resnet18
    models = [s["model"] for s in result["snapshots"]]
    assert models[0] == "pretrained" and models[-1] == "control"
    assert models.count("pretrained") == 1 and models.count("control") == 1 and models.count("pattern") >= 1
    pattern_steps = [s["step"] for s in result["snapshots"] if s["model"] == "pattern"]
    assert pattern_steps[-1] == result["total_steps"] and pattern_steps == sorted(set(pattern_steps))
    for snap in result["snapshots"]:
        assert [row["layer"] for row in snap["layers"]] == taps
        for row in snap["layers"]:
            assert {"layer", "depth", "relative_depth", "dim", "probe_accuracy", "rank",
                    "pattern_probe_accuracy"} <= set(row)
            assert 0.0 <= row["probe_accuracy"] <= 1.0 and 0.0 <= row["pattern_probe_accuracy"] <= 1.0
            # 4 probe-test images per class: the centred features have rank < 40
            assert 0 <= row["rank"] < 10 * resolved.extras["probe_test_per_class"]
    assert entry["params"]["n_snapshots"] == resolved.extras["n_snapshots"]


# --- breadth sweep bookkeeping (no training) ---------------------------------------------------------------------

def _differing(a: ErosionConfig, b: ErosionConfig) -> set[str]:
    return {f.name for f in fields(ErosionConfig) if getattr(a, f.name) != getattr(b, f.name)}


def test_breadth_variants_one_factor_at_a_time_plus_lr_wd_grid():
    base = ErosionConfig()
    sweeps = {"arch": ["mlp", base.arch, "vgg11"], "pattern": ["noise", "noise"], "fraction": [0.5],
              "finetune_lr": [0.001, base.finetune_lr], "finetune_weight_decay": [0.0, base.finetune_weight_decay]}
    variants = breadth_variants(base, sweeps)
    assert variants[0] == ("base", base)
    configs = [c for _, c in variants]
    assert len(configs) == len(set(configs)), "no duplicates"
    by_factor: dict[str, list[ErosionConfig]] = {}
    for factor, c in variants[1:]:
        by_factor.setdefault(factor, []).append(c)
    assert [c.arch for c in by_factor["arch"]] == ["mlp", "vgg11"]
    assert [c.pattern for c in by_factor["pattern"]] == ["noise"]
    assert [c.fraction for c in by_factor["fraction"]] == [0.5]
    for factor in ("arch", "pattern", "fraction"):
        assert all(_differing(c, base) == {factor} for c in by_factor[factor])
    grid = by_factor["finetune_lr x weight_decay"]
    assert {(c.finetune_lr, c.finetune_weight_decay) for c in grid} == \
        {(0.001, 0.0), (0.001, base.finetune_weight_decay), (base.finetune_lr, 0.0)}  # 2 x 2 minus the base
    assert all(_differing(c, base) <= {"finetune_lr", "finetune_weight_decay"} for c in grid)
    assert len(variants) == 1 + 2 + 1 + 1 + 3


def test_breadth_variants_lr_only_and_errors():
    base = ErosionConfig()
    variants = breadth_variants(base, {"finetune_lr": [0.1, 0.001]})
    assert [(f, c.finetune_lr, c.finetune_weight_decay) for f, c in variants[1:]] == \
        [("finetune_lr x weight_decay", 0.1, base.finetune_weight_decay),
         ("finetune_lr x weight_decay", 0.001, base.finetune_weight_decay)]
    assert breadth_variants(base, {}) == [("base", base)]
    with pytest.raises(ParameterError, match=r"unknown sweep factors \['epochs'\]; known: \[.*'arch'.*\]"):
        breadth_variants(base, {"epochs": [1]})
    with pytest.raises(ParameterError, match=r"pattern_size=64 is out of range; allowed in \[1, 32\]"):
        breadth_variants(base, {"pattern_size": [2, 64]})


def test_breadth_smoke_profile_variants():
    resolved = profiles.resolve("breadth", "smoke")
    variants = breadth_variants(resolved.config, resolved.sweeps())
    factors = [f for f, _ in variants]
    assert factors[0] == "base" and len(set(c for _, c in variants)) == len(variants)
    assert {"arch", "pattern", "pattern_size", "fraction"} <= set(factors)


def test_control_for_shares_the_base_pattern():
    base = ErosionConfig()
    variant = replace(base, arch="mlp", pattern="noise", pattern_size=2, corner="bottom_right", fraction=0.5,
                      pattern_seed=3)
    control = control_for(variant, base)
    for name in PATTERN_FIELDS:
        assert getattr(control, name) == getattr(base, name)
    assert control.arch == "mlp"
    assert _differing(control, variant) == {n for n in PATTERN_FIELDS if getattr(variant, n) != getattr(base, n)}
    # controls of all pattern variants of one architecture coincide, so their cached runs are shared
    assert control_for(replace(base, pattern="position"), base) == control_for(replace(base, fraction=0.1), base) \
        == base
