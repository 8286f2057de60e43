"""Mutation testing of the code that decides the science (issue 25 item 6): the analysis plan, the verdict rules, the
evaluator and the cache-key code. Run by ``make mutation`` (not by ``make test``).

    .venv/bin/python tools/mutate.py [--jobs N] [--only NAME ...] [--list] [--json PATH] [--timeout S]

Each mutant is one small change the way a person might slip: a comparison made inclusive or strict (``<`` and
``<=``, ``>`` and ``>=``) or negated (``==``/``!=``, ``in``/``not in``, ``is``/``is not``), an arithmetic or boolean
operator swapped, a ``not`` or a minus sign dropped, a number moved (an integer by one, a float by 10%: every
threshold and constant of the plan), a string changed (an outcome, a key), ``min``/``max``, ``any``/``all`` or
``True``/``False`` swapped. Only the code named in :data:`TARGETS` is mutated: the plan module as a whole (its
constants and thresholds, as a change to the file would be), every function of the verdict modules (but the page
wording kept beside them: ``discussion``, ``instability_arms_text``), and the named functions and constants of
``experiments/core.py`` and ``cache.py``.

The package and its heavy imports are loaded once; each mutant runs in a forked child that swaps the mutated code in
(a function's code object in place, so that every reference to it sees the change; the plan module re-executed with
the modules that read it), then runs the target's tests with pytest (``-x``, without the slow tests; the test modules
are imported after the change). A mutant is *killed* when a test fails or the tests time out, *survives* when they
pass. The score is killed / all mutants; the report lists every survivor with its file, line and change.
A mutated module that fails when executed counts as killed (the package would not import); a mutant this runner
cannot apply, or under which pytest cannot start (exit codes 3-5), is an error and counts as not killed.
"""
from __future__ import annotations

import argparse
import ast
import copy
import importlib
import io
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REPORT_TESTS = ["tests/test_verdicts.py", "tests/test_rules.py"]
# the published pages recomputed from the committed results (slower: run after the unit tests, which kill most mutants)
PUBLISHED_TESTS = ["tests/test_published_pages.py", "tests/test_published.py"]


@dataclass
class Target:
    """What to mutate in one module and which tests judge it."""

    name: str
    path: str
    module: str
    tests: list[str]
    functions: tuple[str, ...] | None = None  # qualified names; None: every function (and, whole_module, the rest)
    constants: tuple[str, ...] = ()  # module-level names whose value is mutated
    whole_module: bool = False  # mutate module-level statements too, re-executing the module
    reexec: tuple[str, ...] = ()  # modules re-executed after a whole-module mutation (they read this one)
    exclude: tuple[str, ...] = ()  # functions left alone: page wording kept beside the rules, not a rule


