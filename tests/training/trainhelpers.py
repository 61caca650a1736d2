"""The sklearn digits (8x8) and a small CNN trained on them, shared by the training tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spikeconverter.models import small_cnn


def shuffled_digits(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as ``(N, 1, 8, 8)`` in [0, 1] and their labels, in a seeded order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[perm], y[perm]


def trained_cnn(x: torch.Tensor, y: torch.Tensor, epochs: int) -> torch.nn.Module:
    """``small_cnn`` (seed 0) trained by Adam 3e-3 on batches of 50 of ``x``; in eval mode."""
    torch.manual_seed(0)
    model = small_cnn(input_size=8, width=8, hidden=32)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(epochs):
        for i in range(0, len(x), 50):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 50]), y[i:i + 50]).backward()
            opt.step()
    return model.eval()


def digits_and_ann(seed: int, n: int = 600
                   ) -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """``n`` digits of :func:`shuffled_digits` (``seed``) and ``small_cnn`` trained 10 epochs
    on them."""
    x, y = shuffled_digits(seed)
    x, y = x[:n], y[:n]
    return trained_cnn(x, y, epochs=10), (x, y)
