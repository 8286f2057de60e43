"""The report layer on hand-built results: wording helpers, tables, folds, missing results, generated sentences under
any number of rates and seeds, claim regimes, and figure legibility at the page width. Seconds, no training."""
from __future__ import annotations

import math
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from erosion_utils.experiments.core import missing_or  # noqa: E402
from erosion_utils.experiments.erosion import erosion_runs  # noqa: E402
from erosion_utils.experiments.representations import representation_entries  # noqa: E402
from erosion_utils.report import analysis, claims, pages, plots, prose  # noqa: E402
from erosion_utils.experiments import CacheMissError, Context, ResultCache  # noqa: E402
from erosion_utils.profiles import resolve  # noqa: E402

BAD_PROSE = re.compile(r"\bnan\b|\bNone\b|\binf\b|n/a|-0\.000\b", re.I)


def entry(clean, follow, matched=None, seed=0):
    matched = matched or clean
    records = [{"step": 10 * i, "epoch": i / 10, "train_loss": 0.1 + 0.01 * i, "clean_acc": c, "matched_acc": m,
                "mismatched_acc": c, "follow_rate": f} for i, (c, f, m) in enumerate(zip(clean, follow, matched))]
    return {"name": "finetune", "key": f"k{seed}{hash((tuple(clean), tuple(follow), seed)) & 0xffffff}",
            "params": {}, "result": {"records": records, "total_steps": 10 * (len(clean) - 1)},
            "provenance": {"git_commit": "abc", "git_dirty": False, "device": "cpu", "torch": "x", "wall_time_s": 1.0,
                           "seed": seed, "utc_time": "t"}}


def runs(lrs, seeds, drop=0.6, follow=0.99):
    """Pattern runs that lose ``drop`` of clean accuracy at rates >= 0.1 (none below), with their controls."""
    out = []
    for lr in lrs:
        for s in seeds:
            d = drop + 0.01 * s if lr >= 0.1 else 0.005 * s
            f = follow if lr >= 0.1 else 0.02
            out.append({"seed": s, "finetune_lr": lr, "pattern": entry([0.9, 0.9, 0.9 - d], [0.0, 0.1, f], seed=s),
                        "control": entry([0.9, 0.85, 0.9], [0.0, 0.0, 0.02], seed=s),
                        "pretrain": {"provenance": {"seed": s}, "result": {"train_accuracy": 1.0, "test_accuracy": 0.9,
                                                                           "reached_target": True}}})
    return out


def stats_of(r):
    return analysis.rate_stats(analysis.seed_table(analysis.summary_frame(r)))


# ----------------------------------------------------------------------------------------------------- wording

def test_plural_join_and_numbers():
    assert pages.plural(1, "seed") == "1 seed" and pages.plural(3, "seed") == "3 seeds"
    assert pages.plural(1, "seed", one_word=True) == "one seed"
    assert pages.plural(2, "class", "classes") == "2 classes"
    assert pages.join_values([0.1]) == "0.1"
    assert pages.join_values([0.01, 0.1]) == "0.01 and 0.1"
    assert pages.join_values([0.01, 0.05, 0.1]) == "0.01, 0.05 and 0.1"
    assert pages.join_values([]) == "none"
    assert pages.rates_phrase([0.1, 0.0005]) == "lr 0.0005 and 0.1"
    assert pages.fmt(-0.0001) == "0.000" and pages.fmt(0.30749) == "0.307" and pages.fmt(3) == "3"
    assert pages.fmt(float("nan")) == "n/a" and pages.fmt(None) == "n/a" and pages.fmt(float("inf")) == "n/a"


def test_ci_phrase_one_seed_has_no_interval():
    assert pages.ci_phrase(0.307, 0.177, 0.437, 3) == "0.307 (95% CI 0.177 to 0.437, 3 seeds)"
    assert pages.ci_phrase(0.307, math.nan, math.nan, 1) == "0.307 (one seed: no interval)"
    assert pages.ci_phrase(math.nan, math.nan, math.nan, 0) == "n/a (no result)"


