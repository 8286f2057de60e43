"""The experiments, one module per chapter over a shared core (data flows notebooks → experiments → core modules
→ cache). A chapter module imports :mod:`.core`, :mod:`.units` and the core modules, never another chapter module,
and never :mod:`erosion_utils.profiles`, :mod:`erosion_utils.executors` or :mod:`erosion_utils.paper` (they call
the chapter, not the other way round).

Every experiment takes an :class:`ErosionConfig` (validated before any training) and a :class:`Context` (device,
caches, data location) and returns cache entries: ``{"params", "provenance", "result"}``.

:data:`CHAPTERS` is the one registry of the book's chapters, in book order: each carries its per-profile changes to
the base configuration, its own parameters per profile, the check of those parameters and its units of work (what
``python -m erosion_utils paper`` runs, in this order). Adding a chapter is one entry here (see the README).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Callable

from . import breadth, erosion, mechanism, mitigation, representations
from .breadth import BREADTH_FACTORS, breadth_experiment, breadth_variants, control_for
from .core import (PATTERN_FIELDS, PRETRAIN_FIELDS, PROFILES, CacheMissError, CheckpointCache, Context, ErosionConfig,
                   ResultCache, eval_views, finetune_params, finetune_run, load_data, make_evaluator, missing_or,
                   new_model, patterned_train_set, pretrain_summary, pretrained_model)
from .erosion import erosion_experiment
from .representations import representation_experiment, representation_experiments
from .units import Unit


def _no_checks(extras: dict, config: ErosionConfig) -> None:
    """A chapter without parameters of its own to check."""


def _no_units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """A chapter that computes nothing of its own."""
    return []


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book: the experiment name its notebook resolves, per profile its changes to the base
    configuration and its own parameters, the check of those parameters and its units of work."""

    name: str
    profile_extras: dict[str, dict]
    profile_config: dict[str, dict] = field(default_factory=lambda: {p: {} for p in PROFILES})
    validate_extras: Callable[[dict, ErosionConfig], None] = _no_checks
    units: Callable[[ErosionConfig, dict], list[Unit]] = _no_units
    config_params: tuple[str, ...] | None = None  # the configuration fields its notebook takes (None: all of them)
    paper_rank: int = 9  # order of its units in a paper run (lower first; ties keep book order)

    @classmethod
    def of(cls, name: str, module: ModuleType) -> "Chapter":
        """A chapter whose module carries ``PROFILE_EXTRAS``, ``PROFILE_CONFIG``, ``validate_extras`` and ``units``."""
        return cls(name, module.PROFILE_EXTRAS, module.PROFILE_CONFIG, module.validate_extras, module.units)


CHAPTERS: dict[str, Chapter] = {c.name: c for c in (
    Chapter("patterns", {p: dict(n_images=6) for p in PROFILES},
            config_params=("seed", "dataset", "pattern_size", "corner")),
    replace(Chapter.of("erosion", erosion), paper_rank=0),
    replace(Chapter.of("breadth", breadth), paper_rank=1),
    replace(Chapter.of("representations", representations), paper_rank=4),
    Chapter("claims", {p: dict() for p in PROFILES}, config_params=()),
    replace(Chapter.of("mechanism", mechanism), paper_rank=2),
    replace(Chapter.of("mitigation", mitigation), paper_rank=3),
    Chapter("plan", {p: dict() for p in PROFILES}, config_params=()),
)}

__all__ = ["BREADTH_FACTORS", "CHAPTERS", "PATTERN_FIELDS", "PRETRAIN_FIELDS", "PROFILES", "CacheMissError",
           "Chapter", "CheckpointCache", "Context", "ErosionConfig", "ResultCache", "breadth_experiment",
           "breadth_variants", "control_for", "erosion_experiment", "eval_views", "finetune_params", "finetune_run",
           "load_data", "make_evaluator", "missing_or", "new_model", "patterned_train_set", "pretrain_summary",
           "pretrained_model", "representation_experiment", "representation_experiments"]
