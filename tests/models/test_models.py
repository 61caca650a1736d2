"""Model zoo: CIFAR ResNets (option-A shortcuts), the small CNN, the shared checkpoint."""

from pathlib import Path

import pytest
import torch

from spikeconverter.models import get_model, list_models, load_cifar_resnet

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
CKPT = SHARED / "models" / "cifar10-resnet-akamaster"


@pytest.mark.parametrize("name, params", [("cifar_resnet20", 0.27e6), ("cifar_resnet32", 0.46e6),
                                          ("cifar_resnet44", 0.66e6), ("cifar_resnet56", 0.85e6),
                                          ("cifar_resnet110", 1.7e6)])
def test_cifar_resnet_sizes(name, params):
    m = get_model(name)
    n = sum(p.numel() for p in m.parameters())
    assert abs(n - params) / params < 0.05  # He et al., Table 6
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_shortcut_pads_channels_of_the_subsampled_input():
    m = get_model("cifar_resnet20").eval()
    block = m.layer2[0]
    x = torch.randn(1, 16, 32, 32)
    s = block.shortcut(x)
    assert s.shape == (1, 32, 16, 16)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


@pytest.mark.parametrize("size", [8, 28])
def test_small_cnn_sizes(size):
    m = get_model("small_cnn", input_size=size)
    assert m(torch.zeros(3, 1, size, size)).shape == (3, 10)
    with pytest.raises(ValueError, match="multiple of 4"):
        get_model("small_cnn", input_size=10)


def test_paper_resnet_has_no_batchnorm_and_no_bias():
    # Sengupta et al. (2019) convert nets without BatchNorm or biases (no constant currents)
    m = get_model("paper_resnet", in_channels=1, widths=(8, 16), blocks=2, pre_layers=1).eval()
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert not any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules())
    assert all(getattr(x, "bias", None) is None for x in m.modules()
               if isinstance(x, (torch.nn.Conv2d, torch.nn.Linear)))
    with pytest.raises(ValueError, match="pre_layers"):
        get_model("paper_resnet", pre_layers=0)


def test_registry():
    assert set(list_models()) >= {"cifar_resnet20", "cifar_resnet110", "small_cnn",
                                 "paper_resnet"}
    with pytest.raises(ValueError, match="unknown model 'resnet9'.*cifar_resnet20"):
        get_model("resnet9")


@pytest.mark.shared
@pytest.mark.parametrize("depth", [20, 32])
def test_loads_the_shared_checkpoints(depth):
    path = next(CKPT.glob(f"resnet{depth}-*.th"), None) if CKPT.is_dir() else None
    if path is None:
        pytest.skip(f"shared checkpoint resnet{depth} not found under {CKPT}")
    m = load_cifar_resnet(path)
    assert not m.training and len(m.layer1) == (depth - 2) // 6
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(m.conv1.weight, raw["module.conv1.weight"])


def test_bad_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_cifar_resnet(tmp_path / "none.th")
    (tmp_path / "junk.th").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.th could not be read"):
        load_cifar_resnet(tmp_path / "junk.th")
    torch.save({"state_dict": {"module.layer1.0.conv1.weight": torch.zeros(1)}},
               tmp_path / "odd.th")
    with pytest.raises(ValueError, match="odd.th"):
        load_cifar_resnet(tmp_path / "odd.th")
