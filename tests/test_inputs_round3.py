"""Inputs that cannot mislead, round 3 (issue 25): conflicting settings, hostile file sizes, the
last tracebacks and the misleading or silently accepted inputs of the third audit. Each is one
clear line (exit 2, no traceback) naming the field, the value and the fix, or correct behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import cli_error as _cli_error
from latentmix.cli import main

TRAIN = ["train", "--device", "cpu", "--epochs", "1", "--quiet"]


def _good_npz(path: Path, n: int = 120, seed: int = 0) -> Path:
    """The issue's `good.npz`: n x 4 float features, 0/1 labels (learnable from the first column)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 4)).astype(np.float32)
    np.savez(path, features=features, labels=(features[:, 0] > 0).astype(np.int64))
    return path


# --------------------------------------------------------------------------------------------
# issue 25.5: settings that name other data than the run trains on


def test_a_built_in_dataset_beside_a_data_file_is_refused(tmp_path, capsys):
    data = _good_npz(tmp_path / "good.npz")
    err = _cli_error(capsys, [*TRAIN, "--dataset", "cifar10", "--data", str(data), "--out", str(tmp_path / "r")])
    assert "--dataset cifar10 is a built-in data set, but --data" in err and "pass only --data" in err
    assert not (tmp_path / "r").exists()
    # a name that is no built-in data set only names the run
    assert main([*TRAIN, "--dataset", "mine", "--data", str(data), "--out", str(tmp_path / "named")]) == 0
    assert json.loads((tmp_path / "named" / "config.json").read_text())["config"]["dataset"] == "mine"


def test_a_text_or_fusion_model_on_feature_data_is_refused(tmp_path, capsys):
    data = _good_npz(tmp_path / "good.npz")
    for model, needs in (("text", "integer token ids"), ("fusion", "several inputs")):
        err = _cli_error(capsys, [*TRAIN, "--model", model, "--data", str(data), "--out", str(tmp_path / model)])
        assert f"--model {model} needs {needs}" in err and "features" in err and "omit --model" in err


def test_data_dir_that_is_not_read_is_refused(tmp_path, capsys):
    err = _cli_error(capsys, [*TRAIN, "--dataset", "spiral", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    assert "--data-dir" in err and "is not read" in err and "spiral" in err


# --------------------------------------------------------------------------------------------
# issue 25.6: detect reads the label issues an image-folder run wrote; nothing to rebuild


def _write_images(root: Path, per_class: int = 8) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(6, 6), dtype=np.uint8)
            pixels[3 * k: 3 * k + 3] = 220
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_detect_reads_an_image_folder_runs_label_issues_without_the_images(tmp_path, capsys):
    """The file has a `file` column; the old detect called it unexpected and rebuilt it from the
    images every time, so it failed once the images moved (and on a read-only folder)."""
    _write_images(tmp_path / "photos")
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(tmp_path / "photos"), "--batch-size", "8", "--loader-workers", "0",
                 "--out", str(out)]) == 0
    issues = (out / "label_issues.csv").read_bytes()
    (tmp_path / "photos").rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["detect", str(out), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("0 of 16 labels") or " of 16 labels have P(noisy)" in printed
    assert (out / "label_issues.csv").read_bytes() == issues


def test_detect_on_a_fit_run_that_needs_a_rebuild_says_why_it_cannot(tmp_path, capsys):
    import torch
    from torch import nn

    from latentmix import fit

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=generator)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    fit(model, x, y, val_inputs=x[:20], val_labels=y[:20], method="ce", epochs=1, batch_size=16, run_dir=tmp_path / "run",
        device="cpu")
    (tmp_path / "run" / "label_issues.csv").unlink()
    err = _cli_error(capsys, ["detect", str(tmp_path / "run")])
    assert "data given in Python" in err and "fit()" in err and "unknown dataset" not in err


# --------------------------------------------------------------------------------------------
# issue 25.8: memory bounded on hostile files: sizes checked from headers before anything is read