TARGETS = [
    Target("plan", "erosion_utils/report/plan.py", "erosion_utils.report.plan", REPORT_TESTS, whole_module=True,
           reexec=("erosion_utils.report.planlog", "erosion_utils.report.verdicts",
                   "erosion_utils.report.mechanism_verdicts", "erosion_utils.report.mitigation_verdicts")),
    Target("verdicts", "erosion_utils/report/verdicts.py", "erosion_utils.report.verdicts",
           REPORT_TESTS + PUBLISHED_TESTS),
    Target("mechanism_verdicts", "erosion_utils/report/mechanism_verdicts.py",
           "erosion_utils.report.mechanism_verdicts", ["tests/test_rules.py"] + PUBLISHED_TESTS,
           exclude=("discussion", "instability_arms_text")),
    Target("mitigation_verdicts", "erosion_utils/report/mitigation_verdicts.py",
           "erosion_utils.report.mitigation_verdicts", ["tests/test_rules.py"] + PUBLISHED_TESTS,
           exclude=("discussion",)),
    Target("evaluator", "erosion_utils/experiments/core.py", "erosion_utils.experiments.core",
           ["tests/test_known_answers.py", "tests/test_training_options.py",
            "tests/test_fast_path.py::test_bf16_evaluation_computes_in_bf16_and_float32_does_not",
            "tests/test_fast_path.py::test_bf16_evaluation_stays_within_the_tolerance_of_the_reference",
            "tests/test_fast_path.py::test_a_bf16_run_trains_as_the_float32_fast_run_and_predicts_in_bf16"],
           functions=("make_evaluator", "make_monitor", "weight_stats", "pretrain_set")),
    Target("cache keys", "erosion_utils/experiments/core.py", "erosion_utils.experiments.core",
           ["tests/test_cache_keys.py", "tests/test_fast_path.py::test_fast_path_enters_the_key_only_when_on",
            "tests/test_finetune_options.py::test_later_fields_enter_the_key_only_when_they_differ_from_their_default"],
           functions=("ErosionConfig.key_dict", "ErosionConfig.pretrain_params", "split_config", "current_key_params",
                      "finetune_params", "key_with_extras"),
           constants=("LATER_FIELDS", "LATER_PRETRAIN_FIELDS", "PRETRAIN_FIELDS")),
    Target("cache_key", "erosion_utils/cache.py", "erosion_utils.cache", ["tests/test_cache_keys.py"],
           functions=("canonical_json", "cache_key")),
]

SWAP_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
SWAP_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult,
              ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv}
SWAP_NAMES = {"max": "min", "min": "max", "any": "all", "all": "any"}


# ---------------------------------------------------------------------------------------------- finding mutants

