"""The plain CE twin a run on your own data trains beside it (`latentmix.plain_twin`): the twin is
the same run as `--method ce`, the run keeps the model that scores higher on the noisy validation
split, and the folder, the summary and `load_run` say and use which."""

import csv
import json

import numpy as np
import pytest
import torch

from latentmix import load_run
from latentmix.config import RunConfig
from latentmix.errors import ConfigError
from latentmix.selection import keeps_plain_twin, selection_score
from latentmix.training import train


def write_shells(path, n=600, seed=0):
    """Four classes by distance from the centre (nested shells in 8-d), 30% of the labels redrawn:
    classes that are not convex regions, where mixing two points of the outer shell lands inside."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    radius = np.linalg.norm(x, axis=1)
    y = np.digitize(radius, np.quantile(radius, [0.25, 0.5, 0.75]))
    noisy = y.copy()
    flip = rng.random(n) < 0.3
    noisy[flip] = rng.integers(0, 4, flip.sum())
    np.savez(path, x=x, y=noisy, clean_labels=y)
    return path


def config(path, **values):
    return RunConfig(**{"dataset": "shells", "data": str(path), "epochs": 12, "device": "cpu", **values})


def trailing_means(metrics_csv):
    """Each epoch's mean of select_acc over it and the 2 epochs before, read from the file."""
    with open(metrics_csv) as handle:
        accs = [float(row["select_acc"]) for row in csv.DictReader(handle)]
    return [np.mean(accs[max(0, i - 2):i + 1]) for i in range(len(accs))]


def test_the_selection_score_is_the_trailing_mean_at_the_epoch():
    rows = [{"epoch": 1, "select_acc": 0.5}, {"epoch": 2, "select_acc": 0.7}, {"epoch": 3, "select_acc": 0.6},
            {"epoch": 4, "select_acc": 0.9}]
    assert selection_score(rows, 1) == pytest.approx(0.5)
    assert selection_score(rows, 2) == pytest.approx(0.6)
    assert selection_score(rows, 4) == pytest.approx((0.7 + 0.6 + 0.9) / 3)
    assert selection_score(rows, None) is None
    assert selection_score([{"epoch": 1, "select_acc": None}], 1) is None


def test_the_twin_is_kept_only_when_it_scores_higher():
    assert keeps_plain_twin(0.60, 0.61)
    assert not keeps_plain_twin(0.61, 0.60)
    assert not keeps_plain_twin(0.6, 0.6 + 5e-7)  # the same fraction of the split: the run's own is kept
    assert not keeps_plain_twin(None, 0.9) and not keeps_plain_twin(0.5, None)


def test_a_run_on_your_own_data_trains_the_plain_twin_and_keeps_the_higher(tmp_path):
    data = write_shells(tmp_path / "shells.npz")
    result = train(config(data, method="lr-m-dyr-h"), run_dir=tmp_path / "run", progress=False)
    # the twin is the same run as --method ce, trained on its own: the same files to the byte
    alone = train(config(data, method="ce"), run_dir=tmp_path / "ce", progress=False)
    assert alone.kept_model is None and not (tmp_path / "ce" / "plain-twin").exists()
    for name in ("result.json", "metrics.csv", "label_issues.csv"):
        assert (tmp_path / "run" / "plain-twin" / name).read_bytes() == (tmp_path / "ce" / name).read_bytes()
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    ours, twin = summary, json.loads((tmp_path / "ce" / "result.json").read_text())
    ours_score = trailing_means(tmp_path / "run" / "metrics.csv")[ours["selected_epoch"] - 1]
    twin_score = trailing_means(tmp_path / "ce" / "metrics.csv")[twin["selected_epoch"] - 1]
    assert summary["selection_score"] == pytest.approx(ours_score, abs=1e-5)
    assert summary["twin_selection_score"] == pytest.approx(twin_score, abs=1e-5)
    # nested shells: mixing holds the network back and the plain twin scores higher
    assert twin_score > ours_score + 0.05
    assert summary["kept_model"] == "plain-twin"
    assert summary["kept_val_acc"] == twin["selected_val_acc"] and summary["kept_epoch"] == twin["selected_epoch"]
    # the run's own figures and its label issues are its own (not the twin's)
    assert summary["selected_val_acc"] == result.selected_val_acc != twin["selected_val_acc"]
    assert (tmp_path / "run" / "label_issues.csv").read_bytes() != (tmp_path / "ce" / "label_issues.csv").read_bytes()
    # predict / load_run use the kept model: the twin's selected weights
    x = torch.from_numpy(np.load(data)["x"][:40])
    kept = load_run(tmp_path / "run")
    assert kept.epoch == twin["selected_epoch"]
    assert np.allclose(kept.predict(x).probabilities, load_run(tmp_path / "ce").predict(x).probabilities)
    assert np.allclose(load_run(result).predict(x).probabilities, kept.predict(x).probabilities)


