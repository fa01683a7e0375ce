#!/usr/bin/env python3
"""Training step time of each LCNN preset against its dense network, same batch, same run.

Each network goes through what ``python -m lcnn_gluon.train`` does (forms chosen
for the batch, hybridized with static memory, SGD with momentum, L1 and pruning)
on one fixed synthetic batch; the median of the timed steps is reported, with
the ratio to the dense network timed in the same run (interleaved rounds).

    python benchmarks/bench_train.py [--batch-size 32] [--steps 5] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lcnn_gluon  # noqa: E402,F401  (sets OMP_NUM_THREADS before mxnet is imported)
import mxnet as mx  # noqa: E402
from mxnet import gluon  # noqa: E402

from lcnn_gluon import fit, get_model  # noqa: E402
from lcnn_gluon import nn as lnn  # noqa: E402

FAMILIES = {"alexnet": (3, 224, 224), "resnet18": (3, 224, 224), "lenet": (1, 28, 28)}


class Runner:
    """One network ready to take training steps on a fixed batch."""

    def __init__(self, name: str, shape, batch_size: int):
        mx.random.seed(0)
        self.net = get_model(name, classes=1000 if shape[0] == 3 else 10)
        fit.prepare(self.net, shape, batch_size, [mx.cpu()])
        self.forms = {layer.name: layer.form for layer in lnn.lookup_layers(self.net)}
        self.layers = lnn.lookup_layers(self.net)
        optimizer = lnn.optimizer_for("sgd", [mx.cpu()], 0.9) if self.layers else "sgd"
        self.trainer = gluon.Trainer(self.net.collect_params(), optimizer,
                                     dict(learning_rate=0.01, momentum=0.9, wd=1e-4))
        self.batch = mx.io.DataBatch([mx.nd.random.normal(shape=(batch_size,) + shape)],
                                     [mx.nd.array([i % 10 for i in range(batch_size)])], pad=0)
        self.loss, self.batch_size = gluon.loss.SoftmaxCrossEntropyLoss(), batch_size

    def step(self) -> None:
        fit.train_step(self.net, self.trainer, self.loss, self.layers, self.batch, [mx.cpu()],
                       self.batch_size)
        mx.nd.waitall()

    def time(self, steps: int) -> list:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.step()
            times.append(time.perf_counter() - start)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--families", default="alexnet,resnet18")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"batch {args.batch_size}, median of {args.rounds} x {args.steps} steps after 2 warm-up steps")
    print("\n| network | step ms | vs dense | forms chosen |\n| --- | --- | --- | --- |")
    for family in args.families.split(","):
        shape = FAMILIES[family]
        names = [family, f"{family}_lcnn_fast", f"{family}_lcnn_accurate"]
        runners = {n: Runner(n, shape, args.batch_size) for n in names}
        for r in runners.values():
            r.step(), r.step()  # warm-up: graph build, memory planning
        times = {n: [] for n in names}
        for _ in range(args.rounds):  # interleaved: load changes hit every network alike
            for n, r in runners.items():
                times[n] += r.time(args.steps)
        base = statistics.median(times[family])
        for n in names:
            forms = ",".join(sorted(set(runners[n].forms.values()))) or "-"
            med = statistics.median(times[n])
            print(f"| {n} | {med * 1e3:.0f} | {med / base:.2f}x | {forms} |")
        del runners


if __name__ == "__main__":
    main()
