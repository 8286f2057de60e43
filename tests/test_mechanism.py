"""The mechanism chapter: its plan (phase map, same-steps and same-noise controls), parameter checks, per-run
dynamics (peak loss, follow-rate crossing, weight jumps) and the verdict rules, on synthetic inputs."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from erosion_utils.report import mechanism as mr
from erosion_utils.experiments import Context
from erosion_utils.experiments.mechanism import (confirm_runs, epochs_for_steps, mechanism_experiment, mechanism_runs,
                                                  steps_of)
from erosion_utils.experiments.mechanism import units as units_of
from erosion_utils.profiles import resolve
from erosion_utils.validation import ParameterError


# --- the plan ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_plan_covers_every_group_with_every_seed(profile):
    r = resolve("mechanism", profile)
    runs = mechanism_runs(r.config, r.extras)
    configs = [x.config for x in runs]
    assert len(configs) == len(set(configs)), "each configuration once"
    ex = r.extras
    grid = [x.config for x in runs if "map" in x.groups]
    assert len(grid) == len(ex["map_lrs"]) * len(ex["map_batch_sizes"]) * len(ex["seeds"])
    assert {c.finetune_epochs for c in grid} == {r.config.finetune_epochs}, "the map keeps the epochs fixed"
    ref = r.config.finetune_batch_size
    ref_steps = steps_of(r.config)
    same_steps = [x.config for x in runs if "same_steps" in x.groups]
    assert {steps_of(c) for c in same_steps} == {ref_steps}, "every same-steps run takes the reference's steps"
    assert {c.finetune_batch_size for c in same_steps} == set(ex["map_batch_sizes"]) | {ref}
    for c in (x.config for x in runs if "same_noise" in x.groups):
        assert any(math.isclose(c.finetune_lr / c.finetune_batch_size, lr / ref) for lr in ex["control_lrs"])
        assert c.finetune_epochs == r.config.finetune_epochs
    warm = [x.config for x in runs if "warmup" in x.groups]
    assert sorted({c.finetune_warmup_epochs for c in warm}) == sorted(ex["warmups"])
    long = [x.config for x in runs if "duration" in x.groups]
    assert {c.finetune_epochs for c in long} == {r.config.finetune_epochs, ex["long_epochs"]}
    assert [c.seed for c in configs][:len(configs) // len(ex["seeds"])] == [ex["seeds"][0]] * (
        len(configs) // len(ex["seeds"])), "the first seed of every group comes first"


def test_epochs_for_steps_gives_exactly_the_reference_steps():
    r = resolve("mechanism", "cpu")
    for b in (16, 32, 48, 100, 128, 1000):
        cfg = r.config.__class__(**{**r.config.as_dict(), "finetune_batch_size": b})
        cfg = cfg.__class__(**{**cfg.as_dict(), "finetune_epochs": epochs_for_steps(cfg, 138)})
        assert steps_of(cfg) == 138


@pytest.mark.parametrize("override,name", [
    ({"map_lrs": []}, "map_lrs"), ({"map_lrs": ["a"]}, "map_lrs"), ({"map_batch_sizes": [64.5]}, "map_batch_sizes"),
    ({"warmups": [-1.0]}, "warmups"), ({"warmups": [3.0]}, "warmups"), ({"warmups": [float("inf")]}, "warmups"),
    ({"finetune_warmup_epochs": 5.0}, "finetune_warmup_epochs"), ({"weight_decays": []}, "weight_decays"),
    ({"long_epochs": 0}, "long_epochs"), ({"control_lrs": "0.1"}, "control_lrs"), ({"seeds": []}, "seeds"),
    ({"eval_dtype": "float16"}, r"eval_dtype='float16' is not allowed; choose one of \['float32', 'bfloat16'\]"),
    ({"eval_dtype": "bfloat16", "fast_path": False}, "eval_dtype='bfloat16' needs fast_path=true")])
def test_bad_parameters_are_refused_before_training(override, name):
    with pytest.raises(ParameterError, match=name):
        resolve("mechanism", "cpu", **override)


def test_the_confirmatory_runs_take_the_fast_paths_evaluation_precision():
    """``eval_dtype`` reaches every confirmatory run and no exploratory one; at its default no key changes."""
    usual = resolve("mechanism", "cpu")
    low = resolve("mechanism", "cpu", eval_dtype="bfloat16")
    confirm = [r.config for r in confirm_runs(low.config, low.extras)]
    assert confirm and {c.eval_dtype for c in confirm} == {"bfloat16"} and all(c.fast_path for c in confirm)
    assert {r.config.eval_dtype for r in mechanism_runs(low.config, low.extras)} == {"float32"}
    assert usual.extras["eval_dtype"] == "float32"
    assert all("eval_dtype" not in r.config.key_dict() for r in confirm_runs(usual.config, usual.extras))


def test_missing_results_come_back_as_missing_rows(tmp_path):
    from erosion_utils.cache import CheckpointCache, ResultCache

    ctx = Context(device="cpu", results=ResultCache(tmp_path / "r"), checkpoints=CheckpointCache(tmp_path / "c"),
                  compute=False)
    r = resolve("mechanism", "smoke")
    rows = mechanism_experiment(r.config, r.extras, ctx)
    assert rows and all(row["missing"] for row in rows)
    frame = mr.run_frame(rows)
    assert mr.instability_verdict(frame, 0.1)["verdict"] == "not tested"
    assert mr.drift_verdict(frame)["verdict"] == "not tested"
    assert mr.noise_or_steps(mr.control_pairs(frame, 32))["verdict"] == "not tested"
    assert not list(tmp_path.rglob("*.json")), "nothing computed"


def test_paper_units_cover_every_configuration():
    r = resolve("mechanism", "paper")
    units = units_of(r.config, r.extras)
    configs = {run.config for run in confirm_runs(r.config, r.extras) + mechanism_runs(r.config, r.extras)}
    assert len(units) == len(configs) and {u.args[0] for u in units} == configs
    assert all(u.stage == 1 and u.needs for u in units)


# --- dynamics on synthetic series ----------------------------------------------------------------------------------

RECORDS = [{"step": 0, "train_loss": math.nan, "train_loss_max": math.nan, "follow_rate": 0.1, "weight_distance": 0.0},
           {"step": 4, "train_loss": 0.2, "train_loss_max": 0.5, "follow_rate": 0.1, "weight_distance": 0.01},
           {"step": 16, "train_loss": 1.5, "train_loss_max": 2.6, "follow_rate": 0.3, "weight_distance": 0.21},
           {"step": 64, "train_loss": 0.4, "train_loss_max": 1.1, "follow_rate": 0.7, "weight_distance": 0.30},
           {"step": 128, "train_loss": 0.1, "train_loss_max": 0.3, "follow_rate": 0.9, "weight_distance": 0.33}]


def test_peak_crossing_and_jump_detection():
    assert mr.peak_loss(RECORDS) == (2.6, 16)
    assert mr.first_crossing(RECORDS, "follow_rate", 0.5) == 64
    assert mr.first_crossing(RECORDS, "follow_rate", 0.95) is None
    jump, at = mr.largest_jump(RECORDS, "weight_distance")
    assert jump == pytest.approx(0.20) and at == 16


def test_peak_uses_the_mean_loss_when_the_batch_maximum_was_not_recorded():
    old = [{k: v for k, v in r.items() if k != "train_loss_max"} for r in RECORDS]
    assert mr.peak_loss(old) == (1.5, 16)
    assert mr.largest_jump([{"step": 0}], "weight_distance") == (pytest.approx(math.nan, nan_ok=True), None)
    assert math.isnan(mr.peak_loss([{"step": 0, "train_loss": math.nan}])[0])


# --- verdict rules -------------------------------------------------------------------------------------------------

def _row(groups, lr=0.1, batch=64, epochs=3.0, warmup=0.0, seed=0, erosion=0.0, follow=0.1, peak=0.3, cpeak=0.3,
         wd=5e-4, steps=138, cross=None, peak_step=10):
    return {"groups": tuple(groups), "seed": seed, "finetune_lr": lr, "batch_size": batch, "epochs": epochs,
            "warmup_epochs": warmup, "weight_decay": wd, "lr_per_batch": lr / batch, "missing": False,
            "erosion": erosion, "follow_pattern": follow, "peak_loss_pattern": peak, "peak_loss_control": cpeak,
            "spike_pattern": peak > mr.SPIKE_LOSS, "spike_control": cpeak > mr.SPIKE_LOSS,
            "eroded": erosion > 0.1, "steps": steps, "follow_cross_step": cross, "peak_step_pattern": peak_step}


def _eroding(n=3, peak=2.5):
    return [_row(["warmup", "map"], erosion=0.4, follow=0.9, peak=peak, cross=60, peak_step=15, seed=s)
            for s in range(n)]


def test_instability_supported_when_eroding_runs_spike_and_a_calm_warmup_prevents():
    rows = _eroding() + [_row(["warmup"], warmup=w, erosion=0.02, peak=0.4, seed=s) for w in (1.0, 2.0)
                         for s in range(3)]
    v = mr.instability_verdict(pd.DataFrame(rows), 0.1)
    assert v["verdict"] == "supported" and v["warmup_prevents"] and v["warmup_removes_spike"]
    assert v["peak_precedes_crossing"] == 3
    assert "supported" in mr.instability_sentence(v, 0.1)


def test_instability_refuted_when_warmup_removes_the_spike_but_erosion_stays():
    rows = _eroding() + [_row(["warmup"], warmup=1.0, erosion=0.3, peak=0.4, seed=s) for s in range(3)]
    assert mr.instability_verdict(pd.DataFrame(rows), 0.1)["verdict"] == "not supported"


def test_instability_partly_when_warmup_keeps_the_spike():
    rows = _eroding() + [_row(["warmup"], warmup=1.0, erosion=0.3, peak=2.0, seed=s) for s in range(3)]
    v = mr.instability_verdict(pd.DataFrame(rows), 0.1)
    assert v["verdict"] == "partly supported" and not v["warmup_removes_spike"]
    assert "did not remove the spike" in mr.instability_sentence(v, 0.1)


def test_instability_not_supported_when_erosion_comes_without_spikes():
    calm = _eroding(peak=0.5) + [_row(["warmup"], warmup=1.0, erosion=0.35, peak=0.5, seed=s) for s in range(3)]
    assert mr.instability_verdict(pd.DataFrame(calm), 0.1)["verdict"] == "not supported"
    assert mr.instability_verdict(pd.DataFrame([_row(["map"], erosion=0.01)]), 0.1)["verdict"] == \
        "no erosion to explain"


def test_drift_rules():
    short = [_row(["duration", "map"], lr=0.01, follow=0.05, erosion=0.0, seed=s) for s in range(3)]
    drifting = [_row(["duration"], lr=0.01, epochs=30.0, follow=0.6, erosion=0.2, seed=s) for s in range(3)]
    assert mr.drift_verdict(pd.DataFrame(short + drifting))["verdict"] == "supported"
    creeping = [_row(["duration"], lr=0.01, epochs=30.0, follow=0.2, erosion=0.02, seed=s) for s in range(3)]
    assert mr.drift_verdict(pd.DataFrame(short + creeping))["verdict"] == "partly supported"
    flat = [_row(["duration"], lr=0.01, epochs=30.0, follow=0.06, erosion=0.0, seed=s) for s in range(3)]
    v = mr.drift_verdict(pd.DataFrame(short + flat))
    assert v["verdict"] == "not supported" and "no rise" in mr.drift_sentence(v)
    spiky = [_row(["duration"], lr=0.01, epochs=30.0, follow=0.8, erosion=0.4, peak=3.0, seed=s) for s in range(3)]
    assert mr.drift_verdict(pd.DataFrame(short + spiky))["verdict"].startswith("inconclusive")
    eroding_short = [_row(["duration", "map"], lr=0.03, follow=0.3, erosion=0.15, seed=s) for s in range(3)]
    eroding_long = [_row(["duration"], lr=0.03, epochs=30.0, follow=0.5, erosion=0.15, seed=s) for s in range(3)]
    v = mr.drift_verdict(pd.DataFrame(eroding_short + eroding_long))
    assert v["per_lr"][0.03]["state"] == "erodes already" and v["verdict"].startswith("inconclusive")
    assert "erodes already" in mr.drift_sentence(v)


def _pairs_frame(ref, same_epochs, same_steps, same_noise):
    return pd.DataFrame([{"finetune_lr": 0.1, "batch_size": 128, "reference": ref, "same_epochs": same_epochs,
                          "same_steps": same_steps, "same_noise": same_noise}])


@pytest.mark.parametrize("values,verdict", [
    ((0.4, 0.0, 0.38, 0.05), "number of steps"), ((0.4, 0.0, 0.05, 0.42), "noise scale"),
    ((0.4, 0.0, 0.35, 0.45), "both"), ((0.4, 0.0, 0.1, 0.1), "neither"),
    ((0.4, 0.38, 0.0, 0.0), "batch size does not matter here")])
def test_noise_or_steps_rules(values, verdict):
    v = mr.noise_or_steps(_pairs_frame(*values))
    assert v["verdict"] == verdict
    assert mr.noise_sentence(v, {"shared_values": 0}).strip()


def test_control_pairs_read_the_right_runs():
    rows = [_row(["same_steps", "same_noise"], lr=0.1, batch=64, erosion=0.4, seed=s) for s in range(2)]
    rows += [_row(["map"], lr=0.1, batch=128, erosion=0.05), _row(["same_steps"], lr=0.1, batch=128, epochs=6.0,
                                                                  erosion=0.37),
             _row(["same_noise", "map"], lr=0.2, batch=128, erosion=0.1)]
    pairs = mr.control_pairs(pd.DataFrame(rows), 64)
    assert pairs.to_dict("records") == [{"finetune_lr": 0.1, "batch_size": 128, "reference": 0.4,
                                         "same_epochs": 0.05, "same_steps": 0.37, "same_noise": 0.1}]


# --- figures from the committed cpu-profile results ---------------------------------------------------------------

@pytest.fixture(scope="module")
def committed_cpu():
    r = resolve("mechanism", "cpu")
    rows = mechanism_experiment(r.config, r.extras, Context(compute=False))
    return r, rows, mr.run_frame(rows)


def test_committed_cpu_results_are_complete(committed_cpu):
    r, rows, frame = committed_cpu
    assert len(rows) >= 90 and not frame.missing.any()
    cells = mr.cell_stats(mr.in_group(frame, "map"), ["batch_size", "finetune_lr"])
    assert len(cells) >= 15 and cells.seeds.min() >= 3, ">= 5 rates x 3 batch sizes, >= 3 seeds per cell"
    assert all("weight_distance" in rec for row in rows for rec in row["pattern"]["result"]["records"])


def test_every_figure_is_legible_at_page_width(committed_cpu):
    import matplotlib.pyplot as plt

    from erosion_utils.report import mechanism_figures as figs
    from erosion_utils.report.plots import legibility_problems, setup

    setup()
    r, rows, frame = committed_cpu
    made = [figs.phase_map(frame, mr.steps_by_batch(frame)), figs.controls(frame, r.config.finetune_batch_size),
            figs.collapse(frame), figs.weight_decay(frame), figs.warmup_curves(rows, r.extras["eroding_lr"]),
            figs.duration_curves(rows), figs.spike_vs_erosion(frame)]
    for fig in made:
        assert fig is not None
        assert legibility_problems(fig) == [], fig.axes[0].get_title()
        plt.close(fig)
