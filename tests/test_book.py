"""End to end: execute every notebook through the runner (papermill, real CIFAR-10 from ../shared/data, the smoke
profile), build the Jupyter Book with warnings as errors, and look at the pages in a headless Chromium.

Everything is written under pytest's tmp dirs (book root, result cache, checkpoints), except the screenshots, which
go to ``test-artifacts/screenshots/<page>.png`` (git-ignored). About a minute on a 2-core CPU.
"""
from __future__ import annotations

import ast
import functools
import http.server
import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from book_checks import chromium, executed_profile, page_problems
from erosion_utils import runner
from lanes import execute_in_lanes, split

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CIFAR10_NPZ = REPO.parent / "shared" / "data" / "cifar10" / "cifar10.npz"
PROVENANCE = ("git_commit", "device", "torch", "wall_time_s", "seed")
ACCURACIES = ("clean_acc", "matched_acc", "mismatched_acc", "follow_rate")

# myst-nb glue references in markdown: roles {glue}`key`, {glue:text}`key:.3f`, ... and directives ```{glue:figure} key
GLUE_ROLE = re.compile(r"\{glue(?::(?:any|text|md|math))?\}`([^`]+)`")
GLUE_DIRECTIVE = re.compile(r"^[`:]{3,}\{glue(?::(?:any|figure|md|math))?\}[ \t]+(\S+)", re.M)
# what an unresolved or broken reference, a failed cell or a text-only figure looks like in the HTML
BAD_SELECTORS = (".output.traceback", ".output.error", ".output.stderr", "div.cell_output .stderr", ".problematic",
                 ".system-message", ".system-messages")
BAD_TEXT = ("Traceback", "??", "{glue", "<Figure size")
# No JavaScript error is tolerated: _config.yml drops sphinx_thebe, whose inline script Sphinx 7.4 wrote twice per page
# ("Identifier 'THEBE_JS_URL' has already been declared").
KNOWN_JS_ERRORS: tuple[str, ...] = ()
TEXT_WIDTH_PX = 672  # the text width of a page at a 1280 px viewport (plots.TEXT_WIDTH_IN at 96 px per inch)


def _toc_files(toc: dict) -> list[str]:
    """Every document of a jb-book _toc.yml, root first (chapters, parts and sections, recursively)."""
    out = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                out.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return out


TOC_FILES = _toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))
NOTEBOOK_PAGES = {f"{runner.EXECUTED}/{name}": name for name in runner.notebook_names()}