# ------------------------------------------------------------------------------------------------------- tables

def test_table_three_decimals_human_names_no_index_scrolls():
    frame = pd.DataFrame({"finetune_lr": [0.0005, 0.1], "erosion": [0.123456, float("nan")], "holds": [True, False],
                          "steps_to_erosion": [None, 40]}, index=["a", "b"])
    shown = pages.table_frame(frame)
    assert list(shown.columns) == ["fine-tuning lr", "erosion", "holds", "steps to half the drop"]
    assert shown["fine-tuning lr"].tolist() == ["0.0005", "0.1"]  # parameters exactly, never rounded
    assert shown["erosion"].tolist() == ["0.123", "—"] and shown["holds"].tolist() == ["yes", "no"]
    html = pages.table(frame)._repr_html_()
    assert 'overflow-x:auto' in html and "<th>a</th>" not in html and ">a<" not in html  # no pandas index
    assert "0.123456" not in html and "nan" not in html.lower()
    folded = pages.fold(pages.table(frame), "Parameters (2)")._repr_html_()
    assert folded.startswith("<details") and "<summary>Parameters (2)</summary>" in folded and "</table>" in folded


def test_missing_table_lists_what_is_missing_and_nothing_else():
    assert pages.missing_table({"a": None}, "paper")._repr_html_() == ""
    html = pages.missing_table({"run at lr 0.1": "no cached 'finetune' result", "found": None}, "paper")._repr_html_()
    assert "Missing results" in html and "run at lr 0.1" in html and "found" not in html
    assert "Rerun this chapter" in html and "--profile" not in html  # commands live in the rerun box


def test_missing_or_turns_a_cache_miss_into_a_reason():
    def miss():
        raise CacheMissError("no cached result")

    assert missing_or(lambda: 3) == (3, None)
    assert missing_or(miss) == (None, "no cached result")


def test_empty_results_folder_gives_missing_rows_not_errors(tmp_path):
    ctx = Context(device="cpu", results=ResultCache(tmp_path / "results"), compute=False)
    ero = resolve("erosion", "paper")
    got, missing = erosion_runs(ero.config, ero.extras, ctx)
    assert got == [] and len(missing) == len(ero.extras["seeds"]) * len(ero.extras["finetune_lrs"])
    assert all(missing.values())
    rep = resolve("representations", "paper")
    entries, rep_missing = representation_entries(rep.config, rep.extras, ctx)
    assert entries == [] and all(rep_missing.values())
    # every analysis step copes with no results at all (the AttributeError 'erosion' of a fresh clone)
    assert analysis.summary_frame([]).empty and "erosion" in analysis.summary_frame([])
    frame = analysis.breadth_frame([{"factor": "base", "config": ero.config.as_dict(), "missing": True}])
    assert "erosion" in frame and frame.missing.all()
    assert claims.claim_breadth(frame)["verdict"] == "not tested"
    assert analysis.layer_erosion(analysis.layers_frame([])).empty
    assert [c["verdict"] for c in claims.all_claims(analysis.summary_frame([]), None, None)] == \
        ["not tested"] * 4
    assert prose.erosion_key({}, "paper").startswith("missing")
    assert "missing" in prose.breadth_results(frame)


# ----------------------------------------------------------------------------------------------------- prose

@pytest.mark.parametrize("lrs,seeds", [([0.05], [0]), ([0.01, 0.1], [0, 1, 2]), ([0.01, 0.05, 0.1], [0])])
def test_erosion_sentences_follow_the_parameters(lrs, seeds):
    stats = stats_of(runs(lrs, seeds))
    text = prose.erosion_paragraphs(stats) + " " + prose.rates_sentence(lrs) + " " + prose.erosion_key(stats, "smoke")
    assert not BAD_PROSE.search(text), BAD_PROSE.search(text)
    for lr in lrs:
        assert f"lr {lr:g}" in text
    assert text.count("**At lr") == len(lrs)
    if len(seeds) == 1:
        assert "one seed: no interval" in text and "95% CI" not in text and "1 seeds" not in text
    else:
        assert "95% CI" in text and f"{len(seeds)} seeds" in text
    if len(lrs) == 1:
        assert "one fine-tuning learning rate" in text and "rates" not in prose.rates_sentence(lrs)
    # outcomes only by the plan's rule: with one seed nothing is decided; with three, erosion at 0.1, none below
    claim1 = claims.claim_accuracy_drop(analysis.summary_frame(runs(lrs, seeds)))
    for lr, para in zip(sorted(lrs), prose.erosion_paragraphs(stats, claim1).split("\n\n")):
        if len(seeds) < 3:
            assert "cannot be called erosion" in para, para
        else:
            assert ("this is erosion" in para) == (lr >= 0.1), para
        assert ("the pattern was picked up" in para) == (lr >= 0.1), para