def _npz_entry(archive, name: str, header_shape: tuple, data_bytes: int, dtype: str = "<f8") -> None:
    """Write entry `name` (.npy): a header declaring `header_shape` of `dtype`, then `data_bytes`
    zero bytes, deflated, streamed in 8 MiB blocks (nothing of that size is held here)."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as member:
        member.write(header.getvalue())
        block = bytes(8 << 20)
        for start in range(0, data_bytes, len(block)):
            member.write(block[: min(len(block), data_bytes - start)])


def _bomb_npz(path: Path, **entry) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _npz_entry(archive, "labels.npy", (4,), 32, dtype="<i8")
        _npz_entry(archive, "features.npy", **entry)
    return path


def _peak_bytes(action) -> int:
    """The peak of memory allocated through Python and NumPy (tracemalloc traces both) while
    `action` runs (its ConfigError expected)."""
    import tracemalloc

    from latentmix.errors import ConfigError

    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as caught:
            action()
        return tracemalloc.get_traced_memory()[1], str(caught.value)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("entry, named", [
    # 160 MiB of zeros deflate to ~160 kB: ~1000-fold, a zip bomb
    (dict(header_shape=(20 << 20,), data_bytes=160 << 20), "-fold; the limit is 200-fold"),
    # a 100-byte entry whose header asks for 2e9 float64 values (16 GB): numpy allocated them first
    (dict(header_shape=(2_000_000_000,), data_bytes=100), "declares shape (2000000000,)"),
])
def test_npz_bombs_are_refused_from_their_headers_in_bounded_memory(tmp_path, entry, named):
    from latentmix.data.arrays import load_arrays

    bomb = _bomb_npz(tmp_path / "bomb.npz", **entry)
    peak, message = _peak_bytes(lambda: load_arrays(bomb))
    assert named in message and "'features.npy'" in message
    assert peak < 200 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_an_npz_larger_than_free_memory_is_refused_naming_the_limit(tmp_path):
    from latentmix.data.array_files import check_npz_sizes
    from latentmix.errors import ConfigError

    data = _good_npz(tmp_path / "good.npz")
    # 120 x 4 float32 (1920 bytes) + 120 int64 (960 bytes) + two 128-byte .npy headers = 3136 bytes
    with pytest.raises(ConfigError, match=r"holds 3,136 bytes of arrays, more than the 1,000 bytes of memory free"):
        check_npz_sizes(data, memory=1000)
    check_npz_sizes(data, memory=3136)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height grey pixels, with one compressed row of data:
    Pillow opens it (the header is valid) and would decode width x height bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height", [(30000, 30000), (5000, 4000)])
def test_huge_images_are_refused_from_their_header(tmp_path, capsys, width, height):
    """30000 x 30000 is past Pillow's own bomb limit (its DecompressionBombError was a traceback);
    5000 x 4000 past ours (4096 x 4096 pixels)."""
    _write_images(tmp_path / "photos")
    _png_header_only(tmp_path / "photos" / "dog" / "huge.png", width, height)
    err = _cli_error(capsys, [*TRAIN, "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "r")])
    assert "huge.png" in err and "16,777,216 pixels (4096 x 4096): downscale it" in err


def test_a_sweep_spec_of_ten_million_runs_is_refused_before_building_them(tmp_path):
    from latentmix.errors import ConfigError
    from latentmix.sweep.spec import spec_from_dict

    with pytest.raises(ConfigError, match=r"'seeds' asks for 10,000,000 seeds; a spec takes at most 100,000 runs"):
        spec_from_dict({"name": "huge", "methods": ["ce"], "seeds": 10_000_000})
    with pytest.raises(ConfigError, match=r"declares up to 1,000,000 runs .* at most 100,000"):
        spec_from_dict({"name": "huge", "methods": ["lr-m"], "alphas": [0.1 * (i + 1) for i in range(1000)],
                        "seeds": 1000})


# --------------------------------------------------------------------------------------------
# issue 25: the tracebacks, misleading errors and silently accepted inputs of the third audit


@pytest.mark.parametrize("spec_text, named", [
    ('name = "s"\nsettings = 5\n', "spec key 'settings' must be a table"),
    ('name = "s"\nout = 5\n', "spec key 'out' must be a text"),
    ("name = 5\n", "spec key 'name' must be a non-empty text"),
    (b'name = "\xff\xfe"\n', "is not valid TOML (UTF-8 text)"),
    (None, "is a folder; give the spec's .toml file"),
])
def test_bad_sweep_specs_are_one_line(tmp_path, capsys, spec_text, named):
    spec = tmp_path / "spec.toml"
    if spec_text is None:
        spec.mkdir()
    elif isinstance(spec_text, bytes):
        spec.write_bytes(spec_text)
    else:
        spec.write_text(spec_text)
    assert named in _cli_error(capsys, ["sweep", "run", str(spec), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("args, named", [
    ([*TRAIN, "--seed", "100000000000000000000000"], "--seed must be a whole number in [0, 9223372036854775807]"),
    (["tune", "--sampler-seed", "-1", "--epochs", "1"], "--sampler-seed must be a whole number in [0, 4294967295]"),
    (["tune", "--timeout", "-1", "--epochs", "1"], "--timeout must be a positive number of seconds"),
])
def test_out_of_range_seeds_and_timeouts_are_one_line(tmp_path, capsys, args, named):
    assert named in _cli_error(capsys, [*args, "--out", str(tmp_path / "out")])


def _finished_file_run(out: Path) -> list[str]:
    """A finished 2-epoch run on good.npz (its validation split selects an epoch: selected_model.pt)
    with result.json removed, and the arguments that resume it."""
    args = ["train", "--device", "cpu", "--epochs", "2", "--quiet", "--out", str(out),
            "--data", str(_good_npz(out.parent / "good.npz"))]
    assert main(args) == 0 and (out / "selected_model.pt").exists()
    (out / "result.json").unlink()
    return [*args, "--resume"]


@pytest.mark.parametrize("damage, named", [
    (lambda out: (out / "selected_model.pt").write_bytes((out / "selected_model.pt").read_bytes()[:100]),
     "selected_model.pt is unreadable or corrupt"),
    (lambda out: (out / "selected_model.pt").write_bytes(
        b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x04true\x94\x85\x94R\x94."),
     "selected_model.pt is unreadable or corrupt"),
    (lambda out: (out / "checkpoint.json").write_text("{not json"), "checkpoint.json is damaged"),
    (lambda out: (out / "checkpoint.pt").unlink(), "checkpoint.pt is missing, but checkpoint.json records"),
])
def test_damaged_run_files_on_resume_are_one_line(tmp_path, capsys, damage, named):
    """A truncated selected_model.pt, a pickle that would run `os.system` in its place (refused by
    weights_only loading), a garbage checkpoint.json (was "no checksum file"), and a lost
    checkpoint.pt (the resume silently started again from epoch 1)."""
    out = tmp_path / "run"
    resume = _finished_file_run(out)
    damage(out)
    err = _cli_error(capsys, resume)
    assert named in err


def test_run_files_follow_the_umask(tmp_path):
    """Run files were always 0600 (mkstemp's mode) whatever the umask; now 0666 less the umask."""
    import os

    from latentmix.io import atomic_write_json

    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


def _npz(path: Path, n: int = 60, labels=None, features=None) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 4)) if features is None else features
    y = (x[:, 0] > 0).astype(np.int64) if labels is None else labels
    np.savez(path, features=x, labels=y)
    return path


