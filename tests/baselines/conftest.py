import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True)
def _one_thread():
    # Thousands of steps on tiny tensors: intra-op threads only add synchronisation (and a
    # shared CI machine makes that 100x worse), so these tests run single-threaded.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
