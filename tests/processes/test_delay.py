"""The Delay process shifts binary or graded trains by whole windows, and agrees with DelayDense."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="the Lava Processes need lava-nc 0.10.0 (Python 3.10)")

from lava.proc.dense.process import DelayDense, Dense  # noqa: E402
from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402
from lavahelpers import run_chain  # noqa: E402

from spikeconverter.processes import Delay, simulation  # noqa: E402

WINDOW = 8  # t_acc + t_gen of 4 + 4


@pytest.mark.lava
@pytest.mark.parametrize("select_tag", ["floating_pt", "fixed_pt"])
@pytest.mark.parametrize("windows", [0, 1, 2])
def test_delay_shifts_a_graded_train_by_whole_windows(rng, windows, select_tag):
    d = windows * WINDOW
    steps = 3 * WINDOW
    data = rng.integers(-1, 2, size=(2, 3, steps))  # signed trains: -1 / 0 / +1
    data = data.astype(np.int32 if select_tag == "fixed_pt" else float)
    delay = Delay(shape=(2, 3), delay=d)
    out, _ = run_chain(data, [delay], (2, 3), select_tag)
    expected = np.zeros_like(out)
    expected[..., d:] = data[..., : steps - d]
    assert np.array_equal(out, expected)


@pytest.mark.lava
def test_delay_then_dense_equals_lava_delay_dense(rng):
    # Lava's DelayDense with delay d arrives d + 1 steps later, like Delay(d) -> Dense.
    n, steps, d = 5, 3 * WINDOW, WINDOW
    data = (rng.random((n, steps)) < 0.4).astype(float)
    weights = rng.integers(-3, 4, size=(n, n)).astype(float)
    source = Source(data=data)
    delay, dense = Delay(shape=(n,), delay=d), Dense(weights=weights)
    lava_delay = DelayDense(weights=weights, delays=np.full((n, n), d))
    sink_a, sink_b = Sink(shape=(n,), buffer=steps), Sink(shape=(n,), buffer=steps)
    source.s_out.connect([delay.a_in, lava_delay.s_in])
    delay.s_out.connect(dense.s_in)
    dense.a_out.connect(sink_a.a_in)
    lava_delay.a_out.connect(sink_b.a_in)
    with simulation(source, num_steps=steps):
        ours, theirs = sink_a.data.get(), sink_b.data.get()
    expected = np.zeros((n, steps))
    expected[:, d + 1 :] = weights @ data[:, : steps - d - 1]
    assert np.array_equal(ours, expected)
    assert np.array_equal(theirs, expected)


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [(dict(shape=(3,), delay=-1), "delay"), (dict(shape=(3,), delay=2.0), "delay"),
     (dict(shape=(0,), delay=1), "shape")],
)
def test_constructor_names_the_bad_argument(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        Delay(**kwargs)
