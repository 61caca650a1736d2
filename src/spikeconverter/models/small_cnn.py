"""A small CNN for MNIST (28x28) or scikit-learn digits (8x8) and similar grey-scale inputs."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """conv-BN-ReLU-maxpool, conv-BN-ReLU-maxpool, linear-ReLU, linear.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for MNIST/digits).
    input_size : int
        Height = width of the input; must be divisible by 4 (two 2x2 poolings).
    num_classes : int
        Outputs.
    width : int
        Channels of the first conv (the second has twice as many).
    hidden : int
        Units of the hidden linear layer.
    batch_norm : bool
        Put a BatchNorm after each conv (folded into the conv on conversion).
    """

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int = 28,
        num_classes: int = 10,
        width: int = 16,
        hidden: int = 64,
        batch_norm: bool = True,
    ):
        super().__init__()
        if input_size % 4 or input_size < 4:
            raise ValueError(f"input_size must be a positive multiple of 4, got {input_size!r}")

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(in_channels, width), *block(width, 2 * width))
        side = input_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def small_cnn(**kw) -> SmallCNN:
    """A :class:`SmallCNN` (keyword arguments as its constructor)."""
    return SmallCNN(**kw)
