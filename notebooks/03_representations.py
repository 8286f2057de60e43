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
# (representations)=
# # Representations
#
# Does the pattern only take over the output, or do the features learned in pretraining erode inside the network?
# Following the toolkit of the tunnel-effect paper {cite}`masarczyk2023tunnel`, we read every layer's
# representation of held-out images with three measures:
#
# - **clean-label probe accuracy**: a linear classifier trained on the frozen features of clean training images
#   and scored on clean test images: how much class information the layer still carries;
# - **numerical rank** of the layer's feature covariance on the test images (eigenvalues above 10⁻³ times the
#   largest);
# - **pattern-class probe accuracy**: the same probe trained to read the class of a pattern stamped independently of
#   the image content: how visible the pattern is at that depth.
#
# We measure the pretrained network, the pattern-fine-tuned network at log-spaced steps, and the clean control at
# the end of fine-tuning, for each fine-tuning learning rate.

# %% tags=["parameters", "remove-cell"]
profile = "cpu"
seed = None
finetune_lrs = None
n_snapshots = None
probe_train_per_class = None
probe_test_per_class = None
probe_epochs = None
dataset = None
arch = None
width = None
train_per_class = None
test_per_class = None
pretrain_epochs = None
pretrain_lr = None
pattern = None
pattern_size = None
corner = None
fraction = None
finetune_epochs = None
finetune_weight_decay = None
finetune_batch_size = None
n_evals = None

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils import analysis, plots
from erosion_utils.claims import claim_representations
from erosion_utils.experiments import Context, representation_experiments
from erosion_utils.pages import compute_note, glue, parameters_frame, profile_note, provenance
from erosion_utils.profiles import resolve_notebook

run = resolve_notebook("representations", globals())
ctx = Context.for_profile(profile)
entries = representation_experiments(run.config, ctx, **run.extras)
layers = analysis.layers_frame(entries)
drop = analysis.layer_erosion(layers)
verdict = claim_representations(drop)
lrs = sorted(run.extras["finetune_lrs"])
for which, lr in (("low", lrs[0]), ("high", lrs[-1])):
    v = verdict["per_lr"][lr]
    glue(f"lr_{which}", lr)
    glue(f"max_drop_{which}", v["max_probe_drop"])
    glue(f"max_layer_{which}", v["max_drop_layer"])
    glue(f"deep_{which}", v["deep_mean_drop"])
    glue(f"shallow_{which}", v["shallow_mean_drop"])
    glue(f"rank_ratio_{which}", v["last_rank_ratio"])
glue("n_layers", int(layers.depth.max()) + 1)
glue("profile", profile)
display(Markdown(profile_note(profile) + " " + compute_note(entries)))

# %% tags=["hide-input"]
g = plots.layer_profiles(layers)
glue("fig_layers", g)

# %% [markdown]
# ```{glue:figure} fig_layers
# :name: fig-layers
#
# Per layer (input to output, {glue:text}`n_layers` taps): clean-label probe accuracy, numerical rank and
# pattern-class probe accuracy, for the pretrained network (black), the pattern-fine-tuned network at several steps
# (light to dark) and at the end (`pattern`), and the clean control at the end (blue). One row per fine-tuning
# learning rate. Profile: {glue:text}`profile`.
# ```
#
# Compared with the clean control at the end of fine-tuning, the pattern run's largest per-layer loss of
# clean-label probe accuracy is {glue:text}`max_drop_low:.3f` (at `lr` = {glue:text}`lr_low`, layer
# {glue:text}`max_layer_low`) and {glue:text}`max_drop_high:.3f` (at `lr` = {glue:text}`lr_high`, layer
# {glue:text}`max_layer_high`). At `lr` = {glue:text}`lr_high` the mean loss is {glue:text}`deep_high:.3f` over the
# deeper half of the network against {glue:text}`shallow_high:.3f` over the shallower half, and the rank of the last
# tapped layer is {glue:text}`rank_ratio_high:.2f` times the control's (at `lr` = {glue:text}`lr_low`:
# {glue:text}`deep_low:.3f`, {glue:text}`shallow_low:.3f` and {glue:text}`rank_ratio_low:.2f`).
#
# How to read the third panel: a corner patch is linearly visible in the pixels, so a probe can read the pattern's
# class from the early layers of any network, the pretrained one included (in the paper-profile results it does so
# almost perfectly). What fine-tuning on the pattern can change is whether the *deep* layers keep the pattern, and
# whether they keep the class information of the content.
#
# ## Per-layer differences at the end of fine-tuning

# %% tags=["hide-input"]
drop.round(3)

# %% [markdown]
# ## Parameters and provenance

# %% tags=["hide-input"]
parameters_frame(run)

# %% tags=["hide-input"]
provenance(entries)
