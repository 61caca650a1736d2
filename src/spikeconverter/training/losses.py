"""Training losses: knowledge distillation from the ANN the network was converted from.

With a few thousand images the hard labels say little that the converted network does not
already get right; the ANN's logits say, for every image, how the network *should* rank all
classes -- the signal that makes calibration- and QCFS-style fine-tuning of converted networks
land with little data (Hinton et al. 2015, "Distilling the knowledge in a neural network").
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spikeconverter.options import MIXUP_KINDS

__all__ = ["distillation_loss", "feature_loss", "mixup"]


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *,
                      temperature: float = 4.0, weight: float = 0.9,
                      hard_loss=F.cross_entropy) -> torch.Tensor:
    r"""``(1 - weight) * hard_loss(student, labels) + weight * temperature**2 * KL``.

    ``KL`` is the batch mean of :math:`\mathrm{KL}(\mathrm{softmax}(t/\tau) \,\|\,
    \mathrm{softmax}(s/\tau))` (:func:`torch.nn.functional.kl_div`); the factor
    :math:`\tau^2` keeps its gradient on the scale of the cross-entropy's as :math:`\tau` varies
    (Hinton et al. 2015).

    Parameters
    ----------
    student, teacher : torch.Tensor
        Logits ``(B, classes)``; no gradient flows into ``teacher``.
    labels : torch.Tensor
        Class indices ``(B,)``.
    temperature : float
        :math:`\tau` > 0: softens both distributions.
    weight : float
        Share of the distillation term, in ``[0, 1]`` (1: labels unused).
    hard_loss : callable
        ``hard_loss(logits, labels)`` (cross-entropy by default).

    Raises
    ------
    ValueError
        Shapes that differ, a temperature <= 0 or a weight outside ``[0, 1]``.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits "
                         f"{tuple(teacher.shape)} differ in shape (the teacher must be the "
                         "ANN the network was converted from)")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must lie in [0, 1], got {weight!r}")
    t = teacher.detach().to(student.dtype)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1),
                    F.log_softmax(t / temperature, dim=1), reduction="batchmean",
                    log_target=True)
    loss = weight * temperature ** 2 * soft
    if weight < 1:
        loss = loss + (1 - weight) * hard_loss(student, labels)
    return loss


def feature_loss(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]
                 ) -> torch.Tensor:
    r"""Feature distillation: the mean over populations of
    :math:`\lVert s - t \rVert^2 / \lVert t \rVert^2`, each population's squared error relative
    to the teacher's mean square there (so every block weighs the same whatever its scale;
    FitNets' hints, Romero et al. 2015, at the block outputs BRECQ reconstructs).

    Parameters
    ----------
    student : dict of str to torch.Tensor
        The network's decoded values per population, ``(B, ...)``.
    teacher : dict of str to torch.Tensor
        The ANN's activations of the same populations (no gradient flows into them).

    Raises
    ------
    ValueError
        Different population names or shapes, or no population.
    """
    if not student or set(student) != set(teacher):
        raise ValueError(f"student populations {sorted(student)} and teacher populations "
                         f"{sorted(teacher)} differ (or are none)")
    terms = []
    for name, s in student.items():
        t = teacher[name].detach().to(s.dtype)
        if s.shape != t.shape:
            raise ValueError(f"population {name!r}: student values {tuple(s.shape)} and teacher "
                             f"activations {tuple(t.shape)} differ in shape")
        scale = t.square().mean()
        # an all-zero activation (a dead block on this batch) counts its plain squared error
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        terms.append((s - t).square().mean() / scale)
    return torch.stack(terms).mean()


def mixup(x: torch.Tensor, alpha: float, seed: int, kind: str = "mixup"
          ) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Mix a batch with a shuffled copy of itself (Zhang et al. 2018, "mixup"; or Yun et al.
    2019, "CutMix").

    Returns ``(mixed, lam, perm)`` with ``lam ~ Beta(alpha, alpha)`` and ``perm`` a random
    permutation, all drawn from ``seed`` alone (so a resumed run mixes its batches as the
    uninterrupted one did). ``kind="mixup"``: ``mixed = lam * x + (1 - lam) * x[perm]``.
    ``"cutmix"``: a box of ``(1 - lam)`` of the image area (centre uniform, clipped at the
    border) is pasted from ``x[perm]`` into every image, and ``lam`` becomes the share of
    pixels left of the image itself, the weight of its own label. ``"both"``: one of the two,
    drawn from ``seed``. With a teacher, the mixed images are new inputs it labels:
    distillation then matches the ANN on far more inputs than the few thousand training
    images ("function matching", Beyer et al. 2022).

    Raises
    ------
    ValueError
        ``alpha`` <= 0, or an unknown ``kind``.
    """
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha!r}")
    if kind not in MIXUP_KINDS:
        raise ValueError(f"mixup kind must be one of {MIXUP_KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    if kind == "both":
        kind = MIXUP_KINDS[int(rng.integers(2))]
    if kind == "mixup":
        return lam * x + (1 - lam) * x[perm], lam, perm
    return _cutmix(x, perm, lam, rng)


def _cutmix(x: torch.Tensor, perm: torch.Tensor, lam: float, rng: np.random.Generator
            ) -> tuple[torch.Tensor, float, torch.Tensor]:
    """``x`` with a box of about ``(1 - lam)`` of its last two dimensions' area taken from
    ``x[perm]``; the share of pixels kept; ``perm``."""
    h, w = x.shape[-2:]
    side = np.sqrt(1.0 - lam)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - int(h * side) // 2, 0), min(cy + int(h * side) // 2, h)
    x0, x1 = max(cx - int(w * side) // 2, 0), min(cx + int(w * side) // 2, w)
    mixed = x.clone()
    mixed[..., y0:y1, x0:x1] = x[..., y0:y1, x0:x1][perm]  # only the box is gathered
    return mixed, 1.0 - (y1 - y0) * (x1 - x0) / (h * w), perm
