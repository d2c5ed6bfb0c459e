"""`latentmix.selection`: decisions made without clean labels, checked on hand-computed cases, and
what `train` does with them (selected checkpoint, automatic warm-up, label issues, noise estimate)."""

import csv
import json

import numpy as np
import pytest
import torch

from data_helpers import three_noisy_classes
from latentmix.errors import ConfigError
from latentmix.selection import (
    clearly_above,
    early_learning_end, estimate_noise_rate, estimate_rows, flagged_confusion, flagged_share, holdout_split,
    learnt_from, never_learnt, noise_estimate_doubt, ranking_order, selected_epoch, separation,
)


def test_holdout_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    train, held = holdout_split(labels, 0.1, seed=3)
    assert len(held) == 10 and len(train) == 90 and not set(train) & set(held)
    assert sorted(np.concatenate([train, held])) == list(range(100))
    assert np.bincount(labels[held], minlength=4).tolist() == [4, 3, 2, 1]  # 10% of each class
    assert np.array_equal(held, holdout_split(labels, 0.1, seed=3)[1])
    assert not np.array_equal(held, holdout_split(labels, 0.1, seed=4)[1])
    train0, held0 = holdout_split(labels, 0.0, seed=3)
    assert len(held0) == 0 and np.array_equal(train0, np.arange(100))


@pytest.mark.parametrize("fraction", [0.5, -0.1, 0.001])
def test_holdout_split_refuses_bad_fractions(fraction):
    with pytest.raises(ConfigError, match="--val-split"):
        holdout_split(np.arange(20) % 2, fraction, seed=0)


def _rows(select, fit=None, flagged=None):
    return [{"epoch": i + 1, "select_acc": s, "train_acc_noisy": None if fit is None else fit[i],
             "flagged_share": None if flagged is None else flagged[i]} for i, s in enumerate(select)]


def _end(rows, **options):
    decision = early_learning_end(rows, **options)
    return None if decision is None else decision.epoch


def test_early_learning_ends_when_noisy_validation_stops_improving():
    # best at epoch 3; epochs 4, 5, 6 do not beat it: patience 3 is used up at epoch 6
    rows = _rows([0.3, 0.4, 0.5, 0.5, 0.45, 0.49, 0.6])
    assert _end(rows, patience=2) == 5  # used up at epoch 5
    assert _end(rows, patience=3) == 6
    assert _end(rows, patience=4) is None  # epoch 7 improves again
    assert _end(rows[:5], patience=3) is None
    assert "stopped improving (best 0.500 at epoch 3" in early_learning_end(rows).reason


def test_a_training_fit_beyond_the_held_out_one_does_not_end_early_learning():
    """A hard task opens a gap between training and held-out agreement before any label is
    memorised (the suite's 1-D signal: 0.31 vs 0.25 at epoch 1): the gap is no end signal; only a
    plateau of the held-out accuracy (or the first lr decay) is."""
    rows = _rows([0.25, 0.30, 0.35, 0.40, 0.42, 0.44], fit=[0.31, 0.40, 0.50, 0.60, 0.70, 0.80])
    assert _end(rows, holdout_size=400, chance=0.17) is None


def test_a_barely_trained_network_cannot_end_early_learning():
    # ten classes, the most common 0.12 of the held-out labels; 100 held-out samples. The old rule
    # (train_acc_noisy > 1 - flagged_share) fired at epoch 5 on a network at 0.33 that flags 79%.
    # Here the held-out accuracy must first exceed 0.12 + 2 se: at 0.14, se = 0.0347, 0.14 < 0.189
    rows = _rows([0.13, 0.14, 0.14, 0.13, 0.14, 0.14], fit=[0.5] * 6, flagged=[0.79] * 6)
    assert _end(rows, holdout_size=100, chance=0.12) is None
    assert _end(rows, holdout_size=100, chance=0.12, latest=4) is None  # not even at the first lr decay
    assert _end(rows, holdout_size=100, chance=0.12, patience=3) is None  # flat at chance is no plateau
    assert never_learnt(rows, holdout_size=100, chance=0.12).startswith("the model was never told apart from chance")
    # once it has learnt (0.30 > 0.12 + 2 sqrt(0.3 * 0.7 / 100) = 0.212), the plateau counts
    learnt = _rows([0.13, 0.30, 0.31, 0.31, 0.30, 0.30])
    assert _end(learnt, holdout_size=100, chance=0.12) == 6 and never_learnt(learnt, holdout_size=100, chance=0.12) is None
    assert _end(learnt, holdout_size=100, chance=0.12, latest=4) == 4


