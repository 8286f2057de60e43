"""The analysis plan: every rule that turns results into a verdict, with its thresholds, the statistic it compares,
how that statistic's interval is computed, and its outcomes. Rules only (data, standard library): the code that
applies them is :mod:`erosion_utils.report.verdicts`, and the date and commit at which each rule took its current
form come from this file's git history (:mod:`erosion_utils.report.planlog`).

A verdict is *confirmatory* when every result it uses was computed after its rule took its current form, otherwise
*exploratory*. Every comparison of a statistic with a threshold uses a seed-level interval; with fewer than
:data:`MIN_SEEDS` seeds, or an interval that reaches the threshold (to within :data:`PRECISION`), the outcome is
*inconclusive*. Sensitivity: every verdict is recomputed with each threshold moved over :data:`SENSITIVITY` of its
value (or, for a zero threshold, over the interval levels :data:`LEVELS`), and is *fragile* when it changes within
:data:`FRAGILE` of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

LEVEL = 0.95  # every interval is a 95% interval
LEVELS = (0.8, 0.9, 0.95, 0.99)  # the levels a zero-threshold verdict's sensitivity is shown over
MIN_SEEDS = 3
PRECISION = 0.0005  # half of the reported precision (3 decimals): an interval end this close to a threshold touches it
SENSITIVITY = 0.5  # thresholds are moved by up to +-50% of their value
FRAGILE = 0.1  # a verdict that changes within +-10% of a threshold is fragile
BOOTSTRAP = 10_000  # resamples of every bootstrap interval (seeded: the same data give the same interval)

INTERVALS = {
    "paired_t": "Student-t 95% interval over seeds of the per-seed paired difference (both runs from the same "
                "pretrained network and seed), clipped to [-1, 1]",
    "t_rate": "Student-t 95% interval over seeds of the per-seed value, clipped to the quantity's range ([0, 1] for "
              "accuracies and rates)",
    "t_mean": "Student-t 95% interval over seeds of the per-seed value (losses: clipped at 0)",
    "bootstrap_ratio": f"percentile 95% interval of the ratio of mean paired differences over {BOOTSTRAP:,} "
                       f"seed-bootstrap resamples (seeds drawn with replacement, each seed's runs kept together)",
    "seed_bootstrap_coef": f"percentile 95% interval of each regression coefficient over {BOOTSTRAP:,} "
                           f"seed-bootstrap resamples (all runs of a seed drawn together)",
    "count": "a count over seeds, one verdict per seed (no interval)",
    "design": "a design choice made on pilot data that no verdict uses",
}
OUTCOMES_3 = ("holds", "does not hold", "inconclusive")


@dataclass(frozen=True)
class Rule:
    """One rule of the plan: ``text`` states it in words (``{name}`` placeholders are its ``thresholds``)."""

    id: str
    chapter: str
    title: str
    statistic: str
    interval: str
    thresholds: dict = field(default_factory=dict)
    outcomes: tuple = OUTCOMES_3
    text: str = ""

    def words(self) -> str:
        """The rule's text with its thresholds filled in."""
        return self.text.format(**{k: f"{v:g}" for k, v in self.thresholds.items()}, min_seeds=MIN_SEEDS)

    def statistic_words(self) -> str:
        """The statistic with its thresholds filled in."""
        return self.statistic.format(**{k: f"{v:g}" for k, v in self.thresholds.items()})


