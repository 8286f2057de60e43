"""Small helpers the book's notebooks share: parameter and provenance tables, the profile note."""
from __future__ import annotations

import pandas as pd

from .analysis import provenance_frame
from .profiles import Resolved

PROFILE_NOTES = {
    "smoke": "the **smoke** profile (a few dozen images and a tiny network, seconds on a CPU: it tests the code "
             "path, and its numbers mean nothing)",
    "cpu": "the **cpu** profile (a CIFAR-10 subset and narrow networks, minutes on a CPU)",
    "paper": "the **paper** profile (full CIFAR-10 and full-width networks, computed on a GPU)",
}


def profile_note(profile: str, scope: str = "Every number and figure on this page") -> str:
    return f"{scope} was produced with {PROFILE_NOTES[profile]}."


def parameters_frame(resolved: Resolved) -> pd.DataFrame:
    """All parameters of the run, as shown beside its figures."""
    rows = [{"parameter": r["parameter"], "value": str(r["value"])} for r in resolved.table()]
    return pd.DataFrame(rows).set_index("parameter")


def provenance(entries: list[dict]) -> pd.DataFrame:
    """Provenance of the cached results a page used (git commit, device, torch, wall time, seed)."""
    return provenance_frame(entries).set_index("key")


def glue(name: str, value) -> None:
    """myst-nb ``glue`` without display; numpy scalars become Python numbers so format specs apply."""
    import numpy as np
    from myst_nb import glue as myst_glue

    if isinstance(value, np.generic):
        value = value.item()
    figure = getattr(value, "figure", value)  # a seaborn grid carries its figure
    myst_glue(name, figure, display=False)
    if hasattr(figure, "savefig"):
        import matplotlib.pyplot as plt

        plt.close(figure)  # shown where the text pastes it, not again at the end of the cell


def compute_note(entries: list[dict]) -> str:
    """One line: how many cached results a page used, their total compute time and the devices they ran on."""
    frame = provenance_frame(entries)
    devices = ", ".join(sorted(frame.device.unique()))
    return f"It uses {len(frame)} cached results, computed in {frame.wall_time_s.sum():.0f} s in total on {devices}."


def execution_provenance(seed: int, started: float) -> pd.DataFrame:
    """Provenance of a page computed while it executes (no cached result): commit, device, torch, wall time."""
    import time

    from .cache import provenance as make_provenance

    prov = make_provenance(seed, time.perf_counter() - started, "cpu")
    return pd.DataFrame([prov]).T.rename(columns={0: "value"})