def test_pretrain_sentence_singular_and_plural():
    one = prose.pretrain_sentence([r["pretrain"] for r in runs([0.1, 0.01], [0])])
    assert one.startswith("The pretrained network (one seed)") and "seeds" not in one
    three = prose.pretrain_sentence([r["pretrain"] for r in runs([0.1], [0, 1, 2])])
    assert three.startswith("Over 3 seeds") and "every training image correctly (the 100% target)" in three
    assert "at least 1.0000" not in three


def test_claim_regimes_state_where_a_claim_holds():
    both = claims.claim_accuracy_drop(analysis.summary_frame(runs([0.01, 0.1], [0, 1, 2])))
    assert both["verdict"] == "partly reproduced"
    assert claims.regime(both) == "reproduced at lr 0.1, not at lr 0.01"
    assert prose.verdict_line(both) == ("**Verdict: partly reproduced** (exploratory): reproduced at lr 0.1, not at "
                                        "lr 0.01.")  # exploratory: no result entries were given
    one = claims.claim_accuracy_drop(analysis.summary_frame(runs([0.05], [0])))
    assert claims.regime(one) == "inconclusive at the one rate tested (lr 0.05)"  # one seed: no interval
    assert "one fine-tuning learning rate tested" in claims.lr_dependence_sentence(one)
    none = claims.claim_accuracy_drop(None)
    assert none["verdict"] == "not tested" and claims.regime(none) == "not tested (no results)"
    assert "not tested" in claims.lr_dependence_sentence(none)
    key = prose.verdicts_key(claims.all_claims(None, None, None))
    assert key.count("not tested") == 4


def test_breadth_design_and_results_for_a_one_factor_sweep():
    text = prose.breadth_design({"arch": ["mlp"]}, [0.01])
    assert text == "Around lr 0.01, this page changes one factor at a time: the architecture (MLP)."
    assert "grid" not in text
    assert "No factor is varied" in prose.breadth_design({}, [0.01, 0.1])
    grid = {"arch": ["mlp"], "finetune_lr": [0.01, 0.1], "finetune_weight_decay": [0.0]}
    assert "grid of fine-tuning learning rate (0.01 and 0.1) x weight decay (0)" in prose.breadth_design(grid, [0.01])
    frame = pd.DataFrame({"factor": ["base", "arch"]})  # the grid added no setting: not mentioned
    assert "grid" not in prose.breadth_design(grid, [0.01], frame)


# ------------------------------------------------------------------------------------------------------ figures

def trajectories(lrs, seeds=(0, 1)):
    return analysis.trajectory_frame(runs(lrs, list(seeds)))


@pytest.mark.parametrize("lrs", [[0.05], [0.01, 0.1], [0.001, 0.01, 0.05, 0.1]])
def test_figures_are_legible_at_page_width(lrs):
    plots.setup()
    traj = trajectories(lrs)
    figs = {"headline": plots.erosion_headline(traj), "metrics": plots.erosion_metrics(traj),
            "seeds": plots.seed_bars(analysis.summary_frame(runs(lrs, [0, 1])))}
    for name, fig in figs.items():
        assert fig is not None
        assert plots.legibility_problems(fig) == [], name
        matplotlib.pyplot.close(fig)
    head = plots.erosion_headline(traj)
    panels = [ax for ax in head.axes if ax.get_visible()]
    assert len(panels) == len(lrs)  # one panel per rate, the headline figure shows clean accuracy only
    assert all(ax.get_title() == f"lr = {lr:g}" for ax, lr in zip(panels, sorted(lrs)))
    colours = {matplotlib.colors.to_hex(line.get_color()) for ax in panels for line in ax.get_lines()}
    assert colours <= {plots.PALETTE["pattern"], plots.PALETTE["control"]}  # the shared colours
    matplotlib.pyplot.close(head)


