import numpy as np
import pytest
import torch

from latentmix.data.arrays import load_arrays
from latentmix.selection import stratified_split
from latentmix.errors import ConfigError


def _features(n=100, d=5, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, (n, d)).astype(np.float32)
    y = np.arange(n) % classes
    return x, y


def _save(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_npz_features_split_and_standardization(tmp_path):
    x, y = _features()
    path = _save(tmp_path, x=x, labels=y)
    ds = load_arrays(path, val_fraction=0.2, seed=1)
    assert ds.num_train == 80 and ds.num_val == 20
    assert ds.num_classes == 4
    assert ds.train_labels_clean is False and ds.given_noisy_labels is None
    assert ds.info["input_kinds"] == {"x": "features"}
    assert isinstance(ds.train_inputs, torch.Tensor) and ds.train_inputs.dtype == torch.float32
    # stratified: 5 val samples per class
    assert torch.equal(torch.bincount(ds.val_labels), torch.full((4,), 5))
    # train + val is a partition of the original rows
    all_rows = torch.cat([ds.train_inputs, ds.val_inputs])
    assert sorted(map(tuple, all_rows.tolist())) == sorted(map(tuple, torch.from_numpy(x).tolist()))
    # standardisation uses the TRAIN split's statistics
    tr = ds.train_transform(ds.train_inputs, torch.Generator())
    assert torch.allclose(tr.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(tr.std(0, unbiased=False), torch.ones(5), atol=1e-4)
    mean = ds.train_inputs.double().mean(0)
    std = ds.train_inputs.double().std(0, unbiased=False)
    va = ds.eval_transform(ds.val_inputs)
    assert torch.allclose(va.double(), (ds.val_inputs.double() - mean) / std, atol=1e-5)
    assert not torch.allclose(va.mean(0), torch.zeros(5), atol=1e-5)


def test_split_determinism_by_seed(tmp_path):
    x, y = _features()
    path = _save(tmp_path, x=x, labels=y)
    a = load_arrays(path, seed=3)
    b = load_arrays(path, seed=3)
    c = load_arrays(path, seed=4)
    assert torch.equal(a.val_inputs, b.val_inputs) and torch.equal(a.train_inputs, b.train_inputs)
    assert not torch.equal(a.val_inputs, c.val_inputs)
    assert a.num_val == 10 and a.info["val_source"] == "split"


def test_stratified_split_sizes():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 1)
    train, val = stratified_split(labels, 0.3, 0)
    assert len(val) == 3 and len(train) == 8
    assert set(train) | set(val) == set(range(11)) and not set(train) & set(val)


def test_zero_std_column(tmp_path):
    x, y = _features()
    x[:, 2] = 7.0
    ds = load_arrays(_save(tmp_path, x=x, labels=y))
    out = ds.eval_transform(ds.val_inputs)
    assert torch.all(out[:, 2] == 0) and torch.isfinite(out).all()


def test_explicit_val_arrays_and_y_key(tmp_path):
    x, y = _features()
    path = _save(tmp_path, x=x, y=y, val_x=x[:7], val_labels=y[:7])
    ds = load_arrays(path)
    assert ds.num_train == 100 and ds.num_val == 7
    assert ds.info["val_source"] == "file" and ds.info["label_key"] == "y"


def test_clean_and_noisy_labels_in_file(tmp_path):
    x, y = _features()
    noisy = (y + 1) % 4
    ds = load_arrays(_save(tmp_path, x=x, labels=noisy, clean_labels=y), seed=0)
    assert ds.train_labels_clean is True
    assert ds.given_noisy_labels is not None
    assert torch.equal(ds.given_noisy_labels, (ds.train_labels + 1) % 4)  # same split applied
    # validation labels are the clean ones
    assert ds.info["input_kinds"] == {"x": "features"}


def test_noisy_labels_file(tmp_path):
    x, y = _features()
    noisy = (y + 1) % 4
    path = _save(tmp_path, x=x, labels=y)
    np.save(tmp_path / "noisy.npy", noisy)
    (tmp_path / "noisy.csv").write_text("noisy_label\n" + "\n".join(map(str, noisy)) + "\n")
    for f in ("noisy.npy", "noisy.csv"):
        ds = load_arrays(path, noisy_labels_path=tmp_path / f, seed=2)
        assert ds.train_labels_clean is True
        assert ds.given_noisy_labels.shape == (90,)
        assert torch.equal(ds.given_noisy_labels, (ds.train_labels + 1) % 4)
    np.save(tmp_path / "short.npy", noisy[:50])
    with pytest.raises(ConfigError, match="length mismatch.*50 labels.*100 training samples"):
        load_arrays(path, noisy_labels_path=tmp_path / "short.npy")
    with pytest.raises(ConfigError, match="not found"):
        load_arrays(path, noisy_labels_path=tmp_path / "absent.npy")
    (tmp_path / "bad.txt").write_text("1\n2\nx\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_arrays(path, noisy_labels_path=tmp_path / "bad.txt")


def test_images_uint8_and_float(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    imgs[:, 1] //= 4  # per-channel statistics differ
    y = np.arange(40) % 2
    ds = load_arrays(_save(tmp_path, images=imgs, labels=y), val_fraction=0.25)
    assert ds.info["input_kinds"] == {"images": "image"}
    assert ds.train_inputs.dtype == torch.uint8 and ds.train_inputs.shape == (30, 3, 8, 8)
    out = ds.train_transform(ds.train_inputs, torch.Generator())
    assert out.dtype == torch.float32
    for c in range(3):
        assert float(out[:, c].mean()) == pytest.approx(0.0, abs=1e-4)
        assert float(out[:, c].std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
    # (N, H, W) float -> (N, 1, H, W)
    gray = rng.random((20, 6, 6)).astype(np.float64)
    ds = load_arrays(_save(tmp_path, "g.npz", pixels=gray, labels=np.arange(20) % 2))
    assert ds.train_inputs.shape[1:] == (1, 6, 6) and ds.train_inputs.dtype == torch.float32
    assert ds.info["modalities"]["pixels"] == {"kind": "image", "shape": (1, 6, 6)}
    # channels-last is transposed
    hwc = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    ds = load_arrays(_save(tmp_path, "h.npz", img=hwc, labels=np.arange(20) % 2))
    assert ds.train_inputs.shape[1:] == (3, 8, 8)


def test_tokens(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, (30, 12)).astype(np.int32)
    ds = load_arrays(_save(tmp_path, tokens=tokens, labels=np.arange(30) % 3))
    assert ds.info["input_kinds"] == {"tokens": "tokens"}
    assert ds.train_inputs.dtype == torch.int64
    assert torch.equal(ds.train_transform(ds.train_inputs, torch.Generator()), ds.train_inputs)
    assert ds.info["vocab_sizes"]["tokens"] == int(tokens.max()) + 1
    tokens[3, 4] = -1
    with pytest.raises(ConfigError, match="negative token ids"):
        load_arrays(_save(tmp_path, "n.npz", tokens=tokens, labels=np.arange(30) % 3))


def test_multimodal_dict(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    arrays = dict(
        image=rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8),
        text=rng.integers(0, 20, (n, 6)),
        meta=rng.normal(5, 3, (n, 3)),
        labels=np.arange(n) % 2,
    )
    ds = load_arrays(_save(tmp_path, **arrays))
    assert isinstance(ds.train_inputs, dict) and list(ds.train_inputs) == ["image", "text", "meta"]
    assert ds.info["input_kinds"] == {"image": "image", "text": "tokens", "meta": "features"}
    out = ds.train_transform(ds.train_inputs, torch.Generator())
    assert out["image"].dtype == torch.float32 and out["text"].dtype == torch.int64
    assert torch.allclose(out["meta"].mean(0), torch.zeros(3), atol=1e-5)
    assert ds.num_train + ds.num_val == n
    assert all(v.shape[0] == ds.num_val for v in ds.val_inputs.values())
    # input_keys selects a subset
    ds = load_arrays(tmp_path / "data.npz", input_keys=["meta"])
    assert isinstance(ds.train_inputs, torch.Tensor) and ds.train_inputs.shape[1] == 3


def test_csv(tmp_path):
    x, y = _features(n=50, d=3)
    path = tmp_path / "d.csv"
    rows = ["a,b,label,c"] + [f"{r[0]},{r[1]},{lab},{r[2]}" for r, lab in zip(x.tolist(), y)]
    path.write_text("\n".join(rows) + "\n")
    ds = load_arrays(path, val_fraction=0.2)
    assert ds.info["input_kinds"] == {"features": "features"}
    assert ds.info["feature_columns"] == ["a", "b", "c"]
    assert ds.num_train == 40 and ds.num_val == 10 and ds.num_classes == 4
    assert ds.train_labels_clean is False
    # clean label column
    rows = ["f1,label,clean_label"] + [f"{v},{(lab + 1) % 4},{lab}" for v, lab in zip(x[:, 0], y)]
    path.write_text("\n".join(rows) + "\n")
    ds = load_arrays(path)
    assert ds.train_labels_clean and torch.equal(ds.given_noisy_labels, (ds.train_labels + 1) % 4)
    # custom label key
    path.write_text("f1,target\n1.0,0\n2.0,1\n3.0,1\n4.0,0\n")
    assert load_arrays(path, label_key="target", val_fraction=0.5).num_val == 2


# ---------------------------------------------------------------------------------------------- errors


def test_missing_file_and_extension(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_arrays(tmp_path / "absent.npz")
    (tmp_path / "d.parquet").write_bytes(b"x")
    with pytest.raises(ConfigError, match="unknown extension"):
        load_arrays(tmp_path / "d.parquet")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a readable"):
        load_arrays(tmp_path / "bad.npz")


def test_missing_label_key_lists_keys(tmp_path):
    x, y = _features()
    path = _save(tmp_path, x=x, target=y)
    with pytest.raises(ConfigError, match=r"no label array.*present: \['target', 'x'\]"):
        load_arrays(path)
    with pytest.raises(ConfigError, match=r"no label array 'cls'"):
        load_arrays(path, label_key="cls")
    assert load_arrays(path, label_key="target").num_classes == 4


def test_no_inputs(tmp_path):
    _, y = _features()
    with pytest.raises(ConfigError, match="no input arrays"):
        load_arrays(_save(tmp_path, labels=y, clean_labels=y))


def test_empty_arrays(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        load_arrays(_save(tmp_path, x=np.zeros((0, 3)), labels=np.zeros(0, dtype=np.int64)))
    with pytest.raises(ConfigError, match="empty"):
        load_arrays(_save(tmp_path, "b.npz", x=np.zeros((4, 0)), labels=np.array([0, 1, 0, 1])))
    (tmp_path / "e.csv").write_text("a,label\n")
    with pytest.raises(ConfigError, match="empty"):
        load_arrays(tmp_path / "e.csv")


def test_length_mismatch(tmp_path):
    x, y = _features()
    with pytest.raises(ConfigError, match=r"length mismatch.*'x' has 99.*'labels' has 100"):
        load_arrays(_save(tmp_path, x=x[:99], labels=y))
    with pytest.raises(ConfigError, match=r"length mismatch.*'clean_labels' has 50.*'labels' has 100"):
        load_arrays(_save(tmp_path, "c.npz", x=x, labels=y, clean_labels=y[:50]))
    with pytest.raises(ConfigError, match=r"length mismatch.*'val_x' has 5.*'val_labels' has 6"):
        load_arrays(_save(tmp_path, "v.npz", x=x, labels=y, val_x=x[:5], val_labels=y[:6]))


def test_val_arrays_incomplete(tmp_path):
    x, y = _features()
    with pytest.raises(ConfigError, match="no 'val_labels'"):
        load_arrays(_save(tmp_path, x=x, labels=y, val_x=x[:5]))
    with pytest.raises(ConfigError, match=r"lacks validation inputs \['val_x'\]"):
        load_arrays(_save(tmp_path, "b.npz", x=x, labels=y, val_labels=y[:5]))


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0.0, 1.5, 2.0, 1.0]), "non-integral"),
        (np.array([0, -1, 1, 1]), "negative"),
        (np.array(["a", "b", "a", "b"]), "must be integers"),
    ],
)
def test_bad_labels(tmp_path, labels, message):
    x = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ConfigError, match=message):
        load_arrays(_save(tmp_path, x=x, labels=labels))


