"""Loading a script of benchmarks/ as a module, for the tests that check it on fabricated records."""

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def benchmark_module(name: str):
    """benchmarks/NAME.py as a module, registered in sys.modules while it is in use (its
    dataclasses look their module up there) and removed after."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
