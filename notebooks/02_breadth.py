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
# (breadth)=
# # Breadth
#
# How broad is the phenomenon? Around a base setting we change one factor at a time: the architecture, the pattern
# kind, the pattern size *k*, the fraction *p* of patched training images, and the dataset. We do this around each
# fine-tuning learning rate in `around_lrs`, and we also run the full grid of fine-tuning learning rate x weight
# decay for the base setting. Each setting is one seed and a shorter fine-tuning run than in {ref}`erosion`;
# controls (clean fine-tuning) are shared by settings that differ only in the pattern.
#
# For each setting we report the **erosion** (final clean test accuracy of the control minus that of the pattern
# run) and the **follow rate** (the share of mismatched test images whose prediction is the pattern's class).

# %% tags=["parameters", "remove-cell"]
# papermill parameters; None: the profile's value (python -m erosion_utils params 02_breadth --profile cpu)
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)
seed: "Optional[int]" = None  # seed of the run (weights, batch order, patched images); None: the profile's value
supplement_profile: "Optional[str]" = None  # profile of a supplement computing every setting; None: the profile's value
around_lrs: "Optional[list[float]]" = None  # fine-tuning rates each factor is varied around; None: the profile's value
archs: "Optional[list[str]]" = None  # architectures compared, see arch; None: the profile's value
patterns: "Optional[list[str]]" = None  # patterns compared, see pattern; None: the profile's value
pattern_sizes: "Optional[list[int]]" = None  # pattern sizes compared; None: the profile's value
fractions: "Optional[list[float]]" = None  # patterned fractions compared; None: the profile's value
datasets: "Optional[list[str]]" = None  # datasets compared besides the base one; None: the profile's value
finetune_lrs: "Optional[list[float]]" = None  # fine-tuning rates, a grid with weight decays; None: the profile's value
finetune_weight_decays: "Optional[list[float]]" = None  # decays, grid with finetune_lrs; None: the profile's value
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
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from erosion_utils import analysis, plots
from erosion_utils.claims import EROSION_THRESHOLD
from erosion_utils.experiments import Context, breadth_experiment
from erosion_utils.pages import compute_note, glue, parameters_frame, profile_note, provenance
from erosion_utils.profiles import resolve, resolve_notebook

run = resolve_notebook("breadth", globals())
rows = breadth_experiment(run.config, run.sweeps(), Context.for_profile(profile), run.extras["around_lrs"])
frame = analysis.breadth_frame(rows)
done = frame[~frame.missing]
glue("n_settings", len(frame))
glue("n_done", len(done))
glue("n_missing", int(frame.missing.sum()))
glue("n_eroded", int((done.erosion > EROSION_THRESHOLD).sum()))
glue("threshold", EROSION_THRESHOLD)
eroded = done[done.erosion > EROSION_THRESHOLD]
glue("eroded_list", "; ".join(eroded.label) if len(eroded) else "none")
low = done[done.finetune_lr == min(run.extras["around_lrs"])]
glue("n_low", len(low))
glue("n_low_eroded", int((low.erosion > EROSION_THRESHOLD).sum()))
used = [r[k] for r in rows if not r.get("missing") for k in ("pattern", "control")]
glue("profile", profile)
display(Markdown(profile_note(profile) + " " + compute_note(used)))

# %% [markdown]
# Of {glue:text}`n_settings` settings, {glue:text}`n_done` have results and {glue:text}`n_missing` were not computed
# (see below). Erosion above {glue:text}`threshold` appears in {glue:text}`n_eroded` of them:
# {glue:text}`eroded_list`. Around the lowest fine-tuning learning rate, {glue:text}`n_low_eroded` of
# {glue:text}`n_low` computed settings erode.

# %% tags=["hide-input"]
fig = plots.breadth_summary(frame)
glue("fig_breadth", fig)

# %% [markdown]
# ```{glue:figure} fig_breadth
# :name: fig-breadth
#
# Erosion (left) and follow rate (right) per setting: the base setting, and each factor changed from it (`k`:
# pattern size, `p`: fraction of patched images, `wd`: fine-tuning weight decay). Colour: fine-tuning learning
# rate; a missing bar means no result (see the table below). One seed per setting. Profile: {glue:text}`profile`.
# ```

# %% tags=["hide-input"]
fig = plots.lr_wd_heatmap(frame)
glue("fig_grid", fig)
fig = plots.lr_wd_heatmap(frame, "follow_pattern")
glue("fig_grid_follow", fig)

# %% [markdown]
# ```{glue:figure} fig_grid
# :name: fig-breadth-grid
#
# Erosion over the fine-tuning learning rate x weight decay grid for the base architecture and pattern.
# Profile: {glue:text}`profile`.
# ```
#
# ```{glue:figure} fig_grid_follow
# :name: fig-breadth-grid-follow
#
# Follow rate over the same grid. Profile: {glue:text}`profile`.
# ```
#
# ## All settings
#
# Settings marked *missing* had no cached result and were not computed on this machine: the paper profile computes
# only on a GPU, and the GPU time available for this book ran out before them. They are listed, not hidden.

# %% tags=["hide-input"]
cols = ["finetune_lr", "setting", "missing", "clean_start", "clean_pattern", "clean_control", "erosion",
        "follow_pattern",
        "matched_pattern", "steps_to_erosion"]
frame[[c for c in cols if c in frame]].round(3)

# %% [markdown]
# ## Parameters and provenance

# %% tags=["hide-input"]
parameters_frame(run)

# %% tags=["hide-input"]
provenance(used)

# %% [markdown]
# ## Supplement: every setting at a smaller scale
#
# Where this page was built with the paper profile, the settings the GPU budget did not reach are missing above. The
# supplement below runs the same design, every setting computed, at the smaller `cpu` profile (narrower networks on a
# class-balanced CIFAR-10 subset, shorter training; its own parameters and provenance follow). It is a different
# experiment from the one above, not a stand-in for its missing settings, and the claims chapter does not use it.

# %% tags=["hide-input"]
if run.extras["supplement_profile"]:
    sup = resolve("breadth", run.extras["supplement_profile"])
    sup_rows = breadth_experiment(sup.config, sup.sweeps(), Context.for_profile(sup.profile), sup.extras["around_lrs"])
    sup_frame = analysis.breadth_frame(sup_rows)
    sup_used = [r[k] for r in sup_rows if not r.get("missing") for k in ("pattern", "control")]
    display(Markdown(f"{profile_note(sup.profile, 'Every number and figure of this supplement')} "
                     f"{compute_note(sup_used)} "
                     f"{analysis.breadth_count_sentence(sup_frame, EROSION_THRESHOLD)}"))
    fig = plots.breadth_summary(sup_frame)
    display(fig)
    plt.close(fig)
    display(Markdown(f"*Erosion and follow rate per setting at the `{sup.profile}` profile, one seed per setting; "
                     "labels as in the first figure.*"))
    display(sup_frame[[c for c in cols if c in sup_frame]].round(3))
    display(parameters_frame(sup))
    display(provenance(sup_used))
else:
    display(Markdown("No supplement was requested (`supplement_profile` is None)."))
