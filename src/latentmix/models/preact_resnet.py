"""PreAct ResNet-18 for 32x32 images, as used by Arazo et al. 2019.

Sources:
    K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016
    (arXiv:1603.05027) - the pre-activation residual unit  x_{l+1} = x_l + F(relu(bn(x_l))).
    E. Arazo, D. Ortego, P. Albert, N. O'Connor, K. McGuinness, "Unsupervised Label Noise Modeling
    and Loss Correction", ICML 2019 - reference code PaulAlbert31/LabelNoiseCorrection, PreResNet.py
    (``ResNet18 = ResNet(PreActBlock, [2, 2, 2, 2])``), which this module reproduces layer by layer.

Architecture (width w = 1): stem conv3x3(3->64, no bias) -> BN -> ReLU; layer1..layer4 with two
`PreActBlock`s each (64/128/256/512 channels, first-block strides 1/2/2/2); 4x4 average pooling;
linear. No BN-ReLU after layer4 (unlike He et al.'s final activation); the reference has none.
"""

from __future__ import annotations

from typing import List, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PreActBlock", "PreActResNet18", "preact_resnet18"]

BlockKind = Literal["reference", "textbook"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """Pre-activation basic block: two 3x3 convolutions, each preceded by BN-ReLU.

    With a = relu(bn1(x)) and F(a) = conv2(relu(bn2(conv1(a)))), the output is

        reference (Arazo et al. code):  y = F(a) + S(a)
        textbook  (He et al. 2016):     y = F(a) + x      when no projection is needed,
                                        y = F(a) + S(a)   with a projection,

    where S is the identity, or a 1x1 strided convolution (no bias, no BN) when the stride is not 1
    or the channel count changes. The reference code always builds ``self.shortcut`` (an empty
    ``nn.Sequential`` for the identity) and applies it to the pre-activated `a`, so even identity
    shortcuts carry relu(bn1(x)) instead of x - this is the "reference quirk". Projection shortcuts
    take `a` in both variants (He et al.'s shared pre-activation, as in kuangliu/pytorch-cifar).
    Both variants have exactly the same parameters.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, block: BlockKind = "reference") -> None:
        super().__init__()
        if block not in ("reference", "textbook"):
            raise ValueError(f"block must be 'reference' or 'textbook', got {block!r}")
        self.block = block
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.shortcut = nn.Sequential()
        self.has_projection = stride != 1 or in_planes != self.expansion * planes
        if self.has_projection:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        if self.block == "reference" or self.has_projection:
            shortcut = self.shortcut(out)
        else:
            shortcut = x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 (He et al. 2016) in the form of the Arazo et al. 2019 reference code.

    Modules, in forward order: ``stem`` (Sequential: conv3x3(in_channels -> c1, bias=False), BN, ReLU),
    ``layer1`` .. ``layer4`` (two `PreActBlock`s each; channels c1..c4 = max(1, round(64*width)),
    max(1, round(128*width)), ..., strides 1, 2, 2, 2), 4x4 average pooling, flatten, ``linear``
    (c4 -> num_classes). For a 32x32 input the spatial sizes are 32, 16, 8, 4, then 1 after pooling.

    Mix points (Manifold Mixup numbering, Verma et al. 2019 / Arazo et al. ``lin``/``lout``):
        0 = the input x
        1 = output of ``layer1`` (stem + layer1), shape (N, c1, 32, 32)
        2 = output of ``layer2``,                 shape (N, c2, 16, 16)
        3 = output of ``layer3``,                 shape (N, c3, 8, 8)
        4 = output of ``layer4`` (before pooling), shape (N, c4, 4, 4)
    ``mix_points[k - 1]`` names the submodule whose output is mix point k >= 1; a mixing wrapper
    registers forward hooks on those names. Each of them runs exactly once per forward.

    Parameter count at width 1, 10 classes, 3 input channels: 11,171,274 for both block variants
    (derivation in tests/test_preact_resnet.py).

    Args:
        num_classes: number of output logits.
        in_channels: input image channels.
        width: channel multiplier (1.0 = the standard network; tests use 0.125).
        block: "reference" (default; Arazo et al. shortcut quirk) or "textbook" (He et al.).
    """

    mix_points = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, block: BlockKind = "reference"
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if block not in ("reference", "textbook"):
            raise ValueError(f"block must be 'reference' or 'textbook', got {block!r}")
        channels = [max(1, int(round(base * width))) for base in (64, 128, 256, 512)]
        self.channels = tuple(channels)
        self.block = block
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            _conv3x3(in_channels, channels[0]),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=False),
        )
        self._in_planes = channels[0]
        self.layer1 = self._make_layer(channels[0], 2, stride=1)
        self.layer2 = self._make_layer(channels[1], 2, stride=2)
        self.layer3 = self._make_layer(channels[2], 2, stride=2)
        self.layer4 = self._make_layer(channels[3], 2, stride=2)
        self.linear = nn.Linear(channels[3] * PreActBlock.expansion, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers: List[nn.Module] = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(PreActBlock(self._in_planes, planes, block_stride, block=self.block))
            self._in_planes = planes * PreActBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.flatten(1)
        return self.linear(out)


def preact_resnet18(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, block: BlockKind = "reference"
) -> PreActResNet18:
    """Factory alias for `PreActResNet18`."""
    return PreActResNet18(num_classes=num_classes, in_channels=in_channels, width=width, block=block)
