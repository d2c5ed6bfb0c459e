"""benchmarks/robustness_compare.py on fabricated job records: the checks of issue 24 read from the
records alone (the run folders under runs/ are not kept in the repository), the doubt of an
estimate from the record or, for an older record, from its run folder's result.json, and the worst
cell and mean gain over CE by hand."""

import json
from pathlib import Path

import pytest

from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def compare_module():
    with benchmark_module("robustness_compare") as module:
        yield module

def _write(out: Path, records: list[dict]) -> None:
    (out / "jobs").mkdir(parents=True)
    for index, record in enumerate(records):
        (out / "jobs" / f"{index}.json").write_text(json.dumps(record))

def _run(data, noise, method, seed, selected, auc, estimate=0.3, **extra):
    return {"kind": "latentmix", "data": data, "noise": noise, "method": method, "schedule": "default", "seed": seed,
            "selected_val_acc": selected, "ranking_auc": auc, "estimated_noise_rate": estimate,
            "actual_noise_rate": 0.3, "run_dir": f"runs/{data}/{noise}/{method}-{seed}", **extra}

def test_checks_from_the_records_alone(tmp_path, compare_module):
    doubt = {"noise_estimate_doubt": "the shares moved"}
    records = [
        # cell a: LR-M-DYR-H 0.70 / 0.72 against CE 0.80 / 0.80: acc short by 9 points; estimates 0.10 off, both doubted
        _run("a", "sym40", "ce", 0, 0.80, 0.90), _run("a", "sym40", "ce", 1, 0.80, 0.90),
        _run("a", "sym40", "lr-m-dyr-h", 0, 0.70, 0.95, 0.40, **doubt),
        _run("a", "sym40", "lr-m-dyr-h", 1, 0.72, 0.95, 0.40, **doubt),
        # cell b: LR-M-DYR-H 0.66 against CE 0.60 (+6); estimate 0.10 off, doubted by one run only: not met
        _run("b", "inst30", "ce", 0, 0.60, 0.80), _run("b", "inst30", "ce", 1, 0.60, 0.80),
        _run("b", "inst30", "lr-m-dyr-h", 0, 0.66, 0.70, 0.20, **doubt),
        _run("b", "inst30", "lr-m-dyr-h", 1, 0.66, 0.70, 0.20, noise_estimate_doubt=None),
        {"kind": "cleanlab", "data": "a", "noise": "sym40", "ranking_auc": 0.85},
        {"kind": "cleanlab", "data": "b", "noise": "inst30", "ranking_auc": 0.75},
    ]
    _write(tmp_path / "after", records)
    _write(tmp_path / "before", records)
    text = compare_module.compare(tmp_path / "before", tmp_path / "after", "default")
    row_a = next(line for line in text.splitlines() if line.startswith("| a |"))
    row_b = next(line for line in text.splitlines() if line.startswith("| b |"))
    assert row_a.endswith("| acc est? |")
    # b: AUC 0.70 below the larger of CE's 0.80 and cleanlab's 0.75; the estimate not doubted by every run
    assert row_b.endswith("| auc est |")
    assert "2 cells: `acc` short in 1, `auc` in 1, `est` (off and not doubted) in 1." in text
    # gains: a (0.70 + 0.72) / 2 - 0.80 = -0.09, b +0.06; mean -0.015
    assert "worst cell `a` sym40 -9.0 points, mean over the 2 cells -1.50." in text
    # the short cell seed by seed: 0.70 - 0.80 and 0.72 - 0.80
    assert "seed by seed (points): `a` sym40 -10.0, -8.0." in text

def test_an_older_record_reads_its_run_folder(tmp_path, compare_module):
    records = [_run("a", "sym40", "ce", 0, 0.8, 0.9), _run("a", "sym40", "lr-m-dyr-h", 0, 0.8, 0.9, 0.5)]
    _write(tmp_path / "after", records)
    run_dir = tmp_path / "after" / records[1]["run_dir"]
    run_dir.mkdir(parents=True)
    # a record from before the keys were kept: the doubt and a test set's figures come from result.json
    (run_dir / "result.json").write_text(json.dumps({"noise_estimate_doubt": "no two groups", "selected_test_acc": 0.5,
                                                     "best_test_acc": 0.6, "last_test_acc": 0.4}))
    loaded = compare_module.load(tmp_path / "after", "default")
    ours = next(r for r in loaded if r["method"] == "lr-m-dyr-h")
    assert (ours["selected_val_acc"], ours["best_val_acc"], ours["last_val_acc"]) == (0.5, 0.6, 0.4)
    assert compare_module.doubted(loaded, method="lr-m-dyr-h")
    # without its run folder nothing says it was doubted
    (run_dir / "result.json").unlink()
    assert not compare_module.doubted(compare_module.load(tmp_path / "after", "default"), method="lr-m-dyr-h")
