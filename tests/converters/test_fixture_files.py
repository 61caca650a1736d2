"""Network files written by an older spikeconverter (main at 15b7ce3, format version 1) load and
give the logits they gave then (see ``tests/fixtures/make_fixtures.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import spikeconverter as sc
from spikeconverter.converters import SpikingNetwork

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = torch.load(FIXTURES / "small_cnn_expected_v1.pt", weights_only=True)


def test_norse_file_of_v1_loads_with_the_same_logits():
    net = sc.load(FIXTURES / "small_cnn_norse_v1.snn")
    assert isinstance(net, SpikingNetwork)
    assert net.dtype == torch.float64 and net.mode == "fused"
    with torch.no_grad():
        logits = net(EXPECTED["x"])
    torch.testing.assert_close(logits, EXPECTED["norse_logits"], rtol=0, atol=1e-12)


def test_lava_file_of_v1_loads_into_norse():
    net = sc.load(FIXTURES / "small_cnn_lava_v1.snn", backend="norse")
    assert isinstance(net, SpikingNetwork)
    with torch.no_grad():
        logits = net(EXPECTED["x"].float()).double()
    # the Lava float run and the Norse simulation agree up to float32 rounding
    torch.testing.assert_close(logits, EXPECTED["lava_logits"], rtol=0, atol=1e-4)


@pytest.mark.lava
def test_lava_file_of_v1_loads_with_the_same_logits(tmp_path):
    pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0 (Python 3.10)")
    # a copy: a loaded Lava network caches its plans beside its file
    path = tmp_path / "small_cnn_lava_v1.snn"
    shutil.copyfile(FIXTURES / path.name, path)
    lnet = sc.load(path)
    assert type(lnet).__name__ == "LavaNetwork" and lnet.membrane_peaks is not None
    x = EXPECTED["x"]
    floating = lnet.run(x, progress=False)
    np.testing.assert_allclose(floating, EXPECTED["lava_logits"].numpy(), rtol=0, atol=1e-12)
    # the planner has chosen weight exponents differently since v1 was recorded (the smallest
    # exponent that fits 8 bits, negative ones included; then Loihi's alignment and split
    # weights), so the fixed-point logits moved within the old format's resolution: near the
    # recorded ones and the float ones, same classes
    fixed = lnet.run(x, fixed_point=True, progress=False)
    np.testing.assert_allclose(fixed, EXPECTED["lava_fixed_logits"].numpy(), rtol=0, atol=5e-3)
    assert np.abs(fixed - floating).max() < np.abs(EXPECTED["lava_fixed_logits"].numpy()
                                                    - floating).max()  # now closer to float
    np.testing.assert_allclose(fixed, floating, rtol=0, atol=0.02 * np.abs(floating).max())
    np.testing.assert_array_equal(fixed.argmax(1), floating.argmax(1))
