"""The Lava planner stays sparse: selection edges and fixed-point rounding never densify."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from test_lava_backend import TinyResNet, _data, _model

pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0 (Python 3.10)")

import spikeconverter as sc  # noqa: E402
from spikeconverter.converters.to_lava import fixed_point, synapses  # noqa: E402

pytestmark = pytest.mark.lava


def test_selection_edges_equal_the_one_hot_construction(monkeypatch):
    model, x = _model(TinyResNet), _data(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet = sc.convert(model, x, T=4, dtype=torch.float64, progress=False, backend="lava")
    g, s = lnet.graph, lnet.schedule
    checked = []
    for pop in g:
        for e in pop.edges if pop.kind not in ("input", "maxpool") else ():
            scale = synapses.source_scale(g, s, pop, e)
            fast = synapses._selection_matrix(g, e, scale)
            if fast is None:
                continue
            with monkeypatch.context() as m:
                m.setattr(synapses, "_selection_matrix", lambda *a: None)
                slow = synapses.composed_matrix(g, e, scale)
            assert fast.shape == slow.shape and (fast != slow).nnz == 0
            checked.append(tuple(op.kind for op in e.ops))
    assert () in checked and ("slice", "pad") in checked  # identity and option-A skips


def test_sparse_weights_round_like_dense_and_stay_sparse():
    w = sp.random(300, 400, density=0.01, random_state=1, format="csr") - 0.5 * sp.random(
        300, 400, density=0.01, random_state=2, format="csr")
    w = w.tocsr()
    w.data[:3] = 1e-9  # rounds to zero: dropped
    m, err = fixed_point._round_weights(w * 90.0, 1)
    dense, err_dense = fixed_point._round_weights(w.toarray() * 90.0, 1)
    assert sp.issparse(m) and m.nnz < w.nnz
    np.testing.assert_array_equal(m.toarray(), dense)
    assert err == pytest.approx(err_dense)


def test_plan_violations_reads_sparse_weights_without_densifying():
    # an identity shortcut between 200,000-neuron layers: 320 GB once densified
    from types import SimpleNamespace

    n = 200_000
    eye = sp.identity(n, format="csr") * 2.0  # Dense/Sparse hold 2m: mantissa 1
    syn = synapses.SynapseSpec(kind="sparse", target="b", edge=1, source="a", weight=eye,
                               in_shape=(n,), out_shape=(n,), graded=False, delay=0,
                               weight_exp=-1)
    plan = SimpleNamespace(synapses=[syn], populations={})
    assert fixed_point.plan_violations(plan) == []
    eye.data[7] = 3.0  # mantissa 1.5: not an integer
    assert fixed_point.plan_violations(plan) == [
        "layer 'b': weights from 'a' are not 8-bit mantissas"]


def test_plan_cache_round_trip_and_invalidation(tmp_path, monkeypatch):
    from spikeconverter.converters.lava_backend import LavaNetwork
    from spikeconverter.converters.to_lava import network

    model, x = _model(TinyResNet), _data(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet = sc.convert(model, x, T=4, dtype=torch.float64, progress=False, backend="lava")
        cache = tmp_path / "net.snn.lavaplan"
        lnet.use_plan_cache(cache)
        built = lnet.plan(True)
        assert cache.is_file()
        again = LavaNetwork(lnet.graph, lnet.schedule)  # peaks come from graph.meta
        again.use_plan_cache(cache)
        with monkeypatch.context() as m:  # proves nothing is rebuilt
            m.setattr(network, "float_plan", lambda *a: pytest.fail("rebuilt"))
            got = again.plan(True)
            assert again.fixed_point_report()["layers"].keys() == \
                lnet.fixed_point_report()["layers"].keys()
        for a, b in zip(built.synapses, got.synapses, strict=True):
            wa, wb = a.weight, b.weight
            assert sp.issparse(wa) == sp.issparse(wb) and a.weight_exp == b.weight_exp
            np.testing.assert_array_equal(wa.toarray() if sp.issparse(wa) else wa,
                                          wb.toarray() if sp.issparse(wb) else wb)
        assert got.populations.keys() == built.populations.keys()
        # the network changes: the cache no longer applies
        pop = next(p for p in lnet.graph if p.kind == "relu")
        pop.theta = pop.theta * 1.25
        changed = LavaNetwork(lnet.graph, lnet.schedule, membrane_peaks=lnet.membrane_peaks)
        changed.use_plan_cache(cache)
        calls = []
        real = network.float_plan
        monkeypatch.setattr(network, "float_plan", lambda *a: calls.append(1) or real(*a))
        changed.plan(True)
        assert calls == [1]


def test_load_reuses_the_plans_cached_beside_the_file(tmp_path, monkeypatch):
    """``sc.load`` of a Lava file: the first fixed-point plan is built and written to
    ``<file>.lavaplan``; a second load reuses it (the builders are never called)."""
    from spikeconverter.converters.to_lava import network

    model, x = _model(TinyResNet), _data(8)
    path = tmp_path / "net.snn"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.convert(model, x, T=4, dtype=torch.float64, progress=False, backend="lava").save(path)
        calls = []
        real_float, real_fixed = network.float_plan, network.fixed_point_plan
        monkeypatch.setattr(network, "float_plan", lambda *a: calls.append("float")
                            or real_float(*a))
        monkeypatch.setattr(network, "fixed_point_plan", lambda *a, **kw: calls.append("fixed")
                            or real_fixed(*a, **kw))
        first = sc.load(path).plan(True)
        assert calls == ["float", "fixed"]
        assert (tmp_path / "net.snn.lavaplan").is_file()
        second = sc.load(path).plan(True)
        assert calls == ["float", "fixed"]  # nothing rebuilt
        assert [s.weight_exp for s in second.synapses] == [s.weight_exp for s in first.synapses]
