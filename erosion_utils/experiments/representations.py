"""Representations: per-layer probes, rank and pattern readability along the fine-tuning trajectory."""
from __future__ import annotations

from dataclasses import replace

import torch

from .. import data as data_mod
from ..patterns import make_codes, mismatched_labels, stamp
from ..probes import layer_report
from ..train import eval_steps, train
from ..validation import check_number
from .core import Context, ErosionConfig, _cached, load_data, patterned_train_set, pretrained_model


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
        n_tr = min(probe_train_per_class, int(torch.bincount(data.y_train).min()))
        n_te = min(probe_test_per_class, int(torch.bincount(data.y_test).min()))
        itr = data_mod.balanced_indices(data.y_train, n_tr, cfg.seed + 7)
        ite = data_mod.balanced_indices(data.y_test, n_te, cfg.seed + 8)
        codes = make_codes(cfg.pattern_spec(), k, data.channels, data.image_size)
        ptr_lab = mismatched_labels(data.y_train[itr], k, cfg.seed + 9)  # pattern class independent of content
        pte_lab = mismatched_labels(data.y_test[ite], k, cfg.seed + 10)
        sets = dict(probe_train=(data.x_train[itr], data.y_train[itr]), probe_test=(data.x_test[ite], data.y_test[ite]),
                    pattern_train=(stamp(data.x_train[itr], ptr_lab, codes), ptr_lab),
                    pattern_test=(stamp(data.x_test[ite], pte_lab, codes), pte_lab))

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
