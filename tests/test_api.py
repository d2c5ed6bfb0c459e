"""The Python API (`latentmix.fit` and the top-level re-exports) and bring-your-own data through
``latentmix train --data FILE`` (docs/data.md)."""

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

import latentmix
from latentmix.cli import main
from latentmix.errors import ConfigError


class GRUEncoder(nn.Module):
    """(N, T, E) -> (N, H): the GRU's last hidden state."""

    def __init__(self, embed_dim, hidden):
        super().__init__()
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True)

    def forward(self, x):
        _, h = self.gru(x)
        return h[-1]


class TinyText(nn.Module):
    """Embedding -> GRU -> Linear; mix points at the embedding output and the encoder output."""

    mix_points = ("embed", "encoder")

    def __init__(self, vocab=12, embed_dim=16, hidden=24, num_classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed_dim)
        self.encoder = GRUEncoder(embed_dim, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)))


def token_task(n, seed, length=10, vocab=12):
    """Class = which of the tokens 1, 2, 3 occurs most often (ties to the lowest)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, vocab, size=(n, length))
    labels = rng.integers(0, 3, size=n)
    for i, label in enumerate(labels):
        positions = rng.choice(length, size=4, replace=False)
        tokens[i, positions[:3]] = label + 1
        tokens[i, positions[3]] = rng.integers(1, 4)
    counts = np.stack([(tokens == k).sum(1) for k in (1, 2, 3)], axis=1)
    return torch.from_numpy(tokens), torch.from_numpy(counts.argmax(1))


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return TinyText(**kwargs)


def test_fit_text_model_with_synthetic_noise():
    x, y = token_task(384, seed=0)
    xv, yv = token_task(128, seed=1)
    result = latentmix.fit(_model(), x, y, val_inputs=xv, val_labels=yv, method="lr-m-dyr-h", layers="1-2",
                           epochs=6, batch_size=32, lr=0.1, noise=0.2, seed=0, device="cpu", progress=False)
    assert len(result.metrics) == 6
    assert result.p_noisy.shape == (384,) and np.all((result.p_noisy >= 0) & (result.p_noisy <= 1))
    assert result.is_noisy is not None and 0.1 < result.is_noisy.mean() < 0.25
    assert result.method.mix_layers == (1, 2) and result.method.correction == "hard"
    assert result.metrics[-1]["detection_auc"] is not None
    assert any(row["bootstrapping"] for row in result.metrics)
    assert result.best_val_acc > 0.5  # three classes: chance is 1/3
    summary = result.summary()
    assert summary["dataset"] == "custom" and summary["noise"] == 0.2


def test_fit_refuses_mixing_token_ids():
    x, y = token_task(64, seed=0)
    with pytest.raises(ConfigError, match="integer token ids"):
        latentmix.fit(_model(), x, y, val_inputs=x, val_labels=y, method="lr-m-dyr-h", epochs=1, device="cpu",
                      progress=False)


def test_fit_numpy_inputs_clean_labels_and_run_dir(tmp_path):
    x, y = token_task(96, seed=0)
    noisy = y.numpy().copy()
    noisy[:20] = (noisy[:20] + 1) % 3
    result = latentmix.fit(_model(), x.numpy(), noisy, val_inputs=x.numpy()[:32], val_labels=y.numpy()[:32],
                           clean_labels=y.numpy(), method="lr-m", mix_points=["embed", "encoder"], layers=[1, 2],
                           epochs=2, batch_size=16, device="cpu", run_dir=tmp_path / "run", progress=False,
                           alpha=1.0)
    np.testing.assert_array_equal(result.noisy_labels, noisy)
    np.testing.assert_array_equal(result.is_noisy, noisy != y.numpy())
    assert result.method.alpha == 1.0
    for name in ("config.json", "metrics.csv", "result.json", "label_issues.csv"):
        assert (tmp_path / "run" / name).exists()


def test_fit_ce_without_mix_points():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(40, 4)
    y = (x[:, 0] > 0).long()
    result = latentmix.fit(model, x, y, val_inputs=x, val_labels=y, method="ce", epochs=2, device="cpu",
                           progress=False)
    assert result.noisy_labels.shape == (40,) and result.is_noisy is None  # no clean reference
    with pytest.raises(ConfigError, match="mix_points"):
        latentmix.fit(model, x, y, val_inputs=x, val_labels=y, method="lr-m", epochs=1, device="cpu", progress=False)
    # mix points by name work on any module
    result = latentmix.fit(model, x, y, val_inputs=x, val_labels=y, method="lr-m", mix_points=["1"], layers="0-1",
                           epochs=1, device="cpu", progress=False)
    assert result.method.mix_layers == (0, 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"train_labels": np.zeros(5)}, "length mismatch"),
    ({"clean_labels": np.zeros(8), "noise": 0.2}, "not both"),
    ({"train_labels": np.full(8, 0.5)}, "integer class ids"),
    ({"train_labels": -np.ones(8)}, ">= 0"),
    ({"num_classes": 1}, "num_classes"),
    ({"noise": 1.5}, r"\[0, 1\]"),
    ({"epochs": 2, "seed": 1, "dataset": "x"}, "fit\\(\\) sets dataset"),
    ({"nonsense": 1}, "unknown run setting"),
])
def test_fit_errors(kwargs, match):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    args = {"train_labels": np.arange(8) % 2}
    args.update(kwargs)
    labels = args.pop("train_labels")
    with pytest.raises(ConfigError, match=match):
        latentmix.fit(nn.Linear(3, 2), x, labels, val_inputs=x, val_labels=np.arange(8) % 2, method="ce",
                      device="cpu", progress=False, **args)


def _separable(n=80, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def test_fit_with_your_optimizer_and_scheduler_factories():
    """Factories for an Adam optimizer and a halving StepLR: the run's lr is the optimizer's, halved
    after every epoch (the protocol's lr 0.05 and its milestones are not applied)."""
    x, y = _separable()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    built = []

    def adam(params):
        built.append(torch.optim.Adam(params, lr=0.01))
        return built[-1]

    result = latentmix.fit(model, x, y, val_inputs=x, val_labels=y, method="lr-m", mix_points=["1"], layers="0-1",
                           epochs=3, device="cpu", progress=False, optimizer=adam,
                           scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    assert [row["lr"] for row in result.metrics] == [0.01, 0.005, 0.0025]
    assert built and all("exp_avg" in state for state in built[0].state.values())  # Adam took the steps
    assert len(built[0].state) == len(list(model.parameters()))


def test_fit_with_an_optimizer_instance_and_its_errors():
    x, y = _separable()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.5)
    result = latentmix.fit(model, x, y, val_inputs=x, val_labels=y, method="ce", epochs=2, device="cpu",
                           progress=False, optimizer=optimizer)
    assert [row["lr"] for row in result.metrics] == [0.02, 0.02]  # no schedule: the optimizer's lr throughout
    assert all("momentum_buffer" in state for state in optimizer.state.values())
    args = dict(val_inputs=x, val_labels=y, method="ce", epochs=1, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="none of the model's parameters"):
        latentmix.fit(model, x, y, optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), **args)
    with pytest.raises(ConfigError, match="set them on it"):
        latentmix.fit(model, x, y, optimizer=optimizer, lr=0.1, **args)
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="another optimizer"):
        latentmix.fit(model, x, y, optimizer=optimizer,
                      scheduler=torch.optim.lr_scheduler.StepLR(other, step_size=1), **args)
    with pytest.raises(ConfigError, match="optimizer must be"):
        latentmix.fit(model, x, y, optimizer="adam", **args)


