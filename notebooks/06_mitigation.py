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
# # Mitigation and recovery
#
# Fine-tuning sets in practice carry shortcuts: watermarks, scanner tags, a background shared by one class. Once
# erosion is known to happen, a practitioner wants to know three things, which neither the paper nor, to our
# knowledge, any reproduction measures: which fine-tuning choices **prevent** it and at what cost, whether a
# fine-tuned network can be **pulled back** towards its pretrained weights without losing what fine-tuning added
# (weight interpolation), and whether an eroded network **recovers** when it is trained on clean images again.
#
# Every experiment starts from the profile's eroding regime, the **baseline**: the network of the {ref}`erosion`
# chapter, fine-tuned on patterned images at the rate at which that chapter finds erosion. Each mitigation changes
# one thing in the baseline's pattern run. Every mitigation is compared with the same two runs: the baseline pattern
# run, and the baseline **control** (plain fine-tuning on the clean images, same pretrained weights, optimiser and
# batch order). *Erosion* is the control's final clean test accuracy minus the mitigated pattern run's; the *follow
# rate* is the share of test images carrying another class's pattern whose prediction follows the pattern;
# *matched accuracy* (images carrying their own class's pattern) shows whether the network still learns the
# pattern.

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

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils.experiments import Context
from erosion_utils.experiments import mitigation as mit
from erosion_utils.models import num_stages, stage_words
from erosion_utils.profiles import resolve, resolve_notebook
from erosion_utils.report import mitigation_figures as figs
from erosion_utils.report import mitigation as mr
from erosion_utils.report import plots
from erosion_utils.report.claims import EROSION_THRESHOLD, FOLLOW_PARTIAL, FOLLOW_THRESHOLD, PROBE_THRESHOLD
from erosion_utils.report.pages import (compute_note, figure, fold, glue, missing_table, parameters_table, pending_note,
                                        profile_note, provenance_table, table)
from erosion_utils.report.words import epochs, fmt, fmt_value, join_values, plural

plots.setup()
run = resolve_notebook("mitigation", globals())
ex = run.extras
ctx = Context.for_profile(profile)
rows = mit.mitigation_experiment(run.config, ex, ctx)
interp_rows = mit.interpolation_experiment(run.config, ex, ctx)
recovery_rows = mit.recovery_experiment(run.config, ex, ctx)
frame = mr.mitigation_frame(rows)
stats = mr.mitigation_stats(frame)
base_cfg = mit.baseline_config(run.config, ex)
used = [r[k] for r in rows if not r.get("missing") for k in ("pretrain", "pattern", "control")]
used += [r[k] for r in interp_rows if not r.get("missing") for k in ("interpolation", "pattern", "control")]
used += [r[k] for r in recovery_rows if not r.get("missing") for k in ("recovery", "pattern", "control")]
missing = {f"{r['label']}, seed {r['seed']}": "not cached" for r in rows if r.get("missing")}
missing.update({f"interpolation, seed {r['seed']}": "not cached" for r in interp_rows if r.get("missing")})
missing.update({f"recovery, seed {r['seed']}": "not cached" for r in recovery_rows if r.get("missing")})

note = profile_note(profile) + " " + compute_note(used)
if profile != "paper":
    paper = resolve("mitigation", "paper")
    paper_ctx = Context(compute=False)
    paper_rows = (mit.mitigation_experiment(paper.config, paper.extras, paper_ctx)
                  + mit.interpolation_experiment(paper.config, paper.extras, paper_ctx)
                  + mit.recovery_experiment(paper.config, paper.extras, paper_ctx))
    note += pending_note(len(paper_rows), sum(bool(r.get("missing")) for r in paper_rows), "result", profile,
                         f"ResNet-18 on the full CIFAR-10 at lr {paper.extras['eroding_lr']:g}, batch "
                         f"{paper.config.finetune_batch_size}")
glue("mitigation_profile", profile)
display(Markdown(note))
display(missing_table(missing, profile))

# %% [markdown]
# ## The baseline and the mitigations

# %% tags=["hide-input"]
cfg = base_cfg


