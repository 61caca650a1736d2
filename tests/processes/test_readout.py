"""The Readout accumulates each window, latches the logits and sends them once per window."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="the Lava Processes need lava-nc 0.10.0 (Python 3.10)")

from lava.proc.dense.process import Dense  # noqa: E402
from lavahelpers import run_chain  # noqa: E402

from spikeconverter.coding import encode, quantize  # noqa: E402
from spikeconverter.processes import ILIF, Readout  # noqa: E402

T_ACC, PERIOD, OFFSET, WINDOWS = 4, 8, 2, 3
STEPS = OFFSET + WINDOWS * PERIOD
N = 5


def expected_logits(current, bias, k=2.0):
    """Per window: V <- I, V <- k V + I, + bias at the last accumulate step (same float ops)."""
    out = []
    for w in range(WINDOWS):
        start = OFFSET + w * PERIOD
        v = current[:, start].copy()
        for t in range(1, T_ACC):
            v = v * k + current[:, start + t]
        out.append(v + bias)
    return np.stack(out)


def report_steps():
    return [OFFSET + w * PERIOD + T_ACC - 1 for w in range(WINDOWS)]


@pytest.mark.lava
def test_float_readout_sends_each_windows_logits_once(rng):
    current = rng.normal(size=(N, STEPS))
    bias = rng.normal(size=N)
    readout = Readout(shape=(N,), t_acc=T_ACC, period=PERIOD, offset=OFFSET, bias_mant=bias)
    out, (v,) = run_chain(current, [readout], (N,), read=[(readout, "v")])
    logits = expected_logits(current, bias)
    steps = report_steps()
    assert np.array_equal(out[:, steps].T, logits)
    others = np.setdiff1d(np.arange(STEPS), steps)
    assert not out[:, others].any()
    assert np.array_equal(v, logits[-1])  # held through the rest of the last window


@pytest.mark.lava
def test_fixed_readout_is_64_times_the_float_one_and_counts_saturation(rng):
    current = rng.integers(-20, 20, size=(N, STEPS))
    current[4] = 2**15  # 2**21 after the shift: 2**21, 3 * 2**21, then 7 * 2**21 > 2**23 - 1
    bias = rng.integers(-3, 4, size=N)
    fixed = Readout(shape=(N,), t_acc=T_ACC, period=PERIOD, offset=OFFSET, bias_mant=64 * bias)
    out, (sat,) = run_chain(current.astype(np.int32), [fixed], (N,), "fixed_pt",
                            read=[(fixed, "saturations")])
    logits = expected_logits(current.astype(float), bias.astype(float))
    steps = report_steps()
    assert np.array_equal(out[:4, steps].T, 64 * logits[:, :4])
    assert out[4, steps].tolist() == [2**23 - 1] * WINDOWS
    assert sat.tolist() == [0, 0, 0, 0, 2 * WINDOWS]  # the 3rd and 4th steps clamp


@pytest.mark.lava
def test_fixed_readout_input_alignment(rng):
    # a_in_shift = 1: the input enters << 1 (the synapses applied the other 5 bits of << 6)
    current = rng.integers(-20, 20, size=(N, STEPS))
    bias = rng.integers(-3, 4, size=N)
    fixed = Readout(shape=(N,), t_acc=T_ACC, period=PERIOD, offset=OFFSET, bias_mant=64 * bias,
                    a_in_shift=1)
    out, _ = run_chain((current << 5).astype(np.int32), [fixed], (N,), "fixed_pt")
    logits = expected_logits(current.astype(float), bias.astype(float))
    assert np.array_equal(out[:, report_steps()].T, 64 * logits)


@pytest.mark.lava
def test_ilif_dense_readout_pipeline_reads_the_quantised_layer(rng):
    # source -> ILIF -> Dense -> Readout: the Dense hop adds one step, so the readout's windows
    # start at the iLIF's offset + t_acc + 1 and accumulate exactly the iLIF's trains.
    n_in, n_out, t = 6, 3, 4
    ilif_offset = 1
    u = rng.uniform(-0.5, 2.0, size=(n_in, 2))  # one value per window
    steps = ilif_offset + 2 * 2 * t + 1
    current = np.zeros((n_in, steps))
    for w in range(2):
        current[:, ilif_offset + w * 2 * t] = u[:, w]  # V = u * 2**(t-1) after accumulating
    weights = rng.integers(-3, 4, size=(n_out, n_in)).astype(float)
    layer = ILIF(shape=(n_in,), vth=2.0 ** (t - 1), t_acc=t, t_gen=t, offset=ilif_offset,
                 rounding="nearest")
    dense = Dense(weights=weights)
    readout = Readout(shape=(n_out,), t_acc=t, period=2 * t, offset=ilif_offset + t + 1)
    out, _ = run_chain(current, [layer, dense, readout], (n_out,))
    for w in range(2):
        step = ilif_offset + t + 1 + w * 2 * t + t - 1
        q = quantize(u[:, w], 1.0, t, rounding="nearest")
        assert np.array_equal(out[:, step], weights @ (q * 2 ** (t - 1)))
        assert np.abs(encode(u[:, w], 1.0, t, rounding="nearest")).sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        (dict(shape=()), "shape"),
        (dict(shape=(3,), k=0.5), "k"),
        (dict(shape=(3,), t_acc=0), "t_acc"),
        (dict(shape=(3,), t_acc=4, period=3), "period"),
        (dict(shape=(3,), offset=1.5), "offset"),
        (dict(shape=(3,), bias_mant=[1, 2]), "bias_mant"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        Readout(**kwargs)