def test_early_learning_without_a_selection_signal_ends_at_the_first_lr_decay():
    rows = _rows([None] * 6, fit=[0.3, 0.5, 0.65, 0.69, 0.68, 0.8], flagged=[0.3] * 6)
    assert _end(rows) is None
    assert _end(rows, latest=4) == 4
    assert early_learning_end(rows, latest=4).reason == "the first lr decay (epoch 4)"


def test_noise_estimate_doubts_follow_from_what_the_estimate_claims():
    rows = [{"epoch": e, "select_acc": s, "flagged_share": f, "separation": 0.3}
            for e, s, f in [(1, 0.2, 0.9), (2, 0.3, 0.85), (3, 0.33, 0.83), (4, 0.34, 0.82), (5, 0.35, 0.82)]]
    # 82.5% wrong would leave at most 17.5% of the held-out labels right; the model agrees with 35%
    # (2 se on 400 samples: 0.048): impossible
    doubt = noise_estimate_doubt(rows, 0.825, 5, holdout_size=400)
    assert doubt is not None and "0.350 of the held-out given labels" in doubt and "0.175" in doubt
    assert noise_estimate_doubt(rows, 0.6, 5, holdout_size=400) is None  # 0.35 < 0.4 + 0.048: possible
    assert noise_estimate_doubt(rows, 0.825, 5, holdout_size=400, holdout_is_noisy=False) is None  # clean val: no bound
    assert "never ended" in noise_estimate_doubt(rows, 0.6, None, holdout_size=400)
    collapsed = [{**row, "separation": 0.0} for row in rows]
    assert "no two groups" in noise_estimate_doubt(collapsed, 0.6, 5, holdout_size=400)
    assert noise_estimate_doubt(rows, None, 5) is None


def test_a_split_scored_against_clean_labels_bounds_the_estimate_by_its_given_labels():
    """A user's split scored against a clean-label column still has the file's given labels, as
    noisy as the training ones: the model's agreement with them bounds the estimate as a noisy
    holdout does."""
    rows = [{"epoch": e, "select_acc": 0.6, "select_acc_given": g, "flagged_share": 0.16, "separation": 0.3}
            for e, g in [(1, 0.85), (2, 0.88), (3, 0.90), (4, 0.89), (5, 0.89)]]
    # 16% wrong leaves at most 0.84 right; 0.90 > 0.84 + 2 sqrt(0.9 * 0.1 / 300) = 0.8746
    doubt = noise_estimate_doubt(rows, 0.16, 5, holdout_size=300, holdout_is_noisy=False)
    assert doubt is not None and "0.900 of the held-out given labels" in doubt and "0.840" in doubt
    # 0.90 < 0.88 + 0.035: possible for 12%
    assert noise_estimate_doubt(rows, 0.12, 5, holdout_size=300, holdout_is_noisy=False) is None


