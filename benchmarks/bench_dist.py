#!/usr/bin/env python3
"""Distributed training overhead on one machine: samples/s of one local process against
2 workers + 2 servers with ``dist_sync`` on 127.0.0.1, and the time per step spent in
the KVStore (gradient push and pull), all in one run.

On a 2-core machine the workers share the cores, so this measures the overhead of
the KVStore path, not scaling. Each worker runs one OpenMP thread.

    python benchmarks/bench_dist.py [--steps 60] [--network lenet]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def work(args) -> None:
    """One training process: time compute and KVStore exchange separately, print a summary."""
    import mxnet as mx
    from mxnet import gluon

    from lcnn_gluon import data, fit, get_model
    from lcnn_gluon import nn as lnn
    from lcnn_gluon.distributed import Cluster

    cluster = Cluster.create(argparse.Namespace(kv_store=args.kv_store, gc_type="none", gc_threshold=0))
    mx.random.seed(0)
    net = get_model(args.network, classes=10)
    fit.prepare(net, (1, 28, 28), args.batch_size, [mx.cpu()])
    optimizer = lnn.optimizer_for("sgd", [mx.cpu()], 0.9, cluster.update_on_kvstore)
    trainer = cluster.trainer(net.collect_params(), optimizer, dict(learning_rate=0.05, momentum=0.9))
    cluster.start(trainer, args.batch_size)
    it = data.train_iter(args.rec, args.batch_size, "mnist", num_parts=cluster.num_workers,
                         part_index=cluster.rank, num_batches=args.steps + 5)
    loss_fn, compute, exchange = gluon.loss.SoftmaxCrossEntropyLoss(), [], []
    for i, batch in enumerate(it):
        start = time.perf_counter()
        fit.forward_backward(net, loss_fn, batch, [mx.cpu()])
        mx.nd.waitall()
        middle = time.perf_counter()
        trainer.allreduce_grads()
        mx.nd.waitall()
        end = time.perf_counter()
        trainer.update(cluster.step_size(args.batch_size))
        mx.nd.waitall()
        if i >= 5:  # warm-up steps excluded
            compute.append(middle - start), exchange.append(end - middle)
    total = sum(compute) + sum(exchange)
    print(f"RESULT rank={cluster.rank} samples_per_s={len(compute) * args.batch_size / total:.1f} "
          f"compute_ms={statistics.median(compute) * 1e3:.2f} kvstore_ms={statistics.median(exchange) * 1e3:.2f}",
          flush=True)
    cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64, help="per worker")
    parser.add_argument("--network", default="lenet")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kv-store", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--rec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return work(args)
    with tempfile.TemporaryDirectory() as folder:
        sample, prefix = os.path.join(folder, "sample"), os.path.join(folder, "mnist")
        subprocess.run([sys.executable, os.path.join(ROOT, "data", "prepare_mnist_sample.py"), "--out", sample],
                       check=True, capture_output=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "im2rec.py"), "--mnist", prefix, sample],
                       check=True, capture_output=True)
        me = [sys.executable, os.path.abspath(__file__), "--worker", "--rec", prefix + "_train.rec",
              "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--network", args.network]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        local = subprocess.run(me, capture_output=True, text=True, env=env, check=True).stdout
        dist = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "launch.py"), "-n", "2", "-s", "2",
                               "--env", "OMP_NUM_THREADS=1"] + me + ["--kv-store", "dist_sync"],
                              capture_output=True, text=True, env=env, check=True).stdout
    pattern = r"RESULT rank=(\d) samples_per_s=([\d.]+) compute_ms=([\d.]+) kvstore_ms=([\d.]+)"
    one = re.findall(pattern, local)[0]
    workers = re.findall(pattern, dist)
    total = sum(float(w[1]) for w in workers)
    print(f"machine: {os.cpu_count()} cores; {args.network}, batch {args.batch_size} per worker, "
          f"{args.steps} timed steps, 1 OpenMP thread per process; 2 workers + 2 servers share the cores\n")
    print("| setup | samples/s | compute ms/step | KVStore ms/step |\n| --- | --- | --- | --- |")
    print(f"| 1 process, no KVStore | {float(one[1]):.0f} | {float(one[2]):.2f} | {float(one[3]):.2f} |")
    for w in sorted(workers):
        print(f"| dist_sync worker rank {w[0]} | {float(w[1]):.0f} | {float(w[2]):.2f} | {float(w[3]):.2f} |")
    print(f"| dist_sync, both workers | {total:.0f} ({total / float(one[1]):.2f}x of one process) | | |")


if __name__ == "__main__":
    main()
