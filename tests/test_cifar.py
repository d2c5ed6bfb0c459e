"""CIFAR-10 reader (real python-release format, restricted unpickling) and batched augmentation."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from latentmix.data import Dataset
from latentmix.data.augment import CropFlipNormalize, Normalize, normalize, random_crop_flip
from latentmix.data.cifar import (
    ARCHIVE_NAME,
    CIFAR10_MEAN,
    CIFAR10_STD,
    FOLDER_NAME,
    extract_cifar10_archive,
    load_cifar10,
    md5_of_file,
    verify_md5,
)
from latentmix.data.fake_cifar10 import python2_pickle, write_fake_cifar10
from latentmix.data.restricted_pickle import UnsafePickleError, restricted_loads
from latentmix.errors import ConfigError

PER_BATCH, NUM_TEST = 6, 7


@pytest.fixture()
def fake_folder(tmp_path: Path) -> Path:
    return write_fake_cifar10(tmp_path / "data", num_train_per_batch=PER_BATCH, num_test=NUM_TEST, seed=3)


@pytest.fixture()
def fake_archive(tmp_path: Path) -> Path:
    return write_fake_cifar10(
        tmp_path / "archive", num_train_per_batch=PER_BATCH, num_test=NUM_TEST, seed=3, as_archive=True
    )


def _assert_same(a: Dataset, b: Dataset) -> None:
    assert torch.equal(a.train_inputs, b.train_inputs)
    assert torch.equal(a.train_labels, b.train_labels)
    assert torch.equal(a.val_inputs, b.val_inputs)
    assert torch.equal(a.val_labels, b.val_labels)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------

def test_fake_release_is_in_the_real_format(fake_folder: Path) -> None:
    assert fake_folder.name == FOLDER_NAME
    raw = (fake_folder / "data_batch_1").read_bytes()
    # Python-2 protocol-2 dict, keys as py2 str, numpy-1.x global name - as in the official files.
    assert raw.startswith(b"\x80\x02}")
    assert b"U\x04data" in raw and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    batch = restricted_loads(raw)
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (PER_BATCH, 3072)
    meta = restricted_loads((fake_folder / "batches.meta").read_bytes())
    assert meta[b"label_names"][0] == b"airplane" and len(meta[b"label_names"]) == 10


def test_folder_and_archive_give_identical_tensors(fake_folder: Path, fake_archive: Path) -> None:
    from_folder = load_cifar10(fake_folder)
    from_parent = load_cifar10(fake_folder.parent)
    from_archive = load_cifar10(fake_archive)
    from_archive_parent = load_cifar10(fake_archive.parent)
    assert from_folder.info["format"] == "folder" and from_archive.info["format"] == "archive"
    for other in (from_parent, from_archive, from_archive_parent):
        _assert_same(from_folder, other)

    ds = from_folder
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.train_inputs.shape == (5 * PER_BATCH, 3, 32, 32) and ds.train_inputs.dtype == torch.uint8
    assert ds.val_inputs.shape == (NUM_TEST, 3, 32, 32) and ds.val_inputs.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64 and ds.val_labels.dtype == torch.int64
    assert ds.num_train == 5 * PER_BATCH and ds.num_val == NUM_TEST
    assert ds.info["label_names"][9] == "truck" and ds.info["full_release"] is False

    # Layout: batches concatenated in order; each row = R plane, G plane, B plane, row-major.
    for index in (1, 3, 5):
        batch = restricted_loads((fake_folder / f"data_batch_{index}").read_bytes())
        start = (index - 1) * PER_BATCH
        row = batch[b"data"][2]
        image = ds.train_inputs[start + 2]
        assert int(image[0, 0, 0]) == row[0] and int(image[0, 0, 1]) == row[1]
        assert int(image[0, 1, 0]) == row[32] and int(image[1, 0, 0]) == row[1024]
        assert int(image[2, 31, 31]) == row[3071]
        assert ds.train_labels[start : start + PER_BATCH].tolist() == batch[b"labels"]
    test = restricted_loads((fake_folder / "test_batch").read_bytes())
    assert ds.val_labels.tolist() == test[b"labels"]
    assert torch.equal(ds.val_inputs.reshape(NUM_TEST, -1), torch.from_numpy(test[b"data"]))


def test_transforms(fake_folder: Path) -> None:
    ds = load_cifar10(fake_folder)
    x = ds.train_inputs[:4]
    gen = torch.Generator().manual_seed(0)
    out = ds.train_transform(x, gen)
    assert out.shape == x.shape and out.dtype == torch.float32
    evaluated = ds.eval_transform(x)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.allclose(evaluated, (x.float() / 255 - mean) / std)
    # picklable (callable classes, not lambdas)
    for transform in (ds.train_transform, ds.eval_transform):
        clone = pickle.loads(pickle.dumps(transform))
        assert repr(clone) == repr(transform)


# ------------------------------------------------------------------------------------------------
# Safety and error messages
# ------------------------------------------------------------------------------------------------

class _Evil:
    def __reduce__(self):
        return (os.system, ("echo",))


def test_restricted_unpickler_refuses_os_system(fake_folder: Path) -> None:
    # protocol 3: bytes keys as BINBYTES (protocol 2 would route them through _codecs.encode)
    payload = pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=3)
    with pytest.raises(UnsafePickleError, match="refusing to unpickle global .*system"):
        restricted_loads(payload)
    # also refused other protocols / globals
    for protocol in (0, 2, 5):
        with pytest.raises(UnsafePickleError, match="system"):
            restricted_loads(pickle.dumps(_Evil(), protocol=protocol))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        restricted_loads(b"cbuiltins\neval\n(S'1'\ntR.")

    (fake_folder / "data_batch_2").write_bytes(payload)
    with pytest.raises(ConfigError, match=r"data_batch_2 .*refusing"):
        load_cifar10(fake_folder)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_pickled_by_python3(tmp_path: Path, protocol: int) -> None:
    """A release re-saved by Python 3 loads with any protocol: 2 writes bytes through
    _codecs.encode (and empty bytes through bytes()), 5 arrays through _frombuffer."""
    reference = load_cifar10(write_fake_cifar10(tmp_path / "py2", num_train_per_batch=4, num_test=4, seed=3))
    folder = write_fake_cifar10(tmp_path / f"p{protocol}", num_train_per_batch=4, num_test=4, seed=3, protocol=protocol)
    loaded = load_cifar10(folder)
    for name in ("train_inputs", "train_labels", "val_inputs", "val_labels"):
        assert torch.equal(getattr(loaded, name), getattr(reference, name)), name
    assert restricted_loads(pickle.dumps({b"": b"", b"k": b"v"}, protocol=protocol)) == {b"": b"", b"k": b"v"}


def test_the_bytes_helpers_stay_narrow() -> None:
    # _codecs.encode only as (text, "latin1"); bytes() only empty or from bytes: no other codec, no allocation
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        restricted_loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.")
    with pytest.raises(UnsafePickleError, match="bytes"):
        restricted_loads(b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R.")


def test_missing_batch_message(fake_folder: Path) -> None:
    (fake_folder / "data_batch_3").unlink()
    with pytest.raises(ConfigError) as info:
        load_cifar10(fake_folder.parent)
    message = str(info.value)
    assert "data_batch_3 missing" in message and str(fake_folder) in message
    assert "data_batch_1..5 and test_batch" in message and "--download" in message and "--data-dir" in message


def test_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_cifar10(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_cifar10(tmp_path / "does-not-exist")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="not a .tar.gz"):
        load_cifar10(tmp_path / "notes.txt")


def test_truncated_archive(fake_archive: Path) -> None:
    raw = fake_archive.read_bytes()
    fake_archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ConfigError, match=r"truncated or corrupt|missing"):
        load_cifar10(fake_archive)


def test_archive_missing_member(tmp_path: Path, fake_folder: Path) -> None:
    archive = tmp_path / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("data_batch_1", "data_batch_2", "test_batch"):
            tar.add(fake_folder / name, arcname=f"{FOLDER_NAME}/{name}")
    with pytest.raises(ConfigError, match=r"data_batch_3 missing in .*cifar-10-python.tar.gz"):
        load_cifar10(tmp_path)


def test_truncated_batch_file(fake_folder: Path) -> None:
    path = fake_folder / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ConfigError, match="test_batch .*corrupt or truncated"):
        load_cifar10(fake_folder)


def test_wrong_data_length(fake_folder: Path) -> None:
    rows = np.zeros((PER_BATCH, 3000), dtype=np.uint8)
    (fake_folder / "data_batch_4").write_bytes(
        python2_pickle({b"data": rows, b"labels": [0] * PER_BATCH})
    )
    with pytest.raises(ConfigError, match=r"data_batch_4 .*shape \(6, 3000\) \(wrong data length\)"):
        load_cifar10(fake_folder)

    good = np.zeros((PER_BATCH, 3072), dtype=np.uint8)
    (fake_folder / "data_batch_4").write_bytes(python2_pickle({b"data": good, b"labels": [0] * 5}))
    with pytest.raises(ConfigError, match="labels for 6 images"):
        load_cifar10(fake_folder)
    (fake_folder / "data_batch_4").write_bytes(python2_pickle({b"data": good, b"labels": [10] * PER_BATCH}))
    with pytest.raises(ConfigError, match=r"outside 0..9"):
        load_cifar10(fake_folder)


def test_archive_with_link_member_is_refused(tmp_path: Path, fake_folder: Path) -> None:
    archive = tmp_path / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo(f"{FOLDER_NAME}/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_cifar10(archive)
    with pytest.raises(ConfigError, match="link or special file"):
        extract_cifar10_archive(archive, tmp_path / "out")


def test_extract_rejects_path_traversal(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    root = tmp_path / "root"
    with pytest.raises(ConfigError, match="unsafe member path"):
        extract_cifar10_archive(archive, root)
    assert not (tmp_path / "escaped.txt").exists()
    assert list(root.iterdir()) == []  # temporary extraction folder cleaned up


def test_extract_archive_atomically(tmp_path: Path, fake_archive: Path) -> None:
    root = tmp_path / "extracted"
    # a stale partial folder is replaced, not merged
    (root / FOLDER_NAME).mkdir(parents=True)
    (root / FOLDER_NAME / "junk").write_text("x")
    folder = extract_cifar10_archive(fake_archive, root)
    assert folder == root / FOLDER_NAME and not (folder / "junk").exists()
    assert sorted(p.name for p in root.iterdir()) == [FOLDER_NAME]
    _assert_same(load_cifar10(folder), load_cifar10(fake_archive))


def test_md5_helpers(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"hello")
    assert md5_of_file(path) == "5d41402abc4b2a76b9719d911017c592" == hashlib.md5(b"hello").hexdigest()
    assert verify_md5(path, "5D41402ABC4B2A76B9719D911017C592")
    assert not verify_md5(path)  # not the CIFAR archive
    assert not verify_md5(tmp_path / "absent", "5d41402abc4b2a76b9719d911017c592")


def test_fake_writer_is_deterministic(tmp_path: Path) -> None:
    a = load_cifar10(write_fake_cifar10(tmp_path / "a", num_train_per_batch=2, num_test=3, seed=7))
    b = load_cifar10(write_fake_cifar10(tmp_path / "b", num_train_per_batch=2, num_test=3, seed=7))
    c = load_cifar10(write_fake_cifar10(tmp_path / "c", num_train_per_batch=2, num_test=3, seed=8))
    _assert_same(a, b)
    assert not torch.equal(a.train_inputs, c.train_inputs)


# ------------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------------

def _candidates(image: torch.Tensor, padding: int) -> list:
    """Every crop (and its mirror) of a zero-padded (C, H, W) image, built with slicing."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out.extend([crop, crop.flip(-1)])
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_identity_without_padding_and_flip(dtype: torch.dtype) -> None:
    x = (torch.arange(4 * 3 * 8 * 8) % 251).to(dtype).reshape(4, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0, flip=False)
    assert out.dtype == dtype and torch.equal(out, x)
    transform = CropFlipNormalize(CIFAR10_MEAN, CIFAR10_STD, padding=0, flip=False)
    assert torch.equal(transform(x, torch.Generator().manual_seed(1)), normalize(x, CIFAR10_MEAN, CIFAR10_STD))