def test_an_estimate_below_what_the_network_already_fits_is_doubted():
    """While the flagged share counts the labels the network has not learnt, it agrees with at most
    the 1 - r right ones; a median training agreement above 1 - r + 2 se over the estimate's
    epochs (3-5 here) means the network had learnt wrong labels the count misses, or r is too
    high. Epochs outside the estimate's window do not count."""
    fits = [(1, 0.40), (2, 0.70), (3, 0.84), (4, 0.90), (5, 0.86), (6, 0.99), (7, 0.99)]
    rows = [{"epoch": e, "select_acc": 0.3, "train_acc_noisy": a, "flagged_share": 0.2, "separation": 0.3}
            for e, a in fits]
    # median of 0.84, 0.90, 0.86 = 0.86 > 0.80 + 2 sqrt(0.86 * 0.14 / 1000) = 0.8219
    doubt = noise_estimate_doubt(rows, 0.2, 5, holdout_size=400, train_size=1000)
    assert doubt is not None and "agreed with 0.860 of its training labels" in doubt and "0.800" in doubt
    # an estimate of 15% leaves 0.85 right: 0.86 < 0.85 + 0.0219, within 2 se, no doubt
    assert noise_estimate_doubt(rows, 0.15, 5, holdout_size=400, train_size=1000) is None
    # with 50 samples the margin is 2 sqrt(0.86 * 0.14 / 50) = 0.098: 0.86 < 0.80 + 0.098
    assert noise_estimate_doubt(rows, 0.2, 5, holdout_size=400, train_size=50) is None
    # the window's own epochs fit 0.5: the 0.99 of epochs 6-7, after early learning, do not count
    early = [{**row, "train_acc_noisy": 0.5} if row["epoch"] in (3, 4, 5) else row for row in rows]
    assert noise_estimate_doubt(early, 0.2, 5, holdout_size=400, train_size=1000) is None


def test_an_estimate_from_a_network_not_yet_above_chance_is_doubted():
    """A count of the labels a network has not learnt means nothing while it has learnt next to
    none: over the estimate's epochs (3-5) a median validation accuracy within 2 s.e. of chance
    doubts it, whatever the epochs before or after did."""
    rows = [{"epoch": e, "select_acc": a, "flagged_share": 0.6, "separation": 0.3}
            for e, a in [(1, 0.12), (2, 0.17), (3, 0.15), (4, 0.14), (5, 0.16), (6, 0.30)]]
    # median 0.15 <= 0.11 + 2 sqrt(0.15 * 0.85 / 300) = 0.1512
    doubt = noise_estimate_doubt(rows, 0.6, 5, holdout_size=300, chance=0.11)
    assert doubt is not None and "median validation accuracy 0.150" in doubt and "(0.110" in doubt
    # on 3,000 samples the margin is 0.0130: 0.15 > 0.123, told apart from chance
    assert noise_estimate_doubt(rows, 0.6, 5, holdout_size=3000, chance=0.11) is None
    assert noise_estimate_doubt(rows, 0.6, 5, holdout_size=300) is None  # no chance level: no test
    # 0.152 > 0.11 + 2 sqrt(0.152 * 0.848 / 300) = 0.15146; 0.151 < 0.11 + 0.04134 = 0.15134
    assert clearly_above(0.152, 0.11, 300) and not clearly_above(0.151, 0.11, 300)


def test_an_estimate_from_fewer_than_three_epochs_is_doubted():
    """The median over the early-learning epochs is there to shrug off one odd epoch; of two or one
    epochs it cannot (`MEDIAN_EPOCHS`). Epochs 1-2 never count, so early learning that ends at
    epoch 4 leaves two; a fit that found no two groups leaves one fewer."""
    rows = [{"epoch": e, "select_acc": 0.3, "flagged_share": f, "separation": 0.3}
            for e, f in [(1, 0.9), (2, 0.5), (3, 0.24), (4, 0.23), (5, 0.25)]]
    doubt = noise_estimate_doubt(rows, 0.235, 4, holdout_size=400)
    assert doubt is not None and "rests on 2 epochs (3, 4)" in doubt and "fewer than the 3" in doubt
    assert noise_estimate_doubt(rows, 0.24, 5, holdout_size=400) is None  # 3 epochs that agree: no doubt
    one_fit = [{**row, "separation": 0.0} if row["epoch"] in (3, 4) else row for row in rows]
    assert "rests on 1 epoch (5)" in noise_estimate_doubt(one_fit, 0.25, 5, holdout_size=400)
    # the rows it rests on are the estimate's own
    assert [int(r["epoch"]) for r in estimate_rows(one_fit, 5)] == [5]
    assert estimate_noise_rate(rows, 4) == pytest.approx(0.235)


def test_selected_epoch_is_the_first_of_equal_maxima():
    assert selected_epoch(_rows([0.2, 0.5, 0.4, 0.5]), window=1) == 2
    assert selected_epoch(_rows([None, None])) is None


