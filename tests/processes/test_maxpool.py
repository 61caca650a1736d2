"""Spiking max pooling equals the max of the decoded inputs, window after window."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="the Lava Processes need lava-nc 0.10.0 (Python 3.10)")

from lavahelpers import run_chain  # noqa: E402

from spikeconverter.coding import decode, encode  # noqa: E402
from spikeconverter.processes import MaxPool, SpikingMaxPool  # noqa: E402
from spikeconverter.processes.maxpool.process import pool_indices, pooled_shape  # noqa: E402

T_GEN, PERIOD, OFFSET, WINDOWS = 4, 7, 2, 3
THETA = 1.5  # dyadic: encode(decode(x)) is then exact in float64


def random_trains(rng, shape):
    """MSB-first trains of random values, one window every PERIOD steps from OFFSET.

    Returns the data for a source ``(*shape, steps)`` and the values ``(windows, *shape)``.
    """
    steps = OFFSET + WINDOWS * PERIOD
    data = np.zeros((*shape, steps))
    values = np.empty((WINDOWS, *shape))
    for w in range(WINDOWS):
        u = rng.uniform(-0.2, 2 * THETA, size=shape)
        trains = encode(u, THETA, T_GEN)  # (T_GEN, *shape)
        values[w] = decode(trains, THETA)
        start = OFFSET + w * PERIOD
        data[..., start : start + T_GEN] = np.moveaxis(trains, 0, -1)
    # the same value in two taps of one pooling window: ties must not drop the maximum
    data[1, 0, 0], values[:, 1, 0, 0] = data[0, 0, 0], values[:, 0, 0, 0]
    return data, values


def max_pool_reference(x, kernel, stride, padding):
    """Max over (W, H) pooling windows of x (W, H, C), zero padding (the inputs are >= 0)."""
    xp = np.pad(x, ((padding[0],) * 2, (padding[1],) * 2, (0, 0)))
    wo, ho, c = pooled_shape(x.shape, kernel, stride, padding)
    out = np.empty((wo, ho, c))
    for i in range(wo):
        for j in range(ho):
            win = xp[i * stride[0] : i * stride[0] + kernel[0],
                     j * stride[1] : j * stride[1] + kernel[1]]
            out[i, j] = win.max(axis=(0, 1))
    return out


@pytest.mark.lava
@pytest.mark.parametrize("select_tag", ["floating_pt", "fixed_pt"])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 0))],
)
def test_pool_equals_max_of_decoded_inputs(rng, kernel, stride, padding, select_tag):
    shape = (5, 4, 2)
    data, values = random_trains(rng, shape)
    pool = SpikingMaxPool(shape=shape, kernel_size=kernel, stride=stride, padding=padding,
                          t_gen=T_GEN, period=PERIOD, offset=OFFSET)
    if select_tag == "fixed_pt":
        data = data.astype(np.int32)
    out, _ = run_chain(data, [pool], pool.out_shape, select_tag)
    for w in range(WINDOWS):
        start = OFFSET + w * PERIOD
        train = np.moveaxis(out[..., start : start + T_GEN], -1, 0)
        expected = max_pool_reference(values[w], kernel, stride, padding)
        assert np.array_equal(decode(train, THETA), expected)
        # the pooled train is the code of the maximum itself, spike for spike
        assert np.array_equal(train, encode(expected, THETA, T_GEN))
    silent = np.ones(out.shape[-1], dtype=bool)
    for w in range(WINDOWS):
        silent[OFFSET + w * PERIOD : OFFSET + w * PERIOD + T_GEN] = False
    assert not out[..., silent].any()


def test_pool_indices_point_padding_at_the_zero_slot():
    idx = pool_indices((3, 2, 1), (2, 2), (2, 2), (1, 1))
    assert idx.shape == (2 * 2, 4)
    # output (0, 0) sees only input (0, 0) inside the padded frame
    assert sorted(idx[0].tolist()) == [0, 6, 6, 6]
    assert MaxPool is SpikingMaxPool


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        (dict(shape=(4, 4), kernel_size=2), "shape"),
        (dict(shape=(4, 4, 1), kernel_size=0), "kernel_size"),
        (dict(shape=(4, 4, 1), kernel_size=(2, 2, 2)), "kernel_size"),
        (dict(shape=(4, 4, 1), kernel_size=2, stride=0), "stride"),
        (dict(shape=(4, 4, 1), kernel_size=2, padding=2), "padding"),
        (dict(shape=(2, 2, 1), kernel_size=3), "kernel_size"),
        (dict(shape=(4, 4, 1), kernel_size=2, t_gen=0), "t_gen"),
        (dict(shape=(4, 4, 1), kernel_size=2, t_gen=4, period=3), "period"),
        (dict(shape=(4, 4, 1), kernel_size=2, offset=-2), "offset"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        SpikingMaxPool(**kwargs)
