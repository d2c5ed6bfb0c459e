"""Data as users hold it (latentmix.data.streamed): `fit` on a map-style Dataset of (inputs, label)
items, read through a DataLoader with workers, gives the results of the in-memory tensor path."""

import numpy as np
import pytest
import torch
from torch import nn

import latentmix
from latentmix.data.streamed import StreamedInputs, WithIndex, collate_inputs, dataset_labels
from latentmix.errors import ConfigError


class Pairs(torch.utils.data.Dataset):
    """A plain user data set: items (inputs, label), the inputs a tensor or a dict of tensors, no
    `targets` attribute (so the labels are read by a pass over the items)."""

    def __init__(self, inputs, labels):
        self.inputs, self.labels = inputs, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if isinstance(self.inputs, dict):
            return {key: value[i] for key, value in self.inputs.items()}, int(self.labels[i])
        return self.inputs[i], int(self.labels[i])


class TwoInputs(nn.Module):
    """A dict-input model: each modality through its own layer, then a shared head."""

    mix_points = ("joint",)

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 16), nn.Linear(2, 16)
        self.joint = nn.Sequential(nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, inputs):
        return self.head(self.joint(self.a(inputs["a"]) + self.b(inputs["b"])))


def blobs(n, seed):
    """Three Gaussian classes in 5-D, split over two modalities (3 + 2 features)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.randn(n, 5, generator=generator) + 2.0 * nn.functional.one_hot(labels, 5).float()
    return x, labels


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


SETTINGS = dict(method="lr-m-dyr-h", mix_points=["1", "3"], layers="0-2", epochs=4, batch_size=32, noise=0.3,
                warmup_epochs=2, device="cpu", progress=False, seed=3)


def assert_same_run(a, b):
    assert a.summary() == b.summary()
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.p_noisy, b.p_noisy)
    np.testing.assert_array_equal(a.noisy_labels, b.noisy_labels)
    for (name, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataset_trains_exactly_as_its_tensors(workers):
    x, y = blobs(300, 0)
    vx, vy = blobs(90, 1)
    from_tensors = latentmix.fit(mlp(), x, y, val_inputs=vx, val_labels=vy, **SETTINGS)
    from_dataset = latentmix.fit(mlp(), Pairs(x, y), val_inputs=Pairs(vx, vy), num_workers=workers, **SETTINGS)
    assert from_dataset.metrics[-1]["bootstrapping"]  # the correction ran, on the streamed batches too
    assert_same_run(from_tensors, from_dataset)


def test_dict_inputs_from_a_dataset_with_a_held_out_split(tmp_path):
    x, y = blobs(240, 2)
    vx, vy = blobs(60, 3)
    as_dict = lambda t: {"a": t[:, :3], "b": t[:, 3:]}  # noqa: E731
    settings = dict(SETTINGS, mix_points=["joint"], layers="1", val_split=0.2)
    torch.manual_seed(0)
    first = latentmix.fit(TwoInputs(), as_dict(x), y, val_inputs=as_dict(vx), val_labels=vy, **settings)
    torch.manual_seed(0)
    second = latentmix.fit(TwoInputs(), Pairs(as_dict(x), y), val_inputs=Pairs(as_dict(vx), vy), num_workers=0,
                           run_dir=tmp_path / "run", **settings)
    assert first.summary()["selected_epoch"] is not None  # the held-out split was read through the loader
    assert_same_run(first, second)
    assert (tmp_path / "run" / "label_issues.csv").exists()


def test_labels_come_from_the_items_or_from_targets():
    x, y = blobs(20, 0)
    assert torch.equal(dataset_labels(Pairs(x, y), workers=0), y)

    class WithTargets(Pairs):  # torchvision's convention: the labels read without reading the items
        targets = [2, 0] * 10

        def __getitem__(self, i):
            assert i == 0, "only the first item is read (to check its shape)"
            return super().__getitem__(i)

    assert dataset_labels(WithTargets(x, y)).tolist() == [2, 0] * 10


def test_with_index_gives_each_item_its_position_for_your_own_loop():
    x, y = blobs(10, 0)
    loader = torch.utils.data.DataLoader(WithIndex(Pairs(x, y)), batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    for inputs, labels, index in loader:
        assert torch.equal(inputs, x[index]) and torch.equal(labels, y[index])


def test_collate_keeps_tuples_and_dicts():
    samples = [(torch.tensor([i]), {"k": torch.tensor(float(i))}) for i in range(3)]
    batch = collate_inputs(samples)
    assert isinstance(batch, tuple) and batch[0].tolist() == [[0], [1], [2]] and batch[1]["k"].tolist() == [0, 1, 2]


def test_streamed_batches_are_the_asked_positions_in_order():
    x, y = blobs(50, 0)
    inputs = StreamedInputs(Pairs(x, y), np.arange(10, 50), workers=2)
    asked = [torch.tensor([5, 0, 39]), torch.tensor([7])]
    got = list(inputs.batches(asked, "cpu"))
    assert torch.equal(got[0], x[[15, 10, 49]]) and torch.equal(got[1], x[[17]])


@pytest.mark.parametrize("item, message", [
    ((torch.zeros(5),), r"items must be \(inputs, label\) pairs"),
    ((torch.zeros(5), 1.5), "labels must be class ids"),
    (("text", 1), "must be a tensor"),
])
def test_bad_items_are_one_clear_error(item, message):
    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return item

    x, y = blobs(20, 0)
    with pytest.raises(ConfigError, match=message):
        latentmix.fit(mlp(), Bad(), val_inputs=Pairs(x, y), **SETTINGS)


def test_labels_given_beside_a_dataset_are_refused():
    x, y = blobs(20, 0)
    with pytest.raises(ConfigError, match="omit train_labels"):
        latentmix.fit(mlp(), Pairs(x, y), y, val_inputs=Pairs(x, y), **SETTINGS)
    with pytest.raises(ConfigError, match="val_labels is missing"):
        latentmix.fit(mlp(), Pairs(x, y), val_inputs=x, **SETTINGS)


def test_a_dataset_is_never_held_whole():
    """A data set larger than memory trains: at no time are more samples alive than one batch of
    the tracking pass (the largest batch a run reads), far fewer than the data set holds."""
    import weakref

    class Counted(torch.utils.data.Dataset):
        def __init__(self, n):
            self.n, self.alive, self.most_alive = n, 0, 0

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            sample = torch.randn(5, generator=torch.Generator().manual_seed(i))
            self.alive += 1
            self.most_alive = max(self.most_alive, self.alive)
            weakref.finalize(sample, self._freed)
            return sample, i % 3

        def _freed(self):
            self.alive -= 1

    train_set = Counted(6000)
    x, y = blobs(50, 0)
    latentmix.fit(mlp(), train_set, val_inputs=x, val_labels=y, num_workers=0, **dict(SETTINGS, epochs=1, batch_size=100))
    assert train_set.most_alive <= 2000 < len(train_set)  # 2000: the "arrays" protocol's tracking batch


def test_more_loader_workers_than_cores_are_capped_with_one_note(capsys):
    import warnings

    from latentmix.data.streamed import StreamedInputs, _CAP_NOTED, usable_cpus

    _CAP_NOTED.clear()
    cores = usable_cpus()
    data = torch.utils.data.TensorDataset(torch.arange(12.0).view(6, 2), torch.zeros(6, dtype=torch.long))
    first = StreamedInputs(data, workers=cores + 2)
    second = StreamedInputs(data, workers=cores + 2)
    assert first.workers == second.workers == cores
    err = capsys.readouterr().err
    assert err.count(f"{cores + 2} DataLoader workers asked for") == 1 and f"using {cores}" in err
    # PyTorch warns about a loader with more workers than cores; the capped one reads without that warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(first.batches([torch.tensor([0, 1]), torch.tensor([5])], torch.device("cpu")))
    assert [b.tolist() for b in batches] == [[[0.0, 1.0], [2.0, 3.0]], [[10.0, 11.0]]]
    assert not [w for w in caught if "worker" in str(w.message)]
    assert StreamedInputs(data, workers=cores).workers == cores and capsys.readouterr().err == ""
