"""The import layers of the library (docs/architecture.md): every module sits in one layer and
imports only from its own layer or those below, and the imports form no circle.

The check parses every module of src/latentmix (package ``__init__.py`` files included) and reads
every import statement, those inside functions too, so that an import moved into a function to
break a circle at import time is still seen as the circle it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module's layer is the longest prefix listed here (``data`` covers ``data.idx``).
LAYERS: dict[str, tuple[str, ...]] = {
    "bottom": ("errors", "io", "summary", "table", "runtime"),
    "math": ("noise", "label_files", "mixing", "mixture_inputs", "beta_mixture", "gaussian_mixture", "noise_model", "losses",
             "robust_losses", "methods", "correction", "peer_losses", "dividemix", "selection", "distributed"),
    "data and models": ("data", "models", "coteaching"),
    "one run": ("config", "config_checks", "naming", "protocols", "plain_twin", "run_setup", "tracking", "run_log", "result",
                "run_folder", "label_issues", "progress", "training", "api", "detect", "predict", "lightning"),
    "many runs": ("stacked_mlp", "population", "experiments", "sweep", "tune", "summary_tables", "report_data", "report_tables", "report_figures", "report", "plots"),
    "entry": ("", "__main__", "cli", "report_cli", "sweep.cli"),  # "": the package's own __init__
}


def module_names(root: Path, package: str = "latentmix") -> dict[str, Path]:
    """Dotted name -> file of every module under `root`/`package` (``a/__init__.py`` is ``a``)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported_modules(name: str, path: Path, modules: dict[str, Path], package: str = "latentmix") -> set[str]:
    """The package's modules that `name` imports anywhere in its file (function bodies included),
    each resolved to the longest module name that exists (``from a.b import c`` is ``a.b.c`` when
    that is a module, else ``a.b``)."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        candidates = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, `level` packages up
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for candidate in candidates:
            if candidate != package and not candidate.startswith(package + "."):
                continue
            while candidate not in modules and "." in candidate:
                candidate = candidate.rsplit(".", 1)[0]
            if candidate in modules and candidate != name:
                targets.add(candidate)
                break  # `from a.b import c, d`: one target per name is enough
    return targets


def layer_of(module: str, layers: dict[str, tuple[str, ...]], package: str = "latentmix") -> tuple[int, str]:
    """(index, name) of the layer that lists the longest prefix of `module` (relative to `package`)."""
    relative = module[len(package) + 1:] if module != package else ""
    best = None
    for index, (layer, members) in enumerate(layers.items()):
        for member in members:
            matches = relative == member or (member and relative.startswith(member + "."))
            if matches and (best is None or len(member) > best[2]):
                best = (index, layer, len(member))
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and to docs/architecture.md")
    return best[0], best[1]


def layering_problems(root: Path, layers: dict[str, tuple[str, ...]], package: str = "latentmix") -> list[str]:
    """Every import that points up a layer, every module in no layer, and every circle."""
    modules = module_names(root, package)
    problems, graph = [], {}
    for name, path in modules.items():
        graph[name] = imported_modules(name, path, modules, package)
    for name, targets in sorted(graph.items()):
        try:
            own = layer_of(name, layers, package)
        except LookupError as error:
            problems.append(str(error))
            continue
        for target in sorted(targets):
            try:
                theirs = layer_of(target, layers, package)
            except LookupError:
                continue  # reported as the target's own problem
            if theirs[0] > own[0]:
                problems.append(f"upward import: {name} ({own[1]}) imports {target} ({theirs[1]})")
    problems += [f"import circle: {' -> '.join(cycle)}" for cycle in circles(graph)]
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    found = []
    for group in groups:  # walk inside the group from its first member back to it
        members, path, node = set(group), [group[0]], group[0]
        seen = {node}
        while True:
            following = sorted(other for other in graph[node] if other in members)
            back = group[0] in following
            if back and len(path) > 1:
                break
            node = next((other for other in following if other not in seen), group[0])
            if node == group[0]:
                break
            path.append(node)
            seen.add(node)
        found.append(path + [group[0]])
    return found


def test_the_library_imports_only_down_its_layers_and_in_no_circle():
    assert layering_problems(SOURCE, LAYERS) == []


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "latentmix" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TOY_LAYERS = {"bottom": ("errors",), "math": ("mixing",), "one run": ("training", "config"), "entry": ("", "cli")}


def test_an_upward_import_is_found_even_inside_a_function(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": "", "errors.py": "", "cli.py": "from latentmix import training\n",
        "training.py": "from latentmix.mixing import mix\n",
        "mixing.py": "def mix():\n    from latentmix.training import train\n",
        "config.py": "from . import errors\n",
    })
    problems = layering_problems(root, TOY_LAYERS)
    assert problems == ["upward import: latentmix.mixing (math) imports latentmix.training (one run)",
                        "import circle: latentmix.mixing -> latentmix.training -> latentmix.mixing"]


def test_a_circle_within_one_layer_and_a_module_in_no_layer_are_found(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": "", "errors.py": "",
        "config.py": "import latentmix.training\n", "training.py": "from .config import RunConfig\n",
        "extra.py": "from latentmix.errors import ConfigError\n",
    })
    problems = layering_problems(root, TOY_LAYERS)
    assert problems[0].startswith("latentmix.extra is in no layer")
    assert problems[1:] == ["import circle: latentmix.config -> latentmix.training -> latentmix.config"]


def test_a_clean_toy_package_has_no_problem(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": "", "errors.py": "", "mixing.py": "from latentmix.errors import ConfigError\n",
        "training.py": "from latentmix import mixing\nfrom latentmix.config import RunConfig\n",
        "config.py": "", "cli.py": "def main():\n    from latentmix.training import train\n",
    })
    assert layering_problems(root, TOY_LAYERS) == []


@pytest.mark.parametrize("module, layer", [("latentmix.data.idx", "data and models"), ("latentmix.data.array_files", "data and models"),
                                           ("latentmix.data.array_checks", "data and models"), ("latentmix.data.restricted_pickle", "data and models"), ("latentmix.sweep.cli", "entry"),
                                           ("latentmix.sweep.store", "many runs"), ("latentmix", "entry")])
def test_a_module_takes_the_layer_of_its_longest_listed_prefix(module, layer):
    assert layer_of(module, LAYERS)[1] == layer
