# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# (mechanism)=
# # When and why erosion happens (cpu scale)
#
# The {ref}`erosion` chapter shows *that* erosion depends on the fine-tuning regime. This chapter asks *when* and
# *why*. The paper tests neither of the two explanations below; both are ours.
#
# - **H1, instability.** A jump to a large learning rate throws the network out of its minimum; while it re-fits the
#   training set, the pattern is the simplest solution and wins. If the instability is *necessary*, removing the loss
#   spike (clipping the gradient, warming up) removes erosion.
# - **H2, drift.** The pattern takes over gradually, even when training is calm: a long enough run at a calm rate
#   erodes.
#
# Every run is a pattern run and its clean control, from the same pretrained network with the same optimiser and
# batch order; *erosion* is the control's final clean test accuracy minus the pattern run's, and the *follow rate* is
# the share of test images carrying another class's pattern that the network assigns to the pattern's class.
#
# The chapter has two designs. The **confirmatory design** (five new seeds) is judged by rules of the
# {ref}`plan`, committed before its runs: a map closed at large batches, an intervention that removes the spike, long
# runs at calm rates, and a regression that separates the noise scale from the number of steps. Its runs carry a
# dense *monitor*: at about 30 points per run (every 4% of the steps and every early step) the loss on a fixed set of
# 200 training images (clean, and carrying their own class's pattern) and the clean accuracy and follow rate on 200
# test images, the same images for every batch size. The first, **exploratory design** (three seeds) comes last: its
# rules were changed after part of its data was in, so its verdicts can only suggest.

# %% tags=["parameters", "remove-cell"]
# papermill parameters; None: the profile's value (python -m erosion_utils params 05_mechanism --profile cpu)
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)
dataset: "Optional[str]" = None  # cifar10, cifar100 or fashion_mnist; None: the profile's value
arch: "Optional[str]" = None  # vgg11, vgg16, vgg19, resnet18, resnet34 or mlp; None: the profile's value
width: "Optional[float]" = None  # channel-width multiplier, 1.0 is the standard network; None: the profile's value
train_per_class: "Optional[int]" = None  # training images per class (the paper profile: all); None: the profile's value
test_per_class: "Optional[int]" = None  # test images per class (the paper profile: all); None: the profile's value
pretrain_epochs: "Optional[float]" = None  # epochs of clean pretraining; None: the profile's value
pretrain_lr: "Optional[float]" = None  # peak learning rate of pretraining; None: the profile's value
pattern: "Optional[str]" = None  # the class-coded pattern: colour, position or noise; None: the profile's value
pattern_size: "Optional[int]" = None  # side of the pattern in pixels, 1 to 32; None: the profile's value
corner: "Optional[str]" = None  # top_left, top_right, bottom_left or bottom_right; None: the profile's value
fraction: "Optional[float]" = None  # share of fine-tuning images with the pattern, in (0, 1]; None: the profile's value
finetune_epochs: "Optional[float]" = None  # epochs of every run except the long ones; None: the profile's value
finetune_weight_decay: "Optional[float]" = None  # weight decay outside the weight-decay runs; None: the profile's value
finetune_batch_size: "Optional[int]" = None  # the reference batch size (controls match its steps); None: the profile's value
n_evals: "Optional[int]" = None  # test-set evaluations along fine-tuning, at least 2; None: the profile's value
finetune_warmup_epochs: "Optional[float]" = None  # warm-up of every run outside the warm-up runs; None: the profile's value
freeze_stages: "Optional[int]" = None  # mitigation: freeze the first k stages (0: none); None: the profile's value
head_only_epochs: "Optional[float]" = None  # mitigation (LP-FT): epochs training only the classifier first; None: the profile's value
l2sp_alpha: "Optional[float]" = None  # mitigation (L2-SP): pull towards the pretrained weights (0: off); None: the profile's value
erase_corners: "Optional[float]" = None  # mitigation: probability of erasing a random corner square; None: the profile's value
seeds: "Optional[list[int]]" = None  # seeds, one pretrain-then-finetune pair per seed and setting; None: the profile's value
map_lrs: "Optional[list[float]]" = None  # learning rates of the phase map; None: the profile's value
map_batch_sizes: "Optional[list[int]]" = None  # batch sizes of the phase map (same epochs); None: the profile's value
control_lrs: "Optional[list[float]]" = None  # rates (at the reference batch) of the same-steps and same-noise controls; None: the profile's value
wd_lrs: "Optional[list[float]]" = None  # rates of the weight-decay runs; None: the profile's value
weight_decays: "Optional[list[float]]" = None  # weight decays compared at each of wd_lrs; None: the profile's value
eroding_lr: "Optional[float]" = None  # the rate of the warm-up runs; None: the profile's value
warmups: "Optional[list[float]]" = None  # warm-up lengths in epochs, each shorter than the run; None: the profile's value
long_lrs: "Optional[list[float]]" = None  # stable rates continued for long_epochs; None: the profile's value
long_epochs: "Optional[float]" = None  # epochs of the long runs; None: the profile's value
confirm_seeds: "Optional[list[int]]" = None  # seeds of the confirmatory design (judged by the analysis plan); None: the profile's value
confirm_lrs: "Optional[list[float]]" = None  # learning rates of the confirmatory map; None: the profile's value
confirm_batch_sizes: "Optional[list[int]]" = None  # batch sizes of the confirmatory map (same epochs); None: the profile's value
fast_path: "Optional[bool]" = None  # the confirmatory runs on the CPU fast path (channels-last, bf16 training); None: the profile's value
eval_dtype: "Optional[str]" = None  # the fast path's evaluation precision: float32 or bfloat16 (faster; new runs only); None: the profile's value
monitor_per_class: "Optional[int]" = None  # images per class of the fixed monitor set (dense dynamics); None: the profile's value
clip_norms: "Optional[list[float]]" = None  # gradient-norm clipping levels at the eroding setting; None: the profile's value
long_warmups: "Optional[list[float]]" = None  # long warm-ups at the eroding setting, in epochs; None: the profile's value
drift_lrs: "Optional[list[float]]" = None  # calm candidate rates for the long runs; None: the profile's value
drift_epochs: "Optional[float]" = None  # epochs of the long runs at the calm candidates; None: the profile's value
confirm_wd_batch: "Optional[int]" = None  # batch of the confirmatory weight-decay runs (none: no such runs); None: the profile's value
confirm_weight_decays: "Optional[list[float]]" = None  # weight decays of those runs; None: the profile's value

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import Markdown, display