def read_issues(path):
    """label_issues.csv as {index: row}, and the indices in file order."""
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {int(r["index"]): r for r in rows}, [int(r["index"]) for r in rows]


def mann_whitney_auc(scores, positive):
    """P(a wrong label scores above a right one), ties counting half: the AUC by its definition."""
    pos, neg = scores[positive], scores[~positive]
    return ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))


def test_the_label_issues_average_the_run_and_its_twin(tmp_path):
    """Each sample's P(noisy) and loss are the means of the run's own (the same run without a twin)
    and its twin's, ranked by P(noisy) then loss; result.json's detection AUC is that ranking's, and
    `detect` rebuilds the file as written."""
    from latentmix.cli import main

    data = write_shells(tmp_path / "shells.npz", n=400)
    train(config(data, method="lr-m-dyr-h", epochs=8), run_dir=tmp_path / "run", progress=False)
    train(config(data, method="lr-m-dyr-h", epochs=8, plain_twin=False), run_dir=tmp_path / "own", progress=False)
    both, order = read_issues(tmp_path / "run" / "label_issues.csv")
    own, _ = read_issues(tmp_path / "own" / "label_issues.csv")
    twin, _ = read_issues(tmp_path / "run" / "plain-twin" / "label_issues.csv")
    assert set(both) == set(own) == set(twin) == set(range(400))
    p = np.array([float(both[i]["p_noisy"]) for i in order])
    loss = np.array([float(both[i]["loss"]) for i in order])
    for i in order:
        assert float(both[i]["p_noisy"]) == pytest.approx((float(own[i]["p_noisy"]) + float(twin[i]["p_noisy"])) / 2,
                                                          abs=1e-5)
        assert float(both[i]["loss"]) == pytest.approx((float(own[i]["loss"]) + float(twin[i]["loss"])) / 2,
                                                       rel=1e-4, abs=1e-5)
        assert both[i]["given_label"] == own[i]["given_label"] and both[i]["split"] == own[i]["split"]
    # most suspicious first: P(noisy) never rises down the file, and within equal P(noisy) the loss does not
    assert np.all(np.diff(p) <= 0)
    assert all(loss[k] >= loss[k + 1] for k in range(len(p) - 1) if p[k] == p[k + 1])
    # the two rankings differ (else the average would show nothing)
    assert [i for i in order] != [int(r) for r in sorted(own, key=lambda i: -float(own[i]["p_noisy"]))]
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    twin_summary = json.loads((tmp_path / "run" / "plain-twin" / "result.json").read_text())
    assert summary["twin_label_issues_epoch"] == twin_summary["label_issues_epoch"]
    truly = np.array([both[i]["truly_noisy"] == "1" for i in order])
    assert summary["detection_auc"] == pytest.approx(mann_whitney_auc(p, truly), abs=2e-3)
    # detect rebuilds the averaged file from the two checkpoints when the file is gone
    written = (tmp_path / "run" / "label_issues.csv").read_bytes()
    (tmp_path / "run" / "label_issues.csv").unlink()
    assert main(["detect", str(tmp_path / "run"), "--top", "3"]) == 0
    assert (tmp_path / "run" / "label_issues.csv").read_bytes() == written


