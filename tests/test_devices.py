"""Several devices on one machine: CPU contexts take the split / KVStore path of several GPUs."""
import mxnet as mx
import numpy as np
import pytest
from conftest import PY, run
from mxnet import autograd, gluon
from mxnet.gluon import nn
from test_train import train_args

from lcnn_gluon import fit
from lcnn_gluon import nn as lnn
from lcnn_gluon.distributed import Cluster


def small_lcnn():
    net = nn.HybridSequential()
    net.add(lnn.LookupConv2D(8, 3, padding=1, dictionary_size=3, lambda_=0.5, initial_sparsity=0.3,
                             in_channels=2),
            nn.BatchNorm(in_channels=8), nn.Activation("relu"), nn.MaxPool2D(2),
            lnn.LookupDense(16, dictionary_size=4, lambda_=0.5, initial_sparsity=0.3, in_units=128),
            nn.BatchNorm(in_channels=16), nn.Activation("relu"), nn.Dense(4, in_units=16))
    return net


def trainer_for(net, kvstore, ctxs):
    optimizer = lnn.optimizer_for("sgd", ctxs, 0.9)
    assert optimizer == "lookupsgd"
    return Cluster(kvstore).trainer(net.collect_params(), optimizer,
                                    dict(learning_rate=0.2, momentum=0.9, wd=1e-4))


@pytest.mark.parametrize("kvstore", ["device", "local"])
def test_two_cpu_contexts_equal_one_context_fed_the_same_shards(lcnn_ops, kvstore, tmp_path):
    """Each device's BatchNorm sees its own shard; the reference runs both shards through one
    device in one graph (gradients summed), so every trained weight must agree. BatchNorm's
    running statistics differ by design (each device keeps its own) and are not compared."""
    ctxs = [mx.cpu(0), mx.cpu(1)]
    mx.random.seed(0)
    one = small_lcnn()
    one.initialize(mx.init.Xavier(), ctx=mx.cpu(0))
    one.save_parameters(str(tmp_path / "init.params"))
    two = small_lcnn()
    two.load_parameters(str(tmp_path / "init.params"), ctx=ctxs)
    for net in (one, two):
        net.hybridize(static_alloc=True)
    one_trainer, two_trainer = trainer_for(one, kvstore, [mx.cpu(0)]), trainer_for(two, kvstore, ctxs)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.RandomState(1)
    for _ in range(6):
        x = mx.nd.array(rng.standard_normal((8, 2, 8, 8)))
        y = mx.nd.array(rng.randint(0, 4, 8))
        fit.train_step(two, two_trainer, loss, lnn.lookup_layers(two), mx.io.DataBatch([x], [y], pad=0),
                       ctxs, 8)
        with autograd.record():
            losses = [loss(one(x[i:i + 4]), y[i:i + 4]) for i in (0, 4)]
        autograd.backward(losses)
        one_trainer.step(8)
    mx.nd.waitall()
    reference = one._collect_params_with_prefix()
    for name, param in two._collect_params_with_prefix().items():
        if "running" in name:
            continue
        copies = param.list_data()
        assert [c.context for c in copies] == ctxs
        for copy in copies:
            np.testing.assert_allclose(copy.asnumpy(), reference[name].data().asnumpy(), rtol=1e-5,
                                       atol=1e-5, err_msg=f"{name} on {copy.context}")
    for layer in lnn.lookup_layers(two):  # the lookup rule ran on each device's copy
        for p, alive in zip(layer.lookup.list_data(), layer.alive.list_data()):
            dead = alive.asnumpy() == 0
            assert dead.any() and (p.asnumpy()[dead] == 0).all()


def test_cli_trains_on_two_cpu_contexts(mnist_rec, tmp_path):
    out = run(*train_args(mnist_rec, str(tmp_path / "two"), "--cpus", "2", "--kv-store", "device",
                          epochs=1)).stdout
    assert "contexts: [cpu(0), cpu(1)]" in out and "Epoch[0] Validation-accuracy=" in out
    proc = run(*train_args(mnist_rec, str(tmp_path / "x"), "--cpus", "2", "--gpus", "0"), check=False)
    assert proc.returncode == 2 and "not both" in proc.stdout
    proc = run(PY, "-m", "lcnn_gluon.train", *train_args(mnist_rec, str(tmp_path / "x"))[3:],
               "--cpus", "64", check=False)
    assert proc.returncode == 2 and "--batch-size 32 is smaller than the 64 devices" in proc.stdout
