"""Fixtures of the fault-injection tests: a tiny image folder and a tiny converted network."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from faulthelpers import TINY
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/graphs.py


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def folder(tmp_path_factory):
    """An ImageFolder of 3 classes x 6 grey 8x8 images."""
    root = tmp_path_factory.mktemp("faults") / "data"
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(6):
            a = rng.integers(0, 256, (8, 8)).astype(np.uint8)
            Image.fromarray(a, "L").save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="package")
def netfile(folder, tmp_path_factory):
    """A small_cnn (random weights) converted with T=16 by the CLI."""
    from spikeconverter.cli import main

    out = tmp_path_factory.mktemp("net") / "net.snn"
    code = main(["convert", *TINY, "-d", str(folder), "--channels", "1", "-T", "16",
                 "--calibration-images", "18", "-o", str(out)])
    assert code == 0
    return out