def test_selected_epoch_breaks_ties_of_equal_fractions_by_the_first_epoch_whatever_the_rounding():
    # a run of the robustness suite (`few` class30, CE, seed 0), 50 held-out samples: epochs 10-12
    # score 0.62, 0.74, 0.74, 0.62, so the 3-epoch means of epochs 11 and 12 are both 105/150 = 0.7;
    # summed in the two orders, metrics.csv's values made epoch 12's mean the larger by one ulp
    csv_values = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.62, 0.74, 0.74, 0.62]
    assert selected_epoch(_rows(csv_values)) == 11
    float32_values = [float(np.float32(k / 50)) for k in (25,) * 8 + (31, 37, 37, 31)]
    assert selected_epoch(_rows(float32_values)) == 11
    # a mean higher by one sample of 3 x 50 (1/150) still wins
    assert selected_epoch(_rows(csv_values[:-1] + [0.64])) == 12


def test_selected_epoch_matches_exact_fractions_read_as_a_run_and_as_metrics_csv():
    from fractions import Fraction
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.choice([20, 50, 100, 300, 2000]))
        epochs = int(rng.integers(1, 40))
        # counts near each other, so that equal trailing sums are common
        counts = np.clip(int(rng.integers(0, n)) + rng.integers(-2, 3, size=epochs), 0, n)
        exact = [sum(Fraction(int(k), n) for k in counts[max(0, i - 2):i + 1]) / len(counts[max(0, i - 2):i + 1])
                 for i in range(epochs)]
        expected = 1 + max(range(epochs), key=lambda i: (exact[i], -i))
        as_run = [float(np.float32(int(k) / n)) for k in counts]  # the run's float32 accuracies
        as_csv = [float(f"{value:.6g}") for value in as_run]  # what metrics.csv holds
        assert selected_epoch(_rows(as_run)) == expected, (trial, n, counts)
        assert selected_epoch(_rows(as_csv)) == expected, (trial, n, counts)


def test_selected_epoch_averages_the_trailing_window():
    # one lucky early epoch (0.6) against a steady later plateau (0.5, 0.5, 0.5): trailing means of
    # 3 are 0.1, 0.35, 0.3667 (0.1, 0.6, 0.4), 0.5 (0.6, 0.4, 0.5), 0.4667, 0.5 (0.5, 0.5, 0.5)
    rows = _rows([0.1, 0.6, 0.4, 0.5, 0.5, 0.5])
    assert selected_epoch(rows, window=1) == 2
    assert selected_epoch(rows) == 4  # 0.5 first reached at epoch 4 (ties: the first)
    assert selected_epoch(_rows([0.1, 0.6, 0.2, 0.2, 0.5, 0.55, 0.55])) == 7  # means 0.1, 0.35, 0.3, 0.3333, 0.3, 0.4167, 0.5333


def test_separation_hand_computed():
    # losses 0 < 1 < 2 < 3 have ranks 0, 1/3, 2/3, 1; the top two flagged: w = 1/2, means 1/6 and 5/6,
    # between = 1/4 * (2/3)^2 = 1/9, var = 5/36, eta^2 = 4/5
    assert separation(np.array([0.0, 0.0, 1.0, 1.0]), np.array([3.0, 1.0, 7.0, 9.0]) - 1) == pytest.approx(0.8)
    assert separation(np.zeros(4), np.arange(4.0)) == 0.0  # a collapsed fit separates nothing
    assert separation(np.ones(4), np.arange(4.0)) == 0.0
    # a split whose two sides have the same mean loss separates nothing; nor one that flags the low losses
    assert separation(np.array([1.0, 0.0, 0.0, 1.0]), np.arange(4.0)) == 0.0
    assert separation(np.array([1.0, 1.0, 0.0, 0.0]), np.arange(4.0)) == 0.0
    # interleaved: means 1/3 and 2/3 -> 1/4 * 1/9 / (5/36) = 1/5
    assert separation(np.array([0.0, 1.0, 0.0, 1.0]), np.arange(4.0)) == pytest.approx(1 / 5)


