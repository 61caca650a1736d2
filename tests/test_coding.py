"""The temporal-separation code: exact round trips, error bounds, Eq. 13 thresholds."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spikeconverter import coding

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
values = arrays(np.float64, st.integers(1, 64), elements=finite)
thetas = st.floats(1e-3, 1e2, allow_nan=False)
steps = st.integers(1, 24)
modes = st.sampled_from(coding.ROUNDING_MODES)


@settings(max_examples=300, deadline=None)
@given(u=values, theta=thetas, T=steps, rounding=modes, signed=st.booleans())
def test_decode_of_encode_is_quantize_exactly(u, theta, T, rounding, signed):
    spikes = coding.encode(u, theta, T, rounding=rounding, signed=signed)
    assert spikes.shape == (T, *u.shape)
    allowed = {-1.0, 0.0, 1.0} if signed else {0.0, 1.0}
    assert set(np.unique(spikes)) <= allowed
    q = coding.quantize(u, theta, T, rounding=rounding, signed=signed)
    np.testing.assert_array_equal(coding.decode(spikes, theta), q)


@settings(max_examples=200, deadline=None)
@given(u=values, theta=thetas, T=steps, rounding=modes, signed=st.booleans())
def test_error_against_clipped_value_is_below_one_lsb(u, theta, T, rounding, signed):
    q = coding.quantize(u, theta, T, rounding=rounding, signed=signed)
    top = coding.top_code(theta, T)
    lo = -top if signed else 0.0
    err = np.abs(q - np.clip(u, lo, top))
    lsb = coding.lsb(theta, T)
    # floor: strictly under one LSB; nearest: half of it (plus the rounding of u + lsb/2)
    bound = lsb if rounding == "floor" else lsb / 2 * (1 + 1e-12) + 4 * np.spacing(np.abs(u))
    assert np.all(err < bound) if rounding == "floor" else np.all(err <= bound)
    if rounding == "floor" and not signed:
        assert np.all(q <= np.maximum(u, 0.0))  # floor never rounds up


@settings(max_examples=100, deadline=None)
@given(u=values, theta=thetas, T=steps, rounding=modes, signed=st.booleans())
def test_torch_and_numpy_agree_bit_for_bit(u, theta, T, rounding, signed):
    t = torch.from_numpy(u)
    np.testing.assert_array_equal(
        coding.encode(t, theta, T, rounding=rounding, signed=signed).numpy(),
        coding.encode(u, theta, T, rounding=rounding, signed=signed),
    )
    np.testing.assert_array_equal(
        coding.quantize(t, theta, T, rounding=rounding, signed=signed).numpy(),
        coding.quantize(u, theta, T, rounding=rounding, signed=signed),
    )


def test_known_code():
    # 0.75 / 0.5 = 1.5 = 1.1 in binary: spikes 1, 1, 0, 0
    np.testing.assert_array_equal(coding.encode(np.array([0.75]), 0.5, 4)[:, 0], [1, 1, 0, 0])
    # negative input: the ReLU; above the top code: all ones
    np.testing.assert_array_equal(coding.encode(np.array([-1.0, 9.0]), 0.5, 3).T, [[0, 0, 0],
                                                                                   [1, 1, 1]])
    # the exact boundary fires (V >= theta)
    assert coding.encode(np.array([0.5]), 0.5, 1)[0, 0] == 1


def test_per_channel_theta_broadcasts():
    u = np.array([[0.3, 0.3], [0.3, 0.3]])
    theta = np.array([[0.2], [1.0]])
    q = coding.quantize(u, theta, 8)
    assert q[0, 0] == coding.quantize(np.array(0.3), 0.2, 8)
    assert q[1, 0] == coding.quantize(np.array(0.3), 1.0, 8)


def test_general_k_matches_spike_simulation():
    u = np.random.default_rng(0).normal(size=500)
    for k in (1.2, 1.6, 1.9):
        np.testing.assert_array_equal(
            coding.quantize(u, 0.4, 7, k=k, rounding="nearest"),
            coding.decode(coding.encode(u, 0.4, 7, k=k, rounding="nearest"), 0.4, k=k),
        )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(k=2.5), "k"),
        (dict(k=1.0), "k"),
        (dict(k=float("nan")), "k"),
        (dict(T=0), "T"),
        (dict(T=2.5), "T"),
        (dict(theta=0.0), "theta"),
        (dict(theta=-1.0), "theta"),
        (dict(theta=float("inf")), "theta"),
        (dict(rounding="up"), "rounding"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    args = dict(theta=1.0, T=4, k=2.0, rounding="floor") | kwargs
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        coding.encode(np.zeros(3), args["theta"], args["T"], k=args["k"], rounding=args["rounding"])


def test_non_finite_input_is_rejected():
    with pytest.raises(ValueError, match="u contains non-finite"):
        coding.encode(np.array([0.0, np.nan]), 1.0, 4)
    with pytest.raises(ValueError, match="samples contains non-finite"):
        coding.optimal_threshold(np.array([np.inf]), 4)
    with pytest.raises(ValueError, match="samples is empty"):
        coding.optimal_threshold(np.array([]), 4)


def test_optimal_threshold_reproduces_paper_fig5b():
    # uniform U_in on [0, 1], T = 6, k = 1.6: the paper's optimum is theta / U_max ~ 0.396
    x = np.random.default_rng(0).random(20000)
    theta = coding.optimal_threshold(x, T=6, k=1.6)
    assert abs(theta / x.max() - 0.396) < 0.02
    # and it is a minimum of the error it optimises
    e = coding.conversion_error(x, np.array([theta * 0.95, theta, theta * 1.05]), 1.6, 6)
    assert e[1] <= e[0] and e[1] <= e[2]


def test_k2_has_the_smallest_optimal_error_fig5a():
    x = np.random.default_rng(1).random(4000)
    for T in range(2, 17):
        errs = {
            k: coding.conversion_error(x, coding.optimal_threshold(x, T, k, num_candidates=128),
                                       k, T)
            for k in (1.2, 1.4, 1.6, 1.8, 2.0)
        }
        assert min(errs, key=errs.get) == 2.0, (T, errs)


def test_max_over_two_is_lossless_at_large_T():
    x = np.random.default_rng(2).random(1000) * 3.0
    theta = x.max() / 2
    err = coding.conversion_error(x, theta, 2.0, 24)
    assert err < coding.lsb(theta, 24)
    assert math.isclose(coding.top_code(1.0, 3), 1.75)
