"""The Lava backend: emitted networks equal the Norse backend, stream samples, run fixed point."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from convhelpers import SHARED, TinyResNet

pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0 (Python 3.10)")

import spikeconverter as sc  # noqa: E402
from spikeconverter.converters.lava_backend import LavaNetwork  # noqa: E402
from spikeconverter.converters.to_lava.fixed_point import format_report  # noqa: E402

pytestmark = pytest.mark.lava


class TinyCNN(nn.Module):
    """conv-relu-maxpool, conv-relu (stride 2), flatten, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, padding=1, stride=(1, 2))
        self.fc = nn.Linear(6 * 4 * 2, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        return self.fc(torch.flatten(F.relu(self.c2(x)), 1))


def _model(cls, seed=0):
    torch.manual_seed(seed)
    return cls().double().eval()


def _data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, dtype=torch.float64, generator=g)


@pytest.mark.parametrize("cls,granularity", [(TinyCNN, "layer"), (TinyResNet, "layer"),
                                              (TinyResNet, "channel")])
def test_float_logits_equal_norse_streamed(cls, granularity):
    model, x = _model(cls), _data()
    # the same graph (one threshold per layer or per channel) in Norse: the same logits
    norse = sc.convert(model, x, T=5, dtype=torch.float64, progress=False,
                       threshold_granularity=granularity)
    lnet = sc.convert(model, x, T=5, dtype=torch.float64, progress=False, backend="lava",
                      threshold_granularity=granularity)
    assert isinstance(lnet, LavaNetwork)
    images = x[:3]
    logits = lnet.run(images, batch_size=1, progress=False)
    ref = norse(images).numpy()
    assert logits.shape == ref.shape
    np.testing.assert_allclose(logits, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    s = lnet.stats
    assert s["steps_simulated"] == s["latency_steps"] + 2 * s["steps_per_sample"]
    assert s["steps_per_sample"] == 10  # t_acc + t_gen = 2T for every population
    assert s["samples"] == 3


def test_residual_emits_sparse_skip_and_delays():
    model, x = _model(TinyResNet), _data()
    lnet = sc.convert(model, x, T=4, progress=False, backend="lava")
    syn = lnet.plan().synapses
    kinds = {(s.kind, s.delay > 0) for s in syn}
    assert ("conv", False) in kinds
    # the skips are fixed index maps, delayed by what the longer path adds: one population's
    # accumulate window (T) and one more synapse hop
    skips = [s for s in syn if s.kind == "sparse"]
    assert len(skips) == 2 and all(s.delay == 4 + 1 for s in skips)
    assert all(s.delay == 0 for s in syn if s.kind == "conv")


def test_single_sample_takes_latency_steps():
    model, x = _model(TinyCNN), _data()
    lnet = sc.convert(model, x, T=4, progress=False, backend="lava")
    lnet.run(x[:1], progress=False)
    assert lnet.stats["steps_simulated"] == lnet.schedule.latency_steps


def test_fixed_point_agrees_and_reports():
    model, x = _model(TinyCNN), _data(64)
    lnet = sc.convert(model, x, T=8, progress=False, backend="lava")
    images = x[:6]
    flt = lnet.run(images, progress=False)
    fix = lnet.run(images, fixed_point=True, progress=False)
    assert lnet.stats["fixed_point"] and lnet.stats["saturations"] == 0
    assert (flt.argmax(1) == fix.argmax(1)).all()
    assert np.max(np.abs(fix - flt)) < 0.05 * np.max(np.abs(flt))
    rep = lnet.fixed_point_report()
    plan = lnet.plan(fixed_point=True)
    for name, layer in rep["layers"].items():
        assert layer["saturations"] == 0
        assert 0 < layer["membrane_bits"] <= 23
        assert layer["synapses"] > 0 and layer["max_fan_in"] > 0
        spec = plan.populations[name]
        if spec.kind == "relu":  # the threshold is exact: (vth << 6) = theta * gain
            theta = float(np.asarray(lnet.plan().populations[name].vth).flat[0])
            assert spec.vth * 64 == pytest.approx(theta * layer["gain"], rel=1e-12)
            assert (spec.vth * 64) % 2**8 == 0  # nearest rounding's half LSB is an integer
    for s in plan.synapses:  # 8-bit signed mantissas (Dense/Sparse hold 2m)
        w = s.weight.toarray() if hasattr(s.weight, "toarray") else np.asarray(s.weight)
        m = w if s.kind == "conv" else w / 2
        assert np.all(m == np.rint(m)) and np.abs(m).max() <= 128
    text = format_report(rep)
    assert "fan-in" in text and all(name in text for name in rep["layers"])


def test_fixed_point_warns_on_core_limits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4100, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(8, 4100, dtype=torch.float64)
    lnet = sc.convert(model.eval(), x, T=4, progress=False, backend="lava")
    with pytest.warns(UserWarning, match="fan-in 4100 > 4096"):
        lnet.fixed_point_report()


def test_save_load_roundtrip(tmp_path):
    model, x = _model(TinyCNN), _data()
    lnet = sc.convert(model, x, T=4, progress=False, backend="lava")
    path = tmp_path / "net.snn"
    lnet.save(path)
    back = sc.load(path)
    assert isinstance(back, LavaNetwork) and back.membrane_peaks == lnet.membrane_peaks
    np.testing.assert_array_equal(back.run(x[:2], fixed_point=True, progress=False),
                                  lnet.run(x[:2], fixed_point=True, progress=False))
    norse = sc.load(path, backend="norse")
    np.testing.assert_allclose(norse(x[:2].float()).numpy(), back.run(x[:2], progress=False),
                               rtol=1e-4, atol=1e-5)


def test_norse_file_runs_in_lava_after_calibration(tmp_path):
    model, x = _model(TinyCNN), _data()
    net = sc.convert(model, x, T=4, dtype=torch.float64, progress=False)
    net.save(tmp_path / "n.snn")
    lnet = sc.load(tmp_path / "n.snn", backend="lava")
    with pytest.raises(ValueError, match="calibrate_fixed_point"):
        lnet.run(x[:1], fixed_point=True, progress=False)
    np.testing.assert_allclose(lnet.run(x[:2], progress=False), net(x[:2]).numpy(), rtol=1e-6)
    lnet.calibrate_fixed_point(x, progress=False)
    assert lnet.run(x[:2], fixed_point=True, progress=False).shape == (2, 5)


def test_bad_input_raises():
    model, x = _model(TinyCNN), _data()
    lnet = sc.convert(model, x, T=4, progress=False, backend="lava")
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 8, 8\)"):
        lnet.run(torch.zeros(2, 1, 7, 8), progress=False)


