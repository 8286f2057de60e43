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
# (claims)=
# # Claims and verdicts
#
# Each claim of the paper, as we summarised it from what is known of the paper, beside the evidence measured in the
# previous chapters. The verdicts follow fixed rules stated with each claim (see `erosion_utils/claims.py`); they are
# computed from the cached results, with the profile's default parameters for every chapter.

# %% tags=["parameters", "remove-cell"]
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils import analysis, claims
from erosion_utils.experiments import Context, breadth_experiment, erosion_experiment, representation_experiments
from erosion_utils.pages import glue, profile_note, provenance
from erosion_utils.profiles import resolve

resolve("claims", profile)  # validates the profile
ctx = Context.for_profile(profile)
ero, bre, rep = resolve("erosion", profile), resolve("breadth", profile), resolve("representations", profile)
runs = erosion_experiment(ero.config, ero.extras["seeds"], ctx, ero.extras["finetune_lrs"])
seeds = analysis.seed_table(analysis.summary_frame(runs))
breadth = analysis.breadth_frame(breadth_experiment(bre.config, bre.sweeps(), ctx, bre.extras["around_lrs"]))
rep_entries = representation_experiments(rep.config, ctx, **rep.extras)
results = claims.all_claims(seeds, breadth, analysis.layer_erosion(analysis.layers_frame(rep_entries)))
for i, c in enumerate(results, 1):
    glue(f"verdict{i}", c["verdict"])
glue("erosion_threshold", claims.EROSION_THRESHOLD)
glue("follow_threshold", claims.FOLLOW_THRESHOLD)
glue("probe_threshold", claims.PROBE_THRESHOLD)
display(Markdown(profile_note(profile)))

# %% tags=["hide-input"]
c1, c2, c3, c4 = results
glue("lr_sentence", claims.lr_dependence_sentence(c1))
lrs = sorted(c1["per_lr"])
for which, lr in (("low", lrs[0]), ("high", lrs[-1])):
    glue(f"lr_{which}", lr)
    glue(f"c1_{which}", c1["per_lr"][lr]["erosion_mean"])
    glue(f"c1_{which}_lo", c1["per_lr"][lr]["ci_low"])
    glue(f"c1_{which}_hi", c1["per_lr"][lr]["ci_high"])
    glue(f"c2_{which}", c2["per_lr"][lr]["follow_mean"])
glue("n_seeds", len(ero.extras["seeds"]))
glue("c3_computed", c3["computed"])
glue("c3_eroded", c3["eroded"])
glue("c3_missing", c3["missing"])
glue("c3_list", "; ".join(s for v in c3["per_lr"].values() for s in v["eroded_settings"]) or "none")
rep_lrs = sorted(c4["per_lr"])
glue("c4_lr", rep_lrs[-1])
glue("c4_drop", c4["per_lr"][rep_lrs[-1]]["max_probe_drop"])
glue("c4_layer", c4["per_lr"][rep_lrs[-1]]["max_drop_layer"])
glue("c4_deep", c4["per_lr"][rep_lrs[-1]]["deep_mean_drop"])
glue("c4_shallow", c4["per_lr"][rep_lrs[-1]]["shallow_mean_drop"])
glue("c4_rank", c4["per_lr"][rep_lrs[-1]]["last_rank_ratio"])

# %% [markdown]
# ## 1. Continued training on patterned data sharply lowers clean test accuracy
#
# **Verdict: {glue:text}`verdict1`.** Rule: at a fine-tuning learning rate, the claim holds when the lower end of
# the 95% confidence interval (over {glue:text}`n_seeds` seeds) of the erosion (control minus pattern-run final clean
# accuracy) exceeds {glue:text}`erosion_threshold`.
#
# Erosion at `lr` = {glue:text}`lr_low`: {glue:text}`c1_low:.3f` (CI {glue:text}`c1_low_lo:.3f` to
# {glue:text}`c1_low_hi:.3f`); at `lr` = {glue:text}`lr_high`: {glue:text}`c1_high:.3f` (CI {glue:text}`c1_high_lo:.3f`
# to {glue:text}`c1_high_hi:.3f`). See {ref}`erosion`.

# %% tags=["hide-input"]
claims.per_lr_frame(c1)

# %% [markdown]
# ## 2. The fine-tuned network relies on the pattern
#
# **Verdict: {glue:text}`verdict2`.** Rule: holds at a learning rate when the mean follow rate on mismatched test
# images is at least {glue:text}`follow_threshold` (partly: at least 0.5 somewhere).
#
# Follow rate at `lr` = {glue:text}`lr_low`: {glue:text}`c2_low:.3f`; at `lr` = {glue:text}`lr_high`:
# {glue:text}`c2_high:.3f`. See {ref}`erosion`.

# %% tags=["hide-input"]
claims.per_lr_frame(c2)

# %% [markdown]
# ## 3. The phenomenon holds across architectures and pattern variants
#
# **Verdict: {glue:text}`verdict3`.** Rule: reproduced if every computed breadth setting shows erosion above
# {glue:text}`erosion_threshold`, partly if some do. One seed per setting.
#
# Of {glue:text}`c3_computed` computed settings, {glue:text}`c3_eroded` show erosion ({glue:text}`c3_missing` settings
# were not computed): {glue:text}`c3_list`. See {ref}`breadth`.

# %% tags=["hide-input"]
claims.per_lr_frame(c3)

# %% [markdown]
# ## 4. Pre-learned features erode inside the network, and depth matters
#
# **Verdict: {glue:text}`verdict4`.** Rule: holds at a learning rate when some layer's clean-label probe accuracy
# after pattern fine-tuning is more than {glue:text}`probe_threshold` below the control's, and the mean loss over the
# deeper half of the layers exceeds that over the shallower half.
#
# At `lr` = {glue:text}`c4_lr`: largest loss {glue:text}`c4_drop:.3f` (layer {glue:text}`c4_layer`), mean loss
# {glue:text}`c4_deep:.3f` in the deeper half against {glue:text}`c4_shallow:.3f` in the shallower half; the rank of the
# last layer is {glue:text}`c4_rank:.2f` times the control's. See {ref}`representations`.

# %% tags=["hide-input"]
claims.per_lr_frame(c4)

# %% [markdown]
# ## Where we disagree with the paper
#
# The paper reports erosion as what happens when training "simply continues" on patterned data.
# {glue:text}`lr_sentence` The verdicts above are given per learning rate so that any such dependence stays visible.
# Settings the GPU budget did not reach are counted as missing, not as evidence either way.
#
# ## Provenance of every result used

# %% tags=["hide-input"]
provenance([r[k] for r in runs for k in ("pretrain", "pattern", "control")] + rep_entries)