def test_a_run_with_your_scheduler_resumes_exactly(tmp_path):
    """Kill after epoch 2 of 4 and resume: the scheduler's state comes back with the checkpoint, so
    the lr and every metric equal the uninterrupted run's."""
    from latentmix.config import RunConfig
    from latentmix.training import train

    x, y = _separable(120)
    dataset = latentmix.dataset_from_tensors(x[:100], y[:100], x[100:], y[100:], noise=0.2)
    config = RunConfig(dataset="custom", method="m-dyr-h", warmup_epochs=1, epochs=4, noise=0.2, device="cpu")
    factories = dict(optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
                     scheduler=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3], gamma=0.5))

    def run(folder, **kwargs):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        return train(config, dataset=dataset, model=model, mix_points=(), run_dir=folder, progress=False,
                     **factories, **kwargs)

    full = run(tmp_path / "full")

    def stop_after_2(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", on_epoch_end=stop_after_2)
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed.metrics == full.metrics
    assert [row["lr"] for row in full.metrics] == pytest.approx([0.1, 0.1, 0.1, 0.05])  # counts epochs from 1
    assert (tmp_path / "cut" / "result.json").read_bytes() == (tmp_path / "full" / "result.json").read_bytes()


def test_top_level_exports():
    from latentmix import BetaMixture, LatentMixer, Method, PRESETS, fit, get_method, make_noisy_labels

    assert callable(fit) and "lr-m-dyr-h" in PRESETS and isinstance(get_method("m"), Method)
    assert LatentMixer.__name__ == "LatentMixer" and BetaMixture.__name__ == "BetaMixture"
    noisy = make_noisy_labels(torch.arange(10) % 2, 2, rate=0.5, seed=0)
    assert noisy.labels.shape == (10,)
    assert set(latentmix.__all__) >= {"fit", "LatentMixer", "Method", "make_noisy_labels", "BetaMixture",
                                      "LatentMixup", "LossCorrection", "track_losses"}
    with pytest.raises(AttributeError):
        latentmix.no_such_thing


# --------------------------------------------------------------------------------------------
# latentmix train --data FILE (docs/data.md)


def _features(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0.5)
    return x, y


def _train(tmp_path, *extra):
    out = tmp_path / "run"
    code = main(["train", *extra, "--epochs", "2", "--out", str(out), "--device", "cpu", "--quiet"])
    return code, out


def test_train_data_npz_end_to_end(tmp_path):
    x, y = _features()
    np.savez(tmp_path / "my.npz", features=x, labels=y)
    code, out = _train(tmp_path, "--data", str(tmp_path / "my.npz"), "--noise", "0.2", "--method", "lr-m-dyr-h")
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 2 and result["noise"] == 0.2 and result["dataset"] == "my"
    assert result["detection_auc"] is None  # labels without a clean reference: nothing to score against


def test_train_data_npz_with_clean_labels(tmp_path):
    x, y = _features()
    noisy = y.copy()
    noisy[::4] = (noisy[::4] + 1) % 4
    np.savez(tmp_path / "real.npz", features=x, labels=noisy, clean_labels=y)
    code, out = _train(tmp_path, "--data", str(tmp_path / "real.npz"), "--method", "m-dyr-h")
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["detection_auc"] is not None and 0.15 < result["actual_noise_rate"] < 0.35


def test_train_data_with_noisy_labels_file(tmp_path):
    x, y = _features()
    noisy = y.copy()
    noisy[1::5] = (noisy[1::5] + 1) % 4
    np.savez(tmp_path / "clean.npz", features=x, labels=y)
    np.save(tmp_path / "noisy.npy", noisy)
    code, out = _train(tmp_path, "--data", str(tmp_path / "clean.npz"), "--noisy-labels", str(tmp_path / "noisy.npy"))
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["detection_auc"] is not None and 0.1 < result["actual_noise_rate"] < 0.3
    with (out / "label_issues.csv").open() as handle:
        issues = list(csv.DictReader(handle))
    assert list(issues[0]) == ["index", "split", "given_label", "p_noisy", "loss", "predicted_label", "truly_noisy"]
    # every row of the user's file is listed once, by its row number in the file, with the label the
    # file gives it (the rows of the validation split included)
    rows = [int(row["index"]) for row in issues]
    assert sorted(rows) == list(range(len(y)))
    assert all(int(row["given_label"]) == noisy[int(row["index"])] for row in issues)
    assert all(int(row["truly_noisy"]) == int(noisy[int(row["index"])] != y[int(row["index"])]) for row in issues)
    assert {row["split"] for row in issues} == {"train", "val"}
    # most suspicious first: P(noisy) descending, ties broken by the loss descending
    keys = [(float(row["p_noisy"]), float(row["loss"])) for row in issues]
    assert keys == sorted(keys, reverse=True)


def test_train_data_csv(tmp_path):
    x, y = _features(60)
    rows = ["a,b,c,d,e,label"] + [",".join(f"{v:.4f}" for v in row) + f",{label}" for row, label in zip(x, y)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    code, out = _train(tmp_path, "--data", str(tmp_path / "t.csv"), "--noise", "0.1")
    assert code == 0 and (out / "result.json").exists()


def test_train_data_malformed_file_is_a_clear_error(tmp_path, capsys):
    x, y = _features()
    np.savez(tmp_path / "bad.npz", features=x[:100], labels=y)
    code, _ = _train(tmp_path, "--data", str(tmp_path / "bad.npz"))
    assert code == 2
    assert "length mismatch" in capsys.readouterr().err