def test_integral_float_labels_ok(tmp_path):
    x, y = _features()
    assert load_arrays(_save(tmp_path, x=x, labels=y.astype(np.float64))).train_labels.dtype == torch.int64


def test_labels_out_of_range(tmp_path):
    x, y = _features()
    with pytest.raises(ConfigError, match="out of range"):
        load_arrays(_save(tmp_path, x=x, labels=y), num_classes=3)
    assert load_arrays(_save(tmp_path, x=x, labels=y), num_classes=6).num_classes == 6
    # single-class data cannot train a classifier (it used to load as a 2-class problem)
    with pytest.raises(ConfigError, match="every training label is class 0.*at least two classes"):
        load_arrays(_save(tmp_path, "o.npz", x=x, labels=np.zeros(100, dtype=np.int64)))


def test_nan_inf_features(tmp_path):
    x, y = _features()
    x[3, 1] = np.nan
    x[5, 0] = np.inf
    x[6, 0] = np.nan
    with pytest.raises(ConfigError, match=r"'x' contains 3 non-finite values \(2 NaN, 1 inf\)"):
        load_arrays(_save(tmp_path, x=x, labels=y))
    path = tmp_path / "n.csv"
    path.write_text("a,b,label\n1,2,0\n3,nan,1\n4,5,0\n")
    with pytest.raises(ConfigError, match=r"column 'b'.*1 NaN/inf.*row 3"):
        load_arrays(path)


