"""CutMix batches (``mixup_kind``): a seeded box from the shuffled copy, its label weight the
share of pixels kept; fine-tuning distils on them."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from trainhelpers import shuffled_digits, trained_cnn

from spikeconverter.converters import convert
from spikeconverter.training import finetune
from spikeconverter.training.finetune import mixup_seed
from spikeconverter.training.losses import distillation_loss, mixup


def test_cutmix_pastes_a_box_whose_area_is_the_other_label_weight():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for seed in range(6):
        mixed, lam, perm = mixup(x, 1.0, seed, "cutmix")
        own = (mixed == x).all(1)  # pixels still the image's own (all channels)
        other = (mixed == x[perm]).all(1)
        assert bool((own | other).all())
        moved = perm != torch.arange(6)
        # the same box in every image: the share kept is lam wherever the partner differs
        assert float(own[moved].float().mean()) == pytest.approx(lam, abs=1e-6)
        assert 0 <= lam <= 1
    assert mixup(x, 1.0, 4, "cutmix")[1] == mixup(x, 1.0, 4, "cutmix")[1]


def test_both_draws_mixup_or_cutmix_from_the_seed():
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    kinds = set()
    for seed in range(12):
        mixed, lam, perm = mixup(x, 1.0, seed, "both")
        blend = lam * x + (1 - lam) * x[perm]
        kinds.add("mixup" if torch.allclose(mixed, blend) else "cutmix")
        if "cutmix" in kinds and not torch.allclose(mixed, blend):
            assert bool(((mixed == x) | (mixed == x[perm])).all())
    assert kinds == {"mixup", "cutmix"}
    with pytest.raises(ValueError, match="kind"):
        mixup(x, 1.0, 0, "shuffle")


def test_finetune_distils_on_cutmix_batches():
    x, y = shuffled_digits(1)
    x, y = x[:256], y[:256]
    model = trained_cnn(x, y, epochs=3)
    net = convert(model, x[:128], T=2, progress=False)
    data = (x[:128], y[:128])
    h = finetune(copy.deepcopy(net), data, max_steps=1, batch_size=32, teacher=model,
                 distill_weight=0.6, distill_temperature=2.0, mixup=1.0, mixup_kind="cutmix",
                 seed=3, progress=False, lr=1e-3)
    xb, yb = next(iter(DataLoader(TensorDataset(*data), batch_size=32, shuffle=True,
                                  generator=torch.Generator().manual_seed(3))))
    mixed, lam, perm = mixup(xb, 1.0, mixup_seed(3, 0), "cutmix")
    assert not torch.allclose(mixed, lam * xb + (1 - lam) * xb[perm])
    with torch.no_grad():
        out, ref = net(mixed), model(mixed)
    hard = lam * F.cross_entropy(out, yb) + (1 - lam) * F.cross_entropy(out, yb[perm])
    soft = distillation_loss(out, ref, yb, temperature=2.0, weight=1.0)
    assert h["loss"][0] == pytest.approx(float(0.4 * hard + 0.6 * soft), rel=1e-4)
    with pytest.raises(ValueError, match="mixup_kind"):
        finetune(net, data, mixup=1.0, mixup_kind="mix")
