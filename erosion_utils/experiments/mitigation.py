"""Mitigation and recovery: which fine-tuning options prevent erosion, weight interpolation between the pretrained
and the pattern-fine-tuned network (WiSE-FT), and continued training on clean images after erosion.

- Every mitigation is one pattern run (cached as ``finetune``) from the profile's eroding regime (the baseline),
  compared with the baseline's clean control.
- ``interpolation``: clean, matched and follow metrics along theta(alpha) = (1 - alpha) theta_0 + alpha theta_ft,
  with batch-norm statistics re-estimated on clean training images at each alpha, and without.
- ``recovery``: the baseline pattern run and its control, continued on clean images at each recovery rate, against a
  network trained from scratch with the recovery optimiser; per-layer probes at the start and end of recovery.
The fine-tuned weights that interpolation and recovery start from are kept in the checkpoint cache (``finetuned``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..cache import provenance
from ..models import num_stages
from ..probes import layer_report
from ..train import TrainConfig, eval_steps, train
from ..validation import MAX_EPOCHS, ParameterError, check_number, check_unique
from ..models import reinit_last_stages
from .core import (KEY_PARAMS, CacheMissError, Context, ErosionConfig, _cached, clean_probe_sets, cpu_threads,
                   eval_views, finetune_params, finetune_run, key_with_extras, load_data, make_evaluator, missing_or,
                   new_model, patterned_train_set, pretrain_summary, pretrained_model)
from .units import Unit, experiment_unit

KINDS = ("baseline", "freeze", "head_only", "l2sp", "erase", "lower_lr", "warmup", "fraction")  # of Mitigation.kind
ALPHAS = [round(i / 10, 1) for i in range(11)]  # 0, 0.1, ..., 1

# per profile: changes to the base configuration, and the chapter's settings (chosen before any result was seen)
PROFILE_CONFIG = {"smoke": dict(), "cpu": dict(), "paper": dict()}
_PROBES = {"smoke": dict(probe_train_per_class=8, probe_test_per_class=4, probe_epochs=2),
           "cpu": dict(probe_train_per_class=200, probe_test_per_class=100, probe_epochs=30),
           "paper": dict(probe_train_per_class=1000, probe_test_per_class=500, probe_epochs=30)}


def _settings() -> dict:
    """The mitigation settings of the cpu and paper profiles (fresh lists each time)."""
    return dict(freeze_options=[2, 4], head_only_options=[1.0], l2sp_options=[0.01, 0.1], erase_options=[0.5, 1.0],
                lower_lrs=[0.01], warmup_options=[1.0], fraction_options=[0.5])


# The transfer setting's fine-tuning recipe, chosen on the clean control alone (pilot seeds 100 and 101, before any
# pattern run of the setting; see the analysis plan): the candidate with the largest mean gain of clean test accuracy.
# Measured (cpu): gains of 0.013, -0.028, 0.002, 0.024, 0.062 and 0.069 in this order: 6 epochs at lr 0.03 (cosine).
TRANSFER_RECIPES = [dict(finetune_epochs=3.0, finetune_lr=0.1, finetune_schedule="constant"),
                    dict(finetune_epochs=3.0, finetune_lr=0.03, finetune_schedule="constant"),
                    dict(finetune_epochs=3.0, finetune_lr=0.01, finetune_schedule="constant"),
                    dict(finetune_epochs=3.0, finetune_lr=0.1, finetune_schedule="cosine"),
                    dict(finetune_epochs=6.0, finetune_lr=0.1, finetune_schedule="cosine"),
                    dict(finetune_epochs=6.0, finetune_lr=0.03, finetune_schedule="cosine")]
TRANSFER_RECIPE = TRANSFER_RECIPES[5]


def _transfer(pretrain_per_class: int, seeds: list[int], recipe: dict, recovery_epochs: float,
              scratch_epochs: float, n_evals: int = 8, **options) -> dict:
    """The transfer setting's parameters (fresh lists each time)."""
    return dict(transfer_seeds=list(seeds), transfer_pretrain_per_class=pretrain_per_class,
                transfer_recipe=dict(recipe), transfer_recipes=[dict(r) for r in TRANSFER_RECIPES],
                transfer_pilot_seeds=[100, 101], transfer_n_evals=n_evals, transfer_lower_lr_factors=[0.1],
                transfer_reinit_stages=[1, 2], transfer_recovery_epochs=recovery_epochs,
                transfer_scratch_epochs=scratch_epochs, transfer_recovery_evals=24, **options)