RULES: tuple[Rule, ...] = (
    # ------------------------------------------------------------------------------------------ the paper's claims
    Rule("claim1.erosion", "claims", "Claim 1: erosion",
         "erosion: the clean control's final clean test accuracy minus the pattern run's, per seed", "paired_t",
         {"erosion": 0.10},
         text="At a fine-tuning rate, claim 1 **holds** when the interval's lower end is above {erosion}, **does not "
              "hold** when its upper end is below {erosion}, and is **inconclusive** otherwise or with fewer than "
              "{min_seeds} seeds."),
    Rule("claim2.reliance", "claims", "Claim 2: reliance on the pattern",
         "follow rate: the share of test images carrying another class's pattern that the pattern-fine-tuned network "
         "assigns to the pattern's class, per seed", "t_rate", {"follows": 0.90, "partly": 0.50},
         ("holds", "partly", "does not hold", "inconclusive"),
         text="At a fine-tuning rate, claim 2 **holds** when the interval's lower end is above {follows}, holds "
              "**partly** when the interval lies between {partly} and {follows}, **does not hold** when its upper end "
              "is below {partly}, and is **inconclusive** otherwise or with fewer than {min_seeds} seeds."),
    Rule("claim3.breadth", "claims", "Claim 3: breadth",
         "erosion of each breadth setting (claim 1's statistic)", "paired_t", {"erosion": 0.10},
         ("holds", "partly", "does not hold", "inconclusive"),
         text="Each setting erodes when its erosion interval's lower end is above {erosion} and does not when the "
              "upper end is below it; a setting with fewer than {min_seeds} seeds is inconclusive. Claim 3 **holds** "
              "when every setting erodes, **partly** when some do, **does not hold** when none does and every setting "
              "is decided, and is **inconclusive** otherwise."),
    Rule("claim4.features", "claims", "Claim 4: features erode, deeper more",
         "the clean-label probe accuracy of the control minus that of the pattern run at the deepest probed hidden "
         "layer, and the mean of that difference over the deeper half of the layers minus over the shallower half, "
         "per seed", "paired_t", {"probe": 0.05, "depth": 0.0},
         text="At a fine-tuning rate, claim 4 **holds** when the deepest layer's probe-accuracy loss has its lower end "
              "above {probe} and the deeper-minus-shallower difference has its lower end above {depth}; it **does not "
              "hold** when the deepest layer's loss has its upper end below {probe}; it is **inconclusive** otherwise "
              "or with fewer than {min_seeds} seeds."),
    # ----------------------------------------------------------------------------------------------- the mechanism
    Rule("mechanism.collapse", "mechanism", "Both runs collapse",
         "the control's own loss: the pretrained network's clean test accuracy minus the clean control's final one, "
         "per seed", "paired_t", {"collapse": 0.10}, ("both collapse", "control keeps", "inconclusive"),
         text="A setting is **both collapse** when the interval's lower end is above {collapse}: plain continued "
              "training loses accuracy by itself there, so erosion (a difference of two damaged runs) is not judged; "
              "such cells are drawn hatched and excluded from every erosion verdict."),
    Rule("mechanism.cell", "mechanism", "A setting erodes",
         "erosion (claim 1's statistic) of one setting (rate, batch, length, options)", "paired_t", {"erosion": 0.10},
         ("erodes", "does not erode", "inconclusive", "both collapse"),
         text="A setting **erodes** when the erosion interval's lower end is above {erosion}, **does not erode** when "
              "its upper end is below {erosion}, and is **inconclusive** otherwise or with fewer than {min_seeds} "
              "seeds (a both-collapse setting is not judged)."),
    Rule("mechanism.spike", "mechanism", "A loss spike",
         "the peak over the run of the mean loss on the monitor set's images of the run's own training distribution "
         "(patterned for the pattern run, clean for the control), per seed", "t_mean", {"spike": 1.0},
         ("spikes", "calm", "inconclusive"),
         text="A run **spikes** when the interval of its peak monitor loss has its lower end above {spike} (chance "
              "level on ten classes is ln 10 = 2.3), is **calm** when the upper end is below {spike}, and is "
              "**inconclusive** otherwise. The monitor set is fixed (the same images for every run and batch size), "
              "so the statistic does not depend on the batch size."),
    Rule("mechanism.instability", "mechanism", "Is the instability necessary?",
         "at the eroding setting: the erosion of each intervention arm (gradient-norm clipping, a long warm-up) whose "
         "pattern runs and controls are calm by the spike rule and whose control still moves its weights at least "
         "{move} times as far from the pretrained ones (mean relative distance at the end) as the control at the "
         "lower rate 0.03 and the same batch", "paired_t", {"erosion": 0.10, "spike": 1.0, "move": 0.5},
         ("necessary", "not necessary", "inconclusive", "not tested", "nothing to explain"),
         text="Instability is **necessary** when every arm that removes the spike (and still trains) does not erode "
              "(upper end below {erosion}), and **not necessary** when some such arm erodes (lower end above "
              "{erosion}); **inconclusive** otherwise; **not tested** when no arm removes the spike; **nothing to "
              "explain** when the arm without intervention does not both erode and spike."),
    Rule("mechanism.drift", "mechanism", "Slow drift at calm rates",
         "at each candidate rate whose runs of the usual length are calm and do not erode: the slope of the pattern "
         "run's monitor follow rate against epochs after the usual length (least squares, per seed), and the long "
         "runs' final erosion", "paired_t", {"erosion": 0.10, "slope": 0.01, "spike": 1.0},
         ("supported", "partly supported", "not supported", "inconclusive", "not tested"),
         text="A rate **drifts to erosion** when its long runs stay calm and their erosion's lower end is above "
              "{erosion}; it **creeps** when the slope's lower end is above {slope} per epoch without that; it shows "
              "**no drift** when the erosion's upper end is below {erosion} and the slope's upper end below {slope}. "
              "Drift is **supported** when some qualifying rate drifts to erosion, **partly supported** when some "
              "creeps, **not supported** when every qualifying rate shows no drift, **inconclusive** otherwise, and "
              "**not tested** when no candidate rate qualifies."),
    Rule("mechanism.noise_steps", "mechanism", "Noise scale or number of steps?",
         "the coefficients of log2(lr/batch) and of log2(optimiser steps) in a least-squares fit of every map run's "
         "erosion (outside both-collapse settings)", "seed_bootstrap_coef", {},
         ("noise scale", "number of steps", "both", "neither", "inconclusive"),
         text="The batch-size effect follows the **noise scale** when only the lr/batch coefficient's interval "
              "excludes zero, the **number of steps** when only the steps coefficient's does, **both** when both do, "
              "and **neither** when neither does; with fewer than {min_seeds} seeds it is **inconclusive**."),
    # ---------------------------------------------------------------------------------- mitigation: transfer setting
    Rule("transfer.recipe", "mitigation", "The transfer setting's fine-tuning recipe",
         "the clean control's mean gain of clean test accuracy over the pretrained network, on the pilot seeds (100 "
         "and 101), for each candidate recipe", "design", {},
         ("chosen",),
         text="Chosen before any pattern run of the setting, on clean controls alone: the candidate recipe (length, "
              "schedule, rate) with the largest mean gain. No verdict uses the pilot."),
    Rule("transfer.gain", "mitigation", "Something to learn",
         "the control's gain: its final clean test accuracy minus the pretrained network's, per seed", "paired_t",
         {"gain": 0.01}, ("something to learn", "nothing to learn", "inconclusive"),
         text="Fine-tuning has **something to learn** when the gain's lower end is above {gain}; otherwise the "
              "gain-kept verdicts are not tested."),
    Rule("transfer.erosion", "mitigation", "The transfer baseline erodes", "erosion (claim 1's statistic)",
         "paired_t", {"erosion": 0.10}, ("erodes", "does not erode", "inconclusive"),
         text="The baseline **erodes** when the erosion interval's lower end is above {erosion} and **does not** when "
              "its upper end is below {erosion}; otherwise **inconclusive**."),
    Rule("transfer.option", "mitigation", "What an option keeps and what it drops",
         "gain kept: (the option's final clean test accuracy minus the pretrained network's) divided by (the "
         "control's minus the pretrained network's), and the option's follow rate", "bootstrap_ratio",
         {"keeps": 0.5, "ignores": 0.2, "follows": 0.5},
         ("recommended", "keeps the gain, follows the shortcut", "ignores the shortcut, loses the gain",
          "loses the gain and follows the shortcut", "inconclusive", "not tested"),
         text="An option **keeps the gain** when the gain-kept interval's lower end is above {keeps} and **loses "
              "it** when the upper end is below {keeps}. It **ignores the shortcut** when the follow rate's interval "
              "(Student-t, clipped to [0, 1]) has its upper end below {ignores}, and **follows it** when the lower "
              "end is above {follows}. An option is **recommended** when it keeps the gain and ignores the shortcut; "
              "among recommended options the one with the largest mean gain kept is the practitioner's answer. "
              "Post-hoc options (batch-norm re-estimation, weight interpolation) count only where the network has "
              "measurably moved from the pretrained one (gain kept with its lower end above 0)."),
    Rule("transfer.recovery", "mitigation", "Suppressed or destroyed?",
         "per seed, on clean data after the eroded run: the first evaluated step at which clean test accuracy "
         "reaches {target} times the pretrained network's, for the eroded network and for the pretrained network "
         "with its last one and its last two stages re-initialised", "count", {"target": 1.0},
         ("suppression", "partial", "destruction", "nothing to recover", "not resolved"),
         text="Per seed: **nothing to recover** when the eroded network starts at the target; **suppression** when "
              "it reaches the target no later than the network with only its last stage re-initialised; "
              "**destruction** when it reaches it later than the one with its last two stages re-initialised, or not "
              "at all while that one does; **partial** in between; **not resolved** when neither it nor the "
              "references reach the target within the run. The page counts the seeds of each verdict."),
    # ------------------------------------------------------------------------------- mitigation: the paper's setting
    Rule("same_data.option", "mitigation", "Does an option prevent erosion? (the paper's setting)",
         "the option's erosion (the baseline's clean control minus the option's pattern run, per seed) and the "
         "reduction (the baseline's erosion minus the option's, per seed)", "paired_t",
         {"erosion": 0.10, "reduce": 0.05},
         ("prevents", "reduces", "does not reduce", "inconclusive", "nothing to prevent"),
         text="When the baseline erodes (claim 1's rule), an option **prevents** erosion when its erosion's upper end "
              "is below {erosion}, otherwise **reduces** it when the reduction's lower end is above {reduce}, and "
              "**does not reduce** it when the reduction's upper end is below {reduce}; otherwise **inconclusive**. "
              "When the baseline does not erode there is **nothing to prevent**."),
    Rule("same_data.interpolation", "mitigation", "Weight interpolation (the paper's setting)",
         "at each alpha > 0 (batch-norm statistics re-estimated on clean images): matched accuracy, clean accuracy "
         "and follow rate against the pretrained network's (alpha = 0), per seed", "paired_t",
         {"moved": 0.05, "keep": 0.03, "drops": 0.5},
         ("an alpha qualifies", "no alpha qualifies", "inconclusive"),
         text="An alpha **qualifies** when the network has measurably moved (matched accuracy up by more than "
              "{moved}: lower end), keeps clean accuracy (its drop has its upper end below {keep}) and drops the "
              "pattern (follow rate's upper end below {drops}); **no alpha qualifies** when every moved alpha "
              "fails one of the last two by its interval; **inconclusive** otherwise."),
    Rule("same_data.recovery", "mitigation", "Recovery (the paper's setting, exploratory design)",
         "per seed, on clean data after the eroded run: the first evaluated step at which clean test accuracy reaches "
         "{target} times the pretrained network's, for the eroded network and for the network trained from scratch",
         "count", {"target": 0.9, "fast": 0.5},
         ("fast", "as slow as scratch", "in between", "nothing to recover", "not resolved"),
         text="Per seed: **fast** when the eroded network reaches the target in at most {fast} of the steps scratch "
              "needs (or scratch never does), **as slow as scratch** when it needs more than scratch or never gets "
              "there while scratch does, **in between** otherwise, **not resolved** when neither gets there. The page "
              "counts the seeds of each verdict."),
)

RULES_BY_ID = {r.id: r for r in RULES}


def rule(rule_id: str) -> Rule:
    """The rule named ``rule_id``."""
    if rule_id not in RULES_BY_ID:
        raise KeyError(f"no rule {rule_id!r} in the analysis plan; known: {sorted(RULES_BY_ID)}")
    return RULES_BY_ID[rule_id]
