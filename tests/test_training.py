"""The training loop: schedule, learning, determinism, run folder, resume, noise handling."""

import csv
import json

import numpy as np
import pytest
import torch

from latentmix.data import Dataset
from latentmix.data.spiral import load_spiral
from latentmix.errors import ConfigError
from latentmix.config import RunConfig
from latentmix.protocols import lr_at_epoch, Protocol, PROTOCOLS
from latentmix.run_folder import METRIC_FIELDS
from latentmix.training import train



def _small_spiral(n=200):
    return load_spiral(num_train=n, num_val=n)


def _config(**kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("dataset", "spiral")
    return RunConfig(**kwargs)


def _comparable(metrics):
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in metrics]


# ------------------------------------------------------------------------------------------------
# schedule


def test_lr_schedule_of_the_reference():
    protocol = PROTOCOLS["cifar10"]
    assert protocol.epochs == 300 and protocol.lr == pytest.approx(0.1)
    expected = {1: 0.1, 99: 0.1, 100: 0.01, 101: 0.01, 249: 0.01, 250: 0.001, 300: 0.001}
    for epoch, lr in expected.items():
        assert lr_at_epoch(protocol, epoch) == pytest.approx(lr, rel=1e-12), epoch


def test_protocol_scaling():
    scaled = PROTOCOLS["cifar10"].scaled(30)
    assert scaled.epochs == 30
    assert scaled.milestones == (10, 25)
    assert scaled.warmup_epochs == round(105 * 0.1)
    assert lr_at_epoch(scaled, 9) == pytest.approx(0.1)
    assert lr_at_epoch(scaled, 10) == pytest.approx(0.01)
    assert lr_at_epoch(scaled, 25) == pytest.approx(0.001)
    assert PROTOCOLS["cifar10"].scaled(300) == PROTOCOLS["cifar10"]
    tiny = Protocol(epochs=300, batch_size=8, lr=1.0, milestones=(100, 250)).scaled(2)
    assert all(m >= 1 for m in tiny.milestones)


# ------------------------------------------------------------------------------------------------
# learning and determinism


def test_short_ce_run_learns_clean_spirals():
    # measured: best val acc 0.99-1.00 for seeds 0-2 (chance is 0.5)
    result = train(_config(method="ce", epochs=40, noise=0.0, seed=0), progress=False)
    assert len(result.metrics) == 40
    assert result.best_val_acc > 0.9
    assert result.metrics[-1]["train_acc_noisy"] > 0.9
    assert result.is_noisy is not None and not result.is_noisy.any()
    assert "detection_auc" not in result.metrics[-1]  # no noisy labels, nothing to detect


def test_same_seed_same_metrics_other_seed_different():
    runs = [train(_config(method="lr-m", epochs=3, noise=0.2, seed=seed), dataset=_small_spiral(), progress=False)
            for seed in (0, 0, 1)]
    assert _comparable(runs[0].metrics) == _comparable(runs[1].metrics)
    np.testing.assert_array_equal(runs[0].p_noisy, runs[1].p_noisy)
    assert _comparable(runs[0].metrics) != _comparable(runs[2].metrics)
    assert not np.array_equal(runs[0].noisy_labels, runs[2].noisy_labels)


# ------------------------------------------------------------------------------------------------
# run folder


def test_run_folder_contents(tmp_path):
    run_dir = tmp_path / "run"
    result = train(_config(method="m", epochs=4, noise=0.3, seed=2), dataset=_small_spiral(), run_dir=run_dir,
                   progress=False)
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.csv", "result.json", "label_issues.csv"}

    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["method"] == "m"
    assert config["config"]["noise"] == 0.3

    with (run_dir / "metrics.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert reader.fieldnames == [name for name in METRIC_FIELDS if name not in ("test_acc", "select_acc_given")]  # optional: not measured here
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]

    summary = json.loads((run_dir / "result.json").read_text())
    val_accs = [float(row["val_acc"]) for row in rows]
    assert summary["best_val_acc"] == pytest.approx(max(val_accs))
    assert summary["last_val_acc"] == pytest.approx(val_accs[-1])
    assert summary["best_epoch"] == int(np.argmax(val_accs)) + 1
    assert summary["best_val_acc"] == pytest.approx(result.best_val_acc)

    with (run_dir / "label_issues.csv").open() as handle:
        issues = list(csv.DictReader(handle))
    assert len(issues) == 200
    p_noisy = [float(row["p_noisy"]) for row in issues]
    assert p_noisy == sorted(p_noisy, reverse=True)
    assert len(set(p_noisy)) > 1
    assert sorted(int(row["index"]) for row in issues) == list(range(200))
    # given labels in the file are the run's noisy labels
    for row in issues[:20]:
        assert int(row["given_label"]) == int(result.noisy_labels[int(row["index"])])
        assert int(row["truly_noisy"]) == int(result.is_noisy[int(row["index"])])


