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
# # When and why erosion happens
#
# The {ref}`erosion` chapter shows *that* erosion depends on the fine-tuning regime. This chapter asks *when* and
# *why*. The paper tests neither of the two explanations below; both are ours.
#
# - **H1, instability.** A jump to a large learning rate throws the network out of its minimum. While it re-fits
#   the training set, the pattern is the simplest solution and wins. If so, erosion comes with a loss spike, and
#   whatever avoids the spike (a warm-up, a smaller rate, a larger batch) prevents it.
# - **H2, drift.** The pattern takes over gradually, even when training is stable. If so, a long enough stable run
#   erodes too.
#
# The two can both hold, in different regimes. Every run below is a pattern run and its clean control, started from
# the same pretrained weights with the same optimiser; *erosion* is the control's final clean accuracy minus the
# pattern run's, and the *follow rate* is the share of images carrying another class's pattern whose prediction
# follows the pattern (as in the {ref}`erosion` chapter). Every fine-tuning record also holds the relative distance
# of the weights from the pretrained ones, ‖θ − θ₀‖ / ‖θ₀‖, and the largest batch loss since the previous record.

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

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils.experiments import Context
from erosion_utils.experiments.mechanism import mechanism_experiment
from erosion_utils.profiles import resolve, resolve_notebook
from erosion_utils.report import mechanism_figures as figs
from erosion_utils.report import mechanism as mr
from erosion_utils.report import plots
from erosion_utils.report.claims import EROSION_THRESHOLD
from erosion_utils.report.pages import (compute_note, figure, fold, glue, missing_table, parameters_table, pending_note,
                                        profile_note, provenance_table, table)
from erosion_utils.report.words import ci_phrase, epochs, join_values, plural

plots.setup()
run = resolve_notebook("mechanism", globals())
ex = run.extras
rows = mechanism_experiment(run.config, ex, Context.for_profile(profile))
frame = mr.run_frame(rows)
done = frame[~frame.missing]
used = [r[k] for r in rows if not r.get("missing") for k in ("pretrain", "pattern", "control")]
ref_batch = run.config.finetune_batch_size
steps = mr.steps_by_batch(frame)
missing = {f"{'/'.join(r['groups'])}: lr {r['config']['finetune_lr']:g}, batch {r['config']['finetune_batch_size']}, "
           f"{r['config']['finetune_epochs']:g} epochs, warm-up {r['config']['finetune_warmup_epochs']:g}, "
           f"wd {r['config']['finetune_weight_decay']:g}, seed {r['seed']}": "not cached" for r in rows
           if r.get("missing")}
paper_run = resolve("mechanism", "paper")
paper_rows = [] if profile == "paper" else mechanism_experiment(paper_run.config, paper_run.extras,
                                                                 Context(compute=False))
paper_missing = sum(bool(r.get("missing")) for r in paper_rows)
note = (profile_note(profile) + " " + compute_note(used)
        + pending_note(len(paper_rows), paper_missing, "configuration", profile))
glue("mechanism_profile", profile)
display(Markdown(note))
display(missing_table(missing, profile))

# %% [markdown]
# ## The phase map
#
# Erosion and follow rate over the fine-tuning learning rate and the batch size, at the same number of epochs for
# every batch size (so a smaller batch takes more optimiser steps). The grid is chosen per profile so that it spans
# the profile's own boundary between no erosion and total erosion; the {ref}`erosion` chapter places that boundary
# between 0.01 and 0.1 at the reference batch.

# %% tags=["hide-input"]
map_cells = mr.cell_stats(mr.in_group(frame, "map"), ["batch_size", "finetune_lr"])
steps_text = join_values([f"{plural(s, 'step')} at batch {b}" for b, s in sorted(steps.items())], formatter=str)