def test_noise_estimate_is_the_median_flagged_share_of_early_learning():
    rows = [{"epoch": e, "flagged_share": v} for e, v in enumerate([0.9, 0.7, 0.38, 0.40, 0.36, 0.1], start=1)]
    assert estimate_noise_rate(rows, learning_end=5) == pytest.approx(0.38)  # epochs 3-5; epochs 1, 2 left out
    assert estimate_noise_rate(rows, learning_end=6) == pytest.approx(0.37)  # median of .38 .40 .36 .1
    assert estimate_noise_rate(rows[:1], learning_end=1) == pytest.approx(0.9)


def test_noise_estimate_leaves_out_collapsed_fits():
    # epochs 3 and 4 collapsed (separation 0, nothing flagged): the median of epoch 5 alone
    shares, seps = [0.9, 0.7, 0.0, 0.0, 0.30, 0.28, 0.2], [0.3, 0.4, 0.0, 0.0, 0.5, 0.5, 0.4]
    rows = [{"epoch": e, "flagged_share": v, "separation": s} for e, (v, s) in enumerate(zip(shares, seps), start=1)]
    assert estimate_noise_rate(rows, learning_end=5) == pytest.approx(0.30)
    assert estimate_noise_rate(rows, learning_end=6) == pytest.approx(0.29)  # median of .30 .28
    # the whole early-learning window collapsed: the first separating epoch after it
    assert estimate_noise_rate(rows, learning_end=4) == pytest.approx(0.30)
    # nothing ever separated (clean labels, say): the window's shares, all 0
    flat = [{"epoch": e, "flagged_share": 0.0, "separation": 0.0} for e in range(1, 8)]
    assert estimate_noise_rate(flat, learning_end=5) == 0.0
    assert flagged_share(np.array([0.2, 0.6, 0.51, 0.5])) == 0.5


def test_flagged_confusion_and_ranking():
    given = np.array([0, 0, 1, 2, 2])
    predicted = np.array([1, 0, 2, 1, 1])
    counts = flagged_confusion(given, predicted, np.array([0, 3, 4]), num_classes=3)
    assert counts == [[0, 1, 0], [0, 0, 0], [0, 2, 0]]
    # P(noisy) descending, ties by the loss descending
    order = ranking_order(np.array([0.5, 0.9, 0.5, 0.5]), np.array([1.0, 0.1, 3.0, 2.0]))
    assert order.tolist() == [1, 2, 3, 0]


# --------------------------------------------------------------------------------------------
# in a run


