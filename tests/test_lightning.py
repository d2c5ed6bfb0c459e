"""The Lightning callback (latentmix.lightning): a tiny LightningModule trained on the CPU with it
finds the wrong labels, its forwards are mixed only in training steps, and a checkpoint resumes it."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning", reason="the Lightning callback needs `pip install latentmix[lightning]`")

from latentmix.data.streamed import WithIndex  # noqa: E402
from latentmix.errors import ConfigError  # noqa: E402
from latentmix.lightning import LatentMixupCallback  # noqa: E402


class Classifier(L.LightningModule):
    def __init__(self, callback):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
        self.callback = callback  # the module asks the callback for the loss of the mixed forward
        self.forward_shapes = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        return self.callback.loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def noisy_task(n=600, wrong=120, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=generator)
    y = (x[:, :2].sum(dim=1) > 0).long()
    y[:wrong] = 1 - y[:wrong]  # the first `wrong` labels are flipped
    return TensorDataset(x, y), wrong


def trainer(epochs, tmp_path, callback):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                     callbacks=[callback])


def make(seed=0):
    callback = LatentMixupCallback(mix_points=["net.1", "net.3"], layers="0-2", alpha=2.0, warmup_epochs=3, seed=seed)
    torch.manual_seed(seed)
    return callback, Classifier(callback)


def test_the_callback_trains_with_mixup_and_finds_the_wrong_labels(tmp_path):
    data, wrong = noisy_task()
    callback, model = make()
    loader = DataLoader(WithIndex(data), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    trainer(8, tmp_path, callback).fit(model, loader)
    assert callback.correction.epochs_done == 8 and callback.correction.bootstrapping
    p_noisy = callback.p_noisy
    # the flipped labels (known here, not to the callback) rank above the right ones
    flagged_wrong, flagged_right = (p_noisy[:wrong] > 0.5).mean(), (p_noisy[wrong:] > 0.5).mean()
    assert flagged_wrong >= 0.7 and flagged_right <= 0.15, (flagged_wrong, flagged_right)
    # outside training steps the module's forward is the plain one
    x = data.tensors[0][:16]
    model.eval()
    assert torch.equal(model(x), model.net(x))


def test_a_training_step_that_ignores_the_mix_is_refused(tmp_path):
    data, _ = noisy_task(64, 8)
    callback, model = make()
    model.training_step = lambda batch, batch_idx: nn.functional.cross_entropy(model(batch[0]), batch[1])
    with pytest.raises(ConfigError, match="return callback.loss"):
        trainer(1, tmp_path, callback).fit(model, DataLoader(WithIndex(data), batch_size=32))


def test_a_checkpoint_resumes_the_callback_exactly(tmp_path):
    data, _ = noisy_task(200, 40)

    def loader():
        return DataLoader(WithIndex(data), batch_size=32)  # fixed order: the two runs see the same batches

    callback, model = make()
    trainer(5, tmp_path / "straight", callback).fit(model, loader())

    first_callback, first_model = make()
    first = trainer(3, tmp_path / "first", first_callback)
    first.fit(first_model, loader())
    first.save_checkpoint(tmp_path / "epoch3.ckpt")
    saved = torch.load(tmp_path / "epoch3.ckpt", weights_only=False)["callbacks"]
    assert any("correction" in state and "mixup" in state for state in saved.values())

    resumed_callback, resumed_model = make(seed=123)  # the seed is overwritten by the checkpoint's stream
    trainer(5, tmp_path / "resumed", resumed_callback).fit(resumed_model, loader(), ckpt_path=tmp_path / "epoch3.ckpt")
    np.testing.assert_array_equal(resumed_callback.p_noisy, callback.p_noisy)
    for (name, p), (_, q) in zip(model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(p, q), name
