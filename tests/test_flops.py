"""Multiplication counts: the paper's formula by hand, and the command line."""
import re

import mxnet as mx
import pytest
from conftest import PY, run

import lcnn_gluon
from lcnn_gluon import flops
from lcnn_gluon import nn as lnn
from lcnn_gluon.lookup import cost

LENET_DENSE = 24 * 24 * 20 * 25 + 8 * 8 * 50 * 20 * 25 + 500 * 50 * 16 + 500 * 10


def test_dense_lenet_count_by_hand():
    net = lcnn_gluon.get_model("lenet")
    net.initialize()
    rows = flops.count(flops.trace(net, (1, 28, 28)))
    assert sum(r.dense for r in rows) == LENET_DENSE
    assert flops.speedup(rows) == 1.0


def test_lookup_layer_count_by_hand():
    layer = lnn.LookupConv2D(8, 3, strides=2, padding=1, dictionary_size=4, in_channels=6)
    layer.initialize()
    row = flops.count(flops.trace(layer, (6, 11, 11)))[0]
    out = 8 * 6 * 6
    assert row.dense == out * 6 * 9
    assert row.lcnn == round(13 * 13 * 4 * 6 + out * 9 * 4 * layer.density())
    assert cost.product_mults(layer, (6, 11, 11)) == 13 * 13 * 4 * 6  # the first stage alone
    dense = lnn.LookupDense(10, dictionary_size=3, in_units=20)
    dense.initialize()
    row = flops.count(flops.trace(dense, (20,)))[0]
    assert (row.dense, row.lcnn) == (200, round(3 * 20 + 10 * 3 * dense.density()))


def test_a_kernel_narrower_than_its_stride_counts_the_phases_it_reaches():
    # 1x1, stride 2 on 11x11 (no padding): the product covers rows and columns 0, 2, .., 10
    # (6 x 6 positions), not the 121 of the input; 2x2, stride 3, pad 1 on 10x10 (12 padded
    # positions a side): phases 0 and 1 of 3 reach 4 + 4 positions a side
    one = lnn.LookupConv2D(8, 1, strides=2, dictionary_size=4, in_channels=6)
    one.initialize()
    lnn.set_random_lookup(one, 0.1, seed=0)
    row = flops.count(flops.trace(one, (6, 11, 11)))[0]
    assert not row.as_dense and row.lcnn == round(6 * 6 * 4 * 6 + 8 * 6 * 6 * 4 * one.density())
    two = lnn.LookupConv2D(8, 2, strides=3, padding=1, dictionary_size=4, in_channels=6)
    two.initialize()
    lnn.set_random_lookup(two, 0.1, seed=0)
    row = flops.count(flops.trace(two, (6, 10, 10)))[0]
    assert not row.as_dense and row.lcnn == round(8 * 8 * 4 * 6 + 8 * 4 * 4 * 4 * 4 * two.density())


def test_a_layer_that_counts_more_as_lookups_counts_as_the_dense_layer_it_runs_as():
    # stride 2, k = 4m: the dictionary product over the full 18x18 padded input alone is
    # 18*18*32*8 = 82944 multiplications, more than the dense layer's 8*8*16 * 8*9 = 73728
    heavy = lnn.LookupConv2D(16, 3, strides=2, padding=1, dictionary_size=32, in_channels=8)
    heavy.initialize()
    lnn.set_random_lookup(heavy, 0.01, seed=0)
    row = flops.count(flops.trace(heavy, (8, 16, 16)))[0]
    assert row.as_dense and row.lcnn == row.dense == 8 * 8 * 16 * 8 * 9
    light = lnn.LookupConv2D(16, 3, strides=2, padding=1, dictionary_size=4, in_channels=8)
    light.initialize()
    row = flops.count(flops.trace(light, (8, 16, 16)))[0]
    assert not row.as_dense and row.lcnn < row.dense


def test_speedup_follows_density():
    net = lcnn_gluon.get_model("lenet_lcnn_fast")
    net.initialize()
    layers = flops.trace(net, (1, 28, 28))
    before = flops.speedup(flops.count(layers))
    for layer in lnn.lookup_layers(net):
        layer.lookup.set_data(layer.lookup.data() * (mx.nd.random.uniform(shape=layer.lookup.shape) < 0.05))
    assert flops.speedup(flops.count(layers)) > 3 * before


def test_choose_forms_follows_the_multiplication_counts():
    fast = lcnn_gluon.get_model("alexnet_lcnn_fast")
    fast.initialize()
    forms = list(flops.choose_forms(flops.trace(fast, (3, 224, 224)), 128).values())
    assert forms[2] == "two_stage"  # conv3, k=30 < m=192: 1x1 to 30 channels, then 3x3 over 30
    assert forms[6] == "two_stage"  # fc7 (a LookupDense): 4096 -> 512 -> 4096 is a low-rank product
    assert forms[5].endswith("as fc")  # fc6: a 6x6 kernel on the 6x6 map is a fully connected layer
    accurate = lcnn_gluon.get_model("alexnet_lcnn_accurate", dictionary_sizes=[3, 500, 500, 500, 500, 8, 8])
    accurate.initialize()
    forms = list(flops.choose_forms(flops.trace(accurate, (3, 224, 224)), 128).values())
    assert forms[2] == "composed"  # k=500 > m=192: the dense convolution with W = P x D is cheaper


def test_cli_prints_table_and_speedup():
    out = run(PY, "-m", "lcnn_gluon.flops", "--network", "resnet18_lcnn_fast").stdout
    assert "lookup conv" in out and "conv" in out
    speed = float(re.search(r"^speedup: ([\d.]+)$", out.strip().splitlines()[-1]).group(1))
    assert speed > 1.5


def test_cli_rejects_params_of_another_network(tmp_path):
    net = lcnn_gluon.get_model("lenet")
    net.initialize()
    net(mx.nd.ones((1, 1, 28, 28)))
    net.save_parameters(str(tmp_path / "lenet.params"))
    proc = run(PY, "-m", "lcnn_gluon.flops", "--network", "lenet_lcnn_fast", "--params",
               tmp_path / "lenet.params", check=False)
    assert proc.returncode == 2 and "does not fit network lenet_lcnn_fast" in proc.stdout
    assert "Traceback" not in proc.stdout


@pytest.mark.parametrize("name", ["alexnet_lcnn_fast", "resnet18_lcnn_accurate"])
def test_initial_speedup_is_below_the_papers(name):
    # at initialisation P is ~99% dense: the counted speedup comes only from small dictionaries
    net = lcnn_gluon.get_model(name)
    net.initialize()
    assert 0.3 < flops.speedup(flops.count(flops.trace(net, (3, 224, 224)))) < 5