# ------------------------------------------------------------------------------------------------
# resume


def _resume_config():
    return _config(method="m-dyr-h", warmup_epochs=2, epochs=6, noise=0.3, seed=3)


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    full = train(_resume_config(), dataset=_small_spiral(), run_dir=tmp_path / "a", progress=False)
    assert [row["bootstrapping"] for row in full.metrics] == [False, False, True, True, True, True]

    def interrupt(row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_resume_config(), dataset=_small_spiral(), run_dir=tmp_path / "b", progress=False,
              on_epoch_end=interrupt)
    assert not (tmp_path / "b" / "result.json").exists()
    with (tmp_path / "b" / "metrics.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 3

    seen = []
    resumed = train(_resume_config(), dataset=_small_spiral(), run_dir=tmp_path / "b", resume=True, progress=False,
                    on_epoch_end=lambda row: seen.append(row["epoch"]))
    assert seen == [4, 5, 6]  # only the missing epochs were trained
    assert _comparable(resumed.metrics) == _comparable(full.metrics)
    np.testing.assert_array_equal(resumed.p_noisy, full.p_noisy)
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_unreadable_checkpoint_is_a_config_error(tmp_path):
    run_dir = tmp_path / "run"
    config = _config(method="ce", epochs=2)

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, dataset=_small_spiral(), run_dir=run_dir, progress=False, on_epoch_end=interrupt)
    (run_dir / "checkpoint.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConfigError, match=r"checkpoint.pt is corrupt: its sha256 differs"):
        train(config, dataset=_small_spiral(), run_dir=run_dir, resume=True, progress=False)


# ------------------------------------------------------------------------------------------------
# noisy labels: detection and memorisation


def _gaussian_clusters(seed, n=400, dim=32, classes=4, separation=3.0):
    """Well-separated Gaussian clusters in 32 dimensions: easy to learn, and easy to memorise noise in."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    centers *= separation / np.linalg.norm(centers, axis=1, keepdims=True)

    def draw(m):
        labels = np.arange(m) % classes
        points = centers[labels] + rng.normal(size=(m, dim))
        return torch.tensor(points, dtype=torch.float32), torch.tensor(labels)

    train_x, train_y = draw(n)
    val_x, val_y = draw(n)
    return Dataset(name="clusters", train_inputs=train_x, train_labels=train_y, val_inputs=val_x,
                   val_labels=val_y, num_classes=classes)


NOISY_EPOCHS, NOISY_WARMUP = 16, 6


@pytest.fixture(scope="module")
def noisy_runs():
    runs = {}
    for seed in (0, 1, 2):
        for method in ("ce", "m-dyr-h"):
            config = _config(dataset="clusters", method=method, noise=0.4, epochs=NOISY_EPOCHS,
                             warmup_epochs=NOISY_WARMUP, lr=0.05, batch_size=32, seed=seed)
            runs[method, seed] = train(config, dataset=_gaussian_clusters(seed), progress=False)
    return runs


def test_noise_detection_after_warmup(noisy_runs):
    # measured AUC at the end of warm-up (epoch 6): CE 0.81-0.86, M-DYR-H 0.89-0.96;
    # M-DYR-H at the last epoch 0.97-0.99
    for (method, seed), result in noisy_runs.items():
        assert result.is_noisy.mean() > 0.25  # 40% relabelled uniformly over 4 classes: ~30% wrong
        assert result.metrics[NOISY_WARMUP - 1]["detection_auc"] > 0.7, (method, seed)
    for seed in (0, 1, 2):
        metrics = noisy_runs["m-dyr-h", seed].metrics
        assert [row["bootstrapping"] for row in metrics] == [False] * NOISY_WARMUP + [True] * (NOISY_EPOCHS - NOISY_WARMUP)
        assert metrics[-1]["detection_auc"] > 0.85


def test_hard_bootstrapping_memorises_less_than_ce(noisy_runs):
    # measured (last epoch, seeds 0/1/2): agreement with the noisy labels CE 0.985/0.998/0.988,
    # M-DYR-H 0.74/0.735/0.743; clean-label train accuracy CE 0.73/0.715/0.697, M-DYR-H 0.91/0.95/0.875
    for seed in (0, 1, 2):
        ce = noisy_runs["ce", seed].metrics
        boot = noisy_runs["m-dyr-h", seed].metrics
        assert boot[-1]["train_acc_noisy"] < ce[-1]["train_acc_noisy"] - 0.1, seed
        assert boot[-1]["train_acc_clean"] > ce[-1]["train_acc_clean"] + 0.05, seed
        # after warm-up, bootstrapping keeps the agreement with the noisy labels from growing
        assert boot[-1]["train_acc_noisy"] < boot[NOISY_WARMUP - 1]["train_acc_noisy"] + 0.05, seed
        assert noisy_runs["m-dyr-h", seed].last_val_acc > noisy_runs["ce", seed].last_val_acc, seed


# ------------------------------------------------------------------------------------------------
# inputs and options


def _token_dataset():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 20, (48, 6), generator=generator)
    labels = (tokens[:, 0] >= 10).long()
    return Dataset(name="tokens", train_inputs=tokens[:32], train_labels=labels[:32], val_inputs=tokens[32:],
                   val_labels=labels[32:], num_classes=2)


def test_integer_tokens_with_input_mixing_fail_before_training(tmp_path):
    epochs_run = []
    with pytest.raises(ConfigError, match="integer"):
        train(_config(dataset="tokens", method="m", epochs=1), dataset=_token_dataset(), run_dir=tmp_path / "run",
              progress=False, on_epoch_end=epochs_run.append)
    assert epochs_run == []
    assert not (tmp_path / "run").exists()
    # hidden layers of the same model are fine
    result = train(_config(dataset="tokens", method="lr-m", layers="1-3", epochs=1), dataset=_token_dataset(),
                   progress=False)
    assert len(result.metrics) == 1


def test_bootstrap_forward_single(tmp_path):
    kwargs = dict(method="m-dyr-h", warmup_epochs=1, epochs=3, noise=0.3, seed=1)
    single = train(_config(bootstrap_forward="single", **kwargs), dataset=_small_spiral(), progress=False)
    assert [row["bootstrapping"] for row in single.metrics] == [False, True, True]
    assert all(np.isfinite(row["train_loss"]) for row in single.metrics)
    # SpiralMLP has no batch norm or dropout: train- and eval-mode forwards agree, so "single"
    # and "reference" must train identically
    reference = train(_config(bootstrap_forward="reference", **kwargs), dataset=_small_spiral(), progress=False)
    assert _comparable(single.metrics) == _comparable(reference.metrics)
    with pytest.raises(ConfigError, match="bootstrap_forward"):
        train(_config(bootstrap_forward="double", **kwargs), dataset=_small_spiral(), progress=False)


def test_bootstrap_forward_tracked_takes_targets_from_the_previous_epochs_pass():
    kwargs = dict(method="m-dyr-h", warmup_epochs=1, epochs=4, noise=0.3, seed=1, lr=0.1)
    tracked = train(_config(bootstrap_forward="tracked", **kwargs), dataset=_small_spiral(), progress=False)
    assert [row["bootstrapping"] for row in tracked.metrics] == [False, True, True, True]
    assert all(np.isfinite(row["train_loss"]) for row in tracked.metrics)
    single = train(_config(bootstrap_forward="single", **kwargs), dataset=_small_spiral(), progress=False)
    assert _comparable(tracked.metrics[:1]) == _comparable(single.metrics[:1])  # warm-up: same steps
    # targets one epoch old: the runs part once the model moves between passes
    assert [row["train_loss"] for row in tracked.metrics[2:]] != [row["train_loss"] for row in single.metrics[2:]]
    # With a vanishing lr the model does not change, so the previous epoch's pass predicts what
    # each step's own extra forward would: the two modes must then train on the same targets.
    frozen = dict(kwargs, lr=1e-9)
    tracked = train(_config(bootstrap_forward="tracked", **frozen), dataset=_small_spiral(), progress=False)
    single = train(_config(bootstrap_forward="single", **frozen), dataset=_small_spiral(), progress=False)
    for a, b in zip(tracked.metrics, single.metrics):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def _bootstrapping_loss_by_hand(logits, y, clean_logits, w, lam, perm, correction, reg_weight) -> float:
    """The M-DYR-H / M-DYR-S training loss in plain Python, from its definition ([A]; `lam` weights
    the un-permuted side): target rows t_i = (1 - w_i) onehot(y_i) + w_i b_i with b_i the onehot of
    argmax(clean_i) (hard) or softmax(clean_i) (soft); loss = -mean_i sum_c m_ic log softmax(out_i)_c
    with m_i = lam t_i + (1 - lam) t_perm(i), plus reg_weight sum_c (1/C) log((1/C) / mean_i softmax(out_i)_c)."""
    import math

    def softmax(row):
        exps = [math.exp(v - max(row)) for v in row]
        return [e / sum(exps) for e in exps]

    classes = len(logits[0])
    rows = []
    for label, clean, weight in zip(y, clean_logits, w):
        own = ([1.0 if c == max(range(classes), key=lambda k: clean[k]) else 0.0 for c in range(classes)]
               if correction == "hard" else softmax(clean))
        rows.append([(1 - weight) * (c == label) + weight * own[c] for c in range(classes)])
    probs = [softmax(row) for row in logits]
    nll = -sum(sum((lam * rows[i][c] + (1 - lam) * rows[perm[i]][c]) * math.log(probs[i][c]) for c in range(classes))
               for i in range(len(logits))) / len(logits)
    mean_prediction = [sum(p[c] for p in probs) / len(probs) for c in range(classes)]
    regularizer = sum((1 / classes) * math.log((1 / classes) / mean_prediction[c]) for c in range(classes))
    return nll + reg_weight * regularizer


def test_the_step_loss_from_logits_or_from_given_rows_is_the_formula_by_hand():
    """The loss `train`'s step takes (`LossCorrection.loss`, on rows that `bootstrap_targets`
    builds from the clean logits and P(noisy), or on rows given) must be the loss of its
    definition, computed by hand."""
    from latentmix.correction import LossCorrection
    from latentmix.losses import bootstrap_targets
    from latentmix.methods import get_method
    from latentmix.mixing import MixPlan

    torch.manual_seed(0)
    logits, clean_logits = torch.randn(6, 3), torch.randn(6, 3)
    y, p_noisy = torch.tensor([0, 1, 2, 0, 1, 2]), torch.rand(6)
    perm = [3, 4, 5, 0, 1, 2]
    plan = MixPlan(layer=1, lam=0.7, perm=torch.tensor(perm))
    for name in ("m-dyr-h", "m-dyr-s"):
        method = get_method(name)
        correction = LossCorrection(6, correction=method.correction, reg_weight=method.reg_weight,
                                    soft_side_weighting=method.soft_side_weighting)
        by_hand = _bootstrapping_loss_by_hand(logits.tolist(), y.tolist(), clean_logits.tolist(), p_noisy.tolist(),
                                              plan.lam, perm, method.correction, method.reg_weight)
        built = correction.loss(logits, y, plan, bootstrap_targets(y, clean_logits, p_noisy, method.correction))
        assert built.item() == pytest.approx(by_hand, rel=1e-5)
        # the same rows given, written out by hand: t_i = (1 - w_i) onehot(y_i) + w_i b_i
        own = (torch.eye(3)[clean_logits.argmax(dim=1)] if method.correction == "hard"
               else torch.softmax(clean_logits, dim=1))
        rows = (1 - p_noisy)[:, None] * torch.eye(3)[y] + p_noisy[:, None] * own
        given = correction.loss(logits, y, plan, rows)
        assert given.item() == pytest.approx(by_hand, rel=1e-5)


def test_eval_mode_switches_every_module_and_back():
    from torch import nn

    from latentmix.correction import _all_modules, eval_mode

    shared = nn.Dropout(0.5)
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.BatchNorm1d(3), shared), shared)
    model.register_module("absent", None)
    assert {id(m) for m in _all_modules(model)} == {id(m) for m in model.modules()}
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())


class _FrozenBatchNormModel(torch.nn.Module):
    """The fine-tuning idiom: a pretrained backbone whose batch norm stays frozen (eval mode, its
    running statistics fixed) whenever the model is put in train mode."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        self.mix_points = ["backbone", "head.1"]
        self.train_calls = 0

    def train(self, mode: bool = True):
        self.train_calls += 1
        super().train(mode)
        self.backbone[1].eval()
        return self

    def forward(self, x):
        return self.head(self.backbone(x))