def _tree_state(path: Path) -> dict:
    """(mtime, size) of every file under ``path``: to show that the test left the repository alone."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size) for p in path.rglob("*") if p.is_file()}


def _glued(nb: dict) -> dict[str, dict]:
    """Glued values of an executed notebook: name -> output data (mime type -> value) of its glue output."""
    out = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook") or {}
            if "name" in meta:
                prefix = meta.get("mime_prefix", "application/papermill.record/")
                data = output.get("data", {})
                out[meta["name"]] = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
    return out


def _markdown_text(nb: dict, outputs: bool) -> str:
    """The notebook's markdown cells, or (``outputs``) its ``text/markdown`` outputs (generated prose, figures)."""
    def text(value):
        return "".join(value) if isinstance(value, list) else value

    if not outputs:
        return "\n".join(text(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return "\n".join(text(o["data"]["text/markdown"]) for c in nb["cells"] for o in c.get("outputs", [])
                     if "text/markdown" in o.get("data", {}))


def _glue_references(nb: dict) -> tuple[list[str], list[str]]:
    """(inline glue keys, figure/directive glue keys) referenced in the markdown cells and in the generated Markdown
    outputs, in order."""
    text = _markdown_text(nb, False) + "\n" + _markdown_text(nb, True)
    refs = [ref for ref in GLUE_ROLE.findall(text) if "::" not in ref]  # pasted from this notebook
    roles = [ref.split(":", 1)[0] for ref in refs]
    return roles, GLUE_DIRECTIVE.findall(text)


def _cross_references(nb: dict) -> list[tuple[str, str]]:
    """(notebook name, key) of every glue pasted from another notebook (``{glue:text}`other.ipynb::key```)."""
    text = _markdown_text(nb, False) + "\n" + _markdown_text(nb, True)
    return [(Path(ref.split("::", 1)[0]).stem, ref.split("::", 1)[1].split(":", 1)[0])
            for ref in GLUE_ROLE.findall(text) if "::" in ref]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return float(text) if text.strip() in ("nan", "inf", "-inf") else text


# ------------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Execute every notebook with the smoke profile into a staged tmp book, then build it (warnings as errors)."""
    assert CIFAR10_NPZ.is_file(), f"real CIFAR-10 is required for the end-to-end test: not found at {CIFAR10_NPZ}"
    base = tmp_path_factory.mktemp("e2e")
    results, checkpoints = base / "results", base / "checkpoints"
    guarded = {p: _tree_state(REPO / p) for p in ("results", ".cache", runner.EXECUTED)}
    timings = {}
    with pytest.MonkeyPatch.context() as mp:
        # inherited by the papermill kernels: every result and checkpoint lands in tmp
        mp.setenv("EROSION_RESULTS", str(results))
        mp.setenv("EROSION_CHECKPOINTS", str(checkpoints))
        mp.setenv("EROSION_PROGRESS", "0")
        root = runner.stage_book(base / "book")
        # two lanes: the claims chapter reads what chapters 1-3 computed, so they share one; 05 and 06 the other
        names = runner.notebook_names()
        execute_in_lanes(split(names, ("05_mechanism", "06_mitigation")), {"profile": "smoke"}, root, timings)
        executed = {name: runner.output_path(root, f"{name}.ipynb") for name in names}
        timings = {name: timings[name] for name in names}
        start = time.perf_counter()
        index = runner.build(root)
        timings["build"] = time.perf_counter() - start
        print("\n" + ", ".join(f"{k}: {v:.1f} s" for k, v in timings.items()))
        yield {"root": root, "index": index, "html": root / "_build" / "html", "executed": executed,
               "results": results, "checkpoints": checkpoints, "guarded": guarded, "timings": timings}


@pytest.fixture(scope="module")
def server(book):
    """The built HTML over HTTP on 127.0.0.1 (a free port), served from a background thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(book["html"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


# ----------------------------------------------------------------------------------------- executed notebooks

def test_repository_untouched(book):
    for path, before in book["guarded"].items():
        assert _tree_state(REPO / path) == before, f"the end-to-end test wrote into the repository's {path}/"
    assert book["results"].is_dir() and any(book["results"].rglob("*.json"))
    assert any(book["checkpoints"].glob("*.pt"))


@pytest.mark.parametrize("name", runner.notebook_names())
def test_notebook_executed_without_errors(book, name):
    path = book["executed"][name]
    assert path == book["root"] / runner.EXECUTED / f"{name}.ipynb" and path.is_file()
    nb = json.loads(path.read_text())
    assert not nb["metadata"].get("papermill", {}).get("exception")
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "profile = \"smoke\"" in "".join(injected[0]["source"])
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell["metadata"].get("papermill", {}).get("status") == "completed", f"{name} cell {i} did not run"
        for output in cell["outputs"]:
            assert output["output_type"] != "error", f"{name} cell {i}: {output.get('ename')}: {output.get('evalue')}"
            if output["output_type"] == "stream" and output["name"] == "stderr":
                text = "".join(output["text"])
                assert "Traceback" not in text and "Error" not in text, f"{name} cell {i} stderr:\n{text}"


@pytest.mark.parametrize("name", runner.notebook_names())
def test_glued_keys_referenced_in_markdown_exist(book, name):
    nb = json.loads(book["executed"][name].read_text())
    glued = _glued(nb)
    roles, directives = _glue_references(nb)
    if name in ("00_patterns", "01_erosion", "02_breadth", "03_representations"):
        assert directives, f"{name} has no glued figure"
    missing = sorted(set(roles + directives) - set(glued))
    assert not missing, f"{name}: glue keys referenced in the markdown but never glued: {missing}"
    for other, key in _cross_references(nb):
        assert key in _glued(json.loads(book["executed"][other].read_text())), f"{name}: {other}::{key} never glued"
    for key in directives:  # SVG: shown at its natural size, fonts at their point size
        assert "image/svg+xml" in glued[key], f"{name}: figure {key!r} was glued without an SVG: {list(glued[key])}"
    for key in roles:
        assert "text/plain" in glued[key], f"{name}: {key!r} has no text/plain value"


def test_erosion_prose_matches_the_results(book):
    """The generated sentences quote the cached results: erosion is the control's final clean accuracy minus the
    pattern run's, for every rate of the smoke profile (one seed: no interval)."""
    from erosion_utils.report import analysis
    from erosion_utils.cache import ResultCache
    from erosion_utils.experiments import finetune_params
    from erosion_utils.profiles import resolve

    nb = json.loads(book["executed"]["01_erosion"].read_text())
    text = _markdown_text(nb, True)
    key = _literal(_glued(nb)["key_erosion"]["text/plain"])
    ero = resolve("erosion", "smoke")
    cache = ResultCache(book["results"])
    assert ero.extras["seeds"] == [0]
    for lr in ero.extras["finetune_lrs"]:
        cfg = replace(ero.config, seed=0, finetune_lr=lr)
        s = analysis.run_summary(cache.load("finetune", finetune_params(cfg, True)),
                                 cache.load("finetune", finetune_params(cfg, False)))
        quoted = f"{round(s['erosion'], 3) + 0.0:.3f} (one seed: no interval)"
        assert f"**At lr {lr:g}** (one seed)" in text and f"Erosion: {quoted}" in text, (lr, quoted)
        assert f"at lr {lr:g}, erosion {quoted}" in key
        assert f"{s['clean_pattern']:.3f}, the control at {s['clean_control']:.3f}" in text
    assert "95% CI" not in text and not re.search(r"\bnan\b|\bNone\b", text)


# ----------------------------------------------------------------------------------------------- result cache

def _entries(book, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((book["results"] / name).glob("*.json"))]


def _check_entry(entry: dict, path_key: str) -> None:
    assert entry["key"] == path_key
    prov = entry["provenance"]
    for field in PROVENANCE:
        assert field in prov and prov[field] not in (None, ""), f"provenance.{field} missing in {entry['key']}"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", prov["git_commit"])
    assert prov["device"].startswith("cpu")
    assert prov["wall_time_s"] >= 0
    assert prov["seed"] == entry["params"]["seed"]
    assert entry["params"]["train_per_class"] == 16, "not the smoke profile"


def test_cached_results_cover_every_run(book):
    """Every run the notebooks asked for is in the tmp cache, under the key the code computes."""
    from erosion_utils.cache import ResultCache
    from erosion_utils.experiments import breadth_variants, control_for, finetune_params
    from erosion_utils.profiles import resolve

    cache = ResultCache(book["results"])
    ero = resolve("erosion", "smoke")
    for lr in ero.extras["finetune_lrs"]:
        for seed in ero.extras["seeds"]:
            cfg = replace(ero.config, seed=seed, finetune_lr=lr)
            assert cache.load("pretrain", cfg.pretrain_params()) is not None
            for patterned in (True, False):
                assert cache.load("finetune", finetune_params(cfg, patterned)) is not None, (lr, seed, patterned)
    bre = resolve("breadth", "smoke")
    for _, cfg in breadth_variants(bre.config, bre.sweeps(), bre.extras["around_lrs"]):
        assert cache.load("finetune", finetune_params(cfg, True)) is not None, cfg
        assert cache.load("finetune", finetune_params(control_for(cfg, bre.config), False)) is not None, cfg
    rep = resolve("representations", "smoke")
    assert len(_entries(book, "representations")) == len(rep.extras["finetune_lrs"])


def test_finetune_entries_are_sane(book):
    entries = _entries(book, "finetune")
    assert entries and {e["params"]["patterned"] for e in entries} == {True, False}
    for entry in entries:
        _check_entry(entry, entry["key"])
        result = entry["result"]
        records = result["records"]
        assert len(records) >= 2
        steps = [r["step"] for r in records]
        assert steps[0] == 0 and steps[-1] == result["total_steps"]
        assert all(a < b for a, b in zip(steps, steps[1:])), f"steps not increasing: {steps}"
        for rec in records:
            for metric in ACCURACIES:
                assert 0.0 <= rec[metric] <= 1.0, (entry["key"], rec)


def test_pretrain_entries_are_sane(book):
    entries = _entries(book, "pretrain")
    assert entries
    for entry in entries:
        _check_entry(entry, entry["key"])
        result = entry["result"]
        assert 0 <= result["train_accuracy"] <= 1 and 0 <= result["test_accuracy"] <= 1
        assert isinstance(result["reached_target"], bool) and result["epochs"] >= 1


def test_representation_entries_have_one_row_per_tap_per_snapshot(book):
    entries = _entries(book, "representations")
    assert entries
    for entry in entries:
        _check_entry(entry, entry["key"])
        result = entry["result"]
        taps, snapshots = result["taps"], result["snapshots"]
        assert len(taps) >= 2 and len(set(taps)) == len(taps)
        models = [s["model"] for s in snapshots]
        assert models[0] == "pretrained" and snapshots[0]["step"] == 0
        assert models.count("pattern") >= 2 and models[-1] == "control"
        assert snapshots[-1]["step"] == result["total_steps"]
        pattern_steps = [s["step"] for s in snapshots if s["model"] == "pattern"]
        assert all(a < b for a, b in zip(pattern_steps, pattern_steps[1:]))
        for snap in snapshots:
            assert [row["layer"] for row in snap["layers"]] == taps, f"{snap['model']}@{snap['step']}"
            assert [row["depth"] for row in snap["layers"]] == list(range(len(taps)))
            for row in snap["layers"]:
                assert 0 <= row["probe_accuracy"] <= 1 and 0 <= row["pattern_probe_accuracy"] <= 1, row
                assert 1 <= row["rank"] <= row["dim"], row


# ---------------------------------------------------------------------------------------------------- the build

def test_build_has_index_and_one_page_per_chapter(book):
    assert book["index"] == book["html"] / "index.html" and book["index"].is_file()
    for doc in TOC_FILES:
        assert (book["html"] / f"{doc}.html").is_file(), f"no page for {doc}"


@pytest.fixture(scope="module")
def shots_dir():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def test_index_redirects_to_root(book, server, browser):
    page = browser.new_page()
    try:
        response = page.goto(f"{server}/index.html", wait_until="load")
        assert response is not None and response.ok
        page.wait_for_url(f"**/{TOC_FILES[0]}.html", timeout=10_000)
    finally:
        page.close()


@pytest.mark.parametrize("doc", TOC_FILES)
def test_page_in_browser(book, server, browser, shots_dir, doc):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # offline: anything not served by our server is aborted at once (it would only time out)
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                  else route.abort())
    page = context.new_page()
    js_errors, failed, bad_status = [], [], []
    page.on("pageerror", lambda exc: str(exc) not in KNOWN_JS_ERRORS and js_errors.append(str(exc)))
    page.on("requestfailed", lambda req: req.url.startswith(server) and failed.append(req.url))
    page.on("response", lambda res: res.url.startswith(server) and res.status >= 400
            and bad_status.append(f"{res.status} {res.url}"))
    try:
        response = page.goto(f"{server}/{doc}.html", wait_until="load")
        assert response is not None and response.status == 200, f"{doc}: HTTP {response and response.status}"
        page.wait_for_function("Array.from(document.images).every(img => img.complete)", timeout=15_000)

        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({src: e.getAttribute('src'), w: e.naturalWidth, fig: !!e.closest('figure')}))")
        broken = [img["src"] for img in images if img["w"] <= 0]
        assert not broken, f"{doc}: images that did not load: {broken}"
        if doc in NOTEBOOK_PAGES:
            nb = json.loads(book["executed"][NOTEBOOK_PAGES[doc]].read_text())
            roles, directives = _glue_references(nb)
            n_figures = sum(img["fig"] for img in images)
            assert n_figures >= len(directives), f"{doc}: {n_figures} figure images for {len(directives)} glued figures"
            pasted = len(roles) + len(_cross_references(nb))
            assert page.locator("span.pasted-text").count() == pasted, f"{doc}: glued text not pasted everywhere"
        if doc.endswith(("00_patterns", "01_erosion", "02_breadth", "03_representations")):
            assert sum(img["fig"] for img in images) >= 1, f"{doc}: a chapter with figures shows no figure image"
        # legible at the page width: every figure is an SVG shown at its natural size (fonts at their point size),
        # no wider than the text
        shown = page.eval_on_selector_all(
            "figure img", "els => els.map(e => ({src: e.getAttribute('src'), nat: e.naturalWidth, w: e.clientWidth}))")
        for img in shown:  # a figure pasted from another page is an SVG data URI (pages.html_figure)
            assert img["src"].endswith(".svg") or img["src"].startswith("data:image/svg+xml"), \
                f"{doc}: figure {img['src'][:60]} is not SVG"
            assert img["nat"] <= TEXT_WIDTH_PX + 2 and img["w"] >= img["nat"] - 2, f"{doc}: figure shrunk: {img}"
        # every table fits the text or scrolls inside its own box
        unboxed = page.eval_on_selector_all("article table", """els => els.filter(t => {
            const article = t.closest('article').getBoundingClientRect();
            if (t.getBoundingClientRect().width <= article.width + 1) return false;
            for (let e = t.parentElement; e && e.tagName !== 'ARTICLE'; e = e.parentElement) {
                const o = getComputedStyle(e).overflowX;
                if ((o === 'auto' || o === 'scroll') && e.getBoundingClientRect().width <= article.width + 1)
                    return false;
            }
            return true;
        }).length""")
        assert unboxed == 0, f"{doc}: {unboxed} tables overflow the page"
        if doc == TOC_FILES[0]:  # the Key results box: pasted from the chapters, never empty
            pasted = page.locator("div.admonition span.pasted-text").all_inner_texts()
            assert len(pasted) >= 3 and all(len(p) > 20 for p in pasted), pasted  # one per chapter
            assert "lr 0.01" in pasted[0] and "lr 0.1" in pasted[0] and "one seed: no interval" in pasted[0]

        for selector in BAD_SELECTORS:
            assert page.locator(selector).count() == 0, f"{doc}: found {selector}"
        text = page.inner_text("body")
        article = page.locator("article.bd-article")
        assert article.count() == 1, f"{doc}: no article"
        full = article.text_content()
        assert len(text.strip()) > 200
        for bad in BAD_TEXT:
            assert bad not in text and bad not in full, f"{doc}: page text contains {bad!r}"
        outputs = " ".join(page.locator(".cell_output").all_inner_texts())
        assert not re.search(r"\w*Error\b", outputs), f"{doc}: an output shows an error"

        page.screenshot(path=str(shots_dir / f"{Path(doc).name}.png"), full_page=True)
        # what issue 20 forbids: tables or figures wider than the text column, a chapter at the cpu scale without the
        # scale in its title, a machine path or a layer module name in visible text (this opens every fold)
        profile = executed_profile(book["executed"][NOTEBOOK_PAGES[doc]]) if doc in NOTEBOOK_PAGES else None
        problems = page_problems(page, profile)
        assert not problems, f"{doc}:\n" + "\n".join(problems)
        assert not failed, f"{doc}: local requests failed: {failed}"
        assert not bad_status, f"{doc}: {bad_status}"
        assert not js_errors, f"{doc}: JavaScript errors: {js_errors}"
    finally:
        context.close()
