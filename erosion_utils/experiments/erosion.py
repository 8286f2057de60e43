"""The core experiment (Fig. 1): pattern run and clean control per learning rate and seed."""
from __future__ import annotations

from dataclasses import replace

from ..validation import ParameterError
from .core import Context, ErosionConfig, finetune_run, pretrain_summary


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
