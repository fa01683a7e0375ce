#!/usr/bin/env python3
"""Accuracy and counted speedup of dense LeNet, lenet_lcnn_fast and lenet_lcnn_accurate on
the 5,000-digit MNIST sample (4,000 train / 1,000 test), trained by ``python -m
lcnn_gluon.train`` with the documented recipe: 30 epochs, batch 64, SGD lr 0.1 with
momentum 0.9, weight decay 1e-4, lr x0.1 at epochs 20 and 25, seed 0.

Then, from the trained dense LeNet (``--init-from``, issue 14), lenet_lcnn_fast fine-tuned for
10 epochs (lr 0.02, x0.1 at epochs 6 and 8) at each initial density of P: the accuracy right
after the initialisation (BatchNorm statistics re-estimated, no weight trained) and after
fine-tuning. Goals: >= dense - 5 points at the start; within 0.5 point of dense at >= 10x
counted after at most 10 epochs.

    python benchmarks/bench_accuracy.py [--epochs 30] [--init-densities 0.25,0.15,0.1]
"""
from __future__ import annotations

import argparse
import json
import os
import re
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


FINE_TUNE = dict(epochs=10, lr=0.02, steps="6,8")  # from a trained dense network: a third of the epochs


def train(network: str, prefix: str, folder: str, epochs: int, lr: float = 0.1, steps: str = "",
          tag: str = "", *extra: str) -> dict:
    steps = steps or f"{epochs * 2 // 3},{epochs * 5 // 6}"
    model = os.path.join(folder, network + tag)
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "lcnn_gluon.train", "--network", network, "--dataset", "mnist",
                          "--data-train", prefix + "_train.rec", "--data-val", prefix + "_val.rec",
                          "--batch-size", "64", "--num-epochs", str(epochs), "--lr", str(lr), "--lr-step-epochs",
                          steps, "--disp-batches", "0", "--model-prefix", model, *extra],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    with open(f"{model}-{epochs:04d}.json") as f:
        meta = json.load(f)
    start_accuracy = re.search(r"initialised from .*: Validation-accuracy=([0-9.]+)", out)
    start_speedup = re.search(r"initialised from .*: counted speedup=([0-9.]+)", out)
    return dict(accuracy=meta["validation"]["accuracy"], speedup=meta["speedup"],
                densities=meta["densities"], minutes=(time.time() - start) / 60,
                start_accuracy=float(start_accuracy.group(1)) if start_accuracy else None,
                start_speedup=float(start_speedup.group(1)) if start_speedup else None)


def from_dense(prefix: str, folder: str, epochs: int, densities: list, dense: float) -> None:
    """lenet_lcnn_fast started from the dense LeNet of this run, one row per initial density."""
    params = os.path.join(folder, f"lenet-{epochs:04d}.params")
    print(f"\nfrom {os.path.basename(params)} (dense {dense:.4f}): lenet_lcnn_fast, {FINE_TUNE['epochs']} "
          f"epochs, lr {FINE_TUNE['lr']} (x0.1 at {FINE_TUNE['steps']})\n")
    print("| initial density | start accuracy | start speedup | final accuracy | vs dense (points) | "
          "counted speedup | goals (start >= dense-5; final >= dense-0.5 at >= 10x) |\n" + "| --- " * 7 + "|")
    for d in densities:
        r = train("lenet_lcnn_fast", prefix, folder, FINE_TUNE["epochs"], FINE_TUNE["lr"], FINE_TUNE["steps"],
                  f"-from-{d:g}", "--init-from", params, "--init-density", str(d))
        start_ok = r["start_accuracy"] >= dense - 0.05
        final_ok = r["accuracy"] >= dense - 0.005 and r["speedup"] >= 10
        print(f"| {d:g} | {r['start_accuracy']:.4f} | {r['start_speedup']:.2f}x | {r['accuracy']:.4f} | "
              f"{100 * (r['accuracy'] - dense):+.1f} | {r['speedup']:.2f}x | "
              f"{'met' if start_ok else 'NOT met'}; {'met' if final_ok else 'NOT met'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--init-densities", default="0.25,0.15,0.1",
                        help="initial densities of P when starting from the dense LeNet ('' for none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        prefix = prepare(folder)
        results = {n: train(n, prefix, folder, args.epochs) for n in NETWORKS}
        report(results, args.epochs)
        densities = [float(d) for d in args.init_densities.split(",") if d]
        if densities:
            from_dense(prefix, folder, args.epochs, densities, results["lenet"]["accuracy"])


def report(results: dict, epochs: int) -> None:
    args = argparse.Namespace(epochs=epochs)
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