@dataclass
class Mutant:
    target: str
    index: int  # position of the node in ast.walk order
    kind: str
    line: int
    before: str
    after: str
    scope: str  # the function's qualified name, or "<module>"
    default: tuple | None = None  # (function qualname, "args"/"kwonly", position) for a default value

    def where(self) -> str:
        return f"{self.line}: {self.before}  ->  {self.after}"


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _scope(node: ast.AST, parents: dict) -> tuple[str, tuple | None]:
    """The qualified name of the outermost function (or method) around ``node``, "<module>" outside any, and where
    the node sits when it is (part of) a default argument value."""
    chain, default = [], None
    child, cur = node, parents.get(node)
    while cur is not None:
        if isinstance(cur, ast.arguments) and isinstance(parents[cur], (ast.FunctionDef, ast.AsyncFunctionDef)):
            fn = parents[cur]
            for kind, values in (("args", cur.defaults), ("kwonly", cur.kw_defaults)):
                for i, v in enumerate(values):
                    if v is child:
                        default = (kind, i)
            parent = parents.get(fn)
            names = [fn.name]
            while parent is not None:
                if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.append(parent.name)
                parent = parents.get(parent)
            return ".".join(reversed(names)), default
        if isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            chain.append(cur)
        child, cur = cur, parents.get(cur)
    functions = [n for n in chain if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not functions:
        return "<module>", None
    outer = functions[-1]
    names = [n.name for n in chain[chain.index(outer):]]
    return ".".join(reversed(names)), None


def _is_docstring(node: ast.AST, parents: dict) -> bool:
    expr = parents.get(node)
    return isinstance(expr, ast.Expr) and isinstance(parents.get(expr), (ast.Module, ast.FunctionDef, ast.ClassDef,
                                                                          ast.AsyncFunctionDef))


def _in(node: ast.AST, parents: dict, kinds) -> bool:
    cur = parents.get(node)
    while cur is not None:
        if isinstance(cur, kinds):
            return True
        cur = parents.get(cur)
    return False


def _top_statement(node: ast.AST, parents: dict) -> ast.stmt | None:
    cur = node
    while parents.get(cur) is not None and not isinstance(parents[cur], ast.Module):
        cur = parents[cur]
    return cur if isinstance(parents.get(cur), ast.Module) else None


def _mutation(node: ast.AST, parents: dict, target: Target, scope: str) -> tuple[str, str] | None:
    """(kind, mutated source of the node) for a node that is mutated, else None."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAP_COMPARE:
        new = copy.deepcopy(node)
        new.ops = [SWAP_COMPARE[type(node.ops[0])]()]
        return "compare", ast.unparse(new)
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP_BINOP:
        new = copy.deepcopy(node)
        new.op = SWAP_BINOP[type(node.op)]()
        return "operator", ast.unparse(new)
    if isinstance(node, ast.BoolOp):
        new = copy.deepcopy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return "boolean", ast.unparse(new)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        return "drop " + ("not" if isinstance(node.op, ast.Not) else "minus"), ast.unparse(node.operand)
    if isinstance(node, ast.Name) and node.id in SWAP_NAMES and isinstance(parents.get(node), ast.Call) \
            and parents[node].func is node:
        return "name", SWAP_NAMES[node.id]
    if isinstance(node, ast.Constant):
        if _in(node, parents, ast.JoinedStr) or _is_docstring(node, parents):
            return None
        v = node.value
        if isinstance(v, bool):
            return "constant", repr(not v)
        if isinstance(v, int):
            return "number", repr(v + 1)
        if isinstance(v, float):
            return "number", repr(v * 1.1 if v else 1.0)
        if isinstance(v, str):
            if scope == "<module>":  # module level: names in tuples (outcomes, fields), not prose
                if not isinstance(parents.get(node), ast.Tuple):
                    return None
            elif _in(node, parents, (ast.Raise,)) or isinstance(parents.get(node), ast.keyword):
                return None
            return "string", repr("XX" + v + "XX")
    return None


def find_mutants(target: Target) -> list[Mutant]:
    tree = ast.parse((REPO / target.path).read_text())
    parents = _parents(tree)
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if not hasattr(node, "lineno"):
            continue
        scope, default = _scope(node, parents)
        if scope == "<module>":
            top = _top_statement(node, parents)
            names = {t.id for t in getattr(top, "targets", []) if isinstance(t, ast.Name)} | (
                {top.target.id} if isinstance(top, ast.AnnAssign) and isinstance(top.target, ast.Name) else set())
            if not (target.whole_module or names & set(target.constants)):
                continue
            if isinstance(top, (ast.Import, ast.ImportFrom)):
                continue
        elif (target.functions is not None and scope not in target.functions) or \
                scope.split(".")[0] in target.exclude:
            continue
        if scope != "<module>" and _in(node, parents, (ast.Raise,)):
            continue
        got = _mutation(node, parents, target, scope)
        if got:
            kind, after = got
            out.append(Mutant(target.name, i, kind, node.lineno, ast.unparse(node), after, scope,
                              (scope, *default) if default else None))
    return out


# ---------------------------------------------------------------------------------------------- applying one

class _Replace(ast.NodeTransformer):
    def __init__(self, index: int, replacement: ast.AST):
        self.index, self.replacement, self.nodes = index, replacement, None

    def run(self, tree: ast.AST) -> ast.AST:
        self.nodes = list(ast.walk(tree))
        self.victim = self.nodes[self.index]
        return ast.fix_missing_locations(self.visit(tree))

    def generic_visit(self, node):
        if node is self.victim:
            return ast.copy_location(self.replacement, node)
        return super().generic_visit(node)


def mutated_source(target: Target, mutant: Mutant) -> tuple[ast.Module, str]:
    tree = ast.parse((REPO / target.path).read_text())
    node = list(ast.walk(tree))[mutant.index]
    assert ast.unparse(node) == mutant.before, (mutant.before, ast.unparse(node))
    if isinstance(node, ast.AugAssign):
        new = copy.deepcopy(node)
        new.op = SWAP_BINOP[type(node.op)]()
    else:
        new = ast.parse(mutant.after, mode="eval").body
    tree = _Replace(mutant.index, new).run(tree)
    return tree, ast.unparse(tree)


def _find_code(code, qualname: str):
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            if const.co_qualname == qualname:
                return const
            found = _find_code(const, qualname)
            if found is not None:
                return found
    return None


def _resolve(module, qualname: str):
    """The function object of ``qualname`` in ``module`` (a property's getter for a property)."""
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj.fget if isinstance(obj, property) else obj


def _rebind(old_values: dict, module_name: str) -> None:
    """Point every other package module's name that held an old object of ``module_name`` at its new value."""
    module = sys.modules[module_name]
    for name, old in old_values.items():
        new = module.__dict__.get(name)
        if new is old:
            continue
        for other in list(sys.modules.values()):
            if getattr(other, "__name__", "").startswith("erosion_utils") and other is not module:
                for key, value in list(vars(other).items()):
                    if value is old:
                        setattr(other, key, new)


class MutantImportError(Exception):
    """The mutated module fails when it is executed: the package would not import (the mutant is killed)."""


def _exec(code_or_source, filename: str, namespace: dict) -> None:
    try:
        exec(compile(code_or_source, filename, "exec"), namespace)  # noqa: S102 -- the repository's own code
    except Exception as err:  # noqa: BLE001
        raise MutantImportError(f"{type(err).__name__}: {err}") from err


def apply(target: Target, mutant: Mutant) -> None:
    """Swap the mutant into the running package (in a child process)."""
    tree, source = mutated_source(target, mutant)
    module = importlib.import_module(target.module)
    filename = str(REPO / target.path)
    if mutant.scope == "<module>" and target.whole_module:
        old = dict(vars(module))
        _exec(source, filename, module.__dict__)
        _rebind(old, target.module)
        for name in target.reexec:
            dep = sys.modules[name]
            before = dict(vars(dep))
            _exec(Path(dep.__file__).read_text(), dep.__file__, dep.__dict__)
            _rebind(before, name)
        return
    if mutant.scope == "<module>":  # one module-level constant of a target that is not mutated as a whole
        stmt = next(s for s in tree.body if s.lineno <= mutant.line <= s.end_lineno)
        scratch = dict(vars(module))
        _exec(ast.Module([stmt], []), filename, scratch)
        old = dict(vars(module))
        for name in {t.id for t in getattr(stmt, "targets", [getattr(stmt, "target", None)]) if t is not None}:
            current, new = module.__dict__[name], scratch[name]
            if isinstance(current, dict) and isinstance(new, dict):
                current.clear()
                current.update(new)
            else:
                module.__dict__[name] = new
        _rebind(old, target.module)
        return
    code = compile(source, filename, "exec")
    func = _resolve(module, mutant.scope)
    if mutant.default is not None:
        _, kind, pos = mutant.default
        fn_node = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and n.name == mutant.scope.split(".")[-1] and n.lineno <= mutant.line <= n.end_lineno)
        values = fn_node.args.defaults if kind == "args" else fn_node.args.kw_defaults
        value = eval(compile(ast.Expression(values[pos]), filename, "eval"), vars(module))  # noqa: S307
        if kind == "args":
            defaults = list(func.__defaults__)
            defaults[pos] = value
            func.__defaults__ = tuple(defaults)
        else:
            name = fn_node.args.kwonlyargs[pos].arg
            func.__kwdefaults__ = {**(func.__kwdefaults__ or {}), name: value}
        return
    new_code = _find_code(code, mutant.scope)
    if new_code is None:
        raise RuntimeError(f"no code object {mutant.scope} in the mutated {target.path}")
    func.__code__ = new_code


# ---------------------------------------------------------------------------------------------- running

def _child(target: Target, mutant: Mutant | None, timeout: int) -> None:
    """In a forked child: apply the mutant, run the tests, exit with pytest's code (124 on a time-out)."""
    signal.signal(signal.SIGALRM, lambda *a: os._exit(124))
    signal.alarm(timeout)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        import torch

        torch.set_num_threads(1)
        if mutant is not None:
            apply(target, mutant)
        import pytest

        code = pytest.main([*target.tests, "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider", "-o", "addopts=",
                            "--rootdir", str(REPO)])
    except MutantImportError:  # the package would not even import: killed
        os._exit(98)
    except BaseException:  # noqa: BLE001 -- this runner could not apply the mutant: an error, not a kill
        os._exit(99)
    os._exit(int(code))


def run(jobs: int, selected: list[Target], timeout: int) -> list[dict]:
    queue = [(t, m) for t in selected for m in find_mutants(t)]
    results: list[dict] = []
    running: dict[int, tuple[Target, Mutant, float]] = {}
    start, done = time.time(), 0
    while queue or running:
        while queue and len(running) < jobs:
            target, mutant = queue.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(target, mutant, timeout)
            running[pid] = (target, mutant, time.time())
        pid, status = os.wait()
        target, mutant, began = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        outcome = ("survived" if code == 0 else "killed" if code in (1, 2, 98) else "timeout" if code == 124
                   else "error")
        results.append({"target": target.name, "file": target.path, "line": mutant.line, "kind": mutant.kind,
                        "scope": mutant.scope, "before": mutant.before, "after": mutant.after, "outcome": outcome,
                        "exit": code, "seconds": round(time.time() - began, 1)})
        done += 1
        if done % 25 == 0 or not (queue or running):
            killed = sum(r["outcome"] in ("killed", "timeout") for r in results)
            print(f"  {done} mutants, {killed} killed, {time.time() - start:.0f} s", flush=True)
    return results


def baseline(selected: list[Target], timeout: int) -> None:
    for target in selected:
        pid = os.fork()
        if pid == 0:
            _child(target, None, timeout)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit(f"the tests of {target.name} ({' '.join(target.tests)}) fail without any mutant (exit {code}); "
                     f"fix them first")


def report(results: list[dict]) -> str:
    out = io.StringIO()
    names = list(dict.fromkeys(r["target"] for r in results))
    total_killed = sum(r["outcome"] in ("killed", "timeout") for r in results)
    out.write(f"Mutation score: {total_killed}/{len(results)} = {total_killed / max(1, len(results)):.1%}\n")
    for name in names:
        rs = [r for r in results if r["target"] == name]
        k = sum(r["outcome"] in ("killed", "timeout") for r in rs)
        out.write(f"  {name:20s} {k:4d}/{len(rs):4d} killed ({k / max(1, len(rs)):.0%})\n")
    survivors = [r for r in results if r["outcome"] not in ("killed", "timeout")]
    if survivors:
        out.write(f"\n{len(survivors)} not killed:\n")
        for r in survivors:
            out.write(f"  [{r['outcome']}] {r['file']}:{r['line']} ({r['scope']}, {r['kind']}): {r['before']}  ->  "
                      f"{r['after']}\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--only", nargs="*", help=f"targets to mutate (default all: {[t.name for t in TARGETS]})")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--json", type=Path, default=REPO / "test-artifacts" / "mutation.json",
                        help="where to write every mutant's outcome")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per mutant before it counts as killed")
    args = parser.parse_args(argv)
    selected = [t for t in TARGETS if not args.only or t.name in args.only]
    if args.list:
        for t in selected:
            ms = find_mutants(t)
            print(f"{t.name}: {len(ms)} mutants")
            for m in ms:
                print(f"  {t.path}:{m.where()}  [{m.scope}, {m.kind}]")
        return 0
    os.environ.setdefault("EROSION_PROGRESS", "0")
    import numpy  # noqa: F401  (heavy imports once, before forking)
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401

    import erosion_utils.experiments  # noqa: F401
    import erosion_utils.report.mechanism_verdicts  # noqa: F401
    import erosion_utils.report.mitigation_verdicts  # noqa: F401

    baseline(selected, args.timeout)
    print(f"mutating {', '.join(t.name for t in selected)} ({args.jobs} at a time)", flush=True)
    results = run(args.jobs, selected, args.timeout)
    text = report(results)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"every mutant's outcome: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
