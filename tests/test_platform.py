"""Host-dependent hazards the package must never trip over (docs/platform.md).

MXNet 1.9.1's oneDNN BatchNorm, on AVX-512 hosts only, kills the process when a BatchNorm on a
``(N, C, 1, 1)`` input is followed, in the same process, by one on an ``(N, C)`` input with the
same C. The zoo avoids the pair by construction: no BatchNorm *operator* of any model, in any
form, takes a ``(N, C, 1, 1)`` input. The first test checks that invariant on the symbol graphs
(it holds or fails the same on every host); the second runs the sequence that used to crash
(LCNN and dense AlexNet/LeNet, every form, both orders) in a fresh process and asserts it exits 0.
"""
import json
import textwrap

import mxnet as mx
import pytest
from conftest import PY, run

import lcnn_gluon
from lcnn_gluon import export, flops
from lcnn_gluon import nn as lnn


def batchnorm_input_shapes(net, shape):
    """The data-input shape of every BatchNorm operator in ``net``'s graph for a batch of 2."""
    sym = net(mx.sym.var("data"))
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape_partial(data=(2,) + tuple(shape))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    found = []
    for node in nodes:
        if node["op"] != "BatchNorm":
            continue
        src_id, index = node["inputs"][0][:2]
        src = nodes[src_id]
        for name in (src["name"], f"{src['name']}_output", f"{src['name']}_output{index}"):
            if name in shapes:
                found.append((node["name"], tuple(shapes[name])))
                break
        else:
            raise AssertionError(f"no shape for the input of {node['name']}")
    return found


SMALL_K = {"lenet": (1, 4, 4), "alexnet": (3, 4, 4, 4, 4, 4, 4), "resnet18": (3, 4, 4, 4, 4)}


def forms_of(name, shape):
    """The network ``name`` in every form the project runs it in (LCNN presets with small
    dictionaries: the layer types and shapes around each BatchNorm are the preset's)."""
    small = {"dictionary_sizes": SMALL_K[name.split("_")[0]]} if "lcnn" in name else {}

    def fresh():
        mx.random.seed(0)
        net = lcnn_gluon.get_model(name, classes=10, **small)
        net.initialize(mx.init.Xavier())
        return net
    yield "composed", fresh()
    for batch in (1, 64):
        net = fresh()
        flops.choose_forms(flops.trace(net, shape), batch)
        yield f"forms for batch {batch}", net
    net = fresh()
    for layer in lnn.lookup_layers(net):
        layer._set_form("two_stage")
    yield "two_stage", net
    if lnn.lookup_layers(net):
        net(mx.nd.zeros((1,) + shape))
        yield "densify", export.densify(net)


@pytest.mark.parametrize("name", lcnn_gluon.list_models())
def test_no_batchnorm_of_the_zoo_sees_a_1x1_map(name):
    shape = (1, 28, 28) if name.startswith("lenet") else (3, 224, 224)
    for form, net in forms_of(name, shape):
        found = batchnorm_input_shapes(net, shape)
        assert found, (name, form)
        bad = [(bn, s) for bn, s in found if len(s) == 4 and s[2:] == (1, 1)]
        assert not bad, f"{name} ({form}): BatchNorm on a (N, C, 1, 1) input: {bad}"


ONE_PROCESS = textwrap.dedent("""
    import json, sys
    import mxnet as mx
    from mxnet import autograd
    import lcnn_gluon
    from lcnn_gluon import export, flops

    def use(net, shape, train):
        x = mx.nd.random.normal(shape=(2,) + shape)
        if train:
            with autograd.record():
                y = net(x)
            y.backward()
        return float(net(x).sum().asscalar())

    def run(name, shape, kwargs):
        for batch in (None, 1):  # the composed form as built; the forms the CLI chooses
            net = lcnn_gluon.get_model(name, classes=10, **kwargs)
            net.initialize(mx.init.Xavier())
            if batch:
                flops.choose_forms(flops.trace(net, shape), batch)
            for hybrid in (False, True):
                net.hybridize(active=hybrid, static_alloc=hybrid)
                use(net, shape, train=True)
                use(net, shape, train=False)
            if "lcnn" in name:
                use(export.densify(net), shape, train=False)

    for name, kwargs in json.loads(sys.argv[1]):
        run(name, (1, 28, 28) if name.startswith("lenet") else (3, 224, 224), kwargs)
    print("survived")
""")


@pytest.mark.parametrize("order", [("alexnet_lcnn_fast", "alexnet", "lenet_lcnn_fast", "lenet"),
                                   ("alexnet", "alexnet_lcnn_accurate", "lenet", "lenet_lcnn_accurate")])
def test_dense_and_lcnn_models_share_a_process(order):
    """The sequence that crashed on AVX-512 hosts (LCNN AlexNet, then dense AlexNet), and the
    reverse, each in a fresh process (small dictionaries: the same layers around each BatchNorm)."""
    models = [(name, {"dictionary_sizes": SMALL_K[name.split("_")[0]]} if "lcnn" in name else {})
              for name in order]
    proc = run(PY, "-c", ONE_PROCESS, json.dumps(models), check=False, timeout=900)
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stdout[-3000:]
