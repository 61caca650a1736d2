"""Every method of an evaluation is also scored on the baselines' images, the same ones."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from spikeconverter.baselines import RateNetwork
from spikeconverter.converters import capture, convert
from spikeconverter.converters.api import resolve_backend
from spikeconverter.evaluation import evaluate
from spikeconverter.models import small_cnn


def test_baselines_ann_and_ilif_are_scored_on_one_seeded_draw():
    torch.manual_seed(0)
    model = small_cnn(input_size=8, width=4, hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(13, 1, 8, 8, generator=g), torch.randint(0, 10, (13,), generator=g)
    # labels the ANN gets right on some images and wrong on others, so a wrong subset shows
    y[::2] = model(x).argmax(1)[::2]
    rep = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=4), x, T_values=[3],
                   baselines=["soft_reset"], baseline_steps=[16], baseline_limit=6,
                   progress=False)
    # the documented draw: the first 6 of a permutation seeded with 0 (benchmarks use it too)
    pick = torch.randperm(13, generator=torch.Generator().manual_seed(0))[:6]
    xs, ys = x[pick], y[pick]

    def top1(pred):
        return 100.0 * float((pred == ys).sum()) / 6

    assert rep.meta["baseline_images"] == 6
    assert rep.ann["top1_baseline_images"] == top1(model(xs).argmax(1))
    ilif = resolve_backend("norse")(convert(model, x, T=3, progress=False).graph)
    row = {r["method"]: r for r in rep.rows}
    assert row["iLIF"]["top1_baseline_images"] == top1(ilif(xs).argmax(1))
    net = RateNetwork(capture(model, x[:2]), rep.meta["baseline_thresholds"], "soft_reset")
    assert row["soft_reset"]["top1"] == top1(net.run(xs, (16,)).logits[16].argmax(1))
