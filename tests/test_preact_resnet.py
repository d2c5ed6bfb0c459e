"""PreAct ResNet-18 (Arazo et al. 2019 reference form): parameter count, shapes, mix points, quirk."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from latentmix.models.preact_resnet import PreActBlock, PreActResNet18, preact_resnet18


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_width_1() -> None:
    # Hand derivation (3x3 convs have no bias; BN has weight+bias = 2C; linear has bias):
    #   stem   conv 3*64*9 = 1,728                          + BN(64)  128
    #   layer1 4 convs 64*64*9 = 4*36,864 = 147,456          + BN 4 x 64 -> 512
    #   layer2 64->128 73,728 + 3*147,456 + 1x1 proj 8,192 = 524,288
    #          BN: bn1(64)=128, bn2(128)=256, bn1(128)=256, bn2(128)=256 -> 896
    #   layer3 128->256 294,912 + 3*589,824 + proj 32,768 = 2,097,152;  BN 256 + 3*512 = 1,792
    #   layer4 256->512 1,179,648 + 3*2,359,296 + proj 131,072 = 8,388,608;  BN 512 + 3*1,024 = 3,584
    #   linear 512*10 + 10 = 5,130
    # convs 11,159,232 + block BNs 6,784 + linear 5,130 = 11,171,146  (kuangliu PreActResNet18: bare
    # conv1 stem, no final BN) ; + stem BN 128 = 11,171,274 for the reference architecture.
    # (11,173,962 is the post-activation ResNet-18 of kuangliu/pytorch-cifar, not a PreAct count.)
    reference = PreActResNet18(num_classes=10, block="reference")
    textbook = PreActResNet18(num_classes=10, block="textbook")
    assert _count(reference) == 11_171_274
    assert _count(textbook) == _count(reference)
    assert _count(reference) - _count(reference.stem[1]) == 11_171_146


def test_forward_shape_narrow() -> None:
    model = PreActResNet18(num_classes=10, width=0.125)
    assert model.channels == (8, 16, 32, 64)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert model.stem[0].weight.grad is not None


def test_mix_point_shapes_and_single_call() -> None:
    width = 0.125
    model = preact_resnet18(num_classes=7, in_channels=3, width=width)
    assert PreActResNet18.mix_points == ("layer1", "layer2", "layer3", "layer4")
    assert isinstance(model.stem, nn.Sequential) and len(model.stem) == 3
    modules = dict(model.named_modules())
    seen: dict = {}

    def hook(name):
        def record(module, inputs, output):
            seen.setdefault(name, []).append(tuple(output.shape))
        return record

    for name in model.mix_points:
        modules[name].register_forward_hook(hook(name))
    n = 3
    logits = model(torch.randn(n, 3, 32, 32))
    assert logits.shape == (n, 7)
    c = lambda base: int(round(base * width))  # noqa: E731
    assert seen == {
        "layer1": [(n, c(64), 32, 32)],
        "layer2": [(n, c(128), 16, 16)],
        "layer3": [(n, c(256), 8, 8)],
        "layer4": [(n, c(512), 4, 4)],
    }


def test_width_and_channels_options() -> None:
    model = PreActResNet18(num_classes=4, in_channels=1, width=0.01)
    assert model.channels == (1, 1, 3, 5)  # max(1, round(64*w)), ...
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    with pytest.raises(ValueError):
        PreActResNet18(block="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PreActResNet18(width=0)


def test_reference_quirk_block_level() -> None:
    torch.manual_seed(0)
    block = PreActBlock(8, 8, stride=1, block="reference").eval()
    # randomise BN so relu(bn1(x)) differs clearly from x
    for bn in (block.bn1, block.bn2):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
    textbook = PreActBlock(8, 8, stride=1, block="textbook").eval()
    textbook.load_state_dict(block.state_dict())
    x = torch.randn(2, 8, 6, 6)
    a = F.relu(block.bn1(x))
    residual = block.conv2(F.relu(block.bn2(block.conv1(a))))
    assert torch.allclose(block(x), residual + a, atol=1e-6)  # shortcut of the pre-activation
    assert torch.allclose(textbook(x), residual + x, atol=1e-6)  # He et al.: shortcut of x

    # projection blocks: both variants project the pre-activation, so they agree
    proj_ref = PreActBlock(8, 16, stride=2, block="reference").eval()
    proj_txt = PreActBlock(8, 16, stride=2, block="textbook").eval()
    proj_txt.load_state_dict(proj_ref.state_dict())
    assert torch.allclose(proj_ref(x), proj_txt(x))


def test_reference_and_textbook_networks_differ_for_same_weights() -> None:
    torch.manual_seed(1)
    reference = PreActResNet18(width=0.125, block="reference").eval()
    textbook = PreActResNet18(width=0.125, block="textbook").eval()
    textbook.load_state_dict(reference.state_dict())  # identical parameter names and shapes
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(reference(x), textbook(x), atol=1e-4)


def test_model_pickles() -> None:
    model = PreActResNet18(width=0.125)
    clone = pickle.loads(pickle.dumps(model))
    x = torch.randn(1, 3, 32, 32)
    model.eval(), clone.eval()
    assert torch.allclose(model(x), clone(x))
