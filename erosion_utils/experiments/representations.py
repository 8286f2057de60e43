"""Representations: per-layer probes, rank and pattern readability along the fine-tuning trajectory."""
from __future__ import annotations

from dataclasses import replace

from ..patterns import make_codes, mismatched_labels, stamp
from ..probes import layer_report
from ..train import eval_steps, train
from ..validation import check_number
from .core import (Context, ErosionConfig, _cached, clean_probe_sets, load_data, missing_or, patterned_train_set,
                   pretrained_model)
from .units import Unit, experiment_unit

PROFILE_CONFIG = {"smoke": dict(), "cpu": dict(), "paper": dict()}
PROFILE_EXTRAS = {
    "smoke": dict(finetune_lrs=[0.1], n_snapshots=2, probe_train_per_class=8, probe_test_per_class=4, probe_epochs=2),
    "cpu": dict(finetune_lrs=[0.01, 0.1], n_snapshots=4, probe_train_per_class=200, probe_test_per_class=100,
                probe_epochs=30),
    "paper": dict(finetune_lrs=[0.01, 0.1], n_snapshots=5, probe_train_per_class=1000, probe_test_per_class=500,
                  probe_epochs=30),
}


def validate_extras(extras: dict, config: ErosionConfig) -> None:
    """Nothing beyond the checks that rates, seeds and probe sizes get in :func:`erosion_utils.profiles.resolve`."""


def representation_experiments(cfg: ErosionConfig, ctx: Context, finetune_lrs: list[float], n_snapshots: int,
                                probe_train_per_class: int, probe_test_per_class: int, probe_epochs: int) -> list[dict]:
    """:func:`representation_experiment` at each fine-tuning learning rate (the representations profile's extras)."""
    return [representation_experiment(replace(cfg, finetune_lr=lr), ctx, n_snapshots, probe_train_per_class,
                                      probe_test_per_class, probe_epochs) for lr in finetune_lrs]


def representation_experiment(cfg: ErosionConfig, ctx: Context, n_snapshots: int = 4, probe_train_per_class: int = 1000,
                              probe_test_per_class: int = 500, probe_epochs: int = 30) -> dict:
    """Per-layer probe accuracy, rank and pattern readability for the pretrained network, along the patterned
    finetuning trajectory, and for the clean control at its end."""
    cfg.validate()
    check_number("n_snapshots", n_snapshots, low=2, integer=True)
    check_number("probe_train_per_class", probe_train_per_class, low=1, integer=True)
    check_number("probe_test_per_class", probe_test_per_class, low=1, integer=True)
    check_number("probe_epochs", probe_epochs, low=1, integer=True)
    params = {**cfg.key_dict(), "n_snapshots": n_snapshots, "probe_train_per_class": probe_train_per_class,
              "probe_test_per_class": probe_test_per_class, "probe_epochs": probe_epochs}

    def compute() -> dict:
        data = load_data(cfg, ctx)
        device = ctx.torch_device
        k = data.num_classes
        sets = clean_probe_sets(cfg, data, (probe_train_per_class, probe_test_per_class))
        codes = make_codes(cfg.pattern_spec(), k, data.channels, data.image_size)
        (x_tr, y_tr), (x_te, y_te) = sets["probe_train"], sets["probe_test"]
        ptr_lab = mismatched_labels(y_tr, k, cfg.seed + 9)  # pattern class independent of content
        pte_lab = mismatched_labels(y_te, k, cfg.seed + 10)
        sets.update(pattern_train=(stamp(x_tr, ptr_lab, codes), ptr_lab),
                    pattern_test=(stamp(x_te, pte_lab, codes), pte_lab))

        def report(model) -> dict:
            return {"layers": layer_report(model, num_classes=k, probe_epochs=probe_epochs, seed=cfg.seed, **sets)}

        snapshots = []
        model, _ = pretrained_model(cfg, ctx)
        ft = cfg.finetune_config()
        per_epoch = max(1, len(data.x_train) // ft.batch_size)
        total = max(1, round(ft.epochs * per_epoch))
        at = eval_steps(total, n_snapshots + 1)[1:]  # log-spaced after step 0
        snapshots.append({"model": "pretrained", "step": 0, **report(model)})
        x, y = patterned_train_set(cfg, data)
        for rec in train(model, x.to(device), y.to(device), ft, cfg.seed + 1, eval_at=at, eval_fn=report,
                         desc="finetune pattern (probed)", constraints=cfg.constraints(model, per_epoch)):
            snapshots.append({"model": "pattern", **rec})
        model, _ = pretrained_model(cfg, ctx)
        for rec in train(model, data.x_train.to(device), data.y_train.to(device), ft, cfg.seed + 1, eval_at=[total],
                         eval_fn=report, desc="finetune control (probed)", constraints=cfg.constraints(model, per_epoch)):
            snapshots.append({"model": "control", **rec})
        return {"snapshots": snapshots, "total_steps": total, "taps": list(model.tap_names)}

    return _cached(ctx, "representations", params, compute, cfg.seed)


def representation_entries(config: ErosionConfig, extras: dict, ctx: Context) -> tuple[list[dict], dict[str, str | None]]:
    """The chapter's results that can be loaded here, one rate at a time, and what is missing (description ->
    reason, None where loaded)."""
    entries, missing = [], {}
    for lr in extras["finetune_lrs"]:
        got, why = missing_or(representation_experiments, config, ctx, **{**extras, "finetune_lrs": [lr]})
        entries += got or []
        missing[f"representations: probes along fine-tuning at lr {lr:g}"] = why
    return entries, missing


def units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """One unit per (seed, rate): the probed pattern run and control."""
    seeds = extras.get("seeds", [base.seed])
    kwargs = {k: v for k, v in extras.items() if k != "seeds"}
    return [experiment_unit(f"representations lr={lr}" + (f" seed {seed}" if len(seeds) > 1 else ""),
                            "representations", representation_experiments, replace(base, seed=seed),
                            **{**kwargs, "finetune_lrs": [lr]})
            for seed in seeds for lr in extras["finetune_lrs"]]
