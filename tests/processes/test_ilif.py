"""The Lava iLIF against the Norse reference, and the fixed-point model against the float one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lava", reason="the Lava Processes need lava-nc 0.10.0 (Python 3.10)")

from lavahelpers import run_chain  # noqa: E402

from spikeconverter.coding import rounding_offset  # noqa: E402
from spikeconverter.plugin import ILIF as NorseILIF  # noqa: E402
from spikeconverter.plugin import ILIFParameters  # noqa: E402
from spikeconverter.processes import ILIF  # noqa: E402
from spikeconverter.processes.ilif.models import V_MAX, V_MIN  # noqa: E402
from spikeconverter.processes.loihi import SHIFT, fixed_rounding_offset  # noqa: E402
from spikeconverter.processes.run import check_fixed_point  # noqa: E402

N = 6
T_ACC, T_GEN, OFFSET, WINDOWS = 4, 4, 3, 3
STEPS = OFFSET + WINDOWS * (T_ACC + T_GEN)


def on_threshold(current, vth, bias, first_input, threshold):
    """Make neuron 0 accumulate exactly its threshold: ``V == vth`` must fire (``>=``)."""
    current[0] = 0
    current[0, OFFSET :: T_ACC + T_GEN] = first_input
    vth[0] = threshold
    bias[0] = 0


def norse_spikes(current, vth, bias, rounding, signed, k=2.0):
    """Spikes of the Norse iLIF for ``current`` of shape (n, steps), in float64."""
    p = ILIFParameters(
        k=k, v_th=torch.as_tensor(vth, dtype=torch.float64), t_acc=T_ACC, t_gen=T_GEN,
        offset=OFFSET, bias=torch.as_tensor(bias, dtype=torch.float64), rounding=rounding,
        signed=signed,
    )
    z, _ = NorseILIF(p)(torch.as_tensor(current.T, dtype=torch.float64))
    return z.numpy().T


@pytest.mark.lava
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_float_model_matches_norse_spike_for_spike(rng, rounding, signed):
    current = rng.normal(0.0, 0.6, size=(N, STEPS))
    vth = rng.uniform(0.5, 1.5, size=N)
    bias = rng.normal(0.0, 0.3, size=N)
    on_threshold(current, vth, bias, 0.125, 1.0)
    neurons = ILIF(shape=(N,), vth=vth, t_acc=T_ACC, t_gen=T_GEN, offset=OFFSET, bias_mant=bias,
                   rounding=rounding, signed=signed)
    lava_z, _ = run_chain(current, [neurons], (N,))
    expected = norse_spikes(current, vth, bias, rounding, signed)
    assert np.abs(expected).sum() > 10, "the trial should make spikes"
    assert expected[0, OFFSET + T_ACC] == 1
    if signed:
        assert (expected < 0).any()
    assert np.array_equal(lava_z, expected)
    assert not lava_z[:, :OFFSET].any()


@pytest.mark.lava
def test_float_model_matches_norse_with_k_below_two(rng):
    current = rng.normal(0.0, 0.6, size=(N, STEPS))
    neurons = ILIF(shape=(N,), vth=0.7, k=1.6, t_acc=T_ACC, t_gen=T_GEN, offset=OFFSET,
                   bias_mant=0.1)
    lava_z, _ = run_chain(current, [neurons], (N,))
    assert np.array_equal(lava_z, norse_spikes(current, 0.7, 0.1, "floor", False, k=1.6))


@pytest.mark.lava
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_fixed_point_equals_float_on_integers(rng, rounding, signed):
    current = rng.integers(-6, 9, size=(N, STEPS))
    vth = rng.integers(8, 40, size=N)  # the mantissa; the float model gets the same numbers
    bias = rng.integers(-3, 4, size=N)
    on_threshold(current, vth, bias, 1, 8)
    common = dict(shape=(N,), vth=vth, t_acc=T_ACC, t_gen=T_GEN, offset=OFFSET,
                  rounding=rounding, signed=signed)
    # fixed point: input and threshold are << 6, the bias is not: give it 64x the float bias
    fixed = ILIF(**common, bias_mant=64 * bias)
    z_fixed, (v_fixed, sat) = run_chain(current.astype(np.int32), [fixed], (N,), "fixed_pt",
                                        read=[(fixed, "v"), (fixed, "saturations")])
    floating = ILIF(**common, bias_mant=bias.astype(float))
    z_float, (v_float,) = run_chain(current.astype(float), [floating], (N,), read=[(floating, "v")])
    assert np.abs(z_float).sum() > 10
    assert z_float[0, OFFSET + T_ACC] == 1
    assert np.array_equal(z_fixed, z_float)
    assert np.array_equal(v_fixed, 64 * v_float)
    assert not sat.any()


@pytest.mark.lava
def test_fixed_point_clamps_and_counts_saturation():
    # neuron 0 overflows upwards at 3 of 4 accumulate steps, then fires all ones (the clip);
    # neuron 1 overflows downwards at 3 accumulate and all 4 generate steps; neuron 2 never.
    t_acc = t_gen = 4
    windows = 2
    current = np.zeros((3, windows * (t_acc + t_gen)), dtype=np.int32)
    for w in range(windows):
        acc = slice(w * 8, w * 8 + t_acc)
        current[0, acc] = 2**16
        current[1, acc] = -(2**16)
        current[2, acc] = 3
    neurons = ILIF(shape=(3,), vth=[2**16, 2**16, 2], t_acc=t_acc, t_gen=t_gen)
    z, (v, sat) = run_chain(current, [neurons], (3,), "fixed_pt",
                            read=[(neurons, "v"), (neurons, "saturations")])
    assert sat.tolist() == [3 * windows, 7 * windows, 0]
    gen = np.concatenate([np.arange(w * 8 + t_acc, w * 8 + 8) for w in range(windows)])
    assert z[0, gen].tolist() == [1] * len(gen)
    assert not z[1].any()
    # neuron 0 after 4 soft resets from the clamped top: 2 * (v - 2**22) each time
    top = V_MAX
    for _ in range(t_gen):
        top = 2 * (top - 2**22)
    assert v.tolist()[:2] == [top, V_MIN]
    # neuron 2 is the exact 4-bit code of 3 * 15 / 2 = 22.5 with threshold 2 (all ones, clipped)
    assert z[2, gen].tolist() == [1] * len(gen)


def test_fixed_point_check_rejects_what_the_bit_accurate_model_cannot_run():
    with pytest.raises(ValueError, match="k=1.6"):
        check_fixed_point(ILIF(shape=(2,), vth=8, k=1.6))
    with pytest.raises(ValueError, match="vth"):
        check_fixed_point(ILIF(shape=(2,), vth=0.5))
    with pytest.raises(ValueError, match="bias"):
        check_fixed_point(ILIF(shape=(2,), vth=8, bias_mant=0.25))
    check_fixed_point(ILIF(shape=(2,), vth=[8, 2**17 - 1], bias_mant=-(2**12)))


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        (dict(shape=(0,)), "shape"),
        (dict(shape="4"), "shape"),
        (dict(shape=(4,), vth=0.0), "vth"),
        (dict(shape=(4,), vth=[1.0, 2.0]), "vth"),
        (dict(shape=(4,), vth=float("nan")), "vth"),
        (dict(shape=(4,), k=2.5), "k"),
        (dict(shape=(4,), k=1.0), "k"),
        (dict(shape=(4,), t_acc=0), "t_acc"),
        (dict(shape=(4,), t_gen=2.0), "t_gen"),
        (dict(shape=(4,), offset=-1), "offset"),
        (dict(shape=(4,), bias_mant=[1.0, 2.0, 3.0]), "bias_mant"),
        (dict(shape=(4,), bias_exp=0.5), "bias_exp"),
        (dict(shape=(4,), rounding="ceil"), "rounding"),
        (dict(shape=(4,), signed="yes"), "signed"),
        (dict(shape=(4,), a_in_shift=7), "a_in_shift"),
        (dict(shape=(4,), a_in_shift=-1), "a_in_shift"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        ILIF(**kwargs)


def test_per_channel_threshold_broadcasts_over_the_shape():
    neurons = ILIF(shape=(2, 3, 4), vth=np.arange(1, 5), bias_mant=0.5)
    vth = neurons.vth.init
    assert vth.shape == (2, 3, 4)
    assert np.array_equal(vth[1, 2], np.arange(1, 5))
    assert neurons.shape == (2, 3, 4)
    assert not np.shares_memory(neurons.bias_mant.init, np.asarray(0.5))


@pytest.mark.parametrize("t_gen", [1, 2, 4, 6, 8, 12, 16, 23, 24, 32])
def test_fixed_point_half_lsb_is_the_shift_and_the_coding_offset(t_gen, rng):
    # every mantissa edge plus random ones: the integer form is Loihi's shift bit for bit ...
    vth = np.concatenate([[1, 2, 3, 2**16, 2**17 - 1], rng.integers(1, 2**17, 500)])
    vth_eff = vth.astype(np.int64) << SHIFT
    half = fixed_rounding_offset(vth_eff, t_gen, "nearest")
    assert half.dtype == np.int64
    assert np.array_equal(half, vth_eff >> t_gen)
    # ... and equals coding's half an LSB exactly where vth << 6 is divisible by 2**t_gen
    exact = vth_eff % 2**t_gen == 0
    offset = rounding_offset(vth_eff.astype(np.float64), t_gen, 2.0, "nearest")
    assert np.array_equal(half[exact], offset[exact])
    assert np.all(half[~exact] < offset[~exact])
    assert not fixed_rounding_offset(vth_eff, t_gen, "floor").any()


@pytest.mark.parametrize(
    ("kwargs", "var"),
    [(dict(vth=1.5), "vth"), (dict(vth=8, bias_mant=0.25), "bias_mant"),
     (dict(vth=2**17), "vth")],
)
def test_bit_accurate_model_validates_the_process_under_plain_lava(kwargs, var):
    # no project helper: Lava's own run with a fixed_pt config must refuse, naming the Var
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    neurons = ILIF(shape=(2,), t_acc=2, t_gen=2, **kwargs)
    try:
        with pytest.raises(ValueError, match=f"Var '{var}'"):
            neurons.run(condition=RunSteps(num_steps=1),
                        run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    finally:
        neurons.stop()


def test_float_model_accepts_fractional_mantissas_under_plain_lava():
    # 1.5 and 1.5 accumulate to 4.5 = 3 * 1.5: all ones, with the threshold not truncated to 1
    out, _ = run_chain(np.full((2, 4), 1.5), [ILIF(shape=(2,), vth=1.5, t_acc=2, t_gen=2)], (2,))
    assert out[:, 2:].tolist() == [[1, 1], [1, 1]]


def test_old_bias_name_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="bias_mant"):
        neurons = ILIF(shape=(3,), bias=0.5)
    assert np.array_equal(neurons.bias_mant.init, np.full(3, 0.5))
    with pytest.warns(DeprecationWarning, match="bias_mant"):
        assert neurons.bias is neurons.bias_mant
    with pytest.raises(ValueError, match="bias_mant"):
        ILIF(shape=(3,), bias=0.5, bias_mant=0.5)


def test_window_parameters_are_read_only_attributes():
    neurons = ILIF(shape=(3,), k=1.5, t_acc=5, t_gen=7, offset=2)
    assert (neurons.k, neurons.t_acc, neurons.t_gen, neurons.offset) == (1.5, 5, 7, 2)
    with pytest.raises(AttributeError):
        neurons.t_gen = 3


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_bias_shift_trick_gives_the_same_spikes(shift, rng):
    # a bias m << (7 + shift) needs an exponent beyond 7; entering `shift` steps early with
    # exponent 7 lets the accumulate doublings supply the rest, exactly
    current = rng.integers(-40, 60, size=(N, STEPS))
    common = dict(shape=(N,), t_acc=T_ACC, t_gen=T_GEN, offset=OFFSET, rounding="nearest")
    mant = rng.integers(-300, 300, N)
    vth = 2**14
    direct = ILIF(**common, vth=vth, bias_mant=mant, bias_exp=7 + shift)
    shifted = ILIF(**common, vth=vth, bias_mant=mant, bias_exp=7, bias_shift=shift)
    z_direct, (v_direct,) = run_chain(current, [direct], (N,), "fixed_pt", read=[(direct, "v")])
    z_shift, (v_shift,) = run_chain(current, [shifted], (N,), "fixed_pt", read=[(shifted, "v")])
    assert z_direct.any() and np.array_equal(z_direct, z_shift)
    assert np.array_equal(v_direct, v_shift)
    # the float model: a bias entering `shift` steps early is multiplied by 2**shift
    fl = dict(common, vth=1.0)
    zf, _ = run_chain(current / 64.0, [ILIF(**fl, bias_mant=mant * 2.0**shift / 64)], (N,))
    zs, _ = run_chain(current / 64.0, [ILIF(**fl, bias_mant=mant / 64, bias_shift=shift)], (N,))
    assert np.array_equal(zf, zs)


def test_bias_shift_must_lie_within_the_accumulate_phase():
    with pytest.raises(ValueError, match="bias_shift"):
        ILIF(shape=(2,), t_acc=4, bias_shift=4)
    assert ILIF(shape=(2,), t_acc=4, bias_shift=3).bias_shift == 3


@pytest.mark.lava
@pytest.mark.parametrize("a_in_shift", [0, 2])
def test_input_alignment_moves_the_shift_without_changing_the_membrane(a_in_shift, rng):
    # Loihi's 2**(6 + weight_exp) split between synapse and neuron: an input already shifted
    # by 6 - a_in_shift (as a synapse would send it) gives the same membrane and spikes
    current = rng.integers(-40, 60, size=(N, STEPS))
    common = dict(shape=(N,), t_acc=T_ACC, t_gen=T_GEN, offset=OFFSET, rounding="nearest",
                  vth=2**9, bias_mant=rng.integers(-300, 300, N))
    ref = ILIF(**common)
    moved = ILIF(**common, a_in_shift=a_in_shift)
    assert moved.a_in_shift == a_in_shift and ref.a_in_shift == SHIFT
    z_ref, (v_ref,) = run_chain(current, [ref], (N,), "fixed_pt", read=[(ref, "v")])
    z_mov, (v_mov,) = run_chain(current << (SHIFT - a_in_shift), [moved], (N,), "fixed_pt",
                                read=[(moved, "v")])
    assert z_ref.any() and np.array_equal(z_ref, z_mov)
    assert np.array_equal(v_ref, v_mov)


def test_fixed_point_threshold_and_bias_set_between_runs_take_effect(rng):
    """The fixed-point model keeps ``vth << 6``, half an LSB and the bias until the host sets
    a Var: set between two windows, they act from the next window on, as in a neuron built
    with them."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from spikeconverter.processes.run import lava_runtime, run_config

    period = T_ACC + T_GEN
    current = rng.integers(-6, 9, size=(N, 2 * period)).astype(np.int32)
    vth, bias = rng.integers(8, 40, size=(2, N)), 64 * rng.integers(-3, 4, size=(2, N))
    common = dict(shape=(N,), t_acc=T_ACC, t_gen=T_GEN, offset=0, rounding="nearest")
    neuron = ILIF(**common, vth=vth[0], bias_mant=bias[0])
    source, sink = Source(data=current), Sink(shape=(N,), buffer=2 * period)
    source.s_out.connect(neuron.a_in)
    neuron.s_out.connect(sink.a_in)
    with lava_runtime(sink, run_config("fixed_pt")):
        sink.run(condition=RunSteps(num_steps=period))
        neuron.vth.set(vth[1])
        neuron.bias_mant.set(bias[1])
        sink.run(condition=RunSteps(num_steps=period))
        z = sink.data.get()
    old, new = (run_chain(current, [ILIF(**common, vth=vth[i], bias_mant=bias[i])], (N,),
                          "fixed_pt")[0] for i in (0, 1))
    assert not np.array_equal(old[:, period:], new[:, period:])  # the set changes spikes
    np.testing.assert_array_equal(z[:, :period], old[:, :period])
    np.testing.assert_array_equal(z[:, period:], new[:, period:])