def _u64_labels() -> np.ndarray:
    labels = (np.arange(60) % 2).astype(np.uint64)
    labels[0] = 2**63 + 5
    return labels


def _huge_float_features() -> np.ndarray:
    features = np.random.default_rng(1).normal(size=(60, 4))
    features[0, 0] = 1e300
    return features


@pytest.mark.parametrize("make, named", [
    (lambda d: _npz(d / "two.npz", n=2, labels=np.array([0, 1])), "the validation split of 2 samples is empty"),
    # 1e20 and 2**63+5 wrapped to negative int64 and were reported as "1 negative"
    (lambda d: _npz(d / "big.npz", labels=np.where(np.arange(60) == 0, 1e20, np.arange(60) % 2)),
     "class id 100000000000000000000 would need"),
    (lambda d: _npz(d / "u64.npz", labels=_u64_labels()), "class id 9223372036854775813 would need"),
    # float64 inputs beyond float32 became inf: "training diverged, lower the learning rate"
    (lambda d: _npz(d / "f64.npz", features=_huge_float_features()), "holds values up to 1e+300, beyond float32's range"),
])
def test_bad_npz_contents_are_named_for_what_they_are(tmp_path, capsys, make, named):
    data = make(tmp_path)
    assert named in _cli_error(capsys, [*TRAIN, "--data", str(data), "--out", str(tmp_path / "r")])


def test_an_npz_named_npy_for_noisy_labels_is_named_as_an_archive(tmp_path, capsys):
    np.savez(tmp_path / "noisy.npz", labels=np.arange(60) % 2)
    (tmp_path / "noisy.npz").rename(tmp_path / "noisy.npy")
    err = _cli_error(capsys, [*TRAIN, "--data", str(_npz(tmp_path / "good.npz")), "--noisy-labels",
                              str(tmp_path / "noisy.npy"), "--out", str(tmp_path / "r")])
    assert "is an .npz archive (numpy.savez), not one .npy array" in err


