import pytest
import torch
from torch import nn

from spikeconverter.modelspec import build_model, extract_state_dict, load_model, load_weights

FACTORY = '''
import torch.nn as nn

def tiny(num_classes=3):
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4,
                         num_classes))

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)

not_a_model = 3
'''


@pytest.fixture
def factory_file(tmp_path):
    p = tmp_path / "nets.py"
    p.write_text(FACTORY)
    return p


def test_file_factory_function_and_class(factory_file):
    m = build_model(f"{factory_file}:tiny", num_classes=5)
    assert m[-1].out_features == 5
    assert isinstance(build_model(f"{factory_file}:Tiny"), nn.Module)


def test_file_factory_errors(factory_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.py"):
        build_model(f"{tmp_path}/missing.py:tiny")
    with pytest.raises(ValueError, match="no callable 'nope'.*tiny"):
        build_model(f"{factory_file}:nope")
    with pytest.raises(ValueError, match="no callable 'not_a_model'"):
        build_model(f"{factory_file}:not_a_model")
    with pytest.raises(ValueError, match="FUNCTION_OR_CLASS"):
        build_model(str(factory_file))
    with pytest.raises(ValueError, match="does not accept|failed"):
        build_model(f"{factory_file}:tiny", width=3)
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ValueError, match="importing.*ModuleNotFoundError"):
        build_model(f"{broken}:f")


def test_torchvision_models():
    m = build_model("torchvision:resnet18", num_classes=7)
    assert m.fc.out_features == 7
    with pytest.raises(ValueError, match="torchvision has no model 'resnet19'.*resnet18"):
        build_model("torchvision:resnet19")


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown model 'no_such_net'|zoo is not available"):
        build_model("no_such_net")
    with pytest.raises(ValueError, match="non-empty"):
        build_model("")


def _model():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3))


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_prec1": 91.7},
    lambda sd: {"model": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3},
    lambda sd: {"net": {f"_orig_mod.{k}": v for k, v in sd.items()}},
    lambda sd: {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
])
def test_weights_from_state_dicts_and_checkpoints(tmp_path, wrap):
    src = _model()
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    src[1].running_mean.normal_()
    f = tmp_path / "w.pt"
    torch.save(wrap(src.state_dict()), f)
    dst = load_weights(_model(), f)
    x = torch.randn(2, 1, 6, 6)
    src.eval()
    dst.eval()
    assert torch.equal(src(x), dst(x))


def test_weight_errors_name_the_culprit(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_weights(_model(), tmp_path / "nothing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_weights(_model(), junk)
    sd = _model().state_dict()
    f = tmp_path / "w.pt"
    torch.save({k.replace("4.", "fc."): v for k, v in sd.items()}, f)
    with pytest.raises(ValueError, match=r"missing from the file: 4\.bias, 4\.weight.*"
                                         r"not in the model: fc\.bias, fc\.weight"):
        load_weights(_model(), f)
    other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 10))
    torch.save(other.state_dict(), f)
    with pytest.raises(ValueError, match=r"4\.weight \(10, 32\) vs \(3, 32\)"):
        load_weights(_model(), f)
    torch.save({"epoch": 3, "lr": 0.1}, f)
    with pytest.raises(ValueError, match="no weights"):
        load_weights(_model(), f)


def test_whole_module_needs_trust(tmp_path):
    f = tmp_path / "m.pt"
    src = _model()
    torch.save(src, f)
    with pytest.raises(ValueError, match="trust"):
        load_weights(_model(), f)
    dst = load_weights(_model(), f, trusted=True)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(),
                                                  dst.state_dict().values(), strict=True))


def test_extract_state_dict_rejects_non_dicts():
    with pytest.raises(ValueError, match="list"):
        extract_state_dict([1, 2])


def test_load_model_is_in_eval_mode(factory_file, tmp_path):
    f = tmp_path / "w.pt"
    torch.save(build_model(f"{factory_file}:tiny").state_dict(), f)
    assert not load_model(f"{factory_file}:tiny", f).training