def test_eval_mode_keeps_a_frozen_batch_norm_frozen():
    from latentmix.correction import eval_mode

    model = _FrozenBatchNormModel().train()
    calls = model.train_calls
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.train_calls > calls  # the model's own train() ran, on entry (eval) and on exit
    assert not model.backbone[1].training
    assert all(m.training for m in model.modules() if m is not model.backbone[1])


def test_eval_mode_restores_each_module_to_its_own_previous_mode():
    from torch import nn

    from latentmix.correction import eval_mode

    plain = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5), nn.BatchNorm1d(3))
    plain.train()
    plain[2].eval()  # set apart by hand, no override involved
    with eval_mode(plain):
        assert not any(m.training for m in plain.modules())
    assert [m.training for m in plain] == [True, True, False] and plain.training
    plain.eval()  # a model already in eval mode stays there
    with eval_mode(plain):
        pass
    assert not any(m.training for m in plain.modules())
    overriding = _FrozenBatchNormModel().eval()
    with eval_mode(overriding):
        pass
    assert not any(m.training for m in overriding.modules())


def test_bootstrapping_leaves_a_frozen_batch_norm_untouched():
    """A whole run whose bootstrapping switches to eval mode twice per batch: the frozen batch
    norm's running statistics are those it started with (an eval_mode that set every module back
    to training unfroze it, and the statistics drifted)."""
    import latentmix

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(240, 4, generator=generator) * 3 + 1
    y = (x[:, 0] > 1).long() + (x[:, 1] > 1).long()
    torch.manual_seed(0)
    model = _FrozenBatchNormModel()
    batch_norm = model.backbone[1]
    before = (batch_norm.running_mean.clone(), batch_norm.running_var.clone(), int(batch_norm.num_batches_tracked))
    result = latentmix.fit(model, x[:200], y[:200], val_inputs=x[200:], val_labels=y[200:], method="lr-m-dyr-h",
                           layers="1-2", epochs=3, warmup_epochs=1, batch_size=20, device="cpu", progress=False)
    assert any(row["bootstrapping"] for row in result.metrics)
    assert not batch_norm.training
    assert torch.equal(batch_norm.running_mean, before[0]) and torch.equal(batch_norm.running_var, before[1])
    assert int(batch_norm.num_batches_tracked) == before[2]


