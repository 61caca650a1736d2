"""Shared helpers of the converter tests (imported by name: the tests folders are no packages)."""

from pathlib import Path

import torch

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
