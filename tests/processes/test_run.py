"""simulation() stops the runtime whatever happens, and checks its arguments."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="the Lava Processes need lava-nc 0.10.0 (Python 3.10)")

from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402

from spikeconverter.processes import ILIF, run_config, simulation  # noqa: E402


@pytest.mark.lava
def test_runtime_is_stopped_when_the_block_raises():
    source = Source(data=np.ones((2, 4)))
    sink = Sink(shape=(2,), buffer=4)
    source.s_out.connect(sink.a_in)
    with pytest.raises(KeyError, match="boom"), simulation(sink, num_steps=4):
        assert sink.runtime._is_started
        assert np.array_equal(sink.data.get(), np.ones((2, 4)))
        raise KeyError("boom")
    assert not sink.runtime._is_started


def test_fixed_point_problems_are_raised_before_any_runtime_starts():
    neurons = ILIF(shape=(3,), vth=1.0, k=1.5)
    source = Source(data=np.ones((3, 4), dtype=np.int32))
    source.s_out.connect(neurons.a_in)
    with pytest.raises(ValueError, match="k=1.5"), simulation(neurons, 4, "fixed_pt"):
        pass
    assert neurons.runtime is None


@pytest.mark.parametrize("steps", [0, 2.5, True])
def test_num_steps_is_checked(steps):
    with pytest.raises(ValueError, match="num_steps"), simulation(
        ILIF(shape=(1,)), num_steps=steps
    ):
        pass


def test_run_config_names_the_tag():
    assert run_config("fixed_pt").select_tag == "fixed_pt"
    with pytest.raises(ValueError, match="select_tag"):
        run_config("bit_accurate")
