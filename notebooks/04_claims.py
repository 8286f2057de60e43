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
# previous chapters. The verdicts follow fixed rules stated with each claim (see `erosion_utils/report/claims.py`); they are
# computed from the cached results, with the profile's default parameters for every chapter, and each says the
# regime (the fine-tuning learning rates) in which the claim holds.

# %% tags=["parameters", "remove-cell"]
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from erosion_utils.experiments import Context, breadth_experiment
from erosion_utils.experiments.erosion import erosion_runs
from erosion_utils.experiments.representations import representation_entries
from erosion_utils.profiles import resolve, resolve_notebook
from erosion_utils.report import analysis, claims, prose
from erosion_utils.report.pages import glue, missing_table, profile_note, provenance_table, table

resolve_notebook("claims", globals())  # validates the profile (and refuses parameters the notebook does not take)
ctx = Context.for_profile(profile)
ero, bre, rep = resolve("erosion", profile), resolve("breadth", profile), resolve("representations", profile)
# what is not cached is listed, and its claim is "not tested"
runs, missing = erosion_runs(ero.config, ero.extras, ctx)
rep_entries, rep_missing = representation_entries(rep.config, rep.extras, ctx)
breadth_rows = breadth_experiment(bre.config, bre.sweeps(), ctx, bre.extras["around_lrs"])  # missing rows marked
breadth = analysis.breadth_frame(breadth_rows)
seeds = analysis.seed_table(analysis.summary_frame(runs))
results = claims.all_claims(seeds, breadth, analysis.layer_erosion(analysis.layers_frame(rep_entries)))
c1, c2, c3, c4 = results
glue("key_verdicts", prose.verdicts_key(results))
display(Markdown(profile_note(profile)))
display(missing_table({**missing, **rep_missing}, profile))


def claim_section(claim: dict, evidence: str, chapter: str) -> Markdown:
    return Markdown(f"{prose.verdict_line(claim)}\n\nRule: {claim['rule']}\n\n{evidence} See {{ref}}`{chapter}`.")


# %% [markdown]
# ## 1. Continued training on patterned data sharply lowers clean test accuracy

# %% tags=["remove-input"]
display(claim_section(c1, prose.claim1_evidence(c1), "erosion"))
display(table(claims.per_lr_frame(c1)))

# %% [markdown]
# ## 2. The fine-tuned network relies on the pattern

# %% tags=["remove-input"]
display(claim_section(c2, prose.claim2_evidence(c2), "erosion"))
display(table(claims.per_lr_frame(c2)))

# %% [markdown]
# ## 3. The phenomenon holds across architectures and pattern variants

# %% tags=["remove-input"]
display(claim_section(c3, prose.claim3_evidence(c3), "breadth"))
display(table(claims.per_lr_frame(c3), ["finetune_lr", "computed", "eroded", "verdict at this rate"]))

# %% [markdown]
# ## 4. Pre-learned features erode inside the network, and depth matters

# %% tags=["remove-input"]
display(claim_section(c4, prose.claim4_evidence(c4), "representations"))
display(table(claims.per_lr_frame(c4)))

# %% [markdown]
# ## Where we disagree with the paper
#
# The paper reports erosion as what happens when training "simply continues" on patterned data.

# %% tags=["remove-input"]
n_missing = c3["missing"]
display(Markdown(claims.lr_dependence_sentence(c1) + " The verdicts above are given per learning rate so that any "
                 "such dependence stays visible." + (" Breadth settings without results are counted as missing, not "
                                                     "as evidence either way." if n_missing else "")))

# %% [markdown]
# ## When and why (beyond the paper)
#
# The paper does not ask why erosion depends on the fine-tuning regime, nor whether a smaller batch acts through its
# gradient noise or through its larger number of steps. The {ref}`mechanism` chapter does, by rules stated there.
# Its verdicts, with the profile it was built with: {glue:text}`05_mechanism.ipynb::key_mechanism:s`.

# %% [markdown]
# ## Provenance of every result used

# %% tags=["remove-input"]
display(provenance_table([r[k] for r in runs for k in ("pretrain", "pattern", "control")] + rep_entries
                         + [r[k] for r in breadth_rows if not r.get("missing") for k in ("pattern", "control")],
                         "every result the verdicts use"))
