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
# previous chapters. The verdicts follow fixed rules, stated with each claim; they are computed from the cached
# results, with the default parameters of this page's scale for every chapter, and each says the regime (the
# fine-tuning learning rates) in which the claim holds.

# %% tags=["parameters", "remove-cell"]
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)

# %% tags=["hide-input"]
from dataclasses import replace

from IPython.display import Markdown, display

from erosion_utils import runner
from erosion_utils.experiments import Context, breadth_experiment
from erosion_utils.experiments.erosion import erosion_runs
from erosion_utils.experiments.representations import representation_entries
from erosion_utils.profiles import resolve, resolve_notebook
from erosion_utils.report import analysis, claims, methods, plots, prose
from erosion_utils.report.pages import (compact_ci, glue, html_figure, missing_table, profile_note, provenance_table,
                                        rerun_box, table)
from erosion_utils.report.words import SCALE_WORDS, layer_name, plural, rates_phrase

resolve_notebook("claims", globals())  # validates the profile (and refuses parameters the notebook does not take)
ctx = Context.for_profile(profile)
ero, bre, rep = resolve("erosion", profile), resolve("breadth", profile), resolve("representations", profile)
# what is not cached is listed, and its claim is "not tested"
runs, missing = erosion_runs(ero.config, ero.extras, ctx)
rep_entries, rep_missing = representation_entries(rep.config, rep.extras, ctx)
breadth_rows = breadth_experiment(bre.config, bre.sweeps(), ctx, bre.extras["around_lrs"])  # missing rows marked
breadth = analysis.breadth_frame(breadth_rows)
results = claims.all_claims(analysis.summary_frame(runs), breadth, rep_entries, runs, breadth_rows)
c1, c2, c3, c4 = results
glue("key_verdicts", prose.verdicts_key(results))
display(Markdown(profile_note(profile, "Every number behind claims 1 to 4 on this page")))
display(missing_table({**missing, **rep_missing}, profile))


def claim_section(claim: dict, evidence: str, chapter: str) -> Markdown:
    return Markdown(f"{prose.verdict_line(claim)}\n\nRule: {claim['rule']}\n\n{evidence} See {{ref}}`{chapter}`.")


# %% [markdown]
# ## 1. Continued training on patterned data sharply lowers clean test accuracy

# %% tags=["remove-input"]
display(claim_section(c1, prose.claim1_evidence(c1), "erosion"))
display(table(compact_ci(claims.per_lr_frame(c1))))

# %% [markdown]
# ## 2. The fine-tuned network relies on the pattern

# %% tags=["remove-input"]
display(claim_section(c2, prose.claim2_evidence(c2), "erosion"))
display(table(compact_ci(claims.per_lr_frame(c2))))

# %% [markdown]
# ## 3. The phenomenon holds across architectures and pattern variants

# %% tags=["remove-input"]
display(claim_section(c3, prose.claim3_evidence(c3), "breadth"))
display(table(claims.per_lr_frame(c3), ["finetune_lr", "computed", "eroded", "verdict at this rate"]))

# %% [markdown]
# ## 4. Pre-learned features erode inside the network, and depth matters

# %% tags=["remove-input"]
display(claim_section(c4, prose.claim4_evidence(c4, rep.config.arch), "representations"))
c4_frame = claims.per_lr_frame(c4)
if "max_drop_layer" in c4_frame:
    c4_frame["max_drop_layer"] = [layer_name(t, rep.config.arch) for t in c4_frame.max_drop_layer]
display(table(c4_frame))

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

# %% tags=["remove-input"]
# What the introduction and the Discussion paste from this page (glued, not shown here): the overview figure, the
# methods table of every chapter, and the interpreting sentences, all from the same cached results.
summary = analysis.summary_frame(runs)
traj, layers = analysis.trajectory_frame(runs), analysis.layers_frame(rep_entries)
scale = SCALE_WORDS[profile]
calm, eroding = plots.overview_rates(traj, summary)
probed = sorted(layers.finetune_lr.unique()) if not layers.empty else []
probe_lr = (eroding if eroding in probed else probed[-1]) if probed else None
n_seeds = summary.groupby("finetune_lr").size().min() if not summary.empty else 0
curve_rates = [lr for lr in (calm, eroding) if lr is not None]
parts = []
if curve_rates:
    parts.append(f"{'Left' if len(curve_rates) == 1 else 'Left and middle'}: clean test accuracy (solid) and "
                 f"follow rate (dotted) over fine-tuning steps (log-scaled after step 1), "
                 f"pattern run (vermillion, narrow line with dots) against the clean control (blue, wide translucent "
                 f"line), at {rates_phrase(curve_rates)}; lines: mean over {plural(int(n_seeds), 'seed')}, "
                 f"bands: range (Feature erosion chapter).")