def test_a_twin_interrupted_resumes_and_the_run_is_not_finished_before(tmp_path, monkeypatch):
    from latentmix import training

    data = write_shells(tmp_path / "shells.npz", n=300)
    whole = train(config(data, method="lr-m", epochs=6), run_dir=tmp_path / "whole", progress=False)
    save_epoch = training.Run.save_epoch

    def killed_in_the_twin(self, epoch):
        save_epoch(self, epoch)
        if self.run_path.name == "plain-twin" and epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Run, "save_epoch", killed_in_the_twin)
    with pytest.raises(KeyboardInterrupt):
        train(config(data, method="lr-m", epochs=6), run_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(training.Run, "save_epoch", save_epoch)
    assert not (tmp_path / "cut" / "result.json").exists()  # not a finished run without its twin's decision
    with pytest.raises(ConfigError, match="unfinished run"):
        train(config(data, method="lr-m", epochs=6), run_dir=tmp_path / "cut", progress=False)
    train(config(data, method="lr-m", epochs=6), run_dir=tmp_path / "cut", resume=True, progress=False)
    for name in ("result.json", "label_issues.csv", "plain-twin/result.json", "plain-twin/metrics.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert whole.kept_model in ("run", "plain-twin")


def test_which_runs_train_a_twin(tmp_path):
    data = write_shells(tmp_path / "shells.npz", n=200)
    short = dict(epochs=3)
    assert train(config(data, method="lr-m-dyr-h", plain_twin=False, **short), progress=False).twin is None
    assert train(config(data, method="ce", **short), progress=False).twin is None
    # a peer method is not of the paper's family: no twin unless asked for
    assert train(config(data, method="lr-m-elr", **short), progress=False).twin is None
    assert train(config(data, method="lr-m-elr", plain_twin=True, **short), progress=False).twin is not None
    # the paper's protocols train as the paper does
    assert train(RunConfig(dataset="spiral", method="lr-m-dyr-h", epochs=2, device="cpu"), progress=False).twin is None
    with pytest.raises(ConfigError, match="plain CE already"):
        train(config(data, method="ce", plain_twin=True, **short), progress=False)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 4))
    with pytest.raises(ConfigError, match="optimizer"):
        train(config(data, method="m", plain_twin=True, **short), model=model, mix_points=["1"],
              optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)


def test_the_summary_says_which_model_is_kept(tmp_path, capsys):
    from latentmix.cli import main

    data = write_shells(tmp_path / "shells.npz", n=300)
    assert main(["train", "--data", str(data), "--method", "lr-m", "--epochs", "6", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "r" / "result.json").read_text())
    kept = [line for line in out.splitlines() if "kept:" in line]
    assert len(kept) == 1
    assert f"{summary['selection_score']:.4f}" in kept[0] and f"{summary['twin_selection_score']:.4f}" in kept[0]
    assert ("plain CE twin's model" in kept[0]) == (summary["kept_model"] == "plain-twin")
    assert summary["kept_model"] == "run" or "the noise estimate is this run's and the label issues both runs'" in kept[0]
    # where the label issues come from: both runs, each at its own epoch
    assert (f"label issues of epoch {summary['label_issues_epoch']}, P(noisy) averaged with the plain CE twin's of "
            f"epoch {summary['twin_label_issues_epoch']}") in out
    assert main(["train", "--data", str(data), "--method", "lr-m", "--epochs", "6", "--out", str(tmp_path / "n"),
                 "--quiet", "--no-plain-twin"]) == 0
    assert "kept:" not in capsys.readouterr().out and not (tmp_path / "n" / "plain-twin").exists()
    # the report counts the runs that kept their twin's model, from their result.json
    from latentmix.report import decision_counts
    from latentmix.report_data import load_report_data

    counts = decision_counts(load_report_data(str(tmp_path), progress=False))
    kept = "kept their plain CE twin's model"
    assert (f"1 of 2 runs {kept}" in counts) == (summary["kept_model"] == "plain-twin")
    assert summary["kept_model"] == "plain-twin" or kept not in counts


