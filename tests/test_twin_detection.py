"""benchmarks/twin_detection.py: the label-issue views of a run and its plain CE twin, on fabricated
label_issues.csv files whose AUCs are worked out by hand."""

import json

import pytest

from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def detection():
    with benchmark_module("twin_detection") as module:
        yield module


def _issues(path, p_noisy, loss):
    """label_issues.csv of samples 0-3 (0 and 1 truly wrong), most suspicious first."""
    path.mkdir(parents=True, exist_ok=True)
    order = sorted(range(4), key=lambda i: (-p_noisy[i], -loss[i]))
    lines = ["index,split,given_label,p_noisy,loss,predicted_label,truly_noisy"]
    lines += [f"{i},train,0,{p_noisy[i]},{loss[i]},1,{int(i < 2)}" for i in order]
    (path / "label_issues.csv").write_text("\n".join(lines) + "\n")


def _folder(root, kept="plain-twin", ranking_auc=0.75):
    run_dir = root / "runs" / "few" / "lr-m-dyr-h_s0"
    # the run ranks 2, 0, 1, 3: of the (wrong, right) pairs (0, 2) (0, 3) (1, 2) (1, 3) it orders two: AUC 0.5
    _issues(run_dir, [0.8, 0.3, 0.9, 0.1], [1.0, 1.0, 1.0, 1.0])
    # the twin ranks 0, 1, 2, 3: AUC 1
    _issues(run_dir / "plain-twin", [0.9, 0.7, 0.2, 0.1], [1.0, 1.0, 1.0, 1.0])
    (run_dir / "result.json").write_text(json.dumps({"kept_model": kept}))
    jobs = root / "jobs"
    jobs.mkdir(parents=True)
    common = {"kind": "latentmix", "data": "few", "noise": "sym40", "schedule": "default", "seed": 0}
    (jobs / "few-sym40-lr-m-dyr-h-default-s0.json").write_text(json.dumps(
        {**common, "id": "few-sym40-lr-m-dyr-h-default-s0", "method": "lr-m-dyr-h", "ranking_auc": ranking_auc,
         "run_dir": str(run_dir.relative_to(root))}))
    (jobs / "few-sym40-ce-default-s0.json").write_text(json.dumps(
        {**common, "id": "few-sym40-ce-default-s0", "method": "ce", "ranking_auc": 0.8}))
    (jobs / "few-sym40-cleanlab.json").write_text(json.dumps(
        {"id": "few-sym40-cleanlab", "kind": "cleanlab", "data": "few", "noise": "sym40", "ranking_auc": 0.7}))


def test_each_view_ranks_as_worked_out_by_hand(tmp_path, detection):
    _folder(tmp_path)
    cells = detection.replay(tmp_path)
    views = {view: values[0] for view, values in cells[("few", "sym40", "default")].items()}
    # mean P(noisy): 0 .85, 2 .55, 1 .50, 3 .10 -> pairs (0,2) (0,3) (1,3) ordered, (1,2) not: 0.75
    # rank-mean: positions summed 0: 1+0, 2: 0+2, 1: 2+1, 3: 3+3 -> the same order
    assert views == pytest.approx({"run": 0.5, "twin": 1.0, "kept": 1.0, "mean": 0.75, "rank-mean": 0.75})
    table = detection.report(tmp_path)
    # CE 0.8 is the bar: the run (0.5) and the mean (0.75) fall short, the twin (1.0) does not
    assert "| few | sym40 | default | 80.0 | 70.0 | 50.0* | 100.0 | 100.0 | 75.0* | 75.0* |" in table


def test_a_built_suite_is_checked_against_the_mean_view(tmp_path, detection):
    _folder(tmp_path / "reference")
    _folder(tmp_path / "built", ranking_auc=0.75)
    assert detection.check_built(tmp_path / "built", tmp_path / "reference") == []
    _folder(tmp_path / "wrong", ranking_auc=0.5)  # the run's own ranking, not the average
    assert detection.check_built(tmp_path / "wrong", tmp_path / "reference") == [
        "few-sym40-lr-m-dyr-h-default-s0: ranking_auc 0.500000, replayed 0.750000"]
