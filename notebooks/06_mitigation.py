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
# (mitigation)=
# # Mitigation and recovery (cpu scale)
#
# Fine-tuning sets in practice carry shortcuts: watermarks, scanner tags, a background shared by one class. A
# practitioner who fine-tunes a pretrained network on such data wants to know which option keeps what fine-tuning
# should add and drops the shortcut, and at what cost; and whether an eroded network recovers on clean data.
#
# In the paper's setting the network is fine-tuned on the very images it was pretrained on, so fine-tuning has nothing
# to teach and an option that learns nothing always "prevents" erosion. This chapter therefore asks its question in a
# **transfer setting** with something to learn: the network is pretrained on half of the training images of each
# class (to perfect, or nearly perfect, training accuracy), then fine-tuned on all of them with the class pattern. Its fine-tuning recipe
# was chosen on clean controls alone, before any pattern run, and every verdict follows a rule of the {ref}`plan`
# committed before the runs. Every option, the baseline (plain fine-tuning on patterned images) and the clean
# **control** start from the same pretrained network and seed, so every comparison is paired. The paper's setting
# follows, with its first three seeds (exploratory) and five new ones (confirmatory).
#
# *Gain kept*: the option's clean test accuracy minus the pretrained network's, as a share of what the control gains.
# *Follow rate*: the share of test images carrying another class's pattern that the network assigns to the pattern's
# class.

# %% tags=["parameters", "remove-cell"]
# papermill parameters; None: the profile's value (python -m erosion_utils params 06_mitigation --profile cpu)
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
finetune_epochs: "Optional[float]" = None  # epochs of fine-tuning; None: the profile's value
finetune_weight_decay: "Optional[float]" = None  # weight decay of fine-tuning; None: the profile's value
finetune_batch_size: "Optional[int]" = None  # batch size of fine-tuning; None: the profile's value
n_evals: "Optional[int]" = None  # test-set evaluations along fine-tuning, at least 2; None: the profile's value
finetune_warmup_epochs: "Optional[float]" = None  # linear learning-rate warm-up from 0, in epochs (0: none); None: the profile's value
freeze_stages: "Optional[int]" = None  # mitigation: freeze the first k stages (0: none); None: the profile's value
head_only_epochs: "Optional[float]" = None  # mitigation (LP-FT): epochs training only the classifier first; None: the profile's value
l2sp_alpha: "Optional[float]" = None  # mitigation (L2-SP): pull towards the pretrained weights (0: off); None: the profile's value
erase_corners: "Optional[float]" = None  # mitigation: probability of erasing a random corner square; None: the profile's value
seeds: "Optional[list[int]]" = None  # seeds; each setting runs once per seed; None: the profile's value
eroding_lr: "Optional[float]" = None  # the baseline's fine-tuning rate (the profile's eroding regime); None: the profile's value
mitigation_n_evals: "Optional[int]" = None  # test-set evaluations along each new mitigation run, at least 2 (the last is compared); None: the profile's value
freeze_options: "Optional[list[int]]" = None  # numbers of early stages to freeze, one run each; None: the profile's value
head_only_options: "Optional[list[float]]" = None  # LP-FT: epochs training only the classifier first, one run each; None: the profile's value
l2sp_options: "Optional[list[float]]" = None  # L2-SP strengths alpha > 0, one run each; None: the profile's value
erase_options: "Optional[list[float]]" = None  # probabilities of erasing a random corner square, one run each; None: the profile's value
lower_lrs: "Optional[list[float]]" = None  # lower fine-tuning rates, one run each; None: the profile's value
warmup_options: "Optional[list[float]]" = None  # linear warm-up lengths in epochs, one run each; None: the profile's value
fraction_options: "Optional[list[float]]" = None  # shares of patterned fine-tuning images, one run each; None: the profile's value
interpolation_alphas: "Optional[list[float]]" = None  # weights in [0, 1] between pretrained (0) and fine-tuned (1) network; None: the profile's value
recovery_epochs: "Optional[float]" = None  # epochs of clean fine-tuning after the pattern run; None: the profile's value
recovery_lr_factors: "Optional[list[float]]" = None  # recovery rates as multiples of eroding_lr; None: the profile's value
probe_train_per_class: "Optional[int]" = None  # images per class training each linear probe; None: the profile's value
probe_test_per_class: "Optional[int]" = None  # images per class testing each linear probe; None: the profile's value
probe_epochs: "Optional[int]" = None  # epochs of probe training; None: the profile's value
confirm_seeds: "Optional[list[int]]" = None  # confirmatory seeds of the paper's setting (fast path); None: the profile's value
transfer_seeds: "Optional[list[int]]" = None  # seeds of the transfer setting; None: the profile's value
transfer_pretrain_per_class: "Optional[int]" = None  # transfer: pretraining images per class (a part of the fine-tuning set); None: the profile's value
transfer_recipe: "Optional[dict]" = None  # transfer: the fine-tuning recipe (finetune_epochs, finetune_lr, finetune_schedule); None: the profile's value
transfer_recipes: "Optional[list[dict]]" = None  # transfer: the candidate recipes of the pilot; None: the profile's value
transfer_pilot_seeds: "Optional[list[int]]" = None  # transfer: the pilot's seeds (clean controls only); None: the profile's value
transfer_n_evals: "Optional[int]" = None  # transfer: test-set evaluations along each run; None: the profile's value
transfer_lower_lr_factors: "Optional[list[float]]" = None  # transfer: lower rates as multiples of the recipe's; None: the profile's value
transfer_reinit_stages: "Optional[list[int]]" = None  # transfer recovery: re-initialise the last k stages, one reference each; None: the profile's value
transfer_recovery_epochs: "Optional[float]" = None  # transfer recovery: epochs on clean images; None: the profile's value
transfer_scratch_epochs: "Optional[float]" = None  # transfer recovery: epochs of the network trained from scratch; None: the profile's value
transfer_recovery_evals: "Optional[int]" = None  # transfer recovery: evaluations along each arm; None: the profile's value

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import Markdown, display