def test_your_optimizer_factory_builds_the_twins_own(tmp_path):
    import latentmix

    torch.manual_seed(0)
    x = torch.randn(300, 6)
    y = (x[:, 0] + x[:, 1] > 0).long()
    built = []

    def adamw(params):
        built.append(torch.optim.AdamW(params, lr=1e-2))
        return built[-1]

    def model():
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    first = model()
    result = latentmix.fit(first, x[:240], y[:240], val_inputs=x[240:], val_labels=y[240:], method="m", epochs=3,
                           device="cpu", progress=False, optimizer=adamw)
    assert result.twin is not None and len(built) == 2
    # the twin's optimizer holds the twin's parameters, not the run's
    run_params = {id(p) for p in result.model.parameters()}
    assert not run_params & {id(p) for group in built[1].param_groups for p in group["params"]}
    # an instance is built on one model: no twin by default, a clear error when asked for
    net = model()
    instance = torch.optim.SGD(net.parameters(), lr=0.05)
    assert latentmix.fit(net, x[:240], y[:240], val_inputs=x[240:], val_labels=y[240:], method="m", epochs=2,
                         device="cpu", progress=False, optimizer=instance).twin is None
    with pytest.raises(ConfigError, match="factory"):
        latentmix.fit(net, x[:240], y[:240], val_inputs=x[240:], val_labels=y[240:], method="m", epochs=2,
                      device="cpu", progress=False, optimizer=torch.optim.SGD(net.parameters(), lr=0.05),
                      plain_twin=True)


def test_a_twin_that_diverges_leaves_the_run_its_own_model(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from latentmix import plain_twin, training
    from latentmix.cli import main

    data = write_shells(tmp_path / "shells.npz", n=300)
    # the twin at the highest lr a run takes, which no network here survives: its loss turns non-finite within the first epochs
    monkeypatch.setattr(training, "twin_config", lambda config: replace(plain_twin.twin_config(config), lr=1000.0))
    assert main(["train", "--data", str(data), "--method", "lr-m", "--epochs", "6", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    summary = json.loads((tmp_path / "r" / "result.json").read_text())
    assert summary["kept_model"] == "run" and summary["twin_selection_score"] is None
    assert summary["twin_failed"].startswith("the plain CE twin training diverged")
    assert summary["kept_val_acc"] == summary["selected_val_acc"]
    assert "nothing was compared" in capsys.readouterr().out
    assert load_run(tmp_path / "r").epoch == summary["selected_epoch"]
    # and its own label issues: those of the same run without a twin
    assert summary["twin_label_issues_epoch"] is None
    assert main(["train", "--data", str(data), "--method", "lr-m", "--epochs", "6", "--out", str(tmp_path / "n"),
                 "--quiet", "--no-plain-twin"]) == 0
    assert (tmp_path / "r" / "label_issues.csv").read_bytes() == (tmp_path / "n" / "label_issues.csv").read_bytes()


def test_overwriting_without_a_twin_removes_the_replaced_runs_twin(tmp_path):
    data = write_shells(tmp_path / "shells.npz", n=200)
    train(config(data, method="lr-m", epochs=3), run_dir=tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "plain-twin" / "result.json").exists()
    train(config(data, method="lr-m", epochs=3, plain_twin=False), run_dir=tmp_path / "r", overwrite=True,
          progress=False)
    assert not [p.name for p in (tmp_path / "r" / "plain-twin").iterdir()]
    assert "kept_model" not in json.loads((tmp_path / "r" / "result.json").read_text())
