"""The experiments, one module per chapter over a shared core (data flows notebooks → experiments → core modules
→ cache). A chapter module imports :mod:`.core` and the core modules, never another chapter module.

Every experiment takes an :class:`ErosionConfig` (validated before any training) and a :class:`Context` (device,
caches, data location) and returns cache entries: ``{"params", "provenance", "result"}``.
"""
from .breadth import BREADTH_FACTORS, breadth_experiment, breadth_variants, control_for
from .core import (PATTERN_FIELDS, PRETRAIN_FIELDS, CacheMissError, CheckpointCache, Context, ErosionConfig,
                   ResultCache, eval_views, finetune_params, finetune_run, load_data, make_evaluator, new_model,
                   patterned_train_set, pretrain_summary, pretrained_model)
from . import mechanism, mitigation
from .erosion import erosion_experiment
from .representations import representation_experiment, representation_experiments

__all__ = ["BREADTH_FACTORS", "PATTERN_FIELDS", "PRETRAIN_FIELDS", "CacheMissError", "CheckpointCache", "Context",
           "ErosionConfig", "ResultCache", "breadth_experiment", "breadth_variants", "control_for", "erosion_experiment",
           "eval_views", "finetune_params", "finetune_run", "load_data", "make_evaluator", "new_model",
           "patterned_train_set", "pretrain_summary", "pretrained_model", "representation_experiment",
           "representation_experiments"]
