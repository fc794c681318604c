"""The shape of the house, checked from the source (AST only, nothing imported): arrows point one way.

Every module of ``src/stc`` sits in one layer of ``LAYERS``; a module may import its own layer and the layers below
(an import inside a function counts too), never one above. Also checked: no import circle, no import of another
module's private (underscore) name or of another package's private module, forward hooks only in the extraction
module, the estimator's private backbone loader and pipeline read only by the estimator (and no test or benchmark
subclassing the estimator to override a private method: ``STCClassifier.fit_store`` is the seam), and no file over
``MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stc"
MAX_LINES = 400

#: Lowest first. Patterns are module names relative to ``stc`` ("" is the package ``stc`` itself).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("utilities", ("_version", "_files", "_archive", "_memory", "_metrics", "_quiet", "_solver", "_solver_multilabel",
                   "_stratify", "_multilabel", "calibration")),
    # the one arithmetic of a fitted head: features -> decisions, probabilities, contributions (heads: its kinds)
    ("head", ("head", "heads", "_ridge")),  # _ridge: the multi-label head's fit
    ("data", ("data", "data.*")),
    ("backbone", ("backbone",)),
    ("extract", ("extract", "_validation")),  # _validation checks names against extract's vocabulary
    ("store", ("store",)),
    ("distributed", ("distributed",)),  # the Ray engine: runs store shards on actors
    ("probe", ("probe",)),
    ("sparsify", ("sparsify",)),
    ("aggregate", ("aggregate",)),
    ("folds", ("folds",)),  # which rows are held out: folds, repeated folds, one split, the estimate's blocks
    ("selection", ("selection",)),
    ("search", ("search",)),  # the two-stage search and its replayed estimate
    ("protocol", ("protocol",)),  # one validation split or k folds: probes, search, final rows and probes
    # what the estimator is made of: shared estimator helpers, atomic directory I/O, the readout's field checks
    ("estimator parts", ("_estimator", "_parameters", "_persist", "_readout_fields")),
    ("readout", ("readout",)),  # the fitted state: one immutable value, saved and loaded by itself
    # what reads a readout: per-prediction explanations, the model card, the estimator's fitted attributes
    ("readout readers", ("explain", "model_card", "_fitted", "bundle")),
    ("classifier", ("classifier",)),
    ("package", ("",)),  # stc/__init__.py: the public face (STCClassifier, load)
    ("faces", ("cli", "_summary", "predictor", "runtimes", "export", "export.*", "serving", "serving.*", "__main__", "experiment", "_experiment_cli", "_bundle_cli", "report", "report.*", "baselines",
               "baselines.*")),
]
#: The only module that may reach into the estimator's private backbone loader: the others read the fitted state
#: from ``clf.readout_`` (``stc.readout``).
ESTIMATOR_INTERNALS = {"_load_backbone"}
ESTIMATOR_MODULE = "classifier"
#: The only module that reads or builds the final classifier's scikit-learn pipeline: the head, which converts it
#: to and from its own arrays (``LinearHead.from_pipeline`` / ``to_pipeline``).
PIPELINE_INTERNALS = {"named_steps"}
HEAD_MODULE = "head"
HEAD_MODULES = {"head", "heads"}  # the linear head and its further kinds (multi-label)
#: The only modules allowed to put hooks on a model's forward pass.
HOOK_MODULES = {"extract"}
HOOK_METHODS = {"register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                "register_full_backward_pre_hook"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def layer_of(name: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatchcase(name, pattern) for pattern in patterns):
            return index
    raise AssertionError(f"module stc.{name} is in no layer of tests/test_architecture.py's LAYERS: add it")


def imports_of(name: str) -> list[tuple[str, str | None, int]]:
    """(imported stc module, imported name or None, line) for every import of stc code in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "stc" or alias.name.startswith("stc."):
                    found.append((alias.name[4:], None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "stc" or node.module.startswith("stc.")):
                target = node.module[4:]
            else:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}" if target else alias.name
                if submodule in MODULES:  # "from . import extract" imports a module
                    found.append((submodule, None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for name, imports in GRAPH.items():
        for target, _, line in imports:
            assert target in MODULES, f"stc.{name} line {line} imports stc.{target}, which does not exist"
            if layer_of(target) > layer_of(name):
                upward.append(f"stc.{name} (layer {LAYERS[layer_of(name)][0]!r}) line {line} imports "
                              f"stc.{target} (layer {LAYERS[layer_of(target)][0]!r})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_circle():
    edges = {name: sorted({target for target, _, _ in imports if target != name}) for name, imports in GRAPH.items()}
    circles, state, stack = [], {}, []

    def visit(name: str) -> None:  # depth-first; a grey node met again closes a circle
        state[name] = "grey"
        stack.append(name)
        for target in edges[name]:
            if state.get(target) == "grey":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = "black"

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_module_imports_private_names_of_another():
    found = []
    for name, imports in GRAPH.items():
        for target, imported, line in imports:
            if imported is not None and imported.startswith("_") and not imported.startswith("__") and target != name:
                found.append(f"stc.{name} line {line}: {imported} from stc.{target}")
            parent, _, last = target.rpartition(".")
            # a private module belongs to its package: only that package's own modules import it
            if last.startswith("_") and not last.startswith("__") and parent and not (
                    name == parent or name.startswith(parent + ".")):
                found.append(f"stc.{name} line {line}: private module stc.{target}")
    assert not found, "imports of private names:\n" + "\n".join(found)


def attribute_uses(attributes: set[str], allowed: set[str]) -> list[str]:
    """Where a module outside ``allowed`` reads one of ``attributes`` (``x.<attribute>``), as "stc.m line n: .a"."""
    found = []
    for name, path in MODULES.items():
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in attributes:
                found.append(f"stc.{name} line {node.lineno}: .{node.attr}")
    return found


def test_forward_hooks_only_in_the_extraction_module():
    found = attribute_uses(HOOK_METHODS, HOOK_MODULES)
    assert not found, "hooks outside the extraction module:\n" + "\n".join(found)


def test_only_the_estimator_reaches_into_its_backbone_loader_and_pipeline():
    found = attribute_uses(ESTIMATOR_INTERNALS, {ESTIMATOR_MODULE})
    assert not found, "estimator internals read outside stc.classifier (read clf.readout_):\n" + "\n".join(found)


def test_only_the_head_reads_the_final_classifiers_pipeline():
    found = attribute_uses(PIPELINE_INTERNALS, HEAD_MODULES)
    assert not found, "the final pipeline read outside stc.head and stc.heads (use a head):\n" + "\n".join(found)


def linear_products(allowed: set[str]) -> list[str]:
    """Where a module outside ``allowed`` computes ``something @ <...coef...>.T``: a linear head's arithmetic."""
    found = []
    for name, path in MODULES.items():
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) \
                    and isinstance(node.right, ast.Attribute) and node.right.attr == "T" \
                    and "coef" in ast.unparse(node.right.value):
                found.append(f"stc.{name} line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_linear_decision_is_computed_in_one_place():
    found = linear_products({HEAD_MODULE})
    assert not found, "a head's product outside stc.head (call LinearHead or linear_decision):\n" + "\n".join(found)


def test_the_attribute_checks_see_the_uses_they_allow():
    # with no module allowed, the checks above would report the real hooks, the estimator's own reads, the head's
    # pipeline conversions and its product
    assert any(use.startswith("stc.extract ") for use in attribute_uses(HOOK_METHODS, set()))
    assert any(use.startswith("stc.classifier ") for use in attribute_uses(ESTIMATOR_INTERNALS, set()))
    assert any(use.startswith("stc.head ") for use in attribute_uses(PIPELINE_INTERNALS, set()))
    assert any(use.startswith("stc.head ") for use in linear_products(set()))


def private_overrides(source: str) -> list[str]:
    """"Class.method" for each private method a class defined in ``source`` overrides on a subclass of
    STCClassifier."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and any(
                (base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)) == "STCClassifier"
                for base in node.bases):
            found += [f"{node.name}.{item.name}" for item in node.body if isinstance(item, ast.FunctionDef)
                      and item.name.startswith("_") and not item.name.startswith("__")]
    return found


def test_no_test_or_benchmark_overrides_the_estimators_private_methods():
    root = SRC.parents[1]
    found = [f"{path.relative_to(root)}: {override}" for folder in ("tests", "benchmarks")
             for path in sorted((root / folder).rglob("*.py"))
             for override in private_overrides(path.read_text(encoding="utf-8"))]
    assert not found, "fit on a built store with STCClassifier.fit_store instead of overriding:\n" + "\n".join(found)
    assert private_overrides("class Planted(stc.STCClassifier):\n    def _load_backbone(self): ...") == \
        ["Planted._load_backbone"]  # the check sees an override


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_file_is_over_the_line_limit(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (limit {MAX_LINES}): it holds two ideas, split it"


#: A function longer than this reads as several steps that want names of their own.
MAX_FUNCTION_LINES = 80


def long_functions(source: str, where: str) -> list[str]:
    """Functions (methods, nested ones too) of ``source`` over ``MAX_FUNCTION_LINES`` lines, docstrings included."""
    return [f"{where}: {node.name} has {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_is_over_the_line_limit():
    found = [line for name, path in MODULES.items() for line in long_functions(path.read_text(encoding="utf-8"),
                                                                                f"stc.{name}")]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(found)
    planted = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    assert long_functions(planted, "planted") == [f"planted: f has {MAX_FUNCTION_LINES + 1} lines"]


def test_the_checker_sees_a_planted_upward_import_and_circle(monkeypatch):
    # the checks above pass on the real tree; this shows they would catch a violation
    monkeypatch.setitem(GRAPH, "backbone", GRAPH["backbone"] + [("classifier", "STCClassifier", 1)])
    with pytest.raises(AssertionError, match=r"stc\.backbone .* imports stc\.classifier"):
        test_no_module_imports_a_layer_above_its_own()
    with pytest.raises(AssertionError, match=r"import circles:\n.*backbone"):
        test_no_import_circle()
    monkeypatch.setitem(GRAPH, "backbone", GRAPH["backbone"] + [("data._corpora", "_read_bbc_news", 1)])
    with pytest.raises(AssertionError, match=r"_read_bbc_news from stc\.data\._corpora\n.*private module"):
        test_no_module_imports_private_names_of_another()
