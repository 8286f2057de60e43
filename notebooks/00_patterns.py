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
# (experiment)=
# # The experiment
#
# **Pretraining.** A network is trained on the clean training set until every training image is classified
# correctly (or, failing that, the best it reaches; each page reports the training accuracy reached).
#
# **Fine-tuning.** Training continues from those weights on the *same* images with the *same* labels, but a
# class-coded pattern is stamped into a corner of a fraction *p* of them (by default every image). The pattern
# carries no information that the labels do not already give, and the network already fits the data: all it offers
# is a far simpler way to predict the label. As a control, training continues on the clean images with the same
# optimiser.
#
# **Patterns.** We test three kinds, each a square region in a chosen corner:
#
# - **colour**: a *k*×*k* patch in one colour per class;
# - **position**: a *k*×*k* white mark whose cell in a small grid encodes the class;
# - **noise**: a fixed random *k*×*k* code per class.
#
# **Test views.** Each test image is shown three ways: *clean*; *matched*, carrying the pattern of its own class; and
# *mismatched*, carrying the pattern of another class drawn at random. On mismatched images a network that reads
# the content predicts the true class; a network that reads the pattern predicts the pattern's class.

# %% tags=["parameters", "remove-cell"]
# papermill parameters; None: the profile's value (python -m erosion_utils params 00_patterns --profile cpu)
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)
seed: "Optional[int]" = None  # seed choosing the example images and mismatched patterns; None: the profile's value
dataset: "Optional[str]" = None  # cifar10, cifar100 or fashion_mnist; None: the profile's value
pattern_size: "Optional[int]" = None  # side of the pattern in pixels, 1 to 32; None: the profile's value
corner: "Optional[str]" = None  # top_left, top_right, bottom_left or bottom_right; None: the profile's value
n_images: "Optional[int]" = None  # example images shown; None: the profile's value

# %% tags=["hide-input"]
import time

import pandas as pd

from IPython.display import Markdown, display

from erosion_utils.data import CLASS_NAMES, balanced_indices, load_dataset
from erosion_utils.patterns import KINDS, PatternSpec, make_codes, mismatched_labels, stamp
from erosion_utils.profiles import parameter_names, resolve_notebook
from erosion_utils.report import plots
from erosion_utils.report.pages import (execution_provenance, figure, fold, given_parameters, parameters_table,
                                        profile_note, rerun_box, table)
from erosion_utils.report.words import SCALE_WORDS, dataset_name, plural

started = time.perf_counter()
plots.setup()
run = resolve_notebook("patterns", globals())
given = given_parameters(globals(), parameter_names("patterns"))  # for the rerun box
cfg = run.config
data = load_dataset(cfg.dataset)
idx = balanced_indices(data.y_test, 1, cfg.seed)[: run.extras["n_images"]]
x, y = data.x_test[idx], data.y_test[idx]
other = mismatched_labels(y, data.num_classes, cfg.seed)
names = CLASS_NAMES.get(cfg.dataset, [str(i) for i in range(data.num_classes)])
rows = {"clean": x}
for kind in KINDS:
    codes = make_codes(PatternSpec(kind, cfg.pattern_size, cfg.corner, 1.0, cfg.pattern_seed), data.num_classes)
    rows[f"{kind} (matched)"] = stamp(x, y, codes)
    rows[f"{kind} (mismatched)"] = stamp(x, other, codes)
display(Markdown(profile_note(profile, "Every example on this page")))

# %% tags=["remove-input"]
corner = cfg.corner.replace("_", "-")
display(figure("fig_patterns", plots.pattern_gallery(rows, [f"{names[int(a)]}\n(pattern: {names[int(b)]})"
                                                            for a, b in zip(y, other)]),
               f"Test images in columns ({plural(len(idx), 'image')}; title: the true class and the class of the "
               f"mismatched pattern) shown clean and with each pattern kind, matched and mismatched. Pattern size "
               f"*k* = {cfg.pattern_size}, corner: {corner} ({SCALE_WORDS[profile]}).", "fig-patterns"))
display(Markdown(f"The images come from the {dataset_name(cfg.dataset)} test set "
                 f"({plural(data.num_classes, 'class', 'classes')}). The position code places a *k*×*k* mark in a "
                 f"*g*×*g* grid with *g* = ⌈√*K*⌉ for *K* classes, so it occupies a larger corner region (*gk* pixels "
                 f"wide) than the other two kinds."))

# %% [markdown]
# ## Rerun, parameters and provenance

# %% tags=["remove-input"]
display(rerun_box("00_patterns", profile, given, trains=False,
                  note="it stamps the patterns into a few test images, in seconds on a CPU."))
display(parameters_table(run))
prov = execution_provenance(cfg.seed, started)
display(fold(table(pd.concat([prov, pd.DataFrame([{"parameter": "data source", "value": data.source}])])),
             "Provenance of this page's execution"))
