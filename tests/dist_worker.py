"""A worker for the distributed tests, run by tools/launch.py: a few steps of a small
network without BatchNorm (dense or LCNN) through the library's distributed path,
then each worker saves its own parameters as ``OUT/rank{r}.params``.

The single-process reference in the tests calls ``build`` and ``batches`` too.
"""
import argparse
import logging
import os
import sys

import mxnet as mx
from mxnet import gluon

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lcnn_gluon import data, fit  # noqa: E402
from lcnn_gluon import nn as lnn  # noqa: E402
from lcnn_gluon.distributed import Cluster  # noqa: E402

OPTIMIZER = dict(learning_rate=0.1, momentum=0.9, wd=1e-3)


def optimizer(lcnn: bool) -> str:
    """What the training CLI picks: LookupSGD for the lookup layers' rule, on CPU."""
    return lnn.optimizer_for("sgd", [mx.cpu()], OPTIMIZER["momentum"]) if lcnn else "sgd"


def build(lcnn: bool) -> gluon.HybridBlock:
    """conv 5x5/8 - pool - conv 5x5/16 - pool - dense 10, no BatchNorm."""
    mx.random.seed(7)
    k1, k2 = (1, 4) if lcnn else (None, None)
    lookup = dict(lambda_=3.0, initial_sparsity=0.3, use_bias=True)
    net = gluon.nn.HybridSequential()
    net.add(lnn.conv2d(8, 5, dictionary_size=k1, in_channels=1, **lookup),
            gluon.nn.Activation("relu"), gluon.nn.MaxPool2D(2),
            lnn.conv2d(16, 5, dictionary_size=k2, in_channels=8, **lookup),
            gluon.nn.Activation("relu"), gluon.nn.MaxPool2D(2), gluon.nn.Dense(10))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 1, 28, 28)))
    return net


def batches(rec: str, batch_size: int, num_parts: int, part_index: int):
    return data.train_iter(rec, batch_size, "mnist", num_parts=num_parts, part_index=part_index, seed=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--kv-store", default="dist_sync")
    parser.add_argument("--lcnn", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    cluster = Cluster.create(argparse.Namespace(kv_store=args.kv_store, gc_type="none", gc_threshold=0))
    net = build(args.lcnn)
    trainer = cluster.trainer(net.collect_params(), optimizer(args.lcnn), dict(OPTIMIZER))
    cluster.start(trainer, args.batch_size)
    loss_fn, layers = gluon.loss.SoftmaxCrossEntropyLoss(), lnn.lookup_layers(net)
    it = batches(args.rec, args.batch_size, cluster.num_workers, cluster.rank)
    for _, batch in zip(range(args.steps), it):
        fit.train_step(net, trainer, loss_fn, layers, batch, [mx.cpu()], cluster.step_size(args.batch_size))
    net.save_parameters(os.path.join(args.out, f"rank{cluster.rank}.params"))
    cluster.close()


if __name__ == "__main__":
    main()
