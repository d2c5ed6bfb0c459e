"""Tests for latentmix.runtime and the layering it allows: the library never imports the command
line, importing it leaves the process environment alone, and the `latentmix` command still sets
OpenMP's passive waiting before torch loads (docs/fashion-mnist.md, Timing)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import latentmix
from latentmix.errors import ConfigError
from latentmix.runtime import set_threads

PACKAGE = Path(latentmix.__file__).parent
# The entry points: the only modules that may import latentmix.cli.
ENTRY_POINTS = {PACKAGE / "cli.py", PACKAGE / "__main__.py"}


def _imports_the_command_line(tree: ast.AST, package: str) -> list[int]:
    """Line numbers of `import latentmix.cli`, `from latentmix.cli import ...`, `from latentmix
    import cli`, their relative forms, and `importlib.import_module("latentmix.cli")` in `tree`, a
    module of `package` (its dotted name, for the relative forms)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines += [node.lineno for alias in node.names if alias.name == "latentmix.cli"
                      or alias.name.startswith("latentmix.cli.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = {alias.name for alias in node.names}
            if module == "latentmix.cli" or (module == "latentmix" and "cli" in names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "latentmix.cli":
                lines.append(node.lineno)
    return lines


def _package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1])


def test_no_library_module_imports_the_command_line():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ENTRY_POINTS:
            continue
        for line in _imports_the_command_line(ast.parse(path.read_text(), str(path)), _package_of(path)):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert not offenders, f"library modules import latentmix.cli (the layers must point one way): {offenders}"


@pytest.mark.parametrize("source, package", [
    ("import latentmix.cli", "latentmix"),
    ("from latentmix.cli import set_threads", "latentmix.experiments"),
    ("from latentmix import cli", "latentmix"),
    ("from .cli import main", "latentmix"),
    ("from ..cli import main", "latentmix.experiments"),
    ("import importlib\nimportlib.import_module('latentmix.cli')", "latentmix"),
])
def test_the_layer_check_sees_each_form_of_import(source, package):
    assert _imports_the_command_line(ast.parse(source), package)


@pytest.mark.parametrize("source, package", [
    ("from latentmix.sweep.cli import register", "latentmix"),  # a package's own command-line module
    ("from .cli import register", "latentmix.sweep"),
    ("from latentmix import runtime", "latentmix"),
])
def test_the_layer_check_allows_other_modules_named_cli(source, package):
    assert not _imports_the_command_line(ast.parse(source), package)


def _run_python(code: str, **env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_changes)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_importing_the_library_leaves_the_environment_alone():
    code = """
import importlib, os, pkgutil
import latentmix
for module in pkgutil.walk_packages(latentmix.__path__, "latentmix."):
    if module.name != "latentmix.__main__":  # running it is the command, not an import
        importlib.import_module(module.name)
print(repr(os.environ.get("OMP_WAIT_POLICY")))
"""
    assert _run_python(code) == "None"


# Runs `python -m latentmix train --help` (which imports torch while it builds the parsers) and
# prints OMP_WAIT_POLICY as it was when torch started to load.
_POLICY_WHEN_TORCH_LOADS = """
import importlib.abc, os, runpy, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Watch())
sys.argv = ["latentmix", "train", "--help"]
try:
    runpy.run_module("latentmix", run_name="__main__")
except SystemExit:
    pass
assert seen, "torch was not imported"
print(repr(seen[0]))
"""


def test_the_command_sets_passive_waiting_before_torch_loads():
    assert _run_python(_POLICY_WHEN_TORCH_LOADS) == "'PASSIVE'"


def test_an_explicit_wait_policy_wins():
    assert _run_python(_POLICY_WHEN_TORCH_LOADS, OMP_WAIT_POLICY="ACTIVE") == "'ACTIVE'"


def test_set_threads():
    import torch

    before = torch.get_num_threads()
    try:
        set_threads(None, "spiral")
        assert torch.get_num_threads() == 1
        set_threads(2, "spiral")
        assert torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="--threads must be >= 1, got 0"):
            set_threads(0, "cifar10")
    finally:
        torch.set_num_threads(before)