from erosion_utils.experiments import Context
from erosion_utils.experiments import mitigation as mit
from erosion_utils.models import num_stages, stage_words
from erosion_utils.profiles import resolve, resolve_notebook
from erosion_utils.report import mitigation as mr
from erosion_utils.report import mitigation_figures as figs
from erosion_utils.report import mitigation_verdicts as mv
from erosion_utils.report import plots
from erosion_utils.report import verdicts as V
from erosion_utils.profiles import parameter_names
from erosion_utils.report.pages import (compute_note, figure, fold, given_parameters, glue, missing_table,
                                        parameters_table, pending_note, profile_note, provenance_table, rerun_box, table)
from erosion_utils.report.plan import rule
from erosion_utils.report.words import epochs, fmt, fmt_value, plural

plots.setup()
run = resolve_notebook("mitigation", globals())
given = given_parameters(globals(), parameter_names("mitigation"))  # for the rerun box
ex = run.extras
ctx = Context.for_profile(profile)
pilot_rows = mit.recipe_pilot(run.config, ex, ctx)
transfer_rows = mit.transfer_experiment(run.config, ex, ctx)
posthoc_rows = mit.transfer_interpolation(run.config, ex, ctx)
trecovery_rows = mit.transfer_recovery_experiment(run.config, ex, ctx)
rows = mit.mitigation_experiment(run.config, ex, ctx)
confirm_rows = mit.mitigation_experiment(run.config, ex, ctx, confirmatory=True)
interp_rows = mit.interpolation_experiment(run.config, ex, ctx)
confirm_interp_rows = mit.interpolation_experiment(run.config, ex, ctx, confirmatory=True)
recovery_rows = mit.recovery_experiment(run.config, ex, ctx)
all_rows = (pilot_rows + transfer_rows + posthoc_rows + trecovery_rows + rows + confirm_rows + interp_rows
            + confirm_interp_rows + recovery_rows)
used = [r[k] for r in all_rows if not r.get("missing") for k in ("pretrain", "pattern", "control", "interpolation",
                                                                  "recovery") if r.get(k)]
missing = {f"{r.get('label', 'pilot recipe ' + str(r.get('recipe', '')) if 'recipe' in r else 'interpolation or recovery')}"
           f", seed {r['seed']}": "not cached" for r in all_rows if r.get("missing")}
