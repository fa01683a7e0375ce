"""Starting lookup layers from trained dense weights: P x D ~ W, every other parameter copied."""
import gluoncv
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import lcnn_gluon
from lcnn_gluon import conversion
from lcnn_gluon import nn as lnn
from lcnn_gluon.lookup.factorize import factorize


def test_an_exactly_factorable_weight_is_recovered():
    rng = np.random.RandomState(0)
    d = rng.standard_normal((8, 20))
    p = rng.standard_normal((50, 8, 5, 5)) * (rng.random_sample((50, 8, 5, 5)) < 0.3)
    w = np.einsum("nkrc,km->nmrc", p, d).astype(np.float32)
    f = factorize(w, 8, 1e-4, density=1.0)
    assert f.relative_error < 1e-4
    assert np.allclose(np.einsum("nkrc,km->nmrc", f.lookup, f.dictionary), w, atol=1e-4)


def test_density_and_threshold_are_respected():
    w = np.random.RandomState(1).standard_normal((40, 16, 3, 3)).astype(np.float32)
    f = factorize(w, 12, eps=0.05, density=0.25)
    assert f.lookup.shape == (40, 12, 3, 3) and f.dictionary.shape == (12, 16)
    assert f.density <= 0.25 + 1e-9
    live = f.lookup[f.lookup != 0]
    assert np.all(np.abs(live) > 0.05)  # nothing at or below eps (it would be dead under the rule)
    assert 0 < f.relative_error < 1


def trained_dense(name, shape, classes=10, steps=3):
    mx.random.seed(0)
    net = lcnn_gluon.get_model(name, classes=classes)
    net.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", dict(learning_rate=0.05, momentum=0.9))
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.RandomState(0)
    for _ in range(steps):  # BatchNorm statistics and weights away from their initial values
        x = mx.nd.array(rng.standard_normal((8,) + shape))
        with autograd.record():
            out = loss(net(x), mx.nd.array(rng.randint(0, classes, 8)))
        out.backward()
        trainer.step(8)
    return net


def test_a_zoo_lcnn_starts_from_its_dense_network():
    shape = (1, 28, 28)
    dense = trained_dense("lenet", shape)
    # dictionaries as wide as the input and every atom kept: P x D is W, the outputs equal
    lcnn = lcnn_gluon.get_model("lenet_lcnn_fast", classes=10, dictionary_sizes=(1, 20, 50), initial_sparsity=0.0)
    lcnn.initialize()
    report = conversion.initialize_from_dense(lcnn, dense, density=1.0)
    assert len(report.initialised) == 3 and all(f.relative_error < 1e-4 for f in report.initialised.values())
    x = mx.nd.random.normal(shape=(4,) + shape)
    want, got = dense(x).asnumpy(), lcnn(x).asnumpy()
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    # the preset's small dictionaries: an approximation, sparse as asked
    fast = lcnn_gluon.get_model("lenet_lcnn_fast", classes=10)
    fast.initialize()
    report = conversion.initialize_from_dense(fast, dense, density=0.25)
    assert all(f.density <= 0.25 + 1e-9 for f in report.initialised.values())
    other = lcnn_gluon.get_model("alexnet_lcnn_fast", classes=10)
    other.initialize()
    with pytest.raises(ValueError, match="does not fit a lookup layer|the dense network has"):
        conversion.initialize_from_dense(other, dense)


@pytest.mark.parametrize("name,size", [("alexnet", 224), ("resnet18_v1", 64), ("mobilenet1.0", 64)])
def test_gluoncv_models_convert_from_their_weights(name, size):
    mx.random.seed(0)
    net = gluoncv.model_zoo.get_model(name, pretrained=False, classes=10)
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(shape=(2, 3, size, size))
    want = net(x).asnumpy()
    params = {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items()}
    report = lcnn_gluon.convert(net, dictionary_size=lambda b: 16, from_weights=True, density=0.5)
    assert report.converted and len(report.initialised) == len(report.converted)
    assert all(0 <= f.relative_error < 1 and f.density <= 0.5 for f in report.initialised.values())
    kept = {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items() if n in params}
    assert kept and all(np.array_equal(v, params[n]) for n, v in kept.items())  # the rest is untouched
    got = net(x).asnumpy()
    assert got.shape == want.shape and np.isfinite(got).all()
    assert len(lnn.lookup_layers(net)) == len(report.converted)


def test_cli_starts_an_lcnn_from_a_dense_checkpoint(mnist_rec, tmp_path):
    from conftest import run
    from test_train import train_args
    dense = str(tmp_path / "dense")
    run(*train_args(mnist_rec, dense, network="lenet", epochs=1))
    out = run(*train_args(mnist_rec, str(tmp_path / "fast"), "--init-from", dense + "-0001.params",
                          "--init-density", "0.2", "--init-bn-batches", "5", epochs=1)).stdout
    assert "from its dense weight: relative error" in out
    assert "BatchNorm statistics re-estimated on 5 training batches" in out
    assert "Validation-accuracy=" in out.split("initialised from")[1] and "counted speedup=" in out
    proc = run(*train_args(mnist_rec, str(tmp_path / "x"), "--init-from", dense + "-0001.params",
                           "--init-network", "alexnet", epochs=1), check=False)
    assert proc.returncode == 2 and "holds network 'lenet', not 'alexnet'" in proc.stdout
    proc = run(*train_args(mnist_rec, str(tmp_path / "y"), "--init-from", dense + "-0001.params",
                           "--load-epoch", "1", epochs=1), check=False)
    assert proc.returncode == 2 and "give one of them" in proc.stdout


