"""sparsify / densify / export of a trained, hybridized network: every fusable pattern gives the
training form's outputs; what cannot be fused stays; a wrong export fails and leaves nothing."""
import json
import os
import re
import subprocess

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import nn
from mxnet.gluon.model_zoo.vision.resnet import BasicBlockV1

from conftest import PY, ROOT
import lcnn_gluon
from lcnn_gluon import chain, export, tree
from lcnn_gluon import nn as lnn

SHAPE = (3, 16, 16)


def patterns_net():
    """One of each pattern that follows a layer, in the orders networks use."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, activation="relu"), nn.BatchNorm(),  # act, then BN: BN stays
            nn.Conv2D(12, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(2),
            nn.Conv2D(12, 3, padding=1), nn.MaxPool2D(2, 1), nn.BatchNorm(),  # pool first: BN stays
            nn.Conv2D(16, 3, padding=1, activation="tanh"),  # not fusable: an Activation after the op
            BasicBlockV1(16, 1, downsample=False, in_channels=16),  # the shortcut
            nn.Conv2D(16, 3, padding=1, activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(16, 3, strides=2, padding=1), nn.Activation("relu"), nn.BatchNorm(),  # BN stays
            nn.Dense(32, activation="relu"), nn.BatchNorm(),  # BN stays
            nn.Dense(24), nn.BatchNorm(), nn.Activation("relu"),
            nn.Dense(10))
    return net


def trained(net, steps=6, seed=0):
    """``net`` converted to LCNN, trained a few steps hybridized (BatchNorm statistics move)."""
    mx.random.seed(seed)
    lcnn_gluon.convert(net, dictionary_size=6, lambda_=0.5, initial_sparsity=0.3)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), lnn.optimizer_for("sgd", [mx.cpu()], 0.9),
                            dict(learning_rate=0.05, momentum=0.9))
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.RandomState(seed)
    for _ in range(steps):
        x = mx.nd.array(rng.standard_normal((8,) + SHAPE) * 2 + 0.5)
        y = mx.nd.array(rng.randint(0, 10, 8))
        with autograd.record():
            out = loss(net(x), y)
        out.backward()
        trainer.step(8)
    return net


def relative_error(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.fixture(scope="module")
def net_and_input(lcnn_ops):
    net = trained(patterns_net())
    variances = [p.data().asnumpy() for p in net.collect_params(".*running_var").values()]
    assert all(np.abs(v - 1).max() > 0.05 for v in variances)  # the statistics really moved
    x = mx.nd.array(np.random.RandomState(5).standard_normal((3,) + SHAPE))
    return net, x, net(x).asnumpy()


def test_sparsify_and_densify_of_a_trained_hybridized_net(net_and_input):
    net, x, reference = net_and_input
    sparse = export.sparsify(net)
    dense = export.densify(net)
    assert relative_error(sparse(x).asnumpy(), reference) <= 1e-4
    assert relative_error(dense(x).asnumpy(), reference) <= 1e-4
    # what was fused and what was not
    kinds = [type(b).__name__ for b in tree.blocks(sparse)]
    # the 10 lookup layers and the plain classifier (D = W, P = I)
    assert kinds.count("SparseLookup") == 11 and kinds.count("SparseResidualBlock") == 1
    assert isinstance(sparse[-1], export.SparseLookup) and sparse[-1].density == pytest.approx(1 / 10)
    assert kinds.count("BatchNorm") == 4  # after an activation or a pooling: kept, not folded
    assert sum(isinstance(b, nn.Activation) and b._act_type == "tanh" for b in tree.blocks(sparse)) == 1
    assert net(x).asnumpy() == pytest.approx(reference)  # the trained network is unchanged


def test_export_of_a_trained_hybridized_net_is_checked(net_and_input, tmp_path):
    net, x, reference = net_and_input
    for kind, convert in (("sparse", export.sparsify), ("dense", export.densify)):
        prefix = str(tmp_path / kind)
        meta = export.export(convert(net), prefix, SHAPE, dict(library="liblcnn_ops.so"), reference=net)
        assert meta["check"] <= 1e-4
        assert relative_error(export.load_exported(prefix)(x).asnumpy(), reference) <= 1e-4
        for graph in (True, False):  # MXNet's executor, on oneDNN's graph and on the plain one
            predictor = export.Predictor(prefix, x.shape, graph=graph)
            first = predictor(x)
            predictor(x * 0).wait_to_read()  # a later call leaves the first output as it was
            assert relative_error(first.asnumpy(), reference) <= 1e-4
            # another dtype is converted as it is copied in
            assert relative_error(predictor(x.astype("float64")).asnumpy(), reference) <= 1e-4
            with pytest.raises(ValueError, match=r"bound for \(3, 3, 16, 16\)"):
                predictor(x[:1])
        one = export.Predictor(prefix)  # the meta JSON's input shape: batch 1
        assert relative_error(one(x[:1]).asnumpy(), reference[:1]) <= 1e-4
        assert sorted(os.listdir(tmp_path)) == sorted(
            f"{k}-{suffix}" for k in ("sparse", "dense")[:1 + (kind == "dense")]
            for suffix in ("symbol.json", "0000.params", "meta.json"))


def test_a_predictor_takes_and_gives_arrays_in_onednn_layout(tmp_path):
    # a network that ends in a convolution gives its output in oneDNN's blocked layout, which
    # MXNet's C API cannot copy from; so does an input that another hybridized network computed
    mx.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
    front = nn.Conv2D(3, 1, in_channels=3)
    for block in (net, front):
        block.initialize(mx.init.Xavier())
        block.hybridize()
    x = mx.nd.random.normal(shape=(2,) + SHAPE)
    computed = front(x)  # oneDNN's layout
    reference = net(x).asnumpy()
    net.export(str(tmp_path / "conv"))
    for graph in (True, False):
        predictor = export.Predictor(str(tmp_path / "conv"), x.shape, graph=graph)
        assert relative_error(predictor(x).asnumpy(), reference) <= 1e-5
        assert relative_error(predictor(computed).asnumpy(), net(mx.nd.array(computed.asnumpy())).asnumpy()) <= 1e-5


def test_a_predictor_binds_quietly_unless_asked(net_and_input, tmp_path):
    net, x, _ = net_and_input
    prefix = str(tmp_path / "dense")
    export.export(export.densify(net), prefix, SHAPE, {})
    # MXNet reads its switch once a process, at the first bind: a fresh process each
    code = f"from lcnn_gluon import export; export.Predictor({prefix!r}, {x.shape})"
    env = {k: v for k, v in os.environ.items() if k != export.SUBGRAPH_VERBOSE}
    for setting, logged in ((None, False), ("1", True)):
        run_env = env if setting is None else dict(env, **{export.SUBGRAPH_VERBOSE: setting})
        # (conftest.run adds to the environment; this run takes a variable out of it)
        done = subprocess.run([PY, "-c", code], env=run_env, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert ("Subgraph backend MKLDNN is activated" in done.stderr) == logged


def test_a_predictor_names_what_it_lacks(net_and_input, tmp_path):
    net, x, _ = net_and_input
    prefix = str(tmp_path / "sparse")
    export.export(export.sparsify(net), prefix, SHAPE, dict(library="liblcnn_ops.so"))
    saved = mx.nd.load(prefix + "-0000.params")
    dropped = sorted(saved)[0]
    mx.nd.save(str(tmp_path / "short-0000.params"), {k: v for k, v in saved.items() if k != dropped})
    os.replace(prefix + "-symbol.json", str(tmp_path / "short-symbol.json"))
    with pytest.raises(ValueError, match="short-0000.params: no values for " + re.escape(dropped.split(":", 1)[1])):
        export.Predictor(str(tmp_path / "short"), x.shape)
    with pytest.raises(ValueError, match=r"short-meta.json: no input_shape"):
        export.Predictor(str(tmp_path / "short"))


def test_a_wrong_export_raises_and_leaves_nothing(net_and_input, tmp_path):
    net, _, _ = net_and_input
    sparse = export.sparsify(net)
    lookup = next(b for b in tree.blocks(sparse) if isinstance(b, export.SparseLookup))
    lookup.coefs.set_data(lookup.coefs.data() * 1.5)  # a packing bug
    with pytest.raises(export.ExportError, match="differs from the training form"):
        export.export(sparse, str(tmp_path / "wrong"), SHAPE, dict(library="x"), reference=net)
    assert os.listdir(tmp_path) == []


def test_a_non_finite_training_form_is_not_exported(lcnn_ops, tmp_path):
    net = trained(patterns_net(), steps=1)
    classifier = list(net._children.values())[-1]
    classifier.bias.set_data(classifier.bias.data() * np.nan)  # a diverged training run
    (tmp_path / "nan-meta.json").write_text("{}")  # an older export of that name is left alone
    with pytest.raises(export.ExportError, match="not finite"):
        export.export(export.densify(net), str(tmp_path / "nan"), SHAPE, {}, reference=net)
    assert os.listdir(tmp_path) == ["nan-meta.json"]


def test_a_gluon_residual_block_in_a_users_net_is_fused(lcnn_ops):
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(16, 3, padding=1, in_channels=3), nn.BatchNorm(), nn.Activation("relu"),
                BasicBlockV1(16, 2, downsample=True, in_channels=16), nn.GlobalAvgPool2D(),
                nn.Dense(10))
    net = trained(net)
    x = mx.nd.array(np.random.RandomState(6).standard_normal((2,) + SHAPE))
    sparse = export.sparsify(net)
    assert sum(isinstance(b, export.SparseResidualBlock) for b in tree.blocks(sparse)) == 1
    assert relative_error(sparse(x).asnumpy(), net(x).asnumpy()) <= 1e-4


class MyResidual(nn.HybridBlock):
    """A user's residual block: ``relu(body(x) + x)``, declared by the export protocol."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential()
            self.body.add(nn.Conv2D(channels, 3, padding=1, in_channels=channels), nn.BatchNorm(),
                          nn.Activation("relu"), nn.Conv2D(channels, 3, padding=1, in_channels=channels),
                          nn.BatchNorm())

    def hybrid_forward(self, F, x):
        return F.relu(self.body(x) + x)

    def lcnn_residual(self):
        return self.body, None


def test_a_residual_block_defined_here_is_exported_by_protocol(lcnn_ops, tmp_path):
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(8, 3, padding=1, in_channels=3), nn.BatchNorm(), nn.Activation("relu"),
                MyResidual(8), MyResidual(8), nn.GlobalAvgPool2D(), nn.Dense(10))
    net = trained(net)
    x = mx.nd.array(np.random.RandomState(7).standard_normal((2,) + SHAPE))
    sparse = export.sparsify(net)
    assert sum(isinstance(b, export.SparseResidualBlock) for b in tree.blocks(sparse)) == 2
    assert relative_error(sparse(x).asnumpy(), net(x).asnumpy()) <= 1e-4
    meta = export.export(sparse, str(tmp_path / "mine"), SHAPE, dict(library="x"), reference=net)
    assert meta["check"] <= 1e-4
    with open(tmp_path / "mine-symbol.json") as f:
        layers = chain.lookup_layers(json.load(f))
    assert sum(layer.get("residual") == "1" for layer in layers) == 2