def test_hand_checked_crops() -> None:
    # padded image [[0,0,0,0],[0,1,2,0],[0,3,4,0],[0,0,0,0]]; its nine 2x2 windows, by hand:
    expected = {
        ((0, 0), (0, 1)), ((0, 0), (1, 2)), ((0, 0), (2, 0)),
        ((0, 1), (0, 3)), ((1, 2), (3, 4)), ((2, 0), (4, 0)),
        ((0, 3), (0, 0)), ((3, 4), (0, 0)), ((4, 0), (0, 0)),
    }
    x = torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8).reshape(1, 1, 2, 2).repeat(400, 1, 1, 1)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=1, flip=False)
    seen = {tuple(map(tuple, img[0].tolist())) for img in out}
    assert seen == expected  # every window occurs, nothing else (P(miss) ~ 9 * (8/9)^400)

    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding=1, flip=True)
    seen = {tuple(map(tuple, img[0].tolist())) for img in out}
    mirrored = {tuple(row[::-1] for row in crop) for crop in expected}
    assert seen == expected | mirrored and len(seen) == 18


def test_each_output_is_a_shifted_or_flipped_input() -> None:
    gen = torch.Generator().manual_seed(5)
    # distinct non-zero values so that a match identifies the shift
    x = (torch.arange(16 * 2 * 6 * 5).reshape(16, 2, 6, 5) % 250 + 1).to(torch.uint8)
    out = random_crop_flip(x, gen, padding=2, flip=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    for image, result in zip(x, out):
        assert any(torch.equal(result, cand) for cand in _candidates(image, 2))
    # per-image randomness: not every image got the same transformation
    offsets = {tuple((o != 0).flatten().tolist()) for o in out}
    assert len(offsets) > 1
    # float input, same generator state -> same geometry
    out_f = random_crop_flip(x.float(), torch.Generator().manual_seed(5), padding=2, flip=True)
    assert out_f.dtype == torch.float32 and torch.equal(out_f, out.float())


def test_flip_only() -> None:
    x = torch.rand(200, 3, 4, 4)
    out = random_crop_flip(x, torch.Generator().manual_seed(2), padding=0, flip=True)
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    assert bool((same | mirrored).all())
    assert 60 < int(mirrored.sum()) < 140


def test_augmentation_deterministic_in_generator() -> None:
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(x, torch.Generator().manual_seed(11))
    b = random_crop_flip(x, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(x[0], torch.Generator())


def test_normalize() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).reshape(2, 1, 1, 1).repeat(1, 3, 1, 1)
    out = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    assert out.dtype == torch.float32
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx(-CIFAR10_MEAN[c] / CIFAR10_STD[c], rel=1e-6)
        assert out[1, c, 0, 0].item() == pytest.approx((1 - CIFAR10_MEAN[c]) / CIFAR10_STD[c], rel=1e-6)
    # floats are taken as already in [0, 1]
    assert torch.allclose(normalize(x.float() / 255, CIFAR10_MEAN, CIFAR10_STD), out)
    assert torch.allclose(Normalize(CIFAR10_MEAN, CIFAR10_STD)(x), out)
    with pytest.raises(ValueError, match="channels"):
        normalize(torch.zeros(1, 2, 1, 1), CIFAR10_MEAN, CIFAR10_STD)


def test_normalize_channel_stats_made_once_per_device() -> None:
    """The per-channel mean and std of a tuple are made once per device and shape (a per-batch copy
    from host memory is a host synchronisation on a GPU), and give the same values as a tensor of
    the same numbers: x = 255 -> (1 - m_c) / s_c in float32, exactly as before the cache."""
    from latentmix.data.augment import _channel_stats

    x = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    first, again = _channel_stats(CIFAR10_MEAN, x), _channel_stats(tuple(CIFAR10_MEAN), x)
    assert first is again and first.shape == (1, 3, 1, 1)
    assert _channel_stats(CIFAR10_MEAN, torch.zeros(2, 3)).shape == (1, 3)  # another shape: its own entry
    as_tensor = _channel_stats(torch.tensor(CIFAR10_MEAN), x)  # a tensor is converted each time
    assert as_tensor is not first and torch.equal(as_tensor, first)
    out = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    one, mean, std = torch.tensor(1.0), torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    assert torch.equal(out[0, :, 0, 0], (one - mean) / std)


def test_per_epoch_perms_and_cached_stats_leave_a_run_unchanged(tmp_path: Path, monkeypatch) -> None:
    """The two per-batch host synchronisations removed for the GPU (one copy of an epoch's mixing
    permutations instead of one per step; the normalisation's mean and std made once) change no
    number: a short LR-M-DYR-H run (a short last batch included, bootstrapping in epoch 2) ends with
    bit-identical weights and metrics when both are forced back to the per-step construction."""
    import latentmix.data.augment as augment
    from latentmix.config import RunConfig
    from latentmix.mixing import EpochMixDraws
    from latentmix.training import train

    write_fake_cifar10(tmp_path, num_train_per_batch=20, num_test=20)
    config = RunConfig(dataset="cifar10", data_dir=str(tmp_path), method="lr-m-dyr-h", epochs=2, warmup_epochs=1,
                       noise=0.5, width=0.0625, batch_size=32, checkpoint=False)
    fast = train(config, progress=False)
    monkeypatch.setattr(EpochMixDraws, "epoch_perms", lambda self, device=None: torch.stack(
        [torch.from_numpy(np.argsort(keys, kind="stable")) for keys in self.perm_keys]).to(device))
    monkeypatch.setattr(augment, "_cached_stats", lambda values, dims, device: torch.as_tensor(
        values, dtype=torch.float32, device=device).reshape(1, -1, *([1] * (dims - 2))))
    per_step = train(config, progress=False)
    assert [(r["train_loss"], r["val_acc"]) for r in fast.metrics] == \
        [(r["train_loss"], r["val_acc"]) for r in per_step.metrics]
    for (name, a), (_, b) in zip(fast.model.state_dict().items(), per_step.model.state_dict().items()):
        assert torch.equal(a, b), name
