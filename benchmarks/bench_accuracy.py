#!/usr/bin/env python3
"""Accuracy and counted speedup of dense LeNet, lenet_lcnn_fast and lenet_lcnn_accurate on
the 5,000-digit MNIST sample (4,000 train / 1,000 test), trained by ``python -m
lcnn_gluon.train`` with the documented recipe: 30 epochs, batch 64, SGD lr 0.1 with
momentum 0.9, weight decay 1e-4, lr x0.1 at epochs 20 and 25, seed 0.

    python benchmarks/bench_accuracy.py [--epochs 30]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORKS = ["lenet", "lenet_lcnn_fast", "lenet_lcnn_accurate"]


def prepare(folder: str) -> str:
    """Write the sample and pack it; return the record prefix."""
    sample, prefix = os.path.join(folder, "sample"), os.path.join(folder, "mnist")
    subprocess.run([sys.executable, os.path.join(ROOT, "data", "prepare_mnist_sample.py"), "--out", sample],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "im2rec.py"), "--mnist", prefix, sample],
                   check=True, capture_output=True)
    return prefix


def train(network: str, prefix: str, folder: str, epochs: int) -> dict:
    steps = f"{epochs * 2 // 3},{epochs * 5 // 6}"
    start = time.time()
    subprocess.run([sys.executable, "-m", "lcnn_gluon.train", "--network", network, "--dataset", "mnist",
                    "--data-train", prefix + "_train.rec", "--data-val", prefix + "_val.rec",
                    "--batch-size", "64", "--num-epochs", str(epochs), "--lr", "0.1", "--lr-step-epochs",
                    steps, "--disp-batches", "0", "--model-prefix", os.path.join(folder, network)],
                   check=True, capture_output=True, cwd=ROOT)
    with open(os.path.join(folder, f"{network}-{epochs:04d}.json")) as f:
        meta = json.load(f)
    return dict(accuracy=meta["validation"]["accuracy"], speedup=meta["speedup"],
                densities=meta["densities"], minutes=(time.time() - start) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        prefix = prepare(folder)
        results = {n: train(n, prefix, folder, args.epochs) for n in NETWORKS}
    print(f"machine: {os.cpu_count()} cores; {args.epochs} epochs, batch 64, lr 0.1 (x0.1 at "
          f"{args.epochs * 2 // 3} and {args.epochs * 5 // 6}), seed 0\n")
    print("| network | test accuracy | vs dense (points) | counted speedup | P densities | train minutes |\n"
          "| --- | --- | --- | --- | --- | --- |")
    dense = results["lenet"]["accuracy"]
    for name, r in results.items():
        densities = " ".join(f"{d:.3f}" for d in r["densities"].values()) or "-"
        print(f"| {name} | {r['accuracy']:.4f} | {100 * (r['accuracy'] - dense):+.1f} | "
              f"{r['speedup']:.1f}x | {densities} | {r['minutes']:.1f} |")


if __name__ == "__main__":
    main()