def test_the_seed_figure_draws_its_jitter_the_same_way_every_time():
    summary = analysis.summary_frame(runs([0.01, 0.1], [0, 1, 2]))

    def points(fig):
        return [c.get_offsets().tolist() for c in fig.axes[0].collections]

    state = np.random.get_state()
    first, again = plots.seed_bars(summary), plots.seed_bars(summary)
    assert points(first) == points(again) and any(len(p) for p in points(first))
    assert all(a == b for a, b in zip(np.random.get_state()[1], state[1]))  # the global state is left as it was
    matplotlib.pyplot.close(first)
    matplotlib.pyplot.close(again)


def test_legibility_check_catches_small_fonts_wide_figures_and_crowded_rows():
    fig, axes = matplotlib.pyplot.subplots(1, 4, figsize=(10, 2))
    axes[0].set_title("tiny", fontsize=6)
    problems = " ".join(plots.legibility_problems(fig))
    assert "wide" in problems and "4 panels in a row" in problems and "below 9 pt" in problems
    matplotlib.pyplot.close(fig)


def test_figure_functions_return_none_without_results():
    empty = analysis.trajectory_frame([])
    assert plots.erosion_headline(empty) is None and plots.erosion_metrics(empty) is None
    assert plots.seed_bars(analysis.summary_frame([])) is None
    assert plots.layer_profiles(analysis.layers_frame([])) is None
    frame = analysis.breadth_frame([{"factor": "base", "config": resolve("breadth", "smoke").config.as_dict(),
                                     "missing": True}])
    assert plots.breadth_summary(frame) is None and plots.lr_wd_heatmaps(frame) is None


# ---------------------------------------------------------------------------------------- issue 20: shared pieces

