"""Pages that stay true under any parameters (issue 9): execute the chapters through the runner (papermill, real
CIFAR-10, the smoke profile) under several parameter sets, build each book (warnings as errors) and read the HTML.

- an empty results folder: every chapter at the paper profile on a CPU (nothing may be computed), each shows a
  "missing results" table, never a traceback;
- one rate and one seed; three rates; another architecture; a breadth sweep of one factor.

Each book holds the varied chapters, executed here, and the other chapters from the empty-results book. The prose
(the page text without tables, code, folded tables and figures) must show no nan, None or inf, every rate passed,
no sentence that contradicts the parameters, and no unresolved glue. Everything is written under pytest's tmp dirs.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from erosion_utils import runner
from lanes import execute_in_lanes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CIFAR10_NPZ = REPO.parent / "shared" / "data" / "cifar10" / "cifar10.npz"
RESULT_CHAPTERS = ("01_erosion", "02_breadth", "03_representations", "04_claims")
BAD_PROSE = {"nan": re.compile(r"\bnan\b", re.I), "None": re.compile(r"\bNone\b"), "inf": re.compile(r"\binf\b", re.I),
             "n/a": re.compile(r"\bn/a\b"), "-0.000": re.compile(r"-0\.0+\b"), "unresolved glue": re.compile(r"\{glue"),
             "broken reference": re.compile(r"\?\?"), "traceback": re.compile(r"Traceback|Error:")}
PLURAL_ONE = re.compile(r"\b1 (seeds|rates|settings|layers|results|classes|parameters|images)\b")
# the architecture alone; the lr x weight decay "grid" is the base setting's one cell (0.01, 5e-4), adding nothing
ONE_BREADTH_FACTOR = {"archs": ["mlp"], "patterns": [], "pattern_sizes": [], "fractions": [], "datasets": [],
                      "finetune_lrs": [0.01], "finetune_weight_decays": [0.0005]}
PARAMETER_SETS = {
    "one_rate_one_seed": {"01_erosion": {"seeds": [0], "finetune_lrs": [0.05]},
                          "03_representations": {"finetune_lrs": [0.05]}},
    "three_rates": {"01_erosion": {"finetune_lrs": [0.01, 0.05, 0.1]}},
    "another_arch": {"01_erosion": {"arch": "mlp"}},
    "breadth_one_factor": {"02_breadth": ONE_BREADTH_FACTOR},
}
TIMINGS: dict[str, float] = {}


def _page(html_dir: Path, name: str) -> BeautifulSoup:
    return BeautifulSoup((html_dir / runner.EXECUTED / f"{name}.html").read_text(), "html.parser")


def prose(soup: BeautifulSoup) -> str:
    """The article's running text: without tables, code, folded tables, scripts and images."""
    article = soup.select_one("article.bd-article")
    for tag in article.select("table, pre, details, script, style, img, .cell_input, .headerlink"):
        tag.decompose()
    return re.sub(r"\s+", " ", article.get_text(" "))


def bad_prose(text: str) -> list[str]:
    found = [f"{what}: ...{text[max(0, m.start() - 60):m.end() + 20]}..." for what, rx in BAD_PROSE.items()
             for m in [rx.search(text)] if m]
    if PLURAL_ONE.search(text):
        found.append(f"plural after 1: {PLURAL_ONE.search(text).group(0)}")
    return found


