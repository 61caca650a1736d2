from graphs import conv_graph, mlp_graph

from spikeconverter.baselines import ann_macs, fanout


def test_fanout_of_dense_and_conv_edges():
    g = mlp_graph(n_in=12, hidden=16, n_out=5)
    f = fanout(g)
    assert f["x"].tolist() == [16.0] * 12 and f["h"].tolist() == [5.0] * 16
    c = conv_graph()
    f = fanout(c)
    # c1 feeds only the 2x2 max pooling (stride 2): one window per neuron
    assert f["c1"].unique().tolist() == [1.0]
    # mp -> c2 (3x3 conv, pad 1, 4 out channels) and the identity residual into c3
    mp = f["mp"]
    assert mp[0, 0, 0].item() == 4 * 4 + 1  # corner: 2x2 window positions
    assert mp[0, 1, 1].item() == 4 * 9 + 1
    # c3 -> global average pool (one output per channel) -> linear to 3 classes
    assert f["c3"].unique().tolist() == [3.0]


def test_zero_weights_are_not_synapses():
    g = mlp_graph(n_in=4, hidden=3, n_out=2)
    g["h"].edges[0].ops[0].weight[:, 0] = 0.0
    assert fanout(g)["x"].tolist() == [0.0, 3.0, 3.0, 3.0]


def test_ann_macs():
    assert ann_macs(mlp_graph(n_in=12, hidden=16, n_out=5)) == 12 * 16 + 16 * 5
    conv = (8 * 8 * 4) * (2 * 9) + (4 * 4 * 4) * (4 * 9) * 2 + 3 * 4
    assert ann_macs(conv_graph()) == conv