def map_sentence(cells) -> str:
    if cells.empty:
        return "The phase map's results are missing."
    eroding = cells[cells.erosion_mean > EROSION_THRESHOLD]
    parts = []
    for b, g in cells.groupby("batch_size"):
        er = g[g.erosion_mean > EROSION_THRESHOLD].finetune_lr
        parts.append(f"at batch {b}, " + (f"at lr {join_values(sorted(er))} (mean erosion up to "
                                          f"{g.erosion_mean.max():.3f})" if len(er) else "at no rate"))
    seeds = int(cells.seeds.min())
    lost = mr.cell_stats(mr.in_group(frame, "map").assign(control_loss=lambda f: f.clean_start - f.clean_control),
                         ["batch_size", "finetune_lr"], ("control_loss",))
    lost = lost[lost.control_loss_mean > EROSION_THRESHOLD]
    damaged = ("" if lost.empty else
               f" In {plural(len(lost), 'cell')} (" + join_values([f"lr {r.finetune_lr:g} at batch {r.batch_size}"
                                                                   for r in lost.itertuples()], formatter=str)
               + f") the clean control itself ends more than {EROSION_THRESHOLD:g} below the pretrained clean accuracy "
               f"(by up to {lost.control_loss_mean.max():.3f}): there both runs lost accuracy, and erosion measures "
               f"only the pattern run's extra loss.")
    return (f"With {steps_text}, mean erosion exceeds {EROSION_THRESHOLD:g} in {len(eroding)} of "
            f"{plural(len(cells), 'cell')}: " + "; ".join(parts) + f". Each cell has at least "
            f"{plural(seeds, 'seed', one_word=True)}" + (": no interval." if seeds < 2 else "; the brackets give the "
                                                           "95% CI over seeds.")) + damaged


display(figure("fig_mech_map", figs.phase_map(frame, steps),
               f"Phase map at the same number of epochs. Top: mean erosion; bottom: mean follow rate; brackets: 95% CI "
               f"over seeds. Each batch size's number of optimiser steps is beside it. Profile: {profile}.",
               "fig-mech-map"))
display(Markdown(map_sentence(map_cells)))

# %% [markdown]
# ## Noise or duration?
#
# A smaller batch gives noisier gradients *and*, at the same epochs, more steps. Two controls separate the two, at
# a few rates of the reference batch: **same steps** fine-tunes every batch size for the reference batch's number
# of optimiser steps (so the epochs differ), and **same noise scale** scales the rate with the batch (lr ∝ batch,
# the linear scaling rule), keeping lr/batch constant at the same epochs. If the same-steps runs match the reference,
# duration drives the batch effect; if the same-noise runs do, the noise scale does.

# %% tags=["hide-input"]
pairs = mr.control_pairs(frame, ref_batch)
noise = mr.noise_or_steps(pairs)
spread = mr.collapse_spread(frame)
ss_epochs = mr.in_group(frame, "same_steps").groupby("batch_size").epochs.first()
epochs_text = join_values([f"{epochs(e)} at batch {b}" for b, e in ss_epochs.items()], formatter=str)
display(figure("fig_mech_controls", figs.controls(frame, ref_batch),
               f"Mean erosion against batch size (95% CI over seeds) at each control rate, given at the reference "
               f"batch {ref_batch}: same epochs (the phase map), same steps as the reference batch, and the rate "
               f"scaled with the batch (same lr/batch). Profile: {profile}.", "fig-mech-controls"))
display(Markdown((f"The same-steps runs take {epochs_text}. " if len(ss_epochs) else "")
                 + mr.noise_sentence(noise, spread)))
display(figure("fig_mech_collapse", figs.collapse(frame),
               f"Erosion of every run of this chapter against lr/batch, coloured by batch size. If the points of "
               f"different batch sizes lay on one curve, lr/batch alone would set erosion. Profile: {profile}.",
               "fig-mech-collapse"))
display(fold(table(pairs, {"finetune_lr": "rate at reference batch", "batch_size": "batch size",
                           "reference": "erosion at reference batch", "same_epochs": "same epochs",
                           "same_steps": "same steps", "same_noise": "same lr/batch"}),
             "Mean erosion of the control pairs"))

