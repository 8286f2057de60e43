"""The core experiment (Fig. 1): pattern run and clean control per learning rate and seed."""
from __future__ import annotations

from dataclasses import replace

from ..validation import ParameterError
from .core import Context, ErosionConfig, finetune_run, missing_or, pretrain_summary
from .units import Unit, experiment_unit

PROFILE_CONFIG = {"smoke": dict(), "cpu": dict(), "paper": dict()}
PROFILE_EXTRAS = {"smoke": dict(seeds=[0], finetune_lrs=[0.01, 0.1]),
                  "cpu": dict(seeds=[0, 1, 2], finetune_lrs=[0.01, 0.1]),
                  "paper": dict(seeds=[0, 1, 2], finetune_lrs=[0.01, 0.1])}


def validate_extras(extras: dict, config: ErosionConfig) -> None:
    """Nothing beyond the checks every chapter's rates and seeds get in :func:`erosion_utils.profiles.resolve`."""


def erosion_experiment(cfg: ErosionConfig, seeds: list[int], ctx: Context,
                       finetune_lrs: list[float] | None = None) -> list[dict]:
    """Fig. 1: for each finetuning learning rate and seed, the pattern run and the clean control from the same
    pretrained weights. All configurations are validated before any training."""
    if not seeds:
        raise ParameterError("seeds=[] must list at least one seed, e.g. [0, 1, 2]")
    lrs = finetune_lrs or [cfg.finetune_lr]
    configs = [replace(cfg, seed=s, finetune_lr=lr).validate() for lr in lrs for s in seeds]
    return [{"seed": c.seed, "finetune_lr": c.finetune_lr, "pattern": finetune_run(c, True, ctx),
             "control": finetune_run(c, False, ctx), "pretrain": pretrain_summary(c, ctx)} for c in configs]


def erosion_runs(config: ErosionConfig, extras: dict, ctx: Context) -> tuple[list[dict], dict[str, str | None]]:
    """The chapter's runs that can be loaded here, one (rate, seed) at a time, and what is missing (description ->
    reason, None where loaded)."""
    runs, missing = [], {}
    for lr in extras["finetune_lrs"]:
        for seed in extras["seeds"]:
            got, why = missing_or(erosion_experiment, config, [seed], ctx, [lr])
            runs += got or []
            missing[f"erosion: pattern run and control at lr {lr:g}, seed {seed}"] = why
    return runs, missing


def units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """Fig. 1 seed by seed: each rate's pattern run and control, the first seed first."""
    return [experiment_unit(f"erosion lr={lr} {label} seed {seed}", "finetune", finetune_run,
                            replace(base, seed=seed, finetune_lr=lr), patterned)
            for seed in extras["seeds"] for lr in extras["finetune_lrs"]
            for patterned, label in ((True, "pattern"), (False, "control"))]
