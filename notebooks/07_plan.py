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
# (plan)=
# # Analysis plan
#
# Every rule that turns results into a verdict in this book, with its thresholds, the statistic it compares, how
# that statistic's interval is computed, and the date and commit at which the rule took its current form (read from
# the repository's history when the book was built). A verdict is **confirmatory** when every result it uses was
# computed after its rule took its current form, and **exploratory** otherwise: a rule written or changed after the
# data it judges can only suggest. Every comparison with a threshold uses a seed-level interval (paired where the runs
# pair: a pattern run and its control, an option and the baseline, from the same pretrained network and seed), and has
# three outcomes: the statistic is clearly above the threshold, clearly below it, or the interval reaches the threshold
# (*inconclusive*, as is every verdict with fewer than three seeds). Beside every verdict the book shows how far each
# threshold can move (up to ±50%) before the verdict changes; a verdict that changes within ±10% is *fragile*.

# %% tags=["parameters", "remove-cell"]
profile: "str" = "cpu"  # smoke (seconds, for tests), cpu (minutes on a CPU) or paper (full scale, for a GPU)

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import Markdown, display

from erosion_utils.profiles import resolve_notebook
from erosion_utils.report import plan, planlog
from erosion_utils.report.pages import glue, table

resolve_notebook("plan", globals())  # validates the profile (the plan is the same for every profile)
history = planlog.history()
source = "the repository's git history" if planlog.git_history_available() else "the committed ledger of the plan"
CHAPTER_TITLES = {"claims": "The paper's claims", "mechanism": "When and why erosion happens",
                  "mitigation": "Mitigation and recovery"}
display(Markdown(
    f"Shared settings: {plan.LEVEL:.0%} intervals; at least {plan.MIN_SEEDS} seeds for a decision; an interval end "
    f"within {plan.PRECISION:g} of a threshold touches it (half the reported precision of three decimals); "
    f"sensitivity over ±{plan.SENSITIVITY:.0%} of each threshold (a zero threshold: over the interval levels "
    f"{', '.join(f'{lv:.0%}' for lv in plan.LEVELS)}); fragile within ±{plan.FRAGILE:.0%}; bootstrap intervals from "
    f"{plan.BOOTSTRAP:,} seeded resamples. Dates and commits below come from {source}."))


def since_text(rule_id: str) -> str:
    h = history.get(rule_id, {})
    if not h.get("since"):
        return "not committed in this form"
    return f"{h['since'][:10]} ({h['commit'][:7]})"


glue("plan_rules", len(plan.RULES))
for chapter, title in CHAPTER_TITLES.items():
    rules = [r for r in plan.RULES if r.chapter == chapter]
    display(Markdown(f"## {title}"))
    for r in rules:
        thresholds = ", ".join(f"{k} = {v:g}" for k, v in r.thresholds.items()) or "none"
        display(Markdown(
            f"**{r.title}** (`{r.id}`; in this form since {since_text(r.id)}). {r.words()}\n\n"
            f"*Statistic*: {r.statistic_words()}. *Interval*: {plan.INTERVALS[r.interval]}. *Thresholds*: "
            f"{thresholds}. *Outcomes*: {', '.join(r.outcomes)}."))

display(Markdown(
    "## What the intervals do and do not cover\n\n"
    "Every interval is over seeds: it covers how much a result changes from one pretrained network and batch order "
    "to another, on a fixed test set (at the cpu scale, 500 test images in the mechanism chapter and 1,000 "
    "elsewhere). The test-sampling error of those fixed sets is not included; for a small "
    "difference (such as the transfer setting's gain) it is not negligible. With five seeds, the percentile-bootstrap "
    "intervals (ratios, regression coefficients) are narrower than t-based ones would be.\n\n"
    "The rules were committed before the confirmatory runs; the code that applies them to the results (the chapters' "
    "verdict modules) was written while those runs were being computed. An independent re-implementation from the "
    "rule statements above, by a reviewer, reproduced every confirmatory outcome."))
display(Markdown("## Every rule at a glance"))
display(table(pd.DataFrame([{"rule": r.title, "chapter": CHAPTER_TITLES[r.chapter],
                             "thresholds": ", ".join(f"{k} {v:g}" for k, v in r.thresholds.items()) or "—",
                             "in this form since": since_text(r.id)} for r in plan.RULES])))