PROFILE_EXTRAS = {
    "smoke": dict(seeds=[0], eroding_lr=0.1, mitigation_n_evals=2, freeze_options=[2], head_only_options=[0.5],
                  l2sp_options=[0.1], erase_options=[1.0], lower_lrs=[0.01], warmup_options=[0.5],
                  fraction_options=[0.5], interpolation_alphas=[0.0, 0.5, 1.0], recovery_epochs=1.0,
                  recovery_lr_factors=[1.0, 0.1], **_PROBES["smoke"], confirm_seeds=[1],
                  **_transfer(8, [0], dict(finetune_epochs=1.0, finetune_lr=0.1, finetune_schedule="constant"), 1.0,
                              2.0, n_evals=3)),
    "cpu": dict(seeds=[0, 1, 2], eroding_lr=0.1, mitigation_n_evals=2, **_settings(), interpolation_alphas=ALPHAS,
                recovery_epochs=3.0, recovery_lr_factors=[1.0, 0.1], **_PROBES["cpu"], confirm_seeds=[3, 4, 5, 6, 7],
                **_transfer(150, [0, 1, 2, 3, 4], TRANSFER_RECIPE, 3.0, 30.0)),
    "paper": dict(seeds=[0, 1, 2], eroding_lr=0.1, mitigation_n_evals=8, **_settings(), interpolation_alphas=ALPHAS,
                  recovery_epochs=4.0, recovery_lr_factors=[1.0, 0.1], **_PROBES["paper"], confirm_seeds=[],
                  **_transfer(2500, [0, 1, 2], TRANSFER_RECIPE, 3.0, 30.0)),
}
TRANSFER_KEYS = ("transfer_seeds", "transfer_pretrain_per_class", "transfer_recipe", "transfer_recipes",
                 "transfer_pilot_seeds", "transfer_n_evals", "transfer_lower_lr_factors", "transfer_reinit_stages",
                 "transfer_recovery_epochs", "transfer_scratch_epochs", "transfer_recovery_evals")
PROBE_KEYS = ("probe_train_per_class", "probe_test_per_class", "probe_epochs")


# ------------------------------------------------------------------------------------------------- validation

def _numbers(name: str, values, low: float | None = 0, high: float | None = None, low_inclusive: bool = True,
             high_inclusive: bool = True, integer: bool = False, allow_empty: bool = True, why: str = "") -> list:
    """``values`` as a list after checking each item (``why`` adds context to the message)."""
    if not isinstance(values, (list, tuple)) or (not values and not allow_empty):
        example = PROFILE_EXTRAS["cpu"].get(name, [0.1])
        raise ParameterError(f"{name}={values!r} must be a {'non-empty ' if not allow_empty else ''}list of numbers, "
                             f"e.g. {name}={example}")
    for v in values:
        check_number(f"{name} item{why}", v, low=low, high=high, low_inclusive=low_inclusive,
                     high_inclusive=high_inclusive, integer=integer)
    return check_unique(name, values)


def validate_extras(extras: dict, config: ErosionConfig) -> None:
    """Fail before any training on a setting the network or the run cannot take: more frozen stages than the
    network has, a head-only phase or warm-up not shorter than the run, a negative L2-SP alpha, a probability or an
    interpolation alpha outside [0, 1], a non-positive rate, recovery length or probe size. Every planned
    configuration is then validated as a whole."""
    stages = num_stages(config.arch, config.mlp_depth)
    check_number("eroding_lr", extras["eroding_lr"], low=0, low_inclusive=False)
    check_number("mitigation_n_evals", extras["mitigation_n_evals"], low=2, integer=True)
    _numbers("freeze_options", extras["freeze_options"], low=1, high=stages, integer=True,
             why=f" (the {config.arch} has {stages} stages)")
    run = f" (epochs; the run has finetune_epochs={config.finetune_epochs:g})"
    _numbers("head_only_options", extras["head_only_options"], low=0, high=config.finetune_epochs,
             low_inclusive=False, high_inclusive=False, why=run)
    _numbers("l2sp_options", extras["l2sp_options"], low=0, low_inclusive=False,
             why=" (L2-SP alpha; 0 is the baseline)")
    _numbers("erase_options", extras["erase_options"], low=0, high=1, low_inclusive=False, why=" (a probability)")
    _numbers("lower_lrs", extras["lower_lrs"], low=0, low_inclusive=False)
    _numbers("warmup_options", extras["warmup_options"], low=0, high=config.finetune_epochs, low_inclusive=False,
             high_inclusive=False, why=run)
    _numbers("fraction_options", extras["fraction_options"], low=0, high=1, low_inclusive=False)
    _numbers("interpolation_alphas", extras["interpolation_alphas"], low=0, high=1, allow_empty=False)
    check_number("recovery_epochs", extras["recovery_epochs"], low=0, low_inclusive=False, high=MAX_EPOCHS)
    _numbers("recovery_lr_factors", extras["recovery_lr_factors"], low=0, low_inclusive=False, allow_empty=False,
             why=" (a multiple of eroding_lr)")
    for key in PROBE_KEYS:
        check_number(key, extras[key], low=1, integer=True)
    for seed in extras["seeds"]:
        for m in mitigation_settings(replace(config, seed=seed), extras):
            m.config.validate()
    seeds = _numbers("confirm_seeds", extras["confirm_seeds"], integer=True)
    if len(set(seeds)) != len(seeds):
        raise ParameterError(f"confirm_seeds={seeds!r} lists a seed twice; each seed must appear once")
    _validate_transfer(extras, config)


