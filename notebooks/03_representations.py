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
# papermill parameters; None: the profile's value (python -m erosion_utils params 03_representations --profile cpu)
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)
seed: "Optional[int]" = None  # seed of the run (weights, batch order, patched images); None: the profile's value
finetune_lrs: "Optional[list[float]]" = None  # fine-tuning learning rates, one run each; None: the profile's value
n_snapshots: "Optional[int]" = None  # checkpoints probed along fine-tuning, at least 2; None: the profile's value
probe_train_per_class: "Optional[int]" = None  # images per class training each linear probe; None: the profile's value
probe_test_per_class: "Optional[int]" = None  # images per class testing each linear probe; None: the profile's value
probe_epochs: "Optional[int]" = None  # epochs of probe training; None: the profile's value
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
from erosion_utils.experiments.representations import representation_entries
from erosion_utils.profiles import parameter_names, resolve, resolve_notebook
from erosion_utils.report import analysis, plots, prose
from erosion_utils.report.claims import claim_representations
from erosion_utils.report.pages import (compute_note, figure, given_parameters, glue, missing_table, parameters_table,
                                        profile_note, provenance_table, rerun_box, table)
from erosion_utils.report.words import SCALE_WORDS, fmt, layer_name

plots.setup()
run = resolve_notebook("representations", globals())
given = given_parameters(globals(), parameter_names("representations"))  # for the rerun box
# what is not cached is listed
entries, missing = representation_entries(run.config, run.extras, Context.for_profile(profile))
layers = analysis.layers_frame(entries)
drop = analysis.layer_erosion(layers)
verdict = claim_representations(entries)
arch = run.config.arch
glue("key_probe", prose.representation_key(verdict, profile, arch))
display(Markdown(f"{profile_note(profile)} {compute_note(entries)} {prose.rates_sentence(run.extras['finetune_lrs'])}"))
display(missing_table(missing, profile))

# %% tags=["remove-input"]
n_layers = layers.depth.nunique()
lrs = sorted(run.extras["finetune_lrs"])
display(figure("fig_layers", plots.layer_profiles(layers, arch),
               f"Per layer (input to output, {n_layers} probed layers): clean-label probe accuracy, numerical rank and "
               "pattern-class probe accuracy, for the pretrained network (black, dashed, open squares), the "
               "pattern-fine-tuned network at several steps (light to dark orange, one marker each) and at the end "
               "(vermillion), and the clean control at the end (blue). Each line is shifted a little sideways so that "
               "lines with equal values stay visible. "
               + (f"Fine-tuning learning rate {lrs[0]:g}." if len(lrs) == 1 else "One row per fine-tuning learning rate.")
               + f" One run (seed {run.config.seed}), {SCALE_WORDS[profile]}.", "fig-layers"))
display(Markdown(prose.representation_paragraphs(verdict, arch) if verdict["per_lr"] else
                 "No rate has results: see the missing results above."))

# %% [markdown]
# How to read the third panel: a corner patch is linearly visible in the pixels, so a probe can read the pattern's
# class from the early layers of any network, the pretrained one included. What fine-tuning on the pattern can
# change is whether the *deep* layers keep the pattern, and whether they keep the class information of the content.

# %% tags=["remove-input"]
display(Markdown(prose.pattern_visibility_sentence(layers)))

# %% [markdown]
# ## Per-layer differences at the end of fine-tuning

# %% tags=["remove-input"]
shown = drop.sort_values(["finetune_lr", "depth"]).assign(
    layer=[layer_name(t, arch) for t in drop.sort_values(["finetune_lr", "depth"]).layer])
shown["probe"] = [f"{fmt(c)} → {fmt(p)}" for c, p in zip(shown.probe_accuracy_control, shown.probe_accuracy_pattern)]
shown["ranks"] = [f"{int(c)} → {int(p)}" for c, p in zip(shown.rank_control, shown.rank_pattern)]
display(table(shown, {"layer": "layer", "finetune_lr": "lr", "probe": "probe acc., control → pattern run",
                      "probe_drop": "probe-acc. loss", "ranks": "rank, control → pattern run",
                      "rank_ratio": "rank ratio"}, names_column=True))
display(Markdown(f"Layers are numbered from the input, from 1; {SCALE_WORDS[profile]}, one run (seed "
                 f"{run.config.seed}). The loss is the control's probe accuracy minus the pattern run's; the rank "
                 "ratio is the pattern run's rank over the control's."))

# %% [markdown]
# ## Rerun, parameters and provenance

# %% tags=["remove-input"]
cpu = run if profile == "cpu" else resolve("representations", "cpu", **given)
cpu_entries, cpu_missing = representation_entries(cpu.config, cpu.extras, Context(compute=False))  # cached only
display(rerun_box("03_representations", profile, given, cpu_entries, sum(bool(v) for v in cpu_missing.values()),
                  entries))
display(parameters_table(run))
display(provenance_table(entries))
