"""The package's layers import in one direction: entry points → the run → the Lightning parts and
the analysis → the network and the data. Read from every module's syntax tree, late imports
inside functions included, so that an upward import cannot hide in a function body."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src"

# package -> the alexnet packages and modules it may import (itself always).
ALLOWED = {
    "alexnet.errors": set(),
    "alexnet.files": set(),
    "alexnet.ablations": set(),
    "alexnet.lightning_compat": set(),
    "alexnet.config": {"alexnet.errors"},
    "alexnet.models": {"alexnet.errors"},
    "alexnet.data": {"alexnet.errors", "alexnet.files", "alexnet.lightning_compat"},
    "alexnet.training": {
        "alexnet.errors",
        "alexnet.files",
        "alexnet.lightning_compat",
        "alexnet.models",
        "alexnet.data",
    },
    # Pictures and tables of networks, evaluations and run records: the evaluation's result is the
    # one thing of training's they read.
    "alexnet.analysis": {
        "alexnet.errors",
        "alexnet.files",
        "alexnet.ablations",
        "alexnet.models",
        "alexnet.data",
        "alexnet.training.evaluation",
    },
}
# Third-party packages a layer must not need: the network reads alone, the Lightning parts take
# built objects, not Hydra configs.
FORBIDDEN_LIBRARIES = {
    "alexnet.models": {"hydra", "omegaconf", "lightning"},
    "alexnet.data": {"hydra", "omegaconf"},
    "alexnet.training": {"hydra", "omegaconf"},
    "alexnet.errors": {"hydra", "omegaconf"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules() -> dict[str, set[str]]:
    """Every module of ``src/alexnet`` and ``src/hydra_plugins`` -> what it imports."""
    return {
        module_name(path): imports(path)
        for package in ("alexnet", "hydra_plugins")
        for path in sorted((SRC / package).rglob("*.py"))
    }


def layer_of(module: str) -> str | None:
    """The most specific key of ``ALLOWED`` that ``module`` lies in."""
    keys = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    return max(keys, key=len) if keys else None


def within(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, imported in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            continue
        for target in sorted(imported):
            top = target.split(".")[0]
            if top in ("alexnet", "hydra_plugins"):
                if not within(target, {layer, *ALLOWED[layer]}):
                    problems.append(f"{module} imports {target}")
            elif top in FORBIDDEN_LIBRARIES.get(layer, set()):
                problems.append(f"{module} imports {target} (a library {layer} must not need)")
    return problems


def test_each_layer_imports_only_the_layers_below_it():
    problems = upward_imports(modules())
    assert not problems, "imports against the layers (tests/test_layers.py's ALLOWED):\n" + "\n".join(problems)


def test_the_layer_check_catches_an_upward_import():
    """The check itself: a Lightning part that reads the run layer is reported."""
    graph = {"alexnet.training.callbacks": {"alexnet.run.layout", "alexnet.models.layers"}}
    assert upward_imports(graph) == ["alexnet.training.callbacks imports alexnet.run.layout"]


def test_no_module_imports_itself_back_through_others():
    graph = modules()
    for module, imported in graph.items():  # a package import reaches its __init__
        graph[module] = {m for m in imported if m in graph}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target == path[0]:
                cycles.append(" -> ".join([*path, target]))
            elif target not in path and target > path[0]:  # each cycle once, from its smallest module
                visit(target, [*path, target])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    ("package", "absent"),
    [
        ("alexnet.models", ("hydra", "omegaconf", "lightning")),
        ("alexnet.data", ("hydra", "omegaconf")),
        # Hydra imports its plugins at every start of every entry point
        ("hydra_plugins.alexnet_launcher.torchrun_launcher", ("torch", "lightning")),
        ("hydra_plugins.alexnet_launcher.tuned_sweeper", ("torch", "lightning")),
    ],
)
def test_each_layer_imports_without_what_it_must_not_need(package, absent):
    code = f"import sys, {package}; print(sorted(m for m in {absent!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
