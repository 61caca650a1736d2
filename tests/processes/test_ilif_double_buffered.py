"""The double-buffered Lava iLIF (two membrane banks) against the Norse neuron, spike for spike,
and its fixed-point model against its float model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lava", reason="the Lava Processes need lava-nc 0.10.0 (Python 3.10)")

from lavahelpers import run_chain  # noqa: E402

from spikeconverter.plugin import ILIF as NorseILIF  # noqa: E402
from spikeconverter.plugin import ILIFParameters  # noqa: E402
from spikeconverter.processes import ILIF, BatchILIF  # noqa: E402

N, OFFSET = 6, 3


def norse_spikes(current, vth, bias, t_acc, t_gen, rounding, signed):
    p = ILIFParameters(v_th=torch.as_tensor(vth, dtype=torch.float64), t_acc=t_acc, t_gen=t_gen,
                       offset=OFFSET, bias=torch.as_tensor(bias, dtype=torch.float64),
                       rounding=rounding, signed=signed, double_buffered=True)
    z, state = NorseILIF(p)(torch.as_tensor(current.T, dtype=torch.float64))
    return z.numpy().T, state.v.numpy()


@pytest.mark.lava
@pytest.mark.parametrize("t_acc, t_gen", [(4, 4), (3, 5), (5, 2)])
@pytest.mark.parametrize("rounding, signed", [("floor", False), ("nearest", True)])
def test_float_model_matches_norse_spike_for_spike(rng, t_acc, t_gen, rounding, signed):
    steps = OFFSET + 5 * max(t_acc, t_gen) + t_acc + t_gen
    current = rng.normal(0.0, 0.6, size=(N, steps))
    vth, bias = rng.uniform(0.5, 1.5, size=N), rng.normal(0.0, 0.3, size=N)
    neurons = ILIF(shape=(N,), vth=vth, t_acc=t_acc, t_gen=t_gen, offset=OFFSET, bias_mant=bias,
                   rounding=rounding, signed=signed, double_buffered=True)
    assert neurons.period == max(t_acc, t_gen)
    lava_z, (v0, v1) = run_chain(current, [neurons], (N,), read=[(neurons, "v"),
                                                                (neurons, "v1")])
    expected, banks = norse_spikes(current, vth, bias, t_acc, t_gen, rounding, signed)
    assert np.abs(expected).sum() > 10
    assert np.array_equal(lava_z, expected)
    np.testing.assert_array_equal(np.stack([v0, v1]), banks)  # both banks, exactly


@pytest.mark.lava
@pytest.mark.parametrize("proc", [ILIF, BatchILIF])
def test_fixed_point_equals_float_on_integers(rng, proc):
    t_acc = t_gen = 4
    steps = OFFSET + 6 * t_acc + t_gen
    current = rng.integers(-6, 9, size=(N, steps))
    vth, bias = rng.integers(8, 40, size=N), rng.integers(-3, 4, size=N)
    common = dict(shape=(N,), vth=vth, t_acc=t_acc, t_gen=t_gen, offset=OFFSET,
                  rounding="nearest", signed=True, double_buffered=True)
    fixed = proc(**common, bias_mant=64 * bias)  # input and threshold are << 6, the bias not
    z_fixed, (v0, v1, sat) = run_chain(current.astype(np.int32), [fixed], (N,), "fixed_pt",
                                       read=[(fixed, "v"), (fixed, "v1"), (fixed, "saturations")])
    floating = proc(**common, bias_mant=bias.astype(float))
    z_float, (f0, f1) = run_chain(current.astype(float), [floating], (N,),
                                  read=[(floating, "v"), (floating, "v1")])
    assert np.abs(z_float).sum() > 10
    assert np.array_equal(z_fixed, z_float)
    assert np.array_equal(v0, 64 * f0) and np.array_equal(v1, 64 * f1)
    assert not sat.any()


@pytest.mark.lava
def test_a_stream_fed_every_t_steps_gives_the_single_banked_spikes(rng):
    t, n = 4, 4
    x = rng.normal(0.0, 0.6, size=(n, N, t))  # sample i's accumulate currents
    single = np.zeros((N, OFFSET + n * 2 * t))
    double = np.zeros((N, OFFSET + (n + 1) * t))
    for i in range(n):
        single[:, OFFSET + 2 * i * t:OFFSET + 2 * i * t + t] = x[i]
        double[:, OFFSET + i * t:OFFSET + i * t + t] = x[i]
    kw = dict(shape=(N,), vth=0.7, t_acc=t, t_gen=t, offset=OFFSET, rounding="nearest")
    z1, _ = run_chain(single, [ILIF(**kw)], (N,))
    z2, _ = run_chain(double, [ILIF(**kw, double_buffered=True)], (N,))
    for i in range(n):
        a = z1[:, OFFSET + 2 * i * t + t:OFFSET + 2 * i * t + 2 * t]
        b = z2[:, OFFSET + i * t + t:OFFSET + i * t + 2 * t]
        assert np.array_equal(a, b)
    assert z1.sum() == z2.sum() > 0


def test_double_buffered_is_a_read_only_flag_checked_by_the_constructor():
    neurons = ILIF(shape=(3,), t_acc=5, t_gen=7, double_buffered=True)
    assert neurons.double_buffered and neurons.period == 7 and neurons.v1.shape == (3,)
    assert ILIF(shape=(3,), t_acc=5, t_gen=7).period == 12
    with pytest.raises(ValueError, match="double_buffered"):
        ILIF(shape=(3,), double_buffered=1)
