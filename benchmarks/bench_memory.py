#!/usr/bin/env python3
"""Peak memory of training: each network in its own process, prepared as the training command
prepares it (``fit.prepare``), a few steps of ``fit.train_step`` with the optimizer the command
picks, on one synthetic batch; the peak resident set size of the process (``ru_maxrss``) and
the bytes held by parameters, by kind.

    python benchmarks/bench_memory.py [--networks alexnet,alexnet_lcnn_fast] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def measure(name: str, batch_size: int, steps: int) -> dict:
    """In this process: train ``name`` for ``steps`` steps; peak RSS and parameter bytes."""
    sys.path.insert(0, ROOT)
    import lcnn_gluon  # noqa: F401  (threads before mxnet)
    import mxnet as mx
    from mxnet import gluon

    from lcnn_gluon import fit, get_model
    from lcnn_gluon import nn as lnn

    shape = (1, 28, 28) if name.startswith("lenet") else (3, 224, 224)
    net = get_model(name, classes=1000 if shape[0] == 3 else 10)
    fit.prepare(net, shape, batch_size, [mx.cpu()])
    layers = lnn.lookup_layers(net)
    trainer = gluon.Trainer(net.collect_params(), lnn.optimizer_for("sgd", [mx.cpu()], 0.9) if layers
                            else "sgd", dict(learning_rate=0.01, momentum=0.9, wd=1e-4))
    batch = mx.io.DataBatch([mx.nd.random.normal(shape=(batch_size,) + shape)],
                            [mx.nd.array([i % 10 for i in range(batch_size)])], pad=0)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        fit.train_step(net, trainer, loss, layers, batch, [mx.cpu()], batch_size)
        mx.nd.waitall()
    kinds = {}
    for pname, p in net.collect_params().items():
        kind = pname.rsplit("_", 1)[-1] if layers else "dense"
        kinds[kind] = kinds.get(kind, 0) + p.data().size * p.data().dtype(0).itemsize
    return dict(peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                alive_gb=kinds.get("alive", 0) / 2 ** 30, lookup_gb=kinds.get("lookup", 0) / 2 ** 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="alexnet,alexnet_lcnn_fast,alexnet_lcnn_accurate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one network here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch_size, args.steps)))
        return
    print(f"machine: {os.cpu_count()} cores; batch {args.batch_size}; {args.steps} training steps; "
          "peak resident set size of a fresh process per network")
    print("\n| network | peak RSS GB | P GB | kept-mask GB |\n| --- | --- | --- | --- |")
    for name in args.networks.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", name, "--batch-size", str(args.batch_size),
                              "--steps", str(args.steps)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {name} | {r['peak_gb']:.2f} | {r['lookup_gb']:.2f} | {r['alive_gb']:.2f} |")


if __name__ == "__main__":
    main()