# -- MNIST: fixed point against float -----------------------------------------------------------

MNIST = SHARED / "data" / "mnist"


def _mnist(split: str, n: int):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Grayscale(), transforms.ToTensor(),
                             transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.ImageFolder(str(MNIST / split), transform=tf)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n]
    xs, ys = zip(*(ds[int(i)] for i in idx), strict=True)
    return torch.stack(xs), torch.tensor(ys)


@pytest.fixture(scope="module")
def mnist_cnn():
    if not (MNIST / "train").is_dir() or not (MNIST / "test").is_dir():
        pytest.skip(f"shared MNIST {MNIST} not available")
    from spikeconverter.models import small_cnn

    torch.manual_seed(0)
    x, y = _mnist("train", 3000)
    model = small_cnn(width=8, hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for i in range(0, len(x), 32):
        opt.zero_grad()
        F.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
        opt.step()
    return model.eval(), x[:256]


def _mnist_agreement(mnist_cnn, n: int) -> float:
    model, calib = mnist_cnn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet = sc.convert(model, calib, T=8, progress=False, backend="lava")
        images, labels = _mnist("test", n)
        flt = lnet.run(images, progress=False)
        fix = lnet.run(images, fixed_point=True, progress=False)
    assert lnet.stats["saturations"] == 0
    assert (flt.argmax(1) == labels.numpy()).mean() > 0.9  # the converted net does classify
    return float((flt.argmax(1) == fix.argmax(1)).mean())


@pytest.mark.shared
def test_mnist_fixed_agrees_with_float_small(mnist_cnn):
    assert _mnist_agreement(mnist_cnn, 40) >= 0.975


@pytest.mark.shared
@pytest.mark.slow
def test_mnist_fixed_agrees_with_float_200(mnist_cnn):
    assert _mnist_agreement(mnist_cnn, 200) >= 0.99
