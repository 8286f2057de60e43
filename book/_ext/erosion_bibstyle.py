"""Author-year citations for the book, the same in the text and in the bibliography: "Masarczyk et al., 2023a".

A Sphinx extension (``_config.yml``: ``sphinx.local_extensions``) that registers, with pybtex's plugin registry, a
label style whose labels are author-year with a letter for two works of the same authors and year (a, b, ... in the
order of their titles), a sorting style by that label, and a formatting style (pybtex's ``plain`` with both) named
``erosion_author_year``. ``bibtex_default_style`` selects it for the bibliography, and ``bibtex_reference_style:
label`` cites by the same label in the text, so "[Masarczyk et al., 2023a]" means one entry everywhere.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle

NAME = "erosion_author_year"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _plain(text: str) -> str:
    """A BibTeX name part without braces or LaTeX accents' commands (the book's .bib uses Unicode)."""
    return re.sub(r"[{}\\]", "", text)


def _authors(entry) -> str:
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
    if not last:
        return _plain(entry.fields.get("title", "Anonymous")).split(":")[0]
    if len(last) == 1:
        return last[0]
    if len(last) == 2:
        return f"{last[0]} and {last[1]}"
    return f"{last[0]} et al."


def base_label(entry) -> str:
    """``"Masarczyk et al., 2023"``: the first author (both of two), and the year."""
    return f"{_authors(entry)}, {entry.fields.get('year', 'n.d.')}"


def _key(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).lower()


class AuthorYearLabels(BaseLabelStyle):
    """Author-year labels; equal ones get a, b, ... in the (sorted) order of their entries."""

    def format_labels(self, sorted_entries):
        bases = [base_label(e) for e in sorted_entries]
        count, seen = Counter(bases), Counter()
        for base in bases:
            if count[base] == 1:
                yield base
            else:
                yield base + LETTERS[seen[base] % len(LETTERS)]
                seen[base] += 1


class AuthorYearSorting(BaseSortingStyle):
    """By author-year label, then title: the bibliography in the order of its labels."""

    def sorting_key(self, entry):
        return (_key(base_label(entry)), _key(_plain(entry.fields.get("title", ""))))


class AuthorYearStyle(PlainStyle):
    default_label_style = NAME
    default_sorting_style = NAME


def setup(app):
    register_plugin("pybtex.style.labels", NAME, AuthorYearLabels, force=True)
    register_plugin("pybtex.style.sorting", NAME, AuthorYearSorting, force=True)
    register_plugin("pybtex.style.formatting", NAME, AuthorYearStyle, force=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