def _execute(name: str, params: dict, root: Path) -> None:
    start = time.perf_counter()
    runner.execute(name, params, root)
    TIMINGS[f"{root.name}/{name}"] = time.perf_counter() - start


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    assert CIFAR10_NPZ.is_file(), f"real CIFAR-10 is required: not found at {CIFAR10_NPZ}"
    base = tmp_path_factory.mktemp("any_params")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EROSION_PROGRESS", "0")
        mp.setenv("CUDA_VISIBLE_DEVICES", "")  # the paper profile must not compute here, GPU or not
        yield base, mp
    print("\n" + ", ".join(f"{k}: {v:.1f} s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def missing_book(env):
    """Every chapter at the paper profile with an empty results folder, built."""
    base, mp = env
    mp.setenv("EROSION_RESULTS", str(base / "empty_results"))
    mp.setenv("EROSION_CHECKPOINTS", str(base / "empty_checkpoints"))
    root = runner.stage_book(base / "missing")
    names = runner.notebook_names()  # nothing computes here: any two chapters can run at once
    execute_in_lanes([names[0::2], names[1::2]], {"profile": "paper"}, root, TIMINGS, "missing/")
    start = time.perf_counter()
    runner.build(root)
    TIMINGS["missing/build"] = time.perf_counter() - start
    assert not any((base / "empty_results").rglob("*.json")), "the paper profile computed on a CPU"
    return root


@pytest.fixture(scope="module", params=list(PARAMETER_SETS))
def varied_book(request, env, missing_book):
    """The chapters of one parameter set executed at the smoke profile (results shared between sets), the other
    chapters copied from the empty-results book, built."""
    base, mp = env
    mp.setenv("EROSION_RESULTS", str(base / "smoke_results"))
    mp.setenv("EROSION_CHECKPOINTS", str(base / "smoke_checkpoints"))
    root = runner.stage_book(base / request.param)
    (root / runner.EXECUTED).mkdir(parents=True, exist_ok=True)
    for name in runner.notebook_names():
        shutil.copy(missing_book / runner.EXECUTED / f"{name}.ipynb", root / runner.EXECUTED / f"{name}.ipynb")
    varied = PARAMETER_SETS[request.param]
    for name, params in varied.items():
        _execute(name, {"profile": "smoke", **params}, root)
    start = time.perf_counter()
    runner.build(root)
    TIMINGS[f"{request.param}/build"] = time.perf_counter() - start
    return request.param, root / "_build" / "html", varied


# ------------------------------------------------------------------------------------------ empty results folder

def test_every_chapter_renders_without_results(missing_book):
    html = missing_book / "_build" / "html"
    toc = (REPO / "_toc.yml").read_text()
    for name in runner.notebook_names():
        if f"{runner.EXECUTED}/{name}" in toc:
            assert (html / runner.EXECUTED / f"{name}.html").is_file(), name
    for name in RESULT_CHAPTERS:
        soup = _page(html, name)
        assert soup.select("p.erosion-missing"), f"{name}: no missing-results table"
        assert not soup.select(".output.error, .output.traceback, .problematic, .system-message"), name
        assert not soup.select("figure img"), f"{name}: a figure without results"
        assert not bad_prose(prose(soup)), (name, bad_prose(prose(soup)))
    claims = prose(_page(html, "04_claims"))
    assert claims.count("Verdict: not tested") == 4


def test_key_results_say_missing_without_results(missing_book):
    soup = BeautifulSoup((missing_book / "_build" / "html" / "book" / "intro.html").read_text(), "html.parser")
    box = soup.select_one("div.admonition")
    pasted = {s.find_parent("li").find("a").get_text(): s.get_text() for s in box.select("span.pasted-text")}
    assert len(pasted) >= 3 and all(pasted.values()), pasted  # one line per chapter, each linking to it
    assert pasted["Feature erosion"].startswith("missing") and pasted["Representations"].startswith("missing")
    assert pasted["Claims and verdicts"].count("not tested") == 4
    assert not bad_prose(prose(soup))


# --------------------------------------------------------------------------------------------- parameter sets

def test_pages_stay_true_under_the_parameters(varied_book):
    label, html, varied = varied_book
    for name, params in varied.items():
        soup = _page(html, name)
        text = prose(soup)
        assert not soup.select(".output.error, .output.traceback, .problematic, .system-message"), name
        assert not soup.select("p.erosion-missing"), f"{name}: results missing at the smoke profile"
        assert not bad_prose(text), (label, name, bad_prose(text))
        lrs = (params.get("finetune_lrs") or []) if name in ("01_erosion", "03_representations") else []
        for lr in lrs:
            assert f"lr {lr:g}" in text, f"{label}/{name}: rate {lr:g} does not appear"
        if name == "01_erosion":
            assert text.count("At lr ") == len(lrs or [0.01, 0.1]), f"{label}: one paragraph per rate"
        if len(lrs) == 1:
            for phrase in ("higher rate", "lower rate", "both rates", "each rate", "rates:", "per fine-tuning learning"):
                assert phrase not in text.lower(), f"{label}/{name}: '{phrase}' with one rate"
            assert "one fine-tuning learning rate" in text
        if params.get("seeds") == [0]:
            assert "95% CI" not in text and "one seed: no interval" in text, f"{label}/{name}: CI with one seed"
            assert "over seeds" not in text and "The pretrained network (one seed)" in text
        for img in soup.select("figure img"):
            assert img["src"].endswith(".svg"), f"{label}/{name}: figure {img['src']} is not SVG"
            svg = (html / runner.EXECUTED / img["src"]).resolve().read_text()
            width = float(re.search(r'<svg[^>]*\swidth="([\d.]+)pt"', svg).group(1))
            assert width <= 7.0 * 72 + 1, f"{label}/{name}: figure {width:.0f} pt wide, wider than the page"


def test_parameters_reach_the_page(varied_book):
    label, html, varied = varied_book
    if label == "another_arch":
        params = {tr.select("td")[0].get_text(): tr.select("td")[1].get_text()
                  for tr in _page(html, "01_erosion").select("details.erosion-fold table tbody tr")
                  if len(tr.select("td")) == 2}
        assert params.get("arch") == "mlp", params
    if label == "breadth_one_factor":
        text = prose(_page(html, "02_breadth"))
        assert "changes one factor at a time: the architecture (MLP)." in text
        assert "Of 2 settings, 2 have results" in text and "It also runs the grid" not in text
        assert len(_page(html, "02_breadth").select("figure img")) == 1  # no grid heatmap without a grid