from erosion_utils.experiments import Context
from erosion_utils.experiments.mechanism import mechanism_experiment
from erosion_utils.profiles import resolve, resolve_notebook
from erosion_utils.report import mechanism as mr
from erosion_utils.report import mechanism_figures as figs
from erosion_utils.report import mechanism_verdicts as mv
from erosion_utils.report import plots
from erosion_utils.report import verdicts as V
from erosion_utils.report.claims import EROSION_THRESHOLD
from erosion_utils.profiles import parameter_names
from erosion_utils.report.pages import (compute_note, figure, fold, given_parameters, glue, missing_table,
                                        parameters_table, pending_note, profile_note, provenance_table, rerun_box, table)
from erosion_utils.report.plan import rule
from erosion_utils.report.words import ci_phrase, epochs, join_values, plural

plots.setup()
run = resolve_notebook("mechanism", globals())
given = given_parameters(globals(), parameter_names("mechanism"))  # for the rerun box
ex = run.extras
ref_batch = run.config.finetune_batch_size
ctx = Context.for_profile(profile)
confirm_rows = mechanism_experiment(run.config, ex, ctx, confirmatory=True)
rows = mechanism_experiment(run.config, ex, ctx)
sets = mv.settings(confirm_rows)
cells = mv.cell_table(sets)
SPIKE = rule("mechanism.spike").thresholds["spike"]


def describe_missing(r: dict) -> str:
    c = r["config"]
    return (f"{'/'.join(r['groups'])}: lr {c['finetune_lr']:g}, batch {c['finetune_batch_size']}, "
            f"{c['finetune_epochs']:g} epochs, warm-up {c['finetune_warmup_epochs']:g}, clip "
            f"{c.get('finetune_clip_norm', 0.0):g}, wd {c['finetune_weight_decay']:g}, seed {r['seed']}")


missing = {describe_missing(r): "not cached" for r in confirm_rows + rows if r.get("missing")}
used = [r[k] for r in confirm_rows + rows if not r.get("missing") for k in ("pretrain", "pattern", "control")]
paper_run = resolve("mechanism", "paper")
paper_rows = [] if profile == "paper" else (
    mechanism_experiment(paper_run.config, paper_run.extras, Context(compute=False), confirmatory=True)
    + mechanism_experiment(paper_run.config, paper_run.extras, Context(compute=False)))
note = (profile_note(profile) + " " + compute_note(used)
        + pending_note(len(paper_rows), sum(bool(r.get("missing")) for r in paper_rows), "configuration", profile))
