"""What a reader must never meet on a page of the built book (issue 20), checked in a real browser (Playwright with
Debian's Chromium) at a 1280 px viewport:

- a table or a figure wider than the text column (tables are measured with every fold opened, since a reader
  opens them);
- a chapter shown at the cpu scale whose title or sidebar entry does not say "(cpu scale)";
- visible text (folds closed) that holds a machine path (``/work/...``, ``npz:/...``) or a layer's module name
  (``net.layer4.1``).

Used by ``test_book.py`` on the smoke-scale book it builds, and by ``test_built_book.py`` on the book ``make book``
built.
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

VIEWPORT = {"width": 1280, "height": 900}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# an absolute path on some machine (not a placeholder such as /path/to/data), or a data source that names one
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|tmp|root|mnt|opt|var|usr|srv|scratch|Users|private)/[^\s'\"]*"
                          r"|\bnpz:/|\b[A-Z]:\\\\")
# a probed layer by its module name (net.layer4.1, net.avgpool, net.features.2, net.hidden.0)
MODULE_LAYER = re.compile(r"\bnet\.(?:layer\d|relu|avgpool|features|flatten|hidden|conv|bn|fc|classifier)[\w.]*")
SCALE_TITLE = "(cpu scale)"
TOLERANCE_PX = 1.5

_MEASURE = """() => {
    const article = document.querySelector('article.bd-article');
    const column = (article.querySelector('section') || article).getBoundingClientRect().width;
    const label = e => (e.closest('section') && e.closest('section').id) || '';
    const out = {column, tables: [], figures: []};
    for (const t of article.querySelectorAll('table')) {
        const w = t.getBoundingClientRect().width;
        if (w > 0) out.tables.push({w, where: label(t), head: (t.innerText || '').slice(0, 60)});
    }
    for (const img of article.querySelectorAll('img')) {
        const w = img.getBoundingClientRect().width;
        out.figures.push({w, nat: img.naturalWidth, where: label(img), src: (img.getAttribute('src') || '').slice(0, 60)});
    }
    return out;
}"""


def executed_profile(notebook: Path) -> str | None:
    """The profile an executed notebook ran with (its papermill parameters), or None."""
    if not notebook.is_file():
        return None
    nb = json.loads(notebook.read_text())
    params = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    return params.get("profile")


def page_problems(page, profile: str | None) -> list[str]:
    """Everything on the loaded ``page`` that issue 20 forbids; ``profile``: the scale its notebook ran at (None for
    a prose page)."""
    problems = []
    text = page.locator("article.bd-article").inner_text()  # what a reader sees: closed folds are not in it
    for rx, what in ((MACHINE_PATH, "a machine path"), (MODULE_LAYER, "a layer's module name")):
        for m in rx.finditer(text):
            problems.append(f"visible text holds {what}: ...{text[max(0, m.start() - 50):m.end() + 10]!r}")
    if profile == "cpu":
        title = page.locator("article.bd-article h1").first.inner_text()
        if SCALE_TITLE not in title:
            problems.append(f"a chapter at the cpu scale whose title does not say {SCALE_TITLE}: {title!r}")
        current = page.locator("nav.bd-links a.current")
        entry = current.first.inner_text() if current.count() else ""
        if SCALE_TITLE not in entry:
            problems.append(f"a chapter at the cpu scale whose sidebar entry does not say {SCALE_TITLE}: {entry!r}")
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.wait_for_timeout(50)
    sizes = page.evaluate(_MEASURE)
    column = sizes["column"]
    for t in sizes["tables"]:
        if t["w"] > column + TOLERANCE_PX:
            problems.append(f"a table {t['w']:.0f} px wide in a {column:.0f} px column (section {t['where']!r}): "
                            f"{t['head']!r}")
    for f in sizes["figures"]:
        if f["w"] > column + TOLERANCE_PX or f["nat"] > column + TOLERANCE_PX:
            problems.append(f"a figure {f['nat']} px wide (shown at {f['w']:.0f} px) in a {column:.0f} px column "
                            f"(section {f['where']!r}): {f['src']!r}")
    return problems


@contextmanager
def chromium():
    """Debian's Chromium driven by Playwright, headless and offline-friendly; closed on exit."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM} (make browser installs it)"
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
    finally:
        pw.stop()