def test_user_file_run_selects_by_noisy_validation_and_starts_bootstrapping_by_itself(tmp_path, monkeypatch):
    import latentmix.training as training
    from latentmix.models import build_model
    from latentmix.data import load_dataset
    from latentmix.config import RunConfig
    from latentmix.training import train

    # every epoch's P(noisy) as the noise model gives it, recorded on the way past
    posteriors = []
    original_view = training.epoch_view

    def recording_view(*args):
        view = original_view(*args)
        posteriors.append(view["p_noisy"].numpy().copy())
        return view

    monkeypatch.setattr(training, "epoch_view", recording_view)

    x, y, noisy = three_noisy_classes(600)  # 60 held out: enough to tell the model from chance (24 are not)
    xt, yt, _ = three_noisy_classes(120, seed=1)
    path = tmp_path / "mine.npz"
    np.savez(path, features=x, labels=noisy, clean_labels=y, val_features=xt, val_labels=yt)
    # the file's val_* arrays are a clean test set; 10% of the noisy training data selects the checkpoint
    config = RunConfig(dataset="mine", data=str(path), method="lr-m-dyr-h", layers="0-1", epochs=12, seed=0,
                       val_split=0.1, plain_twin=False)
    result = train(config, run_dir=tmp_path / "run", progress=False)
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    summary = json.loads((tmp_path / "run" / "result.json").read_text())

    # selected = test accuracy at the epoch of the best noisy-validation accuracy averaged over it
    # and the two epochs before (first of equal maxima), computed here by hand
    select = [float(r["select_acc"]) for r in rows]
    trailing = [sum(select[max(0, i - 2):i + 1]) / len(select[max(0, i - 2):i + 1]) for i in range(len(select))]
    pick = trailing.index(max(trailing))
    assert summary["selected_epoch"] == pick + 1
    assert summary["selected_val_acc"] == pytest.approx(float(rows[pick]["val_acc"]), abs=1e-6)
    # the label issues come from the epoch of the single best noisy-validation accuracy, each
    # sample's P(noisy) averaged over the epochs up to it (every epoch is tracked here)
    kept = select.index(max(select)) + 1
    assert summary["label_issues_epoch"] == kept and len(posteriors) == len(rows)
    np.testing.assert_allclose(result.p_noisy[~result.holdout], np.mean(posteriors[:kept], axis=0)[~result.holdout],
                               rtol=1e-6, atol=1e-9)
    # ... and selected_model.pt holds that epoch's weights: they give that test accuracy again
    dataset = load_dataset("arrays", data_path=str(path))
    model = build_model(None, dataset)
    model.load_state_dict(torch.load(tmp_path / "run" / "selected_model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        acc = (model(dataset.eval_transform(dataset.val_inputs)).argmax(1) == dataset.val_labels).float().mean()
    assert float(acc) == pytest.approx(summary["selected_val_acc"], abs=1e-6)

    # the automatic warm-up: bootstrapping switches on once, after the epoch whose signals ended early
    # learning: a plateau of the held-out accuracy or the first lr decay (epoch 6 of 12 in the scaled
    # protocol), and only if by then the network agreed with its training labels more than with the
    # held-out ones (it had begun to memorise); the run says which
    flags = [r["bootstrapping"] == "True" for r in rows]
    reason = summary["bootstrap_start_reason"]
    if True not in flags:  # it had not begun to memorise: never started, and the gap it read says why
        assert summary["bootstrap_start_epoch"] is None and reason.startswith("not started: early learning ended: ")
        end = int(reason.split("at the end of early learning (epoch ")[1].split(")")[0])
        row = rows[end - 1]
        assert float(row["train_acc_noisy"]) <= float(row["select_acc"])
        assert f"{float(row['train_acc_noisy']):.3f} vs {float(row['select_acc']):.3f}" in reason
        assert summary["correction_kept"] is None
    else:
        start = flags.index(True) + 1
        assert flags == [False] * (start - 1) + [True] * (len(flags) - start + 1)
        assert summary["bootstrap_start_epoch"] == start and start <= 7
        end = start - 1
        assert float(rows[end - 1]["train_acc_noisy"]) > float(rows[end - 1]["select_acc"])
        assert reason.startswith("early learning ended: ") and "begun to memorise" in reason
        # the guard: the corrected phase is kept only if the selected epoch is in it
        assert summary["correction_kept"] == (summary["selected_epoch"] >= start)
    best_before = max(select[:end])
    plateau = select.index(best_before) + 1 <= end - 3
    assert ("stopped improving" in reason and plateau) or ("the first lr decay (epoch 6)" in reason and end == 6)

    # every training row of the file is scored; the estimate of the wrong-label share is near the truth,
    # or the run doubts it
    assert summary["estimated_noise_rate"] == pytest.approx(summary["actual_noise_rate"], abs=0.1) or \
        summary["noise_estimate_doubt"]
    assert result.holdout.sum() == round(0.1 * len(y)) and len(result.p_noisy) == len(y)
    assert summary["detection_auc"] > 0.8
    assert summary["true_noise_pairs"] and all(a != b for a, b, _ in summary["true_noise_pairs"])


def test_a_collapsed_noise_model_is_reported_and_does_not_switch_bootstrapping_off(tmp_path, capsys, monkeypatch):
    """From epoch 3 on the noise model is fitted to constant losses, so it collapses (the same
    P(noisy) for every sample, as input mixup on noisy spirals does in many epochs): the run says
    so, bootstrapping keeps the last fit that separated, and the label issues rank by the loss."""
    import latentmix.run_setup as run_setup
    from latentmix.cli import main
    from latentmix.run_folder import RunFolder

    real_fit, calls = run_setup.fit_run_noise_model, []

    def collapsing_fit(config, losses):
        calls.append(1)
        return real_fit(config, losses if len(calls) < 3 else torch.zeros_like(losses))

    monkeypatch.setattr(run_setup, "fit_run_noise_model", collapsing_fit)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "spiral", "--method", "m-dyr-h", "--warmup-epochs", "1", "--noise", "0.3",
                 "--epochs", "5", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "result.json").read_text())
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["separation"]) == 0.0 for r in rows] == [False, False, True, True, True]
    assert summary["noise_model_collapsed_epochs"] == 3 and "in 3 of 5 epochs the noise model found no two" in printed
    # the checkpoint's noise model, the one bootstrapping used, is the last that separated (epoch 2's)
    kept = RunFolder(out).load_checkpoint()["noise_model"]["state"]
    assert not kept["degenerate"]
    assert summary["label_issues_epoch"] in (1, 2)
    with (out / "label_issues.csv").open() as handle:
        issues = list(csv.DictReader(handle))
    keys = [(float(r["p_noisy"]), float(r["loss"])) for r in issues]
    assert keys == sorted(keys, reverse=True)


