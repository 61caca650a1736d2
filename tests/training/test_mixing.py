"""Mixed training batches (mixup, CutMix) as a collate function, and fine-tuning on them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from trainhelpers import shuffled_digits, trained_cnn

from spikeconverter.converters import convert
from spikeconverter.training import finetune
from spikeconverter.training.losses import distillation_loss
from spikeconverter.training.mixing import mixing_collate


def _samples(n: int = 6) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(3, 8, 8, generator=g), i) for i in range(n)]


def test_mixup_blends_each_image_with_its_neighbour_by_the_label_share():
    samples = _samples()
    x = torch.stack([s[0] for s in samples])
    torch.manual_seed(3)
    xm, ym = mixing_collate("mixup", num_classes=10)(samples)
    assert ym.shape == (6, 10)
    torch.testing.assert_close(ym.sum(1), torch.ones(6))
    lam = float(ym[0, 0])  # labels 0..5 are distinct: image 0's own share
    assert 0 < lam < 1
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.roll(1, 0))
    onehot = F.one_hot(torch.arange(6), 10).float()
    torch.testing.assert_close(ym, lam * onehot + (1 - lam) * onehot.roll(1, 0))


def test_cutmix_pastes_a_box_whose_area_is_the_label_share():
    samples = _samples()
    x = torch.stack([s[0] for s in samples])
    for seed in range(5):
        torch.manual_seed(seed)
        xm, ym = mixing_collate("cutmix", num_classes=6)(samples)
        own = (xm == x).all(1)  # pixels (all channels) still the image's own
        other = (xm == x.roll(1, 0)).all(1)
        assert bool((own | other).all())
        lam = float(ym[0, 0])
        assert float(own[0].float().mean()) == pytest.approx(lam, abs=1e-6)
        torch.testing.assert_close(ym.sum(1), torch.ones(6))


def test_mixing_collate_rejects_bad_settings():
    with pytest.raises(ValueError, match="mixup"):
        mixing_collate("shuffle", 10)
    with pytest.raises(ValueError, match="num_classes"):
        mixing_collate("both", 1)
    with pytest.raises(ValueError, match="alpha"):
        mixing_collate("cutmix", 10, alpha=0.0)


def test_finetune_distils_on_mixed_batches():
    """The first step's loss is the distillation loss of the spiking and the ANN's logits on
    the first *mixed* batch, with the mixed (soft) labels in the cross-entropy."""
    x, y = shuffled_digits(1)
    x, y = x[:256], y[:256]
    model = trained_cnn(x, y, epochs=3)
    net = convert(model, x[:128], T=2, progress=False)

    def loader():
        torch.manual_seed(7)
        return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                          generator=torch.Generator().manual_seed(0),
                          collate_fn=mixing_collate("both", num_classes=10))

    xb, yb = next(iter(loader()))
    assert yb.shape == (32, 10) and not torch.equal(xb, x[:32])
    with torch.no_grad():
        expected = distillation_loss(net(xb), model(xb), yb, temperature=2.0, weight=0.8)
    h = finetune(net, loader(), max_steps=1, teacher=model, distill_weight=0.8,
                 distill_temperature=2.0, progress=False, lr=1e-3)
    assert h["loss"][0] == pytest.approx(float(expected), rel=1e-4)