@pytest.mark.parametrize("bootstrap_forward", ["reference", "tracked"])
def test_train_is_the_own_loop_of_the_readme(bootstrap_forward):
    """`train` is the plain loop a user writes with `LatentMixup` and `LossCorrection` over a
    DataLoader-shaped tracking pass: that loop, written here from the run's streams and schedule,
    ends in the very same weights (one implementation of the method)."""
    from torch.utils.data import DataLoader, TensorDataset

    import latentmix
    from latentmix.data.spiral import load_spiral
    from latentmix.protocols import lr_at_epoch, protocol_for
    from latentmix.run_setup import build_run_model, make_labels, RunStreams
    from latentmix.training import batch_indices

    dataset = load_spiral(num_train=150, num_val=40)
    config = RunConfig(dataset="spiral", method="lr-m-dyr-h", warmup_epochs=1, epochs=3, noise=0.3, seed=5,
                       device="cpu", bootstrap_forward=bootstrap_forward, checkpoint=False)
    expected = train(config, dataset=dataset, progress=False).model.state_dict()

    protocol = protocol_for(config)
    labels = make_labels(config, dataset).labels
    inputs, everyone = dataset.train_inputs, torch.arange(len(labels))
    model = build_run_model(config, dataset).train()
    streams = RunStreams.from_seed(config.seed, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum)
    mixup = latentmix.LatentMixup(model, layers=config.resolved_method().mix_layers, alpha=protocol.alpha,
                                  seed=streams.mixing)
    correction = latentmix.LossCorrection(len(labels), correction="hard", warmup_epochs=1,
                                          class_prior=latentmix.class_shares(dataset.train_labels, dataset.num_classes),
                                          bootstrap_forward=bootstrap_forward)
    tracking_loader = DataLoader(TensorDataset(inputs, labels, everyone), batch_size=protocol.eval_batch_size)
    for epoch in range(1, protocol.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at_epoch(protocol, epoch)
        batches = batch_indices(everyone, protocol.batch_size, streams.order)
        mixup.start_epoch(len(batches), protocol.batch_size)
        for index in batches:
            x, y = inputs[index], labels[index]
            targets = correction.batch_targets(model, x, y, index)
            logits, plan = mixup(x)
            loss = correction.loss(logits, y, plan, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        tracked = latentmix.track_losses(model, tracking_loader)
        correction.observe(tracked.index, tracked.losses, tracked.logits, tracked.labels)
        correction.end_epoch()
    assert correction.bootstrapping
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