def test_csv_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n3,oops,1\n")
    with pytest.raises(ConfigError, match=r"row 3, column 'b'.*non-numeric.*'oops'"):
        load_arrays(path)
    path.write_text("1,2,0\n3,4,1\n")
    with pytest.raises(ConfigError, match="header"):
        load_arrays(path)
    path.write_text("a,b,target\n1,2,0\n")
    with pytest.raises(ConfigError, match=r"no label column.*present"):
        load_arrays(path)
    path.write_text("a,b,label\n1,2,0\n3,4\n")
    with pytest.raises(ConfigError, match=r"row 3: 2 cells"):
        load_arrays(path)
    path.write_text("label\n0\n1\n")
    with pytest.raises(ConfigError, match="no input arrays"):
        load_arrays(path)


def test_bad_val_fraction(tmp_path):
    x, y = _features()
    with pytest.raises(ConfigError, match="val_fraction"):
        load_arrays(_save(tmp_path, x=x, labels=y), val_fraction=0.0)


def test_ambiguous_noisy_sources(tmp_path):
    x, y = _features()
    np.save(tmp_path / "n.npy", y)
    with pytest.raises(ConfigError, match="ambiguous"):
        load_arrays(_save(tmp_path, x=x, labels=y, clean_labels=y), noisy_labels_path=tmp_path / "n.npy")
