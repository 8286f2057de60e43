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
# (erosion)=
# # Feature erosion
#
# The core experiment (the paper's Fig. 1). A network is trained on clean CIFAR-10 until it classifies every
# training image correctly. From those weights, training continues in two ways with the same optimiser: on the same
# images with the class-coded pattern stamped in a corner (**pattern run**), and on the clean images (**control**).
# Every few steps, and densely at the start, we measure on the test set:
#
# - **clean accuracy**: unmodified test images;
# - **matched accuracy**: each test image carries its own class's pattern;
# - **mismatched accuracy**: each test image carries another class's pattern, scored against the true label;
# - **follow rate**: on those mismatched images, how often the prediction is the pattern's class.
#
# The paper does not give the fine-tuning learning rate, so the chapter takes a list of rates. By default it runs
# 0.01, a typical fine-tuning rate, and 0.1, close to the pretraining peak rate (0.2): "training simply continues" at
# a rate of the original order.

# %% tags=["parameters", "remove-cell"]
# papermill parameters; None: the profile's value (python -m erosion_utils params 01_erosion --profile cpu)
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)
seeds: "Optional[list[int]]" = None  # seeds, one pretrain-then-finetune run each; None: the profile's value
finetune_lrs: "Optional[list[float]]" = None  # fine-tuning learning rates, one run each; None: the profile's value
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

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils.experiments import Context
from erosion_utils.experiments.erosion import erosion_runs
from erosion_utils.profiles import parameter_names, resolve, resolve_notebook
from erosion_utils.report import analysis, claims, plots, prose
from erosion_utils.report.pages import (compute_note, figure, given_parameters, glue, missing_table, parameters_table,
                                        profile_note, provenance_table, rerun_box, table)
from erosion_utils.report.words import SCALE_WORDS, plural

plots.setup()
run = resolve_notebook("erosion", globals())
given = given_parameters(globals(), parameter_names("erosion"))  # for the rerun box
lrs, seeds = sorted(run.extras["finetune_lrs"]), run.extras["seeds"]
# what is not cached is listed, never a crash
runs, missing = erosion_runs(run.config, run.extras, Context.for_profile(profile))
traj = analysis.trajectory_frame(runs)
summary = analysis.summary_frame(runs)
stats = analysis.rate_stats(analysis.seed_table(summary))
used = [r[k] for r in runs for k in ("pretrain", "pattern", "control")]
claim1 = claims.claim_accuracy_drop(summary, runs)
glue("key_erosion", prose.erosion_key(stats, profile, claim1))
display(Markdown(f"{profile_note(profile)} {compute_note(used)} {prose.rates_sentence(lrs)} "
                 f"{'It is' if len(lrs) == 1 else 'Each rate is'} run with {plural(len(seeds), 'seed', one_word=True)} "
                 f"({', '.join(map(str, seeds))})."))
display(missing_table(missing, profile))

# %% tags=["remove-input"]
scale = SCALE_WORDS[profile]
line = "Lines: the one seed's run." if len(seeds) == 1 else f"Lines: mean over {len(seeds)} seeds; bands: range over seeds."
panels = f"at fine-tuning learning rate {lrs[0]:g}" if len(lrs) == 1 else "one panel per fine-tuning learning rate"
styles = ("pattern run: vermillion, a narrow line with a dot at each evaluation; control: blue, a wide translucent "
          "line, so that the pattern run stays visible where the two coincide")
display(figure("fig_erosion", plots.erosion_headline(traj),
               "Clean test accuracy over fine-tuning steps (log-scaled after step 1) for the pattern run and the clean "
               f"control, both from the same pretrained weights ({styles}); {panels}. {line} {scale.capitalize()}.",
               "fig-erosion"))
display(Markdown(prose.erosion_paragraphs(stats, claim1) if stats else
                 "No rate has results: see the missing results above."))

# %% [markdown]
# The control matters: continued training can disturb a network on clean data too, the more so at a high learning
# rate, so a drop of the pattern run alone would not show that the pattern is to blame. Only the gap between the two
# runs is erosion. The {ref}`claims` chapter gives the verdict against the paper.
#
# ## The other metrics

# %% tags=["remove-input"]
display(figure("fig_metrics", plots.erosion_metrics(traj),
               "Matched accuracy, follow rate (mismatched images classified as the pattern's class), mismatched "
               "accuracy (true label) and training loss over fine-tuning steps, pattern run (vermillion) against "
               f"control (blue), drawn as in the figure above; "
               f"{panels if len(lrs) == 1 else 'one row per metric, one panel per learning rate'}. {line} "
               f"{scale.capitalize()}.", "fig-metrics"))

# %% [markdown]
# ## Pretraining

# %% tags=["remove-input"]
display(Markdown(prose.pretrain_sentence([r["pretrain"] for r in runs])))

# %% [markdown]
# ## Final accuracy per seed

# %% tags=["remove-input"]
display(figure("fig_seeds", plots.seed_bars(summary),
               "Final clean test accuracy of the pattern run and its control, "
               + (f"at fine-tuning learning rate {lrs[0]:g}; " if len(lrs) == 1 else "per fine-tuning learning rate; ")
               + ("bar and dot: the one seed." if len(seeds) == 1 else "bars are means, dots are seeds.")
               + f" {scale.capitalize()}.", "fig-erosion-seeds"))
display(table(summary.assign(half_drop=analysis.half_drop_interval(summary)),
              {"finetune_lr": "lr", "seed": "seed", "clean_start": "clean acc., start",
               "clean_pattern": "clean acc., pattern run", "clean_control": "clean acc., control", "erosion": "erosion",
               "follow_pattern": "follow rate", "half_drop": "half the drop, between steps"}))
display(Markdown("The last column places the moment at which the pattern run had lost half of its eventual drop in "
                 "clean accuracy between two evaluations: the evaluations are log-spaced, so that is all the run "
                 "resolves (\"no drop\": it lost less than 0.05)."))

# %% [markdown]
# ## Rerun, parameters and provenance

# %% tags=["remove-input"]
cpu = run if profile == "cpu" else resolve("erosion", "cpu", **given)
cpu_runs, cpu_missing = erosion_runs(cpu.config, cpu.extras, Context(compute=False))  # cached results only
display(rerun_box("01_erosion", profile, given, [r[k] for r in cpu_runs for k in ("pretrain", "pattern", "control")],
                  sum(bool(v) for v in cpu_missing.values()), used))
display(parameters_table(run))
display(provenance_table(used))