stages = num_stages(cfg.arch, cfg.mlp_depth)
display(Markdown(
    f"The baseline is a {cfg.arch} (width {fmt_value(cfg.width)}) pretrained to perfect training accuracy and "
    f"fine-tuned for {epochs([cfg.finetune_epochs])} "
    f"at lr {fmt_value(cfg.finetune_lr)}, batch {cfg.finetune_batch_size}, with the class pattern in every image "
    f"({plural(len(ex['seeds']), 'seed')}). The mitigations, each a parameter of every notebook (off by default):\n\n"
    f"- **Freeze early stages** (`freeze_stages`): the first *k* of the network's {stages} stages ({stage_words(cfg.arch)}) "
    f"keep their weights and their batch-norm statistics; here *k* = {join_values(ex['freeze_options'])}.\n"
    f"- **LP-FT** (`head_only_epochs`) {{cite}}`kumar2022finetuning`: only the classifier trains at first, for "
    f"{epochs(ex['head_only_options'])}, then every layer.\n"
    f"- **L2-SP** (`l2sp_alpha`) {{cite}}`li2018explicit`: the penalty α/2·‖θ − θ₀‖² towards the pretrained weights "
    f"θ₀ replaces plain weight decay on every layer but the classifier; α = {join_values(ex['l2sp_options'])}, "
    f"chosen before any result was seen.\n"
    f"- **Erase corners** (`erase_corners`): each training image, with probability "
    f"{join_values(ex['erase_options'], 'or')}, gets one of its four corner squares of the pattern's size "
    f"({cfg.pattern_size} pixels) overwritten with uniform noise. *This defence assumes that the shortcut sits in a "
    f"corner*, as ours does; it says nothing about shortcuts elsewhere.\n"
    f"- **The existing levers**, measured in the same frame: a lower rate ({join_values(ex['lower_lrs'])}), a "
    f"linear warm-up ({epochs(ex['warmup_options'])}, `finetune_warmup_epochs`), and only a fraction "
    f"{join_values(ex['fraction_options'])} of the fine-tuning images patterned.\n\n"
    f"The baseline and the lower rate are the runs of the {{ref}}`erosion` chapter; the other mitigations are "
    f"evaluated at {plural(ex['mitigation_n_evals'] + 1, 'point')} (their final values are what this page compares)."))

# %% tags=["hide-input"]
glue("mitigation_recommendation", mr.recommendation(stats))
display(figure("fig_mitigation_summary", figs.summary(stats),
               f"Clean test accuracy after fine-tuning on patterned images against the follow rate, for the baseline "
               f"(black) and each mitigation: mean over seeds, error bars the 95% CI (none with one seed). Dashed line "
               f"and band: the baseline control's clean accuracy (mean and 95% CI); dotted: follow rate "
               f"{fmt_value(FOLLOW_PARTIAL)}. Up and to the left is better. Profile: {profile}.",
               "fig-mitigation-summary"))
display(Markdown("**Recommendation.** " + mr.recommendation(stats)))

# %% tags=["hide-input"]
drift = frame[~frame.missing & (frame.clean_start - frame.control_start).abs().gt(0.001)]
if len(drift):
    display(Markdown(
        f"The baseline runs come from the committed results of the {{ref}}`erosion` chapter; the other runs were "
        f"computed later from pretrained networks trained again on this machine (checkpoints are never committed, "
        f"and CPU training is not bit-for-bit reproducible across processes). {plural(len(drift), 'run')} therefore "
        f"start from a clean accuracy that differs from the baseline's by up to "
        f"{fmt((drift.clean_start - drift.control_start).abs().max())} (column *start* in the folded table); this "
        f"is small next to the erosion measured here, but it is part of every comparison with the baseline control."))
display(table(mr.mitigation_table(stats)))
display(Markdown(f"Mean over seeds, with the 95% CI in brackets (none with one seed). How to read the verdicts: "
                 f"{mr.RULES['mitigation']} Every mitigation trains for the same number of steps as the baseline; "
                 f"*extra compute* states what it adds or saves per step. The folded table gives each run's wall "
                 f"time and device; runs computed on different devices, thread counts or machine loads are not "
                 f"comparable in time."))
per_seed = frame.rename(columns={"label": "setting", "clean_start": "start", "clean_pattern": "clean acc.",
                                 "follow_pattern": "follow rate", "matched_pattern": "matched acc."})
display(fold(table(per_seed, ["setting", "seed", "missing", "start", "clean acc.", "clean_control", "erosion",
                              "follow rate", "matched acc.", "wall_time_s", "device"]),
             f"Every run, per seed ({plural(len(frame), 'row')})"))

# %% [markdown]
# ## Weight interpolation
#
# WiSE-FT {cite}`wortsman2022robust` interpolates between the pretrained weights θ₀ and the fine-tuned weights
# θ_ft, θ(α) = (1 − α)·θ₀ + α·θ_ft, and often keeps much of what both endpoints know. It costs evaluation only. Here
# θ_ft is the baseline pattern run. **At each α the batch-norm statistics are re-estimated on the clean training
# images** (reset, then a cumulative average over one pass, without gradients), since statistics interpolated along
# with the weights need not match the interpolated network; the dashed lines show the network with the
# interpolated statistics, for comparison. Is there an α that keeps clean accuracy and drops the pattern?

