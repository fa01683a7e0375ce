"""Every registered model builds and runs; presets carry the paper's numbers; conversion."""
import gluoncv
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import lcnn_gluon
from lcnn_gluon import flops
from lcnn_gluon import nn as lnn
from lcnn_gluon.model_zoo import register_model

EXPECTED_LOOKUPS = {"lenet": 0, "lenet_lcnn_fast": 3, "lenet_lcnn_accurate": 3, "alexnet": 0,
                    "alexnet_lcnn_fast": 7, "alexnet_lcnn_accurate": 7, "resnet18": 0,
                    "resnet18_lcnn_fast": 17, "resnet18_lcnn_accurate": 17}


@pytest.mark.parametrize("name", sorted(EXPECTED_LOOKUPS))
def test_every_model_builds_and_runs(name):
    assert name in lcnn_gluon.list_models()
    net = lcnn_gluon.get_model(name, classes=7)
    net.initialize()
    shape = (2, 1, 28, 28) if name.startswith("lenet") else (2, 3, 224, 224)
    flops.choose_forms(flops.trace(net, shape[1:]), 2)  # cheap forms for the test
    net.hybridize()
    out = net(mx.nd.random.normal(shape=shape))
    assert out.shape == (2, 7) and np.isfinite(out.asnumpy()).all()
    assert len(lnn.lookup_layers(net)) == EXPECTED_LOOKUPS[name]


def test_presets_have_the_papers_dictionary_sizes():
    def sizes(name):
        return [layer.dictionary_size for layer in lnn.lookup_layers(lcnn_gluon.get_model(name))]

    assert sizes("alexnet_lcnn_fast") == [3, 30, 30, 30, 30, 512, 512]
    assert sizes("alexnet_lcnn_accurate") == [3, 500, 500, 500, 500, 1024, 1024]
    assert sizes("resnet18_lcnn_fast") == [3] + [16] * 4 + [32] * 4 + [64] * 4 + [128] * 4
    assert sizes("resnet18_lcnn_accurate") == [3] + [128] * 4 + [256] * 4 + [512] * 4 + [1024] * 4
    fast = lnn.lookup_layers(lcnn_gluon.get_model("alexnet_lcnn_fast"))
    assert fast[0].lambda_ == 0.3 and fast[5].kernel == (6, 6) and fast[6].kernel == (1, 1)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown network 'resnet19'.*resnet18_lcnn_fast"):
        lcnn_gluon.get_model("resnet19")


def test_registry_refuses_duplicates():
    def lenet():
        return None

    with pytest.raises(ValueError, match="model 'lenet' is already registered"):
        register_model(lenet)


def test_caller_arguments_win_over_preset():
    net = lcnn_gluon.get_model("lenet_lcnn_fast", lambda_=0.0, dictionary_sizes=(1, 4, 4))
    assert [layer.dictionary_size for layer in lnn.lookup_layers(net)] == [1, 4, 4]
    assert all(layer.lambda_ == 0.0 for layer in lnn.lookup_layers(net))


@pytest.mark.parametrize("name,shape,kept", [
    ("resnet18_v1", (3, 64, 64), {"classifier"}),
    ("mobilenetv2_1.0", (3, 64, 64), {"classifier", "grouped convolution"}),
    ("vgg11", (3, 64, 64), {"classifier"}),
    ("cifar_resnet20_v1", (3, 32, 32), {"classifier"}),
])
def test_convert_gluoncv_models_and_train(name, shape, kept):
    mx.random.seed(0)
    net = gluoncv.model_zoo.get_model(name, pretrained=False, classes=4)
    report = lcnn_gluon.convert(net, dictionary_size=8, lambda_=0.1, initial_sparsity=0.1)
    assert report.converted and len(lnn.lookup_layers(net)) == len(report.converted)
    reasons = " ".join(r for _, r in report.kept)
    assert all(word in reasons for word in kept), reasons
    net.initialize(mx.init.Xavier())
    layers = flops.trace(net, shape)
    assert flops.speedup(flops.count(layers)) > 1.0
    flops.choose_forms(layers, 8)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", dict(learning_rate=0.01, momentum=0.9))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    x, y = mx.nd.random.normal(shape=(8,) + shape), mx.nd.array(np.arange(8) % 4)
    losses = []
    for _ in range(10):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        lnn.add_l1_grad(lnn.lookup_layers(net), 8)
        trainer.step(8)
        lnn.prune(lnn.lookup_layers(net))
        losses.append(float(loss.mean().asscalar()))
    assert max(losses[-2:]) < losses[0]  # the converted network learns (the fixed batch)


def test_convert_keeps_strides_padding_activation_and_names():
    net = gluon.nn.HybridSequential(prefix="net_")
    with net.name_scope():
        net.add(gluon.nn.Conv2D(16, 3, strides=2, padding=1, activation="relu", in_channels=3),
                gluon.nn.Conv2D(3, 1), gluon.nn.Dense(5))
    names_before = net[0].prefix
    report = lcnn_gluon.convert(net, dictionary_size=4)
    assert "k=4 >= n*kh*kw=3: a lookup saves nothing" in str(report)
    layer = net[0]
    assert isinstance(layer, lnn.LookupConv2D)
    assert (layer.strides, layer.padding, layer.activation) == ((2, 2), (1, 1), "relu")
    assert layer.prefix == names_before and layer.dictionary.name == names_before + "dictionary"
    net.initialize()
    assert net(mx.nd.ones((1, 3, 8, 8))).shape == (1, 5)
    assert (layer(mx.nd.random.normal(shape=(1, 3, 8, 8))).asnumpy() >= 0).all()  # relu kept


def test_alexnet_checkpoints_with_fc7_as_a_1x1_convolution_still_load(tmp_path):
    """Before fc7 became a LookupDense it was a 1x1 LookupConv2D: P (n, k, 1, 1), D (k, m, 1, 1)."""
    from lcnn_gluon import checkpoint
    small = dict(dictionary_sizes=(3, 4, 4, 4, 4, 4, 4))
    old = lcnn_gluon.get_model("alexnet_lcnn_fast", classes=5, **small)
    old.initialize(mx.init.Xavier())
    old(mx.nd.zeros((1, 3, 224, 224)))
    saved = {name: p.data() for name, p in old._collect_params_with_prefix().items()}
    fc7 = lnn.lookup_layers(old)[-1]
    assert isinstance(fc7, lnn.LookupDense)
    legacy = {name: a.reshape(a.shape + (1, 1)) if a.ndim == 2 and name.endswith(
        ("lookup", "alive", "dictionary")) else a for name, a in saved.items()}
    assert sum(legacy[name].shape != a.shape for name, a in saved.items()) == 3  # fc7's P, alive, D
    mx.nd.save(str(tmp_path / "old.params"), legacy)
    new = lcnn_gluon.get_model("alexnet_lcnn_fast", classes=5, **small)
    new.initialize()
    checkpoint.load_params(new, str(tmp_path / "old.params"), "alexnet_lcnn_fast")
    for name, p in new._collect_params_with_prefix().items():
        np.testing.assert_array_equal(p.data().asnumpy(), saved[name].asnumpy(), err_msg=name)
