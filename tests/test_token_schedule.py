"""The default token model's own schedule (issue 24, item 0): plain CE on clean token ids must
learn at the schedule a user's file gets, and a token model that dies at a bad learning rate is
flagged with the learning rate as the likely cause (docs/robust-defaults.md, "The token model")."""

import json

import numpy as np
import pytest

from latentmix.cli import main
from latentmix.config import RunConfig
from latentmix.protocols import protocol_for


def keyword_tokens(n: int, seed: int, length: int = 40, classes: int = 8, keywords: int = 12,
                   filler: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The robustness suite's `tokens` construction (benchmarks/robustness_suite.py): each class has
    `keywords` ids; a sequence holds 3 of its own class's, 2 of other classes' and filler ids,
    shuffled. Bag-of-words logistic regression separates it (100% on the suite's 1,000)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    rows = []
    for label in labels:
        own = filler + label * keywords + rng.integers(0, keywords, 3)
        other = rng.choice([c for c in range(classes) if c != label], 2)
        foreign = filler + other * keywords + rng.integers(0, keywords, 2)
        rows.append(rng.permutation(np.concatenate([own, foreign, rng.integers(0, filler, length - 5)])))
    return np.asarray(rows, dtype=np.int64), labels


def _train_ce(tmp_path, name, x, y, xv, yv, *extra) -> tuple[dict, list[dict]]:
    np.savez(tmp_path / f"{name}.npz", tokens=x, labels=y, val_tokens=xv, val_labels=yv)
    out = tmp_path / name
    assert main(["train", "--data", str(tmp_path / f"{name}.npz"), "--method", "ce", "--device", "cpu",
                 "--out", str(out), "--quiet", *extra]) == 0
    with (out / "metrics.csv").open() as handle:
        header, *rows = [line.strip().split(",") for line in handle]
    return json.loads((out / "result.json").read_text()), [dict(zip(header, row)) for row in rows]


def test_token_ids_get_the_token_models_schedule_and_other_files_keep_theirs():
    """lr 0.01 / batch 32 for the text model on a user's file; the MLP keeps the arrays protocol's
    0.05 / 64 and the CNN its 0.01 / 64; --lr and --batch-size still win."""
    text = protocol_for(RunConfig(data="mine.npz"), "text")
    assert (text.lr, text.batch_size, text.epochs) == (0.01, 32, 50)
    mlp = protocol_for(RunConfig(data="mine.npz"), "mlp")
    assert (mlp.lr, mlp.batch_size) == (0.05, 64)
    cnn = protocol_for(RunConfig(data="mine.npz"), "small-cnn")
    assert (cnn.lr, cnn.batch_size) == (0.01, 64)
    mine = protocol_for(RunConfig(data="mine.npz", lr=0.3, batch_size=8), "text")
    assert (mine.lr, mine.batch_size) == (0.3, 8)


@pytest.mark.slow
def test_plain_ce_learns_clean_keyword_tokens_at_the_default_schedule(tmp_path):
    """The suite's token task on clean labels as the suite runs it (`--val-split 0.1`: the 100
    held-out labels select and end early learning, as in a file without a validation set; the
    `val_*` set only scores), nothing else set but --method ce: the selected checkpoint well above
    chance (1/8). Measured with the default token model (convolution widths 1 and 3): 74.3% (seed
    0; 78.1% seed 1). Width 3 alone, the model before, selected 57.8% (56.9%) at this schedule and
    26.9% (31.6%) at the `arrays` protocol's lr 0.05 / batch 64: its kernel-3 windows carry two
    random filler ids with every keyword (docs/robust-defaults.md, "The token model")."""
    x, y = keyword_tokens(2000, seed=8)
    summary, metrics = _train_ce(tmp_path, "tokens", x[:1000], y[:1000], x[1000:], y[1000:], "--val-split", "0.1")
    assert metrics[0]["lr"] == "0.01"
    assert summary["selected_val_acc"] > 0.68 and summary["training_note"] is None


def test_a_token_model_dead_at_a_high_learning_rate_is_flagged_with_the_learning_rate(tmp_path, capsys):
    """At lr 0.5 the token model's ReLUs die within an epoch or two: a constant prediction, the
    training loss flat at log C. The run says it never left chance and names the learning rate."""
    x, y = keyword_tokens(600, seed=3, classes=4)
    summary, metrics = _train_ce(tmp_path, "dead", x[:400], y[:400], x[400:], y[400:], "--lr", "0.5", "--epochs", "12")
    losses = [float(row["train_loss"]) for row in metrics]
    assert abs(losses[-1] - np.log(4)) < 0.05  # flat at the loss of a uniform prediction over 4 classes
    note = summary["training_note"]
    assert note.startswith("the model was never told apart from chance")
    assert "learning rate" in note and "--lr" in note
    assert "note: the model was never told apart from chance" in capsys.readouterr().out
