"""The one validation of a network's values (converters/validate.py), function by function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graphs import conv_graph, inputs

from spikeconverter.converters.calibrate import calibrate
from spikeconverter.converters.ir import Op
from spikeconverter.converters.validate import (
    check_batch,
    check_batch_size,
    check_graph,
    check_options,
    check_T,
    check_T_per_layer,
    max_exact_T,
)


@pytest.fixture
def graph():
    g = conv_graph()
    return calibrate(g, inputs(g, 16), 8, progress=False)


def test_the_exact_T_limit_is_the_mantissa():
    assert (max_exact_T(torch.float32), max_exact_T(torch.float64)) == (24, 53)
    assert check_T(24) == 24 and check_T(53, dtype=torch.float64) == 53
    with pytest.raises(ValueError, match=r"T=25 .*float32 only up to T=24.*float64"):
        check_T(25)
    with pytest.raises(ValueError, match=r"T=54 .*float64 only up to T=53"):
        check_T(54, dtype=torch.float64)
    for bad in (0, -3, 2.0, True, None):
        with pytest.raises(ValueError, match="integer >= 1"):
            check_T(bad)


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_batch_size(value):
    with pytest.raises(ValueError, match="batch_size"):
        check_batch_size(value)


def test_batches_are_checked_and_named():
    x = torch.rand(4, 2, 8, 8)
    assert check_batch(x, "b", (2, 8, 8)) is x
    x[1, 0, 0, 0], x[2, 0, 0, 0] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"calibration batch 3 holds 2 non-finite values "
                                         r"\(1 NaN, 1 inf\)"):
        check_batch(x, "calibration batch 3")
    with pytest.raises(ValueError, match=r"must have shape \(B, 2, 8, 8\).*\(0, 2, 8, 8\)"):
        check_batch(torch.rand(0, 2, 8, 8), "the input", (2, 8, 8))
    with pytest.raises(ValueError, match=r"got \(4, 2, 9, 9\)"):
        check_batch(torch.rand(4, 2, 9, 9), "calibration batch 1", (2, 8, 8))
    with pytest.raises(ValueError, match="tensor"):
        check_batch([1, 2], "the input")


def test_a_calibrated_graph_passes(graph):
    assert check_graph(graph) is graph


@pytest.mark.parametrize("field, value, message", [
    ("k", 7.0, r"k must be a number in \(1, 2\]"),
    ("k", "2", "k must be a number"),
    ("rounding", "up", "rounding must be one of"),
])
def test_bad_code_values(graph, field, value, message):
    setattr(graph, field, value)
    with pytest.raises(ValueError, match=message):
        check_graph(graph)


@pytest.mark.parametrize("pop, field, value, message", [
    ("c1", "theta", -1.0, "'c1': theta must be finite and > 0"),
    ("c1", "theta", float("nan"), "'c1': theta must be finite and > 0"),
    ("c1", "theta", np.ones(7), r"one value per channel \(4\)"),
    ("c1", "theta", "1", "theta must be a number"),
    ("c2", "T", -3, "'c2': T must be an integer >= 1"),
    ("c2", "T", 10**6, "'c2': T=1000000 is too long"),
    ("c2", "T", 30, "T=30 is too long"),
    ("mp", "T", 4, "must have its source 'c1''s T and theta"),
    ("x", "T", 3, "analog input 'x' must have T=1"),
    ("c3", "clip", float("inf"), "clip must be finite"),
    ("c1", "shape", (4, 250_000, 250_000), "250000000000 neurons per sample"),
    ("c1", "shape", (4, 8, -8), "shape must be 1 to 3 positive integers"),
    ("c1", "shape", (4, 8, 9), r"produces shape \(4, 8, 8\), but the population has"),
    ("mp", "shape", (4, 2, 2), r"its pooling gives \(4, 4, 4\)"),
])
def test_bad_population_values(graph, pop, field, value, message):
    setattr(graph[pop], field, value)
    with pytest.raises(ValueError, match=message):
        check_graph(graph)


def test_thirty_spikes_are_fine_in_float64(graph):
    g = conv_graph()
    calibrate(g, inputs(g, 16), 30, progress=False)
    check_graph(g, torch.float64)


def test_op_parameters_that_do_not_fit_are_refused(graph):
    graph["c2"].edges[0].ops[0].weight = np.zeros((4, 5, 3, 3))
    with pytest.raises(ValueError, match="conv2d op on edge 'mp' -> 'c2' does not apply"):
        check_graph(graph)


def test_oversized_ops_are_refused_without_allocating(graph):
    graph["c2"].edges[0].ops.insert(0, Op("pad", attrs={"pad": (0, 10**6, 0, 10**6)}))
    with pytest.raises(ValueError, match="beyond the supported size"):
        check_graph(graph)


@pytest.mark.parametrize("names, message", [
    ({"mp": 3}, r"max pooling population 'mp': it emits its source's train; set "
                r"T_per_layer\['c1'\]"),
    ({"y": 3}, "the readout 'y': it only accumulates"),
    ({"x": 3}, "analog input 'x'.*input_encoding='spikes'"),
    ({"zz": 3}, "'zz', which is not a population; populations with a T of their own: c1, c2, c3"),
    ({"c1": 0}, r"T_per_layer\['c1'\] must be an integer >= 1"),
    ({"c1": 25}, r"T_per_layer\['c1'\]=25 is too long"),
    ([("c1", 3)], "must be a dict"),
])
def test_T_per_layer_names_only_populations_with_their_own_T(graph, names, message):
    with pytest.raises(ValueError, match=message):
        check_T_per_layer(graph, names)


def test_T_per_layer_accepts_spiking_populations(graph):
    assert check_T_per_layer(graph, {"c1": np.int64(4), "c3": 6}) == {"c1": 4, "c3": 6}


@pytest.mark.parametrize("options, message", [
    ([1], "options must be a dict"),
    ({"dtype": "foo"}, r"options\['dtype'\] must be one of"),
    ({"mode": 1}, r"options\['mode'\] must be a string"),
    ({"margin": 2}, r"options\['margin'\] must be a number in \(0, 1\]"),
    ({"backend": "loihi"}, r"options\['backend'\] must be one of"),
])
def test_malformed_options(options, message):
    with pytest.raises(ValueError, match=message):
        check_options(options, ("norse", "lava"))
