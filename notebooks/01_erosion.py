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
# images with the class-coded pattern stamped in a corner (**pattern**), and on the clean images (**control**).
# Every few steps, and densely at the start, we measure on the test set:
#
# - **clean accuracy**: unmodified test images;
# - **matched accuracy**: each test image carries its own class's pattern;
# - **mismatched accuracy**: each test image carries another class's pattern, scored against the true label;
# - **follow rate**: on those mismatched images, how often the prediction is the pattern's class.
#
# The paper does not give the fine-tuning learning rate, so we run several (here: {glue:text}`lr_list`). The defaults
# are 0.01, a typical fine-tuning rate, and 0.1, close to the pretraining peak rate (0.2): "training simply
# continues" at a rate of the original order.

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

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils import analysis, plots
from erosion_utils.experiments import Context, erosion_experiment
from erosion_utils.pages import compute_note, glue, parameters_frame, profile_note, provenance
from erosion_utils.profiles import resolve_notebook

run = resolve_notebook("erosion", globals())
runs = erosion_experiment(run.config, run.extras["seeds"], Context.for_profile(profile), run.extras["finetune_lrs"])
traj = analysis.trajectory_frame(runs)
summary = analysis.summary_frame(runs)
seed_stats = analysis.seed_table(summary)
used = [r[k] for r in runs for k in ("pretrain", "pattern", "control")]
glue("profile", profile)
display(Markdown(profile_note(profile) + " " + compute_note(used)))

# %% tags=["hide-input"]
pre = [r["pretrain"]["result"] for r in runs]
glue("n_seeds", len(run.extras["seeds"]))
glue("pretrain_train_acc_min", min(p["train_accuracy"] for p in pre))
glue("pretrain_test_acc", sum(p["test_accuracy"] for p in pre) / len(pre))
glue("all_perfect", "all reached" if all(p["reached_target"] for p in pre) else "not all reached")
lrs = sorted(run.extras["finetune_lrs"])
glue("lr_list", ", ".join(str(lr) for lr in lrs))
for which, lr in (("low", lrs[0]), ("high", lrs[-1])):
    glue(f"lr_{which}", lr)
    for _, row in seed_stats[seed_stats.finetune_lr == lr].iterrows():
        glue(f"{row.quantity}_{which}", row["mean"])
        glue(f"{row.quantity}_{which}_lo", row.ci_low)
        glue(f"{row.quantity}_{which}_hi", row.ci_high)

# %% [markdown]
# ## Pretraining
#
# Over {glue:text}`n_seeds` seeds the pretrained networks reach a training accuracy of at least
# {glue:text}`pretrain_train_acc_min:.4f` ({glue:text}`all_perfect` 100%) and a clean test accuracy of
# {glue:text}`pretrain_test_acc:.3f` on average.
#
# ## Accuracy over fine-tuning

# %% tags=["hide-input"]
g = plots.erosion_curves(traj)
glue("fig_erosion", g)

# %% [markdown]
# ```{glue:figure} fig_erosion
# :name: fig-erosion
#
# Test metrics over fine-tuning steps (log-scaled after step 1) for the pattern run (red) and the clean control
# (blue), starting from the same pretrained weights; one row per fine-tuning learning rate. Line: mean over seeds;
# band: range over seeds. The parameters are listed at the end of the page. Profile: {glue:text}`profile`.
# ```
#
# At the lower rate ({glue:text}`lr_low`), the pattern run ends at a clean accuracy of
# {glue:text}`clean_pattern_low:.3f` against {glue:text}`clean_control_low:.3f` for the control
# (erosion {glue:text}`erosion_low:.3f`, 95% CI {glue:text}`erosion_low_lo:.3f` to
# {glue:text}`erosion_low_hi:.3f`), and predictions on mismatched images follow the pattern in
# {glue:text}`follow_pattern_low:.3f` of cases. The pattern is nonetheless being picked up: over the run, matched
# accuracy moves from {glue:text}`matched_start_low:.3f` to {glue:text}`matched_pattern_low:.3f` and the follow rate
# from {glue:text}`follow_start_low:.3f` to {glue:text}`follow_pattern_low:.3f`. Whether a longer run at this rate
# would erode the features was not tested.
#
# At the higher rate ({glue:text}`lr_high`), the pattern run ends at {glue:text}`clean_pattern_high:.3f` against
# {glue:text}`clean_control_high:.3f` for the control (erosion {glue:text}`erosion_high:.3f`, 95% CI
# {glue:text}`erosion_high_lo:.3f` to {glue:text}`erosion_high_hi:.3f`); the follow rate is
# {glue:text}`follow_pattern_high:.3f` and matched accuracy {glue:text}`matched_pattern_high:.3f`.
#
# The control matters: a jump to a high learning rate disturbs the network on clean data too, so a drop of the
# pattern run alone would not show that the pattern is to blame. Only the gap between the two runs is erosion.
# The {ref}`claims` chapter gives the verdict against the paper.
#
# ## Final accuracy per seed

# %% tags=["hide-input"]
fig = plots.seed_bars(summary)
glue("fig_seeds", fig)

# %% [markdown]
# ```{glue:figure} fig_seeds
# :name: fig-erosion-seeds
#
# Final clean test accuracy of the pattern run and its control, per fine-tuning learning rate; bars are means, dots
# are seeds. Profile: {glue:text}`profile`.
# ```

# %% tags=["hide-input"]
summary.round(4)

# %% [markdown]
# ## Parameters and provenance

# %% tags=["hide-input"]
parameters_frame(run)

# %% tags=["hide-input"]
provenance(used)
