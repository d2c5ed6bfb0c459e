"""The Fashion-MNIST targets (`reproduce fashion-mnist`, `reproduce multimodal`) and the image+tokens set,
on tiny IDX files written here (the real data set is never needed)."""

import csv
import json

import numpy as np
import pytest
import torch

from latentmix.cli import main
from latentmix.data.idx import load_mnist_like, write_idx
from latentmix.data.multimodal import image_tokens, load_fashion_multimodal, multimodal_from_images
from latentmix.errors import ConfigError
from latentmix.experiments.fashion import (
    FASHION_METHODS, fashion_grid, multimodal_grid, prepare_fashion_subset,
)
from latentmix.naming import run_id
from latentmix.config import RunConfig
from latentmix.protocols import protocol_for, PROTOCOLS
from latentmix.training import train


def _write_fashion_like(folder, n_train=48, n_test=30, seed=0):
    """Four IDX files of 28x28 uint8 images whose brightness depends on the class (learnable)."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.int64)
        images[:, 4:24, 4:24] += (labels * 19)[:, None, None]
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images.clip(0, 255).astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), gzip=True)
    return folder


@pytest.fixture
def idx_dir(tmp_path):
    return _write_fashion_like(tmp_path / "fashion")


# --------------------------------------------------------------------------------------------
# reproduce fashion-mnist


def test_reproduce_fashion_cli_end_to_end(idx_dir, tmp_path):
    out = tmp_path / "out"
    command = ["reproduce", "fashion-mnist", "--data-dir", str(idx_dir), "--epochs", "1", "--seeds", "1",
               "--methods", "ce,lr-m-dyr-h", "--noise", "0.2", "--asym-noise", "0.4", "--out", str(out),
               "--device", "cpu", "--quiet"]
    assert main(command) == 0
    table = (out / "table.md").read_text()
    assert "| CE |" in table and "| LR-M-DYR-H (0-2) |" in table
    for what in ("best test accuracy", "last-epoch test accuracy", "selected test accuracy", "AUC",
                 "estimated share of wrong labels", "actual share of wrong labels"):
        assert what in table
    assert "| method | 20% | asym. 40% |" in table
    assert "48 training images" in table  # fewer than 5k available: the whole (tiny) training set
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert sorted((r["row"], r["noise_kind"]) for r in runs) == [
        ("ce", "asymmetric"), ("ce", "symmetric"), ("lr-m-dyr-h", "asymmetric"), ("lr-m-dyr-h", "symmetric")]
    assert all(0.0 <= float(r["best_val_acc"]) <= 1.0 and r["selected_val_acc"] != "" for r in runs)
    with (out / "results.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert {"best_val_acc_mean", "last_val_acc_std", "selected_val_acc_mean", "detection_auc_mean",
            "estimated_noise_rate_mean", "noise_kind"} <= set(lines[0])
    assert sorted((r["row"], r["noise_kind"], r["noise"]) for r in lines)[0] == ("ce", "asymmetric", "0.4")
    assert (out / "curves_noise20.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "curves_asym_noise40.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 4 and summary["train_size"] == 48 and summary["epochs"] == 1
    assert summary["asymmetric_rates"] == [0.4]
    # every run read the subset folder the command wrote, with the table's model
    config = json.loads(next((out / "runs").glob("ce_*/config.json")).read_text())["config"]
    assert config["data_dir"] == summary["data_dir"] and config["width"] == 0.25 and config["model"] is None
    # run again: finished runs are kept, nothing is retrained
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    assert main(command) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}


def test_reproduce_fashion_bad_method(idx_dir, tmp_path, capsys):
    code = main(["reproduce", "fashion-mnist", "--data-dir", str(idx_dir), "--methods", "ce,nope",
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and "unknown method 'nope'" in capsys.readouterr().err


def test_prepare_subset_draws_and_reuses(idx_dir, tmp_path):
    folder, n = prepare_fashion_subset(str(idx_dir), tmp_path / "out", train_size=20, seed=0)
    assert n == 20
    subset = load_mnist_like(folder)
    full = load_mnist_like(idx_dir)
    assert subset.num_train == 20 and subset.num_val == full.num_val
    index = np.sort(np.random.default_rng(0).permutation(48)[:20])
    assert torch.equal(subset.train_inputs, full.train_inputs[index])
    assert torch.equal(subset.train_labels, full.train_labels[index])
    stamp = (folder / "subset.json").stat().st_mtime_ns
    assert prepare_fashion_subset(str(idx_dir), tmp_path / "out", train_size=20, seed=0) == (folder, 20)
    assert (folder / "subset.json").stat().st_mtime_ns == stamp


def test_fashion_grid_rows_and_model_choice():
    grid = fashion_grid("/data", seeds=3)
    assert [m.method for m in grid.methods] == list(FASHION_METHODS)
    assert [m.layers for m in grid.methods][-1] == "1-3"  # DLR: the SmallCNN's blocks
    runs = grid.runs()
    assert len(runs) == 6 * (4 + 2) * 3  # 0/20/50/80% symmetric, 20/40% class-dependent
    assert sorted({(r.noise_kind, r.noise) for r in runs}) == [
        ("asymmetric", 0.2), ("asymmetric", 0.4), ("symmetric", 0.0), ("symmetric", 0.2), ("symmetric", 0.5),
        ("symmetric", 0.8)]
    assert len({run_id(r) for r in runs}) == len(runs)  # an asymmetric run never shares a folder
    assert all(r.val_split == 0.1 for r in runs)  # the "selected" column needs a noisy holdout
    assert len(fashion_grid("/data", seeds=1, asymmetric_rates=()).runs()) == 6 * 4
    mlp = fashion_grid("/data", seeds=1, model="mlp", methods="dlr-m-dyr-h,lr-m(1-2)")
    assert [(m.method, m.layers) for m in mlp.methods] == [("dlr-m-dyr-h", "1-2"), ("lr-m", "1-2")]
    assert mlp.base.model == "mlp"
    with pytest.raises(ConfigError, match="small-cnn or mlp"):
        fashion_grid("/data", model="resnet")


def test_mlp_option_builds_on_images(idx_dir):
    dataset = load_mnist_like(idx_dir)
    config = RunConfig(dataset="fashion-mnist", model="mlp", method="lr-m-dyr-h", epochs=1, device="cpu")
    result = train(config, dataset=dataset, progress=False)
    assert result.model.in_features == 784 and len(result.metrics) == 1


def test_fashion_protocols_per_model():
    # the MLP has its own (longer) schedule; every other model the CNN's
    cnn = protocol_for(RunConfig(dataset="fashion-mnist"))
    mlp = protocol_for(RunConfig(dataset="fashion-mnist", model="mlp"))
    assert cnn == PROTOCOLS["fashion-mnist"] and mlp == PROTOCOLS["fashion-mnist:mlp"] and mlp != cnn
    for protocol in (cnn, mlp):
        # [A]'s shape: bootstrapping starts right after the first lr decay
        assert protocol.warmup_epochs == protocol.milestones[0] < protocol.milestones[1] < protocol.epochs
    assert protocol_for(RunConfig(dataset="fashion-mnist", model="mlp", epochs=25)).milestones == (6, 22)


# --------------------------------------------------------------------------------------------
# the image+tokens data set


def test_image_tokens_exact_values():
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, :4, :4] = 255  # cell (0, 0): mean 255 -> top level
    image[0, :4, 4:8] = 16  # cell (0, 1): mean 16 -> level 1 (bins of 16 intensities)
    image[0, 24:, 24:] = 15  # last cell: mean 15 -> level 0
    image[0, 4, 0] = 255  # cell (1, 0): one bright pixel of 16: mean 15.9 -> level 0
    tokens = image_tokens(image)
    assert tokens.shape == (1, 49) and tokens.dtype == np.int64
    assert tokens[0, 0] == 15 and tokens[0, 1] == 1 and tokens[0, 48] == 0 and tokens[0, 7] == 0
    assert image_tokens(image, levels=4)[0, 0] == 3
    with pytest.raises(ConfigError, match="grid"):
        image_tokens(np.zeros((1, 30, 30), dtype=np.uint8))
    with pytest.raises(ConfigError, match="uint8"):
        image_tokens(np.zeros((1, 28, 28), dtype=np.float32))


def test_multimodal_dataset_shapes_range_determinism(idx_dir):
    first = load_fashion_multimodal(idx_dir, train_size=40, seed=0)
    second = load_fashion_multimodal(idx_dir, train_size=40, seed=0)
    assert set(first.train_inputs) == {"image", "tokens"}
    assert first.train_inputs["image"].shape == (40, 1, 28, 28) and first.train_inputs["image"].dtype == torch.uint8
    assert first.train_inputs["tokens"].shape == (40, 49) and first.train_inputs["tokens"].dtype == torch.int64
    assert first.val_inputs["tokens"].shape == (30, 49)
    for split in (first.train_inputs, first.val_inputs):
        assert int(split["tokens"].min()) >= 0 and int(split["tokens"].max()) < 16
    assert torch.equal(first.train_inputs["tokens"], second.train_inputs["tokens"])
    assert torch.equal(first.train_labels, second.train_labels)
    # the tokens are a function of each image alone
    np.testing.assert_array_equal(first.train_inputs["tokens"].numpy(), image_tokens(first.train_inputs["image"]))
    batch = first.train_transform({k: v[:4] for k, v in first.train_inputs.items()}, torch.Generator())
    assert batch["image"].dtype == torch.float32 and batch["tokens"].dtype == torch.int64
    assert first.info["vocab_sizes"] == {"tokens": 16} and first.train_labels_clean


def test_multimodal_one_epoch_fusion_run(idx_dir, tmp_path):
    from latentmix.experiments.runner import run_grid

    grid = multimodal_grid(seeds=1, epochs=1, noise_rates=(0.2,), device="cpu", data_dir=str(idx_dir),
                           asymmetric_rates=())
    assert [(m.method, m.layers) for m in grid.methods] == [("ce", None), ("lr-m", "1-3"), ("lr-m-dyr-h", "1-3")]
    results = run_grid(grid, tmp_path / "mm", vectorized=False, progress=False)
    assert [r["row"] for r in results] == ["ce", "lr-m(1-3)", "lr-m-dyr-h(1-3)"]
    assert all(r["epochs"] == 1 and r["detection_auc"] is not None for r in results)
    assert (tmp_path / "mm" / "runs" / "lr-m_L1-3_n0.2_s0" / "result.json").exists()


def test_multimodal_refuses_layer_zero(idx_dir):
    from latentmix.models import build_model
    from latentmix.models.small import ImageEncoder

    dataset = load_fashion_multimodal(idx_dir)
    model = build_model(None, dataset)
    image_encoder = model.get_submodule("encoders.image")
    assert isinstance(image_encoder, ImageEncoder) and image_encoder.net[0].out_channels == 8  # the declared width
    assert len(model.mix_points) == 3 and model.mix_points[0] == ("encoders.image", "encoders.tokens")
    for method, layers in (("m", None), ("lr-m-dyr-h", None), ("lr-m", "0-3")):
        config = RunConfig(dataset=dataset.name, method=method, layers=layers, epochs=1, device="cpu")
        with pytest.raises(ConfigError, match="integer token ids"):
            train(config, dataset=dataset, model=model, progress=False)


def test_multimodal_from_images_needs_images():
    from latentmix.data import Dataset

    features = Dataset("x", torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 3),
                       torch.zeros(2, dtype=torch.long), 2)
    with pytest.raises(ConfigError, match="images"):
        multimodal_from_images(features)


def test_reproduce_multimodal_cli(idx_dir, tmp_path):
    out = tmp_path / "mm"
    code = main(["reproduce", "multimodal", "--data-dir", str(idx_dir), "--epochs", "1", "--seeds", "1",
                 "--methods", "ce,lr-m-dyr-h", "--noise", "0.2", "--out", str(out), "--device", "cpu", "--quiet"])
    assert code == 0
    table = (out / "table.md").read_text()
    assert "| CE |" in table and "| LR-M-DYR-H (1-3) |" in table
    assert json.loads((out / "summary.json").read_text())["runs"] == 2
    code = main(["reproduce", "multimodal", "--data-dir", str(idx_dir), "--epochs", "1", "--seeds", "1",
                 "--methods", "m", "--noise", "0.2", "--out", str(tmp_path / "mm0"), "--device", "cpu", "--quiet"])
    assert code == 2  # input mixup: the token ids cannot be mixed
