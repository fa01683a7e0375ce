#!/usr/bin/env python3
"""Data path speed: our packer vs MXNet's im2rec.py, our reader vs a bare ImageRecordIter.

All in one run on the same generated JPEGs (ImageNet-like, 300-500 px), so the
ratios hold on a shared, noisy machine. Packing is timed two ways:

* whole command: wall time of ``python .../im2rec.py ...`` (what a user waits);
* steady state: the tool's ``__main__`` run inside a Python that has already
  imported its heavy modules, so interpreter start and imports are excluded
  (MXNet's tool pays about 2 s for ``import mxnet``, ours does not import it).

The reader is timed over several epochs against a bare ``ImageRecordIter`` with
the same augmentation: the strongest configuration (``ctx='cpu'``, all cores,
``round_batch=False``) and MXNet's defaults. The image count divides the batch
size so that the defaults are not penalised by their wrap-around.

    python benchmarks/bench_data.py [--images 1024] [--repeat 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
import lcnn_gluon  # noqa: E402,F401  (sets OMP_NUM_THREADS before mxnet is imported)
import mxnet as mx  # noqa: E402

from lcnn_gluon import data  # noqa: E402

OURS = os.path.join(ROOT, "tools", "im2rec.py")
THEIRS = os.path.join(os.path.dirname(mx.__file__), "tools", "im2rec.py")
# runs a tool's __main__ after its imports, timing only the packing
STEADY = """
import runpy, sys, time, io, contextlib
{imports}
sys.argv = {argv!r}
t = time.perf_counter()
try:
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_path({tool!r}, run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print(time.perf_counter() - t)
"""


def make_images(root: str, n: int, seed: int = 0) -> None:
    """n JPEGs (q90) of random size 300-500 px with multi-scale texture, in 4 classes."""
    rng = np.random.RandomState(seed)
    for i in range(n):
        folder = os.path.join(root, f"class{i % 4}")
        os.makedirs(folder, exist_ok=True)
        h, w = rng.randint(300, 501, size=2)
        img = np.zeros((h, w, 3), np.float32)
        for s in (4, 16, 64):  # roughly 1/f spectrum: JPEG sizes like photographs
            small = rng.rand(max(2, h // s), max(2, w // s), 3).astype(np.float32)
            img += cv2.resize(small, (int(w), int(h)), interpolation=cv2.INTER_CUBIC) * (s / 64.0)
        img = (img / img.max() * 255).clip(0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def time_pack(tool: str, prefix: str, root: str, workers: int, steady: bool) -> float:
    argv = [tool, "--resize", "256", "--quality", "95", "--num-thread", str(workers), prefix, root]
    if steady:
        imports = ("import mxnet" if tool == THEIRS else
                   f"sys.path.insert(0, {ROOT!r}); import lcnn_gluon.pack")
        code = STEADY.format(imports=imports, argv=argv, tool=tool)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    start = time.perf_counter()
    subprocess.run([sys.executable] + argv, capture_output=True, check=True)
    return time.perf_counter() - start


def bench_pack(work: str, root: str, n: int, workers: int, repeat: int) -> dict:
    lst = os.path.join(work, "list.lst")
    subprocess.run([sys.executable, OURS, "--list", "--recursive", lst[:-4], root],
                   capture_output=True, check=True)
    results = {}
    for steady in (False, True):
        for name, tool in (("ours", OURS), ("mxnet", THEIRS)):
            prefix = os.path.join(work, name, "imgs")
            os.makedirs(os.path.dirname(prefix), exist_ok=True)
            shutil.copy(lst, prefix + ".lst")
            results[(name, steady)] = []
        for _ in range(repeat):  # interleaved, so load changes hit both alike
            for name, tool in (("ours", OURS), ("mxnet", THEIRS)):
                prefix = os.path.join(work, name, "imgs")
                results[(name, steady)].append(n / time_pack(tool, prefix, root, workers, steady))
    return {k: statistics.median(v) for k, v in results.items()}


def reader_speed(make, epochs: int) -> float:
    it = make()
    speeds = []
    for _ in range(epochs):
        it.reset()
        n, start = 0, time.perf_counter()
        for batch in it:
            n += batch.data[0].shape[0] - batch.pad
        batch.data[0].wait_to_read()
        speeds.append(n / (time.perf_counter() - start))
    return statistics.median(speeds[1:] or speeds)  # first epoch warms the page cache


def bench_read(rec: str, batch: int, epochs: int, repeat: int) -> dict:
    preset = data.PRESETS["imagenet"]
    bare = dict(path_imgrec=rec, path_imgidx=rec[:-4] + ".idx", data_shape=(3, 224, 224),
                batch_size=batch, shuffle=True, rand_crop=True, rand_mirror=True, resize=256,
                mean_r=preset.mean[0], mean_g=preset.mean[1], mean_b=preset.mean[2],
                std_r=preset.std[0], std_g=preset.std[1], std_b=preset.std[2])
    makers = {
        "ours (lcnn_gluon.data.train_iter)": lambda: data.train_iter(rec, batch, "imagenet"),
        "bare ImageRecordIter, ctx=cpu, all cores": lambda: mx.io.ImageRecordIter(
            ctx="cpu", preprocess_threads=os.cpu_count(), round_batch=False, **bare),
        "bare ImageRecordIter, MXNet defaults": lambda: mx.io.ImageRecordIter(**bare),
    }
    speeds = {k: [] for k in makers}
    for _ in range(repeat):
        for name, make in makers.items():
            speeds[name].append(reader_speed(make, epochs))
    return {k: statistics.median(v) for k, v in speeds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="--num-thread for both packers")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_data_")
    try:
        root = os.path.join(work, "images")
        make_images(root, args.images)
        pack = bench_pack(work, root, args.images, args.workers, args.repeat)
        read = bench_read(os.path.join(work, "ours", "imgs.rec"), args.batch_size, 5, args.repeat)
    finally:
        shutil.rmtree(work)
    print(f"machine: {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{args.images} JPEGs 300-500 px, --resize 256 --quality 95 --num-thread {args.workers}, "
          f"median of {args.repeat}")
    print("\n| packing | ours img/s | MXNet im2rec.py img/s | ratio |\n| --- | --- | --- | --- |")
    for steady, label in ((False, "whole command"), (True, "steady state (after imports)")):
        ours, theirs = pack[("ours", steady)], pack[("mxnet", steady)]
        print(f"| {label} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x |")
    base = read["bare ImageRecordIter, ctx=cpu, all cores"]
    print(f"\n| reader, 224 crop + flip, batch {args.batch_size} | img/s | vs best bare |\n"
          "| --- | --- | --- |")
    for name, speed in read.items():
        print(f"| {name} | {speed:.0f} | {speed / base:.2f}x |")


if __name__ == "__main__":
    main()
