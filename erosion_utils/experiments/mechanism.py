"""When and why erosion happens. Every run is a pattern run and its clean control from the same pretrained weights,
cached like every other fine-tuning run.

- The exploratory design (seeds 0-2, reference path, :func:`mechanism_runs`): the phase map (learning rate x batch
  size), its two controls (same steps, same noise scale), weight decay, warm-up and long stable runs.
- The confirmatory design (:func:`confirm_runs`, seeds ``confirm_seeds``, fast path, dense monitor evaluation),
  judged by rules of the analysis plan committed before it ran: the map closed at larger batches, the intervention
  that removes the loss spike (gradient clipping, a long warm-up), and long runs at calm rates.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .. import data as data_mod
from ..validation import MAX_EPOCHS, ParameterError, check_number, check_unique
from .core import Context, ErosionConfig, check_eval_dtype, finetune_run, missing_or, pretrain_summary
from .units import Unit, experiment_unit

GROUPS = ("map", "same_steps", "same_noise", "weight_decay", "warmup", "duration")
CONFIRM_GROUPS = ("confirm_map", "clip", "long_warmup", "drift", "confirm_wd")
GROUP_TITLES = {"map": "phase map (fixed epochs)", "same_steps": "same steps as the reference batch",
                "same_noise": "same lr/batch (linear scaling)", "weight_decay": "weight decay",
                "warmup": "warm-up", "duration": "long stable runs",
                "confirm_map": "phase map (confirmatory)", "clip": "gradient clipping at the eroding setting",
                "long_warmup": "long warm-up at the eroding setting", "drift": "long runs at calm rates",
                "confirm_wd": "weight decay (confirmatory)"}

# The intervention's gradient-norm clipping levels and the calm candidate rates, chosen from an exploratory pilot
# (seed 100, cached like every run, used by no verdict) before any confirmatory run: at lr 0.1 and batch 64, clipping
# at 0.5 and 1 kept the monitor loss below the spike threshold, 2 did not (unclipped: a peak of 25); a 2.5-epoch
# warm-up did not remove the spike; lr 0.03 spiked (peak 1.5) and lr 0.01 did not (0.009).
CPU_CLIP_NORMS = [0.5, 1.0, 2.0]
PAPER_CLIP_NORMS = [0.5, 1.0, 2.0]  # the cpu levels (no GPU pilot was run); the rule reports whether they remove it
CALM_CANDIDATES = [0.01, 0.015, 0.02]

# per profile: changes to the base configuration, and the chapter's grids (the reference batch is the profile's
# fine-tuning batch size; the eroding rate and the stable rates are chosen per profile, see the chapter)
# (cpu: half the erosion chapter's test images and fewer evaluations, so ~100 pattern/control pairs fit the CPU budget)
PROFILE_CONFIG = {"smoke": dict(n_evals=4), "cpu": dict(test_per_class=50, n_evals=7), "paper": dict(n_evals=16)}
PROFILE_EXTRAS = {
    "smoke": dict(seeds=[0], map_lrs=[0.01, 0.1], map_batch_sizes=[16, 32], control_lrs=[0.1], wd_lrs=[0.1],
                  weight_decays=[0.0, 5e-4], eroding_lr=0.1, warmups=[0.0, 0.5], long_lrs=[0.01], long_epochs=2.0,
                  confirm_seeds=[1], confirm_lrs=[0.1], confirm_batch_sizes=[32], fast_path=True, eval_dtype="float32",
                  monitor_per_class=2, clip_norms=[1.0], long_warmups=[], drift_lrs=[0.01], drift_epochs=2.0,
                  confirm_wd_batch=None, confirm_weight_decays=[]),
    "cpu": dict(seeds=[0, 1, 2], map_lrs=[0.003, 0.01, 0.03, 0.1, 0.2], map_batch_sizes=[32, 64, 128],
                control_lrs=[0.03, 0.1], wd_lrs=[0.03, 0.1], weight_decays=[0.0, 5e-4, 5e-3], eroding_lr=0.1,
                warmups=[0.0, 0.25, 1.0, 2.0], long_lrs=[0.01, 0.03], long_epochs=9.0,
                confirm_seeds=[3, 4, 5, 6, 7], confirm_lrs=[0.003, 0.01, 0.03, 0.1, 0.2],
                confirm_batch_sizes=[32, 64, 128, 256, 512], fast_path=True, eval_dtype="float32",
                monitor_per_class=20,
                clip_norms=CPU_CLIP_NORMS, long_warmups=[2.5], drift_lrs=CALM_CANDIDATES, drift_epochs=15.0,
                confirm_wd_batch=None, confirm_weight_decays=[]),
    "paper": dict(seeds=[0, 1, 2], map_lrs=[0.003, 0.01, 0.03, 0.1, 0.2], map_batch_sizes=[64, 128, 256, 512],
                  control_lrs=[0.03, 0.1, 0.2], wd_lrs=[0.03, 0.1], weight_decays=[0.0, 5e-4, 5e-3], eroding_lr=0.1,
                  warmups=[0.0, 0.25, 1.0, 2.0], long_lrs=[0.01, 0.03], long_epochs=30.0,
                  confirm_seeds=[3, 4, 5], confirm_lrs=[0.03, 0.1], confirm_batch_sizes=[128, 256, 512],
                  fast_path=False, eval_dtype="float32", monitor_per_class=50, clip_norms=PAPER_CLIP_NORMS,
                  long_warmups=[], drift_lrs=[], drift_epochs=20.0, confirm_wd_batch=256, confirm_weight_decays=[0.0, 5e-4]),
}
TRAIN_SIZE = {"cifar10": 50000, "cifar100": 50000, "fashion_mnist": 60000}


def _numbers(name: str, values, integer: bool = False, low: float = 0, low_inclusive: bool = False) -> list:
    if not isinstance(values, (list, tuple)) or not values:
        raise ParameterError(f"{name}={values!r} must be a non-empty list of numbers, e.g. {name}=[0.01, 0.1]")
    for v in values:
        check_number(f"{name} item", v, low=low, low_inclusive=low_inclusive, integer=integer)
    return check_unique(name, values)


def _maybe_empty(name: str, values, integer: bool = False, low_inclusive: bool = False) -> list:
    """A list of numbers that may be empty (a design part a profile leaves out)."""
    if isinstance(values, (list, tuple)) and not values:
        return []
    return _numbers(name, values, integer=integer, low_inclusive=low_inclusive)


def validate_extras(extras: dict, config: ErosionConfig) -> None:
    """Fail before any training on an empty or non-numeric grid, or a warm-up not shorter than the run."""
    for name in ("map_lrs", "control_lrs", "wd_lrs"):
        _numbers(name, extras[name])
    _numbers("map_batch_sizes", extras["map_batch_sizes"], integer=True)
    _numbers("weight_decays", extras["weight_decays"], low_inclusive=True)
    _numbers("long_lrs", extras["long_lrs"])
    check_number("eroding_lr", extras["eroding_lr"], low=0, low_inclusive=False)
    check_number("long_epochs", extras["long_epochs"], low=0, low_inclusive=False, high=MAX_EPOCHS)
    for w in _numbers("warmups", extras["warmups"], low_inclusive=True):
        check_number("warmups item", w, low=0, high=config.finetune_epochs, high_inclusive=False)
    seeds = _maybe_empty("confirm_seeds", extras["confirm_seeds"], integer=True, low_inclusive=True)
    if len(set(seeds)) != len(seeds):
        raise ParameterError(f"confirm_seeds={seeds!r} lists a seed twice; each seed must appear once")
    _maybe_empty("confirm_lrs", extras["confirm_lrs"])
    _maybe_empty("confirm_batch_sizes", extras["confirm_batch_sizes"], integer=True)
    if not isinstance(extras["fast_path"], bool):
        raise ParameterError(f"fast_path={extras['fast_path']!r} must be true or false")
    check_eval_dtype(extras["eval_dtype"], extras["fast_path"])
    check_number("monitor_per_class", extras["monitor_per_class"], low=0, integer=True)
    _maybe_empty("clip_norms", extras["clip_norms"])
    for w in _maybe_empty("long_warmups", extras["long_warmups"]):
        check_number("long_warmups item", w, low=0, high=config.finetune_epochs, high_inclusive=False)
    _maybe_empty("drift_lrs", extras["drift_lrs"])
    check_number("drift_epochs", extras["drift_epochs"], low=0, low_inclusive=False, high=MAX_EPOCHS)
    if extras["confirm_wd_batch"] is not None:
        check_number("confirm_wd_batch", extras["confirm_wd_batch"], low=1, integer=True)
    _maybe_empty("confirm_weight_decays", extras["confirm_weight_decays"], low_inclusive=True)
    for run in confirm_runs(config, extras) + mechanism_runs(config, extras):  # each configuration, validated
        run.config.validate()


def train_size(cfg: ErosionConfig) -> int:
    """Number of fine-tuning images of ``cfg`` (without loading the data)."""
    if cfg.train_per_class is not None:
        return cfg.train_per_class * data_mod.NUM_CLASSES[cfg.dataset]
    return TRAIN_SIZE[cfg.dataset]


def steps_of(cfg: ErosionConfig) -> int:
    """Optimiser steps of the fine-tuning run of ``cfg`` (as :func:`erosion_utils.train.train` counts them)."""
    per_epoch = max(1, train_size(cfg) // cfg.finetune_batch_size)
    return max(1, round(cfg.finetune_epochs * per_epoch))


def epochs_for_steps(cfg: ErosionConfig, steps: int) -> float:
    """Epochs that give ``cfg`` exactly ``steps`` optimiser steps at its batch size."""
    return round(steps / max(1, train_size(cfg) // cfg.finetune_batch_size), 9)


@dataclass(frozen=True)
class MechanismRun:
    """One configuration of the chapter and the groups (figures) it belongs to."""

    groups: tuple[str, ...]
    config: ErosionConfig


def mechanism_runs(base: ErosionConfig, extras: dict) -> list[MechanismRun]:
    """Every configuration of the chapter, most informative first (the map at the first seed, the controls, the
    warm-up, weight decay and long runs, then the other seeds); a configuration shared by several groups appears
    once, with all its groups. Each is validated."""
    ref_batch = base.finetune_batch_size
    planned: dict[ErosionConfig, list[str]] = {}

    def add(group: str, cfg: ErosionConfig) -> None:
        planned.setdefault(cfg.validate(), [])
        if group not in planned[cfg]:
            planned[cfg].append(group)

    for seed in extras["seeds"]:
        s = replace(base, seed=seed)
        for lr in extras["map_lrs"]:
            for b in extras["map_batch_sizes"]:
                add("map", replace(s, finetune_lr=lr, finetune_batch_size=b))
        ref_steps = steps_of(s)
        for lr in extras["control_lrs"]:
            add("same_steps", replace(s, finetune_lr=lr))
            add("same_noise", replace(s, finetune_lr=lr))
            for b in extras["map_batch_sizes"]:
                if b == ref_batch:
                    continue
                at_b = replace(s, finetune_lr=lr, finetune_batch_size=b)
                add("same_steps", replace(at_b, finetune_epochs=epochs_for_steps(at_b, ref_steps)))
                add("same_noise", replace(at_b, finetune_lr=round(lr * b / ref_batch, 9)))
        for w in extras["warmups"]:
            add("warmup", replace(s, finetune_lr=extras["eroding_lr"], finetune_warmup_epochs=w))
        for lr in extras["wd_lrs"]:
            for wd in extras["weight_decays"]:
                add("weight_decay", replace(s, finetune_lr=lr, finetune_weight_decay=wd))
        for lr in extras["long_lrs"]:
            add("duration", replace(s, finetune_lr=lr))
            add("duration", replace(s, finetune_lr=lr, finetune_epochs=extras["long_epochs"]))
    return [MechanismRun(tuple(groups), cfg) for cfg, groups in planned.items()]


def confirm_runs(base: ErosionConfig, extras: dict) -> list[MechanismRun]:
    """The confirmatory design, seed by seed (``confirm_seeds``; fast path, its evaluation precision and the monitor as
    the profile says): the map (``confirm_lrs`` x ``confirm_batch_sizes`` at the usual epochs), gradient clipping
    (``clip_norms``) and long warm-ups (``long_warmups``) at the eroding rate and the reference batch, long runs
    (``drift_epochs``) at the calm candidate rates ``drift_lrs`` with their usual-length runs, and
    (``confirm_wd_batch``) weight decay at the eroding rate. A configuration shared by several groups appears once, with
    all its groups. Each is validated."""
    planned: dict[ErosionConfig, list[str]] = {}

    def add(group: str, cfg: ErosionConfig) -> None:
        planned.setdefault(cfg.validate(), [])
        if group not in planned[cfg]:
            planned[cfg].append(group)

    for seed in extras["confirm_seeds"]:
        s = replace(base, seed=seed, fast_path=extras["fast_path"], eval_dtype=extras["eval_dtype"],
                    monitor_per_class=extras["monitor_per_class"])
        eroding = replace(s, finetune_lr=extras["eroding_lr"])
        for lr in extras["confirm_lrs"]:
            for b in extras["confirm_batch_sizes"]:
                add("confirm_map", replace(s, finetune_lr=lr, finetune_batch_size=b))
        add("clip", eroding)  # the arm without clipping
        for c in extras["clip_norms"]:
            add("clip", replace(eroding, finetune_clip_norm=c))
        for w in extras["long_warmups"]:
            add("long_warmup", eroding)
            add("long_warmup", replace(eroding, finetune_warmup_epochs=w))
        for lr in extras["drift_lrs"]:
            add("drift", replace(s, finetune_lr=lr))
            add("drift", replace(s, finetune_lr=lr, finetune_epochs=extras["drift_epochs"]))
        if extras["confirm_wd_batch"] is not None:
            for wd in extras["confirm_weight_decays"]:
                add("confirm_wd", replace(eroding, finetune_batch_size=extras["confirm_wd_batch"],
                                          finetune_weight_decay=wd))
    return [MechanismRun(tuple(groups), cfg) for cfg, groups in planned.items()]


def mechanism_experiment(base: ErosionConfig, extras: dict, ctx: Context, confirmatory: bool = False) -> list[dict]:
    """Each configuration's pattern run and control, with its groups (the exploratory design, or with
    ``confirmatory`` the confirmatory one); with ``ctx.compute`` off, configurations whose results are not cached
    come back with ``"missing": True``."""
    rows = []
    for run in (confirm_runs if confirmatory else mechanism_runs)(base, extras):
        row = {"groups": list(run.groups), "config": run.config.as_dict(), "seed": run.config.seed}
        got, why = missing_or(lambda c=run.config: dict(pattern=finetune_run(c, True, ctx),
                                                        control=finetune_run(c, False, ctx),
                                                        pretrain=pretrain_summary(c, ctx)))
        row.update(got if why is None else {"missing": True})
        rows.append(row)
    return rows


def compute_mechanism_run(ctx: Context, cfg: ErosionConfig) -> None:
    """One unit of work: the pattern run and the control of ``cfg`` (cached)."""
    finetune_run(cfg, True, ctx)
    finetune_run(cfg, False, ctx)


def units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """The chapter's work: one unit per configuration (pattern run and control), the confirmatory design first (seed
    by seed), then the exploratory one in :func:`mechanism_runs` order (every group at the first seed, then the
    other seeds)."""
    out, seen = [], set()
    for run in confirm_runs(base, extras) + mechanism_runs(base, extras):
        if run.config in seen:
            continue
        seen.add(run.config)
        c = run.config
        label = (f"mechanism {'/'.join(run.groups)}: lr={c.finetune_lr:g} batch={c.finetune_batch_size} "
                 f"epochs={c.finetune_epochs:g} warmup={c.finetune_warmup_epochs:g} wd={c.finetune_weight_decay:g} "
                 + (f"clip={c.finetune_clip_norm:g} " if c.finetune_clip_norm else "") + f"seed {c.seed}")
        out.append(experiment_unit(label, "finetune", compute_mechanism_pair, c))
    return out


def compute_mechanism_pair(cfg: ErosionConfig, ctx: Context) -> None:
    """:func:`compute_mechanism_run` with the experiment-function signature the executors call."""
    compute_mechanism_run(ctx, cfg)
