"""Mixed training batches (mixup, CutMix) for distillation from the ANN.

With a few thousand training images a capacity-starved spiking network (T = 2) soon fits the
teacher's outputs on those images; the teacher labels *any* input, so blending pairs of images
(mixup, Zhang et al. 2018) or pasting a patch of one into another (CutMix, Yun et al. 2019)
gives the distillation loss new inputs every step. The mixing is torchvision's
(:class:`torchvision.transforms.v2.MixUp`, :class:`~torchvision.transforms.v2.CutMix`); this
module only makes it a ``DataLoader`` ``collate_fn``. The labels become the mixed one-hot
probabilities, which :func:`torch.nn.functional.cross_entropy` (the hard part of
:func:`spikeconverter.training.distillation_loss`) accepts as they are; the teacher's logits
are taken on the mixed images by :func:`spikeconverter.training.finetune`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

__all__ = ["MIXES", "mixing_collate"]

#: The kinds of mixing :func:`mixing_collate` knows ("both": one of the two per batch).
MIXES = ("mixup", "cutmix", "both")


def mixing_collate(kind: str, num_classes: int, alpha: float = 1.0
                   ) -> Callable[[Sequence[Any]], tuple[torch.Tensor, torch.Tensor]]:
    """A ``collate_fn`` that batches ``(image, label)`` samples and mixes the batch.

    Parameters
    ----------
    kind : {"mixup", "cutmix", "both"}
        mixup blends two images, CutMix pastes a box of one into the other, "both" picks one
        of them at random for each batch.
    num_classes : int
        Classes of the integer labels (for the mixed one-hot labels).
    alpha : float
        Parameter of the Beta distribution of the mixing share (> 0).

    Returns
    -------
    callable
        ``collate(samples) -> (images (B, C, H, W), labels (B, num_classes))``, random from
        torch's global generator (seed it with :func:`torch.manual_seed`).

    Raises
    ------
    ValueError
        An unknown ``kind``, ``num_classes`` < 2 or ``alpha`` <= 0.
    """
    from torchvision.transforms import v2

    if kind not in MIXES:
        raise ValueError(f"mixing kind must be one of {MIXES}, got {kind!r}")
    if not (isinstance(num_classes, int) and num_classes >= 2):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    mixes = {"mixup": v2.MixUp(alpha=alpha, num_classes=num_classes),
             "cutmix": v2.CutMix(alpha=alpha, num_classes=num_classes)}
    mixer = mixes[kind] if kind != "both" else v2.RandomChoice(list(mixes.values()))

    def collate(samples: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = default_collate(samples)[:2]
        return mixer(x, y)

    return collate