note = profile_note(profile) + " " + compute_note(used)
if profile != "paper":
    paper = resolve("mitigation", "paper")
    paper_ctx = Context(compute=False)
    paper_rows = (mit.transfer_experiment(paper.config, paper.extras, paper_ctx)
                  + mit.mitigation_experiment(paper.config, paper.extras, paper_ctx))
    note += pending_note(len(paper_rows), sum(bool(r.get("missing")) for r in paper_rows), "result", profile,
                         f"ResNet-18 on the full CIFAR-10")
glue("mitigation_profile", profile)
scale = f"{profile} scale"
display(Markdown(note))
display(missing_table(missing, profile))

# transfer-setting verdicts (used by the answer below and by the sections after it)
topts = mv.options(transfer_rows)
base_opt = next((o for o in topts if o.kind == "baseline"), None)
gain = mv.gain_verdict(base_opt) if base_opt else None
terosion = mv.erosion_verdict(base_opt) if base_opt else None
posthoc = mv.posthoc_options(posthoc_rows)
option_verdicts = {o.label: mv.option_verdict(o, gain) for o in topts + posthoc} if gain else {}
otable = mv.option_table(topts + posthoc, option_verdicts) if option_verdicts else pd.DataFrame()
answer = mv.practitioner_answer(otable) if len(otable) else {"recommended": [], "best": None, "best_row": None}

# %% [markdown]
# ## The answer

# %% tags=["hide-input"]


answer_text = mv.answer_text(base_opt, gain, otable, answer, scale)
glue("mitigation_answer", answer_text)
display(Markdown(answer_text))

# %% [markdown]
# ## The transfer setting
#
# Pretraining uses a class-balanced half of the fine-tuning set, drawn once with its own seed; fine-tuning uses the
# whole set. The recipe (length, schedule, rate) was chosen on clean controls of two pilot seeds that no verdict uses:
# the candidate with the largest mean gain of clean test accuracy.

# %% tags=["hide-input"]
pilot = pd.DataFrame([{"recipe": f"{r['finetune_epochs']:g} epochs, lr {r['finetune_lr']:g}, {r['finetune_schedule']}",
                       "seed": r["seed"], "gain": r["control"]["result"]["records"][-1]["clean_acc"]
                       - r["control"]["result"]["records"][0]["clean_acc"]}
                      for r in pilot_rows if not r.get("missing")])
if len(pilot):
    display(table(pilot.groupby("recipe", sort=False).gain.mean().reset_index().rename(
        columns={"gain": "mean gain of the clean control (pilot seeds)"}),
        caption="The recipe pilot: clean controls only"))
recipe = ex["transfer_recipe"]
tb = mit.transfer_base(run.config, ex)
reached = [r["pretrain"]["result"]["train_accuracy"] for r in transfer_rows if not r.get("missing")]
display(Markdown(
    f"The chosen recipe: {epochs(recipe['finetune_epochs'])} at lr {fmt_value(recipe['finetune_lr'])} with a "
    f"{recipe['finetune_schedule']} schedule, batch {tb.finetune_batch_size}; pretraining on "
    f"{ex['transfer_pretrain_per_class']} of the {tb.train_per_class} images per class"
    + (f" (the pretrained networks reach a training accuracy of {min(reached):.4f} to {max(reached):.4f} on them). "
       if reached else ". ")
    + ("" if gain is None else
       f"Something to learn: {V.describe(gain)} The baseline erodes? {V.describe(terosion)}")))

# %% [markdown]
# ## What each option keeps and what it drops
#
# The options: freezing the first stages ({ref}`their parameters and batch-norm statistics <mitigation>`), LP-FT
# {cite}`kumar2022finetuning` (the classifier alone first), L2-SP {cite}`li2018explicit` (a pull towards the pretrained
# weights), erasing a random corner square (a defence that assumes the shortcut sits in a corner, as ours does), a
# lower rate, a warm-up, patterning only part of the images; and two that act after fine-tuning, at no training cost:
# re-estimating the batch-norm statistics on clean images, and WiSE-FT weight interpolation {cite}`wortsman2022robust`
# towards the pretrained network (statistics re-estimated). An option is *recommended* when it keeps at least half of
# the gain and clearly ignores the shortcut, by the plan's intervals.