if probe_lr is not None:
    parts.append(f"{'Right' if curve_rates else 'The panel'}: clean-label linear-probe accuracy per layer at lr {probe_lr:g} after fine-tuning, for the "
                 f"pretrained network (black, dashed, open squares), the control (blue) and the pattern run "
                 f"(vermillion), one run (Representations chapter); the dotted line is the pattern run's own clean "
                 f"accuracy at that rate.")
caption = " ".join(parts) + f" Everything at the {scale}." if parts else (
    f"No result of the Feature erosion or Representations chapters is cached at the {scale}.")
alt = "Overview: clean accuracy and follow rate over fine-tuning, and probe accuracy per layer"
glue("overview", html_figure(plots.overview(traj, layers, summary, rep.config.arch), caption, alt))
glue("disc_readout", prose.readout_text(layers, summary, profile, rep.config.arch))
glue("disc_control", prose.unstable_control_text(summary, profile))
glue("disc_weight_decay", prose.weight_decay_text(plots.lr_wd_grid(breadth), profile))

SHOWN = [("01_erosion", "erosion", "Feature erosion"), ("02_breadth", "breadth", "Breadth"),
         ("03_representations", "representations", "Representations"), ("05_mechanism", "mechanism", "When and why"),
         ("06_mitigation", "mitigation", "Mitigation")]


def chapter_entries(experiment: str, res) -> list[dict]:
    """The cached results a chapter shows at its scale (cached only; for chapters 5 and 6, their pretrained networks)."""
    c = replace(Context.for_profile(res.profile), compute=False)
    if experiment == "erosion":
        got, _ = erosion_runs(res.config, res.extras, c)
        return [r[k] for r in got for k in ("pretrain", "pattern", "control")]
    if experiment == "breadth":
        got = breadth_experiment(res.config, res.sweeps(), c, res.extras["around_lrs"])
        return [r[k] for r in got if not r.get("missing") for k in ("pattern", "control")]
    if experiment == "representations":
        return representation_entries(res.config, res.extras, c)[0]
    seeds = res.extras.get("seeds") or [res.config.seed]
    return [e for e in (c.results.load("pretrain", replace(res.config, seed=s).pretrain_params()) for s in seeds) if e]


rows = []
for notebook, experiment, title in SHOWN:
    res = resolve(experiment, methods.chapter_profile(runner.params_file(notebook).get("profile", profile), profile))
    rows.append(methods.methods_row(title, res, chapter_entries(experiment, res)))
glue("methods_table", methods.methods_table(
    rows, "Each chapter at the scale this book shows it at (its parameters file selects it; a book built at a smaller "
          "scale shows every chapter at that scale). Images per class: the training and test images of each class "
          "(\"all\": the full sets). Epochs: of pretraining and of fine-tuning. Fine-tuning lr, batch and seeds: every "
          "value any run of the chapter uses. Computed on: the device in the provenance of its results (for the last "
          "two chapters, of their pretrained networks). The experiment chapter trains nothing, and Claims reuses "
          "chapters 1 to 3."))

# %% [markdown]
# ## Rerun and provenance

# %% tags=["remove-input"]
cpu_ctx = Context(compute=False)  # the committed cpu-scale results the three chapters read, cached only
cpu_ero, cpu_bre, cpu_rep = resolve("erosion", "cpu"), resolve("breadth", "cpu"), resolve("representations", "cpu")
cpu_runs, cpu_m1 = erosion_runs(cpu_ero.config, cpu_ero.extras, cpu_ctx)
cpu_reps, cpu_m2 = representation_entries(cpu_rep.config, cpu_rep.extras, cpu_ctx)
cpu_rows = breadth_experiment(cpu_bre.config, cpu_bre.sweeps(), cpu_ctx, cpu_bre.extras["around_lrs"])
display(rerun_box("04_claims", profile, {}, [r[k] for r in cpu_runs for k in ("pretrain", "pattern", "control")]
                  + cpu_reps + [r[k] for r in cpu_rows if not r.get("missing") for k in ("pattern", "control")],
                  sum(bool(v) for v in {**cpu_m1, **cpu_m2}.values()) + sum(bool(r.get("missing")) for r in cpu_rows),
                  trains=False, note="it reads the cached results of the Feature erosion, Breadth and "
                                     "Representations chapters at its own scale."))
display(provenance_table([r[k] for r in runs for k in ("pretrain", "pattern", "control")] + rep_entries
                         + [r[k] for r in breadth_rows if not r.get("missing") for k in ("pattern", "control")],
                         "every result the verdicts use"))
