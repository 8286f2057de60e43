"""What the notebooks call to show results: tables, figures, sentences and verdicts from cached results. Nothing here
trains: a chapter's results are loaded by its module in :mod:`erosion_utils.experiments` (with computing off when
the page must not train) and handed here.

- :mod:`.words`: how numbers, lists and intervals are worded; :mod:`.pages`: tables, folds, figures, provenance and
  the missing-results table; :mod:`.plots`: the book's figure style and the figures of chapters 1-3;
- :mod:`.analysis`: tables and summaries of chapters 1-4; :mod:`.claims`: the paper's claims and their rules;
  :mod:`.prose`: the generated sentences of chapters 1-4;
- :mod:`.mechanism`, :mod:`.mechanism_figures`, :mod:`.mitigation`, :mod:`.mitigation_figures`: chapters 5 and 6.
"""