# %% tags=["hide-input"]
cfg = tb
display(Markdown(f"The network's {num_stages(cfg.arch, cfg.mlp_depth)} stages are {stage_words(cfg.arch)}."))
if len(otable):
    shown = otable.assign(**{c: otable[c].map(lambda i: i.text()) for c in ("gain kept", "follow rate", "clean acc.")},
                          verdict=[f"{v} ({lab}{', fragile' if fr else ''})" for v, lab, fr in
                                   zip(otable.verdict, otable.label, otable.fragile)])
    n_seeds = int(otable.seeds.max())
    display(table(shown[~shown.posthoc], ["option", "gain kept", "follow rate", "clean acc.", "verdict"],
                  caption=f"Options during fine-tuning ({scale}, {plural(n_seeds, 'seed')}): mean [95% interval]"))
    shown.loc[shown.posthoc & (otable.verdict == "not tested"), "verdict"] = "not counted: gain kept not above 0"
    display(table(shown[shown.posthoc], ["option", "gain kept", "follow rate", "verdict"],
                  caption=f"Options after fine-tuning, applied to the baseline's network ({scale}): mean [95% "
                          f"interval]; 'not tested' where the network has not measurably moved from the pretrained one "
                          f"(gain kept not clearly above 0)"))
    display(figure("fig_mitigation_tradeoff", figs.tradeoff(otable),
                   f"Gain kept against follow rate for every option ({scale}), with 95% intervals over seeds; filled "
                   f"markers: recommended by the plan's rule. Right and down is better; dotted: all of the control's "
                   f"gain, and a follow rate of 0.5.", "fig-mitigation-tradeoff"))
    display(Markdown(
        "Two cautions. A patterned fraction is a property of the data, not a fine-tuning choice: it shows what a "
        "shortcut in half of the images does, not something a practitioner can set. And with five seeds a "
        "percentile-bootstrap interval is narrower than a t-based one would be, so the gain-kept intervals are, if "
        f"anything, optimistic; since the gain is small ({gain.intervals['gain'].text()}), one point of clean accuracy "
        f"(0.01) moves gain kept by about {0.01 / gain.intervals['gain'].estimate:.2f}."))
    display(fold(table(otable.assign(**{c: otable[c].map(lambda i: i.text()) for c in ("gain kept", "follow rate")}),
                       ["option", "verdict", "label", "sensitivity"]), "Each option's sensitivity to the thresholds"))
else:
    display(Markdown("The transfer setting's results are missing."))

# %% [markdown]
# ## Recovery: suppressed or destroyed?
#
# After the eroded baseline, training continues on the clean images with the fine-tuning optimiser at its rate. The
# references run the same way: the control; the pretrained network with its last stage, and with its last two stages,
# re-initialised (what destroyed features would look like); and a network from scratch, run longer. The target is the
# pretrained network's own clean accuracy. If the eroded network gets there no later than the network that lost only
# its last stage, its features were suppressed; if later than the one that lost two stages, they were destroyed.

# %% tags=["hide-input"]
rec = mv.recovery_verdict(trecovery_rows)
per_seed = mv.recovery_per_seed(trecovery_rows, rule("transfer.recovery").thresholds["target"])
glue("mitigation_recovery", rec.outcome)
display(figure("fig_mitigation_transfer_recovery", figs.transfer_recovery(trecovery_rows),
               f"Clean test accuracy over recovery steps on clean images ({scale}); dotted: the target (the pretrained "
               f"network's clean accuracy, mean over seeds). Line: mean over seeds; band: range.",
               "fig-mitigation-transfer-recovery"))
if len(per_seed):
    def steps_cell(v, total):
        return f"> {int(total)}" if v is None or v != v else str(int(v))

    display(table(pd.DataFrame([{"seed": r.seed, "target": fmt(r.target),
                                 "eroded network": steps_cell(r.steps_eroded, r.recovery_steps),
                                 "1 stage re-init.": steps_cell(r.steps_reinit_1, r.recovery_steps),
                                 "2 stages re-init.": steps_cell(r.steps_reinit_2, r.recovery_steps),
                                 "scratch": steps_cell(r.steps_scratch, r.scratch_steps), "verdict": r.verdict}
                                for r in per_seed.itertuples()]),
                  caption="Recovery per seed: steps to the target (the pretrained network's clean accuracy) on the "
                          "evaluation grid; '> n': not within the n steps of the run"))
    display(Markdown("Verdict: " + V.describe(rec) + mv.recovery_notes(per_seed, trecovery_rows)))
