"""A residual network built the way Sengupta et al. (2019) build theirs for conversion.

Their ResNets ("Going deeper in spiking neural networks: VGG and residual architectures",
Frontiers in Neuroscience 13:95) are trained for the hard-reset IF conversion with spike-norm:
no BatchNorm and no biases (a bias would be a constant current injected at every step, which the
conversion does not model), ReLU, dropout as the regulariser, average pooling, a ReLU after each
residual junction, and plain (non-residual) convolutions before the first residual block. This
is a small member of that family, to check the hard-reset baseline where the paper's assumptions
hold (``benchmarks/hard_reset_paper_net.py``); the shared CIFAR ResNet-20 (BatchNorm folded into
biases, option-A shortcuts) is not one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PaperResNet", "paper_resnet"]


class _Block(nn.Module):
    """conv-ReLU-dropout-conv, plus the identity, then ReLU (no BatchNorm, no bias)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.drop(F.relu(self.conv1(x)))) + x)


class PaperResNet(nn.Module):
    """Plain convs, then stages of identity blocks joined by avg-pool + conv transitions.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Outputs (a linear layer without bias after global average pooling).
    widths : sequence of int
        Channels per stage; between stages, 2x2 average pooling and a plain 3x3 conv-ReLU.
    blocks : int
        Residual blocks per stage.
    pre_layers : int
        Plain 3x3 conv-ReLU layers before the first block (at least 1).
    dropout : float
        Dropout probability after the plain layers and inside each block.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64), blocks: int = 1, pre_layers: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        if not widths or pre_layers < 1 or blocks < 0:
            raise ValueError(f"need widths, pre_layers >= 1 and blocks >= 0, got {widths!r}, "
                             f"{pre_layers!r}, {blocks!r}")
        layers: list[nn.Module] = []
        cin = in_channels
        for _ in range(pre_layers):
            layers += [nn.Conv2d(cin, widths[0], 3, padding=1, bias=False), nn.ReLU(),
                       nn.Dropout(dropout)]
            cin = widths[0]
        for i, w in enumerate(widths):
            if i:
                layers += [nn.AvgPool2d(2), nn.Conv2d(cin, w, 3, padding=1, bias=False),
                           nn.ReLU()]
                cin = w
            layers += [_Block(w, dropout) for _ in range(blocks)]
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(cin, num_classes, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        for b in self.modules():
            if isinstance(b, _Block):  # each block starts near the identity (stable w/o BN)
                b.conv2.weight.data.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.linear(torch.flatten(x, 1))


def paper_resnet(**kw) -> PaperResNet:
    """A :class:`PaperResNet` (keyword arguments as its constructor)."""
    return PaperResNet(**kw)
