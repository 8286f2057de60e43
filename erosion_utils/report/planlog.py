"""When each rule of the analysis plan took its current form, from the git history of the plan file, and the label
that follows for a verdict: *confirmatory* when every result it uses was computed after that moment, otherwise
*exploratory*.

A rule's *form* is its fingerprint: its statement, statistic, interval method, thresholds and outcomes, with the
plan's shared constants (interval level, minimum seeds, precision). Walking the plan file's commits from the newest,
a rule took its current form at the oldest commit of the unbroken run of commits that carry that fingerprint. A rule
changed in the working tree and not committed has no date: its verdicts are exploratory. Where the repository's
history is not available (a shallow clone), the committed ledger ``plan_ledger.json`` beside this file is used; a
test checks it against ``git log``.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Iterable

from . import plan

PLAN_FILE = Path(plan.__file__).resolve()
REPO = PLAN_FILE.parents[2]
LEDGER = PLAN_FILE.with_name("plan_ledger.json")


def fingerprint(rule: plan.Rule, constants: dict) -> str:
    """A short hash of a rule's form (what a change of would change its verdicts)."""
    payload = {"text": rule.text, "statistic": rule.statistic, "interval": rule.interval,
               "thresholds": {k: float(v) for k, v in sorted(rule.thresholds.items())},
               "outcomes": list(rule.outcomes), "constants": constants}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _constants(namespace) -> dict:
    get = namespace.get if isinstance(namespace, dict) else lambda k, d=None: getattr(namespace, k, d)
    return {k: get(k) for k in ("LEVEL", "MIN_SEEDS", "PRECISION")}


def fingerprints_of(source: str) -> dict[str, str]:
    """rule id -> fingerprint for the plan file's ``source`` (a past version; it imports only the standard
    library)."""
    module = types.ModuleType("erosion_plan_version")  # dataclasses look their module up in sys.modules
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, str(PLAN_FILE), "exec"), module.__dict__)  # noqa: S102 -- the repository's own plan
    finally:
        del sys.modules[module.__name__]
    constants = _constants(module.__dict__)
    return {r.id: fingerprint(r, constants) for r in module.__dict__["RULES"]}


def current_fingerprints() -> dict[str, str]:
    """rule id -> fingerprint of the plan as imported now."""
    constants = _constants(plan)
    return {r.id: fingerprint(r, constants) for r in plan.RULES}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30).stdout


def git_history_available() -> bool:
    """Whether the plan file's full history can be read here (a git repository that is not a shallow clone)."""
    try:
        return _git("rev-parse", "--is-shallow-repository").strip() == "false"
    except (OSError, subprocess.SubprocessError):
        return False


def history_from_git() -> dict[str, dict]:
    """rule id -> {"fingerprint", "commit", "since"} (ISO time) of the rule's current form, from ``git log``, for
    the rules whose committed form equals the imported one (others: commit and since None)."""
    rel = PLAN_FILE.relative_to(REPO).as_posix()
    log = [line.split(" ", 1) for line in _git("log", "--format=%H %cI", "--", rel).splitlines() if line.strip()]
    current = current_fingerprints()
    out = {rid: {"fingerprint": fp, "commit": None, "since": None} for rid, fp in current.items()}
    open_rules = set(current)
    for commit, when in log:  # newest first
        try:
            past = fingerprints_of(_git("show", f"{commit}:{rel}"))
        except Exception:  # noqa: BLE001 -- a version that cannot be read ends every run here
            break
        for rid in list(open_rules):
            if past.get(rid) == current[rid]:
                out[rid].update(commit=commit, since=when)
            else:
                open_rules.discard(rid)
        if not open_rules:
            break
    return out


def ledger() -> dict[str, dict]:
    """The committed ledger (rule id -> fingerprint, commit, since), or {} without one."""
    return json.loads(LEDGER.read_text()) if LEDGER.is_file() else {}


@functools.lru_cache(maxsize=1)
def history() -> dict[str, dict]:
    """Each rule's current form and since when it holds: from git where the history is here, else from the
    ledger (its entry counts only where its fingerprint is the imported rule's)."""
    if git_history_available():
        return history_from_git()
    current = current_fingerprints()
    known = ledger()
    return {rid: (known[rid] if known.get(rid, {}).get("fingerprint") == fp
                  else {"fingerprint": fp, "commit": None, "since": None}) for rid, fp in current.items()}


def since(rule_id: str) -> dt.datetime | None:
    """When rule ``rule_id`` took its current form (None: not committed in that form)."""
    when = history().get(rule_id, {}).get("since")
    return dt.datetime.fromisoformat(when) if when else None


def label_for(rule_id: str, entries: Iterable[dict]) -> tuple[str, str]:
    """("confirmatory" or "exploratory", why) for a verdict of ``rule_id`` that uses the cache ``entries``."""
    entries = [e for e in entries if e]
    when = since(rule_id)
    if when is None:
        return "exploratory", "its rule has changes that are not committed"
    if not entries:
        return "exploratory", "it uses no results"
    times = []
    for e in entries:
        try:
            times.append(dt.datetime.fromisoformat(str(e.get("provenance", {}).get("utc_time"))))
        except ValueError:
            return "exploratory", "one of its results has no computation time in its provenance"
    early = sum(t <= when for t in times)
    stamp = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if early:
        return "exploratory", (f"{early} of its {len(times)} results were computed before its rule took its "
                               f"current form ({stamp})")
    return "confirmatory", f"all {len(times)} of its results were computed after its rule took its current form ({stamp})"


def write_ledger() -> dict[str, dict]:
    """Write ``plan_ledger.json`` from git (run after committing the plan; commit the ledger with the next commit)."""
    table = history_from_git()
    LEDGER.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return table