glue("mechanism_profile", profile)
display(Markdown(note))
display(missing_table(missing, profile))

# %% [markdown]
# ## Verdicts
#
# By the rules of the {ref}`plan`, from the confirmatory seeds alone. Each verdict gives the 95% intervals over seeds
# behind it, the range of each threshold over which it stays the same, and whether it is confirmatory (every result it
# uses was computed after its rule was committed).

# %% tags=["hide-input"]
inst = mv.instability_verdict(sets, ex["eroding_lr"], ref_batch)
drift = mv.drift_verdict(sets, ex["drift_lrs"], ref_batch)
noise = mv.noise_steps_verdict(sets, cells)
scale = f"{profile} scale"
glue("mechanism_instability", inst.outcome)
glue("mechanism_drift", drift.outcome)
glue("mechanism_noise", noise.outcome)
glue("key_mechanism", mv.key_result(inst, drift, noise, scale))
display(Markdown("\n".join([
    f"- **Instability (H1)**: {mv.INSTABILITY_WORDS.get(inst.outcome, inst.outcome)}. "
    + V.describe(inst, [k for k in inst.intervals if k.endswith("erosion")]) + " "
    + mv.instability_arms_text(inst, SPIKE) + " " + mv.instability_caveats(inst, sets, SPIKE),
    f"- **Drift (H2)**: {mv.DRIFT_WORDS.get(drift.outcome, drift.outcome)}. "
    + V.describe(drift, [k for k in drift.intervals if "long erosion" in k or "slope" in k]),
    f"- **Noise or steps**: {mv.NOISE_WORDS.get(noise.outcome, noise.outcome)}. " + V.describe(noise)])))

# %% [markdown]
# ## The map, closed at large batches
#
# Erosion over the fine-tuning learning rate and the batch size, at the same number of epochs (a larger batch takes
# fewer steps). Each cell is judged by the plan's cell rule; where the clean control itself ends clearly below the
# pretrained network (*both collapse*), erosion compares two damaged runs and the cell is hatched and not judged.

# %% tags=["hide-input"]
grid = cells[cells.groups.map(lambda g: "confirm_map" in g)] if len(cells) else cells


