"""The im2col Conv models equal Lava's own Conv models, output for output."""

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc is not installed")

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.conv.process import Conv  # noqa: E402
from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402

from spikeconverter.processes.fastconv.config import fast_conv_run_config  # noqa: E402

pytestmark = pytest.mark.lava


def run_conv(data, weight, cfg, steps, **conv_kwargs):
    src = Source(data=data)
    conv = Conv(weight=weight, input_shape=data.shape[:-1], **conv_kwargs)
    sink = Sink(shape=conv.output_shape, buffer=steps)
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        return sink.data.get()
    finally:
        sink.stop()


@pytest.mark.parametrize(
    "in_shape, c_out, kernel, kwargs",
    [
        ((7, 6, 3), 4, (3, 3), dict(stride=1, padding=1)),
        ((8, 9, 4), 4, (3, 2), dict(stride=2, padding=(1, 0), dilation=1, groups=2)),
        ((6, 6, 4), 4, (3, 3), dict(stride=1, padding=2, dilation=2, groups=4)),
    ],
)
@pytest.mark.parametrize("tag", ["floating_pt", "fixed_pt"])
def test_im2col_conv_equals_lavas_conv(in_shape, c_out, kernel, kwargs, tag):
    rng = np.random.default_rng(0)
    steps = 4
    groups = kwargs.get("groups", 1)
    weight = rng.integers(-8, 8, size=(c_out, *kernel, in_shape[-1] // groups))
    data = (rng.random((*in_shape, steps)) < 0.4).astype(int)
    if tag == "floating_pt":
        weight = weight * 0.37
    slow = run_conv(data, weight, Loihi2SimCfg(select_tag=tag), steps, **kwargs)
    fast = run_conv(data, weight, fast_conv_run_config(tag), steps, **kwargs)
    assert np.abs(slow).sum() > 0
    if tag == "fixed_pt":
        np.testing.assert_array_equal(fast, slow)
    else:  # same products, another summation order
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_fixed_model_applies_the_weight_exponent():
    rng = np.random.default_rng(1)
    data = (rng.random((5, 5, 2, 3)) < 0.5).astype(int)
    weight = rng.integers(-100, 100, size=(3, 3, 3, 2))
    base = run_conv(data, weight, fast_conv_run_config("fixed_pt"), 3, padding=1)
    shifted = run_conv(data, weight, fast_conv_run_config("fixed_pt"), 3, padding=1,
                       weight_exp=-2)
    np.testing.assert_array_equal(shifted, np.right_shift(base.astype(np.int64), 2))


def test_bad_tag_is_rejected():
    with pytest.raises(ValueError, match="select_tag"):
        fast_conv_run_config("bit_accurate_loihi2")
