"""Lookup layers against independent references: numpy einsum + MXNet's dense convolution."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from lcnn_gluon import nn as lnn

CASES = [  # (m, n, k, kernel, stride, pad, input H=W)
    (6, 8, 4, 1, 1, 0, 9),
    (5, 7, 3, 3, 1, 1, 10),
    (5, 7, 3, 3, 2, 1, 11),
    (4, 6, 5, 5, 2, 2, 13),
    (3, 8, 3, 11, 4, 2, 35),  # AlexNet conv1-like
    (6, 5, 4, 3, 4, 0, 17),
    (8, 16, 6, 6, 1, 0, 6),  # fc6-style: 6x6 kernel on a 6x6 map
]


def reference(x, d, p, bias, eps, stride, pad):
    """Dense convolution with W = einsum(P thresholded, D), and the two-stage form."""
    p = np.where(np.abs(p) > eps, p, 0)
    w = np.einsum("nkrc,km->nmrc", p, d[:, :, 0, 0])
    conv = dict(kernel=w.shape[2:], stride=(stride, stride), pad=(pad, pad), num_filter=w.shape[0])
    dense = mx.nd.Convolution(mx.nd.array(x), mx.nd.array(w), mx.nd.array(bias), **conv)
    s = mx.nd.Convolution(mx.nd.array(x), mx.nd.array(d), kernel=(1, 1), num_filter=d.shape[0],
                          no_bias=True)
    two_stage = mx.nd.Convolution(s, mx.nd.array(p), mx.nd.array(bias), **conv)
    return dense.asnumpy(), two_stage.asnumpy()


@pytest.mark.parametrize("form", lnn.FORMS)
@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("m,n,k,kernel,stride,pad,size", CASES)
def test_conv_equals_dense_and_two_stage_reference(m, n, k, kernel, stride, pad, size, form, hybridize):
    mx.random.seed(1)
    layer = lnn.LookupConv2D(n, kernel, stride, pad, dictionary_size=k, initial_sparsity=0.4)
    layer.initialize()
    layer._set_form(form)
    layer.as_fc = size == kernel and pad == 0  # fc6-style: also run as a fully connected layer
    x = np.random.RandomState(2).randn(2, m, size, size).astype(np.float32)
    layer(mx.nd.array(x))  # deferred shapes
    layer.bias.set_data(mx.nd.array(np.random.RandomState(3).randn(n)))
    if hybridize:
        layer.hybridize()
    y = layer(mx.nd.array(x)).asnumpy()
    dense, two_stage = reference(x, layer.dictionary.data().asnumpy(), layer.lookup.data().asnumpy(),
                                 layer.bias.data().asnumpy(), layer.eps, stride, pad)
    scale = np.abs(dense).max()
    assert np.abs(y - dense).max() <= 1e-5 * scale
    assert np.abs(y - two_stage).max() <= 1e-5 * scale
    assert 0.45 < layer.density() < 0.75  # about 1 - initial_sparsity survive the threshold


def test_dense_layer_equals_fully_connected():
    layer = lnn.LookupDense(7, dictionary_size=3, initial_sparsity=0.3)
    layer.initialize()
    x = mx.nd.random.normal(shape=(4, 2, 3, 5))
    y = layer(x)
    p = layer.lookup.data().asnumpy()
    w = np.where(np.abs(p) > layer.eps, p, 0) @ layer.dictionary.data().asnumpy()
    ref = x.reshape((4, -1)).asnumpy() @ w.T + layer.bias.data().asnumpy()
    np.testing.assert_allclose(y.asnumpy(), ref, rtol=1e-5, atol=1e-5)
    layer._set_form("two_stage")
    np.testing.assert_allclose(layer(x).asnumpy(), ref, rtol=1e-5, atol=1e-5)


def test_threshold_is_per_layer_fan_in():
    layer = lnn.LookupConv2D(8, 5, dictionary_size=30, initial_sparsity=0.01)
    assert layer.eps == pytest.approx(0.01 / np.sqrt(5 * 5 * 30))


def small_net(lambda_):
    net = gluon.nn.HybridSequential()
    net.add(lnn.LookupConv2D(12, 3, padding=1, dictionary_size=5, lambda_=lambda_,
                             initial_sparsity=0.3, use_bias=False),
            gluon.nn.BatchNorm(), gluon.nn.Activation("relu"), gluon.nn.Dense(4))
    net.initialize(mx.init.Xavier())
    return net


@pytest.mark.parametrize("form", lnn.FORMS)
def test_pruned_entries_stay_exactly_zero(form):
    mx.random.seed(0)
    net = small_net(lambda_=2.0)
    layer = lnn.lookup_layers(net)[0]
    layer._set_form(form)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            dict(learning_rate=0.5, momentum=0.9, wd=1e-2))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    x, y = mx.nd.random.normal(shape=(16, 3, 8, 8)), mx.nd.array(np.arange(16) % 4)
    net(x)
    ever_dead = np.zeros(layer.lookup.shape, bool)
    densities = []
    for _ in range(30):
        ever_dead |= np.abs(layer.lookup.data().asnumpy()) <= layer.eps
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        grad = layer.lookup.grad().asnumpy()
        assert np.all(grad[ever_dead] == 0)  # masked gradient
        lnn.add_l1_grad([layer], 16)
        trainer.step(16)
        lnn.prune([layer])
        p = layer.lookup.data().asnumpy()
        assert np.all(p[ever_dead] == 0), "a pruned entry came back"
        assert np.all(layer.effective_lookup().asnumpy()[ever_dead] == 0)
        densities.append(layer.density())
    assert ever_dead.mean() > 0.5 and densities[-1] < densities[0]  # L1 did prune


def test_l1_gradient_is_lambda_eps_sign_after_rescaling():
    net = small_net(lambda_=0.7)
    layer = lnn.lookup_layers(net)[0]
    x = mx.nd.random.normal(shape=(8, 3, 8, 8))
    net(x)
    before = layer.lookup.data().asnumpy().copy()
    live = np.abs(before) > layer.eps
    trainer = gluon.Trainer(net.collect_params(), "sgd", dict(learning_rate=0.1))
    with autograd.record():
        loss = net(x).sum() * 0  # no data gradient: only the L1 term moves P
    loss.backward()
    lnn.add_l1_grad([layer], 8)
    trainer.step(8)  # divides gradients by 8
    after = layer.lookup.data().asnumpy()
    expected = before - 0.1 * 0.7 * layer.eps * np.sign(before)
    np.testing.assert_allclose(after[live], expected[live], rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(after[~live], before[~live])


def test_factory_falls_back_to_dense_when_nothing_saved():
    assert isinstance(lnn.conv2d(16, 3, dictionary_size=8), lnn.LookupConv2D)
    assert isinstance(lnn.conv2d(16, 3, dictionary_size=144), gluon.nn.Conv2D)
    assert isinstance(lnn.conv2d(16, 3), gluon.nn.Conv2D)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="initial_sparsity 1.5"):
        lnn.LookupConv2D(4, 3, dictionary_size=2, initial_sparsity=1.5)
    with pytest.raises(ValueError, match="form 'fast'"):
        lnn.LookupConv2D(4, 3, dictionary_size=2)._set_form("fast")