# %% [markdown]
# ## Weight decay

# %% tags=["hide-input"]
wd_cells = mr.cell_stats(mr.in_group(frame, "weight_decay"), ["finetune_lr", "weight_decay"])


def wd_sentence(cells) -> str:
    if cells.empty:
        return "The weight-decay runs are missing."
    parts = []
    for lr, g in cells.groupby("finetune_lr"):
        parts.append(f"at lr {lr:g}, " + join_values(
            [f"{ci_phrase(r.erosion_mean, r.erosion_lo, r.erosion_hi, r.seeds)} with weight decay {r.weight_decay:g}"
             for r in g.itertuples()], formatter=str))
    return "Mean erosion " + "; ".join(parts) + "."


display(figure("fig_mech_wd", figs.weight_decay(frame),
               f"Erosion and follow rate against fine-tuning weight decay at the batch size {ref_batch}, one line "
               f"per rate (mean and 95% CI over seeds). Profile: {profile}.", "fig-mech-wd"))
display(Markdown(wd_sentence(wd_cells)))

# %% [markdown]
# ## Warm-up
#
# If erosion at the eroding rate comes from the jump to that rate, a linear warm-up from 0 should avoid the spike
# and with it the erosion.

# %% tags=["hide-input"]
warm_cells = mr.cell_stats(mr.in_group(frame, "warmup"), ["warmup_epochs"])


def warm_sentence(cells) -> str:
    if cells.empty:
        return "The warm-up runs are missing."
    return (f"At lr {ex['eroding_lr']:g}, mean erosion is " + join_values(
        [f"{ci_phrase(r.erosion_mean, r.erosion_lo, r.erosion_hi, r.seeds)} with "
         + (f"{epochs(r.warmup_epochs)} of warm-up" if r.warmup_epochs else "no warm-up") for r in cells.itertuples()],
        formatter=str) + "; the follow rate is " + join_values(
        [f"{r.follow_pattern_mean:.3f}" for r in cells.itertuples()], formatter=str) + ", in the same order.")


display(figure("fig_mech_warmup", figs.warmup_curves(rows, ex["eroding_lr"]),
               f"Warm-up at lr {ex['eroding_lr']:g}: clean accuracy, follow rate and the largest batch loss (log scale; "
               f"dotted: the spike threshold {mr.SPIKE_LOSS:g}) over fine-tuning epochs, one row per warm-up length "
               f"(shaded: the warm-up). Line: mean; band: range over seeds. Profile: {profile}.", "fig-mech-warmup"))
display(Markdown(warm_sentence(warm_cells)))

# %% [markdown]
# ## Long stable runs
#
# If the pattern takes over by drift, a stable rate that does not erode in the usual number of epochs should erode,
# or at least follow the pattern more, when training goes on much longer.

# %% tags=["hide-input"]
drift = mr.drift_verdict(frame)
long_epochs = ex["long_epochs"]
display(figure("fig_mech_long", figs.duration_curves(rows),
               f"Long runs ({long_epochs:g} epochs) at the stable rates: clean accuracy, follow rate and the largest "
               f"batch loss (log scale; dotted: the spike threshold) over epochs. Line: mean; band: range over seeds. "
               f"Profile: {profile}.", "fig-mech-long"))
display(Markdown(mr.drift_sentence(drift)))

# %% [markdown]
# ## Spikes and erosion
#
# Over every run of this chapter: does erosion come with a loss spike, in the pattern run or in its control, and
# with a jump of the weights? And in eroding runs, does the loss peak come before the pattern takes over?

