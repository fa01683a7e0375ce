"""The lookup layers' C++ training kernels (threshold, L1, prune, fused SGD) against the
MXNet-operator form of the same rule, and their errors."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from lcnn_gluon import fit
from lcnn_gluon import nn as lnn
from lcnn_gluon.lookup import rule

OPT = dict(learning_rate=0.2, momentum=0.9, wd=1e-2)


def train(form: str, kernels: bool, optimizer: str, monkeypatch, steps: int = 12):
    """A small LCNN trained ``steps`` steps; returns every parameter as numpy."""
    monkeypatch.setattr(rule, "USE_KERNELS", kernels)
    mx.random.seed(3)
    net = gluon.nn.HybridSequential()
    net.add(lnn.LookupConv2D(12, 3, padding=1, dictionary_size=5, lambda_=1.0, initial_sparsity=0.3,
                             use_bias=False, in_channels=3),
            gluon.nn.BatchNorm(), gluon.nn.Activation("relu"),
            lnn.LookupDense(6, dictionary_size=4, lambda_=0.2, initial_sparsity=0.3), gluon.nn.Dense(4))
    net.initialize(mx.init.Xavier())
    for layer in lnn.lookup_layers(net):
        layer._set_form(form)
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), optimizer, dict(OPT))
    assert lnn.updates_lookups(trainer) == (optimizer == "lookupsgd")
    rng = np.random.RandomState(0)
    batch = mx.io.DataBatch([mx.nd.array(rng.normal(size=(16, 3, 8, 8)))],
                            [mx.nd.array(np.arange(16) % 4)], pad=0)
    for _ in range(steps):
        fit.train_step(net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(), lnn.lookup_layers(net),
                       batch, [mx.cpu()], 16)
    return {name.split("_", 1)[1]: p.data().asnumpy() for name, p in net.collect_params().items()}


@pytest.mark.parametrize("form", lnn.FORMS)
def test_kernels_train_like_mxnet_operators(lcnn_ops, form, monkeypatch):
    reference = train(form, False, "sgd", monkeypatch)
    for kernels, optimizer in ((True, "sgd"), (True, "lookupsgd")):
        got = train(form, kernels, optimizer, monkeypatch)
        assert got.keys() == reference.keys()
        for name, want in reference.items():
            if name.endswith("alive"):  # an entry within rounding of eps may go either way
                assert np.mean(got[name] != want) < 1e-3, (optimizer, name)
                assert 0.05 < want.mean() < 0.95, (name, want.mean())  # L1 pruned some
            else:
                np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5,
                                           err_msg=f"{optimizer} {name}")


def test_lookup_sgd_keeps_pruned_entries_at_zero(lcnn_ops):
    mx.random.seed(0)
    layer = lnn.LookupConv2D(8, 3, padding=1, dictionary_size=4, lambda_=5.0, initial_sparsity=0.3,
                             in_channels=3)
    layer.initialize()
    trainer = gluon.Trainer(layer.collect_params(), "lookupsgd", dict(OPT))
    x = mx.nd.random.normal(shape=(4, 3, 6, 6))
    ever_dead = np.zeros(layer.lookup.shape, bool)
    for _ in range(20):
        ever_dead |= layer.alive.data().asnumpy() == 0
        with autograd.record():
            loss = (layer(x) ** 2).mean()
        loss.backward()
        assert np.all(layer.lookup.grad().asnumpy()[ever_dead] == 0)  # masked gradient
        trainer.step(4)
        assert np.all(layer.lookup.data().asnumpy()[ever_dead] == 0), "a pruned entry came back"
    assert ever_dead.mean() > 0.3


def test_lookup_sgd_l1_step_is_lambda_eps_sign(lcnn_ops):
    mx.random.seed(1)
    layer = lnn.LookupDense(6, dictionary_size=4, lambda_=0.7, initial_sparsity=0.2, in_units=5)
    layer.initialize()
    x = mx.nd.random.normal(shape=(8, 5))
    layer(x)
    mx.nd.lcnn_lookup_prune(layer.lookup.data(), layer.alive.data(), eps=layer.eps,
                            out=layer.lookup.data())
    before = layer.lookup.data().asnumpy().copy()
    trainer = gluon.Trainer(layer.collect_params(), "lookupsgd", dict(learning_rate=0.1, momentum=0.9))
    with autograd.record():
        loss = layer(x).sum() * 0  # only the L1 term moves P
    loss.backward()
    trainer.step(8)
    expected = before - 0.1 * 0.7 * layer.eps * np.sign(before)
    expected[np.abs(expected) <= layer.eps] = 0  # pruned in the same step
    np.testing.assert_allclose(layer.lookup.data().asnumpy(), expected, rtol=1e-5, atol=1e-8)


def test_lookup_sgd_needs_momentum():
    with pytest.raises(ValueError, match="momentum > 0"):
        mx.optimizer.create("lookupsgd", momentum=0.0)


@pytest.mark.parametrize("call, message", [
    (lambda p, a: mx.nd.lcnn_lookup_threshold(p, a[:2], eps=0.1), "must have the same shape"),
    (lambda p, a: mx.nd.lcnn_lookup_threshold(p, a), "missing attribute 'eps'"),
    (lambda p, a: mx.nd.lcnn_lookup_l1(p, p, eps=-1, strength=1), "eps='-1' is not a finite number >= 0"),
    (lambda p, a: mx.nd.lcnn_lookup_prune(p.astype("float64"), a, eps=0.1), "must be float32"),
    (lambda p, a: mx.nd.lcnn_lookup_prune(p, a.astype("float32"), eps=0.1), r"must be uint8 \(the kept-mask\)"),
    (lambda p, a: mx.nd.lcnn_lookup_sgd(p, p, p, a[:2], lr=0.1, wd=0, momentum=0.9, rescale_grad=1,
                                        eps=0.1, l1=0), "must have the same shape"),
    (lambda p, a: mx.nd.lcnn_lookup_sgd(p, p, p, a, lr="x", wd=0, momentum=0.9, rescale_grad=1,
                                        eps=0.1, l1=0), "lr='x' is not a finite number"),
])
def test_kernel_errors_are_mxnet_errors(lcnn_ops, call, message):
    p, a = mx.nd.ones((4, 3)), mx.nd.ones((4, 3), dtype="uint8")
    with pytest.raises(mx.base.MXNetError, match=message):
        call(p, a).wait_to_read()
    assert float(mx.nd.lcnn_lookup_threshold(p, a, eps=0.5).sum().asscalar()) == 12  # still alive
