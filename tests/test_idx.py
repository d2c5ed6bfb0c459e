import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from latentmix.data.idx import DEFAULT_ROOTS, load_mnist_like, read_idx, write_idx
from latentmix.errors import ConfigError


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_round_trip(tmp_path, compress, dtype):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = tmp_path / "a.idx"  # no .gz suffix even when compressed: detection is by magic bytes
    write_idx(path, array, gzip=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_header_layout_big_endian(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.array([1, 256], dtype=np.int16))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0B, 1])
    assert raw[4:8] == (2).to_bytes(4, "big")
    assert raw[8:] == b"\x00\x01\x01\x00"


def test_one_dim_labels(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "l.gz", labels, gzip=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "l.gz"), labels)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_idx(tmp_path / "nope")


def test_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ConfigError, match="bad magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + b"\x00" * 8)  # unknown dtype code
    with pytest.raises(ConfigError, match="dtype code 0x07"):
        read_idx(path)


def test_truncated_data(tmp_path):
    path = tmp_path / "t"
    write_idx(path, np.zeros((4, 5), dtype=np.int32))
    raw = path.read_bytes()
    path.write_bytes(raw[:-6])
    with pytest.raises(ConfigError, match=r"truncated.*needs 80 data bytes.*only 74 bytes"):
        read_idx(path)
    # truncated inside a gzip stream
    gz = tmp_path / "t.gz"
    gz.write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ConfigError, match="gzip"):
        read_idx(gz)
    # truncated header
    path.write_bytes(raw[:6])
    with pytest.raises(ConfigError, match="truncated"):
        read_idx(path)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "t"
    write_idx(path, np.zeros(3, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ConfigError, match="trailing"):
        read_idx(path)


def _fake_mnist(root: Path, n_train=50, n_val=20, gz=True):
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    write_idx(root / f"train-images-idx3-ubyte{suffix}", train, gzip=gz)
    write_idx(root / f"train-labels-idx1-ubyte{suffix}", (np.arange(n_train) % 10).astype(np.uint8), gzip=gz)
    write_idx(root / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_val, 28, 28), dtype=np.uint8), gzip=gz)
    write_idx(root / f"t10k-labels-idx1-ubyte{suffix}", (np.arange(n_val) % 10).astype(np.uint8), gzip=gz)
    return train


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_like_synthetic(tmp_path, gz):
    train = _fake_mnist(tmp_path, gz=gz)
    ds = load_mnist_like(tmp_path, name="kmnist")
    assert ds.name == "kmnist"
    assert ds.train_inputs.shape == (50, 1, 28, 28) and ds.train_inputs.dtype == torch.uint8
    assert ds.val_inputs.shape == (20, 1, 28, 28)
    assert ds.train_labels.dtype == torch.int64 and ds.num_classes == 10
    assert ds.info["input_kinds"] == {"images": "image"}
    assert ds.info["mean"][0] == pytest.approx(train.astype(np.float64).mean())
    assert ds.info["std"][0] == pytest.approx(train.astype(np.float64).std())
    x = ds.train_transform(ds.train_inputs, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    v = ds.eval_transform(ds.val_inputs)
    assert v.dtype == torch.float32 and v.shape == ds.val_inputs.shape


def test_load_mnist_like_augment_and_subset(tmp_path):
    _fake_mnist(tmp_path)
    ds = load_mnist_like(tmp_path, augment=True, train_size=10, val_size=5)
    assert ds.num_train == 10 and ds.num_val == 5
    assert torch.equal(ds.train_labels, torch.arange(10))  # first n without a seed
    x = ds.train_inputs
    out1 = ds.train_transform(x, torch.Generator().manual_seed(3))
    out2 = ds.train_transform(x, torch.Generator().manual_seed(3))
    out3 = ds.train_transform(x, torch.Generator().manual_seed(4))
    assert out1.shape == x.shape and out1.dtype == torch.float32
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    # every augmented image is a shifted (possibly flipped) copy: the centre 24x24 of the raw image
    # appears in the 28x28 output window shifted by at most 2 pixels
    norm = ds.eval_transform(x)
    for i in range(10):
        found = False
        for img in (out1[i, 0], out1[i, 0].flip(-1)):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    a = img[2 + dy:26 + dy, 2 + dx:26 + dx]
                    if torch.allclose(a, norm[i, 0, 2:26, 2:26]):
                        found = True
        assert found

    seeded = load_mnist_like(tmp_path, train_size=10, seed=0)
    seeded2 = load_mnist_like(tmp_path, train_size=10, seed=0)
    assert torch.equal(seeded.train_inputs, seeded2.train_inputs)
    assert seeded.num_val == 20
    with pytest.raises(ConfigError, match="larger than"):
        load_mnist_like(tmp_path, train_size=1000)


def test_load_mnist_like_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_mnist_like(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte"):
        load_mnist_like(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no default folder"):
        load_mnist_like(name="some-other-set")


def test_real_fashion_mnist():
    root = Path(DEFAULT_ROOTS["fashion-mnist"])
    if not root.is_dir():
        print(f"skipping: {root} is absent (apt install dataset-fashion-mnist)")
        pytest.skip(f"{root} is absent (Debian package dataset-fashion-mnist)")
    ds = load_mnist_like()
    assert ds.num_train == 60000 and ds.num_val == 10000
    assert ds.num_classes == 10
    assert ds.train_inputs.shape == (60000, 1, 28, 28) and ds.train_inputs.dtype == torch.uint8
    assert torch.equal(torch.bincount(ds.train_labels, minlength=10), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.val_labels, minlength=10), torch.full((10,), 1000))
    x = ds.eval_transform(ds.val_inputs[:1000])
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1.0) < 0.1