def test_population_runs_write_label_issues_that_detect_accepts(tmp_path, capsys):
    """The vectorized grid writes the same label_issues.csv (with the loss column, ranked by P(noisy)
    then loss), which `detect` uses as it is (a run trained in a population has no checkpoint to
    rebuild it from)."""
    from latentmix.cli import main

    out = tmp_path / "grid"
    assert main(["reproduce", "spiral", "--seeds", "1", "--epochs", "3", "--methods", "ce", "--noise", "0.2",
                 "--out", str(out), "--quiet"]) == 0
    run = next((out / "runs").iterdir())
    with (run / "label_issues.csv").open() as handle:
        issues = list(csv.DictReader(handle))
    keys = [(float(r["p_noisy"]), float(r["loss"])) for r in issues]
    assert keys == sorted(keys, reverse=True) and sorted(int(r["index"]) for r in issues) == list(range(len(issues)))
    capsys.readouterr()
    assert main(["detect", str(run), "--top", "1"]) == 0
    assert f"of {len(issues)} labels have P(noisy)" in capsys.readouterr().out


def test_run_log_keeps_the_warm_ups_label_view_for_the_guard():
    """When bootstrapping starts, the label view the warm-up left is kept aside: if the correction
    does not beat the warm-up, the run's label issues are that view (training.Run.finish)."""
    from latentmix.run_log import RunLog

    model = torch.nn.Linear(1, 1)
    log = RunLog()
    # warm-up epochs 1-3 (best 0.6 at epoch 2), corrected epochs 4-5 (0.7 at epoch 5)
    for epoch, acc, corrected in [(1, 0.5, False), (2, 0.6, False), (3, 0.55, False), (4, 0.5, True), (5, 0.7, True)]:
        view = {"separation": 0.1, "p_noisy": torch.full((3,), float(epoch)), "val_p_noisy": None}
        log.add({"epoch": epoch, "select_acc": acc, "bootstrapping": corrected}, view, model)
        if epoch == 3:
            assert log.warmup_snapshot is None
    assert log.warmup_snapshot["epoch"] == 2  # the warm-up's best, averaged over epochs 1-2
    assert float(log.warmup_snapshot["p_noisy"][0]) == pytest.approx(1.5)
    assert log.snapshot["epoch"] == 5  # the corrected phase's best


def test_run_log_keeps_the_weights_of_the_selected_epoch_and_the_label_view_of_the_best_one():
    # noisy-validation accuracy with a lucky single epoch (3) before a better stretch (5-7): the
    # trailing 3-epoch means are .40 .45 .50 .50 .57 .63 .68 .63 -> epoch 7 is the one a user
    # keeps; the single best epoch (6) gives the label issues
    from latentmix.run_log import RunLog

    select = [0.40, 0.50, 0.60, 0.40, 0.70, 0.80, 0.55, 0.55]
    model = torch.nn.Linear(1, 1)
    log = RunLog()
    for epoch, acc in enumerate(select, start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)  # the weights say which epoch they are from
        view = {"separation": 0.1 * epoch, "p_noisy": torch.full((3,), float(epoch)), "val_p_noisy": None}
        log.add({"epoch": epoch, "select_acc": acc}, view, model)
    assert selected_epoch(log.metrics) == 7
    assert float(log.selected_state["weight"]) == 7.0
    # the label view is epoch 6's, its P(noisy) the mean over epochs 1..6: (1 + ... + 6) / 6
    assert log.snapshot["epoch"] == 6 and float(log.snapshot["p_noisy"][0]) == pytest.approx(3.5)


