"""Feature distillation: the block outputs' decoded values against the ANN's activations."""

from __future__ import annotations

import copy

import pytest
import torch
from trainhelpers import digits_and_ann

from spikeconverter.converters import convert
from spikeconverter.models import small_cnn
from spikeconverter.training import finetune
from spikeconverter.training.config import FinetuneConfig
from spikeconverter.training.finetune import feature_populations, teacher_graph
from spikeconverter.training.losses import feature_loss
from spikeconverter.training.trainable import TrainableSpikingNetwork


@pytest.fixture(scope="module")
def digits():
    """sklearn digits (8x8): 600 training images and an ANN trained on them."""
    return digits_and_ann(2)


def test_feature_loss_is_the_mean_relative_squared_error():
    t = {"a": torch.tensor([[1.0, 3.0]]), "b": torch.tensor([[0.0, 0.0, 2.0]])}
    s = {"a": torch.tensor([[2.0, 3.0]]), "b": torch.tensor([[0.0, 1.0, 2.0]])}
    # a: (1/2) / (10/2); b: (1/3) / (4/3)
    assert float(feature_loss(s, t)) == pytest.approx((0.1 + 0.25) / 2)
    assert float(feature_loss(t, t)) == 0.0
    zero = {"a": torch.zeros(1, 2)}
    assert float(feature_loss({"a": torch.tensor([[1.0, 3.0]])}, zero)) == 5.0  # plain error
    with pytest.raises(ValueError, match="differ"):
        feature_loss({"a": s["a"]}, t)
    with pytest.raises(ValueError, match="population 'a'"):
        feature_loss({"a": s["b"], "b": s["b"]}, t)


def test_recorded_values_are_the_quantised_block_outputs(digits):
    """In grad mode the trainable network keeps each block output's decoded value, which is
    the quantised ANN's value there (float64: exactly), and the teacher's graph gives the
    ANN's activations (its readout is the model's output)."""
    model, (x, _) = digits
    model = copy.deepcopy(model).double()  # the fixture's model stays float32
    net = convert(model, x[:128].double(), T=3, dtype=torch.float64, progress=False)
    tr = TrainableSpikingNetwork(net.graph, net.schedule, dtype=torch.float64)
    names = feature_populations(tr.graph, 1.0)
    assert names and all(tr.graph[n].kind == "relu" for n in names)
    assert feature_populations(tr.graph, 0.0) == frozenset()
    tr.record_values = names
    batch = x[:16].double()
    tr(batch)
    assert set(tr.values) == names
    assert all(v.requires_grad for v in tr.values.values())
    quantised = net.graph.forward(batch, quantized=True)
    for n in names:
        torch.testing.assert_close(tr.values[n], quantised[n], rtol=0, atol=0)
    ann = teacher_graph(model, tr.graph, names).forward(batch, quantized=False)
    readout = [p.name for p in tr.graph][-1]
    torch.testing.assert_close(ann[readout], model(batch))
    with torch.no_grad():
        tr(batch)
    assert tr.values == {}  # outside grad mode nothing is kept


def test_feature_distillation_brings_block_outputs_closer_to_the_ann(digits):
    """From the same start, a run with a large feature weight ends with block outputs closer to
    the ANN's on the training images than the plain distillation run; with weight 0 the run
    is the plain one, step for step."""
    model, (x, y) = digits
    nets = [convert(model, x[:128], T=2, progress=False) for _ in range(3)]
    names = feature_populations(nets[0].graph, 1.0)
    ann = teacher_graph(model, nets[0].graph, names).forward(x, quantized=False)

    def error(n) -> float:
        tr = TrainableSpikingNetwork(n.graph, n.schedule)
        tr.record_values = names
        tr(x)  # grad mode: the values are recorded
        return feature_loss(tr.values, {k: ann[k] for k in names}).item()

    before = error(nets[0])
    opts = dict(epochs=2, teacher=model, distill_weight=1.0, lr=3e-3, optimizer="adam",
                batch_size=60, progress=False)
    finetune(nets[0], (x, y), feature_weight=50.0, **opts)
    h0 = finetune(nets[1], (x, y), feature_weight=0.0, **opts)
    h1 = finetune(nets[2], (x, y), **opts)
    assert h0["loss"] == h1["loss"]
    # measured: 0.072 before, 0.067 after with the feature term, 0.087 after without
    assert error(nets[0]) < before and error(nets[0]) < error(nets[1]) - 0.01


def test_feature_distillation_errors(digits):
    model, (x, y) = digits
    with pytest.raises(ValueError, match="feature_weight > 0 .* teacher=ANN"):
        FinetuneConfig(feature_weight=1.0)
    with pytest.raises(ValueError, match="feature_weight must be a finite number >= 0"):
        FinetuneConfig(feature_weight=-1.0)
    net = convert(model, x[:128], T=2, progress=False)
    other = small_cnn(input_size=8, width=4, hidden=32).eval()  # not the converted ANN
    with pytest.raises(ValueError, match="the teacher must be the ANN the network was converted"):
        finetune(net, (x, y), epochs=1, teacher=other, feature_weight=1.0, progress=False)


def test_a_float64_network_distils_from_a_float32_teacher(digits):
    """The teacher sees the batch as given (float32) and the network its own precision."""
    model, (x, y) = digits
    net = convert(model, x[:128], T=2, dtype=torch.float64, progress=False)
    h = finetune(net, (x, y), epochs=1, max_steps=2, teacher=model, feature_weight=1.0,
                 batch_size=60, progress=False)
    assert h["steps"] == 2 and all(torch.isfinite(torch.tensor(h["loss"])))