@pytest.mark.parametrize("header, cell, named", [
    ("a,b,labels", "1_000", "non-numeric value '1_000'"),  # Python's float() read it as 1000
    ("a, ,labels", "1", "column 2 of the header has no name"),  # the blank column was a feature
])
def test_csv_cells_and_columns_that_python_would_accept_silently(tmp_path, capsys, header, cell, named):
    rows = "\n".join(f"{cell},{i},{i % 2}" for i in range(30))
    (tmp_path / "d.csv").write_text(f"{header}\n{rows}\n")
    assert named in _cli_error(capsys, [*TRAIN, "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "r")])


@pytest.mark.parametrize("args, named", [
    (["reproduce", "spiral", "--workers", "0"], "--workers must be >= 1"),
    (["sweep", "run", "SPEC", "--population", "0"], "--population must be >= 1"),
    (["sweep", "run", "SPEC", "--workers", "0"], "--workers must be >= 1"),
])
def test_zero_workers_or_population_are_refused(tmp_path, capsys, args, named):
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "p"\nmethods = ["ce"]\nepochs = 1\n')
    args = [str(spec) if word == "SPEC" else word for word in args]
    assert named in _cli_error(capsys, [*args, "--out", str(tmp_path / "out")])


def _tiny_fit_data():
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=generator)
    return x, (x[:, 0] > 0).long()


class _VaryingItems:
    """A map-style data set whose items alternate between 2 and 3 features."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        import torch

        return torch.ones(2 if i % 2 else 3), i % 2


def _fit_case(case):
    import torch
    from torch import nn

    from latentmix import fit

    x, y = _tiny_fit_data()
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    common = dict(method="ce", epochs=1, batch_size=8, device="cpu", progress=False)
    if case == "val width":
        return fit(model, x, y, val_inputs=torch.randn(20, 5), val_labels=y[:20], **common)
    if case == "varying items":
        return fit(model, torch.utils.data.Subset(_VaryingItems(), range(40)), val_inputs=x[:20], val_labels=y[:20],
                   num_workers=0, **common)
    if case == "no parameters":
        class NoParameters(nn.Module):
            def forward(self, inputs):
                return torch.stack([inputs[:, 0], -inputs[:, 0]], 1)
        return fit(NoParameters(), x, y, val_inputs=x[:20], val_labels=y[:20], **common)
    if case == "frozen":
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return fit(model, x, y, val_inputs=x[:20], val_labels=y[:20], **common)
    if case == "repeated mix point":
        return fit(model, x, y, val_inputs=x[:20], val_labels=y[:20], mix_points=["0", "0"],
                   **{**common, "method": "lr-m", "layers": "1-2"})
    raise AssertionError(case)


@pytest.mark.parametrize("case, named", [
    ("val width", "model cannot take val_inputs"),
    ("varying items", "items have inputs of different shapes ((2,) and (3,))"),
    ("no parameters", "has no parameters to train"),
    ("frozen", "is frozen (requires_grad=False)"),
    ("repeated mix point", "mix_points name '0' more than once"),  # silently mixed there twice as often
])
def test_fit_inputs_and_models_that_cannot_train_are_one_line(case, named):
    from latentmix.errors import ConfigError

    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        _fit_case(case)


def test_a_result_json_with_text_for_a_number_is_damage_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(_npz(tmp_path / "good.npz")), "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    result["estimated_noise_rate"] = "high"
    (out / "result.json").write_text(json.dumps(result))
    capsys.readouterr()
    assert main(["detect", str(out), "--top", "1"]) == 0  # the label issues, without the unreadable estimate
    assert "estimated share" not in capsys.readouterr().out
    err = _cli_error(capsys, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert "result.json unreadable" in err


def test_a_store_url_that_is_no_url_is_one_line(tmp_path, capsys):
    """Found by the round-3 audit (benchmarks/input_audit.py): SQLAlchemy's ArgumentError escaped."""
    err = _cli_error(capsys, ["tune", "--storage", "not-a-url", "--epochs", "1", "--out", str(tmp_path / "t")])
    assert "--storage 'not-a-url' is not a database URL" in err