# ---------------------------------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class Mitigation:
    """One setting of the chapter: its kind (:data:`KINDS`), a label, the value varied, and its configuration."""

    kind: str
    label: str
    value: float | None
    config: ErosionConfig


def baseline_config(base: ErosionConfig, extras: dict) -> ErosionConfig:
    """The profile's eroding regime: ``base`` at the eroding rate."""
    return replace(base, finetune_lr=extras["eroding_lr"])


def _epochs(x: float) -> str:
    return f"{x:g} epoch" + ("" if x == 1 else "s")


def mitigation_settings(base: ErosionConfig, extras: dict) -> list[Mitigation]:
    """The baseline and every mitigation for the seed of ``base``, in the order the page lists them. The baseline
    and the lower rates are the erosion chapter's runs (evaluated at ``n_evals`` points); the other mitigations are
    evaluated at ``mitigation_n_evals`` points (their final values are what the chapter compares)."""
    b = baseline_config(base, extras)
    stages = num_stages(b.arch, b.mlp_depth)
    out = [Mitigation("baseline", f"baseline (lr {b.finetune_lr:g})", None, b)]
    b = replace(b, n_evals=extras["mitigation_n_evals"])
    out += [Mitigation("freeze", f"freeze {k} of {stages} stages", k, replace(b, freeze_stages=k))
            for k in extras["freeze_options"]]
    out += [Mitigation("head_only", f"LP-FT: head only for {_epochs(e)}", e, replace(b, head_only_epochs=e))
            for e in extras["head_only_options"]]
    out += [Mitigation("l2sp", f"L2-SP α={a:g}", a, replace(b, l2sp_alpha=a)) for a in extras["l2sp_options"]]
    out += [Mitigation("erase", f"erase corners p={p:g}", p, replace(b, erase_corners=p))
            for p in extras["erase_options"]]
    out += [Mitigation("lower_lr", f"lower rate {lr:g}", lr, replace(out[0].config, finetune_lr=lr))
            for lr in extras["lower_lrs"]]
    out += [Mitigation("warmup", f"warm-up {_epochs(w)}", w, replace(b, finetune_warmup_epochs=w))
            for w in extras["warmup_options"]]
    out += [Mitigation("fraction", f"patterned fraction {f:g}", f, replace(b, fraction=f))
            for f in extras["fraction_options"]]
    return out


def confirm_base(base: ErosionConfig) -> ErosionConfig:
    """The configuration of the confirmatory seeds of the paper's (same-data) setting: ``base`` on the fast path."""
    return replace(base, fast_path=True)


def recovery_lrs(extras: dict) -> list[float]:
    """The recovery learning rates: ``recovery_lr_factors`` times the eroding rate."""
    return [round(f * extras["eroding_lr"], 12) for f in extras["recovery_lr_factors"]]


def recovery_kwargs(extras: dict) -> dict:
    """The keyword arguments of :func:`recovery_run` that a profile's extras fix."""
    return {"recovery_epochs": extras["recovery_epochs"], "recovery_lrs": recovery_lrs(extras),
            **{k: extras[k] for k in PROBE_KEYS}}


# ---------------------------------------------------------------------------------------------- model helpers