# %% tags=["hide-input"]
iframe = mr.interpolation_frame(interp_rows)
answer = mr.interpolation_answer(iframe)
glue("mitigation_interpolation", "yes" if answer["window"] else "no")
display(figure("fig_mitigation_interp", figs.interpolation(iframe),
               f"Along θ(α) from the pretrained network (α = 0) to the baseline pattern-fine-tuned network (α = 1): "
               f"clean accuracy, matched accuracy and follow rate on the test set. Solid: batch-norm statistics "
               f"re-estimated on clean training images at each α; dashed: interpolated with the weights. Line: mean "
               f"over seeds; band: range. Profile: {profile}.", "fig-mitigation-interp"))
endpoint = []
for r in interp_rows:
    if not r.get("missing"):
        pts = {p["alpha"]: p for p in r["interpolation"]["result"]["points"]}
        if 1.0 in pts:
            endpoint.append((pts[1.0]["raw"]["clean_acc"], r["pattern"]["result"]["records"][-1]["clean_acc"]))
text = answer["sentence"] + " " + mr.bn_effect_sentence(iframe)
if endpoint:
    text += (f" The fine-tuned weights were recomputed for this analysis (same configuration, same batch order): at "
             f"α = 1 with its own statistics the network has a clean accuracy of "
             f"{join_values([fmt(a) for a, _ in endpoint], formatter=str)} against "
             f"{join_values([fmt(b) for _, b in endpoint], formatter=str)} in the cached pattern runs (per seed).")
display(Markdown(text))

# %% [markdown]
# ## Recovery
#
# After the baseline pattern run, training continues on the clean images for a few epochs, at the fine-tuning rate
# and at a rate ten times lower (the recovery optimiser: the fine-tuning optimiser at that rate, constant, no
# mitigation). Two references run with the same optimiser and the same batch order: (a) the baseline **control**,
# continued on clean images the same way, so that both have the same total number of steps; (b) a network trained
# **from scratch** for the same number of steps, from the initial weights the pretrained network started from. We
# give scratch the recovery's optimiser, not pretraining's schedule, so that only the starting point differs. If
# erosion only *suppresses* the features, the eroded network should recover much faster than scratch learns and its
# per-layer probes should come back; if it *destroys* them, recovery should be no faster than learning from scratch.

# %% tags=["hide-input"]
curves = mr.recovery_curves(recovery_rows)
rsteps = mr.recovery_steps(curves)
rprobes = mr.recovery_probes(recovery_rows)
gaps = mr.probe_gaps(rprobes)
verdicts = mr.recovery_verdicts(rsteps, gaps)
for lr, v in verdicts.items():
    glue(f"mitigation_recovery_{'high' if lr == max(verdicts) else 'low'}", v["verdict"])
display(figure("fig_mitigation_recovery", figs.recovery(curves, rsteps),
               f"Clean test accuracy over recovery steps (log scale after step 1) for the eroded network, the "
               f"control and a network trained from scratch, all trained on clean images with the same optimiser; "
               f"one panel per recovery rate. Dotted: the target, {fmt_value(mr.RECOVERY_TARGET)} of the control's "
               f"final clean accuracy (mean over seeds). Line: mean over seeds; band: range. Profile: {profile}.",
               "fig-mitigation-recovery"))
display(Markdown("\n\n".join(f"- {v['sentence']}" for v in verdicts.values()) if verdicts
                 else "The recovery results are missing."))
display(table(mr.recovery_steps_table(rsteps)))
glue("key_mitigation", mr.key_result(stats, answer, verdicts, profile))
display(figure("fig_mitigation_probes", figs.probes(rprobes),
               f"Clean-label linear-probe accuracy per layer (input to output) of the eroded network and of the "
               f"control, at the start of recovery and at its end for each recovery rate. Probes as in the "
               f"{{ref}}`representations` chapter ({ex['probe_train_per_class']} training and "
               f"{ex['probe_test_per_class']} test images per class, {ex['probe_epochs']} epochs). Line: mean over "
               f"seeds; band: range. Profile: {profile}.", "fig-mitigation-probes"))
display(Markdown(f"How the recovery verdict is reached: {mr.RULES['recovery']}"))

# %% [markdown]
# ## Parameters and provenance

# %% tags=["hide-input"]
display(Markdown(f"Every verdict on this page follows a rule fixed in `erosion_utils/report/mitigation.py`, with the "
                 f"thresholds of the {{ref}}`claims` chapter (erosion above {EROSION_THRESHOLD:g}, follow rate "
                 f"{FOLLOW_THRESHOLD:g} and {FOLLOW_PARTIAL:g}, probe-accuracy loss {PROBE_THRESHOLD:g}) and the "
                 f"margins stated above (clean accuracy kept within {mr.KEEP_MARGIN:g}, erosion reduced by more than "
                 f"{mr.REDUCE_MARGIN:g}, recovery target {mr.RECOVERY_TARGET:g})."))
display(parameters_table(run))
display(provenance_table(used))