def test_a_run_that_trains_plainly_averages_the_plain_epochs_posteriors_only():
    """After `restart_posterior_mean` (a run that trains plainly from the end of early learning),
    the label view's P(noisy) is the mean over the epochs from the restart on, by hand."""
    from latentmix.run_log import RunLog

    model = torch.nn.Linear(1, 1)
    log = RunLog()
    # epochs 1-3 with mixing (P(noisy) 1, 2, 3), then plain training from epoch 4 (P(noisy) 4..6);
    # noisy-validation accuracy rises throughout, so each epoch's view is kept in turn
    for epoch in range(1, 7):
        if epoch == 4:
            log.restart_posterior_mean()
        view = {"separation": 0.1, "p_noisy": torch.full((3,), float(epoch)), "val_p_noisy": None}
        log.add({"epoch": epoch, "select_acc": 0.1 * epoch}, view, model)
        if epoch == 3:
            assert float(log.snapshot["p_noisy"][0]) == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert log.snapshot["epoch"] == 6
    assert float(log.snapshot["p_noisy"][0]) == pytest.approx(5.0)  # (4 + 5 + 6) / 3, not 3.5
    assert log.snapshot["first_epoch"] == 4


def test_learnt_from_is_the_first_epoch_told_apart_from_chance_by_hand():
    # chance 0.2 on 100 held-out samples: 0.28 is within 2 se of it (2 * sqrt(.28 * .72 / 100) =
    # 0.0898: it would need > 0.2898), 0.30 is beyond (> 0.2 + 0.0917); a later dip does not undo it
    rows = [{"epoch": 1, "select_acc": 0.22}, {"epoch": 2, "select_acc": 0.28}, {"epoch": 3, "select_acc": 0.30},
            {"epoch": 4, "select_acc": 0.21}]
    assert learnt_from(rows, holdout_size=100, chance=0.2) == 3
    assert learnt_from(rows[:2], holdout_size=100, chance=0.2) is None
    # 400 samples: 2 se of 0.28 is 0.0449, so epoch 2 already tells it apart
    assert learnt_from(rows, holdout_size=400, chance=0.2) == 2
    # no selection split, no chance level: every epoch counts
    assert learnt_from([{"epoch": 1, "select_acc": None}], holdout_size=None, chance=None) == 1


def test_the_label_view_averages_the_epochs_from_the_first_told_apart_from_chance():
    """Epochs before the network is told apart from chance (`learnt_from`) stay out of the mean
    P(noisy) of the label issues; until one is, the kept view is the epoch's own. By hand: chance
    0.2 on 100 samples, noisy-validation accuracy 0.22, 0.28, 0.30, 0.35 (told apart from epoch 3),
    P(noisy) equal to the epoch number."""
    from latentmix.run_log import RunLog

    model = torch.nn.Linear(1, 1)
    log = RunLog(holdout_size=100, chance=0.2)
    kept = []
    for epoch, acc in [(1, 0.22), (2, 0.28), (3, 0.30), (4, 0.35)]:
        view = {"separation": 0.1, "p_noisy": torch.full((3,), float(epoch)), "val_p_noisy": None}
        log.add({"epoch": epoch, "select_acc": acc}, view, model)
        kept.append((float(log.snapshot["p_noisy"][0]), log.snapshot["first_epoch"]))
    # epochs 1-2: each its own view; 3: its own, the mean's first; 4: (3 + 4) / 2, not (1 + 2 + 3 + 4) / 4
    assert kept == [(1.0, 1), (2.0, 2), (3.0, 3), (3.5, 3)]
    # without a chance level (a RunLog of your own loop) every epoch counts, as before
    log = RunLog()
    for epoch, acc in [(1, 0.22), (2, 0.28), (3, 0.30), (4, 0.35)]:
        log.add({"epoch": epoch, "select_acc": acc}, {"separation": 0.1, "p_noisy": torch.full((3,), float(epoch)),
                                                      "val_p_noisy": None}, model)
    assert float(log.snapshot["p_noisy"][0]) == pytest.approx(2.5) and log.snapshot["first_epoch"] == 1