def test_layer_names_number_from_one_and_never_show_module_names():
    from erosion_utils.models import build_model
    from erosion_utils.report.words import layer_name

    assert layer_name("net.layer4.1", "resnet18") == "stage 4, block 2"
    assert layer_name("net.layer1.0", "resnet34", short=True) == "1.1"
    assert layer_name("net.relu", "resnet18") == "stem" and layer_name("net.avgpool") == "global pool"
    assert layer_name("net.hidden.0", "mlp") == "hidden block 1" and layer_name("net.flatten", "vgg11") == "pooled output"
    for arch in ("vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "mlp"):
        taps = build_model(arch, width=0.0625, mlp_hidden=16).tap_names
        names = [layer_name(f"net.{t}", arch) for t in taps]
        assert len(set(names)) == len(names), arch  # one name per probed layer
        assert not any("net." in n or "features" in n or "layer" in n.split(",")[0][:5] for n in names), names
    assert [layer_name(f"net.{t}", "vgg11", short=True) for t in build_model("vgg11", width=0.0625).tap_names] == \
        ["1.1", "2.1", "3.1", "3.2", "4.1", "4.2", "5.1", "5.2", "out"]


def test_scale_device_and_duration_words():
    from erosion_utils.report.words import device_words, duration, scale_suffix

    assert scale_suffix("cpu") == " (cpu scale)" and scale_suffix("paper") == "" and scale_suffix("smoke") == " (smoke scale)"
    assert device_words("cpu (x86_64, 1 threads)") == "a CPU (x86_64, 1 thread)"
    assert device_words("NVIDIA H200") == "an NVIDIA H200"
    assert duration(40) == "40 s" and duration(310) == "5 min" and duration(7200) == "2.0 h"
    assert "GPU" not in pages.profile_note("paper") and "scale" in pages.profile_note("cpu")


def test_parameters_are_shown_exactly_and_lengths_with_their_decimals():
    shown = pages.table_frame(pd.DataFrame({"weight_decay": [0.0005, 0.005], "epochs": [1.4814815, 3.0],
                                            "batch_size": [64, 128]}))
    assert shown.iloc[:, 0].tolist() == ["0.0005", "0.005"]  # never 0.001
    assert shown.iloc[:, 1].tolist() == ["1.48", "3"]  # never 1
    assert shown.iloc[:, 2].tolist() == ["64", "128"]


def test_compact_ci_merges_the_interval_into_one_column():
    frame = pd.DataFrame({"finetune_lr": [0.01, 0.1], "mean": [0.5, 0.6], "ci_low": [0.4, math.nan],
                          "ci_high": [0.6, math.nan], "seeds": [3, 1]})
    out = pages.compact_ci(frame)
    assert list(out.columns) == ["finetune_lr", "mean", "95% CI", "seeds"]
    assert out["95% CI"].tolist() == ["0.400 to 0.600", "—"]


def test_rerun_box_gives_both_commands_for_the_parameters_shown_and_the_cpu_time():
    params = {"finetune_lrs": [0.01, 0.1], "arch": "mlp"}
    run, papermill = pages.rerun_commands("01_erosion", "paper", params)
    assert run.startswith("python -m erosion_utils run 01_erosion --profile paper")
    assert "-p finetune_lrs='[0.01, 0.1]'" in run and "-p arch=mlp" in run
    assert "notebooks/01_erosion.py" in papermill and "-p profile paper" in papermill
    assert "-y '{finetune_lrs: [0.01, 0.1], arch: mlp}'" in papermill
    cpu = [entry([0.9, 0.5], [0, 1], seed=s) for s in (0, 1)]  # 1 s each, on "cpu"
    box = pages.rerun_box("01_erosion", "paper", params, cpu, cpu_missing=1)._repr_html_()
    assert "Rerun this chapter" in box and "2 results took 2 s" in box and "1 more is not cached" in box
    assert "--profile cpu" in box  # the cpu-scale command too
    none = pages.rerun_box("01_erosion", "cpu", {}, [])._repr_html_()
    assert "not known" in none and "--profile cpu" in none
    reads = pages.rerun_box("04_claims", "paper", {}, cpu, trains=False, note="it reads chapters 1 to 3.")._repr_html_()
    assert "trains nothing itself" in reads and "results it reads took" in reads


def test_methods_row_from_resolved_parameters_and_provenance():
    from erosion_utils.report import methods

    cpu = resolve("erosion", "cpu")
    row = methods.methods_row("Feature erosion", cpu, [entry([0.9, 0.5], [0, 1])])
    assert row["scale"] == "cpu" and row["network"] == "VGG-11 at width 0.25"
    assert row["data"] == "CIFAR-10: 300 / 100" and row["rates"] == "0.01 and 0.1" and row["seed_list"] == "0–2"
    assert row["computed_on"] == "CPU" and methods.methods_row("x", cpu)["computed_on"] == "not computed"
    paper = methods.methods_row("Feature erosion", resolve("erosion", "paper"))
    assert paper["network"] == "ResNet-18" and paper["data"] == "CIFAR-10: all"
    html = methods.methods_table([row, paper], "note")._repr_html_()
    assert "Feature erosion" in html and "note" in html
    assert methods.chapter_profile("cpu", "paper") == "cpu" and methods.chapter_profile("paper", "smoke") == "smoke"


def test_discussion_sentences_name_scale_and_seeds_or_say_missing():
    lrs = [0.01, 0.1]
    summary = analysis.summary_frame(runs(lrs, [0, 1, 2]))
    layers = pd.DataFrame([{"finetune_lr": lr, "snapshot": snap, "model": snap, "step": 2, "layer": f"net.layer{d}.0",
                            "depth": d, "relative_depth": d / 3, "dim": 8, "rank": 5, "pattern_probe_accuracy": 0.9,
                            "probe_accuracy": 0.8 - (0.2 if (snap == "pattern" and lr == 0.1) else 0)}
                           for lr in lrs for snap in ("pretrained", "pattern", "control") for d in range(4)])
    readout = prose.readout_text(layers, summary, "paper", "resnet18")
    assert "paper scale" in readout and "lr 0.1" in readout and "3 seeds" in readout and "stage 3, block 1" in readout
    assert "readout" in readout and not BAD_PROSE.search(readout)
    control = prose.unstable_control_text(summary, "cpu")
    assert "cpu scale" in control and "mean of 3 seeds" in control and not BAD_PROSE.search(control)
    assert prose.readout_text(layers.iloc[:0], summary, "paper").startswith("missing")
    assert prose.weight_decay_text(pd.DataFrame(columns=["finetune_lr", "finetune_weight_decay", "erosion"]),
                                   "paper").startswith("missing")
    grid = pd.DataFrame({"finetune_lr": [0.1, 0.1, 0.01, 0.01], "finetune_weight_decay": [0.0, 0.0005, 0.0, 0.0005],
                         "erosion": [0.64, 0.61, 0.0, -0.002]})
    wd = prose.weight_decay_text(grid, "paper")
    assert "0.640 with weight decay 0 and 0.610 with weight decay 0.0005" in wd and "not needed" in wd


def test_issue20_figures_show_every_line_and_missing_results():
    from erosion_utils.report.words import layer_name

    plots.setup()
    traj = trajectories([0.01, 0.1])
    summary = analysis.summary_frame(runs([0.01, 0.1], [0, 1]))
    layers = pd.DataFrame([{"finetune_lr": 0.1, "snapshot": snap, "model": snap, "step": 2, "layer": f"net.layer{d}.0",
                            "depth": d, "relative_depth": d / 3, "dim": 8, "rank": 5, "pattern_probe_accuracy": 0.9,
                            "probe_accuracy": 0.8} for snap in ("pretrained", "pattern @ 1", "pattern", "control")
                           for d in range(4)])
    overview = plots.overview(traj, layers, summary, "resnet18")
    assert overview is not None and plots.legibility_problems(overview) == []
    assert plots.overview_rates(traj, summary) == (0.01, 0.1)
    profiles = plots.layer_profiles(layers, "resnet18")
    assert plots.legibility_problems(profiles) == []
    ticks = [t.get_text() for t in profiles.axes[0].get_xticklabels()]
    assert ticks == [layer_name(f"net.layer{d}.0", "resnet18", short=True) for d in range(4)]
    # equal values stay visible: every snapshot drawn a little to the side of the others
    xs = {round(float(line.get_xdata()[0]), 3) for line in profiles.axes[0].get_lines()}
    assert len(xs) == 4
    matplotlib.pyplot.close("all")
    frame = analysis.breadth_frame([{"factor": "base", "config": {**resolve("breadth", "smoke").config.as_dict(),
                                                                  "finetune_lr": lr}, **r}
                                    for lr, r in ((0.01, {"pattern": runs([0.01], [0])[0]["pattern"],
                                                          "control": runs([0.01], [0])[0]["control"]}),
                                                  (0.1, {"missing": True}))])
    fig = plots.breadth_summary(frame)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "lr 0.1: no result" in texts  # a missing result is drawn as such
    assert fig.axes[0].get_xlim()[0] < 0  # negative erosion can be shown
    matplotlib.pyplot.close(fig)


def test_chapter_titles_name_the_scale_their_parameters_select():
    """A chapter whose params/*.yaml selects the cpu profile says "(cpu scale)" in its title (and so in the sidebar);
    a chapter at the paper scale does not."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "notebooks").glob("[0-9][0-9]_*.py")):
        profile = (yaml.safe_load((repo / "params" / f"{path.stem}.yaml").read_text()) or {}).get("profile")
        title = next(line for line in path.read_text().splitlines() if line.startswith("# # "))
        assert ("(cpu scale)" in title) == (profile == "cpu"), (path.name, profile, title)
