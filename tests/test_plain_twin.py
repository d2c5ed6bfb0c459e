"""benchmarks/plain_twin.py: which default runs switch to their plain-CE twin, on fabricated suite
records and metrics with the figures worked out by hand."""

import json

import pytest

from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def twin():
    with benchmark_module("plain_twin") as module:
        yield module


def _run(folder, data, method, seed, select, lr_drop, selected_epoch, selected, holdout=100):
    """One fabricated run: its job record, metrics.csv (lr 0.05 until `lr_drop`) and a
    label_issues.csv with `holdout` held-out rows."""
    run_dir = folder / "runs" / data / f"{method}_s{seed}"
    run_dir.mkdir(parents=True)
    lines = ["epoch,lr,select_acc"] + [f"{e},{0.05 if e <= lr_drop else 0.005},{acc}" for e, acc in enumerate(select, 1)]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run_dir / "label_issues.csv").write_text("split\n" + "holdout\n" * holdout + "train\n" * 900)
    (run_dir / "result.json").write_text(json.dumps({"selected_epoch": selected_epoch}))
    record = {"id": f"{data}-sym40-{method}-default-s{seed}", "kind": "latentmix", "data": data, "noise": "sym40",
              "method": method, "schedule": "default", "seed": seed, "selected_val_acc": selected,
              "selected_epoch": selected_epoch, "ranking_auc": 0.9, "estimated_noise_rate": 0.4,
              "actual_noise_rate": 0.4, "run_dir": str(run_dir.relative_to(folder))}
    (folder / "jobs").mkdir(exist_ok=True)
    (folder / "jobs" / f"{record['id']}.json").write_text(json.dumps(record))


def test_the_twin_replaces_a_mixed_run_only_when_its_noisy_validation_says_so(tmp_path, twin):
    # cell A: at the end of early learning (epoch 4, the last at the initial lr) the mixed run's
    # trailing mean is (0.30 + 0.32 + 0.34) / 3 = 0.32, the twin's (0.50 + 0.52 + 0.54) / 3 = 0.52;
    # on 100 rows 2 s.e. = 2 sqrt(0.32 * 0.68 / 100 + 0.52 * 0.48 / 100) = 0.1364 < 0.20: it switches
    _run(tmp_path, "a", "lr-m-dyr-h", 0, [0.2, 0.30, 0.32, 0.34, 0.35, 0.36], 4, 6, 0.40)
    _run(tmp_path, "a", "ce", 0, [0.3, 0.50, 0.52, 0.54, 0.50, 0.48], 4, 4, 0.70)
    # cell B: 0.40 vs 0.45 at epoch 4: 0.05 < 2 s.e. (0.1394), no switch at the end of early learning;
    # over the whole run the twin's best trailing mean (epoch 4, 0.45) is below the mixed run's
    # selected one (epoch 6: (0.50 + 0.52 + 0.54) / 3 = 0.52): no switch either
    _run(tmp_path, "b", "lr-m-dyr-h", 0, [0.3, 0.38, 0.40, 0.42, 0.50, 0.52, 0.54], 4, 7, 0.80)
    _run(tmp_path, "b", "ce", 0, [0.3, 0.43, 0.45, 0.47, 0.44, 0.40, 0.38], 4, 4, 0.75)
    _, after, switches, share = twin.replay(tmp_path, "end")
    assert [s.split(":")[0] for s in switches] == ["a-sym40-lr-m-dyr-h-default-s0"]
    ours = {r["id"]: r for r in after if r["method"] == "lr-m-dyr-h"}
    assert ours["a-sym40-lr-m-dyr-h-default-s0"]["selected_val_acc"] == 0.70  # the twin's record
    assert ours["b-sym40-lr-m-dyr-h-default-s0"]["selected_val_acc"] == 0.80
    assert share == pytest.approx((4 / 6 + 4 / 7) / 2)
    _, after, switches, _ = twin.replay(tmp_path, "whole")
    # A: the twin's selected trailing mean 0.52 against the mixed run's (0.34 + 0.35 + 0.36) / 3 = 0.35
    assert [s.split(":")[0] for s in switches] == ["a-sym40-lr-m-dyr-h-default-s0"]


def test_a_built_twin_is_checked_against_the_replay_run_by_run(tmp_path, twin):
    reference, built = tmp_path / "reference", tmp_path / "built"
    # cell A switches (the twin's trailing mean 0.52 against 0.35, as above); cell B does not
    _run(reference, "a", "lr-m-dyr-h", 0, [0.2, 0.30, 0.32, 0.34, 0.35, 0.36], 4, 6, 0.40)
    _run(reference, "a", "ce", 0, [0.3, 0.50, 0.52, 0.54, 0.50, 0.48], 4, 4, 0.70)
    _run(reference, "b", "lr-m-dyr-h", 0, [0.3, 0.38, 0.40, 0.42, 0.50, 0.52, 0.54], 4, 7, 0.80)
    _run(reference, "b", "ce", 0, [0.3, 0.43, 0.45, 0.47, 0.44, 0.40, 0.38], 4, 4, 0.75)
    (built / "jobs").mkdir(parents=True)
    for data, kept, twin_acc in (("a", 0.70, 0.70), ("b", 0.80, 0.75)):
        ce = json.loads((reference / "jobs" / f"{data}-sym40-ce-default-s0.json").read_text())
        (built / "jobs" / f"{data}-sym40-ce-default-s0.json").write_text(json.dumps(ce))
        ours = json.loads((reference / "jobs" / f"{data}-sym40-lr-m-dyr-h-default-s0.json").read_text())
        ours["selected_val_acc"] = kept  # what the library's run keeps
        (built / "jobs" / f"{data}-sym40-lr-m-dyr-h-default-s0.json").write_text(json.dumps(ours))
        (built / ours["run_dir"] / "plain-twin").mkdir(parents=True)
        (built / ours["run_dir"] / "plain-twin" / "result.json").write_text(json.dumps({"selected_val_acc": twin_acc}))
    assert twin.check_built(built, reference) == []
    # a run that kept its own model where the replay switches, and a twin that is not the cell's CE run
    path = built / "jobs" / "a-sym40-lr-m-dyr-h-default-s0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "selected_val_acc": 0.40}))
    twin_file = built / "runs" / "b" / "lr-m-dyr-h_s0" / "plain-twin" / "result.json"
    twin_file.write_text(json.dumps({"selected_val_acc": 0.74}))
    assert twin.check_built(built, reference) == [
        "a-sym40-lr-m-dyr-h-default-s0: selected_val_acc 0.4, replayed 0.7",
        "b-sym40-lr-m-dyr-h-default-s0: its twin's selected_val_acc 0.74, the CE run's 0.75",
    ]


def test_the_paired_test_is_mcnemars_exact_one_sided(twin):
    assert twin.mcnemar_p(5, 0) == pytest.approx(1 / 32)  # five of five discordant rows the twin's way
    assert twin.mcnemar_p(3, 3) == pytest.approx((20 + 15 + 6 + 1) / 64)  # P(X >= 3), X ~ Binomial(6, 1/2)
    assert twin.mcnemar_p(0, 4) == 1.0 and twin.mcnemar_p(0, 0) == 1.0
