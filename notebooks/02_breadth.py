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
# How broad is the phenomenon? Around a base setting, the chapter changes one factor at a time (the architecture,
# the pattern kind, the pattern size *k*, the share *p* of patched training images, the dataset) at each of a few
# fine-tuning learning rates, and it can run a grid of fine-tuning learning rate × weight decay for the base
# setting; the first paragraph below says what this page ran. Each setting is one seed and a shorter
# fine-tuning run than in {ref}`erosion`; controls (clean fine-tuning) are shared by settings that differ only in
# the pattern.
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
finetune_warmup_epochs: "Optional[float]" = None  # linear learning-rate warm-up from 0, in epochs (0: none); None: the profile's value
freeze_stages: "Optional[int]" = None  # mitigation: freeze the first k stages (0: none); None: the profile's value
head_only_epochs: "Optional[float]" = None  # mitigation (LP-FT): epochs training only the classifier first; None: the profile's value
l2sp_alpha: "Optional[float]" = None  # mitigation (L2-SP): pull towards the pretrained weights (0: off); None: the profile's value
erase_corners: "Optional[float]" = None  # mitigation: probability of erasing a random corner square; None: the profile's value

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils.experiments import Context, breadth_experiment
from erosion_utils.profiles import parameter_names, resolve, resolve_notebook
from erosion_utils.report import analysis, plots, prose
from erosion_utils.report.claims import EROSION_THRESHOLD
from erosion_utils.report.pages import (compute_note, figure, fold, given_parameters, missing_table, parameters_table,
                                        profile_note, provenance_table, rerun_box, table)
from erosion_utils.report.words import SCALE_WORDS, plural


def settings_table(frame):
    """Every setting, one row per setting and rate, "no result" where it is missing; folded (it is long)."""
    shown = frame.assign(erosion=[("no result" if m else e) for m, e in zip(frame.missing, frame.erosion)])
    body = table(shown, {"setting": "setting", "finetune_lr": "lr", "erosion": "erosion",
                         "follow_pattern": "follow rate", "clean_start": "clean acc., start",
                         "clean_pattern": "clean acc., pattern run",
                         "clean_control": "clean acc., control"}, names_column=True)
    done = int((~frame.missing).sum())
    return fold(body, f"All {plural(len(frame), 'setting')} ({done} with results"
                + (f", {len(frame) - done} missing)" if done < len(frame) else ")"))

plots.setup()
run = resolve_notebook("breadth", globals())
given = given_parameters(globals(), parameter_names("breadth"))  # for the rerun box
rows = breadth_experiment(run.config, run.sweeps(), Context.for_profile(profile), run.extras["around_lrs"])
frame = analysis.breadth_frame(rows)  # settings without a cached result are rows marked missing
used = [r[k] for r in rows if not r.get("missing") for k in ("pattern", "control")]
display(Markdown(f"{profile_note(profile)} {compute_note(used)} "
                 f"{prose.breadth_design(run.sweeps(), run.extras['around_lrs'], frame)}"))
display(Markdown(prose.breadth_results(frame, EROSION_THRESHOLD)))
display(missing_table({f"breadth: {label}": "not cached" for label in frame[frame.missing].label}, profile))

# %% tags=["remove-input"]
scale = SCALE_WORDS[profile]
BREADTH_CAPTION = ("Erosion (left) and follow rate (right) per setting: the base setting, and each factor changed from "
                   "it (*k*: pattern size, *p*: share of patched images; \"(grid)\": a cell of the learning rate × "
                   "weight decay grid whose other cells are the base setting). Colour and marker: fine-tuning learning "
                   "rate; \"no result\" marks a setting and rate that was not computed. The axes include negative "
                   "values (the control ending below the pattern run). One seed per setting.")
display(figure("fig_breadth", plots.breadth_summary(frame), f"{BREADTH_CAPTION} {scale.capitalize()}.",
               "fig-breadth"))
display(figure("fig_grid", plots.lr_wd_heatmaps(frame),
               "Erosion (left) and follow rate (right) over the fine-tuning learning rate × weight decay grid, for the "
               "base architecture and pattern; \"missing\" marks a cell without a result. One seed per cell. "
               f"{scale.capitalize()}.", "fig-breadth-grid"))

# %% [markdown]
# ## All settings
#
# A setting without a result at this scale says "no result": it is listed, not hidden.

# %% tags=["remove-input"]
display(settings_table(frame))

# %% [markdown]
# ## Supplement: every setting at a smaller scale

# %% tags=["remove-input"]
if run.extras["supplement_profile"]:
    sup = resolve("breadth", run.extras["supplement_profile"])
    # cached results only: building the book never trains; fill it with `run 02_breadth --profile cpu`
    sup_rows = breadth_experiment(sup.config, sup.sweeps(), Context(compute=False), sup.extras["around_lrs"])
    sup_frame = analysis.breadth_frame(sup_rows)
    sup_used = [r[k] for r in sup_rows if not r.get("missing") for k in ("pattern", "control")]
    display(Markdown(f"The settings the {scale} could not compute are missing above. The supplement runs the "
                     f"same design, every setting it can, at the smaller {SCALE_WORDS[sup.profile]} (its own "
                     "parameters and provenance follow). It is a different experiment from the one above, not a "
                     "stand-in for its missing settings, and the claims chapter does not use it. "
                     f"{profile_note(sup.profile, 'Every number and figure of this supplement')} "
                     f"{compute_note(sup_used)} {prose.breadth_results(sup_frame, EROSION_THRESHOLD)}"))
    display(missing_table({f"supplement: {label}": "not cached" for label in sup_frame[sup_frame.missing].label},
                          sup.profile))
    display(figure("fig_breadth_supplement", plots.breadth_summary(sup_frame),
                   f"{BREADTH_CAPTION} Supplement: {SCALE_WORDS[sup.profile]}.", "fig-breadth-supplement"))
    display(settings_table(sup_frame))
    display(parameters_table(sup))
    display(provenance_table(sup_used, "the supplement's cached results"))
else:
    display(Markdown("No supplement was requested."))

# %% [markdown]
# ## Rerun, parameters and provenance

# %% tags=["remove-input"]
cpu = run if profile == "cpu" else resolve("breadth", "cpu", **{k: v for k, v in given.items()
                                                                 if k != "supplement_profile"})
cpu_rows = breadth_experiment(cpu.config, cpu.sweeps(), Context(compute=False), cpu.extras["around_lrs"])
display(rerun_box("02_breadth", profile, given,
                  [r[k] for r in cpu_rows if not r.get("missing") for k in ("pattern", "control")],
                  sum(bool(r.get("missing")) for r in cpu_rows), used))
display(parameters_table(run))
display(provenance_table(used))
