"""Notebooks executed in parallel lanes (one papermill run per lane at a time; each kernel is its own process), so
that the book tests use both cores of a small CI machine. A lane keeps its notebooks in order: a chapter that reads
another's results goes in the same lane after it."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from erosion_utils import runner


def execute_in_lanes(lanes: list[list[str]], params: dict, root: Path, timings: dict, prefix: str = "") -> None:
    """Execute every notebook of ``lanes`` with ``params`` into the staged book ``root``; record each one's seconds
    in ``timings``. Raises the first failure after every lane has stopped."""
    def run(lane: list[str]) -> None:
        for name in lane:
            start = time.perf_counter()
            runner.execute(name, params, root)
            timings[f"{prefix}{name}"] = time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        futures = [pool.submit(run, lane) for lane in lanes if lane]
    for f in futures:
        f.result()


def split(names: list[str], second: tuple[str, ...]) -> list[list[str]]:
    """Two lanes: ``names`` in order without ``second``, and ``second`` in order."""
    return [[n for n in names if n not in second], [n for n in names if n in second]]
