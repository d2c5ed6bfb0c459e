"""benchmarks/selection_rules.py on fabricated run folders: each rule's epoch by hand, the replay
check that flags a stored selection today's rule does not pick, and the suite's accuracy check
(LR-M-DYR-H below CE - 0.5) under a rule."""

import json
from pathlib import Path

import pytest

from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def rules_module():
    with benchmark_module("selection_rules") as module:
        yield module

def _run_folder(suite: Path, method: str, select: list, test: list, stored: int, holdout: int = 100) -> None:
    folder = suite / "runs" / "blobs" / "sym40" / "default" / "runs" / f"{method}_n0_s0"
    folder.mkdir(parents=True)
    lines = ["epoch,lr,select_acc,val_acc,bootstrapping"]
    lines += [f"{e + 1},0.05,{s},{t},False" for e, (s, t) in enumerate(zip(select, test))]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    rows = ["index,split,given_label,p_noisy,loss,predicted_label"]
    rows += [f"{i},holdout,0,0.1,0.2,0" for i in range(holdout)] + [f"{holdout + i},train,0,0.1,0.2,0" for i in range(7)]
    (folder / "label_issues.csv").write_text("\n".join(rows) + "\n")
    (folder / "result.json").write_text(json.dumps({"selected_epoch": stored}))

# held-out accuracies on 100 samples; 3-epoch trailing means 0.50, 0.55, 0.5733, 0.6067, 0.60
SELECT = [0.50, 0.60, 0.62, 0.60, 0.58]

def test_each_rule_picks_the_hand_computed_epoch(tmp_path, rules_module):
    _run_folder(tmp_path, "ce", SELECT, [0.70, 0.72, 0.74, 0.76, 0.78], stored=4)
    run = rules_module.load_runs(tmp_path)[0]
    assert run["size"] == 100
    pick = {name: rule(run["rows"], run["size"]) for name, (rule, _) in rules_module.RULES.items()}
    # one standard error of the best mean: sqrt(0.6067 * 0.3933 / 100) = 0.0489, so the means from
    # 0.5578 up are within it: epochs 3 (0.5733), 4 and 5
    assert pick == {"today": 4, "single": 3, "trailing-5": 4, "trailing-7": 4, "centred-5": 4,
                    "latest-1se": 5, "earliest-1se": 3, "last": 5, "full-3": 4}
    assert rules_module.test_accuracy(run["rows"], pick["latest-1se"]) == pytest.approx(0.78)


def test_full_windows_keep_a_lone_first_epoch_from_winning(tmp_path, rules_module):
    # epoch 1 alone scores 0.80; the full 3-epoch means from epoch 3 are 0.7667, 0.7667, 0.7833,
    # 0.80 (epochs 4-6 all at 0.80): today's rule keeps epoch 1 (its one-epoch mean equals the best,
    # and the first of equal means wins), the full-window rule epoch 6
    _run_folder(tmp_path, "ce", [0.80, 0.75, 0.75, 0.80, 0.80, 0.80], [0.77, 0.85, 0.86, 0.88, 0.89, 0.90], stored=1)
    run = rules_module.load_runs(tmp_path)[0]
    assert rules_module.RULES["today"][0](run["rows"], run["size"]) == 1
    assert rules_module.RULES["full-3"][0](run["rows"], run["size"]) == 6

def test_a_stored_selection_that_todays_rule_does_not_pick_is_reported(tmp_path, rules_module):
    _run_folder(tmp_path, "ce", SELECT, [0.7] * 5, stored=3)
    mismatches = rules_module.check_replay(rules_module.load_runs(tmp_path))
    assert len(mismatches) == 1 and "stored 3, replayed 4" in mismatches[0]

def test_the_accuracy_check_under_a_rule(tmp_path, rules_module):
    # CE peaks early (0.80 at epoch 3 and 4), LR-M-DYR-H late (0.79 at epoch 5)
    _run_folder(tmp_path, "ce", SELECT, [0.70, 0.75, 0.80, 0.80, 0.60], stored=4)
    _run_folder(tmp_path, "lr-m-dyr-h", SELECT, [0.60, 0.65, 0.70, 0.72, 0.79], stored=4)
    runs = rules_module.load_runs(tmp_path)
    today = rules_module.score(runs, rules_module.RULES["today"][0], "default")
    assert today["short"] == ["blobs sym40 (-8.0)"] and today["ce"] == pytest.approx(80.0)
    last = rules_module.score(runs, rules_module.RULES["last"][0], "default")
    assert last["short"] == [] and last["gain"] == pytest.approx(19.0)
    assert last["ce"] == pytest.approx(60.0) and last["ours"] == pytest.approx(79.0)
