"""Fixtures for the converter tests."""

import pytest
from convhelpers import RESNET20


@pytest.fixture
def shared_resnet20():
    if not RESNET20.is_file():
        pytest.skip(f"shared checkpoint {RESNET20} not available")
    from spikeconverter.models import load_cifar_resnet

    return load_cifar_resnet(RESNET20)
