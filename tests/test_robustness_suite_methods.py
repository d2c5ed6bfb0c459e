"""benchmarks/robustness_suite.py --methods: which rows a cell trains (the tool's default pair unless
named), the layer range a mixing preset gets on a data set that cannot mix its input, and the
table of every method, on fabricated job records."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("robustness_suite", ROOT / "benchmarks" / "robustness_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_default_methods_are_todays_pair(suite):
    grid = suite.grid_for(suite.DATASETS["tokens"], "sym40", "default", Path("/x/tokens-sym40.npz"))
    assert [(m.method, m.layers) for m in grid.methods] == [("ce", None), ("lr-m-dyr-h", "1-3")]
    assert suite.DEFAULT_METHODS == ("ce", "lr-m-dyr-h")  # --methods' default


def test_named_methods_and_their_layers(suite):
    names = suite.parse_methods(" CE, lr-m-dyr-h,gce ,lr-m-elr,m-dyr-h")
    assert names == ("ce", "lr-m-dyr-h", "gce", "lr-m-elr", "m-dyr-h")
    tokens = suite.grid_for(suite.DATASETS["tokens"], "sym40", "3x", Path("/x/t.npz"), names)
    # tokens cannot be mixed at layer 0: the range presets get 1-3, the rest run as named
    assert [(m.method, m.layers) for m in tokens.methods] == [
        ("ce", None), ("lr-m-dyr-h", "1-3"), ("gce", None), ("lr-m-elr", "1-3"), ("m-dyr-h", None)]
    slow = suite.grid_for(suite.DATASETS["slow"], "sym40", "default", Path("/x/s.npz"), names)
    assert all(m.layers is None for m in slow.methods)  # no range set: each preset's own
    assert len(slow.runs()) == 5 * len(suite.SEEDS)


@pytest.mark.parametrize("text", ["ce,nope", " , "])
def test_bad_methods_exit_with_one_line(suite, text):
    with pytest.raises(SystemExit) as error:
        suite.parse_methods(text)
    message = str(error.value)
    assert "--methods" in message and "\n" not in message
    if "nope" in text:
        assert "nope" in message


def _record(method, seed, schedule, acc, auc):
    return {"kind": "latentmix", "data": "slow", "noise": "sym40", "method": method, "seed": seed,
            "schedule": schedule, "selected_val_acc": acc, "ranking_auc": auc}


def test_methods_table_by_hand(suite):
    records = [_record("ce", s, "default", 0.70, 0.90) for s in (0, 1)]
    records += [_record("lr-m-dyr-h", s, "default", 0.80, 0.95) for s in (0, 1)]
    assert suite.methods_table(records) == ""  # today's pair: the main table says it all
    records += [_record("gce", 0, "default", 0.81, 0.93), _record("gce", 1, "default", 0.84, 0.96)]
    records += [_record("gce", 0, "3x", 0.75, 0.90)]
    text = suite.methods_table(records)
    assert "| data | noise | ce selected / AUC | lr-m-dyr-h selected / AUC | gce selected / AUC |" in text
    # gce: default mean (0.81 + 0.84) / 2 = 82.5, 3x 75.0; AUC (0.93 + 0.96) / 2 = 94.5, 3x 90.0
    assert "| slow | sym40 | 70.0 / —, 90.0 / — | 80.0 / —, 95.0 / — | 82.5 / 75.0, 94.5 / 90.0 |" in text