else:
    display(Markdown("The recovery results are missing."))

# %% [markdown]
# ## The paper's setting: the same images
#
# The baseline fine-tunes the network of the {ref}`erosion` chapter on the images it was pretrained on, with the
# pattern, at the rate at which that chapter finds erosion; each option changes one thing. Seeds 0–2 ran before the
# plan (exploratory); seeds 3–7 after it, on the fast path (confirmatory). Fine-tuning has nothing to teach here, so an
# option that learns nothing prevents erosion: read these verdicts with the transfer setting above.

# %% tags=["hide-input"]


explo, confi = mv.same_data_verdicts(rows), mv.same_data_verdicts(confirm_rows)
labels = list(dict.fromkeys(list(explo) + list(confi)))
if labels:
    display(table(pd.DataFrame([{"option": lab, "erosion, seeds 0–2": mv.same_data_cell(explo, lab, "erosion"),
                                 "verdict, seeds 0–2": mv.same_data_cell(explo, lab, "verdict"),
                                 "erosion, seeds 3–7": mv.same_data_cell(confi, lab, "erosion"),
                                 "verdict, seeds 3–7": mv.same_data_cell(confi, lab, "verdict")} for lab in labels]),
                  caption=f"The paper's setting ({scale}): erosion, mean [95% interval], and the plan's verdict"))
unpaired = mv.unpaired_starts(rows + interp_rows)
if unpaired:
    display(Markdown(
        f"**Seeds 0–2 are not paired.** {plural(len(unpaired), 'run')} of the exploratory seeds (options and "
        f"interpolation) started from a pretrained network that was trained again, not from the baseline control's: "
        f"their start accuracy differs from the control's by up to {max(unpaired):.3f}, and they ran on another "
        f"thread count than the baseline. Their comparisons with the baseline control are therefore not paired; the "
        f"confirmatory seeds 3–7 are (same pretrained network, checked at step 0)."))
interp_e = mv.same_data_interpolation_verdict(interp_rows)
interp_c = mv.same_data_interpolation_verdict(confirm_interp_rows)
glue("mitigation_interpolation", interp_c.outcome)
iframe = mr.interpolation_frame(interp_rows + confirm_interp_rows)
display(figure("fig_mitigation_interp", figs.interpolation(iframe),
               f"Weight interpolation in the paper's setting ({scale}, seeds 0–7): from the pretrained network (α = 0) "
               f"to the pattern-fine-tuned one (α = 1), with batch-norm statistics re-estimated on clean images "
               f"(solid) or interpolated (dashed). Line: mean over seeds; band: range.", "fig-mitigation-interp"))
display(Markdown(f"Is there an α > 0 that has moved, keeps clean accuracy and drops the pattern? Seeds 0–2: "
                 f"**{interp_e.outcome}** ({interp_e.label}); seeds 3–7: " + V.describe(interp_c, []) + " "
                 + mr.bn_effect_sentence(iframe)))
rcurves = mr.recovery_curves(recovery_rows)
rsteps = mr.recovery_steps(rcurves)
display(figure("fig_mitigation_recovery", figs.recovery(rcurves, rsteps),
               f"Recovery in the paper's setting (exploratory design, {scale}, seeds 0–2): clean accuracy over recovery "
               f"steps of the eroded network, the control and a network from scratch, one panel per recovery rate. "
               f"Line: mean; band: range over seeds.", "fig-mitigation-recovery"))
srec = {lr: mv.same_data_recovery_verdict(recovery_rows, lr) for lr in mit.recovery_lrs(ex)}
display(Markdown("Per seed, by the plan's rule for this design: " + "; ".join(
    f"at recovery rate {fmt_value(lr)}: **{v.outcome}** ({v.label})" for lr, v in srec.items()) + "."))
glue("key_mitigation", mv.key_result(answer, gain, terosion, rec, scale) if gain else f"not computed at the {scale}")
glue("disc_mitigation", mv.discussion(answer_text, rec, {lab: v for lab, (o, v) in confi.items() if lab != "baseline"},
                                      scale))

# %% [markdown]
# ## Parameters and provenance

# %% tags=["hide-input"]
display(rerun_box("06_mitigation", profile, given, used if profile == "cpu" else None, len(missing) if profile == "cpu"
                  else 0, used))
display(parameters_table(run))
display(provenance_table(used))