# %% tags=["hide-input"]
inst = mr.instability_verdict(frame, ex["eroding_lr"])
display(figure("fig_mech_spikes", figs.spike_vs_erosion(frame),
               f"Left: largest training loss of the pattern run (dots) and of its control (crosses) against erosion; "
               f"dotted: the spike threshold {mr.SPIKE_LOSS:g}. Middle: largest increase of ‖θ − θ₀‖/‖θ₀‖ between "
               f"two evaluations against erosion. Right: for eroding runs, the evaluated step of the loss peak "
               f"against the first evaluated step at which the follow rate exceeds 0.5 (dotted: equal steps). "
               f"Profile: {profile}.", "fig-mech-spikes"))
if len(done):
    eroding = done[done.eroded]
    control_spikes = int(eroding.spike_control.sum()) if len(eroding) else 0
    text = (f"Of the chapter's {plural(len(done), 'pattern run')} (each against its control, every seed counted), "
            f"{'none' if not len(eroding) else len(eroding)} erode{'s' if len(eroding) <= 1 else ''} by more than "
            f"{EROSION_THRESHOLD:g}. ")
    if len(eroding):
        text += (f"The pattern run had a loss spike in {inst['eroding_with_spike']} of them, and the clean control "
                 f"(the same rate and batch on clean images) in {control_spikes}. ")
        if inst["crossings"]:
            text += (f"In {inst['peak_precedes_crossing']} of the {inst['crossings']} eroding runs whose follow rate "
                     f"crossed 0.5, the loss peak came at or before that crossing (to the resolution of the "
                     f"evaluation steps).")
    spiking_not_eroding = int((done.spike_pattern & ~done.eroded).sum())
    text += (f" {'No' if not spiking_not_eroding else spiking_not_eroding} pattern "
             f"run{'' if spiking_not_eroding == 1 else 's'} had a spike without eroding.")
    display(Markdown(text))

# %% [markdown]
# ## Verdict
#
# The rules are fixed in `erosion_utils/report/mechanism.py` (thresholds stated there and in the figures):
#
# - a *spike* is a batch loss above the threshold shown in the figures; a run *erodes* when its erosion is above the
#   claims chapter's threshold;
# - instability is **supported** when at least 90% of eroding runs spike and a warm-up of one epoch or more both
#   removes the spike and prevents erosion; **not supported** when fewer than two thirds of eroding runs spike, or when
#   warm-up removes the spike but erosion stays; **partly supported** otherwise (for example when warm-up does not
#   remove the spike, so it cannot test whether avoiding the spike prevents erosion);
# - drift is **supported** at a rate whose runs of the usual length do not erode when its long runs erode without a
#   spike, and **partly** when their follow rate rises by more than the stated margin; a rate that erodes already at
#   the usual length, or whose long runs spike, does not test drift;
# - the noise-or-steps verdict names the control that brings at least two thirds of the batch effects back to within
#   the stated margin of the reference batch.

# %% tags=["hide-input"]
glue("mechanism_instability", inst["verdict"])
glue("mechanism_drift", drift["verdict"])
glue("mechanism_noise", noise["verdict"])
glue("key_mechanism", mr.key_result(inst, drift, noise, profile))
display(Markdown("\n\n".join([
    "- " + mr.instability_sentence(inst, ex["eroding_lr"]),
    "- " + mr.drift_sentence(drift),
    "- " + mr.noise_sentence(noise, spread) + f" Verdict on the batch effect: **{noise['verdict']}**."])))

# %% [markdown]
# ## Parameters and provenance

# %% tags=["hide-input"]
cells = mr.cell_stats(done, ["groups", "finetune_lr", "batch_size", "epochs", "warmup_epochs", "weight_decay"],
                      ("erosion", "follow_pattern", "peak_loss_pattern", "peak_loss_control")) if len(done) else done
if len(cells):
    cells["groups"] = cells.groups.map(lambda g: ", ".join(mr.GROUPS_SHORT.get(x, x) for x in g))
display(fold(table(cells), f"Every cell of this chapter ({plural(len(cells), 'cell')}, mean and 95% CI over seeds)"))
display(parameters_table(run))
display(provenance_table(used))