def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def interpolate_state(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> dict:
    """(1 - alpha) * start + alpha * end for every floating-point entry of two state dicts (parameters and
    batch-norm statistics); other entries (batch counters) are taken from ``end`` at alpha > 0, else ``start``."""
    check_number("alpha", alpha, low=0, high=1)
    out = {}
    for k, a in start.items():
        b = end[k]
        if a.is_floating_point():
            out[k] = a if alpha == 0 else b if alpha == 1 else torch.lerp(a, b.to(a.dtype), alpha)
        else:
            out[k] = b if alpha > 0 else a
    return out


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> int:
    """Recompute every batch-norm layer's running statistics on uint8 images ``x`` (reset, then a cumulative
    average over batches in training mode, without gradients); returns the number of layers reset."""
    check_number("batch_size", batch_size, low=1, integer=True)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    device = next(model.parameters()).device
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            if len(xb) > 1:  # batch norm needs more than one value per channel
                model(xb.to(device))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return len(bns)


def finetuned_model(cfg: ErosionConfig, patterned: bool, ctx: Context) -> nn.Module:
    """The network at the end of the fine-tuning run of ``cfg`` (pattern run or control), kept in the checkpoint
    cache under ``finetuned``: the same training as :func:`~erosion_utils.experiments.core.finetune_run` (same
    pretrained weights, batch order and constraints; evaluations draw no random numbers), without its records."""
    cfg.validate()
    params = finetune_params(cfg, patterned)
    model, _ = pretrained_model(cfg, ctx)
    saved = ctx.checkpoints.load("finetuned", params, on_corrupt="recompute")
    if saved is not None:
        model.load_state_dict(saved["state_dict"])
        return model
    if not ctx.compute:
        raise CacheMissError(f"no cached fine-tuned checkpoint for {params} in {ctx.checkpoints.root}")
    data = load_data(cfg, ctx)
    device = ctx.torch_device
    x, y = patterned_train_set(cfg, data) if patterned else (data.x_train, data.y_train)
    ft = cfg.finetune_config()
    start = time.perf_counter()
    with cpu_threads(device):
        train(model, x.to(device), y.to(device), ft, cfg.seed + 1,
              desc=f"finetune {'pattern' if patterned else 'control'}",
              constraints=cfg.constraints(model, max(1, len(x) // ft.batch_size)), fast=cfg.fast_path)
    ctx.checkpoints.save("finetuned", params, {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                                               "provenance": provenance(cfg.seed, time.perf_counter() - start,
                                                                        device)})
    return model


KEY_PARAMS["interpolation"] = key_with_extras
KEY_PARAMS["recovery"] = key_with_extras


# ----------------------------------------------------------------------------------------------- interpolation

def interpolation_run(cfg: ErosionConfig, alphas: list[float], ctx: Context) -> dict:
    """Clean, matched and mismatched accuracy and follow rate along theta(alpha) = (1 - alpha) theta_0 +
    alpha theta_ft between the pretrained and the pattern-fine-tuned network of ``cfg`` (parameters and batch-norm
    statistics interpolated alike): ``raw`` as interpolated, ``reestimated`` after re-estimating the batch-norm
    statistics on the clean training images. Costs evaluation only (given the fine-tuned weights)."""
    cfg.validate()
    alphas = _numbers("interpolation_alphas", list(alphas), low=0, high=1, allow_empty=False)
    params = {**cfg.key_dict(), "interpolation_alphas": alphas}

    def compute() -> dict:
        data = load_data(cfg, ctx)
        device = ctx.torch_device
        theta0 = _float_state(pretrained_model(cfg, ctx)[0])
        model = finetuned_model(cfg, True, ctx)
        theta1 = _float_state(model)
        views = eval_views(cfg, data, device)
        evaluate = make_evaluator(views, views["clean"][1])
        x_clean = data.x_train.to(device)
        points = []
        for a in alphas:
            model.load_state_dict(interpolate_state(theta0, theta1, a))
            raw = evaluate(model)
            reestimate_batchnorm(model, x_clean)
            points.append({"alpha": a, "raw": raw, "reestimated": evaluate(model)})
        return {"points": points, "reestimated_on": "clean training images"}

    return _cached(ctx, "interpolation", params, compute, cfg.seed)


# ---------------------------------------------------------------------------------------------------- recovery

def recovery_config(cfg: ErosionConfig, recovery_epochs: float, lr: float) -> TrainConfig:
    """The recovery optimiser: the fine-tuning optimiser of ``cfg`` at rate ``lr`` for ``recovery_epochs``,
    constant rate, no warm-up and no mitigation."""
    return TrainConfig(recovery_epochs, lr, cfg.finetune_momentum, cfg.finetune_weight_decay, cfg.finetune_batch_size,
                       "constant", True, cfg.augment)


def recovery_run(cfg: ErosionConfig, recovery_epochs: float, recovery_lrs: list[float], probe_train_per_class: int,
                 probe_test_per_class: int, probe_epochs: int, ctx: Context) -> dict:
    """After the pattern run of ``cfg`` (and, as its control, the clean run), continue on clean images for
    ``recovery_epochs`` at each rate in ``recovery_lrs``; a network trained from scratch (from the pretrained
    network's initial weights) with the same optimiser and batch order is the second reference. Records clean
    accuracy and the follow rate at ``n_evals`` log-spaced recovery steps for the three arms, and clean-label
    per-layer probes of the pattern and control arms at the start of recovery and at its end."""
    cfg.validate()
    check_number("recovery_epochs", recovery_epochs, low=0, low_inclusive=False)
    lrs = _numbers("recovery_lrs", list(recovery_lrs), low=0, low_inclusive=False, allow_empty=False)
    for key, v in zip(PROBE_KEYS, (probe_train_per_class, probe_test_per_class, probe_epochs)):
        check_number(key, v, low=1, integer=True)
    params = {**cfg.key_dict(), "recovery_epochs": recovery_epochs, "recovery_lrs": lrs,
              "probe_train_per_class": probe_train_per_class, "probe_test_per_class": probe_test_per_class,
              "probe_epochs": probe_epochs}

    def compute() -> dict:
        data = load_data(cfg, ctx)
        device = ctx.torch_device
        k = data.num_classes
        sets = clean_probe_sets(cfg, data, (probe_train_per_class, probe_test_per_class))
        views = eval_views(cfg, data, device)
        evaluate = make_evaluator(views, matched=False)
        x, y = data.x_train.to(device), data.y_train.to(device)

        def probes(model) -> list[dict]:
            return layer_report(model, num_classes=k, probe_epochs=probe_epochs, seed=cfg.seed, **sets)

        starts = {"pattern": _float_state(finetuned_model(cfg, True, ctx)),
                  "control": _float_state(finetuned_model(cfg, False, ctx))}
        model = new_model(cfg, data).to(device)
        scratch_init = _float_state(model)
        start_probes = {}
        for arm, state in starts.items():
            model.load_state_dict(state)
            start_probes[arm] = probes(model)
        runs = []
        for lr in lrs:
            rc = recovery_config(cfg, recovery_epochs, lr)
            per_epoch = max(1, len(x) // rc.batch_size)
            total = max(1, round(rc.epochs * per_epoch))
            at = eval_steps(total, cfg.n_evals)
            run = {"lr": lr, "total_steps": total, "steps_per_epoch": per_epoch, "arms": {}}
            for arm, state in (("pattern", starts["pattern"]), ("control", starts["control"]),
                               ("scratch", scratch_init)):
                model.load_state_dict(state)
                records = train(model, x, y, rc, cfg.seed + 2, eval_at=at, eval_fn=evaluate,
                                desc=f"recovery {arm} lr={lr:g}")
                run["arms"][arm] = {"records": records,
                                    "probes": probes(model) if arm != "scratch" else None}
            runs.append(run)
        return {"runs": runs, "start_probes": start_probes, "taps": list(model.tap_names),
                "finetune_total_steps": max(1, round(cfg.finetune_epochs * max(1, len(x) // cfg.finetune_batch_size)))}

    return _cached(ctx, "recovery", params, compute, cfg.seed)


# -------------------------------------------------------------------------------------------------- experiments

def _missing_or(row: dict, fill) -> dict:
    """``row`` with what ``fill()`` returns, or with ``missing: True`` when a result is not cached (see
    :func:`~erosion_utils.experiments.core.missing_or`)."""
    got, why = missing_or(fill)
    row.update(got if why is None else {"missing": True})
    return row


def mitigation_experiment(base: ErosionConfig, extras: dict, ctx: Context, confirmatory: bool = False) -> list[dict]:
    """For each seed and setting (:func:`mitigation_settings`): its pattern run, the baseline's clean control and
    the pretraining; rows whose results are not cached (with ``ctx.compute`` off) carry ``"missing": True``. With
    ``confirmatory``: the confirmatory seeds (``confirm_seeds``, on the fast path)."""
    rows = []
    seeds, base = (extras["confirm_seeds"], confirm_base(base)) if confirmatory else (extras["seeds"], base)
    for seed in seeds:
        settings = mitigation_settings(replace(base, seed=seed), extras)
        control_cfg = settings[0].config
        for m in settings:
            row = {"kind": m.kind, "label": m.label, "value": m.value, "seed": seed, "config": m.config.as_dict()}
            rows.append(_missing_or(row, lambda m=m: {"pattern": finetune_run(m.config, True, ctx),
                                                      "control": finetune_run(control_cfg, False, ctx),
                                                      "pretrain": pretrain_summary(m.config, ctx)}))
    return rows


def interpolation_experiment(base: ErosionConfig, extras: dict, ctx: Context, confirmatory: bool = False) -> list[dict]:
    """For each seed: the interpolation between the pretrained and the baseline pattern-fine-tuned network, and the
    baseline's two fine-tuning runs (their final records are the endpoints as the cached runs measured them). With
    ``confirmatory``: the confirmatory seeds, on the fast path."""
    rows = []
    seeds, base = (extras["confirm_seeds"], confirm_base(base)) if confirmatory else (extras["seeds"], base)
    for seed in seeds:
        b = baseline_config(replace(base, seed=seed), extras)
        rows.append(_missing_or({"seed": seed}, lambda b=b: {
            "interpolation": interpolation_run(b, extras["interpolation_alphas"], ctx),
            "pattern": finetune_run(b, True, ctx), "control": finetune_run(b, False, ctx)}))
    return rows


def recovery_experiment(base: ErosionConfig, extras: dict, ctx: Context) -> list[dict]:
    """For each seed: the recovery of the baseline (:func:`recovery_run`) and the baseline's two fine-tuning runs."""
    rows = []
    for seed in extras["seeds"]:
        b = baseline_config(replace(base, seed=seed), extras)
        rows.append(_missing_or({"seed": seed}, lambda b=b: {
            "recovery": recovery_run(b, ctx=ctx, **recovery_kwargs(extras)),
            "pattern": finetune_run(b, True, ctx), "control": finetune_run(b, False, ctx)}))
    return rows


# ------------------------------------------------------------------------------------------------ transfer setting

def _validate_transfer(extras: dict, config: ErosionConfig) -> None:
    """The transfer setting's parameters: seeds, the pretraining subset, the recipe and its candidates, recovery."""
    seeds = _numbers("transfer_seeds", extras["transfer_seeds"], integer=True)
    if len(set(seeds)) != len(seeds):
        raise ParameterError(f"transfer_seeds={seeds!r} lists a seed twice; each seed must appear once")
    _numbers("transfer_pilot_seeds", extras["transfer_pilot_seeds"], integer=True)
    check_number("transfer_n_evals", extras["transfer_n_evals"], low=2, integer=True)
    _numbers("transfer_lower_lr_factors", extras["transfer_lower_lr_factors"], low=0, low_inclusive=False)
    stages = num_stages(config.arch, config.mlp_depth)
    _numbers("transfer_reinit_stages", extras["transfer_reinit_stages"], low=1, high=stages, integer=True,
             why=f" (the {config.arch} has {stages} stages)")
    for key in ("transfer_recovery_epochs", "transfer_scratch_epochs"):
        check_number(key, extras[key], low=0, low_inclusive=False, high=MAX_EPOCHS)
    check_number("transfer_recovery_evals", extras["transfer_recovery_evals"], low=2, integer=True)
    for recipe in [extras["transfer_recipe"], *extras["transfer_recipes"]]:
        if not isinstance(recipe, dict) or set(recipe) != {"finetune_epochs", "finetune_lr", "finetune_schedule"}:
            raise ParameterError(f"a transfer recipe must be a mapping of finetune_epochs, finetune_lr and "
                                 f"finetune_schedule, got {recipe!r}")
    for seed in seeds:
        for m in transfer_settings(replace(config, seed=seed), extras):
            m.config.validate()


def transfer_base(base: ErosionConfig, extras: dict, recipe: dict | None = None) -> ErosionConfig:
    """The transfer setting: pretraining on ``transfer_pretrain_per_class`` images of each class (a class-balanced
    part of the training set), then fine-tuning on the whole training set with the fine-tuning ``recipe`` (the
    committed ``transfer_recipe`` unless given), on the fast path."""
    return replace(base, pretrain_per_class=extras["transfer_pretrain_per_class"], fast_path=True,
                   n_evals=extras["transfer_n_evals"], **(recipe or extras["transfer_recipe"]))


def transfer_settings(base: ErosionConfig, extras: dict) -> list[Mitigation]:
    """The transfer setting's baseline and options for the seed of ``base`` (the same options as the paper's
    setting; the lower rate is ``transfer_lower_lr_factors`` times the recipe's). The options that act after
    fine-tuning (batch-norm re-estimation, weight interpolation) come from :func:`interpolation_run`."""
    b = transfer_base(base, extras)
    stages = num_stages(b.arch, b.mlp_depth)
    out = [Mitigation("baseline", f"baseline (lr {b.finetune_lr:g})", None, b)]
    out += [Mitigation("freeze", f"freeze {k} of {stages} stages", k, replace(b, freeze_stages=k))
            for k in extras["freeze_options"]]
    out += [Mitigation("head_only", f"LP-FT: head only for {_epochs(e)}", e, replace(b, head_only_epochs=e))
            for e in extras["head_only_options"] if e < b.finetune_epochs]
    out += [Mitigation("l2sp", f"L2-SP α={a:g}", a, replace(b, l2sp_alpha=a)) for a in extras["l2sp_options"]]
    out += [Mitigation("erase", f"erase corners p={p:g}", p, replace(b, erase_corners=p))
            for p in extras["erase_options"]]
    lower = [round(f * b.finetune_lr, 12) for f in extras["transfer_lower_lr_factors"]]
    out += [Mitigation("lower_lr", f"lower rate {lr:g}", lr, replace(b, finetune_lr=lr)) for lr in lower]
    out += [Mitigation("warmup", f"warm-up {_epochs(w)}", w, replace(b, finetune_warmup_epochs=w))
            for w in extras["warmup_options"] if w < b.finetune_epochs]
    out += [Mitigation("fraction", f"patterned fraction {f:g}", f, replace(b, fraction=f))
            for f in extras["fraction_options"]]
    return out


def transfer_experiment(base: ErosionConfig, extras: dict, ctx: Context) -> list[dict]:
    """For each transfer seed and setting: its pattern run, the clean control (the same recipe on clean images, from
    the same pretrained network) and the pretraining; missing results flagged as in :func:`mitigation_experiment`."""
    rows = []
    for seed in extras["transfer_seeds"]:
        settings = transfer_settings(replace(base, seed=seed), extras)
        control_cfg = settings[0].config
        for m in settings:
            row = {"kind": m.kind, "label": m.label, "value": m.value, "seed": seed, "config": m.config.as_dict()}
            rows.append(_missing_or(row, lambda m=m: {"pattern": finetune_run(m.config, True, ctx),
                                                      "control": finetune_run(control_cfg, False, ctx),
                                                      "pretrain": pretrain_summary(m.config, ctx)}))
    return rows


def transfer_interpolation(base: ErosionConfig, extras: dict, ctx: Context) -> list[dict]:
    """For each transfer seed: weight interpolation between the pretrained network and the baseline's pattern-fine-
    tuned one, with and without batch-norm statistics re-estimated on clean images (at alpha = 1 that is the
    batch-norm re-estimation option), beside the baseline's two runs and the pretraining."""
    rows = []
    for seed in extras["transfer_seeds"]:
        b = transfer_base(replace(base, seed=seed), extras)
        rows.append(_missing_or({"seed": seed}, lambda b=b: {
            "interpolation": interpolation_run(b, extras["interpolation_alphas"], ctx),
            "pattern": finetune_run(b, True, ctx), "control": finetune_run(b, False, ctx),
            "pretrain": pretrain_summary(b, ctx)}))
    return rows


def recipe_pilot(base: ErosionConfig, extras: dict, ctx: Context) -> list[dict]:
    """The pilot that chose the transfer recipe: for each candidate recipe (``transfer_recipes``) and pilot seed, the
    clean control alone (no pattern run) and its pretraining."""
    rows = []
    for seed in extras["transfer_pilot_seeds"]:
        for i, recipe in enumerate(extras["transfer_recipes"]):
            c = transfer_base(replace(base, seed=seed), extras, recipe)
            rows.append(_missing_or({"seed": seed, "recipe": i, **recipe}, lambda c=c: {
                "control": finetune_run(c, False, ctx), "pretrain": pretrain_summary(c, ctx)}))
    return rows


KEY_PARAMS["transfer_recovery"] = key_with_extras
ARMS = ("eroded", "control", "scratch")  # and reinit_<k> for each re-initialised depth


def transfer_recovery_run(cfg: ErosionConfig, recovery_epochs: float, scratch_epochs: float, reinit_stages: list[int],
                          n_evals: int, ctx: Context) -> dict:
    """Recovery in the transfer setting: continue on clean images with the fine-tuning optimiser of ``cfg`` (its
    rate, constant) for ``recovery_epochs``, from (``eroded``) the baseline's pattern-fine-tuned network, from
    (``control``) the clean control, from (``reinit_<k>``) the pretrained network with its last k stages and its
    classifier re-initialised (what destroyed features would look like), and for ``scratch_epochs`` from a freshly
    initialised network (``scratch``). Clean accuracy and follow rate at ``n_evals`` log-spaced steps per arm; the
    pretrained network's clean accuracy is the recovery target's reference."""
    cfg.validate()
    check_number("recovery_epochs", recovery_epochs, low=0, low_inclusive=False)
    check_number("scratch_epochs", scratch_epochs, low=0, low_inclusive=False)
    check_number("n_evals", n_evals, low=2, integer=True)
    reinit = _numbers("reinit_stages", list(reinit_stages), low=1, integer=True)
    params = {**cfg.key_dict(), "recovery_epochs": recovery_epochs, "scratch_epochs": scratch_epochs,
              "reinit_stages": reinit, "recovery_n_evals": n_evals}

    def compute() -> dict:
        data = load_data(cfg, ctx)
        device = ctx.torch_device
        views = eval_views(cfg, data, device)
        evaluate = make_evaluator(views, matched=False, fast=cfg.fast_path, eval_dtype=cfg.eval_dtype)
        x, y = data.x_train.to(device), data.y_train.to(device)
        pretrained = _float_state(pretrained_model(cfg, ctx)[0])
        starts = {"eroded": _float_state(finetuned_model(cfg, True, ctx)),
                  "control": _float_state(finetuned_model(cfg, False, ctx))}
        model = new_model(cfg, data).to(device)
        scratch = _float_state(model)
        for k in reinit:
            model.load_state_dict(pretrained)
            reinit_last_stages(model, k, cfg.seed + 30 + k)
            starts[f"reinit_{k}"] = _float_state(model)
        model.load_state_dict(pretrained)
        reference = evaluate(model)
        arms = {}
        for arm, state in [*starts.items(), ("scratch", scratch)]:
            epochs = scratch_epochs if arm == "scratch" else recovery_epochs
            rc = TrainConfig(epochs, cfg.finetune_lr, cfg.finetune_momentum, cfg.finetune_weight_decay,
                             cfg.finetune_batch_size, "constant", True, cfg.augment)
            per_epoch = max(1, len(x) // rc.batch_size)
            total = max(1, round(rc.epochs * per_epoch))
            model.load_state_dict(state)
            records = train(model, x, y, rc, cfg.seed + 2, eval_at=eval_steps(total, n_evals), eval_fn=evaluate,
                            desc=f"recovery {arm}", fast=cfg.fast_path)
            arms[arm] = {"records": records, "total_steps": total, "steps_per_epoch": per_epoch}
        return {"pretrained": reference, "arms": arms}

    return _cached(ctx, "transfer_recovery", params, compute, cfg.seed)


def transfer_recovery_kwargs(extras: dict) -> dict:
    """The keyword arguments of :func:`transfer_recovery_run` that a profile's extras fix."""
    return {"recovery_epochs": extras["transfer_recovery_epochs"], "scratch_epochs": extras["transfer_scratch_epochs"],
            "reinit_stages": list(extras["transfer_reinit_stages"]), "n_evals": extras["transfer_recovery_evals"]}


def transfer_recovery_experiment(base: ErosionConfig, extras: dict, ctx: Context) -> list[dict]:
    """For each transfer seed: :func:`transfer_recovery_run` of the baseline, with its two fine-tuning runs."""
    rows = []
    for seed in extras["transfer_seeds"]:
        b = transfer_base(replace(base, seed=seed), extras)
        rows.append(_missing_or({"seed": seed}, lambda b=b: {
            "recovery": transfer_recovery_run(b, ctx=ctx, **transfer_recovery_kwargs(extras)),
            "pattern": finetune_run(b, True, ctx), "control": finetune_run(b, False, ctx),
            "pretrain": pretrain_summary(b, ctx)}))
    return rows


def pilot_units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """The recipe pilot's units (clean controls only)."""
    return [experiment_unit(f"transfer pilot recipe {i} seed {seed}", "finetune", finetune_run,
                            transfer_base(replace(base, seed=seed), extras, recipe), False)
            for seed in extras["transfer_pilot_seeds"] for i, recipe in enumerate(extras["transfer_recipes"])]


def transfer_units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """The transfer setting's units, seed by seed: control, baseline and every option, interpolation, recovery."""
    out = []
    for seed in extras["transfer_seeds"]:
        settings = transfer_settings(replace(base, seed=seed), extras)
        b = settings[0].config
        out.append(experiment_unit(f"transfer control seed {seed}", "finetune", finetune_run, b, False))
        out += [experiment_unit(f"transfer {m.label} pattern seed {seed}", "finetune", finetune_run, m.config, True)
                for m in settings]
        out.append(experiment_unit(f"transfer interpolation seed {seed}", "interpolation", interpolation_run, b,
                                   list(extras["interpolation_alphas"])))
        kw = transfer_recovery_kwargs(extras)
        out.append(experiment_unit(f"transfer recovery seed {seed}", "recovery", transfer_recovery_run, b,
                                   kw["recovery_epochs"], kw["scratch_epochs"], kw["reinit_stages"], kw["n_evals"]))
    return out


# --------------------------------------------------------------------------------------------------------- units

def same_data_units(base: ErosionConfig, extras: dict, confirmatory: bool = False) -> list[Unit]:
    """The paper's (same-data) setting's units: the baseline and every mitigation at the first seed, its
    interpolation and (exploratory seeds only) recovery, then the other seeds likewise."""
    out = []
    seeds, base = (extras["confirm_seeds"], confirm_base(base)) if confirmatory else (extras["seeds"], base)
    tag = "confirmatory " if confirmatory else ""
    for seed in seeds:
        settings = mitigation_settings(replace(base, seed=seed), extras)
        b = settings[0].config
        out.append(experiment_unit(f"mitigation {tag}baseline control seed {seed}", "finetune", finetune_run, b,
                                   False))
        for m in settings:
            out.append(experiment_unit(f"mitigation {tag}{m.label} pattern seed {seed}", "finetune", finetune_run,
                                       m.config, True))
        out.append(experiment_unit(f"mitigation {tag}interpolation seed {seed}", "interpolation", interpolation_run,
                                   b, list(extras["interpolation_alphas"])))
        if not confirmatory:  # the recovery of the paper's setting is the exploratory design; see the transfer setting
            kw = recovery_kwargs(extras)
            out.append(experiment_unit(f"mitigation recovery seed {seed}", "recovery", recovery_run, b,
                                       kw["recovery_epochs"], kw["recovery_lrs"], *[kw[k] for k in PROBE_KEYS]))
    return out


def units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """The chapter's work units, most informative first: the transfer setting (seed by seed), the confirmatory seeds
    of the paper's setting, then its exploratory seeds."""
    return (transfer_units(base, extras) + same_data_units(base, extras, confirmatory=True)
            + same_data_units(base, extras))