def test_the_density_cut_is_exact_and_wide_layers_get_their_leading_directions():
    from lcnn_gluon.lookup.factorize import EXACT_SVD_MAX, _cut
    rng = np.random.RandomState(0)
    for shape in [(7, 3, 5), (100, 50, 1), (3, 4, 2)]:
        p = rng.standard_normal(shape).astype(np.float32)
        for keep in (1, 2, p.size // 3, p.size):
            assert _cut(p, keep) == np.sort(np.abs(p).ravel())[::-1][keep - 1]
    m = EXACT_SVD_MAX + 500  # the randomized range finder: as good as the best rank-k basis
    w = (rng.standard_normal((300, m)) / np.sqrt(np.arange(1, m + 1))).astype(np.float32)
    f = factorize(w, 64, eps=0.0, density=1.0, iterations=1)
    s = np.linalg.svd(w, compute_uv=False)
    assert f.relative_error <= 1.02 * np.sqrt((s[64:] ** 2).sum() / (s ** 2).sum())


@pytest.mark.parametrize("name,size", [("resnet18_lcnn_accurate", 32), ("resnet18_lcnn_fast", 32),
                                       ("alexnet_lcnn_fast", 224)])
def test_every_zoo_family_starts_from_its_dense_network(name, size):
    mx.random.seed(0)
    x = mx.nd.random.normal(shape=(2, 3, size, size))
    dense = lcnn_gluon.get_model(name.split("_")[0], classes=10)
    dense.initialize(mx.init.Xavier())
    dense(x)
    rng = np.random.RandomState(0)
    for pname, p in dense.collect_params(".*running_(mean|var)").items():  # statistics of a trained net
        p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
    lcnn = lcnn_gluon.get_model(name, classes=10)
    lcnn.initialize()
    lcnn(x)
    report = conversion.initialize_from_dense(lcnn, dense, density=1.0)
    assert len(report.initialised) == len(lnn.lookup_layers(lcnn))
    assert all(f.relative_error < 1 for f in report.initialised.values())
    theirs = dense._collect_params_with_prefix()
    lookup = {id(p) for b in lnn.lookup_layers(lcnn) for p in b.params.values()}
    copied = {n: p for n, p in lcnn._collect_params_with_prefix().items() if id(p) not in lookup}
    assert copied and all(np.array_equal(p.data().asnumpy(), theirs[n].data().asnumpy()) for n, p in copied.items())
    if name == "resnet18_lcnn_accurate":  # dictionaries as wide as the inputs: the same network
        assert all(f.relative_error < 1e-3 for f in report.initialised.values())
        with mx.autograd.predict_mode():
            want, got = dense(x).asnumpy(), lcnn(x).asnumpy()
        assert np.abs(got - want).max() <= 1e-2 * np.abs(want).max()


@pytest.mark.parametrize("extra,message", [
    (["--init-from", "nowhere-0030.params"], "--init-from nowhere-0030.params: no such file"),
    (["--init-from", "README.md", "--init-network", "vgg16"], "--init-network 'vgg16': unknown"),
    (["--init-from", "README.md", "--init-density", "0"], "--init-density 0.0: must be in (0, 1]"),
])
def test_init_flags_are_checked_before_anything_runs(mnist_rec, tmp_path, extra, message):
    from conftest import run
    from test_train import train_args
    proc = run(*train_args(mnist_rec, str(tmp_path / "p"), *extra, epochs=1), check=False)
    assert proc.returncode == 2 and message in proc.stdout
    assert not list(tmp_path.iterdir())


def test_convert_starts_from_the_weights_a_network_holds():
    def net(initialised):
        mx.random.seed(0)
        block = gluon.nn.HybridSequential()
        block.add(gluon.nn.Conv2D(16, 3, in_channels=8), gluon.nn.Dense(10, in_units=16 * 6 * 6))
        if initialised:
            block.initialize(mx.init.Xavier())
        return block
    trained = net(True)
    report = lcnn_gluon.convert(trained, dictionary_size=4)  # default: from the weights it holds
    assert list(report.initialised) == [name for name, _ in report.converted]
    assert lnn.lookup_layers(trained)[0].lookup.data().shape == (16, 4, 3, 3)
    fresh = net(False)
    assert not lcnn_gluon.convert(fresh, dictionary_size=4).initialised
    assert not lcnn_gluon.convert(net(True), dictionary_size=4, from_weights=False).initialised
    with pytest.raises(ValueError, match="has no trained weight"):
        lcnn_gluon.convert(net(False), dictionary_size=4, from_weights=True)
