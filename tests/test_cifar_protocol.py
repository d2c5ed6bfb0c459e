"""The CIFAR-10 path end to end on a tiny archive in the real format: protocol, every Table 1 method,
mixing at layers 0-4 of PreAct ResNet-18, resume, safe checkpoints, `reproduce cifar10`.

Everything runs on the CPU with a narrow network (width 0.0625: 4/8/16/32 channels) and 40 training
images, one thread (two threads on a shared, busy 2-core machine are slower than one).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from latentmix.data.cifar import load_cifar10
from latentmix.data.fake_cifar10 import write_fake_cifar10
from latentmix.experiments import paper
from latentmix.experiments.cifar import (
    FIGURE_METHODS,
    TABLE1_METHODS,
    cifar10_figure_grids,
    cifar10_table1_grid,
)
from latentmix.mixing import LatentMixer, MixPlan
from latentmix.models.preact_resnet import PreActResNet18
from latentmix.config import RunConfig
from latentmix.protocols import lr_at_epoch, protocol_for, PROTOCOLS
from latentmix.run_folder import CHECKPOINT_NAME
from latentmix.training import train

WIDTH = 0.0625
PER_BATCH, NUM_TEST = 8, 16  # 40 training images, 16 test images



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar10(root, num_train_per_batch=PER_BATCH, num_test=NUM_TEST, seed=1)
    return root


def _config(data_dir: Path, method: str, **changes) -> RunConfig:
    values = dict(dataset="cifar10", method=method, data_dir=str(data_dir), width=WIDTH, noise=0.5, epochs=2,
                  warmup_epochs=1, batch_size=16, device="cpu", seed=0)
    values.update(changes)
    return RunConfig(**values)


def _comparable(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in metrics]


# --------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------


def test_cifar10_protocol_matches_appendix_a() -> None:
    protocol = PROTOCOLS["cifar10"]
    assert (protocol.epochs, protocol.batch_size, protocol.lr) == (300, 128, 0.1)
    assert (protocol.momentum, protocol.weight_decay, protocol.lr_decay) == (0.9, 1e-4, 0.1)
    assert protocol.milestones == (100, 250) and protocol.alpha == 32.0 and protocol.warmup_epochs == 105
    # [A] steps its scheduler at the start of each epoch: the decay applies in the milestone epoch.
    lrs = {epoch: lr_at_epoch(protocol, epoch) for epoch in (1, 99, 100, 249, 250, 300)}
    assert lrs[1] == lrs[99] == pytest.approx(0.1)
    assert lrs[100] == lrs[249] == pytest.approx(0.01)
    assert lrs[250] == lrs[300] == pytest.approx(0.001)
    # --epochs scales milestones and warm-up in proportion.
    half = protocol_for(RunConfig(dataset="cifar10", epochs=150))
    assert half.milestones == (50, 125) and half.warmup_epochs == 52 and half.batch_size == 128


def test_grids_cover_table1_and_the_figure_runs() -> None:
    grid = cifar10_table1_grid(seeds=2, data_dir="d")
    runs = grid.runs()
    assert len(runs) == len(TABLE1_METHODS) * 4 * 2
    assert {r.method for r in runs} == set(TABLE1_METHODS) == set(paper.TABLE1_BEST)
    assert all(r.dataset == "cifar10" and r.data_dir == "d" and r.checkpoint for r in runs)
    figure_runs = [r for g in cifar10_figure_grids(seeds=1) for r in g.runs()]
    assert {(r.method, r.noise) for r in figure_runs} == {
        (m, n) for m, rates in FIGURE_METHODS.items() for n in rates}
    only_50 = [r for g in cifar10_figure_grids(seeds=1, noise_rates=(0.5,)) for r in g.runs()]
    assert [(r.method, r.noise) for r in only_50] == [("dlr-m-dyr-h", 0.5)]


# --------------------------------------------------------------------------------------------
# Mixing at each layer of PreAct ResNet-18
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1, 2, 3, 4])
def test_mixing_at_layer_k_changes_only_layer_k_and_later(layer: int) -> None:
    torch.manual_seed(0)
    model = PreActResNet18(num_classes=10, width=WIDTH).eval()  # eval: BN is per-sample, outputs comparable
    names = ("stem",) + model.mix_points  # stem output is not a mix point but must stay unchanged too
    x = torch.randn(6, 3, 32, 32)
    lam, perm = 0.3, torch.tensor([3, 0, 5, 1, 2, 4])

    def run(plan: MixPlan | None) -> tuple[dict, dict]:
        outputs, inputs = {}, {}
        handles = [model.get_submodule(n).register_forward_hook(
            lambda module, args, output, n=n: outputs.__setitem__(n, output.detach().clone())) for n in names]
        # What the next module receives: the (possibly mixed) output of the previous stage.
        handles += [model.get_submodule(n).register_forward_pre_hook(
            lambda module, args, n=n: inputs.__setitem__(n, args[0].detach().clone()))
            for n in ("stem",) + model.mix_points[1:] + ("linear",)]
        try:
            with torch.no_grad():
                outputs["logits"] = LatentMixer(model).forward(x, plan) if plan else model(x)
        finally:
            for handle in handles:
                handle.remove()
        return outputs, inputs

    plain, plain_in = run(None)
    mixed, mixed_in = run(MixPlan(layer=layer, lam=lam, perm=perm))
    mix = lambda h: lam * h + (1.0 - lam) * h[perm]  # noqa: E731
    close = dict(rtol=0, atol=1e-6)

    # Stages before layer k (and layer k's own module output, before the hook mixes it) are unchanged.
    for index, name in enumerate(names):  # index 0 = stem, k = layer k
        if layer >= 1 and index <= layer:
            torch.testing.assert_close(mixed[name], plain[name], **close)
    # What the following stage receives is exactly lam*h + (1-lam)*h[perm] of the plain h.
    if layer == 0:
        torch.testing.assert_close(mixed_in["stem"], mix(x), **close)
    elif layer < 4:
        next_name = model.mix_points[layer]
        torch.testing.assert_close(mixed_in[next_name], mix(plain[model.mix_points[layer - 1]]), **close)
    else:
        pooled = torch.nn.functional.avg_pool2d(mix(plain["layer4"]), 4).flatten(1)
        torch.testing.assert_close(mixed_in["linear"], pooled, **close)
        # pooling and the linear layer are affine: the logits are mixed too
        torch.testing.assert_close(mixed["logits"], mix(plain["logits"]), rtol=0, atol=1e-5)
    # Everything after layer k changes (at layer 0, the stem too).
    for name in names[layer + 1:] if layer >= 1 else names:
        assert not torch.allclose(mixed[name], plain[name], atol=1e-4)
    assert not torch.allclose(mixed["logits"], plain["logits"], atol=1e-4)


# --------------------------------------------------------------------------------------------
# Training every Table 1 method; resume; checkpoints
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", TABLE1_METHODS)
def test_every_table1_method_trains_and_bootstraps_in_epoch_2(data_dir: Path, method: str) -> None:
    result = train(_config(data_dir, method), progress=False)
    assert [row["epoch"] for row in result.metrics] == [1, 2]
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.metrics)
    corrects = method in ("m-dyr-s", "m-dyr-h", "lr-m-dyr-h")
    assert [row["bootstrapping"] for row in result.metrics] == [False, corrects]
    assert result.p_noisy.shape == (5 * PER_BATCH,)
    assert result.summary()["actual_noise_rate"] is not None


def test_resume_equals_an_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, "m-dyr-h", epochs=3)
    full = train(config, run_dir=tmp_path / "full", progress=False)

    def interrupt(row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "cut", progress=False, on_epoch_end=interrupt)
    assert not (tmp_path / "cut" / "result.json").exists()
    resumed = train(config, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert [row["bootstrapping"] for row in full.metrics] == [False, True, True]
    assert _comparable(resumed.metrics) == _comparable(full.metrics)
    assert (resumed.p_noisy == full.p_noisy).all()
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name

    # The checkpoint is plain tensors and containers: it loads with weights_only=True.
    state = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert state["epoch"] == 3 and len(state["metrics"]) == 3
    assert {"model", "optimizer", "streams", "noisy_labels", "noise_model"} <= set(state)


def test_tiny_archive_loads_as_cifar10(data_dir: Path) -> None:
    dataset = load_cifar10(data_dir)
    assert dataset.name == "cifar10" and dataset.train_inputs.dtype == torch.uint8
    assert dataset.train_inputs.shape == (5 * PER_BATCH, 3, 32, 32) and dataset.num_val == NUM_TEST


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def test_reproduce_cifar10_cli_writes_table_and_figure(data_dir: Path, tmp_path: Path, capsys) -> None:
    from latentmix.cli import main

    out = tmp_path / "out"
    code = main(["reproduce", "cifar10", "--data-dir", str(data_dir), "--epochs", "2", "--seeds", "1",
                 "--methods", "ce,m-dyr-h", "--noise", "0.2", "--width", str(WIDTH), "--device", "cpu",
                 "--out", str(out), "--quiet"])
    assert code == 0
    table = (out / "table.md").read_text()
    assert "| ce |" in table and "| m-dyr-h |" in table
    assert "(94.0)" in table and "(93.8)" in table  # the paper's M-DYR-H best / last at 20%
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["row"] for row in rows} == {"ce", "m-dyr-h"}
    assert float([r for r in rows if r["row"] == "ce"][0]["paper_best"]) == 86.8
    assert (out / "figure5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # m-dyr-h at 20%
    assert not (out / "figure3.png").exists()  # no 50% runs
    assert "2 runs" in capsys.readouterr().out
    # A second call finds the finished runs and redoes none.
    mtime = (out / "runs" / "ce_n0.2_s0" / "result.json").stat().st_mtime_ns
    assert main(["reproduce", "cifar10", "--data-dir", str(data_dir), "--epochs", "2", "--seeds", "1",
                 "--methods", "ce,m-dyr-h", "--noise", "0.2", "--width", str(WIDTH), "--device", "cpu",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "runs" / "ce_n0.2_s0" / "result.json").stat().st_mtime_ns == mtime


def test_table_footnote_for_the_papers_last_at_0_percent(tmp_path: Path) -> None:
    from latentmix.experiments.cifar import write_table

    results = [{"row": "lr-m-dyr-h", "noise": 0.0, "best_val_acc": 0.9, "last_val_acc": 0.89}]
    text = write_table(results, tmp_path, (0.0,), ["lr-m-dyr-h"], seeds=1, epochs=2, width=1.0)
    assert "(84.6†)" in text and "typo" in text and "(94.5)" in text


def test_reproduce_cifar10_needs_data(tmp_path: Path, capsys) -> None:
    from latentmix.cli import main

    assert main(["reproduce", "cifar10", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_reproduce_cifar10_with_a_missing_folder_is_one_error_before_the_grid(tmp_path: Path, capsys) -> None:
    from latentmix.cli import main

    out = tmp_path / "out"
    assert main(["reproduce", "cifar10", "--data-dir", str(tmp_path / "nowhere"), "--seeds", "1", "--out", str(out),
                 "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("CIFAR-10 not found at") == 1 and captured.err.count("\n") == 1  # one line
    assert captured.out == "" and not any(out.rglob("*.md")) and not (out / "runs").exists()  # no runs, no tables


def test_figures_option_adds_the_figure_methods_and_draws_figure3(data_dir: Path, tmp_path: Path) -> None:
    import argparse

    from latentmix.experiments.cifar import reproduce_cifar10

    args = argparse.Namespace(target="cifar10", seeds=1, epochs=2, alpha=None, noise="0.5", out=str(tmp_path),
                              sequential=True, methods="m-dyr-h", data_dir=str(data_dir), width=WIDTH,
                              device="cpu", quiet=True, figures=True, download=False)
    assert reproduce_cifar10(args) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["dlr-m-dyr-h_n0.5_s0", "m-dyr-h_n0.5_s0"]
    assert (tmp_path / "figure3.png").exists() and not (tmp_path / "figure4.png").exists()
    assert "| dlr-m-dyr-h |" in (tmp_path / "table.md").read_text()
