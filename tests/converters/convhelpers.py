"""Shared helpers of the converter tests (imported by name: the tests folders are no packages)."""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
RESNET20 = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"


def with_bn_statistics(model: torch.nn.Module, shape, batches: int = 3, seed: int = 0):
    """float64 model whose BatchNorm running statistics come from a few data batches."""
    g = torch.Generator().manual_seed(seed)
    model = model.double()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average over the batches
            with torch.no_grad():  # non-trivial affine parameters, as after training
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, *shape, dtype=torch.float64, generator=g))
    return model.eval()


class TinyResNet(nn.Module):
    """A residual block with an identity skip, one with an option-A (subsample + pad) skip."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a1, self.a2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.b1 = nn.Conv2d(4, 8, 3, padding=1, stride=2)
        self.b2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.a2(F.relu(self.a1(x))))
        short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
        x = F.relu(short + self.b2(F.relu(self.b1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


#: Input shape of the small CNN of :func:`small_cnn` and :func:`small_images`.
SMALL_SHAPE = (1, 8, 8)


def small_cnn() -> nn.Module:
    """The zoo's ``small_cnn`` on 8x8 inputs, float64, with BatchNorm statistics."""
    from spikeconverter.models import get_model

    return with_bn_statistics(get_model("small_cnn", input_size=8), SMALL_SHAPE)


def small_images(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` seeded float64 inputs for :func:`small_cnn`."""
    return torch.randn(n, *SMALL_SHAPE, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))
