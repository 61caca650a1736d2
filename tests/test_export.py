"""NIR export of the rate-coded baselines: Norse imports the graph and reproduces the run."""

import logging

import nir
import numpy as np
import pytest
import torch
from torch import nn

from spikeconverter.baselines import RateNetwork, rate_thresholds
from spikeconverter.converters import capture, convert
from spikeconverter.export import norse_to_nir, to_nir, write_nir
from spikeconverter.plugin import ILIFCell, ILIFParameters

norse_torch = pytest.importorskip("norse.torch")


class PoolNet(nn.Module):
    """conv-ReLU x2, average pooling, conv-ReLU, pooling, flatten, linear-ReLU, linear."""

    def __init__(self, pool: type[nn.Module] = nn.AvgPool2d):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
            pool(2), nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.ReLU(), pool(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.ReLU(),
                                        nn.Linear(16, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.fc(torch.relu(self.b(h) + h).flatten(1))


@pytest.fixture(scope="module")
def baseline():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 8, 8)
    graph = capture(PoolNet().eval(), x[:2])
    return RateNetwork(graph, rate_thresholds(graph, x, mode="max"), "hard_reset"), x


def run_norse(module, x: torch.Tensor, steps: int, if_nodes: list[str]):
    """Norse's module on each sample (NIR graphs are unbatched): mean output, spike counts."""
    outputs, counts = [], dict.fromkeys(if_nodes, 0.0)
    with torch.no_grad():
        for sample in x:
            state, total = None, 0.0
            for _ in range(steps):
                out, state = module(sample, state)
                total = total + out
                for name in if_nodes:
                    counts[name] += float(state.cache[name].sum())
            outputs.append(total / steps)
    return torch.stack(outputs), counts


def test_norse_runs_the_exported_baseline_with_the_same_spikes_and_logits(baseline, tmp_path):
    net, x = baseline
    steps = 48
    ours = net.run(x, steps=(steps,))
    path = write_nir(net, tmp_path / "net.nir")
    graph = nir.read(path)  # through the file: what another tool would read
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert kinds == {"Input", "Conv2d", "IF", "SumPool2d", "Flatten", "Affine", "Output"}
    relus = [p.name for p in net.graph if p.kind == "relu"]
    module = norse_torch.from_nir(graph)
    logits, counts = run_norse(module, x, steps, relus)
    # every IF population fires exactly as often as the baseline's (ours: summed over the batch)
    assert counts == {name: ours.spikes[steps][name] for name in relus}
    assert all(c > 0 for c in counts.values())
    # the readout: Norse runs one sample at a time (GEMV) where the baseline runs the batch
    # (GEMM), so float32 sums may differ in the last bits; measured max difference 4e-9
    torch.testing.assert_close(logits, ours.logits[steps], rtol=1e-5, atol=1e-6)
    assert torch.equal(logits.argmax(1), ours.logits[steps].argmax(1))


def test_threshold_keeps_the_baselines_greater_or_equal_rule(baseline):
    net, _ = baseline
    graph = to_nir(net)
    for name, lam in net.thresholds.items():
        v_th = graph.nodes[name].v_threshold
        assert v_th.dtype == np.float32 and np.all(v_th < np.float32(lam))
        # no float32 lies between NIR's threshold and lambda: v > v_th is exactly v >= lambda
        assert np.all(np.nextafter(v_th, np.float32(np.inf)) == np.float32(lam))
        assert np.all(graph.nodes[name].v_reset == 0) and np.all(graph.nodes[name].r == 1)


def test_an_ilif_network_is_refused_with_what_would_work():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    net = convert(PoolNet().eval(), x, T=2, progress=False)
    with pytest.raises(TypeError, match="NIR has no iLIF primitive.*rate-coded baseline"):
        to_nir(net)


@pytest.mark.parametrize(
    "model, method, match",
    [(PoolNet(), "soft_reset", "resets by subtraction.*hard_reset"),
     (PoolNet(nn.MaxPool2d), "hard_reset", "max pooling"),
     (Residual(), "hard_reset", "residual add")],
)
def test_what_standard_nir_cannot_express_is_refused(model, method, match):
    x = torch.rand(3, 1, 8, 8)
    graph = capture(model.eval(), x[:2])
    net = RateNetwork(graph, rate_thresholds(graph, x, mode="max"), method)
    with pytest.raises(ValueError, match=match):
        to_nir(net)


def test_other_objects_are_refused():
    with pytest.raises(TypeError, match="RateNetwork"):
        to_nir(nn.Linear(2, 2))


def test_import_logs_no_divergence_warnings(baseline, caplog):
    """Norse warns when r != 1 (it ignores r): the export writes r = 1 everywhere."""
    with caplog.at_level(logging.WARNING):
        norse_torch.from_nir(to_nir(baseline[0]))
    assert "diverge" not in caplog.text


def test_norse_to_nir_refuses_a_model_holding_an_ilif_cell():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), ILIFCell(ILIFParameters(t_acc=2, t_gen=2)))
    with pytest.raises(TypeError, match="'1' is an iLIF neuron: NIR has no iLIF primitive"):
        norse_to_nir(model, torch.zeros(4))


def test_norse_to_nir_refuses_modules_norse_would_leave_empty():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    with pytest.raises(ValueError, match=r"no NIR node for \['1'\]"):
        norse_to_nir(model, torch.zeros(4))


def test_norse_to_nir_passes_norse_graphs_through():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), norse_torch.IAFCell())
    graph = norse_to_nir(model, torch.zeros(4))
    assert isinstance(graph.nodes["0"], nir.Affine) and isinstance(graph.nodes["1"], nir.IF)
