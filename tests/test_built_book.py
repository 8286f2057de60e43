"""The book as ``make book`` built it (``_build/html``, every chapter at the scale its ``params/*.yaml`` selects),
read page by page in a headless Chromium at 1280 px: no table or figure wider than the text column, the scale in the
title and sidebar entry of every chapter shown at the cpu scale, no machine path and no layer module name in
visible text (:mod:`book_checks`). Builds nothing: without a built book, or with one older than its sources (an
executed notebook, a prose chapter, the configuration), it is skipped; run ``make book`` first.
"""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import yaml

from book_checks import VIEWPORT, chromium, executed_profile, page_problems

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"
TOC = yaml.safe_load((REPO / "_toc.yml").read_text())
DOCS = [TOC["root"]] + [entry["file"] for entry in TOC["chapters"]]


def stale_reason() -> str | None:
    """Why ``_build/html`` is not the book of the current sources, or None when it is."""
    root = HTML / f"{TOC['root']}.html"
    if not root.is_file():
        return "no built book in _build/html"
    sources = [REPO / "_toc.yml", REPO / "_config.yml", *(REPO / "book").glob("*.md")]
    for doc in DOCS:
        if "/executed/" in doc:
            executed = REPO / f"{doc}.ipynb"
            if not executed.is_file():
                return f"{executed.relative_to(REPO)} was never executed"
            sources.append(executed)
    newer = [str(s.relative_to(REPO)) for s in sources if s.stat().st_mtime > root.stat().st_mtime]
    return f"the built book is older than {', '.join(newer[:3])}" if newer else None


@pytest.fixture(scope="module")
def site():
    reason = stale_reason()
    if reason:
        pytest.skip(f"{reason}: run `make book` first")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(HTML)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def test_every_page_of_the_toc_was_built(site):
    missing = [doc for doc in DOCS if not (HTML / f"{doc}.html").is_file()]
    assert not missing, f"pages of _toc.yml missing from the built book: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_built_page_a_reader_trusts(site, browser, doc):
    if not (HTML / f"{doc}.html").is_file():
        pytest.skip(f"{doc} was not built")
    context = browser.new_context(viewport=VIEWPORT)
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(site) else route.abort())
    page = context.new_page()
    try:
        assert page.goto(f"{site}/{doc}.html", wait_until="load").ok
        page.wait_for_function("Array.from(document.images).every(img => img.complete)", timeout=15_000)
        profile = executed_profile(REPO / f"{doc}.ipynb") if "/executed/" in doc else None
        problems = page_problems(page, profile)
        assert not problems, f"{doc}:\n" + "\n".join(problems)
    finally:
        context.close()