def map_sentence(grid) -> str:
    if grid.empty:
        return "The confirmatory map's results are missing."
    counts = grid.cell.value_counts().to_dict()
    verbs = {"erodes": ("erodes", "erode"), "does not erode": ("does not erode", "do not erode"),
             "inconclusive": ("is inconclusive", "are inconclusive"),
             "both collapse": ("is a both-collapse cell (not judged)", "are both-collapse cells (not judged)")}
    parts = [f"{n} {verbs.get(w, (w, w))[n != 1]}" for w, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    seeds = int(grid.seeds.min())
    eroding = grid[grid.cell == "erodes"]
    at = "; ".join(f"at batch {int(b)}: lr {join_values(sorted(g.finetune_lr))}"
                   for b, g in eroding.groupby("finetune_batch_size")) if len(eroding) else "nowhere"
    fragile = grid[grid.cell_fragile]
    frag = (f"{plural(len(fragile), 'cell verdict')} {'is' if len(fragile) == 1 else 'are'} fragile (changing within "
            f"±10% of the threshold {EROSION_THRESHOLD:g}): " + join_values(
                [f"lr {r.finetune_lr:g} at batch {int(r.finetune_batch_size)}, '{r.cell}' with erosion {r.erosion.text()}"
                 for r in fragile.itertuples()], formatter=str) + "." if len(fragile) else
            "No cell verdict changes within ±10% of its threshold.")
    damaged = eroding[eroding.control_loss.map(lambda i: i.estimate) > EROSION_THRESHOLD]
    dmg = (" In " + join_values([f"lr {r.finetune_lr:g} at batch {int(r.finetune_batch_size)}" for r in
                                 damaged.itertuples()], formatter=str)
           + f" the clean control itself loses more than {EROSION_THRESHOLD:g} on average ("
           + join_values([r.control_loss.text() for r in damaged.itertuples()], formatter=str)
           + "), so erosion there is the pattern run's loss beyond an already damaged control; such a cell is excluded "
             "only when the whole interval of the control's loss lies above the threshold.") if len(damaged) else ""
    return (f"Of {plural(len(grid), 'cell')} ({plural(seeds, 'seed')} each at least), " + join_values(parts, formatter=str)
            + f". Erosion holds {at}. " + frag + dmg)


display(figure("fig_mech_confirm_map", figs.verdict_map(cells),
               f"Confirmatory phase map ({scale}): mean erosion and its 95% interval over seeds in each cell; ● erodes, "
               f"○ does not, ? inconclusive by the plan's cell rule; hatched ×: both runs collapse (not judged).",
               "fig-mech-confirm-map"))
display(Markdown(map_sentence(grid)))

# %% [markdown]
# ## Dynamics at the eroding setting
#
# The monitor, pattern run against control, at the eroding rate and the reference batch: without intervention, and
# with the gradient norm clipped (a smaller clipping level is a stronger intervention). The dotted line is the spike
# threshold of the plan.

# %% tags=["hide-input"]
at_eroding = {k: s for k, s in sets.items() if ({"clip", "long_warmup"} & s.groups) and abs(s.lr - ex["eroding_lr"]) < 1e-12
              and s.batch == ref_batch}
arms = [("no intervention" if not s.clip and not s.warmup else f"clip {s.clip:g}" if s.clip else
         f"warm-up {s.warmup:g} epochs", s)
        for s in sorted(at_eroding.values(), key=lambda s: (s.warmup > 0, s.clip > 0, -s.clip))]
display(figure("fig_mech_dynamics", figs.dynamics(arms, SPIKE),
               f"Dense dynamics at lr {ex['eroding_lr']:g}, batch {ref_batch} ({scale}): left, the loss on the monitor "
               f"images of the run's own training distribution (log scale; dotted: the spike threshold {SPIKE:g}); right, "
               f"the follow rate on the monitor's test images (dotted: 0.5). Line: mean over seeds; band: range.",
               "fig-mech-dynamics"))
timing = mv.timing(sets, cells)
if len(timing):
    crossed = timing[timing.order != "no crossing"]
    order = crossed.order.value_counts().to_dict()
    res = max(float(timing.peak_resolution.max()), float(crossed.crossing_resolution.max()) if len(crossed) else 0.0)
    ctrl = []
    for s in sets.values():
        if "confirm_map" in s.groups and any(abs(s.lr - r.finetune_lr) < 1e-12 and s.batch == r.finetune_batch_size
                                             for r in grid[grid.cell == "erodes"].itertuples()):
            for e in s.control.values():
                mon = e["result"]["monitor"]
                ctrl.append(mon[max(range(len(mon)), key=lambda i: mon[i]["loss_clean"])]["step"]
                            / e["result"]["total_steps"])
    display(Markdown(
        f"Timing, over the {plural(len(timing), 'pattern run')} of eroding map cells: the monitor loss peaks at a median "
        f"{timing.peak.median():.0%} of the run; in {plural(len(crossed), 'run')} the follow rate crosses 0.5, at a "
        f"median {crossed.crossing.median():.0%}. " + join_values([f"{n} with the {w}" for w, n in order.items()],
                                                                  formatter=str)
        + f" (the monitor resolves each time to within {res:.0%} of the run). "
        + (f"The controls' loss peaks just as early (a median {sorted(ctrl)[len(ctrl) // 2]:.0%} of the run): the peak "
           f"marks the rate and batch, not the pattern taking over; its coming first is precedence, not cause."
           if ctrl else "")))

# %% [markdown]
# ## Is the instability necessary?
#
# An arm *removes the spike* when the peak monitor loss of its pattern runs and of its controls is clearly below the
# threshold; it *still trains* when its control moves its weights at least half as far from the pretrained ones as the
# control at lr 0.03 does. Among such arms, erosion that persists means the spike is not necessary; erosion that
# disappears in every one means it is.

# %% tags=["hide-input"]
arm_rows = []
for name, s in arms:
    d = inst.details.get("arms", {}).get(name, {})
    peaks = [inst.intervals.get(f"{name}: peak ({w})", V.NO_VALUE) for w in ("pattern", "control")]
    arm_rows.append({"arm": name,
                     "peak loss: pattern / control": " / ".join(f"{p.estimate:.2f}" for p in peaks),
                     "erosion": inst.intervals.get(f"{name}: erosion", V.NO_VALUE).text(),
                     "spike removed": "—" if not d else ("yes" if d["calm"] else "no"),
                     "still trains": "—" if not d else ("yes" if d["moved"] else "no")})
display(table(pd.DataFrame(arm_rows), caption=f"The arms at the eroding setting (mean over seeds; erosion: mean [95% "
                                              f"interval]); the intervals of every quantity are in the verdict below")
        if arm_rows else Markdown("The intervention arms are missing."))
display(Markdown(f"Verdict on H1: " + V.describe(inst, [k for k in inst.intervals if k.endswith("erosion")]) + " "
                 + mv.instability_arms_text(inst, SPIKE) + " " + mv.instability_caveats(inst, sets, SPIKE)
                 + (f" The control at lr {mv.REFERENCE_LR:g} moved {inst.details['reference_distance']:.3f} (mean relative distance)."
                    if inst.details.get("reference_distance", float("nan")) >= 0 else "")))

# %% [markdown]
# ## Slow drift at calm rates
#
# A candidate rate qualifies when its runs of the usual length are calm and do not erode by the plan's rules; its long
# runs then test drift: the slope of the follow rate after the usual length, and the erosion at the end.

# %% tags=["hide-input"]
pairs = {}
for lr in ex["drift_lrs"]:
    runs_lr = sorted([s for s in sets.values() if "drift" in s.groups and abs(s.lr - lr) < 1e-12 and s.batch == ref_batch],
                     key=lambda s: s.epochs)
    if len(runs_lr) == 2:
        pairs[lr] = tuple(runs_lr)
display(figure("fig_mech_drift", figs.drift_curves(pairs, SPIKE),
               f"Long runs ({ex['drift_epochs']:g} epochs) at the calm candidates ({scale}): monitor loss (log; dotted: "
               f"the spike threshold) and follow rate over epochs; shaded: the usual length. Mean over seeds; band: "
               f"range.", "fig-mech-drift"))
states = drift.details.get("rates", {})


def long_run_note(lr: float) -> str:
    """For a rate whose long runs are not clearly calm: their peak monitor loss and each seed's final erosion."""
    peaks = [drift.intervals[f"lr {lr:g}: long peak ({w})"] for w in ("pattern", "control")]
    if all(p.hi < SPIKE for p in peaks) or lr not in pairs:
        return ""
    long = pairs[lr][1]
    per_seed = [long.control[s]["result"]["records"][-1]["clean_acc"] - long.pattern[s]["result"]["records"][-1][
        "clean_acc"] for s in long.seeds]
    return (f"; its long runs are not clearly calm (peak monitor loss {peaks[0].text(2)} in pattern runs, "
            f"{peaks[1].text(2)} in controls), and per seed the final erosion is "
            + join_values([f"{e:.3f}" for e in per_seed], formatter=str))


display(Markdown("; ".join(f"lr {lr:g}: **{st}** (follow-rate slope "
                           f"{drift.intervals[f'lr {lr:g}: slope'].text()} per epoch, final erosion "
                           f"{drift.intervals[f'lr {lr:g}: long erosion'].text()}{long_run_note(lr)})"
                           for lr, st in states.items())
                 + f". Verdict on H2: " + V.describe(drift, [])))

# %% [markdown]
# ## Noise scale or number of steps?
#
# A smaller batch gives noisier gradients and, at the same epochs, more steps. Over every run of the confirmatory map
# outside both-collapse cells, erosion is fitted as a linear function of log₂(lr/batch) and log₂(steps); each
# coefficient's interval comes from resampling whole seeds.

# %% tags=["hide-input"]
reg_runs = mv.regression_runs(sets, cells)
display(figure("fig_mech_regression", figs.regression_scatter(reg_runs),
               f"Erosion of every confirmatory map run outside both-collapse cells against lr/batch (left) and the number "
               f"of optimiser steps (right), coloured by batch size ({scale}).", "fig-mech-regression"))
follow_fit = mv.noise_steps_verdict(sets, cells, y="follow") if reg_runs else None
glue("disc_mechanism", mv.discussion(inst, drift, noise, cells, timing, scale, sets, SPIKE))
display(Markdown(f"Coefficients for erosion: {V.intervals_text(noise)}. "
                 + (f"For the follow rate: {V.intervals_text(follow_fit)} (not a verdict). " if follow_fit else "")
                 + "Verdict: " + V.describe(noise)
                 + (f" The fit explains a share {noise.details['r2']:.2f} of the variance of erosion over "
                    f"{noise.details['runs']} runs: it describes the average trend and is not a controlled test. At "
                    f"the same epochs the number of steps is the batch size read backwards, so its coefficient is the "
                    f"batch effect beyond lr/batch; the confirmatory design has no same-steps or same-noise runs "
                    f"(the exploratory design below has), and leaving out both-collapse cells selects on the outcome."
                    if noise.details.get("r2") == noise.details.get("r2") and "r2" in noise.details else "")))

# %% [markdown]
# ## The exploratory design (seeds 0–2)
#
# The chapter's first design: the map at batch 32–128, the same-steps and same-noise controls, weight decay, warm-up
# and long runs at lr 0.01 and 0.03, three seeds, the reference path without a monitor (the spike was measured as the
# largest batch loss). Two of its rules were changed after 44 of its 93 configurations had finished, and the change
# reversed both verdicts; under the plan every verdict of this design is exploratory.

# %% tags=["hide-input"]
frame = mr.run_frame(rows)
steps = mr.steps_by_batch(frame)
old = {"instability": mr.instability_verdict_original(frame, ex["eroding_lr"])["verdict"],
       "drift": mr.drift_verdict_original(frame)["verdict"]}
new = {"instability": mr.instability_verdict(frame, ex["eroding_lr"])["verdict"],
       "drift": mr.drift_verdict(frame)["verdict"]}
display(table(pd.DataFrame([
    {"hypothesis": h, f"rules as first committed ({mr.ORIGINAL_RULES_COMMIT})": old[h],
     f"rules as refined ({mr.REFINED_RULES_COMMIT})": new[h]} for h in ("instability", "drift")]),
    caption="The exploratory design's verdicts under the two versions of its rules (same data, seeds 0–2)"))
reversed_ = [h for h in old if old[h] != new[h]]
display(Markdown(("The refinement changed " + join_values(reversed_, formatter=str) + ": "
                  + "; ".join(f"{h} reads '{old[h]}' under the first rules and '{new[h]}' under the refined ones"
                              for h in reversed_) + ". Both are exploratory.") if reversed_ else
                 "The two versions of the rules give the same verdicts on these data; both are exploratory."))
display(figure("fig_mech_map", figs.phase_map(frame, steps),
               f"Exploratory phase map ({scale}, seeds 0–2): mean erosion (top) and follow rate (bottom) with their 95% "
               f"intervals (clipped to the quantity's range); each batch size's number of steps beside it.",
               "fig-mech-map"))
display(figure("fig_mech_wd", figs.weight_decay(frame),
               f"Exploratory ({scale}): erosion and follow rate against weight decay at batch {ref_batch} (mean and 95% "
               f"interval over seeds).", "fig-mech-wd"))
display(figure("fig_mech_warmup", figs.warmup_curves(rows, ex["eroding_lr"]),
               f"Exploratory ({scale}): warm-up at lr {ex['eroding_lr']:g}; clean accuracy, follow rate and the largest "
               f"batch loss over epochs (shaded: the warm-up). Line: mean; band: range over seeds.", "fig-mech-warmup"))
display(figure("fig_mech_long", figs.duration_curves(rows),
               f"Exploratory ({scale}): long runs ({ex['long_epochs']:g} epochs) at lr "
               f"{join_values(ex['long_lrs'])}. Line: mean; band: range over seeds.", "fig-mech-long"))

# %% [markdown]
# ## Parameters and provenance

# %% tags=["hide-input"]


def setting_words(r) -> str:
    extra = [f"{r.finetune_epochs:g} epochs"] + ([f"warm-up {r.finetune_warmup_epochs:g}"] if r.finetune_warmup_epochs
                                                 else []) + ([f"clip {r.finetune_clip_norm:g}"] if r.finetune_clip_norm
                                                             else [])
    return f"lr {r.finetune_lr:g}, batch {int(r.finetune_batch_size)}, " + ", ".join(extra)


if len(cells):
    display(fold(table(pd.DataFrame([{"setting": setting_words(r), "seeds": r.seeds, "erosion": r.erosion.text(),
                                      "verdict": f"{r.cell} ({r.cell_label})", "follow rate": r.follow.text()}
                                     for r in cells.itertuples()])),
                 f"Every confirmatory setting ({plural(len(cells), 'setting')}: mean [95% interval] over seeds)"))
cpu_run = resolve("mechanism", "cpu")
cpu_rows = [] if profile == "cpu" else (
    mechanism_experiment(cpu_run.config, cpu_run.extras, Context(compute=False), confirmatory=True)
    + mechanism_experiment(cpu_run.config, cpu_run.extras, Context(compute=False)))
cpu_rows = cpu_rows or confirm_rows + rows
display(rerun_box("05_mechanism", profile, given,
                  [r[k] for r in cpu_rows if not r.get("missing") for k in ("pretrain", "pattern", "control")],
                  sum(bool(r.get("missing")) for r in cpu_rows), used))
display(parameters_table(run))
display(provenance_table(used))
